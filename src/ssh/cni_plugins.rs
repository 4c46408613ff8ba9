//! CNI's plugins as flotilla ships them to hosts: the ones a pod network
//! needs, where a host is looked at for them, and the operator's own copies
//! (found here, hashed only when a host needs them) that the bootstrap
//! uploads to a host with none, so the host still needs nothing but sshd.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::bootstrap::{AgentBinaryError, hash_file};

use crate::agent::network::{DEFAULT_PLUGIN_DIRS, REQUIRED_PLUGINS as CNI_PLUGINS};

/// Where uploaded plugins go on a host: under the agent's root, which the
/// agent searches after the usual places.
pub const REMOTE_CNI_DIR: &str = "/var/lib/flotilla/cni/bin";
/// Overrides where the operator's plugins are looked for.
pub const CNI_PLUGINS_ENV: &str = "FLOTILLA_CNI_PLUGINS";
/// Where plugins are looked for, here and on hosts: CNI's convention, then
/// Debian's `containernetworking-plugins`.
const SYSTEM_DIRS: [&str; 2] = DEFAULT_PLUGIN_DIRS;

/// A directory here holding every plugin, if there is one.
pub fn local_dir() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = match std::env::var_os(CNI_PLUGINS_ENV).filter(|v| !v.is_empty())
    {
        Some(dir) => vec![PathBuf::from(dir)],
        None => SYSTEM_DIRS.iter().map(PathBuf::from).collect(),
    };
    candidates.into_iter().find(|dir| has_all(dir))
}

fn has_all(dir: &Path) -> bool {
    CNI_PLUGINS.iter().all(|p| dir.join(p).is_file())
}

/// Shell lines for the bootstrap's probe: `cni=DIR` for the first directory
/// on the host with every plugin, else `cni=none`.
pub fn probe_script() -> String {
    let dirs: Vec<&str> = SYSTEM_DIRS
        .iter()
        .copied()
        .chain([REMOTE_CNI_DIR])
        .collect();
    format!(
        r#"cni=none
for d in {dirs}; do
  ok=1
  for p in {plugins}; do [ -x "$d/$p" ] || ok=; done
  if [ -n "$ok" ]; then cni=$d; break; fi
done
echo "cni=$cni""#,
        dirs = dirs.join(" "),
        plugins = CNI_PLUGINS.join(" "),
    )
}

/// One plugin ready to upload.
#[derive(Debug, Clone)]
pub struct HashedPlugin {
    pub name: &'static str,
    pub path: PathBuf,
    pub sha256: String,
    /// Rust's name for the architecture in its ELF header.
    pub arch: String,
}

/// Every plugin in `dir`, hashed (blocking: a few MB each).
pub fn hash_all(dir: &Path) -> Result<Vec<HashedPlugin>, AgentBinaryError> {
    CNI_PLUGINS
        .iter()
        .map(|name| {
            let path = dir.join(name);
            let read_err = |source: std::io::Error| AgentBinaryError::Read {
                path: path.clone(),
                source,
            };
            let file = File::open(&path).map_err(read_err)?;
            let digest = hash_file(&path, &file, read_err)?;
            Ok(HashedPlugin {
                name,
                path: path.clone(),
                sha256: digest.sha256,
                arch: digest.arch,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_names_the_first_complete_directory() {
        let root = std::env::temp_dir().join(format!("flotilla-cni-probe-{}", std::process::id()));
        let (partial, full) = (root.join("partial"), root.join("full"));
        std::fs::create_dir_all(&partial).unwrap();
        std::fs::create_dir_all(&full).unwrap();
        for p in CNI_PLUGINS {
            let path = full.join(p);
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        std::fs::write(partial.join("bridge"), "").unwrap();
        let script = probe_script().replace(
            &SYSTEM_DIRS
                .iter()
                .copied()
                .chain([REMOTE_CNI_DIR])
                .collect::<Vec<_>>()
                .join(" "),
            &format!("{} {}", partial.display(), full.display()),
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("cni={}", full.display())
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script.replace(&full.display().to_string(), "/nonexistent"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "cni=none");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn local_plugins_are_hashed_with_their_architecture() {
        let Some(dir) = local_dir() else {
            eprintln!("skipped: no CNI plugins on this machine");
            return;
        };
        let hashed = hash_all(&dir).expect("hash");
        assert_eq!(hashed.len(), CNI_PLUGINS.len());
        assert!(
            hashed
                .iter()
                .all(|p| p.sha256.len() == 64 && p.arch == std::env::consts::ARCH)
        );
    }
}
