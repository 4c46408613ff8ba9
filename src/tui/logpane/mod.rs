//! The console's log pane: a bounded ring of one pod's (or several merged
//! pods') log lines, and everything the operator does with it — follow,
//! wrap, timestamps, search, time windows, save — plus [`tile`], which lays
//! up to four panes out.
//!
//! Costs are bounded so that a chatty container cannot stall the console:
//! * memory: at most `capacity` lines, each one boxed string of at most
//!   [`MAX_LINE_BYTES`] (longer lines keep a `…[N bytes cut]` marker) and a
//!   few words of metadata;
//! * a frame: only the lines on screen are read and laid out (walking back
//!   from the bottom line until the viewport is full), never the whole ring;
//! * search: the whole ring is scanned when the operator searches or asks
//!   for the next match, not per frame;
//! * time windows: the visible lines are a list of sequence numbers built
//!   when the window is chosen and trimmed (never rescanned) as time passes.
//!
//! Every text is sanitised when it is stored ([`sanitize`]), so rendering can
//! trust it; SGR colours survive as styles.

mod render;
pub mod sanitize;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use regex::{Regex, RegexBuilder};

use crate::agent::protocol::messages::{LogRecord, LogStream};

pub use render::tile;

/// Longest line kept, in bytes of the container's text; the rest is counted
/// and shown as `…[N bytes cut]`. 64 KiB is four CRI partial records, more
/// than any line a person reads, and bounds the time to lay one out.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Stored time of a line without one.
const NO_TIME: i64 = i64::MIN;

// Line flags.
const STDERR: u8 = 1;
const HAS_SGR: u8 = 2;
/// Only ASCII and no SGR: a byte is a column, so a wrapped row starts at a
/// computable byte.
const ASCII: u8 = 4;
/// No character wider than one column: a line's wrapped height is a
/// division.
const NARROW: u8 = 8;

/// One stored line. Kept small: the text and a few words.
struct Line {
    /// Sanitised text; SGR sequences inline.
    text: Box<str>,
    source: Option<Arc<str>>,
    /// Milliseconds since the epoch, or [`NO_TIME`].
    time_ms: i64,
    /// Display columns of the text.
    cols: u32,
    /// Bytes of the original line not kept.
    cut: u32,
    flags: u8,
}

impl Line {
    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// A line still arriving in CRI partial records.
struct Pending {
    source: Option<Arc<str>>,
    stderr: bool,
    time: Option<DateTime<Utc>>,
    raw: String,
    cut: usize,
}

impl Pending {
    fn append(&mut self, text: &str) {
        let room = MAX_LINE_BYTES.saturating_sub(self.raw.len());
        let take = floor_char_boundary(text, room);
        self.raw.push_str(&text[..take]);
        self.cut += text.len() - take;
    }
}

fn floor_char_boundary(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    (0..=at).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

/// What the pane shows of the lines it holds, by age.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Window {
    /// Every line kept.
    #[default]
    Tail,
    Min1,
    Min5,
    Min15,
    Hour1,
}

impl Window {
    fn next(self) -> Window {
        match self {
            Window::Tail => Window::Min1,
            Window::Min1 => Window::Min5,
            Window::Min5 => Window::Min15,
            Window::Min15 => Window::Hour1,
            Window::Hour1 => Window::Tail,
        }
    }

    fn millis(self) -> Option<i64> {
        let minutes = match self {
            Window::Tail => return None,
            Window::Min1 => 1,
            Window::Min5 => 5,
            Window::Min15 => 15,
            Window::Hour1 => 60,
        };
        Some(minutes * 60_000)
    }

    pub fn label(self) -> &'static str {
        match self {
            Window::Tail => "tail",
            Window::Min1 => "1m",
            Window::Min5 => "5m",
            Window::Min15 => "15m",
            Window::Hour1 => "1h",
        }
    }
}

/// The lines inside a time window, by sequence number, ascending.
struct WindowView {
    cutoff_ms: i64,
    seqs: VecDeque<u64>,
}

/// A position in the laid-out pane: a line and a row within its wrapped
/// rows (always 0 without wrap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Pos {
    seq: u64,
    row: usize,
}

struct Search {
    query: String,
    re: Regex,
    /// The line of the match last jumped to.
    current: Option<u64>,
}

/// What the operator can ask of a pane (the app maps keys to these).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogAction {
    ToggleFollow,
    ToggleWrap,
    ToggleTimestamps,
    /// A substring (case-insensitive unless it holds a capital), or a regex
    /// written between slashes: `/time(out|d out)/`.
    Search(String),
    ClearSearch,
    NextMatch,
    PreviousMatch,
    CycleWindow,
    ScrollUp(usize),
    ScrollDown(usize),
    PageUp,
    PageDown,
    Top,
    Bottom,
    Save(PathBuf),
}

/// Why a save failed.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("cannot save to {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// One log pane. See the module documentation.
pub struct LogPane {
    title: String,
    capacity: usize,
    lines: VecDeque<Line>,
    /// Sequence number of `lines[0]`; numbers are never reused, so a
    /// position survives the ring dropping lines in front of it.
    first_seq: u64,
    pending: Vec<Pending>,
    follow: bool,
    wrap: bool,
    timestamps: bool,
    window: Window,
    win: Option<WindowView>,
    /// The first row shown, when not following.
    top: Pos,
    search: Option<Search>,
    /// The text area of the last render (before the first, a guess), which
    /// scrolling by pages and rows is measured against.
    view_width: u16,
    view_height: u16,
    dirty: bool,
    /// A fixed "now" for tests; the system clock otherwise.
    clock: Option<DateTime<Utc>>,
}

impl LogPane {
    pub const DEFAULT_CAPACITY: usize = 100_000;

    pub fn new(title: impl Into<String>, capacity: usize) -> LogPane {
        let title = sanitize::strip_sgr(&sanitize::sanitize(&title.into(), 1024).text).into_owned();
        LogPane {
            title,
            capacity: capacity.max(1),
            lines: VecDeque::new(),
            first_seq: 0,
            pending: Vec::new(),
            follow: true,
            wrap: false,
            timestamps: false,
            window: Window::Tail,
            win: None,
            top: Pos::default(),
            search: None,
            view_width: 80,
            view_height: 24,
            dirty: true,
            clock: None,
        }
    }

    pub fn title(&self) -> &str {
        &self.title
    }

    /// Lines held (in the ring, whatever the window shows).
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn following(&self) -> bool {
        self.follow
    }

    pub fn wrapping(&self) -> bool {
        self.wrap
    }

    pub fn timestamps(&self) -> bool {
        self.timestamps
    }

    pub fn window(&self) -> Window {
        self.window
    }

    /// Set when a record arrived (or the pane was acted on) since the last
    /// render.
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    /// Fixes "now" for time windows (tests, replays); `None` returns to the
    /// system clock.
    pub fn set_clock(&mut self, now: Option<DateTime<Utc>>) {
        self.clock = now;
    }

    fn now_ms(&self) -> i64 {
        self.clock.unwrap_or_else(Utc::now).timestamp_millis()
    }

    /// Adds one record. `source` names the pod or container when several are
    /// merged into this pane; it prefixes each line, and partial records are
    /// joined per source and stream.
    pub fn push(&mut self, source: Option<&Arc<str>>, record: LogRecord) {
        self.dirty = true;
        let stderr = record.stream == LogStream::Stderr;
        let key = source.map(|s| &**s);
        let pending = self
            .pending
            .iter()
            .position(|p| p.stderr == stderr && p.source.as_deref() == key);
        if record.partial {
            match pending {
                Some(i) => self.pending[i].append(&record.text),
                None => {
                    let mut p = Pending {
                        source: source.cloned(),
                        stderr,
                        time: record.time,
                        raw: String::new(),
                        cut: 0,
                    };
                    p.append(&record.text);
                    self.pending.push(p);
                }
            }
            return;
        }
        let (time, raw, cut) = match pending {
            Some(i) => {
                let mut p = self.pending.swap_remove(i);
                p.append(&record.text);
                (p.time, p.raw, p.cut)
            }
            None => {
                let mut raw = record.text;
                let keep = floor_char_boundary(&raw, MAX_LINE_BYTES);
                let cut = raw.len() - keep;
                raw.truncate(keep);
                (record.time, raw, cut)
            }
        };
        self.store(source, stderr, time, &raw, cut);
    }

    fn store(
        &mut self,
        source: Option<&Arc<str>>,
        stderr: bool,
        time: Option<DateTime<Utc>>,
        raw: &str,
        cut: usize,
    ) {
        let clean = sanitize::sanitize(raw, MAX_LINE_BYTES);
        let cut = cut + clean.cut;
        let mut flags = 0;
        if stderr {
            flags |= STDERR;
        }
        let cols;
        if clean.has_sgr {
            flags |= HAS_SGR;
        }
        if !clean.has_sgr && clean.text.is_ascii() {
            flags |= ASCII | NARROW;
            cols = clean.text.len();
        } else {
            let (c, narrow) = render::measure(&clean.text);
            cols = c;
            if narrow {
                flags |= NARROW;
            }
        }
        let line = Line {
            text: clean.text.into_boxed_str(),
            source: source.map(clean_source),
            time_ms: time.map_or(NO_TIME, |t| t.timestamp_millis()),
            cols: u32::try_from(cols).unwrap_or(u32::MAX),
            cut: u32::try_from(cut).unwrap_or(u32::MAX),
            flags,
        };
        if self.lines.len() >= self.capacity {
            self.lines.pop_front();
            self.first_seq += 1;
            if let Some(w) = &mut self.win {
                while w.seqs.front().is_some_and(|&s| s < self.first_seq) {
                    w.seqs.pop_front();
                }
            }
        }
        let seq = self.end_seq();
        if let Some(w) = &mut self.win
            && in_window(line.time_ms, w.cutoff_ms)
        {
            w.seqs.push_back(seq);
        }
        self.lines.push_back(line);
    }

    fn end_seq(&self) -> u64 {
        self.first_seq + self.lines.len() as u64
    }

    fn line(&self, seq: u64) -> Option<&Line> {
        let i = usize::try_from(seq.checked_sub(self.first_seq)?).ok()?;
        self.lines.get(i)
    }

    // ---- which lines the window shows ----

    /// Brings the window's line list up to "now": rebuilt from the ring when
    /// the window changes, trimmed of lines that aged out (at most once a
    /// second, and over the window's lines only) otherwise.
    fn refresh_window(&mut self) {
        let Some(span) = self.window.millis() else {
            self.win = None;
            return;
        };
        let cutoff = self.now_ms().saturating_sub(span);
        match &mut self.win {
            Some(w) if cutoff >= w.cutoff_ms => {
                if cutoff - w.cutoff_ms >= 1000 {
                    let lines = &self.lines;
                    let first = self.first_seq;
                    w.seqs.retain(|&s| {
                        lines
                            .get((s - first) as usize)
                            .is_some_and(|l| in_window(l.time_ms, cutoff))
                    });
                    w.cutoff_ms = cutoff;
                }
            }
            _ => {
                let seqs = self
                    .lines
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| in_window(l.time_ms, cutoff))
                    .map(|(i, _)| self.first_seq + i as u64)
                    .collect();
                self.win = Some(WindowView {
                    cutoff_ms: cutoff,
                    seqs,
                });
            }
        }
    }

    fn visible_count(&self) -> usize {
        match &self.win {
            None => self.lines.len(),
            Some(w) => w.seqs.len(),
        }
    }

    fn first_visible(&self) -> Option<u64> {
        match &self.win {
            None => (!self.lines.is_empty()).then_some(self.first_seq),
            Some(w) => w.seqs.front().copied(),
        }
    }

    fn last_visible(&self) -> Option<u64> {
        match &self.win {
            None => self
                .end_seq()
                .checked_sub(1)
                .filter(|_| !self.lines.is_empty()),
            Some(w) => w.seqs.back().copied(),
        }
    }

    /// The first visible line after `seq`.
    fn next_visible(&self, seq: u64) -> Option<u64> {
        match &self.win {
            None => {
                let s = (seq + 1).max(self.first_seq);
                (s < self.end_seq()).then_some(s)
            }
            Some(w) => w.seqs.get(w.seqs.partition_point(|&s| s <= seq)).copied(),
        }
    }

    /// The last visible line before `seq`.
    fn prev_visible(&self, seq: u64) -> Option<u64> {
        match &self.win {
            None => {
                let s = seq.checked_sub(1)?;
                if s < self.first_seq {
                    None
                } else {
                    Some(s.min(self.end_seq().checked_sub(1)?))
                }
            }
            Some(w) => {
                let i = w.seqs.partition_point(|&s| s < seq);
                i.checked_sub(1).map(|i| w.seqs[i])
            }
        }
    }

    /// `seq` if visible, else the next visible line, else the last.
    fn snap(&self, seq: u64) -> Option<u64> {
        let visible = match &self.win {
            None => seq >= self.first_seq && seq < self.end_seq(),
            Some(w) => w.seqs.binary_search(&seq).is_ok(),
        };
        if visible {
            Some(seq)
        } else {
            self.next_visible(seq).or_else(|| self.last_visible())
        }
    }

    // ---- positions ----

    fn clamp_pos(&self, p: Pos) -> Option<Pos> {
        let seq = self.snap(p.seq)?;
        let row = if seq == p.seq {
            p.row.min(self.height(seq) - 1)
        } else {
            0
        };
        Some(Pos { seq, row })
    }

    fn up(&self, mut p: Pos, mut n: usize) -> Pos {
        while n > 0 {
            if p.row >= n {
                p.row -= n;
                break;
            }
            n -= p.row + 1;
            match self.prev_visible(p.seq) {
                Some(s) => {
                    p = Pos {
                        seq: s,
                        row: self.height(s) - 1,
                    }
                }
                None => {
                    p.row = 0;
                    break;
                }
            }
        }
        p
    }

    fn down(&self, mut p: Pos, mut n: usize) -> Pos {
        while n > 0 {
            let h = self.height(p.seq);
            if p.row + n < h {
                p.row += n;
                break;
            }
            n -= h - p.row;
            match self.next_visible(p.seq) {
                Some(s) => p = Pos { seq: s, row: 0 },
                None => {
                    p.row = h - 1;
                    break;
                }
            }
        }
        p
    }

    /// The first row shown when the last line sits at the bottom.
    fn bottom_top(&self) -> Option<Pos> {
        let last = self.last_visible()?;
        let end = Pos {
            seq: last,
            row: self.height(last) - 1,
        };
        Some(self.up(end, usize::from(self.view_height).saturating_sub(1)))
    }

    /// Keeps `top` on a visible line and no further down than the bottom
    /// allows, so scrolling back up answers at once.
    fn clamp_top(&mut self) {
        let Some(top) = self.clamp_pos(self.top) else {
            self.top = Pos::default();
            return;
        };
        self.top = match self.bottom_top() {
            Some(max) if top > max => max,
            _ => top,
        };
    }

    /// Stops following, keeping the rows shown.
    fn unfollow(&mut self) -> bool {
        if !self.follow {
            return false;
        }
        self.follow = false;
        self.top = self.bottom_top().unwrap_or_default();
        true
    }

    fn page(&self) -> usize {
        usize::from(self.view_height).saturating_sub(1).max(1)
    }

    /// Acts on `action`; returns a message for the footer.
    pub fn handle(&mut self, action: LogAction) -> Option<String> {
        self.dirty = true;
        self.refresh_window();
        match action {
            LogAction::ToggleFollow => {
                if self.follow {
                    self.unfollow();
                    Some("follow off".into())
                } else {
                    self.follow = true;
                    Some("follow on".into())
                }
            }
            LogAction::ToggleWrap => {
                // Rows change meaning; keep the line at the top.
                self.top.row = 0;
                self.wrap = !self.wrap;
                Some(format!("wrap {}", on_off(self.wrap)))
            }
            LogAction::ToggleTimestamps => {
                self.top.row = 0;
                self.timestamps = !self.timestamps;
                Some(format!("timestamps {}", on_off(self.timestamps)))
            }
            LogAction::Search(query) => self.search(query),
            LogAction::ClearSearch => self
                .search
                .take()
                .map(|s| format!("search \"{}\" cleared", s.query)),
            LogAction::NextMatch => self.next_match(true),
            LogAction::PreviousMatch => self.next_match(false),
            LogAction::CycleWindow => {
                self.window = self.window.next();
                self.win = None;
                self.refresh_window();
                if !self.follow {
                    self.clamp_top();
                }
                Some(format!(
                    "window {}: {} lines",
                    self.window.label(),
                    thousands(self.visible_count())
                ))
            }
            LogAction::ScrollUp(n) => self.scroll_up(n),
            LogAction::PageUp => self.scroll_up(self.page()),
            LogAction::ScrollDown(n) => {
                self.scroll_down(n);
                None
            }
            LogAction::PageDown => {
                self.scroll_down(self.page());
                None
            }
            LogAction::Top => {
                let was = self.unfollow();
                self.top = Pos {
                    seq: self.first_visible().unwrap_or(self.first_seq),
                    row: 0,
                };
                was.then(|| "follow off".into())
            }
            LogAction::Bottom => {
                let was = self.follow;
                self.follow = true;
                (!was).then(|| "follow on".into())
            }
            LogAction::Save(path) => Some(match self.save(&path) {
                Ok(n) => format!("saved {} lines to {}", thousands(n), path.display()),
                Err(e) => e.to_string(),
            }),
        }
    }

    fn scroll_up(&mut self, n: usize) -> Option<String> {
        let was = self.unfollow();
        if let Some(top) = self.clamp_pos(self.top) {
            self.top = self.up(top, n);
        }
        was.then(|| "follow off".into())
    }

    fn scroll_down(&mut self, n: usize) {
        if self.follow {
            return;
        }
        if let Some(top) = self.clamp_pos(self.top) {
            self.top = self.down(top, n);
        }
        self.clamp_top();
    }

    // ---- search ----

    fn search(&mut self, query: String) -> Option<String> {
        if query.is_empty() {
            return self.handle(LogAction::ClearSearch);
        }
        let re = match compile(&query) {
            Ok(re) => re,
            Err(e) => return Some(format!("bad regex {query}: {e}")),
        };
        let matching = self
            .visible_seqs()
            .filter(|&s| self.is_match(&re, s))
            .count();
        self.search = Some(Search {
            query: query.clone(),
            re,
            current: None,
        });
        if matching == 0 {
            return Some(format!("no match for \"{query}\""));
        }
        // The newest match at or above the bottom of the view, as `?` in less.
        let from = if self.follow {
            self.last_visible()
        } else {
            let top = self.clamp_pos(self.top).unwrap_or_default();
            Some(
                self.down(top, usize::from(self.view_height).saturating_sub(1))
                    .seq,
            )
        };
        if let Some(from) = from {
            self.find_and_jump(from, false);
        }
        Some(format!(
            "{} {} match \"{query}\"",
            thousands(matching),
            if matching == 1 { "line" } else { "lines" }
        ))
    }

    fn visible_seqs(&self) -> impl Iterator<Item = u64> + '_ {
        let all = match &self.win {
            None => Some(self.first_seq..self.end_seq()),
            Some(_) => None,
        };
        let listed = self.win.as_ref().map(|w| w.seqs.iter().copied());
        all.into_iter()
            .flatten()
            .chain(listed.into_iter().flatten())
    }

    fn is_match(&self, re: &Regex, seq: u64) -> bool {
        self.line(seq)
            .is_some_and(|l| re.is_match(&sanitize::strip_sgr(&l.text)))
    }

    fn next_match(&mut self, forward: bool) -> Option<String> {
        let Some(search) = &self.search else {
            return Some("no search: / to search".into());
        };
        let current = search.current.filter(|&s| self.line(s).is_some());
        let start = match current {
            Some(cur) => {
                if forward {
                    self.next_visible(cur)
                } else {
                    self.prev_visible(cur)
                }
            }
            // No match jumped to yet: from the view's edge, inclusive.
            None => {
                if forward {
                    self.clamp_pos(self.top).map(|p| p.seq)
                } else {
                    self.last_visible()
                }
            }
        };
        let (start, wrapped) = match start {
            Some(s) => (s, false),
            None if forward => (self.first_visible()?, true),
            None => (self.last_visible()?, true),
        };
        let query = search.query.clone();
        match self.find_and_jump(start, forward) {
            None => Some(format!("no match for \"{query}\"")),
            Some(w) if w || wrapped => Some(format!(
                "search wrapped to the {}",
                if forward { "top" } else { "bottom" }
            )),
            Some(_) => None,
        }
    }

    /// Finds the first visible line matching the search from `start`
    /// (inclusive) in the given direction, wrapping around once, and jumps
    /// to it. Returns whether it wrapped, or `None` without a match.
    fn find_and_jump(&mut self, start: u64, forward: bool) -> Option<bool> {
        let search = self.search.as_ref()?;
        let mut seq = start;
        let mut wrapped = false;
        for _ in 0..self.visible_count() {
            if self.is_match(&search.re, seq) {
                let offset = self
                    .line(seq)
                    .and_then(|l| {
                        search
                            .re
                            .find(&sanitize::strip_sgr(&l.text))
                            .map(|m| m.start())
                    })
                    .unwrap_or(0);
                self.jump(seq, offset);
                if let Some(s) = &mut self.search {
                    s.current = Some(seq);
                }
                return Some(wrapped);
            }
            let step = if forward {
                self.next_visible(seq)
            } else {
                self.prev_visible(seq)
            };
            seq = match step {
                Some(s) => s,
                None => {
                    wrapped = true;
                    if forward {
                        self.first_visible()?
                    } else {
                        self.last_visible()?
                    }
                }
            };
        }
        None
    }

    /// Shows the match at `offset` (in the line's text without SGR) a third
    /// of the way down the view, and stops following.
    fn jump(&mut self, seq: u64, offset: usize) {
        self.follow = false;
        let row = self.row_of(seq, offset);
        self.top = self.up(Pos { seq, row }, usize::from(self.view_height) / 3);
        self.clamp_top();
    }

    // ---- save ----

    /// Writes the lines the pane shows (the window's, or all it holds) to
    /// `path`, one per line, without colours, with the source prefix and,
    /// when shown, timestamps. Returns the number of lines.
    pub fn save(&self, path: &Path) -> Result<usize, SaveError> {
        let io = |error| SaveError::Io {
            path: path.to_owned(),
            error,
        };
        // Written in place, not through a renamed temporary file: the
        // operator may name a FIFO or a device, which a rename would replace.
        let mut out = BufWriter::new(File::create(path).map_err(io)?);
        let mut n = 0;
        for seq in self.visible_seqs() {
            let Some(line) = self.line(seq) else { continue };
            if let Some(src) = &line.source {
                write!(out, "[{src}] ").map_err(io)?;
            }
            if self.timestamps {
                write!(out, "{} ", render::timestamp(line.time_ms)).map_err(io)?;
            }
            out.write_all(sanitize::strip_sgr(&line.text).as_bytes())
                .map_err(io)?;
            if line.cut > 0 {
                out.write_all(render::marker(line.cut).as_bytes())
                    .map_err(io)?;
            }
            out.write_all(b"\n").map_err(io)?;
            n += 1;
        }
        out.into_inner()
            .map_err(|e| io(e.into_error()))?
            .sync_data()
            .or_else(|e| {
                // FIFOs and terminals cannot be synced; that is no failure.
                if e.kind() == std::io::ErrorKind::InvalidInput {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(io)?;
        Ok(n)
    }
}

fn in_window(time_ms: i64, cutoff_ms: i64) -> bool {
    time_ms == NO_TIME || time_ms >= cutoff_ms
}

/// A source name as shown: pod names are DNS labels, but nothing else here
/// trusts text it did not sanitise.
fn clean_source(source: &Arc<str>) -> Arc<str> {
    let safe = source.chars().all(|c| {
        !c.is_control() && !matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    });
    if safe {
        Arc::clone(source)
    } else {
        sanitize::strip_sgr(&sanitize::sanitize(source, 256).text).into()
    }
}

/// The search's matcher: `/re/` is a regex; anything else a literal, case
/// insensitive unless it has a capital (smart case).
fn compile(query: &str) -> Result<Regex, String> {
    let (pattern, insensitive) = match query.strip_prefix('/').and_then(|q| q.strip_suffix('/')) {
        Some(re) if query.len() >= 2 => (re.to_owned(), false),
        _ => (regex::escape(query), !query.chars().any(char::is_uppercase)),
    };
    RegexBuilder::new(&pattern)
        .case_insensitive(insensitive)
        // The operator types it, but keep a typo from eating memory.
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            // The parser's message spans lines (pattern, caret, reason):
            // the footer has one, so keep the reason.
            let text = e.to_string();
            text.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid")
                .trim()
                .trim_start_matches("error: ")
                .to_owned()
        })
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
