//! What `flotilla get nodes`, `top nodes` and `describe node` print: pure
//! functions of a [`ClusterSnapshot`] and the time to print ages at, so the
//! verbs, the tests and (later) the console all render the same thing. The
//! time is the caller's (the CLI passes the wall clock when it prints): a
//! snapshot's `taken_at` is when something last changed, which is long ago
//! in a quiet cluster, and ages measured from it would be too young. Every
//! string that came from a host goes through [`table::escape`]; JSON is left
//! to serde's escaping.
//!
//! # `get nodes`
//!
//! `NAME STATUS ADDRESS CPU% MEM% DISK% PODS AGE KERNEL`, in cluster-file
//! order (the operator's order, not kubectl's sort by name), aligned as
//! kubectl aligns (3 spaces between columns, the last one unpadded).
//!
//! * STATUS is kubectl's: `Ready`, `NotReady`, and flotilla's `Unreachable`
//!   (no SSH connection; kubectl would say `NotReady` with an `Unknown`
//!   condition), with `,SchedulingDisabled` when cordoned.
//! * CPU%, MEM%, DISK% come from the node's last sample while it is fresh
//!   (truncated, as `kubectl top` does), else `<unknown>`: a stale figure is
//!   not printed as if it were current. AGE is since the host booted (else
//!   since flotilla first reached it), in kubectl's short form.
//! * PODS counts the pods that have not terminated, as last listed by the
//!   agent: it is kept while a node is away (its containers keep running
//!   without a link); `<unknown>` until the agent first lists them.
//! * A **REASON** column is added at the end when, and only when, some node
//!   is not Ready: the `Ready` condition's reason (`ConnectionRefused`,
//!   `HostKeyUnknown`, `FiguresStale`, …), `<none>` on Ready nodes. A healthy
//!   cluster keeps kubectl's narrow table; a sick one says why without a
//!   second command. Scripts should read `-o json`, whose shape never moves.
//!
//! `-o wide` adds `OS-IMAGE ARCH CPUS MEMORY AGENT REASON MESSAGE`: the
//! message is the session's whole error for a failed node (what to do next),
//! and both are `<none>` on Ready nodes.
//!
//! `--watch` (`-w`) prints the table once and then, as `kubectl get -w`
//! does, a node's row again (no header) each time something in it other
//! than AGE changes; see [`NodesWatch`].
//!
//! # `-o json`
//!
//! A Kubernetes `List` (`apiVersion: v1`, `kind: List`, `items`,
//! `metadata.resourceVersion: ""`) of `Node` objects, indented as kubectl
//! indents (4 spaces); `get nodes NAME -o json` prints the one `Node`. The
//! Kubernetes fields follow Kubernetes, empty ones left out as it leaves them
//! out: `metadata.name`, `metadata.labels`, `metadata.creationTimestamp` (when
//! flotilla first reached the node); `spec.taints`, `spec.unschedulable`;
//! `status.capacity` and `status.allocatable` (quantity strings),
//! `status.conditions` (type, status, lastHeartbeatTime, lastTransitionTime,
//! reason, message), `status.addresses` (`InternalIP` for an IP address,
//! else `InternalDNS`; `Hostname` from the host), `status.nodeInfo`
//! (`kernelVersion`, `osImage`, `operatingSystem`, `architecture`; empty
//! strings until known). Times are RFC 3339 in seconds, as Kubernetes writes them.
//!
//! flotilla's own fields are under each item's top-level **`flotilla`** key,
//! every one always present (`null` when unknown): `status`, `statusText`,
//! `reason`, `message`; `ssh` (`address`, `port`, `user`); `connection`
//! (`phase`, `since`, `attempt`, `connectedAt`, `lastHeard`, `firstSeen`,
//! `lastFailure` with `reason`, `message`, `at`, `retryAt`); `agent`
//! (`version`, `protocol`); `hostname`, `bootTime`, `ageSeconds`, `pods`,
//! `allocated` (`requests` and `limits`, each `cpu` and `memory`),
//! `agentRestarts`, `lastSampleAt`, and `figures` (`null` unless fresh:
//! `cpuPercent`, `cpuMillicores`, `memoryPercent`, `memoryUsedBytes`,
//! `memoryTotalBytes`, `diskPercent`, `diskUsedBytes`, `diskTotalBytes`,
//! `load1`, `load5`, `load15`, `netRxBytesPerSec`, `netTxBytesPerSec`).
//! Fields are only ever added.
//!
//! # `top nodes`
//!
//! `NAME CPU(cores) CPU% MEMORY(bytes) MEMORY% DISK%` as `kubectl top nodes`
//! prints them (millicores, `Mi`), from fresh figures only; a node without
//! them is listed with `<unknown>` in every column, as kubectl lists a node
//! whose metrics are missing. MEMORY% is of the host's total (what `free`
//! shows), see [`crate::cluster::view::memory_percent`].
//!
//! # `describe node NAME`
//!
//! `kubectl describe node`'s page (padding 2): Name, Roles, Labels,
//! Annotations, CreationTimestamp, Taints, Unschedulable, Conditions,
//! Addresses, Capacity, Allocatable, System Info, Non-terminated Pods,
//! Allocated resources; then flotilla's Connection (SSH target, phase,
//! attempts, the last failure with its whole message) and Figures (CPU,
//! memory, disk, load, network), and Events last as kubectl has them (the
//! agent's last [`DESCRIBE_EVENTS`], oldest first).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use unicode_width::UnicodeWidthStr;

use super::table::{
    self, DESCRIBE_PADDING, GET_PADDING, NONE, UNKNOWN, align, describe_time, escape,
    human_duration, json_time,
};
use crate::agent::protocol::messages::{Event, EventType, PodRecord};
use crate::api::{Quantity, Taint};
use crate::cluster::resources::{Allocated, CpuMemory, NodeResources, percent_of};
use crate::cluster::{
    ClusterSnapshot, ConditionStatus, NodeCondition, NodeStatus, NodeView, Usage,
};
use crate::ssh::known_hosts::DEFAULT_SSH_PORT;

/// How many of the agent's events `describe node` shows.
pub const DESCRIBE_EVENTS: usize = 20;

const MIB: f64 = 1024.0 * 1024.0;

/// A node name the cluster does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "node {name:?} not found: the cluster has {}; see `flotilla get nodes`",
    known_list(known)
)]
pub struct NodeNotFound {
    pub name: String,
    pub known: Vec<String>,
}

impl NodeNotFound {
    pub fn new<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            name: name.to_string(),
            known: known.into_iter().map(str::to_string).collect(),
        }
    }
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "no nodes".into()
    } else {
        known.join(", ")
    }
}

/// The snapshot narrowed to the node `name`, for `get nodes NAME`.
pub fn select(snapshot: &ClusterSnapshot, name: &str) -> Result<ClusterSnapshot, NodeNotFound> {
    let nodes: Vec<_> = snapshot
        .nodes
        .iter()
        .filter(|n| n.name == name)
        .cloned()
        .collect();
    if nodes.is_empty() {
        return Err(NodeNotFound::new(
            name,
            snapshot.nodes.iter().map(|n| n.name.as_str()),
        ));
    }
    Ok(ClusterSnapshot {
        nodes,
        ..snapshot.clone()
    })
}

// ---------------------------------------------------------------- get nodes

/// `flotilla get nodes [-o wide]`.
pub fn nodes_table(snapshot: &ClusterSnapshot, now: DateTime<Utc>, wide: bool) -> String {
    let reason_column = wide || snapshot.nodes.iter().any(|n| !n.is_ready());
    let mut text = nodes_header(wide, reason_column).join("\t");
    text.push('\n');
    for node in &snapshot.nodes {
        text.push_str(&node_cells(node, now, wide, reason_column).join("\t"));
        text.push('\n');
    }
    align(&text, GET_PADDING)
}

fn nodes_header(wide: bool, reason_column: bool) -> Vec<&'static str> {
    let mut header = vec![
        "NAME", "STATUS", "ADDRESS", "CPU%", "MEM%", "DISK%", "PODS", "AGE", "KERNEL",
    ];
    if wide {
        header.extend(["OS-IMAGE", "ARCH", "CPUS", "MEMORY", "AGENT"]);
    }
    if reason_column {
        header.push("REASON");
    }
    if wide {
        header.push("MESSAGE");
    }
    header
}

/// Where AGE is among a row's cells.
const AGE_CELL: usize = 7;

/// One node's row of `get nodes`, cell by cell.
fn node_cells(node: &NodeView, now: DateTime<Utc>, wide: bool, reason_column: bool) -> Vec<String> {
    let usage = node.usage();
    let facts = node.facts.as_deref();
    let mut cells = vec![
        escape(&node.name).into_owned(),
        node.status_text(),
        escape(node.address()).into_owned(),
        percent_cell(usage.and_then(|u| u.cpu_percent)),
        percent_cell(usage.and_then(|u| u.memory_percent)),
        percent_cell(usage.and_then(|u| u.disk_percent)),
        node.pods_at
            .map_or_else(|| UNKNOWN.into(), |_| node.pod_count().to_string()),
        node.age(now)
            .and_then(|d| TimeDelta::from_std(d).ok())
            .map_or_else(|| UNKNOWN.into(), human_duration),
        known(facts.map(|f| f.kernel.as_str())),
    ];
    if wide {
        cells.extend([
            known(facts.map(|f| f.os.as_str())),
            known(facts.map(|f| f.architecture.as_str())),
            facts.map_or_else(|| UNKNOWN.into(), |f| f.cpus.to_string()),
            facts.map_or_else(|| UNKNOWN.into(), |f| bytes_text(f.memory_bytes)),
            known(
                node.agent
                    .as_deref()
                    .map(|a| agent_version(&a.agent_version)),
            ),
        ]);
    }
    let (reason, message) = if node.is_ready() {
        (NONE.to_string(), NONE.to_string())
    } else {
        (known(Some(node.reason())), known(Some(node.message())))
    };
    if reason_column {
        cells.push(reason);
    }
    if wide {
        cells.push(message);
    }
    cells
}

/// `flotilla get nodes --watch`: the table once, then a node's row again
/// each time it changes, as `kubectl get -w` prints an object again each
/// time it changes. A change is any cell but AGE (which moves with the
/// clock alone); CPU% and MEM% move with the figures, so a busy node is
/// printed about once a second.
///
/// Columns are fixed by the first table, as kubectl's are, and later rows
/// are padded to its widths so they line up under it (a longer cell pushes
/// the rest of its own row). REASON is always a column here: a watch is
/// where nodes go NotReady, and the column cannot appear later.
pub struct NodesWatch {
    wide: bool,
    widths: Vec<usize>,
    /// Each node's last printed row, AGE left out, and the view it came
    /// from: the state shares an unchanged node's view between snapshots,
    /// and every cell but AGE is a function of the view, so a node whose
    /// view is the same `Arc` is not rendered again. A snapshot is
    /// published for each node's figures, about once a node a second:
    /// with 20 nodes this saves 19 of every 20 renderings.
    printed: HashMap<String, (Arc<NodeView>, Vec<String>)>,
}

impl NodesWatch {
    /// The watch and the first table to print.
    pub fn start(
        snapshot: &ClusterSnapshot,
        now: DateTime<Utc>,
        wide: bool,
    ) -> (NodesWatch, String) {
        let header: Vec<String> = nodes_header(wide, true)
            .into_iter()
            .map(String::from)
            .collect();
        let rows: Vec<Vec<String>> = snapshot
            .nodes
            .iter()
            .map(|node| node_cells(node, now, wide, true))
            .collect();
        let mut widths = vec![0; header.len()];
        for row in std::iter::once(&header).chain(&rows) {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.width() + GET_PADDING);
            }
        }
        let mut watch = NodesWatch {
            wide,
            widths,
            printed: HashMap::new(),
        };
        let mut text = watch.line(&header);
        for (node, row) in snapshot.nodes.iter().zip(rows) {
            text.push_str(&watch.line(&row));
            watch
                .printed
                .insert(node.name.clone(), (Arc::clone(node), without_age(row)));
        }
        (watch, text)
    }

    /// The rows of the nodes that changed since they were last printed
    /// (or that are new), in cluster-file order; empty when none did.
    pub fn changed(&mut self, snapshot: &ClusterSnapshot, now: DateTime<Utc>) -> String {
        let mut text = String::new();
        for node in &snapshot.nodes {
            let last = self.printed.get(&node.name);
            if last.is_some_and(|(view, _)| Arc::ptr_eq(view, node)) {
                continue;
            }
            let row = node_cells(node, now, self.wide, true);
            let key = without_age(row.clone());
            if last.is_none_or(|(_, printed)| *printed != key) {
                text.push_str(&self.line(&row));
            }
            self.printed
                .insert(node.name.clone(), (Arc::clone(node), key));
        }
        text
    }

    /// Cells padded to the first table's widths, the last one unpadded.
    fn line(&self, cells: &[String]) -> String {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < cells.len() {
                let width = self.widths.get(i).copied().unwrap_or(0);
                let pad = width.saturating_sub(cell.width()).max(1);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        line.push('\n');
        line
    }
}

fn without_age(mut row: Vec<String>) -> Vec<String> {
    if row.len() > AGE_CELL {
        row.remove(AGE_CELL);
    }
    row
}

/// An escaped host string, or `<unknown>` when absent or empty.
fn known(text: Option<&str>) -> String {
    match text {
        Some(t) if !t.is_empty() => escape(t).into_owned(),
        _ => UNKNOWN.into(),
    }
}

/// `flotilla-agent 0.1.0` → `0.1.0`: the column says it is the agent.
fn agent_version(full: &str) -> &str {
    full.strip_prefix("flotilla-agent ").unwrap_or(full)
}

/// A percentage as `kubectl top` prints it: truncated, `<unknown>` if absent.
fn percent_cell(percent: Option<f64>) -> String {
    percent.map_or_else(|| UNKNOWN.into(), |p| format!("{}%", p as i64))
}

/// Bytes in binary units with at most one decimal: `8Gi`, `15.6Gi`, `300Ki`.
fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["", "Ki", "Mi", "Gi", "Ti", "Pi"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let tenths = (value * 10.0).round() / 10.0;
    if tenths.fract() == 0.0 {
        format!("{}{}", tenths as u64, UNITS[unit])
    } else {
        format!("{tenths:.1}{}", UNITS[unit])
    }
}

/// CPU in use as millicores (`kubectl top`'s CPU(cores)): busy share × CPUs.
fn millicores(node: &NodeView, usage: &Usage) -> Option<u64> {
    let cpus = node.facts.as_ref()?.cpus;
    let percent = usage.cpu_percent?;
    Some(
        (percent / 100.0 * f64::from(cpus) * 1000.0)
            .round()
            .max(0.0) as u64,
    )
}

// ---------------------------------------------------------------- top nodes

/// `flotilla top nodes`.
pub fn top_nodes(snapshot: &ClusterSnapshot) -> String {
    let mut text = String::from("NAME\tCPU(cores)\tCPU%\tMEMORY(bytes)\tMEMORY%\tDISK%\n");
    for node in &snapshot.nodes {
        let name = escape(&node.name);
        let Some(usage) = node.usage() else {
            let _ = writeln!(text, "{name}{}", format!("\t{UNKNOWN}").repeat(5));
            continue;
        };
        let cores = millicores(node, &usage).map_or_else(|| UNKNOWN.into(), |m| format!("{m}m"));
        let memory = if usage.memory_total_bytes == 0 {
            UNKNOWN.into()
        } else {
            format!("{}Mi", usage.memory_used_bytes / (1024 * 1024))
        };
        let _ = writeln!(
            text,
            "{name}\t{cores}\t{}\t{memory}\t{}\t{}",
            percent_cell(usage.cpu_percent),
            percent_cell(usage.memory_percent),
            percent_cell(usage.disk_percent),
        );
    }
    align(&text, GET_PADDING)
}

// ---------------------------------------------------------- describe node

/// `flotilla describe node NAME`.
pub fn describe_node(
    snapshot: &ClusterSnapshot,
    name: &str,
    now: DateTime<Utc>,
) -> Result<String, NodeNotFound> {
    let node = snapshot
        .node(name)
        .ok_or_else(|| NodeNotFound::new(name, snapshot.nodes.iter().map(|n| n.name.as_str())))?;
    let mut w = String::new();
    // Writing to a String cannot fail.
    macro_rules! out {
        ($($arg:tt)*) => {{ let _ = writeln!(w, $($arg)*); }};
    }

    out!("Name:\t{}", escape(&node.name));
    out!("Roles:\t{NONE}");
    multiline(
        &mut w,
        "Labels:",
        node.labels.iter().map(|(k, v)| format!("{k}={v}")),
    );
    out!("Annotations:\t{NONE}");
    out!("CreationTimestamp:\t{}", time_or_unknown(node.first_seen));
    multiline(&mut w, "Taints:", node.taints.iter().map(Taint::to_string));
    out!("Unschedulable:\t{}", node.unschedulable);

    out!("Conditions:");
    out!("  Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage");
    out!("  ----\t------\t-----------------\t------------------\t------\t-------");
    for c in &node.conditions {
        // kubectl writes a space before each tab in this table; so do we.
        out!(
            "  {} \t{} \t{} \t{} \t{} \t{}",
            c.type_,
            condition_status(c.status),
            time_or_unknown(c.last_heartbeat_time),
            describe_time(c.last_transition_time),
            escape(&c.reason),
            escape(&c.message)
        );
    }

    out!("Addresses:");
    for (kind, address) in addresses(node) {
        out!("  {kind}:\t{}", escape(&address));
    }
    resources(&mut w, "Capacity:", node.capacity.as_ref());
    resources(&mut w, "Allocatable:", node.allocatable.as_ref());

    match node.facts.as_deref() {
        None => out!("System Info:\t{UNKNOWN}"),
        Some(f) => {
            out!("System Info:");
            out!("  Kernel Version:\t{}", escape(&f.kernel));
            out!("  OS Image:\t{}", escape(&f.os));
            out!("  Operating System:\tlinux");
            out!("  Architecture:\t{}", escape(&f.architecture));
            out!("  Boot Time:\t{}", time_or_unknown(f.boot_time));
            if let Some(agent) = node.agent.as_deref() {
                out!("  Agent Version:\t{}", escape(&agent.agent_version));
                out!("  Agent Protocol:\t{}", escape(&agent.version));
            }
        }
    }

    pods_table(&mut w, node, now);
    if node.pods_at.is_some() {
        allocated(&mut w, &node.allocated, node.allocatable.as_ref());
    } else {
        // Zero would claim the node runs nothing; it is not known yet.
        out!("Allocated resources:\t{UNKNOWN}");
    }
    connection(&mut w, node, now);
    figures(&mut w, node, now);
    events(&mut w, node, now);
    Ok(align(&w, DESCRIBE_PADDING))
}

/// kubectl's multi-line field: the first item beside the title, the rest
/// below it in the same column; `<none>` when empty.
pub(super) fn multiline(w: &mut String, title: &str, items: impl Iterator<Item = String>) {
    let mut first = true;
    for item in items {
        let _ = writeln!(w, "{}\t{}", if first { title } else { "" }, escape(&item));
        first = false;
    }
    if first {
        let _ = writeln!(w, "{title}\t{NONE}");
    }
}

fn time_or_unknown(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| UNKNOWN.into(), describe_time)
}

fn condition_status(s: ConditionStatus) -> &'static str {
    match s {
        ConditionStatus::True => "True",
        ConditionStatus::False => "False",
        ConditionStatus::Unknown => "Unknown",
    }
}

/// Kubernetes' address types: `InternalIP` for the cluster file's address
/// when it is an IP (else `InternalDNS`: a name or `~/.ssh/config` alias),
/// and `Hostname` as the host reports it.
fn addresses(node: &NodeView) -> Vec<(&'static str, String)> {
    let address = node.address();
    let kind = if address.parse::<IpAddr>().is_ok() {
        "InternalIP"
    } else {
        "InternalDNS"
    };
    let mut list = vec![(kind, address.to_string())];
    if let Some(f) = node.facts.as_deref().filter(|f| !f.hostname.is_empty()) {
        list.push(("Hostname", f.hostname.clone()));
    }
    list
}

fn resources(w: &mut String, title: &str, resources: Option<&NodeResources>) {
    match resources {
        None => {
            let _ = writeln!(w, "{title}\t{UNKNOWN}");
        }
        Some(r) => {
            let _ = writeln!(w, "{title}");
            for (name, q) in r.iter() {
                let _ = writeln!(w, "  {name}:\t{q}");
            }
        }
    }
}

/// `500m (12%)`: an amount and its share of the allocatable, truncated.
fn share(amount: &Quantity, whole: Option<&Quantity>) -> String {
    match whole {
        Some(whole) => format!("{amount} ({}%)", percent_of(amount, whole)),
        None => amount.to_string(),
    }
}

fn pods_table(w: &mut String, node: &NodeView, now: DateTime<Utc>) {
    if node.pods_at.is_none() {
        let _ = writeln!(w, "Non-terminated Pods:\t{UNKNOWN}");
        return;
    }
    let live: Vec<&PodRecord> = node
        .pods
        .iter()
        .filter(|p| !p.status.phase.is_terminal())
        .collect();
    let _ = writeln!(w, "Non-terminated Pods:\t({} in total)", live.len());
    if live.is_empty() {
        return;
    }
    let _ = writeln!(
        w,
        "  Namespace\tName\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge"
    );
    let _ = writeln!(
        w,
        "  ---------\t----\t------------\t----------\t---------------\t-------------\t---"
    );
    let alloc = node.allocatable.as_ref();
    for pod in live {
        let sums = Allocated::of([pod]);
        let _ = writeln!(
            w,
            "  {}\t{}\t{}\t{}\t{}\t{}\t{}",
            escape(&pod.pod.metadata.namespace),
            escape(&pod.pod.metadata.name),
            share(&sums.requests.cpu, alloc.map(|a| &a.cpu)),
            share(&sums.limits.cpu, alloc.map(|a| &a.cpu)),
            share(&sums.requests.memory, alloc.map(|a| &a.memory)),
            share(&sums.limits.memory, alloc.map(|a| &a.memory)),
            table::age(pod.status.start_time, now),
        );
    }
}

fn allocated(w: &mut String, allocated: &Allocated, alloc: Option<&NodeResources>) {
    let _ = writeln!(w, "Allocated resources:");
    let _ = writeln!(
        w,
        "  (Total limits may be over 100 percent, i.e., overcommitted.)"
    );
    let _ = writeln!(w, "  Resource\tRequests\tLimits");
    let _ = writeln!(w, "  --------\t--------\t------");
    let (requests, limits) = (&allocated.requests, &allocated.limits);
    let cpu = alloc.map(|a| &a.cpu);
    let memory = alloc.map(|a| &a.memory);
    let _ = writeln!(
        w,
        "  cpu\t{}\t{}",
        share(&requests.cpu, cpu),
        share(&limits.cpu, cpu)
    );
    let _ = writeln!(
        w,
        "  memory\t{}\t{}",
        share(&requests.memory, memory),
        share(&limits.memory, memory)
    );
}

/// `Fri, 15 Jan 2027 08:00:00 +0000 (5m ago)`, or `never`.
fn when(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match t {
        Some(t) => format!("{} ({} ago)", describe_time(t), human_duration(now - t)),
        None => "never".into(),
    }
}

fn ssh_target(node: &NodeView) -> String {
    let config = &node.config;
    let user = config
        .user
        .as_deref()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    format!(
        "{user}{}:{}",
        config.address,
        config.port.unwrap_or(DEFAULT_SSH_PORT)
    )
}

fn connection(w: &mut String, node: &NodeView, now: DateTime<Utc>) {
    let c = &node.connection;
    let _ = writeln!(w, "Connection:");
    let _ = writeln!(w, "  SSH:\t{}", escape(&ssh_target(node)));
    let _ = writeln!(
        w,
        "  Phase:\t{} since {}",
        c.phase.as_str(),
        when(c.since, now)
    );
    let _ = writeln!(w, "  Attempts:\t{} since the last success", c.attempt);
    let _ = writeln!(w, "  Connected:\t{}", when(c.connected_at, now));
    let _ = writeln!(w, "  Last Heard:\t{}", when(node.last_heard, now));
    let _ = writeln!(w, "  Agent Restarts:\t{}", node.agent_restarts);
    match &c.last_failure {
        None => {
            let _ = writeln!(w, "  Last Failure:\t{NONE}");
        }
        Some(f) => {
            let retry = f
                .retry_at
                .map(|at| format!("; next attempt {}", describe_time(at)))
                .unwrap_or_default();
            let _ = writeln!(
                w,
                "  Last Failure:\t{} {}{retry}",
                f.kind.reason(),
                when(Some(f.at), now)
            );
            // The whole message, one escaped line per line it has.
            for line in f.message.lines() {
                let _ = writeln!(w, "  \t{}", escape(line));
            }
        }
    }
}

fn figures(w: &mut String, node: &NodeView, now: DateTime<Utc>) {
    let (Some(usage), Some(sample)) = (node.usage(), node.last_sample()) else {
        let why = match node.last_sample_at {
            None => "no sample yet".to_string(),
            Some(at) => format!("stale: the last sample arrived {}", when(Some(at), now)),
        };
        let _ = writeln!(w, "Figures:\t{UNKNOWN} ({why})");
        return;
    };
    let _ = writeln!(w, "Figures:");
    let _ = writeln!(w, "  Sampled:\t{}", when(node.last_sample_at, now));
    let cpus = node.facts.as_ref().map(|f| f.cpus);
    let cpu = match (usage.cpu_percent, cpus, millicores(node, &usage)) {
        (Some(p), Some(n), Some(m)) => format!("{}% of {n} CPUs ({m}m)", p as i64),
        _ => UNKNOWN.into(),
    };
    let _ = writeln!(w, "  CPU:\t{cpu}");
    let _ = writeln!(
        w,
        "  Memory:\t{}Mi used of {}Mi ({})",
        (usage.memory_used_bytes as f64 / MIB) as u64,
        (usage.memory_total_bytes as f64 / MIB) as u64,
        percent_cell(usage.memory_percent)
    );
    let disk_path = node
        .facts
        .as_ref()
        .map(|f| format!(" on {}", escape(&f.disk.path)))
        .unwrap_or_default();
    let _ = writeln!(
        w,
        "  Disk:\t{} used of {} ({}){disk_path}",
        bytes_text(usage.disk_used_bytes),
        bytes_text(usage.disk_total_bytes),
        percent_cell(usage.disk_percent)
    );
    let _ = writeln!(
        w,
        "  Load:\t{:.2} {:.2} {:.2}",
        sample.load1, sample.load5, sample.load15
    );
    let rate = |r: Option<f64>| {
        r.map_or_else(
            || UNKNOWN.into(),
            |r| format!("{}/s", bytes_text(r.max(0.0) as u64)),
        )
    };
    let _ = writeln!(
        w,
        "  Network:\treceive {}, transmit {}",
        rate(sample.net_rx_bytes_per_sec),
        rate(sample.net_tx_bytes_per_sec)
    );
}

fn events(w: &mut String, node: &NodeView, now: DateTime<Utc>) {
    let total = node.events.len();
    if total == 0 {
        let _ = writeln!(w, "Events:\t{NONE}");
        return;
    }
    if total > DESCRIBE_EVENTS {
        let _ = writeln!(w, "Events:\t(the last {DESCRIBE_EVENTS} of {total})");
    } else {
        let _ = writeln!(w, "Events:");
    }
    let _ = writeln!(w, "  Type\tReason\tAge\tFrom\tMessage");
    let _ = writeln!(w, "  ----\t------\t----\t----\t-------");
    for e in node.events.last_n(DESCRIBE_EVENTS) {
        let _ = writeln!(
            w,
            "  {}\t{}\t{}\tflotilla-agent\t{}",
            match e.type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            },
            escape(&e.reason),
            human_duration(now - e.time),
            escape(&event_message(e))
        );
    }
}

/// The agent's events are mostly about pods: the pod (and container) leads
/// the message, as `kubectl get events` has an OBJECT column for it.
fn event_message(e: &Event) -> String {
    let object = match (&e.pod, &e.container) {
        (p, _) if p.is_empty() => String::new(),
        (p, Some(c)) => format!("pod {}/{p} container {c}", e.namespace),
        (p, None) => format!("pod {}/{p}", e.namespace),
    };
    match (object.is_empty(), e.message.is_empty()) {
        (true, _) => e.message.clone(),
        (false, true) => object,
        (false, false) => format!("{object}: {}", e.message),
    }
}

// ---------------------------------------------------------------- JSON

/// `flotilla get nodes -o json`: a `List` of every node in the snapshot.
pub fn nodes_json(snapshot: &ClusterSnapshot, now: DateTime<Utc>) -> String {
    let list = List {
        api_version: "v1",
        kind: "List",
        items: snapshot.nodes.iter().map(|n| node_object(n, now)).collect(),
        metadata: ListMeta {
            resource_version: "",
        },
    };
    to_json(&list)
}

/// `flotilla get nodes NAME -o json`: the one `Node`, as kubectl prints one object.
pub fn node_json(
    snapshot: &ClusterSnapshot,
    name: &str,
    now: DateTime<Utc>,
) -> Result<String, NodeNotFound> {
    let node = snapshot
        .node(name)
        .ok_or_else(|| NodeNotFound::new(name, snapshot.nodes.iter().map(|n| n.name.as_str())))?;
    Ok(to_json(&node_object(node, now)))
}

/// Pretty JSON with kubectl's 4-space indent and a final newline.
pub(super) fn to_json(value: &impl Serialize) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    // Plain structs of strings, numbers and maps with string keys: cannot fail.
    if let Err(e) = value.serialize(&mut serializer) {
        return format!("{{\"error\": {:?}}}\n", e.to_string());
    }
    let mut text = String::from_utf8_lossy(&out).into_owned();
    text.push('\n');
    text
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct List {
    api_version: &'static str,
    kind: &'static str,
    items: Vec<NodeObject>,
    metadata: ListMeta,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListMeta {
    resource_version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeObject {
    api_version: &'static str,
    kind: &'static str,
    metadata: NodeMeta,
    spec: NodeSpec,
    status: NodeStatusObject,
    flotilla: Flotilla,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeMeta {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    creation_timestamp: Option<String>,
    labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeSpec {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    taints: Vec<Taint>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    unschedulable: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeStatusObject {
    #[serde(skip_serializing_if = "Option::is_none")]
    capacity: Option<BTreeMap<&'static str, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allocatable: Option<BTreeMap<&'static str, String>>,
    conditions: Vec<ConditionObject>,
    addresses: Vec<AddressObject>,
    node_info: NodeInfo,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConditionObject {
    #[serde(rename = "type")]
    type_: &'static str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_heartbeat_time: Option<String>,
    last_transition_time: String,
    reason: String,
    message: String,
}

#[derive(Serialize)]
struct AddressObject {
    #[serde(rename = "type")]
    type_: &'static str,
    address: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeInfo {
    kernel_version: String,
    os_image: String,
    operating_system: &'static str,
    architecture: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Flotilla {
    status: NodeStatus,
    status_text: String,
    reason: String,
    message: String,
    ssh: SshObject,
    connection: ConnectionObject,
    agent: Option<AgentObject>,
    hostname: Option<String>,
    boot_time: Option<String>,
    age_seconds: Option<u64>,
    pods: Option<usize>,
    allocated: AllocatedObject,
    agent_restarts: u64,
    last_sample_at: Option<String>,
    figures: Option<FiguresObject>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SshObject {
    address: String,
    port: u16,
    user: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConnectionObject {
    phase: &'static str,
    since: Option<String>,
    attempt: u32,
    connected_at: Option<String>,
    last_heard: Option<String>,
    first_seen: Option<String>,
    last_failure: Option<FailureObject>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FailureObject {
    reason: &'static str,
    message: String,
    at: String,
    retry_at: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AgentObject {
    version: String,
    protocol: String,
}

#[derive(Serialize)]
struct AllocatedObject {
    requests: CpuMemoryObject,
    limits: CpuMemoryObject,
}

#[derive(Serialize)]
struct CpuMemoryObject {
    cpu: String,
    memory: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FiguresObject {
    cpu_percent: Option<f64>,
    cpu_millicores: Option<u64>,
    memory_percent: Option<f64>,
    memory_used_bytes: u64,
    memory_total_bytes: u64,
    disk_percent: Option<f64>,
    disk_used_bytes: u64,
    disk_total_bytes: u64,
    load1: f64,
    load5: f64,
    load15: f64,
    net_rx_bytes_per_sec: Option<f64>,
    net_tx_bytes_per_sec: Option<f64>,
}

fn resource_map(r: &NodeResources) -> BTreeMap<&'static str, String> {
    r.iter().map(|(name, q)| (name, q.to_string())).collect()
}

fn condition_object(c: &NodeCondition) -> ConditionObject {
    ConditionObject {
        type_: c.type_.as_str(),
        status: condition_status(c.status),
        last_heartbeat_time: c.last_heartbeat_time.map(json_time),
        last_transition_time: json_time(c.last_transition_time),
        reason: c.reason.clone(),
        message: c.message.clone(),
    }
}

fn cpu_memory(c: &CpuMemory) -> CpuMemoryObject {
    CpuMemoryObject {
        cpu: c.cpu.to_string(),
        memory: c.memory.to_string(),
    }
}

fn node_object(node: &NodeView, now: DateTime<Utc>) -> NodeObject {
    let facts = node.facts.as_deref();
    let c = &node.connection;
    let usage = node.usage();
    let figures = usage.zip(node.last_sample()).map(|(u, s)| FiguresObject {
        cpu_percent: u.cpu_percent,
        cpu_millicores: millicores(node, &u),
        memory_percent: u.memory_percent,
        memory_used_bytes: u.memory_used_bytes,
        memory_total_bytes: u.memory_total_bytes,
        disk_percent: u.disk_percent,
        disk_used_bytes: u.disk_used_bytes,
        disk_total_bytes: u.disk_total_bytes,
        load1: s.load1,
        load5: s.load5,
        load15: s.load15,
        net_rx_bytes_per_sec: s.net_rx_bytes_per_sec,
        net_tx_bytes_per_sec: s.net_tx_bytes_per_sec,
    });
    NodeObject {
        api_version: "v1",
        kind: "Node",
        metadata: NodeMeta {
            name: node.name.clone(),
            creation_timestamp: node.first_seen.map(json_time),
            labels: node.labels.clone(),
        },
        spec: NodeSpec {
            taints: node.taints.clone(),
            unschedulable: node.unschedulable,
        },
        status: NodeStatusObject {
            capacity: node.capacity.as_ref().map(resource_map),
            allocatable: node.allocatable.as_ref().map(resource_map),
            conditions: node.conditions.iter().map(condition_object).collect(),
            addresses: addresses(node)
                .into_iter()
                .map(|(type_, address)| AddressObject { type_, address })
                .collect(),
            node_info: NodeInfo {
                kernel_version: facts.map(|f| f.kernel.clone()).unwrap_or_default(),
                os_image: facts.map(|f| f.os.clone()).unwrap_or_default(),
                operating_system: "linux",
                architecture: facts.map(|f| f.architecture.clone()).unwrap_or_default(),
            },
        },
        flotilla: Flotilla {
            status: node.status,
            status_text: node.status_text(),
            reason: node.reason().to_string(),
            message: node.message().to_string(),
            ssh: SshObject {
                address: node.config.address.clone(),
                port: node.config.port.unwrap_or(DEFAULT_SSH_PORT),
                user: node.config.user.clone(),
            },
            connection: ConnectionObject {
                phase: c.phase.as_str(),
                since: c.since.map(json_time),
                attempt: c.attempt,
                connected_at: c.connected_at.map(json_time),
                last_heard: node.last_heard.map(json_time),
                first_seen: node.first_seen.map(json_time),
                last_failure: c.last_failure.as_ref().map(|f| FailureObject {
                    reason: f.kind.reason(),
                    message: f.message.clone(),
                    at: json_time(f.at),
                    retry_at: f.retry_at.map(json_time),
                }),
            },
            agent: node.agent.as_deref().map(|a| AgentObject {
                version: a.agent_version.clone(),
                protocol: a.version.clone(),
            }),
            hostname: facts.map(|f| f.hostname.clone()),
            boot_time: facts.and_then(|f| f.boot_time).map(json_time),
            age_seconds: node.age(now).map(|d| d.as_secs()),
            pods: node.pods_at.map(|_| node.pod_count()),
            allocated: AllocatedObject {
                requests: cpu_memory(&node.allocated.requests),
                limits: cpu_memory(&node.allocated.limits),
            },
            agent_restarts: node.agent_restarts,
            last_sample_at: node.last_sample_at.map(json_time),
            figures,
        },
    }
}

#[cfg(test)]
pub(super) mod tests;
