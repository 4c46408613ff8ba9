//! The console's loop: owns the terminal (raw mode, alternate screen,
//! restored on quit, panic, SIGTERM and SIGHUP), turns terminal events,
//! snapshots and backend replies into state changes, and redraws when
//! something changed, at most `fps` times a second, and not at all while
//! nothing does. For a shell (`s`) it lends the whole terminal out: it stops
//! reading terminal events, leaves the alternate screen and raw mode, runs
//! the shell in the foreground with the same code as `flotilla exec -it`,
//! then takes the terminal back and redraws everything.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossterm::event::{Event, EventStream, KeyEventKind};
use futures_util::StreamExt;
use ratatui::DefaultTerminal;
use tokio::signal::unix::{SignalKind, signal};

use super::app::{App, ShellTarget};
use super::backend::Backend;
use super::config::{ConsoleConfig, ConsoleFiles};
use super::draw::draw;
use super::keymap::Keymap;
use super::model::{ConsoleData, LeaseView};
use super::theme::{choose, no_color_env};
use crate::cluster::ClusterState;
use crate::config::cluster_file;
use crate::config::paths::{Dirs, cluster_file_path};
use crate::exec::ExecRequest;

/// The console's command-line choices.
#[derive(Clone, Debug, Default)]
pub struct ConsoleOptions {
    pub theme: Option<String>,
    pub readonly: bool,
    pub manifests: Vec<PathBuf>,
    /// Frames a second at most; 0: console.toml's `refresh_fps`.
    pub fps: u32,
}

/// `flotilla` with no verb: the console on the cluster file.
pub fn run(
    options: ConsoleOptions,
    cluster: Option<PathBuf>,
    dirs: &Dirs,
) -> anyhow::Result<ExitCode> {
    let path = cluster_file_path(cluster, dirs);
    let config = cluster_file::load(&path)?;
    let files = ConsoleFiles::in_dir(&dirs.config);
    let settings = ConsoleConfig::load(&files.console)?;
    let theme = choose(
        options.theme.as_deref(),
        settings.theme.as_deref(),
        Some(&files.themes),
        no_color_env(),
    )?;
    let mut keymap = Keymap::load(&files.keymap)?;
    keymap.readonly = options.readonly || settings.readonly;
    let unbound = keymap.unbound();
    // The command line's directories first, then the cluster file's, then
    // the console file's; one directory named twice is listed once.
    let mut manifests = options.manifests.clone();
    for dir in config.manifests.iter().chain(&settings.manifests) {
        if !manifests.contains(dir) {
            manifests.push(dir.clone());
        }
    }
    let readonly = keymap.readonly;
    let fps = if options.fps == 0 {
        settings.refresh_fps
    } else {
        options.fps
    };
    let state = ClusterState::new(&config);
    let data = ConsoleData {
        snapshot: state.snapshot(),
        world: None,
        store_events: Arc::default(),
        manifests: Arc::default(),
        lease: LeaseView::Unknown,
    };
    let mut app = App::new(data, theme, keymap);
    if !unbound.is_empty() {
        let names: Vec<&str> = unbound.iter().map(|a| a.name()).collect();
        app.message(
            format!(
                "{}: no key for {}",
                files.keymap.display(),
                names.join(", ")
            ),
            true,
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Installs a panic hook that restores the terminal first.
        let mut terminal = ratatui::init();
        // The first frame, before any node is reached.
        let first = terminal.draw(|f| draw(f, &mut app)).map(drop);
        let started = first
            .map_err(anyhow::Error::from)
            .and_then(|()| Backend::start(&config, dirs, manifests, readonly));
        let mut backend = match started {
            Ok(backend) => backend,
            Err(err) => {
                ratatui::restore();
                return Err(err);
            }
        };
        let fps = fps.clamp(1, 60);
        let result = event_loop(&mut terminal, &mut app, &mut backend, fps, dirs).await;
        ratatui::restore();
        backend.stop().await;
        result.map(|()| ExitCode::SUCCESS)
    })
}

/// Suspends the console, runs a shell in `target` on this terminal, and
/// resumes the console as it was (the whole screen redrawn). A shell that
/// fails is a footer message; only losing the terminal is an error.
async fn shell(
    terminal: &mut DefaultTerminal,
    app: &mut App,
    target: &ShellTarget,
    dirs: &Dirs,
    backend: &Backend,
) -> anyhow::Result<()> {
    let node = app
        .data
        .snapshot
        .nodes
        .iter()
        .find(|n| n.name == target.node)
        .map(|n| n.config.clone());
    let Some(node) = node else {
        app.message(
            format!("node {} is not in the cluster file", target.node),
            true,
        );
        return Ok(());
    };
    let request = ExecRequest {
        namespace: target.namespace.clone(),
        pod: target.pod.clone(),
        container: target.container.clone(),
        // Empty: the agent picks the container's $SHELL, else /bin/sh.
        command: Vec::new(),
        stdin: true,
        tty: true,
    };
    ratatui::restore();
    // Where the shell starts: a clean screen, and a line saying how back.
    print!("\x1b[H\x1b[2J");
    println!(
        "flotilla: shell in pod {}/{} on {} (exit to return to the console)\r",
        target.namespace, target.pod, target.node
    );
    let (agent, ssh) = backend.node_connection(&target.node);
    let result = crate::exec::run_on_node(&node, dirs, &request, agent.as_ref(), ssh)
        .await
        .map_err(|e| crate::report::one_line(&anyhow::Error::from(e)));
    // What the terminal answered the shell after it was gone (busybox's
    // line editor asks for the cursor position at each prompt) must not
    // reach the console as keys.
    let _ = nix::sys::termios::tcflush(std::io::stdin(), nix::sys::termios::FlushArg::TCIFLUSH);
    crossterm::terminal::enable_raw_mode().context("taking the terminal back")?;
    crossterm::execute!(
        std::io::stdout(),
        crossterm::terminal::EnterAlternateScreen,
        crossterm::terminal::Clear(crossterm::terminal::ClearType::All)
    )
    .context("taking the terminal back")?;
    // The screen is whatever the shell left: a terminal with empty buffers
    // draws the whole frame again. (`Terminal::clear` would ask the terminal
    // for the cursor position, and the answer can be lost behind what the
    // shell's terminal still had to say.)
    *terminal = ratatui::Terminal::new(ratatui::backend::CrosstermBackend::new(std::io::stdout()))
        .context("taking the terminal back")?;
    app.shell_ended(target, result);
    Ok(())
}

async fn event_loop(
    terminal: &mut DefaultTerminal,
    app: &mut App,
    backend: &mut Backend,
    fps: u32,
    dirs: &Dirs,
) -> anyhow::Result<()> {
    let frame_every = Duration::from_secs(1) / fps;
    let mut last_draw = Instant::now();
    let mut events = EventStream::new();
    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    // Ages and messages change with time alone.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    app.set_snapshot(Arc::clone(&backend.snapshots.borrow_and_update()));
    loop {
        if app.quit {
            return Ok(());
        }
        let due = app.dirty || app.panes.iter().any(|(_, p)| p.dirty());
        let draw_at = tokio::time::Instant::from_std(last_draw + frame_every);
        tokio::select! {
            _ = tokio::time::sleep_until(draw_at), if due => {
                terminal.draw(|f| draw(f, app)).context("drawing the console")?;
                app.dirty = false;
                last_draw = Instant::now();
            }
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) if key.kind != KeyEventKind::Release => {
                    for request in app.on_key(key) {
                        let _ = backend.requests.send(request);
                    }
                    if let Some(target) = app.shell.take() {
                        // Nothing may read the terminal while the shell has
                        // it: dropping the stream stops crossterm's reader.
                        drop(events);
                        let result = shell(terminal, app, &target, dirs, backend).await;
                        events = EventStream::new();
                        result?;
                    }
                }
                Some(Ok(Event::Resize(..))) => app.dirty = true,
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(err).context("reading the terminal"),
                None => return Ok(()),
            },
            changed = backend.snapshots.changed() => {
                if changed.is_ok() {
                    let snapshot = Arc::clone(&backend.snapshots.borrow_and_update());
                    app.set_snapshot(snapshot);
                }
            }
            reply = backend.replies.recv() => {
                if let Some(reply) = reply {
                    app.on_reply(reply);
                    // Take what else is waiting: one frame for a burst of logs.
                    while let Ok(more) = backend.replies.try_recv() {
                        app.on_reply(more);
                    }
                }
            }
            _ = tick.tick() => {
                app.expire_message();
                app.data_changed();
            }
            _ = terminate.recv() => return Ok(()),
            _ = hangup.recv() => return Ok(()),
        }
    }
}
