//! An entry's metadata as the container should see it: owner, mode (with
//! setuid/setgid/sticky), times to the nanosecond and extended attributes,
//! read from the tar header and its PAX records, and applied to what was
//! created, through an fd where one can be had and `*at` calls with
//! `AT_SYMLINK_NOFOLLOW` for symlinks.

use std::io::{self, Read};
use std::os::fd::BorrowedFd;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{Mode, UtimensatFlags, fchmod, futimens, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, fchown, fchownat};
use rustix::fs::XattrFlags;

use super::Fail;

/// PAX records carrying xattrs, as GNU tar, bsdtar and Go's archive/tar
/// (hence Docker and BuildKit) write them.
const PAX_XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";

/// Xattr namespaces a layer may not set. `trusted.*` steers overlayfs itself
/// (opaque dirs, redirects, metacopy: a layer could reach into other layers)
/// and `security.*` grants privileges (file capabilities) or labels; both
/// need CAP_SYS_ADMIN, which the agent has and the image author must not get
/// through it. `user.overlay.*` is what overlayfs reads in place of
/// `trusted.overlay.*` when mounted with `userxattr`, so it is the same risk.
const DROPPED_XATTR_PREFIXES: [&[u8]; 3] = [b"trusted.", b"security.", b"user.overlay."];

/// Whether a layer's xattr `name` may be written.
pub(super) fn xattr_allowed(name: &[u8]) -> bool {
    !DROPPED_XATTR_PREFIXES.iter().any(|p| name.starts_with(p))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Times {
    pub(super) atime: TimeSpec,
    pub(super) mtime: TimeSpec,
}

#[derive(Debug)]
pub(super) struct Meta {
    uid: Uid,
    gid: Gid,
    /// Permission bits including setuid, setgid and sticky.
    mode: Mode,
    pub(super) times: Times,
    /// Allowed xattrs only; dropped ones are reported by name.
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub(super) dropped_xattrs: Vec<String>,
}

/// An xattr that was allowed but the kernel would not take.
pub(super) struct Unset {
    pub(super) name: String,
    pub(super) why: Errno,
}

impl Meta {
    pub(super) fn from_entry<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Self, Fail> {
        let header = entry.header();
        let uid = id(header.uid(), "uid")?;
        let gid = id(header.gid(), "gid")?;
        let mode = header
            .mode()
            .map_err(|e| Fail::Refuse(format!("its mode field is unreadable: {e}")))?;
        let header_mtime = header
            .mtime()
            .map_err(|e| Fail::Refuse(format!("its mtime field is unreadable: {e}")))?;
        let header_mtime = i64::try_from(header_mtime)
            .map_err(|_| Fail::Refuse(format!("its mtime {header_mtime} is out of range")))?;

        let mut mtime = None;
        let mut atime = None;
        let mut xattrs = Vec::new();
        let mut dropped_xattrs = Vec::new();
        let pax = entry
            .pax_extensions()
            .map_err(|e| Fail::Refuse(format!("its PAX records are unreadable: {e}")))?;
        for record in pax.into_iter().flatten() {
            let record =
                record.map_err(|e| Fail::Refuse(format!("a PAX record is malformed: {e}")))?;
            let key = record.key_bytes();
            if key == b"mtime" {
                mtime = parse_pax_time(record.value_bytes());
            } else if key == b"atime" {
                atime = parse_pax_time(record.value_bytes());
            } else if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) {
                if xattr_allowed(name) {
                    xattrs.push((name.to_vec(), record.value_bytes().to_vec()));
                } else {
                    dropped_xattrs.push(String::from_utf8_lossy(name).into_owned());
                }
            }
        }
        // A PAX time that does not parse falls back to the header's: the
        // file is still right to the second, and refusing would be harsher
        // than any tar reader is.
        let mtime = mtime.unwrap_or_else(|| TimeSpec::new(header_mtime, 0));
        Ok(Self {
            uid: Uid::from_raw(uid),
            gid: Gid::from_raw(gid),
            mode: Mode::from_bits_truncate(mode & 0o7777),
            times: Times {
                atime: atime.unwrap_or(mtime),
                mtime,
            },
            xattrs,
            dropped_xattrs,
        })
    }

    pub(super) fn xattr_names(&self) -> impl Iterator<Item = String> + '_ {
        self.xattrs
            .iter()
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
    }

    /// Owner, then mode (chown clears setuid/setgid, so the mode goes after
    /// it), then xattrs, then times unless `times` is false (directories get
    /// theirs once their contents are written). Returns the xattrs the
    /// kernel refused in a way that says "not here" rather than "broken".
    pub(super) fn apply_fd(&self, fd: BorrowedFd<'_>, times: bool) -> Result<Vec<Unset>, Fail> {
        fchown(fd, Some(self.uid), Some(self.gid)).map_err(|e| Fail::fs("setting its owner", e))?;
        fchmod(fd, self.mode).map_err(|e| Fail::fs("setting its mode", e))?;
        let mut unset = Vec::new();
        for (name, value) in &self.xattrs {
            match rustix::fs::fsetxattr(fd, name.as_slice(), value, XattrFlags::empty()) {
                Ok(()) => {}
                Err(e) => {
                    let errno = Errno::from_raw(e.raw_os_error());
                    if !xattr_error_is_benign(errno) {
                        return Err(Fail::Fs {
                            action: "setting an extended attribute",
                            source: io::Error::from(e),
                        });
                    }
                    unset.push(Unset {
                        name: String::from_utf8_lossy(name).into_owned(),
                        why: errno,
                    });
                }
            }
        }
        if times {
            futimens(fd, &self.times.atime, &self.times.mtime)
                .map_err(|e| Fail::fs("setting its times", e))?;
        }
        Ok(unset)
    }

    /// For a symlink: owner and times of the link itself. Its mode means
    /// nothing on Linux, and `user.*` xattrs are not allowed on symlinks.
    pub(super) fn apply_symlink(&self, dir: BorrowedFd<'_>, name: &[u8]) -> Result<(), Fail> {
        fchownat(
            dir,
            name,
            Some(self.uid),
            Some(self.gid),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| Fail::fs("setting its owner", e))?;
        utimensat(
            dir,
            name,
            &self.times.atime,
            &self.times.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| Fail::fs("setting its times", e))
    }
}

/// Errors that mean this file system or file type cannot hold the xattr
/// (containerd logs and goes on for these too); anything else (EIO, ENOSPC)
/// is a real failure.
fn xattr_error_is_benign(e: Errno) -> bool {
    matches!(
        e,
        Errno::EOPNOTSUPP | Errno::EPERM | Errno::ERANGE | Errno::E2BIG | Errno::EINVAL
    )
}

fn id(raw: io::Result<u64>, what: &str) -> Result<u32, Fail> {
    let raw = raw.map_err(|e| Fail::Refuse(format!("its {what} field is unreadable: {e}")))?;
    // u32::MAX is chown's "leave unchanged", not an owner.
    u32::try_from(raw)
        .ok()
        .filter(|v| *v != u32::MAX)
        .ok_or_else(|| Fail::Refuse(format!("its {what} {raw} is out of range")))
}

/// Parses a PAX time: decimal seconds since the epoch, optionally negative,
/// with an optional fraction (digits past nanoseconds are dropped).
pub(super) fn parse_pax_time(value: &[u8]) -> Option<TimeSpec> {
    let text = std::str::from_utf8(value).ok()?;
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds: i64 = whole.parse().ok()?;
    let mut nanos: i64 = 0;
    for digit in fraction.bytes().chain(std::iter::repeat(b'0')).take(9) {
        nanos = nanos * 10 + i64::from(digit - b'0');
    }
    if !negative {
        return Some(TimeSpec::new(seconds, nanos));
    }
    if nanos == 0 {
        return Some(TimeSpec::new(seconds.checked_neg()?, 0));
    }
    // -1.25 s is -2 s + 0.75 s: timespec nanoseconds are never negative.
    Some(TimeSpec::new(
        seconds.checked_neg()?.checked_sub(1)?,
        1_000_000_000 - nanos,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        let t = |s: &str| parse_pax_time(s.as_bytes()).map(|t| (t.tv_sec(), t.tv_nsec()));
        assert_eq!(t("1234567890.123456789"), Some((1234567890, 123456789)));
        assert_eq!(t("1234567890.5"), Some((1234567890, 500000000)));
        assert_eq!(t("1234567890.1234567891"), Some((1234567890, 123456789)));
        assert_eq!(t("42"), Some((42, 0)));
        assert_eq!(t("-1.25"), Some((-2, 750000000)));
        assert_eq!(t("-3"), Some((-3, 0)));
        for bad in ["", ".5", "1e9", "12a", "1.2.3", "-", "99999999999999999999"] {
            assert_eq!(t(bad), None, "{bad}");
        }
    }

    #[test]
    fn xattr_policy() {
        assert!(xattr_allowed(b"user.mime_type"));
        assert!(xattr_allowed(b"system.posix_acl_access"));
        assert!(!xattr_allowed(b"trusted.overlay.opaque"));
        assert!(!xattr_allowed(b"security.capability"));
        assert!(!xattr_allowed(b"user.overlay.redirect"));
    }
}
