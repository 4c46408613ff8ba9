//! The kernel half of containment: every path is resolved from an fd of the
//! layer directory with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so
//! absolute symlinks and `..` met on the way resolve inside the layer, and
//! everything is then created, replaced or removed with `*at` calls on the
//! resolved parent's fd and a single final name that is never followed.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use rustix::fs::FileType;

use super::Fail;

/// `openat2` fails with EAGAIN when a rename anywhere on the system races a
/// `..` step under `RESOLVE_IN_ROOT`; the man page says to retry.
const EAGAIN_RETRIES: usize = 64;

/// Mode for parent directories the archive did not list (Docker's choice).
const IMPLICIT_DIR_MODE: u32 = 0o755;

/// The layer directory, held open: all resolution starts from this fd, never
/// from a host path, so renaming or symlinking `dest` later changes nothing.
pub(super) struct LayerRoot {
    fd: OwnedFd,
}

/// Symlinks are followed, but `/` and `..` stop at the layer root; `/proc`
/// style magic links (which jump anywhere) are refused outright.
fn in_root() -> ResolveFlag {
    ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

/// For one name under an already resolved directory: no symlink is followed
/// and nothing may leave that directory.
fn beneath_no_links() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS
}

fn open_how(dir: BorrowedFd<'_>, path: &[u8], how: OpenHow) -> Result<OwnedFd, Errno> {
    let mut tries = 0;
    loop {
        match openat2(dir, path, how) {
            Err(Errno::EAGAIN) if tries < EAGAIN_RETRIES => tries += 1,
            other => return other,
        }
    }
}

/// Opens `name`, one component directly under `dir`, without following it.
pub(super) fn open_beneath(
    dir: BorrowedFd<'_>,
    name: &[u8],
    flags: OFlag,
    mode: Mode,
) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .mode(mode)
        .resolve(beneath_no_links());
    open_how(dir, name, how)
}

/// `lstat` of `name` under `dir`; `None` when nothing is there.
pub(super) fn lstat_at(dir: BorrowedFd<'_>, name: &[u8]) -> Result<Option<FileStat>, Errno> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(super) fn is_dir(st: &FileStat) -> bool {
    st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits()
}

fn join(components: &[Vec<u8>]) -> Vec<u8> {
    if components.is_empty() {
        return b".".to_vec();
    }
    components.join(&b'/')
}

fn display(components: &[Vec<u8>]) -> String {
    if components.is_empty() {
        return "/".into();
    }
    String::from_utf8_lossy(&components.join(&b'/')).into_owned()
}

impl LayerRoot {
    pub(super) fn open(dest: &Path) -> io::Result<Self> {
        let fd = nix::fcntl::open(
            dest,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self { fd })
    }

    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens the existing directory at `components`, following symlinks
    /// inside the root. `flags` adds to `O_DIRECTORY` (`O_PATH` for a parent
    /// used only as a dirfd, `O_RDONLY` to change the directory itself).
    pub(super) fn open_dir(&self, components: &[Vec<u8>], flags: OFlag) -> Result<OwnedFd, Errno> {
        let how = OpenHow::new()
            .flags(flags | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(in_root());
        open_how(self.fd(), &join(components), how)
    }

    /// Opens (as `O_PATH`) the directory at `components`, creating missing
    /// ones as root-owned 0755 the way Docker does for parents an archive
    /// does not list. Each missing directory is made with `mkdirat` under its
    /// already resolved parent, so the walk never leaves the root either.
    pub(super) fn ensure_dir(&self, components: &[Vec<u8>]) -> Result<OwnedFd, Fail> {
        match self.open_dir(components, OFlag::O_PATH) {
            Ok(fd) => return Ok(fd),
            // The walk below finds which component is missing or not a
            // directory, and says so.
            Err(Errno::ENOENT | Errno::ENOTDIR) => {}
            Err(e) => return Err(Fail::fs("resolving its parent directory", e)),
        }
        let mut current = self
            .open_dir(&[], OFlag::O_PATH)
            .map_err(|e| Fail::fs("opening the layer root", e))?;
        for i in 0..components.len() {
            let prefix = &components[..=i];
            match self.open_dir(prefix, OFlag::O_PATH) {
                Ok(fd) => current = fd,
                Err(Errno::ENOENT) => {
                    let name = components[i].as_slice();
                    match mkdirat(&current, name, Mode::from_bits_truncate(IMPLICIT_DIR_MODE)) {
                        Ok(()) => {}
                        // Resolution found nothing, yet the name exists: a
                        // symlink whose target is missing. Docker fails here
                        // too; creating its target would mean guessing.
                        Err(Errno::EEXIST) => {
                            return Err(Fail::Refuse(format!(
                                "its parent {} is a symlink to something this layer does not hold",
                                display(prefix)
                            )));
                        }
                        Err(e) => return Err(Fail::fs("creating a parent directory", e)),
                    }
                    current = open_beneath(
                        current.as_fd(),
                        name,
                        OFlag::O_PATH | OFlag::O_DIRECTORY,
                        Mode::empty(),
                    )
                    .map_err(|e| Fail::fs("opening a parent directory it created", e))?;
                }
                Err(Errno::ENOTDIR) => {
                    return Err(Fail::Refuse(format!(
                        "its parent {} is not a directory",
                        display(prefix)
                    )));
                }
                Err(e) => return Err(Fail::fs("resolving its parent directory", e)),
            }
        }
        Ok(current)
    }
}

/// What is at a name once it has been made ready for a new entry.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Slot {
    Empty,
    /// A directory stays when a directory entry names it: the two merge.
    Dir,
}

/// Makes `name` under `dir` ready for a new entry. Anything that is not a
/// directory is replaced (as Docker and containerd do). A directory is kept
/// for a directory; for anything else it is removed only if empty, because
/// silently deleting a tree this layer just wrote hides a broken or hostile
/// archive (and would let a symlink take the place of a directory that later
/// entries were meant to go into).
pub(super) fn clear_slot(
    dir: BorrowedFd<'_>,
    name: &[u8],
    new_is_dir: bool,
    what: &str,
) -> Result<Slot, Fail> {
    let Some(st) = lstat_at(dir, name).map_err(|e| Fail::fs("looking at what it replaces", e))?
    else {
        return Ok(Slot::Empty);
    };
    if is_dir(&st) {
        if new_is_dir {
            return Ok(Slot::Dir);
        }
        return match unlinkat(dir, name, UnlinkatFlags::RemoveDir) {
            Ok(()) => Ok(Slot::Empty),
            Err(Errno::ENOTEMPTY | Errno::EEXIST) => Err(Fail::Refuse(format!(
                "it would replace a non-empty directory with {what}"
            ))),
            Err(e) => Err(Fail::fs("removing the empty directory it replaces", e)),
        };
    }
    unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)
        .map_err(|e| Fail::fs("removing the entry it replaces", e))?;
    Ok(Slot::Empty)
}

/// Removes `name` under `dir`, a whole tree if it is a directory; nothing
/// there is fine.
pub(super) fn remove_any(dir: BorrowedFd<'_>, name: &[u8]) -> Result<(), Fail> {
    let Some(st) = lstat_at(dir, name).map_err(|e| Fail::fs("looking at what it removes", e))?
    else {
        return Ok(());
    };
    if is_dir(&st) {
        remove_tree(dir, name).map_err(|e| Fail::Fs {
            action: "removing the directory tree it whites out",
            source: e,
        })
    } else {
        unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)
            .map_err(|e| Fail::fs("removing the entry it whites out", e))
    }
}

/// Opens the directory reached from `base` by `names`, one component at a
/// time, never following a symlink. Opened for reading: it gets listed.
fn walk(base: BorrowedFd<'_>, names: &[Vec<u8>]) -> io::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
    let mut current = open_beneath(base, b".", flags, Mode::empty())?;
    for name in names {
        current = open_beneath(current.as_fd(), name, flags, Mode::empty())?;
    }
    Ok(current)
}

/// Depth-first removal without recursion or an fd per level: a hostile
/// layer can nest directories thousands deep, which would overflow the stack
/// or the fd limit. Each step re-walks from `base` by name instead; that is
/// quadratic in depth, which PATH_MAX bounds.
fn remove_tree(base: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let mut stack: Vec<Vec<u8>> = vec![name.to_vec()];
    while !stack.is_empty() {
        let current = walk(base, &stack)?;
        let mut children = Vec::new();
        // read_from, not new: `current` stays usable for the unlinks below.
        let mut listing = rustix::fs::Dir::read_from(&current)?;
        while let Some(entry) = listing.read() {
            let entry = entry?;
            let child = entry.file_name().to_bytes();
            if child != b"." && child != b".." {
                children.push((child.to_vec(), entry.file_type()));
            }
        }
        let mut subdir = None;
        for (child, kind) in children {
            let child_is_dir = match kind {
                FileType::Directory => true,
                FileType::Unknown => {
                    lstat_at(current.as_fd(), &child)?.is_some_and(|st| is_dir(&st))
                }
                _ => false,
            };
            if child_is_dir {
                subdir = Some(child);
                break;
            }
            match unlinkat(&current, child.as_slice(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
        match subdir {
            Some(child) => stack.push(child),
            None => {
                let Some(done) = stack.pop() else { break };
                let parent = walk(base, &stack)?;
                unlinkat(&parent, done.as_slice(), UnlinkatFlags::RemoveDir)?;
            }
        }
    }
    Ok(())
}
