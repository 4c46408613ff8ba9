//! `flotilla describe pod|deployment NAME`: kubectl's layout, from what the
//! agents report and what the cluster's store holds: the spec, the status
//! and conditions, for a pod the scheduler's explanation of where it is (or
//! why it is nowhere), and the events of both the controller (Scheduled,
//! Killing, Fenced, …) and the agents (Pulled, Started, BackOff, …).

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::control::with_control;
use super::nodes::multiline;
use super::table::{DESCRIBE_PADDING, NONE, align, describe_time, escape, human_duration};
use crate::agent::protocol::messages::{EventType, PodRecord};
use crate::api::deployment::{Deployment, StrategyType};
use crate::api::pod::PodSpec;
use crate::api::status::ContainerState;
use crate::cluster::ClusterSnapshot;
use crate::config::paths::Dirs;
use crate::controller::events::ControllerEvent;
use crate::controller::naming;
use crate::controller::plan::{SCHEDULING_ANNOTATION, rolling_bounds};
use crate::controller::run::ControllerOptions;
use crate::controller::status::counts;
use crate::controller::world::World;

/// One event line, whoever recorded it.
struct EventLine {
    time: DateTime<Utc>,
    type_: EventType,
    reason: String,
    from: String,
    message: String,
}

pub fn describe_pod(
    namespace: &str,
    name: &str,
    timeout: Duration,
    cluster: Option<std::path::PathBuf>,
    dirs: &Dirs,
) -> anyhow::Result<ExitCode> {
    with_control(
        cluster,
        dirs,
        timeout,
        ControllerOptions::default(),
        async |control| {
            let world = control.controller.read_world().await?;
            let snapshot = control.snapshot();
            let events = store_events(control, namespace, "Pod", name).await;
            let text = pod_text(&world, &snapshot, namespace, name, events)
                .with_context(|| format!("pods {name:?} not found in namespace {namespace:?}"))?;
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        },
    )
}

pub fn describe_deployment(
    namespace: &str,
    name: &str,
    timeout: Duration,
    cluster: Option<std::path::PathBuf>,
    dirs: &Dirs,
) -> anyhow::Result<ExitCode> {
    with_control(
        cluster,
        dirs,
        timeout,
        ControllerOptions::default(),
        async |control| {
            let world = control.controller.read_world().await?;
            let deployment = world
                .deployments
                .iter()
                .map(|s| &s.deployment)
                .find(|d| d.metadata.namespace == namespace && d.metadata.name == name)
                .with_context(|| {
                    format!("deployments.apps {name:?} not found in namespace {namespace:?}")
                })?;
            let events = store_events(control, namespace, "Deployment", name).await;
            print!("{}", deployment_text(&world, deployment, events));
            Ok(ExitCode::SUCCESS)
        },
    )
}

async fn store_events(
    control: &super::control::Control,
    namespace: &str,
    kind: &str,
    name: &str,
) -> Vec<EventLine> {
    let records = control
        .store()
        .list(ControllerEvent::KIND, Some(namespace))
        .await
        .unwrap_or_default();
    let events: Vec<ControllerEvent> = records
        .into_iter()
        .filter_map(|r| serde_json::from_value::<ControllerEvent>(r.object?).ok())
        .collect();
    events_of(&events, namespace, kind, name)
}

/// The controller's events about one object.
fn events_of(
    events: &[ControllerEvent],
    namespace: &str,
    kind: &str,
    name: &str,
) -> Vec<EventLine> {
    events
        .iter()
        .filter(|e| {
            e.involved_object.kind == kind
                && e.involved_object.name == name
                && (e.involved_object.namespace == namespace
                    || e.involved_object.namespace.is_empty())
        })
        .map(|e| EventLine {
            time: e.time,
            type_: e.type_,
            reason: e.reason.clone(),
            from: format!("controller {}", e.source),
            message: e.message.clone(),
        })
        .collect()
}

/// `describe pod` for the console, from what it already holds.
pub fn pod_description(
    world: &World,
    snapshot: &ClusterSnapshot,
    events: &[ControllerEvent],
    namespace: &str,
    name: &str,
) -> Option<String> {
    let events = events_of(events, namespace, "Pod", name);
    pod_text(world, snapshot, namespace, name, events)
}

/// `describe deployment` for the console, from what it already holds.
pub fn deployment_description(
    world: &World,
    events: &[ControllerEvent],
    namespace: &str,
    name: &str,
) -> Option<String> {
    let deployment = world
        .deployments
        .iter()
        .map(|s| &s.deployment)
        .find(|d| d.metadata.namespace == namespace && d.metadata.name == name)?;
    let events = events_of(events, namespace, "Deployment", name);
    Some(deployment_text(world, deployment, events))
}

fn pod_text(
    world: &World,
    snapshot: &ClusterSnapshot,
    namespace: &str,
    name: &str,
    mut events: Vec<EventLine>,
) -> Option<String> {
    let is_it =
        |r: &PodRecord| r.pod.metadata.namespace == namespace && r.pod.metadata.name == name;
    let placed = world.nodes.iter().find_map(|n| {
        n.pods
            .iter()
            .find(|r| is_it(r))
            .map(|r| (n.name.as_str(), r.clone()))
    });
    let pending = world
        .pending
        .iter()
        .find(|p| p.pod.metadata.namespace == namespace && p.pod.metadata.name == name);
    let (node, record) = match (placed, pending) {
        (Some((node, record)), _) => (node, record),
        (None, Some(p)) => (
            "",
            PodRecord {
                uid: String::new(),
                pod: p.pod.clone(),
                status: p.status.clone(),
            },
        ),
        (None, None) => return None,
    };
    // The agents' events for this pod.
    for view in &snapshot.nodes {
        for e in view.events.iter() {
            if e.namespace == namespace
                && e.pod == name
                && (record.uid.is_empty() || e.uid.is_empty() || e.uid == record.uid)
            {
                events.push(EventLine {
                    time: e.time,
                    type_: e.type_,
                    reason: e.reason.clone(),
                    from: format!("agent, {}", view.name),
                    message: e.message.clone(),
                });
            }
        }
    }
    let pod = &record.pod;
    let status = &record.status;
    let mut w = String::new();
    macro_rules! out {
        ($($arg:tt)*) => {{ let _ = writeln!(w, $($arg)*); }};
    }
    out!("Name:\t{}", escape(name));
    out!("Namespace:\t{}", escape(namespace));
    out!(
        "Node:\t{}",
        if node.is_empty() {
            NONE.to_string()
        } else {
            node.to_string()
        }
    );
    out!(
        "Start Time:\t{}",
        status
            .start_time
            .map_or_else(|| NONE.to_string(), describe_time)
    );
    multiline(
        &mut w,
        "Labels:",
        pod.metadata.labels.iter().map(|(k, v)| format!("{k}={v}")),
    );
    multiline(
        &mut w,
        "Annotations:",
        pod.metadata
            .annotations
            .iter()
            .filter(|(k, _)| k.as_str() != SCHEDULING_ANNOTATION)
            .map(|(k, v)| format!("{k}: {v}")),
    );
    out!("Status:\t{}", status.display_status());
    if !status.reason.is_empty() {
        out!("Reason:\t{}", status.reason);
    }
    out!(
        "IP:\t{}",
        status
            .ip(pod.spec.host_network)
            .map_or_else(|| NONE.into(), escape)
    );
    out!(
        "UID:\t{}",
        if record.uid.is_empty() {
            NONE
        } else {
            &record.uid
        }
    );
    if let Some(owner) = naming::owner(pod) {
        out!("Controlled By:\tDeployment/{owner}");
    }
    containers(&mut w, &pod.spec, Some(&record));
    out!("Conditions:");
    if status.conditions.is_empty() {
        out!("  {NONE}");
    } else {
        out!("  Type\tStatus\tReason");
        for c in &status.conditions {
            out!("  {}\t{:?}\t{}", c.type_, c.status, c.reason);
        }
    }
    multiline(
        &mut w,
        "Node-Selectors:",
        pod.spec
            .node_selector
            .iter()
            .map(|(k, v)| format!("{k}={v}")),
    );
    multiline(
        &mut w,
        "Tolerations:",
        pod.spec.tolerations.iter().map(|t| format!("{t:?}")),
    );
    let mut text = align(&w, DESCRIBE_PADDING);
    text.push_str("Scheduling:\n");
    match (pod.metadata.annotations.get(SCHEDULING_ANNOTATION), pending) {
        (Some(why), _) => indent(&mut text, why),
        (None, Some(_)) => {
            let message = status
                .conditions
                .iter()
                .find(|c| c.type_ == "PodScheduled")
                .map_or("waiting for the controller", |c| c.message.as_str());
            indent(&mut text, &format!("Pending: {message}"));
        }
        (None, None) => indent(
            &mut text,
            "placed directly on its node (spec.nodeName or an agent call), not by the scheduler",
        ),
    }
    text.push_str(&events_text(events));
    Some(text)
}

fn indent(text: &mut String, block: &str) {
    for line in block.lines() {
        let _ = writeln!(text, "  {line}");
    }
}

fn containers(w: &mut String, spec: &PodSpec, record: Option<&PodRecord>) {
    let _ = writeln!(w, "Containers:");
    for c in &spec.containers {
        let _ = writeln!(w, "  {}:", escape(&c.name));
        let _ = writeln!(w, "    Image:\t{}", escape(&c.image));
        if !c.command.is_empty() {
            let _ = writeln!(w, "    Command:\t{}", escape(&c.command.join(" ")));
        }
        if !c.args.is_empty() {
            let _ = writeln!(w, "    Args:\t{}", escape(&c.args.join(" ")));
        }
        let Some(status) = record.and_then(|r| {
            r.status
                .container_statuses
                .iter()
                .find(|s| s.name == c.name)
        }) else {
            continue;
        };
        let (state, detail) = state_text(&status.state);
        let _ = writeln!(w, "    State:\t{state}");
        if !detail.is_empty() {
            let _ = writeln!(w, "      {detail}");
        }
        if let Some(last) = &status.last_state {
            let (state, detail) = state_text(last);
            let _ = writeln!(w, "    Last State:\t{state}");
            if !detail.is_empty() {
                let _ = writeln!(w, "      {detail}");
            }
        }
        let _ = writeln!(
            w,
            "    Ready:\t{}",
            if status.ready { "True" } else { "False" }
        );
        let _ = writeln!(w, "    Restart Count:\t{}", status.restart_count);
    }
}

fn state_text(state: &ContainerState) -> (&'static str, String) {
    match state {
        ContainerState::Waiting(s) => ("Waiting", format!("Reason: {}", s.reason)),
        ContainerState::Running(s) => (
            "Running",
            s.started_at
                .map(|t| format!("Started: {}", describe_time(t)))
                .unwrap_or_default(),
        ),
        ContainerState::Terminated(s) => (
            "Terminated",
            format!("Reason: {}, Exit Code: {}", s.reason, s.exit_code),
        ),
    }
}

fn deployment_text(world: &World, d: &Deployment, events: Vec<EventLine>) -> String {
    let c = counts(world, d);
    let mut w = String::new();
    macro_rules! out {
        ($($arg:tt)*) => {{ let _ = writeln!(w, $($arg)*); }};
    }
    out!("Name:\t{}", escape(&d.metadata.name));
    out!("Namespace:\t{}", escape(&d.metadata.namespace));
    if let Some(created) = d
        .metadata
        .annotations
        .get(super::deployments::CREATED_ANNOTATION)
    {
        out!("CreationTimestamp:\t{created}");
    }
    multiline(
        &mut w,
        "Labels:",
        d.metadata.labels.iter().map(|(k, v)| format!("{k}={v}")),
    );
    let selector: Vec<String> = d
        .spec
        .selector
        .match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    out!("Selector:\t{}", selector.join(","));
    out!(
        "Replicas:\t{} desired | {} updated | {} total | {} available | {} unavailable",
        c.replicas,
        c.updated,
        c.current,
        c.available,
        c.current.saturating_sub(c.available)
    );
    match d.spec.strategy.strategy_type {
        StrategyType::Recreate => out!("StrategyType:\tRecreate"),
        StrategyType::RollingUpdate => {
            let (surge, unavailable) = rolling_bounds(d);
            out!("StrategyType:\tRollingUpdate");
            out!("RollingUpdateStrategy:\t{unavailable} max unavailable, {surge} max surge");
        }
    }
    out!("Pod Template:");
    multiline(
        &mut w,
        "  Labels:",
        d.spec
            .template
            .metadata
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}")),
    );
    containers(&mut w, &d.spec.template.spec, None);
    let hash = naming::template_hash(&d.spec.template);
    let mut revisions: Vec<_> = world
        .revisions
        .iter()
        .filter(|r| r.namespace == d.metadata.namespace && r.deployment == d.metadata.name)
        .collect();
    revisions.sort_by_key(|r| r.revision);
    out!("Revisions:");
    for r in &revisions {
        let mark = if r.hash == hash { "  (current)" } else { "" };
        out!("  {}\t{}-{}{mark}", r.revision, d.metadata.name, r.hash);
    }
    out!("Pods:");
    let mut any = false;
    for n in &world.nodes {
        for r in n.pods.iter().filter(|r| {
            r.pod.metadata.namespace == d.metadata.namespace
                && naming::owner(&r.pod) == Some(d.metadata.name.as_str())
        }) {
            any = true;
            out!(
                "  {}\t{}\t{}",
                r.pod.metadata.name,
                n.name,
                r.status.display_status()
            );
        }
    }
    for p in world.pending.iter().filter(|p| {
        p.pod.metadata.namespace == d.metadata.namespace
            && naming::owner(&p.pod) == Some(d.metadata.name.as_str())
    }) {
        any = true;
        out!("  {}\t{NONE}\tPending", p.pod.metadata.name);
    }
    if !any {
        out!("  {NONE}");
    }
    let mut text = align(&w, DESCRIBE_PADDING);
    text.push_str(&events_text(events));
    text
}

/// kubectl's Events table, oldest first.
fn events_text(mut events: Vec<EventLine>) -> String {
    if events.is_empty() {
        return "Events:\t<none>\n".replace('\t', "  ");
    }
    events.sort_by_key(|e| e.time);
    let now = Utc::now();
    let mut w = String::from(
        "Events:\n  Type\tReason\tAge\tFrom\tMessage\n  ----\t------\t----\t----\t-------\n",
    );
    for e in events {
        let age = human_duration(now - e.time);
        let type_ = match e.type_ {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        };
        let message = e.message.lines().next().unwrap_or_default().to_string();
        let _ = writeln!(
            w,
            "  {type_}\t{}\t{age}\t{}\t{}",
            e.reason,
            e.from,
            escape(&message)
        );
    }
    align(&w, 2)
}
