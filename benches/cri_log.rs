//! Throughput of container logs through the CRI writer (issue 4's figure:
//! a container writing 100-byte lines as fast as it can, goal ≥ 100 MB/s),
//! and of reading them back.
//!
//! Run with `cargo bench --bench cri_log`. Throughput is in decimal MB/s of
//! container output (the records on disk are ~40 bytes per line bigger).
//!
//! Two ways the shim can receive the same output:
//! * `pipe_chunks_64k`: a container writing as fast as it can fills its pipe,
//!   so the shim's reads return up to 64 KiB, lines cut at arbitrary places.
//!   This is the figure the goal is about.
//! * `one_line_per_write`: the worst case, each read returning one line (a
//!   container that writes slowly enough for the shim to keep up line by
//!   line), so each line costs its own `write(2)`.
//!
//! And end to end through a real pipe: `pipe_*_container` has a thread play
//! the container (one `write(2)` per line, or stdio's 4 KiB buffer) while
//! the measured loop plays the shim (64 KiB reads into the writer), so read
//! sizes are whatever the race between them makes; each `…_discard` peer is
//! the same without logging, the floor set by the pipe and the container.

use std::hint::black_box;
use std::io::{Read, Write};
use std::thread;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flotilla::agent::logs::{CriLogWriter, LogQuery, Rotation, Stream, read_logs};

const LINE: usize = 100;

/// `n` lines of 100 bytes (99 printable bytes and the newline), numbered so
/// they differ.
fn lines(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * LINE);
    for i in 0..n {
        let start = out.len();
        out.extend_from_slice(format!("{i:08} level=info msg=\"request served\" ").as_bytes());
        out.resize(start + LINE - 1, b'.');
        out.push(b'\n');
    }
    out
}

fn write_throughput(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut group = c.benchmark_group("cri_write_100B_lines");
    group.measurement_time(Duration::from_secs(5));

    // The real rotation settings, so the files stay bounded (50 MiB) and the
    // cost of rotating is included.
    let mut writer =
        CriLogWriter::open(dir.path().join("chunks.log"), Rotation::default()).expect("open");
    let output = lines(64 * 1024 / LINE * 4);
    let chunks: Vec<&[u8]> = output.chunks(64 * 1024).collect();
    let per_iter: usize = chunks.iter().map(|c| c.len()).sum();
    group.throughput(Throughput::BytesDecimal(per_iter as u64));
    group.bench_function("pipe_chunks_64k", |b| {
        b.iter(|| {
            for chunk in &chunks {
                writer
                    .write(Stream::Stdout, black_box(chunk))
                    .expect("write");
            }
        })
    });

    let mut writer =
        CriLogWriter::open(dir.path().join("lines.log"), Rotation::default()).expect("open");
    let output = lines(1000);
    group.throughput(Throughput::BytesDecimal(output.len() as u64));
    group.bench_function("one_line_per_write", |b| {
        b.iter(|| {
            for line in output.chunks(LINE) {
                writer
                    .write(Stream::Stdout, black_box(line))
                    .expect("write");
            }
        })
    });

    // End to end, for a container writing each line with its own write(2)
    // (unbuffered) and one using stdio's 4 KiB pipe buffer; each beside its
    // peer, the same pipe with a shim that discards what it reads: the floor
    // that logging adds to.
    let output = lines(20_000);
    group.throughput(Throughput::BytesDecimal(output.len() as u64));
    let mut writer =
        CriLogWriter::open(dir.path().join("pipe.log"), Rotation::default()).expect("open");
    for (name, container_write) in [("unbuffered", LINE), ("stdio_4k", 4096)] {
        group.bench_function(format!("pipe_{name}_container_discard"), |b| {
            b.iter(|| {
                let total = pipe_through(&output, container_write, |_| {});
                assert_eq!(total, output.len());
            })
        });
        group.bench_function(format!("pipe_{name}_container"), |b| {
            b.iter(|| {
                let total = pipe_through(&output, container_write, |chunk| {
                    writer.write(Stream::Stdout, chunk).expect("write")
                });
                assert_eq!(total, output.len());
            })
        });
    }
    group.finish();
}

/// Plays a container writing `output` into a pipe in `container_write`-byte
/// writes on another thread, and a shim reading it in 64 KiB reads handed
/// to `shim`. Returns the bytes the shim read.
fn pipe_through(output: &[u8], container_write: usize, mut shim: impl FnMut(&[u8])) -> usize {
    let (mut from_container, mut to_shim) = std::io::pipe().expect("pipe");
    thread::scope(|scope| {
        scope.spawn(move || {
            for piece in output.chunks(container_write) {
                to_shim.write_all(piece).expect("container write");
            }
        });
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0;
        loop {
            let n = from_container.read(&mut buf).expect("shim read");
            if n == 0 {
                break total;
            }
            shim(&buf[..n]);
            total += n;
        }
    })
}

fn read_throughput(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("0.log");
    let output = lines(100_000);
    {
        let mut writer = CriLogWriter::open(&path, Rotation::default()).expect("open");
        for chunk in output.chunks(64 * 1024) {
            writer.write(Stream::Stdout, chunk).expect("write");
        }
        writer.close().expect("close");
    }
    let mut group = c.benchmark_group("cri_read_100B_lines");
    group.throughput(Throughput::BytesDecimal(output.len() as u64));
    group.bench_function("all_10MB", |b| {
        b.iter(|| {
            let mut count = 0;
            for record in read_logs(&path, &LogQuery::default()) {
                black_box(record.expect("read"));
                count += 1;
            }
            assert_eq!(count, 100_000);
        })
    });
    group.finish();
}

criterion_group!(benches, write_throughput, read_throughput);
criterion_main!(benches);
