//! Running `flotilla-agent` against a store of the test's own, and checking
//! what the store holds afterwards.
//!
//! Each run gets `--root`, a HOME of its own and an empty `DOCKER_CONFIG`, so
//! the operator's `~/.docker/config.json` never leaks into a test; a run that
//! hangs is killed after a deadline and fails the test instead of hanging it.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{die_with_parent, hex_of, sha256};

/// The agent binary the tests run: `$FLOTILLA_TEST_AGENT` when set
/// (scripts/test sets it to the statically linked agent that hosts run),
/// else the one cargo linked for the tests.
pub fn agent_binary() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        std::env::var("FLOTILLA_TEST_AGENT")
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_flotilla-agent").to_string())
    })
}
/// Long enough for the 90 MiB images in a debug build on a busy 2-core box.
const DEADLINE: Duration = Duration::from_secs(300);

/// An agent with its own store and environment.
pub struct Agent {
    pub root: PathBuf,
    pub home: PathBuf,
    /// What `DOCKER_CONFIG` points at: empty unless a test writes credentials.
    pub docker_config: PathBuf,
}

impl Agent {
    /// An agent whose store is `dir/root` (not created: the agent makes it).
    pub fn new(dir: &Path) -> Agent {
        let home = dir.join("home");
        let docker_config = dir.join("docker-config");
        fs::create_dir_all(&home).expect("agent home");
        fs::create_dir_all(&docker_config).expect("docker config dir");
        Agent {
            root: dir.join("root"),
            home,
            docker_config,
        }
    }

    /// `flotilla-agent --root ROOT ARGS…`, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(agent_binary());
        c.arg("--root")
            .arg(&self.root)
            .args(args)
            .env("HOME", &self.home)
            .env("DOCKER_CONFIG", &self.docker_config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut c);
        c
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args).spawn().expect("start flotilla-agent")
    }

    /// Runs the agent to completion (or the deadline).
    pub fn run(&self, args: &[&str]) -> Run {
        let child = self.spawn(args);
        finish(child, args)
    }

    /// `pull --insecure IMAGE`: every test registry speaks plain HTTP.
    pub fn pull(&self, image: &str) -> Run {
        self.run(&["pull", "--insecure", image])
    }

    /// `images -o json`, parsed; fails the test if the agent fails.
    pub fn images(&self) -> Vec<Value> {
        let run = self.run(&["images", "-o", "json"]);
        run.assert_ok();
        match serde_json::from_str(&run.stdout) {
            Ok(Value::Array(a)) => a,
            other => panic!(
                "images -o json is not a JSON array ({other:?}):\n{}",
                run.text()
            ),
        }
    }

    /// The `images -o json` entry whose reference is `reference`, if any.
    pub fn image(&self, reference: &str) -> Option<Value> {
        self.images()
            .into_iter()
            .find(|i| i["reference"] == reference)
    }

    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    /// `ROOT/images/layers/sha256/<hex>` for a diff_id.
    pub fn layer_dir(&self, diff_id: &str) -> PathBuf {
        self.images_dir()
            .join("layers/sha256")
            .join(hex_of(diff_id))
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.images_dir().join("blobs/sha256").join(hex_of(digest))
    }

    /// The hex names under blobs/sha256 and layers/sha256.
    pub fn blob_hexes(&self) -> BTreeSet<String> {
        names(&self.images_dir().join("blobs/sha256"))
    }

    pub fn layer_hexes(&self) -> BTreeSet<String> {
        names(&self.images_dir().join("layers/sha256"))
    }

    /// The store invariant: every file under blobs/ is a regular file named
    /// `sha256/<hex>` whose bytes hash to that name; layers/ holds only
    /// `sha256/<hex>` directories; index.json, if present, is JSON; every image
    /// `images` lists has its manifest, config and layers in the store.
    pub fn assert_store_consistent(&self) {
        let images = self.images_dir();
        let blobs = images.join("blobs");
        if blobs.exists() {
            for entry in read_dir(&blobs) {
                assert_eq!(
                    entry.file_name(),
                    "sha256",
                    "unexpected entry in {}",
                    blobs.display()
                );
            }
            for entry in read_dir(&blobs.join("sha256")) {
                let path = entry.path();
                let meta = fs::symlink_metadata(&path).expect("stat blob");
                assert!(meta.is_file(), "{} is not a regular file", path.display());
                let name = entry.file_name().into_string().expect("utf-8 blob name");
                assert!(is_hex64(&name), "blob with a bad name: {}", path.display());
                let bytes = fs::read(&path).expect("read blob");
                assert_eq!(
                    sha256(&bytes),
                    format!("sha256:{name}"),
                    "blob {} does not hash to its name (half-written or unverified)",
                    path.display()
                );
            }
        }
        let layers = images.join("layers");
        if layers.exists() {
            for entry in read_dir(&layers) {
                assert_eq!(
                    entry.file_name(),
                    "sha256",
                    "unexpected entry in {}",
                    layers.display()
                );
            }
            for entry in read_dir(&layers.join("sha256")) {
                let path = entry.path();
                let name = entry.file_name().into_string().expect("utf-8 layer name");
                assert!(is_hex64(&name), "layer with a bad name: {}", path.display());
                assert!(
                    fs::symlink_metadata(&path).expect("stat layer").is_dir(),
                    "{} is not a directory",
                    path.display()
                );
            }
        }
        let index = images.join("index.json");
        if index.exists() {
            let text = fs::read_to_string(&index).expect("read index.json");
            serde_json::from_str::<Value>(&text)
                .unwrap_or_else(|e| panic!("index.json is not JSON ({e}):\n{text}"));
        }
        for image in self.images() {
            for key in ["digest", "config_digest"] {
                let digest = image[key]
                    .as_str()
                    .unwrap_or_else(|| panic!("images -o json: {key} is not a string in {image}"));
                assert!(
                    self.blob_path(digest).is_file(),
                    "image {} lists {key} {digest} but blobs/ lacks it",
                    image["reference"]
                );
            }
            for diff_id in image["layers"].as_array().expect("layers array") {
                let diff_id = diff_id.as_str().expect("diff_id string");
                assert!(
                    self.layer_dir(diff_id).is_dir(),
                    "image {} lists layer {diff_id} but layers/ lacks it",
                    image["reference"]
                );
            }
        }
    }
}

/// The outcome of one agent run.
pub struct Run {
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn text(&self) -> String {
        format!(
            "flotilla-agent {}\nstatus: {}\nstdout:\n{}\nstderr:\n{}",
            self.args.join(" "),
            self.status,
            self.stdout,
            self.stderr
        )
    }

    pub fn assert_ok(&self) -> &Run {
        assert!(self.status.success(), "expected success:\n{}", self.text());
        self
    }

    /// A failure that says so on stderr, as the contract wants: non-zero exit
    /// and an `error: …` line. A crash (signal, panic) does not count.
    pub fn assert_failed(&self) -> &Run {
        assert!(
            matches!(self.status.code(), Some(c) if c != 0),
            "expected a clean failure (non-zero exit):\n{}",
            self.text()
        );
        assert!(
            self.stderr.lines().any(|l| l.starts_with("error:")),
            "expected an `error: …` line on stderr:\n{}",
            self.text()
        );
        assert!(
            !self.stderr.contains("panicked at"),
            "the agent panicked:\n{}",
            self.text()
        );
        self
    }

    /// The last line on stdout.
    pub fn last_line(&self) -> &str {
        self.stdout.lines().last().unwrap_or("")
    }
}

/// Waits for `child` up to the deadline, collecting its output.
pub fn finish(mut child: Child, args: &[&str]) -> Run {
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for flotilla-agent") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "flotilla-agent {} still running after {DEADLINE:?}: killed",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        args: args.iter().map(|s| s.to_string()).collect(),
        status,
        stdout: String::from_utf8_lossy(&out_reader.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned(),
    }
}

fn read_dir(dir: &Path) -> Vec<fs::DirEntry> {
    match fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.expect("read dir entry")).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => panic!("read {}: {e}", dir.display()),
    }
}

fn names(dir: &Path) -> BTreeSet<String> {
    read_dir(dir)
        .into_iter()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What a path is, for comparing trees: a kind and its content.
#[derive(Debug, PartialEq, Eq, Clone)]
pub enum Node {
    Dir,
    File(Vec<u8>),
    Symlink(PathBuf),
    /// Char or block device (kind, rdev).
    Device(char, u64),
    Other,
}

/// Every path under `dir` (relative) with what it is, sorted.
pub fn tree(dir: &Path) -> Vec<(PathBuf, Node)> {
    let mut out = Vec::new();
    walk(dir, Path::new(""), &mut out);
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn walk(base: &Path, rel: &Path, out: &mut Vec<(PathBuf, Node)>) {
    for entry in read_dir(&base.join(rel)) {
        let rel_path = rel.join(entry.file_name());
        let full = base.join(&rel_path);
        let meta = fs::symlink_metadata(&full).expect("stat");
        let ft = meta.file_type();
        let node = if ft.is_dir() {
            Node::Dir
        } else if ft.is_file() {
            Node::File(fs::read(&full).expect("read file"))
        } else if ft.is_symlink() {
            Node::Symlink(fs::read_link(&full).expect("readlink"))
        } else if ft.is_char_device() {
            Node::Device('c', meta.rdev())
        } else if ft.is_block_device() {
            Node::Device('b', meta.rdev())
        } else {
            Node::Other
        };
        let is_dir = node == Node::Dir;
        out.push((rel_path.clone(), node));
        if is_dir {
            walk(base, &rel_path, out);
        }
    }
}

/// True if `path` is an overlayfs whiteout: a char device 0:0.
pub fn is_whiteout(path: &Path) -> bool {
    fs::symlink_metadata(path)
        .map(|m| m.file_type().is_char_device() && m.rdev() == 0)
        .unwrap_or(false)
}

/// The value of extended attribute `name` on `path` (not following symlinks).
pub fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let p = CString::new(path.as_os_str().as_bytes()).ok()?;
    let n = CString::new(name).ok()?;
    let mut buf = vec![0u8; 256];
    // SAFETY: both strings are NUL-terminated and buf is valid for its length.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return None;
    }
    buf.truncate(len as usize);
    Some(buf)
}
