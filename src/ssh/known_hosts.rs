//! OpenSSH known_hosts files: our own parser, checker and writer.
//!
//! We do not use russh's helpers: they answer "not found" when a host is
//! recorded under a *different key type*, so a man in the middle could offer
//! an ed25519 key to a client that knows the host's ecdsa key and be treated
//! as a new host. Here any entry for the host whose key differs, whatever its
//! type, makes the decision [`HostKeyDecision::Changed`].
//!
//! Matching follows OpenSSH: the name looked up is `host` for port 22 and
//! `[host]:port` otherwise, compared case-insensitively against each
//! pattern (`*`, `?`, `!negation`, comma lists) or against the HMAC-SHA1 of a
//! hashed entry (`|1|salt|hash`). `@revoked` entries apply to the hosts their
//! pattern matches, as in OpenSSH (they are usually written with `*`).

use std::fs::{DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::{HashAlg, PublicKey};
use sha1::Sha1;

/// The port OpenSSH leaves out of known_hosts names.
pub const DEFAULT_SSH_PORT: u16 = 22;

/// What the known_hosts files say about a host and the key it offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyDecision {
    /// The offered key is recorded for this host.
    Trusted { file: PathBuf, line: usize },
    /// Nothing is recorded for this host.
    Unknown,
    /// The host is recorded, but never with the offered key (this includes a
    /// host recorded only under another key type).
    Changed {
        offered_fingerprint: String,
        recorded: Vec<RecordedKey>,
    },
    /// The offered key is marked `@revoked`; it is refused even if another
    /// line lists it as the host's key.
    Revoked { file: PathBuf, line: usize },
}

/// One known_hosts entry for a host, as shown to a user whose host key changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedKey {
    pub file: PathBuf,
    pub line: usize,
    /// The OpenSSH key type name, e.g. `ssh-ed25519`.
    pub key_type: String,
    /// `SHA256:<base64 without padding>`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

/// Failures writing a known_hosts file.
#[derive(Debug, thiserror::Error)]
pub enum KnownHostsError {
    #[error("cannot record the host key in {}: {source}; check that the directory is writable", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot encode the host key for known_hosts: {0}")]
    Encode(#[from] russh::keys::ssh_key::Error),
}

/// The fingerprint of `key` in OpenSSH's form, `SHA256:<base64 without padding>`.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The name known_hosts records a host under: `host` for port 22, `[host]:port`
/// otherwise. Lower-cased, because OpenSSH lower-cases the host it looks up.
pub fn host_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == DEFAULT_SSH_PORT {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// The known_hosts line (without newline) recording `key` for `host:port`,
/// written plainly (not hashed) so the operator can read and edit the file.
pub fn host_key_line(host: &str, port: u16, key: &PublicKey) -> Result<String, KnownHostsError> {
    // Drop the comment: known_hosts lines carry none by convention.
    let bare = PublicKey::new(key.key_data().clone(), "");
    Ok(format!("{} {}", host_name(host, port), bare.to_openssh()?))
}

/// Appends the line for `host:port` and `key` to `file`, creating the file
/// (mode 0600) and its parent directory (mode 0700) if needed, and syncs it
/// to disk so a trust decision survives a crash.
pub fn append_host_key(
    file: &Path,
    host: &str,
    port: u16,
    key: &PublicKey,
) -> Result<(), KnownHostsError> {
    let line = host_key_line(host, port, key)?;
    let write_err = |source| KnownHostsError::Write {
        path: file.to_path_buf(),
        source,
    };
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(write_err)?;
    }
    let mut f = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(file)
        .map_err(write_err)?;
    // A hand-edited file may lack its final newline; without one our entry
    // would be glued onto (and corrupt) the last line.
    let len = f.metadata().map_err(write_err)?.len();
    let mut text = String::new();
    if len > 0 {
        let mut last = [0u8; 1];
        f.read_exact_at(&mut last, len - 1).map_err(write_err)?;
        if last[0] != b'\n' {
            text.push('\n');
        }
    }
    text.push_str(&line);
    text.push('\n');
    f.write_all(text.as_bytes()).map_err(write_err)?;
    f.sync_all().map_err(write_err)?;
    Ok(())
}

/// Looks `host:port` up in `files`, in order, and decides whether `offered`
/// is its key. Missing files are skipped; unreadable files and malformed
/// lines are skipped with a warning (every outcome but `Trusted` refuses the
/// connection, so skipping never lets a key in).
pub fn check_host_key(
    files: &[PathBuf],
    host: &str,
    port: u16,
    offered: &PublicKey,
) -> HostKeyDecision {
    let name = host_name(host, port);
    let mut trusted = None;
    let mut recorded = Vec::new();
    for file in files {
        for entry in read_entries(file) {
            if !entry.hosts.matches(&name) {
                continue;
            }
            let same_key = entry.key.key_data() == offered.key_data();
            match entry.marker {
                Marker::Revoked if same_key => {
                    return HostKeyDecision::Revoked {
                        file: file.clone(),
                        line: entry.line,
                    };
                }
                // A revoked *other* key says nothing about the offered one.
                Marker::Revoked => {}
                Marker::None if same_key => {
                    trusted.get_or_insert((file.clone(), entry.line));
                }
                Marker::None => recorded.push(RecordedKey {
                    file: file.clone(),
                    line: entry.line,
                    key_type: entry.key.algorithm().as_str().to_string(),
                    fingerprint: fingerprint(&entry.key),
                }),
            }
        }
    }
    // Several keys per host are legal (key rotation): one match is enough.
    match trusted {
        Some((file, line)) => HostKeyDecision::Trusted { file, line },
        None if recorded.is_empty() => HostKeyDecision::Unknown,
        None => HostKeyDecision::Changed {
            offered_fingerprint: fingerprint(offered),
            recorded,
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
}

#[derive(Debug)]
struct Entry {
    line: usize,
    marker: Marker,
    hosts: HostPatterns,
    key: PublicKey,
}

#[derive(Debug)]
enum HostPatterns {
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
    List(Vec<Pattern>),
}

#[derive(Debug)]
struct Pattern {
    negated: bool,
    glob: String,
}

impl HostPatterns {
    fn matches(&self, name: &str) -> bool {
        match self {
            HostPatterns::Hashed { salt, hash } => {
                let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(salt) else {
                    return false;
                };
                mac.update(name.as_bytes());
                mac.verify_slice(hash).is_ok()
            }
            // As OpenSSH's match_hostname: a matching negation vetoes the
            // line even when a positive pattern matches too.
            HostPatterns::List(patterns) => {
                let mut positive = false;
                for p in patterns {
                    if glob_match(p.glob.as_bytes(), name.as_bytes()) {
                        if p.negated {
                            return false;
                        }
                        positive = true;
                    }
                }
                positive
            }
        }
    }
}

/// `*` and `?` globbing, case-insensitive, with single-star backtracking.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c.eq_ignore_ascii_case(&text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                // Let the last star swallow one more character and retry.
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

fn read_entries(file: &Path) -> Vec<Entry> {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            tracing::debug!(file = %file.display(), "no known_hosts file");
            return Vec::new();
        }
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "cannot read known_hosts file; skipping it");
            return Vec::new();
        }
    };
    parse_entries(file, &bytes)
}

fn parse_entries(file: &Path, bytes: &[u8]) -> Vec<Entry> {
    let mut entries = Vec::new();
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = index + 1;
        let parsed = std::str::from_utf8(raw)
            .map_err(|_| "not UTF-8".to_string())
            .and_then(|text| parse_line(line, text));
        match parsed {
            Ok(Some(entry)) => entries.push(entry),
            Ok(None) => {}
            Err(reason) => {
                tracing::warn!(
                    "{}:{line}: skipping malformed known_hosts line: {reason}",
                    file.display()
                );
            }
        }
    }
    entries
}

/// Parses one line: `Ok(None)` for blank lines, comments and lines flotilla
/// deliberately ignores; `Err` with a reason for malformed lines.
fn parse_line(line: usize, text: &str) -> Result<Option<Entry>, String> {
    let text = text.trim();
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    let mut fields = text.split_ascii_whitespace();
    let mut first = fields.next().ok_or("empty line")?;
    let marker = match first {
        "@revoked" => Marker::Revoked,
        // Host certificates are never negotiated (russh advertises no
        // certificate algorithms unless asked) and flotilla trusts no
        // certificate authority, so CA lines cannot vouch for anything here.
        "@cert-authority" => return Ok(None),
        m if m.starts_with('@') => return Err(format!("unknown marker {m}")),
        _ => Marker::None,
    };
    if marker != Marker::None {
        first = fields.next().ok_or("marker without host patterns")?;
    }
    let hosts = parse_hosts(first)?;
    let key_type = fields.next().ok_or("no key type")?;
    let blob = fields.next().ok_or("no key data")?;
    let blob = BASE64
        .decode(blob)
        .map_err(|e| format!("key data is not base64: {e}"))?;
    let key = PublicKey::from_bytes(&blob).map_err(|e| format!("key data does not decode: {e}"))?;
    if key.algorithm().as_str() != key_type {
        return Err(format!(
            "key type {key_type} does not match its key data ({})",
            key.algorithm().as_str()
        ));
    }
    Ok(Some(Entry {
        line,
        marker,
        hosts,
        key,
    }))
}

fn parse_hosts(field: &str) -> Result<HostPatterns, String> {
    if let Some(rest) = field.strip_prefix("|1|") {
        let (salt, hash) = rest.split_once('|').ok_or("hashed host without hash")?;
        let salt = BASE64
            .decode(salt)
            .map_err(|e| format!("hashed host salt is not base64: {e}"))?;
        let hash = BASE64
            .decode(hash)
            .map_err(|e| format!("hashed host hash is not base64: {e}"))?;
        if hash.len() != 20 {
            return Err("hashed host hash is not a SHA-1 digest".into());
        }
        return Ok(HostPatterns::Hashed { salt, hash });
    }
    if field.starts_with('|') {
        return Err("unsupported hashed host format".into());
    }
    let mut patterns = Vec::new();
    for pattern in field.split(',') {
        let (negated, glob) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        if glob.is_empty() {
            return Err("empty host pattern".into());
        }
        patterns.push(Pattern {
            negated,
            glob: glob.to_ascii_lowercase(),
        });
    }
    Ok(HostPatterns::List(patterns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::PrivateKey;
    use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};

    fn ed25519(seed: u8) -> PublicKey {
        let pair = Ed25519Keypair::from_seed(&[seed; 32]);
        PrivateKey::new(KeypairData::Ed25519(pair), "")
            .expect("key")
            .public_key()
            .clone()
    }

    // Generated with `ssh-keygen -t ecdsa` / `-t ed25519`; the hashed lines
    // below are `ssh-keygen -H` output for `node1` and `[node2]:2222`, and
    // the fingerprints are what `ssh-keygen -l` printed for these keys.
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBHp31YQPcV2WB2CFdA2gIZxvwclIpN72JJGaxyvwbLQwHW0iBf5BYELAL5Bru3EbAxoixqU2En0dFMpY7d26veQ=";
    const ECDSA_FP: &str = "SHA256:ZlX3T+uC5j1WtmxLX1s22SFOv9L1sjAWuQGwjSNv2vg";
    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFN5x56He3PAPjTA8gUQwQS5A9gJKUPC3a2LG8LrcmNb";
    const ED25519_FP: &str = "SHA256:VsLdhSTbYkP81EJyaHcXVO6HB1A5WFEV30vKX+HoaP8";
    const HASHED_NODE1: &str = "|1|9adavdlvphhkJpAfFYdsuq7o19I=|kZkYc0od31yjdbbrt0POPThko9A=";
    const HASHED_NODE2_2222: &str = "|1|1Z+WuhU7OdmufvFjb96RbB4L8EI=|W/XMc+EifOFX6M2S9yx+sgv8Dcc=";

    fn ecdsa() -> PublicKey {
        PublicKey::from_openssh(ECDSA).expect("ecdsa key")
    }

    fn openssh(key: &PublicKey) -> String {
        PublicKey::new(key.key_data().clone(), "")
            .to_openssh()
            .expect("encode")
    }

    /// Writes `lines` to a fresh known_hosts file; returns its dir and path.
    fn write(lines: &[String]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, lines.join("\n") + "\n").expect("write");
        (dir, path)
    }

    fn check(path: &Path, host: &str, port: u16, key: &PublicKey) -> HostKeyDecision {
        check_host_key(&[path.to_path_buf()], host, port, key)
    }

    fn trusted_at(d: &HostKeyDecision) -> Option<usize> {
        match d {
            HostKeyDecision::Trusted { line, .. } => Some(*line),
            _ => None,
        }
    }

    #[test]
    fn plain_host_is_trusted_and_other_hosts_unknown() {
        let k = ed25519(1);
        let (_d, p) = write(&[format!("node1 {}", openssh(&k))]);
        assert_eq!(trusted_at(&check(&p, "node1", 22, &k)), Some(1));
        assert_eq!(trusted_at(&check(&p, "NODE1", 22, &k)), Some(1));
        assert_eq!(check(&p, "node2", 22, &k), HostKeyDecision::Unknown);
    }

    #[test]
    fn comma_list_matches_each_name() {
        let k = ed25519(1);
        let (_d, p) = write(&[format!("node1,10.0.0.1,[node1]:2222 {}", openssh(&k))]);
        assert!(trusted_at(&check(&p, "node1", 22, &k)).is_some());
        assert!(trusted_at(&check(&p, "10.0.0.1", 22, &k)).is_some());
        assert!(trusted_at(&check(&p, "node1", 2222, &k)).is_some());
        assert_eq!(check(&p, "10.0.0.2", 22, &k), HostKeyDecision::Unknown);
    }

    #[test]
    fn bracketed_port_is_distinct_from_bare_port_22() {
        let k = ed25519(1);
        let (_d, p) = write(&[format!("[node1]:2222 {}", openssh(&k))]);
        assert!(trusted_at(&check(&p, "node1", 2222, &k)).is_some());
        assert_eq!(check(&p, "node1", 22, &k), HostKeyDecision::Unknown);
        assert_eq!(check(&p, "node1", 2223, &k), HostKeyDecision::Unknown);
        assert_eq!(host_name("node1", 22), "node1");
        assert_eq!(host_name("Node1", 2222), "[node1]:2222");
    }

    fn hashed(name: &str, salt: &[u8]) -> String {
        let mut mac = Hmac::<Sha1>::new_from_slice(salt).expect("hmac");
        mac.update(name.as_bytes());
        let hash = mac.finalize().into_bytes();
        format!("|1|{}|{}", BASE64.encode(salt), BASE64.encode(hash))
    }

    #[test]
    fn hashed_entries_match_host_and_bracketed_port() {
        let k = ed25519(1);
        let salt = [7u8; 20];
        let (_d, p) = write(&[
            format!("{} {}", hashed("node1", &salt), openssh(&k)),
            format!("{} {}", hashed("[node2]:2222", &salt), openssh(&k)),
        ]);
        assert_eq!(trusted_at(&check(&p, "node1", 22, &k)), Some(1));
        assert_eq!(trusted_at(&check(&p, "node2", 2222, &k)), Some(2));
        assert_eq!(check(&p, "node2", 22, &k), HostKeyDecision::Unknown);
        assert_eq!(check(&p, "node3", 22, &k), HostKeyDecision::Unknown);
    }

    #[test]
    fn hashed_entries_written_by_ssh_keygen() {
        let ec = ecdsa();
        let ed = PublicKey::from_openssh(ED25519).expect("ed25519 key");
        let (_d, p) = write(&[
            format!("{HASHED_NODE1} {ECDSA} "),
            format!("{HASHED_NODE2_2222} {ED25519} "),
        ]);
        assert_eq!(trusted_at(&check(&p, "node1", 22, &ec)), Some(1));
        assert_eq!(trusted_at(&check(&p, "node2", 2222, &ed)), Some(2));
        assert_eq!(check(&p, "node2", 22, &ed), HostKeyDecision::Unknown);
        assert!(matches!(
            check(&p, "node1", 22, &ed),
            HostKeyDecision::Changed { .. }
        ));
    }

    #[test]
    fn fingerprints_match_ssh_keygen() {
        assert_eq!(fingerprint(&ecdsa()), ECDSA_FP);
        let ed = PublicKey::from_openssh(ED25519).expect("ed25519 key");
        assert_eq!(fingerprint(&ed), ED25519_FP);
        assert_eq!(
            host_key_line("node1", 22, &ed).expect("line"),
            format!("node1 {ED25519}")
        );
    }

    #[test]
    fn wildcards_and_negation() {
        let k = ed25519(1);
        let (_d, p) = write(&[format!("node?,10.0.*,!node9,!10.0.0.66 {}", openssh(&k))]);
        assert!(trusted_at(&check(&p, "node1", 22, &k)).is_some());
        assert!(trusted_at(&check(&p, "10.0.3.4", 22, &k)).is_some());
        assert_eq!(check(&p, "node10", 22, &k), HostKeyDecision::Unknown);
        assert_eq!(check(&p, "node9", 22, &k), HostKeyDecision::Unknown);
        assert_eq!(check(&p, "10.0.0.66", 22, &k), HostKeyDecision::Unknown);
        // A bare glob is matched against the bracketed name too.
        let (_d2, p2) = write(&[format!("* {}", openssh(&k))]);
        assert!(trusted_at(&check(&p2, "anything", 2222, &k)).is_some());
    }

    #[test]
    fn glob_matching() {
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"a*b*c", b"aXXbYYc"));
        assert!(glob_match(b"a*c", b"abcbc"));
        assert!(!glob_match(b"a*c", b"abcb"));
        assert!(glob_match(b"?", b"x"));
        assert!(!glob_match(b"?", b""));
        assert!(glob_match(b"**x", b"abx"));
    }

    #[test]
    fn revoked_key_is_refused_even_when_listed() {
        let k = ed25519(1);
        let other = ed25519(2);
        let (_d, p) = write(&[
            format!("node1 {}", openssh(&k)),
            format!("@revoked * {}", openssh(&k)),
            format!("@revoked * {}", openssh(&other)),
        ]);
        assert_eq!(
            check(&p, "node1", 22, &k),
            HostKeyDecision::Revoked {
                file: p.clone(),
                line: 2
            }
        );
        // A revoked key that is not the host's recorded one is not "changed".
        let (_d2, p2) = write(&[format!("@revoked * {}", openssh(&other))]);
        assert_eq!(check(&p2, "node1", 22, &k), HostKeyDecision::Unknown);
    }

    #[test]
    fn different_key_type_is_changed_never_unknown() {
        let recorded = ecdsa();
        let offered = ed25519(1);
        let (_d, p) = write(&[format!("node1 {}", openssh(&recorded))]);
        match check(&p, "node1", 22, &offered) {
            HostKeyDecision::Changed {
                offered_fingerprint,
                recorded: r,
            } => {
                assert_eq!(offered_fingerprint, fingerprint(&offered));
                assert!(offered_fingerprint.starts_with("SHA256:"));
                assert!(!offered_fingerprint.ends_with('='));
                assert_eq!(r.len(), 1);
                assert_eq!(r[0].key_type, "ecdsa-sha2-nistp256");
                assert_eq!(r[0].fingerprint, fingerprint(&recorded));
                assert_eq!((r[0].file.clone(), r[0].line), (p.clone(), 1));
            }
            other => panic!("expected Changed, got {other:?}"),
        }
    }

    #[test]
    fn same_type_different_key_is_changed_and_second_key_is_trusted() {
        let k1 = ed25519(1);
        let k2 = ed25519(2);
        let (_d, p) = write(&[format!("node1 {}", openssh(&k1))]);
        assert!(matches!(
            check(&p, "node1", 22, &k2),
            HostKeyDecision::Changed { .. }
        ));
        let (_d2, p2) = write(&[
            format!("node1 {}", openssh(&k1)),
            format!("node1 {}", openssh(&k2)),
        ]);
        assert_eq!(trusted_at(&check(&p2, "node1", 22, &k2)), Some(2));
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let k = ed25519(1);
        let good = openssh(&k);
        let (_d, p) = write(&[
            "# a comment".to_string(),
            String::new(),
            "   ".to_string(),
            "node1".to_string(),
            "node1 ssh-ed25519".to_string(),
            "node1 ssh-ed25519 !!!notbase64".to_string(),
            "node1 ssh-ed25519 AAAA".to_string(),
            format!("node1 ssh-rsa {}", good.split(' ').nth(1).unwrap_or("")),
            format!("@bogus node1 {good}"),
            format!("|1|bad|salt {good}"),
            format!("|2|x|y {good}"),
            format!(",node1 {good}"),
            format!("@cert-authority * {good}"),
            format!("node1 {good} a comment with spaces"),
        ]);
        assert_eq!(trusted_at(&check(&p, "node1", 22, &k)), Some(14));
        // Non-UTF-8 bytes do not panic either.
        std::fs::write(&p, b"\xff\xfe node1\n").expect("write");
        assert_eq!(check(&p, "node1", 22, &k), HostKeyDecision::Unknown);
    }

    #[test]
    fn files_are_consulted_in_order_and_missing_ones_skipped() {
        let k = ed25519(1);
        let (_d1, first) = write(&[format!("node1 {}", openssh(&k))]);
        let (_d2, second) = write(&[format!("node1 {}", openssh(&k))]);
        let missing = first.with_file_name("absent");
        let files = vec![missing, first.clone(), second.clone()];
        assert_eq!(
            check_host_key(&files, "node1", 22, &k),
            HostKeyDecision::Trusted {
                file: first.clone(),
                line: 1
            }
        );
        // A changed key recorded in the first file is reported with a
        // trusted one in the second: trust wins, as in OpenSSH.
        let (_d3, old) = write(&[format!("node2 {}", openssh(&ed25519(9)))]);
        let (_d4, new) = write(&[format!("node2 {}", openssh(&k))]);
        assert!(trusted_at(&check_host_key(&[old.clone(), new], "node2", 22, &k)).is_some());
        // Recorded keys from every file are listed when none matches.
        let (_d5, also_old) = write(&[format!("node2 {}", openssh(&ecdsa()))]);
        match check_host_key(&[old.clone(), also_old.clone()], "node2", 22, &k) {
            HostKeyDecision::Changed { recorded, .. } => {
                let files: Vec<_> = recorded.iter().map(|r| r.file.clone()).collect();
                assert_eq!(files, vec![old, also_old]);
            }
            other => panic!("expected Changed, got {other:?}"),
        }
    }

    #[test]
    fn append_creates_private_file_and_reads_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("sub/dir/known_hosts");
        let k = ed25519(1);
        append_host_key(&file, "Node1", 22, &k).expect("append");
        append_host_key(&file, "node2", 2222, &ecdsa()).expect("append");
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&file).expect("read");
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], format!("node1 {}", openssh(&k)));
        assert!(lines[1].starts_with("[node2]:2222 ecdsa-sha2-nistp256 "));
        assert!(trusted_at(&check(&file, "node1", 22, &k)).is_some());
    }

    #[test]
    fn append_repairs_missing_final_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("known_hosts");
        let k = ed25519(1);
        std::fs::write(&file, format!("node0 {}", openssh(&ed25519(3)))).expect("write");
        append_host_key(&file, "node1", 22, &k).expect("append");
        assert_eq!(trusted_at(&check(&file, "node1", 22, &k)), Some(2));
    }
}
