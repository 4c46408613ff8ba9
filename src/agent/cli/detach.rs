//! `serve --detach` and `__bridge`: what the console's bootstrap runs over SSH.
//!
//! `serve --detach` forks: the child starts a session of its own (so the SSH
//! session ending does not end it), sends its output to `ROOT/agent.log` and
//! serves; the parent returns once that child answers hello on the socket,
//! printing its pid, or prints why it did not (its exit and the log's tail).
//!
//! `__bridge` joins stdin and stdout to the agent's socket, for a console
//! whose SSH login is not root: sshd opens direct-streamlocal channels as the
//! login user and the socket is root's alone, so such a console runs
//! `sudo -n flotilla-agent __bridge` instead and speaks the protocol over the
//! exec channel.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use crate::agent::pods::AgentConfig;
use crate::agent::protocol::PROTOCOL_VERSION;

/// How long the parent waits for the detached agent to answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The log is set aside as `agent.log.1` when a start finds it this big.
const LOG_ROTATE_BYTES: u64 = 4 << 20;

/// Runs `serve` in a detached child; see the module comment. Must be called
/// while the process has one thread (before any runtime starts).
pub fn serve_detached(
    config: AgentConfig,
    serve: impl FnOnce(AgentConfig) -> anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    let socket = crate::agent::daemon::socket_path(&config.paths.run_dir);
    let log_path = config.paths.root.join("agent.log");
    let (log, log_start) = open_log(&log_path)?;
    let devnull = File::open("/dev/null").context("opening /dev/null")?;

    // SAFETY: the agent has started no thread yet (clap and the config only),
    // so the child may go on running ordinary Rust code.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        ForkResult::Child => {
            let detach = || -> nix::Result<()> {
                nix::unistd::setsid()?;
                nix::unistd::dup2_stdin(&devnull)?;
                nix::unistd::dup2_stdout(&log)?;
                nix::unistd::dup2_stderr(&log)?;
                Ok(())
            };
            if let Err(e) = detach() {
                eprintln!("error: detaching from the session: {e}");
                return Ok(ExitCode::FAILURE);
            }
            drop((log, devnull));
            eprintln!(
                "{} flotilla-agent {} serve starting (pid {})",
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                env!("CARGO_PKG_VERSION"),
                std::process::id()
            );
            serve(config)
        }
        ForkResult::Parent { child } => {
            drop((log, devnull));
            wait_until_serving(child, &socket, &log_path, log_start)
        }
    }
}

/// Opens the log for appending, first setting a large one aside; returns it
/// and its length (where this start's lines begin).
fn open_log(path: &Path) -> anyhow::Result<(File, u64)> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if std::fs::metadata(path).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let _ = std::fs::rename(path, path.with_extension("log.1"));
    }
    let log = File::options()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening the agent log {}", path.display()))?;
    let start = log.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((log, start))
}

fn wait_until_serving(
    child: Pid,
    socket: &Path,
    log_path: &Path,
    log_start: u64,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(status) => bail!(
                "the agent ended ({}) before answering on {}; its log {} says: {}",
                describe(status),
                socket.display(),
                log_path.display(),
                log_tail(log_path, log_start)
            ),
            Err(e) => bail!("waiting for the agent (pid {child}): {e}"),
        }
        // Another agent may still answer on the socket: only ours counts.
        if hello_pid(socket) == Some(child.as_raw() as u32) {
            println!(
                "flotilla-agent serve started: pid {child}, socket {}, log {}",
                socket.display(),
                log_path.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        if started.elapsed() > START_TIMEOUT {
            let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGTERM);
            bail!(
                "the agent (pid {child}) did not answer on {} within {}s and was stopped; its log {} says: {}",
                socket.display(),
                START_TIMEOUT.as_secs(),
                log_path.display(),
                log_tail(log_path, log_start)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exit code {code}"),
        WaitStatus::Signaled(_, signal, _) => format!("killed by {signal}"),
        other => format!("{other:?}"),
    }
}

/// Says hello on `socket` and returns the pid the agent reports.
fn hello_pid(socket: &Path) -> Option<u32> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .ok()?;
    let hello = serde_json::json!({
        "id": 1,
        "method": "hello",
        "params": {"versions": [PROTOCOL_VERSION], "client": "flotilla-agent serve --detach"},
    });
    writeln!(stream, "{hello}").ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    let reply: serde_json::Value = serde_json::from_str(&line).ok()?;
    reply["result"]["pid"].as_u64().map(|p| p as u32)
}

/// What this start wrote to the log, on one line, at most the last 2000 bytes.
fn log_tail(path: &Path, from: u64) -> String {
    let mut text = Vec::new();
    if let Ok(mut file) = File::open(path) {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let start = from.max(len.saturating_sub(2000));
        if file.seek(SeekFrom::Start(start)).is_ok() {
            let _ = file.read_to_end(&mut text);
        }
    }
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        "(nothing)".into()
    } else {
        lines.join(" | ")
    }
}

/// `__bridge`: copies stdin to the agent's socket and the socket to stdout
/// until the agent closes the connection.
pub fn bridge(run_dir: &Path) -> anyhow::Result<ExitCode> {
    let socket: PathBuf = crate::agent::daemon::socket_path(run_dir);
    let stream = UnixStream::connect(&socket).with_context(|| {
        format!(
            "cannot connect to {}: is `flotilla-agent serve` running?",
            socket.display()
        )
    })?;
    let mut to_agent = stream.try_clone().context("cloning the socket")?;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to_agent);
        // The console hung up: let the agent see end of input too.
        let _ = to_agent.shutdown(std::net::Shutdown::Write);
    });
    let mut from_agent = stream;
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from_agent.read(&mut buf) {
            Ok(0) => return Ok(ExitCode::SUCCESS),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("reading the agent's socket"),
        };
        // Each reply is flushed at once: the console waits on it.
        if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
            return Ok(ExitCode::SUCCESS);
        }
    }
}
