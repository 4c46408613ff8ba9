//! A node session: the long-lived task that keeps one node connected and its
//! figures flowing. It connects (through a [`Connector`]: SSH, host-key
//! check, authentication, agent bootstrap, the agent channel), reports what
//! the agent says to a [`NodeSink`] (the cluster state), and when the link or
//! the agent fails, says why and tries again with jittered back-off
//! ([`super::reconnect`]). One task per node, so a slow or dead node never
//! holds the others up.
//!
//! While connected it asks the agent, each `interval` (1 s), for the metrics
//! samples it has not seen yet, and lists the node's pods every `pods_every`
//! ticks, and 20 ms after an agent event says something changed. Every call
//! has a deadline: an agent that stops answering while its SSH link stays
//! up is a failure too (`AgentFailed`), not a frozen node.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::SshSession;
use super::reconnect::{Reconnect, ReconnectPolicy};
use crate::agent::node::{MetricsSample, NodeFacts};
use crate::agent::protocol::messages::{Event, EventFilter, HelloReply, PodRecord};
use crate::agent::protocol::{Client, ClientError};
pub use crate::cluster::FailureKind;

/// Why a connection attempt or a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    /// The whole error, for the node's description.
    pub reason: String,
}

impl Failure {
    pub fn new(kind: FailureKind, reason: impl Into<String>) -> Failure {
        Failure {
            kind,
            reason: reason.into(),
        }
    }
}

/// An agent reached: the protocol client, and whatever must stay alive
/// with it (the SSH connection carrying its channel).
pub struct Connected {
    pub client: Client,
    /// Dropped when the session ends, closing the connection.
    pub keep_alive: Box<dyn Send + Sync>,
    /// The SSH connection itself, when there is one, for channels of a
    /// caller's own beside the agent's (an exec). A clone held elsewhere
    /// keeps the connection open after the session ends.
    pub ssh: Option<Arc<SshSession>>,
    /// Whether the agent binary had to be uploaded, or serve (re)started.
    pub uploaded: bool,
    pub started: bool,
}

/// Reaches a node's agent, from scratch.
pub trait Connector: Send + Sync + 'static {
    fn connect(&self) -> impl Future<Output = Result<Connected, Failure>> + Send;
}

/// What a session reports. Implementations must not block: they are called
/// from the session task.
pub trait NodeSink: Send + Sync + 'static {
    /// An attempt begins (the first, or after a failure).
    fn connecting(&self, node: &str, attempt: u32);
    /// The agent answered: its hello and facts.
    fn connected(&self, node: &str, hello: &HelloReply, facts: &NodeFacts);
    /// New metrics samples, oldest first, never seen before on this connection.
    fn metrics(&self, node: &str, samples: &[MetricsSample]);
    /// Every pod the agent holds.
    fn pods(&self, node: &str, pods: Vec<PodRecord>);
    fn event(&self, node: &str, event: &Event);
    /// The attempt or the connection failed; the next attempt is in `retry_in`.
    fn failed(&self, node: &str, failure: &Failure, retry_in: Duration);
    /// The last agent event seen on an earlier connection, so a reconnect
    /// replays what it missed; None asks for new events only.
    fn events_since(&self, _node: &str) -> Option<u64> {
        None
    }
    /// The agent's client while connected (`None` once the connection is
    /// gone), for whoever sends the agent requests of its own (the verbs,
    /// the controller). A clone shares the session's one connection.
    fn client(&self, _node: &str, _client: Option<Client>) {}
    /// The node's SSH connection while connected (`None` once it is gone).
    fn ssh(&self, _node: &str, _ssh: Option<Arc<SshSession>>) {}
}

/// The cluster state is what sessions feed in the product.
impl NodeSink for crate::cluster::ClusterState {
    fn connecting(&self, node: &str, _attempt: u32) {
        if let Ok(writer) = self.node(node) {
            writer.connecting();
        }
    }

    fn connected(&self, node: &str, hello: &HelloReply, facts: &NodeFacts) {
        if let Ok(writer) = self.node(node) {
            writer.connected(hello.clone(), facts.clone());
        }
    }

    fn ssh(&self, node: &str, ssh: Option<Arc<SshSession>>) {
        // Pods' hostIP, for a node named by host name (see NodeUpdate::reached_at).
        if let (Ok(writer), Some(ip)) = (self.node(node), ssh.and_then(|s| s.peer_ip())) {
            writer.reached_at(ip);
        }
    }

    fn metrics(&self, node: &str, samples: &[MetricsSample]) {
        if let Ok(writer) = self.node(node) {
            writer.metrics(crate::agent::node::MetricsSeries {
                interval_ms: 1000,
                capacity: 600,
                samples: samples.to_vec(),
            });
        }
    }

    fn pods(&self, node: &str, pods: Vec<PodRecord>) {
        if let Ok(writer) = self.node(node) {
            writer.pods(pods);
        }
    }

    fn event(&self, node: &str, event: &Event) {
        if let Ok(writer) = self.node(node) {
            writer.event(event.clone());
        }
    }

    fn failed(&self, node: &str, failure: &Failure, retry_in: Duration) {
        if let Ok(writer) = self.node(node) {
            writer.failed(failure.kind, failure.reason.clone());
            let retry_in = chrono::Duration::from_std(retry_in).unwrap_or_default();
            writer.retry_at(chrono::Utc::now() + retry_in);
        }
    }

    fn events_since(&self, node: &str) -> Option<u64> {
        self.node(node).ok().and_then(|w| w.events_since())
    }
}

/// How a session paces itself.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Between metrics polls (the agent samples once a second).
    pub interval: Duration,
    /// Pods are listed every this many ticks, and after events.
    pub pods_every: u32,
    /// The longest an agent call may take before the agent counts as failed.
    pub call_timeout: Duration,
    pub reconnect: ReconnectPolicy,
    /// On the first connection, replay the events the agent still holds
    /// (the console shows what happened before it opened), not only new
    /// ones. A verb that reads and exits has no use for them.
    pub replay_events: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            interval: Duration::from_secs(1),
            pods_every: 5,
            // A lost link must show within 10 s; a metrics call answers in
            // milliseconds, or under a second on a slow link.
            call_timeout: Duration::from_secs(5),
            reconnect: ReconnectPolicy::default(),
            replay_events: false,
        }
    }
}

/// Runs a node's session until `cancel` fires.
pub fn spawn<C: Connector, S: NodeSink>(
    node: String,
    connector: Arc<C>,
    sink: Arc<S>,
    options: SessionOptions,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = run(&node, &*connector, &*sink, &options) => {}
        }
    })
}

async fn run<C: Connector, S: NodeSink>(
    node: &str,
    connector: &C,
    sink: &S,
    options: &SessionOptions,
) {
    let mut reconnect = Reconnect::default();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        sink.connecting(node, attempt);
        let failure = match connector.connect().await {
            Ok(connected) => {
                let up_since = Instant::now();
                let failure = serve_connection(node, connected, sink, options).await;
                reconnect.connection_ended(&options.reconnect, up_since.elapsed());
                failure
            }
            Err(failure) => failure,
        };
        sink.client(node, None);
        sink.ssh(node, None);
        let wait = reconnect.after_failure(&options.reconnect);
        tracing::info!(node, kind = %failure.kind, retry_in = ?wait, "{}", failure.reason);
        sink.failed(node, &failure, wait);
        tokio::time::sleep(wait).await;
    }
}

/// Follows a connected agent until something fails; returns why.
async fn serve_connection<S: NodeSink>(
    node: &str,
    connected: Connected,
    sink: &S,
    options: &SessionOptions,
) -> Failure {
    let Connected {
        client,
        keep_alive: _keep_alive,
        ssh,
        ..
    } = connected;
    let deadline = options.call_timeout;
    let agent_failed = |what: &str, e: CallError| {
        // A closed client means the SSH link (or the agent's socket) went
        // away; an open one that errs or is late means the agent is stuck.
        match (client.closed(), &e) {
            (Some(why), _) => Failure::new(
                FailureKind::Unreachable,
                format!("the connection was lost ({why}); reconnecting"),
            ),
            // Silence on a link that has not closed yet is, far more often,
            // a lost link than a hung agent; the reconnect tells them apart
            // (a hung agent fails its hello with AgentFailed).
            (None, CallError::Late(_)) => Failure::new(
                FailureKind::Timeout,
                format!("{what}: {e}; the link or the host stopped answering, reconnecting"),
            ),
            (None, _) => Failure::new(FailureKind::AgentFailed, format!("{what}: {e}")),
        }
    };
    let facts = match timed(deadline, client.node_facts()).await {
        Ok(facts) => facts,
        Err(e) => return agent_failed("node.facts", e),
    };
    sink.connected(node, client.hello(), &facts);
    sink.client(node, Some(client.clone()));
    sink.ssh(node, ssh);

    let mut last_seq: Option<u64> = None;
    let filter = EventFilter {
        namespace: None,
        since: sink
            .events_since(node)
            .or(options.replay_events.then_some(0)),
    };
    let mut events = match timed(deadline, client.subscribe_events(&filter)).await {
        Ok(stream) => Some(stream),
        Err(e) => {
            // Figures still flow without events; pods are then polled only.
            tracing::warn!(node, "events.subscribe: {e}");
            None
        }
    };
    let mut ticker = tokio::time::interval(options.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick = 0u32;
    // The pods are listed on the first tick, every `pods_every` ticks, and
    // shortly after an agent event: EVENT_SETTLE later, so that a burst of
    // events (a pod created, its container started) costs one listing.
    let mut pods_due: Option<tokio::time::Instant> = None;
    loop {
        let mut list_pods = false;
        tokio::select! {
            _ = ticker.tick() => {
                match timed(deadline, client.node_metrics(last_seq)).await {
                    Ok(series) => {
                        // An agent restarted behind the same connection cannot
                        // happen (its socket went away with it), but a seq that
                        // goes backwards must not stall the figures.
                        let fresh: Vec<MetricsSample> = series
                            .samples
                            .into_iter()
                            .filter(|s| last_seq.is_none_or(|l| s.seq > l))
                            .collect();
                        if let Some(last) = fresh.last() {
                            last_seq = Some(last.seq);
                            sink.metrics(node, &fresh);
                        }
                    }
                    Err(e) => return agent_failed("node.metrics", e),
                }
                list_pods = tick.is_multiple_of(options.pods_every.max(1));
                tick = tick.wrapping_add(1);
            }
            _ = tokio::time::sleep_until(pods_due.unwrap_or_else(tokio::time::Instant::now)),
                if pods_due.is_some() => list_pods = true,
            item = next_event(&mut events) => match item {
                Some(Ok(event)) => {
                    sink.event(node, &event);
                    pods_due.get_or_insert_with(|| tokio::time::Instant::now() + EVENT_SETTLE);
                }
                Some(Err(e)) => {
                    tracing::warn!(node, "event stream ended: {e}");
                    events = None;
                    if client.closed().is_some() {
                        return agent_failed("events.subscribe", e.into());
                    }
                }
                None => events = None,
            },
        }
        if list_pods {
            match timed(deadline, client.list_pods(None)).await {
                Ok(list) => sink.pods(node, list.pods),
                Err(e) => return agent_failed("pods.list", e),
            }
            pods_due = None;
        }
    }
}

/// How long after an agent event the pods are listed (see the session loop).
const EVENT_SETTLE: Duration = Duration::from_millis(20);

async fn next_event(
    events: &mut Option<crate::agent::protocol::CallStream<Event>>,
) -> Option<Result<Event, ClientError>> {
    match events {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

/// Why an agent call gave nothing.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("no answer within {}s", .0.as_secs_f32())]
    Late(Duration),
}

/// A call with a deadline; a late answer is an error like any other.
async fn timed<T>(
    deadline: Duration,
    call: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(deadline, call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(CallError::Late(deadline)),
    }
}
