//! Which key does what: every console action has a name, default keys
//! (k9s's where k9s has them), and may be rebound in the keymap file
//! (`keymap.toml` in the config dir). The app asks [`Keymap::action`] for a
//! key and never matches raw keys itself, so a rebinding reaches every view.

use std::collections::HashMap;
use std::fmt;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// A console action a key can be bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    /// Drill down: node → its pods → a pod's containers.
    Enter,
    /// Back one view; quit from the first.
    Back,
    Quit,
    Command,
    Filter,
    Help,
    Logs,
    Describe,
    Apply,
    Kill,
    Delete,
    ScaleUp,
    ScaleDown,
    Cordon,
    Uncordon,
    Drain,
    /// Log pane: follow on/off.
    Follow,
    /// Log pane: wrap long lines.
    Wrap,
    /// Log pane: show timestamps.
    Timestamps,
    /// Log pane: next and previous search match.
    NextMatch,
    PreviousMatch,
    /// Log pane: cycle the time window (tail, 1 m, 5 m, 15 m, 1 h).
    Window,
    /// Log pane: save what it holds to a file.
    Save,
    /// Move focus between the table and the log panes.
    Focus,
    /// Close the focused log pane.
    ClosePane,
}

impl Action {
    /// Every action, in the order help lists them.
    pub const ALL: [Action; 31] = [
        Action::Up,
        Action::Down,
        Action::PageUp,
        Action::PageDown,
        Action::Top,
        Action::Bottom,
        Action::Enter,
        Action::Back,
        Action::Quit,
        Action::Command,
        Action::Filter,
        Action::Help,
        Action::Logs,
        Action::Describe,
        Action::Apply,
        Action::Kill,
        Action::Delete,
        Action::ScaleUp,
        Action::ScaleDown,
        Action::Cordon,
        Action::Uncordon,
        Action::Drain,
        Action::Follow,
        Action::Wrap,
        Action::Timestamps,
        Action::NextMatch,
        Action::PreviousMatch,
        Action::Window,
        Action::Save,
        Action::Focus,
        Action::ClosePane,
    ];

    /// The name used in the keymap file (`kill = "k"`).
    pub fn name(self) -> &'static str {
        match self {
            Action::Up => "up",
            Action::Down => "down",
            Action::PageUp => "page-up",
            Action::PageDown => "page-down",
            Action::Top => "top",
            Action::Bottom => "bottom",
            Action::Enter => "enter",
            Action::Back => "back",
            Action::Quit => "quit",
            Action::Command => "command",
            Action::Filter => "filter",
            Action::Help => "help",
            Action::Logs => "logs",
            Action::Describe => "describe",
            Action::Apply => "apply",
            Action::Kill => "kill",
            Action::Delete => "delete",
            Action::ScaleUp => "scale-up",
            Action::ScaleDown => "scale-down",
            Action::Cordon => "cordon",
            Action::Uncordon => "uncordon",
            Action::Drain => "drain",
            Action::Follow => "follow",
            Action::Wrap => "wrap",
            Action::Timestamps => "timestamps",
            Action::NextMatch => "next-match",
            Action::PreviousMatch => "previous-match",
            Action::Window => "window",
            Action::Save => "save",
            Action::Focus => "focus",
            Action::ClosePane => "close-pane",
        }
    }

    /// What help says it does.
    pub fn description(self) -> &'static str {
        match self {
            Action::Up => "move up",
            Action::Down => "move down",
            Action::PageUp => "page up",
            Action::PageDown => "page down",
            Action::Top => "first row",
            Action::Bottom => "last row",
            Action::Enter => "drill down",
            Action::Back => "back",
            Action::Quit => "quit",
            Action::Command => {
                "command (nodes, pods, deploy, containers, events, manifests, ns NAME)"
            }
            Action::Filter => "filter (substring, or /regex/)",
            Action::Help => "this help",
            Action::Logs => "logs in a pane",
            Action::Describe => "describe",
            Action::Apply => "apply the manifest",
            Action::Kill => "kill the pod (SIGKILL now)",
            Action::Delete => "delete (asks first)",
            Action::ScaleUp => "scale up by one",
            Action::ScaleDown => "scale down by one",
            Action::Cordon => "cordon the node",
            Action::Uncordon => "uncordon the node",
            Action::Drain => "drain the node",
            Action::Follow => "follow on/off",
            Action::Wrap => "wrap on/off",
            Action::Timestamps => "timestamps on/off",
            Action::NextMatch => "next match",
            Action::PreviousMatch => "previous match",
            Action::Window => "time window (tail, 1m, 5m, 15m, 1h)",
            Action::Save => "save the log to a file",
            Action::Focus => "focus the table or the next log pane",
            Action::ClosePane => "close the log pane",
        }
    }

    /// Changes the cluster: off under `--readonly`.
    pub fn mutates(self) -> bool {
        matches!(
            self,
            Action::Apply
                | Action::Kill
                | Action::Delete
                | Action::ScaleUp
                | Action::ScaleDown
                | Action::Cordon
                | Action::Uncordon
                | Action::Drain
        )
    }

    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// A key as the keymap file writes it: `k`, `K`, `ctrl-d`, `enter`, `esc`,
/// `up`, `pgdn`, `f1`, `?`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
    pub alt: bool,
}

impl Key {
    pub const fn plain(code: KeyCode) -> Key {
        Key {
            code,
            ctrl: false,
            alt: false,
        }
    }

    pub const fn ctrl(c: char) -> Key {
        Key {
            code: KeyCode::Char(c),
            ctrl: true,
            alt: false,
        }
    }

    /// The key of a terminal event; shift is in the character itself
    /// (`K`), so it is dropped for characters.
    pub fn of(event: &KeyEvent) -> Key {
        let code = match event.code {
            KeyCode::BackTab => KeyCode::BackTab,
            KeyCode::Char(c) if event.modifiers.contains(KeyModifiers::CONTROL) => {
                KeyCode::Char(c.to_ascii_lowercase())
            }
            code => code,
        };
        Key {
            code,
            ctrl: event.modifiers.contains(KeyModifiers::CONTROL),
            alt: event.modifiers.contains(KeyModifiers::ALT),
        }
    }

    /// Parses the keymap file's spelling.
    pub fn parse(text: &str) -> Option<Key> {
        let mut key = Key::plain(KeyCode::Null);
        let mut rest = text;
        loop {
            if let Some(r) = rest.strip_prefix("ctrl-") {
                key.ctrl = true;
                rest = r;
            } else if let Some(r) = rest.strip_prefix("alt-") {
                key.alt = true;
                rest = r;
            } else {
                break;
            }
        }
        let mut chars = rest.chars();
        key.code = match (chars.next(), chars.next()) {
            (Some(c), None) => KeyCode::Char(if key.ctrl { c.to_ascii_lowercase() } else { c }),
            _ => match rest {
                "enter" => KeyCode::Enter,
                "esc" => KeyCode::Esc,
                "tab" => KeyCode::Tab,
                "backtab" => KeyCode::BackTab,
                "space" => KeyCode::Char(' '),
                "backspace" => KeyCode::Backspace,
                "delete" => KeyCode::Delete,
                "up" => KeyCode::Up,
                "down" => KeyCode::Down,
                "left" => KeyCode::Left,
                "right" => KeyCode::Right,
                "pgup" => KeyCode::PageUp,
                "pgdn" => KeyCode::PageDown,
                "home" => KeyCode::Home,
                "end" => KeyCode::End,
                f if f.starts_with('f') => KeyCode::F(f[1..].parse().ok()?),
                _ => return None,
            },
        };
        Some(key)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ctrl {
            f.write_str("ctrl-")?;
        }
        if self.alt {
            f.write_str("alt-")?;
        }
        match self.code {
            KeyCode::Char(' ') => f.write_str("space"),
            KeyCode::Char(c) => write!(f, "{c}"),
            KeyCode::Enter => f.write_str("enter"),
            KeyCode::Esc => f.write_str("esc"),
            KeyCode::Tab => f.write_str("tab"),
            KeyCode::BackTab => f.write_str("backtab"),
            KeyCode::Backspace => f.write_str("backspace"),
            KeyCode::Delete => f.write_str("delete"),
            KeyCode::Up => f.write_str("up"),
            KeyCode::Down => f.write_str("down"),
            KeyCode::Left => f.write_str("left"),
            KeyCode::Right => f.write_str("right"),
            KeyCode::PageUp => f.write_str("pgup"),
            KeyCode::PageDown => f.write_str("pgdn"),
            KeyCode::Home => f.write_str("home"),
            KeyCode::End => f.write_str("end"),
            KeyCode::F(n) => write!(f, "f{n}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// The default bindings. Letters are k9s's where k9s has them.
pub fn default_bindings() -> Vec<(Key, Action)> {
    use KeyCode as K;
    let c = |ch| Key::plain(K::Char(ch));
    vec![
        (Key::plain(K::Up), Action::Up),
        (Key::plain(K::Down), Action::Down),
        (c('j'), Action::Down),
        (Key::plain(K::PageUp), Action::PageUp),
        (Key::ctrl('b'), Action::PageUp),
        (Key::plain(K::PageDown), Action::PageDown),
        (Key::ctrl('f'), Action::PageDown),
        (Key::plain(K::Home), Action::Top),
        (c('g'), Action::Top),
        (Key::plain(K::End), Action::Bottom),
        (c('G'), Action::Bottom),
        (Key::plain(K::Enter), Action::Enter),
        (Key::plain(K::Esc), Action::Back),
        (c('q'), Action::Back),
        (Key::ctrl('c'), Action::Quit),
        (c(':'), Action::Command),
        (c('/'), Action::Filter),
        (c('?'), Action::Help),
        (c('l'), Action::Logs),
        (c('d'), Action::Describe),
        (c('a'), Action::Apply),
        // The one-key kill is `k` (k9s uses ctrl-k, also bound), so
        // vi's `k` for up gives way; the arrow keys and `j` still move.
        (c('k'), Action::Kill),
        (Key::ctrl('k'), Action::Kill),
        (Key::ctrl('d'), Action::Delete),
        (c('+'), Action::ScaleUp),
        (c('-'), Action::ScaleDown),
        (c('c'), Action::Cordon),
        (c('u'), Action::Uncordon),
        (c('r'), Action::Drain),
        (c('f'), Action::Follow),
        (c('w'), Action::Wrap),
        (c('t'), Action::Timestamps),
        (c('n'), Action::NextMatch),
        (c('N'), Action::PreviousMatch),
        (c('m'), Action::Window),
        (c('s'), Action::Save),
        (Key::plain(K::Tab), Action::Focus),
        (c('x'), Action::ClosePane),
    ]
}

/// Keys to actions, the defaults overlaid by the keymap file.
#[derive(Clone, Debug)]
pub struct Keymap {
    by_key: HashMap<Key, Action>,
    /// `--readonly`: mutating actions are not looked up at all.
    pub readonly: bool,
}

impl Default for Keymap {
    fn default() -> Self {
        Keymap::from_bindings(default_bindings())
    }
}

impl Keymap {
    pub fn from_bindings(bindings: impl IntoIterator<Item = (Key, Action)>) -> Keymap {
        Keymap {
            by_key: bindings.into_iter().collect(),
            readonly: false,
        }
    }

    /// Binds `key` to `action` (replacing what `key` did).
    pub fn bind(&mut self, key: Key, action: Action) {
        self.by_key.insert(key, action);
    }

    /// Unbinds every key of `action`.
    pub fn unbind(&mut self, action: Action) {
        self.by_key.retain(|_, a| *a != action);
    }

    /// The action of a key event, if any (mutating ones not under `readonly`).
    pub fn action(&self, event: &KeyEvent) -> Option<Action> {
        let action = *self.by_key.get(&Key::of(event))?;
        (!(self.readonly && action.mutates())).then_some(action)
    }

    /// The keys bound to `action`, as help shows them.
    pub fn keys_of(&self, action: Action) -> Vec<Key> {
        let mut keys: Vec<Key> = self
            .by_key
            .iter()
            .filter(|(_, a)| **a == action)
            .map(|(k, _)| *k)
            .collect();
        keys.sort_by_key(|k| k.to_string());
        keys
    }

    /// The first key of `action`, spelled, for hints ("l logs").
    pub fn hint(&self, action: Action) -> Option<String> {
        self.keys_of(action)
            .iter()
            .map(Key::to_string)
            .min_by_key(|k| (k.chars().count(), k.clone()))
    }
}
