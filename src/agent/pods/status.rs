//! A pod's status as Kubernetes reports it, derived from its record and its
//! shims' state files: each container Waiting (with the reason), Running or
//! Terminated, its restarts and last termination; the pod's phase by
//! Kubernetes' rules.

use std::collections::BTreeMap;

use super::record::{Desired, PodRecord};
use super::shim::InstanceState;
use crate::api::RestartPolicy;
use crate::api::status::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, PodPhase, PodStatus,
};

pub fn pod_status(record: &PodRecord, states: &BTreeMap<String, InstanceState>) -> PodStatus {
    let mut statuses = Vec::new();
    for container in &record.pod.spec.containers {
        let crec = record
            .containers
            .get(&container.name)
            .cloned()
            .unwrap_or_default();
        let state = states.get(&container.name);
        // Running once the container's process exists; before that its shim
        // is still creating it (ContainerCreating below).
        let running = state.is_some_and(|s| s.exit.is_none() && s.pid.is_some() && s.shim_alive());
        let container_state = if running {
            ContainerState::Running(ContainerStateRunning {
                started_at: state.and_then(|s| s.started_at),
            })
        } else if let Some(reason) = &crec.waiting_reason {
            ContainerState::Waiting(ContainerStateWaiting {
                reason: reason.clone(),
                message: crec.waiting_message.clone().unwrap_or_default(),
            })
        } else if let Some(exit) = &crec.handled_exit {
            ContainerState::Terminated(exit.clone())
        } else if let Some(exit) = state.and_then(|s| s.exit.as_ref()) {
            ContainerState::Terminated(ContainerStateTerminated {
                exit_code: exit.exit_code,
                signal: exit.signal,
                reason: exit.reason.clone(),
                message: exit.message.clone(),
                started_at: state.and_then(|s| s.started_at),
                finished_at: Some(exit.finished_at),
                container_id: String::new(),
            })
        } else {
            ContainerState::Waiting(ContainerStateWaiting {
                reason: "ContainerCreating".into(),
                message: String::new(),
            })
        };
        statuses.push(ContainerStatus {
            name: container.name.clone(),
            ready: matches!(container_state, ContainerState::Running(_)),
            started: Some(matches!(container_state, ContainerState::Running(_))),
            state: container_state,
            last_state: crec
                .last_termination
                .clone()
                .map(ContainerState::Terminated),
            restart_count: crec.restart_count as i32,
            image: container.image.clone(),
            image_id: crec.image_id.clone(),
            container_id: crec
                .instance
                .map(|n| format!("flotilla://{}-{}-{n}", record.uid, container.name))
                .unwrap_or_default(),
        });
    }
    PodStatus {
        phase: phase(record, &statuses),
        reason: if record.paused {
            "Paused".into()
        } else {
            String::new()
        },
        start_time: Some(record.created_at),
        pod_ip: record
            .network
            .as_ref()
            .map(|n| n.ip.clone())
            .unwrap_or_default(),
        container_statuses: statuses,
        ..PodStatus::default()
    }
}

/// Kubernetes' phase: Succeeded or Failed once every container has ended for
/// good, Running while any runs or will restart, Pending before that.
fn phase(record: &PodRecord, statuses: &[ContainerStatus]) -> PodPhase {
    let will_restart =
        |status: &ContainerStatus| match (&status.state, record.pod.spec.restart_policy) {
            (_, _) if record.desired == Desired::Stopped => false,
            (ContainerState::Terminated(_), RestartPolicy::Never) => false,
            (ContainerState::Terminated(t), RestartPolicy::OnFailure) => t.exit_code != 0,
            (ContainerState::Terminated(_), RestartPolicy::Always) => true,
            _ => true,
        };
    let ended_for_good: Vec<&ContainerStateTerminated> = statuses
        .iter()
        .filter(|s| !will_restart(s))
        .filter_map(|s| match &s.state {
            ContainerState::Terminated(t) => Some(t),
            _ => None,
        })
        .collect();
    if !statuses.is_empty() && ended_for_good.len() == statuses.len() {
        return if ended_for_good.iter().all(|t| t.exit_code == 0) {
            PodPhase::Succeeded
        } else {
            PodPhase::Failed
        };
    }
    let started = statuses.iter().any(|s| {
        matches!(s.state, ContainerState::Running(_))
            || s.restart_count > 0
            || matches!(s.state, ContainerState::Terminated(_))
    });
    if started {
        PodPhase::Running
    } else {
        PodPhase::Pending
    }
}
