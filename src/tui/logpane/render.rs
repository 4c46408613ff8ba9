//! Laying a pane's lines out in cells: wrapped heights, the rows a frame
//! shows, drawing them with their SGR styles and search highlights, and
//! [`tile`]. Widths are display columns by unicode-width, counted per
//! cluster (a character and the zero-width ones after it), the same way
//! ratatui's buffer diff counts a cell's symbol, so wide and combining
//! characters cannot shift what the terminal draws.

use std::borrow::Cow;
use std::ops::ControlFlow;

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::Span;
use ratatui::widgets::{Block, Widget};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::sanitize::{self, Piece};
use super::{ASCII, HAS_SGR, LogPane, NARROW, NO_TIME, Pos, Window, thousands};
use crate::tui::theme::{Role, Theme};

/// Columns of a timestamp prefix: `2026-11-27T10:00:00.000Z `.
const TIME_COLS: usize = 25;
/// Below this a half is too narrow for log lines, so two panes stack.
const MIN_SIDE_BY_SIDE_WIDTH: u16 = 80;

/// Clusters of `text`: (byte offset, the cluster, its width). A cluster is
/// a character and the zero-width characters after it (combining marks,
/// variation selectors, ZWJ), which share its cell.
fn clusters(text: &str) -> impl Iterator<Item = (usize, &str, usize)> {
    let mut chars = text.char_indices().peekable();
    std::iter::from_fn(move || {
        let (start, c) = chars.next()?;
        let mut end = start + c.len_utf8();
        while let Some(&(i, n)) = chars.peek() {
            if n.is_ascii() || n.width() != Some(0) {
                break;
            }
            end = i + n.len_utf8();
            chars.next();
        }
        let cluster = &text[start..end];
        let width = if cluster.len() == 1 {
            1
        } else {
            cluster.width()
        };
        Some((start, cluster, width))
    })
}

/// Display columns of sanitised text, and whether no cluster is wider than
/// one column.
pub(super) fn measure(text: &str) -> (usize, bool) {
    let mut cols = 0;
    let mut narrow = true;
    for piece in sanitize::pieces(text) {
        if let Piece::Text(t) = piece {
            for (_, _, w) in clusters(t) {
                cols += w;
                narrow &= w <= 1;
            }
        }
    }
    (cols, narrow)
}

/// RFC 3339 in UTC with milliseconds, whatever the operator's time zone:
/// lines from hosts in different zones must compare by eye.
pub(super) fn timestamp(time_ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(time_ms).filter(|_| time_ms != NO_TIME) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => format!("{:<24}", "-"),
    }
}

pub(super) fn marker(cut: u32) -> String {
    format!("…[{} bytes cut]", thousands(cut as usize))
}

fn marker_width(cut: u32) -> usize {
    marker(cut).width()
}

/// Where clusters go in a row-by-row layout.
struct Placer {
    width: usize,
    wrap: bool,
    row: usize,
    col: usize,
}

impl Placer {
    fn new(width: usize, wrap: bool) -> Placer {
        Placer {
            width,
            wrap,
            row: 0,
            col: 0,
        }
    }

    /// Row and column of a cluster `w` columns wide, or `None` when it
    /// does not fit (the row is full without wrap; wider than the pane).
    fn place(&mut self, w: usize) -> Option<(usize, usize)> {
        if self.col + w > self.width {
            if !self.wrap || w > self.width {
                return None;
            }
            self.row += 1;
            self.col = 0;
        }
        let at = (self.row, self.col);
        self.col += w;
        Some(at)
    }
}

struct Styles {
    base: Style,
    source: Style,
    time: Style,
    marker: Style,
    highlight: Style,
    current: Style,
    /// Whether SGR colours are shown (not with the no-colour theme).
    colors: bool,
}

impl LogPane {
    /// The prefix parts of `line` as shown: `[source] ` and the timestamp.
    fn prefix(&self, line: &super::Line) -> (Option<String>, Option<String>) {
        (
            line.source.as_ref().map(|s| format!("[{s}] ")),
            self.timestamps
                .then(|| format!("{} ", timestamp(line.time_ms))),
        )
    }

    /// Columns of the prefix, and whether it is all one-column clusters.
    fn prefix_width(&self, line: &super::Line) -> (usize, bool) {
        let time = if self.timestamps { TIME_COLS } else { 0 };
        match &line.source {
            Some(s) if s.is_ascii() => (s.len() + 3 + time, true),
            Some(s) => {
                let (cols, narrow) = measure(s);
                (cols + 3 + time, narrow)
            }
            None => (time, true),
        }
    }

    /// Rows `seq` takes at the current width (1 without wrap).
    pub(super) fn height(&self, seq: u64) -> usize {
        if !self.wrap {
            return 1;
        }
        let Some(line) = self.line(seq) else { return 1 };
        let width = usize::from(self.view_width).max(1);
        let (pw, prefix_narrow) = self.prefix_width(line);
        if line.has(NARROW) && prefix_narrow {
            let marker = if line.cut > 0 {
                marker_width(line.cut)
            } else {
                0
            };
            return (pw + line.cols as usize + marker).div_ceil(width).max(1);
        }
        self.walk(line, width, |_, _| ControlFlow::Continue(()))
    }

    /// The wrapped row of `seq` holding byte `offset` of its text without
    /// SGR (0 without wrap).
    pub(super) fn row_of(&self, seq: u64, offset: usize) -> usize {
        if !self.wrap {
            return 0;
        }
        let Some(line) = self.line(seq) else { return 0 };
        let mut found = 0;
        self.walk(line, usize::from(self.view_width).max(1), |row, at| {
            found = row;
            if at >= offset {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        found
    }

    /// Lays `line` out wrapped at `width`, calling `at(row, plain offset)`
    /// for each cluster of its text; returns the rows used.
    fn walk(
        &self,
        line: &super::Line,
        width: usize,
        mut at: impl FnMut(usize, usize) -> ControlFlow<()>,
    ) -> usize {
        let mut placer = Placer::new(width, true);
        let (source, time) = self.prefix(line);
        for part in [source, time].into_iter().flatten() {
            for (_, _, w) in clusters(&part) {
                if w > 0 && placer.place(w).is_none() {
                    return placer.row + 1;
                }
            }
        }
        let mut plain = 0;
        for piece in sanitize::pieces(&line.text) {
            let Piece::Text(text) = piece else { continue };
            for (i, _, w) in clusters(text) {
                if w > 0 && placer.place(w).is_none() {
                    return placer.row + 1;
                }
                if at(placer.row, plain + i).is_break() {
                    return placer.row + 1;
                }
            }
            plain += text.len();
        }
        if line.cut > 0 {
            for (_, _, w) in clusters(&marker(line.cut)) {
                if placer.place(w).is_none() {
                    break;
                }
            }
        }
        placer.row + 1
    }

    fn title_text(&self) -> String {
        let mut t = format!(" {} ", self.title);
        if self.follow {
            t.push_str("[follow] ");
        }
        if self.wrap {
            t.push_str("[wrap] ");
        }
        if self.timestamps {
            t.push_str("[time] ");
        }
        if self.window != Window::Tail {
            t.push_str(&format!("[{}] ", self.window.label()));
        }
        if let Some(s) = &self.search {
            t.push_str(&format!("[/{}] ", s.query));
        }
        t.push_str(&format!("{} lines ", thousands(self.visible_count())));
        t
    }

    /// The rows a frame shows, top to bottom: from the top position when
    /// scrolled, from the last line upwards when following or when the top
    /// position would leave the view short.
    fn viewport(&mut self) -> Vec<Pos> {
        let h = usize::from(self.view_height);
        let mut rows = Vec::with_capacity(h);
        if h == 0 {
            return rows;
        }
        if !self.follow
            && let Some(top) = self.clamp_pos(self.top)
        {
            let mut next = Some(top);
            'fill: while let Some(p) = next {
                for row in p.row..self.height(p.seq) {
                    rows.push(Pos { seq: p.seq, row });
                    if rows.len() == h {
                        break 'fill;
                    }
                }
                next = self.next_visible(p.seq).map(|seq| Pos { seq, row: 0 });
            }
            if rows.len() == h {
                self.top = top;
                return rows;
            }
            rows.clear();
        }
        let mut next = self.last_visible();
        'fill: while let Some(seq) = next {
            for row in (0..self.height(seq)).rev() {
                rows.push(Pos { seq, row });
                if rows.len() == h {
                    break 'fill;
                }
            }
            next = self.prev_visible(seq);
        }
        rows.reverse();
        if !self.follow
            && let Some(&first) = rows.first()
        {
            self.top = first;
        }
        rows
    }

    /// Draws the pane into `area` of `buf`. Costs what is on screen: the
    /// lines in view are laid out, nothing else.
    pub fn render(&mut self, area: Rect, buf: &mut Buffer, theme: &Theme, focused: bool) {
        self.dirty = false;
        self.refresh_window();
        let area = area.intersection(buf.area);
        if area.is_empty() {
            return;
        }
        let border = theme.style(if focused { Role::Accent } else { Role::Border });
        let block = Block::bordered()
            .border_style(border)
            .title(Span::styled(self.title_text(), theme.style(Role::Accent)));
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.is_empty() {
            return;
        }
        self.view_width = inner.width;
        self.view_height = inner.height;
        let base = theme.style(Role::Text);
        for y in inner.top()..inner.bottom() {
            for x in inner.left()..inner.right() {
                if let Some(cell) = buf.cell_mut((x, y)) {
                    cell.reset();
                    cell.set_style(base);
                }
            }
        }
        let highlight = theme.style(Role::Highlight);
        let styles = Styles {
            base,
            source: theme.style(Role::Accent).remove_modifier(Modifier::BOLD),
            time: theme.style(Role::Muted),
            marker: theme.style(Role::Warn),
            highlight,
            current: highlight.add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
            colors: theme.name != "no-color",
        };
        let rows = self.viewport();
        let mut i = 0;
        while i < rows.len() {
            let Pos { seq, row: first } = rows[i];
            let mut j = i;
            while j + 1 < rows.len() && rows[j + 1].seq == seq {
                j += 1;
            }
            let y = inner.y + i as u16;
            self.draw_line(buf, inner, y, seq, first, rows[j].row + 1, &styles);
            i = j + 1;
        }
    }

    /// Draws rows `first..end` of line `seq`, row `first` at screen row `y`.
    #[allow(clippy::too_many_arguments)]
    fn draw_line(
        &self,
        buf: &mut Buffer,
        inner: Rect,
        y: u16,
        seq: u64,
        first: usize,
        end: usize,
        st: &Styles,
    ) {
        let Some(line) = self.line(seq) else { return };
        let width = usize::from(inner.width);
        let marker = (line.cut > 0).then(|| marker(line.cut));
        let marker_cols = marker.as_deref().map_or(0, UnicodeWidthStr::width);
        // Without wrap a cut line keeps room for its marker at the row's end.
        let text_width = if self.wrap {
            width
        } else {
            width.saturating_sub(marker_cols)
        };
        let mut placer = Placer::new(text_width, self.wrap);
        let mut put = |row: usize, col: usize, symbol: &str, w: usize, style: Style| {
            if row >= end {
                return ControlFlow::Break(());
            }
            if row >= first {
                let x = inner.x + col as u16;
                let y = y + (row - first) as u16;
                if let Some(cell) = buf.cell_mut((x, y)) {
                    cell.set_symbol(symbol).set_style(style);
                }
                // The cells a wide cluster covers stay empty, as ratatui's own
                // text widgets leave them.
                for dx in 1..w as u16 {
                    if let Some(cell) = buf.cell_mut((x + dx, y)) {
                        cell.reset();
                        cell.set_style(style);
                    }
                }
            }
            ControlFlow::Continue(())
        };

        let (pw, prefix_narrow) = self.prefix_width(line);
        // A row deep inside a long plain-ASCII line starts at a byte we can
        // compute: skip there rather than lay out everything before it.
        let mut start = 0;
        if self.wrap && first > 0 && line.has(ASCII) && prefix_narrow {
            let skip = first * width;
            if skip >= pw && skip - pw < line.text.len() {
                start = skip - pw;
                placer.row = first;
            }
        }

        if start == 0 {
            let (source, time) = self.prefix(line);
            for (part, style) in [(source, st.source), (time, st.time)] {
                let Some(part) = part else { continue };
                for (_, symbol, w) in clusters(&part) {
                    if w == 0 {
                        continue;
                    }
                    let Some((row, col)) = placer.place(w) else {
                        break;
                    };
                    if put(row, col, symbol, w, style).is_break() {
                        return;
                    }
                }
            }
        }

        let text = &line.text[start..];
        let plain: Cow<str> = if line.has(HAS_SGR) {
            sanitize::strip_sgr(&line.text)
        } else {
            Cow::Borrowed(&line.text)
        };
        let search = self.search.as_ref();
        let hl = if search.and_then(|s| s.current) == Some(seq) {
            st.current
        } else {
            st.highlight
        };
        let mut matches = search.map(|s| {
            s.re.find_iter(&plain)
                .map(|m| m.range())
                .filter(|r| !r.is_empty())
                .peekable()
        });
        let mut style = st.base;
        let mut offset = start;
        'text: for piece in sanitize::pieces(text) {
            let chunk = match piece {
                Piece::Sgr(params) => {
                    style = sanitize::sgr_style(style, st.base, params);
                    if !st.colors {
                        style.fg = st.base.fg;
                        style.bg = st.base.bg;
                    }
                    continue;
                }
                Piece::Text(t) => t,
            };
            for (i, symbol, w) in clusters(chunk) {
                let at = offset + i;
                let mut s = style;
                if let Some(m) = &mut matches {
                    while m.peek().is_some_and(|r| r.end <= at) {
                        m.next();
                    }
                    if m.peek().is_some_and(|r| r.start <= at) {
                        s = s.patch(hl);
                    }
                }
                if w == 0 {
                    continue;
                }
                let Some((row, col)) = placer.place(w) else {
                    break 'text;
                };
                if put(row, col, symbol, w, s).is_break() {
                    return;
                }
            }
            offset += chunk.len();
        }

        if let Some(marker) = marker {
            placer.width = width;
            for (_, symbol, w) in clusters(&marker) {
                let Some((row, col)) = placer.place(w) else {
                    break;
                };
                if put(row, col, symbol, w, st.marker).is_break() {
                    return;
                }
            }
        }
    }
}

/// Up to four panes tiled in `area`: one takes it all; two sit side by side
/// when each half is still a usable log width and the area is wider than
/// tall on screen (a cell is about twice as tall as wide), else they stack;
/// three and four make a 2×2 grid, the third spanning the bottom row when
/// alone. More than four are given four rects.
pub fn tile(area: Rect, panes: usize) -> Vec<Rect> {
    match panes {
        0 => Vec::new(),
        1 => vec![area],
        2 => {
            let wide = area.width / 2 >= MIN_SIDE_BY_SIDE_WIDTH && area.width >= area.height * 2;
            if wide {
                split_columns(area, 2)
            } else {
                split_rows(area, 2)
            }
        }
        n => {
            let rows = split_rows(area, 2);
            let mut out = split_columns(rows[0], 2);
            if n == 3 {
                out.push(rows[1]);
            } else {
                out.extend(split_columns(rows[1], 2));
            }
            out
        }
    }
}

fn split_columns(area: Rect, n: u16) -> Vec<Rect> {
    let mut x = area.x;
    (0..n)
        .map(|i| {
            let w = area.width / n + u16::from(i < area.width % n);
            let r = Rect::new(x, area.y, w, area.height);
            x += w;
            r
        })
        .collect()
}

fn split_rows(area: Rect, n: u16) -> Vec<Rect> {
    let mut y = area.y;
    (0..n)
        .map(|i| {
            let h = area.height / n + u16::from(i < area.height % n);
            let r = Rect::new(area.x, y, area.width, h);
            y += h;
            r
        })
        .collect()
}
