//! One container, start to finish, through the runtime core: pod sandbox,
//! spawn, wait, destroy, and the container's exit code as ours: the runtime
//! without the agent's bookkeeping (no pod record, cgroups, log or lease),
//! for profiling it alone. `scripts/bench-run` times the real verb,
//! `flotilla-agent run --rm`.
//!
//! ```text
//! run-container AGENT_BINARY RUN_DIR STATE_DIR LAYER_DIR... -- PROGRAM [ARGS...]
//! ```
//!
//! RUN_DIR holds the pod sandbox and the rootfs mount point (`/run/flotilla`
//! on a node: tmpfs), STATE_DIR the container's upper and work dirs (beside
//! the image store, on disk); LAYER_DIRs are top-most first. Both are left as
//! they were found.
//! `RUN_CONTAINER_TIMES=1` prints where the time went on stderr.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use flotilla::agent::runtime::{ContainerSpec, PodSandbox, RootfsSpec, SandboxSpec, spawn_with};

const USAGE: &str =
    "usage: run-container AGENT_BINARY RUN_DIR STATE_DIR LAYER_DIR... -- PROGRAM [ARGS...]";

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(125)
        }
    }
}

fn run() -> Result<i32, Box<dyn std::error::Error>> {
    let start = Instant::now();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let split = args.iter().position(|a| a == "--").ok_or(USAGE)?;
    let (paths, command) = (&args[..split], &args[split + 1..]);
    if paths.len() < 4 || command.is_empty() {
        return Err(USAGE.into());
    }
    let agent = PathBuf::from(&paths[0]);
    let run_dir = PathBuf::from(&paths[1]);
    let state_dir = PathBuf::from(&paths[2]);
    let id = format!("run-{}", std::process::id());
    let sandbox = PodSandbox::create(&run_dir, &SandboxSpec::new(&id, "demo", false))?;
    let container = state_dir.join(&id);
    // Only a mount point, and only in the container's mount namespace: it
    // needs no disk, so it goes with the sandbox on the run dir.
    let merged = run_dir.join(format!("{id}.rootfs"));
    let mut spec = ContainerSpec::new(
        &id,
        RootfsSpec {
            lower_dirs: paths[3..].iter().map(PathBuf::from).collect(),
            upper_dir: container.join("upper"),
            work_dir: container.join("work"),
            merged_dir: merged.clone(),
            // The upper dir is deleted below, as `run --rm` will.
            volatile: true,
            private_layer: false,
        },
        command.to_vec(),
    );
    spec.hostname = sandbox.name().to_string();
    spec.namespaces = sandbox.namespaces();
    spec.mounts = sandbox.etc_mounts();
    spec.stdio = [
        None,
        Some(std::io::stdout().as_fd().try_clone_to_owned()?),
        Some(std::io::stderr().as_fd().try_clone_to_owned()?),
    ];
    let spawned = Instant::now();
    let process = spawn_with(&agent, spec);
    let running = Instant::now();
    let result = process.and_then(|p| p.wait());
    let ended = Instant::now();
    sandbox.destroy()?;
    std::fs::remove_dir(&merged)?;
    std::fs::remove_dir_all(&container)?;
    if std::env::var_os("RUN_CONTAINER_TIMES").is_some() {
        eprintln!(
            "sandbox {:?}, spawn {:?}, run and exit {:?}, destroy {:?}",
            spawned - start,
            running - spawned,
            ended - running,
            ended.elapsed()
        );
    }
    Ok(result?.code())
}
