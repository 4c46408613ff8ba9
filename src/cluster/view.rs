//! What readers get: an immutable [`ClusterSnapshot`] of every node, each an
//! `Arc<NodeView>` shared with the snapshots before it until that node
//! changes, with the accessors `get nodes`, `top nodes`, `describe node` and
//! the console's sparklines need.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::agent::node::{MetricsSample, NodeFacts};
use crate::agent::protocol::messages::{Event, HelloReply, PodRecord, PodStats};
use crate::api::node::Taint;
use crate::config::cluster_file::NodeConfig;

use super::history::Series;
use super::resources::{Allocated, NodeResources};
use super::status::{
    ConditionStatus, Connection, NodeCondition, NodeConditionType, NodeStatus, Phase,
};

/// The whole cluster at one moment. Statuses in it were judged at `taken_at`.
#[derive(Clone, Debug)]
pub struct ClusterSnapshot {
    pub cluster_name: Arc<str>,
    /// In cluster-file order.
    pub nodes: Vec<Arc<NodeView>>,
    /// Increases by one per published change; a reader that saw generation
    /// `g` has seen everything up to it.
    pub generation: u64,
    pub taken_at: DateTime<Utc>,
}

impl ClusterSnapshot {
    pub fn node(&self, name: &str) -> Option<&NodeView> {
        self.nodes.iter().map(Arc::as_ref).find(|n| n.name == name)
    }

    /// The nodes whose agents report the pod (more than one while a stale
    /// copy awaits fencing), in cluster-file order.
    pub fn holders(&self, namespace: &str, name: &str) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|node| node.pod(namespace, name).is_some())
            .map(|node| node.name.clone())
            .collect()
    }

    /// How many nodes have `status`.
    pub fn count(&self, status: NodeStatus) -> usize {
        self.nodes.iter().filter(|n| n.status == status).count()
    }
}

/// One node: its configuration, connection, health, facts, figures and pods.
#[derive(Clone, Debug)]
pub struct NodeView {
    /// The node's name in the cluster file: its identity.
    pub name: String,
    pub config: Arc<NodeConfig>,
    pub status: NodeStatus,
    /// MemoryPressure, DiskPressure, PIDPressure, Ready, in that order.
    pub conditions: Vec<NodeCondition>,
    pub connection: Connection,
    /// The agent's hello (version, protocol, capabilities), from the last handshake.
    pub agent: Option<Arc<HelloReply>>,
    /// The last facts the agent sent; kept while the node is unreachable.
    pub facts: Option<Arc<NodeFacts>>,
    /// The cluster file's labels plus the well-known ones (see [`super::node`]).
    pub labels: BTreeMap<String, String>,
    /// The cluster file's taints plus those the node's conditions add.
    pub taints: Vec<Taint>,
    /// Cordoned: no new pods.
    pub unschedulable: bool,
    /// `None` until the agent's facts arrive.
    pub capacity: Option<NodeResources>,
    pub allocatable: Option<NodeResources>,
    pub allocated: Allocated,
    /// The pods the agent last reported, sorted by namespace and name; kept
    /// (as last known) while the node is unreachable.
    pub pods: Arc<[PodRecord]>,
    /// When the pod list was last set in full.
    pub pods_at: Option<DateTime<Utc>>,
    pub pod_stats: Arc<[PodStats]>,
    /// The last ten minutes of samples (600), oldest first.
    pub history: Series<MetricsSample>,
    /// When the last new sample arrived, on the operator's clock.
    pub last_sample_at: Option<DateTime<Utc>>,
    /// Whether that sample is within the stale limit (at the snapshot's time).
    pub figures_fresh: bool,
    /// The agent's last events (1000), oldest first.
    pub events: Series<Event>,
    /// How many times the agent's numbering showed it had restarted.
    pub agent_restarts: u64,
    /// When anything last came from the agent.
    pub last_heard: Option<DateTime<Utc>>,
    /// When this process first reached the agent.
    pub first_seen: Option<DateTime<Utc>>,
}

impl NodeView {
    pub fn address(&self) -> &str {
        &self.config.address
    }

    pub fn is_ready(&self) -> bool {
        self.status == NodeStatus::Ready
    }

    pub fn condition(&self, type_: NodeConditionType) -> Option<&NodeCondition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// The `Ready` condition's reason: why the node has its status
    /// (`AgentReady`, `FiguresStale`, `ConnectionRefused`, …).
    pub fn reason(&self) -> &str {
        self.condition(NodeConditionType::Ready)
            .map_or("", |c| c.reason.as_str())
    }

    /// The `Ready` condition's message: for a failure, the session's error text.
    pub fn message(&self) -> &str {
        self.condition(NodeConditionType::Ready)
            .map_or("", |c| c.message.as_str())
    }

    /// kubectl's STATUS text: `Ready`, `NotReady,SchedulingDisabled`, …
    pub fn status_text(&self) -> String {
        if self.unschedulable {
            format!("{},SchedulingDisabled", self.status)
        } else {
            self.status.to_string()
        }
    }

    /// Whether a pressure condition is `True`.
    pub fn under_pressure(&self, type_: NodeConditionType) -> bool {
        type_ != NodeConditionType::Ready
            && self
                .condition(type_)
                .is_some_and(|c| c.status == ConditionStatus::True)
    }

    /// The AGE column: since the host booted when its facts say, else since
    /// this process first reached it; `None` before either is known. Zero if
    /// `now` is earlier (a clock step).
    pub fn age(&self, now: DateTime<Utc>) -> Option<Duration> {
        let since = self
            .facts
            .as_ref()
            .and_then(|f| f.boot_time)
            .or(self.first_seen)?;
        Some((now - since).to_std().unwrap_or(Duration::ZERO))
    }

    /// The last sample, however old. For figures to print, see [`Self::usage`].
    pub fn last_sample(&self) -> Option<&MetricsSample> {
        self.history.last()
    }

    /// CPU, memory and disk use from the last sample, only while the figures
    /// are fresh: a stale or unreachable node prints `<unknown>` as kubectl does.
    pub fn usage(&self) -> Option<Usage> {
        self.figures_fresh
            .then(|| self.last_sample().map(Usage::of))
            .flatten()
    }

    /// Pods that have not terminated, the PODS column (and `kubectl describe
    /// node`'s "Non-terminated Pods").
    pub fn pod_count(&self) -> usize {
        self.allocated.pods
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<&PodRecord> {
        self.pods
            .iter()
            .find(|p| p.pod.metadata.namespace == namespace && p.pod.metadata.name == name)
    }

    pub fn stats_of(&self, uid: &str) -> Option<&PodStats> {
        self.pod_stats.iter().find(|s| s.uid == uid)
    }

    /// The CPU busy % of the last `n` samples, oldest first, for a sparkline;
    /// `None` where the agent had no figure (the first sample after its start).
    pub fn cpu_percents(&self, n: usize) -> Vec<Option<f64>> {
        self.history.last_n(n).map(|s| s.cpu_percent).collect()
    }

    /// Memory in use (total less available) as % of total, last `n` samples.
    pub fn memory_percents(&self, n: usize) -> Vec<Option<f64>> {
        self.history.last_n(n).map(memory_percent).collect()
    }

    /// Disk of the agent root in use as % of its size, last `n` samples.
    pub fn disk_percents(&self, n: usize) -> Vec<Option<f64>> {
        self.history.last_n(n).map(disk_percent).collect()
    }

    /// Whether the session is past connecting (SSH up).
    pub fn ssh_up(&self) -> bool {
        matches!(
            self.connection.phase,
            Phase::Bootstrapping | Phase::Connected
        )
    }
}

/// A node's use at its last sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Usage {
    /// Busy share of all CPUs, 0–100; absent on an agent's first sample.
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
    pub disk_percent: Option<f64>,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub disk_used_bytes: u64,
    pub disk_total_bytes: u64,
    pub load1: f64,
}

impl Usage {
    pub fn of(s: &MetricsSample) -> Self {
        Self {
            cpu_percent: s.cpu_percent,
            memory_percent: memory_percent(s),
            disk_percent: disk_percent(s),
            memory_used_bytes: s
                .memory_total_bytes
                .saturating_sub(s.memory_available_bytes),
            memory_total_bytes: s.memory_total_bytes,
            disk_used_bytes: s.disk_total_bytes.saturating_sub(s.disk_free_bytes),
            disk_total_bytes: s.disk_total_bytes,
            load1: s.load1,
        }
    }
}

/// Memory in use as % of total: what `kubectl top node` calls MEMORY%
/// (there: working set of allocatable; here: total less MemAvailable of
/// total, what `free` shows). `None` when the total is unknown.
pub fn memory_percent(s: &MetricsSample) -> Option<f64> {
    percent(
        s.memory_total_bytes
            .saturating_sub(s.memory_available_bytes),
        s.memory_total_bytes,
    )
}

/// Disk in use as % of the file system: total less what unprivileged users
/// may still write (so the root-reserved blocks count as used).
pub fn disk_percent(s: &MetricsSample) -> Option<f64> {
    percent(
        s.disk_total_bytes.saturating_sub(s.disk_free_bytes),
        s.disk_total_bytes,
    )
}

fn percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}
