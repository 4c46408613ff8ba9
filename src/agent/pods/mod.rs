//! Pods on this host: their persisted records, the shims that supervise
//! their containers, the lifecycle the kubelet would run (start, restart
//! with back-off, pull per policy, stop, kill, pause, delete) and their
//! statuses as Kubernetes reports them.
//!
//! ```text
//! layout.rs   where a pod's files live (root on disk, run dir on tmpfs)
//! record.rs   pod.json: spec, desired state, per-container memory
//! shim.rs     the per-container supervisor and its state file
//! manager.rs  the lifecycle
//! status.rs   PodStatus and phase, derived
//! network.rs  the pod's address on the node's pod network (CNI ADD/DEL)
//! backoff.rs  the crash-loop back-off schedule
//! exec.rs     which running process an exec joins, and as what
//! exec_process.rs  an exec the daemon runs for a client: pty or pipes, streamed
//! ```

pub mod backoff;
pub mod exec;
pub mod exec_process;
pub mod layout;
pub mod manager;
pub mod network;
pub mod output_pump;
pub mod record;
pub mod resident;
pub mod shim;
pub mod status;

use std::path::{Path, PathBuf};

pub use manager::{AgentConfig, PodEvent, PodManager};

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("no pod {0} on this node")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Cgroup(#[from] crate::agent::cgroup::CgroupError),
    #[error(transparent)]
    Image(#[from] crate::agent::image::ImageError),
    #[error(transparent)]
    Runtime(#[from] crate::agent::runtime::RuntimeError),
    #[error("{0}")]
    Network(String),
}

impl PodError {
    pub fn io(path: &Path, source: std::io::Error) -> PodError {
        PodError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
