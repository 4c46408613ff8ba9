//! The filter plugins: whether a pod may go on a node at all. They are
//! kube-scheduler's default filters that flotilla's pods can trip, run in
//! kube-scheduler's order, and a node is rejected by the first that fails (as
//! kube-scheduler stops there), with Kubernetes' reason strings so that
//! `0/3 nodes are available: …` reads as `kubectl describe pod` would print it.
//!
//! A node that is not Ready has no filter of its own: Kubernetes taints it
//! (`node.kubernetes.io/not-ready`, or `unreachable` when its state is
//! unknown) and TaintToleration rejects it, so a pod that tolerates the taint
//! may still go there. The same is done here.

use std::fmt;
use std::sync::LazyLock;

use crate::api::pod::ResourceName;
use crate::api::quantity::{Quantity, QuantityFormat};
use crate::api::status::ConditionStatus;
use crate::api::{NodeSelector, Taint, TaintEffect};

use super::input::{HostPort, NodeInfo, PodFacts, Ports, Row, UNTOLERATED_HARD};

/// The taint a cordoned node is treated as having; a pod that tolerates it
/// may go on a cordoned node (DaemonSets do).
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// The taint of a node whose Ready condition is False.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint of a node whose Ready condition is Unknown.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// The filter plugins, by their kube-scheduler names, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FilterPlugin {
    NodeUnschedulable,
    NodeName,
    TaintToleration,
    NodeAffinity,
    NodePorts,
    NodeResourcesFit,
}

impl FilterPlugin {
    pub const ALL: [FilterPlugin; 6] = [
        FilterPlugin::NodeUnschedulable,
        FilterPlugin::NodeName,
        FilterPlugin::TaintToleration,
        FilterPlugin::NodeAffinity,
        FilterPlugin::NodePorts,
        FilterPlugin::NodeResourcesFit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::NodeUnschedulable => "NodeUnschedulable",
            Self::NodeName => "NodeName",
            Self::TaintToleration => "TaintToleration",
            Self::NodeAffinity => "NodeAffinity",
            Self::NodePorts => "NodePorts",
            Self::NodeResourcesFit => "NodeResourcesFit",
        }
    }
}

impl fmt::Display for FilterPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a filter rejected a node. `Display` gives Kubernetes' reason string,
/// the unit of the `0/N nodes are available` histogram; [`Reason::detail`]
/// adds what a person needs to act on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The node is cordoned.
    Unschedulable,
    /// The pod names another node in `spec.nodeName`.
    NodeName {
        wanted: String,
    },
    /// The first NoSchedule or NoExecute taint the pod does not tolerate.
    UntoleratedTaint(Taint),
    NodeAffinity(AffinityMismatch),
    /// The pod's host ports that bound pods already take.
    PortsInUse(Vec<PortConflict>),
    TooManyPods {
        used: i64,
        capacity: i64,
    },
    /// cpu in millicores, memory in bytes.
    Insufficient {
        resource: ResourceName,
        requested: i64,
        used: i64,
        capacity: i64,
    },
}

/// Which part of the pod's node selection the node fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AffinityMismatch {
    /// `spec.nodeSelector` wants `key=value`; the node has `found` for `key`.
    NodeSelector {
        key: String,
        value: String,
        found: Option<String>,
    },
    /// No term of `requiredDuringSchedulingIgnoredDuringExecution` matches.
    Required,
}

/// A host port the pod asks for and the bound pod that holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortConflict {
    pub port: HostPort,
    pub pod: String,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Unschedulable => f.write_str("node(s) were unschedulable"),
            Reason::NodeName { .. } => f.write_str("node(s) didn't match the requested node name"),
            Reason::UntoleratedTaint(taint) => write!(
                f,
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or("")
            ),
            Reason::NodeAffinity(_) => {
                f.write_str("node(s) didn't match Pod's node affinity/selector")
            }
            Reason::PortsInUse(_) => {
                f.write_str("node(s) didn't have free ports for the requested pod ports")
            }
            Reason::TooManyPods { .. } => f.write_str("Too many pods"),
            Reason::Insufficient { resource, .. } => write!(f, "Insufficient {resource}"),
        }
    }
}

impl Reason {
    /// The specifics behind the reason, in words.
    pub fn detail(&self) -> String {
        match self {
            Reason::Unschedulable => "the node is cordoned".to_owned(),
            Reason::NodeName { wanted } => format!("the pod asks for node {wanted}"),
            Reason::UntoleratedTaint(taint) => match taint.key.as_str() {
                TAINT_NOT_READY => format!("{taint}: the node is not Ready"),
                TAINT_UNREACHABLE => format!("{taint}: the node's state is unknown"),
                _ => taint.to_string(),
            },
            Reason::NodeAffinity(AffinityMismatch::NodeSelector { key, value, found }) => {
                match found {
                    Some(found) => {
                        format!("nodeSelector wants {key}={value}, the node has {key}={found}")
                    }
                    None => {
                        format!("nodeSelector wants {key}={value}, the node has no {key} label")
                    }
                }
            }
            Reason::NodeAffinity(AffinityMismatch::Required) => {
                "no term of the required node affinity matches the node".to_owned()
            }
            Reason::PortsInUse(conflicts) => conflicts
                .iter()
                .map(|c| format!("{} is taken by {}", c.port, c.pod))
                .collect::<Vec<_>>()
                .join(", "),
            Reason::TooManyPods { used, capacity } => {
                format!("{used} of {capacity} pods already bound")
            }
            Reason::Insufficient {
                resource,
                requested,
                used,
                capacity,
            } => {
                let amount = |n: i64| amount(*resource, n);
                format!(
                    "the pod requests {}, {} of {} allocatable is requested already",
                    amount(*requested),
                    amount(*used),
                    amount(*capacity)
                )
            }
        }
    }
}

/// A resource amount as kubectl prints it: `500m`, `2`, `512Mi`.
pub(super) fn amount(resource: ResourceName, n: i64) -> String {
    match resource {
        ResourceName::Cpu => Quantity::from_millis(n).to_string(),
        ResourceName::Memory => Quantity::from_value(n, QuantityFormat::BinarySI).to_string(),
    }
}

/// The plugin that rejected a node and its reasons (NodeResourcesFit can
/// give several at once; each counts in the histogram).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub plugin: FilterPlugin,
    pub reasons: Vec<Reason>,
}

/// A node as the filters read it: its description, its [`Row`] (with the
/// sums of its bound pods), the host ports they take, and its value for
/// each label key the pod names (by the slots of its selection).
#[derive(Clone, Copy)]
pub(super) struct Candidate<'a> {
    pub node: &'a NodeInfo,
    pub row: &'a Row,
    pub ports: &'a Ports,
    pub labels: &'a [Option<u32>],
}

/// Runs the filters in order; the first failure rejects the node, with the
/// reasons spelled out.
pub(super) fn run(pod: &PodFacts<'_>, candidate: Candidate<'_>) -> Result<(), Rejection> {
    for plugin in FilterPlugin::ALL {
        if !check(plugin, pod, candidate) {
            let reasons = reasons(plugin, pod, candidate);
            debug_assert!(!reasons.is_empty(), "{plugin} failed without a reason");
            return Err(Rejection { plugin, reasons });
        }
    }
    Ok(())
}

/// Whether the node passes every filter: [`run`] without building the
/// reasons, so that a search over many nodes allocates nothing for the
/// ones it rejects.
pub(super) fn passes(pod: &PodFacts<'_>, candidate: Candidate<'_>) -> bool {
    // FilterPlugin::ALL, written out so that each check is inlined.
    check(FilterPlugin::NodeUnschedulable, pod, candidate)
        && check(FilterPlugin::NodeName, pod, candidate)
        && check(FilterPlugin::TaintToleration, pod, candidate)
        && check(FilterPlugin::NodeAffinity, pod, candidate)
        && check(FilterPlugin::NodePorts, pod, candidate)
        && check(FilterPlugin::NodeResourcesFit, pod, candidate)
}

/// One filter's verdict, cheaply: true when [`reasons`] would be empty.
#[inline(always)]
fn check(plugin: FilterPlugin, pod: &PodFacts<'_>, candidate: Candidate<'_>) -> bool {
    let Candidate {
        node,
        row,
        ports,
        labels,
    } = candidate;
    match plugin {
        FilterPlugin::NodeUnschedulable => {
            !row.unschedulable || tolerated(pod, &UNSCHEDULABLE_TAINT)
        }
        FilterPlugin::NodeName => pod.spec.node_name.is_empty() || pod.spec.node_name == node.name,
        FilterPlugin::TaintToleration => {
            let tolerated = !row.hard_taints
                || match row.taint_ids() {
                    Some(ids) => ids
                        .iter()
                        .all(|&id| pod.taints[id as usize] & UNTOLERATED_HARD == 0),
                    None => untolerated_taint(pod, node).is_none(),
                };
            debug_assert_eq!(tolerated, untolerated_taint(pod, node).is_none());
            tolerated
        }
        FilterPlugin::NodeAffinity => pod.selection.admits(node, labels),
        FilterPlugin::NodePorts => !pod.host_ports.iter().any(|p| ports.holds(p)),
        FilterPlugin::NodeResourcesFit => {
            // ResourceName::ALL, written out.
            row.usage.pods < row.allocatable.pods
                && !insufficient(pod, row, ResourceName::Cpu)
                && !insufficient(pod, row, ResourceName::Memory)
        }
    }
}

/// Why one filter fails the node; empty when it passes.
fn reasons(plugin: FilterPlugin, pod: &PodFacts<'_>, candidate: Candidate<'_>) -> Vec<Reason> {
    let Candidate {
        node, row, ports, ..
    } = candidate;
    match plugin {
        FilterPlugin::NodeUnschedulable => node_unschedulable(pod, node),
        FilterPlugin::NodeName => node_name(pod, node),
        FilterPlugin::TaintToleration => taint_toleration(pod, node),
        FilterPlugin::NodeAffinity => node_affinity(pod, node),
        FilterPlugin::NodePorts => node_ports(pod, node, ports),
        FilterPlugin::NodeResourcesFit => node_resources_fit(pod, row),
    }
}

/// The taint a cordoned node is treated as having.
static UNSCHEDULABLE_TAINT: LazyLock<Taint> = LazyLock::new(|| Taint {
    key: TAINT_UNSCHEDULABLE.to_owned(),
    value: None,
    effect: TaintEffect::NoSchedule,
});

fn tolerated(pod: &PodFacts<'_>, taint: &Taint) -> bool {
    pod.tolerations().iter().any(|t| t.tolerates(taint))
}

fn node_unschedulable(pod: &PodFacts<'_>, node: &NodeInfo) -> Vec<Reason> {
    if !node.unschedulable || tolerated(pod, &UNSCHEDULABLE_TAINT) {
        return Vec::new();
    }
    vec![Reason::Unschedulable]
}

fn node_name(pod: &PodFacts<'_>, node: &NodeInfo) -> Vec<Reason> {
    let wanted = &pod.spec.node_name;
    if wanted.is_empty() || *wanted == node.name {
        return Vec::new();
    }
    vec![Reason::NodeName {
        wanted: wanted.clone(),
    }]
}

/// The taints Kubernetes' node lifecycle controller puts on a node that is
/// not Ready, after the node's own (it appends them).
pub(super) fn condition_taints(ready: ConditionStatus) -> &'static [Taint] {
    static NOT_READY: LazyLock<[Taint; 2]> = LazyLock::new(|| both_effects(TAINT_NOT_READY));
    static UNREACHABLE: LazyLock<[Taint; 2]> = LazyLock::new(|| both_effects(TAINT_UNREACHABLE));
    match ready {
        ConditionStatus::True => &[],
        ConditionStatus::False => &*NOT_READY,
        ConditionStatus::Unknown => &*UNREACHABLE,
    }
}

fn both_effects(key: &str) -> [Taint; 2] {
    [TaintEffect::NoSchedule, TaintEffect::NoExecute].map(|effect| Taint {
        key: key.to_owned(),
        value: None,
        effect,
    })
}

/// The first NoSchedule or NoExecute taint of the node the pod does not
/// tolerate.
fn untolerated_taint<'n>(pod: &PodFacts<'_>, node: &'n NodeInfo) -> Option<&'n Taint> {
    node.taints
        .iter()
        .chain(condition_taints(node.ready))
        .find(|taint| {
            matches!(
                taint.effect,
                TaintEffect::NoSchedule | TaintEffect::NoExecute
            ) && !tolerated(pod, taint)
        })
}

fn taint_toleration(pod: &PodFacts<'_>, node: &NodeInfo) -> Vec<Reason> {
    match untolerated_taint(pod, node) {
        Some(taint) => vec![Reason::UntoleratedTaint(taint.clone())],
        None => Vec::new(),
    }
}

fn required_node_affinity<'a>(pod: &PodFacts<'a>) -> Option<&'a NodeSelector> {
    pod.spec.required_node_selector()
}

fn node_affinity(pod: &PodFacts<'_>, node: &NodeInfo) -> Vec<Reason> {
    for (key, value) in &pod.spec.node_selector {
        let found = node.labels.get(key);
        if found != Some(value) {
            return vec![Reason::NodeAffinity(AffinityMismatch::NodeSelector {
                key: key.clone(),
                value: value.clone(),
                found: found.cloned(),
            })];
        }
    }
    match required_node_affinity(pod) {
        Some(selector) if !selector.matches(&node.labels, &node.name) => {
            vec![Reason::NodeAffinity(AffinityMismatch::Required)]
        }
        _ => Vec::new(),
    }
}

/// The pod's host ports that bound pods take, each with the first pod that
/// takes it. Whether a port is taken comes from the node's sums; who takes
/// it, from its pods (only read when the node is rejected).
fn node_ports(pod: &PodFacts<'_>, node: &NodeInfo, ports: &Ports) -> Vec<Reason> {
    if pod.host_ports.is_empty() {
        return Vec::new();
    }
    let mut conflicts = Vec::new();
    for wanted in &pod.host_ports {
        if !ports.holds(wanted) {
            continue;
        }
        let holder = node
            .pods
            .iter()
            .find(|bound| bound.host_ports.contains(wanted));
        conflicts.push(PortConflict {
            port: *wanted,
            pod: holder.map(|h| h.name.clone()).unwrap_or_default(),
        });
    }
    if conflicts.is_empty() {
        Vec::new()
    } else {
        vec![Reason::PortsInUse(conflicts)]
    }
}

/// Whether the node lacks room for the pod's request of `resource`.
fn insufficient(pod: &PodFacts<'_>, row: &Row, resource: ResourceName) -> bool {
    let requested = pod.requests.get(resource);
    requested > 0
        && requested
            > row
                .allocatable
                .get(resource)
                .saturating_sub(row.usage.requests.get(resource))
}

/// Kubernetes' `fitsRequest`: the pod count first, then each resource the pod
/// requests against allocatable less what the bound pods request. A pod that
/// requests nothing only needs a pod slot.
fn node_resources_fit(pod: &PodFacts<'_>, row: &Row) -> Vec<Reason> {
    let mut reasons = Vec::new();
    if row.usage.pods + 1 > row.allocatable.pods {
        reasons.push(Reason::TooManyPods {
            used: row.usage.pods,
            capacity: row.allocatable.pods,
        });
    }
    for resource in ResourceName::ALL {
        if insufficient(pod, row, resource) {
            reasons.push(Reason::Insufficient {
                resource,
                requested: pod.requests.get(resource),
                used: row.usage.requests.get(resource),
                capacity: row.allocatable.get(resource),
            });
        }
    }
    reasons
}
