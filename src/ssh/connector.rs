//! The product's [`Connector`]: reaches a node the way the console and the
//! CLI do — SSH to the node's target (cluster file, then `~/.ssh/config`),
//! host key checked, authenticated, then the agent bootstrapped and its
//! protocol spoken over a channel of that same connection — and sorts every
//! failure into a kind the operator can act on.

use std::io::ErrorKind;
use std::sync::Arc;

use super::bootstrap::{AgentBinary, BootstrapError, BootstrapOptions, bootstrap};
use super::session::{Connected, Connector, Failure, FailureKind};
use super::{SshError, SshTarget, connect};

/// One node's way in.
pub struct SshConnector {
    pub node: String,
    pub target: SshTarget,
    pub binary: Arc<AgentBinary>,
    pub options: BootstrapOptions,
}

impl Connector for SshConnector {
    async fn connect(&self) -> Result<Connected, Failure> {
        let session = Arc::new(
            connect(&self.target)
                .await
                .map_err(|e| Failure::new(ssh_failure_kind(&e), e.to_string()))?,
        );
        let booted = bootstrap(&session, &self.binary, &self.options)
            .await
            .map_err(|e| Failure::new(bootstrap_failure_kind(&e), e.to_string()))?;
        tracing::info!(
            node = %self.node,
            uploaded = booted.report.uploaded,
            started = booted.report.started,
            restarted = booted.report.restarted,
            elapsed = ?booted.report.elapsed,
            "agent ready"
        );
        Ok(Connected {
            client: booted.client,
            // The agent's channel rides on this connection.
            keep_alive: Box::new(session.clone()),
            ssh: Some(session),
            uploaded: booted.report.uploaded,
            started: booted.report.started || booted.report.restarted,
        })
    }
}

/// What the operator can do about an SSH error.
pub fn ssh_failure_kind(error: &SshError) -> FailureKind {
    match error {
        SshError::Unreachable { source, .. } if source.kind() == ErrorKind::ConnectionRefused => {
            FailureKind::Refused
        }
        SshError::Unreachable { .. } | SshError::Disconnected { .. } | SshError::Protocol(_) => {
            FailureKind::Unreachable
        }
        SshError::Timeout { .. } => FailureKind::Timeout,
        SshError::HostKeyUnknown { .. } | SshError::KnownHosts(_) => FailureKind::HostKeyUnknown,
        SshError::HostKeyChanged { .. }
        | SshError::HostKeyPinMismatch { .. }
        | SshError::HostKeyRevoked { .. } => FailureKind::HostKeyMismatch,
        SshError::AuthFailed { .. } | SshError::KeyFile { .. } => FailureKind::AuthFailed,
        SshError::Channel { .. } => FailureKind::AgentFailed,
    }
}

fn bootstrap_failure_kind(error: &BootstrapError) -> FailureKind {
    match error {
        BootstrapError::Ssh { source, .. } => match ssh_failure_kind(source) {
            // A command that could not run on an authenticated connection
            // is the agent's side of things.
            FailureKind::AgentFailed => FailureKind::AgentFailed,
            kind => kind,
        },
        _ => FailureKind::AgentFailed,
    }
}
