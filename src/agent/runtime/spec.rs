//! What a container is made of, as the shim hands it to [`super::spawn`]:
//! the rootfs (overlayfs dirs), the process (args, env, cwd, user,
//! capabilities), the namespaces it joins or creates, the cgroups it is born
//! in, the protected paths and the bind mounts. Defaults are Docker's: what
//! Docker/containerd apply by default, flotilla applies by default.
//!
//! Everything but the stdio descriptors is serialised to the init stage, so
//! the spec is plain data; [`ContainerSpec::validate`] refuses what cannot be
//! run before any process is started.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::RuntimeError;

/// `PATH` when the spec's environment has none (Docker's and runc's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's 14 default capabilities (moby `oci/caps/defaults.go`): the
/// bounding, effective and permitted sets of a container's root, mask
/// `0x00000000a80425fb`. Inheritable and ambient stay empty (CVE-2022-24769).
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Docker's masked paths (moby `oci/defaults.go`): files get /dev/null bound
/// over them, directories an empty read-only tmpfs. Missing ones are skipped.
pub const DEFAULT_MASKED_PATHS: [&str; 13] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/sys/devices/system/cpu/cpu0/thermal_throttle",
];

/// Docker's read-only paths: bound onto themselves and remounted read-only.
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Every capability the kernel knows by name, by number (`capability.h`).
const CAPABILITY_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The capability mask of `names` (`CAP_CHOWN` or `chown`, any case).
pub fn capability_mask(names: &[String]) -> Result<u64, RuntimeError> {
    let mut mask = 0u64;
    for name in names {
        let upper = name.to_ascii_uppercase();
        let full = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        let bit = CAPABILITY_NAMES
            .iter()
            .position(|n| *n == full)
            .ok_or_else(|| RuntimeError::Spec(format!("unknown capability {name:?}")))?;
        mask |= 1 << bit;
    }
    Ok(mask)
}

/// One container, ready to be created by [`super::spawn`].
#[derive(Debug, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Names the container in errors; `[A-Za-z0-9_.-]`, 1 to 128 characters.
    pub id: String,
    pub rootfs: RootfsSpec,
    pub process: ProcessSpec,
    /// The container's hostname: set in a new UTS namespace when
    /// `namespaces.uts` is [`Namespace::New`]; in a pod the sandbox's UTS
    /// namespace already carries the pod's name. Exported as `HOSTNAME`.
    pub hostname: String,
    pub namespaces: Namespaces,
    /// `cgroup.procs` files to put the container in before it runs anything:
    /// the init stage writes its own pid into each, so the container's first
    /// process is born inside (the cgroup module provides the paths).
    #[serde(default)]
    pub cgroup_procs: Vec<PathBuf>,
    #[serde(default = "default_masked_paths")]
    pub masked_paths: Vec<String>,
    #[serde(default = "default_readonly_paths")]
    pub readonly_paths: Vec<String>,
    /// Bind mounts from the host (the pod's /etc/hosts, /etc/hostname,
    /// /etc/resolv.conf), made after /proc, /dev and /sys.
    #[serde(default)]
    pub mounts: Vec<BindMount>,
    /// The container's stdin, stdout and stderr; `None` is /dev/null. Not
    /// serialised: the init stage receives them as its own 0, 1 and 2.
    #[serde(skip)]
    pub stdio: [Option<OwnedFd>; 3],
}

/// The overlayfs that becomes the container's root.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootfsSpec {
    /// Image layers, top-most first (overlayfs's `lowerdir` order).
    pub lower_dirs: Vec<PathBuf>,
    /// The container's writable layer.
    pub upper_dir: PathBuf,
    /// overlayfs's scratch dir; on the same filesystem as `upper_dir`.
    pub work_dir: PathBuf,
    /// Where the overlay is mounted, in the container's mount namespace only:
    /// the host never sees it, so nothing is left mounted when the container
    /// ends, whatever happens to the agent.
    pub merged_dir: PathBuf,
    /// overlayfs's `volatile`: no syncs of the upper dir, so the container's
    /// exit does not wait for the node's disk (an overlay's unmount syncs the
    /// upper filesystem, tens of ms on a busy node). Only for containers whose
    /// upper dir is deleted after they end (`run --rm`, as podman does):
    /// after a crash the kernel refuses to mount that upper dir again.
    #[serde(default)]
    pub volatile: bool,
    /// The writable layer on a tmpfs of the container's own, mounted on
    /// `upper_dir` in its mount namespace (the overlay's upper and work dirs
    /// are made in it; `work_dir` is unused): its writes never reach the
    /// host's filesystem, are charged to the container's memory cgroup, and
    /// go with its mount namespace. For an ephemeral pod, whose layer would
    /// otherwise sit on the run dir's tmpfs (the host's /run) and could fill it.
    #[serde(default)]
    pub private_layer: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// The program and its arguments; the program is looked up in the
    /// container's `PATH` when it has no `/`.
    pub args: Vec<String>,
    /// `KEY=value`; `PATH`, `HOSTNAME` and `HOME` are added when absent.
    #[serde(default)]
    pub env: Vec<String>,
    /// Absolute, resolved inside the root; created (root-owned, 0755) when
    /// missing, as Docker and runc do.
    #[serde(default = "root_dir")]
    pub cwd: String,
    /// `name`, `uid`, `name:group` or `uid:gid`, resolved against the
    /// container's /etc/passwd and /etc/group; `None` is root.
    #[serde(default)]
    pub user: Option<String>,
    /// Capability names for the bounding, effective and permitted sets.
    #[serde(default = "default_capabilities")]
    pub capabilities: Vec<String>,
    #[serde(default = "yes")]
    pub no_new_privileges: bool,
    /// Docker's default seccomp refusals (see seccomp.rs), adjusted to the
    /// capabilities as Docker does.
    #[serde(default = "yes")]
    pub seccomp: bool,
}

impl RootfsSpec {
    /// Removes the container's upper, work and merged dirs once it has
    /// ended (its mounts went with its mount namespace). The layers stay.
    pub fn remove(&self) -> Result<(), RuntimeError> {
        for dir in [&self.upper_dir, &self.work_dir, &self.merged_dir] {
            match std::fs::remove_dir_all(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(RuntimeError::Io {
                        path: dir.clone(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }
}

impl ProcessSpec {
    /// A process with Docker's defaults: root, `/`, the 14 capabilities,
    /// no_new_privs.
    pub fn new(args: Vec<String>) -> ProcessSpec {
        ProcessSpec {
            args,
            env: Vec::new(),
            cwd: root_dir(),
            user: None,
            capabilities: default_capabilities(),
            no_new_privileges: true,
            seccomp: true,
        }
    }
}

/// The namespaces a container joins (the pod's) or gets of its own. Mount and
/// PID namespaces are always new.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Namespaces {
    pub net: Namespace,
    pub ipc: Namespace,
    pub uts: Namespace,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub enum Namespace {
    /// A fresh one (a new network namespace gets its loopback up).
    #[default]
    New,
    /// The namespace bound at this path (a pod sandbox's nsfs file).
    Join(PathBuf),
    /// The agent's own (host network).
    Host,
}

/// A bind mount of a host file or directory into the container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BindMount {
    pub source: PathBuf,
    /// Absolute, resolved inside the container's root.
    pub destination: String,
    pub read_only: bool,
}

fn default_capabilities() -> Vec<String> {
    DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect()
}

pub fn default_masked_paths() -> Vec<String> {
    DEFAULT_MASKED_PATHS.iter().map(|p| p.to_string()).collect()
}

pub fn default_readonly_paths() -> Vec<String> {
    DEFAULT_READONLY_PATHS
        .iter()
        .map(|p| p.to_string())
        .collect()
}

fn root_dir() -> String {
    "/".into()
}

fn yes() -> bool {
    true
}

impl ContainerSpec {
    /// A container with Docker's defaults for everything but what must be
    /// given: its id, rootfs and command.
    pub fn new(id: &str, rootfs: RootfsSpec, args: Vec<String>) -> ContainerSpec {
        ContainerSpec {
            id: id.to_string(),
            rootfs,
            process: ProcessSpec::new(args),
            hostname: hostname_from(id),
            namespaces: Namespaces::default(),
            cgroup_procs: Vec::new(),
            masked_paths: default_masked_paths(),
            readonly_paths: default_readonly_paths(),
            mounts: Vec::new(),
            stdio: [None, None, None],
        }
    }

    /// Refuses, before any process exists, what the init stage could not run.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        let bad = |what: String| Err(RuntimeError::Spec(what));
        if !valid_id(&self.id) {
            return bad(format!(
                "container id {:?}: use 1 to 128 of A-Z a-z 0-9 _ . - (not . or ..)",
                self.id
            ));
        }
        if !valid_hostname(&self.hostname) {
            return bad(format!(
                "hostname {:?} is not a DNS label (1 to 63 of a-z 0-9 -, not starting or ending with -)",
                self.hostname
            ));
        }
        if self.rootfs.lower_dirs.is_empty() {
            return bad("the rootfs has no lower dirs (image layers)".into());
        }
        let rootfs = &self.rootfs;
        for dir in rootfs.lower_dirs.iter().chain([
            &rootfs.upper_dir,
            &rootfs.work_dir,
            &rootfs.merged_dir,
        ]) {
            let text = dir.to_str().unwrap_or("");
            // overlayfs splits its options on , and lowerdir on : (escapes
            // exist but are not worth the risk for paths we choose).
            if !dir.is_absolute() || text.is_empty() || text.contains([',', ':', '\n']) {
                return bad(format!(
                    "rootfs dir {}: must be an absolute UTF-8 path without , or :",
                    dir.display()
                ));
            }
        }
        if self.process.args.is_empty() || self.process.args[0].is_empty() {
            return bad("the process has no program (args is empty)".into());
        }
        let nul = self
            .process
            .args
            .iter()
            .chain(&self.process.env)
            .chain([&self.process.cwd, &self.hostname])
            .any(|s| s.contains('\0'));
        if nul {
            return bad("an argument, env entry, cwd or hostname contains a NUL byte".into());
        }
        for entry in &self.process.env {
            if entry.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
                return bad(format!("env entry {entry:?} is not KEY=value"));
            }
        }
        if !self.process.cwd.starts_with('/') {
            return bad(format!(
                "cwd {:?} is not an absolute path",
                self.process.cwd
            ));
        }
        if let Some(user) = &self.process.user {
            super::process::UserSpec::parse(user)?;
        }
        capability_mask(&self.process.capabilities)?;
        for path in self
            .masked_paths
            .iter()
            .chain(&self.readonly_paths)
            .chain(self.mounts.iter().map(|m| &m.destination))
        {
            if !path.starts_with('/') || path.contains('\0') {
                return bad(format!("container path {path:?} is not absolute"));
            }
        }
        for ns in [
            &self.namespaces.net,
            &self.namespaces.ipc,
            &self.namespaces.uts,
        ] {
            if let Namespace::Join(path) = ns
                && !path.is_absolute()
            {
                return bad(format!("namespace path {} is not absolute", path.display()));
            }
        }
        Ok(())
    }
}

/// A hostname made from a container id: lowercase letters, digits and `-`,
/// at most 63, `container` if nothing is left.
fn hostname_from(id: &str) -> String {
    let mapped: String = id
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let trimmed = mapped.trim_matches('-');
    if trimmed.is_empty() {
        "container".into()
    } else {
        trimmed.into()
    }
}

/// Container and pod ids name directories: no separators, no dot-names.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// An RFC 1123 label, as Kubernetes wants pod hostnames.
pub fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockers_default_capabilities_are_its_mask() {
        let mask = capability_mask(&default_capabilities()).expect("known names");
        assert_eq!(mask, 0x0000_0000_a804_25fb);
        assert_eq!(
            capability_mask(&["chown".into(), "cap_kill".into()]).expect("names"),
            (1 << 0) | (1 << 5)
        );
        assert!(capability_mask(&["CAP_NOPE".into()]).is_err());
    }

    fn spec() -> ContainerSpec {
        ContainerSpec::new(
            "c1",
            RootfsSpec {
                lower_dirs: vec!["/l".into()],
                upper_dir: "/u".into(),
                work_dir: "/w".into(),
                merged_dir: "/m".into(),
                volatile: false,
                private_layer: false,
            },
            vec!["/bin/true".into()],
        )
    }

    #[test]
    fn bad_specs_are_refused_before_anything_runs() {
        assert!(spec().validate().is_ok());
        let mut s = spec();
        s.id = "../x".into();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.rootfs.lower_dirs = vec!["/a:b".into()];
        assert!(s.validate().is_err());
        let mut s = spec();
        s.process.args.clear();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.process.env = vec!["NOEQUALS".into()];
        assert!(s.validate().is_err());
        let mut s = spec();
        s.process.cwd = "relative".into();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.process.user = Some("a:b:c".into());
        assert!(s.validate().is_err());
        let mut s = spec();
        s.hostname = "Not_A_Label".into();
        assert!(s.validate().is_err());
    }

    #[test]
    fn any_valid_id_gives_a_valid_hostname() {
        for id in ["C_1", "-", "abc.DEF", "x"] {
            assert!(valid_hostname(&hostname_from(id)), "{id}");
        }
        assert_eq!(hostname_from("Web_1"), "web-1");
    }

    #[test]
    fn the_spec_survives_the_trip_to_the_init_stage() {
        let s = spec();
        let json = serde_json::to_string(&s).expect("serialise");
        let back: ContainerSpec = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.process.args, s.process.args);
        assert_eq!(back.masked_paths, s.masked_paths);
        assert!(back.process.no_new_privileges);
    }
}
