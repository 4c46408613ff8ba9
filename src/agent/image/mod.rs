//! The agent's image store: pulling OCI images from registries, verifying
//! every byte, unpacking layers safely, and keeping blobs, layers and image
//! references in a content-addressed store under the agent's root.
//!
//! Nothing from the wire is trusted: blobs are capped at their descriptor's
//! size and checked against their digest before they enter the store, and
//! each layer's uncompressed bytes are checked against the config's diff_id
//! while it is unpacked.

pub mod auth;
pub mod config;
mod fetch;
pub mod manifest;
pub mod platform;
pub mod progress;
pub mod pull;
pub mod store;
pub mod unpack;

use std::path::{Path, PathBuf};

pub use pull::{PullOptions, PulledImage, pull};
pub use store::{ImageRecord, Store};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("bad image reference {reference:?}: {reason}")]
    Reference { reference: String, reason: String },
    #[error("{0:?} is not a sha256 digest (sha256: and 64 lowercase hex digits)")]
    BadDigest(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the image index {path} is damaged: {reason}; remove it and pull again")]
    Index { path: PathBuf, reason: String },
    #[error("{registry}: {reason}")]
    Registry { registry: String, reason: String },
    #[error(
        "blob {digest} from {registry} does not match its digest (got {actual}); nothing was stored"
    )]
    DigestMismatch {
        registry: String,
        digest: String,
        actual: String,
    },
    #[error(
        "blob {digest} from {registry} is larger than the {expected} bytes its descriptor gives; nothing was stored"
    )]
    TooLarge {
        registry: String,
        digest: String,
        expected: u64,
    },
    #[error(
        "blob {digest} from {registry} ended after {got} of {expected} bytes; nothing was stored"
    )]
    Truncated {
        registry: String,
        digest: String,
        expected: u64,
        got: u64,
    },
    #[error(
        "layer {digest}: its uncompressed content is {actual}, not the diff_id {expected} the image config gives; refused"
    )]
    DiffIdMismatch {
        digest: String,
        expected: String,
        actual: String,
    },
    #[error("layer {digest}: {source}")]
    Unpack {
        digest: String,
        source: unpack::UnpackError,
    },
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("no image in {index} is for {platform} (it has: {available})")]
    NoPlatform {
        index: String,
        platform: String,
        available: String,
    },
    #[error("image {reference} lacks {missing}; pull it again")]
    Incomplete { reference: String, missing: String },
    #[error("no image {0} in the store")]
    NotFound(String),
    #[error("the pull stopped: {0}")]
    Task(String),
}

impl ImageError {
    pub fn io(path: &Path, source: std::io::Error) -> ImageError {
        ImageError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Normalises a reference the way Docker does (`busybox` →
/// `docker.io/library/busybox:latest`). Our own parser: oci-spec's compiles a
/// large regex on first use, which costs tens of milliseconds per process.
pub fn parse_reference(text: &str) -> Result<oci_client::Reference, ImageError> {
    let image = crate::api::image::NormalizedImage::parse(text).map_err(|reason| {
        ImageError::Reference {
            reference: text.to_string(),
            reason,
        }
    })?;
    Ok(match (image.tag, image.digest) {
        (Some(tag), Some(digest)) => oci_client::Reference::with_tag_and_digest(
            image.registry,
            image.repository,
            tag,
            digest,
        ),
        (None, Some(digest)) => {
            oci_client::Reference::with_digest(image.registry, image.repository, digest)
        }
        (tag, None) => oci_client::Reference::with_tag(
            image.registry,
            image.repository,
            tag.unwrap_or_else(|| "latest".into()),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_get_dockers_defaults() {
        let r = parse_reference("busybox").expect("valid");
        assert_eq!(r.whole(), "docker.io/library/busybox:latest");
        let r = parse_reference("10.77.0.1:5000/demo/busybox").expect("valid");
        assert_eq!(r.whole(), "10.77.0.1:5000/demo/busybox:latest");
        let digest = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let r = parse_reference(&format!("ghcr.io/x/y@{digest}")).expect("valid");
        assert_eq!(r.digest(), Some(digest));
        assert!(parse_reference("UPPER/case").is_err());
    }
}
