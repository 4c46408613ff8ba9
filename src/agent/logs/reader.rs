//! The reading side of container logs: [`read_logs`] yields the records of a
//! live log file and its rotated predecessors, oldest first, with kubectl's
//! options (tail, since, follow) and a stream filter.
//!
//! The reader trusts nothing in the files: a line that is not a record
//! (garbage, or longer than any writer makes) is skipped and counted, the
//! torn last line of a writer caught mid-record is not returned, and no input
//! makes it panic or hold more than about one line and one read block in
//! memory. Following survives rotation without loss or duplicates by holding
//! the open file across the rename and finding its successor by identity
//! (device and inode), never by name alone.
//!
//! Records come one at a time ([`LogReader`] is an iterator) or in batches
//! ([`LogReader::next_batch`]): a follower of a busy container hands on
//! everything already written in one go, so whoever carries the records
//! (the agent's stream, a channel, SSH) pays its per-item costs once per
//! batch rather than once per line.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, SystemTime};

use super::timestamp::parse_rfc3339;
use super::{LogRecord, Stream, rotated_path};

/// How often a follower looks for growth and rotation.
const DEFAULT_POLL: Duration = Duration::from_millis(100);

/// The longest line the reader accepts as a record. Our writer's are at most
/// 16 KiB plus a header; containerd may be configured for longer lines, so
/// allow those, but a line beyond this is not a log record and is skipped
/// without being held in memory.
const MAX_LINE: usize = 1024 * 1024;

/// Bytes read at a time, forwards and backwards.
const BLOCK: usize = 64 * 1024;

/// Rotated files probed at most (`.1` … `.N`), a bound against a directory
/// full of odd names.
const MAX_PROBE: usize = 10_000;

/// Times a follower looks for its rotated file before deciding it was deleted
/// (a probe can miss a file that a concurrent rotation is moving).
const MISSING_TRIES: u32 = 3;

/// How large a batch from [`LogReader::next_batch`] may grow. A batch ends
/// at whichever bound it reaches first, or earlier at the end of what is
/// written; it always holds at least one record, so one record larger than
/// `bytes` is still delivered, alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    /// Records at most.
    pub records: usize,
    /// Content bytes at most, plus one record.
    pub bytes: usize,
}

impl Default for BatchLimits {
    /// 1,024 records or 64 KiB of content: at 100-byte lines a batch is
    /// ~650 records, a few hundred batches a second at 150,000 lines/s,
    /// while what one batch holds in memory stays small.
    fn default() -> Self {
        BatchLimits {
            records: 1024,
            bytes: 64 * 1024,
        }
    }
}

/// Which streams to return.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Streams {
    #[default]
    Both,
    Stdout,
    Stderr,
}

impl Streams {
    fn accepts(self, stream: Stream) -> bool {
        match self {
            Streams::Both => true,
            Streams::Stdout => stream == Stream::Stdout,
            Streams::Stderr => stream == Stream::Stderr,
        }
    }
}

/// What to read, with kubectl's meanings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Only the last N records (after the stream and `since` filters), like
    /// the kubelet this counts records, so a long line's `P` pieces count
    /// one each.
    pub tail: Option<usize>,
    /// Only records at or after this time.
    pub since: Option<SystemTime>,
    /// For the caller's rendering ([`LogRecord::write_raw`]); records always
    /// carry their time.
    pub timestamps: bool,
    /// Keep yielding records as they are written, across rotations, until
    /// [`StopHandle::stop`] (then the rest already written is yielded).
    pub follow: bool,
    pub streams: Streams,
}

impl LogQuery {
    fn accepts(&self, time: SystemTime, stream: Stream) -> bool {
        self.streams.accepts(stream) && self.since.is_none_or(|since| time >= since)
    }
}

/// Why a line is not a CRI record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the line does not start with an RFC3339 timestamp")]
    Timestamp,
    #[error("the stream is neither stdout nor stderr")]
    Stream,
    #[error("the tag is neither F nor P")]
    Tag,
    #[error("the line ends before the tag")]
    Truncated,
}

/// Parses one line of a CRI log file (without its newline).
pub fn parse_record(line: &[u8]) -> Result<LogRecord, ParseError> {
    let (time, stream, partial, content) = parse_fields(line)?;
    Ok(LogRecord {
        time,
        stream,
        partial,
        content: content.to_vec(),
    })
}

/// [`parse_record`] without copying the content, for the filters.
fn parse_fields(line: &[u8]) -> Result<(SystemTime, Stream, bool, &[u8]), ParseError> {
    let mut fields = line.splitn(4, |&b| b == b' ');
    let time = fields
        .next()
        .and_then(parse_rfc3339)
        .ok_or(ParseError::Timestamp)?;
    let stream = match fields.next() {
        Some(b"stdout") => Stream::Stdout,
        Some(b"stderr") => Stream::Stderr,
        Some(_) => return Err(ParseError::Stream),
        None => return Err(ParseError::Truncated),
    };
    let tag = fields.next().ok_or(ParseError::Truncated)?;
    // The tag field may carry more tags after `:`; the first says F or P.
    let partial = match tag.split(|&b| b == b':').next() {
        Some(b"P") => true,
        Some(b"F") => false,
        _ => return Err(ParseError::Tag),
    };
    // `<ts> stdout F` without the space before an empty content is accepted.
    Ok((time, stream, partial, fields.next().unwrap_or_default()))
}

/// What was skipped while reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Lines that were not records, or too long to be.
    pub garbage_lines: u64,
    /// Unterminated last lines: a writer caught mid-record (live file) or one
    /// that died mid-record (rotated file).
    pub torn_lines: u64,
    /// Times a follower's file was deleted by rotation before it was read to
    /// the end: the reader fell more than `max_files` behind the writer, and
    /// what was in between is lost.
    pub lost_files: u64,
}

/// Ends a following reader from another thread: it yields what is already
/// written, then ends.
#[derive(Clone, Debug)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Reads the container log at `path` (the live file; rotated files are
/// `<path>.1`, `<path>.2`, …) as `query` asks.
///
/// The returned [`LogReader`] is a blocking iterator: with `follow` it waits
/// for new records, polling every 100 ms. Opening errors (no log at all,
/// without `follow`) come as its first item; after any error it ends.
/// [`LogReader::next_batch`] reads the same records in batches.
pub fn read_logs(path: impl Into<PathBuf>, query: &LogQuery) -> LogReader {
    LogReader {
        path: path.into(),
        query: query.clone(),
        poll: DEFAULT_POLL,
        started: false,
        done: false,
        files: VecDeque::new(),
        stats: ReadStats::default(),
        stop: Arc::new(AtomicBool::new(false)),
        missing_tries: 0,
        deferred: None,
    }
}

/// The iterator [`read_logs`] returns.
#[derive(Debug)]
pub struct LogReader {
    path: PathBuf,
    query: LogQuery,
    poll: Duration,
    started: bool,
    done: bool,
    /// The files still to read, oldest first; the front one is being read.
    /// While following, the last one is kept open after its end.
    files: VecDeque<Cursor>,
    stats: ReadStats,
    stop: Arc<AtomicBool>,
    /// Consecutive failed searches for the followed file after its rotation.
    missing_tries: u32,
    /// An error met after a batch had records: returned by the next call.
    deferred: Option<io::Error>,
}

/// What reading on found.
enum Advance {
    Record(LogRecord),
    /// Following, at the end of what is written: wait a poll interval.
    Idle,
    End,
}

/// What a follower does after reaching the end of its file.
enum Step {
    /// Read again now (the file changed, or a successor was opened).
    Again,
    /// Nothing new: sleep, then read again.
    Wait,
    End,
}

impl LogReader {
    /// Lines skipped so far.
    pub fn stats(&self) -> ReadStats {
        self.stats
    }

    /// A handle that ends following from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(Arc::clone(&self.stop))
    }

    /// Polls for growth and rotation every `interval` instead of 100 ms.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll = interval;
        self
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Opens the files and applies `tail`.
    fn start(&mut self) -> io::Result<()> {
        let mut files = open_snapshot(&self.path)?;
        if files.is_empty() && !self.query.follow {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no container log at {}", self.path.display()),
            ));
        }
        if !self.query.follow {
            // Without following, the log is what it was now: a container
            // writing meanwhile neither adds to `tail`'s last N records nor
            // keeps the read from ending.
            for cursor in &mut files {
                cursor.stop_at = Some(cursor.file.metadata()?.len());
            }
        }
        if let Some(n) = self.query.tail
            && !files.is_empty()
        {
            let (first, offset) = tail_start(&files, n, &self.query)?;
            files.drain(..first);
            if let Some(cursor) = files.first_mut() {
                cursor.seek(offset)?;
            }
        }
        self.files = files.into();
        Ok(())
    }

    /// Reads on to the next record, without waiting: at the end of what a
    /// follower can read now it says [`Advance::Idle`], and the caller
    /// sleeps or hands on what it has.
    fn advance(&mut self) -> io::Result<Advance> {
        if !self.started {
            self.started = true;
            self.start()?;
        }
        loop {
            if self.files.is_empty() {
                // Following a log that does not exist yet.
                if self.stopping() {
                    return Ok(Advance::End);
                }
                self.files = open_snapshot(&self.path)?.into();
                if self.files.is_empty() {
                    return Ok(Advance::Idle);
                }
            }
            let Some(cursor) = self.files.front_mut() else {
                continue;
            };
            match cursor.next_line()? {
                Next::Line(line) => match parse_fields(line) {
                    Ok((time, stream, partial, content)) => {
                        if self.query.accepts(time, stream) {
                            return Ok(Advance::Record(LogRecord {
                                time,
                                stream,
                                partial,
                                content: content.to_vec(),
                            }));
                        }
                    }
                    Err(_) => self.stats.garbage_lines += 1,
                },
                Next::Overlong => self.stats.garbage_lines += 1,
                Next::Eof => {
                    if self.files.len() > 1 || !self.query.follow {
                        // A later file exists (or we are not following):
                        // this one is done.
                        if let Some(done) = self.files.pop_front()
                            && done.has_partial()
                        {
                            self.stats.torn_lines += 1;
                        }
                        if self.files.is_empty() {
                            return Ok(Advance::End);
                        }
                        continue;
                    }
                    match self.follow_step()? {
                        Step::Again => {}
                        Step::Wait => return Ok(Advance::Idle),
                        Step::End => return Ok(Advance::End),
                    }
                }
            }
        }
    }

    /// The next records, oldest first, as many as are written now within
    /// `limits`: a batch ends at a bound or at the end of what is written,
    /// never waiting for more once it holds a record. A follower with
    /// nothing new waits one poll interval and returns an empty batch, so
    /// that its caller can check whether to go on (its client gone, the
    /// container ended) without a record having to arrive first.
    ///
    /// `None` once the log is read (or the follower stopped); an error is
    /// returned after the records read before it, and ends the reading.
    pub fn next_batch(&mut self, limits: BatchLimits) -> Option<io::Result<Vec<LogRecord>>> {
        if let Some(e) = self.deferred.take() {
            return Some(Err(e));
        }
        if self.done {
            return None;
        }
        let mut batch = Vec::new();
        let mut bytes = 0;
        loop {
            match self.advance() {
                Ok(Advance::Record(record)) => {
                    bytes += record.content.len();
                    batch.push(record);
                    if batch.len() >= limits.records.max(1) || bytes >= limits.bytes {
                        return Some(Ok(batch));
                    }
                }
                Ok(Advance::Idle) => {
                    if batch.is_empty() {
                        thread::sleep(self.poll);
                    }
                    return Some(Ok(batch));
                }
                Ok(Advance::End) => {
                    self.done = true;
                    return (!batch.is_empty()).then_some(Ok(batch));
                }
                Err(e) => {
                    self.done = true;
                    if batch.is_empty() {
                        return Some(Err(e));
                    }
                    self.deferred = Some(e);
                    return Some(Ok(batch));
                }
            }
        }
    }

    /// At the end of the newest file known while following: wait for it to
    /// grow, or move on to its successor once it has been rotated.
    fn follow_step(&mut self) -> io::Result<Step> {
        let stopping = self.stopping();
        let Some(cursor) = self.files.front_mut() else {
            return Ok(Step::End);
        };
        if !cursor.rotated {
            match file_id(&self.path) {
                Ok(id) if id == cursor.id => {
                    return Ok(if stopping { Step::End } else { Step::Wait });
                }
                // Renamed away (or deleted). The writer flushes before it
                // renames, so after one more read to the end nothing more
                // will come to this file.
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            cursor.rotated = true;
            return Ok(Step::Again);
        }

        let next = match find_successor(&self.path, cursor.id)? {
            Successor::Found(next) => next,
            Successor::NotYet => {
                return Ok(if stopping { Step::End } else { Step::Wait });
            }
            Successor::Missing { oldest } => {
                self.missing_tries += 1;
                if self.missing_tries < MISSING_TRIES {
                    return Ok(if stopping { Step::End } else { Step::Wait });
                }
                // Deleted by rotation: every file still there is newer.
                let Some(oldest) = oldest else {
                    return Ok(if stopping { Step::End } else { Step::Wait });
                };
                self.stats.lost_files += 1;
                oldest
            }
        };
        self.missing_tries = 0;
        if let Some(done) = self.files.pop_front()
            && done.has_partial()
        {
            self.stats.torn_lines += 1;
        }
        self.files.push_back(next);
        Ok(Step::Again)
    }
}

impl Iterator for LogReader {
    type Item = io::Result<LogRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.deferred.take() {
            return Some(Err(e));
        }
        if self.done {
            return None;
        }
        loop {
            match self.advance() {
                Ok(Advance::Record(record)) => return Some(Ok(record)),
                Ok(Advance::Idle) => thread::sleep(self.poll),
                Ok(Advance::End) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// A file's identity, which survives renames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &fs::Metadata) -> Self {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

fn file_id(path: &Path) -> io::Result<FileId> {
    fs::metadata(path).map(|meta| FileId::of(&meta))
}

/// The name of the `n`th newest file: 0 is the live file.
fn nth_path(path: &Path, n: usize) -> PathBuf {
    if n == 0 {
        path.to_path_buf()
    } else {
        rotated_path(path, n)
    }
}

/// Calls `visit` with each existing `n` (0 = live, then `.1`, `.2`, …) until
/// two names in a row are missing: a rotation in progress leaves at most one
/// gap.
fn probe(path: &Path, mut visit: impl FnMut(usize, PathBuf) -> io::Result<()>) -> io::Result<()> {
    let mut misses = 0;
    for n in 0..MAX_PROBE {
        match visit(n, nth_path(path, n)) {
            Ok(()) => misses = 0,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                misses += 1;
                if misses == 2 {
                    break;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Opens the live file and the rotated ones, oldest first.
///
/// Names are opened newest first. Rotation moves files to higher numbers, so
/// one happening meanwhile can only make us meet a file again under its next
/// number (skipped by identity), never skip one.
fn open_snapshot(path: &Path) -> io::Result<Vec<Cursor>> {
    let mut newest_first: Vec<Cursor> = Vec::new();
    probe(path, |_, name| {
        let cursor = Cursor::open(&name)?;
        if !newest_first.iter().any(|seen| seen.id == cursor.id) {
            newest_first.push(cursor);
        }
        Ok(())
    })?;
    newest_first.reverse();
    Ok(newest_first)
}

enum Successor {
    Found(Cursor),
    /// The successor is not there yet (a rotation is in progress).
    NotYet,
    /// The file is under no name: deleted, or moved while we looked.
    Missing {
        oldest: Option<Cursor>,
    },
}

/// Finds the file rotated after the one with identity `id`.
///
/// Rotation renames oldest first, each file one number up, so at every
/// instant the existing names are in age order with at most one gap: the file
/// at `.k-1` is the one written after the file at `.k`. Finding ours at `.k`,
/// opening `.k-1`, and finding ours still at `.k` proves nothing moved in
/// between, so what we opened is its successor.
fn find_successor(path: &Path, id: FileId) -> io::Result<Successor> {
    let mut ours = None;
    let mut oldest = None;
    probe(path, |n, name| {
        let found = file_id(&name)?;
        if found == id {
            ours = Some(n);
        }
        oldest = Some(n);
        Ok(())
    })?;
    let Some(k) = ours else {
        let oldest = match oldest {
            Some(n) => match Cursor::open(&nth_path(path, n)) {
                Ok(cursor) => Some(cursor),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        return Ok(Successor::Missing { oldest });
    };
    if k == 0 {
        return Ok(Successor::NotYet);
    }
    let next = match Cursor::open(&nth_path(path, k - 1)) {
        Ok(next) => next,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Successor::NotYet),
        Err(e) => return Err(e),
    };
    match file_id(&nth_path(path, k)) {
        Ok(still) if still == id => Ok(Successor::Found(next)),
        Ok(_) => Ok(Successor::NotYet),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Successor::NotYet),
        Err(e) => Err(e),
    }
}

/// Where to start reading so that exactly the last `n` accepted records come
/// out: (index into `files`, byte offset). Reads backwards in blocks, so a
/// tail of a large file costs about the tail's size.
fn tail_start(files: &[Cursor], n: usize, query: &LogQuery) -> io::Result<(usize, u64)> {
    let last = files.len().saturating_sub(1);
    if n == 0 {
        // Start after the last complete line: nothing old, and a record
        // being written now is read whole once it is complete.
        let Some(cursor) = files.get(last) else {
            return Ok((0, 0));
        };
        let mut scan = BackScanner::new(cursor)?;
        return Ok((last, scan.skip_torn()?.unwrap_or(0)));
    }
    let mut found = 0;
    for (index, cursor) in files.iter().enumerate().rev() {
        let mut scan = BackScanner::new(cursor)?;
        if scan.skip_torn()?.is_none() {
            continue;
        }
        while let Some(line) = scan.previous_line()? {
            if let Some(bytes) = line.bytes
                && let Ok((time, stream, _, _)) = parse_fields(bytes)
                && query.accepts(time, stream)
            {
                found += 1;
                if found == n {
                    return Ok((index, line.start));
                }
            }
        }
    }
    Ok((0, 0))
}

/// A line found walking backwards.
struct BackLine<'a> {
    /// Its offset in the file.
    start: u64,
    /// Its bytes, unless it was too long to be a record.
    bytes: Option<&'a [u8]>,
}

/// Walks a file's lines backwards from its end.
struct BackScanner<'f> {
    file: &'f File,
    block: Vec<u8>,
    /// The file offset of `block[0]`.
    block_start: u64,
    /// `block[..limit]` is not scanned yet.
    limit: usize,
    /// The bytes of the line being assembled, which follow `block[..limit]`.
    carry: Vec<u8>,
    /// The line being assembled is longer than [`MAX_LINE`]; its bytes are
    /// dropped.
    overlong: bool,
    /// The last line returned, kept to lend it out.
    line: Vec<u8>,
    /// The start of the file was reached.
    done: bool,
}

impl<'f> BackScanner<'f> {
    /// From the end of `cursor`'s file, or where its reading is to stop.
    fn new(cursor: &'f Cursor) -> io::Result<Self> {
        let end = match cursor.stop_at {
            Some(end) => end,
            None => cursor.file.metadata()?.len(),
        };
        Ok(BackScanner {
            file: &cursor.file,
            block: Vec::new(),
            block_start: end,
            limit: 0,
            carry: Vec::new(),
            overlong: false,
            line: Vec::new(),
            done: false,
        })
    }

    /// Reads the block before the current one; false at the start of the file.
    fn load_previous(&mut self) -> io::Result<bool> {
        if self.block_start == 0 {
            return Ok(false);
        }
        let start = self.block_start.saturating_sub(BLOCK as u64);
        let len = (self.block_start - start) as usize;
        self.block.resize(len, 0);
        self.file.read_exact_at(&mut self.block, start)?;
        self.block_start = start;
        self.limit = len;
        Ok(true)
    }

    /// Adds `block[from..limit]` in front of the line being assembled.
    fn gather(&mut self, from: usize) {
        let piece = &self.block[from..self.limit];
        if self.overlong || self.carry.len() + piece.len() > MAX_LINE {
            self.overlong = true;
            self.carry.clear();
        } else {
            self.carry.splice(0..0, piece.iter().copied());
        }
        self.limit = from;
    }

    /// Moves back to the previous newline, gathering the bytes passed over.
    /// Its offset, or `None` at the start of the file.
    fn previous_newline(&mut self) -> io::Result<Option<u64>> {
        loop {
            if let Some(at) = self.block[..self.limit].iter().rposition(|&b| b == b'\n') {
                self.gather(at + 1);
                self.limit = at;
                return Ok(Some(self.block_start + at as u64));
            }
            self.gather(0);
            if !self.load_previous()? {
                return Ok(None);
            }
        }
    }

    /// Passes over what follows the last newline (a record still being
    /// written). Returns the offset just after that newline, `None` if the
    /// file has none.
    fn skip_torn(&mut self) -> io::Result<Option<u64>> {
        let newline = self.previous_newline()?;
        self.carry.clear();
        self.overlong = false;
        if newline.is_none() {
            self.done = true;
        }
        Ok(newline.map(|at| at + 1))
    }

    /// The previous complete line, `None` at the start of the file.
    fn previous_line(&mut self) -> io::Result<Option<BackLine<'_>>> {
        if self.done {
            return Ok(None);
        }
        let start = match self.previous_newline()? {
            Some(newline) => newline + 1,
            None => {
                self.done = true;
                0
            }
        };
        std::mem::swap(&mut self.line, &mut self.carry);
        self.carry.clear();
        let overlong = std::mem::take(&mut self.overlong);
        Ok(Some(BackLine {
            start,
            bytes: (!overlong).then_some(self.line.as_slice()),
        }))
    }
}

/// One open log file read forwards line by line.
#[derive(Debug)]
struct Cursor {
    file: File,
    id: FileId,
    buf: Vec<u8>,
    /// `buf[start..end]` is read but not returned yet.
    start: usize,
    end: usize,
    /// `buf[start..scanned]` has no newline.
    scanned: usize,
    /// Dropping the rest of an overlong line.
    skipping: bool,
    /// The file has been renamed away from the live name: it is complete.
    rotated: bool,
    /// The file offset of `buf[end]`: where the next read starts.
    pos: u64,
    /// Read nothing at or after this offset (a snapshot's end).
    stop_at: Option<u64>,
}

enum Next<'a> {
    Line(&'a [u8]),
    /// A line longer than [`MAX_LINE`] was passed over.
    Overlong,
    /// The end of the file for now; an incomplete line stays buffered.
    Eof,
}

impl Cursor {
    fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let id = FileId::of(&file.metadata()?);
        Ok(Cursor {
            file,
            id,
            buf: Vec::new(),
            start: 0,
            end: 0,
            scanned: 0,
            skipping: false,
            rotated: false,
            pos: 0,
            stop_at: None,
        })
    }

    fn seek(&mut self, offset: u64) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(offset))?;
        self.pos = offset;
        self.start = 0;
        self.end = 0;
        self.scanned = 0;
        self.skipping = false;
        Ok(())
    }

    /// Bytes after the last complete line (read, or being dropped).
    fn has_partial(&self) -> bool {
        self.end > self.start || self.skipping
    }

    fn next_line(&mut self) -> io::Result<Next<'_>> {
        loop {
            let unscanned = &self.buf[self.scanned..self.end];
            if let Some(at) = unscanned.iter().position(|&b| b == b'\n') {
                let newline = self.scanned + at;
                let line_start = self.start;
                self.start = newline + 1;
                self.scanned = self.start;
                if std::mem::take(&mut self.skipping) {
                    return Ok(Next::Overlong);
                }
                return Ok(Next::Line(&self.buf[line_start..newline]));
            }
            self.scanned = self.end;
            if self.skipping || self.end - self.start > MAX_LINE {
                self.skipping = true;
                self.start = self.end;
            }
            // Keep only the incomplete line, at the front, and make room.
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.scanned -= self.start;
                self.start = 0;
            }
            if self.buf.len() - self.end < BLOCK / 2 {
                self.buf.resize(self.end + BLOCK, 0);
            }
            let mut room = self.buf.len() - self.end;
            if let Some(stop) = self.stop_at {
                let left = stop.saturating_sub(self.pos);
                room = room.min(usize::try_from(left).unwrap_or(usize::MAX));
            }
            if room == 0 {
                return Ok(Next::Eof);
            }
            let read = loop {
                match self.file.read(&mut self.buf[self.end..self.end + room]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other?,
                }
            };
            if read == 0 {
                return Ok(Next::Eof);
            }
            self.end += read;
            self.pos += read as u64;
        }
    }
}
