//! An exec the daemon runs for a client (`exec.start`): the exec stage
//! ([`crate::agent::runtime::exec`]) started as a child of the daemon, on a
//! pseudo-terminal the daemon allocates or on pipes, its output streamed and
//! the client's input, resizes and signals applied. This is the path that
//! costs the host no SSH session, login shell or sudo per exec; the
//! `flotilla-agent exec` verb remains for a person on the host and for
//! agents that predate `exec.start`.
//!
//! ```text
//! control (input, resize, signal) ─▶ writer task ─▶ pty master / stdin pipe
//!                                    resize: TIOCSWINSZ on the master; signal: kill(stage)
//! pty master / stdout, stderr ─▶ reader tasks ─▶ output ─▶ the client's stream
//! the stage's exit ─▶ (output drained, at most EXIT_DRAIN more) ─▶ `exit {code}`
//! ```
//!
//! The terminal comes from the container's own devpts when it can (its
//! `/dev/pts/N` inside, as runc's console socket gives), else the host's.
//! The stage takes the terminal as its process's controlling terminal
//! (setsid, TIOCSCTTY), so ^C typed by the client reaches the process
//! through the line discipline, and closing the master hangs it up. Neither
//! descriptor of the pair reaches the process except as its stdio: both are
//! opened close-on-exec, and the stage closes everything above 2.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rustix::fs::{FileType, OFlags};
use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;

use crate::agent::protocol::exec::{Bytes, ExecControl, ExecOutput};
use crate::agent::runtime::exec::{ExecSpec, stage_command};
use crate::agent::runtime::rootfs::Root;
use crate::procfs::ProcessId;

/// How long output may still come after the stage has ended (a background
/// process of the exec holding the terminal or a pipe open) before the exit
/// is reported anyway.
const EXIT_DRAIN: Duration = Duration::from_millis(250);
/// How long a hung-up exec has to end before it is killed.
const HANG_UP_GRACE: Duration = Duration::from_secs(2);
/// One read's worth of output.
const CHUNK: usize = 32 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ExecProcessError {
    #[error("cannot prepare the exec stage: {0}")]
    Stage(#[from] crate::agent::runtime::RuntimeError),
    #[error("cannot {what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

fn io_error(what: &'static str) -> impl FnOnce(io::Error) -> ExecProcessError {
    move |source| ExecProcessError::Io { what, source }
}

/// The process's terminal size, or None for pipes.
pub type TerminalSize = Option<(u16, u16)>;

/// Starts `spec`'s exec stage from `agent_binary` and runs it to the end
/// in a task: its output, then its exit code, go to the returned receiver;
/// `control` steers it. Dropping the receiver hangs the exec up.
pub fn start(
    agent_binary: &Path,
    spec: &ExecSpec,
    stdin: bool,
    terminal: TerminalSize,
    control: mpsc::Receiver<ExecControl>,
) -> Result<mpsc::Receiver<ExecOutput>, ExecProcessError> {
    let command = stage_command(agent_binary, spec)?;
    let mut command = tokio::process::Command::from(command);
    let (child, io) = match terminal {
        Some((cols, rows)) => {
            let (master, slave) = open_pty(&spec.pid, cols, rows)?;
            let stdio = |what| slave.try_clone().map(Stdio::from).map_err(io_error(what));
            command
                .stdin(stdio("share the terminal")?)
                .stdout(stdio("share the terminal")?)
                .stderr(Stdio::from(slave));
            let child = command.spawn().map_err(io_error("start the exec stage"))?;
            // `command` holds the slave's copies until it goes: the master
            // reads EOF only once the process's side alone has the slave.
            drop(command);
            (child, Io::Terminal(master))
        }
        None => {
            command
                .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = command.spawn().map_err(io_error("start the exec stage"))?;
            let io = Io::Pipes {
                stdin: child.stdin.take(),
                stdout: child.stdout.take(),
                stderr: child.stderr.take(),
            };
            (child, io)
        }
    };
    let (items, receiver) = mpsc::channel(64);
    tokio::spawn(supervise(child, io, control, items));
    Ok(receiver)
}

/// A pseudo-terminal pair of `cols` × `rows`, both ends close-on-exec:
/// from the container's own devpts when it can be opened safely (so, as
/// with runc's console socket, the process's terminal is a /dev/pts/N of
/// its container and `tty` names it), else from the host's.
fn open_pty(
    container: &ProcessId,
    cols: u16,
    rows: u16,
) -> Result<(OwnedFd, OwnedFd), ExecProcessError> {
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    let master = match container_ptmx(container) {
        Ok(master) => master,
        Err(why) => {
            tracing::debug!(%why, "the exec's terminal comes from the host's devpts");
            rustix::pty::openpt(flags).map_err(|e| io_error("open a terminal")(e.into()))?
        }
    };
    rustix::pty::grantpt(&master)
        .and_then(|()| rustix::pty::unlockpt(&master))
        .map_err(|e| io_error("unlock the terminal")(e.into()))?;
    // From the master itself, not by the name in /dev/pts, which another
    // process could have replaced meanwhile.
    let slave = rustix::pty::ioctl_tiocgptpeer(&master, flags)
        .map_err(|e| io_error("open the terminal's other end")(e.into()))?;
    set_size(&master, cols, rows).map_err(io_error("size the terminal"))?;
    Ok((master, slave))
}

/// devpts' `f_type` (linux/magic.h).
const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;

/// The container's `/dev/pts/ptmx`, reached through `/proc/PID/root` of
/// its first process with no symlink followed, and taken only if it is a
/// devpts' ptmx (char 5:2 on a devpts filesystem: the container cannot
/// mount one of its own) and the process is still the same one after the
/// open (its pid was not reused by another container's meanwhile).
fn container_ptmx(container: &ProcessId) -> Result<OwnedFd, String> {
    let root_path = format!("/proc/{}/root", container.pid);
    let root = Root::open(Path::new(&root_path)).map_err(|e| format!("{root_path}: {e}"))?;
    let ptmx = root
        .open_no_symlinks("dev/pts/ptmx", OFlags::RDWR | OFlags::NOCTTY)
        .map_err(|e| format!("/dev/pts/ptmx of the container: {e}"))?;
    let fs = rustix::fs::fstatfs(&ptmx).map_err(|e| e.to_string())?;
    #[allow(clippy::unnecessary_cast)] // f_type's width varies by architecture
    if fs.f_type as i64 != DEVPTS_SUPER_MAGIC {
        return Err("the container's /dev/pts is not a devpts".into());
    }
    let stat = rustix::fs::fstat(&ptmx).map_err(|e| e.to_string())?;
    let is_ptmx = FileType::from_raw_mode(stat.st_mode) == FileType::CharacterDevice
        && rustix::fs::major(stat.st_rdev) == 5
        && rustix::fs::minor(stat.st_rdev) == 2;
    if !is_ptmx {
        return Err("the container's /dev/pts/ptmx is not the ptmx device".into());
    }
    if !container.is_alive() {
        return Err("the container's process ended".into());
    }
    Ok(ptmx)
}

fn set_size(master: impl AsFd, cols: u16, rows: u16) -> io::Result<()> {
    let size = Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    Ok(rustix::termios::tcsetwinsize(master, size)?)
}

enum Io {
    Terminal(OwnedFd),
    Pipes {
        stdin: Option<ChildStdin>,
        stdout: Option<tokio::process::ChildStdout>,
        stderr: Option<tokio::process::ChildStderr>,
    },
}

/// What the writer task gets.
enum Input {
    Data(Vec<u8>),
    Eof,
}

async fn supervise(
    mut child: Child,
    io: Io,
    mut control: mpsc::Receiver<ExecControl>,
    items: mpsc::Sender<ExecOutput>,
) {
    let stage = child.id().map(|pid| Pid::from_raw(pid as i32));
    let (output_sender, mut output) = mpsc::channel::<ExecOutput>(16);
    let (input, input_queue) = mpsc::channel::<Input>(64);
    let mut tasks = tokio::task::JoinSet::new();
    let mut master = None;
    match io {
        Io::Terminal(fd) => match Master::new(fd) {
            Ok(fd) => {
                let fd = std::sync::Arc::new(fd);
                tasks.spawn(read_terminal(fd.clone(), output_sender));
                tasks.spawn(write_terminal(fd.clone(), input_queue));
                master = Some(fd);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot poll the exec's terminal; killing it");
                let _ = child.start_kill();
            }
        },
        Io::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            if let Some(stdout) = stdout {
                tasks.spawn(read_pipe(stdout, ExecOutput::Stdout, output_sender.clone()));
            }
            if let Some(stderr) = stderr {
                tasks.spawn(read_pipe(stderr, ExecOutput::Stderr, output_sender));
            }
            if let Some(stdin) = stdin {
                tasks.spawn(write_pipe(stdin, input_queue));
            }
        }
    }
    let mut status = None;
    let mut output_open = true;
    let mut control_open = true;
    // Armed when the stage ends.
    let drain = tokio::time::sleep(Duration::from_secs(86_400));
    tokio::pin!(drain);
    loop {
        if status.is_some() && !output_open {
            break;
        }
        // The stage to signal: none once reaped, since its pid may name
        // another process by then.
        let live_stage = stage.filter(|_| status.is_none());
        tokio::select! {
            biased;
            _ = items.closed() => {
                hang_up(child, live_stage);
                return;
            }
            item = output.recv(), if output_open => match item {
                Some(item) => {
                    if items.send(item).await.is_err() {
                        hang_up(child, live_stage);
                        return;
                    }
                }
                None => output_open = false,
            },
            // Taken only while the writer has room, so nothing is dropped:
            // a process that reads slowly holds the client's input back
            // (in the connection's queue) while its output still flows.
            request = control.recv(), if control_open && (input.is_closed() || input.capacity() > 0) => match request {
                // A closed queue: no stdin was asked for, or the process
                // closed it; its input goes nowhere, as a pipe's would.
                Some(ExecControl::Input(data)) => {
                    let _ = input.try_send(Input::Data(data));
                }
                Some(ExecControl::Eof) => {
                    let _ = input.try_send(Input::Eof);
                }
                Some(ExecControl::Resize { cols, rows }) => {
                    if let Some(master) = &master
                        && let Err(e) = set_size(master.fd.get_ref(), cols, rows)
                    {
                        tracing::debug!(error = %e, "resizing the exec's terminal");
                    }
                }
                Some(ExecControl::Signal(signal)) => {
                    if let Some(stage) = live_stage {
                        let _ = kill(stage, signal);
                    }
                }
                None => control_open = false,
            },
            ended = child.wait(), if status.is_none() => {
                status = Some(ended);
                drain.as_mut().reset(tokio::time::Instant::now() + EXIT_DRAIN);
            }
            _ = &mut drain, if status.is_some() => break,
        }
    }
    tasks.abort_all();
    let code = match status {
        Some(Ok(status)) => status
            .code()
            .or_else(|| status.signal().map(|signal| 128 + signal))
            .unwrap_or(255),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "waiting for an exec stage");
            255
        }
        None => 255,
    };
    let _ = items.send(ExecOutput::Exit { code }).await;
}

/// The client is gone: SIGHUP to the stage (which passes it on), then
/// SIGKILL if it has not ended within [`HANG_UP_GRACE`].
fn hang_up(mut child: Child, stage: Option<Pid>) {
    if let Some(stage) = stage {
        let _ = kill(stage, Signal::SIGHUP);
    }
    tokio::spawn(async move {
        if tokio::time::timeout(HANG_UP_GRACE, child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    });
}

/// The master end, non-blocking, registered with the reactor.
struct Master {
    fd: AsyncFd<OwnedFd>,
}

impl Master {
    fn new(fd: OwnedFd) -> io::Result<Master> {
        rustix::io::ioctl_fionbio(&fd, true)?;
        // SAFETY: an OwnedFd is open until dropped and always names the
        // same descriptor, and the AsyncFd owns it from here on.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(Master { fd })
    }

    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut ready = self.fd.readable().await?;
            match ready.try_io(|fd| Ok(rustix::io::read(fd.get_ref(), &mut *buf)?)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut ready = self.fd.writable().await?;
            match ready.try_io(|fd| Ok(rustix::io::write(fd.get_ref(), data)?)) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }
}

async fn read_terminal(master: std::sync::Arc<Master>, output: mpsc::Sender<ExecOutput>) {
    let mut buf = vec![0; CHUNK];
    loop {
        match master.read(&mut buf).await {
            // EIO: every copy of the other end is closed (the process and
            // everything it started have gone).
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let item = ExecOutput::Stdout(Bytes(buf[..n].to_vec()));
                if output.send(item).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn write_terminal(master: std::sync::Arc<Master>, mut input: mpsc::Receiver<Input>) {
    while let Some(input) = input.recv().await {
        // EOF on a terminal is its end-of-file character (^D, at the start
        // of a line), as a person would type it.
        let data = match &input {
            Input::Data(data) => data.as_slice(),
            Input::Eof => b"\x04",
        };
        if let Err(e) = master.write_all(data).await {
            tracing::debug!(error = %e, "writing to the exec's terminal");
            return;
        }
    }
}

async fn read_pipe(
    mut pipe: impl AsyncRead + Unpin,
    wrap: fn(Bytes) -> ExecOutput,
    output: mpsc::Sender<ExecOutput>,
) {
    let mut buf = vec![0; CHUNK];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if output.send(wrap(Bytes(buf[..n].to_vec()))).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn write_pipe(mut stdin: ChildStdin, mut input: mpsc::Receiver<Input>) {
    while let Some(input) = input.recv().await {
        match input {
            Input::Data(data) => {
                if stdin.write_all(&data).await.is_err() {
                    return;
                }
            }
            // Dropping the pipe's end is the process's EOF.
            Input::Eof => return,
        }
    }
}
