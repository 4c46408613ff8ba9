//! What one reconcile pass sees: every node (Ready or not, since when, its
//! cordon and lost flags, the pods its agent reported) and the desired state
//! read from the replicated store (deployments, their revision history, pods
//! waiting for a node). Built fresh each pass; the plan is a pure function of
//! it, so it can be tested without a cluster.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::agent::protocol::messages::PodRecord;
use crate::api::deployment::{Deployment, PodTemplateSpec};
use crate::api::pod::Pod;
use crate::api::status::{ConditionStatus, PodStatus};
use crate::cluster::NodeView;
use crate::scheduler::{Allocatable, BoundPod, DeploymentRef, NodeInfo};

use super::naming;

/// Store kinds the controller reads and writes.
pub const KIND_DEPLOYMENT: &str = "Deployment";
pub const KIND_REPLICA_SET: &str = "ReplicaSet";
pub const KIND_POD: &str = "Pod";
pub const KIND_NODE: &str = "Node";
pub const KIND_EVENT: &str = "Event";

/// A node's flags in the store (`Node/<name>`, cluster-scoped): what the
/// operator set (cordon) and what the controller concluded (lost).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeFlags {
    /// Cordoned: no new pods.
    #[serde(default)]
    pub unschedulable: bool,
    /// NotReady past the grace period: its deployment pods were replaced
    /// elsewhere, and the copies it still runs are stopped when it returns.
    #[serde(default)]
    pub lost: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_at: Option<DateTime<Utc>>,
    /// The node's share of the cluster's pod CIDR, as Kubernetes'
    /// `Node.spec.podCIDR`: allocated once, kept for good (unless it does
    /// not parse: see [`super::network::stored_subnet`]).
    #[serde(default, rename = "podCIDR", skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<String>,
}

/// A deployment's template at one revision (`ReplicaSet/<deployment>-<hash>`),
/// kept so that `rollout undo` can go back to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    pub deployment: String,
    pub namespace: String,
    pub hash: String,
    pub revision: u64,
    pub template: PodTemplateSpec,
}

impl Revision {
    pub fn store_name(deployment: &str, hash: &str) -> String {
        format!("{deployment}-{hash}")
    }
}

/// A pod the controller has not placed (`Pod/<ns>/<name>` in the store):
/// applied without a node, or a deployment replica no node could take yet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingPod {
    pub pod: Pod,
    /// Pending, with the PodScheduled condition saying why.
    #[serde(default)]
    pub status: PodStatus,
}

/// One node as the pass sees it.
#[derive(Clone, Debug)]
pub struct NodeState {
    pub name: String,
    pub ready: bool,
    /// When the node was last heard from, while it is not Ready.
    pub not_ready_since: Option<DateTime<Utc>>,
    /// Its agent's pods: listed this pass when `listed`, else as last known.
    pub pods: Vec<PodRecord>,
    /// Whether `pods` is a fresh list from the agent.
    pub listed: bool,
    pub flags: NodeFlags,
    /// The scheduler's view, without pods (the plan adds them).
    pub info: NodeInfo,
}

/// A deployment and its store generation.
#[derive(Clone, Debug)]
pub struct DeploymentState {
    pub deployment: Deployment,
    pub generation: u64,
}

/// Everything one pass decides from.
#[derive(Clone, Debug, Default)]
pub struct World {
    pub now: DateTime<Utc>,
    /// In cluster-file order.
    pub nodes: Vec<NodeState>,
    pub deployments: Vec<DeploymentState>,
    pub revisions: Vec<Revision>,
    pub pending: Vec<PendingPod>,
}

impl Default for NodeState {
    fn default() -> Self {
        NodeState {
            name: String::new(),
            ready: true,
            not_ready_since: None,
            pods: Vec::new(),
            listed: true,
            flags: NodeFlags::default(),
            info: NodeInfo::new("", Allocatable::default()),
        }
    }
}

impl NodeState {
    /// A node from the cluster state's view of it, with its flags from the
    /// store and pods listed this pass (`None`: use the last known).
    pub fn from_view(
        view: &NodeView,
        flags: NodeFlags,
        listed: Option<Vec<PodRecord>>,
        watched_since: DateTime<Utc>,
    ) -> NodeState {
        let ready = view.is_ready();
        let mut info = NodeInfo::new(view.name.clone(), allocatable(view));
        info.labels = view.labels.clone();
        info.taints = view.config.taints.clone();
        info.unschedulable = flags.unschedulable;
        info.ready = match view.status {
            crate::cluster::NodeStatus::Ready => ConditionStatus::True,
            crate::cluster::NodeStatus::NotReady => ConditionStatus::False,
            crate::cluster::NodeStatus::Unreachable => ConditionStatus::Unknown,
        };
        let not_ready_since =
            (!ready).then(|| view.last_heard.unwrap_or(watched_since).max(watched_since));
        let (pods, listed) = match listed {
            Some(pods) => (pods, true),
            None => (view.pods.to_vec(), false),
        };
        NodeState {
            name: view.name.clone(),
            ready,
            not_ready_since,
            pods,
            listed,
            flags,
            info,
        }
    }
}

fn allocatable(view: &NodeView) -> Allocatable {
    match &view.allocatable {
        Some(a) => Allocatable {
            cpu_millis: a.cpu.millis(),
            memory_bytes: a.memory.value(),
            pods: a.pods.value(),
        },
        None => Allocatable::default(),
    }
}

/// The deployment a pod belongs to, for spreading.
pub fn deployment_of(pod: &Pod) -> Option<DeploymentRef> {
    naming::owner(pod).map(|name| DeploymentRef::new(pod.metadata.namespace.clone(), name))
}

/// A pod as the scheduler counts it on its node.
pub fn bound(pod: &Pod) -> BoundPod {
    BoundPod::new(pod, deployment_of(pod))
}

/// Deployments by `(namespace, name)`.
pub fn index_deployments(world: &World) -> BTreeMap<(&str, &str), &DeploymentState> {
    world
        .deployments
        .iter()
        .map(|d| {
            (
                (
                    d.deployment.metadata.namespace.as_str(),
                    d.deployment.metadata.name.as_str(),
                ),
                d,
            )
        })
        .collect()
}
