//! Tests of the scheduler: each filter and score plugin against the outcomes
//! kube-scheduler's own tests expect (cases ported from its
//! `pkg/scheduler/framework/plugins/*` tests where flotilla's pods can express
//! them), then whole decisions: the unschedulable message, tie-breaking,
//! the weighted totals and the explanation; then the cache kept between
//! decisions.

mod cache;
mod decision;
mod filters;
mod scores;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::cycle::Scratch;
use super::filters::{Candidate, Rejection};
use super::input::PodFacts;
use super::{BoundPod, Decision, DeploymentRef, NodeInfo, Profile};
use crate::api::meta::ObjectMeta;
use crate::api::pod::{Container, Pod, PodSpec, ResourceList, ResourceRequirements};
use crate::api::{Quantity, QuantityFormat, Taint, TaintEffect, Toleration, TolerationOperator};

use super::Allocatable;

/// A container requesting `cpu` millicores and `memory` bytes; None leaves
/// the request out (not zero).
fn container(cpu: Option<i64>, memory: Option<i64>) -> Container {
    Container {
        name: "c".to_owned(),
        image: "busybox".to_owned(),
        resources: ResourceRequirements {
            requests: ResourceList {
                cpu: cpu.map(Quantity::from_millis),
                memory: memory.map(|b| Quantity::from_value(b, QuantityFormat::BinarySI)),
            },
            ..ResourceRequirements::default()
        },
        ..Container::default()
    }
}

/// A container requesting both, the shape of most of kube-scheduler's cases.
fn req(cpu: i64, memory: i64) -> Container {
    container(Some(cpu), Some(memory))
}

fn pod_with(spec: PodSpec) -> Pod {
    Pod::new(
        ObjectMeta {
            name: "web-1".to_owned(),
            namespace: "default".to_owned(),
            ..ObjectMeta::default()
        },
        spec,
    )
}

fn pod(containers: Vec<Container>) -> Pod {
    pod_with(PodSpec {
        containers,
        ..PodSpec::default()
    })
}

fn bound(containers: Vec<Container>) -> BoundPod {
    BoundPod::new(&pod(containers), None)
}

/// A Ready node with room for 110 pods.
fn node(name: &str, cpu_millis: i64, memory_bytes: i64) -> NodeInfo {
    NodeInfo::new(
        name,
        Allocatable {
            cpu_millis,
            memory_bytes,
            pods: 110,
        },
    )
}

fn with_pods(mut node: NodeInfo, pods: Vec<BoundPod>) -> NodeInfo {
    node.pods = pods;
    node
}

fn taint(s: &str) -> Taint {
    match s.parse() {
        Ok(t) => t,
        Err(e) => panic!("{s:?}: {e}"),
    }
}

fn toleration(
    key: &str,
    operator: Option<TolerationOperator>,
    value: &str,
    effect: Option<TaintEffect>,
) -> Toleration {
    Toleration {
        key: key.to_owned(),
        operator,
        value: value.to_owned(),
        effect,
        toleration_seconds: None,
    }
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(6)
}

/// Runs the filters alone, as kube-scheduler's plugin tests call `Filter`.
fn filter(pod: &Pod, node: &NodeInfo) -> Result<(), Rejection> {
    let nodes = std::slice::from_ref(node);
    let scratch = Scratch::new(pod, None, nodes);
    let facts = PodFacts::new(pod, None, &scratch.ids);
    let view = scratch.view(nodes, &facts);
    let labels: Vec<Option<u32>> = view
        .labels
        .iter()
        .map(|column| column.first().map(|&(_, value)| value))
        .collect();
    let candidate = Candidate {
        node,
        row: &view.rows[0],
        ports: &view.ports[0],
        labels: &labels,
    };
    super::filters::run(&facts, candidate)
}

/// The Kubernetes reason strings of a rejection, or an empty list.
fn reasons(pod: &Pod, node: &NodeInfo) -> Vec<String> {
    match filter(pod, node) {
        Ok(()) => Vec::new(),
        Err(rejection) => rejection.reasons.iter().map(|r| r.to_string()).collect(),
    }
}

fn decide(pod: &Pod, deployment: Option<&DeploymentRef>, nodes: &[NodeInfo]) -> Decision {
    Profile::default().schedule(pod, deployment, nodes, &mut rng())
}
