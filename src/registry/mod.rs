//! Talking to OCI registries: one place that builds the registry client (TLS
//! provider, which registries may be spoken to over plain HTTP), and the image
//! push the demo uses to fill its registry. The agent's pull builds on the same
//! client.

use std::sync::Once;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{
    IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE, OciImageManifest,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot set up an HTTP client: {0}")]
    Http(String),
    #[error("bad image reference {reference:?}: {source}")]
    Reference {
        reference: String,
        source: oci_client::ParseError,
    },
    #[error("pushing {reference} to {registry} failed: {source}")]
    Push {
        reference: String,
        registry: String,
        source: oci_client::errors::OciDistributionError,
    },
    #[error("listing the repositories of {registry} failed: {source}")]
    Catalog {
        registry: String,
        source: oci_client::errors::OciDistributionError,
    },
}

/// rustls needs a process-wide crypto provider before any client is built. We
/// use ring (as russh does) rather than the aws-lc default, whose C build is
/// heavy; installing twice is harmless.
pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A registry client. `insecure` lists the registries (`host[:port]`) that are
/// spoken to over plain HTTP; every other registry must use HTTPS.
pub fn client(insecure: &[String]) -> Client {
    install_crypto_provider();
    Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(insecure.to_vec()),
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(Duration::from_secs(60)),
        use_monolithic_push: true,
        ..ClientConfig::default()
    })
}

/// An HTTP client for the registry requests oci-client cannot bound
/// (manifests), with the same timeouts. `plain_http_only`: it will only ever
/// speak HTTP (an insecure registry), so it skips loading the system's root
/// certificates, which is most of a client's start-up cost.
pub fn http_client(plain_http_only: bool) -> Result<reqwest::Client, RegistryError> {
    install_crypto_provider();
    let builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60));
    let builder = if plain_http_only {
        builder.tls_certs_only([])
    } else {
        builder
    };
    builder
        .build()
        .map_err(|e| RegistryError::Http(e.to_string()))
}

/// One layer of an image built locally: its gzip-compressed tar and the digest
/// of the uncompressed tar (the `diff_id` the image config lists).
#[derive(Debug, Clone)]
pub struct BuiltLayer {
    pub gzip_tar: Vec<u8>,
    pub diff_id: String,
}

/// Pushes an image made of `layers` (in order) and an OCI image `config`
/// (JSON) as `reference`, e.g. `10.77.0.1:5000/demo/busybox:latest`.
/// Returns the manifest's URL.
pub async fn push_image(
    client: &Client,
    reference: &str,
    layers: &[BuiltLayer],
    config_json: Vec<u8>,
) -> Result<String, RegistryError> {
    let parsed: Reference = reference
        .parse()
        .map_err(|source| RegistryError::Reference {
            reference: reference.to_string(),
            source,
        })?;
    let image_layers: Vec<ImageLayer> = layers
        .iter()
        .map(|l| {
            ImageLayer::new(
                l.gzip_tar.clone(),
                IMAGE_LAYER_GZIP_MEDIA_TYPE.to_string(),
                None,
            )
        })
        .collect();
    let config = Config::new(config_json, IMAGE_CONFIG_MEDIA_TYPE.to_string(), None);
    let manifest = OciImageManifest::build(&image_layers, &config, None);
    let response = client
        .push(
            &parsed,
            &image_layers,
            config,
            &RegistryAuth::Anonymous,
            Some(manifest),
        )
        .await
        .map_err(|source| RegistryError::Push {
            reference: reference.to_string(),
            registry: parsed.resolve_registry().to_string(),
            source,
        })?;
    Ok(response.manifest_url)
}

/// The repositories a registry holds (`/v2/_catalog`), sorted.
pub async fn catalog(client: &Client, registry: &str) -> Result<Vec<String>, RegistryError> {
    // The catalog endpoint is per registry; the reference only names the host.
    let probe = format!("{registry}/catalog-probe:latest");
    let reference: Reference = probe.parse().map_err(|source| RegistryError::Reference {
        reference: probe.clone(),
        source,
    })?;
    let mut repositories = client
        .catalog(&reference, &RegistryAuth::Anonymous, None, None)
        .await
        .map_err(|source| RegistryError::Catalog {
            registry: registry.to_string(),
            source,
        })?
        .repositories;
    repositories.sort();
    Ok(repositories)
}

/// The OCI name of the CPU architecture flotilla was built for, as image
/// configs and indexes write it.
pub fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}
