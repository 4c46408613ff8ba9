//! The pod lifecycle on one host, as the kubelet runs it: create a pod (its
//! sandbox, cgroup, and a shim per container), reconcile it (start what
//! should run, notice exits, restart per policy with back-off, pull images
//! per pull policy), stop, kill, pause, resume and delete it. Everything it
//! knows is on disk (pod records, the shims' state files), so the CLI and the
//! daemon can both drive one root, and an agent that restarts picks up where
//! it left off. Calls block: the daemon runs them on its blocking pool.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;

use super::PodError;
use super::backoff::BackOffPolicy;
use super::layout::AgentPaths;
use super::network as pod_network;
use super::record::{self, ContainerRecord, Desired, PodRecord};
use super::shim::{self, ExitRecord, InstanceState, LaunchPlan};
use crate::agent::cgroup::{self, Group, Hierarchy, Limits};
use crate::agent::image::config::ImageConfig;
use crate::agent::image::{self, PullOptions, Store};
use crate::agent::network::{self, node::NodeNetwork};
use crate::agent::runtime::{PodSandbox, SandboxSpec};
use crate::api::status::{ContainerStateTerminated, PodPhase};
use crate::api::{Container, Pod, PullPolicy, RestartPolicy};

/// How the agent runs pods on this host.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub paths: AgentPaths,
    /// This agent's part of the cgroup tree (each demo node has its own).
    pub cgroup_parent: String,
    /// The binary that runs shims and the container init stage.
    pub agent_binary: PathBuf,
    pub backoff: BackOffPolicy,
    /// Registries spoken to over plain HTTP.
    pub insecure_registries: Vec<String>,
    pub log_max_bytes: u64,
    pub log_max_files: usize,
    /// Where CNI plugins are looked for, in order.
    pub cni_plugin_dirs: Vec<PathBuf>,
}

impl AgentConfig {
    pub fn new(root: &Path, run_dir: &Path) -> Result<AgentConfig, PodError> {
        Ok(AgentConfig {
            paths: AgentPaths::new(root, run_dir),
            cgroup_parent: "flotilla".into(),
            agent_binary: std::env::current_exe()
                .map_err(|e| PodError::io(Path::new("/proc/self/exe"), e))?,
            backoff: BackOffPolicy::kubernetes(),
            insecure_registries: Vec::new(),
            log_max_bytes: 10 << 20,
            log_max_files: 5,
            cni_plugin_dirs: network::node::default_plugin_dirs(root),
        })
    }
}

/// Something that happened to a pod, for the event stream and the console.
#[derive(Debug, Clone, PartialEq)]
pub struct PodEvent {
    pub warning: bool,
    pub reason: String,
    pub message: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// Filled in at the end of the pass that made the event, with the
    /// pod's phase after it ([`PodEvent::of_pod`]).
    pub uid: String,
    pub phase: Option<PodPhase>,
}

impl PodEvent {
    /// Says which pod the events are about: its uid, and its phase once
    /// the pass that made them is over.
    fn of_pod(events: &mut [PodEvent], uid: &str, phase: Option<PodPhase>) {
        for event in events {
            event.uid = uid.to_string();
            event.phase = phase;
        }
    }
}

pub struct PodManager {
    config: AgentConfig,
    cgroups: Hierarchy,
    store: Store,
    network: NodeNetwork,
}

/// A pod annotation setting the pod's pids limit (default 4096).
pub const PIDS_ANNOTATION: &str = "flotilla.dev/pids-limit";

/// How long `stop` waits for the shims to record exits after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// How long a start waits for the container's process (see `maybe_start`).
const CONTAINER_START_WAIT: Duration = Duration::from_secs(2);

impl PodManager {
    pub fn new(config: AgentConfig) -> Result<PodManager, PodError> {
        let cgroups = cgroup::detect()?.under(&config.cgroup_parent)?;
        let store = Store::open(&config.paths.root)?.with_run_dir(&config.paths.run_dir);
        fs::create_dir_all(config.paths.pods_dir())
            .map_err(|e| PodError::io(&config.paths.pods_dir(), e))?;
        let network = NodeNetwork::new(&config.paths.root, config.cni_plugin_dirs.clone());
        Ok(PodManager {
            config,
            cgroups,
            store,
            network,
        })
    }

    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The node's pod network (its settings, routes and CNI state).
    pub fn network(&self) -> &NodeNetwork {
        &self.network
    }

    /// Releases pod addresses whose pods are gone (run at the agent's start).
    pub fn sweep_network(&self) {
        pod_network::sweep(&self.network, || {
            self.list().into_iter().map(|r| r.uid).collect()
        });
    }

    pub fn list(&self) -> Vec<PodRecord> {
        record::load_all(&self.config.paths)
    }

    pub fn find(&self, namespace: &str, name: &str) -> Result<PodRecord, PodError> {
        self.list()
            .into_iter()
            .find(|r| r.pod.metadata.namespace == namespace && r.pod.metadata.name == name)
            .ok_or_else(|| PodError::NotFound(format!("{namespace}/{name}")))
    }

    /// Records a new pod and starts it, each container under its own shim.
    pub fn create(&self, pod: Pod) -> Result<(PodRecord, Vec<PodEvent>), PodError> {
        let (record, events, _) = self.create_with(pod, false, false)?;
        Ok((record, events))
    }

    /// Records a new single-container pod and prepares its first instance
    /// without a shim: the caller supervises it in its own process (a
    /// foreground `run`). Returns the instance's directory, or None if the
    /// container could not start (its status says why).
    /// `ephemeral`: the caller removes the pod when it ends (`run --rm`).
    pub fn create_foreground(
        &self,
        pod: Pod,
        ephemeral: bool,
    ) -> Result<(PodRecord, Option<PathBuf>), PodError> {
        let (record, _, dir) = self.create_with(pod, true, ephemeral)?;
        Ok((record, dir))
    }

    fn create_with(
        &self,
        mut pod: Pod,
        foreground: bool,
        ephemeral: bool,
    ) -> Result<(PodRecord, Vec<PodEvent>, Option<PathBuf>), PodError> {
        // What the API server would do before a pod reaches a kubelet: the
        // agent may be spoken to directly, so it checks for itself.
        crate::api::defaults::default_pod(&mut pod);
        let (namespace, name) = (pod.metadata.namespace.clone(), pod.metadata.name.clone());
        let validation = crate::api::validate::validate_pod(&pod);
        if !validation.errors.is_empty() {
            let errors: Vec<String> = validation.errors.iter().map(|e| e.to_string()).collect();
            return Err(PodError::Invalid(format!(
                "pod {namespace}/{name} is invalid: {}",
                errors.join("; ")
            )));
        }
        if self.find(&namespace, &name).is_ok() {
            return Err(PodError::Conflict(format!(
                "pod {namespace}/{name} exists on this node; delete it first"
            )));
        }
        let uid = format!("{:016x}", record::random_u64());
        let dir = self.config.paths.new_pod_dir(&uid, ephemeral);
        fs::create_dir_all(&dir).map_err(|e| PodError::io(&dir, e))?;
        // Held from before the record is visible until the first pass is
        // over: a reconcile by anyone else in between (the daemon's pass, a
        // `ps`) would start the containers under shims of its own, and a
        // foreground `run` would find nothing left to prepare.
        let lock =
            record::create_lock(&self.config.paths, &uid).map_err(|e| PodError::io(&dir, e))?;
        let record = PodRecord {
            uid: uid.clone(),
            containers: pod
                .spec
                .containers
                .iter()
                .map(|c| (c.name.clone(), ContainerRecord::default()))
                .collect(),
            pod,
            created_at: Utc::now(),
            desired: Desired::Running,
            paused: false,
            ephemeral,
            network: None,
            network_error: None,
        };
        record::save(&self.config.paths, &record).map_err(|e| PodError::io(&dir, e))?;
        let first = self.reconcile_locked(&lock, &uid, foreground);
        drop(lock);
        let pass = match first {
            Ok(done) => done,
            Err(err) => {
                // The first pass failed (a name the sandbox refuses, a cgroup
                // that cannot be made): the caller hears that the pod was not
                // created, so none of it may stay, half made and failing on
                // every later reconcile.
                let record = self.load(&uid).unwrap_or(record);
                let live = self.live_instances(&record);
                let _ = self.kill_instances(&record, &live);
                let _ = self.remove(&record);
                return Err(err);
            }
        };
        Ok((pass.record, pass.events, pass.prepared))
    }

    fn load(&self, uid: &str) -> Result<PodRecord, PodError> {
        let path = self.config.paths.pod_file(uid);
        record::load(&path).map_err(|e| PodError::io(&path, e))
    }

    fn save(&self, record: &PodRecord) -> Result<(), PodError> {
        record::save(&self.config.paths, record)
            .map_err(|e| PodError::io(&self.config.paths.pod_file(&record.uid), e))
    }

    fn lock(&self, uid: &str) -> Result<record::PodLock, PodError> {
        record::lock(&self.config.paths, uid)
            .map_err(|e| PodError::io(&self.config.paths.pod_lock(uid), e))
    }

    /// Reconciles every pod; errors are per pod and come back as events.
    pub fn reconcile_all(&self) -> Vec<PodEvent> {
        self.reconcile_all_until_due().0
    }

    /// Reconciles every pod, and says when the earliest waiting restart or
    /// pull retry falls due, so a daemon can wake for it rather than at its
    /// next tick.
    pub fn reconcile_all_until_due(&self) -> (Vec<PodEvent>, Option<DateTime<Utc>>) {
        let mut events = Vec::new();
        let mut due: Option<DateTime<Utc>> = None;
        for pod in self.list() {
            match self.reconcile_with(&pod.uid, false) {
                Ok(mut pass) => {
                    events.append(&mut pass.events);
                    due = match (due, pass.due) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                // Deleted since it was listed: nothing went wrong.
                Err(_) if !self.config.paths.pod_dir(&pod.uid).exists() => {}
                Err(err) => events.push(PodEvent {
                    warning: true,
                    reason: "FailedSync".into(),
                    message: err.to_string(),
                    namespace: pod.pod.metadata.namespace.clone(),
                    pod: pod.pod.metadata.name.clone(),
                    container: String::new(),
                    uid: pod.uid.clone(),
                    phase: None,
                }),
            }
        }
        (events, due)
    }

    /// Brings one pod towards what its record says, once.
    pub fn reconcile(&self, uid: &str) -> Result<Vec<PodEvent>, PodError> {
        Ok(self.reconcile_with(uid, false)?.events)
    }

    /// `foreground`: prepare instances without starting shims, and return
    /// the directory of the one prepared. Also returns when the pod's next
    /// restart or pull retry is due, if one waits.
    fn reconcile_with(&self, uid: &str, foreground: bool) -> Result<Pass, PodError> {
        let lock = self.lock(uid)?;
        self.reconcile_locked(&lock, uid, foreground)
    }

    /// [`Self::reconcile_with`] for a caller that holds the pod's lock.
    fn reconcile_locked(
        &self,
        _lock: &record::PodLock,
        uid: &str,
        foreground: bool,
    ) -> Result<Pass, PodError> {
        let mut prepared = None;
        let mut record = self.load(uid)?;
        // A pass that changes nothing must not write: the daemon passes over
        // every pod each second, and an fsync per pod per second wears the
        // node's disk for nothing. (A copy to compare costs less than
        // serialising the record twice per pass.)
        let as_loaded = record.clone();
        let mut events = Vec::new();
        let now = Utc::now();
        // First, what ended since the last look.
        let containers = record.pod.spec.containers.clone();
        for container in &containers {
            self.notice_exit(&mut record, container, now, &mut events)?;
        }
        if record.desired == Desired::Running && !record.paused {
            let (sandbox, fresh) = self.ensure_sandbox(&record)?;
            if fresh {
                // A new network namespace (the node rebooted, /run is new)
                // holds no address, whatever the record says: ADD again.
                record.network = None;
            }
            // The pod's ADD runs beside its containers' preparation; each
            // container waits for it right before it starts.
            let network = sandbox
                .netns()
                .and_then(|netns| pod_network::begin_attach(&self.network, &record, &netns));
            // A pod whose last ADD failed prepares nothing until one works:
            // its containers would only wait again, an fsync a pass.
            let ready = record.network_error.is_none() || network.as_ref().is_none_or(|n| n.wait());
            // Made (and limited) when a container starts, not every pass:
            // a pass over a running pod makes no cgroup call.
            let pod_group = self.pod_group(&record.uid)?;
            let pids = record
                .pod
                .metadata
                .annotations
                .get(PIDS_ANNOTATION)
                .and_then(|v| v.parse().ok())
                .unwrap_or(crate::agent::cgroup::DEFAULT_POD_PIDS_MAX);
            for container in containers.iter().filter(|_| ready) {
                let launch = if foreground {
                    Launch::Foreground(&mut prepared)
                } else {
                    Launch::Shim
                };
                let pass = PodPass {
                    sandbox: &sandbox,
                    group: &pod_group,
                    pids_max: pids,
                    now,
                    network: network.as_ref(),
                };
                self.maybe_start(&mut record, container, &pass, &mut events, launch)?;
            }
            pod_network::finish_attach(network, &mut record, &mut events);
        }
        if record != as_loaded {
            self.save(&record)?;
        }
        let due = if record.desired == Desired::Running && !record.paused {
            record
                .containers
                .values()
                .filter_map(|c| c.next_attempt)
                .min()
        } else {
            None
        };
        if !events.is_empty() {
            let phase = super::status::pod_status(&record, &self.instance_states(&record)).phase;
            PodEvent::of_pod(&mut events, uid, Some(phase));
        }
        Ok(Pass {
            record,
            events,
            prepared,
            due,
        })
    }

    /// Handles an instance that ended: records its termination and decides
    /// whether and when it restarts.
    fn notice_exit(
        &self,
        record: &mut PodRecord,
        container: &Container,
        now: DateTime<Utc>,
        events: &mut Vec<PodEvent>,
    ) -> Result<(), PodError> {
        let paths = self.config.paths.clone();
        let uid = record.uid.clone();
        let restart_policy = record.pod.spec.restart_policy;
        let desired = record.desired;
        let (namespace, pod_name) = (
            record.pod.metadata.namespace.clone(),
            record.pod.metadata.name.clone(),
        );
        let crec = record.containers.entry(container.name.clone()).or_default();
        let Some(instance) = crec.instance else {
            return Ok(());
        };
        let dir = paths.instance_dir(&uid, &container.name, instance);
        let mut state = shim::read_state(&dir);
        if state.exit.is_none() {
            let shim_alive = state.shim_alive();
            if shim_alive {
                return Ok(());
            }
            // The shim is gone without recording an end: killed by force, or
            // the host rebooted. Its container cannot be supervised any more.
            let group = self.pod_group(&uid)?.child(&container.name)?;
            let _ = group.kill_all();
            let exit = ExitRecord {
                exit_code: 137,
                signal: Some(Signal::SIGKILL as i32),
                reason: "Error".into(),
                message: "its shim ended without recording the container's exit".into(),
                finished_at: now,
            };
            state.exit = Some(exit);
            let _ = shim::write_state(&dir, &state);
        }
        let Some(exit) = state.exit.clone() else {
            return Ok(());
        };
        let terminated = terminated_state(&state, &exit, &uid, &container.name, instance);
        if crec.handled_exit.as_ref() == Some(&terminated) {
            return Ok(());
        }
        crec.handled_exit = Some(terminated.clone());
        let failed = exit.exit_code != 0;
        events.push(PodEvent {
            warning: failed,
            reason: if exit.reason == "OOMKilled" {
                "OOMKilled".into()
            } else if failed {
                "Failed".into()
            } else {
                "Completed".into()
            },
            message: format!(
                "container {} exited with code {}{}",
                container.name,
                exit.exit_code,
                if exit.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", exit.message)
                }
            ),
            namespace: namespace.clone(),
            pod: pod_name.clone(),
            container: container.name.clone(),
            uid: String::new(),
            phase: None,
        });
        let restart = desired == Desired::Running
            && match restart_policy {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => failed,
                RestartPolicy::Never => false,
            };
        if restart {
            let ran_for = state
                .started_at
                .map(|s| (exit.finished_at - s).to_std().unwrap_or_default())
                .unwrap_or_default();
            let delay = crec.backoff.after_exit(&self.config.backoff, ran_for);
            crec.next_attempt =
                Some(exit.finished_at + chrono::Duration::from_std(delay).unwrap_or_default());
            crec.waiting_reason = Some("CrashLoopBackOff".into());
            crec.waiting_message = Some(format!(
                "back-off {}s restarting failed container={} pod={pod_name}",
                delay.as_secs(),
                container.name
            ));
            events.push(PodEvent {
                warning: true,
                reason: "BackOff".into(),
                message: format!(
                    "back-off {:?} restarting container {}",
                    delay, container.name
                ),
                namespace,
                pod: pod_name,
                container: container.name.clone(),
                uid: String::new(),
                phase: None,
            });
        }
        Ok(())
    }

    /// The pod's sandbox, and whether it was made just now.
    fn ensure_sandbox(&self, record: &PodRecord) -> Result<(PodSandbox, bool), PodError> {
        let run = self.config.paths.sandboxes_dir();
        fs::create_dir_all(&run).map_err(|e| PodError::io(&run, e))?;
        match PodSandbox::open(&run, &record.uid) {
            Ok(sandbox) => Ok((sandbox, false)),
            Err(_) => {
                let mut spec = SandboxSpec::new(
                    &record.uid,
                    &hostname_of(&record.pod),
                    record.pod.spec.host_network,
                );
                spec.container_namespaces = self.container_namespaces(record);
                Ok((PodSandbox::create(&run, &spec)?, true))
            }
        }
    }

    /// Whether the pod's container may make its namespaces itself (see
    /// the sandbox's doc): an ephemeral pod (`run --rm`, never restarted)
    /// of one container that no CNI plugin has to enter.
    fn container_namespaces(&self, record: &PodRecord) -> bool {
        let spec = &record.pod.spec;
        record.ephemeral
            && spec.restart_policy == RestartPolicy::Never
            && spec.containers.len() == 1
            && (spec.host_network || matches!(self.network.pod_network(), Ok(None)))
    }

    fn pod_group(&self, uid: &str) -> Result<Group, PodError> {
        Ok(self.cgroups.group(&format!("pod-{uid}"))?)
    }

    /// Starts a container that should run and does not: the first time, or
    /// a restart whose back-off has passed.
    fn maybe_start(
        &self,
        record: &mut PodRecord,
        container: &Container,
        pass: &PodPass<'_>,
        events: &mut Vec<PodEvent>,
        launch: Launch<'_>,
    ) -> Result<(), PodError> {
        let PodPass {
            sandbox,
            group: pod_group,
            pids_max,
            now,
            network,
        } = *pass;
        let restart_policy = record.pod.spec.restart_policy;
        let uid = record.uid.clone();
        let (namespace, pod_name) = (
            record.pod.metadata.namespace.clone(),
            record.pod.metadata.name.clone(),
        );
        let hostname = hostname_of(&record.pod);
        let crec = record.containers.entry(container.name.clone()).or_default();
        match (&crec.instance, &crec.handled_exit) {
            // Running (or its end not yet seen).
            (Some(_), None) => return Ok(()),
            (Some(_), Some(exit)) => {
                let restart = match restart_policy {
                    RestartPolicy::Always => true,
                    RestartPolicy::OnFailure => exit.exit_code != 0,
                    RestartPolicy::Never => false,
                };
                if !restart {
                    return Ok(());
                }
            }
            (None, _) => {}
        }
        if crec.next_attempt.is_some_and(|t| now < t) {
            return Ok(());
        }
        let event = |warning: bool, reason: &str, message: String| PodEvent {
            warning,
            reason: reason.into(),
            message,
            namespace: namespace.clone(),
            pod: pod_name.clone(),
            container: container.name.clone(),
            uid: String::new(),
            phase: None,
        };

        let (image_record, config) = match self.image_for(container) {
            Ok(found) => found,
            // As the kubelet: a reference that cannot be parsed is not retried
            // with back-off, it waits as InvalidImageName until the pod changes.
            Err(PodError::Image(err @ image::ImageError::Reference { .. })) => {
                if crec.waiting_reason.as_deref() != Some("InvalidImageName") {
                    events.push(event(true, "InspectFailed", err.to_string()));
                }
                crec.waiting_reason = Some("InvalidImageName".into());
                crec.waiting_message = Some(err.to_string());
                return Ok(());
            }
            Err(err) => {
                let never = container.pull_policy() == PullPolicy::Never;
                let delay = crec.backoff.after_failed_attempt(&self.config.backoff);
                crec.next_attempt =
                    Some(now + chrono::Duration::from_std(delay).unwrap_or_default());
                let first = crec.waiting_reason.as_deref() != Some("ErrImagePull")
                    && crec.waiting_reason.as_deref() != Some("ImagePullBackOff");
                crec.waiting_reason = Some(if never {
                    "ErrImageNeverPull".into()
                } else if first {
                    "ErrImagePull".into()
                } else {
                    "ImagePullBackOff".into()
                });
                crec.waiting_message = Some(err.to_string());
                events.push(event(
                    true,
                    "Failed",
                    format!("pulling image {}: {err}", container.image),
                ));
                return Ok(());
            }
        };
        let instance = crec.instance.map(|n| n + 1).unwrap_or(0);
        if let Some(previous) = crec.instance {
            // The last run's writable layer goes; its log stays for --previous.
            let dir = self
                .config
                .paths
                .instance_dir(&uid, &container.name, previous);
            let _ = fs::remove_dir_all(dir.join("upper"));
            let _ = fs::remove_dir_all(dir.join("work"));
            let _ = fs::remove_dir(
                self.config
                    .paths
                    .merged_dir(&uid, &container.name, previous),
            );
        }
        let dir = self
            .config
            .paths
            .instance_dir(&uid, &container.name, instance);
        for sub in ["upper", "work"] {
            fs::create_dir_all(dir.join(sub)).map_err(|e| PodError::io(&dir, e))?;
        }
        let merged = self
            .config
            .paths
            .merged_dir(&uid, &container.name, instance);
        fs::create_dir_all(&merged).map_err(|e| PodError::io(&merged, e))?;
        let log_dir = self.config.paths.log_dir(&uid, &container.name);
        fs::create_dir_all(&log_dir).map_err(|e| PodError::io(&log_dir, e))?;

        pod_group.create()?;
        pod_group.set_limits(&Limits {
            pids_max: Some(pids_max),
            ..Limits::default()
        })?;
        let group = pod_group.child(&container.name)?;
        group.create()?;
        group.set_limits(&container_limits(container))?;
        // Keep the image's layers while the container may use them.
        let diff_ids: Vec<String> = image_record
            .layers
            .iter()
            .map(|l| l.diff_id.clone())
            .collect();
        // An ephemeral pod's lease is on tmpfs with the rest of it.
        let holder = format!("{uid}/{}", container.name);
        if record.ephemeral {
            self.store.add_volatile_lease(&holder, diff_ids)?;
        } else {
            self.store.add_lease(&holder, diff_ids)?;
        }

        let namespaces = sandbox.namespaces();
        let plan = LaunchPlan {
            id: format!("{uid}-{}-{instance}", container.name),
            hostname,
            net: namespaces.net,
            ipc: namespaces.ipc,
            uts: namespaces.uts,
            etc_mounts: sandbox
                .etc_mounts()
                .into_iter()
                .map(|m| (m.source, m.destination))
                .collect(),
            lower_dirs: image_record
                .layers
                .iter()
                .rev()
                .map(|l| self.store.layer_path(&l.diff_id))
                .collect::<Result<Vec<_>, _>>()?,
            upper_dir: dir.join("upper"),
            work_dir: dir.join("work"),
            merged_dir: merged,
            private_layer: record.ephemeral,
            args: command_line(container, &config),
            env: environment(container, &config),
            cwd: if container.working_dir.is_empty() {
                config.working_dir.clone().unwrap_or_else(|| "/".into())
            } else {
                container.working_dir.clone()
            },
            user: config.user.clone(),
            stop_signal: config.stop_signal.clone(),
            cgroup_dirs: group.dirs(),
            memory_dir: group.dir(cgroup::Controller::Memory),
            log_path: crate::agent::logs::instance_log_path(&log_dir, instance),
            log_max_bytes: self.config.log_max_bytes,
            log_max_files: self.config.log_max_files,
            agent_binary: self.config.agent_binary.clone(),
        };
        let launch_path = shim::launch_file(&dir);
        let bytes =
            serde_json::to_vec_pretty(&plan).map_err(|e| PodError::Invalid(e.to_string()))?;
        fs::write(&launch_path, bytes).map_err(|e| PodError::io(&launch_path, e))?;
        // No container starts before its pod has its address; a failed ADD
        // leaves it waiting (finish_attach says why), the instance unused.
        if network.is_some_and(|n| !n.wait()) {
            return Ok(());
        }
        match launch {
            Launch::Shim => {
                shim::start_detached(&self.config.agent_binary, &dir)
                    .map_err(|e| PodError::io(&dir, e))?;
                // As a runtime's start does, return once the container's
                // process runs (or could not): the Started event and the
                // reply to a create then say what is true, and a client
                // waiting for Running sees it at its next look. The shim
                // takes a few ms; a host too slow for the bound only
                // reports ContainerCreating a while longer.
                crate::procfs::wait_until(CONTAINER_START_WAIT, || {
                    shim::read_state(&dir).settled()
                });
            }
            Launch::Foreground(prepared) => {
                // This process supervises the instance: say so before the
                // record names it (under the pod's lock), or a reconcile by
                // another process (a `ps`) in between finds an instance with
                // no shim, takes it for lost and kills the container.
                let state = InstanceState {
                    shim: crate::procfs::ProcessId::of(std::process::id()),
                    ..InstanceState::default()
                };
                shim::write_state(&dir, &state).map_err(|e| PodError::io(&dir, e))?;
                *prepared = Some(dir.clone());
            }
        }

        // The last run's end becomes its last state only now that the next
        // run started: a start that waits (for the pod's address) leaves
        // the container as it was, ended and due to restart.
        if let Some(exit) = crec.handled_exit.take() {
            crec.last_termination = Some(exit);
        }
        crec.instance = Some(instance);
        crec.restart_count = instance;
        crec.handled_exit = None;
        crec.next_attempt = None;
        crec.waiting_reason = None;
        crec.waiting_message = None;
        crec.image_ref = image_record.reference.clone();
        crec.image_id = image_record.digest.clone();
        events.push(event(
            false,
            "Started",
            format!("started container {} (instance {instance})", container.name),
        ));
        Ok(())
    }

    /// The image a container runs, pulled as its pull policy says.
    fn image_for(
        &self,
        container: &Container,
    ) -> Result<(image::ImageRecord, ImageConfig), PodError> {
        let reference = image::parse_reference(&container.image)?.whole();
        let present = self
            .store
            .image(&reference)?
            .filter(|r| r.layers.iter().all(|l| self.store.has_layer(&l.diff_id)));
        let policy = container.pull_policy();
        if let (Some(found), PullPolicy::IfNotPresent | PullPolicy::Never) = (&present, policy) {
            let config = self.image_config(found)?;
            return Ok((found.clone(), config));
        }
        if policy == PullPolicy::Never {
            return Err(PodError::Invalid(format!(
                "image {reference} is not present and imagePullPolicy is Never"
            )));
        }
        let registry = image::parse_reference(&container.image)?
            .registry()
            .to_string();
        let options = PullOptions {
            insecure: self.config.insecure_registries.contains(&registry),
            auth: None,
            unpack: true,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PodError::io(Path::new("tokio runtime"), e))?;
        let pulled = runtime.block_on(image::pull(&self.store, &reference, &options, &|_| {}))?;
        Ok((pulled.record, pulled.config))
    }

    fn image_config(&self, record: &image::ImageRecord) -> Result<ImageConfig, PodError> {
        let path = self.store.blob_path(&record.config_digest)?;
        let bytes = fs::read(&path).map_err(|e| PodError::io(&path, e))?;
        Ok(image::config::parse(&bytes, &record.config_digest)?)
    }

    /// Stops a pod's containers: the stop signal, then SIGKILL after the grace
    /// period. They are not restarted.
    pub fn stop(
        &self,
        namespace: &str,
        name: &str,
        grace: Option<Duration>,
    ) -> Result<PodRecord, PodError> {
        self.stop_record(self.find(namespace, name)?, grace)
    }

    fn stop_record(
        &self,
        record: PodRecord,
        grace: Option<Duration>,
    ) -> Result<PodRecord, PodError> {
        let grace = grace.unwrap_or_else(|| {
            Duration::from_secs(record.pod.spec.termination_grace_period_seconds.max(0) as u64)
        });
        self.set_desired(&record.uid, Desired::Stopped)?;
        let live = self.live_instances(&record);
        for (_, dir) in &live {
            let state = shim::read_state(dir);
            if let Some(pid) = state.pid.filter(|p| p.is_alive()) {
                pid.signal(stop_signal(dir));
            }
        }
        let all_ended = |live: &[(String, PathBuf)]| {
            live.iter().all(|(_, d)| shim::read_state(d).exit.is_some())
        };
        if !crate::procfs::wait_until(grace, || all_ended(&live)) {
            self.kill_instances(&record, &live)?;
        }
        // The pod may have been frozen: thawed, the signals land.
        let _ = self.pod_group(&record.uid)?.thaw();
        Ok(self.reconcile_with(&record.uid, false)?.record)
    }

    /// SIGKILL to every container of the pod now; none restarts.
    pub fn kill(&self, namespace: &str, name: &str) -> Result<PodRecord, PodError> {
        let record = self.find(namespace, name)?;
        self.set_desired(&record.uid, Desired::Stopped)?;
        let live = self.live_instances(&record);
        self.kill_instances(&record, &live)?;
        Ok(self.reconcile_with(&record.uid, false)?.record)
    }

    fn kill_instances(
        &self,
        record: &PodRecord,
        live: &[(String, PathBuf)],
    ) -> Result<(), PodError> {
        let pod_group = self.pod_group(&record.uid)?;
        for (container, _) in live {
            let group = pod_group.child(container)?;
            let _ = group.kill_all();
        }
        let _ = pod_group.thaw();
        let ended = crate::procfs::wait_until(KILL_WAIT, || {
            live.iter().all(|(_, d)| {
                let state = shim::read_state(d);
                state.exit.is_some() || !state.shim_alive()
            })
        });
        if !ended {
            tracing::warn!(pod = %record.pod.metadata.name, "containers outlived SIGKILL");
        }
        Ok(())
    }

    /// The instances whose shims have not recorded an exit.
    fn live_instances(&self, record: &PodRecord) -> Vec<(String, PathBuf)> {
        record
            .containers
            .iter()
            .filter_map(|(name, crec)| {
                let dir = self
                    .config
                    .paths
                    .instance_dir(&record.uid, name, crec.instance?);
                let state = shim::read_state(&dir);
                (state.exit.is_none() && state.shim.is_some()).then(|| (name.clone(), dir))
            })
            .collect()
    }

    fn set_desired(&self, uid: &str, desired: Desired) -> Result<(), PodError> {
        let _lock = self.lock(uid)?;
        let mut record = self.load(uid)?;
        record.desired = desired;
        self.save(&record)
    }

    /// Stops the pod and removes everything it had: processes, mounts,
    /// cgroups, directories, logs.
    pub fn delete(
        &self,
        namespace: &str,
        name: &str,
        grace: Option<Duration>,
    ) -> Result<(), PodError> {
        let record = self.stop(namespace, name, grace)?;
        self.remove(&record)
    }

    /// [`Self::delete`] for a caller that holds the pod's uid (the one that
    /// created it): no search through every pod's record by name.
    pub fn delete_uid(&self, uid: &str, grace: Option<Duration>) -> Result<(), PodError> {
        let record = self.stop_record(self.load(uid)?, grace)?;
        self.remove(&record)
    }

    /// Removes what a stopped pod has: cgroups, leases, sandbox, directory.
    fn remove(&self, record: &PodRecord) -> Result<(), PodError> {
        let _lock = self.lock(&record.uid)?;
        let pod_group = self.pod_group(&record.uid)?;
        for container in record.containers.keys() {
            let group = pod_group.child(container)?;
            // Stopped means empty, as a rule: then one rmdir per hierarchy
            // does it, without listing each group's processes first.
            if !group.try_remove() {
                let _ = group.kill_all();
                group.remove()?;
            }
            let _ = self
                .store
                .remove_lease(&format!("{}/{container}", record.uid));
            if let Some(instance) = record.containers[container].instance {
                let _ = fs::remove_dir(self.config.paths.merged_dir(
                    &record.uid,
                    container,
                    instance,
                ));
            }
        }
        pod_group.remove()?;
        let sandbox = PodSandbox::open(&self.config.paths.sandboxes_dir(), &record.uid).ok();
        // Released before the sandbox goes, so the plugins still find the
        // veth in its netns; a failure keeps the pod for the next attempt.
        let netns = sandbox.as_ref().and_then(PodSandbox::netns);
        pod_network::detach(&self.network, &record.uid, &record.pod, netns.as_deref())
            .map_err(|e| PodError::Network(e.to_string()))?;
        if let Some(sandbox) = sandbox {
            sandbox.destroy()?;
        }
        let dir = self.config.paths.pod_dir(&record.uid);
        fs::remove_dir_all(&dir).map_err(|e| PodError::io(&dir, e))
    }

    pub fn pause(&self, namespace: &str, name: &str) -> Result<PodRecord, PodError> {
        let record = self.find(namespace, name)?;
        // A pod none of whose containers has started yet has no group.
        let group = self.pod_group(&record.uid)?;
        group.create()?;
        group.freeze()?;
        self.set_paused(&record.uid, true)
    }

    pub fn resume(&self, namespace: &str, name: &str) -> Result<PodRecord, PodError> {
        let record = self.find(namespace, name)?;
        self.pod_group(&record.uid)?.thaw()?;
        self.set_paused(&record.uid, false)
    }

    fn set_paused(&self, uid: &str, paused: bool) -> Result<PodRecord, PodError> {
        let _lock = self.lock(uid)?;
        let mut record = self.load(uid)?;
        record.paused = paused;
        self.save(&record)?;
        Ok(record)
    }

    /// The log file of a container's current (or previous) instance.
    pub fn log_path(
        &self,
        record: &PodRecord,
        container: Option<&str>,
        previous: bool,
    ) -> Result<PathBuf, PodError> {
        let name = match container {
            Some(c) => c.to_string(),
            None if record.pod.spec.containers.len() == 1 => {
                record.pod.spec.containers[0].name.clone()
            }
            None => {
                return Err(PodError::Invalid(format!(
                    "pod {} has {} containers: name one ({})",
                    record.pod.metadata.name,
                    record.pod.spec.containers.len(),
                    record
                        .pod
                        .spec
                        .containers
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        };
        let crec = record.containers.get(&name).ok_or_else(|| {
            PodError::NotFound(format!(
                "container {name} in pod {}",
                record.pod.metadata.name
            ))
        })?;
        let current = crec
            .instance
            .ok_or_else(|| PodError::NotFound(format!("container {name} has not started yet")))?;
        let dir = self.config.paths.log_dir(&record.uid, &name);
        if previous {
            crate::agent::logs::previous_log_path(&dir, current)
                .ok_or_else(|| PodError::NotFound(format!("container {name} has no previous run")))
        } else {
            Ok(crate::agent::logs::instance_log_path(&dir, current))
        }
    }

    /// Whether the instance of `container` is still running (for `logs -f`).
    pub fn is_running(&self, record: &PodRecord, container: &str) -> bool {
        record
            .containers
            .get(container)
            .and_then(|c| c.instance)
            .map(|n| {
                let state =
                    shim::read_state(&self.config.paths.instance_dir(&record.uid, container, n));
                state.exit.is_none() && state.shim_alive()
            })
            .unwrap_or(false)
    }

    /// cgroup figures per container.
    pub fn stats(&self, record: &PodRecord) -> Vec<(String, cgroup::Stats)> {
        let Ok(pod_group) = self.pod_group(&record.uid) else {
            return Vec::new();
        };
        record
            .pod
            .spec
            .containers
            .iter()
            .filter_map(|c| Some((c.name.clone(), pod_group.child(&c.name).ok()?.stats().ok()?)))
            .collect()
    }

    /// The shim state of every container's current instance.
    pub fn instance_states(&self, record: &PodRecord) -> BTreeMap<String, InstanceState> {
        record
            .containers
            .iter()
            .filter_map(|(name, crec)| {
                let dir = self
                    .config
                    .paths
                    .instance_dir(&record.uid, name, crec.instance?);
                Some((name.clone(), shim::read_state(&dir)))
            })
            .collect()
    }
}

/// What a reconcile pass of a pod produced.
struct Pass {
    /// The record as the pass left it (saved if it changed).
    record: PodRecord,
    events: Vec<PodEvent>,
    /// The instance directory prepared for a foreground run.
    prepared: Option<PathBuf>,
    /// When the pod's next restart or pull retry is due, if one waits.
    due: Option<DateTime<Utc>>,
}

/// What one reconcile pass of a pod shares between its containers.
#[derive(Clone, Copy)]
struct PodPass<'a> {
    sandbox: &'a PodSandbox,
    /// The pod's cgroup, made and limited (`pids_max`) as a container starts.
    group: &'a Group,
    pids_max: u64,
    now: DateTime<Utc>,
    /// The pod's ADD, if one runs: a container starts only once it is done.
    network: Option<&'a pod_network::PendingAttach>,
}

/// How a prepared instance is started.
enum Launch<'a> {
    /// Under its own detached shim.
    Shim,
    /// By the caller, in its own process; the instance directory goes here.
    Foreground(&'a mut Option<PathBuf>),
}

/// A pod's hostname: its name, cut to a DNS label's 63 characters.
fn hostname_of(pod: &Pod) -> String {
    let name = &pod.metadata.name;
    name[..name.len().min(63)]
        .trim_end_matches(['-', '.'])
        .to_string()
}

fn terminated_state(
    state: &InstanceState,
    exit: &ExitRecord,
    uid: &str,
    container: &str,
    instance: u32,
) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: exit.exit_code,
        signal: exit.signal,
        reason: exit.reason.clone(),
        message: exit.message.clone(),
        started_at: state.started_at,
        finished_at: Some(exit.finished_at),
        container_id: format!("flotilla://{uid}-{container}-{instance}"),
    }
}

/// The instance's stop signal: the image's `StopSignal` (`SIGQUIT`, `QUIT`
/// or a number), else SIGTERM.
fn stop_signal(instance_dir: &Path) -> Signal {
    fs::read(shim::launch_file(instance_dir))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<LaunchPlan>(&bytes).ok())
        .and_then(|plan| plan.stop_signal)
        .and_then(|name| parse_signal(&name))
        .unwrap_or(Signal::SIGTERM)
}

fn parse_signal(name: &str) -> Option<Signal> {
    if let Ok(number) = name.parse::<i32>() {
        return Signal::try_from(number).ok();
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse().ok()
}

/// Kubernetes' rule: `command` replaces the image's entrypoint, `args` its
/// cmd; `$(VAR)` references expand against the container's environment.
fn command_line(container: &Container, config: &ImageConfig) -> Vec<String> {
    let (entrypoint, cmd) = match (container.command.is_empty(), container.args.is_empty()) {
        (true, true) => (config.entrypoint.clone(), config.cmd.clone()),
        (true, false) => (config.entrypoint.clone(), container.args.clone()),
        (false, true) => (container.command.clone(), Vec::new()),
        (false, false) => (container.command.clone(), container.args.clone()),
    };
    let env = crate::api::env::resolve_env(&container.env);
    let mut line = entrypoint;
    line.extend(cmd);
    crate::api::env::expand_args(&line, &env)
}

/// The image's environment, overridden by the container's (expanded).
fn environment(container: &Container, config: &ImageConfig) -> Vec<String> {
    let mut env: Vec<(String, String)> = config
        .env
        .iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    for (key, value) in crate::api::env::resolve_env(&container.env) {
        env.retain(|(k, _)| *k != key);
        env.push((key, value));
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// A container's cgroup limits from its resources (the pod's group holds the pids limit).
fn container_limits(container: &Container) -> Limits {
    let millis = |q: Option<&crate::api::Quantity>| q.map(|q| q.millis().max(0) as u64);
    let bytes = |q: Option<&crate::api::Quantity>| q.map(|q| q.value().max(0) as u64);
    let mut limits = Limits::from_resources(
        millis(container.resources.requests.cpu.as_ref()),
        millis(container.resources.limits.cpu.as_ref()),
        bytes(container.resources.limits.memory.as_ref()),
        None,
    );
    limits.pids_max = None;
    limits
}
