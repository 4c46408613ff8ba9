//! A whole pull: resolve the reference to this host's manifest, fetch the
//! config and the layers (a few at a time, each streamed to disk and
//! verified), unpack each layer into its own directory while checking its
//! diff_id, then record the image. A second pull of an image already present
//! costs one manifest request.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use futures_util::{StreamExt, TryStreamExt};
use oci_client::Reference;
use oci_client::secrets::RegistryAuth;
use sha2::{Digest, Sha256};

use super::config::{self, ImageConfig};
use super::fetch::{fetch_blob, fetch_manifest, store_verified_bytes};
use super::manifest::{self, Descriptor, Document};
use super::progress::{Progress, PullEvent};
use super::store::{ImageRecord, LayerRecord, Store, remove_any, sha256_hex};
use super::unpack::apply_layer;
use super::{ImageError, parse_reference, platform};

/// Layers downloading at once: enough to fill a link, few enough to keep
/// memory and open files small.
const CONCURRENT_LAYERS: usize = 4;

/// Image configs are a few kilobytes; we read them into memory whole.
const MAX_CONFIG_BYTES: u64 = 8 << 20;

#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Speak plain HTTP to the image's registry.
    pub insecure: bool,
    /// Credentials; None reads Docker's config.json on this host. When the
    /// console drives the agent, the operator's credentials come in here
    /// and are never written to disk.
    pub auth: Option<RegistryAuth>,
    /// Unpack layers (false: download and verify blobs only).
    pub unpack: bool,
}

#[derive(Debug, Clone)]
pub struct PulledImage {
    pub record: ImageRecord,
    pub config: ImageConfig,
    /// Nothing needed downloading.
    pub already_present: bool,
}

pub async fn pull(
    store: &Store,
    reference_text: &str,
    options: &PullOptions,
    progress: &Progress<'_>,
) -> Result<PulledImage, ImageError> {
    let reference = parse_reference(reference_text)?;
    let normalized = reference.whole();
    // Garbage collection must not take layers this pull has fetched but not
    // yet recorded.
    let _guard = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.pull_guard())
            .await
            .map_err(|e| ImageError::Task(e.to_string()))??
    };
    // An interrupted pull's leftovers go with the next pull.
    if let Err(e) = store.sweep_dead_tmp() {
        tracing::warn!(error = %e, "could not clear leftovers of interrupted pulls");
    }
    let insecure = if options.insecure {
        vec![
            reference.registry().to_string(),
            reference.resolve_registry().to_string(),
        ]
    } else {
        Vec::new()
    };
    let client = crate::registry::client(&insecure);
    let http = crate::registry::http_client(options.insecure)
        .map_err(|e| ImageError::Task(e.to_string()))?;
    let auth = match &options.auth {
        Some(auth) => auth.clone(),
        None => super::auth::credentials_for(reference.registry())?,
    };

    let (body, digest) = fetch_manifest(&client, &http, &reference, &auth, &insecure).await?;
    if let Some(present) = already_present(store, &normalized, &digest, options.unpack)? {
        return Ok(present);
    }

    let host = platform::host();
    let (index_digest, manifest_digest, manifest_body, image) =
        match manifest::parse(&body, &normalized)? {
            Document::Image(image) => (None, digest, body, image),
            Document::Index(index) => {
                store_verified_bytes(store, &digest, &body)?;
                let entry = platform::choose(&index.manifests, &host).ok_or_else(|| {
                    ImageError::NoPlatform {
                        index: normalized.clone(),
                        platform: host.to_string(),
                        available: index
                            .manifests
                            .iter()
                            .filter_map(|m| m.platform.as_ref().map(ToString::to_string))
                            .collect::<Vec<_>>()
                            .join(", "),
                    }
                })?;
                let by_digest = reference.clone_with_digest(entry.digest.clone());
                let (body, manifest_digest) =
                    fetch_manifest(&client, &http, &by_digest, &auth, &insecure).await?;
                let Document::Image(image) = manifest::parse(&body, &entry.digest)? else {
                    return Err(ImageError::Invalid {
                        what: entry.digest.clone(),
                        reason: "an index entry points at another index".into(),
                    });
                };
                (Some(digest), manifest_digest, body, image)
            }
        };
    store_verified_bytes(store, &manifest_digest, &manifest_body)?;
    for layer in &image.layers {
        compression_of(&layer.media_type).ok_or_else(|| ImageError::Invalid {
            what: format!("layer {}", layer.digest),
            reason: format!(
                "media type {} is not a tar, gzip or zstd layer",
                layer.media_type
            ),
        })?;
    }

    if image.config.size > MAX_CONFIG_BYTES {
        return Err(ImageError::Invalid {
            what: format!("image {normalized}"),
            reason: format!(
                "its config claims {} bytes; more than {MAX_CONFIG_BYTES} is refused",
                image.config.size
            ),
        });
    }
    let config_path = fetch_blob(
        &client,
        &reference,
        &image.config.digest,
        image.config.size,
        store,
        &|_| {},
    )
    .await?;
    let config_bytes = std::fs::read(&config_path).map_err(|e| ImageError::io(&config_path, e))?;
    let config = config::parse(&config_bytes, &image.config.digest)?;
    if config.diff_ids.len() != image.layers.len() {
        return Err(ImageError::Invalid {
            what: format!("image {normalized}"),
            reason: format!(
                "its manifest has {} layers but its config lists {} diff_ids",
                image.layers.len(),
                config.diff_ids.len()
            ),
        });
    }
    progress(PullEvent::Resolved {
        digest: manifest_digest.clone(),
        layers: image.layers.len(),
    });

    let layers: Vec<(Descriptor, String)> = image
        .layers
        .iter()
        .cloned()
        .zip(config.diff_ids.iter().cloned())
        .collect();
    let client = &client;
    let reference = &reference;
    futures_util::stream::iter(layers.iter().map(|(layer, diff_id)| {
        get_layer(
            client,
            reference,
            store,
            layer,
            diff_id,
            options.unpack,
            progress,
        )
    }))
    .buffer_unordered(CONCURRENT_LAYERS)
    .try_collect::<Vec<()>>()
    .await?;

    let record = ImageRecord {
        reference: normalized,
        digest: manifest_digest,
        index_digest,
        config_digest: image.config.digest.clone(),
        size: image.config.size + image.layers.iter().map(|l| l.size).sum::<u64>(),
        created: config.created.clone(),
        platform: platform_of(&config),
        layers: layers
            .iter()
            .map(|(layer, diff_id)| LayerRecord {
                digest: layer.digest.clone(),
                diff_id: diff_id.clone(),
                size: layer.size,
                media_type: layer.media_type.clone(),
            })
            .collect(),
    };
    store.put_image(record.clone())?;
    Ok(PulledImage {
        record,
        config,
        already_present: false,
    })
}

fn platform_of(config: &ImageConfig) -> String {
    match &config.variant {
        Some(v) => format!("{}/{}/{v}", config.os, config.architecture),
        None => format!("{}/{}", config.os, config.architecture),
    }
}

/// The image, if the store already holds what `digest` (the reference's
/// manifest or index) names, with everything this pull would fetch.
fn already_present(
    store: &Store,
    reference: &str,
    digest: &str,
    unpack: bool,
) -> Result<Option<PulledImage>, ImageError> {
    // This reference's own record first, else any record of the same image.
    let Some(found) = store
        .images()?
        .into_iter()
        .filter(|r| r.digest == digest || r.index_digest.as_deref() == Some(digest))
        .max_by_key(|r| r.reference == reference)
    else {
        return Ok(None);
    };
    let complete = found.layers.iter().all(|l| {
        if unpack {
            store.has_layer(&l.diff_id)
        } else {
            store.has_blob(&l.digest) || store.has_layer(&l.diff_id)
        }
    });
    if !complete || !store.has_blob(&found.config_digest) {
        return Ok(None);
    }
    let config_path = store.blob_path(&found.config_digest)?;
    let bytes = std::fs::read(&config_path).map_err(|e| ImageError::io(&config_path, e))?;
    let config = config::parse(&bytes, &found.config_digest)?;
    // Writing the index costs an fsync: only when this reference is new or moved.
    let unchanged = found.reference == reference;
    let record = ImageRecord {
        reference: reference.to_string(),
        ..found
    };
    if !unchanged {
        store.put_image(record.clone())?;
    }
    Ok(Some(PulledImage {
        record,
        config,
        already_present: true,
    }))
}

/// Downloads (if needed) and unpacks (if asked) one layer.
async fn get_layer(
    client: &oci_client::Client,
    reference: &Reference,
    store: &Store,
    layer: &Descriptor,
    diff_id: &str,
    unpack: bool,
    progress: &Progress<'_>,
) -> Result<(), ImageError> {
    sha256_hex(diff_id)?;
    if (unpack && store.has_layer(diff_id)) || (!unpack && store.has_blob(&layer.digest)) {
        progress(PullEvent::LayerPresent {
            digest: layer.digest.clone(),
            size: layer.size,
        });
        return Ok(());
    }
    let size = layer.size;
    let digest = layer.digest.clone();
    let on_bytes = |done: u64| {
        progress(PullEvent::LayerBytes {
            digest: digest.clone(),
            done,
            size,
        })
    };
    let blob = fetch_blob(
        client,
        reference,
        &layer.digest,
        layer.size,
        store,
        &on_bytes,
    )
    .await?;
    progress(PullEvent::LayerDownloaded {
        digest: layer.digest.clone(),
        size: layer.size,
    });
    if !unpack {
        return Ok(());
    }
    let (store_c, layer_c, diff_id_c) = (store.clone(), layer.clone(), diff_id.to_string());
    let stats =
        tokio::task::spawn_blocking(move || unpack_layer(&store_c, &blob, &layer_c, &diff_id_c))
            .await
            .map_err(|e| ImageError::Task(e.to_string()))??;
    progress(PullEvent::LayerUnpacked {
        digest: layer.digest.clone(),
        entries: stats.entries,
        skipped_devices: stats.skipped_devices.len(),
    });
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

/// The compression a layer media type declares (OCI and Docker names,
/// distributable or not); None for anything that is not a tar layer.
fn compression_of(media_type: &str) -> Option<Compression> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

/// Counts and hashes every byte read through it: the layer's diff_id.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Unpacks a verified layer blob into `layers/<diff_id>`, through a
/// temporary directory, checking the uncompressed bytes against `diff_id`.
fn unpack_layer(
    store: &Store,
    blob: &Path,
    layer: &Descriptor,
    diff_id: &str,
) -> Result<super::unpack::UnpackStats, ImageError> {
    let target = store.layer_path(diff_id)?;
    if target.is_dir() {
        return Ok(Default::default());
    }
    let _lock = store.lock_digest(diff_id)?;
    if target.is_dir() {
        return Ok(Default::default());
    }
    let declared = compression_of(&layer.media_type).unwrap_or(Compression::None);
    let file = File::open(blob).map_err(|e| ImageError::io(blob, e))?;
    let mut buffered = BufReader::with_capacity(1 << 16, file);
    // The bytes decide, not the label: a registry that mislabels a layer
    // should not make us feed gzip to the tar reader.
    let magic = buffered.fill_buf().map_err(|e| ImageError::io(blob, e))?;
    let actual = if magic.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    };
    if actual != declared {
        tracing::warn!(layer = %layer.digest, ?declared, ?actual, "layer media type does not match its bytes; going by the bytes");
    }
    let decompressed: Box<dyn Read> = match actual {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|e| ImageError::io(blob, e))?,
        ),
    };
    let mut reader = HashingReader {
        inner: decompressed,
        hasher: Sha256::new(),
    };
    let tmp = store.tmp_path(&format!("layer-{}", sha256_hex(diff_id)?));
    std::fs::create_dir(&tmp).map_err(|e| ImageError::io(&tmp, e))?;
    let result = (|| {
        let stats = apply_layer(&mut reader, &tmp).map_err(|source| ImageError::Unpack {
            digest: layer.digest.clone(),
            source,
        })?;
        // The diff_id covers every byte of the tar, padding included.
        std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| ImageError::io(blob, e))?;
        let actual = format!("sha256:{}", hex::encode(reader.hasher.clone().finalize()));
        if actual != diff_id {
            return Err(ImageError::DiffIdMismatch {
                digest: layer.digest.clone(),
                expected: diff_id.to_string(),
                actual,
            });
        }
        match std::fs::rename(&tmp, &target) {
            Ok(()) => Ok(stats),
            // Another process unpacked the same layer first: theirs is as good.
            Err(_) if target.is_dir() => {
                remove_any(&tmp)?;
                Ok(stats)
            }
            Err(e) => Err(ImageError::io(&target, e)),
        }
    })();
    if result.is_err() {
        let _ = remove_any(&tmp);
    }
    result
}
