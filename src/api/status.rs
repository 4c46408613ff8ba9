//! Pod and container statuses as Kubernetes names them (`PodStatus`,
//! `ContainerStatus`, `ContainerState`), so the agent, the controller and
//! `-o json` all speak kubectl's words. These live in `api` rather than in the
//! agent protocol because the controller, the TUI and the CLI read them too.
//!
//! Unlike the spec types, these do not deny unknown fields: statuses flow from
//! an agent to a console, and a console must keep reading an agent that has
//! gained a field (the protocol's rule for additive changes).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

/// Kubernetes' pod phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PodPhase {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

impl PodPhase {
    /// Whether no container of the pod will run again.
    pub fn is_terminal(self) -> bool {
        matches!(self, PodPhase::Succeeded | PodPhase::Failed)
    }
}

impl std::fmt::Display for PodPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PodPhase::Pending => "Pending",
            PodPhase::Running => "Running",
            PodPhase::Succeeded => "Succeeded",
            PodPhase::Failed => "Failed",
            PodPhase::Unknown => "Unknown",
        })
    }
}

/// `True`, `False` or `Unknown`, as Kubernetes writes a condition's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// One of a pod's conditions (`PodScheduled`, `Initialized`, `ContainersReady`,
/// `Ready`). The type is a string, as in Kubernetes, so a new one is additive.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<DateTime<Utc>>,
}

/// What the agent knows of a pod it runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(default)]
    pub phase: PodPhase,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<PodCondition>,
    /// Why the pod is in this phase, one CamelCase word (e.g. `Evicted`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
    #[serde(rename = "podIP", default, skip_serializing_if = "String::is_empty")]
    pub pod_ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub container_statuses: Vec<ContainerStatus>,
}

/// One container of a pod, as Kubernetes reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    pub name: String,
    pub state: ContainerState,
    /// The previous run's end, once the container has restarted. Kubernetes
    /// writes `{}` for none; both that and an absent field read as `None`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_state_is_none"
    )]
    pub last_state: Option<ContainerState>,
    #[serde(default)]
    pub ready: bool,
    #[serde(default)]
    pub restart_count: i32,
    #[serde(default)]
    pub image: String,
    #[serde(rename = "imageID", default, skip_serializing_if = "String::is_empty")]
    pub image_id: String,
    #[serde(
        rename = "containerID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub container_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<bool>,
}

/// Exactly one of waiting, running or terminated, serialized as Kubernetes does:
/// `{"waiting": {...}}`, `{"running": {...}}` or `{"terminated": {...}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ContainerState {
    Waiting(ContainerStateWaiting),
    Running(ContainerStateRunning),
    Terminated(ContainerStateTerminated),
}

impl ContainerState {
    /// The reason kubectl shows in its STATUS column for this state, if any.
    pub fn reason(&self) -> Option<&str> {
        let reason = match self {
            ContainerState::Waiting(w) => &w.reason,
            ContainerState::Running(_) => return None,
            ContainerState::Terminated(t) => &t.reason,
        };
        (!reason.is_empty()).then_some(reason.as_str())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStateWaiting {
    /// `ContainerCreating`, `ErrImagePull`, `ImagePullBackOff`, `CrashLoopBackOff`, …
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStateRunning {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStateTerminated {
    pub exit_code: i32,
    /// The signal that ended the process, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// `Completed`, `Error`, `OOMKilled`, …
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(
        rename = "containerID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub container_id: String,
}

/// Reads Kubernetes' `lastState: {}` (no previous run) as `None`.
fn empty_state_is_none<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<ContainerState>, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Loose {
        waiting: Option<ContainerStateWaiting>,
        running: Option<ContainerStateRunning>,
        terminated: Option<ContainerStateTerminated>,
    }
    let Some(loose) = Option::<Loose>::deserialize(deserializer)? else {
        return Ok(None);
    };
    match (loose.waiting, loose.running, loose.terminated) {
        (None, None, None) => Ok(None),
        (Some(w), None, None) => Ok(Some(ContainerState::Waiting(w))),
        (None, Some(r), None) => Ok(Some(ContainerState::Running(r))),
        (None, None, Some(t)) => Ok(Some(ContainerState::Terminated(t))),
        _ => Err(serde::de::Error::custom(
            "a container state has at most one of waiting, running and terminated",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn kubectl_json_reads_and_writes_back() {
        let text = r#"{
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-27T10:00:00Z"}],
            "hostIP": "10.77.0.11",
            "podIP": "10.88.0.4",
            "startTime": "2026-11-27T10:00:00Z",
            "containerStatuses": [{
                "name": "web",
                "state": {"running": {"startedAt": "2026-11-27T10:00:01Z"}},
                "lastState": {"terminated": {"exitCode": 137, "signal": 9, "reason": "OOMKilled",
                    "startedAt": "2026-11-27T09:59:00Z", "finishedAt": "2026-11-27T10:00:00Z"}},
                "ready": true,
                "restartCount": 1,
                "image": "busybox:1.36",
                "imageID": "sha256:abc",
                "containerID": "flotilla://0123",
                "started": true
            }]
        }"#;
        let status: PodStatus = serde_json::from_str(text).unwrap();
        assert_eq!(status.phase, PodPhase::Running);
        assert_eq!(status.host_ip, "10.77.0.11");
        let c = &status.container_statuses[0];
        assert_eq!(
            c.state,
            ContainerState::Running(ContainerStateRunning {
                started_at: Some(ts("2026-11-27T10:00:01Z"))
            })
        );
        let Some(ContainerState::Terminated(t)) = &c.last_state else {
            panic!("last state: {:?}", c.last_state)
        };
        assert_eq!(
            (t.exit_code, t.signal, t.reason.as_str()),
            (137, Some(9), "OOMKilled")
        );
        let again: PodStatus =
            serde_json::from_str(&serde_json::to_string(&status).unwrap()).unwrap();
        assert_eq!(again, status);
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["containerStatuses"][0]["imageID"], "sha256:abc");
        assert_eq!(json["startTime"], "2026-11-27T10:00:00Z");
    }

    #[test]
    fn empty_last_state_is_none_and_two_states_are_refused() {
        let c: ContainerStatus = serde_json::from_str(
            r#"{"name":"a","state":{"waiting":{"reason":"ContainerCreating"}},"lastState":{}}"#,
        )
        .unwrap();
        assert_eq!(c.last_state, None);
        assert_eq!(c.state.reason(), Some("ContainerCreating"));
        let err = serde_json::from_str::<ContainerStatus>(
            r#"{"name":"a","state":{"running":{}},"lastState":{"running":{},"waiting":{}}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("at most one"), "{err}");
    }

    #[test]
    fn unknown_fields_from_a_newer_agent_are_ignored() {
        let s: PodStatus = serde_json::from_str(
            r#"{"phase":"Failed","nominatedNodeName":"x","qosClass":"Burstable"}"#,
        )
        .unwrap();
        assert_eq!(s.phase, PodPhase::Failed);
        assert!(s.phase.is_terminal());
    }
}
