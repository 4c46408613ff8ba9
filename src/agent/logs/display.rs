//! Showing log records to a person: [`join_partials`] puts the `P` pieces of
//! long lines back together, and [`printable`] renders container bytes so
//! that they cannot act on the terminal that shows them.
//!
//! The files keep every byte as the container wrote it; only here are bytes
//! changed, and only for display.

use std::io;

use super::LogRecord;

/// The longest line [`join_partials`] assembles. A container that never ends
/// its line would otherwise make the reader hold all of its output; past this
/// the line so far comes out as a `partial` record and joining starts afresh.
pub const MAX_JOINED_LINE: usize = 1024 * 1024;

/// Re-joins the `P` pieces of each stream's long lines into one record per
/// line, so stdout and stderr interleaved piece by piece come out as whole
/// lines. A joined record carries the time of its first piece. A line whose
/// `F` never comes (the input ended, or it grew past [`MAX_JOINED_LINE`])
/// comes out with `partial` still set.
pub fn join_partials<I>(records: I) -> JoinPartials<I::IntoIter>
where
    I: IntoIterator<Item = io::Result<LogRecord>>,
{
    JoinPartials {
        inner: records.into_iter(),
        open: [None, None],
        finished: false,
    }
}

/// The iterator [`join_partials`] returns.
#[derive(Debug)]
pub struct JoinPartials<I> {
    inner: I,
    /// Each stream's line being assembled, by [`super::Stream::index`].
    open: [Option<LogRecord>; 2],
    finished: bool,
}

impl<I> JoinPartials<I> {
    /// The unfinished lines left at the end, oldest first.
    fn drain_open(&mut self) -> Option<io::Result<LogRecord>> {
        let first = match &self.open {
            [Some(out), Some(err)] => usize::from(err.time < out.time),
            [Some(_), None] => 0,
            [None, Some(_)] => 1,
            [None, None] => return None,
        };
        self.open[first].take().map(Ok)
    }
}

impl<I> Iterator for JoinPartials<I>
where
    I: Iterator<Item = io::Result<LogRecord>>,
{
    type Item = io::Result<LogRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.finished {
                return self.drain_open();
            }
            let record = match self.inner.next() {
                None => {
                    self.finished = true;
                    continue;
                }
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok(record)) => record,
            };
            let slot = &mut self.open[record.stream.index()];
            let joined = match slot.take() {
                Some(mut line) => {
                    line.content.extend_from_slice(&record.content);
                    line.partial = record.partial;
                    line
                }
                None => record,
            };
            if !joined.partial || joined.content.len() >= MAX_JOINED_LINE {
                return Some(Ok(joined));
            }
            *slot = Some(joined);
        }
    }
}

/// Renders container output for a terminal, safely: what could act on the
/// terminal becomes a visible escape, and everything else is kept.
///
/// * C0 controls and DEL (ESC starts every escape sequence, BEL, BS, NUL …)
///   become `\xNN`, with `\r` and `\n` as `\r` and `\n`; tab is kept.
/// * C1 controls (U+0080–U+009F; U+009B is a one-character CSI to some
///   terminals) become `\u{NN}`.
/// * Unicode's bidirectional controls and line/paragraph separators, which
///   reorder or break what the operator sees, become `\u{NNNN}`.
/// * Bytes that are not UTF-8 become `\xNN`.
///
/// With ESC gone, the rest of a sequence (`[2J`) is plain text.
pub fn printable(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\t' => out.push('\t'),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\0'..='\u{1f}' | '\u{7f}' => push_byte_escape(&mut out, c as u8),
                '\u{80}'..='\u{9f}' | '\u{61c}' | '\u{200e}' | '\u{200f}' => {
                    push_char_escape(&mut out, c)
                }
                '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => push_char_escape(&mut out, c),
                c => out.push(c),
            }
        }
        for &byte in chunk.invalid() {
            push_byte_escape(&mut out, byte);
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_byte_escape(out: &mut String, byte: u8) {
    out.push_str("\\x");
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0xf)]));
}

fn push_char_escape(out: &mut String, c: char) {
    out.push_str("\\u{");
    let code = c as u32;
    let digits = (32 - code.leading_zeros()).div_ceil(4).max(1);
    for shift in (0..digits).rev() {
        out.push(char::from(HEX[((code >> (shift * 4)) & 0xf) as usize]));
    }
    out.push('}');
}
