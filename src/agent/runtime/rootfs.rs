//! The container's filesystem, built inside its own mount namespace: the
//! overlay of image layers, /proc, /dev (tmpfs with the standard devices,
//! devpts, shm, mqueue), read-only /sys, the bind mounts from the host,
//! Docker's masked and read-only paths, then `pivot_root` and the old root
//! unmounted, so no path leads back to the host.
//!
//! Every target is resolved inside the new root with `openat2(RESOLVE_IN_ROOT
//! | RESOLVE_NO_MAGICLINKS)` and mounted through `/proc/self/fd/N`: the path
//! the kernel mounts on is the one we resolved, not one a symlink in the
//! image (or a racing process) swapped in afterwards. That is runc's fix for
//! CVE-2021-30465, and it also keeps an image whose `/proc` is a symlink to
//! `/` from getting a mount onto the host's root.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};

use super::init::{StepError, StepResult};
use super::spec::{BindMount, RootfsSpec};

/// How often an `openat2` that raced a rename or mount is tried again.
const OPENAT2_TRIES: u32 = 128;
/// overlayfs's options must fit in one page with their NUL.
const MOUNT_DATA_MAX: usize = 4095;

/// A directory fd that stands for `/` of the container while paths are
/// resolved in it.
pub struct Root {
    fd: OwnedFd,
    /// Where the root is, for error messages (the host path before
    /// `pivot_root`, empty after).
    label: PathBuf,
}

impl Root {
    pub fn open(path: &Path) -> Result<Root, rustix::io::Errno> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root {
            fd,
            label: if path == Path::new("/") {
                PathBuf::new()
            } else {
                path.to_path_buf()
            },
        })
    }

    /// `path` as errors show it: the host path of the container path.
    pub fn show(&self, path: &str) -> String {
        format!("{}{path}", self.label.display())
    }

    /// An `O_PATH` fd of `path` resolved inside the root: `..` and symlinks
    /// stop at the root, magic links (`/proc/self/root`, `/proc/N/fd/M`)
    /// are refused.
    pub fn resolve(&self, path: &str) -> Result<OwnedFd, rustix::io::Errno> {
        self.open_in(path, OFlags::PATH)
    }

    pub fn open_in(&self, path: &str, flags: OFlags) -> Result<OwnedFd, rustix::io::Errno> {
        self.open_with(path, flags, ResolveFlags::empty())
    }

    fn open_with(
        &self,
        path: &str,
        flags: OFlags,
        resolve: ResolveFlags,
    ) -> Result<OwnedFd, rustix::io::Errno> {
        // With RESOLVE_IN_ROOT the kernel answers EAGAIN when a `..` was
        // walked while any rename or mount happened on the system (it cannot
        // prove the walk stayed inside): try again, as libpathrs does.
        let mut tries = 0;
        loop {
            match rustix::fs::openat2(
                &self.fd,
                path,
                flags | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | resolve,
            ) {
                Err(rustix::io::Errno::AGAIN) if tries < OPENAT2_TRIES => tries += 1,
                other => return other,
            }
        }
    }

    /// Opens `path` with `flags`, resolved inside the root with no symlink
    /// on the way (a device the runtime made, such as /dev/pts/ptmx).
    pub fn open_no_symlinks(
        &self,
        path: &str,
        flags: OFlags,
    ) -> Result<OwnedFd, rustix::io::Errno> {
        self.open_with(path, flags, ResolveFlags::NO_SYMLINKS)
    }

    /// Like [`Root::resolve`], but no component may be a symlink: where the
    /// kernel's filesystems go (/proc, /sys, /dev), an image does not get to
    /// redirect them (an image whose /proc points at / would otherwise get
    /// proc mounted over its whole root).
    pub fn resolve_no_symlinks(&self, path: &str) -> Result<OwnedFd, rustix::io::Errno> {
        self.open_with(path, OFlags::PATH, ResolveFlags::NO_SYMLINKS)
    }

    /// Resolves `path`, creating missing directories (root-owned, 0755).
    /// Iterative: the path may come from an image's symlink, so its depth
    /// must not be the depth of our stack.
    pub fn ensure_dir(&self, path: &str) -> Result<OwnedFd, rustix::io::Errno> {
        match self.resolve(path) {
            Err(rustix::io::Errno::NOENT) => {}
            other => return other,
        }
        let mut dir = self.resolve("/")?;
        let mut prefix = String::with_capacity(path.len());
        for name in path.split('/').filter(|c| !c.is_empty()) {
            prefix.push('/');
            prefix.push_str(name);
            match self.resolve(&prefix) {
                Ok(fd) => {
                    dir = fd;
                    continue;
                }
                Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(e),
            }
            match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e),
            }
            dir = self.resolve(&prefix)?;
        }
        Ok(dir)
    }

    /// Resolves `path`, creating an empty file (0644) if it is missing, to
    /// bind a file onto. A dangling symlink is followed inside the root and
    /// the file created where it points (as runc does), never outside.
    pub fn ensure_file(&self, path: &str) -> Result<OwnedFd, rustix::io::Errno> {
        self.ensure_file_at(path, 0)
    }

    fn ensure_file_at(&self, path: &str, depth: u32) -> Result<OwnedFd, rustix::io::Errno> {
        // Linux's own limit on symlinks in one resolution.
        const MAX_LINKS: u32 = 40;
        match self.resolve(path) {
            Err(rustix::io::Errno::NOENT) => {}
            other => return other,
        }
        let (parent, name) = split(path);
        let parent_fd = self.ensure_dir(parent)?;
        match rustix::fs::mknodat(
            &parent_fd,
            name,
            FileType::RegularFile,
            Mode::from_raw_mode(0o644),
            0,
        ) {
            Ok(()) => self.resolve(path),
            Err(rustix::io::Errno::EXIST) if depth < MAX_LINKS => {
                // A dangling symlink: where it points, resolved from the root
                // (absolute) or from its directory (relative).
                let target = rustix::fs::readlinkat(&parent_fd, name, Vec::new())?;
                let target = target.to_string_lossy();
                let next = if target.starts_with('/') {
                    target.into_owned()
                } else {
                    format!("{}/{target}", parent.trim_end_matches('/'))
                };
                self.ensure_file_at(&next, depth + 1)
            }
            Err(rustix::io::Errno::EXIST) => Err(rustix::io::Errno::LOOP),
            Err(e) => Err(e),
        }
    }

    /// A small regular file's text (/etc/passwd): `None` if missing. FIFOs and
    /// devices are refused so an image cannot make the init stage block.
    pub fn read_small(&self, path: &str, max: u64) -> Result<Option<String>, String> {
        let fd = match self.open_in(path, OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(errno_text(e.raw_os_error())),
        };
        let stat = rustix::fs::fstat(&fd).map_err(|e| errno_text(e.raw_os_error()))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err("not a regular file".into());
        }
        let mut text = String::new();
        std::fs::File::from(fd)
            .take(max)
            .read_to_string(&mut text)
            .map_err(|e| io_text(&e))?;
        Ok(Some(text))
    }
}

/// `/a/b/c` → (`/a/b`, `c`); `/a` → (`/`, `a`).
fn split(path: &str) -> (&str, &str) {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some(("", name)) => ("/", name),
        Some((parent, name)) => (parent, name),
        None => ("/", trimmed),
    }
}

/// The path that names an fd's file for mount(2).
pub fn fd_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// An errno as a person reads it: `No such file or directory`.
pub fn errno_text(raw: i32) -> String {
    io_text(&std::io::Error::from_raw_os_error(raw))
}

pub fn io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

fn mount(
    source: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), String> {
    nix::mount::mount(source, target, fstype, flags, data).map_err(|e| errno_text(e as i32))
}

/// Mounts the overlay of the image layers on `merged_dir`.
pub fn mount_overlay(rootfs: &RootfsSpec) -> StepResult<()> {
    let step = || format!("mount overlay on {}", rootfs.merged_dir.display());
    let show = |p: &PathBuf| p.to_string_lossy().into_owned();
    let lower: Vec<String> = rootfs.lower_dirs.iter().map(show).collect();
    let data = |lower: &[String]| {
        format!(
            "lowerdir={},upperdir={},workdir={}{}",
            lower.join(":"),
            show(&rootfs.upper_dir),
            show(&rootfs.work_dir),
            if rootfs.volatile { ",volatile" } else { "" }
        )
    };
    let mut options = data(&lower);
    if options.len() > MOUNT_DATA_MAX {
        // Many layers: name them relative to their common parent (the store's
        // layers dir), as containerd does; the kernel resolves them against
        // our cwd at mount time.
        let parent = common_parent(&rootfs.lower_dirs).ok_or_else(|| StepError {
            step: step(),
            detail: "too many layers for one mount (no common parent dir)".into(),
        })?;
        std::env::set_current_dir(&parent).map_err(|e| StepError {
            step: step(),
            detail: format!("chdir {}: {}", parent.display(), io_text(&e)),
        })?;
        let relative: Vec<String> = rootfs
            .lower_dirs
            .iter()
            .map(|d| show(&d.strip_prefix(&parent).unwrap_or(d).to_path_buf()))
            .collect();
        options = data(&relative);
        if options.len() > MOUNT_DATA_MAX {
            return Err(StepError {
                step: step(),
                detail: format!("{} layers do not fit in one overlay mount", lower.len()),
            });
        }
    }
    mount(
        Some("overlay"),
        &show(&rootfs.merged_dir),
        Some("overlay"),
        MsFlags::empty(),
        Some(&options),
    )
    .map_err(|detail| StepError {
        step: step(),
        detail,
    })
}

/// Mounts a tmpfs on `rootfs.upper_dir` (in this, the container's, mount
/// namespace) and makes the overlay's upper and work dirs in it: the
/// returned spec names them. See `RootfsSpec::private_layer`.
pub fn private_layer(rootfs: &RootfsSpec) -> StepResult<RootfsSpec> {
    let base = &rootfs.upper_dir;
    mount(
        Some("tmpfs"),
        &base.to_string_lossy(),
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0755"),
    )
    .map_err(|detail| StepError {
        step: format!("mount the writable layer's tmpfs on {}", base.display()),
        detail,
    })?;
    let (upper, work) = (base.join("upper"), base.join("work"));
    // The upper dir's mode is the container's `/` (setup runs with no
    // umask): 0755, as an upper dir made by the agent is.
    for (dir, mode) in [(&upper, 0o755), (&work, 0o700)] {
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), mode)
            .create(dir)
            .map_err(|e| StepError {
                step: format!("make {}", dir.display()),
                detail: io_text(&e),
            })?;
    }
    Ok(RootfsSpec {
        upper_dir: upper,
        work_dir: work,
        ..rootfs.clone()
    })
}

fn common_parent(dirs: &[PathBuf]) -> Option<PathBuf> {
    let first = dirs.first()?.parent()?.to_path_buf();
    dirs.iter()
        .all(|d| d.parent() == Some(&first))
        .then_some(first)
}

/// A filesystem mounted at a path inside the root.
struct FsMount {
    target: &'static str,
    fstype: &'static str,
    flags: MsFlags,
    data: Option<&'static str>,
}

/// runc's and Docker's defaults for the kernel filesystems, in mount order.
fn kernel_mounts() -> [FsMount; 6] {
    let no = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    [
        FsMount {
            target: "/proc",
            fstype: "proc",
            flags: no,
            data: None,
        },
        FsMount {
            target: "/dev",
            fstype: "tmpfs",
            // Not nodev: the device nodes live here.
            flags: MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
            data: Some("mode=755,size=65536k"),
        },
        FsMount {
            target: "/dev/pts",
            fstype: "devpts",
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            // A private instance: the container's ptys are not the host's.
            data: Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
        },
        FsMount {
            target: "/dev/shm",
            fstype: "tmpfs",
            flags: no,
            data: Some("mode=1777,size=65536k"),
        },
        FsMount {
            target: "/dev/mqueue",
            fstype: "mqueue",
            flags: no,
            data: None,
        },
        FsMount {
            target: "/sys",
            fstype: "sysfs",
            flags: no | MsFlags::MS_RDONLY,
            data: None,
        },
    ]
}

/// The standard devices, created with mknod (Docker does so outside a user
/// namespace): no host file is bound in, and six mknods are cheaper than six
/// bind mounts.
const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

const DEV_LINKS: [(&str, &str); 5] = [
    ("ptmx", "pts/ptmx"),
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// /proc, /dev and its content, /sys, then the bind mounts, then the masks
/// and read-only paths: all inside `root`, before `pivot_root`.
pub fn mount_all(
    root: &Root,
    binds: &[BindMount],
    masked: &[String],
    readonly: &[String],
) -> StepResult<()> {
    for m in kernel_mounts() {
        let step = || format!("mount {} on {}", m.target, root.show(m.target));
        root.ensure_dir(m.target)
            .map_err(|e| StepError::errno(step(), e))?;
        let target = root.resolve_no_symlinks(m.target).map_err(|e| match e {
            rustix::io::Errno::LOOP => StepError {
                step: step(),
                detail: format!("{} is a symlink in the image; refused", m.target),
            },
            e => StepError::errno(step(), e),
        })?;
        mount(
            Some(m.fstype),
            &fd_path(&target),
            Some(m.fstype),
            m.flags,
            m.data,
        )
        .map_err(|detail| StepError {
            step: step(),
            detail,
        })?;
        if m.target == "/dev" {
            populate_dev(root)?;
        }
    }
    for bind in binds {
        bind_mount(root, bind)?;
    }
    for path in masked {
        mask(root, path)?;
    }
    for path in readonly {
        make_readonly(root, path)?;
    }
    Ok(())
}

fn populate_dev(root: &Root) -> StepResult<()> {
    let dev = root
        .resolve("/dev")
        .map_err(|e| StepError::errno(format!("open {}", root.show("/dev")), e))?;
    for (name, major, minor) in DEVICES {
        let step = || format!("mknod {}", root.show(&format!("/dev/{name}")));
        rustix::fs::mknodat(
            &dev,
            name,
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rustix::fs::makedev(major, minor),
        )
        .map_err(|e| StepError::errno(step(), e))?;
    }
    for (name, target) in DEV_LINKS {
        rustix::fs::symlinkat(target, &dev, name).map_err(|e| {
            StepError::errno(
                format!("symlink {} -> {target}", root.show(&format!("/dev/{name}"))),
                e,
            )
        })?;
    }
    Ok(())
}

fn bind_mount(root: &Root, bind: &BindMount) -> StepResult<()> {
    let dest = bind.destination.as_str();
    let step = || format!("bind {} on {}", bind.source.display(), root.show(dest));
    // The source is a host path the agent chose; opened once so the mount
    // uses exactly the file we looked at.
    let source = rustix::fs::open(&bind.source, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| StepError::errno(step(), e))?;
    let is_dir = rustix::fs::fstat(&source)
        .map(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory)
        .map_err(|e| StepError::errno(step(), e))?;
    let target = if is_dir {
        root.ensure_dir(dest)
    } else {
        root.ensure_file(dest)
    }
    .map_err(|e| StepError::errno(step(), e))?;
    mount(
        Some(&fd_path(&source)),
        &fd_path(&target),
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(|detail| StepError {
        step: step(),
        detail,
    })?;
    if bind.read_only {
        remount_readonly(root, dest, MsFlags::MS_NOSUID | MsFlags::MS_NODEV)?;
    }
    Ok(())
}

/// Hides `path`: /dev/null over a file, an empty read-only tmpfs over a
/// directory. A path the kernel does not have is skipped.
fn mask(root: &Root, path: &str) -> StepResult<()> {
    let step = || format!("mask {}", root.show(path));
    let target = match root.resolve(path) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(StepError::errno(step(), e)),
    };
    let stat = rustix::fs::fstat(&target).map_err(|e| StepError::errno(step(), e))?;
    let result = if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
        mount(
            Some("tmpfs"),
            &fd_path(&target),
            Some("tmpfs"),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("size=0,mode=0555"),
        )
    } else {
        let null = root
            .resolve("/dev/null")
            .map_err(|e| StepError::errno(step(), e))?;
        mount(
            Some(&fd_path(&null)),
            &fd_path(&target),
            None,
            MsFlags::MS_BIND,
            None,
        )
    };
    result.map_err(|detail| StepError {
        step: step(),
        detail,
    })
}

/// Binds `path` onto itself and remounts that read-only.
fn make_readonly(root: &Root, path: &str) -> StepResult<()> {
    let step = || format!("make {} read-only", root.show(path));
    let target = match root.resolve(path) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(StepError::errno(step(), e)),
    };
    let at = fd_path(&target);
    mount(
        Some(&at),
        &at,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(|detail| StepError {
        step: step(),
        detail,
    })?;
    remount_readonly(root, path, MsFlags::empty())
}

/// Remounts the mount now on top of `path` read-only, keeping its nosuid,
/// nodev and noexec (a bind remount replaces the per-mount flags).
fn remount_readonly(root: &Root, path: &str, extra: MsFlags) -> StepResult<()> {
    let step = || format!("remount {} read-only", root.show(path));
    // Resolved again: the fd from before the bind names the covered file,
    // not the new mount.
    let top = root
        .resolve(path)
        .map_err(|e| StepError::errno(step(), e))?;
    let kept = nix::sys::statvfs::fstatvfs(top.as_fd())
        .map(|s| {
            use nix::sys::statvfs::FsFlags;
            let f = s.flags();
            let mut flags = MsFlags::empty();
            for (have, want) in [
                (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
                (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
                (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
                (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
                (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
                (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
            ] {
                if f.contains(have) {
                    flags |= want;
                }
            }
            flags
        })
        .map_err(|e| StepError {
            step: step(),
            detail: errno_text(e as i32),
        })?;
    mount(
        None,
        &fd_path(&top),
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | kept | extra,
        None,
    )
    .map_err(|detail| StepError {
        step: step(),
        detail,
    })
}

/// Makes `root` the process's `/` and detaches the old root, so no path in
/// this mount namespace reaches the host's filesystem any more.
pub fn pivot_root(root: &Root) -> StepResult<()> {
    let step = || format!("pivot_root to {}", root.label.display());
    let fail = |e: nix::errno::Errno| StepError {
        step: step(),
        detail: errno_text(e as i32),
    };
    nix::unistd::fchdir(root.fd.as_fd()).map_err(fail)?;
    // pivot_root(".", "."): the old root ends up stacked on the new one and
    // is detached from there; no put_old directory is left in the image.
    nix::unistd::pivot_root(".", ".").map_err(fail)?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH).map_err(fail)?;
    nix::unistd::chdir("/").map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_parent_and_name() {
        assert_eq!(split("/a/b/c"), ("/a/b", "c"));
        assert_eq!(split("/a"), ("/", "a"));
        assert_eq!(split("/a/b/"), ("/a", "b"));
    }

    #[test]
    fn errors_read_like_the_kernel_says_them() {
        assert_eq!(errno_text(2), "No such file or directory");
    }

    #[test]
    fn layers_share_the_stores_dir() {
        let dirs: Vec<PathBuf> = vec!["/s/layers/a".into(), "/s/layers/b".into()];
        assert_eq!(common_parent(&dirs), Some(PathBuf::from("/s/layers")));
        let mixed: Vec<PathBuf> = vec!["/s/layers/a".into(), "/t/b".into()];
        assert_eq!(common_parent(&mixed), None);
    }
}
