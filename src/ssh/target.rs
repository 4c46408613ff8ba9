//! From a node of the cluster file to an [`SshTarget`], the way `ssh` would
//! decide where, as whom and with which keys to connect: what the cluster
//! file says wins; else `~/.ssh/config` for the node's address (which may be
//! a Host alias); else ssh's defaults (port 22, the local user, the first of
//! `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa` that exist). Host keys are
//! checked against `~/.ssh/known_hosts` and then flotilla's own known_hosts,
//! or against the fingerprint the cluster file pins.

use std::path::PathBuf;
use std::time::Duration;

use super::SshTarget;
use super::config::{LocalUser, SshConfig, SshConfigError};
use crate::config::cluster_file::NodeConfig;
use crate::config::paths::Dirs;

/// How long the TCP connect and, separately, the SSH handshake may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The key files ssh tries when no `IdentityFile` applies, in its order
/// (without the DSA and security-key ones flotilla cannot use).
pub const DEFAULT_IDENTITY_NAMES: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];

/// What every node's target is built from, read once: the ssh config, the
/// local user and home, and flotilla's known_hosts.
#[derive(Debug, Clone)]
pub struct TargetContext {
    pub ssh_config: SshConfig,
    pub local: LocalUser,
    /// flotilla's own known_hosts (consulted after `~/.ssh/known_hosts`).
    pub flotilla_known_hosts: PathBuf,
    pub connect_timeout: Duration,
}

impl TargetContext {
    /// Reads `~/.ssh/config` (if there is one) and the local user from the
    /// environment. A bad config line is an error naming file and line.
    pub fn from_env(dirs: &Dirs) -> Result<TargetContext, SshConfigError> {
        Ok(TargetContext {
            ssh_config: SshConfig::load_default()?,
            local: LocalUser::from_env(),
            flotilla_known_hosts: dirs.known_hosts(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        })
    }

    /// The target for `node`.
    pub fn target(&self, node: &NodeConfig) -> SshTarget {
        let settings = self.ssh_config.resolve_for(
            &node.address,
            &self.local,
            node.user.as_deref(),
            node.port,
        );
        let identities = match &node.identity {
            Some(identity) => vec![identity.clone()],
            None if !settings.identity_files.is_empty() => settings.identity_files,
            None => self
                .local
                .ssh_dir()
                .map(|dir| {
                    DEFAULT_IDENTITY_NAMES
                        .iter()
                        .map(|name| dir.join(name))
                        .filter(|path| path.exists())
                        .collect()
                })
                .unwrap_or_default(),
        };
        let mut known_hosts = Vec::new();
        if let Some(dir) = self.local.ssh_dir() {
            known_hosts.push(dir.join("known_hosts"));
        }
        known_hosts.push(self.flotilla_known_hosts.clone());
        SshTarget {
            address: settings.hostname.unwrap_or_else(|| node.address.clone()),
            port: node.port.or(settings.port).unwrap_or(22),
            user: node
                .user
                .clone()
                .or(settings.user)
                .unwrap_or_else(|| self.local.name.clone()),
            identities,
            known_hosts,
            pinned_fingerprint: node.host_key.clone(),
            connect_timeout: self.connect_timeout,
        }
    }
}

/// The target for `node` with the environment's ssh config and user: the
/// short form of [`TargetContext::from_env`] then [`TargetContext::target`].
pub fn node_target(node: &NodeConfig, dirs: &Dirs) -> Result<SshTarget, SshConfigError> {
    Ok(TargetContext::from_env(dirs)?.target(node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::Path;

    fn node(address: &str) -> NodeConfig {
        NodeConfig {
            name: "n1".into(),
            address: address.into(),
            port: None,
            user: None,
            identity: None,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            host_key: None,
            cgroup_parent: "flotilla".into(),
        }
    }

    fn context(home: &Path, config: &str) -> TargetContext {
        let local = LocalUser {
            name: "me".into(),
            home: Some(home.to_path_buf()),
            uid: nix::unistd::getuid().as_raw(),
        };
        let ssh_dir = home.join(".ssh");
        TargetContext {
            ssh_config: SshConfig::parse_str(&ssh_dir.join("config"), config, &ssh_dir, &local)
                .expect("config"),
            local,
            flotilla_known_hosts: PathBuf::from("/cfg/flotilla/known_hosts"),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    #[test]
    fn defaults_are_port_22_the_local_user_and_existing_default_keys() {
        let home = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(home.path().join(".ssh")).expect("mkdir");
        std::fs::write(home.path().join(".ssh/id_rsa"), "").expect("write");
        std::fs::write(home.path().join(".ssh/id_ed25519"), "").expect("write");
        let target = context(home.path(), "").target(&node("10.0.0.1"));
        assert_eq!(target.address, "10.0.0.1");
        assert_eq!(target.port, 22);
        assert_eq!(target.user, "me");
        assert_eq!(
            target.identities,
            vec![
                home.path().join(".ssh/id_ed25519"),
                home.path().join(".ssh/id_rsa")
            ]
        );
        assert_eq!(
            target.known_hosts,
            vec![
                home.path().join(".ssh/known_hosts"),
                PathBuf::from("/cfg/flotilla/known_hosts")
            ]
        );
        assert_eq!(target.pinned_fingerprint, None);
    }

    #[test]
    fn the_ssh_config_fills_what_the_cluster_file_leaves_out() {
        let home = tempfile::tempdir().expect("tempdir");
        let ctx = context(
            home.path(),
            "Host n1\n  HostName 10.9.9.9\n  User ops\n  Port 2222\n  IdentityFile ~/.ssh/n1_key\n",
        );
        let target = ctx.target(&node("n1"));
        assert_eq!(target.address, "10.9.9.9", "HostName is where to connect");
        assert_eq!(target.user, "ops");
        assert_eq!(target.port, 2222);
        assert_eq!(target.identities, vec![home.path().join(".ssh/n1_key")]);
    }

    #[test]
    fn cluster_file_fields_win() {
        let home = tempfile::tempdir().expect("tempdir");
        let ctx = context(
            home.path(),
            "Host n1\n  HostName 10.9.9.9\n  User ops\n  Port 2222\n  IdentityFile ~/.ssh/n1_key\n",
        );
        let mut n = node("n1");
        n.user = Some("root".into());
        n.port = Some(22);
        n.identity = Some(PathBuf::from("/keys/cluster"));
        n.host_key = Some(format!("SHA256:{}", "A".repeat(43)));
        let target = ctx.target(&n);
        assert_eq!(target.address, "10.9.9.9");
        assert_eq!(target.user, "root");
        assert_eq!(target.port, 22);
        assert_eq!(target.identities, vec![PathBuf::from("/keys/cluster")]);
        assert_eq!(target.pinned_fingerprint, n.host_key);
    }
}
