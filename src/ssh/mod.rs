//! SSH as OpenSSH users expect it: host-key verification against known_hosts,
//! authentication, and command execution over one connection per node.

pub mod known_hosts;

pub use known_hosts::{HostKeyDecision, KnownHostsError, RecordedKey};
