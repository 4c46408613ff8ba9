//! A russh client that connects with a timeout, verifies the host key the
//! OpenSSH way, authenticates as `ssh` would (agent first, then key files)
//! and runs commands over multiplexed channels.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, AuthResult, Handle};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Disconnect, Sig};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

use super::known_hosts::{self, HostKeyDecision};
use super::quick_ack::QuickAck;
use super::{ChannelError, SshError};

/// Stdout and stderr are each captured up to this many bytes; past it,
/// `exec` fails rather than grow without bound.
pub const MAX_CAPTURED_OUTPUT: usize = 16 * 1024 * 1024;

/// How long `close` waits for the server to end the session after we hang up.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a key's passphrase is asked for before giving up (ssh's
/// NumberOfPasswordPrompts).
pub const PASSPHRASE_ATTEMPTS: u32 = 3;

/// Bytes read from an `exec_with_stdin` source at a time; russh cuts them
/// into packets of the channel's size.
const STDIN_CHUNK: usize = 256 * 1024;

/// What a [`PassphrasePrompt`] is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassphraseRequest {
    /// The encrypted key file.
    pub key_file: PathBuf,
    /// `user@address:port`, so the user knows why the key is wanted.
    pub destination: String,
    /// 1 the first time; more after a wrong passphrase.
    pub attempt: u32,
}

/// The answer to a [`PassphraseRequest`]: the passphrase, or None when the
/// user declined or cannot be asked.
pub type PassphraseFuture = Pin<Box<dyn Future<Output = Option<String>> + Send>>;

/// Asks the user for a key file's passphrase when a key file needs one: the
/// CLI on its terminal, the console in its UI. A closure
/// `Fn(PassphraseRequest) -> impl Future<Output = Option<String>>` is one.
/// The prompt is asked again (up to [`PASSPHRASE_ATTEMPTS`] times) after a
/// wrong passphrase; remembering passphrases across connections is the
/// prompt's business.
pub trait PassphrasePrompt: Send + Sync {
    fn passphrase(&self, request: PassphraseRequest) -> PassphraseFuture;
}

impl<F, Fut> PassphrasePrompt for F
where
    F: Fn(PassphraseRequest) -> Fut + Send + Sync,
    Fut: Future<Output = Option<String>> + Send + 'static,
{
    fn passphrase(&self, request: PassphraseRequest) -> PassphraseFuture {
        Box::pin(self(request))
    }
}

/// No one to ask: an encrypted key file is reported (if nothing else
/// works), with what to do instead.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPrompt;

impl PassphrasePrompt for NoPrompt {
    fn passphrase(&self, _request: PassphraseRequest) -> PassphraseFuture {
        Box::pin(std::future::ready(None))
    }
}

/// Where and as whom to connect, and what to trust.
#[derive(Debug, Clone)]
pub struct SshTarget {
    /// Host name or IP address, as the cluster file gives it; also the name
    /// looked up in known_hosts.
    pub address: String,
    pub port: u16,
    pub user: String,
    /// Private key files (already `~`-expanded), tried after ssh-agent.
    pub identities: Vec<PathBuf>,
    /// known_hosts files, consulted in order.
    pub known_hosts: Vec<PathBuf>,
    /// `SHA256:…`; when set, the host key must have exactly this
    /// fingerprint and known_hosts is consulted only for `@revoked`.
    pub pinned_fingerprint: Option<String>,
    /// Bounds the TCP connect and, separately, the SSH handshake.
    pub connect_timeout: Duration,
}

/// An authenticated connection. `exec` takes `&self`: share it (e.g. in an
/// `Arc`) and run commands concurrently, each on its own channel.
pub struct SshSession {
    handle: Handle<ClientHandler>,
    address: String,
    port: u16,
    host_key: PublicKey,
    /// The address the TCP connection reached (`address` resolved).
    peer_ip: Option<std::net::IpAddr>,
}

impl std::fmt::Debug for SshSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshSession")
            .field("address", &self.address)
            .field("port", &self.port)
            .field("host_key", &known_hosts::fingerprint(&self.host_key))
            .field("closed", &self.handle.is_closed())
            .finish()
    }
}

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitKind {
    Code(u32),
    /// Killed by a signal, named without `SIG` (e.g. `KILL`).
    Signal(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit: ExitKind,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.exit == ExitKind::Code(0)
    }
}

/// Connects, verifies the host key, and authenticates. An encrypted key
/// file is not prompted for (see [`connect_with`]).
pub async fn connect(target: &SshTarget) -> Result<SshSession, SshError> {
    connect_with(target, &NoPrompt).await
}

/// [`connect`], asking `prompt` for the passphrase of an encrypted key file
/// when authentication reaches it (after ssh-agent, in identity order).
pub async fn connect_with(
    target: &SshTarget,
    prompt: &dyn PassphrasePrompt,
) -> Result<SshSession, SshError> {
    let tcp = tcp_connect(&target.address, target.port, target.connect_timeout).await?;
    let peer_ip = tcp.peer_addr().ok().map(|a| a.ip());
    let host_key = Arc::new(Mutex::new(None));
    let handler = ClientHandler {
        address: target.address.clone(),
        port: target.port,
        check: KeyCheck::Verify {
            known_hosts: target.known_hosts.clone(),
            pinned: target.pinned_fingerprint.clone(),
        },
        seen: Arc::clone(&host_key),
    };
    let mut handle = handshake(target, tcp, handler).await?;
    let host_key = take_seen(&host_key).ok_or(SshError::Protocol(russh::Error::Inconsistent))?;
    // No timeout of our own here: keepalive (3 s x 3) already runs and ends a
    // session whose server stops answering, while a slow agent (confirm
    // prompts) must not be cut short.
    authenticate(&mut handle, target, prompt).await?;
    tracing::debug!(address = %target.address, port = target.port, user = %target.user, "SSH session ready");
    Ok(SshSession {
        handle,
        address: target.address.clone(),
        port: target.port,
        host_key,
        peer_ip,
    })
}

/// Fetches the host key `address:port` offers, without trusting or
/// authenticating (like `ssh-keyscan`), so `flotilla node trust` can show
/// its fingerprint and record it.
pub async fn scan_host_key(
    address: &str,
    port: u16,
    timeout: Duration,
) -> Result<PublicKey, SshError> {
    let tcp = tcp_connect(address, port, timeout).await?;
    let seen = Arc::new(Mutex::new(None));
    let handler = ClientHandler {
        address: address.to_string(),
        port,
        check: KeyCheck::Scan,
        seen: Arc::clone(&seen),
    };
    let result = tokio::time::timeout(
        timeout,
        client::connect_stream(Arc::new(client_config()), tcp, handler),
    )
    .await;
    // The handler refuses the key on purpose, so the handshake fails; the
    // key it saw is the answer either way.
    if let Some(key) = take_seen(&seen) {
        return Ok(key);
    }
    match result {
        Err(_) => Err(SshError::Timeout {
            address: address.to_string(),
            port,
            stage: "SSH handshake",
            after: timeout,
        }),
        Ok(Err(e)) => Err(e),
        Ok(Ok(_)) => Err(SshError::Protocol(russh::Error::Inconsistent)),
    }
}

fn client_config() -> client::Config {
    // Default algorithm lists on purpose: they keep strict-kex (Terrapin).
    client::Config {
        keepalive_interval: Some(Duration::from_secs(3)),
        keepalive_max: 3,
        // Quiet sessions are normal (an idle node); keepalive finds dead ones.
        inactivity_timeout: None,
        // Only for sockets russh opens; ours get it in `tcp_connect`.
        nodelay: true,
        ..Default::default()
    }
}

async fn tcp_connect(address: &str, port: u16, timeout: Duration) -> Result<TcpStream, SshError> {
    match tokio::time::timeout(timeout, TcpStream::connect((address, port))).await {
        Err(_) => Err(SshError::Timeout {
            address: address.to_string(),
            port,
            stage: "TCP connect",
            after: timeout,
        }),
        Ok(Err(source)) => Err(SshError::Unreachable {
            address: address.to_string(),
            port,
            source,
        }),
        Ok(Ok(tcp)) => {
            // russh applies its config's `nodelay` only to sockets it opens
            // itself, not to one handed to `connect_stream`. With Nagle on,
            // a small packet written while the previous one is unacknowledged
            // waits for the host's delayed ACK (40 ms on Linux): the service
            // request after NEWKEYS, every agent call sent behind another.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(%address, port, error = %e, "cannot set TCP_NODELAY");
            }
            Ok(tcp)
        }
    }
}

async fn handshake(
    target: &SshTarget,
    tcp: TcpStream,
    handler: ClientHandler,
) -> Result<Handle<ClientHandler>, SshError> {
    // russh has no handshake timeout: a peer that accepts TCP and then says
    // nothing would hang us forever.
    let connecting = client::connect_stream(Arc::new(client_config()), QuickAck::new(tcp), handler);
    match tokio::time::timeout(target.connect_timeout, connecting).await {
        Err(_) => Err(SshError::Timeout {
            address: target.address.clone(),
            port: target.port,
            stage: "SSH handshake",
            after: target.connect_timeout,
        }),
        Ok(Err(SshError::Protocol(e))) => Err(lost_or_protocol(&target.address, target.port, e)),
        Ok(result) => result,
    }
}

fn take_seen(seen: &Mutex<Option<PublicKey>>) -> Option<PublicKey> {
    // A poisoned lock only means another thread panicked mid-store; the
    // value is still a whole key or None.
    match seen.lock() {
        Ok(mut guard) => guard.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    }
}

enum KeyCheck {
    Verify {
        known_hosts: Vec<PathBuf>,
        pinned: Option<String>,
    },
    Scan,
}

struct ClientHandler {
    address: String,
    port: u16,
    check: KeyCheck,
    /// The host key the server proved it holds, for the session (and for
    /// `scan_host_key`, which refuses every key).
    seen: Arc<Mutex<Option<PublicKey>>>,
}

impl client::Handler for ClientHandler {
    // Our own error type, so a refused host key comes out of `connect_stream`
    // as HostKeyChanged etc. rather than russh's generic "Unknown server key".
    type Error = SshError;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, SshError> {
        let key = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(cert) => {
                // Not negotiated by our config; if it ever is, no CA is
                // trusted, so it is as unknown as any new key.
                tracing::warn!(address = %self.address, "host presented a certificate; flotilla trusts no certificate authority");
                let key = PublicKey::new(cert.public_key().clone(), "");
                return Err(self.unknown(&key, &[]));
            }
        };
        match self.seen.lock() {
            Ok(mut guard) => *guard = Some(key.clone()),
            Err(poisoned) => *poisoned.into_inner() = Some(key.clone()),
        }
        match &self.check {
            KeyCheck::Scan => Ok(false),
            KeyCheck::Verify {
                known_hosts,
                pinned,
            } => self
                .verify(key, known_hosts, pinned.as_deref())
                .map(|()| true),
        }
    }
}

impl ClientHandler {
    fn verify(
        &self,
        key: &PublicKey,
        files: &[PathBuf],
        pinned: Option<&str>,
    ) -> Result<(), SshError> {
        let decision = known_hosts::check_host_key(files, &self.address, self.port, key);
        let offered = known_hosts::fingerprint(key);
        // A revocation beats a pin: revoking is how an operator says "never".
        if let HostKeyDecision::Revoked { file, line } = decision {
            return Err(SshError::HostKeyRevoked {
                address: self.address.clone(),
                port: self.port,
                fingerprint: offered,
                file,
                line,
            });
        }
        if let Some(pinned) = pinned {
            if pinned == offered {
                tracing::debug!(address = %self.address, fingerprint = %offered, "host key matches the pinned fingerprint");
                return Ok(());
            }
            return Err(SshError::HostKeyPinMismatch {
                address: self.address.clone(),
                port: self.port,
                offered,
                pinned: pinned.to_string(),
            });
        }
        match decision {
            HostKeyDecision::Trusted { file, line } => {
                tracing::debug!(address = %self.address, file = %file.display(), line, "host key found in known_hosts");
                Ok(())
            }
            HostKeyDecision::Unknown => Err(self.unknown(key, files)),
            HostKeyDecision::Changed {
                offered_fingerprint,
                recorded,
            } => Err(SshError::HostKeyChanged {
                address: self.address.clone(),
                port: self.port,
                offered: offered_fingerprint,
                recorded,
            }),
            HostKeyDecision::Revoked { file, line } => Err(SshError::HostKeyRevoked {
                address: self.address.clone(),
                port: self.port,
                fingerprint: offered,
                file,
                line,
            }),
        }
    }

    fn unknown(&self, key: &PublicKey, files: &[PathBuf]) -> SshError {
        SshError::HostKeyUnknown {
            node_address: self.address.clone(),
            port: self.port,
            key_type: key.algorithm().as_str().to_string(),
            fingerprint: known_hosts::fingerprint(key),
            known_hosts_files: files.to_vec(),
        }
    }
}

/// Offers keys as `ssh` does: every ssh-agent identity, then each identity
/// file whose key the agent did not already offer.
async fn authenticate(
    handle: &mut Handle<ClientHandler>,
    target: &SshTarget,
    prompt: &dyn PassphrasePrompt,
) -> Result<(), SshError> {
    let mut tried = Vec::new();
    let mut offered: Vec<PublicKey> = Vec::new();

    if std::env::var_os("SSH_AUTH_SOCK").is_some() {
        if authenticate_with_agent(handle, target, &mut tried, &mut offered).await? {
            return Ok(());
        }
    } else {
        tracing::debug!("SSH_AUTH_SOCK is unset; not asking an ssh-agent");
    }

    // A key file we could not use is reported only if nothing else works:
    // an unusable spare key should not block a working one.
    let mut unusable: Option<SshError> = None;
    for path in &target.identities {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tried.push(format!("{} (not found)", path.display()));
                continue;
            }
            Err(e) => {
                unusable.get_or_insert(SshError::KeyFile {
                    path: path.clone(),
                    reason: format!("cannot be read: {e}; check its permissions"),
                });
                continue;
            }
        };
        let key = match russh::keys::decode_secret_key(&text, None) {
            Ok(key) => key,
            Err(russh::keys::Error::KeyIsEncrypted) => {
                // The public half of an OpenSSH key is stored in the clear: if
                // the agent already offered it, the file adds nothing.
                let public = russh::keys::PrivateKey::from_openssh(&text)
                    .ok()
                    .map(|k| k.public_key().clone());
                if public.is_some_and(|p| was_offered(&offered, &p)) {
                    continue;
                }
                match decrypt_key(&text, path, target, prompt).await {
                    Ok(key) => key,
                    Err(e) => {
                        unusable.get_or_insert(e);
                        continue;
                    }
                }
            }
            Err(e) => {
                unusable.get_or_insert(SshError::KeyFile {
                    path: path.clone(),
                    reason: format!("is not a private key flotilla can read ({e}); use an OpenSSH ed25519, ecdsa or RSA key"),
                });
                continue;
            }
        };
        if was_offered(&offered, key.public_key()) {
            continue;
        }
        let hash = rsa_hash(handle, key.public_key()).await?;
        let fingerprint = known_hosts::fingerprint(key.public_key());
        offered.push(key.public_key().clone());
        let result = handle
            .authenticate_publickey(
                target.user.as_str(),
                PrivateKeyWithHashAlg::new(Arc::new(key), hash),
            )
            .await
            .map_err(|e| lost_or_protocol(&target.address, target.port, e))?;
        match result {
            AuthResult::Success => {
                tracing::debug!(key = %path.display(), "authenticated with key file");
                return Ok(());
            }
            AuthResult::Failure { .. } => {
                tried.push(format!("{} ({fingerprint})", path.display()));
            }
        }
    }

    Err(unusable.unwrap_or(SshError::AuthFailed {
        user: target.user.clone(),
        address: target.address.clone(),
        port: target.port,
        tried,
    }))
}

/// Asks `prompt` for the passphrase of the encrypted key `text` (from
/// `path`) until it decrypts, the prompt gives up, or the attempts run out.
async fn decrypt_key(
    text: &str,
    path: &Path,
    target: &SshTarget,
    prompt: &dyn PassphrasePrompt,
) -> Result<russh::keys::PrivateKey, SshError> {
    let destination = format!("{}@{}:{}", target.user, target.address, target.port);
    let mut last_error = None;
    for attempt in 1..=PASSPHRASE_ATTEMPTS {
        let request = PassphraseRequest {
            key_file: path.to_path_buf(),
            destination: destination.clone(),
            attempt,
        };
        let Some(passphrase) = prompt.passphrase(request).await else {
            let reason = match last_error {
                None => format!(
                    "key is encrypted and flotilla cannot ask for its passphrase here: add it to ssh-agent with `ssh-add {}` (and make sure SSH_AUTH_SOCK is set), or run flotilla where it can prompt",
                    path.display()
                ),
                Some(_) => "no passphrase was given after a wrong one".to_string(),
            };
            return Err(SshError::KeyFile {
                path: path.to_path_buf(),
                reason,
            });
        };
        let passphrase = zeroize::Zeroizing::new(passphrase);
        match russh::keys::decode_secret_key(text, Some(passphrase.as_str())) {
            Ok(key) => return Ok(key),
            Err(e) => {
                tracing::debug!(key = %path.display(), attempt, error = %e, "passphrase did not decrypt the key");
                last_error = Some(e);
            }
        }
    }
    Err(SshError::KeyFile {
        path: path.to_path_buf(),
        reason: format!(
            "wrong passphrase ({PASSPHRASE_ATTEMPTS} tries; last: {}); check it with `ssh-keygen -y -f {}`",
            last_error.map(|e| e.to_string()).unwrap_or_default(),
            path.display()
        ),
    })
}

/// Tries every agent identity; Ok(true) once one is accepted. An agent that
/// cannot be reached is logged and skipped, as `ssh` does.
async fn authenticate_with_agent(
    handle: &mut Handle<ClientHandler>,
    target: &SshTarget,
    tried: &mut Vec<String>,
    offered: &mut Vec<PublicKey>,
) -> Result<bool, SshError> {
    let mut agent = match AgentClient::connect_env().await {
        Ok(agent) => agent,
        Err(e) => {
            tracing::warn!(error = %e, "SSH_AUTH_SOCK is set but the ssh-agent cannot be reached; trying key files");
            return Ok(false);
        }
    };
    // OpenSSH agents only use destination-constrained keys after a session
    // bind; older agents reject the extension, which is harmless.
    if let Some(binding) = handle.agent_session_binding().cloned()
        && let Err(e) = agent.bind_session(&binding, false).await
    {
        tracing::debug!(error = %e, "ssh-agent did not accept session-bind");
    }
    let identities = match agent.request_identities().await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list ssh-agent keys; trying key files");
            return Ok(false);
        }
    };
    for identity in identities {
        let (key, comment) = match identity {
            AgentIdentity::PublicKey { key, comment } => (key, comment),
            // Certificate authentication comes with ~/.ssh/config support.
            AgentIdentity::Certificate { comment, .. } => {
                tracing::debug!(%comment, "skipping ssh-agent certificate");
                continue;
            }
        };
        let hash = rsa_hash(handle, &key).await?;
        let label = format!("agent key {comment} ({})", known_hosts::fingerprint(&key));
        offered.push(key.clone());
        match handle
            .authenticate_publickey_with(target.user.as_str(), key, hash, &mut agent)
            .await
        {
            Ok(AuthResult::Success) => {
                tracing::debug!(key = %label, "authenticated with ssh-agent");
                return Ok(true);
            }
            Ok(AuthResult::Failure { .. }) => tried.push(label),
            Err(e) => {
                tracing::warn!(key = %label, error = %e, "ssh-agent could not sign");
                if handle.is_closed() {
                    return Err(SshError::Disconnected {
                        address: target.address.clone(),
                        port: target.port,
                        reason: e.to_string(),
                    });
                }
                tried.push(format!("{label} (agent could not sign)"));
            }
        }
    }
    Ok(false)
}

fn was_offered(offered: &[PublicKey], key: &PublicKey) -> bool {
    offered.iter().any(|k| k.key_data() == key.key_data())
}

/// For RSA keys, the strongest signature hash the server accepts. A server
/// that does not send `server-sig-algs` gets rsa-sha2-256, not SHA-1:
/// OpenSSH ≥ 8.8 refuses ssh-rsa, and russh's `None` would mean SHA-1.
async fn rsa_hash(
    handle: &Handle<ClientHandler>,
    key: &PublicKey,
) -> Result<Option<HashAlg>, SshError> {
    if !key.algorithm().is_rsa() {
        return Ok(None);
    }
    Ok(handle
        .best_supported_rsa_hash()
        .await?
        .unwrap_or(Some(HashAlg::Sha256)))
}

/// Errors meaning "the connection is gone" become Disconnected, so callers
/// can reconnect; anything else is a protocol error.
fn lost_or_protocol(address: &str, port: u16, e: russh::Error) -> SshError {
    match e {
        russh::Error::SendError
        | russh::Error::Disconnect
        | russh::Error::HUP
        | russh::Error::KeepaliveTimeout
        | russh::Error::InactivityTimeout
        | russh::Error::ConnectionTimeout
        | russh::Error::IO(_) => SshError::Disconnected {
            address: address.to_string(),
            port,
            reason: e.to_string(),
        },
        e => SshError::Protocol(e),
    }
}

impl SshSession {
    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host key the server proved it holds (already verified).
    pub fn host_key(&self) -> &PublicKey {
        &self.host_key
    }

    /// The IP address the connection reached: the node's address, resolved.
    pub fn peer_ip(&self) -> Option<std::net::IpAddr> {
        self.peer_ip
    }

    /// True once the connection is gone (closed, or keepalive gave up).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Runs `command` through the user's shell on a new channel, with stdin
    /// at EOF, and collects its output and how it ended.
    pub async fn exec(&self, command: &str) -> Result<ExecOutput, SshError> {
        let (mut read, write) = self.start_exec(command).await?;
        // Commands that read stdin must see EOF, not wait for us forever.
        write.eof().await.map_err(|e| self.lost(e))?;
        self.collect(command, &mut read, &write).await
    }

    /// Runs `command` with `stdin` as its standard input (sent in chunks as
    /// the channel's window allows, then EOF) while collecting its output.
    /// If the command ends before reading everything, the rest is not sent
    /// and its result is returned as it is.
    pub async fn exec_with_stdin<R>(&self, command: &str, stdin: R) -> Result<ExecOutput, SshError>
    where
        R: AsyncRead + Unpin + Send,
    {
        let (mut read, write) = self.start_exec(command).await?;
        let send = async {
            let mut stdin = stdin;
            let mut buf = vec![0u8; STDIN_CHUNK];
            loop {
                let n = match stdin.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(SendError::Read(e)),
                };
                write
                    .data_bytes(buf[..n].to_vec())
                    .await
                    .map_err(SendError::Channel)?;
            }
            write.eof().await.map_err(SendError::Channel)
        };
        let collect = self.collect(command, &mut read, &write);
        tokio::pin!(send, collect);
        let mut sent: Option<Result<(), SendError>> = None;
        let output = loop {
            tokio::select! {
                result = &mut send, if sent.is_none() => {
                    if let Err(SendError::Read(e)) = &result {
                        // Our source failed: the command must not take a
                        // truncated input for a whole one.
                        let _ = write.close().await;
                        return Err(self.channel_error(command, ChannelError::StdinRead(e.to_string())));
                    }
                    sent = Some(result);
                }
                output = &mut collect => break output,
            }
        };
        if let Some(Err(SendError::Channel(e))) = sent {
            tracing::debug!(error = %e, command = %short(command), "the command ended before reading all its input");
        }
        output
    }

    /// Runs `command` and returns its stdin and stdout as one stream (stderr
    /// and the exit status are dropped): a process that speaks a protocol on
    /// stdio, such as the agent's `__bridge`.
    pub async fn exec_stream(
        &self,
        command: &str,
    ) -> Result<russh::ChannelStream<client::Msg>, SshError> {
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| self.channel_open_error(command, e))?;
        channel
            .exec(true, command)
            .await
            .map_err(|e| self.lost(e))?;
        Ok(channel.into_stream())
    }

    async fn start_exec(
        &self,
        command: &str,
    ) -> Result<(ChannelReadHalf, ChannelWriteHalf<client::Msg>), SshError> {
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| self.channel_open_error(command, e))?;
        channel
            .exec(true, command)
            .await
            .map_err(|e| self.lost(e))?;
        Ok(channel.split())
    }

    /// Reads a command's output and how it ended, until the channel closes.
    async fn collect(
        &self,
        command: &str,
        read: &mut ChannelReadHalf,
        write: &ChannelWriteHalf<client::Msg>,
    ) -> Result<ExecOutput, SshError> {
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut exit = None;
        while let Some(msg) = read.wait().await {
            let captured = match &msg {
                ChannelMsg::Data { data } => capture(&mut stdout, data),
                ChannelMsg::ExtendedData { data, ext: 1 } => capture(&mut stderr, data),
                _ => Ok(()),
            };
            if let Err(limit) = captured {
                // russh does not close a dropped channel: say so, or the
                // host keeps the command's output flowing to nobody.
                if let Err(e) = write.close().await {
                    tracing::debug!(error = %e, "closing an oversized exec channel");
                }
                return Err(self.channel_error(command, ChannelError::OutputTooLarge { limit }));
            }
            match msg {
                ChannelMsg::ExitStatus { exit_status } => {
                    exit = Some(ExitKind::Code(exit_status));
                }
                // A signalled command sends ExitSignal and no ExitStatus.
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    exit = Some(ExitKind::Signal(signal_name_of(&signal_name)));
                }
                ChannelMsg::Failure => {
                    if let Err(e) = write.close().await {
                        tracing::debug!(error = %e, "closing a refused exec channel");
                    }
                    return Err(self.channel_error(command, ChannelError::ExecRefused));
                }
                _ => {}
            }
        }
        match exit {
            Some(exit) => Ok(ExecOutput {
                stdout,
                stderr,
                exit,
            }),
            None if self.handle.is_closed() => Err(SshError::Disconnected {
                address: self.address.clone(),
                port: self.port,
                reason: format!("while running `{}`", short(command)),
            }),
            None => Err(self.channel_error(command, ChannelError::NoExitStatus)),
        }
    }

    /// Starts `command` on a new channel for a person to use: with `pty`,
    /// on a pseudo-terminal sshd allocates (so sshd owns the line
    /// discipline, the window size and the terminal's signals at the other
    /// end, as `ssh -t` has it); the caller pumps input and output through
    /// the returned [`Interactive`].
    pub async fn exec_interactive(
        &self,
        command: &str,
        pty: Option<&PtyRequest>,
    ) -> Result<Interactive, SshError> {
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| self.channel_open_error(command, e))?;
        if let Some(pty) = pty {
            channel
                .request_pty(false, &pty.term, pty.cols, pty.rows, 0, 0, &[])
                .await
                .map_err(|e| self.lost(e))?;
        }
        channel
            .exec(true, command)
            .await
            .map_err(|e| self.lost(e))?;
        let (read, write) = channel.split();
        Ok(Interactive {
            read,
            write,
            address: self.address.clone(),
            port: self.port,
            command: short(command),
        })
    }

    /// Opens a channel to a unix socket on the host (the agent's RPC socket).
    pub async fn open_streamlocal(
        &self,
        socket_path: &str,
    ) -> Result<russh::ChannelStream<client::Msg>, SshError> {
        let channel = self
            .handle
            .channel_open_direct_streamlocal(socket_path)
            .await
            .map_err(|e| self.channel_open_error(socket_path, e))?;
        Ok(channel.into_stream())
    }

    /// Says goodbye to the server and waits (briefly) for the session to end.
    pub async fn close(self) -> Result<(), SshError> {
        if self.handle.is_closed() {
            return Ok(());
        }
        if let Err(e) = self
            .handle
            .disconnect(Disconnect::ByApplication, "flotilla closing", "en")
            .await
        {
            tracing::debug!(error = %e, "disconnect: session already gone");
        }
        match tokio::time::timeout(CLOSE_TIMEOUT, self.handle).await {
            Ok(Ok(())) | Err(_) => Ok(()),
            // The session ending because we hung up is the goal, not an error.
            Ok(Err(SshError::Protocol(russh::Error::Disconnect))) => Ok(()),
            Ok(Err(e)) => Err(e),
        }
    }

    fn lost(&self, e: russh::Error) -> SshError {
        lost_or_protocol(&self.address, self.port, e)
    }

    fn channel_open_error(&self, what: &str, e: russh::Error) -> SshError {
        match e {
            russh::Error::ChannelOpenFailure(reason) => {
                self.channel_error(what, ChannelError::OpenRefused(format!("{reason:?}")))
            }
            e => self.lost(e),
        }
    }

    fn channel_error(&self, command: &str, source: ChannelError) -> SshError {
        SshError::Channel {
            address: self.address.clone(),
            port: self.port,
            command: short(command),
            source,
        }
    }
}

/// The terminal an interactive command gets: `TERM` and the window size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtyRequest {
    pub term: String,
    pub cols: u32,
    pub rows: u32,
}

/// What an interactive command sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// How it ended; the channel closes after.
    Exit(ExitKind),
}

/// A running interactive command ([`SshSession::exec_interactive`]).
/// `next` reads; the other calls write, and take `&self`, so they can run
/// while a `next` is pending in another branch of a `select!`.
pub struct Interactive {
    read: ChannelReadHalf,
    write: ChannelWriteHalf<client::Msg>,
    address: String,
    port: u16,
    command: String,
}

impl Interactive {
    /// The next output, or None once the channel has closed.
    pub async fn next(&mut self) -> Result<Option<Output>, SshError> {
        while let Some(msg) = self.read.wait().await {
            match msg {
                ChannelMsg::Data { data } => return Ok(Some(Output::Stdout(data.to_vec()))),
                ChannelMsg::ExtendedData { data, ext: 1 } => {
                    return Ok(Some(Output::Stderr(data.to_vec())));
                }
                ChannelMsg::ExitStatus { exit_status } => {
                    return Ok(Some(Output::Exit(ExitKind::Code(exit_status))));
                }
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    return Ok(Some(Output::Exit(ExitKind::Signal(signal_name_of(
                        &signal_name,
                    )))));
                }
                ChannelMsg::Failure => {
                    let _ = self.write.close().await;
                    return Err(SshError::Channel {
                        address: self.address.clone(),
                        port: self.port,
                        command: self.command.clone(),
                        source: ChannelError::ExecRefused,
                    });
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// Sends input (as the channel's window allows).
    pub async fn send(&self, data: &[u8]) -> Result<(), SshError> {
        self.write
            .data_bytes(data.to_vec())
            .await
            .map_err(|e| lost_or_protocol(&self.address, self.port, e))
    }

    /// No more input.
    pub async fn eof(&self) -> Result<(), SshError> {
        self.write
            .eof()
            .await
            .map_err(|e| lost_or_protocol(&self.address, self.port, e))
    }

    /// The local window's new size, for the remote pseudo-terminal.
    pub async fn resize(&self, cols: u32, rows: u32) -> Result<(), SshError> {
        self.write
            .window_change(cols, rows, 0, 0)
            .await
            .map_err(|e| lost_or_protocol(&self.address, self.port, e))
    }

    /// Asks sshd to signal the command (`INT`, `TERM`, …, without `SIG`).
    pub async fn signal(&self, name: &str) -> Result<(), SshError> {
        let sig = match name {
            "INT" => Sig::INT,
            "TERM" => Sig::TERM,
            "HUP" => Sig::HUP,
            "QUIT" => Sig::QUIT,
            "KILL" => Sig::KILL,
            other => Sig::Custom(other.to_string()),
        };
        self.write
            .signal(sig)
            .await
            .map_err(|e| lost_or_protocol(&self.address, self.port, e))
    }

    /// Hangs up: sshd closes the command's terminal or pipes.
    pub async fn close(&self) {
        if let Err(e) = self.write.close().await {
            tracing::debug!(error = %e, "closing an interactive channel");
        }
    }
}

/// Why feeding a command's stdin stopped.
enum SendError {
    /// Reading our source failed.
    Read(std::io::Error),
    /// The channel would not take more (the command ended, or the link).
    Channel(russh::Error),
}

/// Appends `data` unless that would pass the cap; Err carries the cap.
fn capture(into: &mut Vec<u8>, data: &[u8]) -> Result<(), usize> {
    if into.len() + data.len() > MAX_CAPTURED_OUTPUT {
        return Err(MAX_CAPTURED_OUTPUT);
    }
    into.extend_from_slice(data);
    Ok(())
}

/// Commands can be long scripts; errors show their start.
fn short(command: &str) -> String {
    const MAX: usize = 80;
    match command.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &command[..cut]),
        None => command.to_string(),
    }
}

fn signal_name_of(sig: &Sig) -> String {
    match sig {
        Sig::ABRT => "ABRT",
        Sig::ALRM => "ALRM",
        Sig::FPE => "FPE",
        Sig::HUP => "HUP",
        Sig::ILL => "ILL",
        Sig::INT => "INT",
        Sig::KILL => "KILL",
        Sig::PIPE => "PIPE",
        Sig::QUIT => "QUIT",
        Sig::SEGV => "SEGV",
        Sig::TERM => "TERM",
        Sig::USR1 => "USR1",
        Sig::Custom(name) => name.as_str(),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_commands_are_kept_and_long_ones_cut() {
        assert_eq!(short("hostname"), "hostname");
        let long = "x".repeat(200);
        assert_eq!(short(&long).chars().count(), 81);
    }

    #[test]
    fn session_is_shareable_across_tasks() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SshSession>();
    }
}
