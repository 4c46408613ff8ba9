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

impl PodStatus {
    /// kubectl's STATUS column (its `printPod`): the pod's reason or phase,
    /// overridden by the last container (in spec order) that waits or ended
    /// with a reason; an unexplained end reads `Signal:N` or `ExitCode:N`. A
    /// pod shown `Completed` while some container still runs reads `Running`
    /// when the pod is Ready, else `NotReady`.
    pub fn display_status(&self) -> String {
        let mut reason = if self.reason.is_empty() {
            self.phase.to_string()
        } else {
            self.reason.clone()
        };
        let mut has_running = false;
        for container in self.container_statuses.iter().rev() {
            match &container.state {
                ContainerState::Waiting(w) if !w.reason.is_empty() => reason = w.reason.clone(),
                ContainerState::Terminated(t) if !t.reason.is_empty() => reason = t.reason.clone(),
                ContainerState::Terminated(t) => {
                    reason = match t.signal {
                        Some(signal) if signal != 0 => format!("Signal:{signal}"),
                        _ => format!("ExitCode:{}", t.exit_code),
                    }
                }
                ContainerState::Running(_) if container.ready => has_running = true,
                _ => {}
            }
        }
        if reason == "Completed" && has_running {
            let ready = self
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == ConditionStatus::True);
            reason = if ready { "Running" } else { "NotReady" }.into();
        }
        reason
    }

    /// Containers that are ready and running (kubectl's READY numerator).
    pub fn ready_containers(&self) -> usize {
        self.container_statuses
            .iter()
            .filter(|c| c.ready && matches!(c.state, ContainerState::Running(_)))
            .count()
    }

    /// The sum of the containers' restarts.
    pub fn restarts(&self) -> i64 {
        self.container_statuses
            .iter()
            .map(|c| i64::from(c.restart_count))
            .sum()
    }

    /// When the most recent restart's previous run ended (kubectl's
    /// `RESTARTS` shows `3 (2m ago)` from it).
    pub fn last_restart(&self) -> Option<DateTime<Utc>> {
        self.container_statuses
            .iter()
            .filter(|c| c.restart_count > 0)
            .filter_map(|c| match &c.last_state {
                Some(ContainerState::Terminated(t)) => t.finished_at,
                _ => None,
            })
            .max()
    }

    /// The address the pod answers on, as kubectl's IP column shows it:
    /// `podIP`, or for a pod on its node's network (`hostNetwork`), which
    /// gets no address of its own, the node's (`hostIP`; Kubernetes copies
    /// it into `podIP`, flotilla's agents leave `podIP` empty). `None` when
    /// the status carries neither.
    pub fn ip(&self, host_network: bool) -> Option<&str> {
        if !self.pod_ip.is_empty() {
            Some(&self.pod_ip)
        } else if host_network && !self.host_ip.is_empty() {
            Some(&self.host_ip)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn container(json: &str) -> ContainerStatus {
        serde_json::from_str(json).unwrap()
    }

    fn pod(phase: PodPhase, containers: &[&str]) -> PodStatus {
        PodStatus {
            phase,
            container_statuses: containers.iter().map(|c| container(c)).collect(),
            ..PodStatus::default()
        }
    }

    #[test]
    fn status_column_reads_as_kubectls() {
        let running = r#"{"name":"a","state":{"running":{}},"ready":true,"restartCount":2,
            "lastState":{"terminated":{"exitCode":1,"reason":"Error","finishedAt":"2026-11-27T10:00:00Z"}}}"#;
        let backoff = r#"{"name":"b","state":{"waiting":{"reason":"CrashLoopBackOff"}},"restartCount":3,
            "lastState":{"terminated":{"exitCode":1,"finishedAt":"2026-11-27T10:05:00Z"}}}"#;
        let completed =
            r#"{"name":"c","state":{"terminated":{"exitCode":0,"reason":"Completed"}}}"#;
        let killed = r#"{"name":"d","state":{"terminated":{"exitCode":137,"signal":9}}}"#;
        let exited = r#"{"name":"e","state":{"terminated":{"exitCode":3}}}"#;

        assert_eq!(pod(PodPhase::Pending, &[]).display_status(), "Pending");
        let p = pod(PodPhase::Running, &[running]);
        assert_eq!(p.display_status(), "Running");
        assert_eq!(p.ready_containers(), 1);
        // The last container with a reason wins, as kubectl walks them backwards.
        let p = pod(PodPhase::Running, &[backoff, running]);
        assert_eq!(p.display_status(), "CrashLoopBackOff");
        assert_eq!((p.ready_containers(), p.restarts()), (1, 5));
        assert_eq!(p.last_restart(), Some(ts("2026-11-27T10:05:00Z")));
        assert_eq!(
            pod(PodPhase::Succeeded, &[completed]).display_status(),
            "Completed"
        );
        assert_eq!(
            pod(PodPhase::Failed, &[killed]).display_status(),
            "Signal:9"
        );
        assert_eq!(
            pod(PodPhase::Failed, &[exited]).display_status(),
            "ExitCode:3"
        );
        // A finished sidecar beside a running container.
        let mut p = pod(PodPhase::Running, &[completed, running]);
        assert_eq!(p.display_status(), "NotReady");
        p.conditions.push(PodCondition {
            type_: "Ready".into(),
            status: ConditionStatus::True,
            reason: String::new(),
            message: String::new(),
            last_transition_time: None,
        });
        assert_eq!(p.display_status(), "Running");
        // The pod's own reason stands when no container has one.
        let mut p = pod(PodPhase::Failed, &[]);
        p.reason = "Evicted".into();
        assert_eq!(p.display_status(), "Evicted");
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

    #[test]
    fn the_ip_is_the_pods_own_or_under_host_network_the_nodes() {
        let status = |pod_ip: &str, host_ip: &str| PodStatus {
            pod_ip: pod_ip.into(),
            host_ip: host_ip.into(),
            ..PodStatus::default()
        };
        assert_eq!(
            status("10.88.1.7", "10.77.0.11").ip(false),
            Some("10.88.1.7")
        );
        assert_eq!(
            status("10.88.1.7", "10.77.0.11").ip(true),
            Some("10.88.1.7")
        );
        // A pod on its own network has no address until it is attached,
        // whatever its node's is.
        assert_eq!(status("", "10.77.0.11").ip(false), None);
        assert_eq!(status("", "10.77.0.11").ip(true), Some("10.77.0.11"));
        assert_eq!(status("", "").ip(true), None);
    }
}
