//! The node session task against a real `flotilla-agent serve` reached over
//! its unix socket (the SSH leg is tested with the demo cluster elsewhere):
//! figures and pods flow, a killed agent is reported with its kind and
//! retried with back-off, and a restarted one is picked up again.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla::agent::node::{MetricsSample, NodeFacts};
use flotilla::agent::protocol::messages::{Event, HelloReply, PodRecord};
use flotilla::agent::protocol::{Client, ClientOptions};
use flotilla::ssh::reconnect::ReconnectPolicy;
use flotilla::ssh::session::{
    self, Connected, Connector, Failure, FailureKind, NodeSink, SessionOptions,
};
use support::pods::Node;
use tokio_util::sync::CancellationToken;

struct UnixConnector {
    socket: std::path::PathBuf,
}

impl Connector for UnixConnector {
    async fn connect(&self) -> Result<Connected, Failure> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| Failure::new(FailureKind::Refused, e.to_string()))?;
        let client = Client::connect(stream, ClientOptions::default())
            .await
            .map_err(|e| Failure::new(FailureKind::AgentFailed, e.to_string()))?;
        Ok(Connected {
            client,
            keep_alive: Box::new(()),
            ssh: None,
            uploaded: false,
            started: false,
        })
    }
}

#[derive(Debug, Clone)]
enum Seen {
    Connecting(u32),
    Connected(String),
    Metrics(Vec<u64>),
    Pods(usize),
    Event,
    Failed(FailureKind, Duration),
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Seen>>);

impl Recorder {
    fn seen(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }

    fn push(&self, s: Seen) {
        self.0.lock().unwrap().push(s);
    }

    async fn wait_for(&self, what: &str, mut pred: impl FnMut(&[Seen]) -> bool) {
        let started = Instant::now();
        while !pred(&self.seen()) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{what}: not seen in 30 s; saw {:?}",
                self.seen()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until a listing of `count` pods has been seen.
    async fn wait_for_pods(&self, what: &str, count: usize) {
        self.wait_for(what, |seen| {
            seen.iter()
                .any(|s| matches!(s, Seen::Pods(n) if *n == count))
        })
        .await;
    }
}

impl NodeSink for Recorder {
    fn connecting(&self, _: &str, attempt: u32) {
        self.push(Seen::Connecting(attempt));
    }
    fn connected(&self, _: &str, _: &HelloReply, facts: &NodeFacts) {
        self.push(Seen::Connected(facts.hostname.clone()));
    }
    fn metrics(&self, _: &str, samples: &[MetricsSample]) {
        self.push(Seen::Metrics(samples.iter().map(|s| s.seq).collect()));
    }
    fn pods(&self, _: &str, pods: Vec<PodRecord>) {
        self.push(Seen::Pods(pods.len()));
    }
    fn event(&self, _: &str, event: &Event) {
        let _ = event;
        self.push(Seen::Event);
    }
    fn failed(&self, _: &str, failure: &Failure, retry_in: Duration) {
        self.push(Seen::Failed(failure.kind, retry_in));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_follows_its_agent_through_a_crash_and_back() {
    let mut node = Node::new("session");
    node.serve();
    let options = SessionOptions {
        interval: Duration::from_millis(200),
        pods_every: 2,
        call_timeout: Duration::from_secs(5),
        reconnect: ReconnectPolicy {
            initial: Duration::from_millis(200),
            max: Duration::from_millis(800),
            floor: Duration::from_millis(50),
            healthy_after: Duration::from_secs(60),
        },
        replay_events: false,
    };
    let Watched {
        recorder,
        cancel,
        task,
    } = watch(&node, options);
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    recorder
        .wait_for("connected, two rounds of figures, pods", |seen| {
            seen.iter()
                .any(|s| matches!(s, Seen::Connected(h) if *h == host))
                && seen
                    .iter()
                    .filter(|s| matches!(s, Seen::Metrics(_)))
                    .count()
                    >= 2
                && seen.iter().any(|s| matches!(s, Seen::Pods(0)))
        })
        .await;
    // Sequence numbers only go forward: nothing is reported twice.
    let seqs: Vec<u64> = recorder
        .seen()
        .into_iter()
        .filter_map(|s| match s {
            Seen::Metrics(v) => Some(v),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{seqs:?}");

    // A pod's creation reaches the session as events, then as a pod.
    let image = node.image.clone();
    node.run(&[
        "run", "-d", "--name", "sleeper", &image, "--", "sleep", "600",
    ])
    .assert_ok();
    recorder.wait_for_pods("the new pod listed", 1).await;

    node.kill_serve();
    recorder
        .wait_for("the agent's loss reported, and retries", |seen| {
            seen.iter()
                .filter(|s| matches!(s, Seen::Failed(..)))
                .count()
                >= 3
        })
        .await;
    let failures: Vec<(FailureKind, Duration)> = recorder
        .seen()
        .into_iter()
        .filter_map(|s| match s {
            Seen::Failed(k, d) => Some((k, d)),
            _ => None,
        })
        .collect();
    assert!(
        matches!(
            failures[0].0,
            FailureKind::Unreachable | FailureKind::AgentFailed
        ),
        "{failures:?}"
    );
    assert_eq!(failures[1].0, FailureKind::Refused, "{failures:?}");
    for (_, wait) in &failures {
        assert!(
            *wait >= Duration::from_millis(50) && *wait <= Duration::from_millis(800),
            "{failures:?}"
        );
    }

    let connections_before = recorder
        .seen()
        .iter()
        .filter(|s| matches!(s, Seen::Connected(_)))
        .count();
    node.serve();
    recorder
        .wait_for("connected again, with the pod", |seen| {
            seen.iter()
                .filter(|s| matches!(s, Seen::Connected(_)))
                .count()
                > connections_before
                && matches!(seen.last(), Some(Seen::Pods(1)) | Some(Seen::Metrics(_)))
        })
        .await;
    // Every attempt is numbered, one after another.
    let attempts: Vec<u32> = recorder
        .seen()
        .into_iter()
        .filter_map(|s| match s {
            Seen::Connecting(n) => Some(n),
            _ => None,
        })
        .collect();
    assert!(attempts.len() >= 4, "{attempts:?}");
    assert!(
        attempts.iter().zip(1..).all(|(a, i)| *a == i),
        "{attempts:?}"
    );
    cancel.cancel();
    task.await.unwrap();
    node.run(&["rm", "-f", "sleeper"]).assert_ok();
    node.assert_clean();
}

/// A session on a node's agent socket: what it reports, and its task.
struct Watched {
    recorder: Arc<Recorder>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Starts a session on `node`'s agent socket.
fn watch(node: &Node, options: SessionOptions) -> Watched {
    let recorder = Arc::new(Recorder::default());
    let cancel = CancellationToken::new();
    let task = session::spawn(
        "n1".into(),
        Arc::new(UnixConnector {
            socket: node.socket(),
        }),
        recorder.clone(),
        options,
        cancel.clone(),
    );
    Watched {
        recorder,
        cancel,
        task,
    }
}

/// Creates a pod sleeping 600 s through the node's daemon (which announces
/// it with events, and keeps them in its history); the client stays
/// connected for the test to delete it.
async fn create_through_the_daemon(node: &Node, name: &str) -> Client {
    let stream = tokio::net::UnixStream::connect(node.socket())
        .await
        .expect("connect to the agent socket");
    let client = Client::connect(stream, ClientOptions::default())
        .await
        .expect("hello");
    let pod: flotilla::api::Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": node.image,
                "imagePullPolicy": "IfNotPresent", "command": ["sleep", "600"]}],
        },
    }))
    .expect("a valid pod");
    client.create_pod(pod).await.expect("create the pod");
    client
}

/// An agent event brings the pod list at once, not at the next tick: the
/// console shows a new pod as it starts, not up to a tick later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_event_brings_the_pod_list_without_waiting_for_a_tick() {
    let mut node = Node::new("eventpods");
    node.serve();
    // Ticks two minutes apart: only the first falls inside the test.
    let Watched {
        recorder,
        cancel,
        task,
    } = watch(
        &node,
        SessionOptions {
            interval: Duration::from_secs(120),
            ..SessionOptions::default()
        },
    );
    recorder.wait_for_pods("the first listing", 0).await;
    // Created through the daemon, which announces it with events.
    let client = create_through_the_daemon(&node, "sleeper").await;
    recorder
        .wait_for_pods("the new pod listed after its events", 1)
        .await;
    cancel.cancel();
    task.await.unwrap();
    let gone = flotilla::agent::protocol::messages::PodRef::new("default", "sleeper");
    client
        .delete_pod(&gone, Some(0))
        .await
        .expect("delete the pod");
    node.assert_clean();
}

/// Events from before a session started reach it only when it asks for the
/// replay (the console does; a verb that reads and exits does not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_replays_the_agents_past_events_only_when_asked() {
    let mut node = Node::new("replay");
    node.serve();
    // Created through the daemon, so its events are in the agent's history.
    let client = create_through_the_daemon(&node, "before").await;
    let mut counts = Vec::new();
    for replay_events in [false, true] {
        let Watched {
            recorder,
            cancel,
            task,
        } = watch(
            &node,
            SessionOptions {
                interval: Duration::from_millis(200),
                replay_events,
                ..SessionOptions::default()
            },
        );
        recorder.wait_for_pods("the pod listed", 1).await;
        // A few more rounds for any replayed event to arrive.
        tokio::time::sleep(Duration::from_millis(600)).await;
        counts.push(
            recorder
                .seen()
                .iter()
                .filter(|s| matches!(s, Seen::Event))
                .count(),
        );
        cancel.cancel();
        let _ = task.await;
    }
    assert_eq!(counts[0], 0, "no replay asked: only new events");
    assert!(counts[1] > 0, "replay asked: the pod's past events");
    let gone = flotilla::agent::protocol::messages::PodRef::new("default", "before");
    client
        .delete_pod(&gone, Some(0))
        .await
        .expect("delete the pod");
}
