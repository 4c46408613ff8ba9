//! The node views rendered from a cluster state driven on a manual clock:
//! a Ready node with pods and events, a cordoned one, one whose figures went
//! stale, one that refuses SSH, and one that never answered. Outputs are
//! compared whole, so a change of layout is a visible diff.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::*;
use crate::agent::node::{DiskUsage, MetricsSample, MetricsSeries, NodeFacts};
use crate::agent::protocol::messages::{Event, EventType, HelloReply, PodRecord};
use crate::api::status::{PodPhase, PodStatus};
use crate::api::{
    Container, ObjectMeta, Pod, PodSpec, Quantity, ResourceList, ResourceRequirements,
};
use crate::cluster::{ClusterState, FailureKind, ManualClock, StateOptions};
use crate::config::cluster_file::{ClusterConfig, NodeConfig};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

pub(in crate::cli) fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub(in crate::cli) fn node_config(name: &str, address: &str) -> NodeConfig {
    NodeConfig {
        name: name.into(),
        address: address.into(),
        port: Some(22),
        user: Some("root".into()),
        identity: None,
        labels: BTreeMap::new(),
        taints: Vec::new(),
        host_key: None,
        cgroup_parent: "flotilla".into(),
    }
}

pub(in crate::cli) fn hello(node: &str) -> HelloReply {
    HelloReply {
        version: "flotilla/1".into(),
        agent_version: "flotilla-agent 0.1.0".into(),
        node: node.into(),
        capabilities: vec!["node.metrics".into()],
        pid: None,
        agent_binary: None,
    }
}

pub(in crate::cli) fn facts(hostname: &str) -> NodeFacts {
    NodeFacts {
        hostname: hostname.into(),
        os: "Debian GNU/Linux 12 (bookworm)".into(),
        kernel: "6.1.0-28-amd64".into(),
        architecture: "amd64".into(),
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

fn sample(seq: u64, at: DateTime<Utc>, cpu: f64, memory_available: u64) -> MetricsSample {
    MetricsSample {
        seq,
        time: at,
        cpu_percent: Some(cpu),
        memory_total_bytes: 8 * GIB,
        memory_available_bytes: memory_available,
        disk_total_bytes: 100 * GIB,
        disk_free_bytes: 60 * GIB,
        load1: 0.5,
        load5: 0.4,
        load15: 0.3,
        net_rx_bytes: 1_000_000,
        net_tx_bytes: 2_000_000,
        net_rx_bytes_per_sec: Some(1.5 * MIB as f64),
        net_tx_bytes_per_sec: Some(300.0 * 1024.0),
    }
}

fn series(samples: Vec<MetricsSample>) -> MetricsSeries {
    MetricsSeries {
        interval_ms: 1000,
        capacity: 600,
        samples,
    }
}

fn q(s: &str) -> Quantity {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn pod(name: &str, phase: PodPhase, requests: (&str, &str), limits: (&str, &str)) -> PodRecord {
    let list = |(cpu, memory): (&str, &str)| ResourceList {
        cpu: (!cpu.is_empty()).then(|| q(cpu)),
        memory: (!memory.is_empty()).then(|| q(memory)),
    };
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
                        requests: list(requests),
                        limits: list(limits),
                    },
                    ..Default::default()
                }],
                ..Default::default()
            },
        ),
        status: PodStatus {
            phase,
            start_time: Some(t0() - chrono::Duration::minutes(5)),
            ..Default::default()
        },
    }
}

fn event(seq: u64, secs_before: i64, type_: EventType, reason: &str, message: &str) -> Event {
    Event {
        seq,
        time: t0() + chrono::Duration::seconds(30 - secs_before),
        type_,
        reason: reason.into(),
        message: message.into(),
        namespace: "default".into(),
        pod: "web".into(),
        uid: "uid-web".into(),
        container: Some("main".into()),
        phase: Some(PodPhase::Running),
    }
}

/// Five nodes at t0 + 30 s.
fn fixture() -> (ClusterState, Arc<ManualClock>) {
    let mut node1 = node_config("node1", "10.77.0.11");
    node1.labels.insert("zone".into(), "a".into());
    let mut node2 = node_config("node2", "10.77.0.12");
    node2
        .taints
        .push("dedicated=db:NoSchedule".parse().expect("taint"));
    let mut node5 = node_config("node5", "lab-host");
    node5.port = Some(2222);
    node5.user = None;
    let config = ClusterConfig {
        path: PathBuf::from("cluster.toml"),
        name: "demo".into(),
        nodes: vec![
            node1,
            node2,
            node_config("node3", "10.77.0.13"),
            node_config("node4", "10.77.0.14"),
            node5,
        ],
        registries: BTreeMap::new(),
        manifests: Vec::new(),
        pod_cidr: crate::config::cluster_file::DEFAULT_POD_CIDR,
    };
    let clock = Arc::new(ManualClock::new(t0()));
    let state = ClusterState::with_clock(&config, clock.clone(), StateOptions::default());
    let w = |name: &str| state.node(name).expect("node");

    // node3 connects and samples once at t0, then goes quiet.
    w("node3").update(|n| {
        n.connecting();
        n.connected(hello("node3"), facts("node3"));
        n.metrics(series(vec![sample(1, t0(), 5.0, 6 * GIB)]));
        n.pods(vec![]);
    });
    // node4 refuses SSH, and the session will retry.
    w("node4").update(|n| {
        n.connecting();
        n.failed(
            FailureKind::Refused,
            "cannot reach 10.77.0.14:22: Connection refused (os error 111); check that the host is up, the address and port are right, and sshd is running",
        );
        n.retry_at(t0() + chrono::Duration::seconds(32));
    });
    // node5 is being connected to for the first time.
    w("node5").connecting();

    clock.advance(secs(28));
    w("node1").update(|n| {
        n.connecting();
        n.connected(hello("node1"), facts("node1"));
        n.pods(vec![
            pod("web", PodPhase::Running, ("500m", "256Mi"), ("1", "256Mi")),
            pod("db", PodPhase::Pending, ("1", "1Gi"), ("", "")),
            pod("job", PodPhase::Succeeded, ("2", "2Gi"), ("", "")),
        ]);
    });
    // node2's host is hostile: its OS name tries to clear the operator's screen.
    let mut evil = facts("node2\x1b]0;owned\x07");
    evil.os = "Evil OS\x1b[2J".into();
    evil.boot_time = None;
    evil.cpus = 2;
    w("node2").update(|n| {
        n.connecting();
        n.connected(hello("node2"), evil);
        n.set_unschedulable(true);
        n.pods(vec![]);
    });

    clock.advance(secs(1));
    w("node1").metrics(series(vec![
        sample(1, t0() + chrono::Duration::seconds(28), 40.0, 6 * GIB),
        sample(2, t0() + chrono::Duration::seconds(29), 42.5, 6 * GIB),
    ]));
    w("node2").metrics(series(vec![sample(
        7,
        t0() + chrono::Duration::seconds(29),
        99.9,
        GIB,
    )]));
    for (seq, before, type_, reason, message) in [
        (
            1,
            300,
            EventType::Normal,
            "Pulling",
            "Pulling image \"busybox\"",
        ),
        (
            2,
            298,
            EventType::Normal,
            "Started",
            "Started container main",
        ),
        (
            3,
            40,
            EventType::Warning,
            "BackOff",
            "Back-off restarting failed container\x1b[8m hidden",
        ),
    ] {
        w("node1").event(event(seq, before, type_, reason, message));
    }
    (state, clock)
}

fn snapshot() -> Arc<crate::cluster::ClusterSnapshot> {
    let (state, _clock) = fixture();
    state.snapshot()
}

/// When the fixture's outputs are printed: a second after its last change.
fn now() -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(30)
}

#[test]
fn get_nodes_lists_every_node_with_a_reason_column_when_one_is_not_ready() {
    let out = nodes_table(&snapshot(), now(), false);
    print!("{out}");
    assert_eq!(
        out,
        "\
NAME    STATUS                     ADDRESS      CPU%        MEM%        DISK%       PODS        AGE         KERNEL           REASON
node1   Ready                      10.77.0.11   42%         25%         40%         2           3d          6.1.0-28-amd64   <none>
node2   Ready,SchedulingDisabled   10.77.0.12   99%         87%         40%         0           2s          6.1.0-28-amd64   <none>
node3   NotReady                   10.77.0.13   <unknown>   <unknown>   <unknown>   0           3d          6.1.0-28-amd64   FiguresStale
node4   Unreachable                10.77.0.14   <unknown>   <unknown>   <unknown>   <unknown>   <unknown>   <unknown>        ConnectionRefused
node5   Unreachable                lab-host     <unknown>   <unknown>   <unknown>   <unknown>   <unknown>   <unknown>        Connecting
"
    );
}

#[test]
fn a_healthy_cluster_has_kubectls_narrow_table() {
    let (state, _clock) = fixture();
    let healthy = select(&state.snapshot(), "node1").expect("node1");
    let out = nodes_table(&healthy, now(), false);
    assert_eq!(
        out,
        "\
NAME    STATUS   ADDRESS      CPU%   MEM%   DISK%   PODS   AGE   KERNEL
node1   Ready    10.77.0.11   42%    25%    40%     2      3d    6.1.0-28-amd64
"
    );
    let err = select(&state.snapshot(), "nope").expect_err("unknown");
    assert_eq!(
        err.to_string(),
        "node \"nope\" not found: the cluster has node1, node2, node3, node4, node5; see `flotilla get nodes`"
    );
}

#[test]
fn a_watch_prints_the_table_then_only_rows_that_changed_lined_up_under_it() {
    let (state, clock) = fixture();
    let healthy = select(&state.snapshot(), "node1").expect("node1");
    let (mut watch, first) = NodesWatch::start(&healthy, now(), false);
    // REASON is there from the start, even on a healthy cluster.
    assert_eq!(
        first,
        "\
NAME    STATUS   ADDRESS      CPU%   MEM%   DISK%   PODS   AGE   KERNEL           REASON
node1   Ready    10.77.0.11   42%    25%    40%     2      3d    6.1.0-28-amd64   <none>
"
    );
    // Time alone moves AGE only: nothing to print.
    let later = now() + chrono::Duration::days(1);
    assert_eq!(watch.changed(&healthy, later), "");
    // A new figure is a change.
    clock.advance(secs(1));
    state
        .node("node1")
        .expect("node1")
        .metrics(series(vec![sample(
            3,
            t0() + chrono::Duration::seconds(30),
            7.0,
            6 * GIB,
        )]));
    let changed = select(&state.snapshot(), "node1").expect("node1");
    assert_eq!(
        watch.changed(&changed, later),
        "node1   Ready    10.77.0.11   7%     25%    40%     2      4d    6.1.0-28-amd64   <none>\n"
    );
    assert_eq!(watch.changed(&changed, later), "", "printed once");
    // A new sample with the same figures is a new view but the same row.
    clock.advance(secs(1));
    state
        .node("node1")
        .expect("node1")
        .metrics(series(vec![sample(
            4,
            t0() + chrono::Duration::seconds(31),
            7.0,
            6 * GIB,
        )]));
    let same = select(&state.snapshot(), "node1").expect("node1");
    assert_eq!(watch.changed(&same, later), "");
    // A node going away is printed with its reason, a longer status pushing
    // the rest of its row.
    state
        .node("node1")
        .expect("node1")
        .failed(FailureKind::Refused, "refused");
    let down = select(&state.snapshot(), "node1").expect("node1");
    let row = watch.changed(&down, later);
    assert!(
        row.starts_with("node1   Unreachable 10.77.0.11   ")
            && row.ends_with("ConnectionRefused\n"),
        "{row:?}"
    );
}

#[test]
fn get_nodes_wide_adds_facts_agent_and_the_whole_message() {
    let out = nodes_table(&snapshot(), now(), true);
    print!("{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "NAME    STATUS                     ADDRESS      CPU%        MEM%        DISK%       PODS        AGE         KERNEL           OS-IMAGE                         ARCH        CPUS        MEMORY      AGENT       REASON              MESSAGE"
    );
    assert_eq!(
        lines[1],
        "node1   Ready                      10.77.0.11   42%         25%         40%         2           3d          6.1.0-28-amd64   Debian GNU/Linux 12 (bookworm)   amd64       4           8Gi         0.1.0       <none>              <none>"
    );
    assert!(
        lines[2].contains("   Evil OS\\x1b[2J                   amd64       2           8Gi   "),
        "{}",
        lines[2]
    );
    assert!(lines[3].ends_with(
        "   FiguresStale        no new figures from the agent since 2027-01-15T08:00:00Z"
    ));
    assert!(lines[4].ends_with("   ConnectionRefused   cannot reach 10.77.0.14:22: Connection refused (os error 111); check that the host is up, the address and port are right, and sshd is running"), "{}", lines[4]);
    assert!(!out.contains('\x1b'));
}

#[test]
fn top_nodes_prints_millicores_and_mebibytes_and_unknown_without_figures() {
    let out = top_nodes(&snapshot());
    print!("{out}");
    assert_eq!(
        out,
        "\
NAME    CPU(cores)   CPU%        MEMORY(bytes)   MEMORY%     DISK%
node1   1700m        42%         2048Mi          25%         40%
node2   1998m        99%         7168Mi          87%         40%
node3   <unknown>    <unknown>   <unknown>       <unknown>   <unknown>
node4   <unknown>    <unknown>   <unknown>       <unknown>   <unknown>
node5   <unknown>    <unknown>   <unknown>       <unknown>   <unknown>
"
    );
}

#[test]
fn describe_node_has_kubectls_layout_and_flotillas_extras() {
    let out = describe_node(&snapshot(), "node1", now()).expect("node1");
    print!("{out}");
    assert_eq!(
        out,
        "\
Name:               node1
Roles:              <none>
Labels:             kubernetes.io/arch=amd64
                    kubernetes.io/hostname=node1
                    kubernetes.io/os=linux
                    zone=a
Annotations:        <none>
CreationTimestamp:  Fri, 15 Jan 2027 08:00:28 +0000
Taints:             <none>
Unschedulable:      false
Conditions:
  Type             Status  LastHeartbeatTime                 LastTransitionTime                Reason                     Message
  ----             ------  -----------------                 ------------------                ------                     -------
  MemoryPressure   False   Fri, 15 Jan 2027 08:00:29 +0000   Fri, 15 Jan 2027 08:00:29 +0000   AgentHasSufficientMemory   the agent has sufficient memory available
  DiskPressure     False   Fri, 15 Jan 2027 08:00:29 +0000   Fri, 15 Jan 2027 08:00:29 +0000   AgentHasNoDiskPressure     the agent has no disk pressure
  PIDPressure      False   Fri, 15 Jan 2027 08:00:29 +0000   Fri, 15 Jan 2027 08:00:29 +0000   AgentHasSufficientPID      the agent has sufficient PID available (no pid.available threshold is set, as in Kubernetes by default)
  Ready            True    Fri, 15 Jan 2027 08:00:29 +0000   Fri, 15 Jan 2027 08:00:29 +0000   AgentReady                 flotilla-agent is posting ready status
Addresses:
  InternalIP:  10.77.0.11
  Hostname:    node1
Capacity:
  cpu:                4
  ephemeral-storage:  100Gi
  memory:             8Gi
  pods:               110
Allocatable:
  cpu:                4
  ephemeral-storage:  90Gi
  memory:             8092Mi
  pods:               110
System Info:
  Kernel Version:     6.1.0-28-amd64
  OS Image:           Debian GNU/Linux 12 (bookworm)
  Operating System:   linux
  Architecture:       amd64
  Boot Time:          Tue, 12 Jan 2027 08:00:00 +0000
  Agent Version:      flotilla-agent 0.1.0
  Agent Protocol:     flotilla/1
Non-terminated Pods:  (2 in total)
  Namespace           Name  CPU Requests  CPU Limits  Memory Requests  Memory Limits  Age
  ---------           ----  ------------  ----------  ---------------  -------------  ---
  default             db    1 (25%)       0 (0%)      1Gi (12%)        0 (0%)         5m30s
  default             web   500m (12%)    1 (25%)     256Mi (3%)       256Mi (3%)     5m30s
Allocated resources:
  (Total limits may be over 100 percent, i.e., overcommitted.)
  Resource  Requests      Limits
  --------  --------      ------
  cpu       1500m (37%)   1 (25%)
  memory    1280Mi (15%)  256Mi (3%)
Connection:
  SSH:             root@10.77.0.11:22
  Phase:           Connected since Fri, 15 Jan 2027 08:00:28 +0000 (2s ago)
  Attempts:        0 since the last success
  Connected:       Fri, 15 Jan 2027 08:00:28 +0000 (2s ago)
  Last Heard:      Fri, 15 Jan 2027 08:00:29 +0000 (1s ago)
  Agent Restarts:  0
  Last Failure:    <none>
Figures:
  Sampled:  Fri, 15 Jan 2027 08:00:29 +0000 (1s ago)
  CPU:      42% of 4 CPUs (1700m)
  Memory:   2048Mi used of 8192Mi (25%)
  Disk:     40Gi used of 100Gi (40%) on /var/lib/flotilla
  Load:     0.50 0.40 0.30
  Network:  receive 1.5Mi/s, transmit 300Ki/s
Events:
  Type     Reason   Age    From            Message
  ----     ------   ----   ----            -------
  Normal   Pulling  5m     flotilla-agent  pod default/web container main: Pulling image \"busybox\"
  Normal   Started  4m58s  flotilla-agent  pod default/web container main: Started container main
  Warning  BackOff  40s    flotilla-agent  pod default/web container main: Back-off restarting failed container\\x1b[8m hidden
"
    );
}

#[test]
fn describe_an_unreachable_node_shows_what_is_unknown_and_the_whole_failure() {
    let out = describe_node(&snapshot(), "node4", now()).expect("node4");
    print!("{out}");
    for needle in [
        "Taints:             node.kubernetes.io/unreachable:NoSchedule\n",
        "  Ready            Unknown   <unknown>          Fri, 15 Jan 2027 08:00:00 +0000   ConnectionRefused        cannot reach",
        "Capacity:             <unknown>\n",
        "System Info:          <unknown>\n",
        "Non-terminated Pods:  <unknown>\n",
        "Allocated resources:  <unknown>\n",
        "  Phase:           Failed since Fri, 15 Jan 2027 08:00:00 +0000 (30s ago)\n",
        "  Attempts:        1 since the last success\n",
        "  Last Failure:    ConnectionRefused Fri, 15 Jan 2027 08:00:00 +0000 (30s ago); next attempt Fri, 15 Jan 2027 08:00:32 +0000\n",
        "                   cannot reach 10.77.0.14:22: Connection refused (os error 111); check that",
        "Figures:           <unknown> (no sample yet)\n",
        "Events:            <none>\n",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
    let err = describe_node(&snapshot(), "node9", now()).expect_err("unknown");
    assert!(
        err.to_string()
            .contains("node1, node2, node3, node4, node5")
    );
}

#[test]
fn hostile_host_text_is_escaped_in_every_text_output() {
    let snapshot = snapshot();
    let describe = describe_node(&snapshot, "node2", now()).expect("node2");
    print!("{describe}");
    assert!(describe.contains("  Hostname:    node2\\x1b]0;owned\\x07\n"));
    assert!(describe.contains("  OS Image:           Evil OS\\x1b[2J\n"));
    for out in [
        describe,
        describe_node(&snapshot, "node1", now()).expect("node1"),
        nodes_table(&snapshot, now(), true),
        nodes_table(&snapshot, now(), false),
        top_nodes(&snapshot),
    ] {
        assert!(!out.contains(['\x1b', '\x07']), "{out}");
    }
    // JSON carries the text as it came, escaped by serde.
    let json = nodes_json(&snapshot, now());
    assert!(json.contains(r#""osImage": "Evil OS\u001b[2J""#), "{json}");
}

#[test]
fn json_is_a_kubernetes_list_with_flotillas_fields_alongside() {
    let snapshot = snapshot();
    let json = nodes_json(&snapshot, now());
    let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(value["apiVersion"], "v1");
    assert_eq!(value["kind"], "List");
    assert_eq!(value["metadata"]["resourceVersion"], "");
    let items = value["items"].as_array().expect("items");
    assert_eq!(items.len(), 5);
    let node1 = &items[0];
    assert_eq!(node1["kind"], "Node");
    assert_eq!(node1["metadata"]["name"], "node1");
    assert_eq!(node1["metadata"]["labels"]["zone"], "a");
    assert_eq!(
        node1["metadata"]["creationTimestamp"],
        "2027-01-15T08:00:28Z"
    );
    assert_eq!(node1["status"]["capacity"]["memory"], "8Gi");
    assert_eq!(node1["status"]["allocatable"]["ephemeral-storage"], "90Gi");
    assert_eq!(
        node1["status"]["nodeInfo"]["kernelVersion"],
        "6.1.0-28-amd64"
    );
    assert_eq!(node1["status"]["nodeInfo"]["operatingSystem"], "linux");
    assert_eq!(node1["status"]["addresses"][0]["type"], "InternalIP");
    assert_eq!(node1["status"]["addresses"][1]["type"], "Hostname");
    assert_eq!(node1["status"]["conditions"][3]["type"], "Ready");
    assert_eq!(node1["status"]["conditions"][3]["status"], "True");
    assert!(node1["spec"].get("taints").is_none(), "empty, left out");
    let f = &node1["flotilla"];
    assert_eq!(f["status"], "Ready");
    assert_eq!(f["figures"]["cpuMillicores"], 1700);
    assert_eq!(f["figures"]["memoryUsedBytes"], 2 * GIB);
    assert_eq!(f["pods"], 2);
    assert_eq!(f["allocated"]["requests"]["cpu"], "1500m");
    assert_eq!(f["agent"]["version"], "flotilla-agent 0.1.0");
    assert_eq!(f["ageSeconds"], 3 * 86_400 + 30);

    let node2 = &items[1];
    assert_eq!(node2["spec"]["unschedulable"], true);
    assert_eq!(node2["spec"]["taints"][0]["key"], "dedicated");
    assert_eq!(node2["flotilla"]["statusText"], "Ready,SchedulingDisabled");

    let node4 = &items[3];
    assert_eq!(node4["flotilla"]["status"], "Unreachable");
    assert_eq!(node4["flotilla"]["reason"], "ConnectionRefused");
    assert_eq!(
        node4["flotilla"]["connection"]["lastFailure"]["retryAt"],
        "2027-01-15T08:00:32Z"
    );
    assert!(node4["status"].get("capacity").is_none());
    assert_eq!(node4["status"]["nodeInfo"]["kernelVersion"], "");
    // Every flotilla field is present on every node, null when unknown.
    let keys = |v: &serde_json::Value| -> Vec<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(keys(&node1["flotilla"]), keys(&node4["flotilla"]));
    assert!(node4["flotilla"]["figures"].is_null());
    assert!(node4["flotilla"]["agent"].is_null());

    let node5 = &items[4];
    assert_eq!(node5["status"]["addresses"][0]["type"], "InternalDNS");
    assert_eq!(node5["flotilla"]["ssh"]["port"], 2222);
    assert!(node5["flotilla"]["ssh"]["user"].is_null());

    // kubectl's indent, and one object for one name.
    assert!(json.starts_with("{\n    \"apiVersion\": \"v1\",\n"));
    let one = node_json(&snapshot, "node3", now()).expect("node3");
    let one: serde_json::Value = serde_json::from_str(&one).expect("valid JSON");
    assert_eq!(one["kind"], "Node");
    assert_eq!(one["flotilla"]["reason"], "FiguresStale");
    assert!(node_json(&snapshot, "x", now()).is_err());
}
