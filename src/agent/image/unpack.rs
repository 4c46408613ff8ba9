//! Applying one layer's tar stream to its own directory, safely. (Placeholder
//! interface: the real implementation replaces this file.)

use std::io::Read;
use std::path::{Path, PathBuf};

/// What applying a layer did.
#[derive(Debug, Default, Clone)]
pub struct UnpackStats {
    /// Entries written (files, directories, links, whiteouts).
    pub entries: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
    /// Paths of device nodes the layer held and we did not create.
    pub skipped_devices: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {entry:?}: {reason}")]
    Refused { entry: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading the layer's tar stream: {0}")]
    Tar(std::io::Error),
}

/// Applies the tar stream `tar` to `dest`, an existing empty directory that
/// becomes one overlayfs lower layer.
pub fn apply_layer(_tar: impl Read, dest: &Path) -> Result<UnpackStats, UnpackError> {
    Err(UnpackError::Refused {
        entry: dest.display().to_string(),
        reason: "not implemented yet".into(),
    })
}
