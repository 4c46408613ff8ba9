//! Text output shared by the kubectl-style verbs: column alignment as
//! kubectl's tabwriter does it, kubectl's short ages, and the escaping of
//! text that came from a host.
//!
//! **Alignment.** kubectl writes its tables and `describe` pages as lines of
//! tab-terminated cells through Go's `text/tabwriter` (padding 3 for `get`,
//! 2 for `describe`). [`align`] is that algorithm: a column is as wide as its
//! widest cell plus the padding, computed over each *block* of consecutive
//! lines that have a cell in it, and the last cell of a line is never padded.
//! Building output the same way (`"Name:\t{}\n"`) gives kubectl's layout,
//! down to `describe`'s "Non-terminated Pods" table lining up with the System
//! Info above it. Widths are display columns (`unicode-width`), where Go
//! counts runes, so East Asian text lines up too.
//!
//! **Untrusted text.** Anything a host sent (its hostname, kernel and OS
//! strings, event messages, pod names) may carry terminal escape sequences
//! meant to rewrite the operator's screen, or tabs and newlines that would
//! forge table cells. [`escape`] renders those characters visibly (`\x1b`,
//! `\n`, `\u{202e}`) and must be applied to every such string before it is
//! written with tabs. JSON output needs none of this: serde escapes.

use std::borrow::Cow;
use std::fmt::Write as _;

use chrono::{DateTime, TimeDelta, Utc};
use unicode_width::UnicodeWidthStr;

/// kubectl's padding for `get` and `top` tables.
pub const GET_PADDING: usize = 3;
/// kubectl's padding for `describe` pages.
pub const DESCRIBE_PADDING: usize = 2;

/// What kubectl prints for a value it cannot know.
pub const UNKNOWN: &str = "<unknown>";
/// What kubectl prints for an empty list or value.
pub const NONE: &str = "<none>";

/// Aligns tab-terminated cells the way Go's `text/tabwriter` does with
/// `minwidth 0, padchar ' ', flags 0`, as kubectl configures it.
pub fn align(text: &str, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text
        .strip_suffix('\n')
        .unwrap_or(text)
        .split('\n')
        .map(|line| line.split('\t').collect())
        .collect();
    let mut out = String::with_capacity(text.len() * 2);
    let mut widths = Vec::new();
    format_block(&lines, &mut widths, 0, lines.len(), padding, &mut out);
    out
}

/// Go's `Writer.format`: finds each block of lines with a cell in the next
/// column, sizes that column over the block, and recurses to the right.
fn format_block(
    lines: &[Vec<&str>],
    widths: &mut Vec<usize>,
    mut line0: usize,
    line1: usize,
    padding: usize,
    out: &mut String,
) {
    let column = widths.len();
    // The last cell of a line is not tab-terminated and takes no part.
    let has_cell = |line: &Vec<&str>| column + 1 < line.len();
    let mut this = line0;
    while this < line1 {
        if !has_cell(&lines[this]) {
            this += 1;
            continue;
        }
        write_lines(lines, widths, line0, this, out);
        line0 = this;
        let mut width = 0;
        while this < line1 && has_cell(&lines[this]) {
            width = width.max(lines[this][column].width() + padding);
            this += 1;
        }
        widths.push(width);
        format_block(lines, widths, line0, this, padding, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, widths, line0, line1, out);
}

fn write_lines(
    lines: &[Vec<&str>],
    widths: &[usize],
    line0: usize,
    line1: usize,
    out: &mut String,
) {
    for line in &lines[line0..line1] {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if let Some(&width) = widths.get(j) {
                let pad = width.saturating_sub(cell.width());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
}

/// Host-sent text made safe to print: control characters (C0, DEL, C1),
/// Unicode line and paragraph separators, bidirectional overrides and
/// invisible format characters are written as escapes (`\x1b`, `\t`, `\n`,
/// `\u{202e}`); everything else is kept. Borrowed when nothing changes.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) && c.is_ascii() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whether `c` could move the cursor, change the terminal's state, reorder
/// what is displayed, or hide itself.
fn needs_escape(c: char) -> bool {
    c.is_control() // C0, DEL and C1 (0x9b is a one-byte CSI)
        || matches!(
            c,
            '\u{061c}'                  // Arabic letter mark
            | '\u{200b}'..='\u{200f}'   // zero-width spaces and joiners, LRM, RLM
            | '\u{2028}' | '\u{2029}'   // line and paragraph separators
            | '\u{202a}'..='\u{202e}'   // bidi embeddings and overrides
            | '\u{2060}'..='\u{2064}'   // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}'   // bidi isolates
            | '\u{feff}'                // zero-width no-break space
        )
}

/// kubectl's short age (apimachinery's `duration.HumanDuration`): `45s`,
/// `3m20s` under 10 minutes, `3m` under 3 hours, `5h30m` under 8 hours, `5h`
/// under 2 days, `3d4h` under 8 days, `45d` under 2 years, then years.
/// Up to a second in the future reads as `0s` (clock skew); more is `<invalid>`.
pub fn human_duration(d: TimeDelta) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return match days % 365 {
            0 => format!("{years}y"),
            dy => format!("{years}y{dy}d"),
        };
    }
    format!("{years}y")
}

/// The age of `then` at `now`, or `<unknown>`.
pub fn age(then: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    then.map_or_else(|| UNKNOWN.into(), |t| human_duration(now - t))
}

/// A time as `kubectl describe` prints it (Go's RFC1123Z):
/// `Fri, 15 Jan 2027 08:00:00 +0000`.
pub fn describe_time(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S %z").to_string()
}

/// A time as Kubernetes writes it in JSON (`metav1.Time`): RFC 3339, seconds, `Z`.
pub fn json_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_pads_all_but_the_last_cell_like_go_tabwriter() {
        let out = align("NAME\tSTATUS\tAGE\nnode1\tReady\t5m\nn2\tNotReady\t2d\n", 3);
        assert_eq!(
            out,
            "NAME    STATUS     AGE\n\
             node1   Ready      5m\n\
             n2      NotReady   2d\n"
        );
        // A line without tabs ends a column block: the lines after it are sized alone.
        let out = align("Name:\tx\nCreationTimestamp:\ty\nConditions:\n  T\tS\n", 2);
        assert_eq!(
            out,
            "Name:               x\n\
             CreationTimestamp:  y\n\
             Conditions:\n  \
             T  S\n"
        );
        // A column is sized over the block of consecutive lines that have it.
        let out = align("a\tb\tc\naaaa\tb\nx\n", 1);
        assert_eq!(out, "a    b c\naaaa b\nx\n");
        assert_eq!(align("", 3), "\n");
    }

    #[test]
    fn align_counts_display_columns() {
        let out = align("名前\tx\nab\ty\n", 1);
        assert_eq!(out, "名前 x\nab   y\n");
    }

    #[test]
    fn escape_makes_control_and_invisible_characters_visible() {
        assert!(matches!(escape("node1 ok"), Cow::Borrowed(_)));
        assert_eq!(escape("é 名前 ✓"), "é 名前 ✓", "printable Unicode is kept");
        assert_eq!(
            escape("\x1b[2J\x1b]0;pwned\x07host"),
            "\\x1b[2J\\x1b]0;pwned\\x07host"
        );
        assert_eq!(escape("a\tb\nc\rd"), "a\\tb\\nc\\rd");
        assert_eq!(escape("\0\x7f"), "\\x00\\x7f");
        assert_eq!(escape("\u{9b}31m"), "\\u{9b}31m", "C1 CSI");
        assert_eq!(
            escape("abc\u{202e}gpj.exe\u{200b}"),
            "abc\\u{202e}gpj.exe\\u{200b}"
        );
        // The result never holds a tab or newline, so it cannot forge cells.
        let nasty: String = (0u32..0x300).filter_map(char::from_u32).collect();
        let safe = escape(&nasty);
        assert!(!safe.contains(['\t', '\n', '\x1b', '\u{9b}']));
    }

    #[test]
    fn human_duration_follows_kubectl() {
        let s = TimeDelta::seconds;
        let cases = [
            (s(-5), "<invalid>"),
            (TimeDelta::milliseconds(-1500), "0s"),
            (s(0), "0s"),
            (s(45), "45s"),
            (s(119), "119s"),
            (s(120), "2m"),
            (s(200), "3m20s"),
            (s(599), "9m59s"),
            (s(600), "10m"),
            (s(3 * 3600 - 1), "179m"),
            (s(3 * 3600), "3h"),
            (s(5 * 3600 + 30 * 60), "5h30m"),
            (s(8 * 3600), "8h"),
            (s(47 * 3600 + 3599), "47h"),
            (s(48 * 3600), "2d"),
            (s(3 * 86400 + 4 * 3600), "3d4h"),
            (s(8 * 86400), "8d"),
            (s(729 * 86400), "729d"),
            (s(730 * 86400), "2y"),
            (s(731 * 86400), "2y1d"),
            (s(9 * 365 * 86400), "9y"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn times_print_as_kubectl_prints_them() {
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        assert_eq!(describe_time(t), "Fri, 15 Jan 2027 08:00:00 +0000");
        assert_eq!(json_time(t), "2027-01-15T08:00:00Z");
        assert_eq!(age(None, t), "<unknown>");
        assert_eq!(age(Some(t - TimeDelta::seconds(90)), t), "90s");
    }
}
