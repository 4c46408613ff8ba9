//! Everything the console does off the draw loop: the node sessions, the
//! controller (reconciling while this console holds the lease), a reader of
//! the cluster's desired state and events, log streams, and the operator's
//! actions. The app sends [`Request`]s and gets [`Reply`]s back; nothing
//! here ever touches the terminal (it logs through tracing to the file).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::manifests::{ManifestEntry, scan};
use super::model::LeaseView;
use crate::agent::protocol::messages::{LogRecord, LogsQuery, PodRef, StatsQuery};
use crate::api::manifest::Object;
use crate::cli::control::LEASE_TTL;
use crate::cluster::ClusterSnapshot;
use crate::config::cluster_file::ClusterConfig;
use crate::config::paths::Dirs;
use crate::controller::events::ControllerEvent;
use crate::controller::lease::{LeaseKeeper, holder_id};
use crate::controller::ops;
use crate::controller::plan::SCHEDULING_ANNOTATION;
use crate::controller::replicated::ReplicatedStore;
use crate::controller::run::{Controller, ControllerOptions};
use crate::controller::world::{KIND_DEPLOYMENT, KIND_POD, World};
use crate::ssh::fleet::Fleet;

/// How often desired state and events are read again.
const READ_EVERY: Duration = Duration::from_secs(2);
/// Lines fetched when a log pane opens (its ring holds 100,000).
const LOG_TAIL: u64 = 100_000;
/// Records sent to the app in one message at most.
const LOG_BATCH: usize = 4096;

/// One container's log, for a pane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogTarget {
    pub node: String,
    pub namespace: String,
    pub pod: String,
    pub container: Option<String>,
    /// The prefix of its lines when several are merged in one pane.
    pub source: Option<Arc<str>>,
}

/// What the app asks for.
#[derive(Clone, Debug)]
pub enum Request {
    Apply(Box<ManifestEntry>),
    Kill {
        namespace: String,
        name: String,
    },
    DeletePod {
        namespace: String,
        name: String,
    },
    DeleteDeployment {
        namespace: String,
        name: String,
    },
    Scale {
        namespace: String,
        name: String,
        by: i64,
    },
    Cordon {
        node: String,
        unschedulable: bool,
    },
    Drain {
        node: String,
    },
    /// Stream these into pane `pane` until [`Request::CloseLogs`].
    Logs {
        pane: u64,
        targets: Vec<LogTarget>,
    },
    CloseLogs {
        pane: u64,
    },
    RescanManifests,
}

/// What comes back.
#[derive(Debug)]
pub enum Reply {
    /// A line for the footer; `error` colours it.
    Message {
        text: String,
        error: bool,
    },
    World(Arc<World>),
    Events(Arc<Vec<ControllerEvent>>),
    Lease(LeaseView),
    Manifests(Arc<Vec<ManifestEntry>>),
    Log {
        pane: u64,
        source: Option<Arc<str>>,
        records: Vec<LogRecord>,
    },
    /// A pane's stream ended (the container ended for good, or an error).
    LogEnded {
        pane: u64,
        text: String,
    },
}

impl Reply {
    fn ok(text: impl Into<String>) -> Reply {
        Reply::Message {
            text: text.into(),
            error: false,
        }
    }

    fn error(text: impl Into<String>) -> Reply {
        Reply::Message {
            text: text.into(),
            error: true,
        }
    }
}

/// The console's handle on its background work.
pub struct Backend {
    pub requests: mpsc::UnboundedSender<Request>,
    pub replies: mpsc::UnboundedReceiver<Reply>,
    pub snapshots: watch::Receiver<Arc<ClusterSnapshot>>,
    fleet: Fleet,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Shared by the tasks that serve requests.
struct Worker {
    fleet: crate::ssh::fleet::FleetHandle,
    state: crate::cluster::ClusterState,
    store: Arc<ReplicatedStore>,
    reader: Controller,
    replies: mpsc::UnboundedSender<Reply>,
    manifest_dirs: Vec<PathBuf>,
}

impl Backend {
    /// Starts the sessions, the controller and the reader. Returns at once:
    /// nodes connect while the console already draws.
    pub fn start(
        config: &ClusterConfig,
        dirs: &Dirs,
        manifest_dirs: Vec<PathBuf>,
        readonly: bool,
    ) -> anyhow::Result<Backend> {
        let options = crate::ssh::session::SessionOptions {
            replay_events: true,
            ..Default::default()
        };
        let fleet = crate::cli::connect::start_with(config, dirs, options)?;
        let cancel = CancellationToken::new();
        let (requests, mut request_rx) = mpsc::unbounded_channel();
        let (reply_tx, replies) = mpsc::unbounded_channel();
        let snapshots = fleet.state().subscribe();
        let mut tasks = vec![fleet.state().spawn_ticker(Duration::from_secs(1))];
        let holder = holder_id();
        let agents: Arc<dyn crate::controller::agents::Agents> = Arc::new(fleet.handle());
        // A read-only console never reconciles: it would act for the operator.
        if !readonly {
            let keeper = LeaseKeeper::new(Arc::clone(&agents), holder.clone(), LEASE_TTL);
            let (held, keeper_task) = keeper.spawn(cancel.clone());
            tasks.push(keeper_task);
            let mut controller = Controller::new(
                Arc::clone(&agents),
                fleet.state().clone(),
                holder.clone(),
                ControllerOptions {
                    pod_cidr: config.pod_cidr,
                    ..ControllerOptions::default()
                },
            );
            let stop = cancel.clone();
            let mut announce = held.clone();
            tasks.push(tokio::spawn(async move {
                controller.run(held, stop).await;
            }));
            let lease_tx = reply_tx.clone();
            tasks.push(tokio::spawn(async move {
                while announce.changed().await.is_ok() {
                    let view = if *announce.borrow_and_update() {
                        LeaseView::Mine
                    } else {
                        LeaseView::Other(None)
                    };
                    if lease_tx.send(Reply::Lease(view)).is_err() {
                        break;
                    }
                }
            }));
        }
        let reader = Controller::new(
            Arc::clone(&agents),
            fleet.state().clone(),
            holder,
            ControllerOptions {
                pod_cidr: config.pod_cidr,
                ..ControllerOptions::default()
            },
        );
        let worker = Arc::new(Worker {
            fleet: fleet.handle(),
            state: fleet.state().clone(),
            store: Arc::clone(reader.store()),
            reader,
            replies: reply_tx,
            manifest_dirs,
        });
        // Read and parsed off the draw loop, like every later rescan.
        let _ = requests.send(Request::RescanManifests);
        tasks.push(tokio::spawn(Arc::clone(&worker).read_loop(cancel.clone())));
        let serve_cancel = cancel.clone();
        tasks.push(tokio::spawn(async move {
            let mut panes: HashMap<u64, CancellationToken> = HashMap::new();
            loop {
                let request = tokio::select! {
                    _ = serve_cancel.cancelled() => break,
                    request = request_rx.recv() => match request {
                        Some(r) => r,
                        None => break,
                    },
                };
                match request {
                    Request::Logs { pane, targets } => {
                        let token = serve_cancel.child_token();
                        panes.insert(pane, token.clone());
                        for target in targets {
                            tokio::spawn(Arc::clone(&worker).stream_logs(
                                pane,
                                target,
                                token.clone(),
                            ));
                        }
                    }
                    Request::CloseLogs { pane } => {
                        if let Some(token) = panes.remove(&pane) {
                            token.cancel();
                        }
                    }
                    other => {
                        tokio::spawn(Arc::clone(&worker).serve(other));
                    }
                }
            }
        }));
        Ok(Backend {
            requests,
            replies,
            snapshots,
            fleet,
            cancel,
            tasks,
        })
    }

    /// `node`'s agent client and SSH connection while its session is
    /// connected: a shell goes over them rather than a new connection.
    pub fn node_connection(
        &self,
        node: &str,
    ) -> (
        Option<crate::agent::protocol::Client>,
        Option<Arc<crate::ssh::SshSession>>,
    ) {
        (self.fleet.client(node), self.fleet.ssh(node))
    }

    /// Stops every task, releases the lease, closes the sessions.
    pub async fn stop(self) {
        self.cancel.cancel();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
        }
        self.fleet.stop().await;
    }
}

impl Worker {
    fn send(&self, reply: Reply) {
        let _ = self.replies.send(reply);
    }

    /// Reads desired state and events every [`READ_EVERY`]; marks cordoned
    /// nodes in the live state so every view shows it.
    async fn read_loop(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            match self.reader.read_world().await {
                Ok(world) => {
                    for node in &world.nodes {
                        if let Ok(writer) = self.state.node(&node.name) {
                            let flag = node.flags.unschedulable;
                            writer.update(|n| n.set_unschedulable(flag));
                        }
                    }
                    self.send(Reply::World(Arc::new(world)));
                }
                Err(err) => tracing::debug!("console read: {err}"),
            }
            self.read_pod_stats().await;
            match self.store.list(ControllerEvent::KIND, None).await {
                Ok(records) => {
                    let events: Vec<ControllerEvent> = records
                        .into_iter()
                        .filter_map(|r| serde_json::from_value(r.object?).ok())
                        .collect();
                    self.send(Reply::Events(Arc::new(events)));
                }
                Err(err) => tracing::debug!("console events: {err}"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(READ_EVERY) => {}
            }
        }
    }

    /// Each connected node's pod figures (CPU, memory) for the tables.
    async fn read_pod_stats(&self) {
        let nodes = self.node_names();
        let asks = nodes.iter().filter_map(|node| {
            let client = self.fleet.client(node)?;
            Some(async move {
                let stats = tokio::time::timeout(
                    Duration::from_secs(5),
                    client.pod_stats(&StatsQuery::default()),
                )
                .await;
                (node, stats)
            })
        });
        for (node, stats) in futures_util::future::join_all(asks).await {
            match stats {
                Ok(Ok(list)) => {
                    if let Ok(writer) = self.state.node(node) {
                        writer.pod_stats(list);
                    }
                }
                Ok(Err(err)) => tracing::debug!("pod figures of {node}: {err}"),
                Err(_) => tracing::debug!("pod figures of {node}: no answer in 5s"),
            }
        }
    }

    async fn serve(self: Arc<Self>, request: Request) {
        let reply = match request {
            Request::Apply(entry) => self.apply(&entry).await,
            Request::Kill { namespace, name } => {
                self.on_every_copy(&namespace, &name, "killed", false).await
            }
            Request::DeletePod { namespace, name } => {
                self.on_every_copy(&namespace, &name, "deleted", true).await
            }
            Request::DeleteDeployment { namespace, name } => {
                match self.store.delete(KIND_DEPLOYMENT, &namespace, &name).await {
                    Ok(true) => Reply::ok(format!("deployment.apps/{name} deleted")),
                    Ok(false) => Reply::error(format!("deployment.apps/{name} not found")),
                    Err(err) => Reply::error(format!("deployment.apps/{name}: {err}")),
                }
            }
            Request::Scale {
                namespace,
                name,
                by,
            } => match ops::scale(&self.store, &namespace, &name, |n| n + by).await {
                Ok(replicas) => Reply::ok(format!("deployment.apps/{name} scaled to {replicas}")),
                Err(err) => Reply::error(format!("deployment.apps/{name}: {err}")),
            },
            Request::Cordon {
                node,
                unschedulable,
            } => self.cordon(&node, unschedulable).await,
            Request::Drain { node } => self.drain(&node).await,
            Request::RescanManifests => {
                // Files to read and parse: not on a runtime worker.
                let dirs = self.manifest_dirs.clone();
                match tokio::task::spawn_blocking(move || scan(&dirs)).await {
                    Ok(entries) => Reply::Manifests(Arc::new(entries)),
                    Err(err) => Reply::error(format!("reading the manifests failed: {err}")),
                }
            }
            Request::Logs { .. } | Request::CloseLogs { .. } => return,
        };
        self.send(reply);
    }

    fn node_names(&self) -> Vec<String> {
        self.state
            .snapshot()
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect()
    }

    async fn cordon(&self, node: &str, unschedulable: bool) -> Reply {
        let verb = if unschedulable {
            "cordoned"
        } else {
            "uncordoned"
        };
        match ops::set_cordon(&self.store, &self.node_names(), node, unschedulable).await {
            Ok(true) => Reply::ok(format!("node/{node} {verb}")),
            Ok(false) => Reply::ok(format!("node/{node} already {verb}")),
            Err(err) => Reply::error(format!("node/{node}: {err}")),
        }
    }

    /// Cordons, then evicts the node's pods as `flotilla drain` does
    /// (refusing pods no deployment manages); their deployments replace
    /// them elsewhere.
    async fn drain(&self, node: &str) -> Reply {
        if let Err(err) = ops::set_cordon(&self.store, &self.node_names(), node, true).await {
            return Reply::error(format!("node/{node}: {err}"));
        }
        let plan = match self.reader.read_world().await {
            Ok(world) => ops::drain_plan(&world, node, false).map_err(|e| e.to_string()),
            Err(err) => Err(err.to_string()),
        };
        let pods = match plan {
            Ok(pods) => pods,
            Err(err) => return Reply::error(format!("node/{node} cordoned, not drained: {err}")),
        };
        let Some(client) = self.fleet.client(node) else {
            return Reply::error(format!(
                "node/{node} cordoned, not drained: it is not connected"
            ));
        };
        let count = pods.len();
        let failed: Vec<String> = ops::evict(&client, pods, None)
            .await
            .into_iter()
            .filter_map(|(pod, result)| result.err().map(|e| format!("{}: {e}", pod.name)))
            .collect();
        if failed.is_empty() {
            Reply::ok(format!("node/{node} drained ({count} pods evicted)"))
        } else {
            Reply::error(format!("node/{node}: not evicted: {}", failed.join("; ")))
        }
    }

    /// Kill or delete on every node holding the pod; a pod waiting for a
    /// node is removed from the store instead.
    async fn on_every_copy(&self, namespace: &str, name: &str, done: &str, delete: bool) -> Reply {
        let nodes = self.state.snapshot().holders(namespace, name);
        if nodes.is_empty() {
            if delete {
                return match self.store.delete(KIND_POD, namespace, name).await {
                    Ok(true) => Reply::ok(format!("pod/{name} deleted")),
                    Ok(false) => Reply::error(format!("pod/{name} not found")),
                    Err(err) => Reply::error(format!("pod/{name}: {err}")),
                };
            }
            return Reply::error(format!("pod/{name} is on no node: nothing to kill"));
        }
        let pod = PodRef::new(namespace, name);
        for node in &nodes {
            let Some(client) = self.fleet.client(node) else {
                return Reply::error(format!("pod/{name}: {node} is not connected"));
            };
            let result = if delete {
                client.delete_pod(&pod, None).await.map(drop)
            } else {
                client.kill_pod(&pod).await.map(drop)
            };
            if let Err(err) = result {
                return Reply::error(format!("pod/{name} on {node}: not {done}: {err}"));
            }
        }
        Reply::ok(format!("pod/{name} {done}"))
    }

    /// Writes the manifest's object; for a pod, waits (a few seconds) for
    /// the scheduler's choice and says where it went and why.
    async fn apply(&self, entry: &ManifestEntry) -> Reply {
        let Some(object) = &entry.object else {
            return Reply::error(format!(
                "{}: not applied: {}",
                entry.file,
                entry.error.as_deref().unwrap_or("invalid")
            ));
        };
        let world = match self.reader.read_world().await {
            Ok(world) => world,
            Err(err) => return Reply::error(format!("{}: not applied: {err}", entry.file)),
        };
        let written = match object {
            Object::Pod(pod) => ops::write_pod(&self.store, &world, pod).await,
            Object::Deployment(d) => ops::write_deployment(&self.store, d).await,
        };
        let verdict = match written {
            Ok(v) => v,
            Err(err) => return Reply::error(format!("{}: not applied: {err}", entry.file)),
        };
        let what = format!("{}/{}", object.kind().to_lowercase(), object.name());
        let Object::Pod(pod) = object else {
            return Reply::ok(format!("{what} {verdict}"));
        };
        // The controller places it within a pass; say where and why.
        let (namespace, name) = (&pod.metadata.namespace, &pod.metadata.name);
        let mut changes = self.state.subscribe();
        let placed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let found = changes.borrow_and_update().nodes.iter().find_map(|n| {
                    n.pod(namespace, name).map(|r| {
                        let why = r
                            .pod
                            .metadata
                            .annotations
                            .get(SCHEDULING_ANNOTATION)
                            .and_then(|a| a.lines().next())
                            .unwrap_or_default()
                            .to_string();
                        (n.name.clone(), why)
                    })
                });
                if let Some(found) = found {
                    return Some(found);
                }
                if changes.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await
        .ok()
        .flatten();
        match placed {
            Some((node, why)) if why.is_empty() => Reply::ok(format!("{what} {verdict} → {node}")),
            Some((node, why)) => Reply::ok(format!("{what} {verdict} → {node}: {why}")),
            None => Reply::ok(format!(
                "{what} {verdict}; not placed yet (see its events: d on the pod)"
            )),
        }
    }

    /// Streams one container's log into a pane, in batches, until cancelled.
    async fn stream_logs(self: Arc<Self>, pane: u64, target: LogTarget, cancel: CancellationToken) {
        let Some(client) = self.fleet.client(&target.node) else {
            self.send(Reply::LogEnded {
                pane,
                text: format!("{} is not connected", target.node),
            });
            return;
        };
        let query = LogsQuery {
            container: target.container.clone(),
            tail: Some(LOG_TAIL),
            follow: true,
            timestamps: true,
            ..LogsQuery::new(&PodRef::new(&target.namespace, &target.pod))
        };
        let mut stream = match client.log_batches(&query).await {
            Ok(stream) => stream,
            Err(err) => {
                self.send(Reply::LogEnded {
                    pane,
                    text: format!("logs of {}: {err}", target.pod),
                });
                return;
            }
        };
        loop {
            let first = tokio::select! {
                _ = cancel.cancelled() => return,
                batch = stream.next() => batch,
            };
            let Some(first) = first else { break };
            // The agent's batches, joined with those already arrived, up to
            // LOG_BATCH records a message: the app wakes and draws once per
            // message, not per record.
            let mut records = Vec::new();
            let mut ended = None;
            let mut finished = false;
            let mut next = Some(first);
            while let Some(batch) = next.take() {
                match batch {
                    Ok(batch) if records.is_empty() => records = batch,
                    Ok(batch) => records.extend(batch),
                    Err(err) => {
                        ended = Some(err.to_string());
                        break;
                    }
                }
                if records.len() >= LOG_BATCH {
                    break;
                }
                // Take what has already arrived without waiting for more.
                match stream.next().now_or_never() {
                    Some(Some(batch)) => next = Some(batch),
                    Some(None) => finished = true,
                    None => {}
                }
            }
            // The bench (scripts/bench-log-stream) counts these to know the
            // rate that reached the console.
            tracing::debug!(pane, records = records.len(), "log records to a pane");
            self.send(Reply::Log {
                pane,
                source: target.source.clone(),
                records,
            });
            if let Some(text) = ended {
                self.send(Reply::LogEnded { pane, text });
                return;
            }
            if finished {
                break;
            }
        }
        self.send(Reply::LogEnded {
            pane,
            text: format!("log of {} ended", target.pod),
        });
    }
}
