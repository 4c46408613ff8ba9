//! The controller: turns desired state (pods, deployments) into agent calls,
//! reconciles replicas, reschedules off lost nodes and fences nodes that come
//! back, and gives each node its share of the pod network, while holding
//! the cluster lease.

pub mod agents;
pub mod events;
pub mod lease;
pub mod naming;
pub mod network;
pub mod ops;
pub mod plan;
pub mod replicated;
pub mod run;
pub mod status;
pub mod world;
