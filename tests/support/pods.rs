//! A node of the test's own for the pod tests: `flotilla-agent` with its own
//! `--root` (a copy of a store holding the demo busybox image), `--run-dir`
//! and `--cgroup-parent`, and short crash-loop back-offs.
//!
//! The image is built and pulled once per test binary from a real registry
//! (docker-registry on 127.0.0.1), then each node copies that store, so a
//! test never waits on a registry it does not test.
//!
//! Shims are detached on purpose (they outlive the agent), so no parent-death
//! signal reaches them: a node's Drop kills every process that names its
//! root or sits in its cgroups, unmounts what is left under its directories
//! and removes its cgroups. Tests call `assert_clean` to check that the
//! agent itself left nothing behind before Drop tidies up.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::agent::{Run, agent_binary, finish};
use super::image::{ConfigSpec, Image, Target, push};
use super::registry::TestRegistry;
use super::{TestDir, die_with_parent};

/// Back-off for crash loops in tests: 200 ms doubling to 800 ms, reset
/// after 5 s of running (Kubernetes: 10 s, 5 min, 10 min).
pub const TEST_BACKOFF_MS: &str = "200,800,5000";

/// The pulled image every node has, and the agent binary nodes run.
pub struct Template {
    /// A store with the busybox image in it, copied by each node.
    pub root: PathBuf,
    /// The image's reference as pulled (`127.0.0.1:PORT/demo/busybox:latest`).
    pub image: String,
    /// `flotilla-agent`, hard-linked: a build in a shared target dir
    /// replaces the path, not this inode, while tests run.
    pub agent: PathBuf,
    /// The image's one layer, unpacked in the template store: a lower dir
    /// for tests that drive the runtime core directly.
    pub layer: PathBuf,
}

/// The template, made on first use.
pub fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    // On a thread of its own: async tests call this inside a runtime, and
    // the push runs one; the registry it starts is gone before the thread ends.
    TEMPLATE.get_or_init(|| {
        std::thread::spawn(make_template)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn make_template() -> Template {
    {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the pod tests need root: run the README's test command (scripts/test) as root"
        );
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        // Templates of earlier runs whose process is gone.
        for entry in fs::read_dir(base)
            .expect("list CARGO_TARGET_TMPDIR")
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("pods-template-")
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        let dir = base.join(format!("pods-template-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("template dir");
        let agent = dir.join("flotilla-agent");
        fs::hard_link(agent_binary(), &agent)
            .or_else(|_| fs::copy(agent_binary(), &agent).map(drop))
            .expect("link the agent binary");
        let probe = Command::new(&agent)
            .args(["__init", "1", "2"])
            .output()
            .expect("run the agent");
        assert!(
            String::from_utf8_lossy(&probe.stderr).contains("container init stage"),
            "{} has no __init stage (replaced by another build of the shared target dir?)",
            agent_binary()
        );

        let layer = super::busybox::layer();
        let diff_id = layer.diff_id();
        let image = Image::new(
            vec![layer.gzip()],
            &ConfigSpec {
                cmd: vec!["sh".into()],
                ..ConfigSpec::default()
            },
        );
        let registry = TestRegistry::start();
        push(
            &Target::anonymous(registry.host()),
            "demo/busybox:latest",
            &image,
        );
        let reference = format!("{}/demo/busybox:latest", registry.host());
        let root = dir.join("root");
        let pull = Command::new(&agent)
            .arg("--root")
            .arg(&root)
            .args(["pull", "--insecure", &reference])
            .output()
            .expect("run flotilla-agent pull");
        assert!(
            pull.status.success(),
            "pull of the test image failed: {}",
            String::from_utf8_lossy(&pull.stderr)
        );
        drop(registry);
        let layer = root
            .join("images/layers/sha256")
            .join(super::hex_of(&diff_id));
        assert!(
            layer.join("bin/busybox").is_file(),
            "the pulled layer lacks busybox"
        );
        Template {
            root,
            image: reference,
            agent,
            layer,
        }
    }
}

/// One agent's world: root, run dir and cgroup parent, all the test's own.
pub struct Node {
    pub dir: TestDir,
    pub root: PathBuf,
    pub run_dir: PathBuf,
    pub cgroup_parent: String,
    pub image: String,
    agent: PathBuf,
    serve: Option<Child>,
    /// FLOTILLA_BACKOFF_MS for every command after it is set.
    pub backoff_ms: String,
    /// More environment for every command after it is set (hidden test
    /// settings such as FLOTILLA_LEASE_MAX_TTL_MS).
    pub env: Vec<(String, String)>,
}

impl Node {
    pub fn new(label: &str) -> Node {
        let template = template();
        let dir = TestDir::new(&format!("pods-{label}"));
        let root = dir.path().join("root");
        let copy = Command::new("cp")
            .arg("-a")
            .arg(&template.root)
            .arg(&root)
            .status()
            .expect("run cp");
        assert!(copy.success(), "copy the template store");
        let run_dir = dir.subdir("run");
        Node {
            root,
            run_dir,
            cgroup_parent: format!("flotilla-test-{}-{label}", std::process::id()),
            image: template.image.clone(),
            agent: template.agent.clone(),
            dir,
            serve: None,
            backoff_ms: TEST_BACKOFF_MS.into(),
            env: Vec::new(),
        }
    }

    /// `flotilla-agent --root … --run-dir … --cgroup-parent … ARGS`, not started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.agent);
        c.arg("--root")
            .arg(&self.root)
            .arg("--run-dir")
            .arg(&self.run_dir)
            .arg("--cgroup-parent")
            .arg(&self.cgroup_parent)
            .args(args)
            .env("FLOTILLA_BACKOFF_MS", &self.backoff_ms)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("HOME", self.dir.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut c);
        c
    }

    /// Runs a verb to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        let child = self.command(args).spawn().expect("start flotilla-agent");
        finish(child, args)
    }

    /// Starts `serve` and waits for its socket.
    pub fn serve(&mut self) -> PathBuf {
        assert!(self.serve.is_none(), "serve already runs");
        let mut command = self.command(&["serve"]);
        command.stdout(Stdio::null());
        let log = fs::File::create(self.dir.path().join("serve.log")).expect("serve log");
        command.stderr(log);
        let child = command.spawn().expect("start flotilla-agent serve");
        self.serve = Some(child);
        let socket = self.socket();
        let started = Instant::now();
        // A killed agent leaves its socket file: wait for one that answers.
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            if let Some(status) = self.serve.as_mut().unwrap().try_wait().unwrap() {
                panic!("serve ended ({status}): {}", self.serve_log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "serve made no socket in 30 s: {}",
                self.serve_log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        socket
    }

    /// SIGKILLs `serve`, as a crash or the OOM killer would.
    pub fn kill_serve(&mut self) {
        if let Some(mut child) = self.serve.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn serve_pid(&self) -> Option<u32> {
        self.serve.as_ref().map(|c| c.id())
    }

    pub fn socket(&self) -> PathBuf {
        self.run_dir.join("agent.sock")
    }

    pub fn serve_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// Every cgroup directory of this node, deepest first, in every
    /// mounted hierarchy.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        for mount in cgroup_mounts() {
            let top = mount.join(&self.cgroup_parent);
            if top.is_dir() {
                collect_dirs(&top, &mut dirs);
            }
        }
        dirs
    }

    /// Processes whose command line names this node's directory (shims,
    /// agents) or that sit in its cgroups (containers).
    pub fn processes(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        let marker = self.dir.path().to_string_lossy().into_owned();
        let me = std::process::id() as i32;
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if pid == me {
                continue;
            }
            let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&marker) && !is_zombie(pid) {
                pids.push(pid);
            }
        }
        for dir in self.cgroup_dirs() {
            let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        pids.sort();
        pids.dedup();
        pids
    }

    /// Mount points under this node's directory, per the host's mount table.
    pub fn mounts(&self) -> Vec<PathBuf> {
        let marker = self.dir.path().to_path_buf();
        let table = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        table
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(unescape_mount_path)
            .filter(|p| p.starts_with(&marker))
            .collect()
    }

    /// Asserts that nothing of this node's pods is left: no process (serve
    /// aside), mount, cgroup below the parent, pod directory (on disk or,
    /// an ephemeral pod's, under the run dir) or volatile image lease.
    pub fn assert_clean(&self) {
        let serve = self.serve_pid().map(|p| p as i32);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let processes: Vec<i32> = self
                .processes()
                .into_iter()
                .filter(|p| Some(*p) != serve)
                .collect();
            let mounts = self.mounts();
            let cgroups: Vec<PathBuf> = self
                .cgroup_dirs()
                .into_iter()
                .filter(|d| {
                    d.file_name()
                        .is_some_and(|n| n != self.cgroup_parent.as_str())
                })
                .collect();
            let pods: Vec<_> = [
                self.root.join("pods"),
                self.run_dir.join("ephemeral"),
                self.run_dir.join("leases"),
            ]
            .iter()
            .flat_map(fs::read_dir)
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
            let sandboxes: Vec<_> = fs::read_dir(self.run_dir.join("pods"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect();
            if processes.is_empty()
                && mounts.is_empty()
                && cgroups.is_empty()
                && pods.is_empty()
                && sandboxes.is_empty()
            {
                return;
            }
            if Instant::now() > deadline {
                let described: Vec<String> = processes.iter().map(|p| describe(*p)).collect();
                panic!(
                    "left behind:\nprocesses: {described:?}\nmounts: {mounts:?}\n\
                     cgroups: {cgroups:?}\npod dirs: {pods:?}\nsandboxes: {sandboxes:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_serve();
        // Freeze nothing, kill everything: shims first so none restarts
        // a container, then whatever sits in the cgroups.
        for _ in 0..20 {
            let pids = self.processes();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            // A frozen cgroup's processes die only once thawed.
            for dir in self.cgroup_dirs() {
                let _ = fs::write(dir.join("freezer.state"), "THAWED");
                let _ = fs::write(dir.join("cgroup.freeze"), "0");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut mounts = self.mounts();
        mounts.sort();
        for mount in mounts.iter().rev() {
            let _ = nix::mount::umount2(mount, nix::mount::MntFlags::MNT_DETACH);
        }
        for dir in self.cgroup_dirs() {
            for _ in 0..50 {
                if fs::remove_dir(&dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn cgroup_mounts() -> Vec<PathBuf> {
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    table
        .lines()
        .filter(|l| {
            l.split(" - ")
                .nth(1)
                .is_some_and(|rest| rest.starts_with("cgroup ") || rest.starts_with("cgroup2 "))
        })
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_path)
        .collect()
}

/// `dir` and every directory under it, deepest first.
fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_dirs(&entry.path(), out);
        }
    }
    out.push(dir.to_path_buf());
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mount_path(field: &str) -> PathBuf {
    let mut out = String::new();
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let code: String = chars.by_ref().take(3).collect();
            if let Ok(v) = u8::from_str_radix(&code, 8) {
                out.push(v as char);
                continue;
            }
            out.push('\\');
            out.push_str(&code);
        } else {
            out.push(c);
        }
    }
    PathBuf::from(out)
}

fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

fn describe(pid: i32) -> String {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    format!(
        "{pid}: {}",
        String::from_utf8_lossy(&cmdline).replace('\0', " ")
    )
}
