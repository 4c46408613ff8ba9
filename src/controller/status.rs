//! What readers say about desired state: a deployment's replica counts
//! (READY, UP-TO-DATE, AVAILABLE, as kubectl shows them) and whether its
//! rollout is complete, worked out from a [`World`] the same way by every
//! verb and the console.

use super::naming;
use super::plan::available;
use super::world::World;
use crate::api::deployment::Deployment;

/// A deployment's pods, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeploymentCounts {
    /// Desired.
    pub replicas: usize,
    /// Pods that exist (placed or pending), any template.
    pub current: usize,
    /// Of the current template.
    pub updated: usize,
    /// Running with every container ready.
    pub ready: usize,
    /// Ready ones (minReadySeconds is 0, so the same as ready).
    pub available: usize,
    /// Of the current template and available.
    pub updated_available: usize,
    /// Waiting for a node.
    pub pending: usize,
}

impl DeploymentCounts {
    /// Every replica of the current template is up and nothing else runs.
    pub fn rolled_out(&self) -> bool {
        self.updated_available == self.replicas && self.current == self.replicas
    }
}

/// Counts `deployment`'s pods in `world` (nodes marked lost excluded, as the
/// controller excludes them).
pub fn counts(world: &World, deployment: &Deployment) -> DeploymentCounts {
    let (namespace, name) = (
        deployment.metadata.namespace.as_str(),
        deployment.metadata.name.as_str(),
    );
    let hash = naming::template_hash(&deployment.spec.template);
    let mut counts = DeploymentCounts {
        replicas: usize::try_from(deployment.spec.replicas).unwrap_or(0),
        ..DeploymentCounts::default()
    };
    let owned = |pod: &crate::api::pod::Pod| {
        pod.metadata.namespace == namespace && naming::owner(pod) == Some(name)
    };
    for record in world
        .nodes
        .iter()
        .filter(|n| !n.flags.lost)
        .flat_map(|n| n.pods.iter())
        .filter(|r| owned(&r.pod) && !r.status.phase.is_terminal())
    {
        let updated = naming::pod_hash(&record.pod) == Some(hash.as_str());
        let up = available(&record.status);
        counts.current += 1;
        counts.updated += usize::from(updated);
        counts.ready += usize::from(up);
        counts.available += usize::from(up);
        counts.updated_available += usize::from(updated && up);
    }
    for pending in world.pending.iter().filter(|p| owned(&p.pod)) {
        counts.current += 1;
        counts.pending += 1;
        counts.updated += usize::from(naming::pod_hash(&pending.pod) == Some(hash.as_str()));
    }
    counts
}
