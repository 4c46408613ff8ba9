//! The console's log pane (issue 7): what a chatty container costs the
//! console.
//!
//! Run with `cargo bench --bench log_pane`.
//! * `push_50k_then_render`: 50,000 records of 80–120 characters (one in
//!   five with SGR colours) pushed into a fresh pane, then one 120×40 frame.
//!   Throughput is in lines/s; 50,000 lines/s costs `50,000 / throughput` of
//!   a core.
//! * `render_120x40_ring_full_wrap_search`: one frame of a pane fed
//!   1,000,000 lines (ring at 100,000), wrap on, a search active.
//! * `render_120x40_long_line_*`: one frame with a 100,000-character line at
//!   the bottom, wrap on and off.
//!
//! Before the benchmarks, the resident memory of a pane holding 100,000
//! lines of 120 characters is printed (VmRSS before and after filling).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use flotilla::agent::protocol::messages::{LogRecord, LogStream};
use flotilla::tui::logpane::{LogAction, LogPane};
use flotilla::tui::theme::Theme;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;

fn record(i: usize) -> LogRecord {
    let len = 80 + (i * 7919) % 41;
    let mut text = if i.is_multiple_of(5) {
        format!("\x1b[32m{i:08} INFO\x1b[0m \x1b[1mGET\x1b[22m /api/v1/items?page={i} ")
    } else {
        format!("{i:08} level=info msg=\"request served\" path=/api/v1/items id={i} ")
    };
    while text.len() < len {
        text.push_str(if i.is_multiple_of(97) {
            "error "
        } else {
            "lorem "
        });
    }
    text.truncate(len);
    LogRecord {
        time: Some(chrono::Utc::now()),
        stream: LogStream::Stdout,
        partial: false,
        text,
    }
}

fn frame(pane: &mut LogPane, buf: &mut Buffer, theme: &Theme) {
    let area = buf.area;
    pane.render(area, buf, theme, true);
}

fn push_throughput(c: &mut Criterion) {
    let records: Vec<LogRecord> = (0..50_000).map(record).collect();
    let theme = Theme::dark();
    let mut group = c.benchmark_group("log_pane");
    group.measurement_time(Duration::from_secs(8));
    group.sample_size(20);
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("push_50k_then_render", |b| {
        b.iter_batched(
            || records.clone(),
            |records| {
                let mut pane = LogPane::new("bench", LogPane::DEFAULT_CAPACITY);
                for r in records {
                    pane.push(None, r);
                }
                let mut buf = Buffer::empty(Rect::new(0, 0, 120, 40));
                frame(&mut pane, &mut buf, &theme);
                black_box(pane.len())
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn render(c: &mut Criterion) {
    let theme = Theme::dark();
    let mut group = c.benchmark_group("log_pane");
    group.measurement_time(Duration::from_secs(5));

    let mut pane = LogPane::new("bench", LogPane::DEFAULT_CAPACITY);
    let source: Arc<str> = Arc::from("httpd-7f9c-x2");
    for i in 0..1_000_000 {
        pane.push(Some(&source), record(i));
    }
    pane.handle(LogAction::ToggleWrap);
    pane.handle(LogAction::ToggleTimestamps);
    let mut buf = Buffer::empty(Rect::new(0, 0, 120, 40));
    frame(&mut pane, &mut buf, &theme);
    pane.handle(LogAction::Search("/err(or)?/".into()));
    pane.handle(LogAction::Bottom);
    group.bench_function("render_120x40_ring_full_wrap_search", |b| {
        b.iter(|| frame(&mut pane, &mut buf, &theme))
    });
    pane.handle(LogAction::PageUp);
    group.bench_function("render_120x40_ring_full_wrap_search_scrolled", |b| {
        b.iter(|| frame(&mut pane, &mut buf, &theme))
    });
    drop(pane);

    let long: String = (0..100_000)
        .map(|i| {
            if i % 10 == 9 {
                ' '
            } else {
                (b'a' + (i % 26) as u8) as char
            }
        })
        .collect();
    for wrap in [false, true] {
        let mut pane = LogPane::new("long", LogPane::DEFAULT_CAPACITY);
        for i in 0..100 {
            pane.push(None, record(i));
        }
        pane.push(
            None,
            LogRecord {
                text: long.clone(),
                ..record(0)
            },
        );
        if wrap {
            pane.handle(LogAction::ToggleWrap);
        }
        pane.handle(LogAction::Search("klm".into()));
        pane.handle(LogAction::Bottom);
        let name = format!(
            "render_120x40_long_line_wrap_{}",
            if wrap { "on" } else { "off" }
        );
        group.bench_function(name, |b| b.iter(|| frame(&mut pane, &mut buf, &theme)));
    }
    group.finish();
}

fn vm_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resident memory of a pane holding 100,000 lines of 120 characters.
fn memory_report() {
    let before = vm_rss_kib().unwrap_or(0);
    let mut pane = LogPane::new("memory", LogPane::DEFAULT_CAPACITY);
    let source: Arc<str> = Arc::from("httpd-7f9c-x2");
    for i in 0..100_000 {
        let mut text = format!("{i:08} level=info msg=\"request served\" ");
        text.extend(std::iter::repeat_n('x', 120 - text.len()));
        pane.push(Some(&source), LogRecord { text, ..record(i) });
    }
    let after = vm_rss_kib().unwrap_or(0);
    println!(
        "log_pane memory: 100,000 lines of 120 chars: VmRSS {:.1} MiB before, {:.1} MiB after, {:.1} MiB for the pane ({} lines held)",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        after.saturating_sub(before) as f64 / 1024.0,
        pane.len()
    );
    black_box(&pane);
}

criterion_group!(benches, push_throughput, render);

fn main() {
    memory_report();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
