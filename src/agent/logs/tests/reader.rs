//! The reader without following: tail, since, streams, and hostile files.

use std::io::ErrorKind;

use super::*;

fn contents(records: &[LogRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.content).into_owned())
        .collect()
}

/// 200 numbered lines over several rotated files, alternating streams.
fn rotated_log(path: &Path) {
    let mut writer = CriLogWriter::open(path, small_rotation(1500, 100)).unwrap();
    for i in 0..200 {
        let stream = if i % 2 == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        writer
            .write(stream, format!("n{i:03}\n").as_bytes())
            .unwrap();
    }
    writer.close().unwrap();
    assert!(rotated_path(path, 5).exists(), "the log spans many files");
}

fn names(range: impl Iterator<Item = usize>) -> Vec<String> {
    range.map(|i| format!("n{i:03}")).collect()
}

#[test]
fn reads_rotated_files_oldest_first() {
    let (_dir, path) = scratch();
    rotated_log(&path);
    assert_eq!(contents(&records(&path)), names(0..200));
}

#[test]
fn without_follow_the_log_is_what_it_was_when_reading_began() {
    // A container writing on while `logs --tail 2` reads must not make it
    // print a third line, nor a plain `logs` read on and on.
    let (_dir, path) = scratch();
    let mut writer = CriLogWriter::open(&path, Rotation::default()).unwrap();
    let write = |writer: &mut CriLogWriter, range: std::ops::Range<usize>| {
        for i in range {
            writer
                .write(Stream::Stdout, format!("n{i:03}\n").as_bytes())
                .unwrap();
        }
    };
    write(&mut writer, 0..10);
    let all_then: Vec<String> = names(0..10).into_iter().chain(names(0..5)).collect();
    for (tail, want) in [(Some(2), names(8..10)), (None, all_then)] {
        let mut reader = read_logs(
            &path,
            &LogQuery {
                tail,
                ..LogQuery::default()
            },
        );
        let mut got = vec![reader.next().expect("a record").expect("read")];
        write(&mut writer, 0..5);
        got.extend(reader.map(|r| r.expect("read")));
        assert_eq!(contents(&got), want, "tail {tail:?}");
    }
    writer.close().unwrap();
}

#[test]
fn tail_reaches_back_across_rotated_files() {
    let (_dir, path) = scratch();
    rotated_log(&path);
    let tail = |n| {
        let query = LogQuery {
            tail: Some(n),
            ..LogQuery::default()
        };
        contents(&read_all(&path, &query).0)
    };
    assert_eq!(tail(1), names(199..200));
    assert_eq!(tail(75), names(125..200));
    assert_eq!(tail(200), names(0..200));
    assert_eq!(tail(10_000), names(0..200));
    assert!(tail(0).is_empty());
}

#[test]
fn tail_counts_only_the_chosen_stream() {
    let (_dir, path) = scratch();
    rotated_log(&path);
    let query = LogQuery {
        tail: Some(40),
        streams: Streams::Stderr,
        ..LogQuery::default()
    };
    let (records, _) = read_all(&path, &query);
    assert_eq!(contents(&records), names((121..200).step_by(2)));
    assert!(records.iter().all(|r| r.stream == Stream::Stderr));
}

#[test]
fn tail_of_long_lines_crosses_read_blocks() {
    let (_dir, path) = scratch();
    let mut writer = CriLogWriter::open(&path, Rotation::default()).unwrap();
    for i in 0..40u8 {
        // 40 KiB lines: 3 records each, lines straddling the 64 KiB blocks.
        let mut line = vec![b'a' + i % 26; 40 * 1024];
        line.push(b'\n');
        writer.write(Stream::Stdout, &line).unwrap();
    }
    writer.close().unwrap();
    let query = LogQuery {
        tail: Some(7),
        ..LogQuery::default()
    };
    let joined: Vec<LogRecord> = join_partials(read_logs(&path, &query))
        .collect::<std::io::Result<_>>()
        .unwrap();
    // 7 records = the last line's 3, the one before's 3, and the final F
    // piece of the third last.
    assert_eq!(joined.len(), 3);
    assert_eq!(joined[0].content.len(), 40 * 1024 - 2 * 16 * 1024);
    assert_eq!(joined[2].content, vec![b'a' + 39 % 26; 40 * 1024]);
}

#[test]
fn since_keeps_records_at_or_after_the_time() {
    let (_dir, path) = scratch();
    let text: String = (0..10)
        .map(|i| line(at(1_000 + i), "stdout", "F", &format!("t{i}")))
        .collect();
    fs::write(&path, text).unwrap();
    let query = LogQuery {
        since: Some(at(1_007)),
        ..LogQuery::default()
    };
    assert_eq!(contents(&read_all(&path, &query).0), ["t7", "t8", "t9"]);
    let query = LogQuery {
        since: Some(at(1_003)),
        tail: Some(2),
        ..LogQuery::default()
    };
    assert_eq!(contents(&read_all(&path, &query).0), ["t8", "t9"]);
}

#[test]
fn a_torn_last_line_is_not_returned() {
    let (_dir, path) = scratch();
    let whole = line(at(1), "stdout", "F", "one") + &line(at(2), "stderr", "F", "two");
    fs::write(&path, whole + "1970-01-01T00:00:03.000000000Z stdout F thr").unwrap();
    let (records, stats) = read_all(&path, &LogQuery::default());
    assert_eq!(contents(&records), ["one", "two"]);
    assert_eq!(stats.torn_lines, 1);
    assert_eq!(stats.garbage_lines, 0);

    let tail = LogQuery {
        tail: Some(1),
        ..LogQuery::default()
    };
    assert_eq!(contents(&read_all(&path, &tail).0), ["two"]);
}

#[test]
fn garbage_lines_are_skipped_and_counted() {
    let (_dir, path) = scratch();
    let mut bytes = Vec::new();
    bytes.extend(line(at(1), "stdout", "F", "first").as_bytes());
    let garbage: [&[u8]; 10] = [
        b"",
        b"not a log line at all",
        b"\x00\xff\xfe\x1b[2J binary",
        b"2026-13-01T00:00:00Z stdout F bad month",
        b"1970-01-01T00:00:01Z stdin F bad stream",
        b"1970-01-01T00:00:01Z stdout X bad tag",
        b"1970-01-01T00:00:01Z stdout",
        b"1970-01-01T00:00:01Z",
        b"1970-01-01T00:00:01Zstdout F no space",
        b"1970-01-01T00:00:01Z  stdout F two spaces",
    ];
    for junk in garbage {
        bytes.extend(junk);
        bytes.push(b'\n');
    }
    // A 3 MiB line: far past any record, and not to be held whole.
    bytes.extend(std::iter::repeat_n(b'z', 3 << 20));
    bytes.push(b'\n');
    bytes.extend(line(at(2), "stderr", "P", "second").as_bytes());
    // Other writers' forms: trimmed fraction, offset, extra tags, no space
    // before empty content.
    bytes.extend(b"1970-01-01T01:00:03.5+01:00 stdout F:x third\n");
    bytes.extend(b"1970-01-01T00:00:04Z stdout F\n");
    fs::write(&path, &bytes).unwrap();

    let (records, stats) = read_all(&path, &LogQuery::default());
    assert_eq!(contents(&records), ["first", "second", "third", ""]);
    assert!(records[1].partial);
    assert_eq!(records[2].time, at(3) + Duration::from_millis(500));
    assert_eq!(stats.garbage_lines, 11);

    for n in [1, 3, 4, 100] {
        let query = LogQuery {
            tail: Some(n),
            ..LogQuery::default()
        };
        let want = &["first", "second", "third", ""][4usize.saturating_sub(n)..];
        assert_eq!(contents(&read_all(&path, &query).0), want, "tail {n}");
    }
}

#[test]
fn parse_errors_say_what_is_wrong() {
    assert_eq!(parse_record(b"junk"), Err(ParseError::Timestamp));
    assert_eq!(
        parse_record(b"1970-01-01T00:00:01Z stdin F x"),
        Err(ParseError::Stream)
    );
    assert_eq!(
        parse_record(b"1970-01-01T00:00:01Z stdout Q x"),
        Err(ParseError::Tag)
    );
    assert_eq!(
        parse_record(b"1970-01-01T00:00:01Z stdout"),
        Err(ParseError::Truncated)
    );
    let record = parse_record(b"2016-10-06T00:17:09.669794202Z stdout P log content 1").unwrap();
    assert_eq!(record.content, b"log content 1");
    assert!(record.partial);
}

#[test]
fn a_missing_log_is_an_error_item_not_a_panic() {
    let (_dir, path) = scratch();
    let mut reader = read_logs(&path, &LogQuery::default());
    let error = reader.next().unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound);
    assert!(reader.next().is_none());
}

#[test]
fn an_empty_log_reads_as_nothing() {
    let (_dir, path) = scratch();
    fs::write(&path, "").unwrap();
    for tail in [None, Some(0), Some(5)] {
        let query = LogQuery {
            tail,
            ..LogQuery::default()
        };
        assert!(read_all(&path, &query).0.is_empty());
    }
}

#[test]
fn write_raw_prints_like_kubectl() {
    let record = LogRecord {
        time: at(1_795_773_600),
        stream: Stream::Stdout,
        partial: false,
        content: b"\x1b[31mred".to_vec(),
    };
    let mut out = Vec::new();
    record.write_raw(&mut out, false).unwrap();
    record.write_raw(&mut out, true).unwrap();
    let piece = LogRecord {
        partial: true,
        ..record
    };
    piece.write_raw(&mut out, false).unwrap();
    assert_eq!(
        out,
        b"\x1b[31mred\n2026-11-27T10:00:00.000000000Z \x1b[31mred\n\x1b[31mred"
    );
}
