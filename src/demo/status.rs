//! `flotilla demo status`: checks what the state file says against what runs:
//! each node's processes and sshd, the bridge, the registry and its images.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use super::state::DemoState;
use super::{DemoError, DemoLayout, net};

#[derive(Debug)]
pub struct StatusReport {
    pub state: Option<DemoState>,
    pub bridge_up: bool,
    pub nodes: Vec<NodeHealth>,
    pub registry_running: bool,
    /// The registry's repositories, or why they could not be listed.
    pub repositories: Result<Vec<String>, String>,
    pub cluster_file: Option<PathBuf>,
}

#[derive(Debug)]
pub struct NodeHealth {
    pub name: String,
    pub address: String,
    pub pid: Option<i32>,
    pub running: bool,
    pub ssh_listening: bool,
}

impl StatusReport {
    pub fn is_up(&self) -> bool {
        self.state.is_some()
    }

    pub fn is_healthy(&self) -> bool {
        self.is_up()
            && self.bridge_up
            && self.registry_running
            && self.repositories.is_ok()
            && self.nodes.iter().all(|n| n.running && n.ssh_listening)
    }
}

pub fn status(layout: &DemoLayout) -> Result<StatusReport, DemoError> {
    let Some(state) = DemoState::load(&layout.state_file())? else {
        return Ok(StatusReport {
            state: None,
            bridge_up: false,
            nodes: Vec::new(),
            registry_running: false,
            repositories: Err("the demo cluster is not up".into()),
            cluster_file: None,
        });
    };
    let nodes = state
        .nodes
        .iter()
        .map(|n| {
            let running = n.process.is_some_and(|p| p.is_alive());
            NodeHealth {
                name: n.name.clone(),
                address: n.address.clone(),
                pid: n.process.map(|p| p.pid),
                running,
                ssh_listening: running && listens(&format!("{}:22", n.address)),
            }
        })
        .collect();
    let registry_running = state.registry.process.is_some_and(|p| p.is_alive());
    let repositories = if registry_running {
        list_repositories(&state.registry.address)
    } else {
        Err("the registry is not running".into())
    };
    Ok(StatusReport {
        bridge_up: net::link_exists(&state.bridge),
        cluster_file: Some(state.cluster_file.clone()),
        nodes,
        registry_running,
        repositories,
        state: Some(state),
    })
}

fn listens(address: &str) -> bool {
    address
        .parse::<SocketAddr>()
        .is_ok_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_ok())
}

fn list_repositories(registry: &str) -> Result<Vec<String>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let client = crate::registry::client(&[registry.to_string()]);
    runtime
        .block_on(crate::registry::catalog(&client, registry))
        .map_err(|e| e.to_string())
}
