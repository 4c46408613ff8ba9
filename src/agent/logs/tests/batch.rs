//! Reading in batches ([`LogReader::next_batch`]): the same records as one
//! at a time, in order, none lost or repeated across rotations, each batch
//! within its bounds, and a record longer than the byte bound still whole.

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

/// Every batch until the reader ends, empty ones (a follower's idle polls)
/// left out.
fn batches(mut reader: LogReader, limits: BatchLimits) -> (Vec<Vec<LogRecord>>, ReadStats) {
    let mut out = Vec::new();
    while let Some(batch) = reader.next_batch(limits) {
        let batch = batch.expect("read");
        if !batch.is_empty() {
            out.push(batch);
        }
    }
    (out, reader.stats())
}

/// Lines `0 …`, `1 …` of `width` bytes (newline included) over files of
/// `max_bytes`, nothing deleted.
fn numbered_log(path: &Path, count: usize, width: usize, max_bytes: u64) {
    let mut writer = CriLogWriter::open(path, small_rotation(max_bytes, 100_000)).unwrap();
    for i in 0..count {
        let mut line = format!("{i} ");
        line.extend(std::iter::repeat_n(
            'x',
            width.saturating_sub(line.len() + 1),
        ));
        line.push('\n');
        writer.write(Stream::Stdout, line.as_bytes()).unwrap();
    }
    writer.close().unwrap();
}

#[test]
fn batches_hold_the_records_in_order_within_their_bounds() {
    let (_dir, path) = scratch();
    numbered_log(&path, 2000, 20, 4096);
    assert!(rotated_path(&path, 5).exists(), "the log spans many files");
    let one_by_one = records(&path);

    // Bounded by count.
    let limits = BatchLimits {
        records: 7,
        bytes: 1 << 20,
    };
    let (by_count, stats) = batches(read_logs(&path, &LogQuery::default()), limits);
    assert!(by_count.iter().all(|b| !b.is_empty() && b.len() <= 7));
    assert!(
        by_count.iter().rev().skip(1).all(|b| b.len() == 7),
        "only the last is short"
    );
    assert_eq!(by_count.concat(), one_by_one);
    assert_eq!(stats, ReadStats::default());

    // Bounded by bytes: a batch stops at the record that reaches the bound.
    let limits = BatchLimits {
        records: 10_000,
        bytes: 100,
    };
    let (by_bytes, _) = batches(read_logs(&path, &LogQuery::default()), limits);
    for batch in &by_bytes {
        let before_last: usize = batch[..batch.len() - 1]
            .iter()
            .map(|r| r.content.len())
            .sum();
        assert!(
            before_last < 100,
            "{before_last} bytes before the last record"
        );
    }
    assert!(
        by_bytes.len() > 2000 * 19 / 100 / 2,
        "{} batches",
        by_bytes.len()
    );
    assert_eq!(by_bytes.concat(), one_by_one);

    // The defaults, with tail: the last records, the same as one by one.
    let query = LogQuery {
        tail: Some(1500),
        ..LogQuery::default()
    };
    let (tailed, _) = batches(read_logs(&path, &query), BatchLimits::default());
    let want: Vec<LogRecord> = read_logs(&path, &query).map(Result::unwrap).collect();
    assert_eq!(tailed.concat(), want);
    assert_eq!(want.len(), 1500);
}

#[test]
fn a_follower_hands_on_what_is_written_without_waiting_for_a_full_batch() {
    let (_dir, path) = scratch();
    let mut writer = CriLogWriter::open(&path, Rotation::default()).unwrap();
    for i in 0..5 {
        writer
            .write(Stream::Stdout, format!("{i}\n").as_bytes())
            .unwrap();
    }
    let query = LogQuery {
        follow: true,
        ..LogQuery::default()
    };
    let mut reader = read_logs(&path, &query).with_poll_interval(POLL);
    let limits = BatchLimits::default();
    let numbers = |batch: Vec<LogRecord>| batch.iter().map(number).collect::<Vec<_>>();
    assert_eq!(
        numbers(reader.next_batch(limits).unwrap().unwrap()),
        [0, 1, 2, 3, 4]
    );
    // Nothing new: an empty batch after one poll, not a wait for records.
    assert_eq!(reader.next_batch(limits).unwrap().unwrap(), []);
    writer.write(Stream::Stdout, b"5\n6\n7").unwrap();
    assert_eq!(numbers(reader.next_batch(limits).unwrap().unwrap()), [5, 6]);
    writer.write(Stream::Stdout, b"\n").unwrap();
    reader.stop_handle().stop();
    assert_eq!(numbers(reader.next_batch(limits).unwrap().unwrap()), [7]);
    assert!(reader.next_batch(limits).is_none());
}

#[test]
fn batched_follow_crosses_rotations_without_loss_or_duplicates() {
    const COUNT: usize = 20_000;
    let (_dir, path) = scratch();
    let mut writer = CriLogWriter::open(&path, small_rotation(8 * 1024, 100_000)).unwrap();
    let query = LogQuery {
        follow: true,
        ..LogQuery::default()
    };
    let reader = read_logs(&path, &query).with_poll_interval(Duration::from_millis(1));
    let stop = reader.stop_handle();
    let producer = thread::spawn(move || {
        for i in 0..COUNT {
            writer
                .write(Stream::Stdout, format!("{i} padding padding\n").as_bytes())
                .unwrap();
        }
        writer.close().unwrap();
        stop.stop();
    });
    let limits = BatchLimits {
        records: 50,
        bytes: 600,
    };
    let (got, stats) = batches(reader, limits);
    producer.join().unwrap();
    assert!(rotated_path(&path, 20).exists(), "the test must rotate");
    assert_eq!(stats, ReadStats::default());
    assert!(got.iter().all(|b| b.len() <= 50));
    let numbers: Vec<usize> = got.iter().flatten().map(number).collect();
    assert!(
        numbers.iter().copied().eq(0..COUNT),
        "lost or duplicated records ({} read)",
        numbers.len()
    );
}

#[test]
fn a_100000_character_line_is_delivered_whole() {
    let long: String = "0123456789".repeat(10_000);

    // Through our writer: 16 KiB `P` pieces, then the `F` end; the pieces
    // come in order and join to the line.
    let (_dir, path) = scratch();
    let mut writer = CriLogWriter::open(&path, Rotation::default()).unwrap();
    writer.write(Stream::Stdout, b"before\n").unwrap();
    writer
        .write(Stream::Stdout, format!("{long}\nafter\n").as_bytes())
        .unwrap();
    writer.close().unwrap();
    let limits = BatchLimits {
        records: 1024,
        bytes: 20_000,
    };
    let (got, _) = batches(read_logs(&path, &LogQuery::default()), limits);
    let all = got.concat();
    assert_eq!(
        all.first().map(|r| r.content.as_slice()),
        Some(&b"before"[..])
    );
    assert_eq!(
        all.last().map(|r| r.content.as_slice()),
        Some(&b"after"[..])
    );
    let pieces = &all[1..all.len() - 1];
    assert!(pieces.len() > 1 && pieces[..pieces.len() - 1].iter().all(|r| r.partial));
    let joined: Vec<u8> = pieces.iter().flat_map(|r| r.content.clone()).collect();
    assert_eq!(joined, long.as_bytes());

    // From a runtime that writes long lines as one record: it passes the
    // byte bound alone, whole, and ends its batch.
    let (_dir, path) = scratch();
    let text = format!(
        "{}{}{}",
        line(at(1), "stdout", "F", "a"),
        line(at(2), "stdout", "F", &long),
        line(at(3), "stdout", "F", "b")
    );
    fs::write(&path, text).unwrap();
    let (got, stats) = batches(read_logs(&path, &LogQuery::default()), limits);
    assert_eq!(stats, ReadStats::default());
    let sizes: Vec<Vec<usize>> = got
        .iter()
        .map(|b| b.iter().map(|r| r.content.len()).collect())
        .collect();
    assert_eq!(sizes, [vec![1, 100_000], vec![1]]);
    assert_eq!(got[0][1].content, long.as_bytes());
}
