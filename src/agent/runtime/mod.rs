//! The container runtime core: pod sandboxes (shared network, IPC and UTS
//! namespaces) and the creation of a container's first process, with what
//! Docker and containerd apply by default (overlay rootfs, pivot_root,
//! private /proc /dev, read-only /sys, masked paths, 14 capabilities,
//! no_new_privs, Docker's seccomp refusals) and the known runtime escapes
//! closed:
//!
//! * CVE-2024-21626 (leaked fds, cwd outside the root): every descriptor
//!   above 2 is closed before the exec (but the close-on-exec status pipe),
//!   the cwd is resolved inside the root without magic links and checked
//!   with `getcwd` (process.rs).
//! * CVE-2019-5736 (overwriting the runtime's binary through
//!   `/proc/self/exe`): the init stage is exec'd from a read-only bind mount
//!   of the agent's binary in a private mount namespace (see [`spawn`]).
//! * CVE-2021-30465 (symlink races on mount targets): every target is
//!   resolved with `openat2(RESOLVE_IN_ROOT)` and mounted via
//!   `/proc/self/fd/N` (rootfs.rs).
//!
//! ```text
//! spec.rs     ContainerSpec and Docker's defaults
//! sandbox.rs  PodSandbox: nsfs bind mounts, /etc/hosts, hostname, resolv.conf
//! init.rs     `flotilla-agent __init`: setns, cgroups, clone into new PID/mount ns
//! exec.rs     `flotilla-agent __exec`: a process into a running container
//! rootfs.rs   overlay, /proc, /dev, /sys, masks, pivot_root
//! process.rs  user, env, cwd, capabilities, no_new_privs, fds, exec
//! seccomp.rs  Docker's default seccomp refusals as a BPF filter
//! ```
//!
//! Only the init stage uses `fork`-like calls: the caller (a multi-threaded
//! agent or shim) only ever fork+execs a fresh process.

pub mod exec;
pub mod init;
pub mod process;
pub mod rootfs;
pub mod sandbox;
pub mod seccomp;
pub mod spec;

use std::ffi::CString;
use std::io::{BufRead, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

pub use init::StepError;
pub use sandbox::{PodSandbox, SandboxSpec};
pub use spec::{
    BindMount, ContainerSpec, Namespace, Namespaces, ProcessSpec, RootfsSpec, capability_mask,
};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid container spec: {0}")]
    Spec(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A step of container creation failed inside the init stage; `step`
    /// says what was being done (`mount /proc on /…/merged/proc`,
    /// `exec /bin/nosuch`), `detail` why.
    #[error("container {id}: {step}: {detail}")]
    Init {
        id: String,
        step: String,
        detail: String,
    },
    #[error("pod sandbox: {step}: {detail}")]
    Sandbox { step: String, detail: String },
    #[error("pod sandbox {0} already exists")]
    SandboxExists(PathBuf),
    #[error("{what}: {detail}")]
    Sys { what: String, detail: String },
}

impl RuntimeError {
    /// The step of container creation that failed, as the init stage said.
    pub fn step_error(&self) -> Option<StepError> {
        match self {
            RuntimeError::Init { step, detail, .. } => Some(StepError {
                step: step.clone(),
                detail: detail.clone(),
            }),
            _ => None,
        }
    }

    /// The failed step, for errors from inside container creation.
    pub fn step(&self) -> Option<&str> {
        match self {
            RuntimeError::Init { step, .. } | RuntimeError::Sandbox { step, .. } => Some(step),
            _ => None,
        }
    }
}

fn sys(what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Sys {
        what: what.to_string(),
        detail: e.to_string(),
    }
}

/// A created container: its first process, PID 1 inside, a child of the
/// caller (so the caller, the shim, reaps it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerProcess {
    /// The host pid.
    pub pid: i32,
}

/// How a container's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerExit {
    Code(i32),
    Signal(i32),
}

impl ContainerExit {
    /// The shell's convention: the code, or 128 + the signal.
    pub fn code(self) -> i32 {
        match self {
            ContainerExit::Code(c) => c,
            ContainerExit::Signal(s) => 128 + s,
        }
    }
}

impl ContainerProcess {
    /// Waits for the process to end (blocking) and reaps it.
    pub fn wait(&self) -> Result<ContainerExit, RuntimeError> {
        loop {
            match waitpid(Pid::from_raw(self.pid), None) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(ContainerExit::Code(code)),
                Ok(WaitStatus::Signaled(_, signal, _)) => {
                    return Ok(ContainerExit::Signal(signal as i32));
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(sys(&format!("wait for pid {}", self.pid), e)),
            }
        }
    }
}

/// Creates the container's process with the agent binary this process runs
/// (`flotilla-agent` itself, or the shim built from it).
pub fn spawn(spec: ContainerSpec) -> Result<ContainerProcess, RuntimeError> {
    let exe = std::env::current_exe().map_err(|e| sys("find the agent binary", e))?;
    spawn_with(&exe, spec)
}

/// A command running `agent_binary` (absolute and free of symlinks) from a
/// read-only bind mount of itself in a private mount namespace, as the
/// CVE-2019-5736 defence described at [`spawn_with`] needs, and handing it
/// `keep` under their numbers (close-on-exec cleared in the child). Used for
/// the init stage and for the exec stage ([`exec`]), whose process is for
/// a while the agent binary inside a container.
fn read_only_agent(agent_binary: &Path, keep: Vec<OwnedFd>) -> Result<Command, RuntimeError> {
    let exe_c = CString::new(agent_binary.as_os_str().as_bytes())
        .map_err(|_| RuntimeError::Spec("the agent binary's path has a NUL byte".into()))?;
    let root_c = c"/";
    let mut command = Command::new(agent_binary);
    // SAFETY: the closure runs before exec (in a forked child, or in this
    // process for `CommandExt::exec`) and makes only raw system calls
    // (fcntl, unshare, mount) on values prepared before: no allocation, no
    // lock, nothing a thread of the parent could hold.
    unsafe {
        command.pre_exec(move || {
            use nix::fcntl::{FcntlArg, FdFlag, fcntl};
            for fd in &keep {
                fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
            }
            nix::sched::unshare(CloneFlags::CLONE_NEWNS)?;
            nix::mount::mount(
                None::<&std::ffi::CStr>,
                root_c,
                None::<&std::ffi::CStr>,
                MsFlags::MS_REC | MsFlags::MS_SLAVE,
                None::<&std::ffi::CStr>,
            )?;
            nix::mount::mount(
                Some(exe_c.as_c_str()),
                exe_c.as_c_str(),
                None::<&std::ffi::CStr>,
                MsFlags::MS_BIND,
                None::<&std::ffi::CStr>,
            )?;
            nix::mount::mount(
                None::<&std::ffi::CStr>,
                exe_c.as_c_str(),
                None::<&std::ffi::CStr>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&std::ffi::CStr>,
            )?;
            Ok(())
        });
    }
    Ok(command)
}

/// Creates the container's process, running the init stage from
/// `agent_binary` (a `flotilla-agent`). Returns once the container's program
/// has been exec'd, or with the step that failed.
///
/// CVE-2019-5736: until its exec, the container's PID 1 *is* the agent
/// binary, and an image whose program is `/proc/self/exe` (or a `#!` script
/// naming it) makes the kernel exec the agent inside the container; a second
/// container process could then open that `/proc/N/exe` for writing once it
/// stops being busy and replace the agent on the host. runc closes this with
/// a sealed memfd copy of itself (a copy per start: milliseconds) or a
/// read-only overlay; we use the cheap half of the idea: the forked child
/// unshares a mount namespace, binds the agent binary onto itself read-only
/// there, and execs it through that mount. Every `/proc/N/exe` of the init
/// stage and its clone then names a read-only mount, so opening it for
/// writing fails with EROFS; the mount exists only in that private namespace
/// (gone with the container), the host's binary and mounts are untouched,
/// and after `pivot_root` no path in the container leads to it at all.
pub fn spawn_with(
    agent_binary: &Path,
    mut spec: ContainerSpec,
) -> Result<ContainerProcess, RuntimeError> {
    // `create` checks the spec (a bad one ends the stage unused).
    let stdio = std::mem::take(&mut spec.stdio);
    InitStage::start(agent_binary, stdio)?.create(spec)
}

/// An init stage started before its container's spec is ready: the agent
/// binary's exec and start-up (a millisecond, most of it the dynamic
/// loader) then run beside whatever the caller still has to prepare, as a
/// foreground `run` does with the pod's records and cgroups. It waits on
/// its config pipe; [`InitStage::create`] sends the spec. A stage dropped
/// unused reads EOF, fails that step and exits, and is reaped.
pub struct InitStage {
    agent_binary: PathBuf,
    child: Option<std::process::Child>,
    config: Option<std::fs::File>,
    status: Option<std::fs::File>,
}

impl InitStage {
    /// Starts the init stage of `agent_binary` (see [`spawn_with`]) with
    /// the container's stdin, stdout and stderr (none: /dev/null).
    pub fn start(
        agent_binary: &Path,
        stdio: [Option<OwnedFd>; 3],
    ) -> Result<InitStage, RuntimeError> {
        // Absolute and free of symlinks: the bind mount and the exec below
        // must name the same file, and the child changes directory before both.
        let agent_binary =
            std::fs::canonicalize(agent_binary).map_err(|source| RuntimeError::Io {
                path: agent_binary.to_path_buf(),
                source,
            })?;
        let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| sys("pipe", e));
        let (config_read, config_write) = pipe()?;
        let (status_read, status_write) = pipe()?;
        // Above the stdio numbers and away from what std's spawn uses, so
        // the child can keep them under the same numbers.
        let high =
            |fd: OwnedFd| rustix::io::fcntl_dupfd_cloexec(&fd, 10).map_err(|e| sys("dup", e));
        let config_read = high(config_read)?;
        let status_write = high(status_write)?;
        let (config_fd, status_fd) = (config_read.as_raw_fd(), status_write.as_raw_fd());

        let mut command = read_only_agent(&agent_binary, vec![config_read, status_write])?;
        command
            .arg("__init")
            .arg(config_fd.to_string())
            .arg(status_fd.to_string())
            .env_clear()
            .current_dir("/");
        let [stdin, stdout, stderr] = stdio;
        let to_stdio = |fd: Option<OwnedFd>| fd.map_or_else(Stdio::null, Stdio::from);
        command
            .stdin(to_stdio(stdin))
            .stdout(to_stdio(stdout))
            .stderr(to_stdio(stderr));
        let child = command.spawn().map_err(|e| RuntimeError::Sys {
            what: format!("start the init stage {}", agent_binary.display()),
            detail: rootfs::io_text(&e),
        })?;
        // Our copies of the child's ends go with the command: the status
        // pipe reads EOF only once every writer is gone, and the container's
        // output pipes once the container has ended.
        drop(command);
        Ok(InitStage {
            agent_binary,
            child: Some(child),
            config: Some(std::fs::File::from(config_write)),
            status: Some(std::fs::File::from(status_read)),
        })
    }

    /// The init stage's pid, until it has been used or dropped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// Sends `spec` (its stdio was given to [`InitStage::start`]) and
    /// returns once the container's program has been exec'd, or with the
    /// step that failed.
    pub fn create(mut self, spec: ContainerSpec) -> Result<ContainerProcess, RuntimeError> {
        spec.validate()?;
        let id = spec.id.clone();
        // A private layer's work dir is made in its tmpfs, by the stage.
        let work_dir = (!spec.rootfs.private_layer).then_some(&spec.rootfs.work_dir);
        for dir in [
            Some(&spec.rootfs.upper_dir),
            work_dir,
            Some(&spec.rootfs.merged_dir),
        ]
        .into_iter()
        .flatten()
        {
            std::fs::create_dir_all(dir).map_err(|source| RuntimeError::Io {
                path: dir.clone(),
                source,
            })?;
        }
        let config = serde_json::to_vec(&spec).map_err(|e| sys("serialise the spec", e))?;
        let write_result = self.config.take().map(|mut pipe| pipe.write_all(&config));

        let mut pid = None;
        let mut failure = None;
        if let Some(status) = self.status.take() {
            for line in std::io::BufReader::new(status)
                .lines()
                .map_while(Result::ok)
            {
                match serde_json::from_str::<init::Status>(&line) {
                    Ok(init::Status::Pid { pid: p }) => pid = Some(p),
                    Ok(init::Status::Failed(e)) => failure = failure.or(Some(e)),
                    Err(_) => {}
                }
            }
        }
        let init_status = match self.child.take() {
            Some(mut child) => child
                .wait()
                .map_err(|e| sys("wait for the init stage", e))?,
            None => return Err(sys("run the init stage", "it was already used")),
        };
        if let Some(StepError { step, detail }) = failure {
            if let Some(pid) = pid {
                // The failed child is ours (CLONE_PARENT): reap it.
                let _ = ContainerProcess { pid }.wait();
            }
            return Err(RuntimeError::Init { id, step, detail });
        }
        match pid {
            Some(pid) => Ok(ContainerProcess { pid }),
            None => Err(RuntimeError::Init {
                id,
                step: format!("run the init stage {}", self.agent_binary.display()),
                detail: match write_result {
                    Some(Err(e)) => format!("sending the spec: {}", rootfs::io_text(&e)),
                    _ => format!("it ended ({init_status}) without creating the container"),
                },
            }),
        }
    }
}

impl Drop for InitStage {
    fn drop(&mut self) {
        // Unused: EOF on its config pipe ends it; then it is reaped.
        self.config.take();
        self.status.take();
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}
