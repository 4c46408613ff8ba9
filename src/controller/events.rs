//! The controller's events (Scheduled, FailedScheduling, Killing, Fenced,
//! NodeLost, …), kept per object in the replicated store as Kubernetes keeps
//! Event objects, so `describe` on any machine shows them. The agents keep
//! their own (Pulled, Started, BackOff, …); readers merge the two.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::world::KIND_EVENT;
use crate::agent::protocol::messages::EventType;

/// What an event is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvolvedObject {
    pub kind: String,
    #[serde(default)]
    pub namespace: String,
    pub name: String,
}

impl InvolvedObject {
    pub fn pod(namespace: &str, name: &str) -> Self {
        Self::new("Pod", namespace, name)
    }

    pub fn deployment(namespace: &str, name: &str) -> Self {
        Self::new("Deployment", namespace, name)
    }

    pub fn node(name: &str) -> Self {
        Self::new("Node", "", name)
    }

    fn new(kind: &str, namespace: &str, name: &str) -> Self {
        InvolvedObject {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

/// One event, as stored (`Event/<namespace>/<object>.<time in hex>`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ControllerEvent {
    pub involved_object: InvolvedObject,
    #[serde(rename = "type")]
    pub type_: EventType,
    pub reason: String,
    pub message: String,
    pub time: DateTime<Utc>,
    /// The holder id of the controller that recorded it.
    pub source: String,
}

impl ControllerEvent {
    /// The store key: unique per object and time (nanoseconds).
    pub fn store_name(&self) -> String {
        let nanos = self.time.timestamp_nanos_opt().unwrap_or_default();
        format!("{}.{nanos:x}", self.involved_object.name)
    }

    pub const KIND: &str = KIND_EVENT;
}
