//! The agent's command line: `flotilla-agent [--root DIR] pull | images | rmi
//! | prune | version`, for a person on one host and for the tests. Verbs are
//! added as the agent grows; each is real when it appears here.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use super::image::progress::{Printer, human_bytes};
use super::image::{ImageError, PullOptions, Store, parse_reference, pull};

#[derive(Parser, Debug)]
#[command(
    name = "flotilla-agent",
    version,
    about = "flotilla's runtime agent, one per host"
)]
struct AgentCli {
    /// The agent's state directory.
    #[arg(
        long,
        global = true,
        default_value = "/var/lib/flotilla",
        value_name = "DIR"
    )]
    root: PathBuf,
    #[command(subcommand)]
    command: AgentCommand,
}

#[derive(Subcommand, Debug)]
enum AgentCommand {
    /// Pull an image into the store (Docker-style references: `busybox`, `host:5000/x/y:tag`, `…@sha256:…`).
    Pull {
        /// Speak plain HTTP to the image's registry (a local registry).
        #[arg(long)]
        insecure: bool,
        /// Download and verify the blobs only (for benchmarks).
        #[arg(long, hide = true)]
        no_unpack: bool,
        image: String,
    },
    /// List the images in the store.
    Images {
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Remove an image, and the layers only it used.
    Rmi { image: String },
    /// Remove every blob and layer no image or container uses, and leftovers of interrupted pulls.
    Prune,
    /// Print the agent's version and the platform it was built for.
    Version,
    /// The container init stage (started by the runtime, never by hand).
    #[command(name = "__init", hide = true)]
    Init { config_fd: i32, status_fd: i32 },
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Table,
    Json,
}

/// Entry point of the `flotilla-agent` binary.
pub fn main() -> ExitCode {
    let cli = AgentCli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: AgentCli) -> Result<ExitCode, ImageError> {
    match cli.command {
        AgentCommand::Init {
            config_fd,
            status_fd,
        } => Ok(super::runtime::init::main(config_fd, status_fd)),
        AgentCommand::Version => {
            println!(
                "flotilla-agent {} ({}-{})",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::env::consts::ARCH
            );
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Pull {
            insecure,
            no_unpack,
            image,
        } => {
            let store = Store::open(&cli.root)?;
            let printer = Printer::new(std::io::stdout().is_terminal());
            let options = PullOptions {
                insecure,
                auth: None,
                unpack: !no_unpack,
            };
            // One thread drives the network; unpacking runs on the blocking pool.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| ImageError::Task(e.to_string()))?;
            let pulled = runtime.block_on(pull(&store, &image, &options, &|e| printer.event(e)))?;
            printer.finish();
            if pulled.already_present {
                println!("image is up to date");
            }
            println!(
                "pulled {} {}",
                pulled.record.reference, pulled.record.digest
            );
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Images { output } => {
            let store = Store::open(&cli.root)?;
            let images = store.images()?;
            match output {
                Output::Json => {
                    let json = serde_json::Value::Array(
                        images
                            .iter()
                            .map(|i| {
                                serde_json::json!({
                                    "reference": i.reference,
                                    "digest": i.digest,
                                    "config_digest": i.config_digest,
                                    "size": i.size,
                                    "created": i.created,
                                    "platform": i.platform,
                                    "layers": i.layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>(),
                                })
                            })
                            .collect(),
                    );
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&json).unwrap_or_default()
                    );
                }
                Output::Table => {
                    println!(
                        "{:<50} {:<19} {:<22} {:>10}",
                        "REFERENCE", "DIGEST", "CREATED", "SIZE"
                    );
                    for i in &images {
                        let digest = i.digest.strip_prefix("sha256:").unwrap_or(&i.digest);
                        println!(
                            "{:<50} {:<19} {:<22} {:>10}",
                            i.reference,
                            &digest[..digest.len().min(12)],
                            i.created.as_deref().unwrap_or("-"),
                            human_bytes(i.size)
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Rmi { image } => {
            let store = Store::open(&cli.root)?;
            let reference = parse_reference(&image)?.whole();
            if !store.remove_image(&reference)? {
                return Err(ImageError::NotFound(reference));
            }
            let reclaimed = store.collect_garbage()?;
            println!(
                "removed {reference} ({} layers, {} freed)",
                reclaimed.layers,
                human_bytes(reclaimed.bytes)
            );
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Prune => {
            let store = Store::open(&cli.root)?;
            let reclaimed = store.collect_garbage()?;
            println!(
                "removed {} blobs and {} layers: {} reclaimed",
                reclaimed.blobs,
                reclaimed.layers,
                human_bytes(reclaimed.bytes)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
