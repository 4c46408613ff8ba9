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

/// The largest manifest or index we read. The distribution registry refuses
/// to store manifests over 4 MiB; a registry that sends more is broken or
/// hostile, and must not take the agent's memory.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

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

/// Fetches the manifest (or index) `reference` names, reading at most
/// [`MAX_MANIFEST_BYTES`], and returns its bytes and sha256 digest. The
/// bytes must match the digest the reference pins, and the one the
/// registry announces. oci-client reads manifests whole, so this request is
/// ours; its token comes from oci-client's authentication.
pub async fn fetch_manifest(
    oci: &Client,
    http: &reqwest::Client,
    reference: &Reference,
    auth: &oci_client::secrets::RegistryAuth,
    insecure: &[String],
) -> Result<(Vec<u8>, String), ImageError> {
    let registry = reference.registry().to_string();
    let fail = |reason: String| ImageError::Registry {
        registry: registry.clone(),
        reason,
    };
    let token = oci
        .auth(reference, auth, oci_client::RegistryOperation::Pull)
        .await
        .map_err(|e| fail(format!("authenticating: {e}")))?;
    let host = reference.resolve_registry();
    let scheme = if insecure
        .iter()
        .any(|i| i == host || i == reference.registry())
    {
        "http"
    } else {
        "https"
    };
    let target = reference.digest().or(reference.tag()).unwrap_or("latest");
    let url = format!(
        "{scheme}://{host}/v2/{}/manifests/{target}",
        reference.repository()
    );
    let mut request = http.get(&url).header(
        reqwest::header::ACCEPT,
        super::manifest::ACCEPTED.join(", "),
    );
    request = match (token, auth) {
        (Some(token), _) => request.bearer_auth(token),
        (None, oci_client::secrets::RegistryAuth::Basic(user, password)) => {
            request.basic_auth(user, Some(password))
        }
        (None, _) => request,
    };
    let response = request
        .send()
        .await
        .map_err(|e| fail(format!("fetching manifest {url}: {e}")))?;
    let status = response.status();
    if !status.is_success() {
        let hint = match status.as_u16() {
            401 | 403 => ": check the credentials in ~/.docker/config.json",
            404 => ": no such image or tag",
            _ => "",
        };
        return Err(fail(format!(
            "fetching manifest {url}: HTTP {status}{hint}"
        )));
    }
    if response
        .content_length()
        .is_some_and(|len| len > MAX_MANIFEST_BYTES)
    {
        return Err(fail(format!(
            "manifest {url} is larger than {MAX_MANIFEST_BYTES} bytes; refused"
        )));
    }
    let announced = response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| fail(format!("fetching manifest {url}: {e}")))?;
        if body.len() as u64 + chunk.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(fail(format!(
                "manifest {url} is larger than {MAX_MANIFEST_BYTES} bytes; refused"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
    for expected in [reference.digest().map(str::to_string), announced]
        .into_iter()
        .flatten()
        .filter(|d| d.starts_with("sha256:"))
    {
        if expected != digest {
            return Err(ImageError::DigestMismatch {
                registry: registry.clone(),
                digest: expected,
                actual: digest,
            });
        }
    }
    Ok((body, digest))
}
