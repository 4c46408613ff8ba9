//! The demo's busybox image for tests: the same layer src/demo/images.rs
//! builds from the host's busybox-static, and a helper that pushes it.

use std::fs;
use std::process::Command;

use super::layer::{Layer, TarBuilder};

const BUSYBOX: &str = "/bin/busybox";

/// The demo busybox image's layer, as src/demo/images.rs builds it: busybox,
/// its applets as symlinks, the root dirs, /etc/passwd and /etc/group.
pub fn layer() -> Layer {
    let binary = fs::read(BUSYBOX).expect("read /bin/busybox (install busybox-static)");
    let listing = Command::new(BUSYBOX)
        .arg("--list-full")
        .output()
        .expect("busybox --list-full");
    let mut applets: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .map(|l| l.trim().trim_start_matches('/').to_string())
        .filter(|l| !l.is_empty() && l != "bin/busybox")
        .collect();
    applets.sort();
    applets.dedup();
    let mut tar = TarBuilder::new();
    for (dir, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("home", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("run", 0o755),
        ("sbin", 0o755),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("var", 0o755),
    ] {
        tar.dir_mode(dir, mode, 0, 0);
    }
    tar.file_mode("bin/busybox", 0o755, 0, 0, &binary);
    for applet in &applets {
        tar.symlink(applet, "/bin/busybox");
    }
    tar.file(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    );
    tar.file("etc/group", b"root:x:0:\nnogroup:x:65534:\n");
    tar.finish()
}
