//! Any output, however written, reads back exactly: random bytes and
//! newlines in random chunks on both streams, through the writer (with
//! rotation), the reader and `join_partials`, give each stream's bytes back.

use proptest::prelude::*;

use super::*;

/// One write: a stream and its bytes.
fn chunk() -> impl Strategy<Value = (bool, Vec<u8>)> {
    let byte = prop_oneof![3 => Just(b'\n'), 1 => Just(b'\r'), 1 => Just(0x1b), 12 => any::<u8>()];
    let bytes = prop_oneof![
        8 => prop::collection::vec(byte, 0..200),
        // Long runs, to cross the 16 KiB split within and across writes.
        1 => (any::<u8>(), 1..40_000usize, any::<bool>()).prop_map(|(b, len, newline)| {
            let fill = if b == b'\n' { b'x' } else { b };
            let mut run = vec![fill; len];
            if newline {
                run.push(b'\n');
            }
            run
        }),
    ];
    (any::<bool>(), bytes)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn what_is_written_is_what_is_read(chunks in prop::collection::vec(chunk(), 0..30)) {
        let (_dir, path) = scratch();
        // Nothing is deleted (many files allowed), so everything must come back.
        let mut writer = CriLogWriter::open(&path, small_rotation(20_000, 10_000)).unwrap();
        let mut written: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        for (is_stderr, bytes) in &chunks {
            let stream = if *is_stderr { Stream::Stderr } else { Stream::Stdout };
            writer.write(stream, bytes).unwrap();
            written[stream.index()].extend_from_slice(bytes);
        }
        writer.close().unwrap();

        let (records, stats) = read_all(&path, &LogQuery::default());
        prop_assert_eq!(stats, ReadStats::default());
        for record in &records {
            prop_assert!(record.content.len() <= MAX_RECORD_CONTENT);
            prop_assert!(!record.partial || record.content.len() == MAX_RECORD_CONTENT);
        }
        let mut read: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        for record in join_partials(records.into_iter().map(Ok)) {
            let record = record.unwrap();
            prop_assert!(!record.partial, "close ends every line");
            read[record.stream.index()].extend_from_slice(&record.content);
            read[record.stream.index()].push(b'\n');
        }
        for (mut expected, got) in written.into_iter().zip(read) {
            // Close writes an unfinished last line as a full one.
            if !expected.is_empty() && !expected.ends_with(b"\n") {
                expected.push(b'\n');
            }
            prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn the_reader_never_panics_on_arbitrary_files(
        bytes in prop::collection::vec(
            prop_oneof![
                4 => any::<u8>(),
                2 => Just(b'\n'),
                1 => Just(b' '),
            ],
            0..2000,
        ),
        tail in proptest::option::of(0..20usize),
    ) {
        let (_dir, path) = scratch();
        // Valid records around the noise, so the parser gets past the
        // timestamp sometimes.
        let mut file = line(at(1), "stdout", "F", "a").into_bytes();
        file.extend(&bytes);
        file.extend(line(at(2), "stderr", "P", "b").as_bytes());
        fs::write(&path, &file).unwrap();
        let query = LogQuery { tail, ..LogQuery::default() };
        let (records, _) = read_all(&path, &query);
        let full = read_all(&path, &LogQuery::default()).0;
        // Tail is the end of the full read.
        let want = tail.map_or(full.len(), |n| n.min(full.len()));
        prop_assert_eq!(&records[..], &full[full.len() - want..]);
    }
}
