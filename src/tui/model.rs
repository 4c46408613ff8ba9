//! What each table view shows: pure functions from the cluster's snapshot
//! (and the desired state the console last read) to rows of styled cells.
//! They run when the data changes, not per frame; a frame draws only the
//! visible rows of what they built. The Pods table, thousands of rows, is
//! built as positions in the snapshot whose cells are made when drawn.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::manifests::ManifestEntry;
use super::theme::{Role, status_role};
use crate::agent::protocol::messages::{EventType, PodRecord};
use crate::api::Pod;
use crate::api::status::{ContainerState, PodStatus};
use crate::cli::table::{age, human_duration};
use crate::cluster::{ClusterSnapshot, NodeStatus, NodeView};
use crate::controller::events::ControllerEvent;
use crate::controller::status::counts;
use crate::controller::world::World;

/// What the console knows: the sessions' live snapshot, and what the
/// background reader last got from the cluster's store.
#[derive(Clone)]
pub struct ConsoleData {
    pub snapshot: Arc<ClusterSnapshot>,
    /// Desired state and every agent's pods, read every couple of seconds;
    /// `None` until the first read (or while no majority answers).
    pub world: Option<Arc<World>>,
    pub store_events: Arc<Vec<ControllerEvent>>,
    pub manifests: Arc<Vec<ManifestEntry>>,
    /// Who reconciles: `None` before the first lease attempt.
    pub lease: LeaseView,
}

/// Who holds the cluster's lease, as the header says it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LeaseView {
    #[default]
    Unknown,
    /// This console reconciles.
    Mine,
    /// Another process does (its holder id), or nobody (`None`).
    Other(Option<String>),
}

/// What a row is about, so the selection survives refreshes and actions
/// know their object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowKey {
    Node(String),
    Pod {
        namespace: String,
        name: String,
        /// Empty for a pod waiting for a node.
        node: String,
    },
    Deployment {
        namespace: String,
        name: String,
    },
    Container {
        namespace: String,
        pod: String,
        node: String,
        name: String,
    },
    Event(usize),
    Manifest(usize),
}

/// One cell: its text and what it means.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    pub text: String,
    pub role: Role,
}

impl Cell {
    /// Text from the cluster may hold anything (an event's message comes
    /// from a container): control characters never reach the terminal.
    pub fn new(text: impl Into<String>, role: Role) -> Cell {
        Cell {
            text: printable(text.into()),
            role,
        }
    }

    pub fn text(text: impl Into<String>) -> Cell {
        Cell::new(text, Role::Text)
    }

    pub fn status(text: impl Into<String>) -> Cell {
        let text = text.into();
        let role = status_role(&text);
        Cell::new(text, role)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub key: RowKey,
    pub cells: Vec<Cell>,
}

/// A view's table.
#[derive(Clone, Default)]
pub struct Table {
    pub headers: Vec<&'static str>,
    /// Columns (indices into `headers`) that give way, in this order, when
    /// the table is wider than the screen, rather than every column being
    /// cut short: those kubectl shows only with `-o wide`.
    pub optional: Vec<usize>,
    rows: Rows,
}

/// What a table's rows are made of.
#[derive(Clone)]
enum Rows {
    /// Keys and cells made up front: the views of tens of rows.
    Built(Vec<Row>),
    /// Thousands of pods: only where each one is in the snapshot, so a
    /// rebuild neither formats nor clones anything per row.
    Pods(PodRows),
}

impl Default for Rows {
    fn default() -> Rows {
        Rows::Built(Vec::new())
    }
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("headers", &self.headers)
            .field("optional", &self.optional)
            .field("rows", &self.len())
            .field("lazy", &matches!(self.rows, Rows::Pods(_)))
            .finish()
    }
}

impl Table {
    fn new(headers: Vec<&'static str>, rows: Vec<Row>) -> Table {
        Table {
            headers,
            optional: Vec::new(),
            rows: Rows::Built(rows),
        }
    }

    pub fn len(&self) -> usize {
        match &self.rows {
            Rows::Built(rows) => rows.len(),
            Rows::Pods(pods) => pods.refs.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `i`'s key, made now for a pod row (only the selected row's is
    /// ever asked for, and only when a key or a rebuild needs it).
    pub fn key(&self, i: usize) -> Option<RowKey> {
        match &self.rows {
            Rows::Built(rows) => rows.get(i).map(|r| r.key.clone()),
            Rows::Pods(pods) => pods.refs.get(i).map(|&at| pods.key(at)),
        }
    }

    /// Row `i`'s cells, made now for a pod row.
    pub fn cells(&self, i: usize) -> std::borrow::Cow<'_, [Cell]> {
        match &self.rows {
            Rows::Built(rows) => std::borrow::Cow::Borrowed(&rows[i].cells),
            Rows::Pods(pods) => std::borrow::Cow::Owned(pods.cells(pods.refs[i])),
        }
    }

    /// The first row whose key is `key`.
    pub fn position(&self, key: &RowKey) -> Option<usize> {
        match &self.rows {
            Rows::Built(rows) => rows.iter().position(|r| r.key == *key),
            Rows::Pods(pods) => pods.position(key),
        }
    }

    /// Keeps the rows whose cells `keep` accepts (a filter).
    pub fn retain(&mut self, mut keep: impl FnMut(&[Cell]) -> bool) {
        match &mut self.rows {
            Rows::Built(rows) => rows.retain(|r| keep(&r.cells)),
            Rows::Pods(pods) => {
                let mut refs = std::mem::take(&mut pods.refs);
                refs.retain(|&at| keep(&pods.cells(at)));
                pods.refs = refs;
            }
        }
    }
}

/// Where a pod row's pod is: `snapshot.nodes[node].pods[pod]`, or, for a
/// pod waiting for a node, `world.pending[pod]`. Two `u32`s rather than
/// the row's three strings: the whole list is rebuilt on every change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PodRef {
    node: u32,
    pod: u32,
}

impl PodRef {
    /// `node` of a waiting pod.
    const PENDING: u32 = u32::MAX;
}

/// The Pods view's rows, and what their cells are made from.
#[derive(Clone)]
struct PodRows {
    snapshot: Arc<ClusterSnapshot>,
    world: Option<Arc<World>>,
    refs: Vec<PodRef>,
    show_namespace: bool,
    now: DateTime<Utc>,
}

impl PodRows {
    /// The row's pod and status, and its node and record (`None`: waiting
    /// for a node).
    fn get(&self, at: PodRef) -> (&Pod, &PodStatus, Option<(&NodeView, &PodRecord)>) {
        if at.node == PodRef::PENDING {
            let pending = &self
                .world
                .as_ref()
                .expect("pending rows come from the world")
                .pending[at.pod as usize];
            (&pending.pod, &pending.status, None)
        } else {
            let view = &*self.snapshot.nodes[at.node as usize];
            let record = &view.pods[at.pod as usize];
            (&record.pod, &record.status, Some((view, record)))
        }
    }

    fn key(&self, at: PodRef) -> RowKey {
        let (pod, _, placed) = self.get(at);
        RowKey::Pod {
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            node: placed.map(|(v, _)| v.name.clone()).unwrap_or_default(),
        }
    }

    fn cells(&self, at: PodRef) -> Vec<Cell> {
        let (pod, status, placed) = self.get(at);
        let (node, reachable, stats) = match placed {
            Some((view, record)) => (
                view.name.as_str(),
                view.status != NodeStatus::Unreachable,
                view.stats_of(&record.uid),
            ),
            None => ("", true, None),
        };
        pod_cells(
            pod,
            status,
            node,
            reachable,
            stats,
            self.show_namespace,
            self.now,
        )
    }

    /// Rows of the same node are few (a node's pods), so only those have
    /// their names compared.
    fn position(&self, key: &RowKey) -> Option<usize> {
        let RowKey::Pod {
            namespace,
            name,
            node,
        } = key
        else {
            return None;
        };
        let node = if node.is_empty() {
            PodRef::PENDING
        } else {
            self.snapshot.nodes.iter().position(|n| n.name == *node)? as u32
        };
        self.refs.iter().position(|&at| {
            at.node == node && {
                let meta = &self.get(at).0.metadata;
                meta.namespace == *namespace && meta.name == *name
            }
        })
    }
}

/// Where a pod list is narrowed to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodScope {
    /// Only this namespace (`None`: all).
    pub namespace: Option<String>,
    /// Only this node's pods (drilled down from Nodes).
    pub node: Option<String>,
    /// Only this deployment's pods.
    pub deployment: Option<String>,
}

const SPARK: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A sparkline of percentages (0–100), `width` characters of the latest.
pub fn sparkline(values: &[Option<f64>], width: usize) -> String {
    let start = values.len().saturating_sub(width);
    let mut line: String = values[start..]
        .iter()
        .map(|v| match v {
            Some(p) => {
                let level = ((p.clamp(0.0, 100.0) / 100.0) * 7.0).round() as usize;
                SPARK[level.min(7)]
            }
            None => ' ',
        })
        .collect();
    let shown = values.len() - start;
    if shown < width {
        line.insert_str(0, &" ".repeat(width - shown));
    }
    line
}

/// `45% ▃▄▅▆`: the last value and its recent history.
fn gauge(latest: Option<f64>, history: &[Option<f64>]) -> Cell {
    let Some(p) = latest else {
        return Cell::new("-", Role::Muted);
    };
    let role = if p >= 90.0 {
        Role::Error
    } else if p >= 75.0 {
        Role::Warn
    } else {
        Role::Text
    };
    Cell::new(format!("{p:>3.0}% {}", sparkline(history, 10)), role)
}

fn node_status(node: &NodeView) -> Cell {
    let text = node.status_text();
    let role = match node.status {
        NodeStatus::Ready if node.unschedulable => Role::StatusTerminating,
        NodeStatus::Ready => Role::StatusRunning,
        NodeStatus::Unreachable => Role::StatusUnknown,
        _ => status_role(&text),
    };
    Cell::new(text, role)
}

/// NAME STATUS CPU MEM DISK PODS AGE LABELS TAINTS.
pub fn nodes_table(data: &ConsoleData, now: DateTime<Utc>) -> Table {
    const HISTORY: usize = 60;
    let rows = data
        .snapshot
        .nodes
        .iter()
        .map(|node| {
            let usage = node.usage();
            let labels: Vec<String> = node
                .config
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let taints: Vec<String> = node.taints.iter().map(ToString::to_string).collect();
            Row {
                key: RowKey::Node(node.name.clone()),
                cells: vec![
                    Cell::text(&node.name),
                    node_status(node),
                    gauge(
                        usage.and_then(|u| u.cpu_percent),
                        &node.cpu_percents(HISTORY),
                    ),
                    gauge(
                        usage.and_then(|u| u.memory_percent),
                        &node.memory_percents(HISTORY),
                    ),
                    gauge(
                        usage.and_then(|u| u.disk_percent),
                        &node.disk_percents(HISTORY),
                    ),
                    Cell::text(node.pod_count().to_string()),
                    Cell::new(
                        node.age(now).map_or_else(
                            || "-".into(),
                            |d| human_duration(chrono::TimeDelta::from_std(d).unwrap_or_default()),
                        ),
                        Role::Muted,
                    ),
                    Cell::new(labels.join(","), Role::Muted),
                    Cell::new(taints.join(","), Role::Muted),
                ],
            }
        })
        .collect();
    Table::new(
        vec![
            "NAME", "STATUS", "CPU", "MEM", "DISK", "PODS", "AGE", "LABELS", "TAINTS",
        ],
        rows,
    )
}

/// NAME READY STATUS RESTARTS CPU MEM IP NODE AGE (NAMESPACE first when
/// all; IP before NODE, where k9s has it):
/// every pod the agents report, sorted by namespace, name and node, then
/// the pods waiting for a node in the order the store lists them.
///
/// Thousands of pods, rebuilt whenever the data changes: the rows are only
/// [`PodRef`]s, sorted by keys borrowed from the snapshot, and a row's
/// cells are made when it is drawn (or filtered).
pub fn pods_table(data: &ConsoleData, scope: &PodScope, now: DateTime<Utc>) -> Table {
    let snapshot = &data.snapshot;
    // For the waiting pods; the placed ones are tested a namespace at a
    // time below.
    let wanted = |pod: &Pod| {
        scope
            .namespace
            .as_ref()
            .is_none_or(|ns| *ns == pod.metadata.namespace)
            && scope
                .deployment
                .as_ref()
                .is_none_or(|d| crate::controller::naming::owner(pod) == Some(d.as_str()))
    };
    // Node names sort as their rank in name order, so the third part of
    // the key is an integer (names are unique: they are the nodes' identity).
    let mut by_name: Vec<usize> = (0..snapshot.nodes.len()).collect();
    by_name.sort_unstable_by(|&a, &b| snapshot.nodes[a].name.cmp(&snapshot.nodes[b].name));
    let mut node_rank = vec![0u32; by_name.len()];
    for (r, &n) in by_name.iter().enumerate() {
        node_rank[n] = r as u32;
    }
    /// A placed pod with its sort key. Comparing strings was most of a
    /// rebuild (a `memcmp` call each for namespace and name, in every one
    /// of the merge's ~30,000 steps), so the key starts with integers: the
    /// namespace's rank among the few namespaces, then the name's first
    /// sixteen bytes, big-endian and zero-padded (ordered as the strings
    /// are). The whole name is compared only when those are equal (names
    /// longer than that sharing them), and the node's rank only when the
    /// names are too (a stale copy).
    struct Sortable<'a> {
        head: (u64, u64, u64),
        name: &'a str,
        at: PodRef,
    }
    fn word(bytes: &[u8]) -> u64 {
        match bytes.first_chunk::<8>() {
            Some(word) => u64::from_be_bytes(*word),
            None => {
                let mut word = [0u8; 8];
                word[..bytes.len()].copy_from_slice(bytes);
                u64::from_be_bytes(word)
            }
        }
    }
    let mut placed: Vec<Sortable> =
        Vec::with_capacity(snapshot.nodes.iter().map(|n| n.pods.len()).sum());
    // Namespaces numbered as first met, ranked once all are known. A
    // node's pods are sorted by namespace first, so each namespace is one
    // run of them, found by binary search: a pod's namespace text (a cache
    // miss per pod) is never read one by one.
    let mut namespaces: Vec<&str> = Vec::new();
    for (n, node) in snapshot.nodes.iter().enumerate() {
        if scope.node.as_ref().is_some_and(|s| *s != node.name) {
            continue;
        }
        let mut start = 0;
        while let Some(first) = node.pods.get(start) {
            let namespace = first.pod.metadata.namespace.as_str();
            let run = &node.pods[start..];
            let run = &run[..run.partition_point(|r| r.pod.metadata.namespace == namespace)];
            debug_assert!(
                node.pods[start + run.len()..]
                    .iter()
                    .all(|r| r.pod.metadata.namespace.as_str() > namespace),
                "a node's pods are sorted by namespace"
            );
            let first_pod = start;
            start += run.len();
            if scope.namespace.as_ref().is_some_and(|ns| ns != namespace) {
                continue;
            }
            let id = namespaces
                .iter()
                .position(|&known| known == namespace)
                .unwrap_or_else(|| {
                    namespaces.push(namespace);
                    namespaces.len() - 1
                }) as u64;
            for (p, record) in run.iter().enumerate() {
                if scope.deployment.as_ref().is_some_and(|d| {
                    crate::controller::naming::owner(&record.pod) != Some(d.as_str())
                }) {
                    continue;
                }
                let name = record.pod.metadata.name.as_str();
                let bytes = name.as_bytes();
                let (high, low) = bytes.split_at(bytes.len().min(8));
                placed.push(Sortable {
                    head: (id, word(high), word(&low[..low.len().min(8)])),
                    name,
                    at: PodRef {
                        node: n as u32,
                        pod: (first_pod + p) as u32,
                    },
                });
            }
        }
    }
    let mut ns_order: Vec<usize> = (0..namespaces.len()).collect();
    ns_order.sort_unstable_by_key(|&i| namespaces[i]);
    let mut ns_rank = vec![0u64; namespaces.len()];
    for (r, &i) in ns_order.iter().enumerate() {
        ns_rank[i] = r as u64;
    }
    for s in &mut placed {
        s.head.0 = ns_rank[s.head.0 as usize];
    }
    // Each node's pods come sorted by (namespace, name), so this is a run
    // per node: the stable sort finds the runs and only merges them.
    placed.sort_by(|a, b| {
        a.head.cmp(&b.head).then_with(|| {
            a.name
                .cmp(b.name)
                .then_with(|| node_rank[a.at.node as usize].cmp(&node_rank[b.at.node as usize]))
        })
    });
    let mut refs: Vec<PodRef> = placed.into_iter().map(|s| s.at).collect();
    if scope.node.is_none()
        && let Some(world) = &data.world
    {
        refs.extend(
            (0..world.pending.len())
                .filter(|&i| wanted(&world.pending[i].pod))
                .map(|i| PodRef {
                    node: PodRef::PENDING,
                    pod: i as u32,
                }),
        );
    }
    let mut headers = Vec::new();
    let show_namespace = scope.namespace.is_none();
    if show_namespace {
        headers.push("NAMESPACE");
    }
    headers.extend([
        "NAME", "READY", "STATUS", "RESTARTS", "CPU", "MEM", "IP", "NODE", "AGE",
    ]);
    let optional = headers
        .iter()
        .position(|&h| h == "IP")
        .into_iter()
        .collect();
    Table {
        headers,
        optional,
        rows: Rows::Pods(PodRows {
            snapshot: Arc::clone(snapshot),
            world: data.world.clone(),
            refs,
            show_namespace,
            now,
        }),
    }
}

/// One pod's row.
fn pod_cells(
    pod: &Pod,
    status: &PodStatus,
    node: &str,
    reachable: bool,
    stats: Option<&crate::agent::protocol::messages::PodStats>,
    show_namespace: bool,
    now: DateTime<Utc>,
) -> Vec<Cell> {
    let meta = &pod.metadata;
    let (cpu, memory) = stats.map_or((None, None), |s| {
        let cpu: Option<u64> = s
            .containers
            .iter()
            .map(|c| c.cpu_millicores)
            .try_fold(0, |sum, c| c.map(|c| sum + c));
        let memory: u64 = s.containers.iter().map(|c| c.memory_bytes).sum();
        (cpu, Some(memory))
    });
    let mut cells = Vec::with_capacity(10);
    if show_namespace {
        cells.push(Cell::new(&meta.namespace, Role::Muted));
    }
    let status_text = if reachable {
        status.display_status()
    } else {
        "Unknown".into()
    };
    let restarts: i32 = status
        .container_statuses
        .iter()
        .map(|c| c.restart_count)
        .sum();
    cells.extend([
        Cell::text(&meta.name),
        Cell::text(format!(
            "{}/{}",
            status.ready_containers(),
            pod.spec.containers.len()
        )),
        Cell::status(status_text),
        Cell::new(
            restarts.to_string(),
            if restarts > 0 { Role::Warn } else { Role::Text },
        ),
        Cell::text(cpu.map_or_else(|| "-".into(), |m| format!("{m}m"))),
        Cell::text(memory.map_or_else(|| "-".into(), |b| format!("{}Mi", b / (1024 * 1024)))),
        // The pod's last known address, also on a node that stopped
        // answering (as its status is kept); "-" like CPU and MEM when
        // there is none yet, or none in the status of a hostNetwork pod.
        Cell::text(status.ip(pod.spec.host_network).unwrap_or("-")),
        Cell::text(if node.is_empty() { "<none>" } else { node }),
        Cell::new(age(status.start_time, now), Role::Muted),
    ]);
    cells
}

/// NAME READY UP-TO-DATE AVAILABLE STATUS AGE.
pub fn deployments_table(data: &ConsoleData, namespace: Option<&str>, now: DateTime<Utc>) -> Table {
    let mut rows = Vec::new();
    if let Some(world) = &data.world {
        for state in &world.deployments {
            let d = &state.deployment;
            if namespace.is_some_and(|ns| ns != d.metadata.namespace) {
                continue;
            }
            let c = counts(world, d);
            let rollout = if c.rolled_out() {
                Cell::new("Complete", Role::StatusRunning)
            } else if c.pending > 0 {
                Cell::new(
                    format!("Progressing ({} pending)", c.pending),
                    Role::StatusPending,
                )
            } else {
                Cell::new("Progressing", Role::StatusPending)
            };
            let created = d
                .metadata
                .annotations
                .get(crate::controller::ops::CREATED_ANNOTATION)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc));
            let mut cells = Vec::new();
            if namespace.is_none() {
                cells.push(Cell::new(&d.metadata.namespace, Role::Muted));
            }
            cells.extend([
                Cell::text(&d.metadata.name),
                Cell::new(
                    format!("{}/{}", c.ready, c.replicas),
                    if c.ready == c.replicas {
                        Role::Ok
                    } else {
                        Role::Warn
                    },
                ),
                Cell::text(c.updated.to_string()),
                Cell::text(c.available.to_string()),
                rollout,
                Cell::new(age(created, now), Role::Muted),
            ]);
            rows.push(Row {
                key: RowKey::Deployment {
                    namespace: d.metadata.namespace.clone(),
                    name: d.metadata.name.clone(),
                },
                cells,
            });
        }
    }
    let mut headers = Vec::new();
    if namespace.is_none() {
        headers.push("NAMESPACE");
    }
    headers.extend(["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "ROLLOUT", "AGE"]);
    Table::new(headers, rows)
}

/// The containers of one pod: NAME IMAGE STATE REASON EXIT RESTARTS CPU MEM.
pub fn containers_table(data: &ConsoleData, namespace: &str, pod: &str, node: &str) -> Table {
    let headers = vec![
        "NAME", "IMAGE", "STATE", "REASON", "EXIT", "RESTARTS", "CPU", "MEM",
    ];
    let Some(view) = data.snapshot.node(node) else {
        return Table::new(headers, Vec::new());
    };
    let Some(record) = view.pod(namespace, pod) else {
        return Table::new(headers, Vec::new());
    };
    let stats = view.stats_of(&record.uid);
    let rows = record
        .pod
        .spec
        .containers
        .iter()
        .map(|spec| {
            let status = record
                .status
                .container_statuses
                .iter()
                .find(|s| s.name == spec.name);
            let (state, reason, exit) = match status.map(|s| &s.state) {
                Some(ContainerState::Running(_)) => {
                    ("Running".into(), String::new(), String::new())
                }
                Some(ContainerState::Waiting(w)) => {
                    ("Waiting".into(), w.reason.clone(), String::new())
                }
                Some(ContainerState::Terminated(t)) => (
                    "Terminated".into(),
                    t.reason.clone(),
                    t.exit_code.to_string(),
                ),
                None => (
                    "Waiting".to_string(),
                    "ContainerCreating".into(),
                    String::new(),
                ),
            };
            let figures = stats.and_then(|s| s.containers.iter().find(|c| c.name == spec.name));
            let restarts = status.map_or(0, |s| s.restart_count);
            let shown = if reason.is_empty() { &state } else { &reason };
            Row {
                key: RowKey::Container {
                    namespace: namespace.into(),
                    pod: pod.into(),
                    node: node.into(),
                    name: spec.name.clone(),
                },
                cells: vec![
                    Cell::text(&spec.name),
                    Cell::new(&spec.image, Role::Muted),
                    Cell::status(state.clone()),
                    Cell::new(reason.clone(), status_role(shown)),
                    Cell::text(exit),
                    Cell::new(
                        restarts.to_string(),
                        if restarts > 0 { Role::Warn } else { Role::Text },
                    ),
                    Cell::text(
                        figures
                            .and_then(|f| f.cpu_millicores)
                            .map_or_else(|| "-".into(), |m| format!("{m}m")),
                    ),
                    Cell::text(figures.map_or_else(
                        || "-".into(),
                        |f| format!("{}Mi", f.memory_bytes / (1024 * 1024)),
                    )),
                ],
            }
        })
        .collect();
    Table::new(headers, rows)
}

/// One line of the Events view.
#[derive(Clone, Debug, PartialEq)]
pub struct EventLine {
    pub time: DateTime<Utc>,
    pub warning: bool,
    pub reason: String,
    pub object: String,
    pub message: String,
}

/// The agents' events and the controller's, newest first.
pub fn event_lines(data: &ConsoleData) -> Vec<EventLine> {
    let mut lines: Vec<EventLine> = data
        .snapshot
        .nodes
        .iter()
        .flat_map(|node| {
            node.events.iter().map(move |e| EventLine {
                time: e.time,
                warning: e.type_ == EventType::Warning,
                reason: e.reason.clone(),
                object: if e.pod.is_empty() {
                    format!("node/{}", node.name)
                } else {
                    format!("pod/{}", e.pod)
                },
                message: e.message.clone(),
            })
        })
        .chain(data.store_events.iter().map(|e| EventLine {
            time: e.time,
            warning: e.type_ == EventType::Warning,
            reason: e.reason.clone(),
            object: format!(
                "{}/{}",
                e.involved_object.kind.to_lowercase(),
                e.involved_object.name
            ),
            message: e.message.clone(),
        }))
        .collect();
    lines.sort_by_key(|e| std::cmp::Reverse(e.time));
    lines
}

/// LAST SEEN TYPE REASON OBJECT MESSAGE.
pub fn events_table(data: &ConsoleData, now: DateTime<Utc>) -> Table {
    let rows = event_lines(data)
        .into_iter()
        .enumerate()
        .map(|(i, e)| Row {
            key: RowKey::Event(i),
            cells: vec![
                Cell::new(age(Some(e.time), now), Role::Muted),
                Cell::new(
                    if e.warning { "Warning" } else { "Normal" },
                    if e.warning { Role::Warn } else { Role::Text },
                ),
                Cell::text(e.reason),
                Cell::text(e.object),
                Cell::text(e.message),
            ],
        })
        .collect();
    Table::new(
        vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        rows,
    )
}

/// FILE KIND NAME REPLICAS VALID.
pub fn manifests_table(data: &ConsoleData) -> Table {
    let rows = data
        .manifests
        .iter()
        .enumerate()
        .map(|(i, m)| Row {
            key: RowKey::Manifest(i),
            cells: vec![
                Cell::new(m.file.clone(), Role::Muted),
                Cell::text(m.kind.clone()),
                Cell::text(m.name.clone()),
                Cell::text(m.replicas.map_or_else(String::new, |r| r.to_string())),
                match &m.error {
                    None => Cell::new("valid", Role::Ok),
                    Some(e) => Cell::new(e.clone(), Role::Error),
                },
            ],
        })
        .collect();
    Table::new(vec!["FILE", "KIND", "NAME", "REPLICAS", "VALID"], rows)
}

/// The header's cluster figures: nodes Ready/total, CPU and memory in use
/// over the nodes that report them.
pub fn cluster_summary(snapshot: &ClusterSnapshot) -> (usize, usize, Option<f64>, Option<f64>) {
    let ready = snapshot.count(NodeStatus::Ready);
    let (mut cpu_sum, mut cpu_n) = (0.0, 0);
    let (mut used, mut total) = (0u64, 0u64);
    for node in &snapshot.nodes {
        if let Some(u) = node.usage() {
            if let Some(c) = u.cpu_percent {
                cpu_sum += c;
                cpu_n += 1;
            }
            used += u.memory_used_bytes;
            total += u.memory_total_bytes;
        }
    }
    let cpu = (cpu_n > 0).then(|| cpu_sum / f64::from(cpu_n));
    let memory = (total > 0).then(|| used as f64 * 100.0 / total as f64);
    (ready, snapshot.nodes.len(), cpu, memory)
}

/// Text from the cluster as the console shows it: control characters,
/// bidirectional overrides and the like written as visible escapes (`\x1b`),
/// the command line's rule ([`crate::cli::table::escape`]); tabs become
/// spaces first, since describe output uses them for layout. Clean text is
/// returned as it is.
pub fn printable(text: String) -> String {
    let text = if text.contains('\t') {
        text.replace('\t', "  ")
    } else {
        text
    };
    match crate::cli::table::escape(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(escaped) => escaped,
    }
}
