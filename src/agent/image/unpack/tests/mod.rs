//! Tests of the unpacker: each applies a layer in a sandbox whose
//! surroundings are snapshotted before and compared after, so any write,
//! delete, new link or xattr outside `dest` fails the test whatever the
//! result of the unpack.
//!
//! These run as root, so a containment bug would write wherever the layer
//! points. The probes therefore aim at the sandbox: absolute targets are the
//! sandbox's own paths, and `dest` sits deep enough that `..` chains run
//! out before leaving it. A broken unpacker then fails a test instead of
//! touching the host.

mod hostile;
mod metadata;
mod normal;
mod props;
mod streaming;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{Builder, EntryType, Header};

use super::{UnpackError, UnpackStats, apply_layer};

/// The fixed mtime of entries the helpers build.
pub(super) const MTIME: u64 = 1_600_000_000;

/// Levels between the temp dir and `top`, so that climbing out of `dest`
/// by `..` stays inside the temp dir for a long way.
const DEPTH: &str = "l1/l2/l3/l4/l5/l6/l7/l8/l9/l10/l11/l12";

/// A temp dir laid out as `tmp/l1/../l12/top/mid/dest` with sentinels
/// beside `dest` and above it, so `..`, `../..` and absolute paths to the
/// sentinels all have something to hit.
pub(super) struct Sandbox {
    tmp: tempfile::TempDir,
    pub(super) dest: PathBuf,
}

impl Sandbox {
    pub(super) fn new() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mid = tmp.path().join(DEPTH).join("top/mid");
        let dest = mid.join("dest");
        fs::create_dir_all(&dest).unwrap();
        fs::create_dir_all(mid.join("outside/sub")).unwrap();
        fs::write(mid.join("outside/sentinel"), "keep").unwrap();
        fs::write(mid.join("outside/sub/deep"), "keep").unwrap();
        fs::write(mid.join("escape-target"), "keep").unwrap();
        fs::write(tmp.path().join(DEPTH).join("top/sentinel"), "keep").unwrap();
        fs::write(tmp.path().join("sentinel"), "keep").unwrap();
        Self { tmp, dest }
    }

    /// The directory beside `dest` holding `sentinel` and `sub/deep`.
    pub(super) fn outside(&self) -> PathBuf {
        self.tmp.path().join(DEPTH).join("top/mid/outside")
    }

    /// The temp dir: the sandbox's stand-in for `/`.
    pub(super) fn top(&self) -> String {
        self.tmp.path().display().to_string()
    }

    /// Absolute path of `outside/sentinel`, as text for tar names.
    pub(super) fn sentinel(&self) -> String {
        self.outside().join("sentinel").display().to_string()
    }

    /// Where an absolute host path lands inside the layer.
    pub(super) fn inside(&self, absolute: &str) -> PathBuf {
        self.dest.join(absolute.trim_start_matches('/'))
    }

    /// Every path under the temp dir but `dest`, with type, mode, owner,
    /// link count, size, mtime, xattr names and content.
    fn snapshot(&self) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        let mut stack = vec![self.tmp.path().to_path_buf()];
        while let Some(p) = stack.pop() {
            if p == self.dest {
                continue;
            }
            let md = fs::symlink_metadata(&p).unwrap();
            let ft = md.file_type();
            let mut line = format!(
                "{:?} {:o} {}:{} n{} s{} m{}.{} x{:?}",
                ft,
                md.mode(),
                md.uid(),
                md.gid(),
                md.nlink(),
                md.size(),
                md.mtime(),
                md.mtime_nsec(),
                xattr_names(&p)
            );
            if ft.is_file() {
                line += &format!(" {:?}", fs::read(&p).unwrap());
            } else if ft.is_symlink() {
                line += &format!(" -> {:?}", fs::read_link(&p).unwrap());
            } else if ft.is_dir() {
                for e in fs::read_dir(&p).unwrap() {
                    stack.push(e.unwrap().path());
                }
            }
            out.insert(p, line);
        }
        out
    }

    /// Applies `layer`, asserting nothing outside `dest` changed whatever
    /// the outcome.
    pub(super) fn apply(&self, layer: &[u8]) -> Result<UnpackStats, UnpackError> {
        let before = self.snapshot();
        let result = apply_layer(layer, &self.dest);
        let after = self.snapshot();
        assert_eq!(before, after, "something outside dest changed: {result:?}");
        result
    }

    pub(super) fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.dest.join(rel))
            .unwrap_or_else(|e| panic!("{rel} in the layer: {e}"))
    }

    pub(super) fn lstat(&self, rel: &str) -> fs::Metadata {
        fs::symlink_metadata(self.dest.join(rel))
            .unwrap_or_else(|e| panic!("{rel} in the layer: {e}"))
    }

    pub(super) fn exists(&self, rel: &str) -> bool {
        fs::symlink_metadata(self.dest.join(rel)).is_ok()
    }
}

pub(super) fn xattr_names(p: &Path) -> Vec<String> {
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::llistxattr(p, &mut buf[..]).unwrap_or(0);
    buf[..n]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

pub(super) fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::lgetxattr(p, name, &mut buf[..]).ok()?;
    buf.truncate(n);
    Some(buf)
}

pub(super) fn is_whiteout(md: &fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

/// Asserts the layer was refused because of `entry`.
#[track_caller]
pub(super) fn assert_refused(result: Result<UnpackStats, UnpackError>, entry: &str) {
    match result {
        Err(UnpackError::Refused { entry: e, reason }) => {
            assert_eq!(e, entry, "refused for another entry ({reason})")
        }
        other => panic!("expected {entry:?} to be refused, got {other:?}"),
    }
}

/// Asserts the layer failed, with an error naming `entry`.
#[track_caller]
pub(super) fn assert_fails_on(result: Result<UnpackStats, UnpackError>, entry: &str) {
    match result {
        Err(e) => assert_eq!(e.entry(), Some(entry), "{e}"),
        Ok(stats) => panic!("expected {entry:?} to fail the layer, got {stats:?}"),
    }
}

/// Builds layers from raw headers, so names the tar crate's builder would
/// refuse (`..`, absolute) go in as they are.
pub(super) struct Layer {
    builder: Builder<Vec<u8>>,
}

pub(super) fn header(kind: EntryType, name: &str, link: &str, size: u64, mode: u32) -> Header {
    let mut h = Header::new_gnu();
    let old = h.as_old_mut();
    old.name[..name.len()].copy_from_slice(name.as_bytes());
    old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(MTIME);
    h
}

impl Layer {
    pub(super) fn new() -> Self {
        Self {
            builder: Builder::new(Vec::new()),
        }
    }

    /// Appends `h` as it is (checksum recomputed) with `data`.
    pub(super) fn raw(mut self, mut h: Header, data: &[u8]) -> Self {
        h.set_cksum();
        self.builder.append(&h, data).unwrap();
        self
    }

    pub(super) fn file(self, name: &str, data: &str) -> Self {
        let h = header(EntryType::Regular, name, "", data.len() as u64, 0o644);
        self.raw(h, data.as_bytes())
    }

    pub(super) fn dir(self, name: &str) -> Self {
        self.raw(header(EntryType::Directory, name, "", 0, 0o755), b"")
    }

    pub(super) fn symlink(self, name: &str, target: &str) -> Self {
        self.raw(header(EntryType::Symlink, name, target, 0, 0o777), b"")
    }

    pub(super) fn hard_link(self, name: &str, target: &str) -> Self {
        self.raw(header(EntryType::Link, name, target, 0, 0o644), b"")
    }

    pub(super) fn pax(mut self, records: &[(&str, &[u8])]) -> Self {
        self.builder
            .append_pax_extensions(records.iter().copied())
            .unwrap();
        self
    }

    pub(super) fn builder(&mut self) -> &mut Builder<Vec<u8>> {
        &mut self.builder
    }

    pub(super) fn finish(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}
