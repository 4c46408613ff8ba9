//! What the operator chose or trusted, and where it lives: the cluster file
//! (`cluster.toml`) and flotilla's directories on the operator's machine.

pub mod cluster_file;
pub mod paths;
