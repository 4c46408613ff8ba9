//! How a CLI verb sees the cluster: a [`Fleet`] of node sessions, read once
//! every node has settled (or the wait is over), then stopped; or, for
//! `--watch`, read again after every change until the verb is interrupted.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use crate::agent::protocol::messages::PodRecord;
use crate::cluster::ClusterSnapshot;
use crate::config::cluster_file::ClusterConfig;
use crate::config::paths::Dirs;
use crate::controller::replicated::ReplicatedStore;
use crate::controller::world::{KIND_NODE, KIND_POD, NodeFlags, PendingPod};
use crate::ssh::bootstrap::AgentBinary;
use crate::ssh::digest_cache::DigestCache;
use crate::ssh::fleet::Fleet;
use crate::ssh::session::SessionOptions;
use crate::ssh::target::TargetContext;

/// Connects to every node and returns the cluster as it stands once each
/// node has settled, or after `wait`.
pub async fn observe(
    cluster: &ClusterConfig,
    dirs: &Dirs,
    wait: Duration,
) -> anyhow::Result<Arc<ClusterSnapshot>> {
    let fleet = connect(cluster, dirs, wait).await?;
    apply_node_flags(&fleet).await;
    let snapshot = fleet.state().snapshot();
    fleet.stop().await;
    Ok(snapshot)
}

/// [`observe`], plus the pods waiting in the cluster's store for a node
/// (as records with no uid, Pending with the scheduler's reason). Without a
/// majority to read the store from, the placed pods alone.
pub async fn observe_pods(
    cluster: &ClusterConfig,
    dirs: &Dirs,
    wait: Duration,
) -> anyhow::Result<(Arc<ClusterSnapshot>, Vec<PodRecord>)> {
    let fleet = connect(cluster, dirs, wait).await?;
    let store = ReplicatedStore::new(Arc::new(fleet.handle()));
    let pending = match store.list(KIND_POD, None).await {
        Ok(records) => records
            .into_iter()
            .filter_map(|r| serde_json::from_value::<PendingPod>(r.object?).ok())
            .map(|p| PodRecord {
                uid: String::new(),
                pod: p.pod,
                status: p.status,
            })
            .collect(),
        Err(err) => {
            tracing::debug!("pending pods not read: {err}");
            Vec::new()
        }
    };
    let snapshot = fleet.state().snapshot();
    fleet.stop().await;
    Ok((snapshot, pending))
}

/// Marks cordoned nodes in the fleet's state, from the cluster's store.
/// Without a majority to read from, nodes show as the sessions see them.
pub async fn apply_node_flags(fleet: &Fleet) {
    let store = ReplicatedStore::new(Arc::new(fleet.handle()));
    let flags = match store.list(KIND_NODE, Some("")).await {
        Ok(flags) => flags,
        Err(err) => {
            tracing::debug!("node flags not read: {err}");
            return;
        }
    };
    for record in flags {
        let Some(flags) = record
            .object
            .and_then(|o| serde_json::from_value::<NodeFlags>(o).ok())
        else {
            continue;
        };
        if let Ok(node) = fleet.state().node(&record.name) {
            node.update(|n| n.set_unschedulable(flags.unschedulable));
        }
    }
}

/// Starts a session per node and returns once each has settled, or after
/// `wait`, for a verb that also sends requests (through [`Fleet::client`]).
/// The caller stops the fleet.
pub async fn connect(
    cluster: &ClusterConfig,
    dirs: &Dirs,
    wait: Duration,
) -> anyhow::Result<Fleet> {
    let fleet = start(cluster, dirs)?;
    fleet.settled(wait).await;
    Ok(fleet)
}

/// Connects to every node and calls `show` with the cluster once each node
/// has settled (or after `wait`), then after every change, until `show`
/// breaks or the process gets SIGINT or SIGTERM; then closes the sessions.
/// Changes come as fast as the nodes report (about one per node a second);
/// a `show` slower than that sees only the latest.
pub async fn watch(
    cluster: &ClusterConfig,
    dirs: &Dirs,
    wait: Duration,
    mut show: impl FnMut(&ClusterSnapshot) -> ControlFlow<()>,
) -> anyhow::Result<()> {
    let mut interrupted = std::pin::pin!(interrupted()?);
    let fleet = start(cluster, dirs)?;
    // Figures go stale with no message at all: someone has to look.
    let ticker = fleet.state().spawn_ticker(Duration::from_secs(1));
    let mut changes = fleet.state().subscribe();
    let settled = tokio::select! {
        _ = fleet.settled(wait) => true,
        _ = &mut interrupted => false,
    };
    if settled {
        loop {
            let snapshot = Arc::clone(&changes.borrow_and_update());
            if show(&snapshot).is_break() {
                break;
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { break },
                _ = &mut interrupted => break,
            }
        }
    }
    ticker.abort();
    fleet.stop().await;
    Ok(())
}

/// The fleet of sessions to every node of `cluster`.
pub fn start(cluster: &ClusterConfig, dirs: &Dirs) -> anyhow::Result<Fleet> {
    start_with(cluster, dirs, SessionOptions::default())
}

/// [`start`] with the sessions' options (the console replays events).
pub fn start_with(
    cluster: &ClusterConfig,
    dirs: &Dirs,
    options: SessionOptions,
) -> anyhow::Result<Fleet> {
    let context = TargetContext::from_env(dirs)?;
    let cache = DigestCache::in_dir(&dirs.cache);
    let binary = Arc::new(AgentBinary::locate(Some(&cache))?);
    Ok(Fleet::start(cluster, &context, binary, options))
}

/// Resolves at the first SIGINT or SIGTERM, which then end a watch cleanly
/// (sessions closed) instead of killing the process.
fn interrupted() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}
