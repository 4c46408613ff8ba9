//! The shim's side of container logs: [`CriLogWriter`] turns the bytes a
//! container writes to stdout and stderr into CRI records and rotates the file
//! by size.
//!
//! It runs in the per-container shim, so it is synchronous and std-only, and
//! it sits on the path of every byte a container prints: no allocation per
//! line (per-stream tails are preallocated, the timestamp prefix is cached per
//! second), one `write(2)` per input chunk, and a record never straddles two
//! files.
//!
//! Flush policy: each [`CriLogWriter::write`] ends by handing what it
//! completed to the kernel, so a follower sees a line as soon as its newline
//! is read, with no timer in the shim. Batching therefore comes from the
//! pipe: a container writing flat out fills it and the shim's reads grow to
//! 64 KiB. `benches/cri_log.rs` (2-core VM, shared): ~300–340 MB/s of 100-byte
//! lines from 64 KiB reads, ~55 MB/s when every read is one line (one
//! `write(2)` each; a container writing line by line is bound near there by
//! its own syscalls too), 140–220 MB/s end to end from a stdio-buffered
//! container through a real pipe.
//!
//! Errors are typed ([`WriteError`]) because the shim must tell "records may
//! be lost" from "rotation failed, records kept in the current file".

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::timestamp::{TIMESTAMP_LEN, TimestampCache};
use super::{MAX_RECORD_CONTENT, Stream, rotated_path};

/// containerd's and the kubelet's defaults (`containerLogMaxSize: 10Mi`,
/// `containerLogMaxFiles: 5`).
const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
const DEFAULT_MAX_FILES: usize = 5;

/// The write buffer: big enough that a full pipe read (64 KiB) of short lines
/// is one `write(2)`.
const BUFFER_BYTES: usize = 128 * 1024;

/// Log file mode, as containerd creates them: the agent (root) writes, its
/// group may read, nobody else.
const FILE_MODE: u32 = 0o640;

/// `<timestamp> stdout F `: the timestamp, three separators, the stream name
/// (both are six letters) and the one-letter tag.
const HEADER_LEN: usize = TIMESTAMP_LEN + 1 + 6 + 1 + 1 + 1;
/// Where the tag sits in the header.
const TAG_AT: usize = TIMESTAMP_LEN + 1 + 6 + 1;

/// Why a write did not go as asked.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Writing to the log file failed: records of this call may be lost.
    #[error("cannot write container log {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Rotation failed, but nothing was lost: the records went to the current
    /// file, which grows past `max_bytes` until a later rotation succeeds.
    #[error("cannot rotate container log {path} (records kept in the current file): {source}")]
    Rotate {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// When to rotate, and how many files to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// A file is rotated before a record would take it past this size. A single
    /// record bigger than this (at most 16 KiB and a header) still goes whole
    /// into a fresh file: records are never split.
    pub max_bytes: u64,
    /// Files kept, the live one included (`<path>` and `<path>.1` …
    /// `<path>.<max_files-1>`). Values below 2 act as 2, as the kubelet refuses
    /// them: with one file, rotating would mean deleting the whole log.
    pub max_files: usize,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_bytes: DEFAULT_MAX_BYTES,
            max_files: DEFAULT_MAX_FILES,
        }
    }
}

/// Writes a container's output as CRI log records. See the module docs.
///
/// Each [`write`](Self::write) ends with the records it completed handed to
/// the kernel, so a follower sees a line as soon as its newline arrived. An
/// incomplete last line of a stream is held (up to 16 KiB) until its newline
/// or [`close`](Self::close).
#[derive(Debug)]
pub struct CriLogWriter {
    sink: Sink,
    /// The incomplete trailing line of each stream, indexed by
    /// [`Stream::index`]. Never longer than [`MAX_RECORD_CONTENT`]: beyond
    /// that the line goes out as `P` pieces.
    tails: [Vec<u8>; 2],
    closed: bool,
}

/// The file side: the buffered live file, its size, rotation, and record
/// framing. Kept apart from the tails so both can be borrowed at once.
#[derive(Debug)]
struct Sink {
    path: PathBuf,
    rotation: Rotation,
    out: BufWriter<File>,
    /// Bytes in the live file, counting those still in `out`'s buffer.
    size: u64,
    /// A failed rotation, reported when the current call ends.
    rotate_error: Option<io::Error>,
    clock: TimestampCache,
    /// `<timestamp> <stream> <tag> ` for the current `write` call, whose
    /// records all share the time the chunk was received.
    header: [u8; HEADER_LEN],
}

impl CriLogWriter {
    /// Opens (or creates) the live log file at `path` for appending.
    ///
    /// If a previous writer died mid-record and left the file without a final
    /// newline, a newline is appended first so that its torn record stays one
    /// (skippable) garbage line instead of swallowing our first record.
    pub fn open(path: impl Into<PathBuf>, rotation: Rotation) -> io::Result<Self> {
        let path = path.into();
        let mut file = open_live(&path)?;
        let mut size = file.metadata()?.len();
        if size > 0 && !ends_with_newline(&mut file, size)? {
            file.write_all(b"\n")?;
            size += 1;
        }
        Ok(CriLogWriter {
            sink: Sink {
                path,
                rotation,
                out: BufWriter::with_capacity(BUFFER_BYTES, file),
                size,
                rotate_error: None,
                clock: TimestampCache::default(),
                header: [b' '; HEADER_LEN],
            },
            tails: [
                Vec::with_capacity(MAX_RECORD_CONTENT),
                Vec::with_capacity(MAX_RECORD_CONTENT),
            ],
            closed: false,
        })
    }

    /// The live file's path.
    pub fn path(&self) -> &Path {
        &self.sink.path
    }

    /// Logs `bytes` read from `stream`: every line they complete becomes a
    /// record timestamped now, and the records are written out before this
    /// returns. Bytes after the last newline wait for the rest of their line.
    pub fn write(&mut self, stream: Stream, bytes: &[u8]) -> Result<(), WriteError> {
        let written = self.write_records(stream, bytes);
        self.sink.outcome(written)
    }

    fn write_records(&mut self, stream: Stream, bytes: &[u8]) -> io::Result<()> {
        self.sink.stamp(SystemTime::now(), stream);
        let tail = &mut self.tails[stream.index()];
        let mut rest = bytes;
        while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
            let line = &rest[..newline];
            rest = &rest[newline + 1..];
            let end_of_line = self.sink.emit_pieces(tail, line)?;
            self.sink.emit(b'F', tail, end_of_line)?;
            tail.clear();
        }
        self.sink.hold_tail(tail, rest)?;
        self.sink.out.flush()
    }

    /// Hands buffered records to the kernel. Incomplete lines stay held.
    pub fn flush(&mut self) -> Result<(), WriteError> {
        let flushed = self.sink.out.flush();
        self.sink.outcome(flushed)
    }

    /// Writes each stream's incomplete last line as a full (`F`) record, since
    /// no newline will come any more, and flushes.
    pub fn close(mut self) -> Result<(), WriteError> {
        let finished = self.finish();
        self.sink.outcome(finished)
    }

    fn finish(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let now = SystemTime::now();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let tail = &mut self.tails[stream.index()];
            if !tail.is_empty() {
                self.sink.stamp(now, stream);
                self.sink.emit(b'F', tail, &[])?;
                tail.clear();
            }
        }
        self.sink.out.flush()
    }
}

impl Drop for CriLogWriter {
    /// A writer dropped without `close` (an error path in the shim) still
    /// writes what it holds: losing a container's last words is worse than
    /// marking them complete.
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

impl Sink {
    /// The result of a public call: a write error first, else a rotation
    /// error the call met on the way.
    fn outcome(&mut self, result: io::Result<()>) -> Result<(), WriteError> {
        let path = || self.path.clone();
        match (result, self.rotate_error.take()) {
            (Err(source), _) => Err(WriteError::Write {
                path: path(),
                source,
            }),
            (Ok(()), Some(source)) => Err(WriteError::Rotate {
                path: path(),
                source,
            }),
            (Ok(()), None) => Ok(()),
        }
    }

    /// Prepares the header for records of `stream` received at `time`.
    fn stamp(&mut self, time: SystemTime, stream: Stream) {
        self.header[..TIMESTAMP_LEN].copy_from_slice(&self.clock.format(time));
        self.header[TIMESTAMP_LEN + 1..TIMESTAMP_LEN + 7]
            .copy_from_slice(stream.as_str().as_bytes());
    }

    /// Emits `P` pieces of [`MAX_RECORD_CONTENT`] bytes, taken from `tail`
    /// then `line`, while the two together are longer than one record can
    /// carry. Returns what of `line` is left: with what is left in `tail`, at
    /// most one record's worth.
    fn emit_pieces<'a>(&mut self, tail: &mut Vec<u8>, line: &'a [u8]) -> io::Result<&'a [u8]> {
        let mut line = line;
        while tail.len() + line.len() > MAX_RECORD_CONTENT {
            let take = MAX_RECORD_CONTENT - tail.len();
            self.emit(b'P', tail, &line[..take])?;
            tail.clear();
            line = &line[take..];
        }
        Ok(line)
    }

    /// Adds `bytes` (no newline in them) to a stream's incomplete line,
    /// sending `P` pieces when it would outgrow one record. A piece goes out
    /// only once a byte beyond it is known, so a line of exactly 16 KiB whose
    /// newline comes later is still one `F` record.
    fn hold_tail(&mut self, tail: &mut Vec<u8>, bytes: &[u8]) -> io::Result<()> {
        let rest = self.emit_pieces(tail, bytes)?;
        tail.extend_from_slice(rest);
        Ok(())
    }

    /// Writes one record whose content is `first` followed by `second`,
    /// rotating first if it would not fit in the live file.
    fn emit(&mut self, tag: u8, first: &[u8], second: &[u8]) -> io::Result<()> {
        let len = (HEADER_LEN + first.len() + second.len() + 1) as u64;
        if self.size > 0
            && self.size + len > self.rotation.max_bytes
            && let Err(e) = self.rotate()
        {
            // Losing the container's output would be worse than an oversized
            // file: keep writing to the current one, report, retry next time.
            self.rotate_error.get_or_insert(e);
        }
        self.header[TAG_AT] = tag;
        self.out.write_all(&self.header)?;
        self.out.write_all(first)?;
        self.out.write_all(second)?;
        self.out.write_all(b"\n")?;
        self.size += len;
        Ok(())
    }

    /// Renames the live file to `.1` (shifting older ones up and deleting what
    /// is past `max_files`) and starts a new one.
    ///
    /// The order matters to followers (see the reader): the buffer is flushed
    /// before the rename, so a renamed file is complete; files move only
    /// upwards, oldest first, so at every instant each file has one name and
    /// the names stay in age order.
    fn rotate(&mut self) -> io::Result<()> {
        self.out.flush()?;
        let keep = self.rotation.max_files.max(2) - 1;
        // The rotated files up to the first gap: only those need to move (a
        // file past a gap is older and can stay until the gap closes).
        let mut top = 0;
        while top < keep && fs::symlink_metadata(rotated_path(&self.path, top + 1)).is_ok() {
            top += 1;
        }
        if top == keep {
            // Full: delete the oldest, and any left past it by a run with a
            // larger `max_files`.
            let mut stale = keep;
            loop {
                match fs::remove_file(rotated_path(&self.path, stale)) {
                    Ok(()) => stale += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) => return Err(e),
                }
            }
            top = keep - 1;
        }
        for n in (1..=top).rev() {
            fs::rename(rotated_path(&self.path, n), rotated_path(&self.path, n + 1))?;
        }
        match fs::rename(&self.path, rotated_path(&self.path, 1)) {
            // Someone deleted the live file: there is nothing to keep, just
            // start a new one.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        }
        // The buffer is empty after the flush, so swapping the file under it
        // loses nothing and keeps its allocation.
        *self.out.get_mut() = open_live(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn open_live(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .read(true)
        .mode(FILE_MODE)
        .open(path)
}

fn ends_with_newline(file: &mut File, size: u64) -> io::Result<bool> {
    let mut last = [0u8];
    file.seek(SeekFrom::Start(size - 1))?;
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}
