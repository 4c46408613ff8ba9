//! One container, start to finish, through the runtime core: pod sandbox,
//! spawn, wait, destroy, and the container's exit code as ours. What
//! `scripts/bench-run` times beside `crun run` and `runc run` until the
//! agent's `run` verb exists.
//!
//! ```text
//! run-container AGENT_BINARY WORK_DIR LAYER_DIR... -- PROGRAM [ARGS...]
//! ```
//!
//! LAYER_DIRs are top-most first; WORK_DIR gets the sandbox and the
//! container's upper, work and merged dirs, and is emptied again at the end.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

use flotilla::agent::runtime::{ContainerSpec, PodSandbox, RootfsSpec, SandboxSpec};

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(125)
        }
    }
}

fn run() -> Result<i32, Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let split = args
        .iter()
        .position(|a| a == "--")
        .ok_or("usage: run-container AGENT_BINARY WORK_DIR LAYER_DIR... -- PROGRAM [ARGS...]")?;
    let (paths, command) = (&args[..split], &args[split + 1..]);
    if paths.len() < 3 || command.is_empty() {
        return Err("usage: run-container AGENT_BINARY WORK_DIR LAYER_DIR... -- PROGRAM [ARGS...]".into());
    }
    let agent = PathBuf::from(&paths[0]);
    let work = PathBuf::from(&paths[1]);
    let id = format!("run-{}", std::process::id());
    let sandbox = PodSandbox::create(&work.join("pods"), &SandboxSpec::new(&id, "demo", false))?;
    let container = work.join("containers").join(&id);
    let mut spec = ContainerSpec::new(
        &id,
        RootfsSpec {
            lower_dirs: paths[2..].iter().map(PathBuf::from).collect(),
            upper_dir: container.join("upper"),
            work_dir: container.join("work"),
            merged_dir: container.join("merged"),
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
    let result = flotilla::agent::runtime::spawn_with(&agent, spec).and_then(|p| p.wait());
    sandbox.destroy()?;
    std::fs::remove_dir_all(&container)?;
    Ok(result?.code())
}
