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
//!
//! For many decisions in a row, a [`Cache`] keeps the nodes between them, as
//! kube-scheduler's cache does: the sums of each node's bound pods kept up to
//! date by [`Cache::bind`] rather than added up at every decision, and in
//! clusters of more than 100 nodes kube-scheduler's sampling (the search
//! stops once [`feasible_nodes_to_find`] feasible nodes are found).
//! [`Cache::place`] skips the explanation when the pod fits.

mod cache;
mod columns;
mod cycle;
mod explain;
mod filters;
mod input;
mod labels;
mod scores;
#[cfg(test)]
mod tests;

use rand::Rng;

use crate::api::Pod;

pub use cache::{
    Cache, MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND, MIN_FEASIBLE_NODES_TO_FIND,
    feasible_nodes_to_find,
};
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

use cycle::{Scratch, Search};
use input::PodFacts;

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

    /// Places `pod` (a replica of `deployment`, if any) on one of `nodes`,
    /// evaluating every node. `rng` breaks ties; pass a seeded one for a
    /// repeatable decision.
    ///
    /// Each node's sums are added up from its bound pods here: for many
    /// decisions over the same nodes, a [`Cache`] keeps them instead.
    pub fn schedule<R: Rng + ?Sized>(
        &self,
        pod: &Pod,
        deployment: Option<&DeploymentRef>,
        nodes: &[NodeInfo],
        rng: &mut R,
    ) -> Decision {
        let scratch = Scratch::new(pod, deployment, nodes);
        let facts = PodFacts::new(pod, deployment, &scratch.ids);
        let view = scratch.view(nodes, &facts);
        let search = Search {
            start: 0,
            want: nodes.len(),
        };
        let cycle = cycle::run(self, pod, &facts, &view, search, true, &mut Vec::new(), rng);
        debug_assert_eq!(cycle.processed, nodes.len(), "every node is evaluated");
        let decision = cycle
            .decision
            .expect("a cycle run with an explanation returns its decision");
        debug_assert_eq!(decision.node_index(), cycle.chosen);
        decision
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
