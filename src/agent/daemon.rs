//! `flotilla-agent serve`: the agent as a daemon. It serves the protocol on
//! `RUN/agent.sock`, reconciles every pod once a second (so restart policies
//! and back-off apply with no controller connected, and after the agent's
//! own restart: the shims kept the containers running meanwhile), samples
//! node metrics, and turns what the reconciler sees into an event stream.
//! It also serves this node's copy of the cluster objects and its share of
//! the controller lease ([`super::objects`]).
//! The pod manager's calls block, so they run on the blocking pool; so do
//! object writes and lease calls (they fsync), while object reads come from
//! memory.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::StreamExt;
use tokio::sync::broadcast;

use super::logs::{BatchLimits, LogQuery, Streams, read_logs};
use super::network::NetworkError;
use super::node::{MetricsHandle, NodeFacts, Sampler, read_facts, spawn_sampler};
use super::objects::store::{check_kind, check_namespace};
use super::objects::{
    LeaseError, LeaseKeeper, ObjectKey, ObjectStore, Put, StoreError, StoredObject,
};
use super::pods::exec::{ExecError, ExecOptions, exec_spec};
use super::pods::exec_process;
use super::pods::status::pod_status;
use super::pods::{PodError, PodEvent, PodManager};
use super::protocol::ErrorCode;
use super::protocol::exec::{ExecControl, ExecOutput, ExecStartParams};
use super::protocol::messages::{
    AcquireLease, ContainerStats, CreatePod, DeletePod, Empty, Event, EventFilter, EventType,
    GetObject, LeaseGrant, LeaseRefused, LeaseReleased, LeaseState, ListObjects, ListPods,
    LogBatch, LogRecord, LogStream, LogsQuery, MetricsQuery, NetworkSettings, NetworkState,
    ObjectConflict, ObjectList, ObjectRecord, PodList, PodRecord, PodRef, PodStats, PodStatsList,
    PutObject, PutReply, ReleaseLease, StatsQuery, StopPod, WatchObjects,
};
use super::protocol::server::{AgentService, ServiceError, ServiceResult, ServiceStream};

/// Events kept for a console that reconnects and asks for what it missed.
const EVENT_HISTORY: usize = 1000;

pub struct Daemon {
    manager: Arc<PodManager>,
    node_name: String,
    metrics: MetricsHandle,
    events: broadcast::Sender<Event>,
    history: Mutex<VecDeque<Event>>,
    seq: AtomicU64,
    /// The last CPU reading per container, for millicores.
    cpu: Mutex<HashMap<String, (u64, Instant)>>,
    objects: Arc<ObjectStore>,
    lease: Arc<LeaseKeeper>,
}

impl Daemon {
    /// Starts the metrics sampler; the caller runs [`Daemon::reconcile_loop`] and the server.
    /// Puts the node's pod routes and masquerade rule back and releases the addresses of pods
    /// that went while no agent ran.
    pub fn new(manager: PodManager, objects: ObjectStore, lease: LeaseKeeper) -> Arc<Daemon> {
        if let Err(err) = manager.network().restore() {
            tracing::warn!(error = %err, "cannot restore the pod network's routes and masquerade rule");
        }
        manager.sweep_network();
        let node_name = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "unknown".into());
        let root = manager.config().paths.root.clone();
        let (metrics, _task) = spawn_sampler(Sampler::new(root), Duration::from_secs(1));
        let (events, _) = broadcast::channel(256);
        Arc::new(Daemon {
            manager: Arc::new(manager),
            node_name,
            metrics,
            events,
            history: Mutex::new(VecDeque::new()),
            seq: AtomicU64::new(0),
            cpu: Mutex::new(HashMap::new()),
            objects: Arc::new(objects),
            lease: Arc::new(lease),
        })
    }

    /// Runs a lease call on the blocking pool (a new term is fsynced).
    async fn lease_call<T: Send + 'static>(
        &self,
        call: impl FnOnce(&LeaseKeeper) -> Result<T, LeaseError> + Send + 'static,
    ) -> ServiceResult<T> {
        let lease = self.lease.clone();
        tokio::task::spawn_blocking(move || call(&lease))
            .await
            .map_err(|e| ServiceError::Internal(format!("the agent's worker failed: {e}")))?
            .map_err(lease_error)
    }

    /// Reconciles every pod each `interval`, forever, and sooner when a
    /// restart's back-off ends before the next tick (so a 10 s back-off is
    /// 10 s, not 10 s rounded up to the tick).
    pub async fn reconcile_loop(self: Arc<Self>, interval: Duration) {
        loop {
            let started = Instant::now();
            let manager = self.manager.clone();
            let due = match tokio::task::spawn_blocking(move || manager.reconcile_all_until_due())
                .await
            {
                Ok((events, due)) => {
                    events.into_iter().for_each(|e| self.publish(e));
                    due
                }
                Err(e) => {
                    tracing::error!(error = %e, "the reconciler panicked");
                    None
                }
            };
            let mut wake = started + interval;
            if let Some(due) = due {
                let until_due = (due - Utc::now()).to_std().unwrap_or_default();
                // A little past the due time, so the attempt is not early.
                wake = wake.min(Instant::now() + until_due + Duration::from_millis(5));
            }
            // Never spin, whatever a record says.
            wake = wake.max(started + Duration::from_millis(50));
            tokio::time::sleep_until(wake.into()).await;
        }
    }

    fn publish(&self, event: PodEvent) {
        let event = Event {
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            time: Utc::now(),
            type_: if event.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: event.reason,
            message: event.message,
            namespace: event.namespace,
            pod: event.pod,
            uid: event.uid,
            container: (!event.container.is_empty()).then_some(event.container),
            phase: event.phase,
        };
        tracing::info!(reason = %event.reason, pod = %event.pod, "{}", event.message);
        if let Ok(mut history) = self.history.lock() {
            history.push_back(event.clone());
            while history.len() > EVENT_HISTORY {
                history.pop_front();
            }
        }
        let _ = self.events.send(event);
    }

    /// Runs a manager call on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&PodManager) -> Result<T, PodError> + Send + 'static,
    ) -> ServiceResult<T> {
        let manager = self.manager.clone();
        tokio::task::spawn_blocking(move || call(&manager))
            .await
            .map_err(|e| ServiceError::Internal(format!("the agent's worker failed: {e}")))?
            .map_err(service_error)
    }

    fn record(manager: &PodManager, record: super::pods::record::PodRecord) -> PodRecord {
        let status = pod_status(&record, &manager.instance_states(&record));
        PodRecord {
            uid: record.uid,
            pod: record.pod,
            status,
        }
    }
}

fn service_error(err: PodError) -> ServiceError {
    match err {
        PodError::NotFound(m) => ServiceError::NotFound(format!("no pod {m} on this node")),
        PodError::Conflict(m) => ServiceError::Conflict(m),
        PodError::Invalid(m) => ServiceError::BadRequest(m),
        other => ServiceError::Internal(other.to_string()),
    }
}

fn store_error(err: StoreError) -> ServiceError {
    match err {
        StoreError::Invalid(m) => ServiceError::BadRequest(m),
        StoreError::Conflict {
            generation,
            deleted,
            ..
        } => ServiceError::detailed(
            ErrorCode::Conflict,
            err.to_string(),
            &ObjectConflict {
                generation,
                deleted,
            },
        ),
        StoreError::Io { .. } => ServiceError::Internal(err.to_string()),
    }
}

fn lease_error(err: LeaseError) -> ServiceError {
    let refused = |holder: Option<&String>, term: u64, remaining: Duration| {
        ServiceError::detailed(
            ErrorCode::Conflict,
            err.to_string(),
            &LeaseRefused {
                holder: holder.cloned(),
                term,
                remaining_ms: millis_up(remaining),
            },
        )
    };
    match &err {
        LeaseError::Invalid(m) => ServiceError::BadRequest(m.clone()),
        LeaseError::Held {
            holder,
            term,
            remaining,
        } => refused(Some(holder), *term, *remaining),
        LeaseError::HoldingBack { term, remaining } => refused(None, *term, *remaining),
        LeaseError::Unavailable(_) | LeaseError::Record { .. } => {
            ServiceError::Internal(err.to_string())
        }
    }
}

/// A record as the protocol carries it. The content moves into the text
/// when it is UTF-8 (the common case, no copy); other bytes are replaced by
/// U+FFFD, as kubectl shows them.
fn wire_record(record: super::logs::LogRecord, timestamps: bool) -> LogRecord {
    LogRecord {
        time: timestamps.then(|| chrono::DateTime::<Utc>::from(record.time)),
        stream: match record.stream {
            super::logs::Stream::Stdout => LogStream::Stdout,
            super::logs::Stream::Stderr => LogStream::Stderr,
        },
        partial: record.partial,
        text: String::from_utf8(record.content)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// Milliseconds, rounded up: a client that waits this long and retries
/// finds the lease free, not "0 ms more".
fn millis_up(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

fn object_record(o: StoredObject) -> ObjectRecord {
    ObjectRecord {
        kind: o.kind,
        namespace: o.namespace,
        name: o.name,
        generation: o.generation,
        deleted: o.deleted,
        object: o.object,
        updated_at: o.updated_at,
    }
}

impl AgentService for Daemon {
    fn node_name(&self) -> String {
        self.node_name.clone()
    }

    async fn node_facts(&self) -> ServiceResult<NodeFacts> {
        let manager = self.manager.clone();
        tokio::task::spawn_blocking(move || {
            read_facts(&manager.config().paths.root).map(|mut facts| {
                let network = manager.network().state();
                facts.pod_network = network.settings;
                facts.addresses = network.addresses;
                facts
            })
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?
        .map_err(|e| ServiceError::Internal(e.to_string()))
    }

    async fn node_metrics(&self, query: MetricsQuery) -> ServiceResult<super::node::MetricsSeries> {
        Ok(self.metrics.series(query.since))
    }

    async fn create_pod(&self, params: CreatePod) -> ServiceResult<PodRecord> {
        let (record, events) = self
            .blocking(move |m| {
                let (record, events) = m.create(params.pod)?;
                Ok((Daemon::record(m, record), events))
            })
            .await?;
        events.into_iter().for_each(|e| self.publish(e));
        Ok(record)
    }

    async fn list_pods(&self, params: ListPods) -> ServiceResult<PodList> {
        self.blocking(move |m| {
            let pods = m
                .list()
                .into_iter()
                .filter(|r| {
                    params
                        .namespace
                        .as_ref()
                        .is_none_or(|ns| *ns == r.pod.metadata.namespace)
                })
                .map(|r| Daemon::record(m, r))
                .collect();
            Ok(PodList { pods })
        })
        .await
    }

    async fn pod_status(&self, pod: PodRef) -> ServiceResult<PodRecord> {
        self.blocking(move |m| Ok(Daemon::record(m, m.find(&pod.namespace, &pod.name)?)))
            .await
    }

    async fn stop_pod(&self, params: StopPod) -> ServiceResult<PodRecord> {
        self.blocking(move |m| {
            let grace = params.grace_seconds.map(Duration::from_secs);
            Ok(Daemon::record(
                m,
                m.stop(&params.namespace, &params.name, grace)?,
            ))
        })
        .await
    }

    async fn kill_pod(&self, pod: PodRef) -> ServiceResult<PodRecord> {
        self.blocking(move |m| Ok(Daemon::record(m, m.kill(&pod.namespace, &pod.name)?)))
            .await
    }

    async fn delete_pod(&self, params: DeletePod) -> ServiceResult<Empty> {
        self.blocking(move |m| {
            m.delete(
                &params.namespace,
                &params.name,
                params.grace_seconds.map(Duration::from_secs),
            )?;
            Ok(Empty {})
        })
        .await
    }

    async fn pause_pod(&self, pod: PodRef) -> ServiceResult<PodRecord> {
        self.blocking(move |m| Ok(Daemon::record(m, m.pause(&pod.namespace, &pod.name)?)))
            .await
    }

    async fn resume_pod(&self, pod: PodRef) -> ServiceResult<PodRecord> {
        self.blocking(move |m| Ok(Daemon::record(m, m.resume(&pod.namespace, &pod.name)?)))
            .await
    }

    async fn pod_logs(&self, query: LogsQuery) -> ServiceResult<ServiceStream<LogBatch>> {
        let q = query.clone();
        let (path, record, container) = self
            .blocking(move |m| {
                let record = m.find(&q.namespace, &q.name)?;
                let path = m.log_path(&record, q.container.as_deref(), q.previous)?;
                let container = q
                    .container
                    .clone()
                    .unwrap_or_else(|| record.pod.spec.containers[0].name.clone());
                Ok((path, record, container))
            })
            .await?;
        let manager = self.manager.clone();
        let follow = query.follow && !query.previous && manager.is_running(&record, &container);
        // Batches, not records, cross from the reading thread: a busy log
        // costs one send (and one wake of the connection) per batch. A few
        // batches of slack let the reader run ahead while a batch is written.
        let (sender, receiver) = tokio::sync::mpsc::channel::<ServiceResult<LogBatch>>(4);
        let mut reader = read_logs(
            &path,
            &LogQuery {
                tail: query.tail.map(|t| t as usize),
                since: query.since.map(std::time::SystemTime::from),
                timestamps: query.timestamps,
                follow,
                streams: Streams::Both,
            },
        );
        let stop = reader.stop_handle();
        let timestamps = query.timestamps;
        tokio::task::spawn_blocking(move || {
            let mut last_check = Instant::now();
            while let Some(batch) = reader.next_batch(BatchLimits::default()) {
                let batch = match batch {
                    // Nothing new within a poll: only the checks below.
                    Ok(records) if records.is_empty() => None,
                    Ok(records) => Some(Ok(LogBatch {
                        records: records
                            .into_iter()
                            .map(|r| wire_record(r, timestamps))
                            .collect(),
                    })),
                    Err(e) => Some(Err(ServiceError::Internal(format!(
                        "reading {}: {e}",
                        path.display()
                    )))),
                };
                if let Some(batch) = batch
                    && sender.blocking_send(batch).is_err()
                {
                    break;
                }
                if sender.is_closed() {
                    break; // the client went away
                }
                // Following ends with the container.
                if follow && last_check.elapsed() > Duration::from_millis(500) {
                    last_check = Instant::now();
                    if !manager.is_running(&record, &container) {
                        stop.stop();
                    }
                }
            }
        });
        Ok(futures_util::stream::unfold(receiver, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed())
    }

    async fn pod_stats(&self, query: StatsQuery) -> ServiceResult<PodStatsList> {
        let readings = self
            .blocking(move |m| {
                Ok(m.list()
                    .into_iter()
                    .filter(|r| {
                        query
                            .namespace
                            .as_ref()
                            .is_none_or(|ns| *ns == r.pod.metadata.namespace)
                    })
                    .filter(|r| {
                        query
                            .name
                            .as_ref()
                            .is_none_or(|n| *n == r.pod.metadata.name)
                    })
                    .map(|r| {
                        let stats = m.stats(&r);
                        (r, stats)
                    })
                    .collect::<Vec<_>>())
            })
            .await?;
        let now = Instant::now();
        let mut cpu = self
            .cpu
            .lock()
            .map_err(|_| ServiceError::Internal("stats lock".into()))?;
        let pods = readings
            .into_iter()
            .map(|(record, stats)| PodStats {
                namespace: record.pod.metadata.namespace.clone(),
                name: record.pod.metadata.name.clone(),
                uid: record.uid.clone(),
                time: Utc::now(),
                containers: stats
                    .into_iter()
                    .map(|(name, s)| {
                        let key = format!("{}/{name}", record.uid);
                        let millicores = cpu.get(&key).and_then(|(ns, at)| {
                            let elapsed = now.duration_since(*at).as_nanos() as u64;
                            (elapsed > 0 && s.cpu_usage_ns >= *ns)
                                .then(|| (s.cpu_usage_ns - ns).saturating_mul(1000) / elapsed)
                        });
                        cpu.insert(key, (s.cpu_usage_ns, now));
                        ContainerStats {
                            name,
                            cpu_usage_usec: s.cpu_usage_ns / 1000,
                            cpu_millicores: millicores,
                            memory_bytes: s.memory_working_set_bytes,
                            memory_limit_bytes: None,
                            pids: s.pids_current,
                        }
                    })
                    .collect(),
            })
            .collect();
        Ok(PodStatsList { pods })
    }

    async fn subscribe_events(&self, filter: EventFilter) -> ServiceResult<ServiceStream<Event>> {
        let receiver = self.events.subscribe();
        let replay: Vec<Event> = match filter.since {
            Some(since) => self
                .history
                .lock()
                .map(|h| h.iter().filter(|e| e.seq > since).cloned().collect())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let namespace = filter.namespace.clone();
        let wanted = move |e: &Event| namespace.as_ref().is_none_or(|ns| *ns == e.namespace);
        let wanted_replay = wanted.clone();
        let live = futures_util::stream::unfold(receiver, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(event) => return Some((event, rx)),
                    // A slow subscriber misses events rather than stalling the agent.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Ok(
            futures_util::stream::iter(replay.into_iter().filter(wanted_replay))
                .chain(live.filter(move |e| std::future::ready(wanted(e))))
                .map(Ok)
                .boxed(),
        )
    }

    async fn put_object(&self, params: PutObject) -> ServiceResult<PutReply> {
        let key =
            ObjectKey::new(&params.kind, &params.namespace, &params.name).map_err(store_error)?;
        let object = match (params.deleted, params.object) {
            (false, Some(object)) => Some(object),
            (true, None) => None,
            (false, None) => {
                return Err(ServiceError::BadRequest(format!(
                    "put of {key} has no object (a delete says deleted: true)"
                )));
            }
            (true, Some(_)) => {
                return Err(ServiceError::BadRequest(format!(
                    "the tombstone of {key} carries an object; send it without one"
                )));
            }
        };
        let put = Put {
            key,
            generation: params.generation,
            object,
        };
        let objects = self.objects.clone();
        let outcome = tokio::task::spawn_blocking(move || objects.put(put))
            .await
            .map_err(|e| ServiceError::Internal(format!("the agent's worker failed: {e}")))?
            .map_err(store_error)?;
        Ok(PutReply {
            generation: outcome.stored.generation,
            changed: outcome.changed,
        })
    }

    async fn get_object(&self, params: GetObject) -> ServiceResult<ObjectRecord> {
        let key =
            ObjectKey::new(&params.kind, &params.namespace, &params.name).map_err(store_error)?;
        match self.objects.get(&key, true) {
            Some(o) if o.deleted && !params.include_deleted => Err(ServiceError::NotFound(
                format!("{key} was deleted (generation {})", o.generation),
            )),
            Some(o) => Ok(object_record(o)),
            None => Err(ServiceError::NotFound(format!(
                "no {key} in this agent's object store"
            ))),
        }
    }

    async fn list_objects(&self, params: ListObjects) -> ServiceResult<ObjectList> {
        check_kind(&params.kind).map_err(store_error)?;
        if let Some(ns) = &params.namespace {
            check_namespace(ns).map_err(store_error)?;
        }
        let objects = self
            .objects
            .list(
                &params.kind,
                params.namespace.as_deref(),
                params.include_deleted,
            )
            .into_iter()
            .map(object_record)
            .collect();
        Ok(ObjectList { objects })
    }

    async fn watch_objects(
        &self,
        params: WatchObjects,
    ) -> ServiceResult<ServiceStream<ObjectRecord>> {
        if let Some(kind) = &params.kind {
            check_kind(kind).map_err(store_error)?;
        }
        if let Some(ns) = &params.namespace {
            check_namespace(ns).map_err(store_error)?;
        }
        let wanted = move |o: &StoredObject| {
            params.kind.as_ref().is_none_or(|k| *k == o.kind)
                && params
                    .namespace
                    .as_ref()
                    .is_none_or(|ns| *ns == o.namespace)
        };
        // Subscribe before reading the current objects: a change stored in
        // between comes twice (harmless: the reader keeps the highest
        // generation), never not at all.
        let changes = self.objects.subscribe();
        let current: Vec<StoredObject> = self.objects.all().into_iter().filter(&wanted).collect();
        let live = futures_util::stream::unfold(Some(changes), |changes| async move {
            let mut changes = changes?;
            match changes.recv().await {
                Ok(change) => Some((Ok(change), Some(changes))),
                // Unlike events, a missed change would leave the watcher
                // wrong for good: end the watch so it lists again.
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let err = ServiceError::detailed(
                        ErrorCode::Busy,
                        format!(
                            "this watch fell {missed} changes behind; list the objects and watch again"
                        ),
                        &serde_json::json!({ "missed": missed }),
                    );
                    Some((Err(err), None))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
        .filter(move |change| std::future::ready(change.as_ref().map_or(true, &wanted)));
        Ok(futures_util::stream::iter(current.into_iter().map(Ok))
            .chain(live)
            .map(|change| change.map(object_record))
            .boxed())
    }

    async fn acquire_lease(&self, params: AcquireLease) -> ServiceResult<LeaseGrant> {
        let ttl = Duration::from_millis(params.ttl_ms);
        let grant = self
            .lease_call(move |lease| lease.acquire(&params.holder, ttl))
            .await?;
        if !grant.renewed {
            tracing::info!(holder = %grant.holder, term = grant.term, "controller lease granted");
        }
        Ok(LeaseGrant {
            holder: grant.holder,
            term: grant.term,
            ttl_ms: millis_up(grant.ttl),
            renewed: grant.renewed,
        })
    }

    async fn release_lease(&self, params: ReleaseLease) -> ServiceResult<LeaseReleased> {
        let holder = params.holder.clone();
        let released = self
            .lease_call(move |lease| lease.release(&params.holder))
            .await?;
        if released {
            tracing::info!(holder = %holder, "controller lease released");
        }
        Ok(LeaseReleased { released })
    }

    async fn lease_status(&self) -> ServiceResult<LeaseState> {
        let status = self.lease_call(|lease| lease.status()).await?;
        let (holder, remaining) = status.held.unzip();
        Ok(LeaseState {
            holder,
            remaining_ms: remaining.map(millis_up),
            term: status.term,
            max_ttl_ms: millis_up(status.max_ttl),
            hold_back_ms: status.hold_back.map(millis_up),
        })
    }

    async fn configure_network(&self, settings: NetworkSettings) -> ServiceResult<NetworkState> {
        self.blocking(move |m| {
            m.network().configure(settings).map_err(|e| match e {
                NetworkError::BadSettings(m) => PodError::Invalid(m),
                other => PodError::Network(other.to_string()),
            })
        })
        .await
    }

    async fn network_status(&self) -> ServiceResult<NetworkState> {
        self.blocking(|m| Ok(m.network().state())).await
    }

    async fn exec(
        &self,
        params: ExecStartParams,
        control: tokio::sync::mpsc::Receiver<ExecControl>,
    ) -> ServiceResult<ServiceStream<ExecOutput>> {
        let paths = self.manager.config().paths.clone();
        let options = ExecOptions {
            container: params.container.clone(),
            shell: params.command.is_empty(),
            term: params.tty.as_ref().map(|t| t.term.clone()),
            ..ExecOptions::default()
        };
        let target = params.clone();
        let spec = tokio::task::spawn_blocking(move || {
            exec_spec(
                &paths,
                &target.namespace,
                &target.name,
                target.command,
                &options,
            )
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("the agent's worker failed: {e}")))?
        .map_err(exec_error)?;
        let agent = std::env::current_exe()
            .map_err(|e| ServiceError::Internal(format!("cannot find the agent binary: {e}")))?;
        let terminal = params.tty.as_ref().map(|t| (t.cols, t.rows));
        let output = exec_process::start(&agent, &spec, params.stdin, terminal, control)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        tracing::info!(pod = %spec.name, tty = terminal.is_some(), "exec started");
        Ok(
            futures_util::stream::unfold(output, |mut output| async move {
                output.recv().await.map(|item| (Ok(item), output))
            })
            .boxed(),
        )
    }
}

fn exec_error(err: ExecError) -> ServiceError {
    match err {
        ExecError::PodNotFound { .. } | ExecError::NoSuchContainer { .. } => {
            ServiceError::NotFound(err.to_string())
        }
        ExecError::NotRunning { .. } | ExecError::Paused { .. } => {
            ServiceError::Conflict(err.to_string())
        }
        ExecError::Invalid(_) => ServiceError::BadRequest(err.to_string()),
        ExecError::State { .. } => ServiceError::Internal(err.to_string()),
    }
}

/// The socket the daemon listens on.
pub fn socket_path(run_dir: &std::path::Path) -> PathBuf {
    run_dir.join("agent.sock")
}
