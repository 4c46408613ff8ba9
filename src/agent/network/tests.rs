//! Tests of the CNI runtime and the route sync.
//!
//! Two kinds:
//!
//! * **Fake plugins** (any user): shell scripts standing in for the four
//!   plugins, which log their stdin and environment, so the calls flotilla
//!   makes (order, `prevResult`, `runtimeConfig`, version fallback, error
//!   handling, the timeout) are checked exactly without touching the kernel.
//! * **Kernel** (root, with containernetworking-plugins in /usr/lib/cni):
//!   the real plugins against real namespaces. Each test makes a throwaway
//!   "node" namespace (`ip netns add flotilla-t-<pid>-<tag>-n`) and pod
//!   namespaces, and runs every PodNetwork call and route sync on a thread
//!   that `setns`-ed into the node namespace: plugins and netlink sockets
//!   act on the calling thread's namespace (a spawned child inherits it),
//!   which is exactly how the agent uses this module, so no `pre_exec`
//!   (unsafe) and no `ip netns exec` wrapper is needed. A fresh thread per
//!   call, because libtest may run a test on a thread (or, with one test
//!   thread, the main thread) that later runs other tests. The bridge,
//!   veths and nat rules all live inside the node namespace, so deleting it
//!   (the guard's Drop, also on panic) removes everything a failed test
//!   left; the host's own network is never touched.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tempfile::TempDir;

use super::routes::{HostRoute, list_routes, next_hop, node_addresses, sync_routes};
use super::*;

const SYSTEM_PLUGINS: &str = "/usr/lib/cni";

// ---------------------------------------------------------------- helpers

/// Why the kernel tests cannot run here, if they cannot.
fn kernel_skip_reason() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("not root".into());
    }
    if !Path::new(SYSTEM_PLUGINS).join("bridge").exists() {
        return Some(format!(
            "no {SYSTEM_PLUGINS}/bridge (install containernetworking-plugins)"
        ));
    }
    for tool in ["ip", "iptables", "busybox"] {
        if Command::new(tool).arg("--help").output().is_err() {
            return Some(format!("no `{tool}` on PATH"));
        }
    }
    None
}

macro_rules! require_kernel {
    () => {
        if let Some(why) = kernel_skip_reason() {
            eprintln!("skipping: {why}");
            return;
        }
    };
}

fn ip_cmd(args: &[&str]) -> Output {
    Command::new("ip").args(args).output().expect("run ip")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A named network namespace (`ip netns add`), deleted on drop.
struct Netns {
    name: String,
    deleted: bool,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("flotilla-t-{}-{tag}", std::process::id());
        // A namespace left by a crashed earlier run of this pid is stale.
        let _ = ip_cmd(&["netns", "del", &name]);
        let out = ip_cmd(&["netns", "add", &name]);
        assert!(out.status.success(), "ip netns add {name}: {}", text(&out));
        Netns {
            name,
            deleted: false,
        }
    }

    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Runs a command inside the namespace (`ip netns exec`).
    fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .expect("run ip netns exec")
    }

    fn exec_ok(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        assert!(
            out.status.success(),
            "{args:?} in {}: {}",
            self.name,
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `f` on a fresh thread inside this namespace.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = self.path();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let ns = fs::File::open(&path).expect("open the namespace");
                    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                        .expect("setns into the namespace");
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    fn delete(&mut self) {
        if !self.deleted {
            let _ = ip_cmd(&["netns", "del", &self.name]);
            self.deleted = true;
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.delete();
    }
}

fn test_config(state: &Path, plugin_dirs: Vec<PathBuf>) -> NetworkConfig {
    NetworkConfig {
        pod_subnet: "10.88.3.0/24".parse().unwrap(),
        cluster_cidr: "10.88.0.0/16".parse().unwrap(),
        plugin_dirs,
        state_dir: state.to_path_buf(),
        bridge: DEFAULT_BRIDGE.into(),
        network_name: DEFAULT_NETWORK_NAME.into(),
    }
}

fn tcp(host_port: u16, container_port: u16) -> PortMapping {
    PortMapping {
        host_port,
        container_port,
        protocol: "tcp".into(),
        host_ip: None,
    }
}

/// A node namespace, a pod namespace and a PodNetwork using the real plugins.
struct Kernel {
    // Fields drop in order: namespaces first, then the state dir.
    pod: Netns,
    node: Netns,
    net: PodNetwork,
    state: TempDir,
}

impl Kernel {
    fn new(tag: &str) -> Kernel {
        Kernel::with_subnet(tag, "10.88.3.0/24")
    }

    fn with_subnet(tag: &str, subnet: &str) -> Kernel {
        let state = tempfile::tempdir().unwrap();
        let mut config = test_config(state.path(), vec![SYSTEM_PLUGINS.into()]);
        config.pod_subnet = subnet.parse().unwrap();
        Kernel {
            node: Netns::new(&format!("{tag}-n")),
            pod: Netns::new(&format!("{tag}-p")),
            net: PodNetwork::new(config),
            state,
        }
    }

    fn add(
        &self,
        id: &str,
        pod: &Netns,
        ports: &[PortMapping],
    ) -> Result<Attachment, NetworkError> {
        let path = pod.path();
        self.node.run(|| self.net.add(id, &path, ports))
    }

    fn del(
        &self,
        id: &str,
        netns: Option<&Path>,
        ports: &[PortMapping],
    ) -> Result<(), NetworkError> {
        self.node.run(|| self.net.del(id, netns, ports))
    }

    fn check(&self, id: &str, pod: &Netns, ports: &[PortMapping]) -> Result<(), NetworkError> {
        let path = pod.path();
        self.node.run(|| self.net.check(id, &path, ports))
    }

    fn leases(&self) -> Vec<String> {
        let dir = self.state.path().join("ipam").join(DEFAULT_NETWORK_NAME);
        let mut leases: Vec<String> = fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|name| name.parse::<Ipv4Addr>().is_ok())
                    .collect()
            })
            .unwrap_or_default();
        leases.sort();
        leases
    }

    fn nat_rules(&self) -> String {
        self.node.exec_ok(&["iptables", "-t", "nat", "-S"])
    }

    fn link_exists(&self, ns: &Netns, name: &str) -> bool {
        ns.exec(&["ip", "link", "show", name]).status.success()
    }
}

/// The host side of the pod's veth, from an ADD result.
fn host_veth(result: &Value) -> String {
    result["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i.get("sandbox").is_none() && i["name"].as_str().unwrap().starts_with("veth"))
        .and_then(|i| i["name"].as_str())
        .expect("a host veth in the result")
        .to_string()
}

/// Pings from inside `ns`; a few tries, since the first ARP exchange on a
/// fresh bridge port can eat one echo.
fn ping(ns: &Netns, target: Ipv4Addr) -> Result<(), String> {
    let target = target.to_string();
    let mut last = String::new();
    for _ in 0..3 {
        let out = ns.exec(&["busybox", "ping", "-c", "1", "-W", "2", &target]);
        if out.status.success() {
            return Ok(());
        }
        last = text(&out);
    }
    Err(last)
}

// ------------------------------------------------------- kernel: CNI calls

#[test]
fn add_check_del_with_the_real_plugins() {
    require_kernel!();
    let k = Kernel::new("life");
    let ports = [tcp(18080, 80)];

    // The node's masquerade rule is the node's to set (NodeNetwork does,
    // with the routes); set twice, it is there once.
    let subnet: Ipv4Net = "10.88.3.0/24".parse().unwrap();
    let cluster: Ipv4Net = "10.88.0.0/16".parse().unwrap();
    for _ in 0..2 {
        k.node
            .run(|| masq::ensure_node_rules(subnet, cluster))
            .expect("the node's masquerade rule");
    }
    let a = k.add("pod-a", &k.pod, &ports).expect("ADD");
    let subnet: Ipv4Net = "10.88.3.0/24".parse().unwrap();
    let gateway = Ipv4Addr::new(10, 88, 3, 1);
    assert!(subnet.contains(a.ip) && a.ip != gateway, "{a:?}");
    assert_eq!(
        (a.prefix, a.gateway, a.interface.as_str()),
        (24, Some(gateway), "eth0")
    );

    // The pod has its address and loopback, and reaches the gateway.
    let addrs = k.pod.exec_ok(&["ip", "-4", "-o", "addr", "show"]);
    assert!(
        addrs.contains(&format!("eth0    inet {}/24", a.ip))
            || addrs.contains(&format!("inet {}/24", a.ip)),
        "{addrs}"
    );
    assert!(
        addrs.contains("lo    inet 127.0.0.1/8") || addrs.contains("inet 127.0.0.1/8"),
        "{addrs}"
    );
    ping(&k.pod, gateway).expect("the pod pings its gateway");

    // portmap's DNAT, and the node's one masquerade rule (not bridge's
    // chain per pod), in the node's nat table.
    let nat = k.nat_rules();
    assert!(
        nat.lines()
            .any(|l| l.contains("--dport 18080")
                && l.contains(&format!("--to-destination {}:80", a.ip))),
        "no DNAT for 18080 in:\n{nat}"
    );
    assert!(
        nat.lines().any(
            |l| l.starts_with("-A FLOTILLA-MASQ -s 10.88.3.0/24 ! -d 10.88.0.0/16")
                && l.ends_with("-j MASQUERADE")
        ),
        "no masquerade rule in:\n{nat}"
    );
    assert_eq!(
        nat.matches("-A POSTROUTING -j FLOTILLA-MASQ").count(),
        1,
        "{nat}"
    );
    // The pod network's traffic is accepted first thing in FORWARD, once,
    // whatever the chain's policy.
    let filter = k.node.exec_ok(&["iptables", "-t", "filter", "-S"]);
    for direction in ["-s", "-d"] {
        assert!(
            filter.lines().any(|l| l
                .starts_with(&format!("-A FLOTILLA-FORWARD {direction} 10.88.0.0/16"))
                && l.ends_with("-j ACCEPT")),
            "no {direction} accept rule in:\n{filter}"
        );
    }
    let forward: Vec<&str> = filter
        .lines()
        .filter(|l| l.starts_with("-A FORWARD"))
        .collect();
    assert_eq!(forward, ["-A FORWARD -j FLOTILLA-FORWARD"], "{filter}");
    assert_eq!(nat.matches("-A FLOTILLA-MASQ ").count(), 1, "{nat}");
    assert!(
        !nat.contains(&masq::chain_name(DEFAULT_NETWORK_NAME, "pod-a")),
        "{nat}"
    );

    // Saved for status and cleanup.
    assert_eq!(k.leases(), [a.ip.to_string()]);
    assert_eq!(k.net.attachment("pod-a"), Some(a.clone()));
    assert_eq!(k.net.attached_ids(), ["pod-a"]);
    let veth = host_veth(&a.result);
    assert!(k.link_exists(&k.node, &veth));

    k.check("pod-a", &k.pod, &ports).expect("CHECK");

    // ADD again: the same attachment, no second lease.
    let again = k.add("pod-a", &k.pod, &ports).expect("second ADD");
    assert_eq!(again, a);
    assert_eq!(k.leases(), [a.ip.to_string()]);

    // DEL removes the veth, the lease, the rules and the saved result.
    let pod_path = k.pod.path();
    k.del("pod-a", Some(&pod_path), &ports).expect("DEL");
    assert!(!k.link_exists(&k.node, &veth), "{veth} still exists");
    assert!(!k.link_exists(&k.pod, "eth0"));
    assert_eq!(k.leases(), Vec::<String>::new());
    let nat = k.nat_rules();
    assert!(
        !nat.contains(&a.ip.to_string()),
        "rules left for {}:\n{nat}",
        a.ip
    );
    assert!(
        !nat.contains(&masq::chain_name(DEFAULT_NETWORK_NAME, "pod-a")),
        "{nat}"
    );
    assert_eq!(k.net.attachment("pod-a"), None);
    assert!(k.net.attached_ids().is_empty());
    assert!(matches!(
        k.check("pod-a", &k.pod, &ports),
        Err(NetworkError::NotAttached { .. })
    ));

    // DEL twice, with and without the namespace, still succeeds.
    k.del("pod-a", Some(&pod_path), &ports).expect("second DEL");
    k.del("pod-a", None, &[]).expect("DEL without a namespace");
}

#[test]
fn two_pods_on_one_node_reach_each_other() {
    require_kernel!();
    let k = Kernel::new("pair");
    let other = Netns::new("pair-q");
    let a = k.add("pod-a", &k.pod, &[]).expect("ADD a");
    let b = k.add("pod-b", &other, &[]).expect("ADD b");
    assert_ne!(a.ip, b.ip);
    ping(&k.pod, b.ip).expect("a pings b");
    ping(&other, a.ip).expect("b pings a");
    assert_eq!(k.net.attached_ids(), ["pod-a", "pod-b"]);
    k.del("pod-b", Some(&other.path()), &[]).expect("DEL b");
    // a is untouched by b's DEL.
    ping(&k.pod, Ipv4Addr::new(10, 88, 3, 1)).expect("a still pings the gateway");
    assert_eq!(k.leases(), [a.ip.to_string()]);
    k.del("pod-a", Some(&k.pod.path()), &[]).expect("DEL a");
    assert!(k.leases().is_empty());
}

#[test]
fn del_after_the_pod_namespace_is_gone() {
    require_kernel!();
    let mut k = Kernel::new("gone");
    let ports = [tcp(18081, 8080)];
    let a = k.add("pod-g", &k.pod, &ports).expect("ADD");
    // The chain bridge's ipMasq made for a pod (an agent from before the
    // node rule), which bridge leaves behind when the netns is gone.
    let chain = masq::chain_name(DEFAULT_NETWORK_NAME, "pod-g");
    let comment = masq::comment(DEFAULT_NETWORK_NAME, "pod-g");
    let source = format!("{}/32", a.ip);
    k.node.exec_ok(&["iptables", "-t", "nat", "-N", &chain]);
    k.node
        .exec_ok(&["iptables", "-t", "nat", "-A", &chain, "-j", "MASQUERADE"]);
    k.node.exec_ok(&[
        "iptables",
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-s",
        &source,
        "-m",
        "comment",
        "--comment",
        &comment,
        "-j",
        &chain,
    ]);
    assert!(k.nat_rules().contains(&chain));

    let pod_path = k.pod.path();
    k.pod.delete();
    // The caller may still pass the old path: it is no namespace any more.
    k.del("pod-g", Some(&pod_path), &[])
        .expect("DEL after the namespace went");
    assert_eq!(k.leases(), Vec::<String>::new());
    let nat = k.nat_rules();
    assert!(
        !nat.contains(&a.ip.to_string()),
        "rules left for {}:\n{nat}",
        a.ip
    );
    assert!(!nat.contains(&chain), "masquerade chain left:\n{nat}");
    assert!(k.net.attached_ids().is_empty());
    k.del("pod-g", None, &ports).expect("DEL again");
}

#[test]
fn del_of_an_id_never_added() {
    require_kernel!();
    let k = Kernel::new("never");
    k.del("pod-x", Some(&k.pod.path()), &[])
        .expect("DEL with a namespace");
    k.del("pod-x", None, &[tcp(18082, 80)])
        .expect("DEL without one");
    assert!(k.net.attached_ids().is_empty());
}

#[test]
fn a_failed_check_makes_add_start_over() {
    require_kernel!();
    let k = Kernel::new("heal");
    let a = k.add("pod-h", &k.pod, &[]).expect("ADD");
    // Someone deletes the pod's veth behind the agent's back.
    let veth = host_veth(&a.result);
    k.node.exec_ok(&["ip", "link", "del", &veth]);
    match k.check("pod-h", &k.pod, &[]) {
        Err(NetworkError::PluginFailed { command, .. }) => assert_eq!(command, "CHECK"),
        other => panic!("CHECK after the veth went: {other:?}"),
    }
    let b = k.add("pod-h", &k.pod, &[]).expect("ADD again");
    ping(&k.pod, Ipv4Addr::new(10, 88, 3, 1)).expect("the new attachment works");
    assert_eq!(k.leases(), [b.ip.to_string()], "one lease, not two");
    k.check("pod-h", &k.pod, &[])
        .expect("CHECK of the new attachment");
    k.del("pod-h", Some(&k.pod.path()), &[]).expect("DEL");
}

#[test]
fn a_plugin_rejecting_the_config_gives_plugin_failed() {
    require_kernel!();
    // host-local cannot lease from a /32.
    let k = Kernel::with_subnet("fail", "10.88.3.0/32");
    let err = k.add("pod-f", &k.pod, &[]).expect_err("ADD from a /32");
    match &err {
        NetworkError::PluginFailed {
            plugin,
            command,
            message,
            ..
        } => {
            assert_eq!((plugin.as_str(), command.as_str()), ("bridge", "ADD"));
            assert!(!message.is_empty());
        }
        other => panic!("{other:?}"),
    }
    eprintln!("the error reads: {err}");
    // Nothing is left: no saved result, no lease, no pod interface.
    assert!(k.net.attached_ids().is_empty());
    assert!(k.leases().is_empty());
    assert!(!k.link_exists(&k.pod, "eth0"));
}

// ----------------------------------------------------------- kernel: routes

#[test]
fn sync_routes_keeps_exactly_ours() {
    require_kernel!();
    let node = Netns::new("routes");
    // No dummy links on every kernel: a veth pair gives a connected /24.
    node.exec_ok(&[
        "ip", "link", "add", "fl0", "type", "veth", "peer", "name", "fl1",
    ]);
    node.exec_ok(&["ip", "addr", "add", "192.168.77.1/24", "dev", "fl0"]);
    node.exec_ok(&["ip", "link", "set", "fl0", "up"]);
    node.exec_ok(&["ip", "link", "set", "fl1", "up"]);
    // Someone else's route, which flotilla must never touch.
    node.exec_ok(&["ip", "route", "add", "10.99.0.0/24", "via", "192.168.77.9"]);

    let r = |dst: &str, via: &str| HostRoute {
        destination: dst.parse().unwrap(),
        via: via.parse().unwrap(),
    };
    let four = r("10.88.4.0/24", "192.168.77.2");
    let five = r("10.88.5.0/24", "192.168.77.3");

    node.run(|| {
        let local = node_addresses();
        assert_eq!(local, ["192.168.77.1/24".parse::<Ipv4Net>().unwrap()]);
        assert_eq!(
            next_hop(&local, &["10.0.0.2".parse().unwrap(), four.via]),
            Some(four.via)
        );

        assert!(list_routes().unwrap().is_empty());
        sync_routes(&[five, four]).unwrap();
        assert_eq!(list_routes().unwrap(), [four, five]);
        sync_routes(&[four, five]).unwrap(); // no change, no error
        assert_eq!(list_routes().unwrap(), [four, five]);

        sync_routes(&[four]).unwrap();
        assert_eq!(list_routes().unwrap(), [four]);

        // A new next hop replaces the route in place.
        let moved = r("10.88.4.0/24", "192.168.77.4");
        sync_routes(&[moved]).unwrap();
        assert_eq!(list_routes().unwrap(), [moved]);

        // A destination someone else routes is reported, not taken over;
        // the rest of the sync still happens.
        let err = sync_routes(&[r("10.99.0.0/24", "192.168.77.5"), four]).unwrap_err();
        assert!(err.to_string().contains("10.99.0.0/24"), "{err}");
        assert_eq!(list_routes().unwrap(), [four]);

        // A next hop off every connected subnet is refused by the kernel.
        let err = sync_routes(&[four, r("10.88.6.0/24", "10.1.2.3")]).unwrap_err();
        assert!(err.to_string().contains("10.88.6.0/24"), "{err}");
        assert_eq!(list_routes().unwrap(), [four]);

        sync_routes(&[]).unwrap();
        assert!(list_routes().unwrap().is_empty());
    });

    let table = node.exec_ok(&["ip", "route", "show"]);
    assert!(table.contains("10.99.0.0/24 via 192.168.77.9"), "{table}");
    assert!(!table.contains("10.88."), "{table}");
    assert!(table.contains("192.168.77.0/24"), "{table}");
}

// ------------------------------------------------------------ fake plugins

/// Writes the four plugins as shell scripts into a temp dir. Each records
/// its stdin as `<COMMAND>-<plugin>.json`, its CNI_* environment as
/// `<COMMAND>-<plugin>.env`, and a line in `calls.log`; `behaviour` maps a
/// plugin to shell run in place of the default (print a result on ADD).
struct Fakes {
    dir: TempDir,
}

const ALL_VERSIONS: &str =
    r#"{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}"#;

fn fake_result(ifname: &str) -> String {
    if ifname == "lo" {
        r#"{"cniVersion":"1.0.0","interfaces":[{"name":"lo","sandbox":"x"}],"ips":[{"interface":0,"address":"127.0.0.1/8"}]}"#.into()
    } else {
        r#"{"cniVersion":"1.0.0","interfaces":[{"name":"flotilla0"},{"name":"veth0"},{"name":"eth0","sandbox":"x"}],"ips":[{"interface":2,"address":"10.88.3.7/24","gateway":"10.88.3.1"}]}"#.into()
    }
}

impl Fakes {
    fn new(versions: &str, behaviour: &[(&str, &str)]) -> Fakes {
        let dir = tempfile::tempdir().unwrap();
        for name in REQUIRED_PLUGINS {
            let ifname = if name == "loopback" { "lo" } else { "eth0" };
            let action = behaviour
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, b)| b.to_string())
                .unwrap_or_else(|| {
                    format!(
                        "if [ \"$CNI_COMMAND\" = ADD ]; then echo '{}'; fi",
                        fake_result(ifname)
                    )
                });
            let script = format!(
                "#!/bin/sh\n\
                 d=$(dirname \"$0\")\n\
                 if [ \"$CNI_COMMAND\" = VERSION ]; then cat >/dev/null; echo '{versions}'; exit 0; fi\n\
                 cat > \"$d/$CNI_COMMAND-{name}.json\"\n\
                 env | grep '^CNI_' | sort > \"$d/$CNI_COMMAND-{name}.env\"\n\
                 echo \"$CNI_COMMAND {name} $CNI_CONTAINERID $CNI_IFNAME\" >> \"$d/calls.log\"\n\
                 {action}\n"
            );
            let path = dir.path().join(name);
            fs::write(&path, script).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
        Fakes { dir }
    }

    fn network(&self, state: &Path) -> PodNetwork {
        PodNetwork::new(test_config(state, vec![self.dir.path().to_path_buf()]))
    }

    fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn stdin(&self, command: &str, plugin: &str) -> Value {
        let path = self.dir.path().join(format!("{command}-{plugin}.json"));
        serde_json::from_slice(&fs::read(&path).unwrap()).unwrap()
    }

    fn env(&self, command: &str, plugin: &str) -> String {
        fs::read_to_string(self.dir.path().join(format!("{command}-{plugin}.env"))).unwrap()
    }
}

/// Any network namespace handle will do for fakes: they never open it.
fn own_netns() -> PathBuf {
    PathBuf::from("/proc/self/ns/net")
}

#[test]
fn fake_plugins_see_the_calls_the_spec_describes() {
    let fakes = Fakes::new(ALL_VERSIONS, &[]);
    let state = tempfile::tempdir().unwrap();
    let net = fakes.network(state.path());
    let ports = [tcp(8080, 80)];
    // A handle that goes away before DEL, as a pod's bind mount does.
    let handle = state.path().join("pod-1.net");
    std::os::unix::fs::symlink(own_netns(), &handle).unwrap();

    let a = net.add("pod-1", &handle, &ports).unwrap();
    assert_eq!(a.ip, Ipv4Addr::new(10, 88, 3, 7));
    // loopback runs beside the list, so only the list's order is fixed.
    let calls = fakes.calls();
    assert!(
        calls.iter().any(|c| c == "ADD loopback pod-1 lo"),
        "{calls:?}"
    );
    let list: Vec<_> = calls.iter().filter(|c| !c.contains("loopback")).collect();
    assert_eq!(list, ["ADD bridge pod-1 eth0", "ADD portmap pod-1 eth0"]);
    assert_eq!(calls.len(), 3, "{calls:?}");
    let bridge = fakes.stdin("ADD", "bridge");
    assert_eq!(bridge["cniVersion"], "1.0.0");
    assert_eq!(bridge["name"], "flotilla");
    assert!(bridge.get("prevResult").is_none());
    let portmap = fakes.stdin("ADD", "portmap");
    assert_eq!(portmap["prevResult"]["ips"][0]["address"], "10.88.3.7/24");
    assert_eq!(
        portmap["runtimeConfig"]["portMappings"],
        serde_json::json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}])
    );
    let env = fakes.env("ADD", "bridge");
    assert!(env.contains("CNI_COMMAND=ADD\n"), "{env}");
    assert!(env.contains("CNI_CONTAINERID=pod-1\n"), "{env}");
    assert!(env.contains("CNI_IFNAME=eth0\n"), "{env}");
    assert!(
        env.contains(&format!("CNI_NETNS={}\n", handle.display())),
        "{env}"
    );
    assert!(
        env.contains(&format!("CNI_PATH={}\n", fakes.dir.path().display())),
        "{env}"
    );
    assert!(!env.contains("CNI_ARGS"), "{env}");

    // Saved, atomically, under results/.
    let saved = state.path().join("results/pod-1.json");
    assert!(saved.exists());
    assert_eq!(net.attached_ids(), ["pod-1"]);
    assert_eq!(net.attachment("pod-1"), Some(a.clone()));

    // A second ADD is CHECK, not ADD.
    assert_eq!(net.add("pod-1", &handle, &ports).unwrap(), a);
    assert_eq!(
        fakes.calls()[3..],
        [
            "CHECK loopback pod-1 lo",
            "CHECK bridge pod-1 eth0",
            "CHECK portmap pod-1 eth0"
        ]
    );
    assert_eq!(fakes.stdin("CHECK", "portmap")["prevResult"], a.result);

    // DEL in reverse, with the saved prevResult and the ADD's ports.
    fs::remove_file(&handle).unwrap();
    net.del("pod-1", None, &[]).unwrap();
    assert_eq!(
        fakes.calls()[6..],
        ["DEL portmap pod-1 eth0", "DEL bridge pod-1 eth0"],
        "no namespace: loopback has nothing to do"
    );
    let del = fakes.stdin("DEL", "portmap");
    assert_eq!(del["prevResult"], a.result);
    assert_eq!(del["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
    assert!(fakes.env("DEL", "bridge").contains("CNI_NETNS=\n"));
    assert!(!saved.exists());
    assert!(net.attached_ids().is_empty());

    // DEL of nothing: still every plugin, no prevResult.
    net.del("pod-1", Some(&own_netns()), &[]).unwrap();
    assert!(fakes.stdin("DEL", "bridge").get("prevResult").is_none());
    assert_eq!(fakes.calls().last().unwrap(), "DEL loopback pod-1 lo");
}

#[test]
fn fake_plugins_without_1_0_0_get_0_4_0() {
    let fakes = Fakes::new(
        r#"{"cniVersion":"0.4.0","supportedVersions":["0.3.1","0.4.0"]}"#,
        &[],
    );
    let state = tempfile::tempdir().unwrap();
    let net = fakes.network(state.path());
    net.add("pod-2", &own_netns(), &[]).unwrap();
    assert_eq!(fakes.stdin("ADD", "bridge")["cniVersion"], "0.4.0");
    assert_eq!(fakes.stdin("ADD", "loopback")["cniVersion"], "0.4.0");
    net.del("pod-2", None, &[]).unwrap();
    assert_eq!(fakes.stdin("DEL", "bridge")["cniVersion"], "0.4.0");

    let old = Fakes::new(
        r#"{"cniVersion":"0.3.1","supportedVersions":["0.3.0","0.3.1"]}"#,
        &[],
    );
    let state = tempfile::tempdir().unwrap();
    match old.network(state.path()).add("pod-2", &own_netns(), &[]) {
        Err(e @ NetworkError::BadResult { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("0.3.1") && text.contains("1.0.0 or 0.4.0"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_cni_error_object_becomes_plugin_failed_and_add_is_undone() {
    let fakes = Fakes::new(
        ALL_VERSIONS,
        &[(
            "portmap",
            r#"if [ "$CNI_COMMAND" = ADD ]; then echo '{"cniVersion":"1.0.0","code":7,"msg":"bad portMappings","details":"port 0"}'; exit 1; fi"#,
        )],
    );
    let state = tempfile::tempdir().unwrap();
    let net = fakes.network(state.path());
    let err = net
        .add("pod-3", &own_netns(), &[tcp(8080, 80)])
        .unwrap_err();
    match &err {
        NetworkError::PluginFailed {
            plugin,
            command,
            code,
            message,
        } => {
            assert_eq!(
                (plugin.as_str(), command.as_str(), *code),
                ("portmap", "ADD", Some(7))
            );
            assert!(message.contains("bad portMappings: port 0"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("portmap"), "{err}");
    // The half-made attachment was deleted, with bridge's result as prevResult.
    assert_eq!(
        fakes.calls()[3..],
        [
            "DEL portmap pod-3 eth0",
            "DEL bridge pod-3 eth0",
            "DEL loopback pod-3 lo"
        ]
    );
    assert_eq!(
        fakes.stdin("DEL", "bridge")["prevResult"]["ips"][0]["address"],
        "10.88.3.7/24"
    );
    assert!(net.attached_ids().is_empty());
}

#[test]
fn unparsable_output_reports_stderr() {
    let fakes = Fakes::new(
        ALL_VERSIONS,
        &[(
            "bridge",
            r#"if [ "$CNI_COMMAND" = ADD ]; then echo 'panic: runtime error' >&2; echo 'goroutine 1'; exit 2; fi"#,
        )],
    );
    let state = tempfile::tempdir().unwrap();
    let err = fakes
        .network(state.path())
        .add("pod-4", &own_netns(), &[])
        .unwrap_err();
    match &err {
        NetworkError::PluginFailed {
            plugin,
            code: None,
            message,
            ..
        } => {
            assert_eq!(plugin, "bridge");
            assert!(message.contains("panic: runtime error"), "{message}");
            assert!(message.contains("exit status 2"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_plugin_that_hangs_is_killed() {
    let fakes = Fakes::new(
        ALL_VERSIONS,
        &[(
            "bridge",
            r#"if [ "$CNI_COMMAND" = ADD ]; then sleep 600; fi"#,
        )],
    );
    let state = tempfile::tempdir().unwrap();
    let net = fakes
        .network(state.path())
        .with_timeout(std::time::Duration::from_millis(300));
    match net.add("pod-5", &own_netns(), &[]) {
        Err(NetworkError::PluginFailed {
            plugin,
            command,
            message,
            ..
        }) => {
            assert_eq!((plugin.as_str(), command.as_str()), ("bridge", "ADD"));
            assert!(message.contains("killed"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(net.attached_ids().is_empty());
}

#[test]
fn missing_plugins_are_named_with_every_dir_searched() {
    let empty = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dirs = vec![empty.path().join("nope"), empty.path().to_path_buf()];
    let net = PodNetwork::new(test_config(state.path(), dirs.clone()));
    for result in [
        net.check_plugins(),
        net.add("pod-6", &own_netns(), &[]).map(drop),
        net.del("pod-6", None, &[]),
    ] {
        match result {
            Err(e @ NetworkError::PluginMissing { .. }) => {
                let text = e.to_string();
                let NetworkError::PluginMissing { plugin, searched } = e else {
                    unreachable!()
                };
                assert_eq!(plugin, "bridge");
                assert_eq!(searched, dirs);
                assert!(text.contains(&dirs[0].display().to_string()), "{text}");
                assert!(text.contains(&dirs[1].display().to_string()), "{text}");
                assert!(text.contains("containernetworking-plugins"), "{text}");
            }
            other => panic!("{other:?}"),
        }
    }
    // Only a dir that lacks portmap: portmap is the one named.
    let partial = Fakes::new(ALL_VERSIONS, &[]);
    fs::remove_file(partial.dir.path().join("portmap")).unwrap();
    match partial.network(state.path()).check_plugins() {
        Err(NetworkError::PluginMissing { plugin, .. }) => assert_eq!(plugin, "portmap"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_input_is_refused_before_any_plugin_runs() {
    let fakes = Fakes::new(ALL_VERSIONS, &[]);
    let state = tempfile::tempdir().unwrap();
    let net = fakes.network(state.path());
    for id in ["", "../etc", "a/b", "-x", "pod uid"] {
        assert!(
            matches!(
                net.add(id, &own_netns(), &[]),
                Err(NetworkError::InvalidInput(_))
            ),
            "{id:?}"
        );
        assert!(matches!(
            net.del(id, None, &[]),
            Err(NetworkError::InvalidInput(_))
        ));
        assert_eq!(net.attachment(id), None);
    }
    let bad_ports = [
        tcp(0, 80),
        PortMapping {
            protocol: "TCP".into(),
            ..tcp(80, 80)
        },
        PortMapping {
            host_ip: Some("node1".into()),
            ..tcp(80, 80)
        },
    ];
    for port in bad_ports {
        assert!(matches!(
            net.add("pod-7", &own_netns(), std::slice::from_ref(&port)),
            Err(NetworkError::InvalidInput(_))
        ));
    }
    // Not a namespace.
    let not_ns = state.path().join("net");
    fs::write(&not_ns, "").unwrap();
    match net.add("pod-7", &not_ns, &[]) {
        Err(NetworkError::InvalidInput(message)) => {
            assert!(message.contains("not a network namespace"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(fakes.calls().is_empty(), "{:?}", fakes.calls());
}

#[test]
fn a_torn_saved_result_is_ignored() {
    let fakes = Fakes::new(ALL_VERSIONS, &[]);
    let state = tempfile::tempdir().unwrap();
    let net = fakes.network(state.path());
    fs::create_dir_all(state.path().join("results")).unwrap();
    fs::write(state.path().join("results/pod-8.json"), "{\"contai").unwrap();
    assert_eq!(net.attachment("pod-8"), None);
    // ADD makes a fresh one (no CHECK of garbage), DEL cleans up.
    net.add("pod-8", &own_netns(), &[]).unwrap();
    let calls = fakes.calls();
    assert!(
        calls.iter().any(|c| c == "ADD loopback pod-8 lo"),
        "{calls:?}"
    );
    assert!(!calls.iter().any(|c| c.starts_with("CHECK")), "{calls:?}");
    assert!(net.attachment("pod-8").is_some());
    net.del("pod-8", None, &[]).unwrap();
    assert!(!state.path().join("results/pod-8.json").exists());
}

#[test]
fn leased_ids_reads_host_local_leases_old_and_new() {
    let fakes = Fakes::new(ALL_VERSIONS, &[]);
    let state = tempfile::tempdir().unwrap();
    let net = fakes.network(state.path());
    assert!(net.leased_ids().is_empty(), "no lease dir yet");
    let dir = state.path().join("ipam").join(DEFAULT_NETWORK_NAME);
    fs::create_dir_all(&dir).unwrap();
    // containernetworking-plugins 0.8 and later: id, CRLF, interface.
    fs::write(dir.join("10.88.3.7"), "pod-b\r\neth0").unwrap();
    // Before: the id alone.
    fs::write(dir.join("10.88.3.8"), "pod-a").unwrap();
    // host-local's own files, and what is no lease of a pod.
    fs::write(dir.join("last_reserved_ip.0"), "10.88.3.8").unwrap();
    fs::write(dir.join("lock"), "").unwrap();
    fs::write(dir.join("10.88.3.9"), "../etc\r\neth0").unwrap();
    fs::write(dir.join(".10.88.3.10.tmp"), "pod-c").unwrap();
    assert_eq!(net.leased_ids(), ["pod-a", "pod-b"]);
    assert!(fakes.calls().is_empty(), "{:?}", fakes.calls());
}

/// A result that never reached the disk (the node lost power after ADD,
/// before the unsynced write was flushed) while host-local's lease did: the
/// lease still names the pod, DEL without a result releases it by id, and
/// ADD of a pod whose lease outlived its result ends with one lease.
#[test]
fn a_lease_whose_result_was_lost_is_found_and_released() {
    require_kernel!();
    let k = Kernel::new("lost");
    let a = k.add("pod-l", &k.pod, &[]).expect("ADD");
    fs::remove_file(k.state.path().join("results/pod-l.json")).unwrap();
    assert!(k.net.attached_ids().is_empty());
    assert_eq!(k.net.leased_ids(), ["pod-l"]);
    assert_eq!(k.leases(), [a.ip.to_string()]);

    // A pod still on record ADDs again: host-local refuses a second
    // address for the id, and the failed ADD's DEL releases the first, so
    // the retry (the next reconcile pass) gets one.
    let first = k.add("pod-l", &k.pod, &[]);
    assert!(
        matches!(&first, Err(NetworkError::PluginFailed { .. })),
        "{first:?}"
    );
    assert!(k.leases().is_empty(), "{:?}", k.leases());
    let b = k
        .add("pod-l", &k.pod, &[])
        .expect("ADD after the failed one");
    assert_eq!(k.leases(), [b.ip.to_string()]);

    // A pod that is gone: DEL by id alone, as the start-up sweep does.
    fs::remove_file(k.state.path().join("results/pod-l.json")).unwrap();
    k.del("pod-l", None, &[]).expect("DEL without a result");
    assert!(k.leases().is_empty(), "{:?}", k.leases());
    assert!(k.net.leased_ids().is_empty());
}
