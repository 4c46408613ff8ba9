//! The agent protocol end to end: `serve` on a unix socket in a temp dir with a
//! fake service, spoken to by the real `Client` and by raw sockets that
//! misbehave (garbage, oversized lines, never reading, never saying hello).

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use flotilla::agent::node::{DiskUsage, MetricsSeries, NodeFacts};
use flotilla::agent::protocol::exec::{Bytes, ExecControl, ExecOutput, ExecStartParams};
use flotilla::agent::protocol::messages::{
    AcquireLease, CreatePod, DeletePod, Empty, Event, EventFilter, EventType, GetObject,
    LeaseGrant, LeaseReleased, LeaseState, ListObjects, ListPods, LogBatch, LogRecord, LogStream,
    LogsQuery, MetricsQuery, NetworkSettings, NetworkState, Notice, ObjectList, ObjectRecord,
    PodList, PodRecord, PodRef, PodStats, PodStatsList, PutObject, PutReply, ReleaseLease,
    StatsQuery, StopPod, WatchObjects,
};
use flotilla::agent::protocol::{
    AgentService, BindError, Client, ClientError, ClientOptions, ErrorCode, LOG_BATCH_CAPABILITY,
    PROTOCOL_VERSION, Server, ServerConfig, ServiceError, ServiceResult, ServiceStream,
    bind_socket, method,
};
use flotilla::api::status::{PodPhase, PodStatus};
use flotilla::api::{ObjectMeta, Pod, PodSpec};
use futures_util::StreamExt;
use futures_util::stream;
use proptest::prelude::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

// ---------------------------------------------------------------------------
// The fake service

/// Counts the streams alive on the service side: a stream's source must be
/// dropped when its client cancels or goes away.
#[derive(Default)]
struct Live(AtomicUsize);

struct LiveGuard(Arc<Live>);

impl LiveGuard {
    fn new(live: &Arc<Live>) -> Self {
        live.0.fetch_add(1, Ordering::SeqCst);
        Self(live.clone())
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct Fake {
    pods: Mutex<HashMap<PodRef, PodRecord>>,
    live_streams: Arc<Live>,
}

fn key(pod: &Pod) -> PodRef {
    PodRef::new(pod.metadata.namespace.clone(), pod.metadata.name.clone())
}

fn record(pod: Pod, phase: PodPhase) -> PodRecord {
    PodRecord {
        uid: format!("uid-{}", pod.metadata.name),
        pod,
        status: PodStatus {
            phase,
            ..Default::default()
        },
    }
}

fn web_pod(name: &str) -> Pod {
    Pod::new(
        ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            ..Default::default()
        },
        PodSpec::default(),
    )
}

impl Fake {
    fn get(&self, pod: &PodRef) -> ServiceResult<PodRecord> {
        self.pods
            .lock()
            .unwrap()
            .get(pod)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(format!("pod {pod} not found")))
    }

    fn set_phase(&self, pod: &PodRef, phase: PodPhase) -> ServiceResult<PodRecord> {
        let mut pods = self.pods.lock().unwrap();
        let rec = pods
            .get_mut(pod)
            .ok_or_else(|| ServiceError::NotFound(format!("pod {pod} not found")))?;
        rec.status.phase = phase;
        Ok(rec.clone())
    }

    fn log(n: u64) -> LogRecord {
        LogRecord {
            time: None,
            stream: LogStream::Stdout,
            partial: false,
            text: format!("line {n}"),
        }
    }
}

impl AgentService for Fake {
    fn node_name(&self) -> String {
        "fake-node".into()
    }

    async fn node_facts(&self) -> ServiceResult<NodeFacts> {
        Ok(NodeFacts {
            hostname: "fake".into(),
            os: "Fake OS".into(),
            kernel: "6.1.0".into(),
            architecture: "amd64".into(),
            cpus: 2,
            memory_bytes: 1 << 30,
            disk: DiskUsage::default(),
            boot_time: None,
            pod_network: None,
            addresses: Vec::new(),
        })
    }

    async fn node_metrics(&self, query: MetricsQuery) -> ServiceResult<MetricsSeries> {
        let _ = query;
        Ok(MetricsSeries {
            interval_ms: 1000,
            capacity: 600,
            samples: vec![],
        })
    }

    async fn create_pod(&self, params: CreatePod) -> ServiceResult<PodRecord> {
        let k = key(&params.pod);
        let mut pods = self.pods.lock().unwrap();
        if pods.contains_key(&k) {
            return Err(ServiceError::Conflict(format!("pod {k} already exists")));
        }
        let rec = record(params.pod, PodPhase::Running);
        pods.insert(k, rec.clone());
        Ok(rec)
    }

    async fn list_pods(&self, params: ListPods) -> ServiceResult<PodList> {
        let pods = self.pods.lock().unwrap();
        Ok(PodList {
            pods: pods
                .iter()
                .filter(|(k, _)| {
                    params
                        .namespace
                        .as_ref()
                        .is_none_or(|ns| *ns == k.namespace)
                })
                .map(|(_, v)| v.clone())
                .collect(),
        })
    }

    async fn pod_status(&self, pod: PodRef) -> ServiceResult<PodRecord> {
        if pod.name == "panic" {
            panic!("the fake service panics on request");
        }
        if let Some(ms) = pod.name.strip_prefix("slow-") {
            // "slow-<ms>-<anything>": answer after that long, as itself.
            let ms: u64 = ms.split('-').next().unwrap_or("0").parse().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            return Ok(record(web_pod(&pod.name), PodPhase::Running));
        }
        self.get(&pod)
    }

    async fn stop_pod(&self, params: StopPod) -> ServiceResult<PodRecord> {
        self.set_phase(
            &PodRef::new(params.namespace, params.name),
            PodPhase::Succeeded,
        )
    }

    async fn kill_pod(&self, pod: PodRef) -> ServiceResult<PodRecord> {
        self.set_phase(&pod, PodPhase::Failed)
    }

    async fn delete_pod(&self, params: DeletePod) -> ServiceResult<Empty> {
        let k = PodRef::new(params.namespace, params.name);
        match self.pods.lock().unwrap().remove(&k) {
            Some(_) => Ok(Empty {}),
            None => Err(ServiceError::NotFound(format!("pod {k} not found"))),
        }
    }

    async fn pause_pod(&self, pod: PodRef) -> ServiceResult<PodRecord> {
        self.get(&pod)
    }

    async fn resume_pod(&self, pod: PodRef) -> ServiceResult<PodRecord> {
        self.get(&pod)
    }

    async fn pod_logs(&self, query: LogsQuery) -> ServiceResult<ServiceStream<LogBatch>> {
        let guard = LiveGuard::new(&self.live_streams);
        let one = |record: LogRecord| LogBatch {
            records: vec![record],
        };
        match query.name.as_str() {
            "missing" => Err(ServiceError::NotFound(
                "pod default/missing not found".into(),
            )),
            // A slow endless follow: one line every 10 ms.
            "endless" => Ok(stream::unfold((0u64, guard), move |(n, guard)| async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Some((Ok(one(Fake::log(n))), (n + 1, guard)))
            })
            .boxed()),
            // As fast as the connection takes it, 8 KiB a line.
            "flood" => Ok(stream::unfold(guard, move |guard| async move {
                tokio::task::yield_now().await;
                let rec = LogRecord {
                    text: "x".repeat(8192),
                    ..Fake::log(0)
                };
                Some((Ok(one(rec)), guard))
            })
            .boxed()),
            // Two lines, then a failure.
            "failing" => Ok(stream::iter(vec![
                Ok(one(Fake::log(0))),
                Ok(one(Fake::log(1))),
                Err(ServiceError::Internal("the log file vanished".into())),
            ])
            .chain(stream::unfold(guard, |_| async { None }))
            .boxed()),
            // Batches of 1, 2, 3, … records, numbered on across them.
            "batched" => {
                let batches = (1..=query.tail.unwrap_or(10)).scan(0u64, |next, size| {
                    let records = (*next..*next + size).map(Fake::log).collect();
                    *next += size;
                    Some(Ok(LogBatch { records }))
                });
                Ok(stream::iter(batches.collect::<Vec<_>>())
                    .chain(stream::unfold(guard, |_| async { None }))
                    .boxed())
            }
            _ => {
                let n = query.tail.unwrap_or(3).min(100);
                Ok(stream::iter((0..n).map(move |i| Ok(one(Fake::log(i)))))
                    .chain(stream::unfold(guard, |_| async { None }))
                    .boxed())
            }
        }
    }

    async fn pod_stats(&self, query: StatsQuery) -> ServiceResult<PodStatsList> {
        let _ = query;
        Ok(PodStatsList {
            pods: vec![PodStats {
                namespace: "default".into(),
                name: "web".into(),
                uid: "u".into(),
                time: Utc::now(),
                containers: vec![],
            }],
        })
    }

    async fn subscribe_events(&self, filter: EventFilter) -> ServiceResult<ServiceStream<Event>> {
        let guard = LiveGuard::new(&self.live_streams);
        let event = |seq| Event {
            seq,
            time: Utc::now(),
            type_: EventType::Normal,
            reason: "Started".into(),
            message: String::new(),
            namespace: "default".into(),
            pod: "web".into(),
            uid: "u".into(),
            container: None,
            phase: Some(PodPhase::Running),
        };
        let start = filter.since.unwrap_or(0) + 1;
        if filter.namespace.as_deref() == Some("live") {
            Ok(
                stream::unfold((start, guard), move |(seq, guard)| async move {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    Some((Ok(event(seq)), (seq + 1, guard)))
                })
                .boxed(),
            )
        } else {
            Ok(stream::iter((start..start + 2).map(move |s| Ok(event(s))))
                .chain(stream::unfold(guard, |_| async { None }))
                .boxed())
        }
    }

    // The object store and the lease are tested against the real agent
    // (tests/agent_objects.rs); the fake keeps nothing.
    async fn put_object(&self, _: PutObject) -> ServiceResult<PutReply> {
        Err(ServiceError::Internal("the fake keeps no objects".into()))
    }

    async fn get_object(&self, _: GetObject) -> ServiceResult<ObjectRecord> {
        Err(ServiceError::NotFound("the fake keeps no objects".into()))
    }

    async fn list_objects(&self, _: ListObjects) -> ServiceResult<ObjectList> {
        Ok(ObjectList::default())
    }

    async fn watch_objects(&self, _: WatchObjects) -> ServiceResult<ServiceStream<ObjectRecord>> {
        Ok(stream::empty().boxed())
    }

    async fn acquire_lease(&self, _: AcquireLease) -> ServiceResult<LeaseGrant> {
        Err(ServiceError::Internal("the fake grants no lease".into()))
    }

    async fn release_lease(&self, _: ReleaseLease) -> ServiceResult<LeaseReleased> {
        Ok(LeaseReleased { released: false })
    }

    async fn lease_status(&self) -> ServiceResult<LeaseState> {
        Err(ServiceError::Internal("the fake grants no lease".into()))
    }

    async fn configure_network(&self, _: NetworkSettings) -> ServiceResult<NetworkState> {
        Err(ServiceError::Internal("the fake has no pod network".into()))
    }

    async fn network_status(&self) -> ServiceResult<NetworkState> {
        Ok(NetworkState::default())
    }

    /// An echo: input comes back as stdout, a resize as `size CxR`; EOF
    /// ends it with 0, a signal with 128 + its number. Only pod `web`
    /// exists: any other name is not found, as the agent answers (an exec
    /// of any name would stream until its input ends, which the fuzz test's
    /// one-reply-per-request never sends).
    async fn exec(
        &self,
        params: ExecStartParams,
        control: tokio::sync::mpsc::Receiver<ExecControl>,
    ) -> ServiceResult<ServiceStream<ExecOutput>> {
        if params.name != "web" {
            return Err(ServiceError::NotFound(format!(
                "no pod {}/{}",
                params.namespace, params.name
            )));
        }
        let guard = LiveGuard::new(&self.live_streams);
        let out = |text: &str| ExecOutput::Stdout(Bytes(text.as_bytes().to_vec()));
        let first = out(&format!("started {}\n", params.command.join(" ")));
        Ok(stream::once(async move { Ok(first) })
            .chain(stream::unfold(
                (Some(control), guard),
                move |(control, guard)| async move {
                    let mut control = control?;
                    let item = match control.recv().await {
                        Some(ExecControl::Input(data)) => ExecOutput::Stdout(Bytes(data)),
                        Some(ExecControl::Resize { cols, rows }) => {
                            out(&format!("size {cols}x{rows}"))
                        }
                        Some(ExecControl::Signal(signal)) => {
                            return Some((
                                Ok(ExecOutput::Exit {
                                    code: 128 + signal as i32,
                                }),
                                (None, guard),
                            ));
                        }
                        Some(ExecControl::Eof) | None => {
                            return Some((Ok(ExecOutput::Exit { code: 0 }), (None, guard)));
                        }
                    };
                    Some((Ok(item), (Some(control), guard)))
                },
            ))
            .boxed())
    }
}

// ---------------------------------------------------------------------------
// Harness

struct Agent {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    fake: Arc<Fake>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Agent {
    async fn start(config: ServerConfig) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("run/flotilla/agent.sock");
        let listener = bind_socket(&socket).unwrap();
        let fake = Arc::new(Fake::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = Server::with_config(fake.clone(), config);
        let task = tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        Agent {
            _dir: dir,
            socket,
            fake,
            stop: Some(stop),
            task,
        }
    }

    async fn client(&self) -> Client {
        let stream = UnixStream::connect(&self.socket).await.unwrap();
        Client::connect(stream, ClientOptions::default())
            .await
            .unwrap()
    }

    async fn raw(&self) -> Raw {
        let stream = UnixStream::connect(&self.socket).await.unwrap();
        let (r, w) = stream.into_split();
        Raw {
            reader: BufReader::new(r),
            writer: w,
        }
    }

    async fn wait_streams_gone(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.fake.live_streams.0.load(Ordering::SeqCst) != 0 {
            assert!(
                Instant::now() < deadline,
                "a stream's source was not dropped"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A client speaking the protocol by hand.
struct Raw {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl Raw {
    async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    async fn recv(&mut self) -> Value {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
            .await
            .expect("a reply within 10 s")
            .unwrap();
        assert!(n > 0, "the agent closed the connection");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    async fn hello(&mut self) {
        self.send(b"{\"id\":0,\"method\":\"hello\",\"params\":{\"versions\":[\"flotilla/1\"],\"client\":\"raw\"}}\n")
            .await;
        let reply = self.recv().await;
        assert_eq!(reply["result"]["version"], PROTOCOL_VERSION, "{reply}");
    }

    /// Reads to end of input, failing if it does not come within `limit`.
    async fn expect_closed(&mut self, limit: Duration) {
        let mut sink = Vec::new();
        tokio::time::timeout(limit, self.reader.read_to_end(&mut sink))
            .await
            .expect("the agent should have closed the connection")
            .ok();
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error: {v}"))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

// ---------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn hello_then_typed_calls() {
    let agent = Agent::start(ServerConfig::default()).await;
    let client = agent.client().await;
    let hello = client.hello();
    assert_eq!(hello.version, PROTOCOL_VERSION);
    assert_eq!(hello.node, "fake-node");
    assert!(hello.agent_version.starts_with("flotilla-agent "));
    assert!(client.supports("pods.logs") && client.supports("events.subscribe"));

    assert_eq!(client.node_facts().await.unwrap().os, "Fake OS");
    assert_eq!(client.node_metrics(None).await.unwrap().capacity, 600);
    let created = client.create_pod(web_pod("web")).await.unwrap();
    assert_eq!(created.uid, "uid-web");
    let again = client.create_pod(web_pod("web")).await.unwrap_err();
    assert_eq!(again.code(), Some(ErrorCode::Conflict), "{again}");
    let web = PodRef::new("default", "web");
    assert_eq!(
        client.pod_status(&web).await.unwrap().pod.metadata.name,
        "web"
    );
    assert_eq!(client.list_pods(None).await.unwrap().pods.len(), 1);
    assert_eq!(
        client
            .list_pods(Some("other".into()))
            .await
            .unwrap()
            .pods
            .len(),
        0
    );
    assert_eq!(
        client.stop_pod(&web, Some(1)).await.unwrap().status.phase,
        PodPhase::Succeeded
    );
    assert_eq!(
        client.kill_pod(&web).await.unwrap().status.phase,
        PodPhase::Failed
    );
    client.pause_pod(&web).await.unwrap();
    client.resume_pod(&web).await.unwrap();
    assert_eq!(
        client
            .pod_stats(&StatsQuery::default())
            .await
            .unwrap()
            .pods
            .len(),
        1
    );
    client.delete_pod(&web, None).await.unwrap();
    let gone = client.pod_status(&web).await.unwrap_err();
    assert_eq!(gone.code(), Some(ErrorCode::NotFound), "{gone}");
    // The generic form, as new methods will be called before they get a helper.
    let facts = client.call::<method::NodeFacts>(&Empty {}).await.unwrap();
    assert_eq!(facts.cpus, 2);
}

#[tokio::test]
async fn socket_0600_in_a_0700_directory_and_a_live_agent_is_not_replaced() {
    let agent = Agent::start(ServerConfig::default()).await;
    assert_eq!(mode(&agent.socket), 0o600);
    assert_eq!(mode(agent.socket.parent().unwrap()), 0o700);
    match bind_socket(&agent.socket) {
        Err(BindError::InUse(_)) => {}
        other => panic!("a second agent must be refused: {other:?}"),
    }
    agent.client().await; // still served

    // A socket nobody answers on is stale: removed and bound again.
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("agent.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let listener = bind_socket(&stale).expect("a stale socket is replaced");
    assert_eq!(mode(&stale), 0o600);
    assert_eq!(
        mode(dir.path()),
        0o700,
        "an existing directory is tightened"
    );
    drop(listener);

    // A file that is not a socket is not ours to delete.
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, b"keep me").unwrap();
    assert!(matches!(bind_socket(&file), Err(BindError::NotASocket(_))));
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}

#[tokio::test]
async fn bad_input_gets_error_replies_and_the_connection_stays_usable() {
    let agent = Agent::start(ServerConfig::default()).await;
    let mut raw = agent.raw().await;

    raw.send(b"{\"id\":1,\"method\":\"node.facts\"}\n").await;
    let before_hello = raw.recv().await;
    assert_eq!(
        (code(&before_hello), &before_hello["id"]),
        ("bad_request", &json!(1))
    );
    assert!(
        before_hello["error"]["message"]
            .as_str()
            .unwrap()
            .contains("hello")
    );

    raw.send(b"{\"id\":2,\"method\":\"hello\",\"params\":{\"versions\":[\"flotilla/0\"]}}\n")
        .await;
    assert_eq!(code(&raw.recv().await), "unsupported_version");
    raw.hello().await;

    raw.send(b"{\"id\":3,\"method\":\"pods.reticulate\",\"params\":{}}\n")
        .await;
    let unknown = raw.recv().await;
    assert_eq!(
        (code(&unknown), &unknown["id"]),
        ("unknown_method", &json!(3))
    );

    raw.send(b"this is not json\n").await;
    let not_json = raw.recv().await;
    assert_eq!(
        (code(&not_json), &not_json["id"]),
        ("bad_request", &Value::Null)
    );

    raw.send(b"{\"id\":4,\"method\":\"pods.status\",\"params\":{\"name\":7}}\n")
        .await;
    assert_eq!(code(&raw.recv().await), "bad_request");

    raw.send(b"{\"id\":5,\"method\":\"pods.status\",\"params\":{\"name\":\"x\"}}\n")
        .await;
    assert_eq!(code(&raw.recv().await), "not_found");

    // Invalid UTF-8.
    raw.send(b"{\"id\":6,\"method\":\"\xff\xfe\"}\n").await;
    assert_eq!(code(&raw.recv().await), "bad_request");

    // Two megabytes on one line: refused once, skipped, then the next line works.
    let mut big = b"{\"id\":7,\"method\":\"pods.list\",\"params\":{\"namespace\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'a', 2 << 20));
    big.extend(b"\"}}\n{\"id\":8,\"method\":\"pods.list\"}\r\n\n");
    raw.send(&big).await;
    let too_large = raw.recv().await;
    assert_eq!(
        (code(&too_large), &too_large["id"]),
        ("too_large", &Value::Null)
    );
    let next = raw.recv().await;
    assert_eq!(
        (&next["id"], &next["result"]["pods"]),
        (&json!(8), &json!([]))
    );

    // A repeated hello, a second request with an id in flight.
    raw.send(b"{\"id\":9,\"method\":\"hello\",\"params\":{\"versions\":[\"flotilla/1\"]}}\n")
        .await;
    assert_eq!(code(&raw.recv().await), "bad_request");
    raw.send(b"{\"id\":10,\"method\":\"pods.status\",\"params\":{\"name\":\"slow-300-a\"}}\n{\"id\":10,\"method\":\"node.facts\"}\n")
        .await;
    let dup = raw.recv().await;
    assert_eq!((code(&dup), &dup["id"]), ("bad_request", &json!(10)));
    assert_eq!(
        raw.recv().await["result"]["pod"]["metadata"]["name"],
        "slow-300-a"
    );

    // A service panic is this request's internal error, nothing more.
    raw.send(b"{\"id\":11,\"method\":\"pods.status\",\"params\":{\"name\":\"panic\"}}\n")
        .await;
    let panicked = raw.recv().await;
    assert_eq!((code(&panicked), &panicked["id"]), ("internal", &json!(11)));
    raw.send(b"{\"id\":12,\"method\":\"node.facts\"}\n").await;
    assert_eq!(raw.recv().await["result"]["os"], "Fake OS");
}

#[tokio::test]
async fn streamed_calls_end_fail_and_cancel() {
    let agent = Agent::start(ServerConfig::default()).await;
    let client = agent.client().await;
    let web = PodRef::new("default", "web");

    // A finite stream ends.
    let lines: Vec<_> = client
        .logs(&LogsQuery {
            tail: Some(5),
            ..LogsQuery::new(&web)
        })
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[4].as_ref().unwrap().text, "line 4");

    // One that cannot start fails as its only item.
    let mut missing = client
        .logs(&LogsQuery::new(&PodRef::new("default", "missing")))
        .await
        .unwrap();
    let err = missing.next().await.unwrap().unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    assert!(missing.next().await.is_none());

    // One that fails midway: its items, then the error.
    let failing: Vec<_> = client
        .logs(&LogsQuery::new(&PodRef::new("default", "failing")))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(failing.len(), 3);
    assert_eq!(
        failing[2].as_ref().unwrap_err().code(),
        Some(ErrorCode::Internal)
    );

    // Cancel, explicitly.
    let mut endless = client
        .logs(&LogsQuery {
            follow: true,
            ..LogsQuery::new(&PodRef::new("default", "endless"))
        })
        .await
        .unwrap();
    for n in 0..3 {
        assert_eq!(
            endless.next().await.unwrap().unwrap().text,
            format!("line {n}")
        );
    }
    endless.cancel().await.unwrap();
    agent.wait_streams_gone().await;

    // Cancel by dropping the stream.
    let mut events = client
        .subscribe_events(&EventFilter {
            namespace: Some("live".into()),
            since: Some(10),
        })
        .await
        .unwrap();
    assert_eq!(events.next().await.unwrap().unwrap().seq, 11);
    drop(events);
    agent.wait_streams_gone().await;

    // On the wire: cancel answers found, then the stream ends; cancel again finds nothing.
    let mut raw = agent.raw().await;
    raw.hello().await;
    raw.send(
        b"{\"id\":1,\"method\":\"pods.logs\",\"params\":{\"name\":\"endless\",\"follow\":true}}\n",
    )
    .await;
    assert_eq!(raw.recv().await["stream"]["text"], "line 0");
    raw.send(b"{\"id\":2,\"method\":\"cancel\",\"params\":{\"id\":1}}\n")
        .await;
    let mut saw_found = false;
    loop {
        let line = raw.recv().await;
        if line["id"] == 2 {
            assert_eq!(line["result"]["found"], true);
            saw_found = true;
        } else if line.get("end").is_some() {
            assert_eq!(line, json!({"id": 1, "end": true}));
            break;
        } else {
            assert!(line.get("stream").is_some(), "{line}");
        }
    }
    if !saw_found {
        assert_eq!(raw.recv().await["result"]["found"], true);
    }
    raw.send(b"{\"id\":3,\"method\":\"cancel\",\"params\":{\"id\":1}}\n")
        .await;
    assert_eq!(raw.recv().await["result"]["found"], false);
    agent.wait_streams_gone().await;
}

#[tokio::test]
async fn exec_controls_reach_their_exec_in_order_and_end_with_it() {
    let agent = Agent::start(ServerConfig::default()).await;
    let client = agent.client().await;
    assert!(client.supports("exec.start"));
    let start = ExecStartParams {
        namespace: "default".into(),
        name: "web".into(),
        container: None,
        command: vec!["cat".into()],
        stdin: true,
        tty: None,
    };
    let mut exec = client.exec(&start).await.unwrap();
    let text = |item: Option<Result<ExecOutput, ClientError>>| match item.unwrap().unwrap() {
        ExecOutput::Stdout(Bytes(data)) => String::from_utf8(data).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(text(exec.output.next().await), "started cat\n");
    // Sent without waiting, so only their order holds them together.
    for chunk in ["a", "b", "c"] {
        exec.control.input(chunk.into()).await.unwrap();
    }
    exec.control.resize(80, 24).await.unwrap();
    exec.control.input(vec![0xff, 0x00]).await.unwrap();
    for want in ["a", "b", "c", "size 80x24"] {
        assert_eq!(text(exec.output.next().await), want);
    }
    match exec.output.next().await.unwrap().unwrap() {
        ExecOutput::Stdout(Bytes(data)) => assert_eq!(data, vec![0xff, 0x00]),
        other => panic!("{other:?}"),
    }
    exec.control.signal("TERM").await.unwrap();
    assert_eq!(
        exec.output.next().await.unwrap().unwrap(),
        ExecOutput::Exit { code: 143 }
    );
    assert!(exec.output.next().await.is_none());
    agent.wait_streams_gone().await;

    // An exec that cannot start fails as its only item.
    let mut missing = client
        .exec(&ExecStartParams {
            name: "missing".into(),
            ..start.clone()
        })
        .await
        .unwrap();
    let err = missing.output.next().await.unwrap().unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));

    // Controls naming no running exec are answered, not acted on; an
    // unknown signal is refused by name.
    let mut raw = agent.raw().await;
    raw.hello().await;
    raw.send(b"{\"id\":1,\"method\":\"exec.input\",\"params\":{\"id\":77,\"data\":\"YQ==\"}}\n")
        .await;
    assert_eq!(
        raw.recv().await,
        json!({"id": 1, "result": {"found": false}})
    );
    raw.send(b"{\"id\":2,\"method\":\"exec.signal\",\"params\":{\"id\":77,\"signal\":\"SEGV\"}}\n")
        .await;
    let reply = raw.recv().await;
    assert_eq!(code(&reply), "bad_request", "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("SEGV"));
    raw.send(b"{\"id\":3,\"method\":\"exec.input\",\"params\":{\"id\":77,\"data\":\"***\"}}\n")
        .await;
    assert_eq!(code(&raw.recv().await), "bad_request");

    // Dropping the output cancels the exec on the agent.
    let mut exec = client.exec(&start).await.unwrap();
    text(exec.output.next().await);
    drop(exec);
    agent.wait_streams_gone().await;
}

#[tokio::test]
async fn fifty_concurrent_requests_on_one_connection() {
    let agent = Agent::start(ServerConfig::default()).await;
    let client = agent.client().await;
    let started = Instant::now();
    let calls = (0..50).map(|i| {
        let client = client.clone();
        async move {
            let name = format!("slow-{}-{i}", 300 - i * 5);
            let rec = client
                .pod_status(&PodRef::new("default", &*name))
                .await
                .unwrap();
            assert_eq!(
                rec.pod.metadata.name, name,
                "each answer reaches its own caller"
            );
        }
    });
    futures_util::future::join_all(calls).await;
    // In series this would take over 8 s.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

/// `count` status calls sent at once on one connection, each to a pod the
/// test agent answers after `ms` milliseconds (`slow-MS-N`).
async fn statuses_at_once(
    client: &Client,
    count: usize,
    ms: u64,
) -> Vec<Result<PodRecord, ClientError>> {
    let calls = (0..count).map(|i| {
        let client = client.clone();
        async move {
            client
                .pod_status(&PodRef::new("default", format!("slow-{ms}-{i}")))
                .await
        }
    });
    futures_util::future::join_all(calls).await
}

#[tokio::test]
async fn requests_over_the_in_flight_bound_are_refused_busy() {
    let agent = Agent::start(ServerConfig {
        max_in_flight: 4,
        ..ServerConfig::default()
    })
    .await;
    let client = agent.client().await;
    let results = statuses_at_once(&client, 10, 300).await;
    let busy = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.code() == Some(ErrorCode::Busy)))
        .count();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 4);
    assert_eq!(busy, 6);
    // Once they are answered, there is room again.
    client
        .pod_status(&PodRef::new("default", "slow-0-x"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_burst_past_the_bound_waits_its_turn_in_the_client() {
    // A controller binding a hundred pods sends a hundred writes at once;
    // the client keeps its own calls under the agent's bound (64 in
    // flight), so none is refused busy.
    let agent = Agent::start(ServerConfig::default()).await;
    let client = agent.client().await;
    let results = statuses_at_once(&client, 200, 20).await;
    let refused: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(ToString::to_string))
        .collect();
    assert!(
        refused.is_empty(),
        "{} refused: {:?}",
        refused.len(),
        refused.first()
    );
}

#[tokio::test]
async fn a_garbage_flood_does_not_slow_another_client() {
    let agent = Agent::start(ServerConfig::default()).await;
    let good = agent.client().await;
    let Raw {
        mut reader,
        mut writer,
    } = agent.raw().await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooding = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut rounds = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Three bad lines a round: bad JSON, control bytes, an unclosed array.
                let junk = format!("{{\"id\":{rounds},\"method\":\u{1}garbage\n\0\u{7f}\n[[[[\n");
                writer.write_all(junk.as_bytes()).await.unwrap();
                rounds += 1;
            }
            writer.shutdown().await.unwrap();
            rounds
        })
    };
    // The flooder reads its replies: every bad line gets exactly one error.
    let replies = tokio::spawn(async move {
        let mut errors = 0u64;
        let mut line = String::new();
        while reader.read_line(&mut line).await.unwrap() > 0 {
            let reply: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(code(&reply), "bad_request", "{reply}");
            errors += 1;
            line.clear();
        }
        errors
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut worst = Duration::ZERO;
    for _ in 0..100 {
        let t = Instant::now();
        good.node_facts().await.unwrap();
        worst = worst.max(t.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = flooding.await.unwrap();
    let errors = tokio::time::timeout(Duration::from_secs(20), replies)
        .await
        .expect("the flooder's connection closes after its input ends")
        .unwrap();
    assert!(rounds > 100, "the flood was real: {rounds} rounds");
    assert_eq!(errors, rounds * 3, "one error reply per bad line");
    assert!(worst < Duration::from_secs(1), "worst call took {worst:?}");
}

#[tokio::test]
async fn log_batches_pass_whole_and_in_order_and_flatten_for_old_clients() {
    let agent = Agent::start(ServerConfig::default()).await;
    let client = agent.client().await;
    assert!(client.supports(LOG_BATCH_CAPABILITY));
    let query = LogsQuery {
        tail: Some(20),
        ..LogsQuery::new(&PodRef::new("default", "batched"))
    };
    let numbers = |records: &[LogRecord]| {
        records
            .iter()
            .map(|r| {
                r.text
                    .strip_prefix("line ")
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
            })
            .collect::<Vec<_>>()
    };

    // Batches arrive as the service made them: 1, 2, … 20 records.
    let batches: Vec<Vec<LogRecord>> = client
        .log_batches(&query)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    assert_eq!(sizes, (1..=20).collect::<Vec<_>>());
    let total = 20 * 21 / 2;
    assert_eq!(numbers(&batches.concat()), (0..total).collect::<Vec<_>>());

    // One at a time, the same records.
    let records: Vec<LogRecord> = client
        .logs(&query)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(records, batches.concat());

    // On the wire: with `batch`, one item a batch; without (a client that
    // predates batches), one record an item, in the same order.
    let mut raw = agent.raw().await;
    raw.hello().await;
    raw.send(b"{\"id\":1,\"method\":\"pods.logs\",\"params\":{\"name\":\"batched\",\"tail\":3,\"batch\":true}}\n")
        .await;
    for size in 1..=3 {
        let item = raw.recv().await;
        assert_eq!(
            item["stream"]["records"].as_array().unwrap().len(),
            size,
            "{item}"
        );
    }
    assert_eq!(raw.recv().await, json!({"id": 1, "end": true}));
    raw.send(b"{\"id\":2,\"method\":\"pods.logs\",\"params\":{\"name\":\"batched\",\"tail\":3}}\n")
        .await;
    for n in 0..6 {
        let item = raw.recv().await;
        assert_eq!(item["stream"]["text"], format!("line {n}"), "{item}");
    }
    assert_eq!(raw.recv().await, json!({"id": 2, "end": true}));
    agent.wait_streams_gone().await;
}

#[tokio::test]
async fn logs_from_an_agent_without_batches_come_one_record_a_batch() {
    // An agent that predates batches: hello lists no `pods.logs.batch`, and
    // it would refuse the unknown `batch` param. This one answers by hand
    // and checks the client left it out.
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let old_agent = tokio::spawn(async move {
        let (r, mut w) = tokio::io::split(theirs);
        let mut lines = BufReader::new(r).lines();
        while let Some(line) = lines.next_line().await.unwrap() {
            let request: Value = serde_json::from_str(&line).unwrap();
            let id = request["id"].clone();
            let reply = match request["method"].as_str().unwrap() {
                "hello" => vec![json!({"id": id, "result": {
                    "version": "flotilla/1", "agentVersion": "flotilla-agent 0.0.9",
                    "node": "old", "capabilities": ["hello", "pods.logs"]}})],
                "pods.logs" => {
                    assert!(request["params"].get("batch").is_none(), "{request}");
                    let mut replies: Vec<Value> = (0..3)
                        .map(|n| json!({"id": id, "stream": {"stream": "stdout", "text": format!("line {n}")}}))
                        .collect();
                    replies.push(json!({"id": id, "end": true}));
                    replies
                }
                other => panic!("unexpected {other}"),
            };
            for reply in reply {
                w.write_all(format!("{reply}\n").as_bytes()).await.unwrap();
            }
        }
    });
    let client = Client::connect(ours, ClientOptions::default())
        .await
        .unwrap();
    assert!(!client.supports(LOG_BATCH_CAPABILITY));
    let batches: Vec<Vec<LogRecord>> = client
        .log_batches(&LogsQuery::new(&PodRef::new("default", "web")))
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    let texts: Vec<Vec<&str>> = batches
        .iter()
        .map(|b| b.iter().map(|r| r.text.as_str()).collect())
        .collect();
    assert_eq!(texts, [["line 0"], ["line 1"], ["line 2"]]);
    drop(client);
    old_agent.abort();
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_without_stalling_others() {
    let agent = Agent::start(ServerConfig {
        write_timeout: Duration::from_millis(500),
        write_queue: 16,
        ..ServerConfig::default()
    })
    .await;
    let good = agent.client().await;
    let mut deaf = agent.raw().await;
    deaf.hello().await;
    deaf.send(
        b"{\"id\":1,\"method\":\"pods.logs\",\"params\":{\"name\":\"flood\",\"follow\":true}}\n",
    )
    .await;
    // While the deaf client's buffers fill and its writer times out, others are served.
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        let t = Instant::now();
        good.node_facts().await.unwrap();
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Its connection was closed (what it reads now ends), its stream's source dropped.
    deaf.expect_closed(Duration::from_secs(10)).await;
    agent.wait_streams_gone().await;
    good.node_facts().await.unwrap();
}

#[tokio::test]
async fn connections_over_the_bound_are_told_busy() {
    let agent = Agent::start(ServerConfig {
        max_connections: 1,
        ..ServerConfig::default()
    })
    .await;
    let first = agent.client().await;
    let mut second = agent.raw().await;
    let said = second.recv().await;
    assert_eq!(code(&said), "busy");
    second.expect_closed(Duration::from_secs(5)).await;
    first.node_facts().await.unwrap();
}

#[tokio::test]
async fn big_replies_queue_within_the_byte_budget() {
    // A budget smaller than one line: each line goes alone, nothing deadlocks.
    let agent = Agent::start(ServerConfig {
        write_buffer_bytes: 1000,
        ..ServerConfig::default()
    })
    .await;
    let client = agent.client().await;
    let mut flood = client
        .logs(&LogsQuery::new(&PodRef::new("default", "flood")))
        .await
        .unwrap();
    for _ in 0..200 {
        assert_eq!(flood.next().await.unwrap().unwrap().text.len(), 8192);
    }
    drop(flood);
    agent.wait_streams_gone().await;
    client.node_facts().await.unwrap();
}

#[tokio::test]
async fn no_hello_in_time_closes_the_connection() {
    let agent = Agent::start(ServerConfig {
        hello_timeout: Duration::from_millis(200),
        ..ServerConfig::default()
    })
    .await;
    let mut silent = agent.raw().await;
    let said = silent.recv().await;
    assert_eq!((code(&said), &said["id"]), ("bad_request", &Value::Null));
    silent.expect_closed(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_client_offering_no_common_version_is_refused() {
    let agent = Agent::start(ServerConfig::default()).await;
    let stream = UnixStream::connect(&agent.socket).await.unwrap();
    let err = Client::connect(
        stream,
        ClientOptions {
            versions: vec!["flotilla/0".into()],
            ..ClientOptions::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnsupportedVersion), "{err}");
}

#[tokio::test]
async fn shutdown_tells_clients_ends_streams_and_returns() {
    let mut agent = Agent::start(ServerConfig::default()).await;
    let client = agent.client().await;
    let mut notices = client.notices();
    let mut events = client
        .subscribe_events(&EventFilter {
            namespace: Some("live".into()),
            since: None,
        })
        .await
        .unwrap();
    events.next().await.unwrap().unwrap();
    agent.stop.take().unwrap().send(()).unwrap();
    let notice = tokio::time::timeout(Duration::from_secs(5), notices.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(notice, Notice::ShuttingDown { .. }));
    // The stream ends (cleanly, or as closed if the close won the race).
    let rest = tokio::time::timeout(Duration::from_secs(5), events.collect::<Vec<_>>())
        .await
        .unwrap();
    assert!(
        rest.iter()
            .all(|r| r.is_ok() || matches!(r, Err(ClientError::Closed(_))))
    );
    tokio::time::timeout(Duration::from_secs(5), &mut agent.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    agent.wait_streams_gone().await;
    let after = client.node_facts().await.unwrap_err();
    assert!(matches!(after, ClientError::Closed(_)), "{after}");
}

#[tokio::test]
async fn a_slow_stream_consumer_overflows_alone() {
    let agent = Agent::start(ServerConfig::default()).await;
    let stream = UnixStream::connect(&agent.socket).await.unwrap();
    let client = Client::connect(
        stream,
        ClientOptions {
            stream_buffer: 8,
            ..ClientOptions::default()
        },
    )
    .await
    .unwrap();
    let mut flood = client
        .logs(&LogsQuery::new(&PodRef::new("default", "flood")))
        .await
        .unwrap();
    // Not reading it, the buffer fills; the connection waits a moment for
    // room (STREAM_STALL), then cancels that stream alone, and other calls
    // work again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.node_facts().await.unwrap();
    let mut items = 0;
    let last = loop {
        match flood.next().await {
            Some(Ok(_)) => items += 1,
            other => break other,
        }
    };
    assert!(items <= 8, "{items}");
    assert!(
        matches!(last, Some(Err(ClientError::StreamOverflow))),
        "{last:?}"
    );
    agent.wait_streams_gone().await;
    client.node_facts().await.unwrap();
}

// ---------------------------------------------------------------------------
// Property test: arbitrary lines through a real connection

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,10}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec!["name", "namespace", "versions", "tail", "id", "x"]),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

#[derive(Clone, Debug)]
enum Line {
    Bytes(Vec<u8>),
    Request(Value, Value),
}

fn any_line() -> impl Strategy<Value = Line> {
    let method = prop_oneof![
        prop::sample::select(flotilla::agent::protocol::METHODS.to_vec()).prop_map(Value::from),
        any_json(),
    ];
    prop_oneof![
        prop::collection::vec(any::<u8>().prop_filter("one line", |b| *b != b'\n'), 1..64)
            .prop_map(Line::Bytes),
        any_json().prop_map(|v| Line::Bytes(serde_json::to_vec(&v).unwrap())),
        (method, any_json()).prop_map(|(m, p)| Line::Request(m, p)),
    ]
}

async fn replies_to_arbitrary_lines(lines: Vec<Line>) -> Result<(), TestCaseError> {
    let server = Server::new(Arc::new(Fake::default()));
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let serving = tokio::spawn(async move { server.serve_connection(theirs, "proptest").await });
    let (read, mut write) = tokio::io::split(ours);
    let mut read = BufReader::new(read);
    let mut next_line = async || -> Value {
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(10), read.read_line(&mut line))
            .await
            .expect("a reply")
            .unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    };

    // Before hello, every non-blank line is refused, one reply each.
    let mut sent = 0;
    for line in &lines {
        if let Line::Bytes(b) = line
            && !b.iter().all(u8::is_ascii_whitespace)
        {
            write.write_all(b).await.unwrap();
            write.write_all(b"\n").await.unwrap();
            sent += 1;
        }
    }
    for _ in 0..sent {
        let reply = next_line().await;
        prop_assert!(reply.get("error").is_some(), "{reply}");
    }

    // After hello, each request with a fresh id gets exactly one last line.
    write
        .write_all(b"{\"id\":0,\"method\":\"hello\",\"params\":{\"versions\":[\"flotilla/1\"]}}\n")
        .await
        .unwrap();
    prop_assert!(next_line().await.get("result").is_some());
    let mut expected = 0;
    for (i, line) in lines.iter().enumerate() {
        let id = 1000 + i as u64;
        let bytes = match line {
            Line::Bytes(b) if b.iter().all(u8::is_ascii_whitespace) => continue,
            Line::Bytes(b) => b.clone(),
            Line::Request(method, params) => {
                serde_json::to_vec(&json!({"id": id, "method": method, "params": params})).unwrap()
            }
        };
        write.write_all(&bytes).await.unwrap();
        write.write_all(b"\n").await.unwrap();
        expected += 1;
    }
    let mut last_lines = 0;
    while last_lines < expected {
        let reply = next_line().await;
        if reply.get("stream").is_none() {
            last_lines += 1;
        }
    }
    // Still usable.
    write
        .write_all(b"{\"id\":1,\"method\":\"node.facts\"}\n")
        .await
        .unwrap();
    prop_assert_eq!(&next_line().await["result"]["os"], "Fake OS");
    // End of input: the connection closes once its calls have answered.
    write.shutdown().await.unwrap();
    serving.await.unwrap();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_line_gets_its_reply_and_nothing_breaks_the_connection(
        lines in prop::collection::vec(any_line(), 1..24)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(60), replies_to_arbitrary_lines(lines))
                .await
                .expect("the case finished")
        })?;
    }
}
