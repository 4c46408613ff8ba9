//! The node connection's TCP stream, acknowledging at once what it reads.
//!
//! sshd turns Nagle's algorithm off only for sessions with a terminal. On
//! the agent's direct-streamlocal channel it stays on, so a small packet
//! sshd writes while its previous one is unacknowledged waits for our ACK,
//! and Linux delays ACKs by up to 40 ms: an agent reply followed closely by
//! another (an exec's `found` and then the echo of the key typed, a call's
//! answer behind a stream's item) arrived 40 ms late. TCP_QUICKACK after
//! each read makes that wait one round trip. It is not sticky (the kernel
//! may fall back to delayed ACKs), hence once per read; the cost is an ACK
//! per segment received instead of one per two, and one system call.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub struct QuickAck(TcpStream);

impl QuickAck {
    pub fn new(tcp: TcpStream) -> QuickAck {
        QuickAck(tcp)
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let filled = buf.filled().len();
        let read = Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > filled {
            // Best effort: a socket that refuses it still works, only slower.
            let _ = rustix::net::sockopt::set_tcp_quickack(&self.0, true);
        }
        read
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
