//! The agent's side: the [`AgentService`] trait the runtime implements, the
//! socket it listens on ([`bind_socket`]), and [`Server`], which accepts
//! connections, performs hello, reads requests, runs each one as its own task
//! and writes the replies.
//!
//! Isolation is the point of most of this file. Each connection has its own
//! reader, its own bounded write queue drained by its own writer task, and its
//! own cap on requests in flight (and on bytes queued); a request that would pass the cap is refused
//! with `busy` rather than waited for, so the reader never stalls and `cancel`
//! is always read. A client that stops reading fills its queue, its writer
//! makes no progress for `write_timeout`, and the connection is dropped; its
//! tasks stop with it. Nothing here waits on another connection.
//!
//! The service trait uses `async fn`-style methods (return-position `impl
//! Future + Send`) rather than boxed futures or the `async-trait` macro: there
//! is one service per agent, so [`Server`] is generic over it and nothing needs
//! a `dyn AgentService`; calls cost no allocation, and implementors write plain
//! `async fn`. Streams are boxed ([`ServiceStream`]): one allocation per stream
//! is nothing, and it spares implementors naming their stream types.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt, stream};
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::codec::{LineError, LineReader, MAX_REQUEST_LINE};
use super::exec::{Delivered, ExecControl, ExecOutput, ExecStartParams, signal_named};
use super::messages::{
    AcquireLease, Call, CancelParams, Cancelled, CreatePod, DeletePod, Empty, ErrorBody, ErrorCode,
    Event, EventFilter, FEATURES, GetObject, HelloParams, HelloReply, LeaseGrant, LeaseReleased,
    LeaseState, ListObjects, ListPods, LogBatch, LogsQuery, METHODS, MetricsQuery, NetworkSettings,
    NetworkState, Notice, ObjectList, ObjectRecord, PodList, PodRecord, PodRef, PodStatsList,
    PutObject, PutReply, ReleaseLease, Reply, Request, RequestId, StatsQuery, StopPod,
    WatchObjects, choose_version,
};
use crate::agent::node::{MetricsSeries, NodeFacts};

/// A typed failure of a service method; it becomes an error reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The request is well-formed but cannot be done as asked (an invalid pod,
    /// a container name that is not in the pod).
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Internal(String),
    /// A refusal with facts the client acts on, sent as the error's
    /// `details` (an object store conflict's stored generation, the lease's
    /// holder).
    #[error("{message}")]
    Detailed {
        code: ErrorCode,
        message: String,
        details: Value,
    },
}

impl ServiceError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ServiceError::NotFound(_) => ErrorCode::NotFound,
            ServiceError::Conflict(_) => ErrorCode::Conflict,
            ServiceError::BadRequest(_) => ErrorCode::BadRequest,
            ServiceError::Internal(_) => ErrorCode::Internal,
            ServiceError::Detailed { code, .. } => *code,
        }
    }

    /// A refusal of `code` carrying `details` (serialized).
    pub fn detailed(code: ErrorCode, message: impl Into<String>, details: &impl Serialize) -> Self {
        ServiceError::Detailed {
            code,
            message: message.into(),
            details: serde_json::to_value(details).unwrap_or(Value::Null),
        }
    }

    fn body(&self) -> ErrorBody {
        let mut body = ErrorBody::new(self.code(), self.to_string());
        if let ServiceError::Detailed { details, .. } = self {
            body.details = Some(details.clone());
        }
        body
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// A streamed reply: items until the stream ends (`end`) or yields an error
/// (which ends it with that error). Dropping it must stop whatever feeds it.
pub type ServiceStream<T> = BoxStream<'static, ServiceResult<T>>;

/// What the agent does, one method per request kind. `hello` and `cancel` are
/// the protocol's own and never reach the service. A new request kind (exec,
/// say) is a new method here and a new line in the method table.
pub trait AgentService: Send + Sync + 'static {
    /// This node's name, for hello.
    fn node_name(&self) -> String;
    fn node_facts(&self) -> impl Future<Output = ServiceResult<NodeFacts>> + Send;
    fn node_metrics(
        &self,
        query: MetricsQuery,
    ) -> impl Future<Output = ServiceResult<MetricsSeries>> + Send;
    fn create_pod(
        &self,
        params: CreatePod,
    ) -> impl Future<Output = ServiceResult<PodRecord>> + Send;
    fn list_pods(&self, params: ListPods) -> impl Future<Output = ServiceResult<PodList>> + Send;
    fn pod_status(&self, pod: PodRef) -> impl Future<Output = ServiceResult<PodRecord>> + Send;
    fn stop_pod(&self, params: StopPod) -> impl Future<Output = ServiceResult<PodRecord>> + Send;
    fn kill_pod(&self, pod: PodRef) -> impl Future<Output = ServiceResult<PodRecord>> + Send;
    fn delete_pod(&self, params: DeletePod) -> impl Future<Output = ServiceResult<Empty>> + Send;
    fn pause_pod(&self, pod: PodRef) -> impl Future<Output = ServiceResult<PodRecord>> + Send;
    fn resume_pod(&self, pod: PodRef) -> impl Future<Output = ServiceResult<PodRecord>> + Send;
    /// Fails before streaming when the pod or container does not exist.
    /// Yields the records in batches of what was written together (never
    /// empty); the server sends them as they are, or one record an item to
    /// a client that did not ask for `batch`.
    fn pod_logs(
        &self,
        query: LogsQuery,
    ) -> impl Future<Output = ServiceResult<ServiceStream<LogBatch>>> + Send;
    fn pod_stats(
        &self,
        query: StatsQuery,
    ) -> impl Future<Output = ServiceResult<PodStatsList>> + Send;
    fn subscribe_events(
        &self,
        filter: EventFilter,
    ) -> impl Future<Output = ServiceResult<ServiceStream<Event>>> + Send;
    /// Refuses a stale generation with `conflict` and [`ObjectConflict`] details.
    ///
    /// [`ObjectConflict`]: super::messages::ObjectConflict
    fn put_object(&self, params: PutObject)
    -> impl Future<Output = ServiceResult<PutReply>> + Send;
    fn get_object(
        &self,
        params: GetObject,
    ) -> impl Future<Output = ServiceResult<ObjectRecord>> + Send;
    fn list_objects(
        &self,
        params: ListObjects,
    ) -> impl Future<Output = ServiceResult<ObjectList>> + Send;
    /// The matching objects (tombstones included), then each change.
    fn watch_objects(
        &self,
        params: WatchObjects,
    ) -> impl Future<Output = ServiceResult<ServiceStream<ObjectRecord>>> + Send;
    /// Refuses with `conflict` and [`LeaseRefused`] details.
    ///
    /// [`LeaseRefused`]: super::messages::LeaseRefused
    fn acquire_lease(
        &self,
        params: AcquireLease,
    ) -> impl Future<Output = ServiceResult<LeaseGrant>> + Send;
    fn release_lease(
        &self,
        params: ReleaseLease,
    ) -> impl Future<Output = ServiceResult<LeaseReleased>> + Send;
    fn lease_status(&self) -> impl Future<Output = ServiceResult<LeaseState>> + Send;
    /// Refuses a malformed subnet or route with `bad_request`.
    fn configure_network(
        &self,
        settings: NetworkSettings,
    ) -> impl Future<Output = ServiceResult<NetworkState>> + Send;
    fn network_status(&self) -> impl Future<Output = ServiceResult<NetworkState>> + Send;
    /// Starts a process in a container ([`super::exec`]). Fails before
    /// streaming when it cannot start; `control` brings the client's input,
    /// resizes and signals, in order. Dropping the stream must end the
    /// process.
    fn exec(
        &self,
        params: ExecStartParams,
        control: mpsc::Receiver<ExecControl>,
    ) -> impl Future<Output = ServiceResult<ServiceStream<ExecOutput>>> + Send;
}

/// Control requests queued for one exec before the connection's reader
/// waits for it to take them (a paste of ~1 MiB in 4 KiB chunks).
const EXEC_CONTROL_QUEUE: usize = 256;

/// Limits of a server; the defaults suit the agent.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The longest request line ([`MAX_REQUEST_LINE`]).
    pub max_line: usize,
    /// Requests one connection may have in flight; more are refused with `busy`.
    pub max_in_flight: usize,
    /// Reply lines queued for one connection before its request tasks wait.
    pub write_queue: usize,
    /// Bytes queued for one connection before its request tasks wait, so ten
    /// minutes of metrics asked for 64 times by a client that does not read
    /// cost the agent this much, not 64 copies.
    pub write_buffer_bytes: usize,
    /// A connection whose writes make no progress this long is dropped.
    pub write_timeout: Duration,
    /// A connection that has not said hello this long after connecting is closed.
    pub hello_timeout: Duration,
    /// Connections served at once; more are told `busy` and closed.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_line: MAX_REQUEST_LINE,
            max_in_flight: 64,
            write_queue: 256,
            write_buffer_bytes: 4 * 1024 * 1024,
            write_timeout: Duration::from_secs(30),
            hello_timeout: Duration::from_secs(10),
            max_connections: 128,
        }
    }
}

/// Serves `service` on `listener` with the default limits, for as long as the
/// task runs (a failed accept is logged and retried).
pub async fn serve<S: AgentService>(listener: UnixListener, service: Arc<S>) -> io::Result<()> {
    Server::new(service)
        .serve(listener, std::future::pending())
        .await
}

/// A server of one service.
pub struct Server<S> {
    service: Arc<S>,
    config: Arc<ServerConfig>,
    connections: Arc<Semaphore>,
    shutdown: CancellationToken,
    next_connection: Arc<AtomicU64>,
}

impl<S> Clone for Server<S> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
            config: self.config.clone(),
            connections: self.connections.clone(),
            shutdown: self.shutdown.clone(),
            next_connection: self.next_connection.clone(),
        }
    }
}

impl<S: AgentService> Server<S> {
    pub fn new(service: Arc<S>) -> Self {
        Self::with_config(service, ServerConfig::default())
    }

    pub fn with_config(service: Arc<S>, config: ServerConfig) -> Self {
        Self {
            service,
            connections: Arc::new(Semaphore::new(config.max_connections)),
            config: Arc::new(config),
            shutdown: CancellationToken::new(),
            next_connection: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Accepts connections until `shutdown` completes; then tells every client
    /// (`{"event": {"kind": "shutting_down"}}`), ends their streams, lets calls
    /// in flight answer, and returns once every connection has closed.
    pub async fn serve(
        self,
        listener: UnixListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let mut connections = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let peer = stream
                            .peer_cred()
                            .map(|c| format!("uid {} pid {}", c.uid(), c.pid().unwrap_or(0)))
                            .unwrap_or_else(|_| "unknown peer".into());
                        let server = self.clone();
                        connections.spawn(async move { server.serve_connection(stream, &peer).await });
                    }
                    Err(e) => {
                        // EMFILE and friends pass; spinning on them would not help.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
        drop(listener);
        self.shutdown.cancel();
        while connections.join_next().await.is_some() {}
        Ok(())
    }

    /// Serves one connection over any byte stream (a unix socket, a test
    /// duplex, an SSH channel) until it closes.
    pub async fn serve_connection<IO>(&self, io: IO, peer: &str)
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let number = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("agent_connection", conn = number, peer = %peer);
        let (reader, mut writer) = tokio::io::split(io);
        let Ok(permit) = self.connections.clone().try_acquire_owned() else {
            tracing::warn!(parent: &span, "too many connections; refusing one");
            let line =
                Reply::error(None, ErrorCode::Busy, "the agent has too many connections").encode();
            let _ = tokio::time::timeout(Duration::from_secs(1), writer.write_all(&line)).await;
            return;
        };
        let (out, queue) = mpsc::channel(self.config.write_queue.max(1));
        let closing = CancellationToken::new();
        let writer_task = tokio::spawn(
            write_loop(writer, queue, self.config.write_timeout, closing.clone())
                .instrument(span.clone()),
        );
        let conn = Connection {
            service: self.service.clone(),
            config: self.config.clone(),
            out: Outbox {
                queue: out,
                bytes: Arc::new(Semaphore::new(self.config.write_buffer_bytes.max(1))),
                byte_limit: self.config.write_buffer_bytes.max(1),
                closing: closing.clone(),
            },
            closing,
            shutdown: self.shutdown.clone(),
            in_flight: InFlight::default(),
            permits: Arc::new(Semaphore::new(self.config.max_in_flight)),
            tasks: JoinSet::new(),
            version: None,
        };
        conn.run(LineReader::new(reader, self.config.max_line))
            .instrument(span)
            .await;
        let _ = writer_task.await;
        drop(permit);
    }
}

/// Where a connection's reply lines go: its bounded queue, unless it is closing.
#[derive(Clone)]
struct Outbox {
    queue: mpsc::Sender<Queued>,
    /// One permit per queued byte, returned once the writer has written it.
    bytes: Arc<Semaphore>,
    byte_limit: usize,
    closing: CancellationToken,
}

/// A line waiting for the writer, holding its share of the byte budget.
struct Queued {
    line: Vec<u8>,
    _budget: Option<OwnedSemaphorePermit>,
}

impl Outbox {
    /// Queues a reply, waiting for room; false once the connection is closing.
    async fn send(&self, reply: &Reply) -> bool {
        self.send_line(reply.encode()).await
    }

    /// Queues an encoded line (newline included), as [`Outbox::send`].
    async fn send_line(&self, line: Vec<u8>) -> bool {
        // A line bigger than the whole budget takes all of it, and goes alone.
        let cost = u32::try_from(line.len().min(self.byte_limit)).unwrap_or(u32::MAX);
        let queue = async {
            let budget = self.bytes.clone().acquire_many_owned(cost).await.ok();
            let queued = Queued {
                line,
                _budget: budget,
            };
            self.queue.send(queued).await.is_ok()
        };
        tokio::select! {
            _ = self.closing.cancelled() => false,
            sent = queue => sent,
        }
    }
}

struct InFlightEntry {
    token: CancellationToken,
    streaming: bool,
    /// An exec's way in for `exec.input`, `exec.resize`, `exec.signal`.
    control: Option<mpsc::Sender<ExecControl>>,
}

/// The requests of one connection that have not sent their last line.
#[derive(Clone, Default)]
struct InFlight(Arc<Mutex<HashMap<RequestId, InFlightEntry>>>);

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, HashMap<RequestId, InFlightEntry>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A request's place in flight: released (id freed, permit returned) just
/// before its last line is queued, so a client may reuse the id or send the
/// next request as soon as it reads that line.
struct Slot {
    id: RequestId,
    in_flight: InFlight,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.in_flight.lock().remove(&self.id);
        self.permit.take();
    }
}

/// Why the read loop stopped.
enum Stop {
    /// End of input: the client sent all it will; calls in flight still answer.
    Eof,
    /// The agent is shutting down: as EOF, after a notice.
    Shutdown,
    /// The connection is unusable (write stalled, read error, no hello).
    Drop,
}

struct Connection<S> {
    service: Arc<S>,
    config: Arc<ServerConfig>,
    out: Outbox,
    closing: CancellationToken,
    shutdown: CancellationToken,
    in_flight: InFlight,
    permits: Arc<Semaphore>,
    tasks: JoinSet<()>,
    /// The version agreed by hello; `None` until then.
    version: Option<&'static str>,
}

impl<S: AgentService> Connection<S> {
    async fn run<R: AsyncRead + Unpin>(mut self, mut reader: LineReader<R>) {
        tracing::debug!("connected");
        let hello_deadline = tokio::time::sleep(self.config.hello_timeout);
        tokio::pin!(hello_deadline);
        let stop = loop {
            tokio::select! {
                biased;
                _ = self.closing.cancelled() => break Stop::Drop,
                _ = self.shutdown.cancelled() => break Stop::Shutdown,
                _ = &mut hello_deadline, if self.version.is_none() => {
                    tracing::info!("no hello in time; closing");
                    let reply = Reply::error(None, ErrorCode::BadRequest, format!(
                        "no hello within {} s; closing", self.config.hello_timeout.as_secs()));
                    self.out.send(&reply).await;
                    break Stop::Eof;
                }
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Err(e) = joined
                        && e.is_panic()
                    {
                        tracing::error!("a request task panicked outside the service");
                    }
                }
                line = reader.next_line() => match line {
                    None => break Stop::Eof,
                    Some(Ok(line)) => self.handle_line(&line).await,
                    Some(Err(e @ LineError::TooLarge { .. })) => {
                        tracing::debug!("refused an oversized line");
                        self.out.send(&Reply::error(None, ErrorCode::TooLarge, e.to_string())).await;
                    }
                    Some(Err(LineError::Io(e))) => {
                        tracing::debug!(error = %e, "reading failed");
                        break Stop::Drop;
                    }
                },
            }
        };
        match stop {
            Stop::Drop => {
                self.closing.cancel();
                self.tasks.shutdown().await;
            }
            Stop::Eof | Stop::Shutdown => {
                if matches!(stop, Stop::Shutdown) {
                    let notice = Notice::ShuttingDown {
                        message: "the agent is stopping".into(),
                    };
                    let event = serde_json::to_value(&notice).unwrap_or(Value::Null);
                    self.out.send(&Reply::Event { event }).await;
                }
                // Streams end (their clients cannot cancel them any more);
                // calls in flight finish and answer.
                for entry in self.in_flight.lock().values() {
                    if entry.streaming {
                        entry.token.cancel();
                    }
                }
                loop {
                    tokio::select! {
                        _ = self.closing.cancelled() => { self.tasks.shutdown().await; break }
                        joined = self.tasks.join_next() => if joined.is_none() { break },
                    }
                }
            }
        }
        tracing::debug!("disconnected");
        // Dropping `self.out` (the last sender) lets the writer drain and close.
    }

    async fn handle_line(&mut self, line: &[u8]) {
        let request = match Request::decode(line) {
            Ok(r) => r,
            Err(refusal) => {
                tracing::debug!(error = %refusal.error, "refused a request");
                self.out.send(&refusal.reply()).await;
                return;
            }
        };
        if self.version.is_none() && request.method != "hello" {
            let reply = Reply::error(
                Some(request.id),
                ErrorCode::BadRequest,
                "the first request on a connection must be hello",
            );
            self.out.send(&reply).await;
            return;
        }
        let (id, call) = match Call::decode(request) {
            Ok(c) => c,
            Err(refusal) => {
                tracing::debug!(error = %refusal.error, "refused a request");
                self.out.send(&refusal.reply()).await;
                return;
            }
        };
        match call {
            Call::Hello(params) => self.hello(id, params).await,
            Call::Cancel(CancelParams { id: target }) => {
                let found = match self.in_flight.lock().get(&target) {
                    Some(entry) if entry.streaming => {
                        entry.token.cancel();
                        true
                    }
                    _ => false,
                };
                self.out
                    .send(&Reply::result(id, &Cancelled { found }))
                    .await;
            }
            Call::ExecInput(input) => {
                let target = input.id;
                self.control(id, target, input.controls()).await;
            }
            Call::ExecResize(resize) => {
                let control = ExecControl::Resize {
                    cols: resize.cols,
                    rows: resize.rows,
                };
                self.control(id, resize.id, [control]).await;
            }
            Call::ExecSignal(params) => match signal_named(&params.signal) {
                Some(signal) => {
                    self.control(id, params.id, [ExecControl::Signal(signal)])
                        .await
                }
                None => {
                    let names = super::exec::SIGNALS.map(|(name, _)| name).join(", ");
                    let message = format!("unknown signal {:?}; one of {names}", params.signal);
                    self.out
                        .send(&Reply::error(Some(id), ErrorCode::BadRequest, message))
                        .await;
                }
            },
            call => self.start(id, call).await,
        }
    }

    /// Hands `controls` to the exec started by request `target`, in order.
    /// Its queue full, this waits (the client's input outran the process),
    /// which holds this connection's other requests back meanwhile, as a
    /// full SSH window would.
    async fn control(
        &mut self,
        id: RequestId,
        target: RequestId,
        controls: impl IntoIterator<Item = ExecControl>,
    ) {
        let sender = self
            .in_flight
            .lock()
            .get(&target)
            .and_then(|entry| entry.control.clone());
        let mut found = sender.is_some();
        if let Some(sender) = sender {
            for control in controls {
                let sent = tokio::select! {
                    _ = self.closing.cancelled() => return,
                    sent = sender.send(control) => sent,
                };
                if sent.is_err() {
                    // The exec ended while this was on its way.
                    found = false;
                    break;
                }
            }
        }
        self.out
            .send(&Reply::result(id, &Delivered { found }))
            .await;
    }

    async fn hello(&mut self, id: RequestId, params: HelloParams) {
        if self.version.is_some() {
            let reply = Reply::error(Some(id), ErrorCode::BadRequest, "hello was already said");
            self.out.send(&reply).await;
            return;
        }
        let Some(version) = choose_version(&params.versions) else {
            let reply = Reply::error(
                Some(id),
                ErrorCode::UnsupportedVersion,
                format!(
                    "this agent speaks {}; the client offered {:?}",
                    super::messages::SUPPORTED_VERSIONS.join(", "),
                    params.versions
                ),
            );
            self.out.send(&reply).await;
            return;
        };
        tracing::info!(client = %params.client, version, "hello");
        self.version = Some(version);
        let reply = HelloReply {
            version: version.to_string(),
            agent_version: format!("flotilla-agent {}", env!("CARGO_PKG_VERSION")),
            node: self.service.node_name(),
            capabilities: METHODS
                .iter()
                .chain(FEATURES)
                .map(|m| m.to_string())
                .collect(),
            pid: Some(std::process::id()),
            agent_binary: std::env::current_exe()
                .ok()
                .map(|p| p.display().to_string()),
        };
        self.out.send(&Reply::result(id, &reply)).await;
    }

    /// Runs a service call as its own task, within the connection's bound.
    async fn start(&mut self, id: RequestId, call: Call) {
        let refuse = |code, message: String| Reply::error(Some(id), code, message);
        if self.in_flight.lock().contains_key(&id) {
            let reply = refuse(
                ErrorCode::BadRequest,
                format!("request id {id} is already in flight"),
            );
            self.out.send(&reply).await;
            return;
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            let reply = refuse(
                ErrorCode::Busy,
                format!(
                    "{} requests are already in flight on this connection",
                    self.config.max_in_flight
                ),
            );
            self.out.send(&reply).await;
            return;
        };
        let token = self.closing.child_token();
        let (control, control_queue) = match &call {
            Call::ExecStart(_) => {
                let (sender, receiver) = mpsc::channel(EXEC_CONTROL_QUEUE);
                (Some(sender), Some(receiver))
            }
            _ => (None, None),
        };
        self.in_flight.lock().insert(
            id,
            InFlightEntry {
                token: token.clone(),
                streaming: call.is_streaming(),
                control,
            },
        );
        let slot = Slot {
            id,
            in_flight: self.in_flight.clone(),
            permit: Some(permit),
        };
        let method = call.method();
        let task = run_call(
            self.service.clone(),
            id,
            (call, control_queue),
            token,
            self.out.clone(),
            slot,
        );
        self.tasks
            .spawn(task.instrument(tracing::debug_span!("request", id, method)));
    }
}

/// The typed outcome of a call, made uniform for writing: a stream's items
/// come already encoded (their JSON), see [`Reply::encode_stream_item`].
enum Outcome {
    Unary(Result<Value, ErrorBody>),
    Stream(Result<BoxStream<'static, Result<Vec<u8>, ErrorBody>>, ErrorBody>),
}

fn unary<T: Serialize>(result: ServiceResult<T>) -> Outcome {
    Outcome::Unary(
        result
            .map_err(|e| e.body())
            .and_then(|v| serde_json::to_value(v).map_err(encode_error)),
    )
}

fn streaming<T: Serialize + Send + 'static>(result: ServiceResult<ServiceStream<T>>) -> Outcome {
    Outcome::Stream(result.map_err(|e| e.body()).map(|stream| {
        stream
            .map(|item| {
                item.map_err(|e| e.body())
                    .and_then(|v| serde_json::to_vec(&v).map_err(encode_error))
            })
            .boxed()
    }))
}

/// `pods.logs`: the service's batches as they are when the client asked for
/// `batch`, else one record an item, as before batches existed.
fn log_items(batch: bool, result: ServiceResult<ServiceStream<LogBatch>>) -> Outcome {
    if batch {
        return streaming(result);
    }
    streaming(result.map(|batches| {
        batches
            .flat_map(|item| match item {
                Ok(batch) => stream::iter(batch.records.into_iter().map(Ok)).left_stream(),
                Err(e) => stream::once(std::future::ready(Err(e))).right_stream(),
            })
            .boxed()
    }))
}

fn encode_error(e: serde_json::Error) -> ErrorBody {
    tracing::error!(error = %e, "a reply could not be encoded");
    ErrorBody::new(ErrorCode::Internal, format!("cannot encode the reply: {e}"))
}

async fn dispatch<S: AgentService>(
    service: &S,
    call: Call,
    control: Option<mpsc::Receiver<ExecControl>>,
) -> Outcome {
    match call {
        Call::NodeFacts(Empty {}) => unary(service.node_facts().await),
        Call::NodeMetrics(q) => unary(service.node_metrics(q).await),
        Call::PodsCreate(p) => unary(service.create_pod(p).await),
        Call::PodsList(p) => unary(service.list_pods(p).await),
        Call::PodsStatus(p) => unary(service.pod_status(p).await),
        Call::PodsStop(p) => unary(service.stop_pod(p).await),
        Call::PodsKill(p) => unary(service.kill_pod(p).await),
        Call::PodsDelete(p) => unary(service.delete_pod(p).await),
        Call::PodsPause(p) => unary(service.pause_pod(p).await),
        Call::PodsResume(p) => unary(service.resume_pod(p).await),
        Call::PodsLogs(q) => log_items(q.batch, service.pod_logs(q).await),
        Call::PodsStats(q) => unary(service.pod_stats(q).await),
        Call::EventsSubscribe(f) => streaming(service.subscribe_events(f).await),
        Call::ObjectsPut(p) => unary(service.put_object(p).await),
        Call::ObjectsGet(p) => unary(service.get_object(p).await),
        Call::ObjectsList(p) => unary(service.list_objects(p).await),
        Call::ObjectsWatch(p) => streaming(service.watch_objects(p).await),
        Call::LeaseAcquire(p) => unary(service.acquire_lease(p).await),
        Call::LeaseRelease(p) => unary(service.release_lease(p).await),
        Call::LeaseStatus(Empty {}) => unary(service.lease_status().await),
        Call::NetworkConfigure(p) => unary(service.configure_network(p).await),
        Call::NetworkStatus(Empty {}) => unary(service.network_status().await),
        Call::ExecStart(p) => match control {
            Some(control) => streaming(service.exec(p, control).await),
            None => Outcome::Unary(Err(ErrorBody::new(
                ErrorCode::Internal,
                "an exec started without its control queue",
            ))),
        },
        // The connection answers these itself; they never get here.
        Call::Hello(_)
        | Call::Cancel(_)
        | Call::ExecInput(_)
        | Call::ExecResize(_)
        | Call::ExecSignal(_) => Outcome::Unary(Err(ErrorBody::new(
            ErrorCode::Internal,
            "hello, cancel and exec controls are not service calls",
        ))),
    }
}

fn panicked(id: RequestId) -> Reply {
    tracing::error!(id, "the service panicked handling a request");
    Reply::error(
        Some(id),
        ErrorCode::Internal,
        "the agent failed handling this request (see its log)",
    )
}

/// One request from dispatch to its last line. A panic in the service becomes
/// an `internal` error for this request alone.
async fn run_call<S: AgentService>(
    service: Arc<S>,
    id: RequestId,
    (call, control): (Call, Option<mpsc::Receiver<ExecControl>>),
    token: CancellationToken,
    out: Outbox,
    slot: Slot,
) {
    let outcome = tokio::select! {
        biased;
        _ = token.cancelled() => {
            // A client's cancel (of a stream still starting) gets its end; a
            // closing connection gets nothing more.
            drop(slot);
            if !out.closing.is_cancelled() {
                out.send(&Reply::End { id }).await;
            }
            return;
        }
        outcome = AssertUnwindSafe(dispatch(&*service, call, control)).catch_unwind() => outcome,
    };
    let stream = match outcome {
        Err(_) => {
            drop(slot);
            out.send(&panicked(id)).await;
            return;
        }
        Ok(Outcome::Unary(result)) => {
            drop(slot);
            let reply = match result {
                Ok(result) => Reply::Result { id, result },
                Err(error) => Reply::Error {
                    id: Some(id),
                    error,
                },
            };
            out.send(&reply).await;
            return;
        }
        Ok(Outcome::Stream(Err(error))) => {
            drop(slot);
            out.send(&Reply::Error {
                id: Some(id),
                error,
            })
            .await;
            return;
        }
        Ok(Outcome::Stream(Ok(stream))) => stream,
    };
    stream_items(id, stream, token, out, slot).await;
}

async fn stream_items(
    id: RequestId,
    mut stream: BoxStream<'static, Result<Vec<u8>, ErrorBody>>,
    token: CancellationToken,
    out: Outbox,
    slot: Slot,
) {
    let last = loop {
        let next = tokio::select! {
            biased;
            _ = token.cancelled() => break Reply::End { id },
            next = AssertUnwindSafe(stream.next()).catch_unwind() => next,
        };
        match next {
            Ok(Some(Ok(item))) => {
                let line = Reply::encode_stream_item(id, &item);
                let sent = tokio::select! {
                    biased;
                    _ = token.cancelled() => break Reply::End { id },
                    sent = out.send_line(line) => sent,
                };
                if !sent {
                    return;
                }
            }
            Ok(Some(Err(error))) => {
                break Reply::Error {
                    id: Some(id),
                    error,
                };
            }
            Ok(None) => break Reply::End { id },
            Err(_) => break panicked(id),
        }
    };
    // Stop the source before saying the stream is over.
    drop(stream);
    drop(slot);
    out.send(&last).await;
}

/// What the writer gathers before writing: the lines queued in a burst go
/// out in one write (one SSH packet's worth) rather than one each.
const WRITE_BUFFER: usize = 64 * 1024;

/// Drains a connection's queue onto the transport. A write that makes no
/// progress within `timeout` means the client is not reading: the connection
/// is closed rather than left to hold its queue and tasks.
async fn write_loop<W: AsyncWrite>(
    writer: W,
    mut queue: mpsc::Receiver<Queued>,
    timeout: Duration,
    closing: CancellationToken,
) {
    let mut writer = std::pin::pin!(tokio::io::BufWriter::with_capacity(WRITE_BUFFER, writer));
    loop {
        // Held until written: its byte budget returns only then.
        let queued = tokio::select! {
            _ = closing.cancelled() => break,
            queued = queue.recv() => match queued {
                Some(queued) => queued,
                None => break,
            },
        };
        let written = async {
            writer.write_all(&queued.line).await?;
            // Flush only when nothing else is queued: one flush per burst.
            if queue.is_empty() {
                writer.flush().await?;
            }
            Ok::<_, io::Error>(())
        };
        match tokio::time::timeout(timeout, written).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "writing failed; closing");
                closing.cancel();
                break;
            }
            Err(_) => {
                tracing::warn!(
                    "the client read nothing for {} s; dropping the connection",
                    timeout.as_secs_f32()
                );
                closing.cancel();
                break;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), writer.shutdown()).await;
}

/// Why the agent's socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another agent is already serving on {0}")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket; not removing it")]
    NotASocket(PathBuf),
    #[error("{0} is a symbolic link; refusing to use it")]
    Symlink(PathBuf),
    #[error("the socket path {0} has no parent directory")]
    NoParent(PathBuf),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BindError + use<> {
    let path = path.to_path_buf();
    move |source| BindError::Io {
        action,
        path,
        source,
    }
}

/// Creates the socket's directory (mode 0700) and the socket (mode 0600).
/// A socket left by a dead agent is removed; one another agent answers on is
/// not. Must run inside a tokio runtime.
///
/// The socket is chmod-ed after bind, so for a moment it has the umask's mode;
/// the 0700 directory is what keeps others out meanwhile.
pub fn bind_socket(path: &Path) -> Result<UnixListener, BindError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| BindError::NoParent(path.to_path_buf()))?;
    std::fs::create_dir_all(dir).map_err(io_err("cannot create", dir))?;
    let meta = std::fs::symlink_metadata(dir).map_err(io_err("cannot stat", dir))?;
    if meta.file_type().is_symlink() {
        return Err(BindError::Symlink(dir.to_path_buf()));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io_err("cannot set the mode of", dir))?;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(BindError::InUse(path.to_path_buf())),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    tracing::info!(path = %path.display(), "removing a stale agent socket");
                    std::fs::remove_file(path).map_err(io_err("cannot remove", path))?;
                }
                Err(e) => return Err(io_err("cannot probe", path)(e)),
            }
        }
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(BindError::Symlink(path.to_path_buf()));
        }
        Ok(_) => return Err(BindError::NotASocket(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("cannot stat", path)(e)),
    }
    let listener = UnixListener::bind(path).map_err(io_err("cannot listen on", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io_err("cannot set the mode of", path))?;
    Ok(listener)
}
