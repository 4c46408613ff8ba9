//! Pod networking: the agent as a CNI runtime, and the node's host-gw routes.
//!
//! This module owns two things on a node:
//!
//! * **The pods' network attachments** ([`PodNetwork`]). The agent plays the
//!   runtime's part of the CNI spec: it runs the standard plugins
//!   (containernetworking-plugins: `loopback`, then the list `bridge` with
//!   `host-local` IPAM, then `portmap`) for ADD, CHECK and DEL against a pod's
//!   network namespace, and keeps each ADD result under
//!   `state_dir/results/<id>.json` so CHECK and DEL get their `prevResult`
//!   and status survives an agent restart. Each node's pods get addresses
//!   from the node's own /24 of the cluster CIDR, behind a bridge
//!   (`flotilla0`) that holds the gateway address.
//! * **The routes to other nodes' pods** ([`routes`]): one host-gw route per
//!   other node (`10.88.4.0/24 via <node4's address>`) in the main table,
//!   marked with a private route protocol so flotilla finds and removes only
//!   its own.
//!
//! Everything here is blocking (plugins are processes, netlink is a socket):
//! call it from a blocking thread (`tokio::task::spawn_blocking`). Plugins and
//! netlink act on the **calling thread's** network namespace, which for the
//! agent is the node's.
//!
//! What a caller must provide on the node: the four plugins (or let flotilla
//! upload them into a dir of `plugin_dirs`) and `iptables` on `PATH` (the
//! node's masquerade rule and portmap use it). What a pod sends outside the
//! cluster CIDR leaves with the node's address (one nat rule per node,
//! [`masq::ensure_node_rules`], set by [`node::NodeNetwork`] with the routes);
//! pods on other nodes see the pod's own address. The same call lets the pod
//! network's traffic through FORWARD when the host's policy there is DROP.

mod conf;
mod ipnet;
pub(crate) mod masq;
pub mod node;
mod plugin;
pub mod routes;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{debug, info, warn};

pub use ipnet::{Ipv4Net, ParseIpv4NetError};

/// The bridge pods hang off, unless configured otherwise.
pub const DEFAULT_BRIDGE: &str = "flotilla0";
/// The CNI network name, unless configured otherwise. It names host-local's
/// lease directory and is hashed into bridge's and portmap's chain names.
pub const DEFAULT_NETWORK_NAME: &str = "flotilla";
/// Where plugins are looked for by default: the upstream convention first,
/// then Debian's `containernetworking-plugins`.
pub const DEFAULT_PLUGIN_DIRS: [&str; 2] = ["/opt/cni/bin", "/usr/lib/cni"];
/// Every plugin this network runs (`host-local` is run by `bridge`).
pub const REQUIRED_PLUGINS: [&str; 4] = ["bridge", "host-local", "portmap", "loopback"];
/// How long one plugin call may take before it is killed.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// CNI versions flotilla speaks, preferred first. 0.4.0 is the oldest with
/// CHECK and `prevResult` on DEL, which idempotent ADD and cleanup rely on.
const CNI_VERSIONS: [&str; 2] = ["1.0.0", "0.4.0"];

/// A node's pod network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// This node's /24, e.g. 10.88.3.0/24; the gateway is its first host (.1).
    pub pod_subnet: Ipv4Net,
    /// The whole pod network, e.g. 10.88.0.0/16.
    pub cluster_cidr: Ipv4Net,
    /// Searched in order for the plugins, e.g. [/opt/cni/bin, /usr/lib/cni]
    /// or the dir flotilla uploaded them to. All of them form `CNI_PATH`.
    pub plugin_dirs: Vec<PathBuf>,
    /// Agent-owned: host-local's leases (`ipam/`) and the saved ADD results
    /// (`results/`). Not /var/lib/cni: demo nodes share one filesystem.
    pub state_dir: PathBuf,
    /// Bridge name, default [`DEFAULT_BRIDGE`].
    pub bridge: String,
    /// CNI network name, default [`DEFAULT_NETWORK_NAME`].
    pub network_name: String,
}

impl NetworkConfig {
    /// A configuration with the default bridge, network name and plugin dirs.
    pub fn new(pod_subnet: Ipv4Net, cluster_cidr: Ipv4Net, state_dir: PathBuf) -> NetworkConfig {
        NetworkConfig {
            pod_subnet,
            cluster_cidr,
            plugin_dirs: DEFAULT_PLUGIN_DIRS.iter().map(PathBuf::from).collect(),
            state_dir,
            bridge: DEFAULT_BRIDGE.to_string(),
            network_name: DEFAULT_NETWORK_NAME.to_string(),
        }
    }
}

/// A `hostPort` of a pod: traffic to the node's `host_port` goes to the pod's
/// `container_port`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    /// "tcp" or "udp" (portmap also takes "sctp").
    pub protocol: String,
    /// Only on this node address; `None` for all of them.
    pub host_ip: Option<String>,
}

/// A pod's place on the network, as the last ADD made it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Attachment {
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    /// The interface inside the pod ("eth0").
    pub interface: String,
    /// The raw ADD result, kept for CHECK's and DEL's `prevResult`.
    pub result: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(
        "CNI plugin `{plugin}` not found in {}: install containernetworking-plugins \
         (`apt-get install containernetworking-plugins`, which puts them in /usr/lib/cni) \
         or let flotilla upload them to the node",
        display_dirs(.searched)
    )]
    PluginMissing {
        plugin: String,
        searched: Vec<PathBuf>,
    },
    #[error(
        "CNI plugin `{plugin}` failed on {command}{}: {message}",
        .code.map(|c| format!(" (code {c})")).unwrap_or_default()
    )]
    PluginFailed {
        plugin: String,
        /// ADD, DEL, CHECK or VERSION.
        command: String,
        code: Option<u64>,
        /// The plugin's error `msg` and `details`, or its stderr.
        message: String,
    },
    #[error("CNI plugin `{plugin}` returned an unusable result: {message}")]
    BadResult { plugin: String, message: String },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("netlink: {0}")]
    Netlink(String),
    /// A container id, port or namespace path flotilla cannot hand to CNI.
    #[error("{0}")]
    InvalidInput(String),
    /// Network settings from the controller that cannot be used.
    #[error("{0}")]
    BadSettings(String),
    /// CHECK for an id that has no saved ADD result.
    #[error("pod {container_id} has no network attachment on this node: ADD it first")]
    NotAttached { container_id: String },
}

fn display_dirs(dirs: &[PathBuf]) -> String {
    if dirs.is_empty() {
        return "(no plugin dirs configured)".into();
    }
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What `state_dir/results/<id>.json` holds: the ADD result and what it was
/// made with, so CHECK and DEL repeat the same call.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Saved {
    container_id: String,
    cni_version: String,
    netns: PathBuf,
    ifname: String,
    ports: Vec<PortMapping>,
    result: Value,
}

/// The agent's CNI runtime for one node's pod network. Share it (`Arc`):
/// calls for different pods run in parallel, calls for one pod queue.
pub struct PodNetwork {
    config: NetworkConfig,
    timeout: Duration,
    /// The CNI version every plugin speaks, asked once.
    version: Mutex<Option<String>>,
    busy: IdLocks,
}

impl PodNetwork {
    pub fn new(config: NetworkConfig) -> PodNetwork {
        PodNetwork {
            config,
            timeout: DEFAULT_PLUGIN_TIMEOUT,
            version: Mutex::new(None),
            busy: IdLocks::default(),
        }
    }

    /// How long one plugin call may run before it is killed
    /// (default [`DEFAULT_PLUGIN_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> PodNetwork {
        self.timeout = timeout;
        self
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// The network configuration list handed to the plugins, for display
    /// and debugging (`cni_version` as negotiated).
    pub fn conflist(&self, cni_version: &str) -> Value {
        conf::conflist(&self.config, cni_version)
    }

    /// The plugins this network needs (bridge, host-local, portmap,
    /// loopback), or [`NetworkError::PluginMissing`] naming the plugin and
    /// every dir searched.
    pub fn check_plugins(&self) -> Result<(), NetworkError> {
        for name in REQUIRED_PLUGINS {
            plugin::find(&self.config.plugin_dirs, name)?;
        }
        Ok(())
    }

    /// CNI ADD for `container_id` (the pod uid) in the namespace at `netns`:
    /// `lo` up, then `eth0` on the bridge with an address from the node's
    /// subnet and the pod's host ports. Idempotent: an id that already has a
    /// saved result gets it back after a passing CHECK; if CHECK fails, or the
    /// namespace or ports differ, the old attachment is deleted and a fresh
    /// one made, so one pod never holds two leases.
    pub fn add(
        &self,
        container_id: &str,
        netns: &Path,
        ports: &[PortMapping],
    ) -> Result<Attachment, NetworkError> {
        valid_id(container_id)?;
        valid_ports(ports)?;
        if !is_netns(netns) {
            return Err(NetworkError::InvalidInput(format!(
                "{} is not a network namespace (an nsfs bind mount, or /proc/PID/ns/net): \
                 create the pod sandbox before its network",
                netns.display()
            )));
        }
        let _busy = self.busy.lock(container_id);
        self.check_plugins()?;

        if let Some(saved) = self.load(container_id) {
            if saved.netns == netns && saved.ports == ports {
                match self.check_saved(&saved, netns, ports) {
                    Ok(()) => {
                        debug!(pod = container_id, "network already attached, CHECK passed");
                        return self.attachment_of(&saved);
                    }
                    Err(e) => warn!(
                        pod = container_id,
                        error = %e,
                        "saved network attachment fails CHECK; deleting and adding it again"
                    ),
                }
            } else {
                info!(
                    pod = container_id,
                    "network namespace or ports changed; deleting and adding the attachment again"
                );
            }
            self.del_saved(
                container_id,
                Some(saved.netns.as_path()),
                &saved.ports,
                Some(&saved),
            )?;
        }

        let version = self.cni_version()?;
        self.add_new(container_id, netns, ports, &version)
    }

    fn add_new(
        &self,
        id: &str,
        netns: &Path,
        ports: &[PortMapping],
        version: &str,
    ) -> Result<Attachment, NetworkError> {
        let lo = conf::loopback(&self.config.network_name, version);
        let list = conf::conflist(&self.config, version);
        let runtime = conf::runtime_config(ports);
        let mut prev: Option<Value> = None;
        let outcome = std::thread::scope(|scope| {
            // `lo` and `eth0` are independent: loopback runs beside the
            // list, so a pod waits for the slower of the two rather than
            // their sum (loopback is ~8 ms of ~28 here). The thread starts
            // in this thread's network namespace, as the plugins need.
            let loopback = scope.spawn(|| self.exec("loopback", "ADD", id, netns, "lo", &lo));
            let attached = (|| -> Result<Attachment, NetworkError> {
                for plugin in chain(&list, ports) {
                    let kind = plugin_type(plugin);
                    let stdin = conf::plugin_stdin(&list, plugin, prev.as_ref(), &runtime);
                    let result = self
                        .exec(kind, "ADD", id, netns, conf::POD_IFNAME, &stdin)?
                        .ok_or_else(|| NetworkError::BadResult {
                            plugin: kind.to_string(),
                            message: "ADD succeeded but printed no result".into(),
                        })?;
                    prev = Some(result);
                }
                let result = prev.as_ref().expect("the list has plugins");
                let attachment = conf::attachment(result, conf::POD_IFNAME).map_err(|message| {
                    NetworkError::BadResult {
                        plugin: "bridge".into(),
                        message,
                    }
                })?;
                if !self.config.pod_subnet.contains(attachment.ip) {
                    return Err(NetworkError::BadResult {
                        plugin: "host-local".into(),
                        message: format!(
                            "leased {} outside the node's pod subnet {}; remove stale leases under {}",
                            attachment.ip,
                            self.config.pod_subnet.network(),
                            self.lease_dir().display()
                        ),
                    });
                }
                Ok(attachment)
            })();
            let looped = loopback.join().unwrap_or_else(|_| {
                Err(NetworkError::PluginFailed {
                    plugin: "loopback".into(),
                    command: "ADD".into(),
                    code: None,
                    message: "the thread running it panicked (see the agent's log)".into(),
                })
            });
            let attachment = attached?;
            looped?;
            self.save(&Saved {
                container_id: id.to_string(),
                cni_version: version.to_string(),
                netns: netns.to_path_buf(),
                ifname: conf::POD_IFNAME.to_string(),
                ports: ports.to_vec(),
                result: prev.clone().expect("the list has plugins"),
            })?;
            Ok(attachment)
        });

        if let Err(e) = &outcome {
            // The spec asks the runtime to DEL after a failed ADD: whatever
            // half was made (a lease, a veth, nat rules) must not outlive it.
            let ip = prev
                .as_ref()
                .and_then(|r| conf::attachment(r, conf::POD_IFNAME).ok())
                .map(|a| a.ip);
            if let Err(undo) = self.del_plugins(id, netns, ports, version, prev.as_ref(), ip) {
                warn!(pod = id, error = %undo, "cleaning up after a failed ADD");
            }
            debug!(pod = id, error = %e, "network ADD failed");
        }
        outcome
    }

    /// CNI CHECK of the saved attachment against the pod's namespace.
    pub fn check(
        &self,
        container_id: &str,
        netns: &Path,
        ports: &[PortMapping],
    ) -> Result<(), NetworkError> {
        valid_id(container_id)?;
        valid_ports(ports)?;
        let _busy = self.busy.lock(container_id);
        let saved = self
            .load(container_id)
            .ok_or_else(|| NetworkError::NotAttached {
                container_id: container_id.to_string(),
            })?;
        self.check_saved(&saved, netns, ports)
    }

    fn check_saved(
        &self,
        saved: &Saved,
        netns: &Path,
        ports: &[PortMapping],
    ) -> Result<(), NetworkError> {
        let id = &saved.container_id;
        let version = &saved.cni_version;
        let lo = conf::loopback(&self.config.network_name, version);
        self.exec("loopback", "CHECK", id, netns, "lo", &lo)?;
        let list = conf::conflist(&self.config, version);
        let runtime = conf::runtime_config(ports);
        for plugin in chain(&list, ports) {
            let kind = plugin_type(plugin);
            let stdin = conf::plugin_stdin(&list, plugin, Some(&saved.result), &runtime);
            match self.exec(kind, "CHECK", id, netns, &saved.ifname, &stdin) {
                Err(e) if portmap_ipv6_check_bug(&e, &saved.result) => {
                    debug!(pod = %id, "ignoring portmap's IPv6 CHECK of an IPv4-only pod (plugins#819)");
                }
                other => {
                    other?;
                }
            }
        }
        Ok(())
    }

    /// CNI DEL, idempotent: works when the namespace is already gone (or
    /// `netns` is `None`), when nothing was ever added, and twice in a row.
    /// Releases the lease, the portmap and masquerade rules and the veth, then
    /// forgets the saved result. On error the saved result is kept, so a
    /// retry still has the `prevResult`. Empty `ports` means "the ones ADD
    /// was given".
    pub fn del(
        &self,
        container_id: &str,
        netns: Option<&Path>,
        ports: &[PortMapping],
    ) -> Result<(), NetworkError> {
        valid_id(container_id)?;
        valid_ports(ports)?;
        let _busy = self.busy.lock(container_id);
        let saved = self.load(container_id);
        self.del_saved(container_id, netns, ports, saved.as_ref())
    }

    fn del_saved(
        &self,
        id: &str,
        netns: Option<&Path>,
        ports: &[PortMapping],
        saved: Option<&Saved>,
    ) -> Result<(), NetworkError> {
        let version = match saved {
            Some(saved) => saved.cni_version.clone(),
            None => self.cni_version()?,
        };
        // The spec: CNI_NETNS may be empty for DEL when the namespace is
        // gone. A path that no longer holds a namespace counts as gone (a
        // plugin would fail to open it); the saved path is the fallback.
        let netns = netns
            .filter(|p| is_netns(p))
            .or(saved.map(|s| s.netns.as_path()).filter(|p| is_netns(p)))
            .unwrap_or(Path::new(""));
        let ports = match (ports, saved) {
            ([], Some(saved)) => &saved.ports[..],
            _ => ports,
        };
        let prev = saved.map(|s| &s.result);
        let ip = prev
            .and_then(|r| conf::attachment(r, conf::POD_IFNAME).ok())
            .map(|a| a.ip);
        self.del_plugins(id, netns, ports, &version, prev, ip)?;
        match fs::remove_file(self.result_path(id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(NetworkError::Io {
                path: self.result_path(id),
                source: e,
            }),
        }
    }

    /// DEL through every plugin, last added first; carries on past a
    /// failure so one broken plugin does not strand the others' state, and
    /// returns the first error.
    fn del_plugins(
        &self,
        id: &str,
        netns: &Path,
        ports: &[PortMapping],
        version: &str,
        prev: Option<&Value>,
        pod_ip: Option<Ipv4Addr>,
    ) -> Result<(), NetworkError> {
        let list = conf::conflist(&self.config, version);
        let runtime = conf::runtime_config(ports);
        let mut first_error = None;
        for plugin in chain(&list, ports).into_iter().rev() {
            let kind = plugin_type(plugin);
            let stdin = conf::plugin_stdin(&list, plugin, prev, &runtime);
            match self.exec(kind, "DEL", id, netns, conf::POD_IFNAME, &stdin) {
                Ok(_) => {
                    if kind == "bridge"
                        && let Some(ip) = pod_ip
                    {
                        match masq::remove_leftover(&self.config.network_name, id, ip) {
                            Ok(true) => {
                                debug!(pod = id, "removed bridge's leftover masquerade chain")
                            }
                            Ok(false) => {}
                            Err(e) => {
                                warn!(pod = id, error = %e, "network DEL");
                                first_error.get_or_insert(e);
                            }
                        }
                    }
                }
                Err(e) => {
                    warn!(pod = id, error = %e, "network DEL");
                    first_error.get_or_insert(e);
                }
            }
        }
        // loopback has nothing to undo without a namespace.
        if !netns.as_os_str().is_empty() {
            let lo = conf::loopback(&self.config.network_name, version);
            if let Err(e) = self.exec("loopback", "DEL", id, netns, "lo", &lo) {
                warn!(pod = id, error = %e, "network DEL");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The saved attachment for an id, if any (for status after an agent
    /// restart).
    pub fn attachment(&self, container_id: &str) -> Option<Attachment> {
        valid_id(container_id).ok()?;
        let saved = self.load(container_id)?;
        self.attachment_of(&saved).ok()
    }

    /// Ids that have saved results, sorted (so the caller can DEL the ones
    /// whose pods no longer exist).
    pub fn attached_ids(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.results_dir()) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let id = name.strip_suffix(".json")?;
                valid_id(id).ok()?;
                Some(id.to_string())
            })
            .collect();
        ids.sort();
        ids
    }

    /// Ids holding a host-local lease in this network's lease directory,
    /// sorted and without repeats. Each lease is a file named by its
    /// address whose first line is the container id (containernetworking-
    /// plugins 0.8 and later add the interface on a second line). With
    /// [`Self::attached_ids`], what a sweep must check: a lease whose result
    /// was lost (a crash before it reached the disk, or during an ADD) is
    /// released only by its container id.
    pub fn leased_ids(&self) -> Vec<String> {
        let dir = self.lease_dir();
        let Ok(entries) = fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter(|entry| {
                // Leases only: not `lock` or `last_reserved_ip.0`.
                entry
                    .file_name()
                    .to_str()
                    .is_some_and(|name| name.parse::<std::net::IpAddr>().is_ok())
            })
            .filter_map(|entry| {
                let text = fs::read_to_string(entry.path()).ok()?;
                let id = text.lines().next()?.trim();
                valid_id(id).ok()?;
                Some(id.to_string())
            })
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// host-local's directory for this network: its `dataDir` joined with
    /// the network name.
    fn lease_dir(&self) -> PathBuf {
        self.config
            .state_dir
            .join("ipam")
            .join(&self.config.network_name)
    }

    fn attachment_of(&self, saved: &Saved) -> Result<Attachment, NetworkError> {
        conf::attachment(&saved.result, &saved.ifname).map_err(|message| NetworkError::BadResult {
            plugin: "bridge".into(),
            message,
        })
    }

    /// The CNI version to speak: 1.0.0 when every plugin lists it, else 0.4.0.
    fn cni_version(&self) -> Result<String, NetworkError> {
        let mut cached = self.version.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(version) = cached.as_ref() {
            return Ok(version.clone());
        }
        let mut common: Vec<&str> = CNI_VERSIONS.to_vec();
        for name in REQUIRED_PLUGINS {
            let stdin = serde_json::json!({"cniVersion": CNI_VERSIONS[0]});
            let reply = self.exec(name, "VERSION", "", Path::new(""), "", &stdin)?;
            let supported = plugin::supported_versions(name, reply)?;
            common.retain(|v| supported.iter().any(|s| s == v));
            if common.is_empty() {
                return Err(NetworkError::BadResult {
                    plugin: name.to_string(),
                    message: format!(
                        "it speaks CNI {} and flotilla needs {}; install containernetworking-plugins 0.8 or newer",
                        supported.join(", "),
                        CNI_VERSIONS.join(" or ")
                    ),
                });
            }
        }
        let version = common[0].to_string();
        debug!(%version, "CNI version");
        *cached = Some(version.clone());
        Ok(version)
    }

    fn cni_path(&self) -> OsString {
        std::env::join_paths(&self.config.plugin_dirs).unwrap_or_else(|_| {
            // A dir with ':' in it cannot be on CNI_PATH; keep the others.
            std::env::join_paths(
                self.config
                    .plugin_dirs
                    .iter()
                    .filter(|d| !d.as_os_str().as_encoded_bytes().contains(&b':')),
            )
            .unwrap_or_default()
        })
    }

    fn exec(
        &self,
        plugin_name: &str,
        command: &str,
        id: &str,
        netns: &Path,
        ifname: &str,
        stdin: &Value,
    ) -> Result<Option<Value>, NetworkError> {
        let path = plugin::find(&self.config.plugin_dirs, plugin_name)?;
        let input = serde_json::to_vec(stdin).expect("JSON values serialize");
        let cni_path = self.cni_path();
        debug!(plugin = plugin_name, command, pod = id, "CNI");
        plugin::run(
            plugin_name,
            &path,
            &plugin::Call {
                command,
                container_id: id,
                netns,
                ifname,
                cni_path: &cni_path,
                stdin: &input,
                timeout: self.timeout,
            },
        )
    }

    fn results_dir(&self) -> PathBuf {
        self.config.state_dir.join("results")
    }

    fn result_path(&self, id: &str) -> PathBuf {
        self.results_dir().join(format!("{id}.json"))
    }

    /// The saved result, `None` when there is none or it cannot be read (a
    /// torn or foreign file: DEL without `prevResult` still releases the
    /// lease, which host-local finds by container id).
    fn load(&self, id: &str) -> Option<Saved> {
        let path = self.result_path(id);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                warn!(path = %path.display(), error = %e, "reading a saved CNI result");
                return None;
            }
        };
        match serde_json::from_slice::<Saved>(&bytes) {
            Ok(saved) if saved.container_id == id => Some(saved),
            Ok(_) => {
                warn!(path = %path.display(), "saved CNI result names another pod; ignoring it");
                None
            }
            Err(e) => {
                warn!(path = %path.display(), error = %e, "saved CNI result is unreadable; ignoring it");
                None
            }
        }
    }

    /// Writes the result to a temporary file and renames it into place, so
    /// a reader (or an agent killed mid-write) sees the old result or the
    /// new one, never half.
    ///
    /// Not synced: an fsync of the file and of its directory cost 5 to 15 ms
    /// of every pod's start on a disk mounted with `discard`, and no crash
    /// needs them:
    ///
    /// * The agent process dying (killed, a panic) loses nothing: the
    ///   written file is in the page cache, and the next agent reads it.
    /// * The kernel dying (power loss, a panic) takes every network
    ///   namespace, veth and iptables rule with it, so of a pod's attachment
    ///   only files can outlive it: this result, and host-local's lease
    ///   (`<state_dir>/ipam/<network>/<ip>`, holding the container id, which
    ///   host-local does not sync either). Whichever of the two reached the
    ///   disk, the agent's start-up sweep ([`Self::leased_ids`] beside
    ///   [`Self::attached_ids`]) DELs every id whose pod is gone; a lease
    ///   without a readable result gets DEL without `prevResult`, which
    ///   host-local serves by container id and interface. A pod still on
    ///   record is attached again by its next ADD: when its result is lost
    ///   and its lease is not, host-local refuses the duplicate, the failed
    ///   ADD's DEL releases the lease, and the next pass's ADD succeeds.
    ///
    /// So no crash leaks an address, and none leaves a pod with a result
    /// naming an address it does not hold.
    fn save(&self, saved: &Saved) -> Result<(), NetworkError> {
        let dir = self.results_dir();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| NetworkError::Io { path, source }
        };
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = self.result_path(&saved.container_id);
        let tmp = dir.join(format!(".{}.json.tmp", saved.container_id));
        let bytes = serde_json::to_vec_pretty(saved).expect("JSON values serialize");
        fs::write(&tmp, &bytes).map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))
    }
}

/// portmap before containernetworking-plugins 1.2 checks for an IPv6 DNAT
/// chain whenever ip6tables works, even for a pod without an IPv6 address,
/// so its CHECK of every IPv4-only pod with ports fails
/// (containernetworking/plugins#819). It checks IPv4 first, so this exact
/// failure means the IPv4 rules passed; any other failure still counts.
fn portmap_ipv6_check_bug(error: &NetworkError, result: &Value) -> bool {
    let NetworkError::PluginFailed {
        plugin, message, ..
    } = error
    else {
        return false;
    };
    let has_ipv6 = result["ips"].as_array().is_some_and(|ips| {
        ips.iter()
            .any(|ip| ip["address"].as_str().is_some_and(|a| a.contains(':')))
    });
    plugin == "portmap" && message.starts_with("could not check ipv6 dnat") && !has_ipv6
}

fn plugins(list: &Value) -> &[Value] {
    list["plugins"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The plugins of `list` a pod with `ports` runs: portmap only when it
/// has host ports (with none it does nothing but cost an exec, a few ms of
/// every pod's start, and the same at CHECK and DEL).
fn chain<'a>(list: &'a Value, ports: &[PortMapping]) -> Vec<&'a Value> {
    plugins(list)
        .iter()
        .filter(|p| !ports.is_empty() || plugin_type(p) != "portmap")
        .collect()
}

fn plugin_type(plugin: &Value) -> &str {
    plugin["type"].as_str().unwrap_or_default()
}

/// The spec's container id rule (`[A-Za-z0-9][A-Za-z0-9_.-]*`); it also
/// keeps the id safe as a file name under `results/`.
fn valid_id(id: &str) -> Result<(), NetworkError> {
    let mut bytes = id.bytes();
    let ok = id.len() <= 255
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(NetworkError::InvalidInput(format!(
            "`{id}` is not a CNI container id: use letters, digits, '_', '.', '-', starting \
             with a letter or digit"
        )))
    }
}

fn valid_ports(ports: &[PortMapping]) -> Result<(), NetworkError> {
    for p in ports {
        if p.host_port == 0 || p.container_port == 0 {
            return Err(NetworkError::InvalidInput(format!(
                "port mapping {}:{} has a zero port",
                p.host_port, p.container_port
            )));
        }
        if !matches!(p.protocol.as_str(), "tcp" | "udp" | "sctp") {
            return Err(NetworkError::InvalidInput(format!(
                "port mapping {}:{} has protocol `{}`: use tcp, udp or sctp (lower case)",
                p.host_port, p.container_port, p.protocol
            )));
        }
        if let Some(ip) = p.host_ip.as_deref().filter(|ip| !ip.is_empty())
            && ip.parse::<std::net::IpAddr>().is_err()
        {
            return Err(NetworkError::InvalidInput(format!(
                "port mapping {}:{} has host IP `{ip}`, which is not an IP address",
                p.host_port, p.container_port
            )));
        }
    }
    Ok(())
}

/// Whether `path` is a network namespace handle (nsfs): what plugins need
/// for CNI_NETNS.
fn is_netns(path: &Path) -> bool {
    !path.as_os_str().is_empty()
        && nix::sys::statfs::statfs(path)
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

/// One lock per container id: concurrent calls for one pod would race on
/// its saved result and its lease; different pods need not wait.
#[derive(Default)]
struct IdLocks {
    held: Mutex<HashSet<String>>,
    released: Condvar,
}

struct IdGuard<'a> {
    locks: &'a IdLocks,
    id: String,
}

impl IdLocks {
    fn lock(&self, id: &str) -> IdGuard<'_> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        while held.contains(id) {
            held = self.released.wait(held).unwrap_or_else(|e| e.into_inner());
        }
        held.insert(id.to_string());
        IdGuard {
            locks: self,
            id: id.to_string(),
        }
    }
}

impl Drop for IdGuard<'_> {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock().unwrap_or_else(|e| e.into_inner());
        held.remove(&self.id);
        self.locks.released.notify_all();
    }
}
