//! The agent's command line: `flotilla-agent serve | run | pull | images | ps | version`.
//! Verbs are added as the agent grows; each is real when it appears here.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "flotilla-agent",
    version,
    about = "flotilla's runtime agent, one per host"
)]
struct AgentCli {
    #[command(subcommand)]
    command: AgentCommand,
}

#[derive(Subcommand, Debug)]
enum AgentCommand {
    /// Print the agent's version and the architecture it was built for.
    Version,
}

/// Entry point of the `flotilla-agent` binary.
pub fn main() -> ExitCode {
    let cli = AgentCli::parse();
    match cli.command {
        AgentCommand::Version => {
            println!(
                "flotilla-agent {} ({}-{})",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::env::consts::ARCH
            );
            ExitCode::SUCCESS
        }
    }
}
