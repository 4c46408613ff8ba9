//! Applying one OCI layer's (decompressed) tar stream to its own directory,
//! which then serves as one overlayfs lower layer, the way containerd's
//! overlay snapshotter lays layers out.
//!
//! Containment is the point of this module: nothing outside `dest` is ever
//! created, changed or deleted, whatever the archive holds.
//! * Lexically (`entry_path`): a leading `/` is dropped; an entry whose path
//!   (or hard link target) climbs above the root refuses the whole layer.
//! * In the kernel (`root`): paths resolve from an fd of `dest` with
//!   `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`, so symlinks, absolute or
//!   `..`, resolve inside the layer; entries are made with `*at` calls on
//!   the resolved parent and a final name that is never followed.
//! * Symlinks are created as they are (`/bin/busybox` targets are normal);
//!   hard links must name something this layer already holds; a directory
//!   is only ever merged with a directory, and is replaced by anything else
//!   only when empty; device nodes are not created.
//!
//! Whiteouts are written in overlayfs form: `.wh.NAME` becomes a 0:0
//! character device, `.wh..wh..opq` the `trusted.overlay.opaque` xattr.
//!
//! On error `dest` holds part of the layer; the caller discards it.

#![forbid(unsafe_code)]

mod entry_path;
mod meta;
mod root;
mod stream;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{
    Mode, SFlag, UtimensatFlags, fstat, futimens, makedev, mkdirat, mknodat, utimensat,
};
use nix::unistd::{linkat, symlinkat};
use rustix::fs::XattrFlags;
use tar::EntryType;

use entry_path::{LayerPath, Role};
use meta::{Meta, Times, Unset};
use root::{LayerRoot, Slot, clear_slot, is_dir, lstat_at, open_beneath, remove_any};
use stream::{Budget, COPY_BUFFER, copy_data};

/// What applying a layer did.
#[derive(Debug, Default, Clone)]
pub struct UnpackStats {
    /// Entries written (files, directories, links, whiteouts).
    pub entries: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
    /// Paths of device nodes the layer held and we did not create (the
    /// first 1024).
    pub skipped_devices: Vec<String>,
    /// Extended attributes not written, as `path: name (why)`: the
    /// privileged namespaces a layer may not set, and those the file system
    /// or file type cannot hold (e.g. `user.*` on a symlink). The first 1024.
    pub skipped_xattrs: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The archive asks for something a layer may not do; nothing of it is
    /// usable.
    #[error("layer entry {entry:?}: {reason}")]
    Refused { entry: String, reason: String },
    /// A file system call for an entry failed.
    #[error("layer entry {entry:?}: {action}: {source}")]
    Fs {
        entry: String,
        action: &'static str,
        source: std::io::Error,
    },
    /// The layer directory itself could not be opened.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The stream broke off or is corrupt inside an entry's data.
    #[error("layer entry {entry:?}: reading its data from the tar stream: {source}")]
    Stream {
        entry: String,
        source: std::io::Error,
    },
    /// The stream is not a readable tar archive (bad header, checksum,
    /// truncation, oversized extension headers).
    #[error("reading the layer's tar stream: {0}")]
    Tar(std::io::Error),
}

impl UnpackError {
    /// The entry the error is about, when it is about one.
    pub fn entry(&self) -> Option<&str> {
        match self {
            Self::Refused { entry, .. } | Self::Fs { entry, .. } | Self::Stream { entry, .. } => {
                Some(entry)
            }
            Self::Io { .. } | Self::Tar(_) => None,
        }
    }
}

/// Why one entry failed, before the entry's name is attached.
#[derive(Debug)]
enum Fail {
    Refuse(String),
    Fs {
        action: &'static str,
        source: io::Error,
    },
    Read(io::Error),
}

impl Fail {
    fn fs(action: &'static str, errno: Errno) -> Self {
        Self::Fs {
            action,
            source: errno.into(),
        }
    }

    fn naming(self, entry: String) -> UnpackError {
        match self {
            Self::Refuse(reason) => UnpackError::Refused { entry, reason },
            Self::Fs { action, source } => UnpackError::Fs {
                entry,
                action,
                source,
            },
            Self::Read(source) => UnpackError::Stream { entry, source },
        }
    }
}

/// Applies the tar stream `tar` to `dest`, an existing empty directory that
/// becomes one overlayfs lower layer. The stream is read to its very end
/// (the caller hashes every byte), in one pass with bounded memory.
pub fn apply_layer(tar: impl Read, dest: &Path) -> Result<UnpackStats, UnpackError> {
    let root = LayerRoot::open(dest).map_err(|source| UnpackError::Io {
        path: dest.to_path_buf(),
        source,
    })?;
    let mut unpacker = Unpacker {
        root,
        stats: UnpackStats::default(),
        dirs: HashMap::new(),
        buf: vec![0; COPY_BUFFER],
    };
    let budget = Budget::default();
    let mut archive = tar::Archive::new(budget.wrap(tar));
    {
        let mut entries = archive.entries().map_err(UnpackError::Tar)?;
        let mut previous: Option<String> = None;
        while let Some(entry) = budget.for_headers(|| entries.next()) {
            let mut entry = entry.map_err(|e| match &previous {
                Some(p) => {
                    UnpackError::Tar(io::Error::new(e.kind(), format!("after entry {p:?}: {e}")))
                }
                None => UnpackError::Tar(e),
            })?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            unpacker
                .apply(&mut entry)
                .map_err(|f| f.naming(name.clone()))?;
            // Whatever the entry carried and was not written (data on a
            // directory, a device, a skipped AUFS file) is read past here,
            // through a small buffer, so the crate never has to skip it.
            io::copy(&mut entry, &mut io::sink()).map_err(|source| UnpackError::Stream {
                entry: name.clone(),
                source,
            })?;
            previous = Some(name);
        }
    }
    // The archive ends at its first zero block; the second one and any
    // padding after it are part of the blob the caller is hashing.
    let mut rest = archive.into_inner().into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(UnpackError::Tar)?;
    unpacker.finish()
}

/// A directory's times, set once everything inside it is written (creating
/// entries in it would move its mtime). Kept by (dev, ino), which makes sure
/// the times go to that directory and not to whatever took its path later,
/// and keeps one record per directory however often the archive repeats it.
struct DirTimes {
    path: LayerPath,
    times: Times,
}

/// Most paths noted in each of `UnpackStats`' skipped lists: a hostile layer
/// of millions of device entries must not grow the agent's memory with them.
const MAX_NOTED: usize = 1024;

fn note(list: &mut Vec<String>, item: impl FnOnce() -> String) {
    if list.len() < MAX_NOTED {
        list.push(item());
    }
}

struct Unpacker {
    root: LayerRoot,
    stats: UnpackStats,
    dirs: HashMap<(u64, u64), DirTimes>,
    buf: Vec<u8>,
}

/// Splits an entry's path into parent and name; the root has neither, and
/// only a directory entry may name it.
fn parent_and_name(path: &LayerPath) -> Result<(&[Vec<u8>], &[u8]), Fail> {
    path.split_last().ok_or_else(|| {
        Fail::Refuse("it names the layer root, which only a directory entry may".into())
    })
}

impl Unpacker {
    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Fail> {
        let kind = entry.header().entry_type();
        // PAX global headers set archive-wide defaults that layer writers do
        // not use; Docker and containerd skip them too.
        if kind == EntryType::XGlobalHeader {
            return Ok(());
        }
        let raw_path = entry.path_bytes();
        // Pre-POSIX tar marked directories only by a trailing slash on a
        // "\0" (old regular file) entry; Go's archive/tar reads them so too.
        let kind = if entry.header().as_old().linkflag[0] == 0 && raw_path.ends_with(b"/") {
            EntryType::Directory
        } else {
            kind
        };
        let path = LayerPath::parse(&raw_path).map_err(Fail::Refuse)?;
        match entry_path::role(&path).map_err(Fail::Refuse)? {
            Role::AufsMeta => return Ok(()),
            Role::Opaque { dir } => self.opaque(dir)?,
            Role::Whiteout { parent, name } => self.whiteout(parent, name)?,
            Role::Plain => match kind {
                EntryType::Regular | EntryType::Continuous => self.file(entry, &path, false)?,
                EntryType::GNUSparse => self.file(entry, &path, true)?,
                EntryType::Directory => self.dir(entry, &path)?,
                EntryType::Symlink => self.symlink(entry, &path)?,
                EntryType::Link => self.hard_link(entry, &path)?,
                EntryType::Fifo => self.fifo(entry, &path)?,
                // A layer must not hand a container a device: a node in
                // its root filesystem is one cgroup rule away from the
                // host's disks or memory. The runtime makes the devices a
                // container gets.
                EntryType::Char | EntryType::Block => {
                    note(&mut self.stats.skipped_devices, || path.to_string());
                    return Ok(());
                }
                other => {
                    return Err(Fail::Refuse(format!(
                        "its type {:?} is not one a layer may hold",
                        char::from(other.as_byte())
                    )));
                }
            },
        }
        self.stats.entries += 1;
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &LayerPath,
        sparse: bool,
    ) -> Result<(), Fail> {
        let meta = Meta::from_entry(entry)?;
        let (parent, name) = parent_and_name(path)?;
        let dir = self.root.ensure_dir(parent)?;
        clear_slot(dir.as_fd(), name, false, "a file")?;
        // O_EXCL: never open something already there, least of all through
        // a symlink; 0600 until the real mode is set after the owner.
        let fd = open_beneath(
            dir.as_fd(),
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| Fail::fs("creating the file", e))?;
        let mut file = File::from(fd);
        let expected = entry.size();
        let written = copy_data(entry, &mut file, &mut self.buf, sparse, expected)?;
        self.stats.bytes = self.stats.bytes.saturating_add(written);
        let unset = meta.apply_fd(file.as_fd(), true)?;
        self.note_xattrs(path, &meta, unset);
        Ok(())
    }

    fn dir<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &LayerPath,
    ) -> Result<(), Fail> {
        let meta = Meta::from_entry(entry)?;
        let fd = match path.split_last() {
            // `./` is common at the top of archives; its metadata becomes
            // the layer root's, as Docker applies it.
            None => self
                .root
                .open_dir(&[], OFlag::O_RDONLY)
                .map_err(|e| Fail::fs("opening the layer root", e))?,
            Some((parent, name)) => {
                let dir = self.root.ensure_dir(parent)?;
                if clear_slot(dir.as_fd(), name, true, "a directory")? == Slot::Empty {
                    mkdirat(&dir, name, Mode::from_bits_truncate(0o700))
                        .map_err(|e| Fail::fs("creating the directory", e))?;
                }
                open_beneath(
                    dir.as_fd(),
                    name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                    Mode::empty(),
                )
                .map_err(|e| Fail::fs("opening the directory", e))?
            }
        };
        let unset = meta.apply_fd(fd.as_fd(), false)?;
        self.note_xattrs(path, &meta, unset);
        let st = fstat(&fd).map_err(|e| Fail::fs("looking at the directory", e))?;
        // A later entry for the same directory wins, as its other
        // metadata did.
        self.dirs.insert(
            (st.st_dev, st.st_ino),
            DirTimes {
                path: path.clone(),
                times: meta.times,
            },
        );
        Ok(())
    }

    fn symlink<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &LayerPath,
    ) -> Result<(), Fail> {
        let meta = Meta::from_entry(entry)?;
        let target = entry
            .link_name_bytes()
            .map(|t| t.into_owned())
            .unwrap_or_default();
        if target.is_empty() {
            return Err(Fail::Refuse("the symlink has no target".into()));
        }
        if target.contains(&0) {
            return Err(Fail::Refuse(
                "the symlink target contains a NUL byte".into(),
            ));
        }
        let (parent, name) = parent_and_name(path)?;
        let dir = self.root.ensure_dir(parent)?;
        clear_slot(dir.as_fd(), name, false, "a symlink")?;
        // The target is stored as written: it is only ever followed by our
        // own RESOLVE_IN_ROOT lookups or inside the container's root.
        symlinkat(target.as_slice(), &dir, name)
            .map_err(|e| Fail::fs("creating the symlink", e))?;
        meta.apply_symlink(dir.as_fd(), name)?;
        let unset = meta
            .xattr_names()
            .map(|name| Unset {
                name,
                why: Errno::EPERM,
            })
            .collect();
        self.note_xattrs(path, &meta, unset);
        Ok(())
    }

    /// Links to an entry this layer already holds. The target takes no
    /// metadata from this header: it is the same inode, already set up.
    fn hard_link<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &LayerPath,
    ) -> Result<(), Fail> {
        let raw = entry
            .link_name_bytes()
            .map(|t| t.into_owned())
            .unwrap_or_default();
        let target = LayerPath::parse(&raw).map_err(|why| {
            Fail::Refuse(format!(
                "its hard link target {:?} is refused: {why}",
                String::from_utf8_lossy(&raw)
            ))
        })?;
        let Some((target_parent, target_name)) = target.split_last() else {
            return Err(Fail::Refuse(format!(
                "its hard link target {:?} is the layer root",
                String::from_utf8_lossy(&raw)
            )));
        };
        let not_here = || {
            Fail::Refuse(format!(
                "its hard link target {target} is not in this layer"
            ))
        };
        let target_dir = match self.root.open_dir(target_parent, OFlag::O_PATH) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => return Err(not_here()),
            Err(e) => return Err(Fail::fs("resolving its hard link target", e)),
        };
        let target_st = lstat_at(target_dir.as_fd(), target_name)
            .map_err(|e| Fail::fs("looking at its hard link target", e))?
            .ok_or_else(not_here)?;
        if is_dir(&target_st) {
            return Err(Fail::Refuse(format!(
                "its hard link target {target} is a directory"
            )));
        }
        let (parent, name) = parent_and_name(path)?;
        let dir = self.root.ensure_dir(parent)?;
        if let Some(st) =
            lstat_at(dir.as_fd(), name).map_err(|e| Fail::fs("looking at what it replaces", e))?
            && st.st_dev == target_st.st_dev
            && st.st_ino == target_st.st_ino
        {
            return Ok(());
        }
        clear_slot(dir.as_fd(), name, false, "a hard link")?;
        // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink, as
        // tar means it.
        linkat(&target_dir, target_name, &dir, name, AtFlags::empty())
            .map_err(|e| Fail::fs("creating the hard link", e))
    }

    fn fifo<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &LayerPath,
    ) -> Result<(), Fail> {
        let meta = Meta::from_entry(entry)?;
        let (parent, name) = parent_and_name(path)?;
        let dir = self.root.ensure_dir(parent)?;
        clear_slot(dir.as_fd(), name, false, "a FIFO")?;
        mknodat(
            &dir,
            name,
            SFlag::S_IFIFO,
            Mode::from_bits_truncate(0o600),
            0,
        )
        .map_err(|e| Fail::fs("creating the FIFO", e))?;
        // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
        // writer. The fd lets owner, mode and times go to this very node.
        let fd = open_beneath(
            dir.as_fd(),
            name,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| Fail::fs("opening the FIFO", e))?;
        let unset = meta.apply_fd(fd.as_fd(), true)?;
        self.note_xattrs(path, &meta, unset);
        Ok(())
    }

    /// `.wh.NAME`: whatever this layer wrote at NAME goes, and a 0:0
    /// character device (overlayfs's whiteout) hides NAME in lower layers.
    fn whiteout(&mut self, parent: &[Vec<u8>], name: &[u8]) -> Result<(), Fail> {
        let dir = self.root.ensure_dir(parent)?;
        remove_any(dir.as_fd(), name)?;
        mknodat(&dir, name, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
            .map_err(|e| Fail::fs("creating the overlay whiteout", e))
    }

    /// `.wh..wh..opq`: the directory's contents in lower layers are hidden;
    /// what this layer puts in it stays.
    fn opaque(&mut self, dir: &[Vec<u8>]) -> Result<(), Fail> {
        let path = self.root.ensure_dir(dir)?;
        let fd = open_beneath(
            path.as_fd(),
            b".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .map_err(|e| Fail::fs("opening the directory to mark opaque", e))?;
        rustix::fs::fsetxattr(&fd, "trusted.overlay.opaque", b"y", XattrFlags::empty()).map_err(
            |e| Fail::Fs {
                action: "marking the directory opaque",
                source: e.into(),
            },
        )
    }

    fn note_xattrs(&mut self, path: &LayerPath, meta: &Meta, unset: Vec<Unset>) {
        let list = &mut self.stats.skipped_xattrs;
        for name in &meta.dropped_xattrs {
            note(list, || {
                format!("{path}: {name} (namespace not allowed in a layer)")
            });
        }
        for Unset { name, why } in unset {
            note(list, || format!("{path}: {name} ({})", why.desc()));
        }
    }

    /// Sets directories' times now that nothing more will be created in
    /// them.
    fn finish(self) -> Result<UnpackStats, UnpackError> {
        for (&(dev, ino), dir) in &self.dirs {
            self.set_dir_times(dir, dev, ino)
                .map_err(|f| f.naming(dir.path.to_string()))?;
        }
        Ok(self.stats)
    }

    fn set_dir_times(&self, dir: &DirTimes, dev: u64, ino: u64) -> Result<(), Fail> {
        let Times { atime, mtime } = dir.times;
        let Some((parent, name)) = dir.path.split_last() else {
            return futimens(self.root.fd(), &atime, &mtime)
                .map_err(|e| Fail::fs("setting its times", e));
        };
        // Gone (whited out later in the layer) or replaced: nothing to do.
        let parent_fd = match self.root.open_dir(parent, OFlag::O_PATH) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(()),
            Err(e) => return Err(Fail::fs("resolving the directory to set its times", e)),
        };
        match lstat_at(parent_fd.as_fd(), name)
            .map_err(|e| Fail::fs("looking at the directory", e))?
        {
            Some(st) if is_dir(&st) && st.st_dev == dev && st.st_ino == ino => utimensat(
                &parent_fd,
                name,
                &atime,
                &mtime,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(|e| Fail::fs("setting its times", e)),
            _ => Ok(()),
        }
    }
}
