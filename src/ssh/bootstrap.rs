//! The agent bootstrap: over one authenticated SSH session, make sure the
//! host runs the `flotilla-agent` this `flotilla` ships with, and connect to it.
//!
//! 0. For a root login, the agent's socket is tried first: an agent that
//!    answers from our binary's path is all we need (no exec on the host).
//! 1. One exec learns the host: `uname -m` (a binary for another
//!    architecture is refused), `id -u` (a non-root login works through
//!    `sudo -n`, and a sudo that wants a password is its own error), and
//!    whether `/var/lib/flotilla/bin/flotilla-agent-<sha256>` is there.
//! 2. If it is not, the binary goes up the same connection: a shell on the
//!    host writes stdin to a temporary file in that directory (umask 077),
//!    checks its sha256 with `sha256sum`, and only then makes it executable
//!    and renames it to its final, content-addressed name. A wrong digest
//!    deletes the copy.
//! 3. The agent's socket is tried: for a root login a direct-streamlocal
//!    channel to `/run/flotilla/agent.sock` (no process on the host per
//!    connection, and sshd does the socket's permission check as root); for a
//!    non-root login, whose channels sshd opens as that user, an exec of
//!    `sudo -n flotilla-agent __bridge`, which joins the socket to stdio.
//!    Nobody answering: `serve --detach` starts it. Another build answering
//!    (hello's `agentBinary` is not our path, or is absent): it is stopped
//!    with SIGTERM (its pid from hello; SIGKILL after 15 s) and ours started.
//!    Containers keep running meanwhile: their shims are separate processes
//!    the new agent adopts.
//!
//! The probe also looks for CNI's plugins (`bridge`, `host-local`,
//! `portmap`, `loopback`) in `/opt/cni/bin`, `/usr/lib/cni` and
//! `/var/lib/flotilla/cni/bin`; a host with none gets the operator's copied
//! into the last, the same way and verified the same way, before the agent
//! starts (see [`super::cni_plugins`]). A root login whose agent already
//! runs skips the probe, so plugins removed from such a host are noticed by
//! the agent (`network.status`) rather than put back.
//!
//! The binary is found beside the running `flotilla` (or at
//! `$FLOTILLA_AGENT_BINARY`) and hashed once, or not at all when
//! [`super::digest_cache`] remembers the file. Embedding it in `flotilla`
//! is not needed while both ship from one build; a single-file release
//! would embed it here.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use super::cni_plugins;
use super::digest_cache::{Digest, DigestCache};
use super::{ChannelError, SshError, SshSession};
use crate::agent::protocol::{Client, ClientOptions, SOCKET_PATH};
use crate::config::cluster_file::NodeConfig;

/// Where agent binaries live on a host, each named by its digest.
pub const REMOTE_BIN_DIR: &str = "/var/lib/flotilla/bin";
/// Overrides where [`AgentBinary::locate`] looks (tests, custom builds).
pub const AGENT_BINARY_ENV: &str = "FLOTILLA_AGENT_BINARY";
/// The agent's file name beside `flotilla`.
pub const AGENT_BINARY_NAME: &str = "flotilla-agent";
/// Where `serve --detach` writes the agent's output on the host.
pub const REMOTE_AGENT_LOG: &str = "/var/lib/flotilla/agent.log";
/// How long an old agent gets to stop after SIGTERM before SIGKILL.
const STOP_GRACE_TENTHS: u32 = 150;

#[derive(Debug, thiserror::Error)]
pub enum AgentBinaryError {
    #[error(
        "no agent binary at {} ({from}): build it with `cargo build --bin flotilla-agent`, or set {AGENT_BINARY_ENV} to its path",
        path.display()
    )]
    NotFound { path: PathBuf, from: &'static str },
    #[error("cannot read the agent binary {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} is not an ELF executable, so not a flotilla-agent for Linux; set {AGENT_BINARY_ENV} to one",
        path.display()
    )]
    NotElf { path: PathBuf },
    #[error(
        "cannot find the running flotilla executable ({0}); set {AGENT_BINARY_ENV} to the agent's path"
    )]
    NoCurrentExe(std::io::Error),
}

/// The agent binary this `flotilla` puts on hosts: where it is, its digest
/// (which names it on the host) and the architecture it runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentBinary {
    pub path: PathBuf,
    /// Lowercase hex SHA-256 of the file.
    pub sha256: String,
    /// Rust's name for the CPU architecture (`x86_64`, `aarch64`…), from
    /// the ELF header.
    pub arch: String,
    pub size: u64,
}

impl AgentBinary {
    /// `$FLOTILLA_AGENT_BINARY` if set, else `flotilla-agent` in the
    /// directory of the running executable. Its digest comes from `cache`
    /// when the file has not changed since it was last hashed; otherwise the
    /// whole file is read and hashed (blocking; about a second for a debug
    /// build): do it once and share the result.
    pub fn locate(cache: Option<&DigestCache>) -> Result<AgentBinary, AgentBinaryError> {
        if let Some(path) = std::env::var_os(AGENT_BINARY_ENV).filter(|p| !p.is_empty()) {
            return AgentBinary::from_path_cached(
                Path::new(&path),
                "from $FLOTILLA_AGENT_BINARY",
                cache,
            );
        }
        let exe = std::env::current_exe().map_err(AgentBinaryError::NoCurrentExe)?;
        let dir = exe.parent().unwrap_or(Path::new("/"));
        AgentBinary::from_path_cached(
            &dir.join(AGENT_BINARY_NAME),
            "beside the flotilla executable",
            cache,
        )
    }

    /// The binary at `path`, hashed; `from` says in errors how it was chosen.
    pub fn from_path(path: &Path, from: &'static str) -> Result<AgentBinary, AgentBinaryError> {
        AgentBinary::from_path_cached(path, from, None)
    }

    /// The binary at `path`, its digest from `cache` if it has one for the
    /// file as it is now (see [`DigestCache`]), else hashed.
    pub fn from_path_cached(
        path: &Path,
        from: &'static str,
        cache: Option<&DigestCache>,
    ) -> Result<AgentBinary, AgentBinaryError> {
        let read_err = |source: std::io::Error| {
            if source.kind() == std::io::ErrorKind::NotFound {
                AgentBinaryError::NotFound {
                    path: path.to_path_buf(),
                    from,
                }
            } else {
                AgentBinaryError::Read {
                    path: path.to_path_buf(),
                    source,
                }
            }
        };
        let file = File::open(path).map_err(read_err)?;
        let size = file.metadata().map_err(read_err)?.len();
        let hash = || hash_file(path, &file, read_err);
        let digest = match cache {
            Some(cache) => cache.digest(path, &file, hash)?,
            None => hash()?,
        };
        Ok(AgentBinary {
            path: path.to_path_buf(),
            sha256: digest.sha256,
            arch: digest.arch,
            size,
        })
    }

    /// `/var/lib/flotilla/bin/flotilla-agent-<sha256>`: its path on a host.
    pub fn remote_path(&self) -> String {
        format!("{REMOTE_BIN_DIR}/{AGENT_BINARY_NAME}-{}", self.sha256)
    }
}

/// The SHA-256 of the whole file and the architecture in its ELF header.
pub(super) fn hash_file(
    path: &Path,
    mut file: &File,
    read_err: impl Fn(std::io::Error) -> AgentBinaryError,
) -> Result<Digest, AgentBinaryError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut header = Vec::new();
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        if header.len() < 20 {
            header.extend_from_slice(&buf[..n.min(20 - header.len())]);
        }
        hasher.update(&buf[..n]);
    }
    let arch = elf_arch(&header).ok_or_else(|| AgentBinaryError::NotElf {
        path: path.to_path_buf(),
    })?;
    Ok(Digest {
        sha256: hex::encode(hasher.finalize()),
        arch,
    })
}

/// The architecture an ELF header is for, in Rust's names; None if the
/// bytes are not an ELF header.
fn elf_arch(header: &[u8]) -> Option<String> {
    if header.len() < 20 || &header[..4] != b"\x7fELF" {
        return None;
    }
    let is_64 = header[4] == 2;
    let machine = match header[5] {
        2 => u16::from_be_bytes([header[18], header[19]]),
        _ => u16::from_le_bytes([header[18], header[19]]),
    };
    Some(
        match (machine, is_64) {
            (0x3e, _) => "x86_64",
            (0xb7, _) => "aarch64",
            (0x03, _) => "x86",
            (0x28, _) => "arm",
            (0xf3, true) => "riscv64",
            (0xf3, false) => "riscv32",
            (0x16, _) => "s390x",
            (0x15, _) => "powerpc64",
            (0x14, _) => "powerpc",
            (0x08, true) => "mips64",
            (0x08, false) => "mips",
            (0x102, _) => "loongarch64",
            (other, _) => return Some(format!("elf-machine-{other:#x}")),
        }
        .to_string(),
    )
}

/// `uname -m`'s answer in Rust's architecture names, so it compares with
/// [`AgentBinary::arch`].
pub fn normalize_uname_arch(uname: &str) -> String {
    let m = uname.trim();
    match m {
        "x86_64" | "amd64" => "x86_64",
        "aarch64" | "arm64" => "aarch64",
        "i386" | "i486" | "i586" | "i686" => "x86",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "ppc64" | "ppc64le" => "powerpc64",
        "loongarch64" => "loongarch64",
        "mips64" => "mips64",
        "mips" => "mips",
        m if m.starts_with("armv") || m == "arm" => "arm",
        m => m,
    }
    .to_string()
}

/// What to bootstrap with, per node.
#[derive(Debug, Clone)]
pub struct BootstrapOptions {
    /// The node's name, for messages.
    pub node: String,
    /// The SSH login user, for messages (whether it is root comes from
    /// `id -u` on the host).
    pub user: String,
    /// The agent's `--cgroup-parent`.
    pub cgroup_parent: String,
    /// The agent's `--insecure-registry` flags.
    pub insecure_registries: Vec<String>,
    /// How the protocol client introduces itself.
    pub client: ClientOptions,
    /// Bounds each hello with the agent.
    pub hello_timeout: Duration,
    /// The operator's CNI plugins, copied to a host that has none.
    pub cni_plugins: Option<PathBuf>,
}

impl BootstrapOptions {
    /// The options for `node`, reached as `user`, with the cluster's
    /// insecure registries.
    pub fn for_node(node: &NodeConfig, user: &str, insecure_registries: &[String]) -> Self {
        BootstrapOptions {
            node: node.name.clone(),
            user: user.to_string(),
            cgroup_parent: node.cgroup_parent.clone(),
            insecure_registries: insecure_registries.to_vec(),
            client: ClientOptions::default(),
            hello_timeout: Duration::from_secs(10),
            cni_plugins: cni_plugins::local_dir(),
        }
    }
}

/// What the bootstrap did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapReport {
    /// The host's architecture, in Rust's names.
    pub arch: String,
    /// The binary was copied up this time.
    pub uploaded: bool,
    /// The host had no CNI plugins; the operator's were copied up.
    pub cni_uploaded: bool,
    /// No agent was running, and ours was started.
    pub started: bool,
    /// Another build was running; it was stopped and ours started.
    pub restarted: bool,
    /// The agent's path on the host.
    pub binary_path: String,
    /// The login is root (else every command ran through `sudo -n`).
    pub root_login: bool,
    pub elapsed: Duration,
}

/// The agent running and connected.
#[derive(Debug)]
pub struct Bootstrapped {
    pub report: BootstrapReport,
    /// Connected and past hello; over the same SSH session.
    pub client: Client,
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Binary(#[from] AgentBinaryError),
    #[error("{host}: {source}")]
    Ssh {
        host: String,
        #[source]
        source: SshError,
    },
    #[error(
        "{host}: cannot tell what the host is (`uname -m`, `id -u`): {detail}; flotilla needs a POSIX sh on the host"
    )]
    Probe { host: String, detail: String },
    #[error(
        "{host} is {host_arch} (`uname -m` says {uname}) but the agent binary {} is for {binary_arch}: set {AGENT_BINARY_ENV} to a flotilla-agent built for {host_arch}",
        binary.display()
    )]
    ArchMismatch {
        host: String,
        uname: String,
        host_arch: String,
        binary: PathBuf,
        binary_arch: String,
    },
    #[error(
        "{host}: {user} is not root and the host has no sudo: log in as root (the node's user in the cluster file) or install sudo and allow {user} NOPASSWD"
    )]
    NoSudo { host: String, user: String },
    #[error(
        "sudo on {host} wants a password: allow {user} NOPASSWD for flotilla's commands (it runs sh and its agent as root; e.g. `{user} ALL=(root) NOPASSWD: ALL` in /etc/sudoers.d/flotilla), or log in as root"
    )]
    SudoPassword { host: String, user: String },
    #[error(
        "sudo on {host} refused {user} ({message}): allow {user} NOPASSWD for flotilla's commands, or log in as root"
    )]
    SudoRefused {
        host: String,
        user: String,
        message: String,
    },
    #[error(
        "{host} has no sha256sum, so an uploaded agent cannot be verified: install coreutils (or busybox with its sha256sum applet)"
    )]
    NoSha256sum { host: String },
    #[error(
        "{host}: the uploaded copy of {what} has sha256 {actual}, not {expected}; the copy was deleted: retry, and if it repeats, something between here and the host changes data"
    )]
    DigestMismatch {
        host: String,
        what: String,
        expected: String,
        actual: String,
    },
    #[error(
        "{host}: uploading {what} to {path} failed: {message}; check free space and that /var/lib/flotilla is writable by root"
    )]
    Upload {
        host: String,
        what: String,
        path: String,
        message: String,
    },
    #[error("{host}: starting the agent failed: {message}; see {REMOTE_AGENT_LOG} on the host")]
    Start { host: String, message: String },
    #[error("{host}: stopping the old agent (pid {pid}) failed: {message}")]
    Stop {
        host: String,
        pid: u32,
        message: String,
    },
    #[error(
        "{host}: another build of the agent is running ({running}) and does not say its pid (it predates that): stop its `flotilla-agent serve` on the host and retry"
    )]
    OldAgentWithoutPid { host: String, running: String },
    #[error("{host}: the agent was started but {problem}; see {REMOTE_AGENT_LOG} on the host")]
    Agent { host: String, problem: String },
}

/// Makes sure `binary` runs on the host behind `session` and returns a
/// protocol client connected to it; see the module comment for the steps.
pub async fn bootstrap(
    session: &SshSession,
    binary: &AgentBinary,
    options: &BootstrapOptions,
) -> Result<Bootstrapped, BootstrapError> {
    let started_at = Instant::now();
    let boot = Boot {
        session,
        binary,
        options,
        host: format!(
            "{} ({}:{})",
            options.node,
            session.address(),
            session.port()
        ),
        remote_path: binary.remote_path(),
        sudo: String::new(),
    };
    // A root login whose host already runs our agent needs no exec at all:
    // the agent's hello names its binary, which names our digest, so the
    // host has the binary, runs our architecture and our build. Skipping
    // the probe saves an exec — a login shell on the host, with whatever
    // its rc files cost — on every connect but the first.
    let early = if options.user == "root" {
        match boot.connect_agent().await {
            Ok(client) if boot.is_ours(&client) => {
                let report = BootstrapReport {
                    arch: binary.arch.clone(),
                    uploaded: false,
                    cni_uploaded: false,
                    started: false,
                    restarted: false,
                    binary_path: boot.remote_path.clone(),
                    root_login: true,
                    elapsed: started_at.elapsed(),
                };
                tracing::info!(host = %boot.host, ?report, "agent ready");
                return Ok(Bootstrapped { report, client });
            }
            Err(NotServing::Ssh(source)) => {
                return Err(BootstrapError::Ssh {
                    host: boot.host,
                    source,
                });
            }
            // Another build, or none: the probe decides what to do, and
            // this answer is used once it says the login is root.
            other => Some(other),
        }
    } else {
        None
    };
    let probe = boot.probe().await?;
    let host_arch = normalize_uname_arch(&probe.uname);
    if host_arch != binary.arch {
        return Err(BootstrapError::ArchMismatch {
            host: boot.host.clone(),
            uname: probe.uname.clone(),
            host_arch,
            binary: binary.path.clone(),
            binary_arch: binary.arch.clone(),
        });
    }
    let boot = Boot {
        sudo: if probe.root {
            String::new()
        } else {
            "sudo -n ".to_string()
        },
        ..boot
    };
    let uploaded = if probe.binary_present {
        false
    } else {
        if !probe.sha256sum {
            return Err(BootstrapError::NoSha256sum { host: boot.host });
        }
        boot.upload().await?;
        true
    };
    // Before the agent starts, so its first pods find them.
    let mut cni_uploaded = false;
    if !probe.cni_plugins {
        match &options.cni_plugins {
            Some(source) if probe.sha256sum => {
                boot.upload_cni_plugins(source, &host_arch).await?;
                cni_uploaded = true;
            }
            _ => {
                tracing::warn!(host = %boot.host, "the host has no CNI plugins and there are none here to upload; its pods get no addresses")
            }
        }
    }
    let mut started = false;
    let mut restarted = false;
    let serving = match early {
        Some(serving) if probe.root => serving,
        _ => boot.connect_agent().await,
    };
    let client = match serving {
        Ok(client) if boot.is_ours(&client) => client,
        Ok(client) => {
            let running = client
                .hello()
                .agent_binary
                .clone()
                .unwrap_or_else(|| client.hello().agent_version.clone());
            let Some(pid) = client.hello().pid else {
                return Err(BootstrapError::OldAgentWithoutPid {
                    host: boot.host,
                    running,
                });
            };
            drop(client);
            tracing::info!(host = %boot.host, %running, pid, "another agent build is running; replacing it");
            boot.stop(pid).await?;
            boot.start().await?;
            restarted = true;
            boot.connect_started().await?
        }
        Err(NotServing::Ssh(source)) => {
            return Err(BootstrapError::Ssh {
                host: boot.host,
                source,
            });
        }
        Err(NotServing::Agent(why)) => {
            tracing::debug!(host = %boot.host, %why, "no agent answers; starting one");
            boot.start().await?;
            started = true;
            boot.connect_started().await?
        }
    };
    let report = BootstrapReport {
        arch: binary.arch.clone(),
        uploaded,
        cni_uploaded,
        started,
        restarted,
        binary_path: boot.remote_path.clone(),
        root_login: probe.root,
        elapsed: started_at.elapsed(),
    };
    tracing::info!(host = %boot.host, ?report, "agent ready");
    Ok(Bootstrapped { report, client })
}

/// What the first exec learnt.
#[derive(Debug)]
struct Probe {
    uname: String,
    root: bool,
    binary_present: bool,
    sha256sum: bool,
    /// A directory on the host has every CNI plugin pods need.
    cni_plugins: bool,
}

/// Why the agent's socket gave no client.
enum NotServing {
    /// The SSH connection failed: no point starting anything.
    Ssh(SshError),
    /// Nobody (or nothing usable) answers on the socket.
    Agent(String),
}

struct Boot<'a> {
    session: &'a SshSession,
    binary: &'a AgentBinary,
    options: &'a BootstrapOptions,
    host: String,
    remote_path: String,
    /// `sudo -n ` for a non-root login, else empty.
    sudo: String,
}

impl Boot<'_> {
    fn ssh_error(&self, source: SshError) -> BootstrapError {
        BootstrapError::Ssh {
            host: self.host.clone(),
            source,
        }
    }

    /// `script` as root: through `sh -c` (whatever the login shell is), and
    /// through `sudo -n` for a non-root login.
    fn as_root(&self, script: &str) -> String {
        format!("{}sh -c {}", self.sudo, sh_quote(script))
    }

    async fn probe(&self) -> Result<Probe, BootstrapError> {
        let script = format!(
            r#"echo "arch=$(uname -m)"
uid=$(id -u)
echo "uid=$uid"
if [ "$uid" = 0 ]; then
  s=
elif ! command -v sudo >/dev/null 2>&1; then
  echo sudo=missing; exit 0
elif err=$(sudo -n true 2>&1); then
  echo sudo=ok; s="sudo -n"
else
  echo sudo=refused; printf '%s\n' "$err" >&2; exit 0
fi
$s sh -c 'if [ -x "$1" ]; then echo binary=present; else echo binary=missing; fi
if command -v sha256sum >/dev/null 2>&1; then echo sha256sum=yes; else echo sha256sum=no; fi' sh {}
{}
"#,
            sh_quote(&self.remote_path),
            cni_plugins::probe_script(),
        );
        let out = self
            .session
            .exec(&format!("sh -c {}", sh_quote(&script)))
            .await
            .map_err(|e| self.ssh_error(e))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let value = |key: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::trim)
        };
        let probe_failed = || BootstrapError::Probe {
            host: self.host.clone(),
            detail: format!(
                "exit {:?}, output {:?}, errors {:?}",
                out.exit,
                stdout.trim(),
                stderr
            ),
        };
        let (Some(uname), Some(uid)) = (value("arch"), value("uid")) else {
            return Err(probe_failed());
        };
        let root = uid == "0";
        match value("sudo") {
            Some("missing") => {
                return Err(BootstrapError::NoSudo {
                    host: self.host.clone(),
                    user: self.options.user.clone(),
                });
            }
            Some("refused") if stderr.contains("password is required") => {
                return Err(BootstrapError::SudoPassword {
                    host: self.host.clone(),
                    user: self.options.user.clone(),
                });
            }
            Some("refused") => {
                return Err(BootstrapError::SudoRefused {
                    host: self.host.clone(),
                    user: self.options.user.clone(),
                    message: stderr,
                });
            }
            _ => {}
        }
        let (Some(binary), Some(sha256sum)) = (value("binary"), value("sha256sum")) else {
            return Err(probe_failed());
        };
        Ok(Probe {
            uname: uname.to_string(),
            root,
            binary_present: binary == "present",
            sha256sum: sha256sum == "yes",
            cni_plugins: value("cni").is_some_and(|d| d != "none"),
        })
    }

    /// Copies the binary up; see the module comment.
    async fn upload(&self) -> Result<(), BootstrapError> {
        self.upload_file(
            &self.binary.path,
            &self.binary.sha256,
            REMOTE_BIN_DIR,
            &self.remote_path,
            "the agent",
        )
        .await?;
        tracing::info!(host = %self.host, bytes = self.binary.size, "agent uploaded and verified");
        Ok(())
    }

    /// Copies `local` to `remote_path` (in `remote_dir`) as the module
    /// comment says: a temporary file, its sha256 checked against `sha256`,
    /// then made executable (by root alone) and renamed into place.
    async fn upload_file(
        &self,
        local: &Path,
        sha256: &str,
        remote_dir: &str,
        remote_path: &str,
        what: &str,
    ) -> Result<(), BootstrapError> {
        let script = format!(
            r#"set -e
umask 077
mkdir -p {dir}
tmp=$(mktemp {dir}/.upload.XXXXXX)
trap 'rm -f "$tmp"' EXIT
cat > "$tmp"
sum=$(sha256sum "$tmp")
sum=${{sum%% *}}
if [ "$sum" != {sha} ]; then echo "digest=$sum"; exit 3; fi
chmod 0700 "$tmp"
mv -f "$tmp" {path}
trap - EXIT
echo uploaded
"#,
            dir = sh_quote(remote_dir),
            sha = sh_quote(sha256),
            path = sh_quote(remote_path),
        );
        let file = tokio::fs::File::open(local)
            .await
            .map_err(|source| AgentBinaryError::Read {
                path: local.to_path_buf(),
                source,
            })?;
        let started = Instant::now();
        let out = self
            .session
            .exec_with_stdin(&self.as_root(&script), file)
            .await
            .map_err(|e| self.ssh_error(e))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.success() && stdout.lines().any(|l| l == "uploaded") {
            tracing::debug!(host = %self.host, what, elapsed = ?started.elapsed(), "uploaded and verified");
            return Ok(());
        }
        if let Some(actual) = stdout.lines().find_map(|l| l.strip_prefix("digest=")) {
            return Err(BootstrapError::DigestMismatch {
                host: self.host.clone(),
                what: what.to_string(),
                expected: sha256.to_string(),
                actual: actual.trim().to_string(),
            });
        }
        Err(BootstrapError::Upload {
            host: self.host.clone(),
            what: what.to_string(),
            path: remote_path.to_string(),
            message: failure_text(&out),
        })
    }

    /// Puts CNI's plugins on a host that has none, from the operator's own
    /// (`source`), unless they are for another architecture.
    async fn upload_cni_plugins(
        &self,
        source: &Path,
        host_arch: &str,
    ) -> Result<(), BootstrapError> {
        let dir = source.to_path_buf();
        let hashed = tokio::task::spawn_blocking(move || cni_plugins::hash_all(&dir))
            .await
            .map_err(|e| BootstrapError::Probe {
                host: self.host.clone(),
                detail: format!("hashing the CNI plugins failed: {e}"),
            })??;
        for plugin in &hashed {
            if plugin.arch != host_arch {
                tracing::warn!(host = %self.host, plugin = %plugin.path.display(), arch = %plugin.arch, host_arch, "not uploading CNI plugins built for another architecture; the host's pods get no addresses until it has its own");
                return Ok(());
            }
        }
        for plugin in &hashed {
            let remote = format!("{}/{}", cni_plugins::REMOTE_CNI_DIR, plugin.name);
            self.upload_file(
                &plugin.path,
                &plugin.sha256,
                cni_plugins::REMOTE_CNI_DIR,
                &remote,
                &format!("the CNI plugin {}", plugin.name),
            )
            .await?;
        }
        tracing::info!(host = %self.host, from = %source.display(), "CNI plugins uploaded and verified");
        Ok(())
    }

    /// A client on the agent's socket, or why there is none.
    async fn connect_agent(&self) -> Result<Client, NotServing> {
        let stream = if self.sudo.is_empty() {
            match self.session.open_streamlocal(SOCKET_PATH).await {
                Ok(stream) => stream,
                Err(SshError::Channel {
                    source: ChannelError::OpenRefused(reason),
                    ..
                }) => {
                    return Err(NotServing::Agent(format!(
                        "sshd could not open {SOCKET_PATH} ({reason})"
                    )));
                }
                Err(e) => return Err(NotServing::Ssh(e)),
            }
        } else {
            let command = format!("{}{} __bridge", self.sudo, sh_quote(&self.remote_path));
            self.session
                .exec_stream(&command)
                .await
                .map_err(NotServing::Ssh)?
        };
        match tokio::time::timeout(
            self.options.hello_timeout,
            Client::connect(stream, self.options.client.clone()),
        )
        .await
        {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(NotServing::Agent(e.to_string())),
            Err(_) => Err(NotServing::Agent(format!(
                "no hello within {}s",
                self.options.hello_timeout.as_secs()
            ))),
        }
    }

    fn is_ours(&self, client: &Client) -> bool {
        client.hello().agent_binary.as_deref() == Some(self.remote_path.as_str())
    }

    /// The client of the agent just started, which must be ours.
    async fn connect_started(&self) -> Result<Client, BootstrapError> {
        match self.connect_agent().await {
            Ok(client) if self.is_ours(&client) => Ok(client),
            Ok(client) => Err(BootstrapError::Agent {
                host: self.host.clone(),
                problem: format!(
                    "another agent answers ({})",
                    client
                        .hello()
                        .agent_binary
                        .clone()
                        .unwrap_or_else(|| client.hello().agent_version.clone())
                ),
            }),
            Err(NotServing::Ssh(e)) => Err(self.ssh_error(e)),
            Err(NotServing::Agent(why)) => Err(BootstrapError::Agent {
                host: self.host.clone(),
                problem: format!("it does not answer: {why}"),
            }),
        }
    }

    /// `serve --detach`, which returns once the agent answers on its socket.
    async fn start(&self) -> Result<(), BootstrapError> {
        let mut command = format!(
            "exec {} --cgroup-parent {} serve --detach",
            sh_quote(&self.remote_path),
            sh_quote(&self.options.cgroup_parent)
        );
        for registry in &self.options.insecure_registries {
            command.push_str(" --insecure-registry ");
            command.push_str(&sh_quote(registry));
        }
        let out = self
            .session
            .exec(&self.as_root(&command))
            .await
            .map_err(|e| self.ssh_error(e))?;
        if !out.success() {
            let mut message = failure_text(&out);
            if let Some(hint) = start_failure_hint(&message) {
                message = format!("{message}; {hint}");
            }
            return Err(BootstrapError::Start {
                host: self.host.clone(),
                message,
            });
        }
        tracing::info!(host = %self.host, output = %String::from_utf8_lossy(&out.stdout).trim(), "agent started");
        Ok(())
    }

    /// SIGTERM to the old agent, SIGKILL if it has not gone after the
    /// grace period; returns once it is gone. Only a process whose
    /// executable is a flotilla-agent is signalled.
    async fn stop(&self, pid: u32) -> Result<(), BootstrapError> {
        let script = format!(
            r#"pid={pid}
alive() {{ [ -n "$(readlink /proc/$pid/exe 2>/dev/null)" ]; }}
exe=$(readlink /proc/$pid/exe 2>/dev/null) || exit 0
case "$exe" in
  */flotilla-agent*) ;;
  *) echo "pid $pid is $exe, not a flotilla-agent" >&2; exit 4 ;;
esac
kill -TERM $pid 2>/dev/null || exit 0
i=0
while alive; do
  i=$((i+1))
  if [ $i -eq {grace} ]; then kill -KILL $pid 2>/dev/null || true; echo killed; fi
  if [ $i -gt $(({grace} + 50)) ]; then echo "still running after SIGKILL" >&2; exit 5; fi
  sleep 0.1
done
"#,
            grace = STOP_GRACE_TENTHS
        );
        let out = self
            .session
            .exec(&self.as_root(&script))
            .await
            .map_err(|e| self.ssh_error(e))?;
        if !out.success() {
            return Err(BootstrapError::Stop {
                host: self.host.clone(),
                pid,
                message: failure_text(&out),
            });
        }
        if String::from_utf8_lossy(&out.stdout).contains("killed") {
            tracing::warn!(host = %self.host, pid, "the old agent ignored SIGTERM for 15 s and was killed");
        }
        Ok(())
    }
}

/// What to do about an agent that the host's dynamic loader may have
/// refused: a dynamically linked build (plain `cargo build`) asks for the
/// build machine's glibc, or for a glibc at all where the host has musl.
fn start_failure_hint(message: &str) -> Option<&'static str> {
    // The file was uploaded and checked just before, so "not found" from
    // the exec means its ELF interpreter is missing (a musl host).
    let loader_refused = [
        "GLIBC_",
        "ld-linux",
        "libc.so.6",
        "libgcc_s.so",
        "not found",
    ]
    .iter()
    .any(|sign| message.contains(sign));
    loader_refused.then_some(
        "if this agent binary is linked dynamically (a plain `cargo build`), the host's C library \
         cannot run it: use the statically linked agent the scripts build (README, \"Try it\")",
    )
}

/// What a failed command said, on one line.
fn failure_text(out: &super::ExecOutput) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let text = if stderr.trim().is_empty() {
        stdout.trim().to_string()
    } else {
        stderr.trim().to_string()
    };
    let text = text.lines().collect::<Vec<_>>().join(" | ");
    format!(
        "{:?}: {}",
        out.exit,
        if text.is_empty() { "no output" } else { &text }
    )
}

/// Quotes `text` for a POSIX shell: one single-quoted word.
pub fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loader_refusing_the_agent_gets_a_hint_to_use_the_static_one() {
        for message in [
            "Exited(1): /var/lib/flotilla/bin/flotilla-agent-ab: /lib/x86_64-linux-gnu/libc.so.6: \
             version `GLIBC_2.34' not found (required by /var/lib/flotilla/bin/flotilla-agent-ab)",
            "Exited(127): sh: exec: line 1: /var/lib/flotilla/bin/flotilla-agent-ab: not found",
        ] {
            let hint =
                start_failure_hint(message).unwrap_or_else(|| panic!("no hint for {message}"));
            assert!(hint.contains("statically linked agent"), "{hint}");
        }
        assert_eq!(
            start_failure_hint("Exited(1): error: cannot bind /run/flotilla/agent.sock"),
            None
        );
    }

    #[test]
    fn elf_headers_name_their_architecture() {
        let mut header = vec![0u8; 20];
        header[..4].copy_from_slice(b"\x7fELF");
        header[4] = 2;
        header[5] = 1;
        header[18] = 0x3e;
        assert_eq!(elf_arch(&header).as_deref(), Some("x86_64"));
        header[18] = 0xb7;
        assert_eq!(elf_arch(&header).as_deref(), Some("aarch64"));
        assert_eq!(elf_arch(b"#!/bin/sh\necho hi\n\n\n\n"), None);
        assert_eq!(elf_arch(b"\x7fELF"), None);
    }

    #[test]
    fn this_build_is_an_elf_of_its_own_architecture() {
        let exe = std::env::current_exe().expect("current exe");
        let binary = AgentBinary::from_path(&exe, "test").expect("read");
        assert_eq!(binary.arch, std::env::consts::ARCH);
        assert_eq!(binary.sha256.len(), 64);
        assert!(
            binary
                .remote_path()
                .starts_with("/var/lib/flotilla/bin/flotilla-agent-")
        );
    }

    #[test]
    fn a_remembered_digest_is_the_files_own() {
        let exe = std::env::current_exe().expect("current exe");
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = DigestCache::in_dir(dir.path());
        let hashed = AgentBinary::from_path(&exe, "test").expect("read");
        // A miss, then a hit: the same answer. (A test binary linked in the
        // last 2 s is not remembered, so whether the second is a hit depends
        // on when the tests run; digest_cache's own tests check hits.)
        for _ in 0..2 {
            let cached = AgentBinary::from_path_cached(&exe, "test", Some(&cache)).expect("read");
            assert_eq!(cached, hashed);
        }
    }

    #[test]
    fn uname_answers_map_to_rust_names() {
        for (uname, arch) in [
            ("x86_64", "x86_64"),
            ("aarch64", "aarch64"),
            ("arm64", "aarch64"),
            ("armv7l", "arm"),
            ("i686", "x86"),
            ("riscv64\n", "riscv64"),
            ("ppc64le", "powerpc64"),
        ] {
            assert_eq!(normalize_uname_arch(uname), arch, "{uname}");
        }
    }

    #[test]
    fn a_missing_binary_says_how_to_build_one() {
        let err = AgentBinary::from_path(Path::new("/nonexistent/flotilla-agent"), "test")
            .expect_err("missing");
        let msg = err.to_string();
        assert!(msg.contains("cargo build --bin flotilla-agent"), "{msg}");
        assert!(msg.contains(AGENT_BINARY_ENV), "{msg}");
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(sh_quote("plain"), "'plain'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }
}
