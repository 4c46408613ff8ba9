//! Exec into a container, the operator's end: `flotilla exec` and the
//! console's `s` both come here. Two ways to the node, one pump:
//!
//! * **The agent** (`exec.start`, [`crate::agent::protocol::exec`]), over
//!   the agent connection the node's session already has: the agent
//!   starts the exec on a pseudo-terminal it allocates (with the local
//!   `TERM` and window size) or on pipes, and streams its output. No SSH
//!   channel, login shell or sudo per exec, which is most of an exec's
//!   cost on a host whose login shell does work (`~/.bashrc`).
//! * **An SSH channel** running `flotilla-agent exec` (through `sudo -n`
//!   for a non-root login), for an agent that predates `exec.start`: with
//!   a terminal, on a pseudo-terminal sshd allocates.
//!
//! Either way local stdin goes to the process, window-size changes follow
//! the local terminal, stdout and stderr come back separately (merged on a
//! terminal), and the remote exit code is the result.
//!
//! ```text
//! terminal.rs  raw mode (a guard), stdin on a stoppable thread, window size
//! ```

pub mod terminal;

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{SignalKind, signal};

use futures_util::StreamExt;

use crate::agent::protocol::exec::{ExecOutput, ExecStartParams, ExecTerminal};
use crate::agent::protocol::messages::{Method, method};
use crate::agent::protocol::{Client, ClientError, ExecSession};
use crate::config::cluster_file::NodeConfig;
use crate::config::paths::Dirs;
use crate::ssh::bootstrap::{AgentBinary, sh_quote};
use crate::ssh::digest_cache::DigestCache;
use crate::ssh::target::TargetContext;
use crate::ssh::{ExitKind, Interactive, Output, PtyRequest, SshError, SshSession, SshTarget};

/// What to run where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    pub namespace: String,
    pub pod: String,
    /// None: the pod's first container.
    pub container: Option<String>,
    /// Empty: the container's shell (its `$SHELL`, else /bin/sh).
    pub command: Vec<String>,
    /// Pass local stdin (kubectl's `-i`).
    pub stdin: bool,
    /// A remote terminal (kubectl's `-t`); needs stdin to be a terminal.
    pub tty: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error(transparent)]
    Agent(#[from] ClientError),
    #[error(transparent)]
    SshConfig(#[from] crate::ssh::SshConfigError),
    #[error(transparent)]
    AgentBinary(#[from] crate::ssh::bootstrap::AgentBinaryError),
    #[error("the local terminal: {0}")]
    Terminal(#[from] std::io::Error),
    #[error(
        "the connection to the node ended before the command did (no exit status); check the node with `flotilla get nodes`"
    )]
    NoExitStatus,
}

/// A word for the remote shell: as it is when it is plainly safe, else
/// single-quoted.
fn word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./=:@%+-,".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_string()
    } else {
        sh_quote(text)
    }
}

/// The shell line that runs the agent's `exec` for `request`: the agent at
/// `agent_path` (the bootstrap put it there), through `sudo -n` unless the
/// login is root, in place of the login shell (`exec`), so the signals sshd
/// delivers reach it.
pub fn remote_command(agent_path: &str, login_user: &str, request: &ExecRequest) -> String {
    let mut words = vec![word(agent_path), "exec".to_string()];
    if request.stdin {
        words.push("-i".into());
    }
    if request.tty {
        words.push("-t".into());
    }
    words.push("-n".into());
    words.push(word(&request.namespace));
    if let Some(container) = &request.container {
        words.push("-c".into());
        words.push(word(container));
    }
    words.push(word(&request.pod));
    if request.command.is_empty() {
        words.push("--shell".into());
    } else {
        words.push("--".into());
        words.extend(request.command.iter().map(|w| word(w)));
    }
    let line = words.join(" ");
    if login_user == "root" {
        format!("exec {line}")
    } else {
        // A uid-0 login under another name needs no sudo either.
        format!("if [ \"$(id -u)\" = 0 ]; then exec {line}; else exec sudo -n {line}; fi")
    }
}

/// The shell's exit code for a remote end: the code, or 128 + the signal.
pub fn exit_code(exit: &ExitKind) -> i32 {
    match exit {
        ExitKind::Code(code) => i32::try_from(*code).unwrap_or(255),
        ExitKind::Signal(name) => 128 + signal_number(name),
    }
}

fn signal_number(name: &str) -> i32 {
    match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "ABRT" => 6,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        _ => 0,
    }
}

/// How to reach `node` as every flotilla session does (the cluster file,
/// then `~/.ssh/config`), and the line that runs `request` there. The
/// node's agent binary must be in place: any session to the node has
/// bootstrapped it.
pub fn plan(
    node: &NodeConfig,
    dirs: &Dirs,
    request: &ExecRequest,
) -> Result<(SshTarget, String), ExecError> {
    let target = TargetContext::from_env(dirs)?.target(node);
    let cache = DigestCache::in_dir(&dirs.cache);
    let agent = AgentBinary::locate(Some(&cache))?;
    let command = remote_command(&agent.remote_path(), &target.user, request);
    Ok((target, command))
}

/// Runs `request` on `node` with this process's stdio; the remote exit
/// code. Through the node's agent ([`run_with_agent`]) when `agent` (the
/// node's client in a running fleet) runs execs; else on an SSH channel
/// ([`run`]) over `session` when given (a connection already open to the
/// node), else over a new connection (host key checked).
pub async fn run_on_node(
    node: &NodeConfig,
    dirs: &Dirs,
    request: &ExecRequest,
    agent: Option<&Client>,
    session: Option<Arc<SshSession>>,
) -> Result<i32, ExecError> {
    if let Some(client) = agent.filter(|c| agent_runs_exec(c) && c.closed().is_none()) {
        return run_with_agent(client, request).await;
    }
    let (target, command) = plan(node, dirs, request)?;
    let session = match session {
        Some(session) if !session.is_closed() => session,
        _ => Arc::new(crate::ssh::connect(&target).await?),
    };
    let result = run(&session, &command, request).await;
    // Said goodbye in the background: the server's answer can take a
    // while, and the terminal's owner wants it back now.
    if let Ok(session) = Arc::try_unwrap(session) {
        tokio::spawn(async move {
            if let Err(e) = session.close().await {
                tracing::debug!(error = %e, "closing the exec session");
            }
        });
    }
    result
}

/// Runs `command` (from [`remote_command`]) on `session` with this
/// process's stdin, stdout and stderr, and returns its exit code. With
/// `tty`, the local terminal is in raw mode meanwhile and restored after,
/// however this ends. Without a terminal, the first SIGINT or SIGTERM here
/// is passed to the command, and a second one hangs up.
pub async fn run(
    session: &SshSession,
    command: &str,
    request: &ExecRequest,
) -> Result<i32, ExecError> {
    let pty = request.tty.then(|| {
        let (cols, rows) = terminal::window_size();
        PtyRequest {
            term: terminal_name(),
            cols,
            rows,
        }
    });
    with_terminal(request, async {
        let channel = session.exec_interactive(command, pty.as_ref()).await?;
        tracing::debug!(command, "exec channel open");
        pump(Remote::Ssh(channel), request).await
    })
    .await
}

/// [`run`] through the node's agent (`exec.start` on `client`, an agent
/// that lists it): no SSH channel, no login shell, no sudo on the node.
pub async fn run_with_agent(client: &Client, request: &ExecRequest) -> Result<i32, ExecError> {
    let tty = request.tty.then(|| {
        let (cols, rows) = terminal::window_size();
        ExecTerminal {
            term: terminal_name(),
            cols: u16::try_from(cols).unwrap_or(u16::MAX),
            rows: u16::try_from(rows).unwrap_or(u16::MAX),
        }
    });
    let start = ExecStartParams {
        namespace: request.namespace.clone(),
        name: request.pod.clone(),
        container: request.container.clone(),
        command: request.command.clone(),
        stdin: request.stdin,
        tty,
    };
    with_terminal(request, async {
        let session = client.exec(&start).await?;
        tracing::debug!(id = session.output.id(), "exec started on the agent");
        pump(Remote::Agent(session), request).await
    })
    .await
}

/// Whether `client`'s agent runs execs itself (`exec.start`).
pub fn agent_runs_exec(client: &Client) -> bool {
    client.supports(<method::ExecStart as Method>::NAME)
}

fn terminal_name() -> String {
    std::env::var("TERM").unwrap_or_else(|_| "xterm".into())
}

/// Runs `exec` with the local terminal in raw mode when the request has a
/// terminal, restored however it ends.
async fn with_terminal(
    request: &ExecRequest,
    exec: impl Future<Output = Result<i32, ExecError>>,
) -> Result<i32, ExecError> {
    // Before anything that can fail, so every way out below restores.
    let raw = match request.tty {
        true => Some(terminal::RawMode::enable()?),
        false => None,
    };
    let result = exec.await;
    drop(raw);
    result
}

/// The far end of an exec: an SSH channel running `flotilla-agent exec`,
/// or an agent's `exec.start`.
enum Remote {
    Ssh(Interactive),
    Agent(ExecSession),
}

/// What the far end said.
enum Received {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(i32),
    End,
}

impl Remote {
    async fn next(&mut self) -> Result<Received, ExecError> {
        Ok(match self {
            Remote::Ssh(channel) => match channel.next().await? {
                Some(Output::Stdout(data)) => Received::Stdout(data),
                Some(Output::Stderr(data)) => Received::Stderr(data),
                Some(Output::Exit(kind)) => Received::Exit(exit_code(&kind)),
                None => Received::End,
            },
            Remote::Agent(session) => match session.output.next().await.transpose()? {
                Some(ExecOutput::Stdout(data)) => Received::Stdout(data.0),
                Some(ExecOutput::Stderr(data)) => Received::Stderr(data.0),
                Some(ExecOutput::Exit { code }) => Received::Exit(code),
                None => Received::End,
            },
        })
    }

    async fn send(&self, data: Vec<u8>) -> Result<(), ExecError> {
        match self {
            Remote::Ssh(channel) => channel.send(&data).await?,
            Remote::Agent(session) => session.control.input(data).await?,
        }
        Ok(())
    }

    async fn eof(&self) -> Result<(), ExecError> {
        match self {
            Remote::Ssh(channel) => channel.eof().await?,
            Remote::Agent(session) => session.control.close_stdin().await?,
        }
        Ok(())
    }

    async fn resize(&self, cols: u32, rows: u32) -> Result<(), ExecError> {
        match self {
            Remote::Ssh(channel) => channel.resize(cols, rows).await?,
            Remote::Agent(session) => {
                let clamp = |n: u32| u16::try_from(n).unwrap_or(u16::MAX);
                session.control.resize(clamp(cols), clamp(rows)).await?
            }
        }
        Ok(())
    }

    async fn signal(&self, name: &str) -> Result<(), ExecError> {
        match self {
            Remote::Ssh(channel) => channel.signal(name).await?,
            Remote::Agent(session) => session.control.signal(name).await?,
        }
        Ok(())
    }

    /// Hangs up: the SSH channel closes; the agent's exec is cancelled
    /// (its process gets SIGHUP) when the session is dropped.
    async fn close(self) {
        if let Remote::Ssh(channel) = self {
            channel.close().await;
        }
    }
}

async fn pump(mut remote: Remote, request: &ExecRequest) -> Result<i32, ExecError> {
    let mut winch = signal(SignalKind::window_change())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut stdin = match request.stdin {
        true => Some(terminal::StdinPump::start()?),
        false => {
            remote.eof().await?;
            None
        }
    };
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let mut exit = None;
    let mut signalled = 0;
    loop {
        tokio::select! {
            received = remote.next() => match received? {
                Received::Stdout(data) => {
                    stdout.write_all(&data).await?;
                    stdout.flush().await?;
                }
                Received::Stderr(data) => {
                    stderr.write_all(&data).await?;
                    stderr.flush().await?;
                }
                Received::Exit(code) => {
                    tracing::debug!(code, "exec ended");
                    exit = Some(code);
                }
                Received::End => break,
            },
            input = recv(&mut stdin) => match input {
                Some(data) => remote.send(data).await?,
                None => {
                    // EOF here is EOF there; nothing more to read.
                    stdin = None;
                    remote.eof().await?;
                }
            },
            _ = winch.recv(), if request.tty => {
                let (cols, rows) = terminal::window_size();
                remote.resize(cols, rows).await?;
            }
            _ = interrupt.recv() => {
                signalled += 1;
                if signalled > 1 {
                    remote.close().await;
                    return Ok(130);
                }
                remote.signal("INT").await?;
            }
            _ = terminate.recv() => {
                remote.close().await;
                return Ok(143);
            }
            _ = hangup.recv() => {
                remote.close().await;
                return Ok(129);
            }
        }
    }
    drop(stdin);
    exit.ok_or(ExecError::NoExitStatus)
}

/// The next stdin bytes; pending for ever once stdin is done or unused.
async fn recv(stdin: &mut Option<terminal::StdinPump>) -> Option<Vec<u8>> {
    match stdin {
        Some(pump) => pump.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ExecRequest {
        ExecRequest {
            namespace: "default".into(),
            pod: "web".into(),
            container: None,
            command: vec!["sh".into(), "-c".into(), "echo 'hi'; exit 3".into()],
            stdin: true,
            tty: true,
        }
    }

    #[test]
    fn the_remote_line_quotes_every_word() {
        let line = remote_command(
            "/var/lib/flotilla/bin/flotilla-agent-ab",
            "root",
            &request(),
        );
        assert_eq!(
            line,
            "exec /var/lib/flotilla/bin/flotilla-agent-ab exec -i -t -n default web -- sh -c 'echo '\\''hi'\\''; exit 3'"
        );
        let mut other = request();
        other.container = Some("side car".into());
        other.stdin = false;
        other.tty = false;
        let line = remote_command("/a", "admin", &other);
        assert!(
            line.starts_with(
                "if [ \"$(id -u)\" = 0 ]; then exec /a exec -n default -c 'side car' web -- "
            ),
            "{line}"
        );
        assert!(line.contains("else exec sudo -n /a exec"), "{line}");
    }

    #[test]
    fn exits_are_shell_codes() {
        assert_eq!(exit_code(&ExitKind::Code(3)), 3);
        assert_eq!(exit_code(&ExitKind::Signal("KILL".into())), 137);
        assert_eq!(exit_code(&ExitKind::Signal("TERM".into())), 143);
    }
}
