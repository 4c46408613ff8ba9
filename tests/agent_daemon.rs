//! `flotilla-agent serve` as the console will use it: the real daemon on a
//! node of the test's own (support::pods), spoken to through the real
//! protocol client over its unix socket, running real busybox containers.
//! Restart policies and back-off run with short intervals (the hidden
//! back-off setting, not sleeps of minutes); the agent and the shims are
//! SIGKILLed to check what survives them.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use flotilla::agent::protocol::messages::{
    Event, EventFilter, LogRecord, LogsQuery, PodRecord, PodRef, StatsQuery,
};
use flotilla::agent::protocol::{Client, ClientError, ClientOptions, ErrorCode};
use flotilla::api::Pod;
use flotilla::api::status::{ContainerState, PodPhase};
use futures_util::StreamExt;
use serde_json::{Value, json};
use support::pods::Node;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// Generous: a debug build on a busy 2-core machine.
const DEADLINE: Duration = Duration::from_secs(30);

async fn connect(node: &Node) -> Client {
    let stream = UnixStream::connect(node.socket())
        .await
        .expect("connect to the agent socket");
    Client::connect(stream, ClientOptions::default())
        .await
        .expect("hello")
}

/// A pod of busybox containers: `(name, shell script)` each.
fn pod(node: &Node, name: &str, restart_policy: &str, containers: &[(&str, &str)]) -> Pod {
    let containers: Vec<Value> = containers
        .iter()
        .map(|(cname, script)| {
            json!({
                "name": cname,
                "image": node.image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", script],
            })
        })
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "restartPolicy": restart_policy,
            "terminationGracePeriodSeconds": 2,
            "containers": containers,
        },
    }))
    .expect("a valid pod")
}

fn pod_ref(name: &str) -> PodRef {
    PodRef::new("default", name)
}

/// Polls the pod's status until `done` holds, or fails the test with the
/// last status seen.
async fn wait_for(
    client: &Client,
    name: &str,
    what: &str,
    mut done: impl FnMut(&PodRecord) -> bool,
) -> PodRecord {
    let started = Instant::now();
    loop {
        let record = client
            .pod_status(&pod_ref(name))
            .await
            .expect("pods.status");
        if done(&record) {
            return record;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "pod {name}: {what} not reached in {DEADLINE:?}; last status:\n{}",
            serde_json::to_string_pretty(&record.status).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn container<'a>(record: &'a PodRecord, name: &str) -> &'a flotilla::api::status::ContainerStatus {
    record
        .status
        .container_statuses
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no status for container {name}: {:?}", record.status))
}

fn is_running(record: &PodRecord, name: &str) -> bool {
    record
        .status
        .container_statuses
        .iter()
        .any(|c| c.name == name && matches!(c.state, ContainerState::Running(_)))
}

fn terminated(state: &ContainerState) -> Option<(i32, &str)> {
    match state {
        ContainerState::Terminated(t) => Some((t.exit_code, t.reason.as_str())),
        _ => None,
    }
}

fn waiting_reason(state: &ContainerState) -> Option<&str> {
    match state {
        ContainerState::Waiting(w) => Some(w.reason.as_str()),
        _ => None,
    }
}

/// The state file of the running instance of `container` in pod `uid`.
fn instance_state(node: &Node, uid: &str, container: &str) -> (PathBuf, Value) {
    let dir = node
        .root
        .join("pods")
        .join(uid)
        .join("containers")
        .join(container);
    let newest = fs::read_dir(&dir)
        .expect("container dir")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .expect("an instance dir");
    let path = dir.join(newest.to_string()).join("state.json");
    let text = fs::read_to_string(&path).expect("state.json");
    (
        path,
        serde_json::from_str(&text).expect("state.json is JSON"),
    )
}

fn pid_in(state: &Value, field: &str) -> i32 {
    state[field]["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no {field} pid in {state}")) as i32
}

fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

async fn delete(client: &Client, name: &str) {
    client
        .delete_pod(&pod_ref(name), Some(1))
        .await
        .unwrap_or_else(|e| panic!("delete {name}: {e}"));
}

async fn collect_logs(client: &Client, query: LogsQuery) -> Vec<LogRecord> {
    let mut stream = client.logs(&query).await.expect("pods.logs");
    let mut records = Vec::new();
    while let Some(item) = stream.next().await {
        records.push(item.expect("a log record"));
    }
    records
}

fn logs_query(name: &str) -> LogsQuery {
    serde_json::from_value(json!({"namespace": "default", "name": name})).expect("logs query")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_listens_privately_and_reports_the_node() {
    let mut node = Node::new("d-node");
    let socket = node.serve();
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&node.run_dir), 0o700, "the socket's directory");
    assert_eq!(mode(&socket), 0o600, "the socket");

    let client = connect(&node).await;
    let hello = client.hello();
    assert_eq!(hello.version, "flotilla/1");
    for method in [
        "pods.create",
        "pods.logs",
        "events.subscribe",
        "node.metrics",
    ] {
        assert!(client.supports(method), "{method} not in {hello:?}");
    }

    let facts = client.node_facts().await.expect("node.facts");
    let host = nix::unistd::gethostname().unwrap();
    assert_eq!(facts.hostname, host.to_string_lossy());
    assert!(facts.cpus >= 1 && facts.memory_bytes > 0, "{facts:?}");
    assert!(
        facts.disk.total_bytes > 0 && facts.disk.free_bytes <= facts.disk.total_bytes,
        "{facts:?}"
    );

    // A CPU figure needs two samples of /proc/stat, a second apart.
    let started = Instant::now();
    let sample = loop {
        let series = client.node_metrics(None).await.expect("node.metrics");
        if let Some(s) = series
            .samples
            .iter()
            .rev()
            .find(|s| s.cpu_percent.is_some())
        {
            break s.clone();
        }
        assert!(started.elapsed() < DEADLINE, "no CPU figure: {series:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let cpu = sample.cpu_percent.unwrap();
    assert!((0.0..=100.0).contains(&cpu), "{sample:?}");
    assert!(
        sample.memory_available_bytes > 0
            && sample.memory_available_bytes <= sample.memory_total_bytes,
        "{sample:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policies_follow_kubernetes() {
    let mut node = Node::new("d-restart");
    // Long enough to outlast the 1 s it may take to notice an exit, so
    // CrashLoopBackOff shows between restarts.
    node.backoff_ms = "1500,3000,60000".into();
    node.serve();
    let client = connect(&node).await;
    let pods = [
        ("always", "Always", "echo run; exit 0"),
        ("onfailure-ok", "OnFailure", "exit 0"),
        ("onfailure-bad", "OnFailure", "echo run; exit 3"),
        ("never-bad", "Never", "exit 3"),
    ];
    for (name, policy, script) in pods {
        client
            .create_pod(pod(&node, name, policy, &[("main", script)]))
            .await
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
    }

    // Always restarts even a clean exit, backing off in between.
    let mut saw_crash_loop = false;
    let always = wait_for(&client, "always", "2 restarts", |r| {
        let c = container(r, "main");
        saw_crash_loop |= waiting_reason(&c.state) == Some("CrashLoopBackOff");
        c.restart_count >= 2
    })
    .await;
    let last = container(&always, "main")
        .last_state
        .as_ref()
        .expect("lastState");
    assert_eq!(terminated(last), Some((0, "Completed")), "{last:?}");
    assert!(
        saw_crash_loop,
        "never saw waiting/CrashLoopBackOff between restarts"
    );
    assert_eq!(
        always.status.phase,
        PodPhase::Running,
        "{:?}",
        always.status
    );

    // OnFailure: a clean exit ends the pod as Succeeded…
    let ok = wait_for(&client, "onfailure-ok", "Succeeded", |r| {
        r.status.phase == PodPhase::Succeeded
    })
    .await;
    assert_eq!(container(&ok, "main").restart_count, 0);
    assert_eq!(
        terminated(&container(&ok, "main").state),
        Some((0, "Completed"))
    );

    // …a failure restarts it.
    let bad = wait_for(&client, "onfailure-bad", "2 restarts", |r| {
        container(r, "main").restart_count >= 2
    })
    .await;
    let last = container(&bad, "main")
        .last_state
        .as_ref()
        .expect("lastState");
    assert_eq!(terminated(last), Some((3, "Error")), "{last:?}");

    // Never: Failed, and it stays so.
    let never = wait_for(&client, "never-bad", "Failed", |r| {
        r.status.phase == PodPhase::Failed
    })
    .await;
    assert_eq!(
        terminated(&container(&never, "main").state),
        Some((3, "Error"))
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let never = client.pod_status(&pod_ref("never-bad")).await.unwrap();
    assert_eq!(container(&never, "main").restart_count, 0, "{never:?}");
    assert_eq!(never.status.phase, PodPhase::Failed);

    // --previous reads the instance before the running one.
    let mut query = logs_query("always");
    query.previous = true;
    let previous = collect_logs(&client, query).await;
    assert_eq!(
        previous.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
        ["run"],
        "{previous:?}"
    );

    for (name, ..) in pods {
        delete(&client, name).await;
    }
    assert!(client.list_pods(None).await.unwrap().pods.is_empty());
    node.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_back_off_doubles_up_to_its_cap() {
    let mut node = Node::new("d-backoff");
    node.serve();
    let client = connect(&node).await;
    let mut events = client
        .subscribe_events(&EventFilter::default())
        .await
        .expect("events.subscribe");
    let created = client
        .create_pod(pod(&node, "crash", "Always", &[("main", "exit 1")]))
        .await
        .expect("create");
    // Starts, as the agent records them; the test's back-off is 200 ms
    // doubling to 800 ms.
    let mut starts: Vec<DateTime<Utc>> = Vec::new();
    let mut phases = Vec::new();
    let started = Instant::now();
    while starts.len() < 5 {
        let event: Event = tokio::time::timeout(DEADLINE, events.next())
            .await
            .expect("an event in time")
            .expect("the event stream goes on")
            .expect("an event");
        if event.pod == "crash" {
            // Each event names its pod's uid and the phase it left it in.
            assert_eq!(event.uid, created.uid, "{event:?}");
            phases.push(event.phase.expect("the pod's phase"));
        }
        if event.pod == "crash" && event.reason == "Started" {
            starts.push(event.time);
        }
        assert!(started.elapsed() < DEADLINE * 2, "only {starts:?}");
    }
    let gaps: Vec<i64> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]).num_milliseconds())
        .collect();
    // A start follows the previous exit by at least the back-off; the
    // container runs for a moment first, so the gap is at least that.
    for (gap, backoff) in gaps.iter().zip([200, 400, 800, 800]) {
        assert!(
            *gap >= backoff,
            "gaps {gaps:?} ms, back-offs 200, 400, 800, 800"
        );
    }
    // A pod restarting under restartPolicy Always never ends (Succeeded,
    // Failed): it is Running between its restarts.
    assert!(
        phases
            .iter()
            .all(|p| matches!(p, PodPhase::Pending | PodPhase::Running)),
        "{phases:?}"
    );
    assert_eq!(phases.last(), Some(&PodPhase::Running), "{phases:?}");
    let record = client.pod_status(&pod_ref("crash")).await.unwrap();
    assert!(container(&record, "main").restart_count >= 4, "{record:?}");
    delete(&client, "crash").await;
    node.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_pull_policies_are_honoured() {
    let mut node = Node::new("d-pull");
    node.serve();
    let client = connect(&node).await;
    let with_image = |name: &str, image: &str, policy: &str| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"containers": [{
                "name": "main", "image": image, "imagePullPolicy": policy,
                "command": ["sleep", "600"],
            }]},
        }))
        .unwrap()
    };
    // The image is in the store and its registry is gone: IfNotPresent runs
    // it without asking, Always must ask and fails.
    client
        .create_pod(with_image("present", &node.image, "IfNotPresent"))
        .await
        .unwrap();
    client
        .create_pod(with_image("always", &node.image, "Always"))
        .await
        .unwrap();
    client
        .create_pod(with_image("never", "127.0.0.1:1/absent:1", "Never"))
        .await
        .unwrap();
    client
        .create_pod(with_image("invalid", "::not-an-image::", "IfNotPresent"))
        .await
        .unwrap();
    wait_for(&client, "present", "running", |r| is_running(r, "main")).await;
    let mut reasons = Vec::new();
    let always = wait_for(&client, "always", "ImagePullBackOff", |r| {
        let reason = waiting_reason(&container(r, "main").state).map(str::to_string);
        if let Some(reason) = reason
            && reasons.last() != Some(&reason)
        {
            reasons.push(reason);
        }
        reasons.last().map(String::as_str) == Some("ImagePullBackOff")
    })
    .await;
    assert_eq!(
        reasons.first().map(String::as_str),
        Some("ErrImagePull"),
        "{reasons:?}"
    );
    let ContainerState::Waiting(waiting) = &container(&always, "main").state else {
        unreachable!()
    };
    assert!(
        waiting.message.contains("127.0.0.1"),
        "the message names the registry: {waiting:?}"
    );
    let never = wait_for(&client, "never", "ErrImageNeverPull", |r| {
        waiting_reason(&container(r, "main").state) == Some("ErrImageNeverPull")
    })
    .await;
    assert_eq!(never.status.phase, PodPhase::Pending);
    wait_for(&client, "invalid", "InvalidImageName", |r| {
        waiting_reason(&container(r, "main").state) == Some("InvalidImageName")
    })
    .await;
    for name in ["present", "always", "never", "invalid"] {
        delete(&client, name).await;
    }
    node.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_outlive_a_killed_agent_and_are_readopted() {
    let mut node = Node::new("d-adopt");
    node.serve();
    let client = connect(&node).await;
    let counter = "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.05; done";
    let created = client
        .create_pod(pod(&node, "counter", "Always", &[("main", counter)]))
        .await
        .expect("create");
    wait_for(&client, "counter", "running", |r| is_running(r, "main")).await;
    let (_, state) = instance_state(&node, &created.uid, "main");
    let (shim, init) = (pid_in(&state, "shim"), pid_in(&state, "pid"));
    drop(client);

    node.kill_serve();
    // The CLI reads the logs without serve: the count goes on.
    let count_lines = |node: &Node| {
        let logs = node.run(&["logs", "counter"]);
        logs.assert_ok();
        logs.stdout.lines().count()
    };
    let before = count_lines(&node);
    let started = Instant::now();
    while count_lines(&node) < before + 10 {
        assert!(
            started.elapsed() < DEADLINE,
            "the container stopped logging when the agent died"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        alive(shim) && alive(init),
        "shim {shim} or container {init} died with the agent"
    );

    node.serve();
    let client = connect(&node).await;
    let record = wait_for(&client, "counter", "running", |r| is_running(r, "main")).await;
    assert_eq!(record.uid, created.uid);
    assert_eq!(
        container(&record, "main").restart_count,
        0,
        "re-adopted, not restarted"
    );
    let (_, state) = instance_state(&node, &created.uid, "main");
    assert_eq!(pid_in(&state, "pid"), init, "the same container process");
    // And the new agent streams its logs, following.
    let mut query = logs_query("counter");
    query.follow = true;
    query.tail = Some(1);
    let mut stream = client.logs(&query).await.expect("pods.logs follow");
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let record = tokio::time::timeout(DEADLINE, stream.next())
            .await
            .expect("a line in time")
            .expect("the stream goes on")
            .expect("a record");
        seen.push(record.text);
    }
    let numbers: Vec<u64> = seen
        .iter()
        .map(|t| t.strip_prefix("line ").unwrap().parse().unwrap())
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "followed lines in order: {seen:?}"
    );
    stream.cancel().await.expect("cancel");
    delete(&client, "counter").await;
    assert!(!alive(shim) && !alive(init));
    node.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_shim_is_noticed_and_handled_per_restart_policy() {
    let mut node = Node::new("d-shim");
    node.serve();
    let client = connect(&node).await;
    let mut uids = BTreeMap::new();
    for (name, policy) in [("always", "Always"), ("never", "Never")] {
        let record = client
            .create_pod(pod(&node, name, policy, &[("main", "sleep 600")]))
            .await
            .unwrap();
        // A create answers once the container's process runs, as a
        // runtime's start does: a client need not look again to see it.
        assert!(is_running(&record, "main"), "{:?}", record.status);
        uids.insert(name, record.uid);
    }
    for name in ["always", "never"] {
        wait_for(&client, name, "running", |r| is_running(r, "main")).await;
    }
    let mut old_containers = Vec::new();
    for name in ["always", "never"] {
        let (_, state) = instance_state(&node, &uids[name], "main");
        old_containers.push(pid_in(&state, "pid"));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid_in(&state, "shim")),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    let always = wait_for(&client, "always", "a restart", |r| {
        container(r, "main").restart_count == 1 && is_running(r, "main")
    })
    .await;
    let last = container(&always, "main").last_state.as_ref().unwrap();
    let ContainerState::Terminated(last) = last else {
        panic!("{last:?}")
    };
    assert_eq!(last.exit_code, 137);
    assert!(last.message.contains("shim"), "{last:?}");
    let never = wait_for(&client, "never", "Failed", |r| {
        r.status.phase == PodPhase::Failed
    })
    .await;
    assert_eq!(container(&never, "main").restart_count, 0);
    // A container without its shim is killed, not left unsupervised.
    let started = Instant::now();
    while old_containers.iter().any(|p| alive(*p)) {
        assert!(
            started.elapsed() < DEADLINE,
            "{old_containers:?} outlived their shims"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for name in ["always", "never"] {
        delete(&client, name).await;
    }
    node.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_pause_stats_and_delete_of_a_two_container_pod() {
    let mut node = Node::new("d-life");
    node.serve();
    let client = connect(&node).await;
    let mut events = client
        .subscribe_events(&EventFilter::default())
        .await
        .unwrap();
    let trap = "trap 'echo bye; exit 0' TERM; echo hi; while true; do sleep 0.1; done";
    client
        .create_pod(pod(
            &node,
            "duo",
            "Always",
            &[("web", trap), ("side", "sleep 600")],
        ))
        .await
        .unwrap();
    wait_for(&client, "duo", "both running", |r| {
        is_running(r, "web") && is_running(r, "side")
    })
    .await;
    // Two containers: logs must name one.
    let err = client.logs(&logs_query("duo")).await.err();
    let err = match err {
        Some(e) => e,
        None => {
            let mut stream = client.logs(&logs_query("duo")).await.unwrap();
            match stream.next().await {
                Some(Err(e)) => e,
                other => panic!("logs of a two-container pod without a name: {other:?}"),
            }
        }
    };
    assert!(
        matches!(&err, ClientError::Remote(body) if body.code == ErrorCode::BadRequest),
        "{err:?}"
    );

    // Stats: each container's figures, CPU once two samples exist.
    let started = Instant::now();
    let stats = loop {
        let list = client
            .pod_stats(&StatsQuery::default())
            .await
            .expect("pods.stats");
        let pod = list
            .pods
            .into_iter()
            .find(|p| p.name == "duo")
            .expect("duo's stats");
        if pod.containers.iter().all(|c| c.cpu_millicores.is_some()) {
            break pod;
        }
        assert!(started.elapsed() < DEADLINE, "no CPU figure: {pod:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    for c in &stats.containers {
        assert!(c.pids >= 1 && c.memory_bytes > 0, "{c:?}");
    }

    // Pause freezes every container; resume thaws them.
    client.pause_pod(&pod_ref("duo")).await.expect("pause");
    // The v1 freezer where there is one (hybrid hosts too), else v2's.
    let web_dirs: Vec<PathBuf> = node
        .cgroup_dirs()
        .into_iter()
        .filter(|d| d.file_name().is_some_and(|n| n == "web"))
        .collect();
    let mut frozen: Vec<PathBuf> = web_dirs
        .iter()
        .filter(|d| d.join("freezer.state").exists())
        .cloned()
        .collect();
    if frozen.is_empty() {
        frozen = web_dirs
            .into_iter()
            .filter(|d| d.join("cgroup.freeze").exists())
            .collect();
    }
    assert!(!frozen.is_empty(), "no freezer cgroup for web");
    for dir in &frozen {
        let state = fs::read_to_string(dir.join("freezer.state"))
            .or_else(|_| fs::read_to_string(dir.join("cgroup.freeze")))
            .unwrap();
        assert!(
            matches!(state.trim(), "FROZEN" | "FREEZING" | "1"),
            "{}: {state}",
            dir.display()
        );
    }
    client.resume_pod(&pod_ref("duo")).await.expect("resume");

    // Stop: TERM reaches web's trap (exit 0); side is SIGTERMed too.
    let stopped = client
        .stop_pod(&pod_ref("duo"), Some(5))
        .await
        .expect("stop");
    let web = container(&stopped, "web");
    assert_eq!(terminated(&web.state).map(|t| t.0), Some(0), "{web:?}");
    let mut query = logs_query("duo");
    query.container = Some("web".into());
    let texts: Vec<String> = collect_logs(&client, query)
        .await
        .into_iter()
        .map(|r| r.text)
        .collect();
    assert_eq!(texts, ["hi", "bye"]);
    // A stopped pod is not restarted, whatever its policy.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = client.pod_status(&pod_ref("duo")).await.unwrap();
    assert!(
        !is_running(&after, "web") && !is_running(&after, "side"),
        "{after:?}"
    );

    delete(&client, "duo").await;
    let missing = client.pod_status(&pod_ref("duo")).await.unwrap_err();
    assert!(
        matches!(&missing, ClientError::Remote(b) if b.code == ErrorCode::NotFound),
        "{missing:?}"
    );
    // The events told the story.
    let mut reasons = Vec::new();
    while let Ok(Some(Ok(event))) =
        tokio::time::timeout(Duration::from_millis(500), events.next()).await
    {
        if event.pod == "duo" {
            reasons.push(event.reason);
        }
    }
    assert!(reasons.iter().any(|r| r == "Started"), "{reasons:?}");
    node.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_errors_and_the_agent_carries_on() {
    let mut node = Node::new("d-bad");
    node.serve();
    let stream = UnixStream::connect(node.socket()).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut ask = async |line: String| -> Value {
        write.write_all(line.as_bytes()).await.unwrap();
        write.write_all(b"\n").await.unwrap();
        let reply = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .expect("a reply in time")
            .unwrap()
            .expect("the agent still answers");
        serde_json::from_str(&reply).unwrap()
    };
    let hello = ask(
        r#"{"id":1,"method":"hello","params":{"versions":["flotilla/1"],"client":"test"}}"#.into(),
    )
    .await;
    assert_eq!(hello["result"]["version"], "flotilla/1", "{hello}");
    let cases = [
        ("not json", "bad_request".to_string()),
        (
            r#"{"id":2,"method":"pods.explode"}"#,
            "unknown_method".into(),
        ),
        (
            r#"{"id":3,"method":"pods.create","params":{"pod":{"metadata":{"name":"x"},"spec":{"containers":[]}}}}"#,
            "bad_request".into(),
        ),
        (
            r#"{"id":4,"method":"pods.create","params":{"pod":{"metadata":{"name":"Not_A_Name"},"spec":{"containers":[{"name":"a","image":"busybox"}]}}}}"#,
            "bad_request".into(),
        ),
        (
            r#"{"id":5,"method":"pods.status","params":{"name":"nobody"}}"#,
            "not_found".into(),
        ),
        (
            r#"{"id":6,"method":"pods.status","params":{"name":"x","colour":"red"}}"#,
            "bad_request".into(),
        ),
    ];
    for (line, code) in cases {
        let reply = ask(line.into()).await;
        assert_eq!(reply["error"]["code"], code, "{line} → {reply}");
        assert!(
            !reply["error"]["message"].as_str().unwrap_or("").is_empty(),
            "{reply}"
        );
    }
    let huge = format!(
        r#"{{"id":7,"method":"hello","params":{{"client":"{}"}}}}"#,
        "x".repeat(2 << 20)
    );
    let reply = ask(huge).await;
    assert_eq!(reply["error"]["code"], "too_large", "{reply}");
    let reply = ask(r#"{"id":8,"method":"pods.list"}"#.into()).await;
    assert_eq!(reply["result"]["pods"], json!([]), "{reply}");
    assert!(
        node.serve_pid().is_some_and(alive_u32),
        "serve died: {}",
        node.serve_log()
    );
    node.assert_clean();
}

fn alive_u32(pid: u32) -> bool {
    alive(pid as i32)
}
