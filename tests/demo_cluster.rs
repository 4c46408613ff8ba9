//! The demo cluster end to end, on the real machine: `flotilla demo up` makes
//! three nodes that answer over SSH (flotilla's own client, host keys pinned by
//! the demo) with their own hostnames and process tables, a registry holding
//! the demo images, and `down` leaves links, mounts and processes as they were.
//!
//! Needs root and the packages the README's test command installs. It uses its
//! own demo name, subnet and XDG directories, so it runs beside an operator's
//! demo cluster without touching it.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use flotilla::ssh::{ExitKind, SshTarget, connect};

const SUBNET: &str = "10.79.0.0/24";

/// Runs `flotilla demo …` for this test's cluster, with its own directories.
struct Demo {
    home: PathBuf,
    /// The demo's name, which names its links: each test has its own.
    name: &'static str,
}

impl Demo {
    fn new(name: &'static str) -> Demo {
        let home = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("demo-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&home);
        fs::create_dir_all(&home).expect("test home");
        Demo { home, name }
    }

    fn config_dir(&self) -> PathBuf {
        self.home.join("config").join("flotilla")
    }

    fn flotilla(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(args)
            .env("XDG_CONFIG_HOME", self.home.join("config"))
            .env("XDG_DATA_HOME", self.home.join("data"))
            .env("HOME", &self.home)
            .env_remove("FLOTILLA_CLUSTER")
            .output()
            .expect("run flotilla")
    }

    fn demo(&self, args: &[&str]) -> Output {
        let mut all = vec!["demo"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--name", self.name]);
        self.flotilla(&all)
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // Whatever happened above, take the cluster down.
        let _ = self.demo(&["down"]);
        let _ = fs::remove_dir_all(&self.home);
    }
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// What the machine looks like from the outside: links, mounts, named network
/// namespaces, and live processes.
#[derive(Debug, PartialEq)]
struct Footprint {
    links: BTreeSet<String>,
    mounts: BTreeSet<String>,
    netns: String,
}

fn footprint() -> Footprint {
    let links = fs::read_dir("/sys/class/net")
        .expect("/sys/class/net")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    let mounts = fs::read_to_string("/proc/mounts")
        .expect("/proc/mounts")
        .lines()
        .map(str::to_string)
        .collect();
    let netns = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip netns list")
            .stdout,
    )
    .into_owned();
    Footprint {
        links,
        mounts,
        netns,
    }
}

/// Live (not zombie) processes whose command line mentions `needle`.
fn live_processes_mentioning(needle: &str) -> Vec<String> {
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
            (state != "Z" && cmd.contains(needle)).then(|| format!("{pid} {cmd}"))
        })
        .collect()
}

#[test]
fn demo_cluster_comes_up_answers_over_ssh_and_goes_down_without_a_trace() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: run the README's test command (scripts/test) as root"
    );
    let before = footprint();
    let demo = Demo::new("itest");

    let started = Instant::now();
    let up = demo.demo(&["up", "--nodes", "3", "--subnet", SUBNET]);
    assert!(up.status.success(), "demo up failed:\n{}", text(&up));
    eprintln!("demo up took {:?}", started.elapsed());

    let config = demo.config_dir();
    let identity = config.join("demo").join(demo.name).join("id_ed25519");
    let known_hosts = config.join("known_hosts");
    let cluster_file =
        fs::read_to_string(config.join("cluster.toml")).expect("cluster file written");
    assert!(cluster_file.contains("10.79.0.13"), "{cluster_file}");
    assert!(
        cluster_file.contains("[registries.\"10.79.0.1:5000\"]"),
        "{cluster_file}"
    );

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    for i in 1..=3u8 {
        let target = SshTarget {
            address: format!("10.79.0.{}", 10 + i),
            port: 22,
            user: "root".into(),
            identities: vec![identity.clone()],
            known_hosts: vec![known_hosts.clone()],
            pinned_fingerprint: None,
            connect_timeout: Duration::from_secs(5),
        };
        let (hostname, processes, pid1) = runtime.block_on(async {
            let session = connect(&target)
                .await
                .expect("ssh to a demo node with its pinned host key");
            let hostname = session.exec("hostname").await.expect("exec hostname");
            let processes = session
                .exec("ls /proc | grep -c '^[0-9]'")
                .await
                .expect("exec ls");
            let pid1 = session
                .exec("tr '\\0' ' ' < /proc/1/cmdline")
                .await
                .expect("exec cat");
            session.close().await.expect("close");
            (hostname, processes, pid1)
        });
        assert_eq!(hostname.exit, ExitKind::Code(0));
        assert_eq!(
            String::from_utf8_lossy(&hostname.stdout).trim(),
            format!("node{i}")
        );
        // Its own PID namespace: our init, sshd, the session and its commands; not the host's hundreds.
        let count: u32 = String::from_utf8_lossy(&processes.stdout)
            .trim()
            .parse()
            .expect("a count");
        assert!(
            count < 15,
            "node{i} sees {count} processes: not its own PID namespace"
        );
        assert!(
            String::from_utf8_lossy(&pid1.stdout).contains("__demo-node --stage init"),
            "PID 1 of node{i} is not the demo init: {}",
            String::from_utf8_lossy(&pid1.stdout)
        );
    }

    // The registry holds the demo images, pushed by flotilla's OCI code.
    let repositories = runtime
        .block_on(async {
            let client = flotilla::registry::client(&["10.79.0.1:5000".to_string()]);
            flotilla::registry::catalog(&client, "10.79.0.1:5000").await
        })
        .expect("registry catalog");
    assert_eq!(repositories, vec!["demo/busybox", "demo/httpd"]);

    // A second `up` changes nothing.
    let again = demo.demo(&["up", "--nodes", "3", "--subnet", SUBNET]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("already up"),
        "{}",
        text(&again)
    );

    let status = demo.demo(&["status"]);
    assert!(status.status.success(), "{}", text(&status));
    let status_text = String::from_utf8_lossy(&status.stdout);
    for node in ["node1", "node2", "node3"] {
        assert!(status_text.contains(node), "{status_text}");
    }

    let down = demo.demo(&["down"]);
    assert!(down.status.success(), "demo down failed:\n{}", text(&down));
    let status = demo.demo(&["status"]);
    assert_eq!(status.status.code(), Some(3), "{}", text(&status));

    let after = footprint();
    assert_eq!(before.links, after.links, "links left behind");
    assert_eq!(before.mounts, after.mounts, "mounts left behind");
    assert_eq!(before.netns, after.netns, "network namespaces left behind");
    let leftovers = live_processes_mentioning(&demo.home.display().to_string());
    assert!(leftovers.is_empty(), "processes left behind: {leftovers:?}");
    assert!(
        !demo
            .home
            .join("data")
            .join("flotilla")
            .join("demo")
            .exists(),
        "runtime state left behind"
    );
}

#[test]
fn demo_up_as_a_normal_user_is_one_clear_line() {
    let demo = Demo::new("itestnr");
    // The home is nobody's, as a normal user's home would be theirs.
    let status = Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(&demo.home)
        .status()
        .expect("chown");
    assert!(status.success());
    // `nobody` cannot create namespaces: the error must say to run as root,
    // in one line, and nothing may be made.
    let output = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_flotilla"))
        .args([
            "demo",
            "up",
            "--name",
            "itestnr",
            "--subnet",
            "10.80.0.0/24",
        ])
        .env("XDG_CONFIG_HOME", demo.home.join("config"))
        .env("XDG_DATA_HOME", demo.home.join("data"))
        .output()
        .expect("run flotilla as nobody");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{}", text(&output));
    assert!(stderr.contains("needs root"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(!Path::new("/sys/class/net/fl-itestnr").exists());
}
