//! Drawing: a pure function of the [`App`] onto a ratatui frame. Only the
//! visible rows of a table are turned into widgets, so a frame costs what
//! the screen shows, not what the cluster holds.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Table};
use unicode_width::UnicodeWidthStr;

use super::app::{App, Focus, Mode, View};
use super::keymap::Action;
use super::logpane::tile;
use super::theme::Role;

/// Below this the console says so instead of drawing.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 12;
/// The widest a column gets before the last one (which takes the rest).
const MAX_COLUMN: usize = 48;
/// Between two columns.
const COLUMN_SPACING: u16 = 2;

pub fn draw(frame: &mut Frame, app: &mut App) {
    let area = frame.area();
    let theme = app.theme.clone();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = format!(
            "terminal too small: {}×{}, flotilla needs {MIN_WIDTH}×{MIN_HEIGHT}",
            area.width, area.height
        );
        frame.render_widget(Paragraph::new(text).style(theme.style(Role::Warn)), area);
        return;
    }
    app.refresh();
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame, app, header);
    let (table_area, panes_area) = if app.panes.is_empty() {
        (body, None)
    } else {
        let [t, p] =
            Layout::vertical([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(body);
        (t, Some(p))
    };
    draw_body(frame, app, table_area);
    if let Some(panes_area) = panes_area {
        let areas = tile(panes_area, app.panes.len());
        let focus = app.focus;
        for (i, ((_, pane), rect)) in app.panes.iter_mut().zip(areas).enumerate() {
            pane.render(rect, frame.buffer_mut(), &theme, focus == Focus::Pane(i));
        }
    }
    draw_footer(frame, app, footer);
    match &app.mode {
        Mode::Help => draw_help(frame, app, body),
        Mode::Confirm { prompt, yes, .. } => draw_confirm(frame, app, body, prompt, *yes),
        _ => {}
    }
}

fn draw_header(frame: &mut Frame, app: &App, area: Rect) {
    let theme = &app.theme;
    let first = Line::from(vec![
        Span::styled(" flotilla ", theme.style(Role::Accent)),
        Span::styled(app.header_text(), theme.style(Role::Text)),
    ]);
    let view = &app.screen().view;
    let mut hints = vec![Span::styled(
        format!(" {} ", view.title()),
        theme.style(Role::Accent),
    )];
    for action in view.actions() {
        if app.keymap.readonly && action.mutates() {
            continue;
        }
        if let Some(key) = app.keymap.hint(*action) {
            hints.push(Span::styled(format!(" <{key}>"), theme.style(Role::Accent)));
            hints.push(Span::styled(
                format!(" {}", short(*action)),
                theme.style(Role::Muted),
            ));
        }
    }
    frame.render_widget(Paragraph::new(vec![first, Line::from(hints)]), area);
}

/// One or two words for the header's hints.
fn short(action: Action) -> &'static str {
    match action {
        Action::Enter => "open",
        Action::Logs => "logs",
        Action::Describe => "describe",
        Action::Kill => "kill",
        Action::Shell => "shell",
        Action::Delete => "delete",
        Action::ScaleUp => "scale+",
        Action::ScaleDown => "scale-",
        Action::Cordon => "cordon",
        Action::Uncordon => "uncordon",
        Action::Drain => "drain",
        Action::Filter => "filter",
        Action::Command => "command",
        Action::Help => "help",
        Action::Apply => "apply",
        Action::Back => "back",
        Action::Up => "up",
        Action::Down => "down",
        Action::PageUp => "page up",
        Action::PageDown => "page down",
        other => other.name(),
    }
}

fn draw_body(frame: &mut Frame, app: &mut App, area: Rect) {
    let theme = app.theme.clone();
    let focused = app.focus == Focus::Table;
    let screen = app.stack.last_mut().expect("a screen");
    let filter = screen
        .filter
        .as_ref()
        .map(|_| " (filtered)")
        .unwrap_or_default();
    let count = match &screen.view {
        View::Describe { lines, .. } => lines.len(),
        _ => screen.table.len(),
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(if focused {
            theme.style(Role::Accent)
        } else {
            theme.style(Role::Border)
        })
        .title(Span::styled(
            format!(" {}{filter} [{count}] ", screen.view.title()),
            theme.style(Role::Accent),
        ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    // Rows shown under the header row.
    let height = usize::from(inner.height.saturating_sub(1)).max(1);
    app.page = height;
    let screen = app.stack.last_mut().expect("a screen");
    if let View::Describe { lines, .. } = &screen.view {
        let height = usize::from(inner.height).max(1);
        screen.offset = screen.selected.min(lines.len().saturating_sub(height));
        let shown: Vec<Line> = lines
            .iter()
            .skip(screen.offset)
            .take(height)
            .map(|l| Line::styled(l.as_str(), theme.style(Role::Text)))
            .collect();
        frame.render_widget(Paragraph::new(shown), inner);
        return;
    }
    if screen.table.is_empty() {
        let text = if screen.filter.is_some() {
            "nothing matches the filter (/ then Enter on an empty line clears it)"
        } else {
            match screen.view {
                View::Nodes => "no nodes in the cluster file",
                View::Manifests => "no manifests: start with --manifests DIR",
                View::Deployments => "no deployments (or the cluster's store not read yet)",
                _ => "nothing here yet",
            }
        };
        frame.render_widget(Paragraph::new(text).style(theme.style(Role::Muted)), inner);
        return;
    }
    // Keep the selection in view.
    if screen.selected < screen.offset {
        screen.offset = screen.selected;
    } else if screen.selected >= screen.offset + height {
        screen.offset = screen.selected + 1 - height;
    }
    screen.offset = screen.offset.min(screen.table.len().saturating_sub(height));
    let end = (screen.offset + height).min(screen.table.len());
    let visible: Vec<std::borrow::Cow<[super::model::Cell]>> = (screen.offset..end)
        .map(|i| screen.table.cells(i))
        .collect();
    // Widths from the header and the visible rows: cheap, and the columns
    // fit what is on screen.
    let mut widths: Vec<usize> = screen.table.headers.iter().map(|h| h.width()).collect();
    for cells in &visible {
        for (w, cell) in widths.iter_mut().zip(cells.iter()) {
            *w = (*w).max(cell.text.width().min(MAX_COLUMN));
        }
    }
    // On a screen too narrow for them all, the optional columns go first,
    // whole; only then is every column cut short (ratatui shares the lack).
    let mut shown: Vec<usize> = (0..widths.len()).collect();
    let fits = |shown: &[usize]| {
        let spacing = usize::from(COLUMN_SPACING) * shown.len().saturating_sub(1);
        shown.iter().map(|&i| widths[i]).sum::<usize>() + spacing <= usize::from(inner.width)
    };
    for optional in &screen.table.optional {
        if fits(&shown) {
            break;
        }
        shown.retain(|i| i != optional);
    }
    let constraints: Vec<Constraint> = shown
        .iter()
        .enumerate()
        .map(|(n, &i)| {
            if n + 1 == shown.len() {
                Constraint::Fill(1)
            } else {
                Constraint::Length(widths[i] as u16)
            }
        })
        .collect();
    let header = Row::new(shown.iter().map(|&i| screen.table.headers[i]))
        .style(theme.style(Role::Muted).add_modifier(Modifier::BOLD));
    let selection = theme.style(Role::Selection);
    let rows: Vec<Row> = visible
        .iter()
        .enumerate()
        .map(|(i, cells)| {
            let selected = screen.offset + i == screen.selected;
            let cells: Vec<ratatui::widgets::Cell> = shown
                .iter()
                .filter_map(|&i| cells.get(i))
                .map(|c| {
                    let style = if selected {
                        selection
                    } else {
                        theme.style(c.role)
                    };
                    ratatui::widgets::Cell::from(Span::styled(c.text.as_str(), style))
                })
                .collect();
            let row = Row::new(cells);
            if selected { row.style(selection) } else { row }
        })
        .collect();
    frame.render_widget(
        Table::new(rows, constraints)
            .header(header)
            .column_spacing(COLUMN_SPACING)
            .style(Style::new()),
        inner,
    );
}

fn draw_footer(frame: &mut Frame, app: &App, area: Rect) {
    let theme = &app.theme;
    let line = match &app.mode {
        Mode::Command(text) => Line::from(vec![
            Span::styled(":", theme.style(Role::Accent)),
            Span::styled(text.as_str(), theme.style(Role::Text)),
            Span::styled("▏", theme.style(Role::Accent)),
        ]),
        Mode::Filter(text) => Line::from(vec![
            Span::styled("/", theme.style(Role::Accent)),
            Span::styled(text.as_str(), theme.style(Role::Text)),
            Span::styled("▏", theme.style(Role::Accent)),
        ]),
        _ => match &app.footer {
            Some((text, error, _)) => Line::styled(
                text.as_str(),
                theme.style(if *error { Role::Error } else { Role::Ok }),
            ),
            None => Line::styled(
                "? help  : command  / filter  q back  ctrl-c quit",
                theme.style(Role::Muted),
            ),
        },
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// A box of `width`×`height` in the middle of `area`.
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

fn draw_help(frame: &mut Frame, app: &App, area: Rect) {
    let theme = &app.theme;
    let view = &app.screen().view;
    let mut lines = vec![Line::styled(
        format!("{} — keys", view.title()),
        theme.style(Role::Accent),
    )];
    let groups: [(&str, &[Action]); 3] = [
        ("this view", view.actions()),
        (
            "everywhere",
            &[
                Action::Up,
                Action::Down,
                Action::PageUp,
                Action::PageDown,
                Action::Top,
                Action::Bottom,
                Action::Back,
                Action::Quit,
                Action::Command,
                Action::Filter,
                Action::Help,
                Action::Focus,
            ],
        ),
        (
            "log panes",
            &[
                Action::Follow,
                Action::Wrap,
                Action::Timestamps,
                Action::Filter,
                Action::NextMatch,
                Action::PreviousMatch,
                Action::Window,
                Action::Save,
                Action::ClosePane,
            ],
        ),
    ];
    // The keymap's rows (bound actions, mutating ones gone under
    // --readonly), grouped as the operator looks for them.
    let rows = app.keymap.help_rows();
    for (group, actions) in groups {
        lines.push(Line::styled(format!("{group}:"), theme.style(Role::Muted)));
        for action in actions {
            let Some((keys, _)) = rows.iter().find(|(_, a)| a == action) else {
                continue;
            };
            lines.push(Line::from(vec![
                Span::styled(format!("  {keys:<16}"), theme.style(Role::Accent)),
                Span::styled(action.description(), theme.style(Role::Text)),
            ]));
        }
    }
    lines.push(Line::styled(
        "any key closes this",
        theme.style(Role::Muted),
    ));
    let height = lines.len() as u16 + 2;
    popup(
        frame,
        area,
        (96, height),
        (" help ", Role::Accent),
        app,
        lines,
    );
}

/// `lines` in a bordered box of `size` over the middle of `area`, whatever
/// was drawn there cleared first.
fn popup(
    frame: &mut Frame,
    area: Rect,
    (width, height): (u16, u16),
    (title, border): (&str, Role),
    app: &App,
    lines: Vec<Line>,
) {
    let rect = centered(area, width, height);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(app.theme.style(border))
                .title(title),
        ),
        rect,
    );
}

fn draw_confirm(frame: &mut Frame, app: &App, area: Rect, prompt: &str, yes: bool) {
    let theme = &app.theme;
    let button = |label: &str, on: bool| {
        Span::styled(
            format!("[ {label} ]"),
            if on {
                theme.style(Role::Selection)
            } else {
                theme.style(Role::Text)
            },
        )
    };
    let lines = vec![
        Line::styled(prompt, theme.style(Role::Warn)),
        Line::raw(""),
        Line::from(vec![
            button("Cancel", !yes),
            Span::raw("   "),
            button("Yes", yes),
        ]),
        Line::styled(
            "←/→ choose, Enter confirms, y yes, any other key cancels",
            theme.style(Role::Muted),
        ),
    ];
    let width = (prompt.width().max(56) + 4) as u16;
    popup(
        frame,
        area,
        (width, 6),
        (" confirm ", Role::Warn),
        app,
        lines,
    );
}
