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

use crate::api::pod::ResourceName;
use crate::api::{PreferredSchedulingTerm, TaintEffect};

use super::input::{NodeInfo, PodFacts, Row, UNTOLERATED_SOFT};

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

/// One feasible node's raw scores, worked out as the node passes the filters.
/// Normalising needs every feasible node's raw score, so [`Plan::scores`]
/// reads them once the search is over.
#[derive(Clone, Copy, Debug)]
pub(super) struct Raw {
    /// The node's index among all nodes.
    pub index: usize,
    taint: i64,
    affinity: i64,
    fit: i64,
    replicas: u32,
    balanced: i64,
    image: i64,
}

/// What the score plugins need of the pod, worked out once per decision,
/// and which of them run.
pub(super) struct Plan<'a> {
    pod: &'a PodFacts<'a>,
    strategy: ScoringStrategy,
    weights: Weights,
    preferred: &'a [PreferredSchedulingTerm],
    /// Per image of the pod, the share of the cluster's nodes that hold it.
    image_shares: &'a [f64],
}

/// What a feasible node holds that the pod names: its value for each label
/// key of the pod's selection, its replicas of the pod's deployment, and the
/// size of each of the pod's images it has.
pub(super) struct Holdings<'a> {
    pub labels: &'a [Option<u32>],
    pub replicas: u32,
    pub image_sizes: &'a [Option<i64>],
}

/// What normalising takes from all feasible nodes' raw scores.
///
/// The raw scores that normalise by the others are small counts (untolerated
/// taints, replicas, the weights of matching preferences), so each plugin's
/// normalised score is worked out once per raw value up to the maximum, and
/// a node's costs a lookup rather than a division.
pub(super) struct Normalizer {
    /// TaintToleration's normalised score by raw score.
    taint: Vec<i64>,
    affinity_max: i64,
    /// NodeAffinity's normalised score by raw score, when the maximum is
    /// small enough to list them.
    affinity: Option<Vec<i64>>,
    /// PodTopologySpread's raw score by replica count, up to the most any
    /// feasible node holds.
    spread_scores: Vec<i64>,
    /// PodTopologySpread's normalised score by replica count.
    spread: Vec<i64>,
}

/// The largest NodeAffinity maximum normalised through a table.
const AFFINITY_TABLE_MAX: i64 = 4096;

/// Each plugin's (raw, normalised) score on a node, in [`ScorePlugin::ALL`]
/// order, or why the plugin is skipped.
type Scores = [Result<(i64, i64), &'static str>; 6];

impl<'a> Plan<'a> {
    pub fn new(
        pod: &'a PodFacts<'a>,
        strategy: ScoringStrategy,
        weights: Weights,
        image_shares: &'a [f64],
    ) -> Self {
        Self {
            pod,
            strategy,
            weights,
            preferred: preferred_terms(pod),
            image_shares,
        }
    }

    /// The raw scores of a node that passed the filters.
    pub fn raw(&self, index: usize, node: &NodeInfo, row: &Row, holds: Holdings<'_>) -> Raw {
        let pod = self.pod;
        let affinity = if self.preferred.is_empty() {
            0
        } else {
            pod.selection.preference(node, holds.labels)
        };
        // The taints by id, as the pod's tolerations were worked out for
        // each once; a node with too many for its row, by the taints.
        let taint = match row.taint_ids() {
            _ if !row.soft_taints => 0,
            Some(ids) => ids
                .iter()
                .filter(|&&id| pod.taints[id as usize] & UNTOLERATED_SOFT != 0)
                .count() as i64,
            None => intolerable_prefer_no_schedule(pod, node),
        };
        debug_assert_eq!(taint, intolerable_prefer_no_schedule(pod, node));
        Raw {
            index,
            taint,
            affinity,
            fit: resources_fit(self.strategy, pod, row),
            replicas: holds.replicas,
            balanced: if pod.requests.is_zero() {
                0
            } else {
                balanced_allocation(pod, row)
            },
            image: image_locality(pod, self.image_shares, holds.image_sizes),
        }
    }

    /// The maxima and minima the plugins normalise by, over every feasible
    /// node's raw scores.
    pub fn normalizer(&self, feasible: &[Raw]) -> Normalizer {
        let spread_weight = topology_normalizing_weight(feasible.len());
        let (mut taint_max, mut affinity_max) = (0, i64::MIN);
        let (mut max_replicas, mut min_replicas) = (0, u32::MAX);
        for raw in feasible {
            taint_max = taint_max.max(raw.taint);
            affinity_max = affinity_max.max(raw.affinity);
            max_replicas = max_replicas.max(raw.replicas);
            min_replicas = min_replicas.min(raw.replicas);
        }
        if feasible.is_empty() {
            (affinity_max, min_replicas) = (0, 0);
        }
        let spread_scores: Vec<i64> = if self.pod.deployment.is_some() {
            (0..=max_replicas)
                .map(|count| spread_score(count, spread_weight))
                .collect()
        } else {
            Vec::new()
        };
        // spread_score grows with the count, so its extremes are those of
        // the counts.
        let spread_max = spread_score(max_replicas, spread_weight);
        let spread_min = spread_score(min_replicas, spread_weight);
        Normalizer {
            taint: (0..=taint_max)
                .map(|raw| reverse_normalize(raw, taint_max))
                .collect(),
            affinity_max,
            affinity: (0..=AFFINITY_TABLE_MAX).contains(&affinity_max).then(|| {
                (0..=affinity_max)
                    .map(|raw| normalize(raw, affinity_max))
                    .collect()
            }),
            spread: spread_scores
                .iter()
                .map(|&s| spread_normalize(s, spread_max, spread_min))
                .collect(),
            spread_scores,
        }
    }

    /// Each plugin's raw and normalised score on one feasible node.
    pub fn scores(&self, norm: &Normalizer, raw: &Raw) -> Scores {
        let taint = (raw.taint, norm.taint[raw.taint as usize]);
        let affinity = if self.preferred.is_empty() {
            Err("the pod states no preferred node affinity")
        } else {
            Ok((raw.affinity, norm.affinity_of(raw.affinity)))
        };
        let spread = if self.pod.deployment.is_none() {
            Err("the pod belongs to no deployment")
        } else {
            Ok((
                norm.spread_scores[raw.replicas as usize],
                norm.spread[raw.replicas as usize],
            ))
        };
        let balanced = if self.pod.requests.is_zero() {
            Err("the pod requests no cpu or memory")
        } else {
            Ok((raw.balanced, raw.balanced))
        };
        [
            Ok(taint),
            affinity,
            Ok((raw.fit, raw.fit)),
            spread,
            balanced,
            Ok((raw.image, raw.image)),
        ]
    }

    /// The weighted sum of a node's scores: [`Plan::total`] of
    /// [`Plan::scores`], without gathering them.
    pub fn total_of(&self, norm: &Normalizer, raw: &Raw) -> i64 {
        let w = &self.weights;
        let weighted = |normalized: i64, weight: i64| normalized.saturating_mul(weight);
        // In ScorePlugin::ALL order, as `total` adds them.
        let mut sum = weighted(norm.taint[raw.taint as usize], w.taint_toleration);
        if !self.preferred.is_empty() {
            sum = sum.saturating_add(weighted(norm.affinity_of(raw.affinity), w.node_affinity));
        }
        sum = sum.saturating_add(weighted(raw.fit, w.node_resources_fit));
        if self.pod.deployment.is_some() {
            sum = sum.saturating_add(weighted(
                norm.spread[raw.replicas as usize],
                w.pod_topology_spread,
            ));
        }
        if !self.pod.requests.is_zero() {
            sum = sum.saturating_add(weighted(raw.balanced, w.balanced_allocation));
        }
        sum = sum.saturating_add(weighted(raw.image, w.image_locality));
        debug_assert_eq!(sum, self.total(&self.scores(norm, raw)));
        sum
    }

    /// The weighted sum of a node's scores.
    pub fn total(&self, scores: &Scores) -> i64 {
        ScorePlugin::ALL
            .iter()
            .zip(scores)
            .fold(0i64, |sum, (&plugin, score)| match score {
                Ok((_, normalized)) => {
                    sum.saturating_add(normalized.saturating_mul(self.weights.of(plugin)))
                }
                Err(_) => sum,
            })
    }

    /// The scores as the explanation lists them.
    pub fn explain(&self, scores: &Scores) -> Vec<PluginScore> {
        ScorePlugin::ALL
            .iter()
            .zip(scores)
            .map(|(&plugin, score)| PluginScore {
                plugin,
                weight: self.weights.of(plugin),
                outcome: match *score {
                    Ok((raw, normalized)) => ScoreOutcome::Scored { raw, normalized },
                    Err(why) => ScoreOutcome::Skipped(why),
                },
            })
            .collect()
    }
}

/// PodTopologySpread's `NormalizeScore` of raw score `s`, given the raw
/// scores' maximum and minimum: the fewest replicas gets 100.
fn spread_normalize(s: i64, max: i64, min: i64) -> i64 {
    if max == 0 {
        MAX_NODE_SCORE
    } else {
        MAX_NODE_SCORE * (max + min - s) / max
    }
}

impl Normalizer {
    fn affinity_of(&self, raw: i64) -> i64 {
        match &self.affinity {
            // A weight out of 1–100 (refused at apply) can make it negative.
            Some(table) if raw >= 0 => table[raw as usize],
            _ => normalize(raw, self.affinity_max),
        }
    }
}

/// Kubernetes' `DefaultNormalizeScore` of one score, given the maximum
/// over the feasible nodes: scales [0, max] to [0, 100].
fn normalize(raw: i64, max: i64) -> i64 {
    if max == 0 {
        0
    } else {
        MAX_NODE_SCORE * raw / max
    }
}

/// `DefaultNormalizeScore` reversed, for plugins whose raw score counts
/// something bad.
fn reverse_normalize(raw: i64, max: i64) -> i64 {
    if max == 0 {
        MAX_NODE_SCORE
    } else {
        MAX_NODE_SCORE - MAX_NODE_SCORE * raw / max
    }
}

/// Kubernetes' `DefaultNormalizeScore`: scales [0, max] to [0, 100], reversed
/// for plugins whose raw score counts something bad. (Decisions apply it a
/// node at a time, through [`normalize`] and [`reverse_normalize`].)
#[cfg(test)]
pub(super) fn default_normalize(raw: &[i64], reverse: bool) -> Vec<i64> {
    let max = raw.iter().copied().max().unwrap_or(0);
    raw.iter()
        .map(|&s| {
            if reverse {
                reverse_normalize(s, max)
            } else {
                normalize(s, max)
            }
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

fn preferred_terms<'a>(pod: &PodFacts<'a>) -> &'a [PreferredSchedulingTerm] {
    pod.spec.preferred_node_terms()
}

/// NodeResourcesFit's score: cpu and memory weighted 1:1, each counting the
/// non-zero requests of the bound pods plus the pod's.
fn resources_fit(strategy: ScoringStrategy, pod: &PodFacts<'_>, row: &Row) -> i64 {
    let mut sum = 0;
    for resource in ResourceName::ALL {
        let capacity = row.allocatable.get(resource);
        let requested = row
            .usage
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

/// `part * 100 / whole`, in 128 bits when 64 bits could overflow (an
/// amount beyond 92 PB).
fn ratio(part: i64, whole: i64) -> i64 {
    match part.checked_mul(MAX_NODE_SCORE) {
        Some(scaled) => scaled / whole,
        None => (i128::from(part) * i128::from(MAX_NODE_SCORE) / i128::from(whole)) as i64,
    }
}

/// BalancedAllocation's `balancedResourceScorer`: 100 × (1 − the standard
/// deviation of the cpu and memory fractions), on actual requests (no
/// non-zero defaults). A resource the node has none of is left out.
fn balanced_allocation(pod: &PodFacts<'_>, row: &Row) -> i64 {
    let mut fractions = [0.0f64; ResourceName::ALL.len()];
    let mut len = 0;
    for resource in ResourceName::ALL {
        let capacity = row.allocatable.get(resource);
        if capacity == 0 {
            continue;
        }
        let requested = row
            .usage
            .requests
            .get(resource)
            .saturating_add(pod.requests.get(resource));
        fractions[len] = (requested as f64 / capacity as f64).min(1.0);
        len += 1;
    }
    let std = match &fractions[..len] {
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
fn image_locality(pod: &PodFacts<'_>, shares: &[f64], sizes: &[Option<i64>]) -> i64 {
    let mut sum: i64 = 0;
    for (&share, size) in shares.iter().zip(sizes) {
        if let Some(size) = *size {
            sum = sum.saturating_add((size as f64 * share) as i64);
        }
    }
    if sum < IMAGE_MIN_THRESHOLD {
        // Below the threshold: 0 (most nodes hold none of the pod's images).
        return 0;
    }
    let containers = i64::try_from(pod.images.len()).unwrap_or(i64::MAX);
    let max_threshold = IMAGE_MAX_CONTAINER_THRESHOLD.saturating_mul(containers);
    let clamped = if sum < IMAGE_MIN_THRESHOLD {
        IMAGE_MIN_THRESHOLD
    } else {
        sum.min(max_threshold)
    };
    ratio(
        clamped - IMAGE_MIN_THRESHOLD,
        max_threshold - IMAGE_MIN_THRESHOLD,
    )
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
fn spread_score(count: u32, weight: f64) -> i64 {
    (count as f64 * weight + (HOSTNAME_MAX_SKEW - 1) as f64).round() as i64
}
