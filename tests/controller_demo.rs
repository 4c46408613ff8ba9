//! Issue 6 on a demo cluster of the test's own (3 nodes, 10.93.0.0/24),
//! driven as an operator drives it, through the real `flotilla` binary:
//! a pod pinned by nodeSelector; an unschedulable pod Pending with
//! Kubernetes' reason; two `flotilla controller`s started together, of
//! which exactly one acts (every pod created is recorded with the holder
//! that created it); a 3-replica deployment spread over the 3 nodes; the
//! other controller taking over when the first stops; a killed pod
//! replaced; scale up and down; a rolling update that never drops below
//! `replicas - maxUnavailable` ready; a node cut off (its link down) has its
//! pods replaced within the grace period + 30 s and its stale copies fenced
//! when it returns, leaving exactly `replicas`; with the local data
//! directory removed, `get deployments` still shows everything; delete
//! leaves no container process on any host. As root.

mod support;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::demo::{Cluster, text};

const NAME: &str = "ctl";
const SUBNET: &str = "10.93.0.0/24";
/// A command line no other test runs, to find the containers' processes.
const SLEEP: &str = "3601";

impl Cluster {
    fn controller(&self) -> Controller {
        let mut command = self.demo.command(&[
            "--cluster",
            &self.cluster_file,
            "controller",
            "--lost-after",
            "10s",
            "--timeout",
            "60s",
        ]);
        command
            .env("FLOTILLA_AGENT_BINARY", &self.agent)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Controller(command.spawn().expect("start flotilla controller"))
    }

    /// The running, ready pods of deployment `name`, with their nodes.
    fn ready_of(&self, name: &str) -> Vec<(String, String)> {
        self.pods()
            .into_iter()
            .filter(|p| p["metadata"]["annotations"]["flotilla.io/deployment"] == name)
            .filter(ready)
            .map(|p| {
                (
                    p["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    p["spec"]["nodeName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect()
    }

    /// How long `done` took to hold (see [`Cluster::wait`]).
    fn until(
        &self,
        what: &str,
        deadline: Duration,
        mut done: impl FnMut(&Cluster) -> bool,
    ) -> Duration {
        let started = Instant::now();
        self.wait(what, deadline, |c| done(c).then_some(()));
        started.elapsed()
    }
}

fn ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["containerStatuses"]
            .as_array()
            .is_some_and(|c| !c.is_empty() && c.iter().all(|c| c["ready"] == true))
}

/// A `flotilla controller` process, stopped with SIGTERM (it releases the
/// lease) and reaped whatever happens.
struct Controller(Child);

impl Controller {
    fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.stop();
    }
}

fn deployment(registry: &str, replicas: u32, generation: &str) -> Value {
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "web",
                        "image": format!("{registry}/demo/busybox:latest"),
                        "command": ["sh", "-c", format!("echo {generation}; exec sleep {SLEEP}")],
                    }],
                },
            },
        },
    })
}

/// Processes on this machine (every demo node shares its kernel) running
/// the test's sleep.
fn container_processes() -> usize {
    let out = Command::new("pgrep")
        .args(["-f", &format!("^sleep {SLEEP}$")])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// Events of `describe deployment web`: (reason, from, message).
fn deployment_events(c: &Cluster) -> Vec<(String, String, String)> {
    let out = c.ok(&["describe", "deployment", "web"]);
    let Some((_, events)) = out.split_once("Events:") else {
        return Vec::new();
    };
    events
        .lines()
        .skip(3)
        .filter_map(|line| {
            // Type, Reason, Age, then "controller <holder>", then the message.
            let fields: Vec<&str> = line.split_whitespace().collect();
            let from_at = fields.iter().position(|f| *f == "controller")?;
            Some((
                fields.get(1)?.to_string(),
                fields.get(from_at + 1)?.to_string(),
                fields[from_at + 2..].join(" "),
            ))
        })
        .collect()
}

#[test]
fn deploy_scale_roll_survive_a_lost_node_with_one_controller_acting() {
    // The first connection uploads the agent to every node.
    let c = Cluster::up(NAME, SUBNET, 3, "controller-demo");
    let registry = c.registry();

    // A pod pinned by nodeSelector, applied with no controller running:
    // apply takes the lease itself.
    let pinned = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "pinned"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "nodeSelector": {"kubernetes.io/hostname": "node2"},
            "containers": [{"name": "c", "image": format!("{registry}/demo/busybox:latest"),
                "command": ["sleep", SLEEP]}],
        },
    });
    let out = c.apply(&pinned, &["--wait", "--timeout", "90s"]);
    assert!(out.contains("pod/pinned created"), "{out}");
    assert!(out.contains("pod/pinned scheduled to node2"), "{out}");
    let pod: Value = serde_json::from_str(&c.ok(&["get", "pod", "pinned", "-o", "json"])).unwrap();
    assert_eq!(pod["spec"]["nodeName"], "node2");
    assert!(ready(&pod), "{pod}");

    // A pod no node can take: Pending, with Kubernetes' reason.
    let huge = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "huge"},
        "spec": {"containers": [{"name": "c", "image": format!("{registry}/demo/busybox:latest"),
            "resources": {"requests": {"memory": "900Gi"}}}]},
    });
    let out = c.apply(&huge, &[]);
    assert!(
        out.contains("pod/huge Pending: 0/3 nodes are available: 3 Insufficient memory."),
        "{out}"
    );
    let table = c.ok(&["get", "pods"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("huge "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("Pending") && row.contains("<none>"), "{row}");
    let described = c.ok(&["describe", "pod", "huge"]);
    assert!(described.contains("FailedScheduling"), "{described}");
    c.ok(&["delete", "pod", "huge"]);

    // Two controllers started together; a deployment of 3.
    let mut first = c.controller();
    let mut second = c.controller();
    let out = c.apply(&deployment(&registry, 3, "v1"), &[]);
    assert!(out.contains("deployment.apps/web created"), "{out}");
    c.until("3 replicas ready", Duration::from_secs(90), |c| {
        c.ready_of("web").len() == 3
    });
    let nodes: BTreeSet<String> = c.ready_of("web").into_iter().map(|(_, n)| n).collect();
    assert_eq!(nodes.len(), 3, "spread over the 3 nodes: {nodes:?}");
    // Exactly 3 creations, all by one holder: the other never acted.
    c.until("the creations recorded", Duration::from_secs(20), |c| {
        deployment_events(c)
            .iter()
            .filter(|e| e.2.starts_with("Created pod"))
            .count()
            >= 3
    });
    std::thread::sleep(Duration::from_secs(3));
    let events = deployment_events(&c);
    let created: Vec<_> = events
        .iter()
        .filter(|e| e.2.starts_with("Created pod"))
        .collect();
    assert_eq!(created.len(), 3, "{events:#?}");
    let holders: BTreeSet<&str> = created.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(holders.len(), 1, "{events:#?}");

    // Whichever held the lease stops (releasing it); the other takes over:
    // a deleted replica is replaced.
    first.stop();
    let victim = c.ready_of("web")[0].0.clone();
    c.ok(&["delete", "pod", &victim]);
    c.until(
        "the deleted replica replaced",
        Duration::from_secs(60),
        |c| {
            let ready = c.ready_of("web");
            ready.len() == 3 && ready.iter().all(|(n, _)| *n != victim)
        },
    );

    // A killed pod (SIGKILL, and its node restarts none: it Failed) is
    // replaced by the controller.
    let killed = c.ready_of("web")[0].0.clone();
    c.ok(&["kill", &killed]);
    c.until("the killed pod replaced", Duration::from_secs(60), |c| {
        let ready = c.ready_of("web");
        ready.len() == 3 && ready.iter().all(|(n, _)| *n != killed)
    });

    // Scale up and down.
    c.ok(&["scale", "deployment", "web", "--replicas", "5"]);
    c.until("5 replicas", Duration::from_secs(60), |c| {
        c.ready_of("web").len() == 5
    });
    c.ok(&["scale", "deployment/web", "--replicas", "4"]);
    c.until("4 replicas", Duration::from_secs(60), |c| {
        c.pods()
            .iter()
            .filter(|p| p["metadata"]["annotations"]["flotilla.io/deployment"] == "web")
            .count()
            == 4
    });

    // A rolling update never below replicas - maxUnavailable (4 - 1) ready.
    c.apply(&deployment(&registry, 4, "v2"), &[]);
    let mut lowest = usize::MAX;
    let rolled = c.until("the rollout", Duration::from_secs(120), |c| {
        let pods = c.pods();
        let web: Vec<&Value> = pods
            .iter()
            .filter(|p| p["metadata"]["annotations"]["flotilla.io/deployment"] == "web")
            .collect();
        lowest = lowest.min(web.iter().filter(|p| ready(p)).count());
        let out = c.ok(&["get", "deployment", "web"]);
        out.lines().nth(1).is_some_and(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells.get(1..4) == Some(&["4/4", "4", "4"][..])
        }) && web.len() == 4
    });
    assert!(
        lowest >= 3,
        "a rolling update dropped to {lowest} ready (after {rolled:?})"
    );
    let status = c.ok(&["rollout", "status", "deployment", "web", "--timeout", "60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");

    // A node cut off: its pods replaced within grace (10 s) + 30 s.
    let on_node3 = c
        .ready_of("web")
        .iter()
        .filter(|(_, n)| n == "node3")
        .count();
    assert!(on_node3 > 0, "the test needs a replica on node3");
    let link = c.demo.link(3);
    run("ip", &["link", "set", &link, "down"]);
    let replaced = c.until(
        "replacements off node3",
        Duration::from_secs(10 + 30 + 30),
        |c| {
            c.ready_of("web")
                .iter()
                .filter(|(_, n)| n != "node3")
                .count()
                == 4
        },
    );
    assert!(
        replaced <= Duration::from_secs(10 + 30),
        "replaced after {replaced:?}"
    );
    // Back: the stale copies are fenced; exactly 4 remain.
    run("ip", &["link", "set", &link, "up"]);
    c.until(
        "node3's stale copies fenced",
        Duration::from_secs(120),
        |c| {
            let nodes = c.ok(&["get", "nodes"]);
            let back = nodes
                .lines()
                .any(|l| l.starts_with("node3 ") && l.contains(" Ready "));
            let web: Vec<Value> = c
                .pods()
                .into_iter()
                .filter(|p| p["metadata"]["annotations"]["flotilla.io/deployment"] == "web")
                .collect();
            back && web.len() == 4 && web.iter().all(|p| p["spec"]["nodeName"] != "node3")
        },
    );
    let events = deployment_events(&c);
    assert!(
        c.ok(&["describe", "deployment", "web"])
            .contains("stale copy"),
        "no Fenced event: {events:#?}"
    );

    // Nothing lives on the operator's machine: without its data and cache
    // directories the cluster still knows everything. (The demo keeps its
    // nodes' own disks under the data directory, as hosts of their own: those
    // stay.)
    let data = c.demo.home.join("data").join("flotilla");
    for entry in std::fs::read_dir(&data)
        .expect("the data directory")
        .flatten()
    {
        if entry.file_name() != "demo" {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let _ = std::fs::remove_dir_all(c.demo.home.join(".cache"));
    let listed = c.ok(&["get", "deployments"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("web ") && l.contains("4/4")),
        "{listed}"
    );

    // Delete: no container process left on any host.
    second.stop();
    c.ok(&["delete", "deployment", "web"]);
    c.ok(&["delete", "pod", "pinned"]);
    c.until("no container process left", Duration::from_secs(60), |_| {
        container_processes() == 0
    });
    let none = c.flotilla(&["get", "pods"]);
    assert_eq!(
        String::from_utf8_lossy(&none.stderr),
        "No resources found in default namespace.\n",
        "{}",
        text(&none)
    );

    // A node leaves: drained, purged, out of the cluster file (a copy).
    let copy = c.dir.path().join("cluster.toml");
    std::fs::copy(&c.cluster_file, &copy).expect("copy the cluster file");
    let copy = copy.to_string_lossy().into_owned();
    let env = [("FLOTILLA_AGENT_BINARY", c.agent.as_path())];
    let removed = c.demo.flotilla_with(
        &["--cluster", &copy, "node", "remove", "node3", "--purge"],
        &env,
    );
    assert!(removed.status.success(), "{}", text(&removed));
    let out = String::from_utf8_lossy(&removed.stdout);
    assert!(
        out.contains("node/node3 purged") && out.contains("node node3 removed"),
        "{out}"
    );
    // Its pod network is gone from the host: no route of flotilla's
    // (protocol 0x66), no chain or jump of its, no bridge.
    let network = c.on_node(
        "node3",
        "ip -4 route show proto 0x66; iptables -w 10 -t nat -S; iptables -w 10 -S; \
         ip link show flotilla0 2>&1 || true",
    );
    assert!(
        !network.contains("FLOTILLA")
            && !network.lines().any(|l| l.contains(" via "))
            && network.contains("does not exist"),
        "node3's pod network after the purge:\n{network}"
    );
    let left = c
        .demo
        .flotilla_with(&["--cluster", &copy, "get", "nodes"], &env);
    let table = String::from_utf8_lossy(&left.stdout);
    assert!(
        left.status.success() && !table.contains("node3"),
        "{}",
        text(&left)
    );
    c.demo.down();
}

fn run(command: &str, args: &[&str]) {
    let out = Command::new(command).args(args).output().expect(command);
    assert!(out.status.success(), "{command} {args:?}: {out:?}");
}
