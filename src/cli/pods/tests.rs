//! `get pods` rendered from a cluster state on a manual clock: pods on two
//! nodes and two namespaces, one restarting, one with a hostile name, and a
//! node that was lost after it listed its pods.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::*;
use crate::agent::protocol::messages::PodRecord;
use crate::api::status::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, PodPhase, PodStatus,
};
use crate::api::{Container, ObjectMeta, Pod, PodSpec};
use crate::cli::nodes::tests::{facts, hello, node_config, t0};
use crate::cluster::{ClusterState, FailureKind, ManualClock, StateOptions};
use crate::config::cluster_file::ClusterConfig;

fn container_status(name: &str, state: ContainerState, restarts: i32) -> ContainerStatus {
    ContainerStatus {
        name: name.into(),
        ready: matches!(state, ContainerState::Running(_)),
        state,
        last_state: (restarts > 0).then(|| {
            ContainerState::Terminated(ContainerStateTerminated {
                exit_code: 1,
                reason: "Error".into(),
                finished_at: Some(t0() - chrono::Duration::seconds(90)),
                ..Default::default()
            })
        }),
        restart_count: restarts,
        image: "busybox".into(),
        image_id: String::new(),
        container_id: String::new(),
        started: None,
    }
}

fn pod(namespace: &str, name: &str, phase: PodPhase, states: Vec<ContainerStatus>) -> PodRecord {
    PodRecord {
        uid: format!("uid-{name}"),
        pod: Pod::new(
            ObjectMeta {
                name: name.into(),
                namespace: namespace.into(),
                ..Default::default()
            },
            PodSpec {
                containers: states
                    .iter()
                    .map(|s| Container {
                        name: s.name.clone(),
                        image: format!("10.77.0.1:5000/demo/{}", s.name),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
        ),
        status: PodStatus {
            phase,
            start_time: Some(t0() - chrono::Duration::minutes(5)),
            container_statuses: states,
            ..Default::default()
        },
    }
}

fn running() -> ContainerState {
    ContainerState::Running(ContainerStateRunning { started_at: None })
}

fn waiting(reason: &str) -> ContainerState {
    ContainerState::Waiting(ContainerStateWaiting {
        reason: reason.into(),
        message: String::new(),
    })
}

fn snapshot() -> Arc<ClusterSnapshot> {
    let config = ClusterConfig {
        path: PathBuf::from("cluster.toml"),
        name: "demo".into(),
        nodes: vec![
            node_config("node1", "10.77.0.11"),
            node_config("node2", "10.77.0.12"),
            node_config("node3", "10.77.0.13"),
        ],
        registries: BTreeMap::new(),
        manifests: Vec::new(),
        pod_cidr: crate::config::cluster_file::DEFAULT_POD_CIDR,
    };
    let clock = Arc::new(ManualClock::new(t0()));
    let state = ClusterState::with_clock(&config, clock, StateOptions::default());
    let w = |name: &str| state.node(name).expect("node");
    w("node1").update(|n| {
        n.connecting();
        n.connected(hello("node1"), facts("node1"));
        n.pods(vec![
            pod(
                "default",
                "web",
                PodPhase::Running,
                vec![
                    container_status("web", running(), 0),
                    container_status("sidecar", waiting("CrashLoopBackOff"), 3),
                ],
            ),
            pod(
                "kube-system",
                "dns",
                PodPhase::Running,
                vec![container_status("dns", running(), 0)],
            ),
        ]);
    });
    w("node2").update(|n| {
        n.connecting();
        n.connected(hello("node2"), facts("node2"));
        n.pods(vec![
            pod(
                "default",
                "api",
                PodPhase::Pending,
                vec![container_status("api", waiting("ImagePullBackOff"), 0)],
            ),
            pod(
                "default",
                "evil\x1b[2J",
                PodPhase::Running,
                vec![container_status("evil", running(), 0)],
            ),
        ]);
    });
    // node3 listed a pod, then the link went away.
    w("node3").update(|n| {
        n.connecting();
        n.connected(hello("node3"), facts("node3"));
        n.pods(vec![pod(
            "default",
            "batch",
            PodPhase::Running,
            vec![container_status("batch", running(), 0)],
        )]);
        n.failed(FailureKind::Unreachable, "no route to host");
    });
    state.snapshot()
}

fn now() -> DateTime<Utc> {
    t0()
}

fn default_ns() -> Namespaces {
    Namespaces::One("default".into())
}

#[test]
fn get_pods_lists_one_namespace_as_kubectl_does() {
    let out = pods_table(&snapshot(), &[], &default_ns(), now(), false).expect("pods");
    print!("{out}");
    assert_eq!(
        out,
        "\
NAME          READY   STATUS             RESTARTS      AGE   NODE
api           0/1     ImagePullBackOff   0             5m    node2
batch         1/1     Unknown            0             5m    node3
evil\\x1b[2J   1/1     Running            0             5m    node2
web           1/2     CrashLoopBackOff   3 (90s ago)   5m    node1
"
    );
}

#[test]
fn all_namespaces_adds_the_namespace_column_and_wide_the_images() {
    let out = pods_table(&snapshot(), &[], &Namespaces::All, now(), true).expect("pods");
    print!("{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("NAMESPACE     NAME   "),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].ends_with("NODE    IP       IMAGES"),
        "{}",
        lines[0]
    );
    assert_eq!(lines.len(), 6);
    assert!(lines[5].starts_with("kube-system   dns"), "{}", lines[5]);
    assert!(
        lines[4].ends_with("<none>   10.77.0.1:5000/demo/web,10.77.0.1:5000/demo/sidecar"),
        "{}",
        lines[4]
    );
}

#[test]
fn an_empty_namespace_says_so() {
    let ns = Namespaces::One("nothing".into());
    assert_eq!(pods_table(&snapshot(), &[], &ns, now(), false), None);
    assert_eq!(
        no_pods_message(&ns),
        "No resources found in nothing namespace."
    );
}

#[test]
fn json_is_a_kubernetes_list_of_pods_with_their_node() {
    let out = pods_json(&snapshot(), &[], &default_ns());
    let list: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(list["kind"], "List");
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 4);
    let web = &items[3];
    assert_eq!(web["apiVersion"], "v1");
    assert_eq!(web["kind"], "Pod");
    assert_eq!(web["metadata"]["name"], "web");
    assert_eq!(web["metadata"]["uid"], "uid-web");
    assert_eq!(web["spec"]["nodeName"], "node1");
    assert_eq!(web["status"]["phase"], "Running");
    assert_eq!(
        web["status"]["containerStatuses"][1]["state"]["waiting"]["reason"],
        "CrashLoopBackOff"
    );
    let one = pod_json(&snapshot(), &[], "default", "api").expect("api");
    let api: serde_json::Value = serde_json::from_str(&one).expect("json");
    assert_eq!(api["spec"]["nodeName"], "node2");
    assert_eq!(pod_json(&snapshot(), &[], "default", "nope"), None);
}

#[test]
fn one_pod_by_name() {
    let out = pod_table(&snapshot(), &[], "default", "api", now(), false).expect("api");
    assert_eq!(out.lines().count(), 2);
    assert!(out.lines().nth(1).expect("row").starts_with("api "));
    assert_eq!(
        pod_table(&snapshot(), &[], "default", "nope", now(), false),
        None
    );
}
