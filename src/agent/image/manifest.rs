//! The registry documents we read: image indexes (OCI index, Docker manifest
//! list) and image manifests (OCI, Docker v2 schema 2). Our own small types,
//! so unknown fields and media types are ours to judge.

use serde::{Deserialize, Serialize};

use super::ImageError;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// What we ask a registry for, in order of preference.
pub const ACCEPTED: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<u32>,
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Index {
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ImageManifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

pub enum Document {
    Index(Index),
    Image(ImageManifest),
}

/// Parses a manifest body; `what` names it in errors.
pub fn parse(body: &[u8], what: &str) -> Result<Document, ImageError> {
    let invalid = |reason: String| ImageError::Invalid {
        what: what.to_string(),
        reason,
    };
    let probe: Probe = serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    if probe.schema_version != Some(2) {
        return Err(invalid(format!(
            "schema version {:?} is not supported (only schema 2 and OCI)",
            probe.schema_version
        )));
    }
    let is_index = match probe.media_type.as_deref() {
        Some(OCI_INDEX | DOCKER_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(other) => return Err(invalid(format!("media type {other} is not an image"))),
        None => probe.manifests.is_some(),
    };
    if is_index {
        serde_json::from_slice(body)
            .map(Document::Index)
            .map_err(|e| invalid(e.to_string()))
    } else {
        let manifest: ImageManifest =
            serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
        Ok(Document::Image(manifest))
    }
}
