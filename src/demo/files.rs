//! The files `demo up` writes for the operator and for each node's sshd: the
//! cluster file, flotilla's known_hosts entries for the nodes' host keys, the
//! authorized_keys file, and each node's sshd configuration.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::{DemoError, DemoLayout, DemoSpec};

/// First line of every cluster file the demo writes; `up` only ever rewrites a
/// cluster file that starts with it, never one the operator wrote.
pub const CLUSTER_FILE_MARKER: &str = "# Written by `flotilla demo up`";

pub fn cluster_file_text(spec: &DemoSpec, layout: &DemoLayout) -> String {
    let mut text = format!(
        "{CLUSTER_FILE_MARKER} for the demo cluster \"{name}\"; it rewrites this file.\n\
         # Copy it elsewhere before editing.\n\n\
         [cluster]\nname = \"{name}\"\n\n\
         [defaults]\nuser = \"root\"\nidentity = {identity}\nport = 22\n",
        name = spec.name,
        identity = toml_string(&layout.client_key().display().to_string()),
    );
    for i in 1..=spec.nodes {
        let zone = ["a", "b", "c"][usize::from(i - 1) % 3];
        // Every node's agent shares this machine's cgroup tree: each gets its own part.
        text.push_str(&format!(
            "\n[[nodes]]\nname = \"{}\"\naddress = \"{}\"\nlabels = {{ zone = \"{zone}\" }}\ncgroup_parent = \"{}\"\n",
            spec.node_name(i),
            spec.node_address(i),
            spec.cgroup_parent(i),
        ));
    }
    text.push_str(&format!(
        "\n[registries.\"{}\"]\ninsecure = true\n",
        spec.registry_address()
    ));
    text
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Writes `text` to `path` unless an operator's own file is there.
/// Returns whether it wrote.
pub fn write_cluster_file_if_ours(path: &Path, text: &str) -> Result<bool, DemoError> {
    match fs::read_to_string(path) {
        Ok(existing) if !existing.starts_with(CLUSTER_FILE_MARKER) => return Ok(false),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(DemoError::io(path, e)),
    }
    write_atomically(path, text.as_bytes(), 0o644)?;
    Ok(true)
}

/// The configuration of one node's sshd: key-only root login on the node's
/// address, nothing from the host's /etc/ssh.
pub fn sshd_config_text(address: &str, host_key: &Path) -> String {
    format!(
        "# Written by `flotilla demo up`.\n\
         ListenAddress {address}:22\n\
         HostKey {host_key}\n\
         AuthorizedKeysFile {authorized_keys}\n\
         PermitRootLogin prohibit-password\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         PidFile none\n\
         PrintMotd no\n\
         MaxStartups 64:30:128\n\
         MaxSessions 64\n\
         Subsystem sftp internal-sftp\n",
        host_key = host_key.display(),
        authorized_keys = super::node::NODE_AUTHORIZED_KEYS,
    )
}

/// Writes a file through a temporary name and a rename, so readers never see half of it.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), DemoError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| DemoError::io(dir, e))?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| DemoError::io(&tmp, e))?;
    file.write_all(bytes).map_err(|e| DemoError::io(&tmp, e))?;
    file.sync_all().map_err(|e| DemoError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| DemoError::io(path, e))
}

/// Pins `key` for `address:port` in flotilla's known_hosts, unless it is there
/// already. Another key recorded for that address is never overwritten: the
/// operator decides, with the command in the error.
pub fn pin_host_key(
    known_hosts: &Path,
    address: &str,
    port: u16,
    key: &russh::keys::PublicKey,
) -> Result<(), DemoError> {
    use crate::ssh::known_hosts::{HostKeyDecision, append_host_key, check_host_key};
    let conflict = |line: usize, what: &str| DemoError::KnownHosts {
        path: known_hosts.to_path_buf(),
        reason: format!(
            "line {line} {what} for {address}, not the demo node's key; if it is a stale demo entry, \
             remove it with `ssh-keygen -R {address} -f {}` and run `flotilla demo up` again",
            known_hosts.display()
        ),
    };
    match check_host_key(&[known_hosts.to_path_buf()], address, port, key) {
        HostKeyDecision::Trusted { .. } => Ok(()),
        HostKeyDecision::Unknown => {
            append_host_key(known_hosts, address, port, key).map_err(|e| DemoError::KnownHosts {
                path: known_hosts.to_path_buf(),
                reason: e.to_string(),
            })
        }
        HostKeyDecision::Changed { recorded, .. } => Err(conflict(
            recorded.first().map(|r| r.line).unwrap_or_default(),
            "records another key",
        )),
        HostKeyDecision::Revoked { line, .. } => Err(conflict(line, "revokes the key")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn the_cluster_file_names_every_node_and_the_insecure_registry() {
        let spec = DemoSpec::new("demo", 3).expect("spec");
        let layout = DemoLayout::new(&spec, &PathBuf::from("/c"), &PathBuf::from("/d"));
        let text = cluster_file_text(&spec, &layout);
        let config = crate::config::cluster_file::parse(Path::new("cluster.toml"), &text)
            .expect("the demo's cluster file passes flotilla's own checks");
        assert_eq!(config.insecure_registries(), vec!["10.77.0.1:5000"]);
        assert_eq!(config.nodes[1].cgroup_parent, "flotilla-demo-node2");
        let value: toml::Table = toml::from_str(&text).expect("valid TOML");
        let nodes = value["nodes"].as_array().expect("nodes");
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[2]["address"].as_str(), Some("10.77.0.13"));
        assert_eq!(
            value["registries"]["10.77.0.1:5000"]["insecure"].as_bool(),
            Some(true)
        );
        assert!(text.starts_with(CLUSTER_FILE_MARKER));
    }

    #[test]
    fn an_operators_cluster_file_is_never_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cluster.toml");
        fs::write(&path, "[cluster]\nname = \"mine\"\n").expect("write");
        assert!(!write_cluster_file_if_ours(&path, "new").expect("write"));
        assert_eq!(
            fs::read_to_string(&path).expect("read"),
            "[cluster]\nname = \"mine\"\n"
        );
        fs::write(&path, format!("{CLUSTER_FILE_MARKER}\nold")).expect("write");
        assert!(write_cluster_file_if_ours(&path, "new").expect("write"));
        assert_eq!(fs::read_to_string(&path).expect("read"), "new");
    }
}
