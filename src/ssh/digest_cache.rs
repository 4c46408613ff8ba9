//! The agent binary's digest, remembered between runs of `flotilla`.
//!
//! Hashing the agent costs most of a cold `flotilla get nodes` (about a
//! second for a 190 MB debug build, tens of ms for a release one), and the
//! file rarely changes. This module owns one small JSON file in flotilla's
//! cache directory that maps a file's identity — canonical path, device,
//! inode, size, mtime and ctime in nanoseconds — to its SHA-256 and ELF
//! architecture. ctime is in the key because nobody can set it: a file
//! rewritten in place with its old size and mtime restored still misses.
//!
//! The cache only ever saves time: a miss, an unreadable or corrupt file, or
//! a failed write means the file is hashed as before, and is logged at
//! debug. It is trusted as far as the user's home is; a wrong digest could
//! not put a wrong binary on a host anyway, since the host checks an
//! upload's digest before using it.

use std::fs::{self, File, Metadata};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The cache file's name inside flotilla's cache directory.
pub const CACHE_FILE_NAME: &str = "agent-digests.json";
/// Files remembered: a debug and a release build, tests' copies, a few old ones.
const MAX_ENTRIES: usize = 16;
/// A file changed this recently is hashed but not remembered: another
/// write within the same timestamp tick could leave its key unchanged
/// (git's "racily clean" entries).
const FRESH_WINDOW: Duration = Duration::from_secs(2);

/// What is remembered of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// Lowercase hex SHA-256.
    pub sha256: String,
    /// Rust's name for the ELF header's architecture.
    pub arch: String,
}

/// The cache file; see the module comment.
#[derive(Debug, Clone)]
pub struct DigestCache {
    file: PathBuf,
    fresh_window: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Key {
    path: PathBuf,
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    #[serde(flatten)]
    key: Key,
    sha256: String,
    arch: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    /// Newest first.
    entries: Vec<Entry>,
}

impl Key {
    fn of(path: &Path, meta: &Metadata) -> std::io::Result<Key> {
        let ns = |secs: i64, nsec: i64| secs.saturating_mul(1_000_000_000).saturating_add(nsec);
        Ok(Key {
            path: fs::canonicalize(path)?,
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        })
    }

    fn fresh(&self, window: Duration) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let window = i64::try_from(window.as_nanos()).unwrap_or(i64::MAX);
        now.saturating_sub(self.mtime_ns.max(self.ctime_ns)) < window
    }
}

impl DigestCache {
    /// The cache in `dir` (flotilla's cache directory), created on first write.
    pub fn in_dir(dir: &Path) -> DigestCache {
        DigestCache {
            file: dir.join(CACHE_FILE_NAME),
            fresh_window: FRESH_WINDOW,
        }
    }

    pub fn path(&self) -> &Path {
        &self.file
    }

    /// The digest of `file`, open at `path`: remembered if its key matches,
    /// else `compute`d and remembered (unless the file changed meanwhile
    /// or just now). Only `compute` can fail.
    pub fn digest<E>(
        &self,
        path: &Path,
        file: &File,
        compute: impl FnOnce() -> Result<Digest, E>,
    ) -> Result<Digest, E> {
        let key = match file.metadata().and_then(|meta| Key::of(path, &meta)) {
            Ok(key) => Some(key),
            Err(e) => {
                tracing::debug!(path = %path.display(), "agent digest cache: cannot stat: {e}");
                None
            }
        };
        if let Some(hit) = key.as_ref().and_then(|key| self.lookup(key)) {
            tracing::debug!(path = %path.display(), "agent digest cache: hit");
            return Ok(hit);
        }
        let digest = compute()?;
        let Some(key) = key else { return Ok(digest) };
        // The key is taken again: a file written while it was hashed may
        // not match the digest, and must not be remembered under either key.
        let unchanged = file
            .metadata()
            .and_then(|meta| Key::of(path, &meta))
            .is_ok_and(|after| after == key);
        if !unchanged || key.fresh(self.fresh_window) {
            tracing::debug!(path = %path.display(), unchanged, "agent digest cache: not stored (file changing)");
        } else if let Err(e) = self.store(key, &digest) {
            tracing::debug!(cache = %self.file.display(), "agent digest cache: not stored: {e}");
        }
        Ok(digest)
    }

    fn read(&self) -> Option<CacheFile> {
        let text = match fs::read(&self.file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::debug!(cache = %self.file.display(), "agent digest cache unreadable: {e}");
                return None;
            }
        };
        match serde_json::from_slice(&text) {
            Ok(cache) => Some(cache),
            Err(e) => {
                tracing::debug!(cache = %self.file.display(), "agent digest cache corrupt, ignored: {e}");
                None
            }
        }
    }

    fn lookup(&self, key: &Key) -> Option<Digest> {
        let entry = self.read()?.entries.into_iter().find(|e| e.key == *key)?;
        let valid = entry.sha256.len() == 64
            && entry
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && !entry.arch.is_empty();
        valid.then_some(Digest {
            sha256: entry.sha256,
            arch: entry.arch,
        })
    }

    /// Puts `key` first, replacing any older entry for its path, and writes
    /// the file through a temporary name and a rename. Not fsynced: a torn
    /// file after a crash reads as corrupt and costs one hash.
    fn store(&self, key: Key, digest: &Digest) -> std::io::Result<()> {
        let mut cache = self.read().unwrap_or_default();
        cache.entries.retain(|e| e.key.path != key.path);
        cache.entries.insert(
            0,
            Entry {
                key,
                sha256: digest.sha256.clone(),
                arch: digest.arch.clone(),
            },
        );
        cache.entries.truncate(MAX_ENTRIES);
        let dir = self.file.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        // Unique per process, so two flotillas starting at once never
        // write into one temporary file.
        let tmp = dir.join(format!(
            ".{CACHE_FILE_NAME}.{}.{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let written = (|| {
            let mut out = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            out.write_all(&serde_json::to_vec_pretty(&cache).map_err(std::io::Error::other)?)?;
            fs::rename(&tmp, &self.file)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::convert::Infallible;

    fn cache(dir: &Path) -> DigestCache {
        DigestCache {
            // Tests write and read back at once.
            fresh_window: Duration::ZERO,
            ..DigestCache::in_dir(&dir.join("cache"))
        }
    }

    /// Looks `path` up, "hashing" it by reading it whole and counting calls.
    fn digest_counting(cache: &DigestCache, path: &Path, calls: &Cell<u32>) -> Digest {
        let file = File::open(path).expect("open");
        cache
            .digest(path, &file, || {
                calls.set(calls.get() + 1);
                let text = fs::read_to_string(path).expect("read");
                Ok::<_, Infallible>(Digest {
                    sha256: format!("{:0>64}", text.len()),
                    arch: format!("arch-{}", text.trim()),
                })
            })
            .expect("infallible")
    }

    #[test]
    fn a_hit_is_not_hashed_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("agent");
        fs::write(&bin, "one").expect("write");
        let (cache, calls) = (cache(dir.path()), Cell::new(0));
        let first = digest_counting(&cache, &bin, &calls);
        assert_eq!(calls.get(), 1);
        assert!(cache.path().exists(), "the cache file was written");
        let second = digest_counting(&cache, &bin, &calls);
        assert_eq!(
            (calls.get(), &second),
            (1, &first),
            "the second look-up hits"
        );
        // Through another name for the same file: its canonical path.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&bin, &link).expect("symlink");
        digest_counting(&cache, &link, &calls);
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn a_file_changed_in_place_is_hashed_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("agent");
        fs::write(&bin, "one").expect("write");
        let (cache, calls) = (cache(dir.path()), Cell::new(0));
        let before = digest_counting(&cache, &bin, &calls);
        let mtime = fs::metadata(&bin)
            .and_then(|m| m.modified())
            .expect("mtime");
        // Same size, same inode, and even its old mtime put back: ctime moves.
        std::thread::sleep(Duration::from_millis(20));
        fs::OpenOptions::new()
            .write(true)
            .open(&bin)
            .and_then(|mut f| f.write_all(b"two"))
            .expect("rewrite");
        File::options()
            .write(true)
            .open(&bin)
            .and_then(|f| f.set_modified(mtime))
            .expect("restore mtime");
        let after = digest_counting(&cache, &bin, &calls);
        assert_eq!(calls.get(), 2, "the changed file was hashed");
        assert_ne!(after, before);
        assert_eq!(after.arch, "arch-two");
        assert_eq!(digest_counting(&cache, &bin, &calls), after);
        assert_eq!(calls.get(), 2, "and its new digest is remembered");
    }

    #[test]
    fn a_corrupt_or_unwritable_cache_only_costs_a_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("agent");
        fs::write(&bin, "one").expect("write");
        let (cache, calls) = (cache(dir.path()), Cell::new(0));
        fs::create_dir_all(cache.path().parent().expect("dir")).expect("mkdir");
        fs::write(cache.path(), "{\"entries\": [{\"path\": 3").expect("corrupt");
        let digest = digest_counting(&cache, &bin, &calls);
        assert_eq!((calls.get(), digest.arch.as_str()), (1, "arch-one"));
        digest_counting(&cache, &bin, &calls);
        assert_eq!(calls.get(), 1, "the corrupt file was replaced");

        // A well-formed entry with a digest that is not one is a miss.
        let text = fs::read_to_string(cache.path()).expect("read");
        let forged = text.replace(&digest.sha256, "not-a-digest");
        fs::write(cache.path(), forged).expect("forge");
        digest_counting(&cache, &bin, &calls);
        assert_eq!(calls.get(), 2);

        // A cache that cannot be written (its directory is a file).
        let blocked = DigestCache {
            fresh_window: Duration::ZERO,
            ..DigestCache::in_dir(&bin)
        };
        assert_eq!(digest_counting(&blocked, &bin, &calls), digest);
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn a_file_just_written_is_not_remembered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("agent");
        fs::write(&bin, "one").expect("write");
        let cache = DigestCache::in_dir(&dir.path().join("cache"));
        let calls = Cell::new(0);
        digest_counting(&cache, &bin, &calls);
        digest_counting(&cache, &bin, &calls);
        assert_eq!(calls.get(), 2);
        assert!(!cache.path().exists());
    }
}
