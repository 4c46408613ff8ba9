//! One node on the writer's side: what its session reported, and the rules
//! that turn that into a status, conditions, labels, taints and resources.
//!
//! **Status** is read off the `Ready` condition (see [`NodeStatus`] for each
//! case and its reason).
//!
//! **Pressure conditions** come from the last sample while figures are fresh,
//! with kubelet's default hard eviction thresholds: MemoryPressure when
//! memory available < 100Mi, DiskPressure when the agent root's file system
//! has < 10% available (`nodefs.available<10%`). PIDPressure is always
//! `False`: Kubernetes sets no default `pid.available` threshold, and the
//! agent does not sample PIDs. Without fresh figures all three are `Unknown`
//! (`NodeStatusUnknown`, or `NodeStatusNeverUpdated` before the first sample),
//! as the node lifecycle controller marks a node it no longer hears from.
//! Kubelet's 5-minute pressure transition period is not modelled: a condition
//! follows the last sample.
//!
//! **Labels**: the cluster file's, then the well-known ones, which win as
//! kubelet's own labels do: `kubernetes.io/hostname` = the node's name,
//! `kubernetes.io/os` = `linux`, `kubernetes.io/arch` = the agent's
//! architecture (OCI names, which are Go's GOARCH names, as Kubernetes uses).
//! The hostname label is the node name, not the host's own hostname: kubelet
//! sets it to whatever names the node (with `--hostname-override`, the
//! override), and in flotilla the cluster file's name is the node's identity.
//! That way `nodeSelector: {kubernetes.io/hostname: node1}` means the node
//! `flotilla get nodes` lists as node1, and the label is there before the
//! host was ever reached. The host's own name is in the facts.
//!
//! **Taints**: the cluster file's, then those Kubernetes adds from conditions
//! (all `NoSchedule`): `node.kubernetes.io/not-ready` when `Ready` is False,
//! `node.kubernetes.io/unreachable` when it is Unknown, `…/memory-pressure`,
//! `…/disk-pressure`, `…/pid-pressure` when those are True, and
//! `…/unschedulable` when cordoned. The lifecycle controller's `NoExecute`
//! twins of not-ready and unreachable are left out: flotilla does not evict
//! on taints (its controller reschedules off lost nodes by its own rule), so
//! they would promise an eviction that never happens.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::agent::node::{MetricsSample, MetricsSeries, NodeFacts};
use crate::agent::protocol::messages::{Event, HelloReply, PodRecord, PodStatsList};
use crate::api::node::{Taint, TaintEffect};
use crate::config::cluster_file::NodeConfig;

use super::StateOptions;
use super::history::{Offered, SeqLog};
use super::resources::{
    Allocated, EVICTION_HARD_MEMORY_BYTES, EVICTION_HARD_NODEFS_PERCENT, NodeResources,
};
use super::status::{
    ConditionStatus, Connection, Failure, FailureKind, NodeCondition, NodeConditionType,
    NodeStatus, Phase,
};
use super::view::NodeView;

pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
pub const LABEL_OS: &str = "kubernetes.io/os";
pub const LABEL_ARCH: &str = "kubernetes.io/arch";

pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const TAINT_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const TAINT_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const TAINT_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";

/// A node as the writer holds it.
#[derive(Debug)]
pub(crate) struct NodeRecord {
    /// Tells this node from an earlier one of the same name, so a writer
    /// handle of a removed node cannot write into its successor.
    pub(crate) id: u64,
    pub(crate) config: Arc<NodeConfig>,
    /// The address the SSH connection reached, for a node the cluster file
    /// names by host name.
    peer_ip: Option<std::net::IpAddr>,
    phase: Phase,
    phase_since: Option<DateTime<Utc>>,
    attempt: u32,
    connected_at: Option<DateTime<Utc>>,
    last_failure: Option<Failure>,
    /// The last failure is the current state of the session (not an old one
    /// kept for `describe` after a later success).
    failure_pending: bool,
    agent: Option<Arc<HelloReply>>,
    facts: Option<Arc<NodeFacts>>,
    capacity: Option<NodeResources>,
    allocatable: Option<NodeResources>,
    pods: Arc<[PodRecord]>,
    pods_at: Option<DateTime<Utc>>,
    allocated: Allocated,
    pod_stats: Arc<[crate::agent::protocol::messages::PodStats]>,
    samples: SeqLog<MetricsSample>,
    last_sample_at: Option<DateTime<Utc>>,
    events: SeqLog<Event>,
    /// Whether this connection has matched the agent's numbering with ours
    /// (see [`NodeUpdate::metrics_since`]).
    samples_confirmed: bool,
    events_confirmed: bool,
    last_heard: Option<DateTime<Utc>>,
    first_seen: Option<DateTime<Utc>>,
    unschedulable: bool,
    conditions: Vec<NodeCondition>,
    figures_fresh: bool,
    pub(crate) view: Arc<NodeView>,
    /// The view no longer matches the record.
    pub(crate) dirty: bool,
}

/// A condition's status, reason and message before times are attached.
type Judged = (ConditionStatus, &'static str, String);

impl NodeRecord {
    pub(crate) fn new(
        id: u64,
        config: Arc<NodeConfig>,
        options: &StateOptions,
        now: DateTime<Utc>,
    ) -> Self {
        let mut record = Self {
            id,
            config,
            peer_ip: None,
            phase: Phase::Idle,
            phase_since: None,
            attempt: 0,
            connected_at: None,
            last_failure: None,
            failure_pending: false,
            agent: None,
            facts: None,
            capacity: None,
            allocatable: None,
            pods: Arc::from(Vec::new()),
            pods_at: None,
            allocated: Allocated::default(),
            pod_stats: Arc::from(Vec::new()),
            samples: SeqLog::new(options.history_len),
            last_sample_at: None,
            events: SeqLog::new(options.events_len),
            samples_confirmed: false,
            events_confirmed: false,
            last_heard: None,
            first_seen: None,
            unschedulable: false,
            conditions: Vec::new(),
            figures_fresh: false,
            view: Arc::new(placeholder_view()),
            dirty: true,
        };
        record.evaluate(now, options.stale_after);
        record
    }

    pub(crate) fn set_config(&mut self, config: Arc<NodeConfig>) {
        if *config != *self.config {
            self.config = config;
            self.dirty = true;
        }
    }

    /// Judges the status and conditions at `now`; marks the view dirty when
    /// they may have changed.
    pub(crate) fn evaluate(&mut self, now: DateTime<Utc>, stale_after: Duration) {
        let fresh = self.phase == Phase::Connected
            && self.last_sample_at.is_some_and(|at| {
                // A clock stepped back reads as fresh rather than stale.
                (now - at).to_std().unwrap_or(Duration::ZERO) <= stale_after
            });
        if fresh == self.figures_fresh && !self.dirty {
            // Every input marks the record dirty, and freshness is the only
            // thing time changes: nothing judged here can differ. This keeps
            // a publish at O(1) per unchanged node.
            return;
        }
        self.figures_fresh = fresh;
        self.dirty = true;
        let [memory, disk, pid] = self.judge_pressure(fresh);
        let judged = [memory, disk, pid, self.judge_ready()];
        let conditions = NodeConditionType::ALL
            .into_iter()
            .zip(judged)
            .map(|(type_, (status, reason, message))| {
                // Kubernetes moves lastTransitionTime only when the status changes.
                let last_transition_time = self
                    .conditions
                    .iter()
                    .find(|c| c.type_ == type_ && c.status == status)
                    .map_or(now, |c| c.last_transition_time);
                NodeCondition {
                    type_,
                    status,
                    reason: reason.to_string(),
                    message,
                    last_heartbeat_time: self.last_heard,
                    last_transition_time,
                }
            })
            .collect();
        self.conditions = conditions;
    }

    fn judge_ready(&self) -> Judged {
        use ConditionStatus::{False, True, Unknown};
        let from_failure = |f: &Failure| {
            let status = if f.kind.host_reachable() {
                False
            } else {
                Unknown
            };
            (status, f.kind.reason(), f.message.clone())
        };
        let pending = self.last_failure.as_ref().filter(|_| self.failure_pending);
        match self.phase {
            Phase::Idle => (
                Unknown,
                "NodeStatusNeverUpdated",
                "flotilla has not tried to connect yet".into(),
            ),
            // While the session retries, the failure that made it retry
            // stays the reason: the status does not flicker with each attempt.
            Phase::Connecting | Phase::Failed => match pending {
                Some(f) => from_failure(f),
                None if self.phase == Phase::Failed => (
                    Unknown,
                    FailureKind::Unreachable.reason(),
                    "the connection failed".into(),
                ),
                None => (
                    Unknown,
                    "Connecting",
                    format!("connecting over SSH (attempt {})", self.attempt.max(1)),
                ),
            },
            Phase::Bootstrapping => (
                False,
                "AgentStarting",
                "SSH is up; flotilla-agent is being checked, installed or started".into(),
            ),
            Phase::Connected if self.figures_fresh => (
                True,
                "AgentReady",
                "flotilla-agent is posting ready status".into(),
            ),
            Phase::Connected => match self.last_sample_at {
                None => (
                    False,
                    "FiguresPending",
                    "the agent answered; waiting for its first figures".into(),
                ),
                Some(at) => (
                    False,
                    "FiguresStale",
                    format!(
                        "no new figures from the agent since {}",
                        at.to_rfc3339_opts(SecondsFormat::Secs, true)
                    ),
                ),
            },
        }
    }

    fn judge_pressure(&self, fresh: bool) -> [Judged; 3] {
        use ConditionStatus::{False, True, Unknown};
        let sample = self.samples.last().filter(|_| fresh);
        let Some(s) = sample else {
            let unknown = if self.last_sample_at.is_none() {
                (
                    Unknown,
                    "NodeStatusNeverUpdated",
                    "the agent never posted figures".to_string(),
                )
            } else {
                (
                    Unknown,
                    "NodeStatusUnknown",
                    "the agent stopped posting figures".to_string(),
                )
            };
            return [unknown.clone(), unknown.clone(), unknown];
        };
        let memory = if s.memory_total_bytes == 0 {
            (
                Unknown,
                "NoFigures",
                "the agent could not read the memory figures".into(),
            )
        } else if s.memory_available_bytes < EVICTION_HARD_MEMORY_BYTES {
            (
                True,
                "AgentHasInsufficientMemory",
                format!(
                    "memory available {} MiB is under the eviction threshold memory.available<100Mi",
                    s.memory_available_bytes / (1024 * 1024)
                ),
            )
        } else {
            (
                False,
                "AgentHasSufficientMemory",
                "the agent has sufficient memory available".into(),
            )
        };
        let disk = if s.disk_total_bytes == 0 {
            (
                Unknown,
                "NoFigures",
                "the agent could not read the disk figures".into(),
            )
        } else if u128::from(s.disk_free_bytes) * 100
            < u128::from(s.disk_total_bytes) * u128::from(EVICTION_HARD_NODEFS_PERCENT)
        {
            (
                True,
                "AgentHasDiskPressure",
                format!(
                    "{}% of the agent root's file system is available, under the eviction threshold nodefs.available<10%",
                    u128::from(s.disk_free_bytes) * 100 / u128::from(s.disk_total_bytes)
                ),
            )
        } else {
            (
                False,
                "AgentHasNoDiskPressure",
                "the agent has no disk pressure".into(),
            )
        };
        let pid = (
            False,
            "AgentHasSufficientPID",
            "the agent has sufficient PID available (no pid.available threshold is set, as in Kubernetes by default)".into(),
        );
        [memory, disk, pid]
    }

    fn status(&self) -> NodeStatus {
        self.conditions
            .iter()
            .find(|c| c.type_ == NodeConditionType::Ready)
            .map_or(NodeStatus::Unreachable, |c| {
                NodeStatus::from_ready(c.status)
            })
    }

    /// Rebuilds the view if anything changed since the last one.
    pub(crate) fn refresh_view(&mut self) {
        if !self.dirty {
            return;
        }
        let status = self.status();
        let view = NodeView {
            name: self.config.name.clone(),
            config: Arc::clone(&self.config),
            status,
            conditions: self.conditions.clone(),
            connection: Connection {
                phase: self.phase,
                since: self.phase_since,
                attempt: self.attempt,
                connected_at: self.connected_at,
                last_failure: self.last_failure.clone(),
            },
            agent: self.agent.clone(),
            facts: self.facts.clone(),
            labels: self.labels(),
            taints: self.taints(),
            unschedulable: self.unschedulable,
            capacity: self.capacity.clone(),
            allocatable: self.allocatable.clone(),
            allocated: self.allocated.clone(),
            pods: Arc::clone(&self.pods),
            pods_at: self.pods_at,
            pod_stats: Arc::clone(&self.pod_stats),
            history: self.samples.series(),
            last_sample_at: self.last_sample_at,
            figures_fresh: self.figures_fresh,
            events: self.events.series(),
            agent_restarts: self.samples.restarts(),
            last_heard: self.last_heard,
            first_seen: self.first_seen,
        };
        self.view = Arc::new(view);
        self.dirty = false;
    }

    fn labels(&self) -> std::collections::BTreeMap<String, String> {
        let mut labels = self.config.labels.clone();
        labels.insert(LABEL_HOSTNAME.into(), self.config.name.clone());
        // The agent runs on Linux only; os-release's name is not GOOS.
        labels.insert(LABEL_OS.into(), "linux".into());
        if let Some(facts) = &self.facts {
            labels.insert(LABEL_ARCH.into(), facts.architecture.clone());
        }
        labels
    }

    fn taints(&self) -> Vec<Taint> {
        let mut taints = self.config.taints.clone();
        let condition = |t: NodeConditionType| {
            self.conditions
                .iter()
                .find(|c| c.type_ == t)
                .map(|c| c.status)
        };
        let mut system = Vec::new();
        match condition(NodeConditionType::Ready) {
            Some(ConditionStatus::False) => system.push(TAINT_NOT_READY),
            Some(ConditionStatus::Unknown) | None => system.push(TAINT_UNREACHABLE),
            Some(ConditionStatus::True) => {}
        }
        for (t, key) in [
            (NodeConditionType::MemoryPressure, TAINT_MEMORY_PRESSURE),
            (NodeConditionType::DiskPressure, TAINT_DISK_PRESSURE),
            (NodeConditionType::PidPressure, TAINT_PID_PRESSURE),
        ] {
            if condition(t) == Some(ConditionStatus::True) {
                system.push(key);
            }
        }
        if self.unschedulable {
            system.push(TAINT_UNSCHEDULABLE);
        }
        for key in system {
            let taint = Taint {
                key: key.into(),
                value: None,
                effect: TaintEffect::NoSchedule,
            };
            if !taints
                .iter()
                .any(|t| t.key == taint.key && t.effect == taint.effect)
            {
                taints.push(taint);
            }
        }
        taints
    }
}

/// An empty view, replaced before anyone sees it.
fn placeholder_view() -> NodeView {
    NodeView {
        name: String::new(),
        config: Arc::new(NodeConfig {
            name: String::new(),
            address: String::new(),
            port: None,
            user: None,
            identity: None,
            labels: Default::default(),
            taints: Vec::new(),
            host_key: None,
            cgroup_parent: "flotilla".into(),
        }),
        status: NodeStatus::Unreachable,
        conditions: Vec::new(),
        connection: Connection {
            phase: Phase::Idle,
            since: None,
            attempt: 0,
            connected_at: None,
            last_failure: None,
        },
        agent: None,
        facts: None,
        labels: Default::default(),
        taints: Vec::new(),
        unschedulable: false,
        capacity: None,
        allocatable: None,
        allocated: Allocated::default(),
        pods: Arc::from(Vec::new()),
        pods_at: None,
        pod_stats: Arc::from(Vec::new()),
        history: Default::default(),
        last_sample_at: None,
        figures_fresh: false,
        events: Default::default(),
        agent_restarts: 0,
        last_heard: None,
        first_seen: None,
    }
}

/// The inputs a node's session reports, applied together and published once
/// (through [`super::NodeWriter::update`], or one at a time through the
/// writer's shortcuts). None of them blocks; each is a few field writes.
pub struct NodeUpdate<'a> {
    pub(crate) record: &'a mut NodeRecord,
    pub(crate) now: DateTime<Utc>,
}

impl NodeUpdate<'_> {
    /// The time the state stamps on this update.
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    fn enter(&mut self, phase: Phase) {
        let r = &mut *self.record;
        if r.phase != phase {
            r.phase = phase;
            r.phase_since = Some(self.now);
        }
        r.dirty = true;
    }

    fn heard(&mut self) {
        self.record.last_heard = Some(self.now);
        self.record.dirty = true;
    }

    /// An SSH connection attempt has started.
    pub fn connecting(&mut self) {
        self.record.attempt = self.record.attempt.saturating_add(1);
        self.enter(Phase::Connecting);
    }

    /// SSH is up and authenticated; the agent is being checked, installed or
    /// started.
    pub fn bootstrapping(&mut self) {
        self.enter(Phase::Bootstrapping);
    }

    /// The agent answered hello and sent its facts: the node is live.
    pub fn connected(&mut self, hello: HelloReply, facts: NodeFacts) {
        let r = &mut *self.record;
        r.agent = Some(Arc::new(hello));
        r.connected_at = Some(self.now);
        r.first_seen.get_or_insert(self.now);
        r.attempt = 0;
        r.failure_pending = false;
        if let Some(f) = &mut r.last_failure {
            f.retry_at = None;
        }
        // A new connection may be to a new agent process: until its numbering
        // is matched with ours, ask it for everything it holds.
        r.samples_confirmed = false;
        r.events_confirmed = false;
        self.facts(facts);
        self.enter(Phase::Connected);
    }

    /// Newer facts (disk size, CPUs online) from `node.facts`.
    pub fn facts(&mut self, facts: NodeFacts) {
        let r = &mut *self.record;
        let capacity = NodeResources::capacity(&facts);
        r.allocatable = Some(NodeResources::allocatable(&capacity));
        r.capacity = Some(capacity);
        r.facts = Some(Arc::new(facts));
        self.heard();
    }

    /// What `node.metrics` returned. Keeps the samples not already held (see
    /// [`super::history`]) and returns how many that was; a new sample is what
    /// keeps the node Ready.
    pub fn metrics(&mut self, series: MetricsSeries) -> usize {
        let mut kept = 0;
        for sample in series.samples {
            let r = &mut *self.record;
            if r.samples.is_last(&sample) {
                r.samples_confirmed = true;
            }
            let offered = r.samples.offer(sample);
            if offered.appended() {
                kept += 1;
                r.samples_confirmed = true;
                if offered == Offered::AppendedAfterRestart {
                    tracing::info!(node = %r.config.name, "the agent restarted: its samples are numbered afresh");
                }
            }
        }
        // Freshness is when a new sample arrived here, not the sample's own
        // time: the host's clock may be skewed from ours. (So an agent whose
        // sampler died counts as fresh once, on the first fetch of its old
        // ring, and goes stale a stale limit later.)
        if kept > 0 {
            self.record.last_sample_at = Some(self.now);
        }
        self.heard();
        kept
    }

    /// The `since` for the next `node.metrics`: the last sample held, or
    /// `None` (everything the agent holds) on a new connection until a reply
    /// has matched the agent's numbering with ours. An agent that restarted
    /// numbers from 1 and would answer a `since` from its predecessor with
    /// nothing for as long as it took to catch up.
    pub fn metrics_since(&self) -> Option<u64> {
        let r = &*self.record;
        if r.samples_confirmed {
            r.samples.last_seq()
        } else {
            None
        }
    }

    /// The pods the agent holds (`pods.list`), replacing what was known.
    pub fn pods(&mut self, mut pods: Vec<PodRecord>) {
        pods.sort_by(|a, b| pod_key(a).cmp(&pod_key(b)));
        self.set_pods(pods);
        self.record.pods_at = Some(self.now);
    }

    /// One pod's record (a `pods.status`, `pods.create` or `pods.stop`
    /// answer): replaces the pod of that namespace and name, or adds it.
    pub fn pod(&mut self, record: PodRecord) {
        let mut pods = self.record.pods.to_vec();
        match pods.binary_search_by(|p| pod_key(p).cmp(&pod_key(&record))) {
            Ok(i) => pods[i] = record,
            Err(i) => pods.insert(i, record),
        }
        self.set_pods(pods);
    }

    /// A pod the agent no longer holds (`pods.delete`).
    pub fn pod_removed(&mut self, namespace: &str, name: &str) {
        let pods = &self.record.pods;
        if pods.iter().any(|p| pod_key(p) == (namespace, name)) {
            let rest: Vec<_> = pods
                .iter()
                .filter(|p| pod_key(p) != (namespace, name))
                .cloned()
                .collect();
            self.set_pods(rest);
        }
    }

    /// The SSH connection reached the node at `ip` (what its host name
    /// resolved to, for a node the cluster file names so).
    pub fn reached_at(&mut self, ip: std::net::IpAddr) {
        if self.record.peer_ip != Some(ip) {
            self.record.peer_ip = Some(ip);
            let pods = self.record.pods.to_vec();
            self.set_pods(pods);
        }
    }

    fn set_pods(&mut self, mut pods: Vec<PodRecord>) {
        // Kubernetes' hostIP, the node's address: an agent cannot tell which
        // of its addresses the cluster reaches it by. The cluster file says,
        // when it names the node by address; for a host name, the address
        // the SSH connection reached does.
        let ip =
            (self.record.config.address.parse::<std::net::IpAddr>().ok()).or(self.record.peer_ip);
        if let Some(ip) = ip {
            for pod in pods.iter_mut().filter(|p| p.status.host_ip.is_empty()) {
                pod.status.host_ip = ip.to_string();
            }
        }
        let r = &mut *self.record;
        r.allocated = Allocated::of(&pods);
        r.pods = Arc::from(pods);
        self.heard();
    }

    /// The pods' cgroup figures (`pods.stats`), replacing the last ones.
    pub fn pod_stats(&mut self, stats: PodStatsList) {
        self.record.pod_stats = Arc::from(stats.pods);
        self.heard();
    }

    /// An event from `events.subscribe`. Returns whether it was new.
    pub fn event(&mut self, event: Event) -> bool {
        let r = &mut *self.record;
        if r.events.is_last(&event) {
            r.events_confirmed = true;
        }
        let kept = r.events.offer(event).appended();
        r.events_confirmed |= kept;
        self.heard();
        kept
    }

    /// The `since` for `events.subscribe`: the last event held, or `Some(0)`
    /// (replay all the agent holds; duplicates are dropped here) on a new
    /// connection until an event has matched the agent's numbering with ours.
    pub fn events_since(&self) -> Option<u64> {
        let r = &*self.record;
        if r.events_confirmed {
            r.events.last_seq()
        } else {
            Some(0)
        }
    }

    /// Something came from the agent that changes nothing else (a keepalive
    /// answered, an empty reply): updates "last heard".
    pub fn alive(&mut self) {
        self.heard();
    }

    /// The attempt failed, or the connection was lost. `message` is the
    /// error as the user should read it; it becomes the `Ready` reason's message.
    pub fn failed(&mut self, kind: FailureKind, message: impl Into<String>) {
        let r = &mut *self.record;
        r.last_failure = Some(Failure {
            kind,
            message: message.into(),
            at: self.now,
            retry_at: None,
        });
        r.failure_pending = true;
        self.enter(Phase::Failed);
    }

    /// When the session will try again (its back-off), shown beside the failure.
    pub fn retry_at(&mut self, at: DateTime<Utc>) {
        if let Some(f) = &mut self.record.last_failure {
            f.retry_at = Some(at);
            self.record.dirty = true;
        }
    }

    /// Cordoned (`flotilla cordon`) or not, from the replicated cluster objects.
    pub fn set_unschedulable(&mut self, unschedulable: bool) {
        if self.record.unschedulable != unschedulable {
            self.record.unschedulable = unschedulable;
            self.record.dirty = true;
        }
    }
}

fn pod_key(p: &PodRecord) -> (&str, &str) {
    (&p.pod.metadata.namespace, &p.pod.metadata.name)
}
