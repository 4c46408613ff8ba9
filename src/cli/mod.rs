//! The `flotilla` command line: kubectl's verbs where they exist, over the same
//! code the console uses. Errors go to stderr with a non-zero exit and say what
//! to do next; this is the edge where library errors get their context.

pub mod apply;
pub mod connect;
pub mod control;
pub mod controller;
pub mod cordon;
pub mod demo;
pub mod deployments;
pub mod describe;
pub mod exec;
pub mod get;
pub mod node;
pub mod node_remove;
pub mod nodes;
pub mod pod_verbs;
pub mod pods;
pub mod table;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::paths::Dirs;

#[derive(Parser, Debug)]
#[command(
    name = "flotilla",
    version,
    about = "A terminal console for a small cluster of Linux hosts reached over SSH"
)]
pub struct Cli {
    /// The cluster file (default: FLOTILLA_CLUSTER, else ~/.config/flotilla/cluster.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub cluster: Option<PathBuf>,

    /// The console's colour theme (dark, light, high-contrast, or one in the config dir's themes/).
    #[arg(long, value_name = "NAME")]
    pub theme: Option<String>,
    /// The console changes nothing: every key that would is off, and it never reconciles.
    #[arg(long)]
    pub readonly: bool,
    /// A directory of manifests for the console's Manifests view (`a` applies one); repeatable.
    #[arg(long = "manifests", value_name = "DIR")]
    pub manifests: Vec<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create or update objects from manifest files (YAML or JSON).
    Apply(apply::ApplyArgs),
    /// A real cluster on this machine: network namespaces running OpenSSH, and a registry.
    Demo(demo::DemoArgs),
    /// List nodes (`get nodes [NAME] [-o wide|json]`).
    Get(get::GetArgs),
    /// Show nodes' live CPU, memory and disk use (`top nodes`).
    Top(get::TopArgs),
    /// Show everything known of one node (`describe node NAME`).
    Describe(get::DescribeArgs),
    /// Delete a pod: its containers get their stop signal, then SIGKILL after the grace period.
    Delete(pod_verbs::DeleteArgs),
    /// SIGKILL every container of a pod now.
    Kill(pod_verbs::KillArgs),
    /// Print a container's log.
    Logs(pod_verbs::LogsArgs),
    /// Run a command in a running container (`exec [-it] POD [-c CONTAINER] -- CMD ARGS...`).
    Exec(exec::ExecArgs),
    /// Set a deployment's replicas (`scale deployment NAME --replicas N`).
    Scale(deployments::ScaleArgs),
    /// Follow a deployment's rollout, or go back to a previous template.
    Rollout(deployments::RolloutArgs),
    /// Mark a node unschedulable: no new pods go there.
    Cordon(cordon::CordonArgs),
    /// Mark a node schedulable again.
    Uncordon(cordon::CordonArgs),
    /// Cordon a node and evict its pods (their deployments replace them elsewhere).
    Drain(cordon::DrainArgs),
    /// Trust a node's host key, or add a node to the cluster file.
    Node(node::NodeArgs),
    /// Run the reconcile loop headless (while holding the cluster lease).
    Controller(controller::ControllerArgs),
    /// Internal: the init process of one demo node (PID 1 of its namespaces).
    #[command(name = "__demo-node", hide = true)]
    DemoNode(demo::DemoNodeArgs),
}

/// Entry point of the `flotilla` binary.
pub fn main() -> ExitCode {
    // The demo node's init must fork before any thread exists, so it is
    // dispatched before logging or a runtime starts.
    let cli = Cli::parse();
    if let Some(Command::DemoNode(args)) = &cli.command {
        return crate::demo::node::main(args);
    }
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", crate::report::one_line(&err));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let dirs = Dirs::from_env()?;
    // A command still works without its log file (a read-only home, say); it
    // says so once, before any console owns the terminal.
    let _log_guard = match crate::logging::init_file_logging(&dirs.log_dir(), "flotilla.log") {
        Ok(guard) => Some(guard),
        Err(err) => {
            eprintln!("warning: {err}; continuing without a log file");
            None
        }
    };
    match cli.command {
        None if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) => {
            // A script or a pipe: say what the console would open, and how.
            let path = crate::config::paths::cluster_file_path(cli.cluster, &dirs);
            let cluster = crate::config::cluster_file::load(&path)?;
            println!(
                "cluster \"{}\" ({}): {} node{}",
                cluster.name,
                path.display(),
                cluster.nodes.len(),
                if cluster.nodes.len() == 1 { "" } else { "s" }
            );
            for node in &cluster.nodes {
                println!("  {:<12} {}", node.name, node.address);
            }
            eprintln!(
                "the console needs a terminal: run `flotilla` in one (or use a verb: `flotilla get nodes`)"
            );
            Ok(ExitCode::SUCCESS)
        }
        None => crate::tui::run::run(
            crate::tui::run::ConsoleOptions {
                theme: cli.theme,
                readonly: cli.readonly,
                manifests: cli.manifests,
                fps: 0,
            },
            cli.cluster,
            &dirs,
        ),
        Some(Command::Apply(args)) => apply::run(&args, cli.cluster, &dirs),
        Some(Command::Demo(args)) => demo::run(args, &dirs),
        Some(Command::Get(args)) => get::get(&args, cli.cluster, &dirs),
        Some(Command::Top(args)) => get::top(&args, cli.cluster, &dirs),
        Some(Command::Describe(args)) => get::describe(&args, cli.cluster, &dirs),
        Some(Command::Delete(args)) => pod_verbs::delete(&args, cli.cluster, &dirs),
        Some(Command::Kill(args)) => pod_verbs::kill(&args, cli.cluster, &dirs),
        Some(Command::Logs(args)) => pod_verbs::logs(&args, cli.cluster, &dirs),
        Some(Command::Exec(args)) => exec::exec(&args, cli.cluster, &dirs),
        Some(Command::Node(args)) => {
            node::run(&args, cli.cluster, &dirs).map(|()| ExitCode::SUCCESS)
        }
        Some(Command::Scale(args)) => deployments::scale(&args, cli.cluster, &dirs),
        Some(Command::Rollout(args)) => deployments::rollout(&args, cli.cluster, &dirs),
        Some(Command::Cordon(args)) => cordon::cordon(&args, true, cli.cluster, &dirs),
        Some(Command::Uncordon(args)) => cordon::cordon(&args, false, cli.cluster, &dirs),
        Some(Command::Drain(args)) => cordon::drain(&args, cli.cluster, &dirs),
        Some(Command::Controller(args)) => controller::run(&args, cli.cluster, &dirs),
        Some(Command::DemoNode(_)) => unreachable!("dispatched before run()"),
    }
}
