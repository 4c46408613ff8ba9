//! The controller: turns desired state (pods, deployments) into agent calls,
//! reconciles replicas, reschedules off lost nodes and fences nodes that come
//! back, while holding the cluster lease.

pub mod agents;
pub mod lease;
pub mod replicated;
