//! Tests of the CRI log writer and reader: the byte format on disk, rotation,
//! reading back (tail, since, garbage, torn lines), following across
//! rotations, the display helpers, and a property test that any output
//! survives the round trip.

mod batch;
mod display;
mod follow;
mod props;
mod reader;
mod writer;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

use super::timestamp::format_rfc3339_nanos;
use super::*;

/// A temp dir and the live log path inside it.
fn scratch() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("0.log");
    (dir, path)
}

/// Every record of the log (non-following), and what was skipped.
fn read_all(path: &Path, query: &LogQuery) -> (Vec<LogRecord>, ReadStats) {
    let mut reader = read_logs(path, query);
    let records = reader
        .by_ref()
        .collect::<std::io::Result<Vec<_>>>()
        .expect("read");
    (records, reader.stats())
}

fn records(path: &Path) -> Vec<LogRecord> {
    read_all(path, &LogQuery::default()).0
}

/// The raw lines of one file, without their newlines.
fn raw_lines(path: &Path) -> Vec<Vec<u8>> {
    let bytes = fs::read(path).expect("read log file");
    assert!(
        bytes.is_empty() || bytes.ends_with(b"\n"),
        "{} ends mid-record",
        path.display()
    );
    bytes
        .split(|&b| b == b'\n')
        .take(bytes.iter().filter(|&&b| b == b'\n').count())
        .map(<[u8]>::to_vec)
        .collect()
}

/// (stream, tag, content) of each record, to compare without times.
fn shape(records: &[LogRecord]) -> Vec<(Stream, char, Vec<u8>)> {
    records
        .iter()
        .map(|r| {
            (
                r.stream,
                if r.partial { 'P' } else { 'F' },
                r.content.clone(),
            )
        })
        .collect()
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// A record line as another writer would have written it.
fn line(time: SystemTime, stream: &str, tag: &str, content: &str) -> String {
    let ts = format_rfc3339_nanos(time);
    format!(
        "{} {stream} {tag} {content}\n",
        String::from_utf8_lossy(&ts)
    )
}

fn small_rotation(max_bytes: u64, max_files: usize) -> Rotation {
    Rotation {
        max_bytes,
        max_files,
    }
}
