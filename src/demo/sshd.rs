//! `flotilla demo sshd stop|start NODE`: stops a node's OpenSSH server and
//! cuts its connections, as when a host's sshd is stopped, or starts it
//! again; for watching flotilla report a host it cannot reach and then see
//! it come back (and for the tests that check it does).
//!
//! The node's init owns sshd and does the stopping and starting (see
//! [`super::node::STOP_SSHD`]); this side finds that init through the state
//! file, signals it, and returns only once the change has happened: no sshd
//! process left in the node, or sshd listening again. So a caller that
//! times what follows times it from a cut that has really happened.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::node::{START_SSHD, STOP_SSHD, is_sshd};
use super::process::{ProcessId, children, namespace_inode, pids_in_namespace, wait_until};
use super::registry_server::wait_for_listener;
use super::state::DemoState;
use super::{DemoError, DemoLayout};

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshdAction {
    /// Stop sshd and cut every connection it serves; it stays down.
    Stop,
    /// Start sshd again.
    Start,
}

/// What `demo sshd` did.
#[derive(Debug)]
pub struct SshdReport {
    pub node: String,
    pub address: String,
    /// Stop: the connections that were cut.
    pub connections_cut: usize,
    pub elapsed: Duration,
}

/// How long sshd and its connections get to end after SIGTERM before they
/// are killed.
const STOP_WAIT: Duration = Duration::from_secs(5);
/// How long a started sshd gets to listen.
const START_WAIT: Duration = Duration::from_secs(10);

pub fn sshd(
    name: &str,
    layout: &DemoLayout,
    node: &str,
    action: SshdAction,
) -> Result<SshdReport, DemoError> {
    let started = Instant::now();
    let failed = |reason: String| DemoError::Node {
        node: node.to_string(),
        reason,
    };
    let state = DemoState::load(&layout.state_file())?.ok_or_else(|| DemoError::NotUp {
        name: name.to_string(),
    })?;
    let Some(recorded) = state.nodes.iter().find(|n| n.name == node) else {
        let names: Vec<&str> = state.nodes.iter().map(|n| n.name.as_str()).collect();
        return Err(failed(format!(
            "the demo cluster \"{name}\" has no such node; it has {}",
            names.join(", ")
        )));
    };
    let log = layout.node_dir(node).join("node.log");
    // The init is the outer process's only child.
    let init = recorded
        .process
        .filter(|outer| outer.is_alive())
        .and_then(|outer| children(outer.pid).into_iter().next())
        .and_then(|pid| ProcessId::of(pid as u32))
        .ok_or_else(|| {
            failed("it is not running; `flotilla demo up` brings the demo cluster up again".into())
        })?;
    let mut report = SshdReport {
        node: node.to_string(),
        address: recorded.address.clone(),
        connections_cut: 0,
        elapsed: Duration::ZERO,
    };
    match action {
        SshdAction::Stop => {
            let namespace = namespace_inode(init.pid, "pid")
                .ok_or_else(|| failed("its PID namespace is gone".into()))?;
            let sshd_processes = || -> Vec<i32> {
                pids_in_namespace("pid", namespace)
                    .into_iter()
                    .filter(|&pid| is_sshd(pid))
                    .collect()
            };
            // Each connection is a child of the listener (the init's sshd).
            report.connections_cut = children(init.pid)
                .into_iter()
                .filter(|&pid| is_sshd(pid))
                .flat_map(children)
                .filter(|&pid| is_sshd(pid))
                .count();
            if !init.signal(STOP_SSHD) {
                return Err(failed("its init is gone".into()));
            }
            let mut gone = wait_until(STOP_WAIT, || sshd_processes().is_empty());
            if !gone {
                // Still there after SIGTERM (say, a connection accepted as
                // the listener stopped): a cut is a cut.
                for pid in sshd_processes() {
                    if let Some(process) = ProcessId::of(pid as u32) {
                        process.kill();
                    }
                }
                gone = wait_until(Duration::from_secs(2), || sshd_processes().is_empty());
            }
            if !gone {
                return Err(failed(format!("sshd did not stop; see {}", log.display())));
            }
        }
        SshdAction::Start => {
            if !init.signal(START_SSHD) {
                return Err(failed("its init is gone".into()));
            }
            let socket: SocketAddr = format!("{}:22", recorded.address)
                .parse()
                .map_err(|e| failed(format!("address {}: {e}", recorded.address)))?;
            if !wait_for_listener(socket, START_WAIT, || init.is_alive()) {
                return Err(DemoError::NodeDidNotStart {
                    node: node.to_string(),
                    address: recorded.address.clone(),
                    log: PathBuf::from(&log),
                });
            }
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}
