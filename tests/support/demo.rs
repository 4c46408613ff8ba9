//! A demo cluster of a test's own: its own demo name (which names its
//! links), subnet, XDG directories and HOME, so it runs beside an operator's
//! demo and other tests' demos; taken down in Drop whatever happens. And
//! [`Cluster`], such a demo driven as an operator drives it, through the
//! real `flotilla` binary.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use flotilla::config::cluster_file::{self, ClusterConfig};
use flotilla::ssh::{LocalUser, SshConfig, TargetContext};
use serde_json::Value;

use super::TestDir;

pub struct Demo {
    pub name: &'static str,
    pub subnet: &'static str,
    pub home: PathBuf,
}

impl Demo {
    /// `flotilla demo up --name NAME --subnet A.B.C.0/24 --nodes N`.
    pub fn up(name: &'static str, subnet: &'static str, nodes: u16) -> Demo {
        let home =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&home);
        fs::create_dir_all(&home).expect("test home");
        let demo = Demo { name, subnet, home };
        let up = demo.flotilla(&[
            "demo",
            "up",
            "--name",
            name,
            "--nodes",
            &nodes.to_string(),
            "--subnet",
            subnet,
        ]);
        assert!(up.status.success(), "demo up failed:\n{}", text(&up));
        demo
    }

    /// `flotilla ARGS` with this demo's directories.
    pub fn flotilla(&self, args: &[&str]) -> Output {
        self.flotilla_with(args, &[])
    }

    /// `flotilla ARGS` with this demo's directories and `env` set.
    pub fn flotilla_with(&self, args: &[&str], env: &[(&str, &Path)]) -> Output {
        self.command(args)
            .envs(env.iter().copied())
            .output()
            .expect("run flotilla")
    }

    /// The command `flotilla ARGS` with this demo's directories, not yet
    /// run: for one that runs beside the test (`get nodes --watch`).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flotilla"));
        command
            .args(args)
            .env("XDG_CONFIG_HOME", self.home.join("config"))
            .env("XDG_DATA_HOME", self.home.join("data"))
            .env("HOME", &self.home)
            .env_remove("FLOTILLA_CLUSTER")
            .env_remove("SSH_AUTH_SOCK");
        command
    }

    pub fn config_dir(&self) -> PathBuf {
        self.home.join("config").join("flotilla")
    }

    pub fn cluster_file(&self) -> PathBuf {
        self.config_dir()
            .join("demo")
            .join(self.name)
            .join("cluster.toml")
    }

    pub fn cluster(&self) -> ClusterConfig {
        cluster_file::load(&self.cluster_file()).expect("the demo's cluster file")
    }

    /// The client key the demo generated.
    pub fn client_key(&self) -> PathBuf {
        self.config_dir()
            .join("demo")
            .join(self.name)
            .join("id_ed25519")
    }

    /// Targets as flotilla builds them, as root with this test's HOME (and
    /// its `~/.ssh/config`, if the test wrote one) and the demo's known_hosts.
    pub fn targets(&self) -> TargetContext {
        let local = LocalUser {
            name: "root".into(),
            home: Some(self.home.clone()),
            uid: 0,
        };
        let ssh_dir = self.home.join(".ssh");
        let config_file = ssh_dir.join("config");
        let ssh_config = if config_file.exists() {
            SshConfig::load_in(&config_file, &ssh_dir, &local).expect("the test's ssh config")
        } else {
            SshConfig::empty()
        };
        TargetContext {
            ssh_config,
            local,
            flotilla_known_hosts: self.config_dir().join("known_hosts"),
            connect_timeout: std::time::Duration::from_secs(10),
        }
    }

    /// `demo down`, which must succeed (Drop tries again regardless).
    pub fn down(&self) {
        let down = self.flotilla(&["demo", "down", "--name", self.name]);
        assert!(down.status.success(), "demo down failed:\n{}", text(&down));
    }

    /// The host end of node `i`'s link (1-based).
    pub fn link(&self, i: u16) -> String {
        format!("fl-{}-{i}", self.name)
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.flotilla(&["demo", "down", "--name", self.name]);
        let _ = fs::remove_dir_all(&self.home);
    }
}

pub fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The agent binary without its debug info (a debug build's is ~190 MB;
/// stripped ~20 MB), so tests upload it to many nodes quickly.
pub fn stripped_agent(dir: &Path) -> PathBuf {
    let path = dir.join("flotilla-agent");
    let status = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&path)
        .arg(super::agent::agent_binary())
        .status()
        .expect("run strip (binutils)");
    assert!(status.success(), "strip the agent binary");
    path
}

/// A demo cluster of a test's own and the `flotilla` verbs the demo tests
/// drive it with, each run with the test's stripped agent (uploaded on the
/// first connection). Tests add the verbs only they need in `impl` blocks
/// of their own.
pub struct Cluster {
    pub demo: Demo,
    pub cluster_file: String,
    pub agent: PathBuf,
    /// Holds the agent and the manifests applied.
    pub dir: TestDir,
}

impl Cluster {
    /// `demo up` of `nodes` nodes named `name` on `subnet`, connected: every
    /// node has its agent once this returns. `label` names the test's dir.
    pub fn up(name: &'static str, subnet: &'static str, nodes: u16, label: &str) -> Cluster {
        let demo = Demo::up(name, subnet, nodes);
        let dir = TestDir::new(label);
        let agent = stripped_agent(dir.path());
        let cluster_file = demo.cluster_file().to_string_lossy().into_owned();
        let cluster = Cluster {
            demo,
            cluster_file,
            agent,
            dir,
        };
        cluster.ok(&["get", "nodes", "--timeout", "120s"]);
        cluster
    }

    /// The address the cluster file gives `node`.
    pub fn node_address(&self, node: &str) -> String {
        self.demo
            .cluster()
            .node(node)
            .expect("node")
            .address
            .clone()
    }

    /// Runs `command` on `node` over the demo's own SSH (in the node's
    /// network namespace), host keys checked against flotilla's known_hosts.
    pub fn on_node(&self, node: &str, command: &str) -> String {
        let known_hosts = self.demo.config_dir().join("known_hosts");
        let out = Command::new("ssh")
            .args(["-i", self.demo.client_key().to_str().unwrap()])
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .arg(format!("root@{}", self.node_address(node)))
            .arg(command)
            .output()
            .expect("run ssh");
        assert!(out.status.success(), "on {node}: {command}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `flotilla --cluster FILE ARGS`, run to its end.
    pub fn flotilla(&self, args: &[&str]) -> Output {
        let mut all = vec!["--cluster", self.cluster_file.as_str()];
        all.extend_from_slice(args);
        self.demo
            .flotilla_with(&all, &[("FLOTILLA_AGENT_BINARY", self.agent.as_path())])
    }

    /// Runs `flotilla ARGS`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.flotilla(args);
        assert!(out.status.success(), "flotilla {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `flotilla apply -f` of `manifest` (written to the test's dir, named
    /// after it) with `extra` arguments; its stdout.
    pub fn apply(&self, manifest: &Value, extra: &[&str]) -> String {
        let file = self.dir.path().join(format!(
            "{}.json",
            manifest["metadata"]["name"].as_str().unwrap_or("x")
        ));
        fs::write(&file, manifest.to_string()).expect("write manifest");
        let mut args = vec!["apply", "-f", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.ok(&args)
    }

    /// `get pods -o json` items.
    pub fn pods(&self) -> Vec<Value> {
        let out = self.ok(&["get", "pods", "-o", "json"]);
        let list: Value = serde_json::from_str(&out).expect("pods json");
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// What `probe` finds, asked every 300 ms; fails the test, showing the
    /// pods and nodes, if it finds nothing within `deadline`.
    pub fn wait<T>(
        &self,
        what: &str,
        deadline: Duration,
        mut probe: impl FnMut(&Cluster) -> Option<T>,
    ) -> T {
        let started = Instant::now();
        loop {
            if let Some(found) = probe(self) {
                return found;
            }
            assert!(
                started.elapsed() < deadline,
                "{what}: not within {deadline:?}\n{}\n{}",
                self.ok(&["get", "pods", "-o", "wide"]),
                self.ok(&["get", "nodes"])
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The demo host's address on the demo bridge (the subnet's first).
    pub fn host_address(&self) -> String {
        let (net, _) = self.demo.subnet.split_once(".0/").expect("a /24 subnet");
        format!("{net}.1")
    }

    /// The demo's registry, on the host.
    pub fn registry(&self) -> String {
        format!("{}:5000", self.host_address())
    }
}
