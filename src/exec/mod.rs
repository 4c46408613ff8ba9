//! Exec into a container, the operator's end: `flotilla exec` and the
//! console's `s` both come here. One SSH channel per exec runs
//! `flotilla-agent exec` on the pod's node (through `sudo -n` for a
//! non-root login); with a terminal, on a pseudo-terminal sshd allocates
//! with the local `TERM` and window size, so sshd owns the remote line
//! discipline, window size and terminal signals, and window-size changes
//! here are forwarded as SSH window-change requests. Local stdin goes to
//! the channel, the channel's stdout and stderr come back separately, and
//! the remote exit code is the result.
//!
//! ```text
//! terminal.rs  raw mode (a guard), stdin on a stoppable thread, window size
//! ```

pub mod terminal;

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::cluster_file::NodeConfig;
use crate::config::paths::Dirs;
use crate::ssh::bootstrap::{AgentBinary, sh_quote};
use crate::ssh::digest_cache::DigestCache;
use crate::ssh::target::TargetContext;
use crate::ssh::{ExitKind, Output, PtyRequest, SshError, SshSession, SshTarget};

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

/// Runs `request` on `node` with this process's stdio ([`run`]) over
/// `session` when given (a connection already open to the node), else over
/// a new connection (host key checked); the remote exit code.
pub async fn run_on_node(
    node: &NodeConfig,
    dirs: &Dirs,
    request: &ExecRequest,
    session: Option<Arc<SshSession>>,
) -> Result<i32, ExecError> {
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
            term: std::env::var("TERM").unwrap_or_else(|_| "xterm".into()),
            cols,
            rows,
        }
    });
    // Before anything that can fail, so every way out below restores.
    let raw = match request.tty {
        true => Some(terminal::RawMode::enable()?),
        false => None,
    };
    let result = pump(session, command, request, pty.as_ref()).await;
    drop(raw);
    result
}

async fn pump(
    session: &SshSession,
    command: &str,
    request: &ExecRequest,
    pty: Option<&PtyRequest>,
) -> Result<i32, ExecError> {
    let mut winch = signal(SignalKind::window_change())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut channel = session.exec_interactive(command, pty).await?;
    tracing::debug!(command, "exec channel open");
    let mut stdin = match request.stdin {
        true => Some(terminal::StdinPump::start()?),
        false => {
            channel.eof().await?;
            None
        }
    };
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let mut exit = None;
    let mut signalled = 0;
    loop {
        tokio::select! {
            output = channel.next() => match output? {
                Some(Output::Stdout(data)) => {
                    stdout.write_all(&data).await?;
                    stdout.flush().await?;
                }
                Some(Output::Stderr(data)) => {
                    stderr.write_all(&data).await?;
                    stderr.flush().await?;
                }
                Some(Output::Exit(kind)) => {
                    tracing::debug!(?kind, "exec ended");
                    exit = Some(kind);
                }
                None => break,
            },
            input = recv(&mut stdin) => match input {
                Some(data) => channel.send(&data).await?,
                None => {
                    // EOF here is EOF there; nothing more to read.
                    stdin = None;
                    channel.eof().await?;
                }
            },
            _ = winch.recv(), if pty.is_some() => {
                let (cols, rows) = terminal::window_size();
                channel.resize(cols, rows).await?;
            }
            _ = interrupt.recv() => {
                signalled += 1;
                if signalled > 1 {
                    channel.close().await;
                    return Ok(130);
                }
                channel.signal("INT").await?;
            }
            _ = terminate.recv() => {
                channel.close().await;
                return Ok(143);
            }
            _ = hangup.recv() => {
                channel.close().await;
                return Ok(129);
            }
        }
    }
    drop(stdin);
    exit.as_ref().map(exit_code).ok_or(ExecError::NoExitStatus)
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
