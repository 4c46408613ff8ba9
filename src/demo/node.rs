//! One demo node: a process tree that owns the node's namespaces and runs the
//! machine's OpenSSH `sshd` inside them.
//!
//! `demo up` starts `flotilla __demo-node --stage outer`, which unshares network,
//! UTS, mount and PID namespaces and waits for the go byte on stdin (sent once
//! `demo up` has given it an address). It then starts `--stage init`, which is
//! PID 1 of the new PID namespace: it makes its own `/proc`, `/run` and
//! `/var/lib/flotilla`, sets the hostname (and an `/etc/hosts` that names
//! it), runs `sshd` and reaps orphans. The
//! init dies with the outer process (parent-death signal), and every process in
//! a PID namespace dies with its init, so killing the outer process takes the
//! whole node down, sessions and all.
//!
//! The init also stops and starts the node's sshd on request, as a service
//! manager would (`flotilla demo sshd stop|start`, see [`super::sshd`]):
//! [`STOP_SSHD`] ends the listener and every connection's sshd process, so
//! the node's existing SSH connections drop as when a host's sshd is stopped
//! and its connections cut, and keeps sshd down; [`START_SSHD`] starts it
//! again. An sshd that ends when nobody asked ends the node, as before: a
//! demo node without sshd is broken, and `demo status` says so.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::time::Duration;

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::DemoError;
use super::process::{namespace_inode, open_log, wait_until};

/// Arguments of the hidden `flotilla __demo-node` command.
#[derive(clap::Args, Debug, Clone)]
pub struct NodeInitArgs {
    /// `outer` (holds the namespaces) or `init` (PID 1 inside them).
    #[arg(long)]
    pub stage: Stage,
    /// The node's name, also its hostname.
    #[arg(long)]
    pub node: String,
    /// Directory mounted at `/var/lib/flotilla` inside the node.
    #[arg(long)]
    pub var_lib: PathBuf,
    /// The node's sshd configuration file.
    #[arg(long)]
    pub sshd_config: PathBuf,
    /// The operator's public keys, copied to [`NODE_AUTHORIZED_KEYS`] inside the node.
    #[arg(long)]
    pub authorized_keys: PathBuf,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Outer,
    Init,
}

impl NodeInitArgs {
    /// The command that runs `stage` of this node.
    fn command(&self, exe: &Path, stage: Stage) -> Command {
        let stage = match stage {
            Stage::Outer => "outer",
            Stage::Init => "init",
        };
        let mut command = Command::new(exe);
        command
            .arg("__demo-node")
            .args(["--stage", stage, "--node", &self.node])
            .arg("--var-lib")
            .arg(&self.var_lib)
            .arg("--sshd-config")
            .arg(&self.sshd_config)
            .arg("--authorized-keys")
            .arg(&self.authorized_keys);
        command
    }
}

pub const SSHD: &str = "/usr/sbin/sshd";
/// Sent to a node's init: stop sshd and cut its connections, and keep it down.
pub const STOP_SSHD: Signal = Signal::SIGUSR1;
/// Sent to a node's init: start sshd again (if it is not running).
pub const START_SSHD: Signal = Signal::SIGUSR2;
/// Where a node's sshd reads the operator's keys: in the node's private /run,
/// so sshd's StrictModes check (every directory up to / root-owned and not
/// writable by others) holds wherever the demo's state directory is, even
/// under /tmp.
pub const NODE_AUTHORIZED_KEYS: &str = "/run/flotilla-demo/authorized_keys";
/// The node's `/etc/hosts` (see `install_hosts`), in its private /run.
const NODE_HOSTS: &str = "/run/flotilla-demo/hosts";
const GO_BYTE: u8 = b'g';

/// Starts a node's outer process. The returned stdin is the go signal: write
/// the go byte once the node's network is configured.
pub fn spawn(args: &NodeInitArgs, log: &Path) -> Result<(Child, ChildStdin), DemoError> {
    let exe = std::env::current_exe().map_err(|e| DemoError::Spawn {
        what: "the flotilla binary".into(),
        reason: e.to_string(),
    })?;
    let (stdout, stderr) = open_log(log)?;
    let mut child = args
        .command(&exe, Stage::Outer)
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|e| DemoError::Spawn {
            what: format!("node {}", args.node),
            reason: e.to_string(),
        })?;
    let go = child.stdin.take().ok_or_else(|| DemoError::Spawn {
        what: format!("node {}", args.node),
        reason: "no stdin pipe".into(),
    })?;
    // The outer process unshares its namespaces first thing; the caller may only
    // move an interface into its network namespace once that has happened.
    let pid = child.id() as i32;
    let own = namespace_inode(std::process::id() as i32, "net");
    let unshared = wait_until(Duration::from_secs(5), || {
        let theirs = namespace_inode(pid, "net");
        theirs.is_some() && theirs != own
    });
    if !unshared {
        let _ = child.kill();
        let _ = child.wait();
        return Err(DemoError::Spawn {
            what: format!("node {}", args.node),
            reason: format!("it did not create its namespaces; see {}", log.display()),
        });
    }
    Ok((child, go))
}

/// Entry point of `flotilla __demo-node`. Runs before any thread or runtime exists.
pub fn main(args: &NodeInitArgs) -> ExitCode {
    let result = match args.stage {
        Stage::Outer => outer(args),
        Stage::Init => init(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("flotilla demo node {} ({:?}): {err}", args.node, args.stage);
            ExitCode::FAILURE
        }
    }
}

fn outer(args: &NodeInitArgs) -> Result<ExitCode, String> {
    unshare(
        CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID,
    )
    .map_err(|e| format!("unshare: {e}"))?;
    // Our own session: closing the operator's terminal must not take the node down.
    let _ = nix::unistd::setsid();
    let mut go = [0u8; 1];
    match std::io::stdin().read(&mut go) {
        Ok(1) if go[0] == GO_BYTE => {}
        _ => return Err("demo up gave up on this node before starting it".into()),
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut init = args
        .command(&exe, Stage::Init)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting the node's init: {e}"))?;
    let status = init.wait().map_err(|e| format!("waiting for init: {e}"))?;
    eprintln!("flotilla demo node {}: init ended: {status}", args.node);
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}

fn init(args: &NodeInitArgs) -> Result<ExitCode, String> {
    // If the outer process is killed, so is this init, and with it the namespace.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| format!("pdeathsig: {e}"))?;
    if nix::unistd::getpid().as_raw() != 1 {
        return Err("the init stage must be PID 1 of a new PID namespace".into());
    }
    make_mounts(&args.var_lib)?;
    install_authorized_keys(&args.authorized_keys)?;
    nix::unistd::sethostname(&args.node).map_err(|e| format!("sethostname: {e}"))?;
    install_hosts(&args.node)?;
    // Signals are taken one at a time by `sigwait` rather than by handlers:
    // this loop is all the init does. A blocked signal still reaches a
    // namespace's init from outside (only one it ignores is dropped), and
    // `Command` clears the mask in the programs it starts, so sshd gets
    // the default one.
    let signals: SigSet = [Signal::SIGCHLD, STOP_SSHD, START_SSHD]
        .into_iter()
        .collect();
    signals
        .thread_block()
        .map_err(|e| format!("blocking signals: {e}"))?;
    let mut sshd = Some(start_sshd(args)?);
    // Whether sshd should run: false between a stop and a start.
    let mut wanted = true;
    loop {
        let signal = match signals.wait() {
            Ok(signal) => signal,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("sigwait: {e}")),
        };
        match signal {
            STOP_SSHD => {
                wanted = false;
                if let Some(sshd) = &mut sshd {
                    sshd.stopping = true;
                }
                let signalled = terminate_sshd(sshd.as_ref().map(|s| s.pid));
                eprintln!(
                    "flotilla demo node {}: stopping sshd on request ({signalled} sshd processes signalled)",
                    args.node
                );
            }
            START_SSHD => {
                wanted = true;
                // One still stopping is started again once it has ended.
                if sshd.is_none() {
                    sshd = Some(start_sshd(args)?);
                    eprintln!("flotilla demo node {}: sshd started on request", args.node);
                }
            }
            // PID 1 adopts every orphan in the namespace: reap them all.
            // SIGCHLDs merge while pending, so reap until none is left.
            Signal::SIGCHLD => loop {
                let status = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => break,
                    Ok(status) => status,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(format!("waitpid: {e}")),
                };
                let Some(ended) = sshd.filter(|s| status.pid() == Some(Pid::from_raw(s.pid)))
                else {
                    continue;
                };
                sshd = None;
                if !ended.stopping {
                    return Ok(sshd_ended(&args.node, status));
                }
                if wanted {
                    sshd = Some(start_sshd(args)?);
                    eprintln!("flotilla demo node {}: sshd started on request", args.node);
                }
            },
            _ => {}
        }
    }
}

/// The sshd listener the init runs.
#[derive(Clone, Copy)]
struct Sshd {
    pid: i32,
    /// Asked to stop: its end does not end the node.
    stopping: bool,
}

fn start_sshd(args: &NodeInitArgs) -> Result<Sshd, String> {
    let sshd = Command::new(SSHD)
        .args(["-D", "-e", "-f"])
        .arg(&args.sshd_config)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {SSHD}: {e}"))?;
    Ok(Sshd {
        pid: sshd.id() as i32,
        stopping: false,
    })
}

/// SIGTERM to the listener and to every connection's sshd process in the
/// node (the init's /proc is the node's): stopping the listener alone
/// leaves established connections up, each served by processes of its own.
/// Returns how many were signalled.
fn terminate_sshd(listener: Option<i32>) -> usize {
    let mut pids: Vec<i32> = fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .filter(|&pid| pid != 1 && is_sshd(pid))
                .collect()
        })
        .unwrap_or_default();
    pids.extend(listener);
    pids.sort_unstable();
    pids.dedup();
    pids.into_iter()
        .filter(|&pid| kill(Pid::from_raw(pid), Signal::SIGTERM).is_ok())
        .count()
}

/// Whether `pid` runs OpenSSH's server: the listener or one of a
/// connection's processes (all `sshd` up to OpenSSH 9.7; `sshd-session` and
/// `sshd-auth` after). Read from `/proc/PID/exe`, which a zombie no longer has.
pub fn is_sshd(pid: i32) -> bool {
    fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|exe| {
            exe.file_name()
                .and_then(|n| n.to_str())
                .map(|n| n.starts_with("sshd"))
        })
        .unwrap_or(false)
}

/// Says how sshd ended and gives the node's exit code.
fn sshd_ended(node: &str, status: WaitStatus) -> ExitCode {
    match status {
        WaitStatus::Exited(_, code) => {
            eprintln!("flotilla demo node {node}: sshd exited with {code}");
            ExitCode::from(code.clamp(0, 255) as u8)
        }
        WaitStatus::Signaled(_, signal, _) => {
            eprintln!("flotilla demo node {node}: sshd killed by {signal}");
            ExitCode::from(128 + signal as u8)
        }
        other => {
            eprintln!("flotilla demo node {node}: sshd ended: {other:?}");
            ExitCode::FAILURE
        }
    }
}

fn install_authorized_keys(source: &Path) -> Result<(), String> {
    let target = Path::new(NODE_AUTHORIZED_KEYS);
    let keys = fs::read(source).map_err(|e| format!("reading {}: {e}", source.display()))?;
    if let Some(dir) = target.parent() {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(target)
        .and_then(|mut f| f.write_all(&keys))
        .map_err(|e| format!("writing {NODE_AUTHORIZED_KEYS}: {e}"))
}

/// The node's own `/etc/hosts`: the machine's, plus the node's hostname on
/// 127.0.1.1 (as Debian's installer writes it), bound over `/etc/hosts` in
/// the node's mount namespace. Without it every lookup of the node's own
/// name goes to DNS, which a node cannot reach: sudo, which looks its host
/// up on each run, would wait 20 s for that to time out.
fn install_hosts(node: &str) -> Result<(), String> {
    let etc_hosts = Path::new("/etc/hosts");
    if !fs::symlink_metadata(etc_hosts).is_ok_and(|m| m.is_file()) {
        return Ok(());
    }
    let mut hosts = fs::read_to_string(etc_hosts).unwrap_or_default();
    if !hosts.is_empty() && !hosts.ends_with('\n') {
        hosts.push('\n');
    }
    hosts.push_str(&format!("127.0.1.1\t{node}\n"));
    let ours = Path::new(NODE_HOSTS);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(ours)
        .and_then(|mut f| f.write_all(hosts.as_bytes()))
        .map_err(|e| format!("writing {NODE_HOSTS}: {e}"))?;
    let none: Option<&str> = None;
    mount(Some(ours), etc_hosts, none, MsFlags::MS_BIND, none)
        .map_err(|e| format!("binding {NODE_HOSTS} at /etc/hosts: {e}"))
}

/// The node's own view of the filesystem: nothing here propagates to the host.
fn make_mounts(var_lib: &Path) -> Result<(), String> {
    let none: Option<&str> = None;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(|e| format!("making / private: {e}"))?;
    // A /proc of this PID namespace: the node sees only its own processes.
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        none,
    )
    .map_err(|e| format!("mounting /proc: {e}"))?;
    // A private /run: the node's own /run/flotilla (agent socket) and /run/sshd.
    mount(
        Some("tmpfs"),
        "/run",
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=755,size=64m"),
    )
    .map_err(|e| format!("mounting /run: {e}"))?;
    for (dir, mode) in [("/run/sshd", 0o755), ("/run/flotilla", 0o700)] {
        fs::DirBuilder::new()
            .mode(mode)
            .create(dir)
            .map_err(|e| format!("creating {dir}: {e}"))?;
    }
    mount(
        Some(var_lib),
        "/var/lib/flotilla",
        none,
        MsFlags::MS_BIND,
        none,
    )
    .map_err(|e| format!("binding {} at /var/lib/flotilla: {e}", var_lib.display()))?;
    Ok(())
}
