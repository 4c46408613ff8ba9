//! The writer: exact bytes on disk, line assembly, splitting and rotation.

use super::*;

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`
fn is_timestamp(ts: &[u8]) -> bool {
    ts.len() == 30
        && ts.iter().enumerate().all(|(i, &b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            19 => b == b'.',
            29 => b == b'Z',
            _ => b.is_ascii_digit(),
        })
}

#[test]
fn records_have_the_exact_cri_shape() {
    let (_dir, path) = scratch();
    let before = SystemTime::now();
    let mut writer = CriLogWriter::open(&path, Rotation::default()).unwrap();
    writer.write(Stream::Stdout, b"hello world\n").unwrap();
    writer.write(Stream::Stderr, b"oops\n\n").unwrap();
    writer.close().unwrap();
    let after = SystemTime::now();

    let lines = raw_lines(&path);
    let expected: [&[u8]; 3] = [b" stdout F hello world", b" stderr F oops", b" stderr F "];
    assert_eq!(lines.len(), expected.len());
    for (line, rest) in lines.iter().zip(expected) {
        assert!(
            is_timestamp(&line[..30]),
            "{}",
            String::from_utf8_lossy(line)
        );
        assert_eq!(&line[30..], rest);
        let time = super::super::timestamp::parse_rfc3339(&line[..30]).unwrap();
        // The format has nanoseconds; the clock may not: allow a truncation.
        assert!(time + Duration::from_micros(1) >= before && time <= after);
    }
}

#[test]
fn each_write_is_on_disk_when_it_returns() {
    let (_dir, path) = scratch();
    let mut writer = CriLogWriter::open(&path, Rotation::default()).unwrap();
    writer.write(Stream::Stdout, b"one\ntw").unwrap();
    // No flush, no close: a follower must already see the complete line.
    assert_eq!(
        shape(&records(&path)),
        [(Stream::Stdout, 'F', b"one".to_vec())]
    );
    writer.write(Stream::Stdout, b"o\n").unwrap();
    assert_eq!(records(&path).len(), 2);
}

#[test]
fn partial_lines_are_held_across_writes() {
    let (_dir, path) = scratch();
    let mut writer = CriLogWriter::open(&path, Rotation::default()).unwrap();
    for chunk in [&b"hel"[..], b"lo wo", b"", b"rld\nnext", b" line"] {
        writer.write(Stream::Stdout, chunk).unwrap();
    }
    assert_eq!(
        shape(&records(&path)),
        [(Stream::Stdout, 'F', b"hello world".to_vec())]
    );
    writer.close().unwrap();
    assert_eq!(
        shape(&records(&path)),
        [
            (Stream::Stdout, 'F', b"hello world".to_vec()),
            (Stream::Stdout, 'F', b"next line".to_vec()),
        ]
    );
}

#[test]
fn streams_keep_their_own_incomplete_lines() {
    let (_dir, path) = scratch();
    let mut writer = CriLogWriter::open(&path, Rotation::default()).unwrap();
    writer.write(Stream::Stdout, b"a1").unwrap();
    writer.write(Stream::Stderr, b"b1").unwrap();
    writer.write(Stream::Stdout, b"a2\n").unwrap();
    writer.write(Stream::Stderr, b"b2\nb3").unwrap();
    writer.write(Stream::Stdout, b"a3\na4").unwrap();
    writer.close().unwrap();
    assert_eq!(
        shape(&records(&path)),
        [
            (Stream::Stdout, 'F', b"a1a2".to_vec()),
            (Stream::Stderr, 'F', b"b1b2".to_vec()),
            (Stream::Stdout, 'F', b"a3".to_vec()),
            // On close, both tails as full lines.
            (Stream::Stdout, 'F', b"a4".to_vec()),
            (Stream::Stderr, 'F', b"b3".to_vec()),
        ]
    );
}

/// The records a line of `len` bytes becomes, written in `chunk`-byte writes.
fn split_line(len: usize, chunk: usize, newline: bool) -> Vec<(Stream, char, usize)> {
    let (_dir, path) = scratch();
    let mut data: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
    if newline {
        data.push(b'\n');
    }
    let mut writer = CriLogWriter::open(&path, Rotation::default()).unwrap();
    for piece in data.chunks(chunk.max(1)) {
        writer.write(Stream::Stdout, piece).unwrap();
    }
    writer.close().unwrap();
    let records = records(&path);
    let joined: Vec<u8> = records.iter().flat_map(|r| r.content.clone()).collect();
    assert_eq!(joined, data[..len], "content survives splitting");
    shape(&records)
        .into_iter()
        .map(|(s, tag, content)| (s, tag, content.len()))
        .collect()
}

#[test]
fn a_long_line_becomes_16k_partial_pieces_and_a_final_full_one() {
    const K16: usize = 16 * 1024;
    let mut expected = vec![(Stream::Stdout, 'P', K16); 6];
    expected.push((Stream::Stdout, 'F', 100 * 1024 - 6 * K16));
    for chunk in [usize::MAX, 1000, K16, K16 + 1, 7] {
        assert_eq!(
            split_line(100 * 1024, chunk, true),
            expected,
            "chunk {chunk}"
        );
    }
    // At the boundary: exactly 16 KiB is one full record, even when its
    // newline (or the close) comes in a later write.
    assert_eq!(split_line(K16, K16, true), [(Stream::Stdout, 'F', K16)]);
    assert_eq!(
        split_line(K16, usize::MAX, false),
        [(Stream::Stdout, 'F', K16)]
    );
    assert_eq!(
        split_line(K16 + 1, K16, true),
        [(Stream::Stdout, 'P', K16), (Stream::Stdout, 'F', 1)]
    );
    assert_eq!(
        split_line(2 * K16, 100, false),
        [(Stream::Stdout, 'P', K16), (Stream::Stdout, 'F', K16)]
    );
}

#[test]
fn binary_escapes_and_carriage_returns_are_stored_as_written() {
    let (_dir, path) = scratch();
    let every_byte: Vec<u8> = (0..=255u8).filter(|&b| b != b'\n').collect();
    let lines: Vec<Vec<u8>> = vec![
        every_byte.clone(),
        b"progress 10%\rprogress 20%\r".to_vec(),
        b"\x1b[2J\x1b[H\x1b]0;pwned\x07".to_vec(),
        vec![0xff, 0xfe, 0xc3, 0x28, 0x00, 0xe2, 0x82],
        "\u{9b}31m red \u{202e}".as_bytes().to_vec(),
        b"  leading and trailing spaces  ".to_vec(),
        b"stdout F looks like a header".to_vec(),
    ];
    let mut writer = CriLogWriter::open(&path, Rotation::default()).unwrap();
    for line in &lines {
        let mut with_newline = line.clone();
        with_newline.push(b'\n');
        writer.write(Stream::Stderr, &with_newline).unwrap();
    }
    writer.close().unwrap();
    let got: Vec<Vec<u8>> = records(&path).into_iter().map(|r| r.content).collect();
    assert_eq!(got, lines);
}

#[test]
fn reopening_a_torn_file_does_not_swallow_the_next_record() {
    let (_dir, path) = scratch();
    fs::write(
        &path,
        line(at(1), "stdout", "F", "kept") + "2026-11-27T10:00:00.0Z std",
    )
    .unwrap();
    let mut writer = CriLogWriter::open(&path, Rotation::default()).unwrap();
    writer.write(Stream::Stdout, b"after restart\n").unwrap();
    writer.close().unwrap();
    let (records, stats) = read_all(&path, &LogQuery::default());
    let contents: Vec<_> = records.into_iter().map(|r| r.content).collect();
    assert_eq!(contents, [b"kept".to_vec(), b"after restart".to_vec()]);
    assert_eq!(stats.garbage_lines, 1);
}

/// Writes `count` numbered lines of about 50 bytes, one write each.
fn numbered(path: &Path, rotation: Rotation, count: usize) {
    let mut writer = CriLogWriter::open(path, rotation).unwrap();
    for i in 0..count {
        writer
            .write(
                Stream::Stdout,
                format!("line {i:06} ................\n").as_bytes(),
            )
            .unwrap();
    }
    writer.close().unwrap();
}

fn number(record: &LogRecord) -> usize {
    std::str::from_utf8(&record.content[5..11])
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn rotation_keeps_max_files_of_at_most_max_bytes_with_whole_records() {
    let (dir, path) = scratch();
    numbered(&path, small_rotation(1000, 3), 200);

    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["0.log", "0.log.1", "0.log.2"]);
    for n in 0..3 {
        let file = if n == 0 {
            path.clone()
        } else {
            rotated_path(&path, n)
        };
        let len = fs::metadata(&file).unwrap().len();
        assert!(len <= 1000, "{} is {len} bytes", file.display());
        for raw in raw_lines(&file) {
            parse_record(&raw).expect("every line is a whole record");
        }
    }
    // The rotated files are full: each was rotated only when the next
    // record did not fit.
    let record_len = raw_lines(&path)[0].len() as u64 + 1;
    assert!(fs::metadata(rotated_path(&path, 1)).unwrap().len() > 1000 - record_len);

    // What is kept is the newest output, contiguous, oldest file first.
    let records = records(&path);
    let numbers: Vec<usize> = records.iter().map(number).collect();
    let first = numbers[0];
    assert_eq!(numbers, (first..200).collect::<Vec<_>>());
}

#[test]
fn a_record_larger_than_max_bytes_gets_a_file_of_its_own() {
    let (_dir, path) = scratch();
    let mut writer = CriLogWriter::open(&path, small_rotation(100, 10)).unwrap();
    writer.write(Stream::Stdout, b"small\n").unwrap();
    writer.write(Stream::Stdout, &[b'x'; 500]).unwrap();
    writer.write(Stream::Stdout, b"\nsmall again\n").unwrap();
    writer.close().unwrap();
    assert_eq!(raw_lines(&rotated_path(&path, 2)).len(), 1);
    assert_eq!(raw_lines(&rotated_path(&path, 1)).len(), 1);
    assert_eq!(raw_lines(&path).len(), 1);
    assert_eq!(records(&path)[1].content, [b'x'; 500]);
}

#[test]
fn rotation_removes_files_left_from_a_larger_max_files() {
    let (_dir, path) = scratch();
    for n in 1..=6 {
        fs::write(
            rotated_path(&path, n),
            line(at(n as u64), "stdout", "F", "old"),
        )
        .unwrap();
    }
    numbered(&path, small_rotation(200, 3), 10);
    assert!(rotated_path(&path, 2).exists());
    for n in 3..=6 {
        assert!(!rotated_path(&path, n).exists(), ".{n} should be gone");
    }
}

#[test]
fn a_failed_rotation_keeps_the_records_in_the_current_file() {
    let (_dir, path) = scratch();
    // A directory where the oldest rotated file is to be deleted: rotation fails.
    let blocker = rotated_path(&path, 1);
    fs::create_dir(&blocker).unwrap();
    fs::write(blocker.join("inside"), "").unwrap();
    let mut writer = CriLogWriter::open(&path, small_rotation(60, 2)).unwrap();
    writer.write(Stream::Stdout, b"first\n").unwrap();
    let error = writer.write(Stream::Stdout, b"second\n").unwrap_err();
    assert!(matches!(error, WriteError::Rotate { .. }), "{error}");
    assert_eq!(raw_lines(&path).len(), 2, "kept, past max_bytes");

    // Once the obstacle is gone, the next record rotates as usual.
    fs::remove_dir_all(&blocker).unwrap();
    writer.write(Stream::Stdout, b"third\n").unwrap();
    writer.close().unwrap();
    assert_eq!(raw_lines(&rotated_path(&path, 1)).len(), 2);
    let contents: Vec<Vec<u8>> = records(&path).into_iter().map(|r| r.content).collect();
    assert_eq!(contents, [&b"first"[..], b"second", b"third"]);
}

#[test]
fn a_deleted_live_file_is_started_afresh_at_rotation() {
    let (_dir, path) = scratch();
    let mut writer = CriLogWriter::open(&path, small_rotation(100, 3)).unwrap();
    writer
        .write(Stream::Stdout, b"lost with its file\n")
        .unwrap();
    fs::remove_file(&path).unwrap();
    writer.write(Stream::Stdout, b"after\n").unwrap();
    writer.close().unwrap();
    assert_eq!(
        shape(&records(&path)),
        [(Stream::Stdout, 'F', b"after".to_vec())]
    );
}

#[test]
fn rotation_moves_files_only_up_to_a_gap() {
    let (_dir, path) = scratch();
    // .2 is missing: .3 is older than anything that will be shifted, and stays.
    fs::write(rotated_path(&path, 1), line(at(1), "stdout", "F", "one")).unwrap();
    fs::write(rotated_path(&path, 3), line(at(0), "stdout", "F", "zero")).unwrap();
    let mut writer = CriLogWriter::open(&path, small_rotation(10, 10)).unwrap();
    writer.write(Stream::Stdout, b"two\nthree\n").unwrap();
    writer.close().unwrap();
    let contents: Vec<Vec<u8>> = records(&path).into_iter().map(|r| r.content).collect();
    assert_eq!(contents, [&b"zero"[..], b"one", b"two", b"three"]);
}

#[test]
fn max_files_below_two_still_keeps_one_rotated_file() {
    let (_dir, path) = scratch();
    numbered(&path, small_rotation(200, 0), 20);
    assert!(rotated_path(&path, 1).exists());
    assert!(!rotated_path(&path, 2).exists());
}

#[test]
fn dropping_the_writer_writes_its_tails() {
    let (_dir, path) = scratch();
    {
        let mut writer = CriLogWriter::open(&path, Rotation::default()).unwrap();
        writer.write(Stream::Stderr, b"last words").unwrap();
    }
    assert_eq!(
        shape(&records(&path)),
        [(Stream::Stderr, 'F', b"last words".to_vec())]
    );
}

#[test]
fn log_paths_follow_the_kubelet_layout() {
    let dir = Path::new("/var/log/pods/ns_pod_uid/app");
    assert_eq!(instance_log_path(dir, 0), dir.join("0.log"));
    assert_eq!(instance_log_path(dir, 3), dir.join("3.log"));
    assert_eq!(previous_log_path(dir, 3), Some(dir.join("2.log")));
    assert_eq!(previous_log_path(dir, 0), None);
    assert_eq!(rotated_path(&dir.join("2.log"), 4), dir.join("2.log.4"));
}
