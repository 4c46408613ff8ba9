//! Every node's session at once: one task per node, all feeding one cluster
//! state, started and stopped together. The console keeps a fleet running
//! for its whole life; a CLI verb starts one, waits until every node has
//! settled (reported its facts, figures and pods, or failed its first
//! attempt), reads the snapshot and stops it. A down node costs the others
//! nothing: each is its own task.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::SshSession;
use super::bootstrap::{AgentBinary, BootstrapOptions};
use super::connector::SshConnector;
use super::session::{self, Failure, NodeSink, SessionOptions};
use super::target::TargetContext;
use crate::agent::node::{MetricsSample, NodeFacts};
use crate::agent::protocol::Client;
use crate::agent::protocol::messages::{Event, HelloReply, PodRecord};
use crate::cluster::ClusterState;
use crate::config::cluster_file::ClusterConfig;

/// The running sessions of a cluster.
pub struct Fleet {
    state: ClusterState,
    sink: Arc<Settling>,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    nodes: usize,
}

impl Fleet {
    /// Starts a session per node of `cluster`, reaching each through
    /// `context` and bootstrapping `binary`. Must run inside a tokio runtime.
    pub fn start(
        cluster: &ClusterConfig,
        context: &TargetContext,
        binary: Arc<AgentBinary>,
        options: SessionOptions,
    ) -> Fleet {
        let state = ClusterState::new(cluster);
        let sink = Arc::new(Settling::new(state.clone()));
        let cancel = CancellationToken::new();
        let insecure = cluster.insecure_registries();
        let tasks = cluster
            .nodes
            .iter()
            .map(|node| {
                let target = context.target(node);
                let bootstrap = BootstrapOptions::for_node(node, &target.user, &insecure);
                let connector = Arc::new(SshConnector {
                    node: node.name.clone(),
                    target,
                    binary: binary.clone(),
                    options: bootstrap,
                });
                session::spawn(
                    node.name.clone(),
                    connector,
                    sink.clone(),
                    options.clone(),
                    cancel.clone(),
                )
            })
            .collect();
        Fleet {
            state,
            sink,
            cancel,
            tasks,
            nodes: cluster.nodes.len(),
        }
    }

    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    /// Waits until every node has settled once, or `wait` has passed;
    /// returns whether all settled.
    pub async fn settled(&self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.sink.until_settled(self.nodes))
            .await
            .is_ok()
    }

    /// The agent client of `node` while its session is connected: requests
    /// go over the session's own connection. `None` while it is not.
    pub fn client(&self, node: &str) -> Option<Client> {
        self.sink.clients.lock().ok()?.get(node).cloned()
    }

    /// The SSH connection of `node` while its session is connected, for a
    /// channel of the caller's own (an exec); a clone keeps the connection
    /// open after the fleet stops.
    pub fn ssh(&self, node: &str) -> Option<Arc<SshSession>> {
        self.sink.ssh.lock().ok()?.get(node).cloned()
    }

    /// A cheap handle on the sessions' clients that outlives borrows of the
    /// fleet (the controller keeps one).
    pub fn handle(&self) -> FleetHandle {
        FleetHandle {
            members: self
                .state
                .snapshot()
                .nodes
                .iter()
                .map(|n| n.name.clone())
                .collect(),
            sink: Arc::clone(&self.sink),
        }
    }

    /// Ends every session (closing its connection) and waits for them.
    pub async fn stop(self) {
        self.cancel.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// The member nodes of a fleet and their connected clients.
#[derive(Clone)]
pub struct FleetHandle {
    members: Vec<String>,
    sink: Arc<Settling>,
}

impl FleetHandle {
    /// Every node of the cluster file, in its order.
    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// The agent client of `node` while its session is connected.
    pub fn client(&self, node: &str) -> Option<Client> {
        self.sink.clients.lock().ok()?.get(node).cloned()
    }
}

/// The state, plus which nodes have given their first answer.
struct Settling {
    state: ClusterState,
    settled: Mutex<HashSet<String>>,
    changed: Notify,
    /// Each connected node's agent client.
    clients: Mutex<HashMap<String, Client>>,
    /// Each connected node's SSH connection.
    ssh: Mutex<HashMap<String, Arc<SshSession>>>,
}

impl Settling {
    fn new(state: ClusterState) -> Settling {
        Settling {
            state,
            settled: Mutex::new(HashSet::new()),
            changed: Notify::new(),
            clients: Mutex::new(HashMap::new()),
            ssh: Mutex::new(HashMap::new()),
        }
    }

    fn settle(&self, node: &str) {
        if let Ok(mut settled) = self.settled.lock()
            && settled.insert(node.to_string())
        {
            self.changed.notify_waiters();
        }
    }

    async fn until_settled(&self, all: usize) {
        loop {
            let notified = self.changed.notified();
            if self.settled.lock().map(|s| s.len()).unwrap_or(all) >= all {
                return;
            }
            notified.await;
        }
    }
}

impl NodeSink for Settling {
    fn connecting(&self, node: &str, attempt: u32) {
        self.state.connecting(node, attempt);
    }

    fn connected(&self, node: &str, hello: &HelloReply, facts: &NodeFacts) {
        self.state.connected(node, hello, facts);
    }

    fn metrics(&self, node: &str, samples: &[MetricsSample]) {
        self.state.metrics(node, samples);
    }

    fn pods(&self, node: &str, pods: Vec<PodRecord>) {
        // Pods are listed right after the first figures: the node has said
        // everything `get nodes` shows.
        self.state.pods(node, pods);
        self.settle(node);
    }

    fn event(&self, node: &str, event: &Event) {
        self.state.event(node, event);
    }

    fn failed(&self, node: &str, failure: &Failure, retry_in: Duration) {
        self.state.failed(node, failure, retry_in);
        self.settle(node);
    }

    fn events_since(&self, node: &str) -> Option<u64> {
        self.state.events_since(node)
    }

    fn ssh(&self, node: &str, ssh: Option<Arc<SshSession>>) {
        if let Ok(mut sessions) = self.ssh.lock() {
            match ssh {
                Some(ssh) => sessions.insert(node.to_string(), ssh),
                None => sessions.remove(node),
            };
        }
    }

    fn client(&self, node: &str, client: Option<Client>) {
        if let Ok(mut clients) = self.clients.lock() {
            match client {
                Some(client) => clients.insert(node.to_string(), client),
                None => clients.remove(node),
            };
        }
    }
}
