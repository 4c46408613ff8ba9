//! The tar stream as the unpacker reads it: once, to its end, with memory
//! that stays flat whatever the archive claims.
//!
//! File data is copied through one fixed buffer. The tar crate, though,
//! buffers whole GNU long-name/long-link and PAX records (and sparse maps)
//! in memory before it yields the entry they describe, with no limit: a
//! hostile header claiming a multi-gigabyte long name would be read into
//! RAM. [`Budget`] caps what may be read while the crate is between entries.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::rc::Rc;

use super::Fail;

/// Most bytes read from one entry's end to the next entry's data: header
/// blocks, padding, long names, PAX records, sparse maps. Go's archive/tar
/// allows 1 MiB for a PAX record; real layers use a few KiB.
pub(super) const HEADER_BUDGET: u64 = 2 << 20;

/// Size of the one buffer file data is copied through.
pub(super) const COPY_BUFFER: usize = 128 << 10;

/// Shared between [`Metered`] (inside the tar crate's archive) and the loop
/// that drives it, which knows when headers are being read.
#[derive(Clone, Default)]
pub(super) struct Budget(Rc<Cell<Option<u64>>>);

impl Budget {
    pub(super) fn wrap<R>(&self, inner: R) -> Metered<R> {
        Metered {
            inner,
            budget: self.clone(),
        }
    }

    /// Runs `f` (advancing the tar crate to its next entry) with reads
    /// capped at [`HEADER_BUDGET`].
    pub(super) fn for_headers<T>(&self, f: impl FnOnce() -> T) -> T {
        self.0.set(Some(HEADER_BUDGET));
        let out = f();
        self.0.set(None);
        out
    }
}

pub(super) struct Metered<R> {
    inner: R,
    budget: Budget,
}

impl<R> Metered<R> {
    pub(super) fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(left) = self.budget.0.get() else {
            return self.inner.read(buf);
        };
        if left == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "an entry's headers (long names, PAX records, sparse maps) exceed {HEADER_BUDGET} bytes"
                ),
            ));
        }
        let cap = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..cap])?;
        self.budget.0.set(Some(left.saturating_sub(n as u64)));
        Ok(n)
    }
}

/// Copies an entry's `expected` bytes of data into `file` through `buf`,
/// returning the bytes copied. For GNU sparse entries the tar crate hands
/// back the holes as zeros; whole zero chunks are skipped with a seek so
/// they stay holes.
pub(super) fn copy_data(
    entry: &mut impl Read,
    file: &mut File,
    buf: &mut [u8],
    sparse: bool,
    expected: u64,
) -> Result<u64, Fail> {
    let mut total: u64 = 0;
    let mut written_to: u64 = 0;
    loop {
        let n = match entry.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Fail::Read(e)),
        };
        let chunk = &buf[..n];
        let at = total;
        total = total.saturating_add(n as u64);
        if sparse && chunk.iter().all(|b| *b == 0) {
            continue;
        }
        if at != written_to {
            file.seek(SeekFrom::Start(at)).map_err(|e| Fail::Fs {
                action: "skipping a hole in the sparse file",
                source: e,
            })?;
        }
        file.write_all(chunk).map_err(|e| Fail::Fs {
            action: "writing the file's data",
            source: e,
        })?;
        written_to = total;
    }
    // The tar crate's entry reader just stops where the stream does.
    if total != expected {
        return Err(Fail::Read(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the stream ends {total} bytes into its {expected}"),
        )));
    }
    if written_to != total {
        file.set_len(total).map_err(|e| Fail::Fs {
            action: "extending the sparse file over its last hole",
            source: e,
        })?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_caps_reads_only_while_reading_headers() {
        let data = vec![7u8; (HEADER_BUDGET as usize) + 10];
        let budget = Budget::default();
        let mut r = budget.wrap(&data[..]);
        let mut sink = Vec::new();
        let err = budget.for_headers(|| r.read_to_end(&mut sink));
        assert_eq!(err.unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!(sink.len() as u64, HEADER_BUDGET);
        // Outside header reading the rest flows freely.
        sink.clear();
        r.read_to_end(&mut sink).unwrap();
        assert_eq!(sink.len(), 10);
    }
}
