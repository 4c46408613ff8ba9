//! Placeholder: connects to every node and returns a snapshot once each is
//! Ready with figures or has failed its first attempt. Replaced on merge.

use std::sync::Arc;
use std::time::Duration;

use crate::cluster::ClusterSnapshot;
use crate::config::cluster_file::ClusterConfig;
use crate::config::paths::Dirs;

pub async fn observe(
    cluster: &ClusterConfig,
    dirs: &Dirs,
    wait: Duration,
) -> anyhow::Result<Arc<ClusterSnapshot>> {
    let _ = (cluster, dirs, wait);
    todo!()
}
