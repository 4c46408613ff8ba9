//! Finding the host's cgroup layout from /proc/self/mountinfo: which mode
//! (v1, v2, hybrid) and where each controller the agent uses is mounted.
//!
//! Mount points are read, never assumed: distributions, containers and the
//! tests (fake trees in temporary directories) all put them elsewhere.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use super::{CgroupError, Controller, Hierarchy, Mode, files};

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// Detects the cgroup layout this process sees.
pub fn detect() -> Result<Hierarchy, CgroupError> {
    let text = files::read(MOUNTINFO.as_ref())?;
    parse_mountinfo(&text, MOUNTINFO)
}

/// Parses mountinfo text; `origin` names it in errors.
pub(crate) fn parse_mountinfo(text: &str, origin: &str) -> Result<Hierarchy, CgroupError> {
    let mut v1: BTreeMap<Controller, PathBuf> = BTreeMap::new();
    let mut unified: Option<PathBuf> = None;
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || CgroupError::Mountinfo {
            path: origin.to_owned(),
            line: n + 1,
            text: line.to_owned(),
        };
        // id parent major:minor root mount-point options [optional...] - fstype source super-options
        let (left, right) = line.split_once(" - ").ok_or_else(bad)?;
        let mount_point = left.split(' ').nth(4).ok_or_else(bad)?;
        let mut right = right.split(' ');
        let fstype = right.next().ok_or_else(bad)?;
        let _source = right.next();
        let super_options = right.next().unwrap_or("");
        match fstype {
            // The first cgroup2 mount wins; later ones are bind mounts.
            "cgroup2" if unified.is_none() => unified = Some(unescape(mount_point)),
            "cgroup" => {
                // A v1 hierarchy's controllers are in its super options
                // ("rw,cpu,cpuacct"); named hierarchies ("name=systemd")
                // have none we use.
                for opt in super_options.split(',') {
                    if let Some(c) = Controller::from_name(opt) {
                        v1.entry(c).or_insert_with(|| unescape(mount_point));
                    }
                }
            }
            _ => {}
        }
    }
    let mode = match (v1.is_empty(), unified.is_some()) {
        (false, true) => Mode::Hybrid,
        (false, false) => Mode::V1,
        (true, true) => Mode::V2,
        (true, false) => return Err(CgroupError::NotMounted(origin.to_owned())),
    };
    if mode == Mode::V2 {
        v1.clear();
    }
    Ok(Hierarchy::new(mode, v1, unified))
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(digits) = bytes.get(i + 1..i + 4)
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            // Three octal digits fit in a byte only up to \377.
            let v = digits
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    // Paths are bytes; a non-UTF-8 mount point stays exact.
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape(r"/a\040b"), PathBuf::from("/a b"));
        assert_eq!(unescape(r"/a\134b"), PathBuf::from(r"/a\b"));
        assert_eq!(unescape(r"/plain"), PathBuf::from("/plain"));
        assert_eq!(unescape(r"/end\04"), PathBuf::from(r"/end\04"));
    }
}
