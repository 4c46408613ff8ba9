//! The shim: one small supervising process per container instance, the
//! agent's binary run as `flotilla-agent __shim DIR`. It creates the
//! container from the launch plan in DIR, owns its stdout and stderr and
//! writes them to the CRI log, reaps it, and records how it ended in
//! `DIR/state.json`. It needs no async runtime and outlives the agent: the
//! agent starts it through a short-lived intermediate, so it is reparented
//! away from the agent and a killed or restarted agent finds it still
//! running and re-adopts it from its state file.
//!
//! `run` in the foreground uses the same supervision in its own process
//! (`supervise`), teeing the output to the terminal.

use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use chrono::{DateTime, Utc};
use nix::fcntl::OFlag;
use serde::{Deserialize, Serialize};

use super::output_pump::{self, Source};
use crate::agent::cgroup::{self, Ended};
use crate::agent::logs::{CriLogWriter, Rotation, Stream};
use crate::agent::runtime::{
    ContainerExit, ContainerSpec, InitStage, Namespace, Namespaces, ProcessSpec, RootfsSpec,
    StepError,
};
use crate::procfs::ProcessId;

/// Everything the shim needs to create one container instance; written by
/// the agent before it starts the shim.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchPlan {
    /// Runtime id: unique on this host.
    pub id: String,
    pub hostname: String,
    /// The pod sandbox's namespace files to join, the node's, or fresh ones
    /// (written as a path, null, or "new": see [`plan_namespace`]).
    #[serde(with = "plan_namespace")]
    pub net: Namespace,
    #[serde(with = "plan_namespace")]
    pub ipc: Namespace,
    #[serde(with = "plan_namespace")]
    pub uts: Namespace,
    /// /etc/hosts, /etc/hostname, /etc/resolv.conf of the pod.
    pub etc_mounts: Vec<(PathBuf, String)>,
    pub lower_dirs: Vec<PathBuf>,
    pub upper_dir: PathBuf,
    pub work_dir: PathBuf,
    pub merged_dir: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: Option<String>,
    /// The image's `StopSignal`, for a graceful stop.
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// The container's cgroup, relative to the hierarchy's mounts.
    pub cgroup_dirs: Vec<PathBuf>,
    /// The one of `cgroup_dirs` with the memory controller's files, where
    /// OOM kills are counted. Plans from older agents lack it: all are read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_dir: Option<PathBuf>,
    /// The writable layer on a tmpfs of the container's own (see
    /// `RootfsSpec::private_layer`): an ephemeral pod's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private_layer: bool,
    pub log_path: PathBuf,
    pub log_max_bytes: u64,
    pub log_max_files: usize,
    /// The agent binary, whose `__init` stage creates the container.
    pub agent_binary: PathBuf,
}

impl LaunchPlan {
    /// Whether the container joins namespaces bound in its pod's sandbox.
    pub fn joins_namespaces(&self) -> bool {
        [&self.net, &self.ipc, &self.uts]
            .iter()
            .any(|ns| matches!(ns, Namespace::Join(_)))
    }
}

/// A launch plan's namespace as plans have always written it: null for
/// the node's, the nsfs path to join, and (added for containers that make
/// their own) `"new"`, which no path can be since paths are absolute. So
/// plans written by an older agent, still read by `exec` and `stop`, read
/// the same.
mod plan_namespace {
    use std::path::PathBuf;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::agent::runtime::Namespace;

    const NEW: &str = "new";

    pub fn serialize<S: Serializer>(ns: &Namespace, to: S) -> Result<S::Ok, S::Error> {
        match ns {
            Namespace::Host => None::<&str>.serialize(to),
            Namespace::New => Some(NEW).serialize(to),
            Namespace::Join(path) => Some(path).serialize(to),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(from: D) -> Result<Namespace, D::Error> {
        Ok(match Option::<PathBuf>::deserialize(from)? {
            None => Namespace::Host,
            Some(path) if path.as_os_str() == NEW => Namespace::New,
            Some(path) => Namespace::Join(path),
        })
    }
}

/// What the shim reports. Written atomically, so a reader sees one state or the next.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceState {
    pub shim: Option<ProcessId>,
    /// The container's first process, as the host sees it.
    pub pid: Option<ProcessId>,
    pub started_at: Option<DateTime<Utc>>,
    pub exit: Option<ExitRecord>,
}

impl InstanceState {
    pub fn shim_alive(&self) -> bool {
        self.shim.is_some_and(|p| p.is_alive())
    }

    /// Past its start: the container's process runs, or it ended, or its
    /// shim is gone (so nothing more will happen by itself).
    pub fn settled(&self) -> bool {
        self.pid.is_some() || self.exit.is_some() || !self.shim_alive()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub exit_code: i32,
    pub signal: Option<i32>,
    /// `Completed`, `Error`, `OOMKilled`, `StartError`, `ShimLost`.
    pub reason: String,
    pub message: String,
    pub finished_at: DateTime<Utc>,
}

pub fn launch_file(dir: &Path) -> PathBuf {
    dir.join("launch.json")
}

pub fn state_file(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

pub fn read_state(dir: &Path) -> InstanceState {
    fs::read(state_file(dir))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

pub fn write_state(dir: &Path, state: &InstanceState) -> std::io::Result<()> {
    let tmp = dir.join("state.json.tmp");
    let bytes = serde_json::to_vec(state).map_err(std::io::Error::other)?;
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, state_file(dir))
}

/// Starts the shim for the instance in `dir`, detached: an intermediate
/// `__shim --detach` starts the real shim in its own session and exits, so
/// the shim's parent is not the caller (a CLI that exits, or an agent that
/// may be killed). Returns once the shim has recorded its pid.
pub fn start_detached(agent_binary: &Path, dir: &Path) -> std::io::Result<()> {
    let status = Command::new(agent_binary)
        .arg("__shim")
        .arg("--detach")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        return Err(std::io::Error::other(format!(
            "the shim for {} did not start ({status})",
            dir.display()
        )));
    }
    Ok(())
}

/// `flotilla-agent __shim [--detach] DIR`.
pub fn shim_main(dir: &Path, detach: bool) -> ExitCode {
    if detach {
        let log = fs::File::options()
            .create(true)
            .append(true)
            .open(dir.join("shim.log"));
        let (out, err) = match log.and_then(|f| Ok((f.try_clone()?, f))) {
            Ok((a, b)) => (Stdio::from(a), Stdio::from(b)),
            Err(_) => (Stdio::null(), Stdio::null()),
        };
        let Ok(exe) = std::env::current_exe() else {
            return ExitCode::FAILURE;
        };
        let spawned = Command::new(exe)
            .arg("__shim")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn();
        return match spawned {
            // Wait until the shim has said who it is, so the caller can watch it.
            Ok(child) => {
                let me = ProcessId::of(child.id());
                let ready = crate::procfs::wait_until(std::time::Duration::from_secs(5), || {
                    read_state(dir).shim.is_some() || me.is_none_or(|p| !p.is_alive())
                });
                if ready {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(_) => ExitCode::FAILURE,
        };
    }
    let _ = nix::unistd::setsid();
    let plan: LaunchPlan = match fs::read(launch_file(dir))
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("shim {}: reading the launch plan: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    let state = InstanceState {
        shim: ProcessId::of(std::process::id()),
        ..InstanceState::default()
    };
    if let Err(e) = write_state(dir, &state) {
        eprintln!("shim {}: writing its state: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let record = supervise(&plan, dir, state, None, None).exit;
    if record.reason == "StartError" {
        eprintln!("shim {}: {}", dir.display(), record.message);
    }
    ExitCode::SUCCESS
}

/// How a supervised container ended.
pub struct Supervised {
    /// As recorded in `state.json`.
    pub exit: ExitRecord,
    /// For a container that did not start, the init stage's failed step,
    /// if it got that far (a foreground `run` exits as podman would).
    pub failed_step: Option<StepError>,
}

/// Why a container did not start: the message for its record, and the
/// init stage's failed step when there is one.
struct StartFailure {
    message: String,
    step: Option<StepError>,
}

impl From<String> for StartFailure {
    fn from(message: String) -> StartFailure {
        StartFailure {
            message,
            step: None,
        }
    }
}

/// Creates the container, logs its output (and copies it to `tee`, the
/// foreground terminal, if given), waits for it, and records its end in
/// `dir/state.json`.
pub fn supervise(
    plan: &LaunchPlan,
    dir: &Path,
    mut state: InstanceState,
    tee: Option<Tee>,
    early: Option<EarlyInit>,
) -> Supervised {
    let started = Utc::now();
    let result = run_container(plan, dir, &mut state, tee, early);
    let (record, failed_step) = match result {
        Ok(record) => (record, None),
        Err(failure) => (
            ExitRecord {
                // What Kubernetes records for a StartError.
                exit_code: 128,
                signal: None,
                reason: "StartError".into(),
                message: failure.message,
                finished_at: Utc::now(),
            },
            failure.step,
        ),
    };
    state.started_at.get_or_insert(started);
    state.exit = Some(record.clone());
    if let Err(e) = write_state(dir, &state) {
        eprintln!("shim {}: recording the exit: {e}", dir.display());
    }
    Supervised {
        exit: record,
        failed_step,
    }
}

/// Where a foreground run copies the container's output.
pub struct Tee {
    pub stdout: Box<dyn Write + Send>,
    pub stderr: Box<dyn Write + Send>,
}

/// A container's init stage, started with the container's output pipes
/// before its launch plan exists (see [`InitStage`]): a foreground
/// `run --rm` starts it first thing, so the agent binary's start-up
/// overlaps the pod's records and cgroups. Unused for a container that
/// joins its sandbox's namespaces (see [`run_container`]).
pub struct EarlyInit {
    init: InitStage,
    /// The read ends of the container's stdout and stderr.
    stdout: OwnedFd,
    stderr: OwnedFd,
}

impl EarlyInit {
    pub fn start(agent_binary: &Path) -> Result<EarlyInit, String> {
        let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"));
        let (out_read, out_write) = pipe()?;
        let (err_read, err_write) = pipe()?;
        let devnull = fs::File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
        let init = InitStage::start(
            agent_binary,
            [
                Some(OwnedFd::from(devnull)),
                Some(out_write),
                Some(err_write),
            ],
        )
        .map_err(|e| e.to_string())?;
        Ok(EarlyInit {
            init,
            stdout: out_read,
            stderr: err_read,
        })
    }
}

fn run_container(
    plan: &LaunchPlan,
    dir: &Path,
    state: &mut InstanceState,
    tee: Option<Tee>,
    early: Option<EarlyInit>,
) -> Result<ExitRecord, StartFailure> {
    let mut writer = CriLogWriter::open(
        &plan.log_path,
        Rotation {
            max_bytes: plan.log_max_bytes,
            max_files: plan.log_max_files,
        },
    )
    .map_err(|e| format!("opening the log {}: {e}", plan.log_path.display()))?;
    // An init stage started before the pod's sandbox bound its namespaces
    // has a copy of the mounts without them (they need not propagate into
    // it): one that joins them starts now.
    let early = match early.filter(|_| !plan.joins_namespaces()) {
        Some(early) => early,
        None => EarlyInit::start(&plan.agent_binary)?,
    };
    let EarlyInit {
        init,
        stdout: out_read,
        stderr: err_read,
    } = early;
    let spec = container_spec(plan);
    let oom_before = oom_kills(plan);
    let process = init.create(spec).map_err(|e| StartFailure {
        message: e.to_string(),
        step: e.step_error(),
    })?;
    // The write ends live only in the container: EOF comes when it ends.
    state.pid = ProcessId::of(process.pid as u32);
    state.started_at = Some(Utc::now());
    let _ = write_state(dir, state);

    let detached = tee.is_none();
    let (tee_out, tee_err) = match tee {
        Some(t) => (Some(t.stdout), Some(t.stderr)),
        None => (None, None),
    };
    let sources = vec![
        Source {
            pipe: out_read,
            stream: Stream::Stdout,
            tee: tee_out,
        },
        Source {
            pipe: err_read,
            stream: Stream::Stderr,
            tee: tee_err,
        },
    ];
    output_pump::copy_until_closed(sources, &mut writer, || {
        if detached {
            // A detached shim now only copies pipes for the container's lifetime.
            super::resident::release_startup_pages();
        }
    });
    let exit = process.wait().map_err(|e| e.to_string())?;
    let _ = writer.close();
    let oom = oom_kills(plan) > oom_before;
    let ended = match exit {
        ContainerExit::Code(c) => Ended::Exited(c),
        ContainerExit::Signal(s) => Ended::Signaled(s),
    };
    let termination = cgroup::termination(ended, oom);
    Ok(ExitRecord {
        exit_code: termination.exit_code,
        signal: match exit {
            ContainerExit::Signal(s) => Some(s),
            ContainerExit::Code(_) => None,
        },
        reason: termination.reason.to_string(),
        message: String::new(),
        finished_at: Utc::now(),
    })
}

fn oom_kills(plan: &LaunchPlan) -> u64 {
    // v1 keeps the counter in memory.oom_control, v2 in memory.events: read
    // whichever this group has.
    plan.memory_dir
        .as_ref()
        .map_or(plan.cgroup_dirs.as_slice(), std::slice::from_ref)
        .iter()
        .filter_map(|dir| {
            let text = fs::read_to_string(dir.join("memory.events"))
                .or_else(|_| fs::read_to_string(dir.join("memory.oom_control")))
                .ok()?;
            text.lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .sum()
}

/// The container's process as the plan describes it, with the runtime's
/// defaults for the rest (capabilities, no_new_privs, seccomp). An exec into
/// the container starts from the same spec, so it is confined alike.
pub fn process_spec(plan: &LaunchPlan) -> ProcessSpec {
    let mut process = ProcessSpec::new(plan.args.clone());
    process.env = plan.env.clone();
    process.cwd = plan.cwd.clone();
    process.user = plan.user.clone();
    process
}

fn container_spec(plan: &LaunchPlan) -> ContainerSpec {
    let mut spec = ContainerSpec::new(
        &plan.id,
        RootfsSpec {
            lower_dirs: plan.lower_dirs.clone(),
            upper_dir: plan.upper_dir.clone(),
            work_dir: plan.work_dir.clone(),
            merged_dir: plan.merged_dir.clone(),
            // The writable layer is thrown away when the instance is replaced.
            volatile: true,
            private_layer: plan.private_layer,
        },
        plan.args.clone(),
    );
    spec.hostname = plan.hostname.clone();
    spec.namespaces = Namespaces {
        net: plan.net.clone(),
        ipc: plan.ipc.clone(),
        uts: plan.uts.clone(),
    };
    spec.mounts = plan
        .etc_mounts
        .iter()
        .map(|(source, destination)| crate::agent::runtime::BindMount {
            source: source.clone(),
            destination: destination.clone(),
            read_only: true,
        })
        .collect();
    spec.process = process_spec(plan);
    spec.cgroup_procs = plan
        .cgroup_dirs
        .iter()
        .map(|d| d.join("cgroup.procs"))
        .collect();
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize)]
    struct One(#[serde(with = "plan_namespace")] Namespace);

    #[test]
    fn plan_namespaces_read_as_older_agents_wrote_them() {
        for (ns, json) in [
            (Namespace::Host, "null"),
            (Namespace::New, "\"new\""),
            (
                Namespace::Join("/run/flotilla/pods/p/ns/net".into()),
                "\"/run/flotilla/pods/p/ns/net\"",
            ),
        ] {
            assert_eq!(serde_json::to_string(&One(ns.clone())).unwrap(), json);
            assert_eq!(serde_json::from_str::<One>(json).unwrap().0, ns);
        }
    }
}
