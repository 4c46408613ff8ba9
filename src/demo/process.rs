//! The demo's daemons' logs; process identity lives in `crate::procfs`.

use std::fs::File;
use std::path::Path;

pub use crate::procfs::*;

use super::DemoError;

/// Opens a daemon's log for appending, twice: one handle for stdout, one for stderr.
pub fn open_log(path: &Path) -> Result<(File, File), DemoError> {
    let file = File::options()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| DemoError::io(path, e))?;
    let again = file.try_clone().map_err(|e| DemoError::io(path, e))?;
    Ok((file, again))
}
