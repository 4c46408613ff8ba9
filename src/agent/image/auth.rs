//! Registry credentials from Docker's `config.json` (`$DOCKER_CONFIG/config.json`
//! or `~/.docker/config.json`): `auths.<registry>.auth` (base64 `user:password`),
//! or `username`/`password`, or `registrytoken` (a bearer token). Credential
//! helpers (`credsStore`, `credHelpers`) are not run: they would execute
//! programs on the host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use super::ImageError;

#[derive(Debug, Default, Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    registrytoken: Option<String>,
}

/// The config file Docker would read.
pub fn docker_config_path() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir).join("config.json")),
        _ => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker").join("config.json")),
    }
}

/// The credentials for `registry` (as a reference names it, e.g.
/// `10.77.0.1:5000` or `docker.io`), anonymous when there are none.
pub fn credentials_for(registry: &str) -> Result<RegistryAuth, ImageError> {
    match docker_config_path() {
        Some(path) if path.exists() => credentials_from(&path, registry),
        _ => Ok(RegistryAuth::Anonymous),
    }
}

pub fn credentials_from(path: &Path, registry: &str) -> Result<RegistryAuth, ImageError> {
    let bad = |reason: String| ImageError::Invalid {
        what: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| ImageError::io(path, e))?;
    let config: DockerConfig = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let wanted = canonical_host(registry);
    let Some(entry) = config
        .auths
        .iter()
        .find(|(key, _)| canonical_host(key) == wanted)
        .map(|(_, entry)| entry)
    else {
        return Ok(RegistryAuth::Anonymous);
    };
    if let Some(token) = &entry.registrytoken {
        return Ok(RegistryAuth::Bearer(token.clone()));
    }
    if let Some(encoded) = &entry.auth {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| bad(format!("auths.{registry}.auth is not base64: {e}")))?;
        let text = String::from_utf8(decoded)
            .map_err(|_| bad(format!("auths.{registry}.auth is not UTF-8")))?;
        let (user, password) = text
            .split_once(':')
            .ok_or_else(|| bad(format!("auths.{registry}.auth is not user:password")))?;
        return Ok(RegistryAuth::Basic(user.to_string(), password.to_string()));
    }
    match (&entry.username, &entry.password) {
        (Some(user), Some(password)) => Ok(RegistryAuth::Basic(user.clone(), password.clone())),
        _ => Ok(RegistryAuth::Anonymous),
    }
}

/// Docker Hub goes by several names in config files; others by host[:port].
fn canonical_host(key: &str) -> String {
    let key = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = key.split('/').next().unwrap_or(key).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".into()
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp");
        std::io::Write::write_all(&mut file, text.as_bytes()).expect("write");
        file
    }

    #[test]
    fn base64_auth_and_docker_hub_aliases() {
        let file = config(
            r#"{"auths": {"https://index.docker.io/v1/": {"auth": "dXNlcjpwYTpzcw=="},
                          "10.77.0.1:5000": {"username": "u", "password": "p"},
                          "ghcr.io": {"registrytoken": "tok"}}}"#,
        );
        match credentials_from(file.path(), "docker.io").expect("read") {
            RegistryAuth::Basic(u, p) => assert_eq!((u.as_str(), p.as_str()), ("user", "pa:ss")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            credentials_from(file.path(), "10.77.0.1:5000").expect("read"),
            RegistryAuth::Basic(..)
        ));
        assert!(matches!(
            credentials_from(file.path(), "ghcr.io").expect("read"),
            RegistryAuth::Bearer(t) if t == "tok"
        ));
        assert!(matches!(
            credentials_from(file.path(), "quay.io").expect("read"),
            RegistryAuth::Anonymous
        ));
    }

    #[test]
    fn a_broken_config_is_an_error_naming_the_file() {
        let file = config(r#"{"auths": {"r": {"auth": "%%%"}}}"#);
        let err = credentials_from(file.path(), "r").expect_err("bad base64");
        assert!(err.to_string().contains("not base64"), "{err}");
    }
}
