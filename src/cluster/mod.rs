//! Cluster state: the model between the node sessions that feed it and the
//! console, CLI verbs and controller that read it. It owns what is known of
//! each node (connection, status and conditions, facts, labels, taints,
//! capacity, a ten-minute history of figures, pods, events, last heard) and
//! hands readers immutable snapshots. Pure: no SSH, sockets or files.
//!
//! # Writing
//!
//! [`ClusterState`] is the writer handle: cheap to clone, `Send + Sync`, with
//! synchronous methods that only take a short lock, so a session task calls it
//! between awaits and never waits on a reader. Each session gets a
//! [`NodeWriter`] for its node ([`ClusterState::node`]) and reports what
//! happens: [`NodeWriter::connecting`], [`NodeWriter::connected`] (hello and
//! facts), [`NodeWriter::metrics`], [`NodeWriter::pods`], [`NodeWriter::event`],
//! [`NodeWriter::failed`] with a [`FailureKind`], … or several at once through
//! [`NodeWriter::update`]. Times come from a [`Clock`], so tests control them.
//!
//! # Reading
//!
//! [`ClusterState::subscribe`] gives a `watch::Receiver<Arc<ClusterSnapshot>>`;
//! [`ClusterState::snapshot`] the current one. A snapshot never changes: a
//! reader holding one is unaffected by later updates.
//!
//! Do not hold a `borrow()` of the receiver across a call into the state (the
//! watch channel's lock would wait on itself): clone the `Arc` out first.
//!
//! # Publishing, and what it costs
//!
//! Every write call (or [`NodeWriter::update`] batch) publishes one new
//! snapshot, with a new `generation`. The watch channel coalesces for readers:
//! a reader slower than the writers sees only the latest, and a console
//! redraws at its own frame rate, not once per update. A publish is O(nodes):
//! every node's status is re-judged at the publish time (a comparison or two
//! each) so the whole snapshot is consistent at `taken_at`, and the snapshot
//! is a `Vec` of `Arc<NodeView>` in which only nodes that changed are new.
//! Rebuilding a changed node's view shares its history and events in sealed
//! chunks ([`history`]), copying at most 32 samples, so 50 nodes × 600
//! samples are never copied, and a node that did not change costs a
//! comparison and an `Arc` clone. Measured (the ignored test `publish_cost`,
//! debug build): about 80 µs per published update with 50 nodes of full
//! history, so 50 nodes reporting every second cost well under 1% of a core.
//!
//! Status changes with time alone (figures go stale with no message at all),
//! so someone must call [`ClusterState::tick`] about once a second; the
//! session supervisor can, or [`ClusterState::spawn_ticker`] does. A tick
//! publishes only when something changed.

mod clock;
pub mod history;
pub mod node;
pub mod resources;
pub mod status;
pub mod view;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::agent::node::{MetricsSeries, NodeFacts};
use crate::agent::protocol::messages::{Event, HelloReply, PodRecord, PodStatsList};
use crate::config::cluster_file::{ClusterConfig, NodeConfig};

pub use clock::{Clock, ManualClock, SystemClock};
pub use history::Series;
pub use node::NodeUpdate;
pub use resources::{Allocated, CpuMemory, NodeResources, percent_of};
pub use status::{
    ConditionStatus, Connection, Failure, FailureKind, NodeCondition, NodeConditionType,
    NodeStatus, Phase,
};
pub use view::{ClusterSnapshot, NodeView, Usage};

/// Tunables, with defaults for a console.
#[derive(Clone, Debug)]
pub struct StateOptions {
    /// How long after the last new sample a connected node stays Ready. The
    /// agent samples every second; ten missed in a row means the agent or the
    /// link is sick, yet a slow link (200 ms) or a late poll is not.
    pub stale_after: Duration,
    /// Samples kept per node: ten minutes at one a second.
    pub history_len: usize,
    /// Events kept per node.
    pub events_len: usize,
}

impl Default for StateOptions {
    fn default() -> Self {
        Self {
            stale_after: Duration::from_secs(10),
            history_len: crate::agent::node::metrics::RING_CAPACITY,
            events_len: 1000,
        }
    }
}

/// Why a state call could not be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("no node named {0:?} in the cluster file")]
    UnknownNode(String),
}

/// The writer handle (and the way to subscribe). Cheap to clone.
#[derive(Clone)]
pub struct ClusterState {
    shared: Arc<Shared>,
}

struct Shared {
    clock: Arc<dyn Clock>,
    options: StateOptions,
    model: Mutex<Model>,
    tx: watch::Sender<Arc<ClusterSnapshot>>,
}

struct Model {
    cluster_name: Arc<str>,
    /// In cluster-file order.
    nodes: Vec<node::NodeRecord>,
    index: HashMap<String, usize>,
    generation: u64,
    next_id: u64,
    /// The node list changed shape (a node added, removed or moved).
    reshaped: bool,
}

impl std::fmt::Debug for ClusterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let snapshot = self.snapshot();
        f.debug_struct("ClusterState")
            .field("cluster", &snapshot.cluster_name)
            .field("nodes", &snapshot.nodes.len())
            .field("generation", &snapshot.generation)
            .finish()
    }
}

impl ClusterState {
    /// A state for the nodes of `config`, none of them reached yet, on the
    /// system clock.
    pub fn new(config: &ClusterConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock), StateOptions::default())
    }

    pub fn with_clock(
        config: &ClusterConfig,
        clock: Arc<dyn Clock>,
        options: StateOptions,
    ) -> Self {
        let now = clock.now();
        let mut model = Model {
            cluster_name: Arc::from(config.name.as_str()),
            nodes: Vec::new(),
            index: HashMap::new(),
            generation: 0,
            next_id: 0,
            reshaped: true,
        };
        model.reconfigure(config, &options, now);
        let snapshot = model.commit(now, &options);
        let (tx, _) = watch::channel(Arc::new(snapshot.unwrap_or_else(|| ClusterSnapshot {
            cluster_name: Arc::clone(&model.cluster_name),
            nodes: Vec::new(),
            generation: 0,
            taken_at: now,
        })));
        Self {
            shared: Arc::new(Shared {
                clock,
                options,
                model: Mutex::new(model),
                tx,
            }),
        }
    }

    /// A receiver of every published snapshot (the current one is marked seen).
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterSnapshot>> {
        self.shared.tx.subscribe()
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<ClusterSnapshot> {
        Arc::clone(&self.shared.tx.borrow())
    }

    pub fn options(&self) -> &StateOptions {
        &self.shared.options
    }

    /// The writer for node `name`, for its session task.
    pub fn node(&self, name: &str) -> Result<NodeWriter, StateError> {
        let model = self.shared.lock();
        let id = model
            .index
            .get(name)
            .and_then(|&i| model.nodes.get(i))
            .map(|n| n.id)
            .ok_or_else(|| StateError::UnknownNode(name.to_string()))?;
        Ok(NodeWriter {
            state: self.clone(),
            name: name.to_string(),
            id,
        })
    }

    /// Re-judges every node at the current time (figures going stale) and
    /// publishes if anything changed. Call about once a second.
    pub fn tick(&self) {
        self.shared.write(|_model| ());
    }

    /// Ticks every `period` until the state is dropped or the task aborted.
    pub fn spawn_ticker(&self, period: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Shared> = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticker.tick().await;
                match weak.upgrade() {
                    Some(shared) => shared.write(|_model| ()),
                    None => return,
                }
            }
        })
    }

    /// Follows a changed cluster file (`flotilla node add`, an edit): nodes
    /// are added, removed and reordered as the file says, and a node that
    /// stays keeps everything known of it, with its new labels, taints and
    /// address. Writers of removed nodes are ignored from then on.
    pub fn reconfigure(&self, config: &ClusterConfig) {
        let options = self.shared.options.clone();
        self.shared.write(|model| {
            let now = self.shared.clock.now();
            model.reconfigure(config, &options, now);
        });
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Model> {
        // Every change is applied whole before the lock is released, except
        // across a panic in a caller's closure; the model stays usable.
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `f` to the model, re-judges and publishes.
    fn write<R>(&self, f: impl FnOnce(&mut Model) -> R) -> R {
        let now = self.clock.now();
        let (result, snapshot) = {
            let mut model = self.lock();
            let result = f(&mut model);
            (result, model.commit(now, &self.options))
        };
        if let Some(snapshot) = snapshot {
            let snapshot = Arc::new(snapshot);
            // Sent outside the model lock so readers' wake-ups never hold up
            // writers; the generation check keeps a slower sender from
            // replacing a newer snapshot with an older one.
            self.tx.send_if_modified(|current| {
                if snapshot.generation > current.generation {
                    *current = snapshot;
                    true
                } else {
                    false
                }
            });
        }
        result
    }
}

impl Model {
    fn reconfigure(&mut self, config: &ClusterConfig, options: &StateOptions, now: DateTime<Utc>) {
        self.cluster_name = Arc::from(config.name.as_str());
        let mut old: HashMap<String, node::NodeRecord> = self
            .nodes
            .drain(..)
            .map(|n| (n.config.name.clone(), n))
            .collect();
        self.index.clear();
        for (i, node_config) in config.nodes.iter().enumerate() {
            let node_config: Arc<NodeConfig> = Arc::new(node_config.clone());
            let record = match old.remove(&node_config.name) {
                Some(mut record) => {
                    record.set_config(node_config);
                    record
                }
                None => {
                    self.next_id += 1;
                    node::NodeRecord::new(self.next_id, node_config, options, now)
                }
            };
            self.index.insert(record.config.name.clone(), i);
            self.nodes.push(record);
        }
        self.reshaped = true;
    }

    /// Re-judges every node at `now`, rebuilds the views that changed, and
    /// returns a new snapshot if anything did.
    fn commit(&mut self, now: DateTime<Utc>, options: &StateOptions) -> Option<ClusterSnapshot> {
        let mut changed = std::mem::take(&mut self.reshaped);
        for node in &mut self.nodes {
            node.evaluate(now, options.stale_after);
            if node.dirty {
                node.refresh_view();
                changed = true;
            }
        }
        if !changed {
            return None;
        }
        self.generation += 1;
        Some(ClusterSnapshot {
            cluster_name: Arc::clone(&self.cluster_name),
            nodes: self.nodes.iter().map(|n| Arc::clone(&n.view)).collect(),
            generation: self.generation,
            taken_at: now,
        })
    }

    fn node_mut(&mut self, name: &str, id: u64) -> Option<&mut node::NodeRecord> {
        let i = *self.index.get(name)?;
        self.nodes.get_mut(i).filter(|n| n.id == id)
    }
}

/// A node's writer, for its session task. Each method applies one input and
/// publishes; [`NodeWriter::update`] applies several and publishes once. If
/// the node has been removed from the cluster file since, writes are ignored.
#[derive(Clone)]
pub struct NodeWriter {
    state: ClusterState,
    name: String,
    id: u64,
}

impl std::fmt::Debug for NodeWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeWriter")
            .field("node", &self.name)
            .finish()
    }
}

impl NodeWriter {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Applies `f` to this node and publishes once. `None` when the node is
    /// no longer in the cluster. Do not call into the state from `f`.
    pub fn update<R>(&self, f: impl FnOnce(&mut NodeUpdate<'_>) -> R) -> Option<R> {
        let shared = &self.state.shared;
        let now = shared.clock.now();
        shared.write(|model| {
            let record = model.node_mut(&self.name, self.id)?;
            Some(f(&mut NodeUpdate { record, now }))
        })
    }

    /// Reads this node's record without publishing.
    fn read<R>(&self, f: impl FnOnce(&mut NodeUpdate<'_>) -> R) -> Option<R> {
        let shared = &self.state.shared;
        let now = shared.clock.now();
        let mut model = shared.lock();
        let record = model.node_mut(&self.name, self.id)?;
        Some(f(&mut NodeUpdate { record, now }))
    }

    /// See [`NodeUpdate::connecting`].
    pub fn connecting(&self) {
        self.update(|n| n.connecting());
    }

    /// See [`NodeUpdate::bootstrapping`].
    pub fn bootstrapping(&self) {
        self.update(|n| n.bootstrapping());
    }

    /// See [`NodeUpdate::connected`].
    pub fn connected(&self, hello: HelloReply, facts: NodeFacts) {
        self.update(|n| n.connected(hello, facts));
    }

    /// See [`NodeUpdate::reached_at`].
    pub fn reached_at(&self, ip: std::net::IpAddr) {
        self.update(|n| n.reached_at(ip));
    }

    /// See [`NodeUpdate::facts`].
    pub fn facts(&self, facts: NodeFacts) {
        self.update(|n| n.facts(facts));
    }

    /// See [`NodeUpdate::metrics`]; returns how many samples were new.
    pub fn metrics(&self, series: MetricsSeries) -> usize {
        self.update(|n| n.metrics(series)).unwrap_or(0)
    }

    /// See [`NodeUpdate::metrics_since`].
    pub fn metrics_since(&self) -> Option<u64> {
        self.read(|n| n.metrics_since()).flatten()
    }

    /// See [`NodeUpdate::pods`].
    pub fn pods(&self, pods: Vec<PodRecord>) {
        self.update(|n| n.pods(pods));
    }

    /// See [`NodeUpdate::pod`].
    pub fn pod(&self, record: PodRecord) {
        self.update(|n| n.pod(record));
    }

    /// See [`NodeUpdate::pod_removed`].
    pub fn pod_removed(&self, namespace: &str, name: &str) {
        self.update(|n| n.pod_removed(namespace, name));
    }

    /// See [`NodeUpdate::pod_stats`].
    pub fn pod_stats(&self, stats: PodStatsList) {
        self.update(|n| n.pod_stats(stats));
    }

    /// See [`NodeUpdate::event`]; returns whether it was new.
    pub fn event(&self, event: Event) -> bool {
        self.update(|n| n.event(event)).unwrap_or(false)
    }

    /// See [`NodeUpdate::events_since`].
    pub fn events_since(&self) -> Option<u64> {
        self.read(|n| n.events_since()).flatten()
    }

    /// See [`NodeUpdate::alive`].
    pub fn alive(&self) {
        self.update(|n| n.alive());
    }

    /// See [`NodeUpdate::failed`].
    pub fn failed(&self, kind: FailureKind, message: impl Into<String>) {
        self.update(|n| n.failed(kind, message));
    }

    /// See [`NodeUpdate::retry_at`].
    pub fn retry_at(&self, at: DateTime<Utc>) {
        self.update(|n| n.retry_at(at));
    }

    /// See [`NodeUpdate::set_unschedulable`].
    pub fn set_unschedulable(&self, unschedulable: bool) {
        self.update(|n| n.set_unschedulable(unschedulable));
    }
}

#[cfg(test)]
mod tests;
