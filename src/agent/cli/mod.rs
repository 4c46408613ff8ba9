//! The agent's command line, for a person on one host and for the tests:
//! images (`pull`, `images`, `rmi`, `prune`), containers (`run`, `ps`,
//! `logs`, `stop`, `kill`, `rm`, `pause`, `unpause`, `stats`, in `pods.rs`),
//! `exec` (in `exec.rs`), `version`, and the hidden stages the agent runs
//! itself (`__init`, `__shim`, `__exec`) or the console runs over SSH
//! (`__bridge`, in `detach.rs` with `serve --detach`).

mod detach;
mod exec;
mod images;
mod pods;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use std::time::Duration;

use super::objects::lease::DEFAULT_MAX_TTL;
use super::objects::{LeaseKeeper, ObjectStore};
use super::pods::backoff::BackOffPolicy;
use super::pods::{AgentConfig, shim};

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
    /// Where sandboxes and mount points live (tmpfs).
    #[arg(
        long,
        global = true,
        default_value = "/run/flotilla",
        value_name = "DIR"
    )]
    run_dir: PathBuf,
    /// This agent's part of the cgroup tree.
    #[arg(
        long,
        global = true,
        default_value = "flotilla",
        env = "FLOTILLA_CGROUP_PARENT"
    )]
    cgroup_parent: String,
    /// Crash-loop back-off as INITIAL,MAX,RESET in milliseconds (Kubernetes: 10000,300000,600000).
    #[arg(long, global = true, hide = true, env = "FLOTILLA_BACKOFF_MS")]
    backoff_ms: Option<String>,
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
    /// Serve the agent protocol on RUN/agent.sock and keep pods as their specs say.
    Serve {
        /// Registries spoken to over plain HTTP (repeatable).
        #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
        insecure_registries: Vec<String>,
        /// Serve in the background, in a session of its own (output to ROOT/agent.log);
        /// return once it answers on the socket.
        #[arg(long)]
        detach: bool,
        /// The longest controller lease granted, which is also how long a
        /// restarted agent grants none (default 15000; shorter only for tests).
        #[arg(
            long,
            hide = true,
            env = "FLOTILLA_LEASE_MAX_TTL_MS",
            value_name = "MS"
        )]
        lease_max_ttl_ms: Option<u64>,
    },
    /// Run a container from an image (in the foreground unless -d).
    Run(pods::RunArgs),
    /// List containers (running ones; -a for all).
    Ps {
        #[arg(short = 'a', long)]
        all: bool,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Print a container's log.
    Logs(pods::LogsArgs),
    /// Stop a container: its stop signal, then SIGKILL after the grace period.
    Stop {
        /// Seconds before SIGKILL (default: the pod's grace period).
        #[arg(short = 't', long)]
        time: Option<u64>,
        name: String,
    },
    /// SIGKILL a container now.
    Kill { name: String },
    /// Remove a stopped container (-f: kill it first).
    Rm {
        #[arg(short = 'f', long)]
        force: bool,
        name: String,
    },
    /// Freeze a container's processes.
    Pause { name: String },
    /// Thaw a paused container.
    Unpause { name: String },
    /// CPU time, memory and processes of containers.
    Stats { name: Option<String> },
    /// Run a command in a running container (`exec [-t] [-n NS] POD [-c CONTAINER] -- CMD...`).
    Exec(exec::ExecArgs),
    /// Print the agent's version and the platform it was built for.
    Version,
    /// The node leaves its cluster: remove its pod network (flotilla's
    /// routes, its iptables chains, the pods' bridge) and forget its
    /// settings. `flotilla node remove --purge` runs it; stop the pods first.
    Leave,
    /// The agent's socket on stdin/stdout (for a console logged in as a
    /// non-root user, through sudo).
    #[command(name = "__bridge", hide = true)]
    Bridge,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Table,
    Json,
}

/// Entry point of the `flotilla-agent` binary.
pub fn main() -> ExitCode {
    if let Some(code) = internal_stage(std::env::args_os().skip(1).collect()) {
        return code;
    }
    let cli = AgentCli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", crate::report::one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// The stages the agent starts itself, `__shim [--detach] DIR`, `__init
/// CONFIG_FD STATUS_FD` and `__exec SPEC_FD`, are dispatched before clap: a shim lives as long as
/// its container, and everything it touches at start-up stays in its
/// resident set (clap's parser alone is ~1.5 MB of code pages), and `__init`
/// runs on every container start. `None`: not one of them.
fn internal_stage(args: Vec<std::ffi::OsString>) -> Option<ExitCode> {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let usage = |text: &str| {
        eprintln!("error: usage: flotilla-agent {text} (an internal stage, not run by hand)");
        Some(ExitCode::FAILURE)
    };
    match args.as_slice() {
        [stage, rest @ ..] if *stage == "__shim" => match rest {
            [dir] => Some(shim::shim_main(Path::new(dir), false)),
            [flag, dir] if *flag == "--detach" => Some(shim::shim_main(Path::new(dir), true)),
            _ => usage("__shim [--detach] DIR"),
        },
        [stage, rest @ ..] if *stage == "__init" => {
            let fds: Vec<i32> = rest
                .iter()
                .filter_map(|a| a.to_str().and_then(|a| a.parse().ok()))
                .collect();
            match fds[..] {
                [config_fd, status_fd] if rest.len() == 2 => {
                    Some(super::runtime::init::main(config_fd, status_fd))
                }
                _ => usage("__init CONFIG_FD STATUS_FD"),
            }
        }
        [stage, rest @ ..] if *stage == "__exec" => {
            match rest
                .iter()
                .map(|a| a.to_str().and_then(|a| a.parse().ok()))
                .collect::<Vec<Option<i32>>>()[..]
            {
                [Some(spec_fd)] => Some(super::runtime::exec::main(spec_fd)),
                _ => usage("__exec SPEC_FD"),
            }
        }
        _ => None,
    }
}

/// How this invocation runs pods, from the global flags.
fn agent_config(cli: &AgentCli) -> anyhow::Result<AgentConfig> {
    let mut config = AgentConfig::new(&cli.root, &cli.run_dir)?;
    config.cgroup_parent = cli.cgroup_parent.clone();
    if let Some(spec) = &cli.backoff_ms {
        let ms: Vec<u64> = spec
            .split(',')
            .map(|v| v.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                anyhow::anyhow!("--backoff-ms {spec:?}: write INITIAL,MAX,RESET in milliseconds")
            })?;
        let [initial, max, reset] = ms[..] else {
            anyhow::bail!("--backoff-ms {spec:?}: write INITIAL,MAX,RESET in milliseconds");
        };
        config.backoff = BackOffPolicy {
            initial: Duration::from_millis(initial),
            max: Duration::from_millis(max),
            reset_after: Duration::from_millis(reset),
        };
    }
    Ok(config)
}

fn run(cli: AgentCli) -> anyhow::Result<ExitCode> {
    let root = cli.root.clone();
    match &cli.command {
        AgentCommand::Pull {
            insecure,
            no_unpack,
            image,
        } => Ok(images::pull(&root, image, *insecure, *no_unpack)?),
        AgentCommand::Images { output } => Ok(images::list(&root, *output == Output::Json)?),
        AgentCommand::Rmi { image } => Ok(images::remove(&root, &cli.run_dir, image)?),
        AgentCommand::Prune => Ok(images::prune(&root, &cli.run_dir)?),
        AgentCommand::Serve {
            insecure_registries,
            detach,
            lease_max_ttl_ms,
        } => {
            let mut config = agent_config(&cli)?;
            config.insecure_registries = insecure_registries.clone();
            let lease_max_ttl = match lease_max_ttl_ms {
                Some(0) => anyhow::bail!("--lease-max-ttl-ms must be at least 1"),
                Some(ms) => Duration::from_millis(*ms),
                None => DEFAULT_MAX_TTL,
            };
            let serve_with_lease = |config| serve(config, lease_max_ttl);
            if *detach {
                detach::serve_detached(config, serve_with_lease)
            } else {
                serve_with_lease(config)
            }
        }
        AgentCommand::Bridge => detach::bridge(&cli.run_dir),
        AgentCommand::Leave => {
            let manager = crate::agent::pods::PodManager::new(agent_config(&cli)?)?;
            manager.network().leave()?;
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Run(args) => pods::run(agent_config(&cli)?, args),
        AgentCommand::Ps { all, output } => {
            pods::ps(agent_config(&cli)?, *all, *output == Output::Json)
        }
        AgentCommand::Logs(args) => pods::logs(agent_config(&cli)?, args),
        AgentCommand::Stop { time, name } => pods::stop(agent_config(&cli)?, name, *time),
        AgentCommand::Kill { name } => pods::kill(agent_config(&cli)?, name),
        AgentCommand::Rm { force, name } => pods::rm(agent_config(&cli)?, name, *force),
        AgentCommand::Pause { name } => pods::pause(agent_config(&cli)?, name, true),
        AgentCommand::Unpause { name } => pods::pause(agent_config(&cli)?, name, false),
        AgentCommand::Stats { name } => pods::stats(agent_config(&cli)?, name.as_deref()),
        AgentCommand::Exec(args) => exec::exec(&cli.root, &cli.run_dir, args),
        AgentCommand::Version => {
            println!(
                "flotilla-agent {} ({}-{})",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::env::consts::ARCH
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `serve`: one thread for the protocol and the reconciler, the blocking pool
/// for the pod manager's work. Containers are not stopped when it ends.
fn serve(config: AgentConfig, lease_max_ttl: Duration) -> anyhow::Result<ExitCode> {
    // First thing: the lease's hold-back after a restart counts from here,
    // and a later start only makes it longer.
    let started = std::time::Instant::now();
    // The daemon's own log (its tracing: events, execs, network set-up,
    // warnings), daily files under the root; `FLOTILLA_LOG` sets the level.
    // Made here, in the process that serves: `--detach` forks before, and
    // the writer is a thread. Serving without a log beats not serving.
    let log_dir = config.paths.root.join("logs");
    let _log = match crate::logging::init_file_logging(&log_dir, "agent") {
        Ok(guard) => Some(guard),
        Err(err) => {
            eprintln!("flotilla-agent: no log file ({err}); serving without one");
            None
        }
    };
    let socket = super::daemon::socket_path(&config.paths.run_dir);
    let objects_dir = config.paths.objects_dir();
    let objects = ObjectStore::open(&objects_dir)?;
    let lease = LeaseKeeper::open(&objects_dir, lease_max_ttl, started);
    let manager = super::pods::PodManager::new(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = super::protocol::server::bind_socket(&socket)?;
        let daemon = super::daemon::Daemon::new(manager, objects, lease);
        tokio::spawn(daemon.clone().reconcile_loop(Duration::from_secs(1)));
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            Ok::<(), std::io::Error>(())
        };
        let server = super::protocol::server::Server::new(daemon);
        server
            .serve(listener, async {
                let _ = shutdown.await;
            })
            .await?;
        let _ = std::fs::remove_file(&socket);
        Ok(ExitCode::SUCCESS)
    })
}
