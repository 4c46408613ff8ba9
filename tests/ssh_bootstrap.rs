//! The agent bootstrap end to end on a demo cluster of the test's own (name
//! "boot", subnet 10.83.0.0/24, its own XDG directories and HOME; `demo down`
//! in Drop whatever happens): targets built from the demo's cluster file and
//! from a `~/.ssh/config` alias, the agent uploaded, verified and started,
//! left alone when it is already the right build, replaced (without
//! disturbing a running container) when it is not, a non-root login through
//! `sudo -n` (refused without NOPASSWD, working with it), and nothing of the
//! agents, shims, containers or their cgroups left after `demo down`.
//!
//! Needs root and the packages of the README's test command (sudo among them).

mod support;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flotilla::agent::protocol::Client;
use flotilla::agent::protocol::messages::{PodRecord, PodRef};
use flotilla::api::Pod;
use flotilla::api::status::ContainerState;
use flotilla::config::cluster_file::{ClusterConfig, NodeConfig};
use flotilla::ssh::bootstrap::{
    AgentBinary, BootstrapError, BootstrapOptions, Bootstrapped, bootstrap,
};
use flotilla::ssh::{SshSession, connect};
use serde_json::json;
use support::demo::Demo;

const NAME: &str = "boot";
const SUBNET: &str = "10.83.0.0/24";
const REGISTRY: &str = "10.83.0.1:5000";
/// Generous: a debug build on a busy 2-core machine.
const DEADLINE: Duration = Duration::from_secs(60);
/// The non-root login the sudo steps create inside node2 only.
const TEST_USER: &str = "flboot";
const TEST_UID: u32 = 4242;

async fn exec(session: &SshSession, command: &str) -> String {
    let out = session.exec(command).await.expect("exec");
    assert!(
        out.success(),
        "`{command}` failed: {:?}\n{}",
        out.exit,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn options(cluster: &ClusterConfig, node: &NodeConfig, user: &str) -> BootstrapOptions {
    BootstrapOptions::for_node(node, user, &cluster.insecure_registries())
}

fn sleep_pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": format!("{REGISTRY}/demo/busybox:latest"),
                "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"],
            }],
        },
    }))
    .expect("a valid pod")
}

async fn wait_running(client: &Client, name: &str) -> PodRecord {
    let started = Instant::now();
    loop {
        let record = client
            .pod_status(&PodRef::new("default", name))
            .await
            .expect("pods.status");
        let running = record
            .status
            .container_statuses
            .iter()
            .any(|c| matches!(c.state, ContainerState::Running(_)));
        if running {
            return record;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "pod {name} not running after {DEADLINE:?}: {}",
            serde_json::to_string_pretty(&record.status).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every cgroup directory (in any hierarchy) whose top-level name starts with `prefix`.
fn cgroup_dirs(prefix: &str) -> Vec<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").expect("/proc/self/mounts");
    let mut found = Vec::new();
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 3 || !matches!(fields[2], "cgroup" | "cgroup2") {
            continue;
        }
        let Ok(entries) = fs::read_dir(fields[1]) else {
            continue;
        };
        found.extend(
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .map(|e| e.path()),
        );
    }
    found
}

/// Pod groups below a node's cgroup parent, in any hierarchy.
fn pod_cgroups(parent: &str) -> Vec<PathBuf> {
    cgroup_dirs(parent)
        .into_iter()
        .filter(|dir| dir.file_name().is_some_and(|n| n == parent))
        .flat_map(|dir| fs::read_dir(dir).into_iter().flatten())
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("pod-"))
        .map(|e| e.path())
        .collect()
}

/// Live processes whose command line mentions any of `needles`.
fn processes_mentioning(needles: &[&str]) -> Vec<String> {
    fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_string();
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (state != "Z" && needles.iter().any(|n| cmd.contains(n)))
                .then(|| format!("{pid} {cmd}"))
        })
        .collect()
}

/// A copy of the agent binary with one byte appended: still a runnable ELF,
/// but another digest, so another build as far as the bootstrap can tell.
fn other_build(dir: &Path) -> PathBuf {
    let copy = dir.join("flotilla-agent-other");
    fs::copy(support::agent::agent_binary(), &copy).expect("copy the agent");
    fs::OpenOptions::new()
        .append(true)
        .open(&copy)
        .and_then(|mut f| f.write_all(b"\n"))
        .expect("append a byte");
    copy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_is_uploaded_started_kept_and_replaced_over_ssh() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: run the README's test command (scripts/test) as root"
    );
    let test_started = Instant::now();
    let demo = Demo::up(NAME, SUBNET, 3);
    let cluster = demo.cluster();
    let node1 = cluster.node("node1").expect("node1").clone();
    assert_eq!(node1.cgroup_parent, "flotilla-boot-node1");
    let targets = demo.targets();

    let binary = tokio::task::spawn_blocking(|| {
        AgentBinary::from_path(Path::new(support::agent::agent_binary()), "test")
    })
    .await
    .expect("hash task")
    .expect("the agent binary");

    // First contact: nothing on the host, so upload, verify, start.
    let target = targets.target(&node1);
    let session = connect(&target).await.expect("connect to node1");
    let step = Instant::now();
    let Bootstrapped { report, client } =
        bootstrap(&session, &binary, &options(&cluster, &node1, "root"))
            .await
            .expect("first bootstrap");
    eprintln!(
        "first bootstrap (upload of {} bytes): {:?}",
        binary.size,
        step.elapsed()
    );
    assert!(
        report.uploaded && report.started && !report.restarted,
        "{report:?}"
    );
    assert!(report.root_login);
    assert_eq!(report.arch, std::env::consts::ARCH);
    assert_eq!(report.binary_path, binary.remote_path());
    let hello = client.hello().clone();
    assert_eq!(
        hello.agent_binary.as_deref(),
        Some(binary.remote_path().as_str())
    );
    assert_eq!(
        client.node_facts().await.expect("node.facts").hostname,
        "node1"
    );
    // Verified, then made executable for root alone; no temporary file left.
    let listing = exec(&session, "stat -c '%a %U %n' /var/lib/flotilla/bin/* /var/lib/flotilla/bin/.upload* 2>/dev/null; true").await;
    assert_eq!(
        listing,
        format!("700 root {}", binary.remote_path()),
        "{listing}"
    );
    let agent_cmdline = exec(
        &session,
        &format!("tr '\\0' ' ' < /proc/{}/cmdline", hello.pid.expect("pid")),
    )
    .await;
    assert!(
        agent_cmdline.contains("--cgroup-parent flotilla-boot-node1")
            && agent_cmdline.contains(&format!("--insecure-registry {REGISTRY}")),
        "{agent_cmdline}"
    );
    drop(client);
    session.close().await.expect("close");

    // The next connection finds it there and running: nothing to do.
    let session = connect(&target).await.expect("reconnect to node1");
    let step = Instant::now();
    let Bootstrapped { report, client } =
        bootstrap(&session, &binary, &options(&cluster, &node1, "root"))
            .await
            .expect("second bootstrap");
    eprintln!("second bootstrap (nothing to do): {:?}", step.elapsed());
    assert!(
        !report.uploaded && !report.started && !report.restarted,
        "{report:?}"
    );
    assert_eq!(client.hello().pid, hello.pid, "the same agent answers");

    // A container started now must outlive the agent's replacement.
    client
        .create_pod(sleep_pod("sleeper"))
        .await
        .expect("pods.create");
    let before = wait_running(&client, "sleeper").await;
    let container_before = before.status.container_statuses[0].clone();
    drop(client);

    // Another build: uploaded next to the first, the old agent replaced.
    let scratch = demo.home.join("scratch");
    fs::create_dir_all(&scratch).expect("scratch dir");
    let other_path = other_build(&scratch);
    let other = tokio::task::spawn_blocking(move || AgentBinary::from_path(&other_path, "test"))
        .await
        .expect("hash task")
        .expect("the other build");
    assert_ne!(other.sha256, binary.sha256);
    let step = Instant::now();
    let Bootstrapped { report, client } =
        bootstrap(&session, &other, &options(&cluster, &node1, "root"))
            .await
            .expect("bootstrap of another build");
    eprintln!(
        "bootstrap of another build (upload and restart): {:?}",
        step.elapsed()
    );
    assert!(
        report.uploaded && report.restarted && !report.started,
        "{report:?}"
    );
    assert_eq!(
        client.hello().agent_binary.as_deref(),
        Some(other.remote_path().as_str())
    );
    assert_ne!(client.hello().pid, hello.pid);
    let gone = exec(
        &session,
        &format!(
            "test -e /proc/{} && echo alive || echo gone",
            hello.pid.unwrap_or(0)
        ),
    )
    .await;
    assert_eq!(gone, "gone", "the old agent is stopped");
    let after = wait_running(&client, "sleeper").await;
    let container_after = &after.status.container_statuses[0];
    assert_eq!(container_after.container_id, container_before.container_id);
    assert_eq!(container_after.restart_count, 0, "{after:?}");
    assert_eq!(
        container_after.state, container_before.state,
        "still the same run"
    );

    // Its pods' cgroups go with the pods.
    assert!(
        !pod_cgroups(&node1.cgroup_parent).is_empty(),
        "the pod has cgroups"
    );
    client
        .delete_pod(&PodRef::new("default", "sleeper"), Some(1))
        .await
        .expect("pods.delete");
    let leftover = pod_cgroups(&node1.cgroup_parent);
    assert!(leftover.is_empty(), "pod cgroups left: {leftover:?}");
    drop(client);
    session.close().await.expect("close");

    // An ~/.ssh/config alias: the node's address is `n1`, and the config
    // names where that is and which key to use.
    let ssh_dir = demo.home.join(".ssh");
    fs::create_dir_all(&ssh_dir).expect(".ssh");
    fs::write(
        ssh_dir.join("config"),
        format!(
            "# the test's own\nHost n1 !n2\n    HostName {}\n    User root\n    IdentityFile {}\nHost *\n    Port 22\n",
            node1.address,
            demo.client_key().display()
        ),
    )
    .expect("write ssh config");
    let alias_node = NodeConfig {
        name: "node1".into(),
        address: "n1".into(),
        port: None,
        user: None,
        identity: None,
        host_key: None,
        ..node1.clone()
    };
    let alias_target = demo.targets().target(&alias_node);
    assert_eq!(alias_target.address, node1.address);
    assert_eq!(alias_target.user, "root");
    assert_eq!(alias_target.identities, vec![demo.client_key()]);
    let session = connect(&alias_target)
        .await
        .expect("connect through the alias");
    assert_eq!(exec(&session, "hostname").await, "node1");
    let Bootstrapped { report, client } =
        bootstrap(&session, &other, &options(&cluster, &alias_node, "root"))
            .await
            .expect("bootstrap through the alias");
    assert!(
        !report.uploaded && !report.started && !report.restarted,
        "{report:?}"
    );
    assert_eq!(client.node_facts().await.expect("facts").hostname, "node1");
    drop(client);
    session.close().await.expect("close");

    // A non-root login, on node2: a user that exists only inside that node
    // (its /etc/passwd is a bind mount in the node's own mount namespace).
    sudo_steps(&demo, &cluster, &binary).await;

    // demo down takes every agent, shim and container with the nodes, and
    // the nodes' cgroup parents too.
    demo.down();
    let needles = [
        binary.sha256.as_str(),
        other.sha256.as_str(),
        "flotilla-boot-",
    ];
    let survivors = processes_mentioning(&needles);
    assert!(
        survivors.is_empty(),
        "processes outlived demo down: {survivors:?}"
    );
    let cgroups = cgroup_dirs("flotilla-boot-");
    assert!(
        cgroups.is_empty(),
        "cgroups outlived demo down: {cgroups:?}"
    );
    eprintln!("the whole test took {:?}", test_started.elapsed());
}

async fn sudo_steps(demo: &Demo, cluster: &ClusterConfig, binary: &AgentBinary) {
    if !Path::new("/usr/bin/sudo").exists() {
        panic!(
            "this test needs sudo on the machine (apt-get install sudo; scripts/test installs it)"
        );
    }
    let node2 = cluster.node("node2").expect("node2").clone();
    let targets = demo.targets();
    let root = connect(&targets.target(&node2))
        .await
        .expect("connect to node2 as root");
    // Only inside node2: passwd and shadow entries (sudo's PAM account check
    // wants the latter), a home, and the demo's authorized keys readable by
    // that user (sshd reads them as the user).
    exec(
        &root,
        &format!(
            "set -e
cp /etc/passwd /run/flboot-passwd
echo '{TEST_USER}:x:{TEST_UID}:{TEST_UID}:flotilla test:/run/{TEST_USER}:/bin/sh' >> /run/flboot-passwd
mount --bind /run/flboot-passwd /etc/passwd
cp /etc/shadow /run/flboot-shadow
echo '{TEST_USER}:*:19000:0:99999:7:::' >> /run/flboot-shadow
mount --bind /run/flboot-shadow /etc/shadow
mkdir -p /run/{TEST_USER} && chown {TEST_UID}:{TEST_UID} /run/{TEST_USER} && chmod 755 /run/{TEST_USER}
chmod 755 /run/flotilla-demo && chmod 644 /run/flotilla-demo/authorized_keys"
        ),
    )
    .await;
    let mut user_node = node2.clone();
    user_node.user = Some(TEST_USER.into());
    let user_target = targets.target(&user_node);
    let session = connect(&user_target)
        .await
        .expect("connect to node2 as the test user");
    assert_eq!(exec(&session, "id -u").await, TEST_UID.to_string());

    // No sudoers entry: sudo -n wants a password.
    let err = bootstrap(&session, binary, &options(cluster, &user_node, TEST_USER))
        .await
        .expect_err("sudo without NOPASSWD");
    let msg = err.to_string();
    assert!(matches!(err, BootstrapError::SudoPassword { .. }), "{msg}");
    assert!(
        msg.contains("sudo on node2 (10.83.0.12:22) wants a password")
            && msg.contains(&format!("allow {TEST_USER} NOPASSWD")),
        "{msg}"
    );

    // With NOPASSWD (a sudoers.d of node2's own): everything goes through
    // sudo, the protocol through the agent's __bridge.
    exec(
        &root,
        &format!(
            "set -e
mkdir -p /run/flboot-sudoers
echo '{TEST_USER} ALL=(root) NOPASSWD: ALL' > /run/flboot-sudoers/flboot
chmod 0440 /run/flboot-sudoers/flboot
mount --bind /run/flboot-sudoers /etc/sudoers.d"
        ),
    )
    .await;
    let Bootstrapped { report, client } =
        bootstrap(&session, binary, &options(cluster, &user_node, TEST_USER))
            .await
            .expect("bootstrap through sudo");
    assert!(
        report.uploaded && report.started && !report.root_login,
        "{report:?}"
    );
    assert_eq!(client.node_facts().await.expect("facts").hostname, "node2");
    assert_eq!(
        client.hello().agent_binary.as_deref(),
        Some(binary.remote_path().as_str())
    );
    drop(client);
    let Bootstrapped { report, client } =
        bootstrap(&session, binary, &options(cluster, &user_node, TEST_USER))
            .await
            .expect("second bootstrap through sudo");
    assert!(
        !report.uploaded && !report.started && !report.restarted,
        "{report:?}"
    );
    drop(client);
    let owner = exec(&root, &format!("stat -c '%a %U' {}", binary.remote_path())).await;
    assert_eq!(owner, "700 root");
    session.close().await.expect("close");
    root.close().await.expect("close");
}
