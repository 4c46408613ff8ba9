//! The console's side: a [`Client`] over any byte stream (the agent's unix
//! socket today, an SSH direct-streamlocal channel in a node session), which
//! says hello, then multiplexes typed calls and streams on the one connection
//! by request id.
//!
//! One reader task routes every line to the call or stream waiting for it, so
//! it must never wait on a consumer: each stream has a bounded buffer, and a
//! stream whose consumer falls that far behind is cancelled and ends with
//! [`ClientError::StreamOverflow`] rather than stall every other call (or make
//! the agent drop the connection as a client that does not read).
//!
//! Calls have no timeout of their own; a node session wraps them in the
//! deadlines it wants.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};
use tokio::task::AbortHandle;

use super::codec::{LineError, LineReader, MAX_REPLY_LINE};
use super::exec::{
    Bytes, ExecInputParams, ExecOutput, ExecResizeParams, ExecSignalParams, ExecStartParams,
};
use super::messages::{
    AcquireLease, CancelParams, CreatePod, DeletePod, Empty, ErrorBody, ErrorCode, Event,
    EventFilter, GetObject, HelloParams, HelloReply, LOG_BATCH_CAPABILITY, LeaseGrant,
    LeaseReleased, LeaseState, ListObjects, ListPods, LogBatch, LogRecord, LogsQuery, MetricsQuery,
    NetworkSettings, NetworkState, Notice, ObjectList, ObjectRecord, PodList, PodRecord, PodRef,
    PodStatsList, PodsLogBatches, PutObject, PutReply, ReleaseLease, Reply, Request, RequestId,
    SUPPORTED_VERSIONS, StatsQuery, StopPod, Streaming, Unary, WatchObjects, method,
};
use crate::agent::node::{MetricsSeries, NodeFacts};
use crate::api::Pod;

/// What a call can fail with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The agent answered with an error.
    #[error("the agent refused: {0}")]
    Remote(ErrorBody),
    /// The connection is gone; the reason says why.
    #[error("the agent connection is closed: {0}")]
    Closed(String),
    /// The agent's answer is not what this method returns.
    #[error("cannot read the agent's answer to {method}: {message}")]
    Decode {
        method: &'static str,
        message: String,
    },
    /// The agent chose a version this client did not offer.
    #[error("the agent chose protocol {0}, which this console does not speak")]
    Version(String),
    /// This stream's consumer fell too far behind; the stream was cancelled.
    #[error("the stream was read too slowly and was cancelled")]
    StreamOverflow,
}

impl ClientError {
    /// The agent's error code, when the agent answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Remote(body) => Some(body.code),
            _ => None,
        }
    }

    /// The error's details read as `T` ([`ObjectConflict`], [`LeaseRefused`]),
    /// when the agent sent details of that shape.
    ///
    /// [`ObjectConflict`]: super::messages::ObjectConflict
    /// [`LeaseRefused`]: super::messages::LeaseRefused
    pub fn details<T: DeserializeOwned>(&self) -> Option<T> {
        match self {
            ClientError::Remote(body) => body.details(),
            _ => None,
        }
    }
}

/// How a client introduces itself and buffers.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// For the agent's log, e.g. `flotilla 0.1.0 (console)`.
    pub name: String,
    /// Versions offered in hello, newest first.
    pub versions: Vec<String>,
    /// The longest reply line read ([`MAX_REPLY_LINE`]).
    pub max_line: usize,
    /// Items a stream holds for a slow consumer; when full, the connection
    /// waits up to [`STREAM_STALL`] for room before cancelling the stream.
    pub stream_buffer: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            name: format!("flotilla {}", env!("CARGO_PKG_VERSION")),
            versions: SUPPORTED_VERSIONS.iter().map(|v| v.to_string()).collect(),
            max_line: MAX_REPLY_LINE,
            stream_buffer: 1024,
        }
    }
}

/// How a stream ended, for the consumer to read after its last item.
#[derive(Clone, Debug)]
enum StreamEnd {
    Done,
    Failed(ErrorBody),
    Overflow,
    Closed(String),
}

struct StreamSlot {
    items: mpsc::Sender<Value>,
    end: Arc<OnceLock<StreamEnd>>,
}

enum Pending {
    Unary(oneshot::Sender<Result<Value, ErrorBody>>),
    Stream(StreamSlot),
}

struct State {
    pending: HashMap<RequestId, Pending>,
    /// Set once, when the connection ends; no call is registered after.
    closed: Option<String>,
}

/// What the reader task and the callers share.
struct Shared {
    state: Mutex<State>,
    out: mpsc::Sender<Vec<u8>>,
    next_id: AtomicU64,
    notices: broadcast::Sender<Notice>,
    /// See [`UNARY_IN_FLIGHT`].
    unary_slots: Semaphore,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_id(&self) -> RequestId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Asks the agent to end stream `id`, without waiting (from `Drop` and the
    /// reader, which must not block). Its reply matches no call and is ignored.
    fn cancel_soon(&self, id: RequestId) {
        let request = cancel_request(self.next_id(), id);
        if self.out.try_send(request.encode()).is_err() {
            tracing::debug!(
                id,
                "could not queue a cancel; the stream's items will be ignored"
            );
        }
    }

    fn close(&self, reason: String) {
        let pending = {
            let mut state = self.lock();
            if state.closed.is_none() {
                state.closed = Some(reason.clone());
            }
            std::mem::take(&mut state.pending)
        };
        for (_, p) in pending {
            // A dropped oneshot reads as Closed; a stream needs its reason.
            if let Pending::Stream(slot) = p {
                let _ = slot.end.set(StreamEnd::Closed(reason.clone()));
            }
        }
    }

    /// Delivers a reply. A stream item whose consumer's buffer is full is
    /// handed back, to be waited for by [`read_loop`].
    fn route(&self, reply: Reply) -> Option<Stalled> {
        match reply {
            Reply::Event { event } => match serde_json::from_value::<Notice>(event) {
                Ok(notice) => {
                    tracing::info!(?notice, "agent notice");
                    let _ = self.notices.send(notice);
                }
                Err(e) => tracing::debug!(error = %e, "ignoring an unreadable notice"),
            },
            Reply::Error { id: None, error } => {
                // The agent could not tell which request this was about; a
                // well-behaved client never causes one.
                tracing::warn!(%error, "the agent refused a line it could not attribute");
            }
            Reply::Result { id, result } => self.finish(id, Ok(result)),
            Reply::Error {
                id: Some(id),
                error,
            } => self.finish(id, Err(error)),
            Reply::End { id } => {
                if let Some(Pending::Stream(slot)) = self.take_stream(id) {
                    let _ = slot.end.set(StreamEnd::Done);
                }
            }
            Reply::Stream { id, item } => {
                let mut state = self.lock();
                let Some(Pending::Stream(slot)) = state.pending.get(&id) else {
                    return None; // a cancelled stream's last items
                };
                match slot.items.try_send(item) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(item)) => {
                        return Some(Stalled {
                            id,
                            items: slot.items.clone(),
                            item,
                        });
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        state.pending.remove(&id);
                    }
                }
            }
        }
        None
    }

    /// Waits up to [`STREAM_STALL`] for a stream's consumer to make room
    /// (a burst of log lines outruns a consumer that does keep up), and
    /// cancels the stream when it does not. Other replies on this
    /// connection wait meanwhile, which is why the wait is short.
    async fn deliver_stalled(&self, stalled: Stalled) {
        let Stalled { id, items, item } = stalled;
        if items.send_timeout(item, STREAM_STALL).await.is_ok() {
            return;
        }
        if let Some(Pending::Stream(slot)) = self.take_stream(id) {
            let _ = slot.end.set(StreamEnd::Overflow);
        }
        tracing::warn!(id, "a stream's consumer fell behind; cancelling it");
        self.cancel_soon(id);
    }

    fn take_stream(&self, id: RequestId) -> Option<Pending> {
        let mut state = self.lock();
        match state.pending.get(&id) {
            Some(Pending::Stream(_)) => state.pending.remove(&id),
            _ => None,
        }
    }

    fn finish(&self, id: RequestId, outcome: Result<Value, ErrorBody>) {
        let pending = self.lock().pending.remove(&id);
        match (pending, outcome) {
            (Some(Pending::Unary(tx)), outcome) => {
                let _ = tx.send(outcome);
            }
            (Some(Pending::Stream(slot)), Err(error)) => {
                let _ = slot.end.set(StreamEnd::Failed(error));
            }
            (Some(Pending::Stream(slot)), Ok(_)) => {
                let _ = slot.end.set(StreamEnd::Failed(ErrorBody::new(
                    ErrorCode::Other,
                    "the agent answered a stream with a single result",
                )));
            }
            (None, _) => tracing::debug!(id, "a reply for no waiting call"),
        }
    }
}

/// How long a stream's full buffer may hold up the connection before the
/// stream is cancelled as read too slowly.
const STREAM_STALL: Duration = Duration::from_secs(2);

/// Unary calls one connection has in flight at once; more wait their turn
/// here. The agent answers `busy` past 64 requests in flight on a
/// connection, streams included, so a burst (a controller binding a
/// hundred pods writes a hundred objects to every agent) would otherwise be
/// refused in part; this leaves room for 32 open streams beside it.
const UNARY_IN_FLIGHT: usize = 32;

/// Log batches a stream holds for a slow consumer (each up to ~64 KiB of
/// text, so ~4 MiB), in place of [`ClientOptions::stream_buffer`] items.
const LOG_BATCH_BUFFER: usize = 64;

/// A stream item waiting for room in its consumer's buffer.
struct Stalled {
    id: RequestId,
    items: mpsc::Sender<Value>,
    item: Value,
}

fn cancel_request(id: RequestId, target: RequestId) -> Request {
    let mut params = Map::new();
    params.insert("id".into(), target.into());
    Request {
        id,
        method: <method::Cancel as super::messages::Method>::NAME.into(),
        params,
    }
}

/// Owns the connection's tasks: when the last handle (client or stream) goes,
/// they stop.
struct Inner {
    shared: Arc<Shared>,
    hello: HelloReply,
    options: ClientOptions,
    tasks: [AbortHandle; 2],
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A connection to one agent. Cheap to clone; calls from many tasks share it.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("node", &self.inner.hello.node)
            .field("version", &self.inner.hello.version)
            .finish()
    }
}

impl Client {
    /// Says hello over `io` and returns a client once the agent has agreed a
    /// version. Must run inside a tokio runtime.
    pub async fn connect<IO>(io: IO, options: ClientOptions) -> Result<Client, ClientError>
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (reader, writer) = tokio::io::split(io);
        let (out, queue) = mpsc::channel(256);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: HashMap::new(),
                closed: None,
            }),
            out,
            next_id: AtomicU64::new(1),
            notices: broadcast::channel(16).0,
            unary_slots: Semaphore::new(UNARY_IN_FLIGHT),
        });
        let writer_task = tokio::spawn(write_loop(writer, queue, shared.clone()));
        let reader_task = tokio::spawn(read_loop(
            LineReader::new(reader, options.max_line),
            shared.clone(),
        ));
        let tasks = [writer_task.abort_handle(), reader_task.abort_handle()];
        let hello_params = HelloParams {
            versions: options.versions.clone(),
            client: options.name.clone(),
        };
        let raw = match call_raw(&shared, "hello", &hello_params).await {
            Ok(raw) => raw,
            Err(e) => {
                tasks.iter().for_each(AbortHandle::abort);
                return Err(e);
            }
        };
        let hello: HelloReply = decode("hello", raw)?;
        if !options.versions.contains(&hello.version) {
            tasks.iter().for_each(AbortHandle::abort);
            return Err(ClientError::Version(hello.version));
        }
        tracing::debug!(node = %hello.node, version = %hello.version, "agent connected");
        Ok(Client {
            inner: Arc::new(Inner {
                shared,
                hello,
                options,
                tasks,
            }),
        })
    }

    /// What the agent said in hello: version, its build, node, capabilities.
    pub fn hello(&self) -> &HelloReply {
        &self.inner.hello
    }

    /// Whether the agent serves `capability` (a method name or feature flag).
    pub fn supports(&self, capability: &str) -> bool {
        self.inner
            .hello
            .capabilities
            .iter()
            .any(|c| c == capability)
    }

    /// Why the connection closed, once it has.
    pub fn closed(&self) -> Option<String> {
        self.inner.shared.lock().closed.clone()
    }

    /// Unsolicited notices from the agent (e.g. that it is shutting down).
    pub fn notices(&self) -> broadcast::Receiver<Notice> {
        self.inner.shared.notices.subscribe()
    }

    /// Calls a method answered by one result.
    pub async fn call<M: Unary>(&self, params: &M::Params) -> Result<M::Output, ClientError> {
        decode(
            M::NAME,
            call_raw(&self.inner.shared, M::NAME, params).await?,
        )
    }

    /// Starts a streamed method. Its failure to start (say, `not_found`) is
    /// the stream's first and last item.
    pub async fn stream<M: Streaming>(
        &self,
        params: &M::Params,
    ) -> Result<CallStream<M::Item>, ClientError> {
        self.stream_buffered::<M>(params, self.inner.options.stream_buffer)
            .await
    }

    /// [`Client::stream`] holding at most `buffer` items for a slow consumer.
    async fn stream_buffered<M: Streaming>(
        &self,
        params: &M::Params,
        buffer: usize,
    ) -> Result<CallStream<M::Item>, ClientError> {
        let shared = &self.inner.shared;
        let id = shared.next_id();
        let (items, rx) = mpsc::channel(buffer.max(1));
        let end = Arc::new(OnceLock::new());
        let slot = StreamSlot {
            items,
            end: end.clone(),
        };
        register(shared, id, Pending::Stream(slot))?;
        send(shared, id, M::NAME, params).await?;
        Ok(CallStream {
            id,
            method: M::NAME,
            items: rx,
            end,
            client: self.clone(),
            finished: false,
            _item: PhantomData,
        })
    }

    pub async fn node_facts(&self) -> Result<NodeFacts, ClientError> {
        self.call::<method::NodeFacts>(&Empty {}).await
    }

    /// The metrics ring, or its samples after `since`.
    pub async fn node_metrics(&self, since: Option<u64>) -> Result<MetricsSeries, ClientError> {
        self.call::<method::NodeMetrics>(&MetricsQuery { since })
            .await
    }

    pub async fn create_pod(&self, pod: Pod) -> Result<PodRecord, ClientError> {
        self.call::<method::PodsCreate>(&CreatePod { pod }).await
    }

    pub async fn list_pods(&self, namespace: Option<String>) -> Result<PodList, ClientError> {
        self.call::<method::PodsList>(&ListPods { namespace }).await
    }

    pub async fn pod_status(&self, pod: &PodRef) -> Result<PodRecord, ClientError> {
        self.call::<method::PodsStatus>(pod).await
    }

    pub async fn stop_pod(
        &self,
        pod: &PodRef,
        grace_seconds: Option<u64>,
    ) -> Result<PodRecord, ClientError> {
        let params = StopPod {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            grace_seconds,
        };
        self.call::<method::PodsStop>(&params).await
    }

    pub async fn kill_pod(&self, pod: &PodRef) -> Result<PodRecord, ClientError> {
        self.call::<method::PodsKill>(pod).await
    }

    pub async fn delete_pod(
        &self,
        pod: &PodRef,
        grace_seconds: Option<u64>,
    ) -> Result<(), ClientError> {
        let params = DeletePod {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            grace_seconds,
        };
        self.call::<method::PodsDelete>(&params).await.map(|_| ())
    }

    pub async fn pause_pod(&self, pod: &PodRef) -> Result<PodRecord, ClientError> {
        self.call::<method::PodsPause>(pod).await
    }

    pub async fn resume_pod(&self, pod: &PodRef) -> Result<PodRecord, ClientError> {
        self.call::<method::PodsResume>(pod).await
    }

    /// A container's log one record at a time ([`Client::log_batches`],
    /// flattened).
    pub async fn logs(&self, query: &LogsQuery) -> Result<LogRecords, ClientError> {
        Ok(self.log_batches(query).await?.records())
    }

    /// A container's log in batches: as the agent sends them when it lists
    /// [`LOG_BATCH_CAPABILITY`] (`query.batch` is set for it), one record
    /// a batch from an agent that predates batches (`batch` is left out).
    pub async fn log_batches(&self, query: &LogsQuery) -> Result<LogBatches, ClientError> {
        let batch = self.supports(LOG_BATCH_CAPABILITY);
        let query = LogsQuery {
            batch,
            ..query.clone()
        };
        let source = if batch {
            // A batch holds up to ~64 KiB: fewer of them are buffered than
            // of single items, so a stalled consumer costs a few MiB.
            let buffer = self.inner.options.stream_buffer.min(LOG_BATCH_BUFFER);
            LogSource::Batches(
                self.stream_buffered::<PodsLogBatches>(&query, buffer)
                    .await?,
            )
        } else {
            LogSource::Records(self.stream::<method::PodsLogs>(&query).await?)
        };
        Ok(LogBatches { source })
    }

    pub async fn pod_stats(&self, query: &StatsQuery) -> Result<PodStatsList, ClientError> {
        self.call::<method::PodsStats>(query).await
    }

    pub async fn subscribe_events(
        &self,
        filter: &EventFilter,
    ) -> Result<CallStream<Event>, ClientError> {
        self.stream::<method::EventsSubscribe>(filter).await
    }

    /// Stores a version of a cluster object (or its tombstone). A stale
    /// generation fails with `conflict`; its [`ClientError::details`] are an
    /// [`ObjectConflict`](super::messages::ObjectConflict).
    pub async fn put_object(&self, put: &PutObject) -> Result<PutReply, ClientError> {
        self.call::<method::ObjectsPut>(put).await
    }

    pub async fn get_object(&self, get: &GetObject) -> Result<ObjectRecord, ClientError> {
        self.call::<method::ObjectsGet>(get).await
    }

    pub async fn list_objects(&self, list: &ListObjects) -> Result<ObjectList, ClientError> {
        self.call::<method::ObjectsList>(list).await
    }

    pub async fn watch_objects(
        &self,
        watch: &WatchObjects,
    ) -> Result<CallStream<ObjectRecord>, ClientError> {
        self.stream::<method::ObjectsWatch>(watch).await
    }

    /// Takes or renews the controller lease. A refusal fails with
    /// `conflict`; its [`ClientError::details`] are a
    /// [`LeaseRefused`](super::messages::LeaseRefused).
    pub async fn acquire_lease(
        &self,
        holder: &str,
        ttl_ms: u64,
    ) -> Result<LeaseGrant, ClientError> {
        let params = AcquireLease {
            holder: holder.to_string(),
            ttl_ms,
        };
        self.call::<method::LeaseAcquire>(&params).await
    }

    pub async fn release_lease(&self, holder: &str) -> Result<LeaseReleased, ClientError> {
        let params = ReleaseLease {
            holder: holder.to_string(),
        };
        self.call::<method::LeaseRelease>(&params).await
    }

    pub async fn lease_status(&self) -> Result<LeaseState, ClientError> {
        self.call::<method::LeaseStatus>(&Empty {}).await
    }

    pub async fn configure_network(
        &self,
        settings: &NetworkSettings,
    ) -> Result<NetworkState, ClientError> {
        self.call::<method::NetworkConfigure>(settings).await
    }

    pub async fn network_status(&self) -> Result<NetworkState, ClientError> {
        self.call::<method::NetworkStatus>(&Empty {}).await
    }

    /// Starts a process in a container (an agent that lists `exec.start`).
    /// Its failure to start is the output's first and last item.
    pub async fn exec(&self, params: &ExecStartParams) -> Result<ExecSession, ClientError> {
        let output = self.stream::<method::ExecStart>(params).await?;
        let control = ExecControls {
            id: output.id(),
            client: self.clone(),
        };
        Ok(ExecSession { output, control })
    }

    /// Sends a call whose answer nobody waits for; it is dropped on arrival.
    /// Calls sent so reach the agent in the order they were sent.
    async fn send_unanswered<M: Unary>(&self, params: &M::Params) -> Result<(), ClientError> {
        let shared = &self.inner.shared;
        let id = shared.next_id();
        let (answer, _) = oneshot::channel();
        register(shared, id, Pending::Unary(answer))?;
        send(shared, id, M::NAME, params).await
    }
}

/// A running exec: its output (ending after the `exit` item) and the way
/// to steer it. Dropping the output before the end cancels the exec, which
/// hangs its process up.
pub struct ExecSession {
    pub output: CallStream<ExecOutput>,
    pub control: ExecControls,
}

/// Input, resizes and signals for one exec; cheap to clone. Each is sent
/// without waiting for the agent's answer (a keystroke must not wait a
/// round trip for the previous one), in order.
#[derive(Clone)]
pub struct ExecControls {
    id: RequestId,
    client: Client,
}

impl ExecControls {
    pub async fn input(&self, data: Vec<u8>) -> Result<(), ClientError> {
        self.send_input(data, false).await
    }

    /// No more input: the process reads EOF.
    pub async fn close_stdin(&self) -> Result<(), ClientError> {
        self.send_input(Vec::new(), true).await
    }

    async fn send_input(&self, data: Vec<u8>, eof: bool) -> Result<(), ClientError> {
        let input = ExecInputParams {
            id: self.id,
            data: Bytes(data),
            eof,
        };
        self.client
            .send_unanswered::<method::ExecInput>(&input)
            .await
    }

    pub async fn resize(&self, cols: u16, rows: u16) -> Result<(), ClientError> {
        let resize = ExecResizeParams {
            id: self.id,
            cols,
            rows,
        };
        self.client
            .send_unanswered::<method::ExecResize>(&resize)
            .await
    }

    /// `signal` by name without `SIG` (`INT`, `TERM`, …).
    pub async fn signal(&self, signal: &str) -> Result<(), ClientError> {
        let signal = ExecSignalParams {
            id: self.id,
            signal: signal.to_string(),
        };
        self.client
            .send_unanswered::<method::ExecSignal>(&signal)
            .await
    }
}

fn register(shared: &Shared, id: RequestId, pending: Pending) -> Result<(), ClientError> {
    let mut state = shared.lock();
    if let Some(reason) = &state.closed {
        return Err(ClientError::Closed(reason.clone()));
    }
    state.pending.insert(id, pending);
    Ok(())
}

async fn send(
    shared: &Shared,
    id: RequestId,
    method: &str,
    params: &impl Serialize,
) -> Result<(), ClientError> {
    let params = match serde_json::to_value(params) {
        Ok(Value::Object(map)) => map,
        Ok(_) | Err(_) => {
            shared.lock().pending.remove(&id);
            return Err(ClientError::Decode {
                method: "request",
                message: format!("the params of {method} are not a JSON object"),
            });
        }
    };
    let request = Request {
        id,
        method: method.to_string(),
        params,
    };
    if shared.out.send(request.encode()).await.is_err() {
        shared.lock().pending.remove(&id);
        return Err(closed_error(shared));
    }
    Ok(())
}

async fn call_raw(
    shared: &Shared,
    method: &str,
    params: &impl Serialize,
) -> Result<Value, ClientError> {
    // Held until the answer (or until the caller gives up on it).
    let _slot = shared
        .unary_slots
        .acquire()
        .await
        .map_err(|_| closed_error(shared))?;
    let id = shared.next_id();
    let (tx, rx) = oneshot::channel();
    register(shared, id, Pending::Unary(tx))?;
    send(shared, id, method, params).await?;
    match rx.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(body)) => Err(ClientError::Remote(body)),
        Err(_) => Err(closed_error(shared)),
    }
}

fn closed_error(shared: &Shared) -> ClientError {
    let reason = shared.lock().closed.clone();
    ClientError::Closed(reason.unwrap_or_else(|| "the connection ended".into()))
}

fn decode<T: DeserializeOwned>(method: &'static str, value: Value) -> Result<T, ClientError> {
    serde_json::from_value(value).map_err(|e| ClientError::Decode {
        method,
        message: e.to_string(),
    })
}

async fn read_loop<R: AsyncRead + Unpin>(mut reader: LineReader<R>, shared: Arc<Shared>) {
    let reason = loop {
        match reader.next_line().await {
            None => break "the agent closed the connection".to_string(),
            Some(Ok(line)) => match Reply::decode(&line) {
                Ok(reply) => {
                    if let Some(stalled) = shared.route(reply) {
                        shared.deliver_stalled(stalled).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "ignoring an unreadable line from the agent"),
            },
            Some(Err(e @ LineError::TooLarge { .. })) => {
                // Its call will wait; the caller's deadline handles that.
                tracing::warn!(error = %e, "ignoring an oversized line from the agent");
            }
            Some(Err(LineError::Io(e))) => break format!("reading from the agent failed: {e}"),
        }
    };
    tracing::debug!(%reason, "agent connection closed");
    shared.close(reason);
}

async fn write_loop<W: AsyncWrite>(
    writer: W,
    mut queue: mpsc::Receiver<Vec<u8>>,
    shared: Arc<Shared>,
) {
    let mut writer = std::pin::pin!(writer);
    while let Some(line) = queue.recv().await {
        let mut result = writer.write_all(&line).await;
        if result.is_ok() && queue.is_empty() {
            result = writer.flush().await;
        }
        if let Err(e) = result {
            shared.close(format!("writing to the agent failed: {e}"));
            return;
        }
    }
}

/// The items of a streamed call, ending with `None` after the agent's `end`,
/// or with one `Err` (the agent's error, a closed connection, an overflow).
/// Dropping it before the end cancels the stream on the agent.
pub struct CallStream<T> {
    id: RequestId,
    method: &'static str,
    items: mpsc::Receiver<Value>,
    end: Arc<OnceLock<StreamEnd>>,
    client: Client,
    finished: bool,
    _item: PhantomData<fn() -> T>,
}

impl<T> CallStream<T> {
    /// The request id, which `cancel` names.
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// Asks the agent to end the stream and waits for its answer; items still
    /// buffered are dropped.
    pub async fn cancel(mut self) -> Result<(), ClientError> {
        self.finished = true;
        let shared = &self.client.inner.shared;
        shared.lock().pending.remove(&self.id);
        call_raw(shared, "cancel", &CancelParams { id: self.id })
            .await
            .map(|_| ())
    }
}

impl<T: DeserializeOwned> Stream for CallStream<T> {
    type Item = Result<T, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match self.items.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(value)) => Poll::Ready(Some(decode(self.method, value))),
            Poll::Ready(None) => {
                self.finished = true;
                Poll::Ready(match self.end.get() {
                    Some(StreamEnd::Done) => None,
                    Some(StreamEnd::Failed(body)) => Some(Err(ClientError::Remote(body.clone()))),
                    Some(StreamEnd::Overflow) => Some(Err(ClientError::StreamOverflow)),
                    Some(StreamEnd::Closed(reason)) => {
                        Some(Err(ClientError::Closed(reason.clone())))
                    }
                    None => Some(Err(closed_error(&self.client.inner.shared))),
                })
            }
        }
    }
}

impl<T> Drop for CallStream<T> {
    fn drop(&mut self) {
        if self.finished || self.end.get().is_some() {
            return;
        }
        let shared = &self.client.inner.shared;
        if shared.lock().pending.remove(&self.id).is_some() {
            shared.cancel_soon(self.id);
        }
    }
}

/// A container's log from [`Client::log_batches`], a batch at a time, oldest
/// first; it ends as a [`CallStream`] does, and dropping it cancels it.
pub struct LogBatches {
    source: LogSource,
}

enum LogSource {
    Batches(CallStream<LogBatch>),
    /// An agent without batches: one record an item.
    Records(CallStream<LogRecord>),
}

impl LogBatches {
    /// The request id, which `cancel` names.
    pub fn id(&self) -> RequestId {
        match &self.source {
            LogSource::Batches(s) => s.id(),
            LogSource::Records(s) => s.id(),
        }
    }

    /// Asks the agent to end the stream, as [`CallStream::cancel`].
    pub async fn cancel(self) -> Result<(), ClientError> {
        match self.source {
            LogSource::Batches(s) => s.cancel().await,
            LogSource::Records(s) => s.cancel().await,
        }
    }

    /// The same log one record at a time.
    pub fn records(self) -> LogRecords {
        LogRecords {
            batches: self,
            buffered: Vec::new().into_iter(),
        }
    }
}

impl Stream for LogBatches {
    type Item = Result<Vec<LogRecord>, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match &mut self.source {
            LogSource::Batches(s) => Pin::new(s)
                .poll_next(cx)
                .map(|item| item.map(|batch| batch.map(|b| b.records))),
            LogSource::Records(s) => Pin::new(s)
                .poll_next(cx)
                .map(|item| item.map(|record| record.map(|r| vec![r]))),
        }
    }
}

/// A container's log from [`Client::logs`], one record at a time.
pub struct LogRecords {
    batches: LogBatches,
    buffered: std::vec::IntoIter<LogRecord>,
}

impl LogRecords {
    /// The request id, which `cancel` names.
    pub fn id(&self) -> RequestId {
        self.batches.id()
    }

    /// Asks the agent to end the stream; records still buffered are dropped.
    pub async fn cancel(self) -> Result<(), ClientError> {
        self.batches.cancel().await
    }
}

impl Stream for LogRecords {
    type Item = Result<LogRecord, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(record) = self.buffered.next() {
                return Poll::Ready(Some(Ok(record)));
            }
            match Pin::new(&mut self.batches).poll_next(cx) {
                Poll::Ready(Some(Ok(batch))) => self.buffered = batch.into_iter(),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
