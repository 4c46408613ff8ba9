//! `flotilla node add`, `node trust` and the read verbs' errors, run as the
//! binary with a home of the test's own. `node trust` talks to a real
//! OpenSSH `sshd` the test starts on a free loopback port with a fresh host
//! key, and kills when it ends.

use std::fs;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use russh::keys::PrivateKey;
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};

const SSHD: &str = "/usr/sbin/sshd";

/// A home directory of the test's own: `~/.ssh`, flotilla's config and data.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn cluster_file(&self) -> PathBuf {
        self.path().join("cluster.toml")
    }

    /// flotilla's own known_hosts under this home.
    fn known_hosts(&self) -> PathBuf {
        self.path().join("config/flotilla/known_hosts")
    }

    fn flotilla(&self, args: &[&str]) -> Output {
        let cluster = self.cluster_file();
        Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .arg("--cluster")
            .arg(&cluster)
            .args(args)
            .env("HOME", self.path())
            .env("XDG_CONFIG_HOME", self.path().join("config"))
            .env("XDG_DATA_HOME", self.path().join("data"))
            .env_remove("FLOTILLA_CLUSTER")
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null())
            .output()
            .expect("run flotilla")
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ed25519(path: Option<&Path>) -> PrivateKey {
    let pair = Ed25519Keypair::from_seed(&rand::random::<[u8; 32]>());
    let key = PrivateKey::new(KeypairData::Ed25519(pair), "").expect("key");
    if let Some(path) = path {
        key.write_openssh_file(path, LineEnding::LF)
            .expect("write key");
    }
    key
}

/// An sshd with a fresh ed25519 host key, killed (with its children) on drop.
struct Sshd {
    child: Child,
    port: u16,
    host_key: russh::keys::PublicKey,
    _dir: tempfile::TempDir,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sshd {
    fn start() -> Sshd {
        fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let dir = tempfile::tempdir().expect("tempdir");
        let key_path = dir.path().join("host_ed25519");
        let host_key = ed25519(Some(&key_path)).public_key().clone();
        // A port free when chosen may be taken before sshd binds it: retry.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("bind")
                .port();
            let config = dir.path().join("sshd_config");
            fs::write(
                &config,
                format!(
                    "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nPidFile none\nUsePAM no\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\n",
                    key_path.display()
                ),
            )
            .expect("sshd_config");
            let log = fs::File::create(dir.path().join("sshd.log")).expect("log");
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
                        host_key,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let log = fs::read_to_string(dir.path().join("sshd.log")).unwrap_or_default();
        panic!("sshd did not start; its log:\n{log}");
    }

    /// The known_hosts line flotilla should write for this server.
    fn known_hosts_line(&self) -> String {
        let bare = russh::keys::PublicKey::new(self.host_key.key_data().clone(), "");
        format!(
            "[127.0.0.1]:{} {}",
            self.port,
            bare.to_openssh().expect("encode")
        )
    }
}

const CLUSTER: &str = "\
# The lab rack. Keep this comment.
[cluster]
name = \"ncli\"

[defaults]
user = \"root\"   # everyone is root here

[[nodes]]
name = \"node1\"
address = \"10.83.0.11\"
labels = { zone = \"a\" }
";

fn cluster_with(home: &Home, extra: &str) {
    fs::write(home.cluster_file(), format!("{CLUSTER}{extra}")).expect("write cluster file");
}

#[test]
fn node_add_appends_an_entry_keeping_the_files_text() {
    let home = Home::new();
    cluster_with(&home, "");
    let out = home.flotilla(&[
        "node",
        "add",
        "node2",
        "10.83.0.12",
        "--user",
        "ops",
        "--port",
        "2222",
        "--label",
        "zone=b",
        "--label",
        "example.com/disk=ssd",
        "--taint",
        "dedicated=db:NoSchedule",
        "--identity",
        "~/.ssh/id_lab",
        "--no-trust",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("node node2 added to"),
        "{}",
        stdout(&out)
    );
    let text = fs::read_to_string(home.cluster_file()).expect("read");
    assert_eq!(
        text,
        format!(
            "{CLUSTER}\n[[nodes]]\nname = \"node2\"\naddress = \"10.83.0.12\"\nport = 2222\nuser = \"ops\"\n\
             identity = \"~/.ssh/id_lab\"\nlabels = {{ \"zone\" = \"b\", \"example.com/disk\" = \"ssd\" }}\n\
             taints = [\"dedicated=db:NoSchedule\"]\n"
        )
    );
    let config = flotilla::config::cluster_file::load(&home.cluster_file()).expect("parses");
    assert_eq!(config.nodes.len(), 2);
    assert_eq!(config.nodes[1].labels["example.com/disk"], "ssd");

    // A second node without options takes the file's defaults.
    let out = home.flotilla(&["node", "add", "node3", "10.83.0.13", "--no-trust"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let config = flotilla::config::cluster_file::load(&home.cluster_file()).expect("parses");
    assert_eq!(config.nodes[2].user.as_deref(), Some("root"));
}

#[test]
fn node_add_refuses_duplicates_and_bad_entries_leaving_the_file_alone() {
    let home = Home::new();
    cluster_with(&home, "");
    let cases: [(&[&str], &str); 5] = [
        (
            &["node", "add", "node1", "10.83.0.99", "--no-trust"],
            "node \"node1\" is already in",
        ),
        (
            &["node", "add", "Node_2", "10.83.0.12", "--no-trust"],
            "nodes[1] (Node_2).name",
        ),
        (
            &[
                "node",
                "add",
                "node2",
                "10.83.0.12",
                "--taint",
                "x=y:Sometimes",
                "--no-trust",
            ],
            "nodes[1] (node2).taints[0]",
        ),
        (
            &[
                "node",
                "add",
                "node2",
                "10.83.0.12",
                "--label",
                "bad key=v",
                "--no-trust",
            ],
            "nodes[1] (node2).labels",
        ),
        (
            &[
                "node",
                "add",
                "node2",
                "10.83.0.12",
                "--label",
                "novalue",
                "--no-trust",
            ],
            "write KEY=VALUE",
        ),
    ];
    for (args, needle) in cases {
        let out = home.flotilla(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(
            err.contains("nothing was written")
                || needle.contains("already")
                || needle.contains("KEY=VALUE"),
            "{args:?}: {err}"
        );
        assert_eq!(
            fs::read_to_string(home.cluster_file()).expect("read"),
            CLUSTER,
            "{args:?} changed the file"
        );
    }

    // `nodes` as an inline array cannot be continued with [[nodes]].
    let inline = "nodes = [{ name = \"a\", address = \"x\" }]\n[cluster]\nname = \"c\"\n";
    fs::write(home.cluster_file(), inline).expect("write");
    let out = home.flotilla(&["node", "add", "b", "y", "--no-trust"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("nothing was written"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        fs::read_to_string(home.cluster_file()).expect("read"),
        inline
    );

    // No file at all: say how to get one.
    fs::remove_file(home.cluster_file()).expect("rm");
    let out = home.flotilla(&["node", "add", "b", "y", "--no-trust"]);
    assert!(
        stderr(&out).contains("flotilla demo up"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn node_trust_records_the_key_once_and_refuses_a_changed_one() {
    let sshd = Sshd::start();
    let home = Home::new();
    cluster_with(
        &home,
        &format!(
            "\n[[nodes]]\nname = \"node2\"\naddress = \"127.0.0.1\"\nport = {}\n",
            sshd.port
        ),
    );
    let fingerprint = flotilla::ssh::known_hosts::fingerprint(&sshd.host_key);

    // Without a terminal to ask on, and without --yes: refused, nothing written.
    let out = home.flotilla(&["node", "trust", "node2"]);
    assert!(!out.status.success());
    assert!(stdout(&out).contains(&fingerprint), "{}", stdout(&out));
    assert!(stderr(&out).contains("no terminal"), "{}", stderr(&out));
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    assert!(!home.known_hosts().exists());

    let out = home.flotilla(&["node", "trust", "node2", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(
        shown.contains(&format!("ssh-ed25519 {fingerprint}")),
        "{shown}"
    );
    assert!(
        shown.contains(&home.known_hosts().display().to_string()),
        "{shown}"
    );
    let written = fs::read_to_string(home.known_hosts()).expect("known_hosts written");
    assert_eq!(written, format!("{}\n", sshd.known_hosts_line()));
    assert!(
        !home.path().join(".ssh/known_hosts").exists(),
        "OpenSSH's file is never written"
    );

    // The same key again: said, and nothing changes.
    let out = home.flotilla(&["node", "trust", "node2", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("already trusted"), "{}", stdout(&out));
    assert_eq!(
        fs::read_to_string(home.known_hosts()).expect("read"),
        written
    );

    // Another key on record for that host: refused, naming the line to delete.
    let other = ed25519(None).public_key().clone();
    let other_line = format!(
        "# pinned by hand\n[127.0.0.1]:{} {}\n",
        sshd.port,
        other.to_openssh().expect("encode")
    );
    fs::write(home.known_hosts(), &other_line).expect("write");
    let out = home.flotilla(&["node", "trust", "node2", "--yes"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("HOST KEY CHANGED for node node2"), "{err}");
    assert!(
        err.contains(&format!(
            "line 2 of {} records ssh-ed25519 {}",
            home.known_hosts().display(),
            flotilla::ssh::known_hosts::fingerprint(&other)
        )),
        "{err}"
    );
    assert!(err.contains("ssh-keygen -R '[127.0.0.1]:"), "{err}");
    assert_eq!(
        fs::read_to_string(home.known_hosts()).expect("read"),
        other_line,
        "never overwritten"
    );

    // OpenSSH's own record counts too: it is what a connection checks first.
    fs::remove_file(home.known_hosts()).expect("rm");
    fs::create_dir_all(home.path().join(".ssh")).expect("mkdir");
    fs::write(home.path().join(".ssh/known_hosts"), &other_line).expect("write");
    let out = home.flotilla(&["node", "trust", "node2", "--yes"]);
    assert!(
        stderr(&out).contains("HOST KEY CHANGED"),
        "{}",
        stderr(&out)
    );
    assert!(!home.known_hosts().exists());

    // An unknown node name lists the known ones.
    let out = home.flotilla(&["node", "trust", "node9", "--yes"]);
    assert!(
        stderr(&out).contains("the cluster has node1, node2"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn node_add_then_trusts_the_new_hosts_key() {
    let sshd = Sshd::start();
    let home = Home::new();
    cluster_with(&home, "");
    let port = sshd.port.to_string();
    let out = home.flotilla(&[
        "node",
        "add",
        "node2",
        "127.0.0.1",
        "--port",
        &port,
        "--yes",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(shown.contains("node node2 added to"), "{shown}");
    assert!(shown.contains("trusted: line 1 of"), "{shown}");
    assert_eq!(
        fs::read_to_string(home.known_hosts()).expect("known_hosts"),
        format!("{}\n", sshd.known_hosts_line())
    );

    // A host that does not answer: the node is added, and the error says so.
    drop(sshd);
    let out = home.flotilla(&[
        "node",
        "add",
        "node3",
        "127.0.0.1",
        "--port",
        &port,
        "--yes",
        "--timeout",
        "2s",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("node node3 was added to"), "{err}");
    assert!(err.contains("flotilla node trust node3"), "{err}");
    let config = flotilla::config::cluster_file::load(&home.cluster_file()).expect("parses");
    assert!(config.node("node3").is_some());
}

#[test]
fn read_verbs_refuse_what_they_cannot_answer_before_connecting() {
    let home = Home::new();
    cluster_with(&home, "");
    let out = home.flotilla(&["describe", "node", "nope"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("node \"nope\" not found: the cluster has node1"),
        "{}",
        stderr(&out)
    );
    // Deployments live in the agents' store: with the only node down there
    // is no majority to read, and the error says which node and what to do.
    let out = home.flotilla(&["get", "deployments", "--timeout", "2s"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("a majority") && err.contains("node1") && err.contains("flotilla get nodes"),
        "{err}"
    );
    let out = home.flotilla(&["get", "services"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("resource type \"services\""),
        "{}",
        stderr(&out)
    );
    let out = home.flotilla(&["get", "nodes", "nope", "-o", "json"]);
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
}
