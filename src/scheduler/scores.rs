//! The score plugins: how well a node that passed the filters suits the pod.
//! Each is kube-scheduler's default plugin of the same name with its formula,
//! its integer rounding and its normalisation to 0–100, so a node scores here
//! what it would score there; the weighted sum ranks the nodes.
//!
//! A plugin that has nothing to say about the pod is skipped for every node,
//! as kube-scheduler's PreScore skips it: NodeAffinity without preferred
//! terms, PodTopologySpread for a pod of no deployment, and
//! BalancedAllocation for a pod that requests nothing (so that best-effort
//! pods do not pile onto one node, kubernetes#129138).

use std::fmt;

use crate::api::TaintEffect;
use crate::api::pod::ResourceName;

use super::input::{NodeInfo, PodFacts, Usage};

/// kube-scheduler's `MaxNodeScore`.
pub const MAX_NODE_SCORE: i64 = 100;

/// How NodeResourcesFit scores free resources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ScoringStrategy {
    /// Prefer the emptiest node: spreads load (Kubernetes' default).
    #[default]
    LeastAllocated,
    /// Prefer the fullest node that fits: packs pods onto few nodes.
    MostAllocated,
}

impl ScoringStrategy {
    pub fn name(self) -> &'static str {
        match self {
            Self::LeastAllocated => "LeastAllocated",
            Self::MostAllocated => "MostAllocated",
        }
    }
}

impl fmt::Display for ScoringStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The score plugins, by their kube-scheduler names, in kube-scheduler's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScorePlugin {
    TaintToleration,
    NodeAffinity,
    NodeResourcesFit,
    PodTopologySpread,
    NodeResourcesBalancedAllocation,
    ImageLocality,
}

impl ScorePlugin {
    pub const ALL: [ScorePlugin; 6] = [
        ScorePlugin::TaintToleration,
        ScorePlugin::NodeAffinity,
        ScorePlugin::NodeResourcesFit,
        ScorePlugin::PodTopologySpread,
        ScorePlugin::NodeResourcesBalancedAllocation,
        ScorePlugin::ImageLocality,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::TaintToleration => "TaintToleration",
            Self::NodeAffinity => "NodeAffinity",
            Self::NodeResourcesFit => "NodeResourcesFit",
            Self::PodTopologySpread => "PodTopologySpread",
            Self::NodeResourcesBalancedAllocation => "NodeResourcesBalancedAllocation",
            Self::ImageLocality => "ImageLocality",
        }
    }
}

impl fmt::Display for ScorePlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How much each plugin's 0–100 score counts in a node's total.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Weights {
    pub taint_toleration: i64,
    pub node_affinity: i64,
    pub node_resources_fit: i64,
    pub pod_topology_spread: i64,
    pub balanced_allocation: i64,
    pub image_locality: i64,
}

impl Default for Weights {
    /// kube-scheduler's default profile (`getDefaultPlugins`, v1.30 on).
    fn default() -> Self {
        Self {
            taint_toleration: 3,
            node_affinity: 2,
            node_resources_fit: 1,
            pod_topology_spread: 2,
            balanced_allocation: 1,
            image_locality: 1,
        }
    }
}

impl Weights {
    pub fn of(&self, plugin: ScorePlugin) -> i64 {
        match plugin {
            ScorePlugin::TaintToleration => self.taint_toleration,
            ScorePlugin::NodeAffinity => self.node_affinity,
            ScorePlugin::NodeResourcesFit => self.node_resources_fit,
            ScorePlugin::PodTopologySpread => self.pod_topology_spread,
            ScorePlugin::NodeResourcesBalancedAllocation => self.balanced_allocation,
            ScorePlugin::ImageLocality => self.image_locality,
        }
    }
}

/// One plugin's verdict on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginScore {
    pub plugin: ScorePlugin,
    pub weight: i64,
    pub outcome: ScoreOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScoreOutcome {
    /// The plugin had nothing to say about this pod; the text says why.
    Skipped(&'static str),
    /// The plugin's own score and the same on the 0–100 scale.
    Scored { raw: i64, normalized: i64 },
}

impl PluginScore {
    /// What this plugin adds to the node's total.
    pub fn weighted(&self) -> i64 {
        match self.outcome {
            ScoreOutcome::Skipped(_) => 0,
            ScoreOutcome::Scored { normalized, .. } => normalized.saturating_mul(self.weight),
        }
    }
}

/// A feasible node: its index among all nodes and what its pods take.
pub(super) struct Feasible {
    pub index: usize,
    pub usage: Usage,
}

/// Scores every feasible node with every plugin; one list per feasible node,
/// in the order given, each in [`ScorePlugin::ALL`] order.
pub(super) fn score(
    pod: &PodFacts<'_>,
    nodes: &[NodeInfo],
    feasible: &[Feasible],
    strategy: ScoringStrategy,
    weights: &Weights,
) -> Vec<Vec<PluginScore>> {
    let mut per_node: Vec<Vec<PluginScore>> = feasible
        .iter()
        .map(|_| Vec::with_capacity(ScorePlugin::ALL.len()))
        .collect();
    for plugin in ScorePlugin::ALL {
        let weight = weights.of(plugin);
        match plugin_scores(plugin, pod, nodes, feasible, strategy) {
            Err(why) => {
                for scores in &mut per_node {
                    scores.push(PluginScore {
                        plugin,
                        weight,
                        outcome: ScoreOutcome::Skipped(why),
                    });
                }
            }
            Ok((raw, normalized)) => {
                for ((scores, raw), normalized) in per_node.iter_mut().zip(raw).zip(normalized) {
                    scores.push(PluginScore {
                        plugin,
                        weight,
                        outcome: ScoreOutcome::Scored { raw, normalized },
                    });
                }
            }
        }
    }
    per_node
}

/// Raw and normalised scores of one plugin over the feasible nodes, or why
/// it is skipped.
fn plugin_scores(
    plugin: ScorePlugin,
    pod: &PodFacts<'_>,
    nodes: &[NodeInfo],
    feasible: &[Feasible],
    strategy: ScoringStrategy,
) -> Result<(Vec<i64>, Vec<i64>), &'static str> {
    let each = |f: &dyn Fn(&NodeInfo, &Usage) -> i64| -> Vec<i64> {
        feasible
            .iter()
            .map(|n| f(&nodes[n.index], &n.usage))
            .collect()
    };
    let scores = match plugin {
        ScorePlugin::TaintToleration => {
            let raw = each(&|node, _| intolerable_prefer_no_schedule(pod, node));
            let normalized = default_normalize(&raw, true);
            (raw, normalized)
        }
        ScorePlugin::NodeAffinity => {
            let preferred = preferred_terms(pod);
            if preferred.is_empty() {
                return Err("the pod states no preferred node affinity");
            }
            let raw = each(&|node, _| {
                preferred
                    .iter()
                    .filter(|t| t.weight != 0 && t.preference.matches(&node.labels, &node.name))
                    .map(|t| i64::from(t.weight))
                    .sum()
            });
            let normalized = default_normalize(&raw, false);
            (raw, normalized)
        }
        ScorePlugin::NodeResourcesFit => {
            let raw = each(&|node, usage| resources_fit(strategy, pod, node, usage));
            (raw.clone(), raw)
        }
        ScorePlugin::PodTopologySpread => {
            let Some(deployment) = pod.deployment else {
                return Err("the pod belongs to no deployment");
            };
            let weight = topology_normalizing_weight(feasible.len());
            let raw = each(&|node, _| {
                let count = node
                    .pods
                    .iter()
                    .filter(|p| p.deployment.as_ref() == Some(deployment))
                    .count();
                spread_score(count, weight)
            });
            let normalized = spread_normalize(&raw);
            (raw, normalized)
        }
        ScorePlugin::NodeResourcesBalancedAllocation => {
            if pod.requests.is_zero() {
                return Err("the pod requests no cpu or memory");
            }
            let raw = each(&|node, usage| balanced_allocation(pod, node, usage));
            (raw.clone(), raw)
        }
        ScorePlugin::ImageLocality => {
            // How widely each of the pod's images is spread over the whole
            // cluster (not just the feasible nodes), as kube-scheduler counts it.
            let spread: Vec<usize> = pod
                .images
                .iter()
                .map(|image| {
                    nodes
                        .iter()
                        .filter(|n| n.images.contains_key(image))
                        .count()
                })
                .collect();
            let raw = each(&|node, _| image_locality(pod, node, &spread, nodes.len()));
            (raw.clone(), raw)
        }
    };
    Ok(scores)
}

/// Kubernetes' `DefaultNormalizeScore`: scales [0, max] to [0, 100], reversed
/// for plugins whose raw score counts something bad.
pub(super) fn default_normalize(raw: &[i64], reverse: bool) -> Vec<i64> {
    let max = raw.iter().copied().max().unwrap_or(0);
    if max == 0 {
        let all = if reverse { MAX_NODE_SCORE } else { 0 };
        return vec![all; raw.len()];
    }
    raw.iter()
        .map(|&s| {
            let s = MAX_NODE_SCORE * s / max;
            if reverse { MAX_NODE_SCORE - s } else { s }
        })
        .collect()
}

/// TaintToleration's raw score: the PreferNoSchedule taints the pod does not
/// tolerate. (Kubernetes first keeps the tolerations whose effect is empty or
/// PreferNoSchedule; `tolerates` already refuses the others for these taints.)
fn intolerable_prefer_no_schedule(pod: &PodFacts<'_>, node: &NodeInfo) -> i64 {
    let count = node
        .taints
        .iter()
        .filter(|taint| taint.effect == TaintEffect::PreferNoSchedule)
        .filter(|taint| !pod.tolerations().iter().any(|t| t.tolerates(taint)))
        .count();
    i64::try_from(count).unwrap_or(i64::MAX)
}

fn preferred_terms<'a>(pod: &PodFacts<'a>) -> &'a [crate::api::PreferredSchedulingTerm] {
    pod.spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .map_or(&[], |na| {
            na.preferred_during_scheduling_ignored_during_execution
                .as_slice()
        })
}

/// NodeResourcesFit's score: cpu and memory weighted 1:1, each counting the
/// non-zero requests of the bound pods plus the pod's.
fn resources_fit(
    strategy: ScoringStrategy,
    pod: &PodFacts<'_>,
    node: &NodeInfo,
    usage: &Usage,
) -> i64 {
    let mut sum = 0;
    for resource in ResourceName::ALL {
        let capacity = node.allocatable.get(resource);
        let requested = usage
            .non_zero_requests
            .get(resource)
            .saturating_add(pod.non_zero_requests.get(resource));
        sum += match strategy {
            ScoringStrategy::LeastAllocated => least_requested(requested, capacity),
            ScoringStrategy::MostAllocated => most_requested(requested, capacity),
        };
    }
    sum / ResourceName::ALL.len() as i64
}

/// `leastRequestedScore`: the share left free, 0 when over capacity.
fn least_requested(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 || requested > capacity {
        return 0;
    }
    ratio(capacity - requested, capacity)
}

/// `mostRequestedScore`: the share taken, capped at capacity (the non-zero
/// defaults can overshoot it).
fn most_requested(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 {
        return 0;
    }
    ratio(requested.clamp(0, capacity), capacity)
}

/// `part * 100 / whole`, in 128 bits so terabytes of memory cannot overflow.
fn ratio(part: i64, whole: i64) -> i64 {
    (i128::from(part) * i128::from(MAX_NODE_SCORE) / i128::from(whole)) as i64
}

/// BalancedAllocation's `balancedResourceScorer`: 100 × (1 − the standard
/// deviation of the cpu and memory fractions), on actual requests (no
/// non-zero defaults). A resource the node has none of is left out.
fn balanced_allocation(pod: &PodFacts<'_>, node: &NodeInfo, usage: &Usage) -> i64 {
    let mut fractions = Vec::with_capacity(ResourceName::ALL.len());
    for resource in ResourceName::ALL {
        let capacity = node.allocatable.get(resource);
        if capacity == 0 {
            continue;
        }
        let requested = usage
            .requests
            .get(resource)
            .saturating_add(pod.requests.get(resource));
        fractions.push((requested as f64 / capacity as f64).min(1.0));
    }
    let std = match fractions.as_slice() {
        [a, b] => ((a - b) / 2.0).abs(),
        [] | [_] => 0.0,
        many => {
            let mean = many.iter().sum::<f64>() / many.len() as f64;
            let variance =
                many.iter().map(|f| (f - mean) * (f - mean)).sum::<f64>() / many.len() as f64;
            variance.sqrt()
        }
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

const MB: i64 = 1024 * 1024;
/// ImageLocality's bounds: below 23 MiB an image is not worth preferring a
/// node for; 1000 MiB per container is where the score saturates.
const IMAGE_MIN_THRESHOLD: i64 = 23 * MB;
const IMAGE_MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// ImageLocality: the sizes of the pod's images present on the node, each
/// scaled by the share of the cluster's nodes that have it (so an image on
/// one node of many does not pull every pod there), then mapped onto 0–100
/// between the thresholds.
fn image_locality(
    pod: &PodFacts<'_>,
    node: &NodeInfo,
    spread: &[usize],
    total_nodes: usize,
) -> i64 {
    let mut sum: i64 = 0;
    for (image, &holders) in pod.images.iter().zip(spread) {
        if let Some(&size) = node.images.get(image) {
            let share = holders as f64 / total_nodes as f64;
            sum = sum.saturating_add((size as f64 * share) as i64);
        }
    }
    let containers = i64::try_from(pod.images.len()).unwrap_or(i64::MAX);
    let max_threshold = IMAGE_MAX_CONTAINER_THRESHOLD.saturating_mul(containers);
    let clamped = if sum < IMAGE_MIN_THRESHOLD {
        IMAGE_MIN_THRESHOLD
    } else {
        sum.min(max_threshold)
    };
    let span = max_threshold - IMAGE_MIN_THRESHOLD;
    (i128::from(MAX_NODE_SCORE) * i128::from(clamped - IMAGE_MIN_THRESHOLD) / i128::from(span))
        as i64
}

/// The `maxSkew` of Kubernetes' default system constraint on
/// `kubernetes.io/hostname`, which is the one spreading done here (flotilla
/// nodes carry no zone topology).
const HOSTNAME_MAX_SKEW: i64 = 3;

/// `topologyNormalizingWeight`: log(domains + 2), domains being the feasible
/// nodes for the hostname topology.
fn topology_normalizing_weight(domains: usize) -> f64 {
    ((domains + 2) as f64).ln()
}

/// PodTopologySpread's raw score for a node holding `count` replicas of the
/// pod's deployment: `scoreForCount`, rounded as kube-scheduler rounds it.
fn spread_score(count: usize, weight: f64) -> i64 {
    (count as f64 * weight + (HOSTNAME_MAX_SKEW - 1) as f64).round() as i64
}

/// PodTopologySpread's `NormalizeScore`: the fewest replicas gets 100.
fn spread_normalize(raw: &[i64]) -> Vec<i64> {
    let max = raw.iter().copied().max().unwrap_or(0);
    let min = raw.iter().copied().min().unwrap_or(0);
    raw.iter()
        .map(|&s| {
            if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - s) / max
            }
        })
        .collect()
}
