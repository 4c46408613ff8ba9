//! Container output made safe to put on the operator's terminal.
//!
//! Log text is written by whatever runs in a container, so it is hostile by
//! default: an OSC 52 sequence would write the operator's clipboard, OSC 0
//! retitles the window, `CSI 2J` clears the screen, cursor moves and CRs
//! paint over lines the operator has already read, DCS/APC strings reach
//! terminal extensions. This module owns the one pass every line goes
//! through before it is stored, and the reading of what that pass keeps.
//!
//! The rules, applied to each record's text:
//! * SGR (`ESC [ params m`, params only digits, `;` and `:`) is kept, because
//!   coloured output is useful and is turned into ratatui styles at render
//!   time ([`sgr_style`]); nothing else of it reaches the terminal.
//! * Every other escape is dropped whole: CSI with any other final byte (or
//!   with intermediates or private markers), OSC (ended by BEL or ST), DCS,
//!   SOS, PM, APC (ended by ST), two- and three-byte `ESC x` forms, a bare
//!   ESC, and the 8-bit C1 controls U+0080–U+009F, whose introducers (U+009B
//!   CSI, U+009D OSC, U+0090 DCS, …) swallow their sequence just as a
//!   terminal would. A sequence still open at the end of the line is dropped
//!   to the end of the line: the terminal would have swallowed it too.
//! * TAB becomes spaces to the next multiple of 8 columns, so widths are
//!   known without the terminal's help.
//! * Other C0 controls and DEL become their Unicode control pictures
//!   (U+2400–U+241F, U+2421): visible, one column wide, and never
//!   interpreted. A single trailing CR (CRLF output) is dropped: it carries
//!   nothing and would mark every line of a Windows-style program.
//! * Bidirectional overrides and isolates and the Unicode line and paragraph
//!   separators become U+FFFD: they reorder or break text on the terminals
//!   that honour them, and a log viewer must show text in byte order.
//!
//! The result therefore holds no control character at all except ESC, and
//! every ESC in it starts a well-formed SGR sequence.

use std::borrow::Cow;

use ratatui::style::{Color, Modifier, Style};
use unicode_width::UnicodeWidthChar;

const ESC: char = '\x1b';
/// Longest SGR parameter string kept; longer ones are dropped (no real
/// program needs more, and it bounds the work of reading them back).
const MAX_SGR_PARAMS: usize = 64;
const TAB_STOP: usize = 8;

/// One line after [`sanitize`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sanitized {
    /// Safe text; ESC appears only as the start of an SGR sequence.
    pub text: String,
    /// Whether `text` holds any SGR sequence.
    pub has_sgr: bool,
    /// Bytes of the input not represented because the output reached its cap.
    pub cut: usize,
}

/// Sanitises `input` (one line, no newline) by the rules in the module
/// documentation, stopping once the output reaches `max_bytes` (expansion of
/// tabs and control pictures could otherwise multiply a capped input); the
/// input bytes left over are counted in [`Sanitized::cut`].
pub fn sanitize(input: &str, max_bytes: usize) -> Sanitized {
    let input = input.strip_suffix('\r').unwrap_or(input);
    let mut out = Sanitized {
        text: String::with_capacity(input.len().min(max_bytes)),
        ..Sanitized::default()
    };
    // Display column within the line, for tab stops.
    let mut col = 0usize;
    let mut chars = input.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if out.text.len() >= max_bytes {
            out.cut = input.len() - at;
            break;
        }
        match c {
            ESC => match chars.peek().map(|&(_, c)| c) {
                Some('[') => {
                    chars.next();
                    let start = chars.peek().map_or(input.len(), |&(i, _)| i);
                    if let Some(params) = csi(&mut chars, input, start)
                        && params.len() <= MAX_SGR_PARAMS
                    {
                        out.text.push(ESC);
                        out.text.push('[');
                        out.text.push_str(params);
                        out.text.push('m');
                        out.has_sgr = true;
                    }
                }
                Some(']') => {
                    chars.next();
                    string_sequence(&mut chars, true);
                }
                Some('P' | 'X' | '^' | '_') => {
                    chars.next();
                    string_sequence(&mut chars, false);
                }
                Some(' '..='/') => {
                    // nF escapes (charset designation, DECALN…): intermediates, then a final.
                    while chars.next_if(|&(_, c)| matches!(c, ' '..='/')).is_some() {}
                    chars.next_if(|&(_, c)| matches!(c, '0'..='~'));
                }
                Some('0'..='~') => {
                    // Fp/Fe/Fs escapes: ESC 7, ESC c (full reset), ESC M…
                    chars.next();
                }
                // A bare ESC (end of line, or before a control or non-ASCII
                // character, which is then read on its own).
                _ => {}
            },
            '\u{9b}' => {
                let start = chars.peek().map_or(input.len(), |&(i, _)| i);
                // 8-bit CSI: dropped even when it is SGR; 7-bit is what programs write.
                let _ = csi(&mut chars, input, start);
            }
            '\u{9d}' => string_sequence(&mut chars, true),
            '\u{90}' | '\u{98}' | '\u{9e}' | '\u{9f}' => string_sequence(&mut chars, false),
            '\u{80}'..='\u{9f}' => {}
            '\t' => {
                let n = TAB_STOP - col % TAB_STOP;
                out.text.extend(std::iter::repeat_n(' ', n));
                col += n;
            }
            '\0'..='\x1f' => {
                out.text
                    .push(char::from_u32(0x2400 + c as u32).unwrap_or('\u{fffd}'));
                col += 1;
            }
            '\x7f' => {
                out.text.push('\u{2421}');
                col += 1;
            }
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}' => {
                out.text.push('\u{fffd}');
                col += 1;
            }
            c => {
                out.text.push(c);
                col += c.width().unwrap_or(0);
            }
        }
    }
    out
}

/// Reads a CSI sequence after its introducer; returns its parameters when it
/// is a plain SGR (`params m`, params of digits, `;`, `:`), `None` for any
/// other sequence, which is consumed either way. A character that cannot be
/// part of a CSI ends the sequence unconsumed, to be read on its own, as a
/// terminal would.
fn csi<'a>(
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    input: &'a str,
    start: usize,
) -> Option<&'a str> {
    let mut plain = true;
    let mut seen_intermediate = false;
    while let Some(&(at, c)) = chars.peek() {
        match c {
            '0'..='?' if !seen_intermediate => {
                plain &= matches!(c, '0'..='9' | ';' | ':');
            }
            ' '..='/' => {
                seen_intermediate = true;
                plain = false;
            }
            '@'..='~' => {
                chars.next();
                return (plain && c == 'm').then(|| &input[start..at]);
            }
            _ => return None,
        }
        chars.next();
    }
    None
}

/// Skips an OSC/DCS/SOS/PM/APC string up to and including its terminator: ST
/// (`ESC \` or U+009C), or BEL for OSC. Unterminated, it runs to the end.
fn string_sequence(chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>, bel_ends: bool) {
    while let Some((_, c)) = chars.next() {
        match c {
            '\x07' if bel_ends => return,
            '\u{9c}' => return,
            ESC => {
                // ESC \ is ST; any other ESC also ends the string (xterm
                // aborts it), and is dropped with the character after it.
                chars.next();
                return;
            }
            _ => {}
        }
    }
}

/// A piece of stored (sanitised) text: printable text or an SGR parameter
/// string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(&'a str),
    Sgr(&'a str),
}

/// Splits sanitised text into text and SGR pieces.
pub fn pieces(text: &str) -> impl Iterator<Item = Piece<'_>> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        if let Some(after) = rest.strip_prefix("\x1b[") {
            // Sanitised: an SGR always ends with its `m`.
            let end = after.find('m').unwrap_or(after.len());
            let params = &after[..end];
            rest = after.get(end + 1..).unwrap_or("");
            return Some(Piece::Sgr(params));
        }
        // Only SGR starts with ESC in sanitised text; a stray ESC (text that
        // did not come from `sanitize`) is passed over rather than looped on.
        let skip = usize::from(rest.starts_with(ESC));
        let end = rest[skip..].find(ESC).map_or(rest.len(), |i| i + skip);
        let (text, tail) = rest.split_at(end);
        let text = &text[skip..];
        rest = tail;
        Some(Piece::Text(text))
    })
}

/// Sanitised text without its SGR sequences: what is searched and saved.
pub fn strip_sgr(text: &str) -> Cow<'_, str> {
    if !text.contains(ESC) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        pieces(text)
            .filter_map(|p| match p {
                Piece::Text(t) => Some(t),
                Piece::Sgr(_) => None,
            })
            .collect(),
    )
}

/// `style` after the SGR parameters `params`; `base` is what a reset (`0`,
/// or empty parameters) returns to. Unknown parameters are ignored.
pub fn sgr_style(style: Style, base: Style, params: &str) -> Style {
    let mut style = style;
    if params.is_empty() {
        return base;
    }
    let mut groups = params.split(';');
    while let Some(group) = groups.next() {
        if group.contains(':') {
            // ITU form: 38:5:n, 38:2:[cs]:r:g:b, 4:n (underline styles).
            let sub: Vec<&str> = group.split(':').collect();
            match sub[0] {
                "38" | "48" => {
                    if let Some(color) = extended_color(&sub[1..], true) {
                        style = set_color(style, sub[0] == "38", color);
                    }
                }
                "4" => {
                    style = if sub.get(1) == Some(&"0") {
                        style.remove_modifier(Modifier::UNDERLINED)
                    } else {
                        style.add_modifier(Modifier::UNDERLINED)
                    };
                }
                _ => {}
            }
            continue;
        }
        let n: u16 = match group {
            "" => 0,
            g => match g.parse() {
                Ok(n) => n,
                Err(_) => continue,
            },
        };
        style = match n {
            0 => base,
            1 => style.add_modifier(Modifier::BOLD),
            2 => style.add_modifier(Modifier::DIM),
            3 => style.add_modifier(Modifier::ITALIC),
            4 => style.add_modifier(Modifier::UNDERLINED),
            5 => style.add_modifier(Modifier::SLOW_BLINK),
            6 => style.add_modifier(Modifier::RAPID_BLINK),
            7 => style.add_modifier(Modifier::REVERSED),
            8 => style.add_modifier(Modifier::HIDDEN),
            9 => style.add_modifier(Modifier::CROSSED_OUT),
            21 | 22 => style.remove_modifier(Modifier::BOLD | Modifier::DIM),
            23 => style.remove_modifier(Modifier::ITALIC),
            24 => style.remove_modifier(Modifier::UNDERLINED),
            25 => style.remove_modifier(Modifier::SLOW_BLINK | Modifier::RAPID_BLINK),
            27 => style.remove_modifier(Modifier::REVERSED),
            28 => style.remove_modifier(Modifier::HIDDEN),
            29 => style.remove_modifier(Modifier::CROSSED_OUT),
            30..=37 => style.fg(indexed((n - 30) as u8)),
            39 => style.fg(base.fg.unwrap_or(Color::Reset)),
            40..=47 => style.bg(indexed((n - 40) as u8)),
            49 => style.bg(base.bg.unwrap_or(Color::Reset)),
            90..=97 => style.fg(indexed((n - 90 + 8) as u8)),
            100..=107 => style.bg(indexed((n - 100 + 8) as u8)),
            38 | 48 => {
                let kind = groups.next();
                let rest: Vec<&str> = match kind {
                    Some("5") => groups.next().into_iter().collect(),
                    Some("2") => groups.by_ref().take(3).collect(),
                    _ => break,
                };
                let mut args = vec![kind.unwrap_or("")];
                args.extend(rest);
                match extended_color(&args, false) {
                    Some(color) => set_color(style, n == 38, color),
                    None => style,
                }
            }
            _ => style,
        };
    }
    style
}

fn set_color(style: Style, fg: bool, color: Color) -> Style {
    if fg { style.fg(color) } else { style.bg(color) }
}

/// `5;n` or `2;r;g;b` (with an optional colour-space id in the ITU form).
fn extended_color(args: &[&str], itu: bool) -> Option<Color> {
    let num = |s: &&str| s.parse::<u8>().ok();
    match *args.first()? {
        "5" => Some(indexed(num(args.get(1)?)?)),
        "2" => {
            let rgb = if itu && args.len() >= 5 {
                &args[2..5]
            } else {
                args.get(1..4)?
            };
            Some(Color::Rgb(num(&rgb[0])?, num(&rgb[1])?, num(&rgb[2])?))
        }
        _ => None,
    }
}

/// The 16 ANSI colours by their ratatui names (so themes and terminals map
/// them as usual), the rest of the 256 by index.
fn indexed(n: u8) -> Color {
    match n {
        0 => Color::Black,
        1 => Color::Red,
        2 => Color::Green,
        3 => Color::Yellow,
        4 => Color::Blue,
        5 => Color::Magenta,
        6 => Color::Cyan,
        7 => Color::Gray,
        8 => Color::DarkGray,
        9 => Color::LightRed,
        10 => Color::LightGreen,
        11 => Color::LightYellow,
        12 => Color::LightBlue,
        13 => Color::LightMagenta,
        14 => Color::LightCyan,
        15 => Color::White,
        n => Color::Indexed(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(input: &str) -> String {
        sanitize(input, usize::MAX).text
    }

    #[test]
    fn table() {
        let cases: &[(&str, &str, &str)] = &[
            ("plain", "hello world", "hello world"),
            ("sgr kept", "\x1b[31mred\x1b[0m", "\x1b[31mred\x1b[0m"),
            ("sgr empty", "\x1b[mx", "\x1b[mx"),
            ("sgr 256", "\x1b[38;5;196mx", "\x1b[38;5;196mx"),
            ("sgr truecolor", "\x1b[38;2;1;2;3mx", "\x1b[38;2;1;2;3mx"),
            ("sgr itu", "\x1b[38:2::1:2:3mx", "\x1b[38:2::1:2:3mx"),
            ("csi clear", "a\x1b[2Jb", "ab"),
            ("csi cursor", "a\x1b[10;20Hb\x1b[Ac\x1b[5D", "abc"),
            ("csi private", "a\x1b[?1049hb\x1b[?25l", "ab"),
            ("csi private m", "a\x1b[>4;2mb", "ab"),
            ("csi intermediate", "a\x1b[0 qb", "ab"),
            ("osc 52 bel", "a\x1b]52;c;ZXZpbA==\x07b", "ab"),
            ("osc 0 st", "a\x1b]0;owned\x1b\\b", "ab"),
            (
                "osc 8 link",
                "\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\",
                "link",
            ),
            ("osc c1 st", "a\x1b]2;t\u{9c}b", "ab"),
            ("osc unterminated", "a\x1b]52;c;AAAA", "a"),
            ("dcs", "a\x1bPq#0;2;0;0;0\x1b\\b", "ab"),
            ("dcs bel does not end", "a\x1bPx\x07y\x1b\\b", "ab"),
            ("apc", "a\x1b_Gf=100;AAAA\x1b\\b", "ab"),
            ("pm sos", "a\x1b^pm\x1b\\b\x1bXsos\x1b\\c", "abc"),
            ("8-bit csi", "a\u{9b}2Jb", "ab"),
            ("8-bit csi sgr dropped", "a\u{9b}31mb", "ab"),
            ("8-bit osc", "a\u{9d}52;c;QQ==\u{7}b", "ab"),
            ("8-bit dcs", "a\u{90}q\u{9c}b", "ab"),
            ("c1 other", "a\u{85}\u{8d}b", "ab"),
            ("bare esc end", "abc\x1b", "abc"),
            ("bare esc before non-ascii", "a\x1bébc", "aébc"),
            ("esc then control", "a\x1b\x07b", "a\u{2407}b"),
            ("unterminated csi", "abc\x1b[12;3", "abc"),
            ("csi aborted by control", "a\x1b[1\x07b", "a\u{2407}b"),
            ("esc reset", "a\x1bcb", "ab"),
            ("esc charset", "a\x1b(Bb\x1b#8c", "abc"),
            ("esc save cursor", "a\x1b7b\x1b8c", "abc"),
            ("bel", "ding\x07", "ding\u{2407}"),
            ("nul del", "a\0b\x7f", "a\u{2400}b\u{2421}"),
            ("cr overwrite", "safe\rEVIL", "safe\u{240d}EVIL"),
            ("trailing cr", "windows\r", "windows"),
            ("backspace", "ab\x08\x08XY", "ab\u{2408}\u{2408}XY"),
            ("vt ff", "a\x0bb\x0cc", "a\u{240b}b\u{240c}c"),
            ("tab", "a\tb", "a       b"),
            ("tab after wide", "日\tx", "日      x"),
            ("tab at stop", "12345678\tx", "12345678        x"),
            ("bidi", "a\u{202e}cba", "a\u{fffd}cba"),
            ("cjk emoji", "日本 🚀", "日本 🚀"),
        ];
        for (name, input, want) in cases {
            assert_eq!(&s(input), want, "case {name}: {input:?}");
        }
    }

    #[test]
    fn output_holds_no_control_but_sgr_esc() {
        let nasty = "\x1b[31m\x1b]52;c;x\x07\x1b[2J\u{9b}1;1H\x1bP\x1b\\\r\x07\x1b";
        let out = sanitize(nasty, usize::MAX);
        for (i, c) in out.text.char_indices() {
            assert!(!c.is_control() || c == ESC, "control {c:?} at {i}");
        }
        assert_eq!(out.text, "\x1b[31m\u{240d}\u{2407}");
        assert!(out.has_sgr);
    }

    #[test]
    fn cap_counts_cut_bytes() {
        let out = sanitize(&"x".repeat(100), 10);
        assert_eq!(out.text.len(), 10);
        assert_eq!(out.cut, 90);
        let out = sanitize(&"\t".repeat(100), 64);
        assert_eq!(out.text.len(), 64);
        assert_eq!(out.cut, 92);
    }

    #[test]
    fn pieces_and_strip() {
        let t = "a\x1b[1mb\x1b[mc";
        let got: Vec<Piece> = pieces(t).collect();
        assert_eq!(
            got,
            vec![
                Piece::Text("a"),
                Piece::Sgr("1"),
                Piece::Text("b"),
                Piece::Sgr(""),
                Piece::Text("c")
            ]
        );
        assert_eq!(strip_sgr(t), "abc");
        assert!(matches!(strip_sgr("plain"), Cow::Borrowed("plain")));
    }

    #[test]
    fn sgr_styles() {
        let base = Style::new().fg(Color::Gray);
        let cases: &[(&str, Style)] = &[
            ("31", base.fg(Color::Red)),
            ("1;32", base.fg(Color::Green).add_modifier(Modifier::BOLD)),
            ("0", base),
            ("", base),
            ("91", base.fg(Color::LightRed)),
            ("44", base.bg(Color::Blue)),
            ("38;5;196", base.fg(Color::Indexed(196))),
            ("38;5;1", base.fg(Color::Red)),
            ("48;2;10;20;30", base.bg(Color::Rgb(10, 20, 30))),
            ("38:2::10:20:30", base.fg(Color::Rgb(10, 20, 30))),
            ("38:2:10:20:30", base.fg(Color::Rgb(10, 20, 30))),
            ("38:5:200", base.fg(Color::Indexed(200))),
            ("4", base.add_modifier(Modifier::UNDERLINED)),
            ("4:3", base.add_modifier(Modifier::UNDERLINED)),
            ("31;39", base.fg(Color::Gray)),
            ("38;5", base),
            ("38;2;1;2", base),
            ("999", base),
            ("31;1;0;4", base.add_modifier(Modifier::UNDERLINED)),
        ];
        for (params, want) in cases {
            assert_eq!(sgr_style(base, base, params), *want, "params {params:?}");
        }
    }
}
