//! Pods through `flotilla-agent`'s own verbs, as root, on real containers:
//! each test has a node of its own (support::pods) and checks that what it
//! ran leaves nothing behind.
//!
//! Nothing here asserts on wall-clock durations: waits poll with generous
//! deadlines; the one place that must let time pass to see that nothing
//! happens (a paused container) lets it pass without measuring it, and the
//! CPU limit is checked as a share of a CPU with a wide margin.

mod support;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use support::agent::finish;
use support::pods::Node;

/// How long any wait for a container to get somewhere may take before the
/// test fails: far beyond what each takes on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(60);

/// A registry nobody listens on: pulls from it fail at once.
const MISSING_IMAGE: &str = "127.0.0.1:1/demo/missing:latest";

// ---------------------------------------------------------------------------
// Helpers

/// Polls `probe` every 50 ms until it returns Ok, or fails the test after
/// [`DEADLINE`] saying what it waited for and what it saw last.
fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let started = Instant::now();
    loop {
        match probe() {
            Ok(value) => return value,
            Err(last) if started.elapsed() > DEADLINE => {
                panic!("waited {DEADLINE:?} for {what}; last seen: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// `ps -o json` (with `-a` if `all`), parsed.
fn ps_json(node: &Node, all: bool) -> Vec<Value> {
    let args: &[&str] = if all {
        &["ps", "-a", "-o", "json"]
    } else {
        &["ps", "-o", "json"]
    };
    let run = node.run(args);
    run.assert_ok();
    match serde_json::from_str::<Value>(&run.stdout) {
        Ok(Value::Array(pods)) => pods,
        other => panic!(
            "ps -o json is not a JSON array ({other:?}):\n{}",
            run.text()
        ),
    }
}

/// The `ps -a -o json` entry of pod `name`, if there is one.
fn pod_entry(node: &Node, name: &str) -> Option<Value> {
    ps_json(node, true).into_iter().find(|p| p["name"] == name)
}

/// The state object (`{"running": …}`, `{"terminated": …}`, `{"waiting": …}`)
/// of pod `name`'s container.
fn state(node: &Node, name: &str) -> Value {
    let pod = pod_entry(node, name).unwrap_or_else(|| panic!("no pod {name} in ps -a"));
    pod["status"]["containerStatuses"][0]["state"].clone()
}

/// The state of pod `name`'s container, or why there is none yet (a
/// foreground `run` started by the test may not have made the pod yet).
fn state_now(node: &Node, name: &str) -> Result<Value, String> {
    let pod = pod_entry(node, name).ok_or_else(|| format!("no pod {name} yet"))?;
    Ok(pod["status"]["containerStatuses"][0]["state"].clone())
}

/// Waits until pod `name`'s container runs.
fn wait_running(node: &Node, name: &str) {
    wait_for(&format!("{name} to run"), || {
        let state = state_now(node, name)?;
        if state.get("running").is_some() {
            Ok(())
        } else {
            Err(state.to_string())
        }
    })
}

/// Waits until pod `name`'s container has ended, and returns its
/// `terminated` state.
fn wait_terminated(node: &Node, name: &str) -> Value {
    wait_for(&format!("{name} to end"), || {
        let state = state_now(node, name)?;
        state
            .get("terminated")
            .cloned()
            .ok_or_else(|| state.to_string())
    })
}

/// `logs ARGS… NAME` as text, which must succeed.
fn logs(node: &Node, args: &[&str]) -> String {
    let mut all = vec!["logs"];
    all.extend_from_slice(args);
    let run = node.run(&all);
    run.assert_ok();
    run.stdout
}

/// Waits until `logs NAME` shows a line equal to `line` (the pod may not
/// be there yet).
fn wait_for_log_line(node: &Node, name: &str, line: &str) -> String {
    wait_for(&format!("{line:?} in the log of {name}"), || {
        let run = node.run(&["logs", name]);
        if run.status.success() && run.stdout.lines().any(|l| l == line) {
            Ok(run.stdout)
        } else {
            Err(run.text())
        }
    })
}

/// `run -d --name NAME [EXTRA…] IMAGE -- sh -c SCRIPT`, which must succeed
/// and print the name.
fn run_detached(node: &Node, name: &str, extra: &[&str], script: &str) {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[&node.image, "--", "sh", "-c", script]);
    let run = node.run(&args);
    run.assert_ok();
    assert_eq!(run.stdout, format!("{name}\n"), "{}", run.text());
}

/// The uid of pod `name`, which names its cgroup (`pod-<uid>`).
fn uid(node: &Node, name: &str) -> String {
    let pod = pod_entry(node, name).unwrap_or_else(|| panic!("no pod {name} in ps -a"));
    pod["uid"].as_str().expect("uid is a string").to_string()
}

/// Where the cgroup files of `controller` are for the group `rel` (relative
/// to the hierarchy's root): the controller's v1 hierarchy if the host
/// mounts one (v1 and hybrid hosts), else the cgroup2 tree. The flag says
/// which (true: cgroup2).
fn cgroup_dir(controller: &str, rel: &str) -> (PathBuf, bool) {
    let table = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    let mut unified = None;
    for line in table.lines() {
        let mount = line.split(' ').nth(4).unwrap_or("");
        let Some(rest) = line.split(" - ").nth(1) else {
            continue;
        };
        let fields: Vec<&str> = rest.split(' ').collect();
        match fields.first() {
            Some(&"cgroup") => {
                let options = fields.get(2).unwrap_or(&"");
                if options.split(',').any(|o| o == controller) {
                    return (Path::new(mount).join(rel), false);
                }
            }
            Some(&"cgroup2") => unified = Some(PathBuf::from(mount)),
            _ => {}
        }
    }
    let root = unified.expect("neither a v1 hierarchy nor cgroup2 is mounted");
    (root.join(rel), true)
}

/// The cgroup of pod `uid` (`container`: one of its containers') relative
/// to the hierarchies' roots.
fn group_path(node: &Node, uid: &str, container: Option<&str>) -> String {
    match container {
        Some(c) => format!("{}/pod-{uid}/{c}", node.cgroup_parent),
        None => format!("{}/pod-{uid}", node.cgroup_parent),
    }
}

fn read_trimmed(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// The `key value` line `key` of a flat-keyed cgroup file (cpu.stat).
fn keyed(path: &Path, key: &str) -> u64 {
    let text = read_trimmed(path);
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {}:\n{text}", path.display()))
}

/// CPU time used by a group, in nanoseconds.
fn cpu_usage_ns(rel: &str) -> u64 {
    let (dir, v2) = cgroup_dir("cpuacct", rel);
    if v2 {
        keyed(&dir.join("cpu.stat"), "usage_usec") * 1000
    } else {
        read_trimmed(&dir.join("cpuacct.usage"))
            .parse()
            .expect("cpuacct.usage is a number")
    }
}

/// The pod logs' directory of container `name` (`<root>/pods/<uid>/containers/<name>/logs`).
fn log_dir(node: &Node, name: &str) -> PathBuf {
    node.root
        .join("pods")
        .join(uid(node, name))
        .join("containers")
        .join(name)
        .join("logs")
}

// ---------------------------------------------------------------------------
// Foreground `run`

#[test]
fn run_streams_the_output_and_exits_with_the_containers_code() {
    let node = Node::new("run-fg");
    let run = node.run(&[
        "run",
        "--rm",
        &node.image,
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(run.status.code(), Some(7), "{}", run.text());
    assert_eq!(run.stdout, "out\n", "{}", run.text());
    assert_eq!(run.stderr, "err\n", "{}", run.text());
    node.assert_clean();
}

#[test]
fn run_exits_137_when_the_container_is_killed() {
    let node = Node::new("run-killed");
    let args = ["run", "--name", "doomed", &node.image, "--", "sleep", "600"];
    let child = node.command(&args).spawn().expect("start run");
    wait_running(&node, "doomed");
    node.run(&["kill", "doomed"]).assert_ok();
    let run = finish(child, &args);
    assert_eq!(run.status.code(), Some(137), "{}", run.text());

    // Not --rm: the container stays, ended by SIGKILL.
    let terminated = state(&node, "doomed")["terminated"].clone();
    assert_eq!(terminated["exitCode"], 137, "{terminated}");
    assert_eq!(terminated["signal"], 9, "{terminated}");
    assert_eq!(terminated["reason"], "Error", "{terminated}");
    node.run(&["rm", "doomed"]).assert_ok();
    assert!(ps_json(&node, true).is_empty());
    node.assert_clean();
}

#[test]
fn run_in_the_foreground_stops_on_stop_and_on_ctrl_c() {
    let node = Node::new("run-stop");
    // The trap runs only if SIGTERM reaches the container unblocked.
    let script = "trap 'echo got TERM; exit 5' TERM; echo ready; while :; do sleep 0.1; done";

    // `stop` from another process: SIGTERM, honoured well within the grace period.
    let args = [
        "run",
        "--rm",
        "--name",
        "fg",
        &node.image,
        "--",
        "sh",
        "-c",
        script,
    ];
    let child = node.command(&args).spawn().expect("start run");
    wait_for_log_line(&node, "fg", "ready");
    node.run(&["stop", "-t", "30", "fg"]).assert_ok();
    let run = finish(child, &args);
    assert_eq!(run.status.code(), Some(5), "{}", run.text());
    assert_eq!(run.stdout, "ready\ngot TERM\n", "{}", run.text());
    node.assert_clean();

    // Ctrl-C (SIGINT to `run`) is passed on as SIGTERM.
    let args = [
        "run",
        "--rm",
        "--name",
        "fg2",
        &node.image,
        "--",
        "sh",
        "-c",
        script,
    ];
    let child = node.command(&args).spawn().expect("start run");
    wait_for_log_line(&node, "fg2", "ready");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).expect("SIGINT to run");
    let run = finish(child, &args);
    assert_eq!(run.status.code(), Some(5), "{}", run.text());
    assert_eq!(run.stdout, "ready\ngot TERM\n", "{}", run.text());
    node.assert_clean();
}

/// Whether the image store's index names a lease held by `holder`.
fn index_has_lease(node: &Node, holder: &str) -> bool {
    let index: Value = fs::read(node.root.join("images").join("index.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    index["leases"].get(holder).is_some()
}

#[test]
fn an_ephemeral_pod_lives_in_the_run_dir_and_a_daemon_pod_on_disk() {
    let node = Node::new("ephemeral");
    let script =
        "trap 'exit 0' TERM; echo kept > /written; echo ready; while :; do sleep 0.1; done";

    // `run --rm`: record, log, writable layer and image lease under the run
    // dir (tmpfs on a node); nothing under the root, nothing in the index.
    // The layer's files are on a tmpfs of the container's own, mounted in
    // its mount namespace: none reaches the run dir (the host's /run).
    let args = [
        "run",
        "--rm",
        "--name",
        "eph",
        &node.image,
        "--",
        "sh",
        "-c",
        script,
    ];
    let child = node.command(&args).spawn().expect("start run");
    wait_for_log_line(&node, "eph", "ready");
    let eph = uid(&node, "eph");
    let dir = node.run_dir.join("ephemeral").join(&eph);
    assert!(dir.join("pod.json").is_file(), "{dir:?} holds the record");
    let container = dir.join("containers").join("eph");
    assert!(container.join("logs").join("0.log").is_file(), "the log");
    assert!(
        container.join("0").join("upper").is_dir(),
        "the writable layer"
    );
    assert!(
        !container.join("0/upper/written").exists()
            && !container.join("0/upper/upper/written").exists(),
        "the container's write reached the run dir"
    );
    assert!(!node.root.join("pods").join(&eph).exists());
    assert!(
        node.run_dir
            .join("leases")
            .join(format!("{eph}_eph"))
            .is_file()
    );
    assert!(!index_has_lease(&node, &format!("{eph}/eph")));

    // A daemon pod (`run -d`): all of it on disk, its lease in the index.
    run_detached(&node, "daemon", &[], script);
    let daemon = uid(&node, "daemon");
    let dir = node.root.join("pods").join(&daemon);
    assert!(dir.join("pod.json").is_file(), "{dir:?} holds the record");
    assert!(
        dir.join("containers/daemon/0/upper/written").is_file(),
        "the writable layer, on disk"
    );
    assert!(!node.run_dir.join("ephemeral").join(&daemon).exists());
    assert!(index_has_lease(&node, &format!("{daemon}/daemon")));

    // Both are listed, and found by `logs`.
    let names: Vec<Value> = ps_json(&node, true)
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert!(
        names.contains(&"eph".into()) && names.contains(&"daemon".into()),
        "{names:?}"
    );
    assert_eq!(logs(&node, &["eph"]), "ready\n");
    // Its namespaces are its own process's (none is bound in a sandbox);
    // an exec finds them all the same.
    assert!(!node.run_dir.join("pods").join(&eph).join("ns").exists());
    let exec = node.run(&["exec", "eph", "--", "hostname"]);
    exec.assert_ok();
    assert_eq!(exec.stdout, "eph\n", "{}", exec.text());
    // An exec sees the container's files all the same.
    let exec = node.run(&["exec", "eph", "--", "cat", "/written"]);
    assert_eq!(exec.stdout, "kept\n", "{}", exec.text());

    // The run ends and removes its pod, lease and all.
    node.run(&["stop", "-t", "30", "eph"]).assert_ok();
    let run = finish(child, &args);
    assert_eq!(run.status.code(), Some(0), "{}", run.text());
    assert!(!node.run_dir.join("ephemeral").join(&eph).exists());
    assert!(pod_entry(&node, "eph").is_none());

    node.run(&["rm", "-f", "daemon"]).assert_ok();
    assert!(!index_has_lease(&node, &format!("{daemon}/daemon")));
    node.assert_clean();
}

#[test]
fn run_passes_environment_variables() {
    let node = Node::new("run-env");
    let run = node.run(&[
        "run",
        "--rm",
        "-e",
        "GREETING=hello",
        "-e",
        "SPACED=a b=c",
        "-e",
        "EMPTY=",
        "-e",
        "PATH=/bin:/sbin",
        &node.image,
        "--",
        "sh",
        "-c",
        r#"echo "$GREETING|$SPACED|${EMPTY-unset}|$PATH""#,
    ]);
    run.assert_ok();
    assert_eq!(run.stdout, "hello|a b=c||/bin:/sbin\n", "{}", run.text());
    node.assert_clean();
}

#[test]
fn a_run_rm_container_makes_the_namespaces_a_pod_would_have() {
    // `run --rm` lets its one container make its namespaces (nothing bound
    // in the sandbox); a detached run joins the sandbox's. Both must look
    // the same from inside: the pod's hostname, loopback up, and network,
    // IPC and UTS namespaces that are not the node's.
    let node = Node::new("run-ns");
    let script = "hostname; cat /sys/class/net/lo/flags; \
        for ns in net ipc uts; do readlink /proc/self/ns/$ns; done";
    let host: Vec<String> = ["net", "ipc", "uts"]
        .iter()
        .map(|ns| {
            fs::read_link(format!("/proc/self/ns/{ns}"))
                .expect("read this process's namespace")
                .display()
                .to_string()
        })
        .collect();
    let check = |how: &str, out: &str, name: &str| {
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 5, "{how}: {out}");
        assert_eq!(lines[0], name, "{how}: the hostname is the pod's name");
        // IFF_UP | IFF_LOOPBACK
        assert_eq!(lines[1], "0x9", "{how}: loopback is up");
        for (inside, outside) in lines[2..].iter().zip(&host) {
            assert_ne!(inside, outside, "{how}: {inside} is the node's own");
        }
    };

    let run = node.run(&[
        "run",
        "--rm",
        "--name",
        "fg",
        &node.image,
        "--",
        "sh",
        "-c",
        script,
    ]);
    run.assert_ok();
    check("run --rm", &run.stdout, "fg");

    node.run(&[
        "run",
        "-d",
        "--name",
        "bg",
        &node.image,
        "--",
        "sh",
        "-c",
        script,
    ])
    .assert_ok();
    let terminated = wait_terminated(&node, "bg");
    assert_eq!(terminated["exitCode"], 0, "{terminated}");
    check("run -d", &logs(&node, &["bg"]), "bg");
    node.run(&["rm", "bg"]).assert_ok();
    node.assert_clean();
}

#[test]
fn containers_start_with_no_signal_blocked_or_ignored() {
    // The agent's runtime ignores SIGPIPE and a foreground `run` blocks
    // SIGINT and SIGTERM for its signal thread: none of that may reach the
    // container, or `yes | head` never ends and `stop` is not heard.
    let node = Node::new("run-signals");
    // grep itself, not under a shell: sh ignores SIGQUIT for itself.
    let grep = ["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"];
    let expected = "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n";
    let mut args = vec!["run", "--rm", &node.image, "--"];
    args.extend_from_slice(&grep);
    let run = node.run(&args);
    run.assert_ok();
    assert_eq!(run.stdout, expected, "foreground:\n{}", run.text());

    let mut args = vec!["run", "-d", "--name", "bg", &node.image, "--"];
    args.extend_from_slice(&grep);
    node.run(&args).assert_ok();
    let terminated = wait_terminated(&node, "bg");
    assert_eq!(terminated["exitCode"], 0, "{terminated}");
    assert_eq!(logs(&node, &["bg"]), expected, "detached");
    node.run(&["rm", "bg"]).assert_ok();
    node.assert_clean();
}

#[test]
fn run_refuses_a_missing_image_or_bad_arguments_and_leaves_nothing() {
    let node = Node::new("run-errors");
    // A missing image, in every mode.
    for mode in [&["--rm"][..], &[][..], &["-d"][..]] {
        let mut args = vec!["run", "--name", "ghost"];
        args.extend_from_slice(mode);
        args.extend_from_slice(&[MISSING_IMAGE, "--", "true"]);
        let run = node.run(&args);
        run.assert_failed();
        assert!(
            run.stderr.contains("ErrImagePull") && run.stderr.contains("127.0.0.1:1"),
            "the error should say the pull failed and where:\n{}",
            run.text()
        );
        assert!(
            ps_json(&node, true).is_empty(),
            "run {mode:?} of a missing image left a container:\n{:?}",
            ps_json(&node, true)
        );
        node.assert_clean();
    }

    // Arguments refused before anything is made.
    let image = node.image.clone();
    let refused: &[(&[&str], &str)] = &[
        (&["run", "--rm", "--bogus", &image], "--bogus"),
        (&["run", "--rm", "--memory", "lots", &image], "lots"),
        (&["run", "--rm", "--cpus", "fast", &image], "fast"),
        (&["run", "--rm", "-e", "NOEQUALS", &image], "NOEQUALS"),
        (&["run", "--rm", "-e", "=value", &image], "=value"),
        (&["run", "--rm", "--name", "bad/name", &image], "bad/name"),
        (
            &["run", "--name", "bad/name", &image, "--", "true"],
            "bad/name",
        ),
        (&["run", "-d", "--name", "Bad_Name", &image], "Bad_Name"),
    ];
    for (args, named) in refused {
        let run = node.run(args);
        run.assert_failed();
        assert!(
            run.stderr.contains(named),
            "the error should name {named:?}:\n{}",
            run.text()
        );
        assert!(
            ps_json(&node, true).is_empty(),
            "{args:?} left a container:\n{:?}",
            ps_json(&node, true)
        );
        node.assert_clean();
    }
}

#[test]
fn run_reports_a_command_that_cannot_start() {
    let node = Node::new("run-start-error");
    // podman's codes: 127 for no such program, 126 for one that cannot run.
    let run = node.run(&["run", "--rm", &node.image, "--", "/nonexistent"]);
    assert_eq!(run.status.code(), Some(127), "{}", run.text());
    assert!(
        run.stderr.starts_with("error:") && run.stderr.contains("exec /nonexistent"),
        "{}",
        run.text()
    );
    node.assert_clean();
    let run = node.run(&["run", "--rm", &node.image, "--", "/etc/passwd"]);
    assert_eq!(run.status.code(), Some(126), "{}", run.text());
    assert!(run.stderr.contains("exec /etc/passwd"), "{}", run.text());
    node.assert_clean();

    // Detached: `run -d` waits for the start, so it is the one to fail; the
    // container stays (as with podman), with its end.
    let run = node.run(&[
        "run",
        "-d",
        "--name",
        "broken",
        &node.image,
        "--",
        "/nonexistent",
    ]);
    run.assert_failed();
    assert!(run.stderr.contains("exec /nonexistent"), "{}", run.text());
    let terminated = state(&node, "broken")["terminated"].clone();
    assert_eq!(terminated["reason"], "StartError", "{terminated}");
    assert_eq!(terminated["exitCode"], 128, "{terminated}");
    node.run(&["rm", "broken"]).assert_ok();
    node.assert_clean();
}

// ---------------------------------------------------------------------------
// Detached containers: ps, logs, stop, kill, rm

#[test]
fn detached_container_ps_logs_stop_and_rm() {
    let node = Node::new("lifecycle");
    run_detached(
        &node,
        "web",
        &[],
        "trap 'echo bye; exit 3' TERM; i=0; while :; do echo line $i; i=$((i+1)); sleep 0.1; done",
    );
    wait_running(&node, "web");

    // ps: the table...
    let table = node.run(&["ps"]);
    table.assert_ok();
    let mut lines = table.stdout.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "IMAGE", "STATUS", "RESTARTS", "CREATED"],
        "{}",
        table.text()
    );
    let row: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(row.first(), Some(&"web"), "{}", table.text());
    assert_eq!(row.get(1), Some(&node.image.as_str()), "{}", table.text());
    assert_eq!(row.get(2), Some(&"Up"), "{}", table.text());
    assert_eq!(lines.next(), None, "one container:\n{}", table.text());

    // ... and JSON.
    let pods = ps_json(&node, false);
    assert_eq!(pods.len(), 1, "{pods:?}");
    let pod = &pods[0];
    assert_eq!(pod["name"], "web", "{pod}");
    assert_eq!(pod["namespace"], "default", "{pod}");
    assert_eq!(pod["paused"], false, "{pod}");
    assert!(pod["uid"].as_str().is_some_and(|u| !u.is_empty()), "{pod}");
    assert_eq!(pod["status"]["phase"], "Running", "{pod}");
    let container = &pod["status"]["containerStatuses"][0];
    assert_eq!(container["name"], "web", "{pod}");
    assert_eq!(container["image"], node.image.as_str(), "{pod}");
    assert!(
        container["imageID"]
            .as_str()
            .is_some_and(|i| i.starts_with("sha256:")),
        "{pod}"
    );
    assert_eq!(container["ready"], true, "{pod}");
    assert_eq!(container["restartCount"], 0, "{pod}");
    assert!(
        container["state"]["running"]["startedAt"].is_string(),
        "{pod}"
    );

    // logs: every line so far, in order; --tail: the last ones.
    let text = wait_for_log_line(&node, "web", "line 5");
    for (n, line) in text.lines().enumerate() {
        assert_eq!(line, format!("line {n}"), "{text}");
    }
    let tail = logs(&node, &["--tail", "2", "web"]);
    let numbers: Vec<u64> = tail
        .lines()
        .map(|l| {
            l.strip_prefix("line ")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("not a counter line: {l:?}"))
        })
        .collect();
    assert_eq!(numbers.len(), 2, "{tail}");
    assert!(numbers[0] >= 4 && numbers[1] == numbers[0] + 1, "{tail}");

    // A second container of the same name is refused.
    let again = node.run(&["run", "-d", "--name", "web", &node.image]);
    again.assert_failed();
    assert!(again.stderr.contains("web"), "{}", again.text());

    // stop: SIGTERM, which the trap turns into exit code 3.
    let stop = node.run(&["stop", "web"]);
    stop.assert_ok();
    assert_eq!(stop.stdout, "web\n", "{}", stop.text());
    let terminated = state(&node, "web")["terminated"].clone();
    assert_eq!(terminated["exitCode"], 3, "{terminated}");
    assert_eq!(terminated["reason"], "Error", "{terminated}");
    assert!(terminated.get("signal").is_none(), "{terminated}");
    assert_eq!(logs(&node, &["--tail", "1", "web"]), "bye\n");

    // ps hides it, ps -a shows it with its code.
    assert!(
        ps_json(&node, false).is_empty(),
        "{:?}",
        ps_json(&node, false)
    );
    let table = node.run(&["ps", "-a"]);
    table.assert_ok();
    let row = table
        .stdout
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_else(|| panic!("no web in ps -a:\n{}", table.text()));
    assert!(row.contains("Exited (3)"), "{}", table.text());
    assert_eq!(
        pod_phase(&node, "web"),
        "Failed",
        "a container that exited 3 and never restarts"
    );

    node.run(&["rm", "web"]).assert_ok();
    assert!(ps_json(&node, true).is_empty());
    let gone = node.run(&["logs", "web"]);
    gone.assert_failed();
    node.assert_clean();
}

fn pod_phase(node: &Node, name: &str) -> String {
    let pod = pod_entry(node, name).unwrap_or_else(|| panic!("no pod {name}"));
    pod["status"]["phase"].as_str().unwrap_or("").to_string()
}

#[test]
fn stop_kills_a_container_that_ignores_sigterm_after_the_grace_period() {
    let node = Node::new("stop-grace");
    run_detached(
        &node,
        "stubborn",
        &[],
        "trap '' TERM; echo ready; while :; do sleep 0.1; done",
    );
    wait_for_log_line(&node, "stubborn", "ready");
    node.run(&["stop", "-t", "1", "stubborn"]).assert_ok();
    let terminated = state(&node, "stubborn")["terminated"].clone();
    assert_eq!(terminated["exitCode"], 137, "{terminated}");
    assert_eq!(terminated["signal"], 9, "{terminated}");
    let table = node.run(&["ps", "-a"]);
    assert!(table.stdout.contains("Exited (137)"), "{}", table.text());
    node.run(&["rm", "stubborn"]).assert_ok();
    node.assert_clean();
}

#[test]
fn kill_and_rm_with_and_without_force() {
    let node = Node::new("kill-rm");
    run_detached(&node, "victim", &[], "sleep 600");
    run_detached(&node, "forced", &[], "sleep 600");
    wait_running(&node, "victim");
    wait_running(&node, "forced");

    // rm refuses a running container, says why, and leaves it running.
    let refused = node.run(&["rm", "victim"]);
    refused.assert_failed();
    assert!(
        refused.stderr.contains("victim is running") && refused.stderr.contains("rm -f"),
        "{}",
        refused.text()
    );
    assert!(state(&node, "victim").get("running").is_some());

    // kill: SIGKILL now.
    let killed = node.run(&["kill", "victim"]);
    killed.assert_ok();
    assert_eq!(killed.stdout, "victim\n");
    let terminated = state(&node, "victim")["terminated"].clone();
    assert_eq!(terminated["exitCode"], 137, "{terminated}");
    assert_eq!(terminated["signal"], 9, "{terminated}");
    let table = node.run(&["ps", "-a"]);
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.starts_with("victim ") && l.contains("Exited (137)")),
        "{}",
        table.text()
    );
    let running = node.run(&["ps"]);
    assert!(!running.stdout.contains("victim"), "{}", running.text());
    assert!(running.stdout.contains("forced"), "{}", running.text());

    // rm -f: kill and remove a running one.
    node.run(&["rm", "-f", "forced"]).assert_ok();
    node.run(&["rm", "victim"]).assert_ok();
    assert!(ps_json(&node, true).is_empty());

    // Verbs on a name that is not there fail and say so.
    for verb in ["rm", "kill", "stop", "pause", "unpause", "logs"] {
        let run = node.run(&[verb, "nosuch"]);
        run.assert_failed();
        assert!(run.stderr.contains("nosuch"), "{}", run.text());
    }
    node.assert_clean();
}

#[test]
fn logs_follow_streams_lines_as_they_are_written() {
    let node = Node::new("logs-follow");
    run_detached(
        &node,
        "ticker",
        &[],
        "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done",
    );
    wait_for_log_line(&node, "ticker", "tick 0");
    let before = logs(&node, &["ticker"]).lines().count();

    let mut follower = node
        .command(&["logs", "-f", "ticker"])
        .spawn()
        .expect("start logs -f");
    let stdout = follower.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // What was there, then lines written after the follower started, in order.
    let wanted = before + 5;
    for n in 0..wanted {
        let line = rx
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|e| panic!("logs -f gave no line {n} ({e})"));
        assert_eq!(line, format!("tick {n}"));
    }
    assert!(
        follower.try_wait().expect("poll logs -f").is_none(),
        "logs -f ended while the container runs"
    );
    let _ = follower.kill();
    let _ = follower.wait();
    let _ = reader.join();
    node.run(&["rm", "-f", "ticker"]).assert_ok();

    // A follower ends by itself when the container does.
    run_detached(&node, "brief", &[], "echo one; sleep 1; echo two");
    let run = node.run(&["logs", "-f", "brief"]);
    run.assert_ok();
    assert_eq!(run.stdout, "one\ntwo\n", "{}", run.text());
    node.run(&["rm", "brief"]).assert_ok();
    node.assert_clean();
}

// ---------------------------------------------------------------------------
// pause, stats and limits

#[test]
fn pause_freezes_the_container_and_unpause_resumes_it() {
    let node = Node::new("pause");
    run_detached(
        &node,
        "counter",
        &[],
        "i=0; while :; do echo $i; i=$((i+1)); sleep 0.05; done",
    );
    wait_for_log_line(&node, "counter", "3");
    let group = group_path(&node, &uid(&node, "counter"), None);
    let count = || logs(&node, &["counter"]).lines().count();

    let paused = node.run(&["pause", "counter"]);
    paused.assert_ok();
    assert_eq!(paused.stdout, "counter\n");
    let (dir, v2) = cgroup_dir("freezer", &group);
    if v2 {
        assert_eq!(read_trimmed(&dir.join("cgroup.freeze")), "1");
        assert!(
            read_trimmed(&dir.join("cgroup.events")).contains("frozen 1"),
            "{}",
            read_trimmed(&dir.join("cgroup.events"))
        );
    } else {
        assert_eq!(read_trimmed(&dir.join("freezer.state")), "FROZEN");
        assert_eq!(
            read_trimmed(&dir.join("counter").join("freezer.state")),
            "FROZEN"
        );
    }
    let table = node.run(&["ps"]);
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.starts_with("counter ") && l.contains("Paused")),
        "{}",
        table.text()
    );
    let pod = pod_entry(&node, "counter").expect("counter in ps");
    assert_eq!(pod["paused"], true, "{pod}");
    assert_eq!(pod["status"]["reason"], "Paused", "{pod}");

    // A line the container wrote just before it froze may still be on its
    // way to the log: let the count settle, then see it stay put while time
    // passes (there is no event for "nothing happened").
    let mut settled = count();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = count();
        if now == settled {
            break;
        }
        settled = now;
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(count(), settled, "a paused container made progress");

    node.run(&["unpause", "counter"]).assert_ok();
    let (dir, v2) = cgroup_dir("freezer", &group);
    if v2 {
        assert_eq!(read_trimmed(&dir.join("cgroup.freeze")), "0");
    } else {
        assert_eq!(read_trimmed(&dir.join("freezer.state")), "THAWED");
    }
    wait_for("the counter to go on after unpause", || {
        let now = count();
        if now > settled + 3 {
            Ok(())
        } else {
            Err(format!("{now} lines"))
        }
    });
    let pod = pod_entry(&node, "counter").expect("counter in ps");
    assert_eq!(pod["paused"], false, "{pod}");
    assert!(
        pod["status"]["containerStatuses"][0]["state"]["running"].is_object(),
        "{pod}"
    );

    // A paused container can still be removed with -f.
    node.run(&["pause", "counter"]).assert_ok();
    node.run(&["rm", "-f", "counter"]).assert_ok();
    node.assert_clean();
}

#[test]
fn stats_reports_cpu_memory_and_pids() {
    let node = Node::new("stats");
    run_detached(&node, "sleeper", &[], "exec sleep 600");
    // `run -d` returns once the container runs: its log is there at once.
    assert_eq!(logs(&node, &["sleeper"]), "");
    run_detached(&node, "spinner", &[], "while :; do :; done");
    wait_running(&node, "sleeper");
    wait_running(&node, "spinner");

    /// One container's row of `stats`: CPU seconds, memory bytes, pids.
    fn row(node: &Node, name: &str) -> (f64, f64, u64) {
        let run = node.run(&["stats", name]);
        run.assert_ok();
        let mut lines = run.stdout.lines();
        let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
        assert_eq!(
            header,
            ["NAME", "CONTAINER", "CPU", "TIME", "MEMORY", "PIDS"],
            "{}",
            run.text()
        );
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(rows.len(), 1, "{}", run.text());
        let fields = &rows[0];
        // NAME CONTAINER 0.01s 679.9 kB 2
        assert_eq!(fields.len(), 6, "{}", run.text());
        assert_eq!(fields[0], name);
        assert_eq!(fields[1], name);
        let cpu: f64 = fields[2]
            .strip_suffix('s')
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("CPU TIME {:?}:\n{}", fields[2], run.text()));
        let unit = match fields[4] {
            "B" => 1.0,
            "kB" => 1e3,
            "MB" => 1e6,
            "GB" => 1e9,
            other => panic!("memory unit {other:?}:\n{}", run.text()),
        };
        let memory = fields[3].parse::<f64>().expect("memory figure") * unit;
        let pids = fields[5].parse().expect("pids figure");
        (cpu, memory, pids)
    }

    let (_, memory, pids) = row(&node, "sleeper");
    assert!(memory > 0.0, "a sleeping container uses some memory");
    assert!(memory < 64e6, "sleep does not need {memory} bytes");
    assert_eq!(pids, 1, "one process: sleep");

    let (cpu, _, pids) = wait_for("the spinner to use CPU", || {
        let (cpu, memory, pids) = row(&node, "spinner");
        if cpu >= 0.1 {
            Ok((cpu, memory, pids))
        } else {
            Err(format!("{cpu} s"))
        }
    });
    assert!(cpu >= 0.1);
    assert!(pids >= 1);

    // Without a name: both.
    let all = node.run(&["stats"]);
    all.assert_ok();
    assert_eq!(all.stdout.lines().count(), 3, "{}", all.text());
    node.run(&["rm", "-f", "sleeper"]).assert_ok();
    node.run(&["rm", "-f", "spinner"]).assert_ok();
    node.assert_clean();
}

#[test]
fn memory_limit_ends_in_oomkilled_137() {
    let node = Node::new("oom");
    // /dev/shm is tmpfs: its pages are charged to the container's group.
    let args = [
        "run",
        "--name",
        "hog",
        "--memory",
        "32Mi",
        &node.image,
        "--",
        "sh",
        "-c",
        "exec dd if=/dev/zero of=/dev/shm/fill bs=1M count=100",
    ];
    let run = node.run(&args);
    assert_eq!(run.status.code(), Some(137), "{}", run.text());
    let (dir, v2) = cgroup_dir(
        "memory",
        &group_path(&node, &uid(&node, "hog"), Some("hog")),
    );
    let limit = if v2 {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    assert_eq!(read_trimmed(&dir.join(limit)), (32u64 << 20).to_string());
    let terminated = state(&node, "hog")["terminated"].clone();
    assert_eq!(terminated["reason"], "OOMKilled", "{terminated}");
    assert_eq!(terminated["exitCode"], 137, "{terminated}");
    let table = node.run(&["ps", "-a"]);
    assert!(table.stdout.contains("OOMKilled (137)"), "{}", table.text());
    node.run(&["rm", "hog"]).assert_ok();

    // Detached, with the shell itself growing past the limit.
    run_detached(
        &node,
        "hog2",
        &["--memory", "32Mi"],
        r#"x=$(head -c 100000000 /dev/zero | tr '\0' a); echo survived"#,
    );
    let terminated = wait_terminated(&node, "hog2");
    assert_eq!(terminated["reason"], "OOMKilled", "{terminated}");
    assert_eq!(terminated["exitCode"], 137, "{terminated}");
    assert!(!logs(&node, &["hog2"]).contains("survived"));
    node.run(&["rm", "hog2"]).assert_ok();
    node.assert_clean();
}

#[test]
fn pids_limit_stops_a_fork_loop() {
    let node = Node::new("pids");
    run_detached(
        &node,
        "forky",
        &["--pids", "20"],
        "for i in $(seq 100); do sleep 30 & done; wait",
    );
    let group = group_path(&node, &uid(&node, "forky"), None);
    let (dir, _) = cgroup_dir("pids", &group);
    assert_eq!(read_trimmed(&dir.join("pids.max")), "20");
    // The loop hits the limit, and the shell gives up.
    let mut most = 0;
    let text = wait_for("the fork loop to fail", || {
        if let Ok(current) = fs::read_to_string(dir.join("pids.current")) {
            most = most.max(current.trim().parse::<u64>().unwrap_or(0));
        }
        let text = logs(&node, &["forky"]);
        if text.contains("can't fork") {
            Ok(text)
        } else {
            Err(text)
        }
    });
    assert!(
        text.contains("Resource temporarily unavailable"),
        "fork should fail with EAGAIN: {text}"
    );
    assert!(most <= 20, "pids.current reached {most}");
    if let Ok(peak) = fs::read_to_string(dir.join("pids.peak")) {
        let peak: u64 = peak.trim().parse().expect("pids.peak is a number");
        assert!(peak <= 20, "pids.peak is {peak}");
    }
    let terminated = wait_terminated(&node, "forky");
    assert_ne!(terminated["exitCode"], 0, "{terminated}");
    node.run(&["rm", "forky"]).assert_ok();
    node.assert_clean();
}

#[test]
fn cpu_limit_throttles_a_busy_loop() {
    let node = Node::new("cpu");
    let spin = "while :; do :; done";
    run_detached(&node, "capped", &["--cpus", "0.2"], spin);
    run_detached(&node, "free", &[], spin);
    wait_running(&node, "capped");
    wait_running(&node, "free");
    let capped = group_path(&node, &uid(&node, "capped"), Some("capped"));
    let free = group_path(&node, &uid(&node, "free"), Some("free"));

    // The quota as written: 20 ms of every 100 ms.
    let (dir, v2) = cgroup_dir("cpu", &capped);
    let (free_dir, _) = cgroup_dir("cpu", &free);
    if v2 {
        assert_eq!(read_trimmed(&dir.join("cpu.max")), "20000 100000");
        assert!(read_trimmed(&free_dir.join("cpu.max")).starts_with("max "));
    } else {
        assert_eq!(read_trimmed(&dir.join("cpu.cfs_quota_us")), "20000");
        assert_eq!(read_trimmed(&dir.join("cpu.cfs_period_us")), "100000");
        assert_eq!(read_trimmed(&free_dir.join("cpu.cfs_quota_us")), "-1");
    }

    // Throttled: the kernel says so...
    wait_for("the capped container to be throttled", || {
        let n = keyed(&dir.join("cpu.stat"), "nr_throttled");
        if n > 0 {
            Ok(())
        } else {
            Err(format!("nr_throttled {n}"))
        }
    });
    // ... and over a window of at least a second and a half it used no
    // more than its fifth of a CPU (a quota bounds usage from above however
    // busy the machine is; the margin covers one period's slack and more).
    let start = (Instant::now(), cpu_usage_ns(&capped));
    let mut end;
    loop {
        std::thread::sleep(Duration::from_millis(250));
        end = (Instant::now(), cpu_usage_ns(&capped));
        if end.0 - start.0 >= Duration::from_millis(1500) {
            break;
        }
    }
    let wall = (end.0 - start.0).as_nanos() as f64;
    let share = (end.1 - start.1) as f64 / wall;
    assert!(share < 0.5, "the capped container used {share:.2} of a CPU");
    assert!(
        keyed(&dir.join("cpu.stat"), "nr_throttled") > 0,
        "nr_throttled went back to 0"
    );
    // The unlimited one is never throttled.
    assert_eq!(keyed(&free_dir.join("cpu.stat"), "nr_throttled"), 0);
    assert!(cpu_usage_ns(&free) > 0);

    node.run(&["rm", "-f", "capped"]).assert_ok();
    node.run(&["rm", "-f", "free"]).assert_ok();
    node.assert_clean();
}

// ---------------------------------------------------------------------------
// Logs: content, long lines, rotation

#[test]
fn logs_return_binary_and_escape_bytes_exactly_as_written() {
    // The files keep what the container wrote, and `logs` prints it raw, as
    // kubectl and podman do (src/agent/cli/pods.rs): only `\n` ends a record.
    let node = Node::new("logs-raw");
    let script =
        r#"printf '\033[2J\000\001bin\n'; printf '\033]0;title\007x\ry\n'; printf '\377\376\n'"#;
    let written: &[u8] = b"\x1b[2J\x00\x01bin\n\x1b]0;title\x07x\ry\n\xff\xfe\n";
    let run = node
        .command(&[
            "run",
            "--name",
            "raw",
            &node.image,
            "--",
            "sh",
            "-c",
            script,
        ])
        .output()
        .expect("run");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(run.stdout, written, "foreground output");
    let logs = node.command(&["logs", "raw"]).output().expect("logs");
    assert!(logs.status.success(), "{logs:?}");
    assert_eq!(logs.stdout, written, "logs output");

    // On disk: three full stdout records, content verbatim.
    let file = fs::read(log_dir(&node, "raw").join("0.log")).expect("read the log file");
    let records: Vec<&[u8]> = file
        .split(|&b| b == b'\n')
        .filter(|r| !r.is_empty())
        .collect();
    assert_eq!(records.len(), 3, "{}", String::from_utf8_lossy(&file));
    for (record, content) in records.iter().zip(written.split(|&b| b == b'\n')) {
        let mut fields = record.splitn(4, |&b| b == b' ');
        let _time = fields.next();
        assert_eq!(fields.next(), Some(&b"stdout"[..]));
        assert_eq!(fields.next(), Some(&b"F"[..]));
        assert_eq!(fields.next(), Some(content));
    }
    node.run(&["rm", "raw"]).assert_ok();
    node.assert_clean();
}

#[test]
fn a_long_line_comes_back_whole() {
    let node = Node::new("logs-long");
    // 200,000 a's and a newline, then 150,000 b's with none at all.
    let script =
        r#"head -c 200000 /dev/zero | tr '\0' a; echo; head -c 150000 /dev/zero | tr '\0' b"#;
    let run = node
        .command(&[
            "run",
            "--name",
            "long",
            &node.image,
            "--",
            "sh",
            "-c",
            script,
        ])
        .output()
        .expect("run");
    assert!(run.status.success(), "{run:?}");
    let expected = format!("{}\n{}", "a".repeat(200_000), "b".repeat(150_000));
    assert!(
        run.stdout == expected.as_bytes(),
        "foreground output differs"
    );

    // logs: both lines whole; the unfinished last one ends the log as a line.
    let text = logs(&node, &["long"]);
    assert!(
        text == format!("{expected}\n"),
        "logs differ: {} bytes",
        text.len()
    );

    // The file holds them as 16 KiB P pieces each ended by an F record.
    let file = fs::read_to_string(log_dir(&node, "long").join("0.log")).expect("read log");
    let tags: String = file
        .lines()
        .map(|l| l.split(' ').nth(2).unwrap_or("?"))
        .collect();
    let a_pieces = 200_000usize.div_ceil(16 * 1024);
    let b_pieces = 150_000usize.div_ceil(16 * 1024);
    let wanted = format!("{}F{}F", "P".repeat(a_pieces - 1), "P".repeat(b_pieces - 1));
    assert_eq!(tags, wanted);
    node.run(&["rm", "long"]).assert_ok();
    node.assert_clean();
}

#[test]
fn log_rotation_keeps_five_files_of_at_most_ten_mebibytes() {
    // The defaults (containerd's and the kubelet's): 10 MiB × 5 files. 60 MB
    // of 1000-byte lines, then a last line. (`yes` ends on SIGPIPE when
    // `head` has had enough.)
    const MIB: u64 = 1 << 20;
    let node = Node::new("logs-rotate");
    let line = "0123456789".repeat(100);
    let line = &line[..999];
    let script = format!("yes {line} | head -n 60000; echo END");
    run_detached(&node, "chatty", &[], &script);
    let terminated = wait_terminated(&node, "chatty");
    assert_eq!(terminated["exitCode"], 0, "{terminated}");

    let dir = log_dir(&node, "chatty");
    let mut files: Vec<(String, u64)> = fs::read_dir(&dir)
        .expect("list the log dir")
        .flatten()
        .map(|e| {
            let size = e.metadata().expect("stat a log file").len();
            (e.file_name().to_string_lossy().into_owned(), size)
        })
        .collect();
    files.sort();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["0.log", "0.log.1", "0.log.2", "0.log.3", "0.log.4"],
        "{files:?}"
    );
    for (name, size) in &files {
        assert!(*size <= 10 * MIB, "{name} has {size} bytes");
    }
    // The rotated ones were filled up to the limit (less than a record short).
    for (name, size) in &files[1..] {
        assert!(*size > 10 * MIB - 2048, "{name} has only {size} bytes");
    }

    // The newest lines are whole, and the last is the last written.
    let tail = logs(&node, &["--tail", "3", "chatty"]);
    let lines: Vec<&str> = tail.lines().collect();
    assert_eq!(lines.len(), 3, "{tail}");
    assert_eq!(lines[2], "END", "{tail}");
    assert_eq!(lines[..2], [line, line], "torn lines");
    node.run(&["rm", "chatty"]).assert_ok();
    node.assert_clean();
}

/// A pod is locked from before its record appears until its first pass is
/// over. Without that, a reconcile by another process in between started
/// the container under a shim of its own, and the foreground `run` that
/// made the pod failed with "the container did not start" (and deleted it).
#[test]
fn a_foreground_run_keeps_its_container_while_others_reconcile() {
    let node = Node::new("run-vs-ps");
    let stop = Arc::new(AtomicBool::new(false));
    // `ps` reconciles every pod it lists, as the daemon's pass does.
    let pollers: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            let mut ps = node.command(&["ps", "-a"]);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = ps.output();
                }
            })
        })
        .collect();
    let mut failures = Vec::new();
    for i in 0..30 {
        let name = format!("run-{i}");
        let run = node.run(&["run", "--name", &name, &node.image, "--", "true"]);
        if run.status.code() != Some(0) {
            failures.push(run.text());
        }
        let _ = node.run(&["rm", &name]);
    }
    stop.store(true, Ordering::Relaxed);
    for poller in pollers {
        poller.join().expect("ps poller");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
    node.assert_clean();
}
