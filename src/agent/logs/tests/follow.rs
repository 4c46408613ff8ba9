//! Following: a writer thread produces numbered lines while the reader
//! follows; every number must come out once, in order, across rotations.

use std::thread;

use super::*;

const POLL: Duration = Duration::from_millis(10);

fn number(record: &LogRecord) -> usize {
    let text = std::str::from_utf8(&record.content).expect("utf-8");
    text.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a numbered line: {text:?}"))
}

/// Follows `path` until the writer (which calls `stop` when done) has
/// finished, and returns every record's number.
fn follow_numbers(reader: LogReader) -> (Vec<usize>, ReadStats) {
    let mut reader = reader;
    let mut numbers = Vec::new();
    for record in reader.by_ref() {
        numbers.push(number(&record.expect("follow")));
    }
    (numbers, reader.stats())
}

fn query(follow: bool) -> LogQuery {
    LogQuery {
        follow,
        ..LogQuery::default()
    }
}

#[test]
fn follow_crosses_rotations_without_loss_or_duplicates() {
    const COUNT: usize = 10_000;
    let (_dir, path) = scratch();
    // The writer must be open before the reader starts, or the reader would
    // wait for the file (covered by its own test).
    let mut writer = CriLogWriter::open(&path, small_rotation(32 * 1024, 10)).unwrap();
    let reader = read_logs(&path, &query(true)).with_poll_interval(POLL);
    let stop = reader.stop_handle();
    let producer = thread::spawn(move || {
        for i in 0..COUNT {
            // Split lines across writes too, so records complete in a later
            // write than they start.
            let text = format!("{i} padding padding padding\n");
            let (head, tail) = text.as_bytes().split_at(i % 7);
            writer.write(Stream::Stdout, head).unwrap();
            writer.write(Stream::Stdout, tail).unwrap();
            // About 1.5 MB/s on disk: the 9 rotated files of 32 KiB hold
            // ~190 ms of it, a wide margin over the 10 ms poll even on a
            // loaded machine (a reader that falls further behind than the
            // files reach loses data by design).
            if i % 20 == 0 {
                thread::sleep(Duration::from_millis(1));
            }
        }
        writer.close().unwrap();
        stop.stop();
    });
    let (numbers, stats) = follow_numbers(reader);
    producer.join().unwrap();
    assert!(
        rotated_path(&path, 9).exists(),
        "the test must rotate more than max_files times"
    );
    assert_eq!(numbers.len(), COUNT, "{stats:?}");
    assert!(
        numbers.iter().copied().eq(0..COUNT),
        "out of order or duplicated"
    );
    assert_eq!(stats, ReadStats::default());
}

#[test]
fn follow_finds_its_way_through_several_rotations_between_polls() {
    let (_dir, path) = scratch();
    let mut writer = CriLogWriter::open(&path, small_rotation(300, 50)).unwrap();
    writer.write(Stream::Stdout, b"0 first\n").unwrap();
    // A slow poll: every burst below rotates several times while the reader
    // sleeps, so it must walk .k, .k-1, ... back up to the live file.
    let reader = read_logs(&path, &query(true)).with_poll_interval(Duration::from_millis(150));
    let stop = reader.stop_handle();
    let producer = thread::spawn(move || {
        let mut next = 1;
        for _ in 0..4 {
            thread::sleep(Duration::from_millis(100));
            for _ in 0..25 {
                writer
                    .write(Stream::Stderr, format!("{next} burst\n").as_bytes())
                    .unwrap();
                next += 1;
            }
        }
        writer.close().unwrap();
        stop.stop();
        next
    });
    let (numbers, stats) = follow_numbers(reader);
    let count = producer.join().unwrap();
    assert!(numbers.iter().copied().eq(0..count), "{numbers:?}");
    assert_eq!(stats, ReadStats::default());
}

#[test]
fn follow_waits_for_a_log_that_does_not_exist_yet() {
    let (_dir, path) = scratch();
    let reader = read_logs(&path, &query(true)).with_poll_interval(POLL);
    let stop = reader.stop_handle();
    let writer_path = path.clone();
    let producer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        let mut writer = CriLogWriter::open(&writer_path, Rotation::default()).unwrap();
        for i in 0..3 {
            writer
                .write(Stream::Stdout, format!("{i}\n").as_bytes())
                .unwrap();
            thread::sleep(Duration::from_millis(20));
        }
        writer.close().unwrap();
        stop.stop();
    });
    let (numbers, _) = follow_numbers(reader);
    producer.join().unwrap();
    assert_eq!(numbers, [0, 1, 2]);
}

#[test]
fn follow_with_tail_starts_from_the_last_records() {
    let (_dir, path) = scratch();
    let mut writer = CriLogWriter::open(&path, Rotation::default()).unwrap();
    for i in 0..10 {
        writer
            .write(Stream::Stdout, format!("{i}\n").as_bytes())
            .unwrap();
    }
    // A record being written when the reader starts: read whole once done.
    writer.write(Stream::Stdout, b"1").unwrap();
    let query = LogQuery {
        tail: Some(2),
        follow: true,
        ..LogQuery::default()
    };
    let mut reader = read_logs(&path, &query).with_poll_interval(POLL);
    let first: Vec<usize> = reader
        .by_ref()
        .take(2)
        .map(|r| number(&r.unwrap()))
        .collect();
    assert_eq!(first, [8, 9]);
    let stop = reader.stop_handle();
    let producer = thread::spawn(move || {
        writer.write(Stream::Stdout, b"0\n11\n").unwrap();
        writer.close().unwrap();
        stop.stop();
    });
    let (rest, _) = follow_numbers(reader);
    producer.join().unwrap();
    assert_eq!(rest, [10, 11]);
}

#[test]
fn a_stopped_follower_ends_at_the_end_of_the_live_file() {
    let (_dir, path) = scratch();
    let mut writer = CriLogWriter::open(&path, Rotation::default()).unwrap();
    writer.write(Stream::Stdout, b"0\n1\n").unwrap();
    let reader = read_logs(&path, &query(true)).with_poll_interval(POLL);
    reader.stop_handle().stop();
    let (numbers, _) = follow_numbers(reader);
    assert_eq!(numbers, [0, 1]);
}

#[test]
fn follow_races_a_writer_rotating_as_fast_as_it_can() {
    // No throttle and a rotation every ~30 records, but nothing is ever
    // deleted: any loss or duplicate is the reader mistaking which file
    // comes next while renames happen under it.
    const COUNT: usize = 6_000;
    let (_dir, path) = scratch();
    let mut writer = CriLogWriter::open(&path, small_rotation(2048, 100_000)).unwrap();
    let reader = read_logs(&path, &query(true)).with_poll_interval(Duration::from_millis(1));
    let stop = reader.stop_handle();
    let producer = thread::spawn(move || {
        for i in 0..COUNT {
            writer
                .write(Stream::Stdout, format!("{i} fast\n").as_bytes())
                .unwrap();
        }
        writer.close().unwrap();
        stop.stop();
    });
    let (numbers, stats) = follow_numbers(reader);
    producer.join().unwrap();
    assert!(rotated_path(&path, 100).exists());
    assert_eq!(stats, ReadStats::default());
    assert!(
        numbers.iter().copied().eq(0..COUNT),
        "lost or duplicated records"
    );
}
