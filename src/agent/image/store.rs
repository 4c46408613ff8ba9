//! The content-addressed image store under the agent's root:
//!
//! ```text
//! ROOT/images/blobs/sha256/HEX    verified blobs: manifests, configs, compressed layers
//! ROOT/images/layers/sha256/HEX   one unpacked layer per directory, named by diff_id
//! ROOT/images/tmp/                 work in progress; cleared of leftovers by prune
//! ROOT/images/index.json           image references and leases
//! RUN/leases/HOLDER                volatile leases (tmpfs): ephemeral containers'
//! ```
//!
//! Everything lands by `rename` from `tmp/`, so a crash or a kill leaves either
//! nothing or a complete, verified object. Reference counts are derived, never
//! stored: a blob or layer is in use while an image record or a lease (a
//! container's hold on its layers) names it, which stays true across crashes.
//! Locks only keep work from being done twice; correctness never rests on
//! them, because two writers of one digest write the same bytes.
//!
//! A container that cannot outlive a reboot (a `run --rm`'s, whose whole
//! pod is on tmpfs) holds a volatile lease: a file under the run directory
//! rather than an fsynced rewrite of `index.json`, so such a run writes
//! nothing to the store's disk. Garbage collection honours both kinds, as
//! long as the store was opened with the same run directory
//! ([`Store::with_run_dir`], as every agent verb does).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ImageError;

/// One image in the store, as `images` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The normalised reference (`registry/repository:tag` or `…@sha256:…`).
    pub reference: String,
    /// The platform manifest's digest.
    pub digest: String,
    /// The digest the reference named when it was an index, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<String>,
    pub config_digest: String,
    /// Compressed layers plus config, as stored.
    pub size: u64,
    pub created: Option<String>,
    pub platform: String,
    pub layers: Vec<LayerRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The compressed blob's digest.
    pub digest: String,
    /// The uncompressed tar's digest: the layer directory's name.
    pub diff_id: String,
    pub size: u64,
    pub media_type: String,
}

/// `index.json`: images by reference, and leases by holder.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Index {
    #[serde(default)]
    images: BTreeMap<String, ImageRecord>,
    /// A holder (a container, later) and the diff_ids it keeps alive.
    #[serde(default)]
    leases: BTreeMap<String, Vec<String>>,
}

/// What a garbage collection removed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Reclaimed {
    pub blobs: usize,
    pub layers: usize,
    pub bytes: u64,
}

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    /// Where volatile leases live (`RUN/leases`), if known.
    volatile_leases: Option<PathBuf>,
}

/// Held while a pull runs: garbage collection waits for it (a pull's fresh
/// layers are not in the index until it finishes).
pub struct PullGuard {
    _file: File,
}

impl Store {
    /// Opens (creating if needed) the store under `root` (the agent's root).
    pub fn open(root: &Path) -> Result<Store, ImageError> {
        let store = Store {
            dir: root.join("images"),
            volatile_leases: None,
        };
        for dir in [
            store.dir.join("blobs").join("sha256"),
            store.dir.join("layers").join("sha256"),
            store.tmp_dir(),
            store.dir.join("locks"),
        ] {
            fs::create_dir_all(&dir).map_err(|e| ImageError::io(&dir, e))?;
        }
        Ok(store)
    }

    /// Volatile leases live under `run_dir` (tmpfs); garbage collection
    /// honours them.
    pub fn with_run_dir(mut self, run_dir: &Path) -> Store {
        self.volatile_leases = Some(run_dir.join("leases"));
        self
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self
            .dir
            .join("blobs")
            .join("sha256")
            .join(sha256_hex(digest)?))
    }

    pub fn layer_path(&self, diff_id: &str) -> Result<PathBuf, ImageError> {
        Ok(self
            .dir
            .join("layers")
            .join("sha256")
            .join(sha256_hex(diff_id)?))
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.is_file())
    }

    pub fn has_layer(&self, diff_id: &str) -> bool {
        self.layer_path(diff_id).is_ok_and(|p| p.is_dir())
    }

    /// A fresh path under `tmp/` for work in progress.
    pub fn tmp_path(&self, what: &str) -> PathBuf {
        self.tmp_dir().join(format!(
            "{what}.{}.{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ))
    }

    /// Removes what interrupted pulls left in `tmp/`: entries whose process
    /// (named in the entry) is gone. Work of live processes is left alone.
    pub fn sweep_dead_tmp(&self) -> Result<usize, ImageError> {
        let mut removed = 0;
        for name in list_dir(&self.tmp_dir())? {
            let pid = name.rsplit('.').nth(1).and_then(|p| p.parse::<u32>().ok());
            let dead = pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
            if dead {
                remove_any(&self.tmp_dir().join(&name))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Takes the lock for work on one digest (blocking), so concurrent pulls
    /// of one layer do the work once; the second finds the result.
    pub fn lock_digest(&self, digest: &str) -> Result<File, ImageError> {
        let path = self.dir.join("locks").join(sha256_hex(digest)?);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ImageError::io(&path, e))?;
        file.lock().map_err(|e| ImageError::io(&path, e))?;
        Ok(file)
    }

    /// Taken by every pull (shared) and by garbage collection (exclusive).
    pub fn pull_guard(&self) -> Result<PullGuard, ImageError> {
        let file = self.gc_lock_file()?;
        file.lock_shared()
            .map_err(|e| ImageError::io(&self.dir.join("gc.lock"), e))?;
        Ok(PullGuard { _file: file })
    }

    fn gc_lock_file(&self) -> Result<File, ImageError> {
        let path = self.dir.join("gc.lock");
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ImageError::io(&path, e))
    }

    /// Runs `change` on the index under the index lock and saves the result atomically.
    fn update_index<T>(&self, change: impl FnOnce(&mut Index) -> T) -> Result<T, ImageError> {
        let lock_path = self.dir.join("index.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| ImageError::io(&lock_path, e))?;
        lock.lock().map_err(|e| ImageError::io(&lock_path, e))?;
        let mut index = self.read_index()?;
        let result = change(&mut index);
        let path = self.dir.join("index.json");
        let tmp = self.tmp_path("index.json");
        let bytes = serde_json::to_vec_pretty(&index).map_err(|e| ImageError::Index {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let mut file = File::create(&tmp).map_err(|e| ImageError::io(&tmp, e))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| ImageError::io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| ImageError::io(&path, e))?;
        Ok(result)
    }

    fn read_index(&self) -> Result<Index, ImageError> {
        let path = self.dir.join("index.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ImageError::Index {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(ImageError::io(&path, e)),
        }
    }

    pub fn images(&self) -> Result<Vec<ImageRecord>, ImageError> {
        Ok(self.read_index()?.images.into_values().collect())
    }

    pub fn image(&self, reference: &str) -> Result<Option<ImageRecord>, ImageError> {
        Ok(self.read_index()?.images.remove(reference))
    }

    /// Records an image whose blobs and layers are all in the store.
    pub fn put_image(&self, record: ImageRecord) -> Result<(), ImageError> {
        for layer in &record.layers {
            if !self.has_layer(&layer.diff_id) && !self.has_blob(&layer.digest) {
                return Err(ImageError::Incomplete {
                    reference: record.reference.clone(),
                    missing: layer.digest.clone(),
                });
            }
        }
        self.update_index(|index| {
            index.images.insert(record.reference.clone(), record);
        })
    }

    /// Removes an image reference; returns false if there was none.
    pub fn remove_image(&self, reference: &str) -> Result<bool, ImageError> {
        self.update_index(|index| index.images.remove(reference).is_some())
    }

    /// Keeps `diff_ids` alive for `holder` until the lease is dropped.
    pub fn add_lease(&self, holder: &str, diff_ids: Vec<String>) -> Result<(), ImageError> {
        self.update_index(|index| {
            index.leases.insert(holder.to_string(), diff_ids);
        })
    }

    /// As [`Store::add_lease`], for a holder that cannot outlive a reboot:
    /// the lease is a file under the run directory (tmpfs), not a write to
    /// the disk. Without a run directory it is an ordinary lease.
    pub fn add_volatile_lease(
        &self,
        holder: &str,
        diff_ids: Vec<String>,
    ) -> Result<(), ImageError> {
        let Some(dir) = &self.volatile_leases else {
            return self.add_lease(holder, diff_ids);
        };
        fs::create_dir_all(dir).map_err(|e| ImageError::io(dir, e))?;
        let path = dir.join(lease_file_name(holder));
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec(&diff_ids).map_err(|e| ImageError::Index {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        // Written whole then renamed, so a collection never reads half a lease.
        fs::write(&tmp, bytes).map_err(|e| ImageError::io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| ImageError::io(&path, e))
    }

    /// Drops `holder`'s lease, volatile or not. The index is rewritten only
    /// if it holds one.
    pub fn remove_lease(&self, holder: &str) -> Result<(), ImageError> {
        if let Some(dir) = &self.volatile_leases {
            let path = dir.join(lease_file_name(holder));
            match fs::remove_file(&path) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ImageError::io(&path, e)),
            }
        }
        if !self.read_index()?.leases.contains_key(holder) {
            return Ok(());
        }
        self.update_index(|index| {
            index.leases.remove(holder);
        })
    }

    /// The diff_ids the volatile leases keep alive.
    fn volatile_leased(&self) -> Result<Vec<String>, ImageError> {
        let Some(dir) = &self.volatile_leases else {
            return Ok(Vec::new());
        };
        let names = match fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| !n.ends_with(".tmp"))
                .collect::<Vec<_>>(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ImageError::io(dir, e)),
        };
        let mut diff_ids = Vec::new();
        for name in names {
            let path = dir.join(name);
            let bytes = match fs::read(&path) {
                Ok(bytes) => bytes,
                // Dropped since the listing.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ImageError::io(&path, e)),
            };
            // An unreadable lease stops the collection rather than free
            // layers a container may be using.
            let ids: Vec<String> =
                serde_json::from_slice(&bytes).map_err(|e| ImageError::Index {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            diff_ids.extend(ids);
        }
        Ok(diff_ids)
    }

    /// Deletes every blob and layer no image and no lease names, and the
    /// leftovers of interrupted work in `tmp/`. Waits for running pulls.
    pub fn collect_garbage(&self) -> Result<Reclaimed, ImageError> {
        let gc_lock = self.gc_lock_file()?;
        gc_lock
            .lock()
            .map_err(|e| ImageError::io(&self.dir.join("gc.lock"), e))?;
        let index = self.read_index()?;
        let mut keep_blobs: BTreeSet<String> = BTreeSet::new();
        let mut keep_layers: BTreeSet<String> = BTreeSet::new();
        for image in index.images.values() {
            for digest in [
                Some(&image.digest),
                image.index_digest.as_ref(),
                Some(&image.config_digest),
            ]
            .into_iter()
            .flatten()
            {
                keep_blobs.insert(sha256_hex(digest)?.to_string());
            }
            for layer in &image.layers {
                keep_blobs.insert(sha256_hex(&layer.digest)?.to_string());
                keep_layers.insert(sha256_hex(&layer.diff_id)?.to_string());
            }
        }
        for diff_id in index
            .leases
            .values()
            .flatten()
            .chain(&self.volatile_leased()?)
        {
            keep_layers.insert(sha256_hex(diff_id)?.to_string());
        }
        let mut reclaimed = Reclaimed::default();
        for (dir, keep, is_layer) in [
            (self.dir.join("blobs").join("sha256"), &keep_blobs, false),
            (self.dir.join("layers").join("sha256"), &keep_layers, true),
        ] {
            for name in list_dir(&dir)? {
                if keep.contains(&name) {
                    continue;
                }
                let path = dir.join(&name);
                reclaimed.bytes += disk_usage(&path);
                remove_any(&path)?;
                if is_layer {
                    reclaimed.layers += 1;
                } else {
                    reclaimed.blobs += 1;
                }
            }
        }
        // No pull runs (we hold the lock exclusively): no digest lock is held,
        // and all of tmp/ is leftovers.
        let locks = self.dir.join("locks");
        for name in list_dir(&locks)? {
            if !keep_blobs.contains(&name) && !keep_layers.contains(&name) {
                remove_any(&locks.join(name))?;
            }
        }
        for name in list_dir(&self.tmp_dir())? {
            let path = self.tmp_dir().join(name);
            reclaimed.bytes += disk_usage(&path);
            remove_any(&path)?;
        }
        Ok(reclaimed)
    }
}

/// The hex part of a `sha256:HEX` digest, checked, so a digest from the wire
/// can never name a path outside the store.
pub fn sha256_hex(digest: &str) -> Result<&str, ImageError> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| ImageError::BadDigest(digest.to_string()))?;
    if hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(hex)
    } else {
        Err(ImageError::BadDigest(digest.to_string()))
    }
}

/// A lease holder (`UID/CONTAINER`) as a file name.
fn lease_file_name(holder: &str) -> String {
    holder.replace('/', "_")
}

fn list_dir(dir: &Path) -> Result<Vec<String>, ImageError> {
    let entries = fs::read_dir(dir).map_err(|e| ImageError::io(dir, e))?;
    Ok(entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect())
}

/// Removes a file or a whole directory tree (never following symlinks).
pub fn remove_any(path: &Path) -> Result<(), ImageError> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    result.map_err(|e| ImageError::io(path, e))
}

/// Bytes used by a file or a tree (apparent sizes; links not followed).
fn disk_usage(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| disk_usage(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

    fn record(reference: &str, layers: &[(&str, &str)]) -> ImageRecord {
        ImageRecord {
            reference: reference.into(),
            digest: C.into(),
            index_digest: None,
            config_digest: C.into(),
            size: 0,
            created: None,
            platform: "linux/amd64".into(),
            layers: layers
                .iter()
                .map(|(digest, diff_id)| LayerRecord {
                    digest: digest.to_string(),
                    diff_id: diff_id.to_string(),
                    size: 1,
                    media_type: "application/vnd.oci.image.layer.v1.tar".into(),
                })
                .collect(),
        }
    }

    fn put_layer(store: &Store, digest: &str, diff_id: &str) {
        fs::write(store.blob_path(digest).expect("path"), b"blob").expect("blob");
        fs::create_dir_all(store.layer_path(diff_id).expect("path")).expect("layer");
    }

    #[test]
    fn digests_from_the_wire_cannot_name_paths() {
        assert!(sha256_hex("sha256:../../etc/passwd").is_err());
        assert!(sha256_hex("sha512:aa").is_err());
        assert!(sha256_hex(&A.to_uppercase()).is_err());
        assert_eq!(sha256_hex(A).expect("valid").len(), 64);
    }

    #[test]
    fn shared_layers_outlive_one_image_and_leases_keep_layers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        put_layer(&store, A, A);
        put_layer(&store, B, B);
        store
            .put_image(record("x:1", &[(A, A), (B, B)]))
            .expect("put");
        store.put_image(record("y:1", &[(A, A)])).expect("put");
        fs::write(store.tmp_path("leftover"), b"half").expect("tmp");

        assert!(store.remove_image("x:1").expect("rmi"));
        assert!(!store.remove_image("x:1").expect("rmi again"));
        store
            .add_lease("container-1", vec![B.into()])
            .expect("lease");
        let reclaimed = store.collect_garbage().expect("gc");
        // B's blob goes (no image names it); its layer stays for the lease; A stays for y.
        assert_eq!(reclaimed.blobs, 1);
        assert_eq!(reclaimed.layers, 0);
        assert!(store.has_layer(A) && store.has_blob(A) && store.has_layer(B));
        assert!(!store.has_blob(B));
        assert_eq!(list_dir(&store.tmp_dir()).expect("tmp").len(), 0);

        store.remove_lease("container-1").expect("unlease");
        // A dead process's leftovers go; a live one's stay.
        let dead = store.tmp_dir().join("blob-x.999999999.0123456789abcdef");
        let live = store.tmp_path("blob-y");
        fs::write(&dead, b"half").expect("tmp");
        fs::write(&live, b"half").expect("tmp");
        assert_eq!(store.sweep_dead_tmp().expect("sweep"), 1);
        assert!(!dead.exists() && live.exists());
        assert!(store.remove_image("y:1").expect("rmi"));
        let reclaimed = store.collect_garbage().expect("gc");
        assert_eq!(reclaimed.layers, 2);
        assert!(!store.has_layer(A) && !store.has_layer(B));
    }

    #[test]
    fn volatile_leases_keep_layers_and_write_no_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = dir.path().join("run");
        let store = Store::open(dir.path()).expect("open").with_run_dir(&run);
        put_layer(&store, A, A);
        store
            .add_volatile_lease("0123456789abcdef/c", vec![A.into()])
            .expect("lease");
        assert!(
            !store.dir.join("index.json").exists(),
            "the index is not written"
        );
        assert!(run.join("leases").join("0123456789abcdef_c").is_file());
        let reclaimed = store.collect_garbage().expect("gc");
        assert_eq!(reclaimed.layers, 0);
        assert!(store.has_layer(A));
        // A store opened without the run dir would not see it; with it, a
        // dropped lease frees the layer and leaves no file.
        store.remove_lease("0123456789abcdef/c").expect("unlease");
        assert!(
            !store.dir.join("index.json").exists(),
            "still no index write"
        );
        assert_eq!(list_dir(&run.join("leases")).expect("leases").len(), 0);
        let reclaimed = store.collect_garbage().expect("gc");
        assert_eq!(reclaimed.layers, 1);
    }

    #[test]
    fn an_image_with_missing_layers_is_not_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let err = store
            .put_image(record("x:1", &[(A, A)]))
            .expect_err("incomplete");
        assert!(err.to_string().contains(A), "{err}");
        assert!(store.images().expect("images").is_empty());
    }
}
