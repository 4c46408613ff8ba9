//! The reconcile rules against hand-built worlds.

use std::collections::HashSet;

use chrono::{Duration as ChronoDuration, TimeZone, Utc};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

use super::*;
use crate::api::status::{ContainerState, ContainerStateRunning, ContainerStatus};
use crate::controller::world::{NodeFlags, NodeState};
use crate::scheduler::{Allocatable, NodeInfo};

fn now() -> chrono::DateTime<chrono::Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap()
}

fn node(name: &str) -> NodeState {
    NodeState {
        name: name.into(),
        info: NodeInfo::new(
            name,
            Allocatable {
                cpu_millis: 4000,
                memory_bytes: 8 << 30,
                pods: 110,
            },
        ),
        ..NodeState::default()
    }
}

fn deployment(name: &str, replicas: i32, image: &str) -> Deployment {
    let mut d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image,
                    "resources": {"requests": {"memory": "64Mi", "cpu": "100m"}}}]}}}
    }))
    .unwrap();
    d.metadata.namespace = "default".into();
    d
}

fn world(nodes: Vec<NodeState>, deployments: Vec<Deployment>) -> World {
    World {
        now: now(),
        nodes,
        deployments: deployments
            .into_iter()
            .map(|deployment| DeploymentState {
                deployment,
                generation: 1,
            })
            .collect(),
        revisions: Vec::new(),
        pending: Vec::new(),
    }
}

fn running(pod: Pod, uid: &str, ready: bool) -> PodRecord {
    PodRecord {
        uid: uid.into(),
        pod,
        status: PodStatus {
            phase: PodPhase::Running,
            start_time: Some(now()),
            container_statuses: vec![ContainerStatus {
                name: "c".into(),
                state: ContainerState::Running(ContainerStateRunning::default()),
                last_state: None,
                ready,
                restart_count: 0,
                image: String::new(),
                image_id: String::new(),
                container_id: String::new(),
                started: Some(true),
            }],
            ..PodStatus::default()
        },
    }
}

/// Puts `n` running pods of `d`'s current template on `node`.
fn add_pods(node: &mut NodeState, d: &Deployment, n: usize, ready: bool, rng: &mut StdRng) {
    let hash = naming::template_hash(&d.spec.template);
    for _ in 0..n {
        let pod = naming::new_pod(d, &hash, rng);
        let uid = format!("uid-{}", pod.metadata.name);
        node.pods.push(running(pod, &uid, ready));
    }
}

fn run(world: &World) -> Vec<Action> {
    plan(
        world,
        &HashSet::new(),
        &PlanOptions::default(),
        &mut StdRng::seed_from_u64(7),
    )
}

fn binds(actions: &[Action]) -> Vec<&str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Bind { node, .. } => Some(node.as_str()),
            _ => None,
        })
        .collect()
}

fn deletes(actions: &[Action]) -> Vec<(&str, DeleteReason)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Delete { name, reason, .. } => Some((name.as_str(), *reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn three_replicas_spread_over_three_nodes() {
    let w = world(
        vec![node("node1"), node("node2"), node("node3")],
        vec![deployment("web", 3, "busybox")],
    );
    let actions = run(&w);
    let mut nodes = binds(&actions);
    nodes.sort();
    assert_eq!(nodes, ["node1", "node2", "node3"], "{actions:#?}");
    let hash = naming::template_hash(&w.deployments[0].deployment.spec.template);
    for action in &actions {
        if let Action::Bind {
            pod, node, message, ..
        } = action
        {
            assert!(pod.metadata.name.starts_with(&format!("web-{hash}-")));
            assert_eq!(&pod.spec.node_name, node);
            assert!(
                message.starts_with("Successfully assigned default/web-"),
                "{message}"
            );
            assert!(pod.metadata.annotations[SCHEDULING_ANNOTATION].contains("Scheduled"));
        }
    }
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::RecordRevision(r) if r.revision == 1))
    );
}

#[test]
fn scale_down_removes_the_extra_pods_from_the_most_crowded_node() {
    let d = deployment("web", 2, "busybox");
    let mut rng = StdRng::seed_from_u64(1);
    let (mut n1, mut n2) = (node("node1"), node("node2"));
    add_pods(&mut n1, &d, 3, true, &mut rng);
    add_pods(&mut n2, &d, 1, true, &mut rng);
    let actions = run(&world(vec![n1.clone(), n2], vec![d]));
    let gone = deletes(&actions);
    assert_eq!(gone.len(), 2, "{actions:#?}");
    for (name, reason) in gone {
        assert_eq!(reason, DeleteReason::ScalingDown);
        assert!(n1.pods.iter().any(|r| r.pod.metadata.name == name));
    }
    assert!(binds(&actions).is_empty());
}

#[test]
fn a_pod_no_node_fits_is_pending_with_kubernetes_reason_once() {
    let mut d = deployment("big", 1, "busybox");
    d.spec.template.spec.containers[0].resources =
        serde_json::from_value(json!({"requests": {"memory": "64Gi"}})).unwrap();
    let mut w = world(vec![node("node1"), node("node2")], vec![d]);
    let actions = run(&w);
    let Some(Action::Pend { pod, message }) =
        actions.iter().find(|a| matches!(a, Action::Pend { .. }))
    else {
        panic!("no Pend in {actions:#?}");
    };
    assert_eq!(message, "0/2 nodes are available: 2 Insufficient memory.");
    // Stored as pending with that reason, the next pass leaves it be.
    w.pending.push(PendingPod {
        pod: pod.clone(),
        status: unschedulable_status(message, now()),
    });
    let again = run(&w);
    assert!(
        again
            .iter()
            .all(|a| !matches!(a, Action::Pend { .. } | Action::Bind { .. })),
        "{again:#?}"
    );
}

#[test]
fn a_pending_pod_is_bound_once_a_node_fits() {
    let mut w = world(vec![node("node1")], vec![]);
    w.nodes[0].flags.unschedulable = true;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "solo", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    w.pending.push(PendingPod {
        pod,
        status: PodStatus::default(),
    });
    let actions = run(&w);
    assert!(
        matches!(&actions[..], [Action::Pend { message, .. }] if message.contains("unschedulable")),
        "{actions:#?}"
    );
    w.nodes[0].flags.unschedulable = false;
    let actions = run(&w);
    assert!(
        matches!(&actions[..], [Action::Bind { node, was_pending: true, .. }] if node == "node1"),
        "{actions:#?}"
    );
}

#[test]
fn a_rolling_update_surges_one_and_keeps_availability() {
    let old = deployment("web", 4, "busybox:1");
    let mut rng = StdRng::seed_from_u64(2);
    let mut nodes = vec![node("node1"), node("node2")];
    add_pods(&mut nodes[0], &old, 2, true, &mut rng);
    add_pods(&mut nodes[1], &old, 2, true, &mut rng);
    let new = deployment("web", 4, "busybox:2");
    let actions = run(&world(nodes.clone(), vec![new.clone()]));
    // 25% of 4: one above, one below.
    assert_eq!(binds(&actions).len(), 1, "{actions:#?}");
    let gone = deletes(&actions);
    assert_eq!(gone.len(), 1, "{actions:#?}");
    assert_eq!(gone[0].1, DeleteReason::RollingUpdate);

    // With the new pod created but not ready yet and one old pod gone, the
    // pass waits: 3 available is replicas - maxUnavailable.
    let hash = naming::template_hash(&new.spec.template);
    nodes[0].pods.remove(0);
    let pod = naming::new_pod(&new, &hash, &mut rng);
    nodes[0].pods.push(running(pod, "fresh", false));
    let actions = run(&world(nodes.clone(), vec![new.clone()]));
    assert!(deletes(&actions).is_empty(), "{actions:#?}");
    assert_eq!(binds(&actions).len(), 1, "surge room: 1 new + 3 old < 5");
}

#[test]
fn an_unavailable_old_pod_goes_first() {
    let old = deployment("web", 2, "busybox:1");
    let mut rng = StdRng::seed_from_u64(3);
    let mut n = node("node1");
    add_pods(&mut n, &old, 1, true, &mut rng);
    add_pods(&mut n, &old, 1, false, &mut rng);
    let sick = n.pods[1].pod.metadata.name.clone();
    let new = deployment("web", 2, "busybox:2");
    // One new pod is up (the surge): one old pod may go, and it is the sick one.
    add_pods(&mut n, &new, 1, true, &mut rng);
    let actions = run(&world(vec![n], vec![new]));
    assert_eq!(
        deletes(&actions),
        [(sick.as_str(), DeleteReason::RollingUpdate)]
    );
}

#[test]
fn recreate_deletes_every_old_pod_before_creating() {
    let old = deployment("db", 2, "busybox:1");
    let mut rng = StdRng::seed_from_u64(4);
    let mut n = node("node1");
    add_pods(&mut n, &old, 2, true, &mut rng);
    let mut new = deployment("db", 2, "busybox:2");
    new.spec.strategy.strategy_type = StrategyType::Recreate;
    let actions = run(&world(vec![n], vec![new.clone()]));
    assert_eq!(deletes(&actions).len(), 2);
    assert!(binds(&actions).is_empty());
    let actions = run(&world(vec![node("node1")], vec![new]));
    assert_eq!(binds(&actions).len(), 2);
}

#[test]
fn a_lost_node_is_marked_replaced_and_fenced_when_back() {
    let d = deployment("web", 2, "busybox");
    let mut rng = StdRng::seed_from_u64(5);
    let (mut n1, mut n2) = (node("node1"), node("node2"));
    add_pods(&mut n1, &d, 1, true, &mut rng);
    add_pods(&mut n2, &d, 1, true, &mut rng);
    n2.ready = false;
    n2.listed = false;
    n2.info.ready = ConditionStatus::Unknown;

    // Within the grace period: nothing.
    n2.not_ready_since = Some(now() - ChronoDuration::seconds(10));
    let actions = run(&world(vec![n1.clone(), n2.clone()], vec![d.clone()]));
    assert!(
        actions
            .iter()
            .all(|a| matches!(a, Action::RecordRevision(_))),
        "{actions:#?}"
    );

    // Past it: marked lost.
    n2.not_ready_since = Some(now() - ChronoDuration::seconds(31));
    let actions = run(&world(vec![n1.clone(), n2.clone()], vec![d.clone()]));
    assert!(actions.contains(&Action::MarkLost {
        node: "node2".into()
    }));

    // Lost: its pod no longer counts; the replacement goes to node1.
    n2.flags = NodeFlags {
        lost: true,
        ..NodeFlags::default()
    };
    let actions = run(&world(vec![n1.clone(), n2.clone()], vec![d.clone()]));
    assert_eq!(binds(&actions), ["node1"], "{actions:#?}");

    // Back: the stale copy is fenced; the mark stays until it is gone.
    n2.ready = true;
    n2.listed = true;
    n2.not_ready_since = None;
    let stale = n2.pods[0].pod.metadata.name.clone();
    add_pods(&mut n1, &d, 1, true, &mut rng);
    let actions = run(&world(vec![n1.clone(), n2.clone()], vec![d.clone()]));
    assert_eq!(deletes(&actions), [(stale.as_str(), DeleteReason::Fenced)]);
    assert!(!actions.contains(&Action::ClearLost {
        node: "node2".into()
    }));
    assert!(binds(&actions).is_empty());
    n2.pods.clear();
    let actions = run(&world(vec![n1, n2], vec![d]));
    assert!(actions.contains(&Action::ClearLost {
        node: "node2".into()
    }));
}

#[test]
fn pods_of_a_deleted_deployment_are_collected() {
    let d = deployment("gone", 1, "busybox");
    let mut rng = StdRng::seed_from_u64(6);
    let mut n = node("node1");
    add_pods(&mut n, &d, 2, true, &mut rng);
    let actions = run(&world(vec![n], vec![]));
    let gone = deletes(&actions);
    assert_eq!(gone.len(), 2);
    assert!(gone.iter().all(|(_, r)| *r == DeleteReason::OwnerDeleted));
}

#[test]
fn pods_being_deleted_do_not_count() {
    let d = deployment("web", 1, "busybox");
    let mut rng = StdRng::seed_from_u64(8);
    let mut n = node("node1");
    add_pods(&mut n, &d, 1, true, &mut rng);
    let uid = n.pods[0].uid.clone();
    let w = world(vec![n], vec![d]);
    let deleting: HashSet<String> = [uid].into();
    let actions = plan(
        &w,
        &deleting,
        &PlanOptions::default(),
        &mut StdRng::seed_from_u64(1),
    );
    assert_eq!(binds(&actions).len(), 1, "{actions:#?}");
}

#[test]
fn a_rollback_brings_an_old_revision_to_the_top() {
    let v1 = deployment("web", 1, "busybox:1");
    let v2 = deployment("web", 1, "busybox:2");
    let revision = |d: &Deployment, n: u64| Revision {
        deployment: "web".into(),
        namespace: "default".into(),
        hash: naming::template_hash(&d.spec.template),
        revision: n,
        template: d.spec.template.clone(),
    };
    let mut w = world(vec![node("node1")], vec![v1.clone()]);
    w.revisions = vec![revision(&v1, 1), revision(&v2, 2)];
    let actions = run(&w);
    assert!(
        actions.iter().any(|a| matches!(a, Action::RecordRevision(r) if r.revision == 3 && r.hash == naming::template_hash(&v1.spec.template))),
        "{actions:#?}"
    );
}

#[test]
fn rolling_bounds_follow_kubernetes() {
    let d = |replicas, surge: serde_json::Value, unavailable: serde_json::Value| -> Deployment {
        let mut d = deployment("x", replicas, "busybox");
        d.spec.strategy.rolling_update = Some(
            serde_json::from_value(json!({"maxSurge": surge, "maxUnavailable": unavailable}))
                .unwrap(),
        );
        d
    };
    assert_eq!(rolling_bounds(&deployment("x", 10, "b")), (3, 2));
    assert_eq!(rolling_bounds(&deployment("x", 1, "b")), (1, 0));
    assert_eq!(rolling_bounds(&d(3, json!(0), json!(0))), (0, 1));
    assert_eq!(rolling_bounds(&d(3, json!("50%"), json!(1))), (2, 1));
}
