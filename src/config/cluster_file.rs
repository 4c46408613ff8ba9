//! The cluster file (`cluster.toml`): the cluster's name, its nodes and how to
//! reach them, and the registries that may be spoken to over plain HTTP.
//!
//! Any node field may be set under `[defaults]`; a field set on a node
//! replaces the default as a whole (a node's `labels` replace the default
//! labels, they are not merged). Unknown fields are errors, since a misspelt
//! `adress` silently ignored would send flotilla somewhere else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::agent::network::Ipv4Net;
use crate::api::node::Taint;
use crate::config::paths::{config_relative, expand_tilde};

#[derive(Debug, thiserror::Error)]
pub enum ClusterFileError {
    #[error(
        "no cluster file at {path}: run `flotilla demo up` for a demo cluster, or write one (see README.md), or pass --cluster FILE"
    )]
    NotFound { path: PathBuf },
    #[error("cannot read the cluster file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cluster file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("cluster file {path}:\n  {}", problems.join("\n  "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// A node as the rest of flotilla sees it, defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    pub name: String,
    /// An address, a host name, or a Host alias from `~/.ssh/config`.
    pub address: String,
    /// None: from `~/.ssh/config` for the address, else 22.
    pub port: Option<u16>,
    /// None: from `~/.ssh/config` for the address, else the local user.
    pub user: Option<String>,
    pub identity: Option<PathBuf>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// A pinned host-key fingerprint (`SHA256:…`), trusted without known_hosts.
    pub host_key: Option<String>,
    /// The agent's part of the host's cgroup tree (`--cgroup-parent`):
    /// [`DEFAULT_CGROUP_PARENT`] unless set. Agents that share a cgroup
    /// tree (demo nodes on one machine) need one each.
    pub cgroup_parent: String,
}

/// The cgroup parent of an agent whose node does not set one.
pub const DEFAULT_CGROUP_PARENT: &str = "flotilla";

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Plain HTTP instead of HTTPS (a local registry).
    #[serde(default)]
    pub insecure: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub path: PathBuf,
    pub name: String,
    pub nodes: Vec<NodeConfig>,
    /// Keyed by `host[:port]`, as image references name registries.
    pub registries: BTreeMap<String, RegistryConfig>,
    /// Directories of manifests the console lists (`[cluster] manifests`),
    /// relative ones already taken from the cluster file's directory.
    pub manifests: Vec<PathBuf>,
    /// Every pod address comes from here (`[cluster] pod_cidr`); each node
    /// gets a /24 of it.
    pub pod_cidr: Ipv4Net,
}

/// The pod CIDR when the cluster file names none (Podman's default bridge
/// range; the demo's own networks are under 10.77 and above).
pub const DEFAULT_POD_CIDR: Ipv4Net = Ipv4Net::from_octets([10, 88, 0, 0], 16);

impl ClusterConfig {
    /// The registries marked insecure, for the registry client.
    pub fn insecure_registries(&self) -> Vec<String> {
        self.registries
            .iter()
            .filter(|(_, r)| r.insecure)
            .map(|(host, _)| host.clone())
            .collect()
    }

    pub fn node(&self, name: &str) -> Option<&NodeConfig> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    cluster: RawCluster,
    #[serde(default)]
    defaults: RawNode,
    #[serde(default)]
    nodes: Vec<RawNode>,
    #[serde(default)]
    registries: BTreeMap<String, RegistryConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: String,
    #[serde(default)]
    manifests: Vec<String>,
    pod_cidr: Option<String>,
}

/// The fields of a node, each optional so `[defaults]` can use the same shape.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Option<String>,
    address: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    identity: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    taints: Option<Vec<String>>,
    host_key: Option<String>,
    cgroup_parent: Option<String>,
}

/// Reads and checks the cluster file at `path`.
pub fn load(path: &Path) -> Result<ClusterConfig, ClusterFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ClusterFileError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            ClusterFileError::Read {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    parse(path, &text)
}

/// Parses cluster-file text; `path` is only used in messages.
pub fn parse(path: &Path, text: &str) -> Result<ClusterConfig, ClusterFileError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| ClusterFileError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;
    let mut problems = Vec::new();
    if let Err(why) = check_dns_label(&raw.cluster.name) {
        problems.push(format!("cluster.name {:?}: {why}", raw.cluster.name));
    }
    for (field, set) in [
        ("name", raw.defaults.name.is_some()),
        ("address", raw.defaults.address.is_some()),
    ] {
        if set {
            problems.push(format!(
                "defaults.{field}: each node needs its own {field}; set it under [[nodes]]"
            ));
        }
    }
    if raw.nodes.is_empty() {
        problems.push("no [[nodes]]: a cluster needs at least one node".to_string());
    }

    let mut nodes: Vec<NodeConfig> = Vec::new();
    let mut first_index: BTreeMap<String, usize> = BTreeMap::new();
    for (i, raw_node) in raw.nodes.iter().enumerate() {
        let merged = merge(&raw.defaults, raw_node);
        let label = match &merged.name {
            Some(name) => format!("nodes[{i}] ({name})"),
            None => format!("nodes[{i}]"),
        };
        // Duplicates are found by name alone, whether or not the rest is valid.
        if let Some(name) = &merged.name {
            match first_index.get(name) {
                Some(first) => problems.push(format!(
                    "{label}: duplicate node name {name:?} (also nodes[{first}]); node names must be unique"
                )),
                None => {
                    first_index.insert(name.clone(), i);
                }
            }
        }
        if let Some(node) = resolve(&label, merged, &mut problems) {
            nodes.push(node);
        }
    }
    let pod_cidr = match raw.cluster.pod_cidr.as_deref().map(str::parse::<Ipv4Net>) {
        None => DEFAULT_POD_CIDR,
        Some(Ok(net)) if net.prefix <= 23 && net == net.network() => net,
        Some(Ok(net)) => {
            problems.push(format!(
                "cluster.pod_cidr {net}: give a network address with room for a /24 per node, e.g. \"10.88.0.0/16\""
            ));
            DEFAULT_POD_CIDR
        }
        Some(Err(why)) => {
            problems.push(format!(
                "cluster.pod_cidr {:?}: {why}; give an IPv4 network such as \"10.88.0.0/16\"",
                raw.cluster.pod_cidr.as_deref().unwrap_or_default()
            ));
            DEFAULT_POD_CIDR
        }
    };
    for (i, dir) in raw.cluster.manifests.iter().enumerate() {
        if dir.trim().is_empty() {
            problems.push(format!(
                "cluster.manifests[{i}]: empty; name a directory of manifests (relative to this file, or absolute)"
            ));
        }
    }
    for host in raw.registries.keys() {
        if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
            problems.push(format!(
                "registries.{host:?}: name a registry as host or host:port, e.g. \"10.77.0.1:5000\""
            ));
        }
    }
    if !problems.is_empty() {
        return Err(ClusterFileError::Invalid {
            path: path.to_path_buf(),
            problems,
        });
    }
    let base = path.parent().unwrap_or(Path::new(""));
    Ok(ClusterConfig {
        path: path.to_path_buf(),
        name: raw.cluster.name,
        nodes,
        registries: raw.registries,
        manifests: raw
            .cluster
            .manifests
            .iter()
            .map(|dir| config_relative(base, dir))
            .collect(),
        pod_cidr,
    })
}

fn merge(defaults: &RawNode, node: &RawNode) -> RawNode {
    RawNode {
        name: node.name.clone(),
        address: node.address.clone(),
        port: node.port.or(defaults.port),
        user: node.user.clone().or_else(|| defaults.user.clone()),
        identity: node.identity.clone().or_else(|| defaults.identity.clone()),
        labels: node.labels.clone().or_else(|| defaults.labels.clone()),
        taints: node.taints.clone().or_else(|| defaults.taints.clone()),
        host_key: node.host_key.clone().or_else(|| defaults.host_key.clone()),
        cgroup_parent: node
            .cgroup_parent
            .clone()
            .or_else(|| defaults.cgroup_parent.clone()),
    }
}

fn resolve(label: &str, raw: RawNode, problems: &mut Vec<String>) -> Option<NodeConfig> {
    let before = problems.len();
    let name = raw.name.unwrap_or_default();
    if name.is_empty() {
        problems.push(format!("{label}: a node needs a name"));
    } else if let Err(why) = check_dns_label(&name) {
        problems.push(format!("{label}.name {name:?}: {why}"));
    }
    let address = raw.address.unwrap_or_default();
    if address.trim().is_empty() {
        problems.push(format!(
            "{label}: a node needs an address (an IP, a host name or a ~/.ssh/config Host alias)"
        ));
    }
    if raw.port == Some(0) {
        problems.push(format!("{label}.port: 0 is not a port"));
    }
    let labels = raw.labels.unwrap_or_default();
    for (key, value) in &labels {
        if let Err(why) = crate::api::meta::validate_label(key, value) {
            problems.push(format!("{label}.labels: {why}"));
        }
    }
    let mut taints = Vec::new();
    for (j, text) in raw.taints.unwrap_or_default().iter().enumerate() {
        match text.parse::<Taint>() {
            Ok(taint) => taints.push(taint),
            Err(why) => problems.push(format!("{label}.taints[{j}]: {why}")),
        }
    }
    if let Some(pin) = raw.host_key.as_ref().filter(|p| !is_sha256_fingerprint(p)) {
        problems.push(format!(
            "{label}.host_key {pin:?}: give the key's SHA256 fingerprint as `ssh-keygen -lf` prints it (SHA256:…)"
        ));
    }
    if let Some(parent) = &raw.cgroup_parent
        && let Err(why) = check_cgroup_parent(parent)
    {
        problems.push(format!("{label}.cgroup_parent {parent:?}: {why}"));
    }
    (problems.len() == before).then(|| NodeConfig {
        name,
        address,
        port: raw.port,
        user: raw.user,
        identity: raw.identity.as_deref().map(expand_tilde),
        labels,
        taints,
        host_key: raw.host_key,
        cgroup_parent: raw
            .cgroup_parent
            .unwrap_or_else(|| DEFAULT_CGROUP_PARENT.to_string()),
    })
}

/// A relative cgroup path such as `flotilla` or `flotilla/node1`, as the
/// agent's `--cgroup-parent` accepts it.
fn check_cgroup_parent(parent: &str) -> Result<(), String> {
    if parent.is_empty() {
        return Err("it is empty; leave it out for the default \"flotilla\"".into());
    }
    if parent.starts_with('/') {
        return Err("give a path relative to the cgroup mount, e.g. \"flotilla\"".into());
    }
    let bad_char = parent
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')));
    if let Some(c) = bad_char {
        return Err(format!(
            "{c:?} is not allowed; use letters, digits, '-', '_', '.' and '/'"
        ));
    }
    if parent
        .split('/')
        .any(|part| matches!(part, "" | "." | ".."))
    {
        return Err("empty, . and .. components are not allowed".into());
    }
    Ok(())
}

fn is_sha256_fingerprint(text: &str) -> bool {
    text.strip_prefix("SHA256:").is_some_and(|b64| {
        b64.len() == 43
            && b64
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
    })
}

/// An RFC 1123 label, as Kubernetes names nodes.
fn check_dns_label(name: &str) -> Result<(), String> {
    let errors = crate::api::meta::dns1123_label_errors(name);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<ClusterConfig, ClusterFileError> {
        parse(Path::new("cluster.toml"), text)
    }

    fn problems(text: &str) -> String {
        match parse_text(text) {
            Err(e) => e.to_string(),
            Ok(c) => panic!("accepted: {c:?}"),
        }
    }

    #[test]
    fn the_design_example_parses_with_defaults_applied() {
        let config = parse_text(
            r#"
[cluster]
name = "demo"

[defaults]
user = "root"
identity = "~/.ssh/id_ed25519"

[[nodes]]
name = "node1"
address = "10.77.0.11"
port = 22
labels = { zone = "a" }
taints = ["dedicated=db:NoSchedule"]

[[nodes]]
name = "node2"
address = "lab-host"
user = "ops"

[registries."10.77.0.1:5000"]
insecure = true
"#,
        )
        .expect("valid");
        assert_eq!(config.name, "demo");
        assert_eq!(config.nodes.len(), 2);
        let node1 = &config.nodes[0];
        assert_eq!(node1.user.as_deref(), Some("root"));
        assert_eq!(node1.port, Some(22));
        assert_eq!(node1.labels["zone"], "a");
        assert_eq!(node1.taints[0].to_string(), "dedicated=db:NoSchedule");
        assert!(node1.identity.as_ref().is_some_and(|p| !p.starts_with("~")));
        assert_eq!(config.nodes[1].user.as_deref(), Some("ops"));
        assert_eq!(config.nodes[1].port, None);
        assert_eq!(config.insecure_registries(), vec!["10.77.0.1:5000"]);
    }

    #[test]
    fn manifest_directories_are_taken_from_the_cluster_files_directory() {
        let text = "[cluster]\nname = \"c\"\nmanifests = [\"apps\", \"/srv/k8s\", \"~/mine\"]\n[[nodes]]\nname = \"a\"\naddress = \"x\"\n";
        let config = parse(Path::new("/etc/flotilla/cluster.toml"), text).expect("valid");
        assert_eq!(config.manifests[0], PathBuf::from("/etc/flotilla/apps"));
        assert_eq!(config.manifests[1], PathBuf::from("/srv/k8s"));
        assert!(
            !config.manifests[2].starts_with("~") && config.manifests[2].ends_with("mine"),
            "{:?}",
            config.manifests[2]
        );
        assert!(
            parse_text("[cluster]\nname = \"c\"\n[[nodes]]\nname = \"a\"\naddress = \"x\"\n")
                .expect("valid")
                .manifests
                .is_empty()
        );
        let msg = problems(
            "[cluster]\nname = \"c\"\nmanifests = [\" \"]\n[[nodes]]\nname = \"a\"\naddress = \"x\"\n",
        );
        assert!(msg.contains("cluster.manifests[0]"), "{msg}");
    }

    #[test]
    fn the_pod_cidr_defaults_and_is_checked() {
        let node = "[[nodes]]\nname = \"a\"\naddress = \"x\"\n";
        let config = parse_text(&format!("[cluster]\nname = \"c\"\n{node}")).expect("valid");
        assert_eq!(config.pod_cidr.to_string(), "10.88.0.0/16");
        let config = parse_text(&format!(
            "[cluster]\nname = \"c\"\npod_cidr = \"172.20.0.0/20\"\n{node}"
        ))
        .expect("valid");
        assert_eq!(config.pod_cidr.to_string(), "172.20.0.0/20");
        for bad in ["10.88.0.0/24", "10.88.1.0/16", "10.88.0.0", "fd00::/64"] {
            let msg = problems(&format!(
                "[cluster]\nname = \"c\"\npod_cidr = \"{bad}\"\n{node}"
            ));
            assert!(msg.contains("cluster.pod_cidr"), "{bad}: {msg}");
        }
    }

    #[test]
    fn duplicate_node_names_are_refused_naming_both() {
        let msg = problems(
            "[cluster]\nname = \"c\"\n[[nodes]]\nname = \"a\"\naddress = \"x\"\n[[nodes]]\nname = \"a\"\naddress = \"y\"\n",
        );
        assert!(msg.contains("duplicate node name \"a\""), "{msg}");
        assert!(
            msg.contains("nodes[1]") && msg.contains("nodes[0]"),
            "{msg}"
        );
    }

    #[test]
    fn bad_taints_are_refused_with_the_expected_form() {
        let msg = problems(
            "[cluster]\nname = \"c\"\n[[nodes]]\nname = \"a\"\naddress = \"x\"\ntaints = [\"dedicated=db:Sometimes\"]\n",
        );
        assert!(msg.contains("nodes[0] (a).taints[0]"), "{msg}");
        assert!(msg.contains("NoSchedule"), "{msg}");
    }

    #[test]
    fn unknown_fields_are_refused_with_their_line() {
        let msg = problems("[cluster]\nname = \"c\"\n[[nodes]]\nname = \"a\"\nadress = \"x\"\n");
        assert!(msg.contains("adress"), "{msg}");
        assert!(msg.contains("line 5") || msg.contains(":5:"), "{msg}");
    }

    #[test]
    fn names_addresses_and_pins_are_checked() {
        let msg = problems(
            "[cluster]\nname = \"Bad_Name\"\n[defaults]\nname = \"x\"\n[[nodes]]\nname = \"UPPER\"\n[[nodes]]\nname = \"ok\"\naddress = \"h\"\nhost_key = \"MD5:aa\"\n",
        );
        for needle in [
            "cluster.name",
            "defaults.name",
            "nodes[0] (UPPER).name",
            "needs an address",
            "host_key",
        ] {
            assert!(msg.contains(needle), "missing {needle}: {msg}");
        }
    }

    #[test]
    fn cgroup_parent_defaults_to_flotilla_and_is_checked() {
        let config = parse_text(
            "[cluster]\nname = \"c\"\n[defaults]\ncgroup_parent = \"fl/all\"\n[[nodes]]\nname = \"a\"\naddress = \"x\"\n[[nodes]]\nname = \"b\"\naddress = \"y\"\ncgroup_parent = \"flotilla-b\"\n",
        )
        .expect("valid");
        assert_eq!(config.nodes[0].cgroup_parent, "fl/all");
        assert_eq!(config.nodes[1].cgroup_parent, "flotilla-b");
        let config =
            parse_text("[cluster]\nname = \"c\"\n[[nodes]]\nname = \"a\"\naddress = \"x\"\n")
                .expect("valid");
        assert_eq!(config.nodes[0].cgroup_parent, DEFAULT_CGROUP_PARENT);
        for bad in ["/abs", "a/../b", "", "a b", "a//b"] {
            let msg = problems(&format!(
                "[cluster]\nname = \"c\"\n[[nodes]]\nname = \"a\"\naddress = \"x\"\ncgroup_parent = {bad:?}\n"
            ));
            assert!(msg.contains("nodes[0] (a).cgroup_parent"), "{bad}: {msg}");
        }
    }

    #[test]
    fn a_missing_file_says_how_to_make_one() {
        let err = load(Path::new("/nonexistent/cluster.toml")).expect_err("missing");
        assert!(err.to_string().contains("flotilla demo up"), "{err}");
    }
}
