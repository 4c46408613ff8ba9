//! Framing: newline-delimited lines over any tokio `AsyncRead`, with a cap on
//! a line's length. A line over the cap is reported once, as soon as the cap is
//! passed, and its remaining bytes are skipped up to the next newline without
//! being kept, so a client cannot make the agent hold more than the cap (plus
//! one read buffer) per connection, and the next line reads normally.
//!
//! A trailing `\r` is removed (CRLF is tolerated: a person typing into `socat`
//! or a Windows tool should not get a confusing JSON error); blank lines are
//! skipped. A final line without a newline at end of input still counts.

use tokio::io::{AsyncRead, AsyncReadExt};

/// The longest request line the agent reads: 1 MiB. The largest request is a
/// `pods.create` carrying a Pod; real pods are a few KiB, and Kubernetes itself
/// refuses objects over 1.5 MiB. 1 MiB is far above any honest request and
/// small enough that the agent (root, sharing the host with the workloads) can
/// hold one per connection without noticing.
pub const MAX_REQUEST_LINE: usize = 1024 * 1024;

/// The longest reply line the console reads: 16 MiB. Replies are bigger than
/// requests (a `pods.list` of a full node, ten minutes of metrics), and the
/// console trusts its agents more than an agent trusts its callers.
pub const MAX_REPLY_LINE: usize = 16 * 1024 * 1024;

/// How much one read asks of the transport.
const READ_CHUNK: usize = 16 * 1024;

/// What [`LineReader::next_line`] can fail with; the reader stays usable after
/// [`LineError::TooLarge`].
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("a message is at most {limit} bytes; this one was longer and was skipped")]
    TooLarge { limit: usize },
    #[error("reading the connection: {0}")]
    Io(#[from] std::io::Error),
}

/// Splits a byte stream into lines of at most `max_line` bytes.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Bytes of `buf` already searched for a newline.
    scanned: usize,
    max_line: usize,
    /// Inside an over-long line: drop bytes up to the next newline.
    discarding: bool,
    eof: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(inner: R, max_line: usize) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            scanned: 0,
            max_line,
            discarding: false,
            eof: false,
        }
    }

    /// The next non-blank line without its `\n` (or `\r\n`); `None` at end of
    /// input. Cancel-safe: all state lives in `self`, so it can sit in a
    /// `select!` and be dropped between lines without losing bytes.
    pub async fn next_line(&mut self) -> Option<Result<Vec<u8>, LineError>> {
        loop {
            if let Some(line) = self.take_line() {
                match line {
                    Ok(line) if is_blank(&line) => continue,
                    other => return Some(other),
                }
            }
            if self.eof {
                self.discarding = false;
                if self.buf.is_empty() {
                    return None;
                }
                let line = self.finish(self.buf.len(), 0);
                if is_blank(&line) {
                    return None;
                }
                return Some(Ok(line));
            }
            self.buf.reserve(READ_CHUNK);
            match self.inner.read_buf(&mut self.buf).await {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Some(Err(LineError::Io(e))),
            }
        }
    }

    /// A complete line (or the too-large report) from what is buffered, if any.
    fn take_line(&mut self) -> Option<Result<Vec<u8>, LineError>> {
        match memchr(&self.buf[self.scanned..]) {
            Some(offset) => {
                let end = self.scanned + offset;
                if self.discarding {
                    self.buf.drain(..=end);
                    self.scanned = 0;
                    self.discarding = false;
                    return self.take_line();
                }
                if end > self.max_line {
                    // The whole over-long line arrived in one read.
                    self.buf.drain(..=end);
                    self.scanned = 0;
                    return Some(Err(self.too_large()));
                }
                Some(Ok(self.finish(end, 1)))
            }
            None if self.discarding => {
                self.buf.clear();
                self.scanned = 0;
                None
            }
            None if self.buf.len() > self.max_line => {
                // Report now, keep nothing, skip the rest as it arrives.
                self.buf.clear();
                self.scanned = 0;
                self.discarding = true;
                Some(Err(self.too_large()))
            }
            None => {
                self.scanned = self.buf.len();
                None
            }
        }
    }

    /// Removes `len` bytes plus `newline` bytes from the buffer; returns the
    /// line with a trailing `\r` removed.
    fn finish(&mut self, len: usize, newline: usize) -> Vec<u8> {
        let rest = self.buf.split_off(len + newline);
        let mut line = std::mem::replace(&mut self.buf, rest);
        line.truncate(len);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        self.scanned = 0;
        line
    }

    fn too_large(&self) -> LineError {
        LineError::TooLarge {
            limit: self.max_line,
        }
    }
}

fn memchr(haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == b'\n')
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::ReadBuf;

    use super::*;

    /// Hands out its chunks one read at a time, as a slow socket would.
    struct Chunks(std::collections::VecDeque<Vec<u8>>);

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if let Some(mut chunk) = self.0.pop_front() {
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk[..n]);
                if n < chunk.len() {
                    self.0.push_front(chunk.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    fn reader(chunks: &[&[u8]], max: usize) -> LineReader<Chunks> {
        LineReader::new(Chunks(chunks.iter().map(|c| c.to_vec()).collect()), max)
    }

    async fn all(mut r: LineReader<Chunks>) -> Vec<Result<String, String>> {
        let mut out = Vec::new();
        while let Some(line) = r.next_line().await {
            out.push(
                line.map(|l| String::from_utf8_lossy(&l).into_owned())
                    .map_err(|e| e.to_string()),
            );
        }
        out
    }

    fn ok(s: &str) -> Result<String, String> {
        Ok(s.to_string())
    }

    #[tokio::test]
    async fn a_line_split_over_many_reads() {
        let r = reader(&[b"{\"id\"", b":1,", b"\"method\":\"x\"}", b"\n"], 100);
        assert_eq!(all(r).await, vec![ok("{\"id\":1,\"method\":\"x\"}")]);
    }

    #[tokio::test]
    async fn many_lines_in_one_read() {
        let r = reader(&[b"a\nb\nc\n\n  \nd"], 100);
        assert_eq!(all(r).await, vec![ok("a"), ok("b"), ok("c"), ok("d")]);
    }

    #[tokio::test]
    async fn crlf_is_tolerated() {
        let r = reader(&[b"a\r\nb\r", b"\n\r\n"], 100);
        assert_eq!(all(r).await, vec![ok("a"), ok("b")]);
    }

    #[tokio::test]
    async fn an_oversized_line_is_refused_then_the_next_reads() {
        let long = [b'x'; 50];
        // Over the cap within one read, and spread over several reads.
        for chunks in [
            vec![&long[..], b"\nok\n"],
            vec![&long[..10], &long[10..], &long[..], b"tail\nok\n"],
        ] {
            let r = reader(&chunks, 16);
            let lines = all(r).await;
            assert_eq!(lines.len(), 2, "{lines:?}");
            assert!(lines[0].as_ref().unwrap_err().contains("at most 16 bytes"));
            assert_eq!(lines[1], ok("ok"));
        }
    }

    #[tokio::test]
    async fn a_line_exactly_at_the_cap_reads() {
        let line = vec![b'y'; 16];
        let mut input = line.clone();
        input.push(b'\n');
        let r = reader(&[&input], 16);
        assert_eq!(all(r).await, vec![ok(&"y".repeat(16))]);
    }

    #[tokio::test]
    async fn an_oversized_line_is_not_buffered() {
        let chunk = vec![b'z'; 64 * 1024];
        let mut r = reader(&[&chunk[..]; 32], 1024);
        let first = r.next_line().await.unwrap();
        assert!(matches!(first, Err(LineError::TooLarge { limit: 1024 })));
        assert!(
            r.next_line().await.is_none(),
            "the rest is skipped, not reported again"
        );
        assert!(
            r.buf.capacity() < 256 * 1024,
            "kept {} bytes",
            r.buf.capacity()
        );
    }

    #[tokio::test]
    async fn invalid_utf8_is_passed_up_as_bytes() {
        let mut r = reader(&[b"\xff\xfe\n{}\n"], 100);
        assert_eq!(r.next_line().await.unwrap().unwrap(), b"\xff\xfe");
        assert_eq!(r.next_line().await.unwrap().unwrap(), b"{}");
    }
}
