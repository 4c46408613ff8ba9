//! Where a pod's files live. On disk, under the agent's root (kept across
//! reboots; `/var/lib/flotilla` on a node):
//!
//! ```text
//! ROOT/pods/UID/pod.json                         spec, desired state, per-container records
//! ROOT/pods/UID/lock                             taken by whoever changes pod.json
//! ROOT/pods/UID/containers/NAME/logs/N.log       CRI log of instance N (rotated N.log.1 …)
//! ROOT/pods/UID/containers/NAME/N/launch.json    what the shim runs
//! ROOT/pods/UID/containers/NAME/N/state.json     what the shim reports (pid, exit)
//! ROOT/pods/UID/containers/NAME/N/{upper,work}   the instance's writable layer
//! ROOT/objects/                                  the cluster objects and the lease's term (agent::objects)
//! ```
//!
//! And under the run directory (tmpfs, gone at reboot; `/run/flotilla`):
//! the pod sandboxes' namespace files (`RUN/pods/UID/`) and the instances'
//! rootfs mount points (`RUN/rootfs/UID-NAME-N`), which need no disk.
//!
//! An ephemeral pod (`run --rm`) keeps its whole directory, laid out as
//! above, at `RUN/ephemeral/UID/` instead: it is removed the moment its
//! container ends and must not outlive a reboot, so none of it (record, log,
//! writable layer) goes to the disk, and removing it costs no disk work.
//! [`AgentPaths::pod_dir`] finds a pod in either place by its uid.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct AgentPaths {
    pub root: PathBuf,
    pub run_dir: PathBuf,
}

impl AgentPaths {
    pub fn new(root: &Path, run_dir: &Path) -> AgentPaths {
        AgentPaths {
            root: root.to_path_buf(),
            run_dir: run_dir.to_path_buf(),
        }
    }

    pub fn pods_dir(&self) -> PathBuf {
        self.root.join("pods")
    }

    /// The replicated cluster objects and the lease's term ([`crate::agent::objects`]).
    pub fn objects_dir(&self) -> PathBuf {
        self.root.join("objects")
    }

    /// Where ephemeral pods live (tmpfs).
    pub fn ephemeral_pods_dir(&self) -> PathBuf {
        self.run_dir.join("ephemeral")
    }

    /// Where a new pod's directory goes.
    pub fn new_pod_dir(&self, uid: &str, ephemeral: bool) -> PathBuf {
        if ephemeral {
            self.ephemeral_pods_dir().join(uid)
        } else {
            self.pods_dir().join(uid)
        }
    }

    /// A pod's directory: under the run directory if it is an ephemeral
    /// pod's (one lookup on tmpfs), else under the root.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        let ephemeral = self.ephemeral_pods_dir().join(uid);
        if ephemeral.is_dir() {
            ephemeral
        } else {
            self.pods_dir().join(uid)
        }
    }

    pub fn pod_file(&self, uid: &str) -> PathBuf {
        self.pod_dir(uid).join("pod.json")
    }

    pub fn pod_lock(&self, uid: &str) -> PathBuf {
        self.pod_dir(uid).join("lock")
    }

    pub fn container_dir(&self, uid: &str, container: &str) -> PathBuf {
        self.pod_dir(uid).join("containers").join(container)
    }

    pub fn log_dir(&self, uid: &str, container: &str) -> PathBuf {
        self.container_dir(uid, container).join("logs")
    }

    pub fn instance_dir(&self, uid: &str, container: &str, instance: u32) -> PathBuf {
        self.container_dir(uid, container)
            .join(instance.to_string())
    }

    /// Where the pod sandboxes keep their namespace files.
    pub fn sandboxes_dir(&self) -> PathBuf {
        self.run_dir.join("pods")
    }

    pub fn merged_dir(&self, uid: &str, container: &str, instance: u32) -> PathBuf {
        self.run_dir
            .join("rootfs")
            .join(format!("{uid}-{container}-{instance}"))
    }
}
