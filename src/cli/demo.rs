//! `flotilla demo up [--nodes N] | down | status | sshd stop|start NODE`: the
//! demo cluster on this machine.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::config::paths::Dirs;
use crate::demo::{self, DemoLayout, DemoSpec, StatusReport};

pub use crate::demo::node::NodeInitArgs as DemoNodeArgs;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    #[command(subcommand)]
    pub command: DemoCommand,
    /// Which demo cluster (several can run side by side; tests use their own).
    #[arg(long, global = true, default_value = demo::DEFAULT_NAME, hide = true)]
    pub name: String,
}

#[derive(Subcommand, Debug)]
pub enum DemoCommand {
    /// Bring the demo cluster up (or report it, if it is up already).
    Up {
        /// How many nodes.
        #[arg(long, default_value_t = 3)]
        nodes: u16,
        /// The /24 the bridge, registry and nodes live on.
        #[arg(long, default_value = "10.77.0.0/24", hide = true)]
        subnet: String,
    },
    /// Take the demo cluster down, leaving nothing behind.
    Down,
    /// Show what is up: nodes, sshd, registry and its images.
    Status,
    /// Stop a node's sshd, cutting its connections (it stays down), or start it again.
    Sshd {
        action: demo::SshdAction,
        /// The node (node1, node2, …).
        node: String,
    },
}

pub fn run(args: DemoArgs, dirs: &Dirs) -> anyhow::Result<ExitCode> {
    match args.command {
        DemoCommand::Up { nodes, subnet } => {
            let spec = DemoSpec::new(&args.name, nodes)?.with_subnet(&subnet)?;
            let layout = DemoLayout::new(&spec, &dirs.config, &dirs.data_local);
            let report = demo::up(&spec, &layout).context("flotilla demo up")?;
            if report.created {
                println!(
                    "demo cluster \"{}\" is up: {} nodes in {:.1} s",
                    spec.name,
                    spec.nodes,
                    report.elapsed.as_secs_f64()
                );
            } else {
                println!(
                    "demo cluster \"{}\" is already up; nothing changed",
                    spec.name
                );
            }
            print_status(&report.status);
            if let Some(path) = report.default_cluster_file {
                println!("default cluster file: {}", path.display());
            } else if report.created {
                println!(
                    "your own {} was left alone: use --cluster {}",
                    layout.default_cluster_file.display(),
                    layout.cluster_file().display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        DemoCommand::Down => {
            let layout = layout_for(&args.name, dirs)?;
            let report = demo::down(&args.name, &layout).context("flotilla demo down")?;
            if report.was_up || report.processes_killed > 0 || !report.links_deleted.is_empty() {
                println!(
                    "demo cluster \"{}\" is down ({} processes stopped, links removed: {})",
                    args.name,
                    report.processes_killed,
                    if report.links_deleted.is_empty() {
                        "none".to_string()
                    } else {
                        report.links_deleted.join(", ")
                    }
                );
            } else {
                println!("demo cluster \"{}\" was not up; nothing to do", args.name);
            }
            Ok(ExitCode::SUCCESS)
        }
        DemoCommand::Status => {
            let layout = layout_for(&args.name, dirs)?;
            let report = demo::status(&layout).context("flotilla demo status")?;
            if !report.is_up() {
                println!(
                    "demo cluster \"{}\" is down; `flotilla demo up` brings it up",
                    args.name
                );
                return Ok(ExitCode::from(3));
            }
            println!(
                "demo cluster \"{}\" is {}",
                args.name,
                if report.is_healthy() {
                    "up"
                } else {
                    "DEGRADED"
                }
            );
            print_status(&report);
            Ok(if report.is_healthy() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        DemoCommand::Sshd { action, node } => {
            let layout = layout_for(&args.name, dirs)?;
            let report = demo::sshd(&args.name, &layout, &node, action)
                .with_context(|| format!("flotilla demo sshd {}", action_word(action)))?;
            match action {
                demo::SshdAction::Stop => println!(
                    "sshd on {} ({}) stopped, {} connection{} cut; `flotilla demo sshd start {}` starts it again",
                    report.node,
                    report.address,
                    report.connections_cut,
                    if report.connections_cut == 1 { "" } else { "s" },
                    report.node
                ),
                demo::SshdAction::Start => println!(
                    "sshd on {} ({}) is listening again",
                    report.node, report.address
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn action_word(action: demo::SshdAction) -> &'static str {
    match action {
        demo::SshdAction::Stop => "stop",
        demo::SshdAction::Start => "start",
    }
}

/// The layout does not depend on size or subnet, only on the name.
fn layout_for(name: &str, dirs: &Dirs) -> anyhow::Result<DemoLayout> {
    let spec = DemoSpec::new(name, 1)?;
    Ok(DemoLayout::new(&spec, &dirs.config, &dirs.data_local))
}

fn print_status(report: &StatusReport) {
    let Some(state) = &report.state else { return };
    println!();
    println!(
        "{:<8} {:<15} {:<8} {:<5} PID",
        "NODE", "ADDRESS", "STATE", "SSH"
    );
    for node in &report.nodes {
        println!(
            "{:<8} {:<15} {:<8} {:<5} {}",
            node.name,
            node.address,
            if node.running { "Running" } else { "Stopped" },
            if node.ssh_listening { "up" } else { "down" },
            node.pid
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into())
        );
    }
    println!();
    match &report.repositories {
        Ok(repos) => println!(
            "registry {} (insecure, HTTP): {}",
            state.registry.address,
            if repos.is_empty() {
                "no images".to_string()
            } else {
                repos.join(", ")
            }
        ),
        Err(e) => println!("registry {}: {e}", state.registry.address),
    }
    if !report.bridge_up {
        println!("bridge {} is missing", state.bridge);
    }
    if let Some(path) = &report.cluster_file {
        println!("cluster file: {}", path.display());
    }
}
