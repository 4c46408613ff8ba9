//! How a CLI verb sees the cluster: a [`Fleet`] of node sessions, read once
//! every node has settled (or the wait is over), then stopped.

use std::sync::Arc;
use std::time::Duration;

use crate::cluster::ClusterSnapshot;
use crate::config::cluster_file::ClusterConfig;
use crate::config::paths::Dirs;
use crate::ssh::bootstrap::AgentBinary;
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
    let snapshot = fleet.state().snapshot();
    fleet.stop().await;
    Ok(snapshot)
}

/// Starts a session per node and returns once each has settled, or after
/// `wait`, for a verb that also sends requests (through [`Fleet::client`]).
/// The caller stops the fleet.
pub async fn connect(
    cluster: &ClusterConfig,
    dirs: &Dirs,
    wait: Duration,
) -> anyhow::Result<Fleet> {
    let context = TargetContext::from_env(dirs)?;
    let binary = Arc::new(AgentBinary::locate()?);
    let fleet = Fleet::start(cluster, &context, binary, SessionOptions::default());
    fleet.settled(wait).await;
    Ok(fleet)
}
