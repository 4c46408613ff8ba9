//! Display helpers: joining pieces, and neutralising terminal controls.

use super::*;

fn record(stream: Stream, partial: bool, content: &str, secs: u64) -> std::io::Result<LogRecord> {
    Ok(LogRecord {
        time: at(secs),
        stream,
        partial,
        content: content.as_bytes().to_vec(),
    })
}

#[test]
fn join_partials_rebuilds_each_streams_lines() {
    use Stream::{Stderr, Stdout};
    let input = vec![
        record(Stdout, true, "out-a ", 1),
        record(Stderr, true, "err-a ", 2),
        record(Stdout, true, "out-b ", 3),
        record(Stderr, false, "err-end", 4),
        record(Stdout, false, "out-end", 5),
        record(Stdout, false, "whole", 6),
        record(Stderr, true, "never finished", 7),
    ];
    let joined: Vec<LogRecord> = join_partials(input)
        .collect::<std::io::Result<_>>()
        .unwrap();
    let got: Vec<(Stream, bool, &[u8], SystemTime)> = joined
        .iter()
        .map(|r| (r.stream, r.partial, &r.content[..], r.time))
        .collect();
    assert_eq!(
        got,
        [
            (Stderr, false, &b"err-a err-end"[..], at(2)),
            (Stdout, false, &b"out-a out-b out-end"[..], at(1)),
            (Stdout, false, &b"whole"[..], at(6)),
            (Stderr, true, &b"never finished"[..], at(7)),
        ]
    );
}

#[test]
fn join_partials_bounds_a_line_that_never_ends() {
    let piece = "x".repeat(16 * 1024);
    let endless = (0..200).map(|i| record(Stream::Stdout, true, &piece, i));
    let joined: Vec<LogRecord> = join_partials(endless)
        .collect::<std::io::Result<_>>()
        .unwrap();
    assert!(joined.iter().all(|r| r.content.len() <= MAX_JOINED_LINE));
    let total: usize = joined.iter().map(|r| r.content.len()).sum();
    assert_eq!(total, 200 * 16 * 1024);
}

#[test]
fn join_partials_passes_errors_through() {
    let input = vec![
        record(Stream::Stdout, false, "ok", 1),
        Err(std::io::Error::other("disk on fire")),
    ];
    let mut joined = join_partials(input);
    assert!(joined.next().unwrap().is_ok());
    assert!(joined.next().unwrap().is_err());
    assert!(joined.next().is_none());
}

#[test]
fn printable_neutralises_terminal_controls() {
    let cases: [(&[u8], &str); 12] = [
        (b"\x1b[2J", "\\x1b[2J"),
        (b"\x1b]0;title\x07", "\\x1b]0;title\\x07"),
        ("\u{9b}31mred".as_bytes(), "\\u{9b}31mred"),
        (b"nul\x00here", "nul\\x00here"),
        (b"bad \xff\xfe utf8 \xc3\x28", "bad \\xff\\xfe utf8 \\xc3("),
        (b"cut \xe2\x82", "cut \\xe2\\x82"),
        (b"tab\tkept", "tab\tkept"),
        (b"over\rwrite\n", "over\\rwrite\\n"),
        (b"bs\x08 del\x7f", "bs\\x08 del\\x7f"),
        ("bidi \u{202e}txt".as_bytes(), "bidi \\u{202e}txt"),
        ("line\u{2028}sep".as_bytes(), "line\\u{2028}sep"),
        ("ünïcödé ✓ 日本".as_bytes(), "ünïcödé ✓ 日本"),
    ];
    for (input, want) in cases {
        assert_eq!(printable(input), want, "{input:?}");
    }
}

#[test]
fn printable_output_never_contains_a_control_character() {
    let every_byte: Vec<u8> = (0..=255).collect();
    let every_c1: String = ('\u{80}'..='\u{9f}').collect();
    for input in [every_byte, every_c1.into_bytes()] {
        let shown = printable(&input);
        assert!(
            shown.chars().all(|c| c == '\t' || !c.is_control()),
            "{shown:?}"
        );
    }
}
