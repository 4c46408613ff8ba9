//! Container logs in the CRI log format, the one containerd and the kubelet
//! use: one record per line, `<RFC3339Nano UTC> stdout|stderr F|P <bytes>\n`.
//!
//! This module owns both ends of that format on a host:
//! * [`CriLogWriter`] — what the per-container shim uses to turn the
//!   container's stdout/stderr bytes into records, with size rotation
//!   (`<path>.1` … `<path>.<max_files-1>`). Synchronous and std-only, because
//!   the shim has no async runtime.
//! * [`read_logs`] — what `logs` (tail, since, follow, previous) reads back,
//!   across rotated files, tolerant of torn and garbage lines.
//! * [`join_partials`] and [`printable`] — display helpers: re-join the 16 KiB
//!   `P` pieces of long lines, and render container bytes so that a hostile
//!   container cannot drive the operator's terminal.
//! * [`instance_log_path`] / [`previous_log_path`] — the kubelet's file layout,
//!   `<dir>/<restart_count>.log`.
//!
//! Content bytes are stored exactly as the container wrote them (binary,
//! escape sequences, `\r`, invalid UTF-8): the format reserves only `\n`, which
//! ends a record. Nothing is lost on disk; neutralising is the display's job.

mod display;
mod reader;
mod timestamp;
mod writer;

#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use display::{JoinPartials, MAX_JOINED_LINE, join_partials, printable};
pub use reader::{
    BatchLimits, LogQuery, LogReader, ParseError, ReadStats, StopHandle, Streams, parse_record,
    read_logs,
};
pub use writer::{CriLogWriter, Rotation, WriteError};

/// The longest content a single record carries. A longer line is split into
/// `P` records of exactly this size followed by an `F` record, as containerd
/// does with its default `max_container_log_line_size` (its bufio size).
pub const MAX_RECORD_CONTENT: usize = 16 * 1024;

/// Which of a container's output pipes a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// The name the CRI format uses for this stream.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    /// A dense index, for per-stream state kept in arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// One record of a CRI log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// When the shim received the line (UTC on disk).
    pub time: SystemTime,
    pub stream: Stream,
    /// `P`: this is a piece of a longer line, continued by the next record of
    /// the same stream. `F`: this record ends the line.
    pub partial: bool,
    /// The bytes as the container wrote them, without the ending newline.
    pub content: Vec<u8>,
}

impl LogRecord {
    /// Writes the record as `logs` prints it, raw like kubectl: the content,
    /// preceded by the RFC3339 timestamp when asked, and followed by a newline
    /// unless the record is a partial piece (so pieces re-join on screen).
    pub fn write_raw<W: Write>(&self, out: &mut W, timestamps: bool) -> io::Result<()> {
        if timestamps {
            out.write_all(&timestamp::format_rfc3339_nanos(self.time))?;
            out.write_all(b" ")?;
        }
        out.write_all(&self.content)?;
        if !self.partial {
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}

/// The log file of one run of a container: `<dir>/<restart_count>.log`, the
/// kubelet's convention, so each restart starts a fresh file and the previous
/// run's output stays readable (`logs --previous`).
pub fn instance_log_path(dir: &Path, restart_count: u32) -> PathBuf {
    dir.join(format!("{restart_count}.log"))
}

/// The log file of the run before `restart_count`, or `None` for the first run,
/// which has no previous one.
pub fn previous_log_path(dir: &Path, restart_count: u32) -> Option<PathBuf> {
    restart_count
        .checked_sub(1)
        .map(|previous| instance_log_path(dir, previous))
}

/// The `n`th rotated file of `path`: `<path>.<n>` (`.1` is the newest).
pub fn rotated_path(path: &Path, n: usize) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(format!(".{n}"));
    PathBuf::from(name)
}
