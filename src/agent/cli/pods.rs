//! The agent's container verbs, a single-host tool in its own right, as a
//! podman user would expect: `run`, `ps`, `logs`, `stop`, `kill`, `rm`,
//! `pause`, `unpause`, `stats`. They work on the root's files directly,
//! whether or not `serve` runs on it; each call first reconciles, so a
//! status or a due restart is never stale when someone looks.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::Utc;
use clap::Args;
use nix::sys::signal::{SigSet, Signal};

use crate::agent::logs::{LogQuery, Streams, read_logs};
use crate::agent::pods::record::{Desired, PodRecord};
use crate::agent::pods::shim::{self, InstanceState, LaunchPlan, Tee};
use crate::agent::pods::status::pod_status;
use crate::agent::pods::{AgentConfig, PodManager};
use crate::agent::runtime::exec::start_exit_code;
use crate::api::status::{ContainerState, PodStatus};
use crate::api::{
    Container, EnvVar, ObjectMeta, Pod, PodSpec, PullPolicy, Quantity, ResourceList, RestartPolicy,
};

/// The namespace single-host verbs work in.
const NAMESPACE: &str = "default";

/// How long `run -d` waits for its container to start.
const START_WAIT: Duration = Duration::from_secs(30);

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Delete the container when it ends.
    #[arg(long)]
    pub rm: bool,
    /// Start it in the background and print its name.
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[arg(long)]
    pub name: Option<String>,
    /// Speak plain HTTP to the image's registry.
    #[arg(long)]
    pub insecure: bool,
    /// Memory limit, as Kubernetes writes it (128Mi, 1G).
    #[arg(long, value_name = "QUANTITY")]
    pub memory: Option<Quantity>,
    /// CPU limit (0.5, 500m, 2).
    #[arg(long, value_name = "QUANTITY")]
    pub cpus: Option<Quantity>,
    /// Most processes at once (default 4096).
    #[arg(long)]
    pub pids: Option<u64>,
    /// Environment variables, KEY=VALUE.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    pub image: String,
    /// The command, replacing the image's (its entrypoint stays).
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// The pod `run` creates: one container, never restarted, the image pulled only if missing.
fn pod_for_run(args: &RunArgs, name: &str) -> anyhow::Result<Pod> {
    let env = args
        .env
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok(EnvVar {
                name: k.to_string(),
                value: v.to_string(),
            }),
            _ => bail!("-e {kv:?}: write KEY=VALUE"),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut container = Container {
        name: name.to_string(),
        image: args.image.clone(),
        args: args.command.clone(),
        env,
        image_pull_policy: Some(PullPolicy::IfNotPresent),
        ..Container::default()
    };
    container.resources.limits = ResourceList {
        cpu: args.cpus.clone(),
        memory: args.memory.clone(),
    };
    let mut metadata = ObjectMeta {
        name: name.to_string(),
        namespace: NAMESPACE.into(),
        ..ObjectMeta::default()
    };
    if let Some(pids) = args.pids {
        metadata.annotations.insert(
            crate::agent::pods::manager::PIDS_ANNOTATION.into(),
            pids.to_string(),
        );
    }
    Ok(Pod::new(
        metadata,
        PodSpec {
            containers: vec![container],
            restart_policy: RestartPolicy::Never,
            termination_grace_period_seconds: 10,
            ..PodSpec::default()
        },
    ))
}

/// A name like podman's when none is given: the image's last path part and a suffix.
fn generated_name(image: &str) -> String {
    let base = image
        .rsplit('/')
        .next()
        .unwrap_or(image)
        .split([':', '@'])
        .next()
        .unwrap_or("c");
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!(
        "{}-{:05x}",
        clean.trim_matches('-'),
        crate::agent::pods::record::random_u64() & 0xfffff
    )
}

pub fn run(mut config: AgentConfig, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let mut times = PhaseTimes::from_env();
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| generated_name(&args.image));
    if args.insecure {
        let image = crate::agent::image::parse_reference(&args.image)?;
        config
            .insecure_registries
            .push(image.registry().to_string());
    }
    let pod = pod_for_run(args, &name)?;
    let agent_binary = config.agent_binary.clone();
    let manager = PodManager::new(config)?;
    times.mark("open");
    if args.detach {
        let (record, _) = manager.create(pod)?;
        // Like podman, return once the container runs or has failed to:
        // its shim is up, not yet its process. So a start error is reported
        // here, and a `logs` right after finds the log.
        crate::procfs::wait_until(START_WAIT, || {
            manager
                .instance_states(&record)
                .values()
                .all(InstanceState::settled)
        });
        let state = manager.instance_states(&record);
        if let Some(err) = start_failure(&record, &state) {
            if !started(&record) {
                let _ = manager.delete(NAMESPACE, &name, Some(Duration::ZERO));
            }
            bail!("{name}: {err}");
        }
        println!("{name}");
        return Ok(ExitCode::SUCCESS);
    }
    // Foreground: this process is the container's shim, so the output
    // reaches the terminal as it is logged and the exit code is ours. An
    // ephemeral pod's container makes its own namespaces, so its init stage
    // can start first and load while the pod is recorded.
    let early = if args.rm {
        Some(shim::EarlyInit::start(&agent_binary).map_err(anyhow::Error::msg)?)
    } else {
        None
    };
    times.mark("start init");
    let (record, dir) = manager.create_foreground(pod, args.rm)?;
    times.mark("create");
    let Some(dir) = dir else {
        let status = status_of(&manager, &record);
        let reason = waiting_text(&status);
        // Nothing ran (no image): like podman, leave no container behind,
        // --rm or not; one left would retry the pull for ever.
        let _ = manager.delete(NAMESPACE, &name, Some(Duration::ZERO));
        bail!("{name}: {reason}");
    };
    let plan: LaunchPlan = serde_json::from_slice(&std::fs::read(shim::launch_file(&dir))?)?;
    // create_foreground recorded this process as the instance's shim.
    let state = shim::read_state(&dir);
    forward_signals(&dir);
    let supervised = shim::supervise(
        &plan,
        &dir,
        state,
        Some(Tee {
            stdout: Box::new(std::io::stdout()),
            stderr: Box::new(std::io::stderr()),
        }),
        early,
    );
    times.mark("container");
    let exit = &supervised.exit;
    // The container's own code; for one that never ran, podman's.
    let code = if exit.reason == "StartError" {
        eprintln!("error: {name}: {}", exit.message);
        start_exit_code(supervised.failed_step.as_ref())
    } else {
        exit.exit_code.clamp(0, 255) as u8
    };
    if args.rm {
        // Deleting records the exit on its way (its stop reconciles).
        manager
            .delete_uid(&record.uid, Some(Duration::ZERO))
            .with_context(|| format!("removing {name}"))?;
        times.mark("delete");
    } else {
        let _ = manager.reconcile(&record.uid);
        times.mark("record exit");
    }
    times.report();
    Ok(ExitCode::from(code))
}

/// Where a foreground `run` spends its time, printed on stderr when
/// `FLOTILLA_RUN_TIMES=1` (for scripts/bench-run).
struct PhaseTimes {
    last: Option<std::time::Instant>,
    phases: Vec<(&'static str, Duration)>,
}

impl PhaseTimes {
    fn from_env() -> PhaseTimes {
        PhaseTimes {
            last: (std::env::var_os("FLOTILLA_RUN_TIMES").is_some_and(|v| v == "1"))
                .then(std::time::Instant::now),
            phases: Vec::new(),
        }
    }

    fn mark(&mut self, phase: &'static str) {
        if let Some(last) = self.last.as_mut() {
            let now = std::time::Instant::now();
            self.phases.push((phase, now - *last));
            *last = now;
        }
    }

    fn report(&self) {
        if self.last.is_some() {
            let text: Vec<String> = self
                .phases
                .iter()
                .map(|(phase, d)| format!("{phase} {:.1} ms", d.as_secs_f64() * 1e3))
                .collect();
            eprintln!("{}", text.join(", "));
        }
    }
}

/// Ctrl-C (or a SIGTERM to this process) stops the container as `stop`
/// would: SIGTERM first, SIGKILL on the second. The signals are taken by a
/// thread so that they are handled, not fatal to the shim.
fn forward_signals(dir: &std::path::Path) {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    if set.thread_block().is_err() {
        return;
    }
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let mut count = 0;
        while set.wait().is_ok() {
            count += 1;
            let signal = if count == 1 {
                Signal::SIGTERM
            } else {
                Signal::SIGKILL
            };
            if let Some(pid) = shim::read_state(&dir).pid {
                pid.signal(signal);
            }
        }
    });
}

fn start_failure(record: &PodRecord, states: &BTreeMap<String, InstanceState>) -> Option<String> {
    record.containers.iter().find_map(|(name, crec)| {
        if let Some(reason) = &crec.waiting_reason {
            return Some(format!(
                "container {name}: {reason}: {}",
                crec.waiting_message.clone().unwrap_or_default()
            ));
        }
        let exit = states.get(name)?.exit.as_ref()?;
        (exit.reason == "StartError").then(|| format!("container {name}: {}", exit.message))
    })
}

/// Whether every container got as far as an instance (a pull failure
/// leaves it without one).
fn started(record: &PodRecord) -> bool {
    record.containers.values().all(|c| c.instance.is_some())
}

fn status_of(manager: &PodManager, record: &PodRecord) -> PodStatus {
    pod_status(record, &manager.instance_states(record))
}

fn waiting_text(status: &PodStatus) -> String {
    status
        .container_statuses
        .iter()
        .find_map(|c| match &c.state {
            ContainerState::Waiting(w) => Some(format!("{}: {}", w.reason, w.message)),
            _ => None,
        })
        .unwrap_or_else(|| "the container did not start".into())
}

/// `STATUS` as docker and kubectl mix it: Running, Paused, Exited (code) …
fn status_text(record: &PodRecord, status: &PodStatus) -> String {
    if record.paused {
        return "Paused".into();
    }
    let container = status.container_statuses.first();
    match container.map(|c| &c.state) {
        Some(ContainerState::Running(r)) => match r.started_at {
            Some(t) => format!("Up {}", ago(t)),
            None => "Running".into(),
        },
        Some(ContainerState::Waiting(w)) => w.reason.clone(),
        Some(ContainerState::Terminated(t)) => match t.finished_at {
            Some(f) if t.reason == "OOMKilled" => {
                format!("OOMKilled ({}) {} ago", t.exit_code, ago(f))
            }
            Some(f) => format!("Exited ({}) {} ago", t.exit_code, ago(f)),
            None => format!("Exited ({})", t.exit_code),
        },
        None => status.phase.to_string(),
    }
}

fn ago(time: chrono::DateTime<Utc>) -> String {
    let secs = (Utc::now() - time).num_seconds().max(0);
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86399 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

pub fn ps(config: AgentConfig, all: bool, json: bool) -> anyhow::Result<ExitCode> {
    let manager = PodManager::new(config)?;
    manager.reconcile_all();
    let mut rows = Vec::new();
    for record in manager.list() {
        let status = status_of(&manager, &record);
        let running = status
            .container_statuses
            .iter()
            .any(|c| matches!(c.state, ContainerState::Running(_)));
        if !all && !running && record.desired == Desired::Stopped {
            continue;
        }
        if !all && !running && status.phase.is_terminal() {
            continue;
        }
        rows.push((record, status));
    }
    if json {
        let value: Vec<serde_json::Value> = rows
            .iter()
            .map(|(record, status)| {
                serde_json::json!({
                    "uid": record.uid,
                    "namespace": record.pod.metadata.namespace,
                    "name": record.pod.metadata.name,
                    "paused": record.paused,
                    "status": status,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<40} {:<26} {:>8} {:>8}",
        "NAME", "IMAGE", "STATUS", "RESTARTS", "CREATED"
    );
    for (record, status) in &rows {
        let image = record
            .pod
            .spec
            .containers
            .first()
            .map(|c| c.image.as_str())
            .unwrap_or("");
        let restarts: i32 = status
            .container_statuses
            .iter()
            .map(|c| c.restart_count)
            .sum();
        println!(
            "{:<24} {:<40} {:<26} {:>8} {:>8}",
            record.pod.metadata.name,
            image,
            status_text(record, status),
            restarts,
            ago(record.created_at)
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Keep printing as the container writes, until it ends.
    #[arg(short = 'f', long)]
    pub follow: bool,
    #[arg(long)]
    pub tail: Option<usize>,
    /// The previous run's log (after a restart).
    #[arg(short = 'p', long)]
    pub previous: bool,
    #[arg(long)]
    pub timestamps: bool,
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    pub name: String,
}

pub fn logs(config: AgentConfig, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let manager = PodManager::new(config)?;
    let _ = manager.reconcile_all();
    let record = manager.find(NAMESPACE, &args.name)?;
    let path = manager.log_path(&record, args.container.as_deref(), args.previous)?;
    let container = args
        .container
        .clone()
        .unwrap_or_else(|| record.pod.spec.containers[0].name.clone());
    let follow = args.follow && !args.previous && manager.is_running(&record, &container);
    let reader = read_logs(
        &path,
        &LogQuery {
            tail: args.tail,
            since: None,
            timestamps: args.timestamps,
            follow,
            streams: Streams::Both,
        },
    );
    if follow {
        // The reader cannot know when the container ends: watch for it.
        let stop = reader.stop_handle();
        std::thread::spawn(move || {
            while manager.is_running(&record, &container) {
                std::thread::sleep(Duration::from_millis(200));
            }
            stop.stop();
        });
    }
    // Raw, as kubectl prints logs: what the container wrote is what comes out.
    let mut out = std::io::stdout().lock();
    for record in reader {
        let record = record.with_context(|| format!("reading {}", path.display()))?;
        if record.write_raw(&mut out, args.timestamps).is_err() {
            break;
        }
        if follow {
            let _ = out.flush();
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn stop(config: AgentConfig, name: &str, grace: Option<u64>) -> anyhow::Result<ExitCode> {
    let manager = PodManager::new(config)?;
    let uid = manager.find(NAMESPACE, name)?.uid;
    let stopped = manager.stop(NAMESPACE, name, grace.map(Duration::from_secs));
    ended(&manager, &uid, stopped)?;
    println!("{name}");
    Ok(ExitCode::SUCCESS)
}

pub fn kill(config: AgentConfig, name: &str) -> anyhow::Result<ExitCode> {
    let manager = PodManager::new(config)?;
    let uid = manager.find(NAMESPACE, name)?.uid;
    let killed = manager.kill(NAMESPACE, name);
    ended(&manager, &uid, killed)?;
    println!("{name}");
    Ok(ExitCode::SUCCESS)
}

/// The outcome of stopping pod `uid`. A foreground `run --rm` removes its
/// pod the moment the container ends, possibly while `stop` or `kill` is
/// still looking at it (its record is gone under their last reconcile):
/// that container ended as asked, so its disappearance is success.
fn ended<T>(
    manager: &PodManager,
    uid: &str,
    result: Result<T, crate::agent::pods::PodError>,
) -> anyhow::Result<()> {
    match result {
        Ok(_) => Ok(()),
        // Its removal may still be under way: give it a moment to finish.
        Err(_)
            if crate::procfs::wait_until(Duration::from_secs(2), || {
                manager.list().iter().all(|r| r.uid != uid)
            }) =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

pub fn rm(config: AgentConfig, name: &str, force: bool) -> anyhow::Result<ExitCode> {
    let manager = PodManager::new(config)?;
    let record = manager.find(NAMESPACE, name)?;
    let running = record
        .pod
        .spec
        .containers
        .iter()
        .any(|c| manager.is_running(&record, &c.name));
    if running && !force {
        bail!("{name} is running: stop it first, or use rm -f to kill and remove it");
    }
    manager.delete(NAMESPACE, name, Some(Duration::ZERO))?;
    println!("{name}");
    Ok(ExitCode::SUCCESS)
}

pub fn pause(config: AgentConfig, name: &str, pause: bool) -> anyhow::Result<ExitCode> {
    let manager = PodManager::new(config)?;
    if pause {
        manager.pause(NAMESPACE, name)?;
    } else {
        manager.resume(NAMESPACE, name)?;
    }
    println!("{name}");
    Ok(ExitCode::SUCCESS)
}

pub fn stats(config: AgentConfig, name: Option<&str>) -> anyhow::Result<ExitCode> {
    let manager = PodManager::new(config)?;
    println!(
        "{:<24} {:<16} {:>12} {:>12} {:>6}",
        "NAME", "CONTAINER", "CPU TIME", "MEMORY", "PIDS"
    );
    for record in manager.list() {
        if name.is_some_and(|n| n != record.pod.metadata.name) {
            continue;
        }
        for (container, stats) in manager.stats(&record) {
            println!(
                "{:<24} {:<16} {:>11.2}s {:>12} {:>6}",
                record.pod.metadata.name,
                container,
                stats.cpu_usage_ns as f64 / 1e9,
                crate::agent::image::progress::human_bytes(stats.memory_working_set_bytes),
                stats.pids_current
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
