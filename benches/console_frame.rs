//! The console's frame cost (issue 7): 50 nodes and 5,000 pods, drawn into
//! ratatui's TestBackend at 200×50. `rebuild_and_draw` is a frame after the
//! data changed (the Pods table rebuilt from the snapshot, then drawn);
//! `draw` is a frame with nothing new (a key moved the selection); `nodes`
//! draws the Nodes view with its sparklines. Run with
//! `cargo bench --bench console_frame`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use flotilla::tui::app::App;
use flotilla::tui::draw::draw;
use flotilla::tui::fixture;
use flotilla::tui::keymap::Keymap;
use flotilla::tui::theme::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn bench(c: &mut Criterion) {
    let data = fixture::cluster(50, 5_000);
    let mut group = c.benchmark_group("console_frame");
    let down = KeyEvent::new(KeyCode::Down, KeyModifiers::NONE);

    let mut app = App::new(data.clone(), Theme::dark(), Keymap::default());
    app.fixed_now = Some(fixture::now());
    app.run_command("pods");
    let mut terminal = Terminal::new(TestBackend::new(200, 50)).expect("terminal");
    group.bench_function("pods_rebuild_and_draw_50_nodes_5000_pods", |b| {
        b.iter(|| {
            app.data_changed();
            terminal.draw(|f| draw(f, &mut app)).expect("draw");
            black_box(terminal.backend().buffer().area);
        })
    });
    group.bench_function("pods_draw_50_nodes_5000_pods", |b| {
        b.iter(|| {
            app.on_key(down);
            terminal.draw(|f| draw(f, &mut app)).expect("draw");
            black_box(terminal.backend().buffer().area);
        })
    });

    let mut app = App::new(data, Theme::dark(), Keymap::default());
    app.fixed_now = Some(fixture::now());
    group.bench_function("nodes_rebuild_and_draw_50_nodes", |b| {
        b.iter(|| {
            app.data_changed();
            terminal.draw(|f| draw(f, &mut app)).expect("draw");
            black_box(terminal.backend().buffer().area);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
