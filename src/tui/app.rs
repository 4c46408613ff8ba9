//! The console's state and what keys do to it: a stack of views (Enter
//! drills down, Esc goes back), the selection, the filter, command mode,
//! confirmations, log panes and the footer. Keys become [`Request`]s for
//! the backend; replies come back through [`App::on_reply`]. Drawing is a
//! pure function of this state ([`super::draw`]); nothing here waits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use regex::Regex;

use super::backend::{LogTarget, Reply, Request};
use super::keymap::{Action, Keymap};
use super::logpane::{LogAction, LogPane};
use super::model::{self, ConsoleData, LeaseView, PodScope, RowKey, Table};
use super::theme::Theme;

/// Log panes shown at once.
pub const MAX_PANES: usize = 4;
/// How long a footer message stays.
const MESSAGE_FOR: Duration = Duration::from_secs(8);

/// What a screen shows.
#[derive(Clone, Debug, PartialEq)]
pub enum View {
    Nodes,
    Pods(PodScope),
    Deployments,
    Containers {
        namespace: String,
        pod: String,
        node: String,
    },
    Events,
    Manifests,
    /// Text (describe, a manifest), scrolled.
    Describe {
        title: String,
        lines: Vec<String>,
    },
}

impl View {
    pub fn title(&self) -> String {
        match self {
            View::Nodes => "Nodes".into(),
            View::Pods(scope) => match (&scope.node, &scope.deployment) {
                (Some(node), _) => format!("Pods on {node}"),
                (_, Some(d)) => format!("Pods of deployment {d}"),
                _ => "Pods".into(),
            },
            View::Deployments => "Deployments".into(),
            View::Containers { pod, .. } => format!("Containers of {pod}"),
            View::Events => "Events".into(),
            View::Manifests => "Manifests".into(),
            View::Describe { title, .. } => title.clone(),
        }
    }

    /// The keys help and the header mention for this view.
    pub fn actions(&self) -> &'static [Action] {
        use Action::*;
        match self {
            View::Nodes => &[
                Enter, Describe, Cordon, Uncordon, Drain, Filter, Command, Help,
            ],
            View::Pods(_) => &[
                Enter, Logs, Shell, Describe, Kill, Delete, Filter, Command, Help,
            ],
            View::Deployments => &[
                Enter, Logs, Describe, ScaleUp, ScaleDown, Delete, Filter, Command, Help,
            ],
            View::Containers { .. } => &[Logs, Shell, Describe, Kill, Command, Help],
            View::Events => &[Describe, Filter, Command, Help],
            View::Manifests => &[Apply, Enter, Filter, Command, Help],
            View::Describe { .. } => &[Up, Down, PageUp, PageDown, Back],
        }
    }
}

/// A filter over rows: a substring (case-insensitive), or a regex when
/// written between slashes.
#[derive(Clone, Debug)]
pub enum Filter {
    Substring(String),
    Regex(Regex),
}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, regex::Error> {
        if text.len() >= 2 && text.starts_with('/') && text.ends_with('/') {
            Ok(Filter::Regex(Regex::new(&text[1..text.len() - 1])?))
        } else {
            Ok(Filter::Substring(text.to_lowercase()))
        }
    }

    pub fn matches(&self, cells: &[model::Cell]) -> bool {
        cells.iter().any(|c| match self {
            Filter::Substring(s) => c.text.to_lowercase().contains(s),
            Filter::Regex(r) => r.is_match(&c.text),
        })
    }

    fn text(&self) -> String {
        match self {
            Filter::Substring(s) => s.clone(),
            Filter::Regex(r) => format!("/{}/", r.as_str()),
        }
    }
}

/// One screen of the stack: its view, selection and filter, and the table
/// built for the data it last saw.
pub struct Screen {
    pub view: View,
    pub selected: usize,
    /// The first row shown.
    pub offset: usize,
    pub filter: Option<Filter>,
    /// Built rows (filtered), and the data generation they were built for.
    pub table: Table,
    built_for: u64,
}

impl Screen {
    fn new(view: View) -> Screen {
        Screen {
            view,
            selected: 0,
            offset: 0,
            filter: None,
            table: Table::default(),
            built_for: u64::MAX,
        }
    }

    /// The selected row's key (made now: a pod row holds none).
    pub fn selected_key(&self) -> Option<RowKey> {
        self.table.key(self.selected)
    }
}

/// What the bottom line is doing.
#[derive(Clone, Debug)]
pub enum Mode {
    Normal,
    /// `:` typed so far.
    Command(String),
    /// `/` typed so far (rows, or the focused log pane's search).
    Filter(String),
    /// A question whose default answer is Cancel.
    Confirm {
        prompt: String,
        request: Box<Request>,
        yes: bool,
    },
    Help,
}

/// Where keys go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    Table,
    Pane(usize),
}

pub struct App {
    pub data: ConsoleData,
    /// Bumped whenever `data` changes, so screens rebuild their tables.
    generation: u64,
    pub theme: Theme,
    pub keymap: Keymap,
    pub stack: Vec<Screen>,
    pub mode: Mode,
    pub footer: Option<(String, bool, Instant)>,
    pub panes: Vec<(u64, LogPane)>,
    pub focus: Focus,
    next_pane: u64,
    /// `None`: every namespace.
    pub namespace: Option<String>,
    pub quit: bool,
    /// Something changed since the last frame.
    pub dirty: bool,
    /// The body's height at the last frame, for paging.
    pub page: usize,
    /// Requests made while handling a key, sent with its result.
    pending: Vec<Request>,
    /// A shell asked for (`s`): the loop suspends the console and hands
    /// the terminal over, then takes it back.
    pub shell: Option<ShellTarget>,
    /// Ages are worked out at this time instead of the clock's (tests).
    pub fixed_now: Option<chrono::DateTime<Utc>>,
}

/// Where a shell goes: a pod's container on its node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShellTarget {
    pub node: String,
    pub namespace: String,
    pub pod: String,
    /// None: the pod's first container.
    pub container: Option<String>,
}

/// Commands of `:` mode, for completion.
pub const COMMANDS: [&str; 9] = [
    "nodes",
    "pods",
    "deploy",
    "containers",
    "events",
    "manifests",
    "ns",
    "help",
    "quit",
];

impl App {
    pub fn new(data: ConsoleData, theme: Theme, keymap: Keymap) -> App {
        App {
            data,
            generation: 0,
            theme,
            keymap,
            stack: vec![Screen::new(View::Nodes)],
            mode: Mode::Normal,
            footer: None,
            panes: Vec::new(),
            focus: Focus::Table,
            next_pane: 1,
            namespace: None,
            quit: false,
            dirty: true,
            page: 20,
            pending: Vec::new(),
            shell: None,
            fixed_now: None,
        }
    }

    pub fn screen(&self) -> &Screen {
        self.stack.last().expect("the stack always holds a screen")
    }

    fn screen_mut(&mut self) -> &mut Screen {
        self.stack
            .last_mut()
            .expect("the stack always holds a screen")
    }

    /// The data changed: screens rebuild on the next frame.
    pub fn data_changed(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.dirty = true;
    }

    pub fn set_snapshot(&mut self, snapshot: Arc<crate::cluster::ClusterSnapshot>) {
        self.data.snapshot = snapshot;
        self.data_changed();
    }

    /// Rebuilds the top screen's table if the data changed since it was
    /// built, keeping the selection on the same object.
    pub fn refresh(&mut self) {
        let generation = self.generation;
        let now = self.fixed_now.unwrap_or_else(Utc::now);
        let namespace = self.namespace.clone();
        let data = &self.data;
        let screen = self.stack.last_mut().expect("a screen");
        if screen.built_for == generation {
            return;
        }
        let kept = screen.selected_key();
        let mut table = match &screen.view {
            View::Nodes => model::nodes_table(data, now),
            View::Pods(scope) => {
                let mut scope = scope.clone();
                if scope.namespace.is_none() {
                    scope.namespace = namespace.clone();
                }
                model::pods_table(data, &scope, now)
            }
            View::Deployments => model::deployments_table(data, namespace.as_deref(), now),
            View::Containers {
                namespace,
                pod,
                node,
            } => model::containers_table(data, namespace, pod, node),
            View::Events => model::events_table(data, now),
            View::Manifests => model::manifests_table(data),
            View::Describe { .. } => Table::default(),
        };
        if let Some(filter) = &screen.filter {
            table.retain(|cells| filter.matches(cells));
        }
        if let Some(key) = kept
            && let Some(i) = table.position(&key)
        {
            screen.selected = i;
        }
        let len = match &screen.view {
            View::Describe { lines, .. } => lines.len(),
            _ => table.len(),
        };
        screen.selected = screen.selected.min(len.saturating_sub(1));
        screen.table = table;
        screen.built_for = generation;
    }

    pub fn message(&mut self, text: impl Into<String>, error: bool) {
        self.footer = Some((text.into(), error, Instant::now()));
        self.dirty = true;
    }

    /// Drops a footer message that has been shown long enough.
    pub fn expire_message(&mut self) {
        if self
            .footer
            .as_ref()
            .is_some_and(|(_, _, at)| at.elapsed() > MESSAGE_FOR)
        {
            self.footer = None;
            self.dirty = true;
        }
    }

    pub fn on_reply(&mut self, reply: Reply) {
        match reply {
            Reply::Message { text, error } => self.message(text, error),
            Reply::World(world) => {
                self.data.world = Some(world);
                self.data_changed();
            }
            Reply::Events(events) => {
                self.data.store_events = events;
                self.data_changed();
            }
            Reply::Lease(lease) => {
                self.data.lease = lease;
                self.dirty = true;
            }
            Reply::Manifests(manifests) => {
                self.data.manifests = manifests;
                self.data_changed();
            }
            Reply::Log {
                pane,
                source,
                records,
            } => {
                if let Some((_, p)) = self.panes.iter_mut().find(|(id, _)| *id == pane) {
                    for record in records {
                        p.push(source.as_ref(), record);
                    }
                    self.dirty = true;
                }
            }
            Reply::LogEnded { pane, text } => {
                if self.panes.iter().any(|(id, _)| *id == pane) {
                    self.message(text, false);
                }
            }
        }
    }

    /// A key: what it changes here, and what to ask the backend.
    pub fn on_key(&mut self, key: KeyEvent) -> Vec<Request> {
        self.dirty = true;
        // ctrl-c quits from anywhere, whatever the keymap says.
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            self.quit = true;
            return Vec::new();
        }
        match self.mode.clone() {
            Mode::Command(text) => self.command_key(key, text),
            Mode::Filter(text) => {
                self.filter_key(key, text);
                Vec::new()
            }
            Mode::Confirm { request, yes, .. } => self.confirm_key(key, *request, yes),
            Mode::Help => {
                self.mode = Mode::Normal;
                Vec::new()
            }
            Mode::Normal => {
                let Some(action) = self.keymap.action(&key) else {
                    if self.keymap.readonly
                        && let Some(a) = Keymap::default().action(&key)
                        && a.mutates()
                    {
                        self.message("read-only console: that key changes the cluster", true);
                    }
                    return Vec::new();
                };
                match self.focus {
                    Focus::Pane(i) if i < self.panes.len() => {
                        self.pane_action(i, action);
                        std::mem::take(&mut self.pending)
                    }
                    _ => self.table_action(action),
                }
            }
        }
    }

    fn pane_action(&mut self, i: usize, action: Action) {
        let log_action = match action {
            Action::Up => Some(LogAction::ScrollUp(1)),
            Action::Down => Some(LogAction::ScrollDown(1)),
            Action::PageUp => Some(LogAction::PageUp),
            Action::PageDown => Some(LogAction::PageDown),
            Action::Top => Some(LogAction::Top),
            Action::Bottom => Some(LogAction::Bottom),
            Action::Follow => Some(LogAction::ToggleFollow),
            Action::Wrap => Some(LogAction::ToggleWrap),
            Action::Timestamps => Some(LogAction::ToggleTimestamps),
            Action::NextMatch => Some(LogAction::NextMatch),
            Action::PreviousMatch => Some(LogAction::PreviousMatch),
            Action::Window => Some(LogAction::CycleWindow),
            Action::Save => {
                let name: String = self.panes[i]
                    .1
                    .title()
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '-' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                let file = format!("{name}-{}.log", Utc::now().format("%Y%m%dT%H%M%S"));
                Some(LogAction::Save(std::env::temp_dir().join(file)))
            }
            Action::Filter => {
                self.mode = Mode::Filter(String::new());
                None
            }
            Action::Focus => {
                self.focus = if i + 1 < self.panes.len() {
                    Focus::Pane(i + 1)
                } else {
                    Focus::Table
                };
                None
            }
            Action::ClosePane => {
                self.close_pane(i);
                None
            }
            Action::Back => {
                self.focus = Focus::Table;
                None
            }
            Action::Quit => {
                self.quit = true;
                None
            }
            Action::Help => {
                self.mode = Mode::Help;
                None
            }
            Action::Command => {
                self.mode = Mode::Command(String::new());
                None
            }
            _ => None,
        };
        if let Some(a) = log_action
            && let Some(text) = self.panes[i].1.handle(a)
        {
            self.message(text, false);
        }
    }

    fn close_pane(&mut self, i: usize) {
        if i >= self.panes.len() {
            return;
        }
        let (id, _) = self.panes.remove(i);
        self.focus = if self.panes.is_empty() {
            Focus::Table
        } else {
            Focus::Pane(i.min(self.panes.len() - 1))
        };
        self.pending.push(Request::CloseLogs { pane: id });
    }

    fn table_action(&mut self, action: Action) -> Vec<Request> {
        let page = self.page.max(1);
        let len = match &self.screen().view {
            View::Describe { lines, .. } => lines.len(),
            _ => self.screen().table.len(),
        };
        let mut requests = Vec::new();
        let screen = self.screen_mut();
        match action {
            Action::Up => screen.selected = screen.selected.saturating_sub(1),
            Action::Down => screen.selected = (screen.selected + 1).min(len.saturating_sub(1)),
            Action::PageUp => screen.selected = screen.selected.saturating_sub(page),
            Action::PageDown => {
                screen.selected = (screen.selected + page).min(len.saturating_sub(1))
            }
            Action::Top => screen.selected = 0,
            Action::Bottom => screen.selected = len.saturating_sub(1),
            Action::Back => self.back(),
            Action::Quit => self.quit = true,
            Action::Command => self.mode = Mode::Command(String::new()),
            Action::Filter => {
                let current = self.screen().filter.as_ref().map(Filter::text);
                self.mode = Mode::Filter(current.unwrap_or_default());
            }
            Action::Help => self.mode = Mode::Help,
            Action::Enter => self.enter(),
            Action::Describe => self.describe(),
            Action::Logs => requests.extend(self.open_logs()),
            Action::Focus if !self.panes.is_empty() => self.focus = Focus::Pane(0),
            Action::ClosePane if !self.panes.is_empty() => {
                self.close_pane(self.panes.len() - 1);
            }
            action if action.mutates() => requests.extend(self.mutate(action)),
            _ => {}
        }
        requests.extend(std::mem::take(&mut self.pending));
        requests
    }

    fn back(&mut self) {
        if self.stack.len() > 1 {
            self.stack.pop();
            self.data_changed();
        } else if !self.panes.is_empty() {
            // q with panes open closes them before quitting.
            for (id, _) in self.panes.drain(..) {
                self.pending.push(Request::CloseLogs { pane: id });
            }
            self.focus = Focus::Table;
        } else {
            self.quit = true;
        }
    }

    fn push(&mut self, view: View) {
        self.stack.push(Screen::new(view));
        self.data_changed();
    }

    fn enter(&mut self) {
        let Some(key) = self.screen().selected_key() else {
            return;
        };
        match key {
            RowKey::Node(node) => self.push(View::Pods(PodScope {
                node: Some(node),
                ..PodScope::default()
            })),
            RowKey::Pod {
                namespace,
                name,
                node,
            } if !node.is_empty() => self.push(View::Containers {
                namespace,
                pod: name,
                node,
            }),
            RowKey::Deployment { namespace, name } => self.push(View::Pods(PodScope {
                namespace: Some(namespace),
                deployment: Some(name),
                ..PodScope::default()
            })),
            RowKey::Manifest(i) => {
                if let Some(entry) = self.data.manifests.get(i) {
                    let text = std::fs::read_to_string(&entry.path)
                        .unwrap_or_else(|e| format!("cannot read {}: {e}", entry.path.display()));
                    self.push(View::Describe {
                        title: entry.file.clone(),
                        lines: text
                            .lines()
                            .map(|l| model::printable(l.to_string()))
                            .collect(),
                    });
                }
            }
            RowKey::Event(_) => self.describe(),
            _ => {}
        }
    }

    fn describe(&mut self) {
        let Some(key) = self.screen().selected_key() else {
            return;
        };
        let world = self.data.world.clone();
        let snapshot = Arc::clone(&self.data.snapshot);
        let text = match &key {
            RowKey::Node(node) => crate::cli::nodes::describe_node(&snapshot, node, Utc::now())
                .map_err(|e| e.to_string()),
            RowKey::Pod {
                namespace, name, ..
            }
            | RowKey::Container {
                namespace,
                pod: name,
                ..
            } => world
                .as_ref()
                .and_then(|w| {
                    crate::cli::describe::pod_description(
                        w,
                        &snapshot,
                        &self.data.store_events,
                        namespace,
                        name,
                    )
                })
                .ok_or_else(|| format!("pod {name} not read from the cluster yet")),
            RowKey::Deployment { namespace, name } => world
                .as_ref()
                .and_then(|w| {
                    crate::cli::describe::deployment_description(
                        w,
                        &self.data.store_events,
                        namespace,
                        name,
                    )
                })
                .ok_or_else(|| format!("deployment {name} not read from the cluster yet")),
            RowKey::Event(i) => model::event_lines(&self.data)
                .get(*i)
                .map(|e| {
                    format!(
                        "Time:\t{}\nType:\t{}\nReason:\t{}\nObject:\t{}\nMessage:\t{}\n",
                        e.time.to_rfc3339(),
                        if e.warning { "Warning" } else { "Normal" },
                        e.reason,
                        e.object,
                        e.message
                    )
                })
                .ok_or_else(|| "the event is gone".to_string()),
            RowKey::Manifest(i) => self
                .data
                .manifests
                .get(*i)
                .map(|m| match &m.object {
                    Some(object) => serde_json::to_string_pretty(object)
                        .unwrap_or_else(|e| format!("cannot show: {e}")),
                    None => m.error.clone().unwrap_or_default(),
                })
                .ok_or_else(|| "the manifest is gone".to_string()),
        };
        match text {
            Ok(text) => {
                let title = format!("Describe {}", key_name(&key));
                let lines = text
                    .lines()
                    .map(|l| model::printable(l.to_string()))
                    .collect();
                self.push(View::Describe { title, lines });
            }
            Err(err) => self.message(err, true),
        }
    }

    fn open_logs(&mut self) -> Vec<Request> {
        let Some(key) = self.screen().selected_key() else {
            return Vec::new();
        };
        let snapshot = Arc::clone(&self.data.snapshot);
        let targets_of_pod = |namespace: &str, name: &str, node: &str, prefix_pod: bool| {
            let Some(record) = snapshot.node(node).and_then(|n| n.pod(namespace, name)) else {
                return Vec::new();
            };
            let several = record.pod.spec.containers.len() > 1;
            record
                .pod
                .spec
                .containers
                .iter()
                .map(|c| LogTarget {
                    node: node.to_string(),
                    namespace: namespace.to_string(),
                    pod: name.to_string(),
                    container: Some(c.name.clone()),
                    source: match (prefix_pod, several) {
                        (true, true) => Some(Arc::from(format!("{name}/{}", c.name))),
                        (true, false) => Some(Arc::from(name)),
                        (false, true) => Some(Arc::from(c.name.as_str())),
                        (false, false) => None,
                    },
                })
                .collect::<Vec<_>>()
        };
        let (title, targets) = match &key {
            RowKey::Pod {
                namespace,
                name,
                node,
            } => (name.clone(), targets_of_pod(namespace, name, node, false)),
            RowKey::Container {
                namespace,
                pod,
                node,
                name,
            } => (
                format!("{pod}/{name}"),
                vec![LogTarget {
                    node: node.clone(),
                    namespace: namespace.clone(),
                    pod: pod.clone(),
                    container: Some(name.clone()),
                    source: None,
                }],
            ),
            RowKey::Deployment { namespace, name } => {
                let mut targets = Vec::new();
                for node in &snapshot.nodes {
                    for record in node.pods.iter() {
                        if record.pod.metadata.namespace == *namespace
                            && crate::controller::naming::owner(&record.pod) == Some(name.as_str())
                            && !record.status.phase.is_terminal()
                        {
                            targets.extend(targets_of_pod(
                                namespace,
                                &record.pod.metadata.name,
                                &node.name,
                                true,
                            ));
                        }
                    }
                }
                (format!("deployment {name}"), targets)
            }
            _ => {
                self.message("logs: select a pod, a container or a deployment", true);
                return Vec::new();
            }
        };
        if targets.is_empty() {
            self.message(format!("{title}: no container to show logs of (yet)"), true);
            return Vec::new();
        }
        let mut requests = Vec::new();
        if self.panes.len() >= MAX_PANES {
            let (old, _) = self.panes.remove(0);
            requests.push(Request::CloseLogs { pane: old });
        }
        let id = self.next_pane;
        self.next_pane += 1;
        self.panes
            .push((id, LogPane::new(title, LogPane::DEFAULT_CAPACITY)));
        self.focus = Focus::Pane(self.panes.len() - 1);
        requests.push(Request::Logs { pane: id, targets });
        requests
    }

    /// The mutating keys: asked of the backend (delete asks first).
    fn mutate(&mut self, action: Action) -> Vec<Request> {
        let key = self.screen().selected_key();
        let request = match (action, key) {
            (
                Action::Kill,
                Some(RowKey::Pod {
                    namespace, name, ..
                }),
            )
            | (
                Action::Kill,
                Some(RowKey::Container {
                    namespace,
                    pod: name,
                    ..
                }),
            ) => {
                self.message(format!("killing pod/{name}…"), false);
                Request::Kill { namespace, name }
            }
            (
                Action::Shell,
                Some(RowKey::Pod {
                    namespace,
                    name,
                    node,
                }),
            ) => {
                self.shell(ShellTarget {
                    node,
                    namespace,
                    pod: name,
                    container: None,
                });
                return Vec::new();
            }
            (
                Action::Shell,
                Some(RowKey::Container {
                    namespace,
                    pod,
                    node,
                    name,
                }),
            ) => {
                self.shell(ShellTarget {
                    node,
                    namespace,
                    pod,
                    container: Some(name),
                });
                return Vec::new();
            }
            (
                Action::Delete,
                Some(RowKey::Pod {
                    namespace, name, ..
                }),
            ) => {
                self.confirm(
                    format!("Delete pod/{name}?"),
                    Request::DeletePod { namespace, name },
                );
                return Vec::new();
            }
            (Action::Delete, Some(RowKey::Deployment { namespace, name })) => {
                self.confirm(
                    format!("Delete deployment.apps/{name} and its pods?"),
                    Request::DeleteDeployment { namespace, name },
                );
                return Vec::new();
            }
            (Action::ScaleUp | Action::ScaleDown, Some(RowKey::Deployment { namespace, name })) => {
                Request::Scale {
                    namespace,
                    name,
                    by: if action == Action::ScaleUp { 1 } else { -1 },
                }
            }
            (Action::Cordon, Some(RowKey::Node(node))) => Request::Cordon {
                node,
                unschedulable: true,
            },
            (Action::Uncordon, Some(RowKey::Node(node))) => Request::Cordon {
                node,
                unschedulable: false,
            },
            (Action::Drain, Some(RowKey::Node(node))) => {
                self.confirm(
                    format!("Drain node/{node} (cordon it and evict its pods)?"),
                    Request::Drain { node },
                );
                return Vec::new();
            }
            (Action::Apply, Some(RowKey::Manifest(i))) => match self.data.manifests.get(i).cloned()
            {
                Some(entry) => {
                    self.message(format!("applying {} {}…", entry.kind, entry.name), false);
                    Request::Apply(Box::new(entry))
                }
                None => return Vec::new(),
            },
            (action, _) => {
                self.message(format!("{}: not on this row", action.description()), true);
                return Vec::new();
            }
        };
        vec![request]
    }

    /// Asks the loop for a shell, unless the pod has no node yet.
    fn shell(&mut self, target: ShellTarget) {
        if target.node.is_empty() {
            self.message(
                format!(
                    "pod/{} has no node yet: nothing runs to open a shell in",
                    target.pod
                ),
                true,
            );
        } else {
            self.shell = Some(target);
        }
    }

    /// What a shell's end says in the footer.
    pub fn shell_ended(&mut self, target: &ShellTarget, result: Result<i32, String>) {
        let what = match &target.container {
            Some(c) => format!("pod/{} container {c}", target.pod),
            None => format!("pod/{}", target.pod),
        };
        match result {
            Ok(0) => self.message(format!("shell in {what} ended"), false),
            Ok(127) => self.message(
                format!(
                    "shell in {what}: the image has no shell (/bin/sh, or its $SHELL) (exit 127)"
                ),
                true,
            ),
            Ok(code) => self.message(
                format!("shell in {what} ended with exit code {code}"),
                code > 128,
            ),
            Err(e) => self.message(format!("shell in {what}: {e}"), true),
        }
        self.data_changed();
    }

    fn confirm(&mut self, prompt: String, request: Request) {
        self.mode = Mode::Confirm {
            prompt,
            request: Box::new(request),
            yes: false,
        };
    }

    fn confirm_key(&mut self, key: KeyEvent, request: Request, yes: bool) -> Vec<Request> {
        match key.code {
            KeyCode::Left | KeyCode::Right | KeyCode::Tab | KeyCode::BackTab => {
                if let Mode::Confirm { yes, .. } = &mut self.mode {
                    *yes = !*yes;
                }
                Vec::new()
            }
            KeyCode::Enter => {
                self.mode = Mode::Normal;
                if yes { vec![request] } else { Vec::new() }
            }
            KeyCode::Char('y') => {
                self.mode = Mode::Normal;
                vec![request]
            }
            _ => {
                self.mode = Mode::Normal;
                self.message("cancelled", false);
                Vec::new()
            }
        }
    }

    fn filter_key(&mut self, key: KeyEvent, mut text: String) {
        match key.code {
            KeyCode::Esc => {
                self.mode = Mode::Normal;
                if let Focus::Pane(i) = self.focus
                    && let Some((_, pane)) = self.panes.get_mut(i)
                {
                    pane.handle(LogAction::ClearSearch);
                } else {
                    self.screen_mut().filter = None;
                    self.data_changed();
                }
            }
            KeyCode::Enter => {
                self.mode = Mode::Normal;
                if let Focus::Pane(i) = self.focus
                    && let Some((_, pane)) = self.panes.get_mut(i)
                {
                    let message = if text.is_empty() {
                        pane.handle(LogAction::ClearSearch)
                    } else {
                        pane.handle(LogAction::Search(text))
                    };
                    if let Some(m) = message {
                        self.message(m, false);
                    }
                    return;
                }
                if text.is_empty() {
                    self.screen_mut().filter = None;
                } else {
                    match Filter::parse(&text) {
                        Ok(f) => self.screen_mut().filter = Some(f),
                        Err(e) => self.message(format!("filter {text}: {e}"), true),
                    }
                }
                self.screen_mut().selected = 0;
                self.data_changed();
            }
            code => {
                if edit(&mut text, code) {
                    self.mode = Mode::Filter(text);
                }
            }
        }
    }

    fn command_key(&mut self, key: KeyEvent, mut text: String) -> Vec<Request> {
        match key.code {
            KeyCode::Esc => self.mode = Mode::Normal,
            KeyCode::Tab => {
                let candidates = complete(&text);
                if let [one] = candidates.as_slice() {
                    text = (*one).to_string();
                    if *one == "ns" {
                        text.push(' ');
                    }
                } else if !candidates.is_empty() {
                    self.message(candidates.join("  "), false);
                }
                self.mode = Mode::Command(text);
            }
            KeyCode::Enter => {
                self.mode = Mode::Normal;
                return self.run_command(text.trim());
            }
            code => {
                if edit(&mut text, code) {
                    self.mode = Mode::Command(text);
                }
            }
        }
        Vec::new()
    }

    /// Runs a `:` command.
    pub fn run_command(&mut self, text: &str) -> Vec<Request> {
        let mut words = text.split_whitespace();
        let Some(word) = words.next() else {
            return Vec::new();
        };
        let view = match word {
            "nodes" | "node" | "no" => View::Nodes,
            "pods" | "pod" | "po" => View::Pods(PodScope::default()),
            "deploy" | "deployments" | "deployment" | "dp" => View::Deployments,
            "events" | "event" | "ev" => View::Events,
            // Read again on the way in: files change under the console.
            "manifests" | "manifest" | "mf" => View::Manifests,
            "containers" | "container" | "co" => match self.screen().selected_key() {
                Some(RowKey::Pod {
                    namespace,
                    name,
                    node,
                }) if !node.is_empty() => View::Containers {
                    namespace,
                    pod: name,
                    node,
                },
                _ => {
                    self.message("containers: select a pod first", true);
                    return Vec::new();
                }
            },
            "ns" | "namespace" => {
                match words.next() {
                    None | Some("all" | "-A") => {
                        self.namespace = None;
                        self.message("all namespaces", false);
                    }
                    Some(ns) => {
                        self.namespace = Some(ns.to_string());
                        self.message(format!("namespace {ns}"), false);
                    }
                }
                self.data_changed();
                return Vec::new();
            }
            "help" | "?" => {
                self.mode = Mode::Help;
                return Vec::new();
            }
            "quit" | "q" | "q!" => {
                self.quit = true;
                return Vec::new();
            }
            other => {
                self.message(
                    format!("unknown command {other:?}; try {}", COMMANDS.join(", ")),
                    true,
                );
                return Vec::new();
            }
        };
        let rescan = view == View::Manifests;
        // A top-level view replaces the stack, as k9s's `:pods` does.
        self.stack.truncate(1);
        self.stack[0] = Screen::new(view);
        self.data_changed();
        if rescan {
            vec![Request::RescanManifests]
        } else {
            Vec::new()
        }
    }

    /// The header's facts: cluster, nodes, CPU, memory, lease, namespace.
    pub fn header_text(&self) -> String {
        let snapshot = &self.data.snapshot;
        let (ready, total, cpu, memory) = model::cluster_summary(snapshot);
        let pct = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.0}%"));
        let lease = match &self.data.lease {
            LeaseView::Unknown => "lease: -",
            LeaseView::Mine => "reconciling",
            LeaseView::Other(_) => "standby",
        };
        format!(
            "{}  nodes {ready}/{total} Ready  cpu {}  mem {}  {lease}  ns {}{}",
            snapshot.cluster_name,
            pct(cpu),
            pct(memory),
            self.namespace.as_deref().unwrap_or("all"),
            if self.keymap.readonly {
                "  READ-ONLY"
            } else {
                ""
            }
        )
    }
}

/// Backspace or a typed character on the bottom line's text; whether the
/// key was one of them.
fn edit(text: &mut String, code: KeyCode) -> bool {
    match code {
        KeyCode::Backspace => {
            text.pop();
            true
        }
        KeyCode::Char(c) => {
            text.push(c);
            true
        }
        _ => false,
    }
}

/// The commands starting with `prefix`.
pub fn complete(prefix: &str) -> Vec<&'static str> {
    COMMANDS
        .iter()
        .copied()
        .filter(|c| c.starts_with(prefix.trim()))
        .collect()
}

fn key_name(key: &RowKey) -> String {
    match key {
        RowKey::Node(n) => format!("node/{n}"),
        RowKey::Pod { name, .. } => format!("pod/{name}"),
        RowKey::Deployment { name, .. } => format!("deployment/{name}"),
        RowKey::Container { pod, name, .. } => format!("pod/{pod} ({name})"),
        RowKey::Event(_) => "event".into(),
        RowKey::Manifest(_) => "manifest".into(),
    }
}
