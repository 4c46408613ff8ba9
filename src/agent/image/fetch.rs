//! Downloading one blob into the store without trusting the registry: the
//! bytes stream into a temporary file that may never exceed the descriptor's
//! size, are hashed as they arrive, and only a complete blob with the right
//! digest is renamed into `blobs/`. Anything else leaves nothing behind.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWriteExt, BufWriter};

use super::ImageError;
use super::store::{Store, sha256_hex};

/// Write buffer: large enough that a 40 MB layer takes a few dozen writes.
const WRITE_BUFFER: usize = 1 << 20;

/// Removes a temporary file unless it was committed, so a cancelled or
/// failed download leaves nothing behind.
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn commit(mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Fetches blob `digest` of `size` bytes into the store (if it is not there
/// yet) and returns its path. `on_bytes` hears the running total.
pub async fn fetch_blob(
    client: &Client,
    image: &Reference,
    digest: &str,
    size: u64,
    store: &Store,
    on_bytes: &(dyn Fn(u64) + Send + Sync),
) -> Result<PathBuf, ImageError> {
    let target = store.blob_path(digest)?;
    if target.is_file() {
        return Ok(target);
    }
    // One download per digest, across tasks and processes; whoever waited
    // finds the blob already there.
    let lock = {
        let store = store.clone();
        let digest = digest.to_string();
        tokio::task::spawn_blocking(move || store.lock_digest(&digest))
            .await
            .map_err(|e| ImageError::Task(e.to_string()))??
    };
    if target.is_file() {
        return Ok(target);
    }
    let registry = image.registry().to_string();
    let tmp_path = store.tmp_path(&format!("blob-{}", sha256_hex(digest)?));
    let tmp = TempFile(Some(tmp_path.clone()));
    let file = tokio::fs::File::create(&tmp_path)
        .await
        .map_err(|e| ImageError::io(&tmp_path, e))?;
    let mut writer = BufWriter::with_capacity(WRITE_BUFFER, file);

    let sized = client
        .pull_blob_stream(image, digest)
        .await
        .map_err(|e| ImageError::Registry {
            registry: registry.clone(),
            reason: format!("fetching blob {digest}: {e}"),
        })?;
    if sized.content_length.is_some_and(|len| len > size) {
        return Err(ImageError::TooLarge {
            registry,
            digest: digest.into(),
            expected: size,
        });
    }
    let mut stream = sized.stream;
    let mut hasher = Sha256::new();
    let mut total: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            // oci-client checks the digest too, and reports a mismatch as a
            // stream error at the end: say it in our words, naming the digest.
            Err(e) => {
                return Err(if total == size {
                    mismatch(&registry, digest, hasher).unwrap_or(ImageError::Registry {
                        registry,
                        reason: format!("fetching blob {digest}: {e}"),
                    })
                } else {
                    ImageError::Registry {
                        registry,
                        reason: format!("fetching blob {digest} after {total} bytes: {e}"),
                    }
                });
            }
        };
        total += chunk.len() as u64;
        if total > size {
            return Err(ImageError::TooLarge {
                registry,
                digest: digest.into(),
                expected: size,
            });
        }
        hasher.update(&chunk);
        writer
            .write_all(&chunk)
            .await
            .map_err(|e| ImageError::io(&tmp_path, e))?;
        on_bytes(total);
    }
    if total < size {
        return Err(ImageError::Truncated {
            registry,
            digest: digest.into(),
            expected: size,
            got: total,
        });
    }
    if let Some(err) = mismatch(&registry, digest, hasher) {
        return Err(err);
    }
    writer
        .flush()
        .await
        .map_err(|e| ImageError::io(&tmp_path, e))?;
    let file = writer.into_inner();
    file.sync_all()
        .await
        .map_err(|e| ImageError::io(&tmp_path, e))?;
    drop(file);
    commit(&tmp_path, &target).await?;
    tmp.commit();
    drop(lock);
    Ok(target)
}

/// An error if what was hashed is not `digest`.
fn mismatch(registry: &str, digest: &str, hasher: Sha256) -> Option<ImageError> {
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    (actual != digest).then(|| ImageError::DigestMismatch {
        registry: registry.to_string(),
        digest: digest.to_string(),
        actual,
    })
}

async fn commit(tmp: &Path, target: &Path) -> Result<(), ImageError> {
    tokio::fs::rename(tmp, target)
        .await
        .map_err(|e| ImageError::io(target, e))
}

/// Stores `bytes` (a manifest or index already checked by its digest) as
/// blob `digest`, after checking once more that they hash to it.
pub fn store_verified_bytes(store: &Store, digest: &str, bytes: &[u8]) -> Result<(), ImageError> {
    let actual = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
    if actual != digest {
        return Err(ImageError::DigestMismatch {
            registry: "manifest".into(),
            digest: digest.into(),
            actual,
        });
    }
    let target = store.blob_path(digest)?;
    if target.is_file() {
        return Ok(());
    }
    let tmp = store.tmp_path(&format!("blob-{}", sha256_hex(digest)?));
    std::fs::write(&tmp, bytes).map_err(|e| ImageError::io(&tmp, e))?;
    std::fs::rename(&tmp, &target).map_err(|e| ImageError::io(&target, e))
}
