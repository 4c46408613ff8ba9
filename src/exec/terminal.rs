//! The local end of an exec: the terminal in raw mode for as long as a
//! remote terminal is in use (restored by a guard on every way out, panics
//! included), and stdin read on a thread that can be stopped.
//!
//! Stdin is read after `poll` says it is readable, never in a blocking
//! `read` left waiting: the console takes the terminal back after a shell,
//! and a reader still blocked there would swallow its next keystroke (which
//! is what `tokio::io::stdin`'s detached thread does).

use std::io::IsTerminal;
use std::os::fd::{AsFd, OwnedFd};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tokio::sync::mpsc;

/// The terminal in raw mode until dropped.
pub struct RawMode {
    _private: (),
}

impl RawMode {
    /// Raw mode on stdin's terminal: no echo or line editing here, keys
    /// (^C included) go to the remote terminal as bytes.
    pub fn enable() -> std::io::Result<RawMode> {
        crossterm::terminal::enable_raw_mode()?;
        Ok(RawMode { _private: () })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Err(e) = crossterm::terminal::disable_raw_mode() {
            tracing::warn!(error = %e, "restoring the terminal");
        }
    }
}

/// Whether stdin is a terminal (so `-t` can use it).
pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// The local window's size (columns, rows); 80x24 when unknown.
pub fn window_size() -> (u32, u32) {
    crossterm::terminal::size()
        .map(|(c, r)| (u32::from(c), u32::from(r)))
        .unwrap_or((80, 24))
}

/// Stdin, read on a thread; `None` from [`StdinPump::recv`] is EOF. The
/// thread ends when the pump is dropped, without taking another byte.
pub struct StdinPump {
    rx: mpsc::Receiver<Vec<u8>>,
    stop: Option<OwnedFd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StdinPump {
    pub fn start() -> std::io::Result<StdinPump> {
        let (stop_read, stop_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let (tx, rx) = mpsc::channel(16);
        let thread = std::thread::Builder::new()
            .name("exec-stdin".into())
            .spawn(move || read_loop(&tx, &stop_read))?;
        Ok(StdinPump {
            rx,
            stop: Some(stop_write),
            thread: Some(thread),
        })
    }

    /// The next bytes typed or piped in; `None` at EOF.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        self.rx.recv().await
    }
}

impl Drop for StdinPump {
    fn drop(&mut self) {
        // Closing the pipe's write end makes it readable (EOF) for `poll`.
        drop(self.stop.take());
        // The thread may be blocked handing over bytes: let it finish.
        self.rx.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn read_loop(tx: &mpsc::Sender<Vec<u8>>, stop: &OwnedFd) {
    let stdin = std::io::stdin();
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let mut fds = [
            PollFd::new(stdin.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
        if fds[1].any().unwrap_or(true) {
            return;
        }
        let ready = fds[0].revents().is_some_and(|r| {
            r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
        });
        if !ready {
            continue;
        }
        match nix::unistd::read(stdin.as_fd(), &mut buffer) {
            // EOF (or a hung-up terminal): the channel is dropped, recv says None.
            Ok(0) => return,
            Ok(n) => {
                if tx.blocking_send(buffer[..n].to_vec()).is_err() {
                    return;
                }
            }
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
            Err(_) => return,
        }
    }
}
