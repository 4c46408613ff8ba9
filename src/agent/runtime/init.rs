//! The init stage: `flotilla-agent __init CONFIG_FD STATUS_FD`, a freshly
//! exec'd, single-threaded process that turns a [`ContainerSpec`] into the
//! container's first process.
//!
//! ```text
//! caller (agent/shim, threads)  ── fork+exec, private mount ns, exe bound ro ──▶  __init
//! __init: setns(pod net/ipc/uts), clone(CLONE_PARENT|NEWPID…)
//!         └─▶ child = PID 1, a child of the *caller*: joins its v1 cgroups,
//!             overlay, /proc, /dev, /sys, masks, pivot_root, cwd, seccomp,
//!             user, caps, no_new_privs, waits for "in its cgroups", execve
//! __init: reports the child's pid, moves it into its cgroup2 groups
//!         (meanwhile the child builds its root), tells it to go on, exits
//! ```
//!
//! Doing this work in a fresh process is what makes `clone` safe: no other
//! thread holds a lock the child could need. `CLONE_PARENT` makes the
//! container a child of the caller, so the shim can `waitpid` it like any
//! child of its own.
//!
//! Status reaches the caller on a pipe as JSON lines, each one `write` under
//! `PIPE_BUF` bytes (atomic, so the two writers never interleave): `{"pid":N}`
//! from the init stage, `{"step":…,"detail":…}` from whoever failed. The pipe
//! is close-on-exec in the child: when the container's program starts, the
//! caller reads EOF, and that is the success signal.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::process::ExitCode;

use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};

use super::rootfs::{self, Root, errno_text, io_text};
use super::spec::{ContainerSpec, Namespace};
use super::{process, sandbox};

/// The config is read up to this size (a spec is a few KiB; env can be large).
const CONFIG_MAX: u64 = 16 << 20;
/// Each status message stays below PIPE_BUF (4096) so its write is atomic.
const MESSAGE_MAX: usize = 4000;
/// The child's stack: it runs ordinary Rust (formatting, serde_json) until
/// exec. Only touched pages cost memory.
const CHILD_STACK: usize = 1 << 20;

/// A failed step of container creation: what we were doing, and why it failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepError {
    pub step: String,
    pub detail: String,
}

impl StepError {
    pub fn errno(step: String, e: rustix::io::Errno) -> StepError {
        StepError {
            step,
            detail: errno_text(e.raw_os_error()),
        }
    }
}

pub type StepResult<T> = Result<T, StepError>;

/// One line on the status pipe.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Status {
    Pid { pid: i32 },
    Failed(StepError),
}

/// Sends one status line with a single `write` of at most [`MESSAGE_MAX`]
/// bytes (long texts are cut, at character boundaries).
pub(super) fn send(status: &std::fs::File, message: &Status) {
    let mut line = serde_json::to_vec(message).unwrap_or_default();
    if let Status::Failed(e) = message {
        let mut limit = MESSAGE_MAX / 2;
        while line.len() > MESSAGE_MAX && limit > 0 {
            let short = Status::Failed(StepError {
                step: cut(&e.step, limit / 2),
                detail: cut(&e.detail, limit),
            });
            line = serde_json::to_vec(&short).unwrap_or_default();
            limit /= 2;
        }
    }
    line.push(b'\n');
    // Nothing to do if the caller is gone.
    let _ = (&*status).write_all(&line);
}

/// The longest prefix of `text` of at most `max` bytes.
fn cut(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// Entry point of `flotilla-agent __init CONFIG_FD STATUS_FD`.
pub fn main(config_fd: i32, status_fd: i32) -> ExitCode {
    let is_pipe = |fd: i32| {
        fd > 2
            && std::fs::metadata(format!("/proc/self/fd/{fd}"))
                .is_ok_and(|m| m.file_type().is_fifo())
    };
    if config_fd == status_fd || !is_pipe(config_fd) || !is_pipe(status_fd) {
        eprintln!(
            "error: __init is flotilla-agent's container init stage, started by the agent with two pipes"
        );
        return ExitCode::FAILURE;
    }
    // SAFETY: both numbers were just checked to be open pipes above 2, and
    // distinct; the spawner created them for this process and nothing else
    // in this freshly exec'd, single-threaded process owns them. Receiving
    // descriptors by number across exec is the one way to get them.
    let (config, status) = unsafe {
        (
            OwnedFd::from_raw_fd(config_fd),
            OwnedFd::from_raw_fd(status_fd),
        )
    };
    // The spawner cleared close-on-exec to hand the pipe over; set it again,
    // so the container's exec closes it (the caller's success signal).
    if let Err(e) = nix::fcntl::fcntl(
        &status,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    ) {
        eprintln!("error: __init: status pipe: {}", errno_text(e as i32));
        return ExitCode::FAILURE;
    }
    let status = std::fs::File::from(status);
    match stage(config, &status) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            send(&status, &Status::Failed(e));
            ExitCode::FAILURE
        }
    }
}

fn stage(config: OwnedFd, status: &std::fs::File) -> StepResult<()> {
    let mut text = Vec::new();
    std::fs::File::from(config)
        .take(CONFIG_MAX)
        .read_to_end(&mut text)
        .map_err(|e| StepError {
            step: "read the container spec".into(),
            detail: io_text(&e),
        })?;
    let spec: ContainerSpec = serde_json::from_slice(&text).map_err(|e| StepError {
        step: "read the container spec".into(),
        detail: e.to_string(),
    })?;
    // No CLONE_NEWNS: the spawner already gave this process a private mount
    // namespace (to exec it from a read-only mount), and the container takes
    // it over; a second copy would cost a namespace copy and teardown (an RCU
    // grace period the caller waits for at exit) for nothing.
    if !own_mount_namespace() {
        return Err(StepError {
            step: "check the mount namespace".into(),
            detail: "the init stage shares its parent's mount namespace; only the runtime's spawn may start it".into(),
        });
    }
    let mut flags = CloneFlags::CLONE_PARENT | CloneFlags::CLONE_NEWPID;
    for (ns, kind, name) in [
        (&spec.namespaces.net, CloneFlags::CLONE_NEWNET, "net"),
        (&spec.namespaces.ipc, CloneFlags::CLONE_NEWIPC, "ipc"),
        (&spec.namespaces.uts, CloneFlags::CLONE_NEWUTS, "uts"),
    ] {
        match ns {
            Namespace::New => flags |= kind,
            Namespace::Host => {}
            Namespace::Join(path) => {
                let step = || format!("join the {name} namespace {}", path.display());
                let file = std::fs::File::open(path).map_err(|e| StepError {
                    step: step(),
                    detail: io_text(&e),
                })?;
                // The type check refuses a file that is not a `name` namespace.
                nix::sched::setns(file.as_fd(), kind).map_err(|e| StepError {
                    step: step(),
                    detail: errno_text(e as i32),
                })?;
            }
        }
    }
    // The child joins its v1 cgroups itself, first thing (see CgroupJoin:
    // no grace period). Its cgroup2 groups are joined by this process while
    // the child builds its root, and the child waits for that before
    // anything of the image runs (as runc and crun do); until then it runs
    // only our setup code. The files are opened now: the child shares this
    // mount namespace, and once it has pivoted into its root these paths
    // are gone from here too.
    let cgroups = CgroupJoin::open(&spec.cgroup_procs)?;
    let (go_read, go_write) = pipe_cloexec("create the cgroup pipe")?;
    let mut stack = vec![0u8; CHILD_STACK];
    let child = Box::new(|| {
        let error = container(
            &spec,
            &cgroups,
            status.as_raw_fd(),
            &go_read,
            go_write.as_raw_fd(),
        );
        send(status, &Status::Failed(error));
        1
    });
    // SAFETY: this process is single-threaded (freshly exec'd, no thread was
    // started), so the child cannot inherit a lock held by another thread;
    // the stack is ours and large enough for the setup code, which ends in
    // execve or returns (the child then exits with 1).
    let pid = unsafe { nix::sched::clone(child, &mut stack, flags, Some(nix::libc::SIGCHLD)) }
        .map_err(|e| StepError {
            step: "create the container process (clone)".into(),
            detail: errno_text(e as i32),
        })?;
    drop(go_read);
    send(status, &Status::Pid { pid: pid.as_raw() });
    if let Err(e) = cgroups.move_child(pid.as_raw()) {
        // Reported before the child learns of it (EOF on its pipe when
        // this process ends), so the caller's first failure is this one.
        send(status, &Status::Failed(e));
        std::process::exit(1);
    }
    (&std::fs::File::from(go_write))
        .write_all(b"1")
        .map_err(|e| StepError {
            step: "let the container run".into(),
            detail: io_text(&e),
        })?;
    Ok(())
}

pub(super) fn pipe_cloexec(step: &str) -> StepResult<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| StepError {
        step: step.into(),
        detail: errno_text(e as i32),
    })
}

/// In the child: waits until the init stage has moved it into its cgroups
/// (a byte on `go`). EOF means the init stage gave up, having reported why.
pub(super) fn wait_for_cgroups(go: &OwnedFd) -> StepResult<()> {
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(go, &mut byte) {
            Ok(1) => return Ok(()),
            Ok(_) => {
                return Err(StepError {
                    step: "wait to be moved into the container's cgroups".into(),
                    detail: "the init stage gave up (its own report says why)".into(),
                });
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(StepError {
                    step: "wait to be moved into the container's cgroups".into(),
                    detail: errno_text(e as i32),
                });
            }
        }
    }
}

/// True when this process's mount namespace is not its parent's (the
/// spawner's `unshare` happened), so mounting here cannot touch the caller.
fn own_mount_namespace() -> bool {
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    let parent = nix::unistd::getppid().as_raw().to_string();
    matches!((ns("self"), ns(&parent)), (Some(mine), Some(theirs)) if mine != theirs)
}

/// The container's PID 1 before exec. Returns only on failure. `go` is
/// readable once the init stage has moved it into its cgroups; `go_write`
/// is the child's copy of the other end, closed first so that the init
/// stage's exit reads as EOF.
fn container(
    spec: &ContainerSpec,
    cgroups: &CgroupJoin,
    status: RawFd,
    go: &OwnedFd,
    go_write: RawFd,
) -> StepError {
    // SAFETY: `go_write` is this child's copy (clone without CLONE_FILES
    // copied the table) of a descriptor the parent keeps as an OwnedFd;
    // nothing in the child uses it.
    unsafe { nix::libc::close(go_write) };
    match cgroups.move_self().and_then(|()| prepare(spec, status, go)) {
        Ok((program, env)) => process::exec(&program, &spec.process.args, &env),
        Err(e) => e,
    }
}

/// Everything between the clone and the exec: the program to run and its
/// environment on success.
fn prepare(spec: &ContainerSpec, status: RawFd, go: &OwnedFd) -> StepResult<(String, Vec<String>)> {
    // Modes as written (0666 devices, 1777 shm): no umask during setup.
    process::set_umask(0);
    if spec.namespaces.uts == Namespace::New {
        nix::unistd::sethostname(&spec.hostname).map_err(|e| StepError {
            step: format!("set hostname {}", spec.hostname),
            detail: errno_text(e as i32),
        })?;
    }
    if spec.namespaces.net == Namespace::New {
        sandbox::loopback_up().map_err(|detail| StepError {
            step: "bring loopback up".into(),
            detail,
        })?;
    }
    // Nothing mounted from here on reaches the host: the spawner made this
    // mount namespace a recursive slave before exec (and `stage` checked it
    // is not the caller's).
    if spec.rootfs.private_layer {
        rootfs::mount_overlay(&rootfs::private_layer(&spec.rootfs)?)?;
    } else {
        rootfs::mount_overlay(&spec.rootfs)?;
    }
    let root = Root::open(&spec.rootfs.merged_dir)
        .map_err(|e| StepError::errno(format!("open {}", spec.rootfs.merged_dir.display()), e))?;
    rootfs::mount_all(
        &root,
        &spec.mounts,
        &spec.masked_paths,
        &spec.readonly_paths,
    )?;
    rootfs::pivot_root(&root)?;
    drop(root);
    let (program, env) = process::confine(&spec.process, &spec.hostname, true)?;
    wait_for_cgroups(go)?;
    process::close_all_but(status)?;
    Ok((program, env))
}

/// The cgroups a new process joins, opened before it is created (so they
/// can be joined after its root has pivoted away from these paths), and
/// split by who moves it.
///
/// Moving a process into a cgroup by pid (`cgroup.procs`) takes the
/// writer side of the kernel's global threadgroup lock, which waits for an
/// RCU grace period: 5 to 20 ms on this kind of host, as long as a whole
/// `crun run`. On a v1 hierarchy a single-threaded process can instead
/// move its own thread (`0` written to `tasks`), which the kernel does
/// without that lock. So the new process joins its v1 groups itself, and
/// only cgroup2 groups (which have no `tasks`) are written by the parent.
///
/// Being born in the cgroup2 group (`clone3` with `CLONE_INTO_CGROUP`)
/// would spare that move too, but on Linux 6.18 a process born that way
/// into a group that `cgroup.kill` once emptied is killed at birth: a
/// container restarted after its shim was lost never ran. Giving each
/// instance a fresh group would allow it; until then the parent moves it.
pub(super) struct CgroupJoin<'a> {
    /// v1: the process writes `0` to these `tasks` files itself.
    by_itself: Vec<(&'a std::path::PathBuf, std::fs::File)>,
    /// cgroup2: the parent writes the pid to these `cgroup.procs`.
    by_parent: Vec<(&'a std::path::PathBuf, std::fs::File)>,
}

impl<'a> CgroupJoin<'a> {
    /// Opens the groups named by their `cgroup.procs` paths.
    pub(super) fn open(paths: &'a [std::path::PathBuf]) -> StepResult<CgroupJoin<'a>> {
        let open = |path: &std::path::Path| std::fs::OpenOptions::new().write(true).open(path);
        let failed = |procs: &std::path::PathBuf, e: &std::io::Error| StepError {
            step: format!("join cgroup {}", procs.display()),
            detail: io_text(e),
        };
        let mut join = CgroupJoin {
            by_itself: Vec::new(),
            by_parent: Vec::new(),
        };
        for procs in paths {
            match open(&procs.with_file_name("tasks")) {
                Ok(tasks) => join.by_itself.push((procs, tasks)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let file = open(procs).map_err(|e| failed(procs, &e))?;
                    join.by_parent.push((procs, file));
                }
                Err(e) => return Err(failed(procs, &e)),
            }
        }
        Ok(join)
    }

    /// In the new process, while it is single-threaded: joins the v1 groups.
    pub(super) fn move_self(&self) -> StepResult<()> {
        for (procs, tasks) in &self.by_itself {
            (&*tasks).write_all(b"0").map_err(|e| StepError {
                step: format!("join cgroup {}", procs.display()),
                detail: io_text(&e),
            })?;
        }
        Ok(())
    }

    /// In the parent: moves the process `pid` into the cgroup2 groups.
    pub(super) fn move_child(&self, pid: i32) -> StepResult<()> {
        let pid = pid.to_string();
        for (procs, file) in &self.by_parent {
            (&*file).write_all(pid.as_bytes()).map_err(|e| StepError {
                step: format!("join cgroup {}", procs.display()),
                detail: io_text(&e),
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_fit_one_atomic_pipe_write() {
        let (read, write) = std::io::pipe().expect("pipe");
        let status = std::fs::File::from(std::os::fd::OwnedFd::from(write));
        let long = "é\u{1}".repeat(5000);
        send(
            &status,
            &Status::Failed(StepError {
                step: long.clone(),
                detail: long,
            }),
        );
        drop(status);
        let mut text = String::new();
        { read }.read_to_string(&mut text).expect("read");
        assert!(text.len() <= MESSAGE_MAX + 1, "{}", text.len());
        let parsed: Status = serde_json::from_str(text.trim_end()).expect("one JSON line");
        assert!(matches!(parsed, Status::Failed(e) if e.step.starts_with('é')));
        assert_eq!(cut("aé", 2), "a");
    }
}
