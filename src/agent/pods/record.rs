//! The persisted record of one pod (`pod.json`): its spec, what the agent
//! should do with it, and per container what the kubelet would remember —
//! which instance is current, restarts, the back-off streak, why it waits,
//! and how the last run ended. Containers' live facts (pid, exit) are in the
//! shims' state files; this file is what survives the agent.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::backoff::BackOffState;
use super::layout::AgentPaths;
use crate::agent::objects::files::sync_dir;
use crate::api::Pod;
use crate::api::status::ContainerStateTerminated;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Desired {
    /// Keep the containers running as the restart policy says.
    Running,
    /// Stop every container and start none (stopped, killed, or being deleted).
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodRecord {
    pub uid: String,
    pub pod: Pod,
    pub created_at: DateTime<Utc>,
    pub desired: Desired,
    #[serde(default)]
    pub paused: bool,
    /// Removed as soon as its containers end (`run --rm`): nothing about it
    /// needs to survive a crash of the host, so it lives under the run
    /// directory (tmpfs, see [`super::layout`]) and its record is saved
    /// without an fsync (see [`save`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ephemeral: bool,
    #[serde(default)]
    pub containers: BTreeMap<String, ContainerRecord>,
    /// The pod's address on the node's pod network, once attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<PodAddress>,
    /// Why the last attempt to attach it failed (the plugin's message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_error: Option<String>,
}

/// Where the pod is on the pod network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodAddress {
    pub ip: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// The current instance (its directory under the container's), if any started.
    pub instance: Option<u32>,
    pub restart_count: u32,
    #[serde(default)]
    pub backoff: BackOffState,
    /// Not before this time may the next attempt (start or pull) be made.
    pub next_attempt: Option<DateTime<Utc>>,
    /// Why the container waits, when it does not run: `ContainerCreating`,
    /// `ErrImagePull`, `ImagePullBackOff`, `CrashLoopBackOff`, …
    pub waiting_reason: Option<String>,
    pub waiting_message: Option<String>,
    /// The end of the instance before the current one.
    pub last_termination: Option<ContainerStateTerminated>,
    /// The end of the current instance, once handled (restart decided).
    pub handled_exit: Option<ContainerStateTerminated>,
    pub image_ref: String,
    pub image_id: String,
}

/// 64 random bits from the kernel, for a new pod's uid or a generated name.
/// Not `rand`'s thread generator: seeding it probes the CPU's features
/// (CPUID, which traps to the hypervisor on a VM), once per `run`.
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let mut filled = 0;
    while filled < bytes.len() {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            // Only a kernel older than 3.17 lacks getrandom; flotilla needs newer.
            Err(_) => return rand::random(),
        }
    }
    u64::from_ne_bytes(bytes)
}

/// A pod's lock, held while its record changes (by the daemon or the CLI).
pub struct PodLock {
    _file: File,
}

/// Takes the pod's lock. The lock file is made with the pod
/// ([`create_lock`]) and never here: a pass that lists a pod just before it
/// is removed would otherwise put the file back into the directory being
/// removed. NotFound: the pod is gone.
pub fn lock(paths: &AgentPaths, uid: &str) -> std::io::Result<PodLock> {
    take_lock(File::options().write(true).open(paths.pod_lock(uid))?)
}

/// Makes a new pod's lock file, in its freshly made directory, and takes
/// the lock.
pub fn create_lock(paths: &AgentPaths, uid: &str) -> std::io::Result<PodLock> {
    take_lock(
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(paths.pod_lock(uid))?,
    )
}

fn take_lock(file: File) -> std::io::Result<PodLock> {
    file.lock()?;
    Ok(PodLock { _file: file })
}

pub fn load(path: &Path) -> std::io::Result<PodRecord> {
    let bytes = fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

/// Saves atomically (temporary file, fsync, rename, fsync of the pod's
/// directory, and of the pods directory on the first save, so a pod
/// created just before a power cut is still there after it). An ephemeral
/// pod's record skips the fsyncs: it is on tmpfs, where an fsync does
/// nothing but cost a system call per save (a `run --rm` saves five
/// times). The rename still makes every save all-or-nothing for readers.
pub fn save(paths: &AgentPaths, record: &PodRecord) -> std::io::Result<()> {
    use std::io::Write;
    let path = paths.pod_file(&record.uid);
    // Whether this save makes the pod's entry in the pods directory.
    let first = !record.ephemeral && !path.exists();
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    let mut file = File::create(&tmp)?;
    file.write_all(&bytes)?;
    if !record.ephemeral {
        file.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    if !record.ephemeral {
        let dir = path.parent().unwrap_or(Path::new("."));
        sync_dir(dir)?;
        if first && let Some(pods) = dir.parent() {
            sync_dir(pods)?;
        }
    }
    Ok(())
}

/// Every pod record, under the root and (ephemeral pods) under the run
/// directory, skipping (and logging) unreadable ones.
pub fn load_all(paths: &AgentPaths) -> Vec<PodRecord> {
    let mut records: Vec<PodRecord> = [paths.pods_dir(), paths.ephemeral_pods_dir()]
        .iter()
        .filter_map(|dir| fs::read_dir(dir).ok())
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let path = e.path().join("pod.json");
            match load(&path) {
                Ok(record) => Some(record),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
                Err(err) => {
                    tracing::warn!(error = %err, "skipping an unreadable pod record");
                    None
                }
            }
        })
        .collect();
    records.sort_by_key(|a| a.created_at);
    records
}
