//! `flotilla demo`: a real cluster on one Linux machine, as root. A bridge
//! carries a /24; each node is a set of namespaces (network, UTS, mount, PID)
//! with its own address, hostname, `/var/lib/flotilla` and `/run/flotilla`,
//! running the machine's OpenSSH `sshd`; a local distribution registry holds
//! images built from busybox-static. Everything the integration tests need
//! comes from `up`, and `down` leaves nothing behind. `sshd stop|start`
//! takes one node's sshd away (its connections cut) and brings it back.
//!
//! Names: the bridge is `fl-NAME`, the host ends of the nodes' veth pairs
//! `fl-NAME-I`; nodes are `node1..nodeN` at `.11`, `.12`, … of the subnet, the
//! registry listens on `.1:5000`.

mod down;
pub mod files;
mod images;
mod keys;
mod net;
pub mod node;
mod preflight;
pub mod process;
mod registry_server;
mod sshd;
mod state;
mod status;
mod up;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

pub use down::{DownReport, down};
pub use sshd::{SshdAction, SshdReport, sshd};
pub use state::DemoState;
pub use status::{NodeHealth, StatusReport, status};
pub use up::{UpReport, up};

use crate::registry::RegistryError;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(
        "flotilla demo needs root (it creates network namespaces and runs sshd): run it with sudo or as root"
    )]
    NotRoot,
    #[error("flotilla demo needs Linux (network namespaces); this is {0}")]
    NotLinux(String),
    #[error("flotilla demo needs {program}: apt-get install {package}")]
    MissingProgram { program: String, package: String },
    #[error("{0}")]
    BadSpec(String),
    #[error(
        "the demo cluster \"{name}\" is already up with {running} nodes; run `flotilla demo down` first to change its size to {asked}"
    )]
    SizeMismatch {
        name: String,
        running: usize,
        asked: u16,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("known_hosts {path}: {reason}")]
    KnownHosts { path: PathBuf, reason: String },
    #[error("demo state {path}: {reason} (remove it and run `flotilla demo down`)")]
    State { path: PathBuf, reason: String },
    #[error("network set-up failed: {reason}\n  commands:\n{commands}")]
    Network { commands: String, reason: String },
    #[error("the demo cluster \"{name}\" is not up; `flotilla demo up` brings it up")]
    NotUp { name: String },
    #[error("node {node}: {reason}")]
    Node { node: String, reason: String },
    #[error("cannot start {what}: {reason}")]
    Spawn { what: String, reason: String },
    #[error("node {node} did not start sshd on {address}:22; its log is {log}")]
    NodeDidNotStart {
        node: String,
        address: String,
        log: PathBuf,
    },
    #[error("building image {image}: {reason}")]
    Image { image: String, reason: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("a tokio runtime could not start: {0}")]
    Runtime(std::io::Error),
}

impl DemoError {
    pub fn io(path: &Path, source: std::io::Error) -> DemoError {
        DemoError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What demo cluster to make: its name (which names its links and
/// directories, so two demos can coexist), its size and its /24.
#[derive(Debug, Clone)]
pub struct DemoSpec {
    pub name: String,
    pub nodes: u16,
    /// The first three octets of the /24.
    pub subnet: [u8; 3],
}

pub const DEFAULT_NAME: &str = "demo";
pub const DEFAULT_SUBNET: [u8; 3] = [10, 77, 0];
/// Nodes take addresses .11 up to .250 of the /24.
pub const MAX_NODES: u16 = 240;

impl DemoSpec {
    pub fn new(name: &str, nodes: u16) -> Result<DemoSpec, DemoError> {
        // Interface names are at most 15 bytes: "fl-" + name + "-" + up to 3 digits.
        let valid_name = !name.is_empty()
            && name.len() <= 8
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name.starts_with(|c: char| c.is_ascii_lowercase());
        if !valid_name {
            return Err(DemoError::BadSpec(format!(
                "demo name {name:?}: use 1 to 8 lowercase letters and digits, starting with a letter"
            )));
        }
        if nodes == 0 || nodes > MAX_NODES {
            return Err(DemoError::BadSpec(format!(
                "--nodes {nodes}: a demo cluster has 1 to {MAX_NODES} nodes"
            )));
        }
        Ok(DemoSpec {
            name: name.to_string(),
            nodes,
            subnet: DEFAULT_SUBNET,
        })
    }

    /// Parses a subnet given as `A.B.C.0/24` (or `A.B.C`).
    pub fn with_subnet(mut self, subnet: &str) -> Result<DemoSpec, DemoError> {
        let bad = || {
            DemoError::BadSpec(format!(
                "--subnet {subnet:?}: give a /24 such as 10.77.0.0/24"
            ))
        };
        let base = subnet.strip_suffix("/24").unwrap_or(subnet);
        let base = base.strip_suffix(".0").unwrap_or(base);
        let addr: Ipv4Addr = format!("{base}.0").parse().map_err(|_| bad())?;
        let [a, b, c, _] = addr.octets();
        self.subnet = [a, b, c];
        Ok(self)
    }

    fn host(&self, last: u16) -> String {
        let [a, b, c] = self.subnet;
        format!("{a}.{b}.{c}.{last}")
    }

    /// The bridge's address: the nodes' gateway and the registry's host.
    pub fn gateway(&self) -> String {
        self.host(1)
    }

    pub fn registry_address(&self) -> String {
        format!("{}:{}", self.gateway(), registry_server::REGISTRY_PORT)
    }

    pub fn node_name(&self, i: u16) -> String {
        format!("node{i}")
    }

    pub fn node_address(&self, i: u16) -> String {
        self.host(10 + i)
    }

    /// The cgroup parent of node `i`'s agent: demo nodes share the machine's
    /// cgroup tree, so each agent needs its own part of it.
    pub fn cgroup_parent(&self, i: u16) -> String {
        cgroup_parent(&self.name, &self.node_name(i))
    }

    pub fn bridge(&self) -> String {
        format!("fl-{}", self.name)
    }

    pub fn veth(&self, i: u16) -> String {
        format!("fl-{}-{i}", self.name)
    }
}

/// `flotilla-<demo>-<node>`: where a demo node's agent puts its cgroups.
pub fn cgroup_parent(demo: &str, node: &str) -> String {
    format!("flotilla-{demo}-{node}")
}

/// Where a demo cluster keeps its files. Keys and the cluster file are what the
/// operator trusts, so they live in the config directory and survive `down`;
/// everything else is runtime state in the data directory, removed by `down`.
#[derive(Debug, Clone)]
pub struct DemoLayout {
    pub config_dir: PathBuf,
    pub state_dir: PathBuf,
    /// flotilla's own known_hosts, where the nodes' host keys are pinned.
    pub known_hosts: PathBuf,
    /// The operator's default cluster file.
    pub default_cluster_file: PathBuf,
}

impl DemoLayout {
    pub fn new(spec: &DemoSpec, config_dir: &Path, data_local_dir: &Path) -> DemoLayout {
        DemoLayout {
            config_dir: config_dir.join("demo").join(&spec.name),
            state_dir: data_local_dir.join("demo").join(&spec.name),
            known_hosts: config_dir.join(crate::config::paths::KNOWN_HOSTS_FILE_NAME),
            default_cluster_file: config_dir.join(crate::config::paths::CLUSTER_FILE_NAME),
        }
    }

    pub fn client_key(&self) -> PathBuf {
        self.config_dir.join("id_ed25519")
    }

    pub fn host_key(&self, node: &str) -> PathBuf {
        self.config_dir
            .join("host_keys")
            .join(format!("{node}_ed25519"))
    }

    /// The demo's own copy of its cluster file, always written.
    pub fn cluster_file(&self) -> PathBuf {
        self.config_dir
            .join(crate::config::paths::CLUSTER_FILE_NAME)
    }

    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }

    pub fn authorized_keys(&self) -> PathBuf {
        self.state_dir.join("authorized_keys")
    }

    pub fn registry_dir(&self) -> PathBuf {
        self.state_dir.join("registry")
    }

    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.state_dir.join("nodes").join(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_in_an_interface_name() {
        let spec = DemoSpec::new("abcdefgh", MAX_NODES).expect("spec");
        assert!(spec.veth(MAX_NODES).len() <= 15);
        assert!(DemoSpec::new("abcdefghi", 3).is_err());
        assert!(DemoSpec::new("Demo", 3).is_err());
        assert!(DemoSpec::new("demo", 0).is_err());
    }

    #[test]
    fn addresses_follow_the_subnet() {
        let spec = DemoSpec::new("t", 2)
            .expect("spec")
            .with_subnet("10.99.7.0/24")
            .expect("subnet");
        assert_eq!(spec.gateway(), "10.99.7.1");
        assert_eq!(spec.node_address(2), "10.99.7.12");
        assert_eq!(spec.registry_address(), "10.99.7.1:5000");
        assert!(
            DemoSpec::new("t", 1)
                .expect("spec")
                .with_subnet("10.1.2.3.4")
                .is_err()
        );
    }
}
