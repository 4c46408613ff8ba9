//! `flotilla-agent exec [-i] [-t] [-n NS] POD [-c CONTAINER] -- CMD...`: a
//! command in a running container of this host, as `docker exec` and
//! `kubectl exec` run one. A person on the host runs it directly;
//! `flotilla exec` runs it over an SSH channel (sshd's pseudo-terminal for
//! `-t`) only when the node's agent predates `exec.start`, which runs the
//! same stage without it ([`crate::agent::pods::exec_process`]).
//!
//! It finds the container's process from the pod files
//! ([`crate::agent::pods::exec`]) and becomes the exec stage
//! ([`crate::agent::runtime::exec`]), so its exit code is the command's.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;

use crate::agent::pods::exec::{ExecOptions, exec_spec};
use crate::agent::pods::layout::AgentPaths;

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Pass stdin to the command (without it, the command reads EOF).
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Stdin is a terminal the command should own (its window size,
    /// ^C, hang-up), as `ssh -t` gives one.
    #[arg(short = 't', long)]
    pub tty: bool,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// The container (default: the pod's first).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Run as this user (NAME, UID, USER:GROUP) instead of the container's.
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory inside the container instead of the container's.
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Environment variables, KEY=VALUE, over the container's.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Run the container's shell instead of a command: its `$SHELL`, else /bin/sh.
    #[arg(long, conflicts_with = "command")]
    pub shell: bool,
    pub pod: String,
    /// The command and its arguments.
    #[arg(last = true, required_unless_present = "shell")]
    pub command: Vec<String>,
}

pub fn exec(root: &Path, run_dir: &Path, args: &ExecArgs) -> anyhow::Result<ExitCode> {
    let paths = AgentPaths::new(root, run_dir);
    let options = ExecOptions {
        container: args.container.clone(),
        env: args.env.clone(),
        user: args.user.clone(),
        workdir: args.workdir.clone(),
        shell: args.shell,
        // What the terminal at the other end is (sshd passes the client's),
        // as `docker exec -t` sets one.
        term: args
            .tty
            .then(|| std::env::var("TERM").unwrap_or_else(|_| "xterm".into())),
    };
    let spec = exec_spec(
        &paths,
        &args.namespace,
        &args.pod,
        args.command.clone(),
        &options,
    )?;
    if !args.stdin {
        nix::unistd::dup2_stdin(std::fs::File::open("/dev/null")?)?;
    }
    let agent = std::env::current_exe()?;
    Err(crate::agent::runtime::exec::exec(&agent, &spec).into())
}
