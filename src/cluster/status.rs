//! The words a node's health is told in: its status (`Ready`, `NotReady`,
//! `Unreachable`), its conditions as `kubectl describe node` lists them, the
//! state of its SSH connection, and the kinds of failure a user can act on.
//! The rules that choose among them are in [`super::node`].

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use crate::api::status::ConditionStatus;

/// A node's status, the STATUS column of `flotilla get nodes`. It is read off
/// the `Ready` condition, as kubectl reads it:
///
/// * **Ready** (`Ready` is `True`): the agent answered the handshake over a
///   live SSH connection and a new metrics sample arrived within the stale
///   limit ([`super::StateOptions::stale_after`], 10 s by default).
/// * **NotReady** (`Ready` is `False`): the host is reachable over SSH but the
///   agent is not posting usable figures: it is being installed or started
///   (`AgentStarting`), it answered but no sample has arrived yet
///   (`FiguresPending`), its last sample is older than the stale limit
///   (`FiguresStale`), or it failed (`AgentFailed`, also while the session
///   retries after such a failure).
/// * **Unreachable** (`Ready` is `Unknown`): there is no SSH connection: none
///   attempted yet (`NodeStatusNeverUpdated`), the first attempt in progress
///   (`Connecting`), or the last attempt or connection failed, with the
///   failure's kind as the reason ([`FailureKind::reason`]) and its error text
///   as the message, kept while the session retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum NodeStatus {
    Ready,
    NotReady,
    Unreachable,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Ready => "Ready",
            NodeStatus::NotReady => "NotReady",
            NodeStatus::Unreachable => "Unreachable",
        }
    }

    /// The status a `Ready` condition status stands for.
    pub fn from_ready(ready: ConditionStatus) -> Self {
        match ready {
            ConditionStatus::True => NodeStatus::Ready,
            ConditionStatus::False => NodeStatus::NotReady,
            ConditionStatus::Unknown => NodeStatus::Unreachable,
        }
    }
}

impl fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a node's session failed, sorted by what the user does about it. The
/// session maps its errors here; for `crate::ssh::SshError`: `Unreachable` and
/// `Disconnected` → [`FailureKind::Unreachable`] (or [`FailureKind::Refused`]
/// when the I/O error is `ConnectionRefused`), `Timeout` → `Timeout`,
/// `HostKeyUnknown` → `HostKeyUnknown`, `HostKeyChanged`, `HostKeyPinMismatch`
/// and `HostKeyRevoked` → `HostKeyMismatch`, `AuthFailed` and `KeyFile` →
/// `AuthFailed`; bootstrap and agent protocol failures → `AgentFailed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum FailureKind {
    /// No route, host down, connection lost: check the host and the network.
    Unreachable,
    /// Connection refused: the host is up but nothing listens on the SSH port.
    Refused,
    /// No answer in time (TCP connect, SSH handshake, keepalives).
    Timeout,
    /// The host's key is in no known_hosts and not pinned: trust it first.
    HostKeyUnknown,
    /// The host's key differs from the recorded or pinned one: refused.
    HostKeyMismatch,
    /// The host refused every key offered.
    AuthFailed,
    /// SSH works, but the agent could not be installed, started or spoken to.
    AgentFailed,
}

impl FailureKind {
    /// The condition reason, one CamelCase word as Kubernetes writes reasons.
    pub fn reason(self) -> &'static str {
        match self {
            FailureKind::Unreachable => "HostUnreachable",
            FailureKind::Refused => "ConnectionRefused",
            FailureKind::Timeout => "ConnectionTimeout",
            FailureKind::HostKeyUnknown => "HostKeyUnknown",
            FailureKind::HostKeyMismatch => "HostKeyMismatch",
            FailureKind::AuthFailed => "AuthFailed",
            FailureKind::AgentFailed => "AgentFailed",
        }
    }

    /// Whether SSH reached the host, so the node counts as NotReady rather
    /// than Unreachable.
    pub fn host_reachable(self) -> bool {
        self == FailureKind::AgentFailed
    }

    /// Whether only the operator can fix it (retrying alone will not): a
    /// host key to trust or a key to authorise.
    pub fn needs_operator(self) -> bool {
        matches!(
            self,
            FailureKind::HostKeyUnknown | FailureKind::HostKeyMismatch | FailureKind::AuthFailed
        )
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// A failed attempt or a lost connection: its kind, the error text, when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub kind: FailureKind,
    /// The error as the session printed it (it says what to do next).
    pub message: String,
    /// Set by the state when it records the failure.
    pub at: DateTime<Utc>,
    /// When the session will try again, if it will.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
}

/// Where a node's session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Phase {
    /// Nothing attempted yet.
    Idle,
    /// An SSH connection attempt is under way.
    Connecting,
    /// SSH is up; the agent is being checked, uploaded or started.
    Bootstrapping,
    /// The agent answered hello and its facts: the node is live.
    Connected,
    /// The last attempt or connection failed (see `last_failure`).
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "Idle",
            Phase::Connecting => "Connecting",
            Phase::Bootstrapping => "Bootstrapping",
            Phase::Connected => "Connected",
            Phase::Failed => "Failed",
        }
    }
}

/// The session's connection as the state last heard of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    pub phase: Phase,
    /// When the current phase began.
    pub since: Option<DateTime<Utc>>,
    /// Attempts since the last successful connection (1 during the first).
    pub attempt: u32,
    /// When the agent last answered the handshake.
    pub connected_at: Option<DateTime<Utc>>,
    /// The most recent failure, kept after a reconnect for `describe`.
    pub last_failure: Option<Failure>,
}

/// The node conditions kubelet reports, in `kubectl describe node`'s order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum NodeConditionType {
    MemoryPressure,
    DiskPressure,
    #[serde(rename = "PIDPressure")]
    PidPressure,
    Ready,
}

impl NodeConditionType {
    pub const ALL: [NodeConditionType; 4] = [
        NodeConditionType::MemoryPressure,
        NodeConditionType::DiskPressure,
        NodeConditionType::PidPressure,
        NodeConditionType::Ready,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeConditionType::MemoryPressure => "MemoryPressure",
            NodeConditionType::DiskPressure => "DiskPressure",
            NodeConditionType::PidPressure => "PIDPressure",
            NodeConditionType::Ready => "Ready",
        }
    }
}

impl fmt::Display for NodeConditionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One condition, as Kubernetes' `NodeCondition`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeCondition {
    #[serde(rename = "type")]
    pub type_: NodeConditionType,
    pub status: ConditionStatus,
    pub reason: String,
    pub message: String,
    /// When the agent was last heard from.
    pub last_heartbeat_time: Option<DateTime<Utc>>,
    /// When `status` last changed (not reason or message, as in Kubernetes).
    pub last_transition_time: DateTime<Utc>,
}
