//! `flotilla exec [-i] [-t] [-n NS] POD [-c CONTAINER] -- CMD ARGS...`:
//! kubectl's exec. The pod's node is found as the other pod verbs find it
//! (every node's session asked), then the command runs there through the
//! node's agent, on the connection that found it ([`crate::exec`]); its
//! exit code is this command's. `-t` puts the local terminal in raw mode
//! and restores it on the way out.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::get::{DEFAULT_TIMEOUT, parse_timeout};
use crate::config::cluster_file;
use crate::config::paths::{Dirs, cluster_file_path};
use crate::exec::{ExecRequest, run_on_node, terminal};

#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// Pass stdin to the command.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Give the command a terminal (stdin must be one): raw mode here,
    /// window-size changes passed on.
    #[arg(short = 't', long)]
    pub tty: bool,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// The container (default: the pod's first).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// How long to wait for nodes to answer while looking for the pod.
    #[arg(long, default_value = DEFAULT_TIMEOUT, value_parser = parse_timeout)]
    pub timeout: Duration,
    /// How the exec reaches the node (tests and benchmarks compare them):
    /// through its agent when it can, else an SSH channel (`auto`), or
    /// always an SSH channel running `flotilla-agent exec` (`ssh`).
    #[arg(long, hide = true, value_enum, default_value_t = Via::Auto)]
    pub via: Via,
    pub pod: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Auto,
    Ssh,
}

pub fn exec(
    args: &ExecArgs,
    cluster: Option<std::path::PathBuf>,
    dirs: &Dirs,
) -> anyhow::Result<ExitCode> {
    let mut tty = args.tty;
    if tty && !terminal::stdin_is_terminal() {
        // kubectl's behaviour: carry on without one.
        eprintln!("Unable to use a TTY - input is not a terminal");
        tty = false;
    }
    let request = ExecRequest {
        namespace: args.namespace.clone(),
        pod: args.pod.clone(),
        container: args.container.clone(),
        command: args.command.clone(),
        stdin: args.stdin,
        tty,
    };
    let path = cluster_file_path(cluster, dirs);
    let config = cluster_file::load(&path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let code = runtime.block_on(async {
        let fleet = super::connect::connect(&config, dirs, args.timeout).await?;
        let snapshot = fleet.state().snapshot();
        let (namespace, name) = (&args.namespace, &args.pod);
        let nodes = snapshot.holders(namespace, name);
        let Some(node) = nodes.first() else {
            fleet.stop().await;
            return Err(super::pod_verbs::not_found(&snapshot, namespace, name));
        };
        // The exec goes over the connection that found the pod: through
        // its agent client, or an SSH channel beside it.
        let agent = fleet.client(node).filter(|_| args.via == Via::Auto);
        let ssh = fleet.ssh(node);
        tracing::debug!(?nodes, "found the pod");
        if nodes.len() > 1 {
            eprintln!(
                "pod {name:?} is on {} (a copy being fenced); running on {node}",
                nodes.join(" and ")
            );
        }
        let node_config = snapshot
            .nodes
            .iter()
            .find(|n| &n.name == node)
            .map(|n| n.config.clone())
            .context("the pod's node is not in the cluster file")?;
        let result = run_on_node(&node_config, dirs, &request, agent.as_ref(), ssh)
            .await
            .with_context(|| format!("exec in pod {name:?} on {node}"));
        // Not waited for: the sessions' goodbyes would only delay the exit.
        drop(fleet);
        result
    })?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(255)))
}
