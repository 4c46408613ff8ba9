//! How a CLI verb sees the cluster: a [`Fleet`] of node sessions, read once
//! every node has settled (or the wait is over), then stopped.

use std::sync::Arc;
use std::time::Duration;

use crate::cluster::ClusterSnapshot;
use crate::config::cluster_file::ClusterConfig;
use crate::config::paths::Dirs;
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
    let context = TargetContext::from_env(dirs)?;
    let cache = DigestCache::in_dir(&dirs.cache);
    let binary = Arc::new(AgentBinary::locate(Some(&cache))?);
    let fleet = Fleet::start(cluster, &context, binary, SessionOptions::default());
    fleet.settled(wait).await;
    let snapshot = fleet.state().snapshot();
    fleet.stop().await;
    Ok(snapshot)
}
