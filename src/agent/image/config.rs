//! An image's configuration, reduced to what the runtime needs to start it:
//! entrypoint, cmd, env, working directory, user, exposed ports, stop signal,
//! plus the platform and the diff_ids the layers must unpack to.

use serde::{Deserialize, Serialize};

use super::ImageError;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    pub created: Option<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// `8080/tcp`, `53/udp`, as the image lists them.
    pub exposed_ports: Vec<String>,
    pub stop_signal: Option<String>,
    pub diff_ids: Vec<String>,
}

/// The OCI/Docker config document, as registries serve it.
#[derive(Debug, Deserialize)]
struct Raw {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    variant: Option<String>,
    created: Option<String>,
    #[serde(default)]
    config: RawRuntime,
    rootfs: RawRootfs,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawRuntime {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
    exposed_ports: Option<serde_json::Map<String, serde_json::Value>>,
    stop_signal: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawRootfs {
    #[serde(rename = "type")]
    kind: String,
    diff_ids: Vec<String>,
}

/// Parses a config blob; `digest` names it in errors.
pub fn parse(body: &[u8], digest: &str) -> Result<ImageConfig, ImageError> {
    let invalid = |reason: String| ImageError::Invalid {
        what: format!("image config {digest}"),
        reason,
    };
    let raw: Raw = serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    if raw.rootfs.kind != "layers" {
        return Err(invalid(format!(
            "rootfs.type {:?} is not \"layers\"",
            raw.rootfs.kind
        )));
    }
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    let mut exposed_ports: Vec<String> = raw
        .config
        .exposed_ports
        .map(|ports| ports.into_iter().map(|(port, _)| port).collect())
        .unwrap_or_default();
    exposed_ports.sort();
    Ok(ImageConfig {
        os: raw.os,
        architecture: raw.architecture,
        variant: raw.variant,
        created: raw.created,
        entrypoint: raw.config.entrypoint.unwrap_or_default(),
        cmd: raw.config.cmd.unwrap_or_default(),
        env: raw.config.env.unwrap_or_default(),
        working_dir: non_empty(raw.config.working_dir),
        user: non_empty(raw.config.user),
        exposed_ports,
        stop_signal: non_empty(raw.config.stop_signal),
        diff_ids: raw.rootfs.diff_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_fields_are_read() {
        let config = parse(
            br#"{"architecture":"amd64","os":"linux","created":"2026-01-01T00:00:00Z",
                "config":{"Entrypoint":["/init"],"Cmd":["httpd","-f"],"Env":["PATH=/bin"],
                          "WorkingDir":"/www","User":"nobody","ExposedPorts":{"8080/tcp":{}},
                          "StopSignal":"SIGQUIT"},
                "rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#,
            "sha256:c",
        )
        .expect("valid");
        assert_eq!(config.entrypoint, vec!["/init"]);
        assert_eq!(config.cmd, vec!["httpd", "-f"]);
        assert_eq!(config.working_dir.as_deref(), Some("/www"));
        assert_eq!(config.user.as_deref(), Some("nobody"));
        assert_eq!(config.exposed_ports, vec!["8080/tcp"]);
        assert_eq!(config.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(config.diff_ids.len(), 1);
    }

    #[test]
    fn a_config_without_layers_is_refused() {
        let err = parse(br#"{"rootfs":{"type":"x","diff_ids":[]}}"#, "sha256:c").expect_err("bad");
        assert!(err.to_string().contains("sha256:c"), "{err}");
    }
}
