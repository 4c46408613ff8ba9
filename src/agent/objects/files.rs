//! Small files that survive a crash whole or not at all: the object store's
//! objects and the lease's term. A write goes to a temporary file in the
//! same directory, is fsynced, renamed over the target, and then the
//! directory is fsynced so the rename itself is on disk. A crash leaves
//! either the old file or the new one, plus at worst a temporary file,
//! which readers skip and [`remove_temporaries`] clears at start.

use std::fs::{self, DirBuilder, File};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Temporary files start with this. Object names start with a letter or a
/// digit and the lease's files are named by us, so no real file does.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Writes `bytes` as `dir/file_name`, atomically and durably (see the
/// module comment). Files are 0600: objects may carry a pod's environment.
pub fn write_atomic(dir: &Path, file_name: &str, bytes: &[u8]) -> io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // Short on purpose: `<name>.json.tmp` would pass the 255-byte limit on
    // file names for the longest object names.
    let tmp = dir.join(format!(
        "{TEMP_PREFIX}{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, dir.join(file_name))?;
        sync_dir(dir)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Makes `dir`'s entries (a rename, a new file or directory) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing parents (mode 0700), fsyncing each parent
/// that gained an entry: a new object's file is only as durable as the
/// directories that lead to it.
pub fn create_dir_durable(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        create_dir_durable(parent)?;
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => parent.map_or(Ok(()), sync_dir),
        // Another writer made it meanwhile: its creator syncs the parent.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether a directory entry is a temporary file of [`write_atomic`].
pub fn is_temporary(file_name: &str) -> bool {
    file_name.starts_with(TEMP_PREFIX)
}

/// Removes the temporary files a crash left in `dir` (torn writes: their
/// target still holds its previous content). Only at start, before this
/// process writes anything there.
pub fn remove_temporaries(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if is_temporary(&entry.file_name().to_string_lossy()) {
            tracing::info!(path = %entry.path().display(), "removing a torn write");
            let _ = fs::remove_file(entry.path());
        }
    }
}
