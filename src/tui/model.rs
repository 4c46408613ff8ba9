//! What each table view shows: pure functions from the cluster's snapshot
//! (and the desired state the console last read) to rows of styled cells.
//! They run when the data changes, not per frame; a frame draws only the
//! visible rows of what they built.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::manifests::ManifestEntry;
use super::theme::{Role, status_role};
use crate::agent::protocol::messages::{EventType, PodRecord};
use crate::api::status::ContainerState;
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

/// Makes a row's cells from its key, for tables whose rows are formatted
/// only when shown.
pub type Formatter = Arc<dyn Fn(&RowKey) -> Vec<Cell> + Send + Sync>;

/// A view's table.
#[derive(Clone, Default)]
pub struct Table {
    pub headers: Vec<&'static str>,
    pub rows: Vec<Row>,
    /// Set when the rows hold only keys: their cells come from here.
    pub formatter: Option<Formatter>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("headers", &self.headers)
            .field("rows", &self.rows.len())
            .field("lazy", &self.formatter.is_some())
            .finish()
    }
}

impl Table {
    fn new(headers: Vec<&'static str>, rows: Vec<Row>) -> Table {
        Table {
            headers,
            rows,
            formatter: None,
        }
    }

    /// Row `i`'s cells, made now if the table is lazy.
    pub fn cells(&self, i: usize) -> std::borrow::Cow<'_, [Cell]> {
        let row = &self.rows[i];
        match &self.formatter {
            Some(format) if row.cells.is_empty() => std::borrow::Cow::Owned(format(&row.key)),
            _ => std::borrow::Cow::Borrowed(&row.cells),
        }
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

/// Every pod the agents report, with its node, sorted by namespace, name
/// and node.
fn all_pods(data: &ConsoleData) -> Vec<(&str, &PodRecord)> {
    let mut pods: Vec<(&str, &PodRecord)> = data
        .snapshot
        .nodes
        .iter()
        .flat_map(|n| n.pods.iter().map(move |r| (n.name.as_str(), r)))
        .collect();
    // Unstable: the key (namespace, name, node) is unique, and it needs no buffer.
    pods.sort_unstable_by(|a, b| {
        let (ma, mb) = (&a.1.pod.metadata, &b.1.pod.metadata);
        (&ma.namespace, &ma.name, a.0).cmp(&(&mb.namespace, &mb.name, b.0))
    });
    pods
}

/// Waiting pods, as records with NODE `<none>`.
fn pending_records(data: &ConsoleData) -> Vec<PodRecord> {
    data.world
        .as_ref()
        .map(|w| {
            w.pending
                .iter()
                .map(|p| PodRecord {
                    pod: p.pod.clone(),
                    status: p.status.clone(),
                    uid: String::new(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// NAME READY STATUS RESTARTS CPU MEM NODE AGE (NAMESPACE first when all).
///
/// Thousands of pods: the rows hold only their keys, and the cells of a
/// row are made when it is drawn (or filtered), from the same snapshot.
pub fn pods_table(data: &ConsoleData, scope: &PodScope, now: DateTime<Utc>) -> Table {
    let pending = Arc::new(pending_records(data));
    let mut rows = Vec::new();
    let placed = all_pods(data);
    let waiting = pending.iter().map(|r| ("", r));
    for (node, record) in placed.into_iter().chain(waiting) {
        let meta = &record.pod.metadata;
        if scope
            .namespace
            .as_ref()
            .is_some_and(|ns| *ns != meta.namespace)
            || scope.node.as_ref().is_some_and(|n| n != node)
            || scope
                .deployment
                .as_ref()
                .is_some_and(|d| crate::controller::naming::owner(&record.pod) != Some(d.as_str()))
        {
            continue;
        }
        rows.push(Row {
            key: RowKey::Pod {
                namespace: meta.namespace.clone(),
                name: meta.name.clone(),
                node: node.to_string(),
            },
            cells: Vec::new(),
        });
    }
    let mut headers = Vec::new();
    let show_namespace = scope.namespace.is_none();
    if show_namespace {
        headers.push("NAMESPACE");
    }
    headers.extend([
        "NAME", "READY", "STATUS", "RESTARTS", "CPU", "MEM", "NODE", "AGE",
    ]);
    let snapshot = Arc::clone(&data.snapshot);
    let formatter: Formatter = Arc::new(move |key: &RowKey| {
        let RowKey::Pod {
            namespace,
            name,
            node,
        } = key
        else {
            return Vec::new();
        };
        let view = snapshot.node(node);
        let record = match view {
            Some(view) => view.pod(namespace, name),
            None => pending
                .iter()
                .find(|r| r.pod.metadata.namespace == *namespace && r.pod.metadata.name == *name),
        };
        let Some(record) = record else {
            return Vec::new();
        };
        let reachable = view.is_none_or(|v| v.status != NodeStatus::Unreachable);
        let stats = view.and_then(|v| v.stats_of(&record.uid));
        pod_cells(record, node, reachable, stats, show_namespace, now)
    });
    Table {
        headers,
        rows,
        formatter: Some(formatter),
    }
}

/// One pod's row.
fn pod_cells(
    record: &PodRecord,
    node: &str,
    reachable: bool,
    stats: Option<&crate::agent::protocol::messages::PodStats>,
    show_namespace: bool,
    now: DateTime<Utc>,
) -> Vec<Cell> {
    let meta = &record.pod.metadata;
    let status = &record.status;
    let (cpu, memory) = stats.map_or((None, None), |s| {
        let cpu: Option<u64> = s
            .containers
            .iter()
            .map(|c| c.cpu_millicores)
            .try_fold(0, |sum, c| c.map(|c| sum + c));
        let memory: u64 = s.containers.iter().map(|c| c.memory_bytes).sum();
        (cpu, Some(memory))
    });
    let mut cells = Vec::with_capacity(9);
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
            record.pod.spec.containers.len()
        )),
        Cell::status(status_text),
        Cell::new(
            restarts.to_string(),
            if restarts > 0 { Role::Warn } else { Role::Text },
        ),
        Cell::text(cpu.map_or_else(|| "-".into(), |m| format!("{m}m"))),
        Cell::text(memory.map_or_else(|| "-".into(), |b| format!("{}Mi", b / (1024 * 1024)))),
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
