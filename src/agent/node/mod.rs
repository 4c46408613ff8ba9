//! What the agent knows of its own host: static facts (hostname, OS, kernel,
//! architecture, CPUs, memory, the disk of the agent root, boot time) and
//! metrics sampled every second into a ten-minute ring the console draws
//! sparklines from. Parsing is pure ([`procfs`]); reading files and the
//! sampling task are thin layers over it.

pub mod facts;
pub mod metrics;
pub mod procfs;

pub use facts::{DiskUsage, NodeFacts, disk_usage, read_facts};
pub use metrics::{MetricsHandle, MetricsSample, MetricsSeries, Sampler, spawn_sampler};

/// Why a fact or a sample could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{file} line {line}: {what}")]
    Parse {
        file: &'static str,
        line: usize,
        what: &'static str,
    },
    #[error("cannot stat the file system of {path}: {source}")]
    Statvfs { path: String, source: nix::Error },
    #[error("cannot read the hostname: {0}")]
    Hostname(nix::Error),
}

/// Reads a small kernel or config file as text.
pub(crate) fn read_text(path: &std::path::Path) -> Result<String, NodeError> {
    std::fs::read_to_string(path).map_err(|source| NodeError::Read {
        path: path.display().to_string(),
        source,
    })
}
