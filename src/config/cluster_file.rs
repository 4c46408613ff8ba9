//! The cluster file (`cluster.toml`).
