//! A pod's place on the node's pod network: its address (CNI ADD) before its
//! containers start, the address released (CNI DEL) when it is removed, and
//! attachments whose pods are gone cleaned up. A pod with `hostNetwork`, or
//! on a node the controller has not configured yet, has no attachment.
//!
//! The ADD runs on a thread of its own while the pod's containers are
//! prepared ([`begin_attach`]); a container waits for it only right before
//! it starts ([`PendingAttach::wait`]), and [`finish_attach`] records the
//! outcome in the pod's record.

use std::cell::RefCell;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::manager::PodEvent;
use super::record::{PodAddress, PodRecord};
use crate::agent::network::node::NodeNetwork;
use crate::agent::network::{Attachment, NetworkError, PortMapping};
use crate::api::{Pod, Protocol};

/// The waiting reason of containers whose pod has no address yet because
/// the network plugins failed; the message is the plugin's.
pub const NETWORK_FAILED: &str = "NetworkSetupFailed";

/// The pod's `hostPort`s, for portmap.
pub fn host_ports(pod: &Pod) -> Vec<PortMapping> {
    pod.spec
        .containers
        .iter()
        .flat_map(|c| &c.ports)
        .filter(|p| p.host_port > 0)
        .map(|p| PortMapping {
            host_port: p.host_port as u16,
            container_port: p.container_port as u16,
            protocol: match p.protocol {
                Protocol::Udp => "udp".into(),
                // portmap has no SCTP; validation refuses it for hostPort.
                Protocol::Tcp | Protocol::Sctp => "tcp".into(),
            },
            host_ip: None,
        })
        .collect()
}

/// What an ADD comes to: the attachment, or `None` on a node without pod
/// network settings.
type Added = Result<Option<Attachment>, NetworkError>;

/// A pod's CNI ADD running on a thread of its own while the pod's
/// containers are prepared (image, directories, cgroups, the layers'
/// lease, the launch plan): the ADD (bridge and host-local, two Go
/// processes, 15 to 50 ms on the 2-core demo VM) and that preparation
/// (files and cgroups, with fsyncs: about as long) need nothing of each
/// other, and only the start of a container must wait for the address. A
/// container waits with [`PendingAttach::wait`], right before it starts.
pub struct PendingAttach {
    started: Instant,
    /// The ADD's thread, until a wait joins it.
    running: RefCell<Option<JoinHandle<(Added, Duration)>>>,
    /// Its outcome once joined: what it came to, how long it took, and how
    /// long a container's start waited for it.
    done: RefCell<Option<(Added, Duration, Duration)>>,
}

impl PendingAttach {
    fn new(
        started: Instant,
        running: Option<JoinHandle<(Added, Duration)>>,
        done: Option<Added>,
    ) -> Self {
        PendingAttach {
            started,
            running: RefCell::new(running),
            done: RefCell::new(done.map(|added| (added, Duration::ZERO, Duration::ZERO))),
        }
    }

    /// Waits for the ADD (the first time); whether the pod has its address
    /// (or needs none), so its containers may start. A panic in the ADD is
    /// this thread's, as if the ADD had run here.
    pub fn wait(&self) -> bool {
        if let Some(handle) = self.running.borrow_mut().take() {
            let waiting = Instant::now();
            let (added, took) = handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            *self.done.borrow_mut() = Some((added, took, waiting.elapsed()));
        }
        matches!(&*self.done.borrow(), Some((Ok(_), _, _)))
    }

    /// The ADD's outcome, how long it took, and how long a start waited.
    fn finish(self) -> (Added, Duration, Duration) {
        self.wait();
        self.done
            .borrow_mut()
            .take()
            .expect("a waited-for ADD has an outcome")
    }
}

impl Drop for PendingAttach {
    /// A pass that ends early (an error) still waits for its ADD: the next
    /// pass, under the same pod lock, must find it done (its result saved,
    /// so that its ADD is a CHECK), not race it. Not while unwinding: the
    /// thread is left to finish on its own.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.wait();
        }
    }
}

/// Starts giving the pod its address in the netns at `netns`, on a thread
/// of its own (which inherits this thread's network namespace, the node's,
/// where the plugins must run); `None` when the pod has one or needs none.
/// Hand the result to [`finish_attach`].
pub fn begin_attach(
    network: &NodeNetwork,
    record: &PodRecord,
    netns: &Path,
) -> Option<PendingAttach> {
    if record.pod.spec.host_network || record.network.is_some() {
        return None;
    }
    let started = Instant::now();
    let pod_network = match network.pod_network() {
        Ok(Some(pod_network)) => pod_network,
        done => return Some(PendingAttach::new(started, None, Some(done.map(|_| None)))),
    };
    let (uid, netns, ports) = (
        record.uid.clone(),
        netns.to_path_buf(),
        host_ports(&record.pod),
    );
    let handle = std::thread::spawn(move || {
        let added = pod_network.add(&uid, &netns, &ports).map(Some);
        (added, started.elapsed())
    });
    Some(PendingAttach::new(started, Some(handle), None))
}

/// Records how the pod's ADD went (waiting for it if no container did).
/// False while the pod has no address: its containers must not start yet,
/// and wait with the plugin's message as their reason.
pub fn finish_attach(
    pending: Option<PendingAttach>,
    record: &mut PodRecord,
    events: &mut Vec<PodEvent>,
) -> bool {
    let Some(pending) = pending else {
        return true;
    };
    let started = pending.started;
    let (result, took, waited) = pending.finish();
    match result {
        Ok(None) => true,
        Ok(Some(attachment)) => {
            tracing::info!(
                pod = %record.pod.metadata.name,
                ip = %attachment.ip,
                ms = took.as_secs_f64() * 1000.0,
                waited_ms = waited.as_secs_f64() * 1000.0,
                total_ms = started.elapsed().as_secs_f64() * 1000.0,
                "pod network attached"
            );
            record.network = Some(PodAddress {
                ip: attachment.ip.to_string(),
            });
            record.network_error = None;
            for container in record.containers.values_mut() {
                if container.waiting_reason.as_deref() == Some(NETWORK_FAILED) {
                    container.waiting_reason = None;
                    container.waiting_message = None;
                }
            }
            true
        }
        Err(err) => {
            let message = format!("setting up the pod's network: {err}");
            if record.network_error.as_deref() != Some(message.as_str()) {
                tracing::warn!(pod = %record.pod.metadata.name, error = %err, "pod network setup failed");
                events.push(PodEvent {
                    warning: true,
                    reason: "FailedCreatePodSandBox".into(),
                    message: message.clone(),
                    namespace: record.pod.metadata.namespace.clone(),
                    pod: record.pod.metadata.name.clone(),
                    container: String::new(),
                    uid: record.uid.clone(),
                    phase: None,
                });
            }
            for container in &record.pod.spec.containers {
                let crec = record.containers.entry(container.name.clone()).or_default();
                if crec.instance.is_none() {
                    crec.waiting_reason = Some(NETWORK_FAILED.into());
                    crec.waiting_message = Some(message.clone());
                }
            }
            record.network_error = Some(message);
            false
        }
    }
}

/// Releases the pod's address, port mappings and veth (CNI DEL). Safe to
/// call for a pod that never had them, and again after a failure.
pub fn detach(
    network: &NodeNetwork,
    uid: &str,
    pod: &Pod,
    netns: Option<&Path>,
) -> Result<(), NetworkError> {
    let Some(pod_network) = network.teardown_network() else {
        return Ok(());
    };
    if pod_network.attachment(uid).is_none() {
        return Ok(());
    }
    let netns = netns.filter(|p| p.exists());
    pod_network.del(uid, netns, &host_ports(pod))
}

/// Releases attachments whose pods no longer exist (an agent that died
/// between removing a pod and releasing its address, or a node that lost
/// power before a saved result reached the disk): every id with a saved
/// result or a host-local lease that is not a pod on record. `live` lists
/// the uids of the pods on record; it is asked after the ids are read, so a
/// pod created meanwhile (its record is written before its ADD) counts as
/// live.
pub fn sweep(network: &NodeNetwork, live: impl FnOnce() -> Vec<String>) {
    let Some(pod_network) = network.teardown_network() else {
        return;
    };
    let mut ids = pod_network.attached_ids();
    ids.extend(pod_network.leased_ids());
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return;
    }
    let live = live();
    for uid in ids {
        if live.contains(&uid) {
            continue;
        }
        match pod_network.del(&uid, None, &[]) {
            Ok(()) => tracing::info!(uid, "released the address of a pod that is gone"),
            Err(err) => {
                tracing::warn!(uid, error = %err, "cannot release the address of a pod that is gone")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::network::node::default_plugin_dirs;
    use crate::agent::pods::record::Desired;
    use crate::agent::protocol::messages::NetworkSettings;
    use crate::api::{Container, ObjectMeta, PodSpec};

    /// One whole attach, as a pass makes it: [`begin_attach`], then
    /// [`finish_attach`].
    fn attach(
        network: &NodeNetwork,
        record: &mut PodRecord,
        netns: &Path,
        events: &mut Vec<PodEvent>,
    ) -> bool {
        let pending = begin_attach(network, record, netns);
        finish_attach(pending, record, events)
    }

    fn waiting(i: usize) -> PodRecord {
        PodRecord {
            uid: format!("uid-{i}"),
            pod: Pod::new(
                ObjectMeta {
                    name: format!("web-{i}"),
                    namespace: "default".into(),
                    ..Default::default()
                },
                PodSpec {
                    containers: vec![Container {
                        name: "main".into(),
                        image: "busybox".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ),
            created_at: chrono::Utc::now(),
            desired: Desired::Running,
            paused: false,
            ephemeral: false,
            containers: Default::default(),
            network: None,
            network_error: None,
        }
    }

    /// A pass over pods waiting for an address reads the node's settings
    /// once, not once a pod: settings that appear on disk after the first
    /// pod was looked at (which only a test does behind the agent's back)
    /// are not seen by the others, which would try, and fail, to attach.
    #[test]
    fn a_pass_over_waiting_pods_reads_the_settings_at_most_once() {
        let root = tempfile::tempdir().expect("tempdir");
        let network = NodeNetwork::new(root.path(), default_plugin_dirs(root.path()));
        let netns = root.path().join("no-such-netns");
        let mut events = Vec::new();
        let mut first = waiting(0);
        assert!(attach(&network, &mut first, &netns, &mut events));
        write_settings(root.path());
        for i in 1..20 {
            let mut record = waiting(i);
            assert!(
                attach(&network, &mut record, &netns, &mut events),
                "pod {i} saw settings written after the pass began"
            );
            assert!(record.network.is_none() && record.network_error.is_none());
        }
        assert!(events.is_empty(), "{events:?}");
    }

    /// Writes the node's network settings (pod subnet 10.88.1.0/24) under
    /// `root`, as `network.configure` would; returns the network dir.
    fn write_settings(root: &std::path::Path) -> std::path::PathBuf {
        let dir = root.join("network");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let settings = NetworkSettings {
            pod_subnet: "10.88.1.0/24".into(),
            cluster_cidr: "10.88.0.0/16".into(),
            routes: Vec::new(),
        };
        std::fs::write(
            dir.join("settings.json"),
            serde_json::to_vec(&settings).expect("json"),
        )
        .expect("write");
        dir
    }

    /// The start-up sweep DELs every id with a lease or a saved result
    /// whose pod is not on record, by id alone when its result is lost.
    #[test]
    fn the_sweep_releases_leases_and_results_of_pods_that_are_gone() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().expect("tempdir");
        let plugins = root.path().join("plugins");
        std::fs::create_dir_all(&plugins).expect("mkdir");
        let log = root.path().join("calls.log");
        for name in crate::agent::network::REQUIRED_PLUGINS {
            let script = format!(
                "#!/bin/sh\n\
                 cat >/dev/null\n\
                 if [ \"$CNI_COMMAND\" = VERSION ]; then \
                 echo '{{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"1.0.0\"]}}'; exit 0; fi\n\
                 echo \"$CNI_COMMAND {name} $CNI_CONTAINERID\" >> {}\n",
                log.display()
            );
            let path = plugins.join(name);
            std::fs::write(&path, script).expect("write plugin");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let network = NodeNetwork::new(root.path(), vec![plugins]);
        let dir = write_settings(root.path());
        let leases = dir.join("cni/ipam/flotilla");
        std::fs::create_dir_all(&leases).expect("mkdir");
        std::fs::write(leases.join("10.88.1.2"), "live-1\r\neth0").expect("lease");
        std::fs::write(leases.join("10.88.1.3"), "gone-1\r\neth0").expect("lease");
        let results = dir.join("cni/results");
        std::fs::create_dir_all(&results).expect("mkdir");
        // Torn: the sweep still releases it, without a prevResult.
        std::fs::write(results.join("gone-2.json"), "{").expect("result");

        let mut asked = false;
        sweep(&network, || {
            asked = true;
            vec!["live-1".to_string()]
        });
        assert!(asked);
        let calls = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(
            calls.lines().collect::<Vec<_>>(),
            ["DEL bridge gone-1", "DEL bridge gone-2"]
        );
        assert!(!results.join("gone-2.json").exists());
    }
}
