//! Image configs, manifests and indexes, serialised here (not by oci-client)
//! so each test knows the exact bytes and so the digests the agent must
//! report; and pushing them to a registry with oci-client's low-level calls,
//! which accept any layer media type.

use oci_client::Reference;
use oci_client::secrets::RegistryAuth;
use serde_json::{Value, json};

use super::layer::LayerBlob;
use super::{block_on, sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// An OS/architecture/variant triple as indexes and configs write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.into(),
            architecture: architecture.into(),
            variant: variant.map(Into::into),
        }
    }

    /// The platform this test binary (and so the agent under test) runs on.
    pub fn host() -> Platform {
        let arch = flotilla::registry::oci_architecture();
        // arm64 images are conventionally tagged v8; amd64 has no variant.
        let variant = (arch == "arm64").then_some("v8");
        Platform::new("linux", arch, variant)
    }

    /// `linux/arm64/v8`, `linux/amd64`.
    pub fn name(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }

    /// `linux/amd64` without the variant: what `images -o json` reports for
    /// hosts without one.
    pub fn os_arch(&self) -> String {
        format!("{}/{}", self.os, self.architecture)
    }

    fn json(&self) -> Value {
        let mut p = json!({ "os": self.os, "architecture": self.architecture });
        if let Some(v) = &self.variant {
            p["variant"] = json!(v);
        }
        p
    }
}

/// What an image config says, beyond its layers.
#[derive(Debug, Clone)]
pub struct ConfigSpec {
    pub platform: Platform,
    pub created: Option<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub exposed_ports: Vec<String>,
    pub stop_signal: Option<String>,
    /// `None`: the layers' real diff_ids. `Some`: exactly these (to lie).
    pub diff_ids: Option<Vec<String>>,
}

impl Default for ConfigSpec {
    fn default() -> Self {
        ConfigSpec {
            platform: Platform::host(),
            created: Some("2026-01-01T00:00:00Z".into()),
            entrypoint: vec![],
            cmd: vec!["/bin/sh".into()],
            env: vec!["PATH=/usr/local/bin:/usr/bin:/bin".into()],
            user: None,
            working_dir: None,
            exposed_ports: vec![],
            stop_signal: None,
            diff_ids: None,
        }
    }
}

impl ConfigSpec {
    /// The config JSON for an image of `layers`.
    pub fn to_json(&self, layers: &[LayerBlob]) -> Vec<u8> {
        let diff_ids = self
            .diff_ids
            .clone()
            .unwrap_or_else(|| layers.iter().map(|l| l.diff_id.clone()).collect());
        let mut config = json!({
            "Env": self.env,
            "Cmd": self.cmd,
        });
        if !self.entrypoint.is_empty() {
            config["Entrypoint"] = json!(self.entrypoint);
        }
        if let Some(u) = &self.user {
            config["User"] = json!(u);
        }
        if let Some(w) = &self.working_dir {
            config["WorkingDir"] = json!(w);
        }
        if !self.exposed_ports.is_empty() {
            let ports: serde_json::Map<String, Value> = self
                .exposed_ports
                .iter()
                .map(|p| (p.clone(), json!({})))
                .collect();
            config["ExposedPorts"] = Value::Object(ports);
        }
        if let Some(s) = &self.stop_signal {
            config["StopSignal"] = json!(s);
        }
        let mut doc = self.platform.json();
        doc["config"] = config;
        doc["rootfs"] = json!({ "type": "layers", "diff_ids": diff_ids });
        doc["history"] = json!(
            layers
                .iter()
                .map(|_| json!({ "created_by": "flotilla pull tests" }))
                .collect::<Vec<_>>()
        );
        if let Some(c) = &self.created {
            doc["created"] = json!(c);
        }
        serde_json::to_vec(&doc).expect("config JSON")
    }
}

/// A single-platform image: layer blobs, config and manifest, as bytes.
#[derive(Clone)]
pub struct Image {
    pub layers: Vec<LayerBlob>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    pub manifest_media_type: String,
    pub platform: Platform,
}

impl Image {
    /// An OCI image of `layers` (in order) described by `spec`.
    pub fn new(layers: Vec<LayerBlob>, spec: &ConfigSpec) -> Image {
        let config = spec.to_json(&layers);
        let manifest = manifest_json(OCI_MANIFEST, OCI_CONFIG, &config, &layers);
        Image {
            layers,
            config,
            manifest,
            manifest_media_type: OCI_MANIFEST.into(),
            platform: spec.platform.clone(),
        }
    }

    /// The same image with Docker schema 2 media types, as Docker Hub and
    /// `docker push` still write them.
    pub fn new_docker(layers: Vec<LayerBlob>, spec: &ConfigSpec) -> Image {
        let layers: Vec<LayerBlob> = layers
            .into_iter()
            .map(|mut l| {
                l.media_type = DOCKER_LAYER_GZIP.into();
                l
            })
            .collect();
        let config = spec.to_json(&layers);
        let manifest = manifest_json(DOCKER_MANIFEST, DOCKER_CONFIG, &config, &layers);
        Image {
            layers,
            config,
            manifest,
            manifest_media_type: DOCKER_MANIFEST.into(),
            platform: spec.platform.clone(),
        }
    }

    /// An image of `layers` with the default config.
    pub fn of(layers: Vec<LayerBlob>) -> Image {
        Image::new(layers, &ConfigSpec::default())
    }

    pub fn digest(&self) -> String {
        sha256(&self.manifest)
    }

    pub fn config_digest(&self) -> String {
        sha256(&self.config)
    }

    pub fn diff_ids(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }

    /// Every blob the image is made of: layers, then the config.
    pub fn blobs(&self) -> Vec<(String, Vec<u8>)> {
        let mut all: Vec<(String, Vec<u8>)> = self
            .layers
            .iter()
            .map(|l| (l.digest(), l.data.clone()))
            .collect();
        all.push((self.config_digest(), self.config.clone()));
        all
    }
}

fn manifest_json(
    media_type: &str,
    config_media_type: &str,
    config: &[u8],
    layers: &[LayerBlob],
) -> Vec<u8> {
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {
            "mediaType": config_media_type,
            "digest": sha256(config),
            "size": config.len(),
        },
        "layers": layers.iter().map(|l| json!({
            "mediaType": l.media_type,
            "digest": l.digest(),
            "size": l.data.len(),
        })).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&doc).expect("manifest JSON")
}

/// An image index over several single-platform images.
pub struct Index {
    pub images: Vec<Image>,
    pub bytes: Vec<u8>,
}

impl Index {
    pub fn new(images: Vec<Image>) -> Index {
        let doc = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": images.iter().map(|i| json!({
                "mediaType": i.manifest_media_type,
                "digest": i.digest(),
                "size": i.manifest.len(),
                "platform": i.platform.json(),
            })).collect::<Vec<_>>(),
        });
        let bytes = serde_json::to_vec(&doc).expect("index JSON");
        Index { images, bytes }
    }

    pub fn digest(&self) -> String {
        sha256(&self.bytes)
    }
}

/// A tiny image for `platform` whose only file, `/platform`, names it: a pull
/// that picks the wrong index entry shows it in the unpacked layer.
pub fn platform_image(platform: &Platform) -> Image {
    let layer = super::layer::single_file("platform", platform.name().as_bytes());
    let spec = ConfigSpec {
        platform: platform.clone(),
        ..ConfigSpec::default()
    };
    Image::new(vec![layer], &spec)
}

/// A multi-arch index: linux/arm64/v8, linux/arm/v7 and linux/s390x (minus the
/// host's own), then the host's platform last, so that "take the first entry"
/// or "ignore the variant" picks wrongly. With `with_host: false` the index
/// has no entry the host can run.
pub fn multi_arch_index(with_host: bool) -> Index {
    let host = Platform::host();
    let mut platforms: Vec<Platform> = [
        Platform::new("linux", "arm64", Some("v8")),
        Platform::new("linux", "arm", Some("v7")),
        Platform::new("linux", "s390x", None),
        Platform::new("linux", "amd64", None),
    ]
    .into_iter()
    .filter(|p| p.architecture != host.architecture)
    .collect();
    // A same-OS-and-arch entry with the wrong OS must not be taken either.
    platforms.insert(0, Platform::new("windows", &host.architecture, None));
    if with_host {
        platforms.push(host);
    }
    Index::new(platforms.iter().map(platform_image).collect())
}

/// Where to push, and as whom.
pub struct Target {
    /// `127.0.0.1:PORT`
    pub host: String,
    pub auth: Option<(String, String)>,
}

impl Target {
    pub fn anonymous(host: impl Into<String>) -> Target {
        Target {
            host: host.into(),
            auth: None,
        }
    }

    pub fn basic(host: impl Into<String>, user: &str, password: &str) -> Target {
        Target {
            host: host.into(),
            auth: Some((user.into(), password.into())),
        }
    }

    fn auth(&self) -> RegistryAuth {
        match &self.auth {
            Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
            None => RegistryAuth::Anonymous,
        }
    }

    fn client(&self) -> oci_client::Client {
        flotilla::registry::client(std::slice::from_ref(&self.host))
    }

    fn reference(&self, repo_and_tag: &str) -> Reference {
        format!("{}/{repo_and_tag}", self.host)
            .parse()
            .expect("test reference")
    }
}

/// Pushes `image` as `repo:tag` (e.g. `test/x:latest`); returns the manifest
/// digest.
pub fn push(target: &Target, repo_and_tag: &str, image: &Image) -> String {
    block_on(async {
        let client = target.client();
        let reference = target.reference(repo_and_tag);
        client
            .store_auth_if_needed(reference.resolve_registry(), &target.auth())
            .await;
        push_image_async(&client, &reference, image).await;
        image.digest()
    })
}

async fn push_image_async(client: &oci_client::Client, reference: &Reference, image: &Image) {
    for (digest, data) in image.blobs() {
        client
            .push_blob(reference, data, &digest)
            .await
            .unwrap_or_else(|e| panic!("push blob {digest} to {reference}: {e}"));
    }
    client
        .push_manifest_raw(
            reference,
            image.manifest.clone(),
            image.manifest_media_type.parse().expect("content type"),
        )
        .await
        .unwrap_or_else(|e| panic!("push manifest {reference}: {e}"));
}

/// Pushes every image of `index` by digest, then the index as `repo:tag`;
/// returns the index digest.
pub fn push_index(target: &Target, repo_and_tag: &str, index: &Index) -> String {
    block_on(async {
        let client = target.client();
        let reference = target.reference(repo_and_tag);
        client
            .store_auth_if_needed(reference.resolve_registry(), &target.auth())
            .await;
        let repo = reference.repository().to_string();
        for image in &index.images {
            let by_digest = target.reference(&format!("{repo}@{}", image.digest()));
            push_image_async(&client, &by_digest, image).await;
        }
        client
            .push_manifest_raw(&reference, index.bytes.clone(), OCI_INDEX.parse().unwrap())
            .await
            .unwrap_or_else(|e| panic!("push index {reference}: {e}"));
        index.digest()
    })
}
