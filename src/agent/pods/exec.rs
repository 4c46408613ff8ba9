//! Which process an exec joins: the pod's record, the container (named, or
//! the pod's first), its current instance, and that instance's running
//! first process, read from the files the shims keep. Nothing is changed
//! and no daemon is needed, so `flotilla-agent exec` works with or without
//! `serve`, and costs a few file reads.

use super::layout::AgentPaths;
use super::record::{self, PodRecord};
use super::shim::{self, LaunchPlan};
use crate::agent::runtime::exec::ExecSpec;

/// Why there is nothing to exec into; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("no pod {namespace}/{name} on this node; `flotilla get pods -A` shows where pods run")]
    PodNotFound { namespace: String, name: String },
    #[error("pod {pod} has no container {container:?}; its containers: {}", containers.join(", "))]
    NoSuchContainer {
        pod: String,
        container: String,
        containers: Vec<String>,
    },
    #[error(
        "container {container} of pod {pod} is not running ({why}); `flotilla describe pod` says more"
    )]
    NotRunning {
        pod: String,
        container: String,
        why: String,
    },
    #[error(
        "pod {pod} is paused: its processes are frozen, so an exec would hang; unpause it first"
    )]
    Paused { pod: String },
    #[error("container {container} of pod {pod}: {path}: {detail}")]
    State {
        pod: String,
        container: String,
        path: String,
        detail: String,
    },
    #[error("{0}")]
    Invalid(String),
}

/// What the caller may change of the container's process.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub container: Option<String>,
    /// `KEY=value`, added to (or replacing in) the container's environment.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    /// With no command: the container's shell (`$SHELL` in its environment,
    /// which an image sets to name its own, else /bin/sh).
    pub shell: bool,
    /// With a terminal: its `TERM`, set unless the container's environment
    /// (or `env`) has one. The exec then owns the terminal.
    pub term: Option<String>,
}

/// The exec of `command` into pod `namespace/name` on this node.
pub fn exec_spec(
    paths: &AgentPaths,
    namespace: &str,
    name: &str,
    command: Vec<String>,
    options: &ExecOptions,
) -> Result<ExecSpec, ExecError> {
    if command.is_empty() && !options.shell {
        return Err(ExecError::Invalid(
            "no command: give one after `--` (e.g. `-- sh`)".into(),
        ));
    }
    if let Some(dir) = &options.workdir
        && !dir.starts_with('/')
    {
        return Err(ExecError::Invalid(format!(
            "working directory {dir:?} must be absolute"
        )));
    }
    for kv in &options.env {
        if kv.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
            return Err(ExecError::Invalid(format!("-e {kv:?}: write KEY=VALUE")));
        }
    }
    let record = record::load_all(paths)
        .into_iter()
        .find(|r| r.pod.metadata.namespace == namespace && r.pod.metadata.name == name)
        .ok_or_else(|| ExecError::PodNotFound {
            namespace: namespace.into(),
            name: name.into(),
        })?;
    let pod = format!("{namespace}/{name}");
    let container = choose_container(&record, options.container.as_deref())?;
    if record.paused {
        return Err(ExecError::Paused { pod });
    }
    let not_running = |why: String| ExecError::NotRunning {
        pod: pod.clone(),
        container: container.clone(),
        why,
    };
    let crec = record.containers.get(&container);
    let Some(instance) = crec.and_then(|c| c.instance) else {
        let why = crec
            .and_then(|c| c.waiting_reason.clone())
            .unwrap_or_else(|| "it has not started".into());
        return Err(not_running(why));
    };
    let dir = paths.instance_dir(&record.uid, &container, instance);
    let state = shim::read_state(&dir);
    if let Some(exit) = &state.exit {
        return Err(not_running(format!(
            "it ended: {}, exit code {}",
            exit.reason, exit.exit_code
        )));
    }
    let Some(pid) = state.pid.filter(|p| p.is_alive()) else {
        return Err(not_running(if state.pid.is_some() {
            "its process is gone".into()
        } else {
            "it is starting; try again in a moment".into()
        }));
    };
    let launch = shim::launch_file(&dir);
    let plan: LaunchPlan = std::fs::read(&launch)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
        .map_err(|detail| ExecError::State {
            pod: pod.clone(),
            container: container.clone(),
            path: launch.display().to_string(),
            detail,
        })?;
    let mut process = shim::process_spec(&plan);
    process.env.extend(options.env.iter().cloned());
    process.args = if command.is_empty() {
        vec![shell_of(&process.env)]
    } else {
        command
    };
    if let Some(term) = &options.term
        && !process.env.iter().any(|e| e.starts_with("TERM="))
    {
        process.env.push(format!("TERM={term}"));
    }
    if let Some(user) = &options.user {
        process.user = Some(user.clone());
    }
    if let Some(dir) = &options.workdir {
        process.cwd = dir.clone();
    }
    Ok(ExecSpec {
        name: format!("pod {pod}, container {container}"),
        pid,
        cgroup_procs: plan
            .cgroup_dirs
            .iter()
            .map(|d| d.join("cgroup.procs"))
            .collect(),
        hostname: plan.hostname.clone(),
        process,
        tty: options.term.is_some(),
    })
}

/// The shell a person gets: the last `SHELL=` of the environment if it
/// names an absolute path, else /bin/sh.
fn shell_of(env: &[String]) -> String {
    env.iter()
        .rev()
        .find_map(|e| e.strip_prefix("SHELL="))
        .filter(|s| s.starts_with('/'))
        .unwrap_or(DEFAULT_SHELL)
        .to_string()
}

/// The shell when the container's environment names none.
pub const DEFAULT_SHELL: &str = "/bin/sh";

/// The named container, or the pod's first (as kubectl defaults).
fn choose_container(record: &PodRecord, wanted: Option<&str>) -> Result<String, ExecError> {
    let names: Vec<String> = record
        .pod
        .spec
        .containers
        .iter()
        .map(|c| c.name.clone())
        .collect();
    match wanted {
        Some(name) if names.iter().any(|n| n == name) => Ok(name.to_string()),
        Some(name) => Err(ExecError::NoSuchContainer {
            pod: format!(
                "{}/{}",
                record.pod.metadata.namespace, record.pod.metadata.name
            ),
            container: name.to_string(),
            containers: names,
        }),
        None => names.into_iter().next().ok_or_else(|| {
            ExecError::Invalid(format!(
                "pod {} has no containers",
                record.pod.metadata.name
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_is_the_environments_or_bin_sh() {
        assert_eq!(shell_of(&[]), "/bin/sh");
        assert_eq!(shell_of(&["SHELL=/bin/bash".into()]), "/bin/bash");
        assert_eq!(
            shell_of(&["SHELL=/bin/bash".into(), "SHELL=/bin/ash".into()]),
            "/bin/ash"
        );
        assert_eq!(shell_of(&["SHELL=bash".into()]), "/bin/sh");
    }
}
