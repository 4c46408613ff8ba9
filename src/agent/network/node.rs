//! The node's side of the pod network: the settings the controller gave
//! (`network.configure`), saved under the agent's root so that pods get
//! addresses with no controller connected and after the agent restarts; the
//! host-gw routes and the masquerade and FORWARD rules they imply; and the
//! CNI network built from them, once per settings.
//!
//! On disk: `ROOT/network/settings.json` (the settings), and under
//! `ROOT/network/cni/` the CNI state [`PodNetwork`] keeps (IP leases, saved
//! ADD results). A node that was never configured has no settings: its pods
//! get loopback only, as before pod networking existed.
//!
//! The settings are read from disk once and then kept: the daemon's pass
//! asks for them for every pod still waiting for an address, and only
//! [`NodeNetwork::configure`] writes the file (one agent owns a root), so
//! it replaces the kept copy as it writes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::masq;
use super::routes::{self, HostRoute};
use super::{DEFAULT_PLUGIN_DIRS, Ipv4Net, NetworkConfig, NetworkError, PodNetwork};
use crate::agent::objects::files::write_atomic;
use crate::agent::protocol::messages::{NetworkSettings, NetworkState};

/// Where CNI plugins are looked for, in order: the CNI convention, Debian's
/// `containernetworking-plugins`, then those flotilla uploaded (under the
/// agent's root, where the bootstrap puts them).
pub fn default_plugin_dirs(root: &Path) -> Vec<PathBuf> {
    DEFAULT_PLUGIN_DIRS
        .iter()
        .map(PathBuf::from)
        .chain([root.join("cni").join("bin")])
        .collect()
}

pub struct NodeNetwork {
    dir: PathBuf,
    plugin_dirs: Vec<PathBuf>,
    /// Serializes configure calls (file and routes change together).
    lock: Mutex<()>,
    /// settings.json as last read or written: `None` until first asked
    /// for, then `Some(None)` for no (or unreadable) settings.
    settings: Mutex<Option<Option<Arc<NetworkSettings>>>>,
    /// The CNI network of the kept settings, built once for them: it asks
    /// the plugins' CNI version once (four plugin runs) and holds the
    /// per-pod locks, both of which a network built per pod would lose.
    network: Mutex<Option<(Arc<NetworkSettings>, Arc<PodNetwork>)>>,
}

impl NodeNetwork {
    /// The node network of the agent rooted at `root`.
    pub fn new(root: &Path, plugin_dirs: Vec<PathBuf>) -> NodeNetwork {
        NodeNetwork {
            dir: root.join("network"),
            plugin_dirs,
            lock: Mutex::new(()),
            settings: Mutex::new(None),
            network: Mutex::new(None),
        }
    }

    fn settings_path(&self) -> PathBuf {
        self.dir.join("settings.json")
    }

    /// The settings last configured, if any (an unreadable file counts as
    /// none, and says so in the log, once).
    pub fn settings(&self) -> Option<NetworkSettings> {
        self.kept_settings().map(|s| (*s).clone())
    }

    /// The settings, read from disk only the first time. An unreadable
    /// file is kept as none too: the controller, finding the node without
    /// settings, configures it again, and that replaces the file and this.
    fn kept_settings(&self) -> Option<Arc<NetworkSettings>> {
        let mut kept = self.settings.lock().unwrap_or_else(|e| e.into_inner());
        kept.get_or_insert_with(|| self.read_settings().map(Arc::new))
            .clone()
    }

    fn read_settings(&self) -> Option<NetworkSettings> {
        let path = self.settings_path();
        let bytes = std::fs::read(&path).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(settings) => Some(settings),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "ignoring unreadable network settings");
                None
            }
        }
    }

    /// Checks, saves and applies `settings`: the routes are in place when
    /// this returns. Pods attached before keep their addresses.
    pub fn configure(&self, settings: NetworkSettings) -> Result<NetworkState, NetworkError> {
        let parsed = parse_settings(&settings)?;
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.kept_settings().as_deref() != Some(&settings) {
            self.save(settings)?;
        }
        routes::sync_routes(&parsed.routes)?;
        masq::ensure_node_rules(parsed.pod_subnet, parsed.cluster_cidr)?;
        Ok(self.state())
    }

    /// The node leaves its cluster: what [`Self::configure`] and the pods'
    /// bridge put on the host goes (flotilla's routes, its iptables chains
    /// and their jumps, the bridge), and the settings are forgotten, so no
    /// later start puts them back. The pods should be gone first: their
    /// veths go with the bridge's ports, their addresses with the state.
    pub fn leave(&self) -> Result<(), NetworkError> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        routes::sync_routes(&[])?;
        masq::remove_node_rules()?;
        routes::delete_link(super::DEFAULT_BRIDGE)?;
        let path = self.settings_path();
        if let Err(source) = std::fs::remove_file(&path)
            && source.kind() != std::io::ErrorKind::NotFound
        {
            return Err(NetworkError::Io { path, source });
        }
        *self.settings.lock().unwrap_or_else(|e| e.into_inner()) = Some(None);
        *self.network.lock().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(())
    }

    /// Writes `settings` to disk and keeps them. The write is atomic, so
    /// after a failure the file still holds what is kept.
    fn save(&self, settings: NetworkSettings) -> Result<(), NetworkError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| NetworkError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let bytes = serde_json::to_vec_pretty(&settings)
            .map_err(|e| NetworkError::BadSettings(e.to_string()))?;
        write_atomic(&self.dir, "settings.json", &bytes).map_err(|source| NetworkError::Io {
            path: self.settings_path(),
            source,
        })?;
        *self.settings.lock().unwrap_or_else(|e| e.into_inner()) = Some(Some(Arc::new(settings)));
        Ok(())
    }

    /// Puts the saved settings' routes and iptables rules back (an agent
    /// starting on a host that rebooted has lost them).
    pub fn restore(&self) -> Result<(), NetworkError> {
        let Some(settings) = self.kept_settings() else {
            return Ok(());
        };
        let parsed = parse_settings(&settings)?;
        routes::sync_routes(&parsed.routes)?;
        masq::ensure_node_rules(parsed.pod_subnet, parsed.cluster_cidr)
    }

    /// The settings, the node's addresses, and what keeps pods from getting
    /// an address, if anything.
    pub fn state(&self) -> NetworkState {
        // One look at the settings for both: the problem is the reported
        // settings' problem.
        let settings = self.kept_settings();
        let problem = match settings.clone().map(|s| self.network_for(s)) {
            Some(Ok(network)) => network.check_plugins().err().map(|e| e.to_string()),
            None => None,
            Some(Err(err)) => Some(err.to_string()),
        };
        NetworkState {
            settings: settings.map(|s| (*s).clone()),
            addresses: routes::node_addresses()
                .iter()
                .map(ToString::to_string)
                .collect(),
            problem,
        }
    }

    /// The CNI network pods attach to, once the node has settings.
    pub fn pod_network(&self) -> Result<Option<Arc<PodNetwork>>, NetworkError> {
        self.kept_settings()
            .map(|settings| self.network_for(settings))
            .transpose()
    }

    /// The CNI network of `settings`, built once for the settings kept.
    fn network_for(&self, settings: Arc<NetworkSettings>) -> Result<Arc<PodNetwork>, NetworkError> {
        let mut built = self.network.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((built_for, network)) = built.as_ref()
            && Arc::ptr_eq(built_for, &settings)
        {
            return Ok(network.clone());
        }
        let network = Arc::new(self.network_from(&settings)?);
        *built = Some((settings, network.clone()));
        Ok(network)
    }

    fn network_from(&self, settings: &NetworkSettings) -> Result<PodNetwork, NetworkError> {
        let parsed = parse_settings(settings)?;
        Ok(self.network_of(parsed.pod_subnet, parsed.cluster_cidr))
    }

    /// The CNI network for tearing down: like [`Self::pod_network`], but a
    /// node whose settings are gone still releases what it attached (DEL
    /// needs the plugins and the state directory, not the subnet).
    pub fn teardown_network(&self) -> Option<Arc<PodNetwork>> {
        if let Ok(Some(network)) = self.pod_network() {
            return Some(network);
        }
        let unknown = Ipv4Net::from_octets([0, 0, 0, 0], 24);
        self.dir
            .join("cni")
            .is_dir()
            .then(|| Arc::new(self.network_of(unknown, unknown)))
    }

    fn network_of(&self, pod_subnet: Ipv4Net, cluster_cidr: Ipv4Net) -> PodNetwork {
        PodNetwork::new(NetworkConfig {
            plugin_dirs: self.plugin_dirs.clone(),
            ..NetworkConfig::new(pod_subnet, cluster_cidr, self.dir.join("cni"))
        })
    }
}

struct ParsedSettings {
    pod_subnet: Ipv4Net,
    cluster_cidr: Ipv4Net,
    routes: Vec<HostRoute>,
}

fn parse_net(field: &str, text: &str) -> Result<Ipv4Net, NetworkError> {
    text.parse::<Ipv4Net>().map_err(|e| {
        NetworkError::BadSettings(format!(
            "{field} {text:?}: {e}; give an IPv4 subnet such as 10.88.1.0/24"
        ))
    })
}

fn parse_settings(settings: &NetworkSettings) -> Result<ParsedSettings, NetworkError> {
    let pod_subnet = parse_net("podSubnet", &settings.pod_subnet)?;
    let cluster_cidr = parse_net("clusterCidr", &settings.cluster_cidr)?;
    if pod_subnet.prefix > 30 {
        return Err(NetworkError::BadSettings(format!(
            "podSubnet {pod_subnet} has no room for a gateway and pods; give a /30 or larger"
        )));
    }
    if !cluster_cidr.contains_net(&pod_subnet) {
        return Err(NetworkError::BadSettings(format!(
            "podSubnet {pod_subnet} is not inside clusterCidr {cluster_cidr}"
        )));
    }
    let mut routes = Vec::new();
    for route in &settings.routes {
        let destination = parse_net("routes[].destination", &route.destination)?;
        let via = route.via.parse().map_err(|_| {
            NetworkError::BadSettings(format!(
                "routes[].via {:?} (node {}): give the node's IPv4 address",
                route.via, route.node
            ))
        })?;
        if destination.overlaps(&pod_subnet) {
            return Err(NetworkError::BadSettings(format!(
                "route to {destination} (node {}) overlaps this node's podSubnet {pod_subnet}",
                route.node
            )));
        }
        routes.push(HostRoute { destination, via });
    }
    Ok(ParsedSettings {
        pod_subnet,
        cluster_cidr,
        routes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::protocol::messages::NetworkRoute;

    fn settings(pod: &str, cluster: &str, routes: &[(&str, &str)]) -> NetworkSettings {
        NetworkSettings {
            pod_subnet: pod.into(),
            cluster_cidr: cluster.into(),
            routes: routes
                .iter()
                .map(|(d, v)| NetworkRoute {
                    destination: d.to_string(),
                    via: v.to_string(),
                    node: "node2".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn settings_are_checked_before_anything_is_saved() {
        let good = settings(
            "10.88.1.0/24",
            "10.88.0.0/16",
            &[("10.88.2.0/24", "10.77.0.12")],
        );
        let parsed = parse_settings(&good).expect("valid");
        assert_eq!(parsed.routes.len(), 1);
        for (bad, says) in [
            (settings("10.88.1.0", "10.88.0.0/16", &[]), "podSubnet"),
            (settings("10.89.1.0/24", "10.88.0.0/16", &[]), "not inside"),
            (settings("10.88.1.0/31", "10.88.0.0/16", &[]), "no room"),
            (
                settings(
                    "10.88.1.0/24",
                    "10.88.0.0/16",
                    &[("10.88.1.0/24", "10.77.0.12")],
                ),
                "overlaps",
            ),
            (
                settings("10.88.1.0/24", "10.88.0.0/16", &[("10.88.2.0/24", "node2")]),
                "routes[].via",
            ),
        ] {
            let err = parse_settings(&bad).err().expect("refused").to_string();
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn an_unconfigured_node_has_no_pod_network() {
        let dir = std::env::temp_dir().join(format!("flotilla-nodenet-{}", std::process::id()));
        let network = NodeNetwork::new(&dir, default_plugin_dirs(&dir));
        assert!(network.settings().is_none());
        assert!(network.pod_network().expect("no settings").is_none());
        assert!(network.teardown_network().is_none());
        assert!(network.state().settings.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_settings_are_read_once_and_replaced_as_they_are_saved() {
        let root = tempfile::tempdir().expect("tempdir");
        let network = NodeNetwork::new(root.path(), default_plugin_dirs(root.path()));
        let first = settings(
            "10.88.1.0/24",
            "10.88.0.0/16",
            &[("10.88.2.0/24", "10.77.0.12")],
        );
        // As an earlier agent left them.
        let file = root.path().join("network").join("settings.json");
        std::fs::create_dir_all(file.parent().expect("dir")).expect("mkdir");
        std::fs::write(&file, serde_json::to_vec(&first).expect("json")).expect("write");
        assert_eq!(network.settings(), Some(first.clone()));
        // Changed behind its back (nothing but `configure` writes it): every
        // reader goes on with what was read, the file is not read again.
        std::fs::write(&file, b"not json").expect("write");
        assert_eq!(network.settings(), Some(first.clone()));
        let state = network.state();
        assert_eq!(state.settings, Some(first.clone()));
        assert_eq!(
            network
                .pod_network()
                .expect("valid settings")
                .expect("a network")
                .config()
                .pod_subnet
                .to_string(),
            "10.88.1.0/24"
        );
        // Saving replaces what is kept, and what the next agent reads.
        let second = settings("10.88.3.0/24", "10.88.0.0/16", &[]);
        network.save(second.clone()).expect("save");
        assert_eq!(network.settings(), Some(second.clone()));
        let restarted = NodeNetwork::new(root.path(), default_plugin_dirs(root.path()));
        assert_eq!(restarted.settings(), Some(second));
    }

    #[test]
    fn no_settings_are_remembered_too_until_saved() {
        let root = tempfile::tempdir().expect("tempdir");
        let network = NodeNetwork::new(root.path(), default_plugin_dirs(root.path()));
        assert!(network.settings().is_none());
        let file = root.path().join("network").join("settings.json");
        std::fs::create_dir_all(file.parent().expect("dir")).expect("mkdir");
        let saved = settings("10.88.1.0/24", "10.88.0.0/16", &[]);
        std::fs::write(&file, serde_json::to_vec(&saved).expect("json")).expect("write");
        assert!(network.settings().is_none(), "the file was read again");
        network.save(saved.clone()).expect("save");
        assert_eq!(network.settings(), Some(saved));
    }
}
