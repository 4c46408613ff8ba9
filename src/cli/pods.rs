//! What `flotilla get pods` prints: pure functions of a [`ClusterSnapshot`]
//! and the time to print ages at, like [`super::nodes`] for nodes.
//!
//! The pods are those the agents last reported, gathered over every node:
//! each agent keeps the pods bound to its node, so the cluster's pods are
//! the union of theirs, whatever flotilla process asked before.
//!
//! `NAME READY STATUS RESTARTS AGE NODE`, sorted by namespace then name as
//! kubectl sorts them; `-A` adds a leading `NAMESPACE` column, `-o wide`
//! adds `IP` (see [`PodStatus::ip`]) and `IMAGES`. READY, STATUS and
//! RESTARTS are kubectl's (see
//! [`PodStatus::display_status`]); RESTARTS shows `3 (2m ago)` once a
//! container restarted. A pod on a node flotilla cannot reach is shown with
//! its last known row but STATUS `Unknown`, as Kubernetes marks pods of a
//! lost node: its containers may well run on, but nobody can say.
//!
//! Pods no node could take yet (kept Pending in the cluster's store) are
//! listed too, with NODE `<none>`.
//!
//! `-o json` is a Kubernetes `List` of `Pod` objects: metadata (name,
//! namespace, uid, labels), the spec with `nodeName` set, and the status.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::table::{GET_PADDING, NONE, age, align, escape, human_duration};
use crate::agent::protocol::messages::{PodRecord, PodStats};
use crate::api::status::PodStatus;
use crate::api::{ObjectMeta, PodSpec};
use crate::cluster::{ClusterSnapshot, NodeStatus};

/// Which namespaces a listing covers (`-n NS`, `-A`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Namespaces {
    One(String),
    All,
}

impl Namespaces {
    fn admits(&self, namespace: &str) -> bool {
        match self {
            Namespaces::One(one) => one == namespace,
            Namespaces::All => true,
        }
    }
}

/// One pod and the node that reported it.
struct Placed<'a> {
    node: &'a str,
    node_reachable: bool,
    record: &'a PodRecord,
}

impl Placed<'_> {
    fn status_text(&self) -> String {
        if self.node_reachable {
            self.record.status.display_status()
        } else {
            "Unknown".into()
        }
    }
}

/// The pods of `namespaces` (only the one named `name`, if given), sorted
/// by namespace, name and node.
fn gather<'a>(
    snapshot: &'a ClusterSnapshot,
    pending: &'a [PodRecord],
    namespaces: &Namespaces,
    name: Option<&str>,
) -> Vec<Placed<'a>> {
    let mut pods: Vec<Placed> = snapshot
        .nodes
        .iter()
        .flat_map(|node| {
            node.pods.iter().map(move |record| Placed {
                node: &node.name,
                node_reachable: node.status != NodeStatus::Unreachable,
                record,
            })
        })
        .chain(pending.iter().map(|record| Placed {
            node: "",
            node_reachable: true,
            record,
        }))
        .filter(|p| namespaces.admits(&p.record.pod.metadata.namespace))
        .filter(|p| name.is_none_or(|name| p.record.pod.metadata.name == name))
        .collect();
    pods.sort_by(|a, b| {
        let key = |p: &Placed<'a>| {
            let meta = &p.record.pod.metadata;
            (meta.namespace.as_str(), meta.name.as_str(), p.node)
        };
        key(a).cmp(&key(b))
    });
    pods
}

/// `flotilla get pods`: the table, or kubectl's "No resources found" line
/// (which kubectl writes to stderr; the caller decides).
pub fn pods_table(
    snapshot: &ClusterSnapshot,
    pending: &[PodRecord],
    namespaces: &Namespaces,
    now: DateTime<Utc>,
    wide: bool,
) -> Option<String> {
    render_table(
        gather(snapshot, pending, namespaces, None),
        namespaces,
        now,
        wide,
    )
}

fn render_table(
    pods: Vec<Placed>,
    namespaces: &Namespaces,
    now: DateTime<Utc>,
    wide: bool,
) -> Option<String> {
    if pods.is_empty() {
        return None;
    }
    let all = *namespaces == Namespaces::All;
    let mut text = String::new();
    if all {
        text.push_str("NAMESPACE\t");
    }
    text.push_str("NAME\tREADY\tSTATUS\tRESTARTS\tAGE\tNODE");
    if wide {
        text.push_str("\tIP\tIMAGES");
    }
    text.push('\n');
    for placed in &pods {
        let record = placed.record;
        let status = &record.status;
        let mut cells = Vec::new();
        if all {
            cells.push(escape(&record.pod.metadata.namespace).into_owned());
        }
        cells.extend([
            escape(&record.pod.metadata.name).into_owned(),
            format!(
                "{}/{}",
                status.ready_containers(),
                record.pod.spec.containers.len()
            ),
            escape(&placed.status_text()).into_owned(),
            restarts_text(status, now),
            age(status.start_time, now),
            if placed.node.is_empty() {
                NONE.to_string()
            } else {
                escape(placed.node).into_owned()
            },
        ]);
        if wide {
            cells.push(
                status
                    .ip(record.pod.spec.host_network)
                    .map_or_else(|| NONE.into(), |ip| escape(ip).into_owned()),
            );
            let images: Vec<&str> = record
                .pod
                .spec
                .containers
                .iter()
                .map(|c| c.image.as_str())
                .collect();
            cells.push(escape(&images.join(",")).into_owned());
        }
        text.push_str(&cells.join("\t"));
        text.push('\n');
    }
    Some(align(&text, GET_PADDING))
}

/// kubectl's RESTARTS cell: the count, and how long ago the last one was.
fn restarts_text(status: &PodStatus, now: DateTime<Utc>) -> String {
    let restarts = status.restarts();
    match status.last_restart() {
        Some(at) if restarts > 0 => {
            let ago = (now - at).max(TimeDelta::zero());
            format!("{restarts} ({} ago)", human_duration(ago))
        }
        _ => restarts.to_string(),
    }
}

/// kubectl's message when a listing is empty.
pub fn no_pods_message(namespaces: &Namespaces) -> String {
    match namespaces {
        Namespaces::All => "No resources found".into(),
        Namespaces::One(ns) => format!("No resources found in {ns} namespace."),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodObject<'a> {
    api_version: &'a str,
    kind: &'a str,
    metadata: PodMeta<'a>,
    spec: PodSpec,
    status: &'a PodStatus,
}

#[derive(Serialize)]
struct PodMeta<'a> {
    #[serde(flatten)]
    meta: &'a ObjectMeta,
    uid: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodList<'a> {
    api_version: &'a str,
    kind: &'a str,
    items: Vec<PodObject<'a>>,
    metadata: ListMeta,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListMeta {
    resource_version: &'static str,
}

fn pod_object<'a>(placed: &Placed<'a>) -> PodObject<'a> {
    let record = placed.record;
    let mut spec = record.pod.spec.clone();
    spec.node_name = placed.node.to_string();
    PodObject {
        api_version: &record.pod.api_version,
        kind: &record.pod.kind,
        metadata: PodMeta {
            meta: &record.pod.metadata,
            uid: &record.uid,
        },
        spec,
        status: &record.status,
    }
}

/// `flotilla get pods -o json`: a Kubernetes `List` of `Pod`s.
pub fn pods_json(
    snapshot: &ClusterSnapshot,
    pending: &[PodRecord],
    namespaces: &Namespaces,
) -> String {
    let pods = gather(snapshot, pending, namespaces, None);
    super::nodes::to_json(&PodList {
        api_version: "v1",
        kind: "List",
        items: pods.iter().map(pod_object).collect(),
        metadata: ListMeta {
            resource_version: "",
        },
    })
}

/// `flotilla get pod NAME -o json`: the one `Pod`; `None` if no node has it.
pub fn pod_json(
    snapshot: &ClusterSnapshot,
    pending: &[PodRecord],
    namespace: &str,
    name: &str,
) -> Option<String> {
    let pods = gather(
        snapshot,
        pending,
        &Namespaces::One(namespace.to_string()),
        Some(name),
    );
    let placed = pods.first()?;
    Some(super::nodes::to_json(&pod_object(placed)))
}

/// Only the pod named `name`, for `get pod NAME`.
pub fn pod_table(
    snapshot: &ClusterSnapshot,
    pending: &[PodRecord],
    namespace: &str,
    name: &str,
    now: DateTime<Utc>,
    wide: bool,
) -> Option<String> {
    let namespaces = Namespaces::One(namespace.to_string());
    render_table(
        gather(snapshot, pending, &namespaces, Some(name)),
        &namespaces,
        now,
        wide,
    )
}

/// `flotilla top pods`: each pod's CPU (millicores over the agent's last
/// interval) and working-set memory, summed over its containers, as
/// `kubectl top pods` shows them; `None` when there are no pods.
pub fn top_pods(stats: &[PodStats], namespaces: &Namespaces) -> Option<String> {
    let mut rows: Vec<&PodStats> = stats
        .iter()
        .filter(|p| namespaces.admits(&p.namespace))
        .collect();
    if rows.is_empty() {
        return None;
    }
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let all = *namespaces == Namespaces::All;
    let mut text = String::new();
    if all {
        text.push_str("NAMESPACE\t");
    }
    text.push_str("NAME\tCPU(cores)\tMEMORY(bytes)\n");
    for pod in rows {
        if all {
            text.push_str(&escape(&pod.namespace));
            text.push('\t');
        }
        let cpu: Option<u64> = pod.containers.iter().map(|c| c.cpu_millicores).sum();
        let memory: u64 = pod.containers.iter().map(|c| c.memory_bytes).sum();
        text.push_str(&format!(
            "{}\t{}\t{}Mi\n",
            escape(&pod.name),
            cpu.map_or_else(|| "<unknown>".to_string(), |m| format!("{m}m")),
            memory / (1024 * 1024)
        ));
    }
    Some(align(&text, GET_PADDING))
}

#[cfg(test)]
mod tests;
