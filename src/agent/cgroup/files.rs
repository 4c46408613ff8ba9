//! Reading and writing cgroup control files, with errors that name the file
//! and the value.
//!
//! Every kernel interaction of this module goes through here, so an error the
//! operator sees always says which file was involved and what we tried to put
//! in it ("cannot write 67108864 to …/memory.limit_in_bytes: Device or resource
//! busy").

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::CgroupError;

/// The kernel's description of an I/O error without Rust's "(os error N)"
/// suffix: the messages read like the shell's.
pub(crate) fn os_text(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_owned(),
        None => err.to_string(),
    }
}

pub(crate) fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Like [`read`], but a missing file is `None`: optional interface files
/// (memory.memsw.*, memory.swap.max, cgroup.kill) depend on kernel version
/// and configuration.
pub(crate) fn read_opt(path: &Path) -> Result<Option<String>, CgroupError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes `value` in one `write(2)`, as the kernel expects for control files.
/// The file is never created: on cgroupfs a missing file means a missing
/// controller, and creating it would hide that.
pub(crate) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    let result = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    result.map_err(|source| CgroupError::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    })
}

/// Parses a file holding one unsigned number (memory.current, pids.current,
/// cpuacct.usage, …).
pub(crate) fn read_u64(path: &Path) -> Result<u64, CgroupError> {
    let text = read(path)?;
    parse_u64(path, text.trim(), "a number")
}

pub(crate) fn parse_u64(path: &Path, text: &str, what: &'static str) -> Result<u64, CgroupError> {
    text.parse().map_err(|_| CgroupError::Parse {
        path: path.to_owned(),
        what,
        text: text.to_owned(),
    })
}

/// Looks `key` up in a flat-keyed file ("key value" per line: cpu.stat,
/// memory.stat, memory.events, memory.oom_control, cgroup.events, pids.events).
/// A missing key is `None`; the caller decides whether that is normal.
pub(crate) fn keyed(path: &Path, text: &str, key: &str) -> Result<Option<u64>, CgroupError> {
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if parts.next() == Some(key) {
            let value = parts.next().unwrap_or("");
            return parse_u64(path, value, "a counter").map(Some);
        }
    }
    Ok(None)
}

/// Reads a cgroup.procs file: one pid per line.
pub(crate) fn read_pids(path: &Path) -> Result<Vec<i32>, CgroupError> {
    let Some(text) = read_opt(path)? else {
        // The group was removed under us: it holds nothing.
        return Ok(Vec::new());
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim().parse::<i32>().map_err(|_| CgroupError::Parse {
                path: path.to_owned(),
                what: "a pid",
                text: l.to_owned(),
            })
        })
        .collect()
}

/// Every cgroup directory below `dir`, deepest first, then `dir` itself: the
/// order in which they can be removed. Control files are regular files, so
/// only directories are child groups.
pub(crate) fn subtree_deepest_first(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let mut out = Vec::new();
    collect(dir, &mut out)?;
    Ok(out)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CgroupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Read {
                path: dir.to_owned(),
                source,
            });
        }
    };
    for entry in entries {
        let entry = entry.map_err(|source| CgroupError::Read {
            path: dir.to_owned(),
            source,
        })?;
        // file_type() does not follow symlinks; cgroupfs has none anyway.
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            collect(&entry.path(), out)?;
        }
    }
    out.push(dir.to_owned());
    Ok(())
}
