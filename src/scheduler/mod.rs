//! The scheduler: a pure function from (pod, nodes with their allocations) to a
//! chosen node or a readable explanation, as kube-scheduler's default profile
//! decides it. It imports only `api` and does no I/O.
//!
//! [`schedule`] (or [`Profile::schedule`]) takes the pod, the deployment it
//! belongs to, a [`NodeInfo`] per node ([`input`] says how to fill them) and a
//! random number generator, and:
//! 1. runs the filters on every node, in kube-scheduler's order, the first
//!    failure rejecting the node with Kubernetes' reason ([`filters`]);
//! 2. scores each node that passed with kube-scheduler's score plugins,
//!    normalised to 0–100 and weighted by its default weights ([`scores`]);
//! 3. takes the best total, drawing at random among equal totals, as
//!    kube-scheduler does so that equal nodes share the load.
//!
//! The [`Decision`] keeps every node's verdict, so it can say why: the
//! `FailedScheduling` message, or a table of rejections and scores ([`explain`]).

mod explain;
mod filters;
mod input;
mod scores;
#[cfg(test)]
mod tests;

use rand::Rng;

use crate::api::Pod;

pub use explain::{Decision, NO_NODES_MESSAGE, NodeVerdict, Outcome};
pub use filters::{
    AffinityMismatch, FilterPlugin, PortConflict, Reason, Rejection, TAINT_NOT_READY,
    TAINT_UNREACHABLE, TAINT_UNSCHEDULABLE,
};
pub use input::{
    Allocatable, BoundPod, DEFAULT_MEMORY_REQUEST, DEFAULT_MILLI_CPU_REQUEST, DeploymentRef,
    HostPort, NodeInfo, Requests, image_key,
};
pub use scores::{
    MAX_NODE_SCORE, PluginScore, ScoreOutcome, ScorePlugin, ScoringStrategy, Weights,
};

use input::{PodFacts, Usage};
use scores::Feasible;

/// How the scheduler scores: kube-scheduler's notion of a profile, reduced
/// to what may differ here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    pub strategy: ScoringStrategy,
    pub weights: Weights,
}

impl Profile {
    /// Kubernetes' default profile with MostAllocated: fill nodes before
    /// starting on empty ones.
    pub fn bin_packing() -> Self {
        Self {
            strategy: ScoringStrategy::MostAllocated,
            weights: Weights::default(),
        }
    }

    /// Places `pod` (a replica of `deployment`, if any) on one of `nodes`.
    /// `rng` breaks ties; pass a seeded one for a repeatable decision.
    pub fn schedule<R: Rng + ?Sized>(
        &self,
        pod: &Pod,
        deployment: Option<&DeploymentRef>,
        nodes: &[NodeInfo],
        rng: &mut R,
    ) -> Decision {
        let facts = PodFacts::new(pod, deployment);
        let mut verdicts = Vec::with_capacity(nodes.len());
        let mut feasible = Vec::new();
        for (index, node) in nodes.iter().enumerate() {
            let usage = Usage::of(node);
            let outcome = match filters::run(&facts, node, &usage) {
                Err(rejection) => Outcome::Rejected(rejection),
                Ok(()) => {
                    feasible.push(Feasible { index, usage });
                    // Filled in once every feasible node is known: some
                    // scores normalise over all of them.
                    Outcome::Scored {
                        scores: Vec::new(),
                        total: 0,
                    }
                }
            };
            verdicts.push(NodeVerdict {
                node: node.name.clone(),
                outcome,
            });
        }

        let scored = scores::score(&facts, nodes, &feasible, self.strategy, &self.weights);
        let mut best: Option<i64> = None;
        let mut tied = Vec::new();
        for (node, plugin_scores) in feasible.iter().zip(scored) {
            let total = plugin_scores
                .iter()
                .fold(0i64, |sum, s| sum.saturating_add(s.weighted()));
            verdicts[node.index].outcome = Outcome::Scored {
                scores: plugin_scores,
                total,
            };
            match best {
                Some(b) if total < b => {}
                Some(b) if total == b => tied.push(node.index),
                _ => {
                    best = Some(total);
                    tied.clear();
                    tied.push(node.index);
                }
            }
        }
        let chosen = match tied.len() {
            0 => None,
            1 => Some(tied[0]),
            n => Some(tied[rng.random_range(0..n)]),
        };
        Decision {
            pod: input::pod_name(pod),
            strategy: self.strategy,
            nodes: verdicts,
            chosen,
            tied,
        }
    }
}

/// [`Profile::schedule`] with Kubernetes' default profile (LeastAllocated).
pub fn schedule<R: Rng + ?Sized>(
    pod: &Pod,
    deployment: Option<&DeploymentRef>,
    nodes: &[NodeInfo],
    rng: &mut R,
) -> Decision {
    Profile::default().schedule(pod, deployment, nodes, rng)
}
