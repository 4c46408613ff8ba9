//! SSH as OpenSSH users expect it: host-key verification against known_hosts
//! (or a fingerprint pinned in the cluster file), authentication through
//! ssh-agent and key files, and command execution over one multiplexed
//! connection per node.
//!
//! `client` owns the transport; [`config`] reads `~/.ssh/config`,
//! [`target`] turns a cluster-file node into an [`SshTarget`] as `ssh`
//! would, and [`bootstrap`] puts the right agent on a host and connects to
//! it. [`session`] keeps one node connected (with [`reconnect`]'s back-off)
//! through a [`connector::SshConnector`]; none of them reach into russh
//! themselves.

pub mod bootstrap;
mod client;
pub mod cni_plugins;
pub mod config;
pub mod connector;
pub mod digest_cache;
pub mod fleet;
pub mod known_hosts;
mod quick_ack;
pub mod reconnect;
pub mod session;
pub mod target;

use std::path::PathBuf;
use std::time::Duration;

pub use client::{
    ExecOutput, ExitKind, Interactive, MAX_CAPTURED_OUTPUT, NoPrompt, Output, PASSPHRASE_ATTEMPTS,
    PassphraseFuture, PassphrasePrompt, PassphraseRequest, PtyRequest, SshSession, SshTarget,
    connect, connect_with, scan_host_key,
};
pub use config::{HostSettings, LocalUser, SshConfig, SshConfigError};
pub use known_hosts::{HostKeyDecision, KnownHostsError, RecordedKey};
pub use target::{TargetContext, node_target};

/// What went wrong reaching, verifying, authenticating to or using a host,
/// sorted by what the user can do about it.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error(
        "cannot reach {address}:{port}: {source}; check that the host is up, the address and port are right, and sshd is running"
    )]
    Unreachable {
        address: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },

    #[error("{address}:{port} did not answer within {}s during {stage}; check that the host is up and no firewall drops SSH", after.as_secs_f32())]
    Timeout {
        address: String,
        port: u16,
        /// `TCP connect` or `SSH handshake`.
        stage: &'static str,
        after: Duration,
    },

    #[error(
        "host key of {node_address}:{port} is unknown ({key_type} {fingerprint}, not in {}); refused: check that fingerprint on the host (`ssh-keygen -lf /etc/ssh/ssh_host_{}_key.pub`), then run `flotilla node trust <node>` or pin it as the node's host_key in the cluster file",
        paths(known_hosts_files),
        key_type_file_stem(key_type)
    )]
    HostKeyUnknown {
        node_address: String,
        port: u16,
        key_type: String,
        fingerprint: String,
        known_hosts_files: Vec<PathBuf>,
    },

    #[error(
        "HOST KEY CHANGED for {address}:{port}: it offered {offered}, but {}; refused (possible man-in-the-middle); only if the host was really reinstalled, delete the recorded line and run `flotilla node trust <node>`",
        recorded_keys(recorded)
    )]
    HostKeyChanged {
        address: String,
        port: u16,
        offered: String,
        recorded: Vec<RecordedKey>,
    },

    #[error(
        "HOST KEY MISMATCH for {address}:{port}: it offered {offered}, but the cluster file pins {pinned}; refused (possible man-in-the-middle); if the host was really reinstalled, update the pinned fingerprint"
    )]
    HostKeyPinMismatch {
        address: String,
        port: u16,
        offered: String,
        pinned: String,
    },

    #[error("host key {fingerprint} of {address}:{port} is marked @revoked at {}:{line}; refused: the host must get a new key before flotilla connects", file.display())]
    HostKeyRevoked {
        address: String,
        port: u16,
        fingerprint: String,
        file: PathBuf,
        line: usize,
    },

    #[error(
        "{user}@{address}:{port} refused every key ({}); add one of them to the host's authorized_keys or set the node's identity in the cluster file",
        tried_keys(tried)
    )]
    AuthFailed {
        user: String,
        address: String,
        port: u16,
        /// Each key offered, e.g. `agent key me@laptop (SHA256:…)` or a path.
        tried: Vec<String>,
    },

    #[error("key file {}: {reason}", path.display())]
    KeyFile { path: PathBuf, reason: String },

    #[error(transparent)]
    KnownHosts(#[from] KnownHostsError),

    #[error(
        "connection to {address}:{port} was lost ({reason}); check that the host is up, then retry"
    )]
    Disconnected {
        address: String,
        port: u16,
        reason: String,
    },

    #[error(
        "SSH protocol error: {0}; retry, and if it persists compare with `ssh -v` to the same host"
    )]
    Protocol(#[from] russh::Error),

    #[error("command `{command}` on {address}:{port}: {source}")]
    Channel {
        address: String,
        port: u16,
        /// The command, shortened for display.
        command: String,
        #[source]
        source: ChannelError,
    },
}

/// Why a command on an open connection did not give a result.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("the host refused to open a session channel ({0}); check sshd's MaxSessions")]
    OpenRefused(String),
    #[error("the host refused to run it; check sshd's ForceCommand/PermitUserRC settings")]
    ExecRefused,
    #[error("the channel closed without an exit status or signal; retry")]
    NoExitStatus,
    #[error("its output passed {limit} bytes; redirect large output to a file on the host instead")]
    OutputTooLarge { limit: usize },
    #[error("reading the data for its stdin failed ({0}); the command was stopped")]
    StdinRead(String),
}

fn paths(files: &[PathBuf]) -> String {
    if files.is_empty() {
        return "any known_hosts file: none configured".into();
    }
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `ssh_host_<stem>_key` naming sshd uses for its key files.
fn key_type_file_stem(key_type: &str) -> &str {
    match key_type {
        "ssh-ed25519" => "ed25519",
        "ssh-rsa" => "rsa",
        t if t.starts_with("ecdsa-") => "ecdsa",
        _ => "*",
    }
}

fn recorded_keys(recorded: &[RecordedKey]) -> String {
    let list = recorded
        .iter()
        .map(|r| {
            format!(
                "{}:{} records {} {}",
                r.file.display(),
                r.line,
                r.key_type,
                r.fingerprint
            )
        })
        .collect::<Vec<_>>();
    list.join(" and ")
}

fn tried_keys(tried: &[String]) -> String {
    if tried.is_empty() {
        "no key was offered: SSH_AUTH_SOCK is unset or the agent holds no keys, and no identity file is configured".into()
    } else {
        format!("tried {}", tried.join(", "))
    }
}
