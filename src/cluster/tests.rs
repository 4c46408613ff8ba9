//! The cluster state driven as a session would drive it, on a manual clock.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::*;
use crate::agent::node::{DiskUsage, MetricsSample};
use crate::api::node::{Taint, TaintEffect};
use crate::api::status::{PodPhase, PodStatus};
use crate::api::{
    Container, ObjectMeta, Pod, PodSpec, Quantity, ResourceList, ResourceRequirements,
};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
}

fn node_config(name: &str) -> NodeConfig {
    NodeConfig {
        name: name.into(),
        address: format!("10.77.0.{}", name.len()),
        port: Some(22),
        user: Some("root".into()),
        identity: None,
        labels: BTreeMap::new(),
        taints: Vec::new(),
        host_key: None,
        cgroup_parent: "flotilla".into(),
    }
}

fn cluster(nodes: Vec<NodeConfig>) -> ClusterConfig {
    ClusterConfig {
        path: PathBuf::from("cluster.toml"),
        name: "demo".into(),
        nodes,
        registries: BTreeMap::new(),
        manifests: Vec::new(),
        pod_cidr: crate::config::cluster_file::DEFAULT_POD_CIDR,
    }
}

fn setup(names: &[&str]) -> (ClusterState, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(t0()));
    let config = cluster(names.iter().map(|n| node_config(n)).collect());
    let state = ClusterState::with_clock(&config, clock.clone(), StateOptions::default());
    (state, clock)
}

fn hello(node: &str) -> HelloReply {
    HelloReply {
        version: "flotilla/1".into(),
        agent_version: "flotilla-agent 0.1.0".into(),
        node: node.into(),
        capabilities: vec!["node.metrics".into()],
        pid: None,
        agent_binary: None,
    }
}

fn facts() -> NodeFacts {
    NodeFacts {
        hostname: "host-one".into(),
        os: "Debian GNU/Linux 12 (bookworm)".into(),
        kernel: "6.1.0-28-amd64".into(),
        architecture: "arm64".into(),
        cpus: 4,
        memory_bytes: 8 * GIB,
        disk: DiskUsage {
            path: "/var/lib/flotilla".into(),
            total_bytes: 100 * GIB,
            free_bytes: 60 * GIB,
        },
        boot_time: Some(t0() - chrono::Duration::days(3)),
        pod_network: None,
        addresses: Vec::new(),
    }
}

/// A sample at agent time `secs` after t0, with room to spare.
fn sample(seq: u64, secs: i64) -> MetricsSample {
    MetricsSample {
        seq,
        time: t0() + chrono::Duration::seconds(secs),
        cpu_percent: Some(seq as f64 % 100.0),
        memory_total_bytes: 8 * GIB,
        memory_available_bytes: 6 * GIB,
        disk_total_bytes: 100 * GIB,
        disk_free_bytes: 60 * GIB,
        load1: 0.5,
        load5: 0.4,
        load15: 0.3,
        net_rx_bytes: 0,
        net_tx_bytes: 0,
        net_rx_bytes_per_sec: None,
        net_tx_bytes_per_sec: None,
    }
}

fn series(samples: Vec<MetricsSample>) -> MetricsSeries {
    MetricsSeries {
        interval_ms: 1000,
        capacity: 600,
        samples,
    }
}

fn seqs(view: &NodeView) -> Vec<u64> {
    view.history.iter().map(|s| s.seq).collect()
}

fn node(state: &ClusterState, name: &str) -> Arc<NodeView> {
    let snapshot = state.snapshot();
    let found = snapshot.nodes.iter().find(|n| n.name == name).cloned();
    found.unwrap_or_else(|| panic!("no node {name}"))
}

fn ready(view: &NodeView) -> &NodeCondition {
    view.condition(NodeConditionType::Ready)
        .unwrap_or_else(|| panic!("{} has no Ready condition", view.name))
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn status_goes_connecting_ready_stale_unreachable_and_back() {
    let (state, clock) = setup(&["node1"]);
    let w = state.node("node1").unwrap();

    let n = node(&state, "node1");
    assert_eq!(n.status, NodeStatus::Unreachable);
    assert_eq!(n.reason(), "NodeStatusNeverUpdated");
    assert_eq!(n.connection.phase, Phase::Idle);

    w.connecting();
    let n = node(&state, "node1");
    assert_eq!(
        (n.status, n.reason()),
        (NodeStatus::Unreachable, "Connecting")
    );
    assert_eq!(n.connection.attempt, 1);

    clock.advance(secs(1));
    w.bootstrapping();
    let n = node(&state, "node1");
    assert_eq!(
        (n.status, n.reason()),
        (NodeStatus::NotReady, "AgentStarting")
    );
    assert_eq!(ready(&n).status, ConditionStatus::False);
    assert_eq!(ready(&n).last_transition_time, t0() + secs(1));
    assert!(n.taints.iter().any(|t| t.key == node::TAINT_NOT_READY));

    w.connected(hello("node1"), facts());
    let n = node(&state, "node1");
    assert_eq!(
        (n.status, n.reason()),
        (NodeStatus::NotReady, "FiguresPending")
    );
    assert_eq!(n.first_seen, Some(t0() + secs(1)));
    assert_eq!(
        n.agent.as_ref().map(|a| a.agent_version.as_str()),
        Some("flotilla-agent 0.1.0")
    );

    clock.advance(secs(1));
    assert_eq!(w.metrics(series(vec![sample(1, 0), sample(2, 1)])), 2);
    let n = node(&state, "node1");
    assert_eq!((n.status, n.reason()), (NodeStatus::Ready, "AgentReady"));
    let became_ready = t0() + secs(2);
    assert_eq!(ready(&n).last_transition_time, became_ready);
    assert_eq!(ready(&n).last_heartbeat_time, Some(became_ready));
    assert!(n.taints.is_empty(), "{:?}", n.taints);
    assert!(n.is_ready());
    assert!(n.usage().is_some());

    // Within the stale limit, time alone changes nothing.
    clock.advance(secs(10));
    state.tick();
    assert_eq!(node(&state, "node1").status, NodeStatus::Ready);
    let generation = state.snapshot().generation;
    state.tick();
    assert_eq!(
        state.snapshot().generation,
        generation,
        "a tick with no change publishes nothing"
    );

    // Past it, the tick notices: the connection is up but the figures stopped.
    clock.advance(secs(1));
    state.tick();
    let n = node(&state, "node1");
    assert_eq!(
        (n.status, n.reason()),
        (NodeStatus::NotReady, "FiguresStale")
    );
    let last_sample = (t0() + secs(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert!(n.message().contains(&last_sample), "{}", n.message());
    assert_eq!(ready(&n).last_transition_time, t0() + secs(13));
    assert_eq!(n.usage(), None, "stale figures are not printed");
    assert!(n.last_sample().is_some(), "but they are kept");
    assert_eq!(
        n.condition(NodeConditionType::MemoryPressure)
            .map(|c| (c.status, c.reason.as_str())),
        Some((ConditionStatus::Unknown, "NodeStatusUnknown"))
    );

    // The connection drops: Unreachable, with the kind and the session's words.
    clock.advance(secs(1));
    w.failed(
        FailureKind::Refused,
        "cannot reach 10.77.0.5:22: Connection refused (os error 111)",
    );
    let n = node(&state, "node1");
    assert_eq!(
        (n.status, n.reason()),
        (NodeStatus::Unreachable, "ConnectionRefused")
    );
    assert!(n.message().contains("Connection refused"));
    assert_eq!(ready(&n).status, ConditionStatus::Unknown);
    assert!(n.taints.iter().any(|t| t.key == node::TAINT_UNREACHABLE));
    assert_eq!(n.connection.phase, Phase::Failed);
    // What was known stays known.
    assert!(n.facts.is_some() && n.history.len() == 2);

    // Retrying keeps the reason rather than flickering to "Connecting".
    w.retry_at(t0() + secs(30));
    clock.advance(secs(2));
    w.connecting();
    let n = node(&state, "node1");
    assert_eq!(
        (n.status, n.reason()),
        (NodeStatus::Unreachable, "ConnectionRefused")
    );
    assert_eq!(n.connection.attempt, 1);
    assert_eq!(
        n.connection.last_failure.as_ref().and_then(|f| f.retry_at),
        Some(t0() + secs(30))
    );

    // Back: Ready again as soon as figures flow, the failure kept for describe.
    w.update(|n| {
        n.bootstrapping();
        n.connected(hello("node1"), facts());
        n.metrics(series(vec![sample(1, 0), sample(2, 1), sample(3, 16)]));
    });
    let n = node(&state, "node1");
    assert_eq!((n.status, n.reason()), (NodeStatus::Ready, "AgentReady"));
    assert_eq!(seqs(&n), vec![1, 2, 3]);
    assert_eq!(
        n.connection
            .last_failure
            .as_ref()
            .map(|f| (f.kind, f.retry_at)),
        Some((FailureKind::Refused, None))
    );
    assert_eq!(n.connection.connected_at, Some(t0() + secs(16)));
    assert_eq!(
        n.first_seen,
        Some(t0() + secs(1)),
        "first seen does not move"
    );
}

#[test]
fn a_quick_reconnect_stays_ready_and_an_agent_failure_is_not_ready() {
    let (state, clock) = setup(&["a"]);
    let w = state.node("a").unwrap();
    w.update(|n| {
        n.connecting();
        n.connected(hello("a"), facts());
        n.metrics(series(vec![sample(1, 0)]));
    });
    // The link blips and comes back before the figures go stale.
    clock.advance(secs(2));
    w.update(|n| {
        n.connecting();
        n.connected(hello("a"), facts());
    });
    assert_eq!(node(&state, "a").status, NodeStatus::Ready);

    // SSH works but the agent does not: NotReady (the host is reachable).
    w.failed(
        FailureKind::AgentFailed,
        "flotilla-agent exited: bad architecture",
    );
    let n = node(&state, "a");
    assert_eq!(
        (n.status, n.reason()),
        (NodeStatus::NotReady, "AgentFailed")
    );
    assert!(n.message().contains("bad architecture"));
    w.connecting();
    assert_eq!(
        node(&state, "a").status,
        NodeStatus::NotReady,
        "still, while retrying"
    );

    for kind in [
        FailureKind::Unreachable,
        FailureKind::Timeout,
        FailureKind::HostKeyUnknown,
        FailureKind::HostKeyMismatch,
        FailureKind::AuthFailed,
    ] {
        w.failed(kind, format!("{kind:?} happened"));
        let n = node(&state, "a");
        assert_eq!(n.status, NodeStatus::Unreachable, "{kind:?}");
        assert_eq!(n.reason(), kind.reason());
        assert_eq!(n.message(), format!("{kind:?} happened"));
    }
    assert!(FailureKind::HostKeyMismatch.needs_operator());
    assert!(!FailureKind::Timeout.needs_operator());
}

#[test]
fn history_is_bounded_and_deduplicated_across_reconnects_and_agent_restarts() {
    let (state, clock) = setup(&["a"]);
    let w = state.node("a").unwrap();
    w.connected(hello("a"), facts());
    assert_eq!(
        w.metrics_since(),
        None,
        "a new connection asks for everything"
    );
    let first: Vec<_> = (1..=700).map(|i| sample(i, i as i64)).collect();
    assert_eq!(w.metrics(series(first)), 700);
    let n = node(&state, "a");
    assert_eq!(n.history.len(), 600);
    assert_eq!(seqs(&n).first(), Some(&101));
    assert_eq!(w.metrics_since(), Some(700));

    // Polling: only newer seqs are kept, however the reply overlaps.
    let overlap: Vec<_> = (690..=705).map(|i| sample(i, i as i64)).collect();
    assert_eq!(w.metrics(series(overlap)), 5);
    assert_eq!(w.metrics_since(), Some(705));

    // A reconnect to the same agent: the whole ring again, two of them new.
    clock.advance(secs(5));
    w.connected(hello("a"), facts());
    assert_eq!(w.metrics_since(), None);
    let ring: Vec<_> = (108..=707).map(|i| sample(i, i as i64)).collect();
    assert_eq!(w.metrics(series(ring)), 2);
    assert_eq!(w.metrics_since(), Some(707));
    // A reply with nothing new still confirms the numbering when it holds our last sample.
    w.connected(hello("a"), facts());
    assert_eq!(
        w.metrics(series(vec![sample(706, 706), sample(707, 707)])),
        0
    );
    assert_eq!(w.metrics_since(), Some(707));

    // The agent restarted: seq from 1, later times. Nothing is lost or doubled.
    w.connected(hello("a"), facts());
    // Its ring is empty at first: the cursor stays at "everything".
    assert_eq!(w.metrics(series(vec![])), 0);
    assert_eq!(w.metrics_since(), None);
    let restarted: Vec<_> = (1..=3).map(|i| sample(i, 800 + i as i64)).collect();
    assert_eq!(w.metrics(series(restarted)), 3);
    assert_eq!(w.metrics_since(), Some(3));
    let again: Vec<_> = (1..=4).map(|i| sample(i, 800 + i as i64)).collect();
    assert_eq!(w.metrics(series(again)), 1);
    let n = node(&state, "a");
    assert_eq!(n.history.len(), 600);
    assert_eq!(n.agent_restarts, 1);
    let tail: Vec<_> = n.history.last_n(6).map(|s| s.seq).collect();
    assert_eq!(tail, vec![706, 707, 1, 2, 3, 4]);
    let times: Vec<_> = n.history.iter().map(|s| s.time).collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "time only moves forward"
    );
    // Sparkline accessors: the last N, oldest first.
    assert_eq!(n.cpu_percents(2), vec![Some(3.0), Some(4.0)]);
    assert_eq!(n.memory_percents(1), vec![Some(25.0)]);
    assert_eq!(n.disk_percents(1), vec![Some(40.0)]);
    assert_eq!(n.cpu_percents(1000).len(), 600);
}

#[test]
fn events_are_bounded_deduplicated_and_replayed_from_zero_on_a_new_connection() {
    let (state, _clock) = setup(&["a"]);
    let w = state.node("a").unwrap();
    let event = |seq: u64, secs: i64| Event {
        phase: Some(PodPhase::Running),
        ..Event::started(seq, t0() + chrono::Duration::seconds(secs))
    };
    w.connected(hello("a"), facts());
    assert_eq!(w.events_since(), Some(0));
    for i in 1..=1200 {
        assert!(w.event(event(i, i as i64)));
    }
    assert!(!w.event(event(1200, 1200)), "a replay");
    assert_eq!(w.events_since(), Some(1200));
    let n = node(&state, "a");
    assert_eq!(n.events.len(), 1000);
    assert_eq!(n.events.first().map(|e| e.seq), Some(201));
    w.connected(hello("a"), facts());
    assert_eq!(w.events_since(), Some(0), "a new agent may number afresh");
    assert!(!w.event(event(1200, 1200)));
    assert_eq!(w.events_since(), Some(1200), "the same agent: confirmed");
}

#[test]
fn labels_and_taints_follow_the_cluster_file_and_kubernetes() {
    let clock = Arc::new(ManualClock::new(t0()));
    let mut cfg = node_config("node1");
    cfg.labels.insert("zone".into(), "a".into());
    // A well-known label in the file does not override the node's own.
    cfg.labels
        .insert(node::LABEL_HOSTNAME.into(), "something-else".into());
    cfg.taints.push("dedicated=db:NoSchedule".parse().unwrap());
    let state = ClusterState::with_clock(&cluster(vec![cfg]), clock, StateOptions::default());
    let w = state.node("node1").unwrap();

    let n = node(&state, "node1");
    let labels: Vec<_> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(
        labels,
        [
            "kubernetes.io/hostname=node1",
            "kubernetes.io/os=linux",
            "zone=a"
        ],
        "the arch is not known before the facts"
    );
    let taints: Vec<_> = n.taints.iter().map(Taint::to_string).collect();
    assert_eq!(
        taints,
        [
            "dedicated=db:NoSchedule",
            "node.kubernetes.io/unreachable:NoSchedule"
        ]
    );

    w.update(|n| {
        n.connected(hello("node1"), facts());
        n.metrics(series(vec![sample(1, 0)]));
        n.set_unschedulable(true);
    });
    let n = node(&state, "node1");
    assert_eq!(
        n.labels.get(node::LABEL_ARCH).map(String::as_str),
        Some("arm64")
    );
    assert_eq!(
        n.labels.get(node::LABEL_HOSTNAME).map(String::as_str),
        Some("node1")
    );
    let taints: Vec<_> = n.taints.iter().map(Taint::to_string).collect();
    assert_eq!(
        taints,
        [
            "dedicated=db:NoSchedule",
            "node.kubernetes.io/unschedulable:NoSchedule"
        ]
    );
    assert_eq!(n.status_text(), "Ready,SchedulingDisabled");
    assert!(n.taints.iter().all(|t| t.effect == TaintEffect::NoSchedule));

    // The arch stays known while the node is away: labels do not flap.
    w.failed(FailureKind::Timeout, "no answer in 10s");
    let n = node(&state, "node1");
    assert_eq!(
        n.labels.get(node::LABEL_ARCH).map(String::as_str),
        Some("arm64")
    );
    assert!(n.taints.iter().any(|t| t.key == node::TAINT_UNREACHABLE));
    assert!(!n.taints.iter().any(|t| t.key == node::TAINT_NOT_READY));
}

fn q(s: &str) -> Quantity {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn pod(name: &str, phase: PodPhase, cpu: &str, memory: &str) -> PodRecord {
    PodRecord {
        uid: format!("uid-{name}"),
        pod: Pod::new(
            ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                ..Default::default()
            },
            PodSpec {
                containers: vec![Container {
                    name: "main".into(),
                    image: "busybox".into(),
                    resources: ResourceRequirements {
                        requests: ResourceList {
                            cpu: Some(q(cpu)),
                            memory: Some(q(memory)),
                        },
                        limits: ResourceList {
                            cpu: None,
                            memory: Some(q(memory)),
                        },
                    },
                    ..Default::default()
                }],
                ..Default::default()
            },
        ),
        status: PodStatus {
            phase,
            ..Default::default()
        },
    }
}

#[test]
fn a_node_named_by_host_name_gives_its_pods_the_address_ssh_reached() {
    let mut config = node_config("h");
    config.address = "h.lab.example".into();
    let state = ClusterState::with_clock(
        &cluster(vec![config]),
        Arc::new(ManualClock::new(t0())),
        StateOptions::default(),
    );
    let w = state.node("h").unwrap();
    w.connected(hello("h"), facts());
    w.pods(vec![pod("web", PodPhase::Running, "100m", "64Mi")]);
    // Unresolved, the host name is no address.
    assert!(
        node(&state, "h")
            .pods
            .iter()
            .all(|p| p.status.host_ip.is_empty())
    );
    w.reached_at("192.0.2.7".parse().unwrap());
    assert!(
        node(&state, "h")
            .pods
            .iter()
            .all(|p| p.status.host_ip == "192.0.2.7")
    );
    // Later listings keep it.
    w.pods(vec![pod("db", PodPhase::Pending, "1", "1Gi")]);
    assert_eq!(node(&state, "h").pods[0].status.host_ip, "192.0.2.7");
}

#[test]
fn capacity_allocatable_and_allocated_use_quantities() {
    let (state, _clock) = setup(&["a"]);
    let w = state.node("a").unwrap();
    assert!(node(&state, "a").capacity.is_none());
    w.connected(hello("a"), facts());
    let n = node(&state, "a");
    let cap = n.capacity.clone().unwrap();
    let alloc = n.allocatable.clone().unwrap();
    assert_eq!(
        cap.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>(),
        ["cpu=4", "ephemeral-storage=100Gi", "memory=8Gi", "pods=110"]
    );
    assert_eq!(
        alloc
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>(),
        [
            "cpu=4",
            "ephemeral-storage=90Gi",
            "memory=8092Mi",
            "pods=110"
        ]
    );

    w.pods(vec![
        pod("web", PodPhase::Running, "500m", "256Mi"),
        pod("db", PodPhase::Pending, "1", "1Gi"),
        pod("job", PodPhase::Succeeded, "2", "2Gi"),
    ]);
    let n = node(&state, "a");
    assert_eq!(n.pod_count(), 2);
    assert_eq!(n.pods.len(), 3);
    assert_eq!(
        n.pods
            .iter()
            .map(|p| p.pod.metadata.name.as_str())
            .collect::<Vec<_>>(),
        ["db", "job", "web"],
        "sorted"
    );
    // Each pod's hostIP is the node's address from the cluster file.
    assert!(n.pods.iter().all(|p| p.status.host_ip == "10.77.0.1"));
    assert_eq!(n.allocated.requests.cpu.to_string(), "1500m");
    assert_eq!(n.allocated.requests.memory.to_string(), "1280Mi");
    assert_eq!(n.allocated.limits.cpu, Quantity::zero());
    assert_eq!(n.allocated.limits.memory, q("1280Mi"));
    assert_eq!(percent_of(&n.allocated.requests.cpu, &alloc.cpu), 37);
    assert_eq!(percent_of(&n.allocated.requests.memory, &alloc.memory), 15);

    // One pod's new record replaces it; a deleted pod goes.
    w.pod(pod("job", PodPhase::Running, "2", "2Gi"));
    assert_eq!(node(&state, "a").allocated.requests.cpu, q("3500m"));
    w.pod(pod("new", PodPhase::Pending, "100m", "1Mi"));
    w.pod_removed("default", "web");
    let n = node(&state, "a");
    assert_eq!(n.allocated.requests.cpu, q("3100m"));
    assert_eq!(n.pod_count(), 3);
    assert!(n.pod("default", "web").is_none() && n.pod("default", "new").is_some());
}

#[test]
fn pressure_conditions_use_kubelets_eviction_thresholds() {
    let (state, clock) = setup(&["a"]);
    let w = state.node("a").unwrap();
    w.connected(hello("a"), facts());
    let mut seq = 0;
    let mut post = |memory_available: u64, disk_free: u64| {
        seq += 1;
        clock.advance(secs(1));
        let mut s = sample(seq, seq as i64);
        s.memory_available_bytes = memory_available;
        s.disk_free_bytes = disk_free;
        w.metrics(series(vec![s]));
        node(&state, "a")
    };
    let status = |n: &NodeView, t| n.condition(t).map(|c| (c.status, c.reason.clone()));
    use ConditionStatus::{False, True};
    use NodeConditionType::{DiskPressure, MemoryPressure, PidPressure};

    let n = post(100 * MIB, 10 * GIB);
    assert_eq!(
        status(&n, MemoryPressure),
        Some((False, "AgentHasSufficientMemory".into()))
    );
    assert_eq!(
        status(&n, DiskPressure),
        Some((False, "AgentHasNoDiskPressure".into()))
    );
    assert_eq!(
        status(&n, PidPressure),
        Some((False, "AgentHasSufficientPID".into()))
    );
    let calm_since = n.condition(MemoryPressure).map(|c| c.last_transition_time);

    let n = post(100 * MIB - 1, 10 * GIB - 1);
    assert_eq!(
        status(&n, MemoryPressure),
        Some((True, "AgentHasInsufficientMemory".into()))
    );
    assert_eq!(
        status(&n, DiskPressure),
        Some((True, "AgentHasDiskPressure".into()))
    );
    assert!(n.under_pressure(MemoryPressure) && n.under_pressure(DiskPressure));
    assert!(
        n.condition(MemoryPressure)
            .is_some_and(|c| c.message.contains("99 MiB"))
    );
    let keys: Vec<_> = n.taints.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(
        keys,
        [node::TAINT_MEMORY_PRESSURE, node::TAINT_DISK_PRESSURE]
    );
    assert_eq!(
        n.status,
        NodeStatus::Ready,
        "pressure does not make a node NotReady"
    );
    assert_ne!(
        n.condition(MemoryPressure).map(|c| c.last_transition_time),
        calm_since
    );

    let n = post(6 * GIB, 60 * GIB);
    assert!(!n.under_pressure(MemoryPressure) && n.taints.is_empty());
    let order: Vec<_> = n.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(
        order,
        ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
    );
}

#[test]
fn a_reader_holding_a_snapshot_is_unaffected_and_unchanged_nodes_are_shared() {
    let (state, clock) = setup(&["a", "b", "c"]);
    for name in ["a", "b", "c"] {
        let w = state.node(name).unwrap();
        w.connected(hello(name), facts());
        w.metrics(series((1..=100).map(|i| sample(i, i as i64)).collect()));
    }
    let before = state.snapshot();
    clock.advance(secs(1));
    let a = state.node("a").unwrap();
    a.metrics(series(vec![sample(101, 101)]));
    a.failed(FailureKind::Unreachable, "gone");
    let after = state.snapshot();

    assert!(after.generation > before.generation);
    assert_eq!(
        before.node("a").map(|n| (n.status, n.history.len())),
        Some((NodeStatus::Ready, 100))
    );
    assert_eq!(
        after.node("a").map(|n| (n.status, n.history.len())),
        Some((NodeStatus::Unreachable, 101))
    );
    assert!(
        Arc::ptr_eq(&before.nodes[1], &after.nodes[1]),
        "b did not change"
    );
    assert!(
        Arc::ptr_eq(&before.nodes[2], &after.nodes[2]),
        "c did not change"
    );
    let (old_a, new_a) = (&before.nodes[0], &after.nodes[0]);
    assert!(
        old_a.history.shares_chunks_with(&new_a.history),
        "a's history is shared, not copied"
    );
    assert_eq!(
        after
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>(),
        ["a", "b", "c"],
        "cluster-file order"
    );
    assert_eq!(after.count(NodeStatus::Ready), 2);
    assert_eq!(&*after.cluster_name, "demo");
}

#[tokio::test]
async fn subscribers_are_told_of_each_change() {
    let (state, _clock) = setup(&["a"]);
    let mut rx = state.subscribe();
    assert!(!rx.has_changed().unwrap_or(true));
    let w = state.node("a").unwrap();
    let writer = tokio::task::spawn_blocking(move || w.connecting());
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .expect("notified in time")
        .expect("sender alive");
    writer.await.unwrap();
    let seen = rx.borrow_and_update().clone();
    assert_eq!(seen.node("a").map(|n| n.reason()), Some("Connecting"));
}

#[tokio::test]
async fn the_ticker_notices_stale_figures_without_any_message() {
    let clock = Arc::new(ManualClock::new(t0()));
    let state = ClusterState::with_clock(
        &cluster(vec![node_config("a")]),
        clock.clone(),
        StateOptions::default(),
    );
    let w = state.node("a").unwrap();
    w.update(|n| {
        n.connected(hello("a"), facts());
        n.metrics(series(vec![sample(1, 0)]));
    });
    let mut rx = state.subscribe();
    let ticker = state.spawn_ticker(Duration::from_millis(10));
    clock.advance(secs(11));
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .expect("the tick published")
        .expect("sender alive");
    assert_eq!(
        rx.borrow().node("a").map(|n| n.status),
        Some(NodeStatus::NotReady)
    );
    drop(state);
    drop(w);
    drop(rx);
    // The ticker holds only a weak reference: it ends with the state.
    tokio::time::timeout(Duration::from_secs(5), ticker)
        .await
        .expect("the ticker stopped")
        .expect("no panic");
}

#[test]
fn reconfiguring_adds_removes_and_reorders_nodes_keeping_what_is_known() {
    let (state, _clock) = setup(&["a", "b"]);
    let a = state.node("a").unwrap();
    let b = state.node("b").unwrap();
    a.connected(hello("a"), facts());
    let mut a_cfg = node_config("a");
    a_cfg.labels.insert("zone".into(), "z".into());
    state.reconfigure(&cluster(vec![node_config("c"), a_cfg]));
    let snapshot = state.snapshot();
    assert_eq!(
        snapshot
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>(),
        ["c", "a"]
    );
    let a_view = snapshot.node("a").unwrap();
    assert!(a_view.facts.is_some(), "kept");
    assert_eq!(a_view.labels.get("zone").map(String::as_str), Some("z"));
    assert_eq!(
        state.node("b").unwrap_err(),
        StateError::UnknownNode("b".into())
    );
    // b's old writer writes nowhere, even after a new b appears.
    state.reconfigure(&cluster(vec![node_config("b")]));
    b.connected(hello("b"), facts());
    assert!(b.update(|_| ()).is_none());
    assert!(
        state
            .snapshot()
            .node("b")
            .is_some_and(|n| n.facts.is_none())
    );
    assert!(a.update(|_| ()).is_none(), "a is gone");
}

#[test]
fn age_comes_from_boot_time_or_first_contact() {
    let (state, clock) = setup(&["a", "b"]);
    let now = t0() + secs(60);
    assert_eq!(node(&state, "a").age(now), None);
    let a = state.node("a").unwrap();
    a.connected(hello("a"), facts());
    assert_eq!(
        node(&state, "a").age(t0()),
        Some(Duration::from_secs(3 * 86_400))
    );
    let b = state.node("b").unwrap();
    let mut no_boot = facts();
    no_boot.boot_time = None;
    clock.advance(secs(10));
    b.connected(hello("b"), no_boot);
    assert_eq!(node(&state, "b").age(now), Some(secs(50)));
    assert_eq!(
        node(&state, "b").age(t0()),
        Some(Duration::ZERO),
        "a clock step reads as zero"
    );
}

#[test]
fn fifty_nodes_of_full_history_publish_by_sharing() {
    let names: Vec<String> = (0..50).map(|i| format!("node{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (state, clock) = setup(&refs);
    let writers: Vec<_> = refs.iter().map(|n| state.node(n).unwrap()).collect();
    for (name, w) in refs.iter().zip(&writers) {
        w.update(|n| {
            n.connected(hello(name), facts());
            n.metrics(series((1..=600).map(|i| sample(i, i as i64)).collect()));
        });
    }
    let before = state.snapshot();
    assert_eq!(before.count(NodeStatus::Ready), 50);
    // A second of figures from every node: fifty publishes.
    clock.advance(secs(1));
    for w in &writers {
        w.metrics(series(vec![sample(601, 601)]));
    }
    let after = state.snapshot();
    assert_eq!(after.generation, before.generation + 50);
    for (old, new) in before.nodes.iter().zip(&after.nodes) {
        assert_eq!(new.history.len(), 600);
        assert_eq!(new.history.last().map(|s| s.seq), Some(601));
        assert_eq!(old.history.last().map(|s| s.seq), Some(600));
    }
    // The newest node's history shares all but its tail with the old one's.
    let (old, new) = (&before.nodes[49].history, &after.nodes[49].history);
    let shared = new
        .iter()
        .zip(old.iter().skip(1))
        .filter(|(a, b)| std::ptr::eq(*a, *b))
        .count();
    assert!(
        shared >= 600 - 2 * history::CHUNK,
        "only {shared} samples shared"
    );
}

#[test]
fn handles_cross_threads() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<ClusterState>();
    send_sync::<NodeWriter>();
    send_sync::<Arc<ClusterSnapshot>>();
}

#[test]
#[ignore = "timing, run by hand"]
fn publish_cost() {
    let names: Vec<String> = (0..50).map(|i| format!("node{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (state, clock) = setup(&refs);
    let writers: Vec<_> = refs.iter().map(|n| state.node(n).unwrap()).collect();
    for (name, w) in refs.iter().zip(&writers) {
        w.update(|n| {
            n.connected(hello(name), facts());
            n.metrics(series((1..=600).map(|i| sample(i, i as i64)).collect()));
        });
    }
    let _held = state.snapshot();
    let start = std::time::Instant::now();
    let rounds = 200u64;
    for r in 0..rounds {
        clock.advance(secs(1));
        for w in &writers {
            w.metrics(series(vec![sample(601 + r, 601 + r as i64)]));
        }
    }
    let per = start.elapsed() / (rounds as u32 * 50);
    eprintln!("one publish (50 nodes, 600 samples each): {per:?}");
}
