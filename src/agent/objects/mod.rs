//! The agent's share of cluster state beyond its own pods: the replicated
//! object store (deployments, node flags, each with a generation; a reader
//! takes the highest generation among the agents) and the controller lease
//! (one reconciling process at a time, by majority of the agents). Both are
//! small on purpose: the agent orders versions and times leases, and knows
//! nothing of what the objects mean; the console validates, merges and
//! decides.
//!
//! ```text
//! store.rs   objects and tombstones by (kind, namespace, name), generation rules
//! lease.rs   the controller lease: grant, renew, release, terms, restart rule
//! files.rs   crash-safe small files (temporary file, fsync, rename, fsync dir)
//! ```
//!
//! On disk, under the agent's root: `ROOT/objects/` (see [`store`] and
//! [`lease`]).

pub mod files;
pub mod lease;
pub mod store;

#[cfg(test)]
mod tests;

pub use lease::{Grant, Lease, LeaseError, LeaseKeeper};
pub use store::{ObjectKey, ObjectStore, Put, PutOutcome, StoreError, StoredObject};
