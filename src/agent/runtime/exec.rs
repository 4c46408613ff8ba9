//! A process inside a running container (`kubectl exec`, `runc exec`):
//! joined to the container's IPC, UTS, network, PID and mount namespaces and
//! its cgroups, and confined exactly as the container's first process is
//! ([`super::process::confine`]: its user, environment and working
//! directory, Docker's seccomp refusals, the same capabilities with empty
//! inheritable and ambient sets, no_new_privs, no descriptor of ours).
//!
//! ```text
//! `flotilla-agent exec` (verb) ── exec in place, from a read-only bind of the agent ──▶ __exec
//! the daemon's `exec.start` ───── a child on a pty or pipes, the same way ──────────▶ __exec
//! __exec: open /proc/PID/ns/*, check PID is still the container's, setns (mnt last),
//!         fork ─▶ child: a new session (the terminal's, with -t), confine, wait
//!         │             for the cgroup move, close fds, execve
//!         └─ moves the child into the container's cgroups, waits for it,
//!            forwards the signals it gets, exits with its code (128+N if killed)
//! ```
//!
//! The verb execs `__exec` in place rather than starting it, so the signals
//! sshd or sudo deliver reach the stage that forwards them; the stage is a
//! fresh single-threaded process, as `setns` into a mount namespace and a
//! `fork` before exec need. Like the init stage it runs from a read-only bind
//! mount of the agent binary (CVE-2019-5736): until its own exec the child is
//! the agent binary inside the container's PID namespace, where a container
//! process could otherwise open its `/proc/N/exe` for writing.
//!
//! The child is in the container's PID namespace, so when the container's
//! first process dies the kernel kills it, and the stage ends with it.

use std::io::{BufRead, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};
use serde::{Deserialize, Serialize};

use super::init::{
    CgroupJoin, Status, StepError, StepResult, pipe_cloexec, send, wait_for_cgroups,
};
use super::rootfs::{errno_text, io_text};
use super::spec::ProcessSpec;
use super::{RuntimeError, process, sys};
use crate::procfs::ProcessId;

/// The spec is read up to this size (env can be large).
const SPEC_MAX: u64 = 16 << 20;

/// The namespaces joined, in order: the mount namespace last, since after
/// it the host's `/proc` is out of reach. PID applies to the fork's child.
const NAMESPACES: [(&str, CloneFlags); 5] = [
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// The signals the stage passes on to the process. With a terminal the
/// process is the terminal's session leader and gets the terminal's own
/// signals (^C, window size, hang-up) from the kernel; these are the ones
/// sent to the stage itself (by sshd, sudo, or a person with `kill`).
const FORWARDED: [Signal; 7] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Exit code when the process could not be started (Docker's and the
/// shell's 126), or its program was not found (127).
pub const EXIT_CANNOT_RUN: u8 = 126;
pub const EXIT_NOT_FOUND: u8 = 127;
/// Exit code of a `run` whose container the runtime could not make
/// (podman's 125): a failure before its program's exec.
pub const EXIT_RUNTIME_FAILED: u8 = 125;

/// Whether `e` is the exec of a program that does not exist.
fn program_missing(e: &StepError) -> bool {
    e.step.starts_with("exec ")
        && (e.detail.contains("not found") || e.detail.contains("No such file"))
}

/// The code podman's `run` exits with when the container did not start:
/// 127 when its program does not exist, 126 when the program cannot be
/// run, 125 when a step before (or outside) the init stage failed.
pub fn start_exit_code(failed: Option<&StepError>) -> u8 {
    match failed {
        Some(e) if program_missing(e) => EXIT_NOT_FOUND,
        Some(e) if e.step.starts_with("exec ") => EXIT_CANNOT_RUN,
        _ => EXIT_RUNTIME_FAILED,
    }
}

/// What to run in which container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecSpec {
    /// Names the container in messages (`pod default/web, container web`).
    pub name: String,
    /// The container's first process: its namespaces are joined, and it
    /// must still be this very process (pid and start time) when they are.
    pub pid: ProcessId,
    /// The container's `cgroup.procs` files.
    pub cgroup_procs: Vec<PathBuf>,
    /// `HOSTNAME` when the environment has none.
    pub hostname: String,
    /// The process: args, env, cwd, user, capabilities, no_new_privs,
    /// seccomp; the container's own unless overridden.
    pub process: ProcessSpec,
    /// Stdin is a terminal the process should own: it becomes the
    /// terminal's session leader (window-size changes and ^C reach it).
    pub tty: bool,
}

/// Replaces this process with the exec stage, run from `agent_binary`,
/// which runs `spec` in its container with this process's stdio. Returns
/// only on failure.
pub fn exec(agent_binary: &Path, spec: &ExecSpec) -> RuntimeError {
    let mut command = match stage_command(agent_binary, spec) {
        Ok(command) => command,
        Err(e) => return e,
    };
    let e = command.exec();
    RuntimeError::Sys {
        what: format!("start the exec stage {}", agent_binary.display()),
        detail: io_text(&e),
    }
}

/// The exec stage for `spec`, run from `agent_binary`, as a command to
/// exec in place ([`exec`]) or to start as a child with stdio of the
/// caller's choosing (the daemon's `exec.start`). The stage's private mount
/// namespace is made in the forked child (or in this process just before
/// an exec in place, which must then be single-threaded).
pub fn stage_command(agent_binary: &Path, spec: &ExecSpec) -> Result<Command, RuntimeError> {
    if spec.process.args.is_empty() {
        return Err(RuntimeError::Spec("no command to run".into()));
    }
    let agent_binary = &std::fs::canonicalize(agent_binary).map_err(|source| RuntimeError::Io {
        path: agent_binary.to_path_buf(),
        source,
    })?;
    // A memfd rather than a pipe: the environment may pass a pipe's buffer,
    // and nobody reads the pipe until after the exec. Not an argument:
    // argv is readable by every user of the host.
    let memfd = rustix::fs::memfd_create("flotilla-exec-spec", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| sys("memfd_create", e))?;
    let json = serde_json::to_vec(spec).map_err(|e| sys("serialise the exec spec", e))?;
    let mut file = std::fs::File::from(memfd);
    file.write_all(&json)
        .and_then(|()| std::io::Seek::rewind(&mut file))
        .map_err(|e| sys("write the exec spec", e))?;
    let fd = OwnedFd::from(file);
    let number = fd.as_raw_fd();
    let mut command = super::read_only_agent(agent_binary, vec![fd])?;
    command
        .arg("__exec")
        .arg(number.to_string())
        .env_clear()
        .current_dir("/");
    Ok(command)
}

/// Entry point of `flotilla-agent __exec SPEC_FD`.
pub fn main(spec_fd: i32) -> ExitCode {
    let is_memfd = spec_fd > 2
        && std::fs::read_link(format!("/proc/self/fd/{spec_fd}"))
            .is_ok_and(|l| l.to_string_lossy().starts_with("/memfd:flotilla-exec-spec"));
    if !is_memfd {
        eprintln!(
            "error: __exec is flotilla-agent's exec stage, started by `flotilla-agent exec`; use that"
        );
        return ExitCode::FAILURE;
    }
    // SAFETY: the number was just checked to be an open memfd above 2 that
    // the verb made for this process; nothing else in this freshly exec'd,
    // single-threaded process owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(spec_fd) };
    let spec = match read_spec(fd) {
        Ok(spec) => spec,
        Err(e) => return failed("the exec stage", &e),
    };
    match stage(&spec) {
        Ok(code) => ExitCode::from(code),
        Err(e) => failed(&spec.name, &e),
    }
}

fn failed(name: &str, e: &StepError) -> ExitCode {
    eprintln!("error: {name}: {}: {}", e.step, e.detail);
    ExitCode::from(exit_code_of(e))
}

/// 127 when the program does not exist, else 126, as a shell says it.
fn exit_code_of(e: &StepError) -> u8 {
    if program_missing(e) {
        EXIT_NOT_FOUND
    } else {
        EXIT_CANNOT_RUN
    }
}

fn read_spec(fd: OwnedFd) -> StepResult<ExecSpec> {
    let step = || "read the exec spec".to_string();
    let mut text = Vec::new();
    std::fs::File::from(fd)
        .take(SPEC_MAX)
        .read_to_end(&mut text)
        .map_err(|e| StepError {
            step: step(),
            detail: io_text(&e),
        })?;
    serde_json::from_slice(&text).map_err(|e| StepError {
        step: step(),
        detail: e.to_string(),
    })
}

fn not_running(spec: &ExecSpec) -> StepError {
    StepError {
        step: format!("join the container (pid {})", spec.pid.pid),
        detail: "it is no longer running".into(),
    }
}

/// Joins the container and runs the process; the process's exit code.
fn stage(spec: &ExecSpec) -> StepResult<u8> {
    let pid = spec.pid.pid;
    let mut namespaces = Vec::with_capacity(NAMESPACES.len());
    for (name, kind) in NAMESPACES {
        let path = format!("/proc/{pid}/ns/{name}");
        match std::fs::File::open(&path) {
            Ok(file) => namespaces.push((name, kind, file)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_running(spec)),
            Err(e) => {
                return Err(StepError {
                    step: format!("open {path}"),
                    detail: io_text(&e),
                });
            }
        }
    }
    // The files were opened while the pid still named the container's
    // process if it still does now (same start time): a pid reused in
    // between would have a new start time.
    if !spec.pid.is_alive() {
        return Err(not_running(spec));
    }
    let cgroups = CgroupJoin::open(&spec.cgroup_procs)?;
    for (name, kind, file) in &namespaces {
        nix::sched::setns(file.as_fd(), *kind).map_err(|e| StepError {
            step: format!("join the container's {name} namespace"),
            detail: errno_text(e as i32),
        })?;
    }
    drop(namespaces);

    // Blocked before the fork, so none is lost in between; the child
    // unblocks everything before its exec (process::reset_signals).
    let mut waited = SigSet::empty();
    for signal in FORWARDED {
        waited.add(signal);
    }
    waited.add(Signal::SIGCHLD);
    waited.thread_block().map_err(|e| StepError {
        step: "block signals".into(),
        detail: errno_text(e as i32),
    })?;
    let (status_read, status_write) = pipe_cloexec("create the status pipe")?;
    let (go_read, go_write) = pipe_cloexec("create the cgroup pipe")?;
    // SAFETY: this process is single-threaded (freshly exec'd, no thread was
    // started), so the child cannot inherit a lock held by another thread.
    let child = match unsafe { nix::unistd::fork() } {
        Err(e) => {
            return Err(StepError {
                step: "create the process (fork)".into(),
                detail: errno_text(e as i32),
            });
        }
        Ok(ForkResult::Child) => {
            drop(go_write);
            drop(status_read);
            let status = std::fs::File::from(status_write);
            let error = child(spec, &cgroups, &status, &go_read);
            send(&status, &Status::Failed(error));
            std::process::exit(1);
        }
        Ok(ForkResult::Parent { child }) => child,
    };
    drop(go_read);
    drop(status_write);
    // Failures here are reported after the child's own: a child that
    // failed before being let go has exited, which is why writing to it
    // failed, and its report says what went wrong.
    let moved = cgroups.move_child(child.as_raw());
    drop(cgroups);
    let go = match moved {
        // Closing the pipe unwritten tells the child to give up.
        Err(_) => Ok(()),
        Ok(()) => nix::unistd::write(&go_write, b"1")
            .map(drop)
            .map_err(|e| StepError {
                step: "let the process run".into(),
                detail: errno_text(e as i32),
            }),
    };
    drop(go_write);
    // EOF once the child has exec'd (the pipe is close-on-exec), or a
    // report of the step that failed.
    let mut failure = None;
    for line in std::io::BufReader::new(std::fs::File::from(status_read))
        .lines()
        .map_while(Result::ok)
    {
        if let Ok(Status::Failed(e)) = serde_json::from_str::<Status>(&line) {
            failure = failure.or(Some(e));
        }
    }
    let failure = match (moved, failure, go) {
        (Err(e), _, _) | (Ok(()), Some(e), _) | (Ok(()), None, Err(e)) => Some(e),
        (Ok(()), None, Ok(())) => None,
    };
    if let Some(e) = failure {
        let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
        let _ = waitpid(child, None);
        return Err(e);
    }
    Ok(wait_forwarding(child, &waited))
}

/// Waits for the child, passing it every forwarded signal this process
/// gets; its exit code, or 128 + the signal that killed it.
fn wait_forwarding(child: Pid, waited: &SigSet) -> u8 {
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return code.clamp(0, 255) as u8,
            Ok(WaitStatus::Signaled(_, signal, _)) => return (128 + signal as i32) as u8,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            // Not our child any more (cannot happen): nothing to wait for.
            Err(_) => return EXIT_CANNOT_RUN,
        }
        match waited.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(signal) => {
                let _ = nix::sys::signal::kill(child, signal);
            }
        }
    }
}

/// The process before its exec; returns only on failure.
fn child(spec: &ExecSpec, cgroups: &CgroupJoin, status: &std::fs::File, go: &OwnedFd) -> StepError {
    // First, so everything it does is counted in the container's groups.
    match cgroups.move_self().and_then(|()| prepare(spec, go, status)) {
        Ok((program, env)) => process::exec(&program, &spec.process.args, &env),
        Err(e) => e,
    }
}

fn prepare(
    spec: &ExecSpec,
    go: &OwnedFd,
    status: &std::fs::File,
) -> StepResult<(String, Vec<String>)> {
    // Until its exec this process is the agent with root's capabilities:
    // no container process may open its /proc entries (runc does the same).
    nix::sys::prctl::set_dumpable(false).map_err(|e| StepError {
        step: "set the process non-dumpable".into(),
        detail: errno_text(e as i32),
    })?;
    // Its own session, away from the caller's terminal and process group;
    // with -t, the terminal's session leader, as a login shell is. Taking
    // the terminal from the session sshd made (TIOCSCTTY's steal, which
    // needs CAP_SYS_ADMIN: before the capabilities go) means hang-up,
    // window-size changes and ^C go to this process, not to the stage.
    nix::unistd::setsid().map_err(|e| StepError {
        step: "start a session".into(),
        detail: errno_text(e as i32),
    })?;
    if spec.tty && nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
        // SAFETY: TIOCSCTTY takes an int argument (1: steal the terminal
        // from another session), no pointer; fd 0 is open.
        let rc = unsafe { nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 1) };
        if rc != 0 {
            return Err(StepError {
                step: "take the terminal".into(),
                detail: io_text(&std::io::Error::last_os_error()),
            });
        }
    }
    let (program, env) = process::confine(&spec.process, &spec.hostname, false)?;
    wait_for_cgroups(go)?;
    process::close_all_but(status.as_raw_fd())?;
    Ok((program, env))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_is_127_and_the_rest_126() {
        let e = |step: &str, detail: &str| StepError {
            step: step.into(),
            detail: detail.into(),
        };
        assert_eq!(
            exit_code_of(&e("exec nosuch", "executable file not found in $PATH")),
            127
        );
        assert_eq!(
            exit_code_of(&e("exec /x", "No such file or directory")),
            127
        );
        assert_eq!(exit_code_of(&e("exec /etc", "Permission denied")), 126);
        // `run`, as podman: a step before the exec is the runtime's failure.
        let missing = e("exec /x", "No such file or directory");
        assert_eq!(start_exit_code(Some(&missing)), 127);
        assert_eq!(
            start_exit_code(Some(&e("exec /etc", "Permission denied"))),
            126
        );
        assert_eq!(
            start_exit_code(Some(&e("mount overlay on /m", "EINVAL"))),
            125
        );
        assert_eq!(start_exit_code(None), 125);
        assert_eq!(
            exit_code_of(&e("chdir /nosuch", "No such file or directory")),
            126
        );
    }
}
