//! Fixtures for the agent's image-pull integration tests: a real registry
//! (Debian's distribution server) per test, a small fake registry that can
//! misbehave on purpose, builders for layers (including hostile tar headers),
//! image configs, manifests and multi-arch indexes, and a runner for
//! `flotilla-agent` that checks the store's invariants afterwards.
//!
//! Every process these fixtures start dies with the test (Drop, and a
//! parent-death signal in case the test process itself is killed), and every
//! directory lives under `CARGO_TARGET_TMPDIR` and is removed on Drop.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

pub mod agent;
pub mod busybox;
pub mod demo;
pub mod fake;
pub mod image;
pub mod layer;
pub mod pods;
pub mod registry;
pub mod tmux;

use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A directory under the test target's tmp dir, removed (with everything in
/// it, whiteout devices included) when dropped.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new(label: &str) -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("pulltest-{label}-"))
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("create a test dir under CARGO_TARGET_TMPDIR");
        TestDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `path/sub`, created.
    pub fn subdir(&self, sub: &str) -> PathBuf {
        let p = self.dir.path().join(sub);
        std::fs::create_dir_all(&p).expect("create test subdir");
        p
    }
}

/// Runs a future to completion on a runtime of its own: the tests are plain
/// `#[test]`s that drive processes, and only the pushes need async.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(future)
}

/// Makes `command`'s child receive SIGKILL when the thread that spawned it
/// ends, so a test that panics or is killed leaves no registry or agent behind.
pub fn die_with_parent(command: &mut Command) -> &mut Command {
    // SAFETY: set_pdeathsig is one prctl(2) call, async-signal-safe, and
    // touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        })
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// The hex part of a `sha256:` digest.
pub fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").expect("a sha256: digest")
}

/// `n` bytes from the kernel's CSPRNG: incompressible, and different in every
/// run, so no two tests share a blob by accident.
pub fn random_bytes(n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf
}
