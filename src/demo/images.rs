//! The demo registry's images, built here from the machine's static busybox:
//! `demo/busybox` (busybox and its applets) and `demo/httpd` (the same layer
//! plus a page that busybox httpd serves on port 8080). Builds are
//! reproducible (fixed times and owners, sorted entries), so every `up`
//! produces the same digests and the two images share their first layer.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use super::DemoError;
use crate::registry::{BuiltLayer, oci_architecture};

pub const BUSYBOX: &str = "/bin/busybox";
/// Every file in the demo images carries this time (2026-01-01T00:00:00Z).
const EPOCH: u64 = 1_767_225_600;
const CREATED: &str = "2026-01-01T00:00:00Z";
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An image ready to push: layers in order and its OCI config.
pub struct DemoImage {
    pub repository: &'static str,
    pub layers: Vec<BuiltLayer>,
    pub config_json: Vec<u8>,
}

/// Builds both demo images.
pub fn build_all() -> Result<Vec<DemoImage>, DemoError> {
    let base = busybox_layer()?;
    let www = www_layer()?;
    let busybox = DemoImage {
        repository: "demo/busybox",
        config_json: image_config(&[&base], &["sh"], &[], "busybox-static")?,
        layers: vec![base.clone()],
    };
    let httpd = DemoImage {
        repository: "demo/httpd",
        config_json: image_config(
            &[&base, &www],
            &["httpd", "-f", "-v", "-p", "8080", "-h", "/www"],
            &["8080/tcp"],
            "busybox httpd serving /www on port 8080",
        )?,
        layers: vec![base, www],
    };
    Ok(vec![busybox, httpd])
}

/// Checks the machine's busybox can go into an image: it must be statically
/// linked, since the image holds no C library.
pub fn check_busybox_static(path: &Path) -> Result<(), String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if has_interpreter(&bytes) {
        return Err(format!(
            "{} is dynamically linked; the demo images need busybox-static",
            path.display()
        ));
    }
    Ok(())
}

/// True if an ELF file names a program interpreter (PT_INTERP), i.e. is dynamic.
fn has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" {
        return false;
    }
    let is64 = elf[4] == 2;
    let le = elf[5] == 1;
    let u16_at = |o: usize| {
        let b = [elf[o], elf[o + 1]];
        if le {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }
    };
    let u32_at = |o: usize| {
        let b = [elf[o], elf[o + 1], elf[o + 2], elf[o + 3]];
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&elf[o..o + 8]);
        if le {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        }
    };
    let (phoff, phentsize, phnum) = if is64 {
        (
            u64_at(0x20) as usize,
            u16_at(0x36) as usize,
            u16_at(0x38) as usize,
        )
    } else {
        (
            u32_at(0x1c) as usize,
            u16_at(0x2a) as usize,
            u16_at(0x2c) as usize,
        )
    };
    (0..phnum).any(|i| {
        let at = phoff + i * phentsize;
        at + 4 <= elf.len() && u32_at(at) == PT_INTERP
    })
}

/// A tar being built with fixed metadata.
struct LayerBuilder {
    tar: tar::Builder<Vec<u8>>,
    dirs: BTreeSet<String>,
}

impl LayerBuilder {
    fn new() -> Self {
        LayerBuilder {
            tar: tar::Builder::new(Vec::new()),
            dirs: BTreeSet::new(),
        }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(EPOCH);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    fn dir(&mut self, path: &str, mode: u32) -> std::io::Result<()> {
        if self.dirs.insert(path.to_string()) {
            let mut h = Self::header(tar::EntryType::Directory, mode, 0);
            self.tar
                .append_data(&mut h, format!("{path}/"), std::io::empty())?;
        }
        Ok(())
    }

    /// Adds the parents of `path` that are not there yet.
    fn parents(&mut self, path: &str) -> std::io::Result<()> {
        let mut prefix = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            self.dir(&prefix.clone(), 0o755)?;
        }
        Ok(())
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> std::io::Result<()> {
        self.parents(path)?;
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.tar.append_data(&mut h, path, data)
    }

    fn symlink(&mut self, path: &str, target: &str) -> std::io::Result<()> {
        self.parents(path)?;
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.tar.append_link(&mut h, path, target)
    }

    /// Finishes the tar, gzips it, and computes the uncompressed digest.
    fn finish(self) -> std::io::Result<BuiltLayer> {
        let tar = self.tar.into_inner()?;
        let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&tar)));
        // Level 1: a third of the time of the default level for a few percent
        // more bytes, on a registry one bridge away.
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&tar)?;
        Ok(BuiltLayer {
            gzip_tar: gz.finish()?,
            diff_id,
        })
    }
}

fn busybox_layer() -> Result<BuiltLayer, DemoError> {
    let build = |reason: String| DemoError::Image {
        image: "demo/busybox".into(),
        reason,
    };
    let binary = fs::read(BUSYBOX).map_err(|e| build(format!("reading {BUSYBOX}: {e}")))?;
    let listing = Command::new(BUSYBOX)
        .arg("--list-full")
        .output()
        .map_err(|e| build(format!("{BUSYBOX} --list-full: {e}")))?;
    let mut applets: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .map(|l| l.trim().trim_start_matches('/').to_string())
        .filter(|l| !l.is_empty() && l != "bin/busybox")
        .collect();
    applets.sort();
    applets.dedup();

    let io = |e: std::io::Error| build(e.to_string());
    let mut layer = LayerBuilder::new();
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
        layer.dir(dir, mode).map_err(io)?;
    }
    layer.file("bin/busybox", 0o755, &binary).map_err(io)?;
    for applet in &applets {
        layer.symlink(applet, "/bin/busybox").map_err(io)?;
    }
    layer
        .file(
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .map_err(io)?;
    layer
        .file("etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")
        .map_err(io)?;
    layer.finish().map_err(io)
}

fn www_layer() -> Result<BuiltLayer, DemoError> {
    let io = |e: std::io::Error| DemoError::Image {
        image: "demo/httpd".into(),
        reason: e.to_string(),
    };
    let mut layer = LayerBuilder::new();
    layer
        .file(
            "www/index.html",
            0o644,
            b"<!doctype html>\n<title>flotilla demo</title>\n<h1>Hello from flotilla's demo httpd</h1>\n",
        )
        .map_err(io)?;
    layer.finish().map_err(io)
}

/// The OCI image config: platform, default command, environment, layer digests.
fn image_config(
    layers: &[&BuiltLayer],
    cmd: &[&str],
    exposed_ports: &[&str],
    created_by: &str,
) -> Result<Vec<u8>, DemoError> {
    let ports: serde_json::Map<String, serde_json::Value> = exposed_ports
        .iter()
        .map(|p| (p.to_string(), serde_json::json!({})))
        .collect();
    let config = serde_json::json!({
        "created": CREATED,
        "architecture": oci_architecture(),
        "os": "linux",
        "config": {
            "Env": [DEFAULT_PATH],
            "Cmd": cmd,
            "WorkingDir": "/",
            "ExposedPorts": ports,
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.diff_id.as_str()).collect::<Vec<_>>(),
        },
        "history": [{ "created": CREATED, "created_by": format!("flotilla demo: {created_by}") }],
    });
    serde_json::to_vec(&config).map_err(|e| DemoError::Image {
        image: created_by.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_dynamic_binaries_are_told_apart() {
        // /bin/sh is dynamically linked on every Debian machine.
        let sh = fs::read("/bin/sh").expect("read /bin/sh");
        assert!(has_interpreter(&sh));
        assert!(!has_interpreter(b"#!/bin/sh\necho not elf\n"));
    }

    #[test]
    fn layers_are_reproducible() {
        let a = www_layer().expect("build");
        let b = www_layer().expect("build");
        assert_eq!(a.diff_id, b.diff_id);
        assert_eq!(a.gzip_tar, b.gzip_tar);
    }
}
