//! The demo's SSH keys: a client key for the operator and one host key per
//! node, ed25519, in OpenSSH's file format. They live in the config directory
//! and are kept across `down`/`up`, so the host keys pinned in known_hosts stay
//! true and nothing has to be trusted twice.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rand::RngCore;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::{LineEnding, PrivateKey, PublicKey};

use super::DemoError;

/// Loads the ed25519 key at `path`, or makes one (and its `.pub`) if missing.
pub fn load_or_create(path: &Path, comment: &str) -> Result<PrivateKey, DemoError> {
    if path.exists() {
        return PrivateKey::read_openssh_file(path).map_err(|e| DemoError::Key {
            path: path.to_path_buf(),
            reason: e.to_string(),
        });
    }
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.set_comment(comment);
    let key_err = |reason: String| DemoError::Key {
        path: path.to_path_buf(),
        reason,
    };
    let pem = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| key_err(e.to_string()))?;
    write_private(path, pem.as_bytes()).map_err(|e| key_err(e.to_string()))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| key_err(e.to_string()))?;
    fs::write(path.with_extension("pub"), format!("{public}\n"))
        .map_err(|e| key_err(e.to_string()))?;
    Ok(key)
}

/// `ssh-ed25519 AAAA… comment`, as authorized_keys and known_hosts want it.
pub fn public_line(key: &PublicKey) -> String {
    key.to_openssh().unwrap_or_default()
}

/// Writes a secret with mode 0600 from the first byte (never readable by others, even briefly).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
