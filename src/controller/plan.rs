//! One reconcile pass, decided: from a [`World`] (what the agents report and
//! what the store wants) to the [`Action`]s that close the gap. Pure: no I/O,
//! randomness only through the `rng` it is given, so every rule here is unit
//! tested. The rules are Kubernetes' where it has them:
//!
//! * a deployment keeps `replicas` pods of its current template; a rolling
//!   update creates at most `maxSurge` above and keeps at least
//!   `replicas - maxUnavailable` available (deleting unavailable old pods
//!   first, as the deployment controller's `cleanupUnhealthyReplicas` does);
//!   `Recreate` deletes every old pod before creating a new one;
//! * scale-down deletes the least useful pods first (the ReplicaSet
//!   controller's ordering: unplaced, then not ready, then the most crowded
//!   node, then the newest);
//! * a node NotReady past the grace period is marked lost: its deployment
//!   pods no longer count, so replacements are created elsewhere; when it is
//!   Ready again its deployment pods are deleted (fenced) before the mark is
//!   cleared, so no replica runs twice once the node is back;
//! * pods whose deployment is gone are deleted (Kubernetes' garbage collector).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use rand::Rng;

use crate::agent::protocol::messages::PodRecord;
use crate::api::deployment::{Deployment, RollingUpdate, StrategyType};
use crate::api::pod::Pod;
use crate::api::status::{ConditionStatus, PodCondition, PodPhase, PodStatus};
use crate::scheduler::{Cache, Profile};

use super::naming;
use super::world::{DeploymentState, PendingPod, Revision, World, bound, deployment_of};

/// The annotation on a bound pod holding its scheduling decision, as
/// `flotilla describe pod` shows it.
pub const SCHEDULING_ANNOTATION: &str = "flotilla.io/scheduling";

/// Why a pod is deleted, as its event says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteReason {
    /// More pods than replicas.
    ScalingDown,
    /// Replaced by the deployment's current template.
    RollingUpdate,
    /// Left on a node that was lost and came back.
    Fenced,
    /// Its deployment was deleted.
    OwnerDeleted,
    /// Exited for good (Failed or Succeeded) in a deployment: replaced.
    Terminated,
}

impl DeleteReason {
    /// The event reason.
    pub fn as_str(self) -> &'static str {
        match self {
            DeleteReason::ScalingDown => "ScalingReplicaSet",
            DeleteReason::RollingUpdate => "RollingUpdate",
            DeleteReason::Fenced => "Fenced",
            DeleteReason::OwnerDeleted => "OwnerDeleted",
            DeleteReason::Terminated => "Terminated",
        }
    }
}

/// What the pass decided to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create `pod` on `node` (the scheduler's choice). `was_pending`: a
    /// pending pod of the store, to be removed from it once created.
    Bind {
        node: String,
        pod: Pod,
        was_pending: bool,
        /// Kubernetes' `Scheduled` message.
        message: String,
    },
    /// Keep `pod` in the store as Pending, no node able to take it.
    Pend {
        pod: Pod,
        message: String,
    },
    /// Remove a pending pod from the store.
    Unpend {
        namespace: String,
        name: String,
    },
    /// Delete a pod from the node that runs it.
    Delete {
        node: String,
        namespace: String,
        name: String,
        uid: String,
        reason: DeleteReason,
    },
    /// Record a deployment's template as a revision (new, or brought back
    /// by a rollback).
    RecordRevision(Revision),
    /// Forget a revision of a deployment that is gone.
    ForgetRevision {
        namespace: String,
        name: String,
    },
    MarkLost {
        node: String,
    },
    ClearLost {
        node: String,
    },
}

/// What the pass is told besides the world.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// How long a node may be NotReady before its pods are replaced.
    pub lost_after: Duration,
    pub profile: Profile,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            lost_after: Duration::from_secs(30),
            profile: Profile::default(),
        }
    }
}

/// Decides a pass. `deleting` holds the uids of pods whose deletion is
/// under way (they no longer count); `rng` names pods and breaks ties.
pub fn plan(
    world: &World,
    deleting: &HashSet<String>,
    options: &PlanOptions,
    rng: &mut impl Rng,
) -> Vec<Action> {
    let mut actions = Vec::new();
    node_lifecycle(world, options, &mut actions);
    let mut placer = Placer::new(world, deleting, options.profile);
    let live = live_pods(world, deleting);

    let deployments: BTreeMap<(&str, &str), &DeploymentState> =
        super::world::index_deployments(world);
    // Garbage: pods and revisions whose deployment is gone.
    for pod in &live {
        if let Some(owner) = naming::owner(&pod.record.pod)
            && !deployments.contains_key(&(pod.record.pod.metadata.namespace.as_str(), owner))
        {
            actions.push(delete(pod, DeleteReason::OwnerDeleted));
        }
    }
    for pending in &world.pending {
        if let Some(owner) = naming::owner(&pending.pod)
            && !deployments.contains_key(&(pending.pod.metadata.namespace.as_str(), owner))
        {
            actions.push(Action::Unpend {
                namespace: pending.pod.metadata.namespace.clone(),
                name: pending.pod.metadata.name.clone(),
            });
        }
    }
    for revision in &world.revisions {
        if !deployments.contains_key(&(revision.namespace.as_str(), revision.deployment.as_str())) {
            actions.push(Action::ForgetRevision {
                namespace: revision.namespace.clone(),
                name: Revision::store_name(&revision.deployment, &revision.hash),
            });
        }
    }

    for state in &world.deployments {
        reconcile_deployment(world, state, &live, &mut placer, rng, &mut actions);
    }

    // Pods applied on their own and waiting for a node.
    for pending in world
        .pending
        .iter()
        .filter(|p| naming::owner(&p.pod).is_none())
    {
        place(
            &mut placer,
            pending.pod.clone(),
            Some(pending),
            &mut actions,
        );
    }
    actions
}

/// Lost nodes: marked after the grace period, fenced and cleared when back.
fn node_lifecycle(world: &World, options: &PlanOptions, actions: &mut Vec<Action>) {
    for node in &world.nodes {
        if !node.flags.lost {
            let overdue = node.not_ready_since.is_some_and(|since| {
                (world.now - since).to_std().unwrap_or_default() >= options.lost_after
            });
            if !node.ready && overdue {
                actions.push(Action::MarkLost {
                    node: node.name.clone(),
                });
            }
            continue;
        }
        if !(node.ready && node.listed) {
            continue;
        }
        let stale: Vec<&PodRecord> = node
            .pods
            .iter()
            .filter(|r| naming::owner(&r.pod).is_some())
            .collect();
        if stale.is_empty() {
            actions.push(Action::ClearLost {
                node: node.name.clone(),
            });
        }
        for record in stale {
            actions.push(Action::Delete {
                node: node.name.clone(),
                namespace: record.pod.metadata.namespace.clone(),
                name: record.pod.metadata.name.clone(),
                uid: record.uid.clone(),
                reason: DeleteReason::Fenced,
            });
        }
    }
}

/// A pod that counts: on a node not lost, not being deleted.
#[derive(Clone, Debug)]
struct LivePod<'a> {
    node: &'a str,
    record: &'a PodRecord,
}

impl LivePod<'_> {
    fn available(&self) -> bool {
        available(&self.record.status)
    }
}

/// Running with every container ready (minReadySeconds 0).
pub fn available(status: &PodStatus) -> bool {
    status.phase == PodPhase::Running
        && !status.container_statuses.is_empty()
        && status.container_statuses.iter().all(|c| c.ready)
}

fn live_pods<'a>(world: &'a World, deleting: &HashSet<String>) -> Vec<LivePod<'a>> {
    world
        .nodes
        .iter()
        .filter(|n| !n.flags.lost)
        .flat_map(|n| {
            n.pods.iter().map(move |record| LivePod {
                node: n.name.as_str(),
                record,
            })
        })
        .filter(|p| !deleting.contains(&p.record.uid))
        .collect()
}

fn delete(pod: &LivePod<'_>, reason: DeleteReason) -> Action {
    Action::Delete {
        node: pod.node.to_string(),
        namespace: pod.record.pod.metadata.namespace.clone(),
        name: pod.record.pod.metadata.name.clone(),
        uid: pod.record.uid.clone(),
        reason,
    }
}

/// The scheduler over the pass's nodes, each placement counted before the next.
struct Placer {
    /// Kept between placements so each counts the pods placed before it
    /// without re-adding every bound pod's requests.
    cache: Cache,
    profile: Profile,
}

impl Placer {
    fn new(world: &World, deleting: &HashSet<String>, profile: Profile) -> Placer {
        let nodes = world
            .nodes
            .iter()
            .map(|n| {
                let mut info = n.info.clone();
                info.unschedulable = n.flags.unschedulable;
                info.pods = n
                    .pods
                    .iter()
                    .filter(|r| !r.status.phase.is_terminal() && !deleting.contains(&r.uid))
                    .map(|r| bound(&r.pod))
                    .collect();
                info
            })
            .collect();
        Placer {
            cache: Cache::new(nodes),
            profile,
        }
    }
}

/// Schedules `pod`: a Bind on the chosen node (the decision kept in an
/// annotation), or a Pend with Kubernetes' reason when no node fits. A pod
/// already pending with the same reason is left as it is.
fn place(
    placer: &mut Placer,
    mut pod: Pod,
    pending: Option<&PendingPod>,
    actions: &mut Vec<Action>,
) {
    let deployment = deployment_of(&pod);
    // The tie-break needs no secrecy; a fresh generator per pod keeps the
    // pass's rng for names.
    let decision =
        placer
            .cache
            .schedule(&placer.profile, &pod, deployment.as_ref(), &mut rand::rng());
    let message = decision.message();
    match decision.chosen {
        Some(index) => {
            placer.cache.bind(index, bound(&pod));
            pod.metadata
                .annotations
                .insert(SCHEDULING_ANNOTATION.to_string(), decision.to_string());
            let node = placer.cache.nodes()[index].name.clone();
            pod.spec.node_name = node.clone();
            actions.push(Action::Bind {
                node,
                pod,
                was_pending: pending.is_some(),
                message,
            });
        }
        None => {
            let unchanged =
                pending.is_some_and(|p| scheduled_condition(&p.status) == Some(&message));
            if !unchanged {
                actions.push(Action::Pend { pod, message });
            }
        }
    }
}

/// The message of a pending pod's PodScheduled=False condition.
fn scheduled_condition(status: &PodStatus) -> Option<&String> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == ConditionStatus::False)
        .map(|c| &c.message)
}

/// The status of a pod no node can take, as Kubernetes shows it.
pub fn unschedulable_status(message: &str, now: chrono::DateTime<chrono::Utc>) -> PodStatus {
    PodStatus {
        phase: PodPhase::Pending,
        conditions: vec![PodCondition {
            type_: "PodScheduled".into(),
            status: ConditionStatus::False,
            reason: "Unschedulable".into(),
            message: message.to_string(),
            last_transition_time: Some(now),
        }],
        ..PodStatus::default()
    }
}

/// A deployment's pods, sorted into what the rules need.
struct Replicas<'a> {
    /// Placed pods of the current template, and of older ones.
    new: Vec<LivePod<'a>>,
    old: Vec<LivePod<'a>>,
    /// Pending pods of the current template, and of older ones.
    new_pending: Vec<&'a PendingPod>,
    old_pending: Vec<&'a PendingPod>,
}

fn reconcile_deployment<'a>(
    world: &'a World,
    state: &'a DeploymentState,
    live: &[LivePod<'a>],
    placer: &mut Placer,
    rng: &mut impl Rng,
    actions: &mut Vec<Action>,
) {
    let deployment = &state.deployment;
    let (namespace, name) = (
        deployment.metadata.namespace.as_str(),
        deployment.metadata.name.as_str(),
    );
    let hash = naming::template_hash(&deployment.spec.template);
    record_revision(world, deployment, &hash, actions);

    let owned = |pod: &Pod| pod.metadata.namespace == namespace && naming::owner(pod) == Some(name);
    let mut replicas = Replicas {
        new: Vec::new(),
        old: Vec::new(),
        new_pending: Vec::new(),
        old_pending: Vec::new(),
    };
    for pod in live.iter().filter(|p| owned(&p.record.pod)) {
        if pod.record.status.phase.is_terminal() {
            actions.push(delete(pod, DeleteReason::Terminated));
        } else if naming::pod_hash(&pod.record.pod) == Some(hash.as_str()) {
            replicas.new.push(pod.clone());
        } else {
            replicas.old.push(pod.clone());
        }
    }
    for pending in world.pending.iter().filter(|p| owned(&p.pod)) {
        if naming::pod_hash(&pending.pod) == Some(hash.as_str()) {
            replicas.new_pending.push(pending);
        } else {
            replicas.old_pending.push(pending);
        }
    }

    let want = usize::try_from(deployment.spec.replicas).unwrap_or(0);
    // Old pending pods have nothing running to keep: always dropped.
    for pending in &replicas.old_pending {
        actions.push(unpend(pending));
    }

    let recreate = deployment.spec.strategy.strategy_type == StrategyType::Recreate;
    if recreate && !replicas.old.is_empty() {
        for pod in &replicas.old {
            actions.push(delete(pod, DeleteReason::RollingUpdate));
        }
        return;
    }

    let new_count = replicas.new.len() + replicas.new_pending.len();
    if replicas.old.is_empty() || recreate {
        scale(deployment, &hash, &replicas, want, placer, rng, actions);
        return;
    }

    // A rolling update, the deployment controller's arithmetic.
    for pending in &replicas.new_pending {
        place(placer, pending.pod.clone(), Some(pending), actions);
    }
    let (max_surge, max_unavailable) = rolling_bounds(deployment);
    let total = new_count + replicas.old.len();
    let room = (want + max_surge).saturating_sub(total);
    let create = want.saturating_sub(new_count).min(room);
    for _ in 0..create {
        let pod = naming::new_pod(deployment, &hash, rng);
        place(placer, pod, None, actions);
    }
    let min_available = want.saturating_sub(max_unavailable);
    let new_unavailable = new_count - replicas.new.iter().filter(|p| p.available()).count();
    let mut may_remove = total
        .saturating_sub(min_available)
        .saturating_sub(new_unavailable);
    // Unavailable old pods first: removing them costs no availability.
    let (unhealthy, healthy): (Vec<_>, Vec<_>) = replicas.old.iter().partition(|p| !p.available());
    for pod in unhealthy.iter().take(may_remove) {
        actions.push(delete(pod, DeleteReason::RollingUpdate));
    }
    may_remove = may_remove.saturating_sub(unhealthy.len());
    let available = replicas.new.iter().filter(|p| p.available()).count() + healthy.len();
    let by_availability = available.saturating_sub(min_available);
    let mut healthy = healthy;
    order_for_removal(&mut healthy, &replicas.old);
    for pod in healthy.iter().take(may_remove.min(by_availability)) {
        actions.push(delete(pod, DeleteReason::RollingUpdate));
    }
}

/// Plain scaling of the current template's pods to `want`.
fn scale(
    deployment: &Deployment,
    hash: &str,
    replicas: &Replicas<'_>,
    want: usize,
    placer: &mut Placer,
    rng: &mut impl Rng,
    actions: &mut Vec<Action>,
) {
    let have = replicas.new.len() + replicas.new_pending.len();
    if have < want {
        for _ in have..want {
            let pod = naming::new_pod(deployment, hash, rng);
            place(placer, pod, None, actions);
        }
    }
    // Pending pods get another try each pass, newest last.
    let mut excess = have.saturating_sub(want);
    for pending in &replicas.new_pending {
        if excess > 0 {
            actions.push(unpend(pending));
            excess -= 1;
        } else {
            place(placer, pending.pod.clone(), Some(pending), actions);
        }
    }
    let mut placed: Vec<&LivePod<'_>> = replicas.new.iter().collect();
    order_for_removal(&mut placed, &replicas.new);
    for pod in placed.into_iter().take(excess) {
        actions.push(delete(pod, DeleteReason::ScalingDown));
    }
}

/// The ReplicaSet controller's deletion order: not ready before ready, then
/// the pod whose node holds the most of `peers`, then the newest.
fn order_for_removal(pods: &mut [&LivePod<'_>], peers: &[LivePod<'_>]) {
    let mut crowding: BTreeMap<&str, usize> = BTreeMap::new();
    for peer in peers {
        *crowding.entry(peer.node).or_default() += 1;
    }
    pods.sort_by(|a, b| {
        a.available()
            .cmp(&b.available())
            .then_with(|| crowding[b.node].cmp(&crowding[a.node]))
            .then_with(|| b.record.status.start_time.cmp(&a.record.status.start_time))
    });
}

fn unpend(pending: &PendingPod) -> Action {
    Action::Unpend {
        namespace: pending.pod.metadata.namespace.clone(),
        name: pending.pod.metadata.name.clone(),
    }
}

/// maxSurge (rounded up) and maxUnavailable (rounded down), both of the
/// desired count; both zero is read as maxUnavailable 1, as Kubernetes does.
pub fn rolling_bounds(deployment: &Deployment) -> (usize, usize) {
    let want = deployment.spec.replicas;
    let defaults = RollingUpdate::kubernetes_default();
    let rolling = deployment
        .spec
        .strategy
        .rolling_update
        .clone()
        .unwrap_or_default();
    let surge = rolling
        .max_surge
        .or(defaults.max_surge)
        .and_then(|v| v.scaled(want, true))
        .unwrap_or(0);
    let unavailable = rolling
        .max_unavailable
        .or(defaults.max_unavailable)
        .and_then(|v| v.scaled(want, false))
        .unwrap_or(0);
    let (surge, unavailable) = (
        usize::try_from(surge).unwrap_or(0),
        usize::try_from(unavailable).unwrap_or(0),
    );
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// Records the current template as the newest revision when it is not.
fn record_revision(world: &World, deployment: &Deployment, hash: &str, actions: &mut Vec<Action>) {
    let (namespace, name) = (&deployment.metadata.namespace, &deployment.metadata.name);
    let mine: Vec<&Revision> = world
        .revisions
        .iter()
        .filter(|r| &r.namespace == namespace && &r.deployment == name)
        .collect();
    let newest = mine.iter().map(|r| r.revision).max().unwrap_or(0);
    let current = mine.iter().find(|r| r.hash == hash);
    if current.is_some_and(|r| r.revision == newest) {
        return;
    }
    actions.push(Action::RecordRevision(Revision {
        deployment: name.clone(),
        namespace: namespace.clone(),
        hash: hash.to_string(),
        revision: newest + 1,
        template: deployment.spec.template.clone(),
    }));
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
