//! The shim's copying loop: a container's stdout and stderr pipes into its
//! CRI log (and, for a foreground `run`, to the terminal), on the shim's own
//! thread, until both pipes reach end of file.
//!
//! One thread polling both pipes, rather than a reader thread per pipe: a
//! shim lives as long as its container and mostly sleeps, so what it costs
//! is its resident memory. Each extra thread brought a stack, glibc's
//! thread start-up code and a 64 KiB buffer zeroed up front; here one buffer
//! serves both pipes and is allocated on the first byte, so a quiet
//! container's shim never touches it.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::agent::logs::{CriLogWriter, Stream};

/// Bytes read per `read(2)`: a full pipe (64 KiB by default), so a
/// container writing flat out is copied in as few calls as the kernel allows.
const READ_BYTES: usize = 64 * 1024;

/// One pipe being copied.
pub struct Source {
    pub pipe: OwnedFd,
    pub stream: Stream,
    /// Where a foreground run copies this stream too.
    pub tee: Option<Box<dyn Write + Send>>,
}

/// A source being read.
struct Open {
    file: File,
    stream: Stream,
    tee: Option<Box<dyn Write + Send>>,
}

/// Copies `sources` into `writer` until every pipe is at end of file, that is
/// until the container and whatever it shared its output with have ended.
/// `before_wait` runs once, just before the loop first sleeps: the shim gives
/// back its start-up pages there, after its last start-up work.
///
/// A read error other than EINTR ends that pipe as end of file would: the
/// pipe is the shim's own, so this only happens if the kernel refuses it,
/// and the container's end is still recorded.
pub fn copy_until_closed(
    sources: Vec<Source>,
    writer: &mut CriLogWriter,
    before_wait: impl FnOnce(),
) {
    let mut open: Vec<Open> = sources
        .into_iter()
        .map(|s| Open {
            file: File::from(s.pipe),
            stream: s.stream,
            tee: s.tee,
        })
        .collect();
    let mut buffer: Vec<u8> = Vec::new();
    let mut before_wait = Some(before_wait);
    while !open.is_empty() {
        if let Some(hook) = before_wait.take() {
            hook();
        }
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd> = open
                .iter()
                .map(|o| PollFd::new(o.file.as_fd(), PollFlags::POLLIN))
                .collect();
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => fds
                    .iter()
                    .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
                    .collect(),
                Err(nix::errno::Errno::EINTR) => continue,
                // poll itself failing leaves nothing to wait on: fall back to
                // blocking reads of each pipe in turn, which lose nothing.
                Err(_) => vec![true; open.len()],
            }
        };
        let mut index = 0;
        open.retain_mut(|Open { file, stream, tee }| {
            let was_ready = ready[index];
            index += 1;
            if !was_ready {
                return true;
            }
            if buffer.is_empty() {
                buffer.resize(READ_BYTES, 0);
            }
            let n = loop {
                match file.read(&mut buffer) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break 0,
                    Ok(n) => break n,
                }
            };
            if n == 0 {
                return false;
            }
            // A write error is the writer's to report (it keeps records in
            // the current file when rotation fails); the copying goes on.
            let _ = writer.write(*stream, &buffer[..n]);
            if let Some(out) = tee.as_mut() {
                let _ = out.write_all(&buffer[..n]).and_then(|()| out.flush());
            }
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::logs::Rotation;
    use std::sync::{Arc, Mutex};

    /// A tee that keeps what it was given.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Vec<u8>>>);

    impl Write for Kept {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn both_pipes_are_copied_in_full_until_both_close() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        let mut writer = CriLogWriter::open(&log, Rotation::default()).unwrap();
        let (out_read, out_write) = nix::unistd::pipe().unwrap();
        let (err_read, err_write) = nix::unistd::pipe().unwrap();
        // More than a pipe holds, so the pump must read while the writers
        // are still writing; stderr closes long before stdout does.
        let lines = 20_000;
        let out_writer = std::thread::spawn(move || {
            let mut out = File::from(out_write);
            for i in 0..lines {
                writeln!(out, "out line {i}").unwrap();
            }
        });
        let err_writer = std::thread::spawn(move || {
            let mut err = File::from(err_write);
            err.write_all(b"one error\npartial").unwrap();
        });
        let tee = Kept::default();
        let mut hooks = 0;
        copy_until_closed(
            vec![
                Source {
                    pipe: out_read,
                    stream: Stream::Stdout,
                    tee: None,
                },
                Source {
                    pipe: err_read,
                    stream: Stream::Stderr,
                    tee: Some(Box::new(tee.clone())),
                },
            ],
            &mut writer,
            || hooks += 1,
        );
        out_writer.join().unwrap();
        err_writer.join().unwrap();
        writer.close().unwrap();
        assert_eq!(hooks, 1);
        assert_eq!(&tee.0.lock().unwrap()[..], b"one error\npartial");

        let text = std::fs::read_to_string(&log).unwrap();
        let stdout: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(" stdout F "))
            .map(|l| l.split_once(" stdout F ").unwrap().1)
            .collect();
        assert_eq!(stdout.len(), lines);
        assert_eq!(stdout[0], "out line 0");
        assert_eq!(stdout[lines - 1], format!("out line {}", lines - 1));
        let stderr: Vec<&str> = text.lines().filter(|l| l.contains(" stderr ")).collect();
        assert_eq!(stderr.len(), 2, "{stderr:?}");
        assert!(stderr[0].ends_with(" stderr F one error"));
        assert!(stderr[1].ends_with(" stderr F partial"), "{stderr:?}");
    }

    #[test]
    fn a_closed_pipe_ends_the_copy_and_the_hook_still_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = CriLogWriter::open(dir.path().join("0.log"), Rotation::default()).unwrap();
        let (read, write) = nix::unistd::pipe().unwrap();
        drop(write);
        let mut hooked = false;
        copy_until_closed(
            vec![Source {
                pipe: read,
                stream: Stream::Stdout,
                tee: None,
            }],
            &mut writer,
            || hooked = true,
        );
        assert!(hooked);
        writer.close().unwrap();
        assert_eq!(std::fs::read(dir.path().join("0.log")).unwrap(), b"");
    }
}
