//! Node sessions over real SSH, on demo clusters of the tests' own: every
//! node Ready with figures read through its agent; a node cut off is
//! reported within seconds while the others stay Ready, and is Ready again
//! once it returns; 200 ms of delay each way changes nothing; a changed
//! host key and a wrong client key are refused and named; twenty nodes at
//! once. As root, with the README test command's packages.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
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
