//! Issue 8 on a demo cluster of the test's own (3 nodes, 10.103.0.0/24),
//! through the real `flotilla` binary and the host's CNI plugins: every
//! node gets its own /24 of the pod CIDR; `demo/httpd` with `hostPort: 8080`
//! answers at its node's address; a pod on node2 fetches the page from the
//! httpd pod on node1 by pod IP (host-gw routes); a pod's outbound traffic
//! reaches the registry on the demo bridge; many pods created and deleted
//! leave no veth, lease or NAT rule behind; a node without CNI plugins says
//! so as the pod's reason. As root, with containernetworking-plugins.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::demo::Cluster;

const NAME: &str = "pnet";
const SUBNET: &str = "10.103.0.0/24";

/// The test's cluster, or `None` (the test skipped) when not root.
fn up() -> Option<Cluster> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return None;
    }
    Some(Cluster::up(NAME, SUBNET, 3, "pod-network"))
}

impl Cluster {
    fn pod(&self, name: &str) -> Option<Value> {
        self.pods()
            .into_iter()
            .find(|p| p["metadata"]["name"] == name)
    }

    /// Log text of `pod`.
    fn logs(&self, pod: &str) -> String {
        String::from_utf8_lossy(&self.flotilla(&["logs", pod]).stdout).into_owned()
    }
}

fn pod(
    name: &str,
    node: &str,
    image: &str,
    command: Option<&str>,
    host_port: Option<u16>,
) -> Value {
    let mut container = json!({"name": name, "image": image});
    if let Some(command) = command {
        container["command"] = json!(["sh", "-c", command]);
    }
    if let Some(port) = host_port {
        container["ports"] = json!([{"containerPort": 8080, "hostPort": port}]);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "terminationGracePeriodSeconds": 1,
            "containers": [container],
        },
    })
}

fn pod_ip(pod: &Value) -> Option<String> {
    pod["status"]["podIP"]
        .as_str()
        .filter(|ip| !ip.is_empty())
        .map(str::to_string)
}

/// `GET /` from `address:port`, the whole answer.
fn http_get(address: &str, port: u16) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(
        &format!("{address}:{port}").parse().expect("socket address"),
        Duration::from_secs(3),
    )?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// What pod networking leaves on a node per pod: veths (besides the node's
/// own eth0, itself a veth in the demo), IP leases, and the
/// NAT chains portmap (hostPort) makes per pod, and bridge's masquerade
/// chains, which an older agent made.
fn leftovers(cluster: &Cluster, node: &str) -> String {
    cluster.on_node(
        node,
        "echo veth $(ip -o link show type veth | grep -v ': eth0@' | wc -l); \
         echo leases $(ls /var/lib/flotilla/network/cni/ipam/flotilla 2>/dev/null | grep -c '^[0-9]'); \
         echo chains $(iptables -t nat -S | grep -cE -- '^-N CNI-(DN-)?[0-9a-f]{12,}')",
    )
}

const CLEAN: &str = "veth 0\nleases 0\nchains 0\n";

#[test]
fn pods_get_addresses_publish_ports_and_reach_each_other_across_nodes() {
    let Some(cluster) = up() else {
        return;
    };
    let registry = cluster.registry();
    let httpd_image = format!("{registry}/demo/httpd:latest");
    let busybox_image = format!("{registry}/demo/busybox:latest");

    // node1 and node2 drop what they forward unless a rule says otherwise,
    // as a host with Docker does: the pod network must still work there.
    for node in ["node1", "node2"] {
        cluster.on_node(node, "iptables -w 10 -P FORWARD DROP");
    }

    // httpd on node1, published on the node's port 8080.
    cluster.apply(
        &pod("web", "node1", &httpd_image, None, Some(8080)),
        &["--wait", "--timeout", "90s"],
    );
    let web_ip = cluster.wait("web's pod IP", Duration::from_secs(30), |c| {
        c.pod("web").as_ref().and_then(pod_ip)
    });
    assert!(web_ip.starts_with("10.88."), "web's IP {web_ip}");
    let wide = cluster.ok(&["get", "pods", "-o", "wide"]);
    assert!(wide.contains(&web_ip), "{wide}");

    // hostPort: the page at node1's address, from outside the node.
    let node1 = cluster.node_address("node1");
    let page = cluster.wait("the page at node1:8080", Duration::from_secs(20), |_| {
        http_get(&node1, 8080)
            .ok()
            .filter(|a| a.contains("Hello from flotilla"))
    });
    assert!(page.starts_with("HTTP/1."), "{page}");

    // A pod on node2 fetches the page by web's pod IP (across nodes), and
    // the registry on the demo bridge (outbound traffic).
    // (busybox's nc rather than its wget, which crashes in these images.)
    let fetch = format!(
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {web_ip} 8080 && echo FETCHED-POD; \
         printf 'GET /v2/ HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {} 5000 && echo FETCHED-REGISTRY; sleep 3600",
        cluster.host_address()
    );
    cluster.apply(
        &pod("client", "node2", &busybox_image, Some(&fetch), None),
        &["--wait", "--timeout", "90s"],
    );
    let client_ip = cluster.wait("client's pod IP", Duration::from_secs(30), |c| {
        c.pod("client").as_ref().and_then(pod_ip)
    });
    assert_ne!(
        web_ip.rsplit_once('.').map(|p| p.0),
        client_ip.rsplit_once('.').map(|p| p.0),
        "each node has its own subnet: {web_ip} and {client_ip}"
    );
    let logs = cluster.wait("client's fetches", Duration::from_secs(30), |c| {
        let logs = c.logs("client");
        (logs.contains("FETCHED-POD") && logs.contains("FETCHED-REGISTRY")).then_some(logs)
    });
    assert!(logs.contains("Hello from flotilla"), "{logs}");
    // Unmasqueraded between pods: httpd (-v) logs the client pod's own
    // address, not node2's.
    let served = cluster.wait("web's log of the fetch", Duration::from_secs(20), |c| {
        let logs = c.logs("web");
        logs.contains(&client_ip).then_some(logs)
    });
    assert!(!served.contains(&cluster.node_address("node2")), "{served}");

    // `flotilla-agent run --rm` on a node with a pod network: its container
    // joins a sandbox the CNI plugins gave an address (not namespaces of its
    // own), and the run removes it all (checked with the rest below). The
    // agent's own command line names its binary and options.
    let run = cluster.on_node(
        "node1",
        &format!(
            "set -- $(ps -o args= -p \"$(pgrep -o -f 'flotilla-agent-[0-9a-f]+ .*serve')\"); \
             agent=$1; shift; options=; \
             while [ \"$1\" != serve ]; do options=\"$options $1\"; shift; done; \
             $agent $options run --rm --insecure {busybox_image} -- ip -4 addr show eth0"
        ),
    );
    assert!(run.contains("inet 10.88."), "run --rm on node1: {run}");

    // 100 pods across the nodes, then none: nothing left behind (no veth,
    // lease, nat chain or route).
    let many = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "many"},
        "spec": {
            "replicas": 100,
            "selector": {"matchLabels": {"app": "many"}},
            "template": {
                "metadata": {"labels": {"app": "many"}},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{
                        "name": "many",
                        "image": busybox_image,
                        "command": ["sleep", "3600"],
                    }],
                },
            },
        },
    });
    cluster.apply(&many, &[]);
    cluster.wait("100 pods with addresses", Duration::from_secs(300), |c| {
        let pods = c.pods();
        let addressed = pods
            .iter()
            .filter(|p| {
                p["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("many-"))
            })
            .filter(|p| pod_ip(p).is_some())
            .count();
        (addressed == 100).then_some(())
    });
    cluster.ok(&["delete", "deployment", "many"]);
    cluster.ok(&["delete", "pod", "client"]);
    cluster.ok(&["delete", "pod", "web"]);
    cluster.wait("every pod gone", Duration::from_secs(120), |c| {
        c.pods().is_empty().then_some(())
    });
    for node in ["node1", "node2", "node3"] {
        let mut last = String::new();
        let clean = Instant::now();
        while clean.elapsed() < Duration::from_secs(20) {
            last = leftovers(&cluster, node);
            if last == CLEAN {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        assert_eq!(last, CLEAN, "{node} after every pod was deleted");
    }

    // A node with no CNI plugins: its pod waits, saying why. The node's own
    // mount namespace gets an empty /usr/lib/cni, as on a bare host.
    cluster.on_node("node3", "mount -t tmpfs none /usr/lib/cni");
    cluster.apply(
        &pod("bare", "node3", &busybox_image, Some("sleep 3600"), None),
        &[],
    );
    let reason = cluster.wait(
        "the missing plugin reported",
        Duration::from_secs(60),
        |c| {
            let pod = c.pod("bare")?;
            let waiting = &pod["status"]["containerStatuses"][0]["state"]["waiting"];
            (waiting["reason"] == "NetworkSetupFailed").then(|| waiting["message"].to_string())
        },
    );
    assert!(
        reason.contains("bridge") && reason.contains("containernetworking-plugins"),
        "{reason}"
    );

    // The bootstrap fills such a host from the operator's plugins: with
    // node3's agent stopped, the next connection probes the host, copies
    // them up (digest checked) before starting the agent, and the pod gets
    // its address.
    cluster.on_node(
        "node3",
        "pkill -TERM -x -f '.*/flotilla-agent-[0-9a-f]+ --cgroup-parent [^ ]+ serve( .*)?'",
    );
    let ip = cluster.wait(
        "the pod's address after the upload",
        Duration::from_secs(90),
        |c| c.pod("bare").as_ref().and_then(pod_ip),
    );
    assert!(ip.starts_with("10.88."), "{ip}");
    let uploaded = cluster.on_node("node3", "ls /var/lib/flotilla/cni/bin");
    for plugin in ["bridge", "host-local", "portmap", "loopback"] {
        assert!(
            uploaded.lines().any(|l| l == plugin),
            "{plugin} in {uploaded}"
        );
    }
    cluster.ok(&["delete", "pod", "bare"]);
    cluster.demo.down();
}
