//! The controller at work: while its process holds the cluster lease, a pass
//! every second reads the world (desired state from the replicated store,
//! pods from every connected agent, node health from the cluster state),
//! plans, and carries the plan out through the agents and the store. It stops
//! acting the moment the lease is lost: each action checks first.
//!
//! Deletions run in the background (a pod's grace period can be 30 s); the
//! uids under way are remembered so the next passes do not count them, nor
//! delete them twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::agents::Agents;
use super::events::{ControllerEvent, InvolvedObject};
use super::naming;
use super::network::{self, NodeNetworkFacts};
use super::plan::{Action, DeleteReason, PlanOptions, plan, unschedulable_status};
use super::replicated::{ReplicatedStore, StoreError};
use super::world::{
    DeploymentState, KIND_DEPLOYMENT, KIND_NODE, KIND_POD, KIND_REPLICA_SET, NodeFlags, NodeState,
    PendingPod, Revision, World,
};
use crate::agent::network::Ipv4Net;
use crate::agent::protocol::messages::{EventType, NetworkSettings, PodRecord, PodRef};
use crate::api::deployment::Deployment;
use crate::cluster::ClusterState;
use crate::config::cluster_file::DEFAULT_POD_CIDR;

/// How the controller paces itself.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    pub plan: PlanOptions,
    /// Between passes.
    pub pass_every: Duration,
    /// The longest an agent call may take before the pass goes on without it.
    pub call_timeout: Duration,
    /// The cluster file's pod CIDR, shared out among the nodes.
    pub pod_cidr: Ipv4Net,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            plan: PlanOptions::default(),
            pass_every: Duration::from_secs(1),
            call_timeout: Duration::from_secs(10),
            pod_cidr: DEFAULT_POD_CIDR,
        }
    }
}

/// What a pass did.
#[derive(Debug, Default)]
pub struct PassReport {
    pub actions: Vec<Action>,
    /// Actions that failed, each said in a line.
    pub errors: Vec<String>,
    /// The lease was lost part-way: the rest was not done.
    pub interrupted: bool,
}

/// The reconcile loop's state between passes.
pub struct Controller {
    agents: Arc<dyn Agents>,
    state: ClusterState,
    store: Arc<ReplicatedStore>,
    options: ControllerOptions,
    holder: String,
    deleting: Arc<Mutex<HashSet<String>>>,
    /// When this controller started watching: a node NotReady since before
    /// counts from here (this process cannot know for how long it was).
    watched_since: DateTime<Utc>,
    rng: StdRng,
    /// Per node: the network settings this process gave its agent (and that
    /// agent's pid, so a restarted agent is checked again), and the
    /// addresses it reported.
    network_applied: HashMap<String, (Option<u32>, NetworkSettings)>,
    network_addresses: HashMap<String, Vec<Ipv4Net>>,
}

impl Controller {
    pub fn new(
        agents: Arc<dyn Agents>,
        state: ClusterState,
        holder: String,
        options: ControllerOptions,
    ) -> Controller {
        Controller {
            store: Arc::new(ReplicatedStore::new(Arc::clone(&agents))),
            agents,
            state,
            options,
            holder,
            deleting: Arc::default(),
            watched_since: Utc::now(),
            rng: StdRng::from_os_rng(),
            network_applied: HashMap::new(),
            network_addresses: HashMap::new(),
        }
    }

    pub fn store(&self) -> &Arc<ReplicatedStore> {
        &self.store
    }

    /// Waits until the deletions under way have been answered, or `wait`
    /// has passed (a verb about to exit lets its requests reach the agents).
    pub async fn deletions_sent(&self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline
            && self.deleting.lock().is_ok_and(|d| !d.is_empty())
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Passes every `pass_every` while `held` says the lease is ours, until
    /// `cancel`.
    pub async fn run(&mut self, mut held: watch::Receiver<bool>, cancel: CancellationToken) {
        loop {
            if *held.borrow_and_update() {
                match self.pass(&held).await {
                    Ok(report) => {
                        for error in &report.errors {
                            tracing::warn!("reconcile: {error}");
                        }
                    }
                    Err(err) => tracing::warn!("reconcile pass skipped: {err}"),
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(self.options.pass_every) => {}
                }
            } else {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    changed = held.changed() => if changed.is_err() { return },
                }
            }
        }
    }

    /// One pass: read, plan, act (while `held`).
    pub async fn pass(&mut self, held: &watch::Receiver<bool>) -> Result<PassReport, StoreError> {
        let catch_up = self.store.catch_up();
        let world = self.read_world();
        let (caught_up, world) = tokio::join!(catch_up, world);
        if let Err(err) = caught_up {
            tracing::debug!("catch-up: {err}");
        }
        let world = world?;
        let deleting = self.deleting.lock().map(|d| d.clone()).unwrap_or_default();
        let actions = plan(&world, &deleting, &self.options.plan, &mut self.rng);
        let mut report = PassReport::default();
        // Subnets and routes first: a pod bound below gets its address from them.
        if *held.borrow() {
            report.errors.extend(self.network_pass(&world).await);
        }
        // Binds run together (each may pull an image); the rest in order.
        let (binds, others): (Vec<Action>, Vec<Action>) = actions
            .iter()
            .cloned()
            .partition(|a| matches!(a, Action::Bind { .. }));
        for action in &others {
            if !*held.borrow() {
                report.interrupted = true;
                return Ok(report);
            }
            if let Err(err) = self.act(action, world.now).await {
                report.errors.push(err);
            }
        }
        if !*held.borrow() {
            report.interrupted = true;
            return Ok(report);
        }
        let results = join_all(binds.iter().map(|a| self.act(a, world.now))).await;
        report
            .errors
            .extend(results.into_iter().filter_map(Result::err));
        report.actions = actions;
        Ok(report)
    }

    /// Gives every node a pod subnet (once, in the store) and brings each
    /// connected agent's network settings to what they should be. Returns
    /// the failures, each in a line.
    async fn network_pass(&mut self, world: &World) -> Vec<String> {
        let mut errors = Vec::new();
        let cluster = self.options.pod_cidr;
        // A stored value that does not parse is logged and replaced below
        // (see `stored_subnet` for why).
        let mut subnets: BTreeMap<String, Ipv4Net> = world
            .nodes
            .iter()
            .filter_map(|n| {
                let subnet = network::stored_subnet(&n.name, n.flags.pod_cidr.as_deref())?;
                Some((n.name.clone(), subnet))
            })
            .collect();
        // For the subnets the agents report using.
        let before = self.state.snapshot();
        for node in &world.nodes {
            if subnets.contains_key(&node.name) {
                continue;
            }
            let taken: Vec<Ipv4Net> = subnets.values().copied().collect();
            let reported = before
                .node(&node.name)
                .and_then(|view| view.facts.as_ref())
                .and_then(|facts| facts.pod_network.as_ref())
                .map(|settings| settings.pod_subnet.as_str());
            let Some(subnet) = network::choose(cluster, &taken, reported) else {
                errors.push(format!(
                    "no pod subnet left for node {} in {cluster}: widen pod_cidr in the cluster file",
                    node.name
                ));
                continue;
            };
            let mut stored = None;
            let written = self
                .store
                .update(KIND_NODE, "", &node.name, |current| {
                    let mut flags: NodeFlags = current
                        .and_then(|v| serde_json::from_value(v.clone()).ok())
                        .unwrap_or_default();
                    // Another controller may have got there first: keep its
                    // choice. A value that does not parse is no one's choice.
                    if flags
                        .pod_cidr
                        .as_deref()
                        .is_none_or(|text| text.parse::<Ipv4Net>().is_err())
                    {
                        flags.pod_cidr = Some(subnet.to_string());
                    }
                    stored = flags.pod_cidr.clone();
                    serde_json::to_value(&flags).map_err(|e| e.to_string())
                })
                .await;
            match (written, stored.and_then(|s| s.parse().ok())) {
                (Ok(_), Some(subnet)) => {
                    tracing::info!(node = %node.name, %subnet, "pod subnet allocated");
                    subnets.insert(node.name.clone(), subnet);
                }
                (Err(err), _) => {
                    errors.push(format!("allocating node {}'s pod subnet: {err}", node.name))
                }
                (Ok(_), None) => {}
            }
        }

        let snapshot = self.state.snapshot();
        let mut facts: BTreeMap<String, NodeNetworkFacts> = BTreeMap::new();
        for view in &snapshot.nodes {
            let reported = view
                .facts
                .as_ref()
                .map(|f| network::parse_addresses(&f.addresses))
                .unwrap_or_default();
            let addresses = self
                .network_addresses
                .get(&view.name)
                .cloned()
                .unwrap_or(reported);
            facts.insert(
                view.name.clone(),
                NodeNetworkFacts {
                    subnet: subnets.get(&view.name).copied(),
                    addresses,
                },
            );
        }
        let mut calls = Vec::new();
        for view in &snapshot.nodes {
            let Some(client) = self.agents.client(&view.name) else {
                continue;
            };
            let Some((desired, unreachable)) = network::settings_for(&view.name, cluster, &facts)
            else {
                continue;
            };
            if !unreachable.is_empty() {
                tracing::warn!(node = %view.name, ?unreachable, "no shared network with these nodes: their pods cannot be routed to (host-gw needs one L2 segment)");
            }
            let pid = view.agent.as_ref().and_then(|a| a.pid);
            let current = match self.network_applied.get(&view.name) {
                Some((applied_pid, settings)) if *applied_pid == pid => Some(settings),
                _ => view.facts.as_ref().and_then(|f| f.pod_network.as_ref()),
            };
            if current == Some(&desired) {
                continue;
            }
            let name = view.name.clone();
            let timeout = self.options.call_timeout;
            calls.push(async move {
                let reply = tokio::time::timeout(timeout, client.configure_network(&desired)).await;
                (name, pid, desired, reply)
            });
        }
        for (name, pid, desired, reply) in join_all(calls).await {
            match reply {
                Ok(Ok(state)) => {
                    tracing::info!(node = %name, subnet = %desired.pod_subnet, routes = desired.routes.len(), "pod network configured");
                    if let Some(problem) = &state.problem {
                        tracing::warn!(node = %name, %problem, "pods on this node cannot get addresses");
                    }
                    self.network_addresses
                        .insert(name.clone(), network::parse_addresses(&state.addresses));
                    self.network_applied.insert(name, (pid, desired));
                }
                Ok(Err(err)) => {
                    errors.push(format!("configuring node {name}'s pod network: {err}"))
                }
                Err(_) => errors.push(format!(
                    "configuring node {name}'s pod network: no answer in {timeout:?}",
                    timeout = self.options.call_timeout
                )),
            }
        }
        errors
    }

    /// Reads the world: the store's desired state and every connected
    /// agent's pods, concurrently.
    pub async fn read_world(&self) -> Result<World, StoreError> {
        let (deployments, revisions, pending, flags) = tokio::try_join!(
            self.store.list(KIND_DEPLOYMENT, None),
            self.store.list(KIND_REPLICA_SET, None),
            self.store.list(KIND_POD, None),
            self.store.list(KIND_NODE, Some("")),
        )?;
        let snapshot = self.state.snapshot();
        let listed = join_all(snapshot.nodes.iter().map(|n| self.list_pods(&n.name))).await;
        let flags: BTreeMap<String, NodeFlags> = flags
            .into_iter()
            .filter_map(|r| Some((r.name.clone(), parse::<NodeFlags>(r.object?, &r.name)?)))
            .collect();
        let nodes = snapshot
            .nodes
            .iter()
            .zip(listed)
            .map(|(view, pods)| {
                let flags = flags.get(&view.name).cloned().unwrap_or_default();
                NodeState::from_view(view, flags, pods, self.watched_since)
            })
            .collect();
        Ok(World {
            now: Utc::now(),
            nodes,
            deployments: deployments
                .into_iter()
                .filter_map(|r| {
                    Some(DeploymentState {
                        generation: r.generation,
                        deployment: parse::<Deployment>(r.object?, &r.name)?,
                    })
                })
                .collect(),
            revisions: revisions
                .into_iter()
                .filter_map(|r| parse::<Revision>(r.object?, &r.name))
                .collect(),
            pending: pending
                .into_iter()
                .filter_map(|r| parse::<PendingPod>(r.object?, &r.name))
                .collect(),
        })
    }

    async fn list_pods(&self, node: &str) -> Option<Vec<PodRecord>> {
        let client = self.agents.client(node)?;
        match tokio::time::timeout(self.options.call_timeout, client.list_pods(None)).await {
            Ok(Ok(list)) => Some(list.pods),
            Ok(Err(err)) => {
                tracing::debug!("pods of {node}: {err}");
                None
            }
            Err(_) => None,
        }
    }

    async fn act(&self, action: &Action, now: DateTime<Utc>) -> Result<(), String> {
        match action {
            Action::Bind {
                node,
                pod,
                was_pending,
                message,
            } => {
                let (namespace, name) = (&pod.metadata.namespace, &pod.metadata.name);
                let involved = InvolvedObject::pod(namespace, name);
                self.event(involved.clone(), EventType::Normal, "Scheduled", message);
                if let Some(owner) = naming::owner(pod) {
                    self.event(
                        InvolvedObject::deployment(namespace, owner),
                        EventType::Normal,
                        "ScalingReplicaSet",
                        &format!("Created pod {name} on {node}"),
                    );
                }
                let client = self
                    .agents
                    .client(node)
                    .ok_or_else(|| format!("pod {namespace}/{name}: {node} is not connected"))?;
                let created = tokio::time::timeout(
                    self.options.call_timeout * 3,
                    client.create_pod(pod.clone()),
                )
                .await;
                match created {
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => {
                        let text = format!("creating on {node}: {err}");
                        self.event(involved, EventType::Warning, "FailedCreate", &text);
                        return Err(format!("pod {namespace}/{name}: {text}"));
                    }
                    Err(_) => {
                        return Err(format!(
                            "pod {namespace}/{name}: {node} did not answer the create in time"
                        ));
                    }
                }
                if *was_pending {
                    self.store
                        .delete(KIND_POD, namespace, name)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            Action::Pend { pod, message } => {
                let (namespace, name) = (&pod.metadata.namespace, &pod.metadata.name);
                self.event(
                    InvolvedObject::pod(namespace, name),
                    EventType::Warning,
                    "FailedScheduling",
                    message,
                );
                let pending = PendingPod {
                    pod: pod.clone(),
                    status: unschedulable_status(message, now),
                };
                self.store
                    .put(KIND_POD, namespace, name, to_value(&pending))
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
            Action::Unpend { namespace, name } => self
                .store
                .delete(KIND_POD, namespace, name)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Action::Delete {
                node,
                namespace,
                name,
                uid,
                reason,
            } => {
                self.delete_in_background(node, namespace, name, uid, *reason);
                Ok(())
            }
            Action::RecordRevision(revision) => self
                .store
                .put(
                    KIND_REPLICA_SET,
                    &revision.namespace,
                    &Revision::store_name(&revision.deployment, &revision.hash),
                    to_value(revision),
                )
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Action::ForgetRevision { namespace, name } => self
                .store
                .delete(KIND_REPLICA_SET, namespace, name)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Action::MarkLost { node } => {
                let grace = self.options.plan.lost_after.as_secs();
                self.event(
                    InvolvedObject::node(node),
                    EventType::Warning,
                    "NodeLost",
                    &format!(
                        "{node} has been NotReady for more than {grace}s: its deployments' pods are replaced on other nodes, and stopped here when it returns"
                    ),
                );
                self.set_lost(node, Some(now)).await
            }
            Action::ClearLost { node } => {
                self.event(
                    InvolvedObject::node(node),
                    EventType::Normal,
                    "NodeReturned",
                    &format!("{node} is Ready again and runs no stale copies"),
                );
                self.set_lost(node, None).await
            }
        }
    }

    async fn set_lost(&self, node: &str, at: Option<DateTime<Utc>>) -> Result<(), String> {
        self.store
            .update(KIND_NODE, "", node, move |current| {
                let mut flags: NodeFlags = current
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or_default();
                flags.lost = at.is_some();
                flags.lost_at = at;
                Ok(to_value(&flags))
            })
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn delete_in_background(
        &self,
        node: &str,
        namespace: &str,
        name: &str,
        uid: &str,
        reason: DeleteReason,
    ) {
        if let Ok(mut deleting) = self.deleting.lock()
            && !deleting.insert(uid.to_string())
        {
            return;
        }
        let message = match reason {
            DeleteReason::Fenced => format!(
                "Stopping a stale copy on {node}: the node was lost and its pods were replaced"
            ),
            DeleteReason::ScalingDown => "Scaled down".to_string(),
            DeleteReason::RollingUpdate => "Replaced by the deployment's new template".to_string(),
            DeleteReason::OwnerDeleted => "Its deployment was deleted".to_string(),
            DeleteReason::Terminated => "Exited for good; replaced".to_string(),
        };
        let event_reason = if reason == DeleteReason::Fenced {
            "Fenced"
        } else {
            "Killing"
        };
        self.event(
            InvolvedObject::pod(namespace, name),
            EventType::Normal,
            event_reason,
            &message,
        );
        if let Some(owner) = self.owner_of(node, namespace, name) {
            self.event(
                InvolvedObject::deployment(namespace, &owner),
                EventType::Normal,
                "ScalingReplicaSet",
                &format!("Deleted pod {name} on {node}: {message}"),
            );
        }
        let client = self.agents.client(node);
        let deleting = Arc::clone(&self.deleting);
        let (node, pod, uid) = (
            node.to_string(),
            PodRef::new(namespace, name),
            uid.to_string(),
        );
        tokio::spawn(async move {
            match client {
                Some(client) => {
                    if let Err(err) = client.delete_pod(&pod, None).await {
                        tracing::warn!("delete {}/{} on {node}: {err}", pod.namespace, pod.name);
                    }
                }
                None => tracing::warn!(
                    "delete {}/{}: {node} is not connected",
                    pod.namespace,
                    pod.name
                ),
            }
            if let Ok(mut deleting) = deleting.lock() {
                deleting.remove(&uid);
            }
        });
    }

    /// The deployment owning a pod, by the latest snapshot of its node.
    fn owner_of(&self, node: &str, namespace: &str, name: &str) -> Option<String> {
        let snapshot = self.state.snapshot();
        let record = snapshot.node(node)?.pod(namespace, name)?;
        naming::owner(&record.pod).map(str::to_string)
    }

    /// Records an event in the background: an event that cannot be stored
    /// is logged, never a reason to stop reconciling.
    fn event(&self, involved: InvolvedObject, type_: EventType, reason: &str, message: &str) {
        let event = ControllerEvent {
            involved_object: involved,
            type_,
            reason: reason.to_string(),
            message: message.to_string(),
            time: Utc::now(),
            source: self.holder.clone(),
        };
        tracing::info!(
            "{} {}/{}: {} {}",
            event.involved_object.kind,
            event.involved_object.namespace,
            event.involved_object.name,
            event.reason,
            event.message
        );
        let store = Arc::clone(&self.store);
        tokio::spawn(async move {
            let name = event.store_name();
            let namespace = event.involved_object.namespace.clone();
            if let Err(err) = store
                .put(ControllerEvent::KIND, &namespace, &name, to_value(&event))
                .await
            {
                tracing::debug!("event {name} not stored: {err}");
            }
        });
    }
}

fn to_value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// A stored object of ours; one that does not parse is logged and skipped
/// rather than stopping every other object's reconciling.
fn parse<T: DeserializeOwned>(value: Value, name: &str) -> Option<T> {
    match serde_json::from_value(value) {
        Ok(parsed) => Some(parsed),
        Err(err) => {
            tracing::warn!("stored object {name} skipped: {err}");
            None
        }
    }
}
