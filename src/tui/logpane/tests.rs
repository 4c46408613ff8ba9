//! The log pane's behaviour, read back from rendered buffers.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Color;

use super::*;
use crate::tui::theme::Theme;

fn rec(text: &str) -> LogRecord {
    LogRecord {
        time: None,
        stream: LogStream::Stdout,
        partial: false,
        text: text.into(),
    }
}

fn rec_at(text: &str, time: DateTime<Utc>) -> LogRecord {
    LogRecord {
        time: Some(time),
        ..rec(text)
    }
}

fn partial(text: &str, stream: LogStream) -> LogRecord {
    LogRecord {
        stream,
        partial: true,
        ..rec(text)
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap()
}

fn draw(pane: &mut LogPane, w: u16, h: u16) -> Buffer {
    let area = Rect::new(0, 0, w, h);
    let mut buf = Buffer::empty(area);
    pane.render(area, &mut buf, &Theme::dark(), true);
    buf
}

/// The text rows inside the border, right-trimmed, as a terminal shows
/// them (the cell after a wide character is covered by it).
fn rows(buf: &Buffer) -> Vec<String> {
    let a = buf.area;
    (a.y + 1..a.bottom() - 1)
        .map(|y| {
            let mut row = String::new();
            let mut covered = 0;
            for x in a.x + 1..a.right() - 1 {
                if covered > 0 {
                    covered -= 1;
                    continue;
                }
                let sym = buf[(x, y)].symbol();
                covered = unicode_width::UnicodeWidthStr::width(sym).saturating_sub(1);
                row.push_str(sym);
            }
            row.trim_end().to_owned()
        })
        .collect()
}

fn title_row(buf: &Buffer) -> String {
    (0..buf.area.width).map(|x| buf[(x, 0)].symbol()).collect()
}

fn numbered(pane: &mut LogPane, n: usize) {
    for i in 0..n {
        pane.push(None, rec(&format!("line {i}")));
    }
}

#[test]
fn a_million_lines_keep_the_newest_capacity_and_render_the_last() {
    let mut pane = LogPane::new("big", LogPane::DEFAULT_CAPACITY);
    for i in 0..1_000_000 {
        pane.push(None, rec(&format!("line {i}")));
    }
    assert_eq!(pane.len(), LogPane::DEFAULT_CAPACITY);
    assert_eq!(&*pane.lines.front().unwrap().text, "line 900000");
    assert_eq!(&*pane.lines.back().unwrap().text, "line 999999");
    assert!(pane.dirty());
    let buf = draw(&mut pane, 80, 24);
    assert!(!pane.dirty());
    let want: Vec<String> = (999_978..1_000_000).map(|i| format!("line {i}")).collect();
    assert_eq!(rows(&buf), want);
    assert!(
        title_row(&buf).contains("100,000 lines"),
        "{}",
        title_row(&buf)
    );
    assert!(title_row(&buf).contains("[follow]"));
}

#[test]
fn a_small_ring_drops_the_oldest() {
    let mut pane = LogPane::new("small", 3);
    numbered(&mut pane, 5);
    assert_eq!(pane.len(), 3);
    assert_eq!(
        rows(&draw(&mut pane, 20, 6)),
        vec!["line 2", "line 3", "line 4", ""]
    );
}

#[test]
fn a_100k_char_line_is_cut_with_a_marker_and_drawn_inside_its_area() {
    let long: String = (0..100_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let mut pane = LogPane::new("long", 10);
    pane.push(None, rec("before"));
    pane.push(None, rec(&long));
    let stored = pane.lines.back().unwrap();
    assert_eq!(stored.text.len(), MAX_LINE_BYTES);
    assert_eq!(stored.cut as usize, 100_000 - MAX_LINE_BYTES);
    let marker = "…[34,464 bytes cut]";

    for wrap in [false, true] {
        if wrap {
            pane.handle(LogAction::ToggleWrap);
        }
        // A bigger buffer around the area: nothing may be drawn outside it.
        let mut buf = Buffer::empty(Rect::new(0, 0, 100, 30));
        let area = Rect::new(10, 3, 60, 20);
        pane.render(area, &mut buf, &Theme::dark(), false);
        for y in 0..30 {
            for x in 0..100 {
                if !area.contains((x, y).into()) {
                    assert_eq!(buf[(x, y)].symbol(), " ", "wrap {wrap}: drawn at {x},{y}");
                }
            }
        }
        let text: Vec<String> = (area.y + 1..area.bottom() - 1)
            .map(|y| {
                (area.x + 1..area.right() - 1)
                    .map(|x| buf[(x, y)].symbol())
                    .collect::<String>()
            })
            .collect();
        assert!(text.concat().contains(marker), "wrap {wrap}: {text:#?}");
        if wrap {
            // Following: the rows just above the end of the line.
            assert!(!text.iter().any(|r| r.starts_with("before")));
            let joined: String = text.concat();
            assert!(joined.contains(&long[MAX_LINE_BYTES - 200..MAX_LINE_BYTES]));
        } else {
            // Two lines: drawn from the top.
            assert!(text[0].starts_with("before"));
            let long_row = text[1].trim_end();
            assert!(long_row.ends_with(marker), "{long_row:?}");
            assert!(long_row.starts_with("abcdefghij"));
            assert_eq!(long_row.chars().count(), 58);
        }
    }
}

#[test]
fn a_line_cut_inside_an_escape_sequence_leaks_nothing() {
    let mut text = "x".repeat(MAX_LINE_BYTES - 3);
    text.push_str("\x1b]52;c;AAAA\x07tail");
    let mut pane = LogPane::new("edge", 10);
    pane.handle(LogAction::ToggleWrap);
    pane.push(None, rec(&text));
    assert!(!pane.lines[0].text.contains('\x1b'));
    let buf = draw(&mut pane, 40, 10);
    assert!(rows(&buf).last().unwrap().ends_with("bytes cut]"));
}

const FORBIDDEN: [char; 4] = ['\x1b', '\x07', '\u{9b}', '\r'];

#[test]
fn hostile_output_never_reaches_the_terminal_raw() {
    let hostile = [
        "clip\x1b]52;c;cm0gLXJmIH4=\x07board",
        "title\x1b]0;pwned\x07 set",
        "title st\x1b]2;pwned\x1b\\ set",
        "link \x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\",
        "\x1b[2J\x1b[Hcleared?",
        "cursor\x1b[5A\x1b[10;10H\x1b[2K\x1b[s\x1b[umoves",
        "dcs\x1bP+q544e\x1b\\ done",
        "apc\x1b_Ga=T;AAAA\x1b\\ done",
        "8-bit\u{9b}2J csi\u{9d}0;t\u{9c}",
        "bare escape \x1b",
        "bell\x07\x07",
        "rm -rf /\rls -la   ",
        "backspace evil\x08\x08\x08\x08good",
        "alt screen\x1b[?1049h",
        "unterminated osc \x1b]52;c;AAAA",
        "unterminated csi \x1b[12;",
        "nul\0del\x7f vt\x0b ff\x0c",
        "\x1b[31mRED\x1b[0m plain",
        "\x1b[38;5;82mgreen256\x1b[m \x1b[38;2;1;2;3mtrue\x1b[0m",
    ];
    let mut pane = LogPane::new("hostile\x1b]0;x\x07", 100);
    for line in hostile {
        pane.push(None, rec(line));
    }
    for wrap in [false, true] {
        if wrap {
            pane.handle(LogAction::ToggleWrap);
        }
        let buf = draw(&mut pane, 60, 30);
        for cell in buf.content() {
            let sym = cell.symbol();
            assert!(
                !sym.chars()
                    .any(|c| FORBIDDEN.contains(&c) || c.is_control()),
                "raw control in cell {sym:?}"
            );
        }
        let rows = rows(&buf);
        let find = |needle: &str| {
            rows.iter()
                .position(|r| r.contains(needle))
                .unwrap_or_else(|| panic!("{needle:?} not in {rows:#?}"))
        };
        find("clipboard");
        find("title set");
        find("rm -rf /\u{240d}ls -la");
        find("bell\u{2407}\u{2407}");
        find("cleared?");
        // SGR red becomes a red style on exactly the coloured text.
        let y = find("RED plain") as u16 + 1;
        assert_eq!(buf[(1, y)].symbol(), "R");
        assert_eq!(buf[(1, y)].fg, Color::Red);
        assert_eq!(buf[(5, y)].symbol(), "p");
        assert_eq!(buf[(5, y)].fg, Theme::dark().style(Role::Text).fg.unwrap());
        let y = find("green256") as u16 + 1;
        assert_eq!(buf[(1, y)].fg, Color::Indexed(82));
        assert_eq!(buf[(10, y)].fg, Color::Rgb(1, 2, 3));
    }
    assert_eq!(pane.title(), "hostile");
}

use crate::tui::theme::Role;

#[test]
fn wide_and_zero_width_characters_keep_the_layout() {
    let mut pane = LogPane::new("wide", 10);
    pane.handle(LogAction::ToggleWrap);
    // 8 columns of inner width: "ab日本語" is 2 + 6 = 8; the next wide char
    // would straddle the edge, so it moves to the next row.
    pane.push(None, rec("ab日本語x日"));
    pane.push(None, rec("e\u{301}🚀!"));
    let buf = draw(&mut pane, 10, 6);
    let r = rows(&buf);
    assert_eq!(r[0], "ab日本語");
    assert_eq!(r[1], "x日");
    assert_eq!(r[2], "e\u{301}🚀!");
    // The wide character's cell is followed by an empty one (ratatui's convention).
    assert_eq!(buf[(3, 1)].symbol(), "日");
    assert_eq!(buf[(4, 1)].symbol(), " ");
    assert_eq!(buf[(5, 1)].symbol(), "本");
    // Combining mark shares its base's cell; the rocket takes two.
    assert_eq!(buf[(1, 3)].symbol(), "e\u{301}");
    assert_eq!(buf[(2, 3)].symbol(), "🚀");
    assert_eq!(buf[(4, 3)].symbol(), "!");
    // Heights agree with what is drawn: two rows, then one.
    assert_eq!(pane.height(pane.first_seq), 2);
    // Without wrap the wide char that does not fit is left out, not split.
    pane.handle(LogAction::ToggleWrap);
    let r = rows(&draw(&mut pane, 9, 6));
    assert_eq!(r[0], "ab日本");
}

#[test]
fn timestamps_are_an_rfc3339_utc_prefix() {
    let mut pane = LogPane::new("ts", 10);
    pane.push(
        None,
        rec_at("hello", t0() + chrono::Duration::milliseconds(7)),
    );
    pane.push(None, rec("no time"));
    assert_eq!(rows(&draw(&mut pane, 40, 4)), vec!["hello", "no time"]);
    assert_eq!(
        pane.handle(LogAction::ToggleTimestamps).as_deref(),
        Some("timestamps on")
    );
    let buf = draw(&mut pane, 40, 4);
    assert_eq!(
        rows(&buf),
        vec![
            "2026-11-27T10:00:00.007Z hello".to_owned(),
            format!("{:<25}no time", "-")
        ]
    );
    assert!(title_row(&buf).contains("[time]"));
}

#[test]
fn merged_panes_prefix_each_line_with_its_source_and_join_partials_per_source() {
    let a: Arc<str> = Arc::from("pod-a");
    let b: Arc<str> = Arc::from("pod-b");
    let mut pane = LogPane::new("merged", 100);
    pane.push(Some(&a), partial("hel", LogStream::Stdout));
    pane.push(Some(&b), partial("wor", LogStream::Stdout));
    pane.push(Some(&a), partial("err ", LogStream::Stderr));
    pane.push(Some(&a), partial("lo ", LogStream::Stdout));
    assert_eq!(pane.len(), 0, "partial records are not lines yet");
    pane.push(Some(&b), rec("ld"));
    pane.push(Some(&a), rec("there"));
    pane.push(
        Some(&a),
        LogRecord {
            stream: LogStream::Stderr,
            ..rec("out")
        },
    );
    pane.push(None, rec("unsourced"));
    assert_eq!(
        rows(&draw(&mut pane, 40, 6)),
        vec![
            "[pod-b] world",
            "[pod-a] hello there",
            "[pod-a] err out",
            "unsourced"
        ]
    );
}

#[test]
fn partial_records_are_capped_while_joining() {
    let mut pane = LogPane::new("p", 10);
    for _ in 0..10 {
        pane.push(None, partial(&"y".repeat(16 * 1024), LogStream::Stdout));
    }
    pane.push(None, rec("end"));
    assert_eq!(pane.len(), 1);
    let line = &pane.lines[0];
    assert_eq!(line.text.len(), MAX_LINE_BYTES);
    assert_eq!(line.cut as usize, 10 * 16 * 1024 + 3 - MAX_LINE_BYTES);
}

#[test]
fn follow_scroll_and_bottom() {
    let mut pane = LogPane::new("f", 1000);
    numbered(&mut pane, 100);
    // 10 text rows.
    assert_eq!(rows(&draw(&mut pane, 30, 12))[9], "line 99");
    assert!(pane.following());
    assert_eq!(
        pane.handle(LogAction::ScrollUp(3)).as_deref(),
        Some("follow off")
    );
    assert!(!pane.following());
    let r = rows(&draw(&mut pane, 30, 12));
    assert_eq!(r[0], "line 87");
    assert_eq!(r[9], "line 96");
    // New lines do not move a scrolled view.
    numbered(&mut pane, 5);
    assert_eq!(rows(&draw(&mut pane, 30, 12))[0], "line 87");
    assert_eq!(pane.handle(LogAction::PageUp), None);
    assert_eq!(rows(&draw(&mut pane, 30, 12))[0], "line 78");
    pane.handle(LogAction::ScrollDown(2));
    assert_eq!(rows(&draw(&mut pane, 30, 12))[0], "line 80");
    pane.handle(LogAction::Top);
    assert_eq!(rows(&draw(&mut pane, 30, 12))[0], "line 0");
    pane.handle(LogAction::ScrollUp(5));
    assert_eq!(rows(&draw(&mut pane, 30, 12))[0], "line 0");
    // Scrolling down past the end stops with the last line at the bottom
    // and answers at once on the way back up.
    pane.handle(LogAction::ScrollDown(10_000));
    assert!(!pane.following());
    assert_eq!(rows(&draw(&mut pane, 30, 12))[9], "line 4");
    pane.handle(LogAction::ScrollUp(1));
    assert_eq!(rows(&draw(&mut pane, 30, 12))[9], "line 3");
    assert_eq!(pane.handle(LogAction::Bottom).as_deref(), Some("follow on"));
    assert!(pane.following());
    numbered(&mut pane, 1);
    assert_eq!(rows(&draw(&mut pane, 30, 12))[9], "line 0");
    assert_eq!(
        pane.handle(LogAction::ToggleFollow).as_deref(),
        Some("follow off")
    );
    numbered(&mut pane, 3);
    assert_eq!(rows(&draw(&mut pane, 30, 12))[9], "line 0");
    assert_eq!(
        pane.handle(LogAction::ToggleFollow).as_deref(),
        Some("follow on")
    );
    assert_eq!(rows(&draw(&mut pane, 30, 12))[9], "line 2");
}

#[test]
fn scrolling_with_wrap_moves_by_rows() {
    let mut pane = LogPane::new("w", 100);
    pane.handle(LogAction::ToggleWrap);
    for i in 0..20 {
        // 25 characters: three rows of 10.
        pane.push(None, rec(&format!("{i:02}-{}", "x".repeat(22))));
    }
    let r = rows(&draw(&mut pane, 12, 6));
    assert_eq!(r, vec!["xxxxx", "19-xxxxxxx", "xxxxxxxxxx", "xxxxx"]);
    pane.handle(LogAction::ScrollUp(1));
    let r = rows(&draw(&mut pane, 12, 6));
    assert_eq!(r, vec!["xxxxxxxxxx", "xxxxx", "19-xxxxxxx", "xxxxxxxxxx"]);
    pane.handle(LogAction::ScrollUp(1));
    assert_eq!(rows(&draw(&mut pane, 12, 6))[0], "18-xxxxxxx");
    pane.handle(LogAction::ScrollUp(1));
    assert_eq!(rows(&draw(&mut pane, 12, 6))[0], "xxxxx");
    pane.handle(LogAction::ScrollDown(2));
    assert_eq!(rows(&draw(&mut pane, 12, 6))[0], "xxxxxxxxxx");
}

#[test]
fn search_substring_regex_next_previous_and_errors() {
    let mut pane = LogPane::new("s", 1000);
    for i in 0..100 {
        let text = match i {
            10 => "GET /health 200".to_owned(),
            40 => "error: Timeout after 5s".to_owned(),
            70 => "warn: timed out".to_owned(),
            _ => format!("request {i} ok"),
        };
        pane.push(None, rec(&text));
    }
    draw(&mut pane, 40, 12);
    // Smart case: lower case matches any case.
    assert_eq!(
        pane.handle(LogAction::Search("timeout".into())).as_deref(),
        Some("1 line match \"timeout\"")
    );
    assert!(!pane.following());
    let buf = draw(&mut pane, 40, 12);
    let r = rows(&buf);
    let y = r
        .iter()
        .position(|l| l.starts_with("error: Timeout"))
        .expect("match shown") as u16
        + 1;
    let hl = Theme::dark().style(Role::Highlight);
    // "Timeout" starts at column 7 of the text.
    assert_eq!(buf[(1 + 7, y)].bg, hl.bg.unwrap());
    assert_eq!(buf[(1 + 6, y)].bg, Color::Reset);
    assert_eq!(buf[(1 + 14, y)].bg, Color::Reset);
    assert!(title_row(&buf).contains("[/timeout]"));

    assert_eq!(
        pane.handle(LogAction::Search("/(?i)time(out|d out)/".into()))
            .as_deref(),
        Some("2 lines match \"/(?i)time(out|d out)/\"")
    );
    // The newest match at or above the bottom of the view (line 40's view).
    assert_eq!(pane.search.as_ref().unwrap().current, Some(40));
    assert_eq!(pane.handle(LogAction::NextMatch), None);
    assert_eq!(pane.search.as_ref().unwrap().current, Some(70));
    let r = rows(&draw(&mut pane, 40, 12));
    assert!(r.iter().any(|l| l == "warn: timed out"), "{r:#?}");
    assert_eq!(
        pane.handle(LogAction::NextMatch).as_deref(),
        Some("search wrapped to the top")
    );
    assert_eq!(pane.search.as_ref().unwrap().current, Some(40));
    assert_eq!(
        pane.handle(LogAction::PreviousMatch).as_deref(),
        Some("search wrapped to the bottom")
    );
    assert_eq!(pane.search.as_ref().unwrap().current, Some(70));
    assert_eq!(pane.handle(LogAction::PreviousMatch), None);
    assert_eq!(pane.search.as_ref().unwrap().current, Some(40));
    let r = rows(&draw(&mut pane, 40, 12));
    assert!(r.iter().any(|l| l == "error: Timeout after 5s"), "{r:#?}");

    // Case-sensitive when the query has a capital.
    assert_eq!(
        pane.handle(LogAction::Search("GET".into())).as_deref(),
        Some("1 line match \"GET\"")
    );
    assert_eq!(
        pane.handle(LogAction::Search("Get".into())).as_deref(),
        Some("no match for \"Get\"")
    );

    // A bad regex names the error and keeps the search that was there.
    pane.handle(LogAction::Search("/health/".into()));
    let msg = pane.handle(LogAction::Search("/time(out/".into())).unwrap();
    assert!(msg.starts_with("bad regex /time(out/:"), "{msg}");
    assert!(msg.contains("unclosed group"), "{msg}");
    assert_eq!(pane.search.as_ref().unwrap().query, "/health/");
    assert_eq!(pane.len(), 100);

    assert_eq!(
        pane.handle(LogAction::ClearSearch).as_deref(),
        Some("search \"/health/\" cleared")
    );
    assert_eq!(
        pane.handle(LogAction::NextMatch).as_deref(),
        Some("no search: / to search")
    );
}

#[test]
fn search_sees_text_not_colour_codes() {
    let mut pane = LogPane::new("c", 10);
    pane.push(None, rec("\x1b[31merr\x1b[0mor here"));
    pane.push(None, rec("nothing"));
    assert_eq!(
        pane.handle(LogAction::Search("error".into())).as_deref(),
        Some("1 line match \"error\"")
    );
    assert_eq!(
        pane.handle(LogAction::Search("31m".into())).as_deref(),
        Some("no match for \"31m\"")
    );
}

#[test]
fn time_windows_filter_by_age() {
    let now = t0();
    let mut pane = LogPane::new("t", 1000);
    pane.set_clock(Some(now));
    let ago = |m: i64| now - chrono::Duration::minutes(m) + chrono::Duration::seconds(1);
    pane.push(None, rec_at("two hours", ago(120)));
    pane.push(None, rec_at("thirty minutes", ago(30)));
    pane.push(None, rec_at("ten minutes", ago(10)));
    pane.push(None, rec("no time"));
    pane.push(None, rec_at("three minutes", ago(3)));
    pane.push(None, rec_at("now", now));

    let shown = |pane: &mut LogPane| {
        rows(&draw(pane, 30, 9))
            .into_iter()
            .filter(|r| !r.is_empty())
            .collect::<Vec<_>>()
    };
    assert_eq!(shown(&mut pane).len(), 6);
    let steps = [
        ("1m", vec!["no time", "now"]),
        ("5m", vec!["no time", "three minutes", "now"]),
        (
            "15m",
            vec!["ten minutes", "no time", "three minutes", "now"],
        ),
        (
            "1h",
            vec![
                "thirty minutes",
                "ten minutes",
                "no time",
                "three minutes",
                "now",
            ],
        ),
    ];
    for (label, want) in steps {
        let msg = pane.handle(LogAction::CycleWindow).unwrap();
        assert_eq!(msg, format!("window {label}: {} lines", want.len()));
        let buf = draw(&mut pane, 30, 9);
        assert!(title_row(&buf).contains(&format!("[{label}]")));
        assert_eq!(shown(&mut pane), want, "window {label}");
    }
    // New lines join the window as they arrive.
    pane.push(None, rec_at("fresh", now));
    assert_eq!(shown(&mut pane).last().unwrap(), "fresh");
    // Time passes: lines age out of the window without a rescan.
    pane.set_clock(Some(now + chrono::Duration::minutes(45)));
    assert_eq!(
        shown(&mut pane),
        vec!["ten minutes", "no time", "three minutes", "now", "fresh"]
    );
    pane.set_clock(Some(now + chrono::Duration::minutes(61)));
    assert_eq!(shown(&mut pane), vec!["no time"]);
    // Search and save follow the window.
    assert_eq!(
        pane.handle(LogAction::Search("minutes".into())).as_deref(),
        Some("no match for \"minutes\"")
    );
    assert_eq!(
        pane.handle(LogAction::CycleWindow).unwrap(),
        "window tail: 7 lines"
    );
    assert_eq!(shown(&mut pane).len(), 7);
}

#[test]
fn scrolling_inside_a_window_skips_lines_outside_it() {
    let now = t0();
    let mut pane = LogPane::new("t", 1000);
    pane.set_clock(Some(now));
    for i in 0..50 {
        let age = if i % 2 == 0 { 0 } else { 120 };
        pane.push(
            None,
            rec_at(&format!("line {i}"), now - chrono::Duration::minutes(age)),
        );
    }
    pane.handle(LogAction::CycleWindow);
    let r = rows(&draw(&mut pane, 20, 6));
    assert_eq!(r, vec!["line 42", "line 44", "line 46", "line 48"]);
    pane.handle(LogAction::ScrollUp(2));
    assert_eq!(rows(&draw(&mut pane, 20, 6))[0], "line 38");
    pane.handle(LogAction::Top);
    assert_eq!(rows(&draw(&mut pane, 20, 6))[0], "line 0");
}

#[test]
fn save_writes_what_the_pane_holds_and_reports_errors() {
    let dir = tempfile::tempdir().unwrap();
    let src: Arc<str> = Arc::from("pod-a");
    let mut pane = LogPane::new("save", 1000);
    pane.push(Some(&src), rec_at("\x1b[32mok\x1b[0m\x07", t0()));
    pane.push(None, rec("plain"));
    for i in 0..1232 {
        pane.push(None, rec(&format!("n{i}")));
    }
    let path = dir.path().join("out.log");
    let msg = pane.handle(LogAction::Save(path.clone())).unwrap();
    assert_eq!(msg, format!("saved 1,000 lines to {}", path.display()));
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 1000);
    assert_eq!(text.lines().next(), Some("n232"));

    let mut small = LogPane::new("save", 10);
    small.push(Some(&src), rec_at("\x1b[32mok\x1b[0m\x07", t0()));
    small.push(None, rec("plain"));
    small.handle(LogAction::ToggleTimestamps);
    small.handle(LogAction::Save(path.clone()));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!(
            "[pod-a] 2026-11-27T10:00:00.000Z ok\u{2407}\n{:<25}plain\n",
            "-"
        )
    );

    let bad = dir.path().join("missing-dir").join("x.log");
    let msg = small.handle(LogAction::Save(bad.clone())).unwrap();
    assert!(
        msg.starts_with(&format!("cannot save to {}:", bad.display())),
        "{msg}"
    );
    assert_eq!(small.len(), 2);
    if Path::new("/dev/full").exists() {
        let mut pane = LogPane::new("full", 100_000);
        for i in 0..10_000 {
            pane.push(None, rec(&format!("line {i} {}", "z".repeat(100))));
        }
        let msg = pane.handle(LogAction::Save("/dev/full".into())).unwrap();
        assert!(msg.starts_with("cannot save to /dev/full:"), "{msg}");
        assert!(msg.contains("No space left"), "{msg}");
        assert_eq!(pane.len(), 10_000);
    }
}

#[test]
fn tiles() {
    let area = Rect::new(0, 1, 200, 50);
    assert!(tile(area, 0).is_empty());
    assert_eq!(tile(area, 1), vec![area]);
    // Wide: side by side.
    assert_eq!(
        tile(area, 2),
        vec![Rect::new(0, 1, 100, 50), Rect::new(100, 1, 100, 50)]
    );
    // An 80-column terminal stacks.
    let small = Rect::new(0, 0, 80, 24);
    assert_eq!(
        tile(small, 2),
        vec![Rect::new(0, 0, 80, 12), Rect::new(0, 12, 80, 12)]
    );
    let three = tile(Rect::new(0, 0, 121, 41), 3);
    assert_eq!(
        three,
        vec![
            Rect::new(0, 0, 61, 21),
            Rect::new(61, 0, 60, 21),
            Rect::new(0, 21, 121, 20)
        ]
    );
    let four = tile(small, 4);
    assert_eq!(four.len(), 4);
    assert_eq!(four[3], Rect::new(40, 12, 40, 12));
    assert_eq!(tile(small, 9).len(), 4);
    // Every tile inside the area, no overlap.
    for n in 1..=4 {
        let tiles = tile(small, n);
        let cells: usize = tiles.iter().map(|r| r.area() as usize).sum();
        assert_eq!(cells, small.area() as usize, "{n} panes");
        assert!(tiles.iter().all(|r| small.union(*r) == small));
    }
}

#[test]
fn tiny_and_empty_areas_do_not_panic() {
    let mut pane = LogPane::new("tiny", 10);
    draw(&mut pane, 2, 2);
    pane.push(None, rec("日本語 text"));
    pane.handle(LogAction::ToggleWrap);
    for (w, h) in [(1, 1), (2, 2), (3, 3), (4, 5), (0, 0)] {
        let area = Rect::new(0, 0, w, h);
        let mut buf = Buffer::empty(area);
        pane.render(area, &mut buf, &Theme::no_color(), false);
    }
    pane.handle(LogAction::Search("/./".into()));
    pane.handle(LogAction::NextMatch);
    draw(&mut pane, 3, 3);
}
