//! The stream: read once and to its end, with flat memory, and broken
//! streams reported as errors, not panics.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use tar::EntryType;

use super::*;

/// Counts what the unpacker reads, as the caller's digest check would.
struct Counting<R> {
    inner: R,
    read: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

#[test]
fn a_200_mib_file_streams_with_flat_memory() {
    const SIZE: u64 = 200 << 20;
    let sb = Sandbox::new();
    let mut h = header(EntryType::Regular, "big", "", SIZE, 0o644);
    h.set_cksum();
    let head = Layer::new().dir("d/").finish();
    // The builder's tail is the two zero blocks; splice the big entry in
    // before them, generated on the fly.
    let (dirs, end) = head.split_at(head.len() - 1024);
    let stream = io::Cursor::new(dirs.to_vec())
        .chain(io::Cursor::new(h.as_bytes().to_vec()))
        .chain(io::repeat(0x5a).take(SIZE))
        .chain(io::Cursor::new(end.to_vec()));
    let read = Rc::new(Cell::new(0));
    let counting = Counting {
        inner: stream,
        read: read.clone(),
    };
    // Reset the peak resident set so the high-water mark below is ours.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_kib("VmRSS:");
    let stats = apply_layer(counting, &sb.dest).unwrap();
    let peak = status_kib("VmHWM:");
    assert_eq!(stats.bytes, SIZE);
    assert_eq!(read.get(), head.len() as u64 + 512 + SIZE);
    let md = sb.lstat("big");
    assert_eq!(md.len(), SIZE);
    let growth_mib = peak.saturating_sub(before) / 1024;
    assert!(
        growth_mib < 64,
        "memory grew by {growth_mib} MiB for a 200 MiB file"
    );
}

#[test]
fn the_stream_is_read_to_its_end() {
    let sb = Sandbox::new();
    let mut layer = Layer::new().file("f", "x").finish();
    // Some writers pad archives to a record size past the end blocks.
    layer.extend(vec![0u8; 9 * 1024]);
    let read = Rc::new(Cell::new(0));
    let counting = Counting {
        inner: &layer[..],
        read: read.clone(),
    };
    apply_layer(counting, &sb.dest).unwrap();
    assert_eq!(read.get(), layer.len() as u64);
}

#[test]
fn skipped_entries_with_data_are_read_past() {
    let sb = Sandbox::new();
    let mut dev = header(EntryType::Char, "dev/x", "", 5000, 0o600);
    dev.set_device_major(1).unwrap();
    let layer = Layer::new()
        .raw(
            header(EntryType::Directory, "d/", "", 3000, 0o755),
            &[7u8; 3000],
        )
        .raw(dev, &[9u8; 5000])
        .file(".wh..wh.plnk", "aufs")
        .file("after", "ok")
        .finish();
    sb.apply(&layer).unwrap();
    assert_eq!(sb.read("after"), "ok");
}

#[test]
fn a_truncated_stream_names_the_entry_it_broke_in() {
    let sb = Sandbox::new();
    let layer = Layer::new().file("f", &"x".repeat(4000)).finish();
    let cut = &layer[..512 + 1000];
    match sb.apply(cut) {
        Err(UnpackError::Stream { entry, .. }) => assert_eq!(entry, "f"),
        other => panic!("expected a stream error, got {other:?}"),
    }
}

#[test]
fn a_corrupt_header_is_a_tar_error() {
    let sb = Sandbox::new();
    let mut layer = Layer::new().file("f", "x").file("g", "y").finish();
    layer[1024] ^= 0xff; // first byte of g's name: checksum no longer matches
    match sb.apply(&layer) {
        Err(UnpackError::Tar(e)) => assert!(e.to_string().contains("\"f\""), "{e}"),
        other => panic!("expected a tar error, got {other:?}"),
    }
}

#[test]
fn a_huge_long_name_is_refused_without_buffering_it() {
    let sb = Sandbox::new();
    let mut h = header(EntryType::GNULongName, "././@LongLink", "", 4 << 30, 0o644);
    h.set_cksum();
    let stream = io::Cursor::new(h.as_bytes().to_vec()).chain(io::repeat(b'a').take(4 << 30));
    match apply_layer(stream, &sb.dest) {
        Err(UnpackError::Tar(e)) => assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}"),
        other => panic!("expected a tar error, got {other:?}"),
    }
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let sb = Sandbox::new();
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    assert!(sb.apply(&garbage).is_err());
    assert!(sb.apply(&[]).is_ok());
}
