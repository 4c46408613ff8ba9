//! The host agent (`flotilla-agent`): everything that runs on a host — images,
//! containers, shims, logs, metrics and the node's share of cluster state
//! (the replicated object store and the controller lease, in `objects`),
//! and pod networking (CNI plugins and host-gw routes, in `network`).
//! It is self-contained: it never imports `tui`, `controller` or `scheduler`.

pub mod cgroup;
pub mod cli;
pub mod daemon;
pub mod image;
pub mod logs;
pub mod network;
pub mod node;
pub mod objects;
pub mod pods;
pub mod protocol;
pub mod runtime;
