//! The SSH client against a real OpenSSH server: each test starts its own
//! `sshd` on a free loopback port with fresh keys in its own 0700 directory,
//! and kills it when the test ends (pass or fail).

use std::fs::{DirBuilder, File};
use std::net::TcpListener;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flotilla::ssh::known_hosts::{self, fingerprint};
use flotilla::ssh::{
    ChannelError, ExitKind, NoPrompt, PassphraseRequest, SshError, SshTarget, connect,
    connect_with, scan_host_key,
};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
use russh::keys::{PrivateKey, PublicKey};

const SSHD: &str = "/usr/sbin/sshd";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A key of another type than the server's, for the key-type trap.
const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBHp31YQPcV2WB2CFdA2gIZxvwclIpN72JJGaxyvwbLQwHW0iBf5BYELAL5Bru3EbAxoixqU2En0dFMpY7d26veQ=";

/// A fresh 0700 directory under /run (root's, mode 0755 all the way up):
/// sshd's StrictModes refuses authorized_keys below a group- or
/// world-writable directory, and the target directory may be under /tmp.
struct TestDir(PathBuf);

impl TestDir {
    fn new(name: &str) -> TestDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            Path::new("/run/flotilla-tests").join(format!("ssh-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)
            .expect("create test dir");
        // `recursive` leaves an existing parent's mode alone, but the leaf
        // must be 0700 whatever the umask.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
            .expect("chmod test dir");
        TestDir(path)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        // The shared parent goes with the last test (it fails while others use it).
        if let Some(parent) = self.0.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

fn new_ed25519(path: &Path) -> PrivateKey {
    let pair = Ed25519Keypair::from_seed(&rand::random::<[u8; 32]>());
    let key = PrivateKey::new(KeypairData::Ed25519(pair), "flotilla-test").expect("key");
    key.write_openssh_file(path, LineEnding::LF)
        .expect("write key");
    key
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port()
}

/// An sshd child process, killed on drop.
struct Sshd {
    child: Child,
    port: u16,
    host_key: PublicKey,
    client_key: PathBuf,
    dir: TestDir,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // The whole group: sshd forks a child per connection, and one still
        // serving a session would otherwise outlive the listener.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sshd {
    fn start(name: &str) -> Sshd {
        // Privilege separation directory; absent on machines that never ran sshd.
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create("/run/sshd")
            .expect("create /run/sshd");
        let dir = TestDir::new(name);
        let host_key = new_ed25519(&dir.0.join("host_ed25519"));
        let client_key = dir.0.join("client_ed25519");
        let client = new_ed25519(&client_key);
        let authorized = dir.0.join("authorized_keys");
        std::fs::write(
            &authorized,
            client.public_key().to_openssh().expect("encode") + "\n",
        )
        .expect("write authorized_keys");
        std::fs::set_permissions(&authorized, std::fs::Permissions::from_mode(0o600))
            .expect("chmod");

        // The port is free when chosen but another test may take it first:
        // retry with a new one if sshd dies or never listens.
        for _attempt in 0..5 {
            let port = free_port();
            let config = dir.0.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "ListenAddress 127.0.0.1\n\
                     Port {port}\n\
                     HostKey {host}\n\
                     AuthorizedKeysFile {authorized}\n\
                     PidFile none\n\
                     UsePAM no\n\
                     PasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n\
                     PermitRootLogin prohibit-password\n\
                     StrictModes yes\n\
                     # A developer's ssh-agent may offer many keys before ours.\n\
                     MaxAuthTries 50\n",
                    host = dir.0.join("host_ed25519").display(),
                    authorized = authorized.display(),
                ),
            )
            .expect("write sshd_config");
            let log = File::create(dir.0.join("sshd.log")).expect("log file");
            let mut child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .process_group(0)
                .spawn()
                .expect("start sshd (is openssh-server installed?)");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Sshd {
                        child,
                        port,
                        host_key: host_key.public_key().clone(),
                        client_key,
                        dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = child.wait();
        }
        let log = std::fs::read_to_string(dir.0.join("sshd.log")).unwrap_or_default();
        panic!("sshd did not start; its log:\n{log}");
    }

    /// A target trusting nothing yet: known_hosts is an absent file.
    fn target(&self) -> SshTarget {
        SshTarget {
            address: "127.0.0.1".into(),
            port: self.port,
            user: "root".into(),
            identities: vec![self.client_key.clone()],
            known_hosts: vec![self.dir.0.join("known_hosts")],
            pinned_fingerprint: None,
            connect_timeout: CONNECT_TIMEOUT,
        }
    }

    /// A target whose known_hosts records the server's real key.
    fn trusted_target(&self) -> SshTarget {
        let target = self.target();
        known_hosts::append_host_key(
            &target.known_hosts[0],
            &target.address,
            target.port,
            &self.host_key,
        )
        .expect("record host key");
        target
    }
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("utf-8 output")
}

#[tokio::test]
async fn exec_reports_output_exit_codes_and_signals() {
    let sshd = Sshd::start("exec");
    let session = connect(&sshd.trusted_target()).await.expect("connect");

    let out = session.exec("hostname").await.expect("hostname");
    let hostname = nix::unistd::gethostname().expect("gethostname");
    assert_eq!(text(&out.stdout).trim_end(), hostname.to_string_lossy());
    assert_eq!(out.exit, ExitKind::Code(0));
    assert!(out.success());

    let out = session.exec("exit 3").await.expect("exit 3");
    assert_eq!(out.exit, ExitKind::Code(3));

    let out = session.exec("kill -9 $$").await.expect("kill");
    assert_eq!(out.exit, ExitKind::Signal("KILL".into()));

    let out = session
        .exec("echo out; echo err >&2; echo more")
        .await
        .expect("stderr");
    assert_eq!(text(&out.stdout), "out\nmore\n");
    assert_eq!(text(&out.stderr), "err\n");

    // stdin is at EOF, so a command reading it finishes.
    let out = session.exec("cat; echo done").await.expect("cat");
    assert_eq!(text(&out.stdout), "done\n");

    assert_eq!(session.host_key().key_data(), sshd.host_key.key_data());
    session.close().await.expect("close");
}

#[tokio::test]
async fn oversized_output_is_an_error_and_the_session_survives() {
    let sshd = Sshd::start("oversized");
    let session = connect(&sshd.trusted_target()).await.expect("connect");
    let limit = flotilla::ssh::MAX_CAPTURED_OUTPUT;
    let err = session
        .exec(&format!("head -c {} /dev/zero", limit + 1))
        .await
        .expect_err("must fail");
    assert!(
        matches!(
            err,
            SshError::Channel {
                source: ChannelError::OutputTooLarge { .. },
                ..
            }
        ),
        "{err:?}"
    );
    // Exactly the limit is fine, and the connection is still usable.
    let out = session
        .exec(&format!("head -c {limit} /dev/zero"))
        .await
        .expect("at the limit");
    assert_eq!(out.stdout.len(), limit);
    let out = session.exec("echo still here").await.expect("exec");
    assert_eq!(text(&out.stdout), "still here\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_execs_share_one_session() {
    let sshd = Sshd::start("concurrent");
    let session = Arc::new(connect(&sshd.trusted_target()).await.expect("connect"));
    let started = Instant::now();
    let tasks: Vec<_> = (1..=3)
        .map(|n| {
            let session = Arc::clone(&session);
            tokio::spawn(async move { session.exec(&format!("sleep 1; echo {n}")).await })
        })
        .collect();
    for (n, task) in (1..=3).zip(tasks) {
        let out = task.await.expect("join").expect("exec");
        assert_eq!(text(&out.stdout), format!("{n}\n"));
        assert_eq!(out.exit, ExitKind::Code(0));
    }
    // Three one-second commands in well under three seconds: they overlapped.
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "execs ran one after another: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn unknown_host_key_is_refused_and_nothing_is_written() {
    let sshd = Sshd::start("unknown");
    let target = sshd.target();
    let err = connect(&target).await.expect_err("must be refused");
    match &err {
        SshError::HostKeyUnknown {
            fingerprint: fp,
            port,
            known_hosts_files,
            ..
        } => {
            assert_eq!(fp, &fingerprint(&sshd.host_key));
            assert_eq!(*port, sshd.port);
            assert_eq!(known_hosts_files, &target.known_hosts);
        }
        other => panic!("expected HostKeyUnknown, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("flotilla node trust"), "{message}");
    assert!(message.contains(&fingerprint(&sshd.host_key)), "{message}");
    assert!(!target.known_hosts[0].exists(), "known_hosts was written");
}

#[tokio::test]
async fn pinned_fingerprint_is_accepted_and_a_wrong_pin_refused() {
    let sshd = Sshd::start("pinned");
    let mut target = sshd.target();
    target.pinned_fingerprint = Some(fingerprint(&sshd.host_key));
    let session = connect(&target).await.expect("pinned connect");
    let out = session.exec("echo pinned").await.expect("exec");
    assert_eq!(text(&out.stdout), "pinned\n");
    session.close().await.expect("close");

    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string();
    target.pinned_fingerprint = Some(wrong.clone());
    match connect(&target).await.err() {
        Some(SshError::HostKeyPinMismatch {
            offered, pinned, ..
        }) => {
            assert_eq!(offered, fingerprint(&sshd.host_key));
            assert_eq!(pinned, wrong);
        }
        other => panic!("expected HostKeyPinMismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn changed_host_key_is_refused_naming_both_fingerprints() {
    let sshd = Sshd::start("changed");
    let target = sshd.target();
    let old = PrivateKey::new(
        KeypairData::Ed25519(Ed25519Keypair::from_seed(&rand::random::<[u8; 32]>())),
        "",
    )
    .expect("key")
    .public_key()
    .clone();
    let file = &target.known_hosts[0];
    std::fs::write(file, "# first line is a comment\n").expect("write");
    known_hosts::append_host_key(file, &target.address, target.port, &old).expect("append");

    let err = connect(&target).await.expect_err("must be refused");
    match &err {
        SshError::HostKeyChanged {
            offered, recorded, ..
        } => {
            assert_eq!(offered, &fingerprint(&sshd.host_key));
            assert_eq!(recorded.len(), 1);
            assert_eq!(recorded[0].fingerprint, fingerprint(&old));
            assert_eq!(recorded[0].line, 2);
        }
        other => panic!("expected HostKeyChanged, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(&fingerprint(&sshd.host_key)), "{message}");
    assert!(message.contains(&fingerprint(&old)), "{message}");
    assert!(
        message.contains(&format!("{}:2", file.display())),
        "{message}"
    );
    assert!(message.contains("man-in-the-middle"), "{message}");
}

#[tokio::test]
async fn host_recorded_under_another_key_type_is_changed_not_unknown() {
    let sshd = Sshd::start("keytype");
    let target = sshd.target();
    let ecdsa = PublicKey::from_openssh(ECDSA).expect("ecdsa");
    known_hosts::append_host_key(&target.known_hosts[0], &target.address, target.port, &ecdsa)
        .expect("append");
    match connect(&target).await.err() {
        Some(SshError::HostKeyChanged { recorded, .. }) => {
            assert_eq!(recorded[0].key_type, "ecdsa-sha2-nistp256");
        }
        other => panic!("expected HostKeyChanged, got {other:?}"),
    }
}

#[tokio::test]
async fn revoked_host_key_is_refused_even_when_pinned() {
    let sshd = Sshd::start("revoked");
    let mut target = sshd.trusted_target();
    let line = known_hosts::host_key_line("*", 22, &sshd.host_key).expect("line");
    let file = &target.known_hosts[0];
    let mut contents = std::fs::read_to_string(file).expect("read");
    contents.push_str(&format!("@revoked {line}\n"));
    std::fs::write(file, contents).expect("write");
    target.pinned_fingerprint = Some(fingerprint(&sshd.host_key));
    match connect(&target).await.err() {
        Some(SshError::HostKeyRevoked { line, .. }) => assert_eq!(line, 2),
        other => panic!("expected HostKeyRevoked, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_client_key_fails_authentication() {
    let sshd = Sshd::start("auth");
    let mut target = sshd.trusted_target();
    let wrong = sshd.dir.0.join("wrong_ed25519");
    new_ed25519(&wrong);
    let missing = sshd.dir.0.join("missing_key");
    target.identities = vec![missing.clone(), wrong.clone()];
    let err = connect(&target).await.expect_err("must fail");
    match &err {
        SshError::AuthFailed { user, tried, .. } => {
            assert_eq!(user, "root");
            let tried = tried.join(" | ");
            assert!(tried.contains(&wrong.display().to_string()), "{tried}");
            assert!(tried.contains("not found"), "{tried}");
        }
        other => panic!("expected AuthFailed, got {other:?}"),
    }
    assert!(err.to_string().contains("authorized_keys"), "{err}");
}

#[tokio::test]
async fn passphrase_protected_key_says_to_use_ssh_agent() {
    let sshd = Sshd::start("passphrase");
    let mut target = sshd.trusted_target();
    let locked = sshd.dir.0.join("locked_ed25519");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "secret", "-C", "", "-f"])
        .arg(&locked)
        .status()
        .expect("run ssh-keygen");
    assert!(status.success());
    target.identities = vec![locked.clone()];
    match connect(&target).await.err() {
        Some(SshError::KeyFile { path, reason }) => {
            assert_eq!(path, locked);
            assert!(reason.contains("ssh-add"), "{reason}");
        }
        other => panic!("expected KeyFile, got {other:?}"),
    }
    // The good key after the locked one still gets in.
    target.identities = vec![locked, sshd.client_key.clone()];
    connect(&target).await.expect("second key works");
}

#[tokio::test]
async fn an_encrypted_key_is_decrypted_with_the_passphrase_the_prompt_gives() {
    let sshd = Sshd::start("prompt");
    let mut target = sshd.trusted_target();
    let locked = sshd.dir.0.join("locked_ed25519");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "pass", "-C", "", "-f"])
        .arg(&locked)
        .status()
        .expect("run ssh-keygen");
    assert!(status.success());
    // Only the locked key may log in.
    let public = std::fs::read_to_string(locked.with_extension("pub")).expect("public key");
    std::fs::write(sshd.dir.0.join("authorized_keys"), public).expect("authorize");
    target.identities = vec![locked.clone()];

    // A wrong passphrase is asked again; the right one gets in.
    let asked = Arc::new(std::sync::Mutex::new(Vec::<PassphraseRequest>::new()));
    let log = Arc::clone(&asked);
    let prompt = move |request: PassphraseRequest| {
        let answer = if request.attempt == 1 {
            "wrong"
        } else {
            "pass"
        };
        log.lock().expect("lock").push(request);
        std::future::ready(Some(answer.to_string()))
    };
    let session = connect_with(&target, &prompt)
        .await
        .expect("log in with the key");
    let out = session.exec("echo in").await.expect("exec");
    assert_eq!(text(&out.stdout), "in\n");
    let requests = asked.lock().expect("lock").clone();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].key_file, locked);
    assert_eq!(requests[1].attempt, 2);
    assert_eq!(
        requests[0].destination,
        format!("root@127.0.0.1:{}", sshd.port)
    );

    // Wrong every time: the attempts run out, and the error names the key.
    let always_wrong = |_: PassphraseRequest| std::future::ready(Some("nope".to_string()));
    match connect_with(&target, &always_wrong).await.err() {
        Some(SshError::KeyFile { path, reason }) => {
            assert_eq!(path, locked);
            assert!(reason.contains("wrong passphrase"), "{reason}");
        }
        other => panic!("expected KeyFile, got {other:?}"),
    }
    // Nobody to ask: say what to do instead.
    match connect_with(&target, &NoPrompt).await.err() {
        Some(SshError::KeyFile { path, reason }) => {
            assert_eq!(path, locked);
            assert!(
                reason.contains("key is encrypted") && reason.contains("ssh-agent"),
                "{reason}"
            );
        }
        other => panic!("expected KeyFile, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_stdin_feeds_large_input_and_stops_when_the_command_does() {
    use sha2::Digest;
    let sshd = Sshd::start("stdin");
    let session = connect(&sshd.trusted_target()).await.expect("connect");
    // Several windows' worth, not a multiple of any chunk size.
    let data: Vec<u8> = (0..5_000_003u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let out = session
        .exec_with_stdin("sha256sum; echo done >&2", &data[..])
        .await
        .expect("sha256sum");
    assert_eq!(out.exit, ExitKind::Code(0));
    let expected = hex::encode(sha2::Sha256::digest(&data));
    assert_eq!(
        text(&out.stdout).split_whitespace().next(),
        Some(expected.as_str())
    );
    assert_eq!(text(&out.stderr), "done\n");

    // A command that reads a little and exits: the rest is not waited for.
    let started = Instant::now();
    let endless = tokio::io::AsyncReadExt::take(tokio::io::repeat(b'x'), 1 << 30);
    let out = session
        .exec_with_stdin("head -c 10; exit 7", endless)
        .await
        .expect("early exit");
    assert_eq!(out.exit, ExitKind::Code(7));
    assert_eq!(text(&out.stdout), "xxxxxxxxxx");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // A stdio stream: what goes in comes back.
    let mut stream = session.exec_stream("cat").await.expect("exec_stream");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(b"hello\n").await.expect("write");
    let mut buf = [0u8; 6];
    stream.read_exact(&mut buf).await.expect("read");
    assert_eq!(&buf, b"hello\n");
    drop(stream);
    let out = session.exec("echo still here").await.expect("exec");
    assert_eq!(text(&out.stdout), "still here\n");
}

#[tokio::test]
async fn nothing_listening_is_unreachable_quickly() {
    let port = free_port();
    let target = SshTarget {
        address: "127.0.0.1".into(),
        port,
        user: "root".into(),
        identities: vec![],
        known_hosts: vec![],
        pinned_fingerprint: None,
        connect_timeout: CONNECT_TIMEOUT,
    };
    let started = Instant::now();
    let err = connect(&target).await.expect_err("must fail");
    assert!(
        matches!(err, SshError::Unreachable { port: p, .. } if p == port),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn silent_peer_times_out_in_the_handshake() {
    // Accepts TCP and says nothing, like a wedged host.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hold = tokio::spawn(async move {
        let conn = listener.accept().await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(conn);
    });
    let target = SshTarget {
        address: "127.0.0.1".into(),
        port,
        user: "root".into(),
        identities: vec![],
        known_hosts: vec![],
        pinned_fingerprint: None,
        connect_timeout: Duration::from_millis(500),
    };
    let err = connect(&target).await.expect_err("must time out");
    assert!(
        matches!(
            err,
            SshError::Timeout {
                stage: "SSH handshake",
                ..
            }
        ),
        "{err:?}"
    );
    hold.abort();
}

#[tokio::test]
async fn scan_returns_the_offered_host_key() {
    let sshd = Sshd::start("scan");
    let key = scan_host_key("127.0.0.1", sshd.port, CONNECT_TIMEOUT)
        .await
        .expect("scan");
    assert_eq!(key.key_data(), sshd.host_key.key_data());
}
