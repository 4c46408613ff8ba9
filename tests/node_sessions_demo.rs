//! Node sessions over real SSH, on demo clusters of the tests' own: every
//! node Ready with figures read through its agent; a node cut off is
//! reported within seconds while the others stay Ready, and is Ready again
//! once it returns; so is a node whose sshd is stopped and its connections
//! cut, as `flotilla get nodes --watch` shows it; 200 ms of delay each way
//! changes nothing; a changed
//! host key and a wrong client key are refused and named; twenty nodes at
//! once. As root, with the README test command's packages.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flotilla::agent::protocol::messages::PodRef;
use flotilla::api::Pod;
use flotilla::api::status::{ContainerState, PodPhase};
use flotilla::cluster::{ClusterSnapshot, FailureKind, NodeStatus};
use flotilla::ssh::bootstrap::AgentBinary;
use flotilla::ssh::fleet::Fleet;
use flotilla::ssh::session::SessionOptions;
use support::TestDir;
use support::demo::{Demo, stripped_agent};

const DEADLINE: Duration = Duration::from_secs(90);

fn agent(dir: &TestDir) -> Arc<AgentBinary> {
    let path: PathBuf = stripped_agent(dir.path());
    Arc::new(AgentBinary::from_path(&path, "test").expect("the stripped agent"))
}

async fn wait_until(
    fleet: &Fleet,
    what: &str,
    deadline: Duration,
    mut done: impl FnMut(&ClusterSnapshot) -> bool,
) -> Arc<ClusterSnapshot> {
    let started = Instant::now();
    loop {
        let snapshot = fleet.state().snapshot();
        if done(&snapshot) {
            return snapshot;
        }
        assert!(
            started.elapsed() < deadline,
            "{what}: not within {deadline:?}; nodes:\n{}",
            describe(&snapshot)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn describe(snapshot: &ClusterSnapshot) -> String {
    snapshot
        .nodes
        .iter()
        .map(|n| format!("  {} {} {}: {}", n.name, n.status, n.reason(), n.message()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn status_of(snapshot: &ClusterSnapshot, node: &str) -> NodeStatus {
    snapshot.node(node).expect(node).status
}

fn run(command: &str, args: &[&str]) {
    let out = Command::new(command).args(args).output().expect(command);
    assert!(
        out.status.success(),
        "{command} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_ready_survive_delay_and_report_a_lost_link() {
    let demo = Demo::up("sess", "10.85.0.0/24", 3);
    let dir = TestDir::new("sessions");
    let fleet = Fleet::start(
        &demo.cluster(),
        &demo.targets(),
        agent(&dir),
        SessionOptions::default(),
    );
    assert!(fleet.settled(DEADLINE).await, "not every node settled");
    let ready = wait_until(&fleet, "all Ready with figures", DEADLINE, |s| {
        s.nodes
            .iter()
            .all(|n| n.status == NodeStatus::Ready && n.usage().is_some())
    })
    .await;
    for (i, node) in ready.nodes.iter().enumerate() {
        let facts = node.facts.as_ref().expect("facts");
        assert_eq!(facts.hostname, format!("node{}", i + 1));
        assert_eq!(
            node.labels
                .get("kubernetes.io/hostname")
                .map(String::as_str),
            Some(node.name.as_str())
        );
        assert!(node.capacity.is_some() && node.allocatable.is_some());
        assert!(!node.history.is_empty());
    }

    // The verbs an operator types, through their own sessions, read the
    // same live figures.
    let stripped = stripped_agent(dir.path());
    let cluster_file = demo.cluster_file();
    let cluster_arg = cluster_file.to_str().unwrap();
    let env = [("FLOTILLA_AGENT_BINARY", stripped.as_path())];
    let get = demo.flotilla_with(
        &["--cluster", cluster_arg, "get", "nodes", "--timeout", "60s"],
        &env,
    );
    let table = String::from_utf8_lossy(&get.stdout).into_owned();
    assert!(get.status.success(), "{}", support::demo::text(&get));
    for node in ["node1", "node2", "node3"] {
        let row = table
            .lines()
            .find(|l| l.starts_with(node))
            .unwrap_or_else(|| panic!("no {node} row:\n{table}"));
        assert!(row.contains(" Ready "), "{table}");
        assert!(row.contains('%'), "figures in {row}");
    }
    let described = demo.flotilla_with(
        &[
            "--cluster",
            cluster_arg,
            "describe",
            "node",
            "node1",
            "--timeout",
            "60s",
        ],
        &env,
    );
    let text = String::from_utf8_lossy(&described.stdout).into_owned();
    assert!(
        described.status.success(),
        "{}",
        support::demo::text(&described)
    );
    for field in [
        "Name:               node1",
        "Kernel Version:",
        "Allocatable:",
        "CPU:",
    ] {
        assert!(text.contains(field), "{field} missing:\n{text}");
    }

    pod_verbs(&demo, &fleet, cluster_arg, &env).await;

    // node3 reached through 200 ms of delay each way (this kernel has no
    // netem, so a delaying proxy): keepalives and calls still fit.
    let mut slow = demo.cluster();
    let address = slow.nodes[2].address.clone();
    let key = flotilla::ssh::scan_host_key(&address, 22, Duration::from_secs(10))
        .await
        .expect("node3's host key");
    let proxy = delay_proxy(&format!("{address}:22"), Duration::from_millis(200)).await;
    slow.nodes[2].address = "127.0.0.1".into();
    slow.nodes[2].port = Some(proxy);
    slow.nodes[2].host_key = Some(flotilla::ssh::known_hosts::fingerprint(&key));
    slow.nodes.drain(..2);
    let slow_fleet = Fleet::start(
        &slow,
        &demo.targets(),
        agent(&dir),
        SessionOptions::default(),
    );
    assert!(slow_fleet.settled(DEADLINE).await);
    wait_until(
        &slow_fleet,
        "node3 Ready through the delay",
        DEADLINE,
        |s| status_of(s, "node3") == NodeStatus::Ready,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let delayed = slow_fleet.state().snapshot();
    assert_eq!(
        status_of(&delayed, "node3"),
        NodeStatus::Ready,
        "{}",
        describe(&delayed)
    );
    slow_fleet.stop().await;

    // node2's link goes down: reported, the others unaffected.
    let link2 = demo.link(2);
    run("ip", &["link", "set", &link2, "down"]);
    let cut = Instant::now();
    let lost = wait_until(&fleet, "node2 not Ready", Duration::from_secs(30), |s| {
        status_of(s, "node2") != NodeStatus::Ready
    })
    .await;
    let detected = cut.elapsed();
    eprintln!("a lost link was reported after {detected:?}");
    for node in ["node1", "node3"] {
        assert_eq!(
            status_of(&lost, node),
            NodeStatus::Ready,
            "{}",
            describe(&lost)
        );
    }
    let down = wait_until(&fleet, "node2 Unreachable", Duration::from_secs(30), |s| {
        status_of(s, "node2") == NodeStatus::Unreachable
    })
    .await;
    let node2 = down.node("node2").unwrap();
    assert!(!node2.message().is_empty(), "{}", describe(&down));
    run("ip", &["link", "set", &link2, "up"]);
    wait_until(&fleet, "node2 Ready again", DEADLINE, |s| {
        status_of(s, "node2") == NodeStatus::Ready
    })
    .await;
    fleet.stop().await;
}

/// Issue 5: a node's sshd stopped and its connections cut (`flotilla demo
/// sshd stop`) is reported within 10 s while the other nodes stay Ready,
/// and the node is Ready again once sshd is back. Watched as an operator
/// watches it, through `flotilla get nodes --watch`, every row it prints
/// timed as it arrives.
#[test]
fn a_stopped_sshd_is_reported_within_10s_and_ready_again_when_it_returns() {
    let demo = Demo::up("sshd", "10.91.0.0/24", 3);
    let dir = TestDir::new("sshd");
    let stripped = stripped_agent(dir.path());
    let cluster_file = demo.cluster_file();
    let mut command = demo.command(&[
        "--cluster",
        cluster_file.to_str().unwrap(),
        "get",
        "nodes",
        "--watch",
        "--timeout",
        "90s",
    ]);
    command.env("FLOTILLA_AGENT_BINARY", &stripped);
    let mut watch = NodesWatch::start(command, &dir.path().join("watch.stderr"));
    watch.until("every node Ready", DEADLINE, |latest| {
        ["node1", "node2", "node3"]
            .iter()
            .all(|n| latest.get(*n).is_some_and(|r| r.status == "Ready"))
    });
    // From here on, every row node1 and node3 get must say Ready.
    watch.must_stay_ready = vec!["node1", "node3"];

    let sshd = |action: &str| {
        let out = demo.flotilla(&["demo", "sshd", action, "node2", "--name", demo.name]);
        assert!(out.status.success(), "{}", support::demo::text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The cut happens while `demo sshd stop` runs (it returns once no sshd
    // process is left on node2): timing from its start over-counts, never under.
    let stopping = Instant::now();
    let stopped = sshd("stop");
    let stop_took = stopping.elapsed();
    assert!(stopped.contains("1 connection cut"), "{stopped}");
    let lost = watch.until("node2 not Ready", Duration::from_secs(30), |latest| {
        latest.get("node2").is_some_and(|r| r.status != "Ready")
    });
    let detected = lost.at.saturating_duration_since(stopping);
    eprintln!(
        "a stopped sshd was reported after {detected:?} (`demo sshd stop` took {stop_took:?}): {}",
        lost.line
    );
    assert_eq!(lost.status, "Unreachable", "{}", lost.line);
    assert!(
        ["HostUnreachable", "ConnectionRefused"].contains(&lost.reason.as_str()),
        "the reason says the host is lost: {}",
        lost.line
    );
    assert!(
        detected < Duration::from_secs(10),
        "issue 5 asks for 10 s; it took {detected:?}"
    );

    // Held down for a while: retries are refused, and said so; the others
    // carry on (checked on every row they get, above).
    let refused = watch.until(
        "node2 ConnectionRefused",
        Duration::from_secs(30),
        |latest| {
            latest
                .get("node2")
                .is_some_and(|r| r.reason == "ConnectionRefused")
        },
    );
    assert_eq!(refused.status, "Unreachable", "{}", refused.line);
    let status = demo.flotilla(&["demo", "status", "--name", demo.name]);
    let status_text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status_text
            .lines()
            .any(|l| l.starts_with("node2 ") && l.contains(" down ")),
        "demo status shows node2's sshd down:\n{status_text}"
    );
    watch.for_a_while(Duration::from_secs(12).saturating_sub(stopping.elapsed()));
    let held = stopping.elapsed();
    assert!(
        watch.latest["node2"].status != "Ready",
        "node2 Ready with sshd down: {}",
        watch.latest["node2"].line
    );

    let starting = Instant::now();
    let started = sshd("start");
    assert!(started.contains("listening again"), "{started}");
    // Reconnects back off up to 30 s between attempts.
    let back = watch.until("node2 Ready again", DEADLINE, |latest| {
        latest.get("node2").is_some_and(|r| r.status == "Ready")
    });
    eprintln!(
        "sshd held down for {held:?}; node2 Ready again {:?} after sshd started",
        back.at.saturating_duration_since(starting)
    );
    // A few more seconds of rows: still all Ready.
    watch.must_stay_ready = vec!["node1", "node2", "node3"];
    watch.for_a_while(Duration::from_secs(3));
    drop(watch);
    demo.down();
}

/// A `flotilla get nodes --watch` running beside a test: its rows, each
/// with the time it arrived, and each node's latest. Killed when dropped.
struct NodesWatch {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
    latest: HashMap<String, Row>,
    /// Nodes whose every row must say Ready.
    must_stay_ready: Vec<&'static str>,
    /// Everything printed so far, for failure messages.
    transcript: String,
    stderr: PathBuf,
}

#[derive(Clone, Debug)]
struct Row {
    status: String,
    /// The REASON column (the last: a watch always has it).
    reason: String,
    at: Instant,
    line: String,
}

impl NodesWatch {
    fn start(mut command: Command, stderr: &Path) -> NodesWatch {
        let log = std::fs::File::create(stderr).expect("the watch's stderr file");
        support::die_with_parent(&mut command);
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("run flotilla get nodes --watch");
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if send.send((Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        NodesWatch {
            child,
            lines,
            latest: HashMap::new(),
            must_stay_ready: Vec::new(),
            transcript: String::new(),
            stderr: stderr.to_path_buf(),
        }
    }

    /// Reads rows until `done` holds of the latest ones (then returns the
    /// row that made it so) or `within` has passed (then fails the test).
    fn until(
        &mut self,
        what: &str,
        within: Duration,
        mut done: impl FnMut(&HashMap<String, Row>) -> bool,
    ) -> Row {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(row) = self.next_row(left) else {
                self.fail(&format!("{what}: not within {within:?}"));
            };
            if done(&self.latest) {
                return row;
            }
        }
    }

    /// Reads rows for `time`, checking each.
    fn for_a_while(&mut self, time: Duration) {
        let deadline = Instant::now() + time;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.next_row(left);
        }
    }

    /// The next node row within `wait`, recorded as its node's latest.
    fn next_row(&mut self, wait: Duration) -> Option<Row> {
        loop {
            let (at, line) = match self.lines.recv_timeout(wait) {
                Ok(next) => next,
                Err(mpsc::RecvTimeoutError::Timeout) => return None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.fail("the watch ended");
                }
            };
            self.transcript.push_str(&line);
            self.transcript.push('\n');
            let cells: Vec<&str> = line.split_whitespace().collect();
            let (Some(node), Some(status), Some(reason)) =
                (cells.first(), cells.get(1), cells.last())
            else {
                continue;
            };
            if *node == "NAME" {
                continue;
            }
            let row = Row {
                status: status.to_string(),
                reason: reason.to_string(),
                at,
                line: line.clone(),
            };
            if self.must_stay_ready.contains(node) && row.status != "Ready" {
                self.fail(&format!("{node} left Ready: {line}"));
            }
            self.latest.insert(node.to_string(), row.clone());
            return Some(row);
        }
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "{what}\nflotilla get nodes --watch printed:\n{}\nits stderr:\n{}",
            self.transcript,
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        );
    }
}

impl Drop for NodesWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pod made through node1's session, then listed, read, killed and
/// deleted by `flotilla` commands, each with sessions of its own.
async fn pod_verbs(
    demo: &Demo,
    fleet: &Fleet,
    cluster_arg: &str,
    env: &[(&str, &std::path::Path)],
) {
    let registry = demo.cluster().nodes[0]
        .address
        .rsplit_once('.')
        .map(|(net, _)| format!("{net}.1:5000"))
        .expect("a dotted address");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "chatty", "namespace": "default"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": format!("{registry}/demo/busybox:latest"),
                "command": ["sh", "-c", "echo hello from chatty; exec sleep 3600"],
            }],
        },
    }))
    .expect("a valid pod");
    let client = fleet.client("node1").expect("node1's session has a client");
    client.create_pod(pod).await.expect("pods.create");
    wait_until(fleet, "chatty Running", DEADLINE, |s| {
        s.node("node1")
            .and_then(|n| n.pod("default", "chatty"))
            .is_some_and(|p| p.status.phase == PodPhase::Running)
    })
    .await;
    let flotilla = |args: &[&str]| {
        let mut all = vec!["--cluster", cluster_arg];
        all.extend_from_slice(args);
        demo.flotilla_with(&all, env)
    };

    let listed = flotilla(&["get", "pods", "-o", "wide"]);
    let table = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.status.success(), "{}", support::demo::text(&listed));
    let row = table
        .lines()
        .find(|l| l.starts_with("chatty "))
        .unwrap_or_else(|| panic!("no chatty row:\n{table}"));
    for cell in [" 1/1 ", " Running ", " node1 ", "/demo/busybox:latest"] {
        assert!(row.contains(cell), "{cell:?} not in {row:?}");
    }
    let json = flotilla(&["get", "pod", "chatty", "-o", "json"]);
    let object: serde_json::Value = serde_json::from_slice(&json.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", support::demo::text(&json)));
    assert_eq!(object["spec"]["nodeName"], "node1");
    assert_eq!(object["status"]["phase"], "Running");

    let logs = flotilla(&["logs", "chatty"]);
    assert!(logs.status.success(), "{}", support::demo::text(&logs));
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "hello from chatty\n");

    let killed = flotilla(&["kill", "chatty"]);
    assert!(killed.status.success(), "{}", support::demo::text(&killed));
    assert_eq!(
        String::from_utf8_lossy(&killed.stdout),
        "pod \"chatty\" killed\n"
    );
    let status = client
        .pod_status(&PodRef::new("default", "chatty"))
        .await
        .expect("pods.status");
    let last = &status.status.container_statuses[0];
    assert!(
        matches!(&last.state, ContainerState::Terminated(t) if t.exit_code == 137)
            || matches!(&last.last_state, Some(ContainerState::Terminated(t)) if t.exit_code == 137),
        "{status:?}"
    );

    let deleted = flotilla(&["delete", "pod", "chatty"]);
    assert!(
        deleted.status.success(),
        "{}",
        support::demo::text(&deleted)
    );
    assert_eq!(
        String::from_utf8_lossy(&deleted.stdout),
        "pod \"chatty\" deleted\n"
    );
    let none = flotilla(&["get", "pods"]);
    assert!(none.status.success(), "{}", support::demo::text(&none));
    assert_eq!(
        String::from_utf8_lossy(&none.stderr),
        "No resources found in default namespace.\n"
    );
    let missing = flotilla(&["logs", "chatty"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("pods \"chatty\" not found in namespace \"default\""),
        "{}",
        support::demo::text(&missing)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_host_key_and_a_wrong_client_key_are_refused_and_named() {
    let demo = Demo::up("keys", "10.86.0.0/24", 2);
    let dir = TestDir::new("keys");
    let mut cluster = demo.cluster();
    // node1 claims to be pinned to another key; node2 logs in with a key
    // the host never saw.
    cluster.nodes[0].host_key = Some("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into());
    let stranger = dir.path().join("stranger");
    run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            stranger.to_str().unwrap(),
        ],
    );
    cluster.nodes[1].identity = Some(stranger);
    let fleet = Fleet::start(
        &cluster,
        &demo.targets(),
        agent(&dir),
        SessionOptions::default(),
    );
    assert!(fleet.settled(DEADLINE).await);
    let snapshot = fleet.state().snapshot();
    let node1 = snapshot.node("node1").unwrap();
    let node2 = snapshot.node("node2").unwrap();
    let failure =
        |n: &flotilla::cluster::NodeView| n.connection.last_failure.as_ref().map(|f| f.kind);
    assert_eq!(
        failure(node1),
        Some(FailureKind::HostKeyMismatch),
        "{}",
        describe(&snapshot)
    );
    assert!(
        node1.message().contains("HOST KEY MISMATCH"),
        "{}",
        node1.message()
    );
    assert_eq!(
        failure(node2),
        Some(FailureKind::AuthFailed),
        "{}",
        describe(&snapshot)
    );
    assert!(
        node2.message().contains("stranger"),
        "the key tried is named: {}",
        node2.message()
    );
    for node in [node1, node2] {
        assert_eq!(node.status, NodeStatus::Unreachable);
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_nodes_come_up_ready() {
    let demo = Demo::up("twenty", "10.87.0.0/24", 20);
    let dir = TestDir::new("twenty");
    let started = Instant::now();
    let fleet = Fleet::start(
        &demo.cluster(),
        &demo.targets(),
        agent(&dir),
        SessionOptions::default(),
    );
    assert!(fleet.settled(Duration::from_secs(180)).await);
    let snapshot = wait_until(&fleet, "20 nodes Ready", Duration::from_secs(180), |s| {
        s.count(NodeStatus::Ready) == 20
    })
    .await;
    eprintln!(
        "20 nodes Ready (first bootstrap) in {:?}",
        started.elapsed()
    );
    assert_eq!(snapshot.nodes.len(), 20);
    fleet.stop().await;
}

/// A TCP proxy to `target` that holds every chunk `delay` before passing it
/// on, in order, each way; returns its port on 127.0.0.1.
async fn delay_proxy(target: &str, delay: Duration) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let target = target.to_string();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                continue;
            };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(delayed_pipe(client_read, server_write, delay));
            tokio::spawn(delayed_pipe(server_read, client_write, delay));
        }
    });
    port
}

async fn delayed_pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (queue, mut queued) =
        tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, bytes)) = queued.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        let due = tokio::time::Instant::now() + delay;
        if n == 0 || queue.send((due, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(queue);
    let _ = writer.await;
}
