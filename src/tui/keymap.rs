//! Which key does what: every console action has a name, default keys
//! (k9s's where k9s has them), and may be rebound in the keymap file
//! (`keymap.toml` in the config dir). The app asks [`Keymap::action`] for a
//! key and never matches raw keys itself, so a rebinding reaches every view.
//!
//! The file is one table, `[keys]`, of `action-name = "key"` or
//! `= ["key", "key"]`. Naming an action replaces its default keys; `= []`
//! leaves it unbound. A key the file gives one action is taken from whichever
//! action had it by default (that action keeps its other keys), but a key the
//! file itself gives two actions is an error: only the operator can say which
//! was meant.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use toml::de::{DeTable, DeValue};

use super::theme::{a, line_of};

/// How keys are spelled, for error messages.
pub const KEY_SPELLINGS: &str = "k, K, ?, space, ctrl-d, alt-x, enter, esc, tab, backtab, backspace, delete, up, down, left, right, pgup, pgdn, home, end, f1 to f24";

/// What is wrong with the keymap file; each names the file and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum KeymapError {
    #[error("cannot read the keymap file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("keymap file {file}: {message}")]
    Syntax { file: String, message: String },
    #[error("keymap file {file}, line {line}: {message}")]
    Invalid {
        file: String,
        line: usize,
        message: String,
    },
}

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
    /// A shell in the selected pod's (or container's) container.
    Shell,
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
    pub const ALL: [Action; 32] = [
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
        Action::Shell,
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
            Action::Shell => "shell",
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
            Action::Shell => "shell in the container ($SHELL or /bin/sh; exit to come back)",
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
                // A shell can change anything the container can.
                | Action::Shell
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
        // Named keys are matched whatever their case (`Enter`, `PgDn`, `F1`);
        // a single character keeps its case, since `k` and `K` differ.
        let named = rest.to_ascii_lowercase();
        key.code = match (chars.next(), chars.next()) {
            (Some(c), None) => KeyCode::Char(if key.ctrl { c.to_ascii_lowercase() } else { c }),
            _ => match named.as_str() {
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
                f if f.starts_with('f') => match f[1..].parse() {
                    Ok(n @ 1..=24) => KeyCode::F(n),
                    _ => return None,
                },
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
        // k9s's keys: `s` is a shell, ctrl-s saves a log.
        (c('s'), Action::Shell),
        (Key::ctrl('s'), Action::Save),
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
        // Unmodified keys first, so hints show `k` rather than `ctrl-k`;
        // then by spelling, so the order is the same every run.
        keys.sort_by_key(|k| (k.ctrl || k.alt, k.to_string()));
        keys
    }

    /// The first key of `action`, spelled, for hints ("l logs").
    pub fn hint(&self, action: Action) -> Option<String> {
        self.keys_of(action)
            .iter()
            .map(Key::to_string)
            .min_by_key(|k| (k.chars().count(), k.clone()))
    }

    /// Help's rows: each action that has a key, its keys joined by ", ",
    /// in [`Action::ALL`]'s order. Under `readonly` the mutating actions are
    /// left out, since their keys do nothing.
    pub fn help_rows(&self) -> Vec<(String, Action)> {
        Action::ALL
            .into_iter()
            .filter(|a| !(self.readonly && a.mutates()))
            .filter_map(|a| {
                let keys = self.keys_of(a);
                (!keys.is_empty()).then(|| {
                    let spelled: Vec<String> = keys.iter().map(Key::to_string).collect();
                    (spelled.join(", "), a)
                })
            })
            .collect()
    }

    /// Actions no key reaches, so the console can warn about a keymap file
    /// that unbinds `quit` or steals its only key.
    pub fn unbound(&self) -> Vec<Action> {
        Action::ALL
            .into_iter()
            .filter(|a| !self.by_key.values().any(|b| b == a))
            .collect()
    }

    /// The keymap file at `path` over the defaults; no file means the defaults.
    pub fn load(path: &Path) -> Result<Keymap, KeymapError> {
        match std::fs::read_to_string(path) {
            Ok(text) => parse(&path.display().to_string(), &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Keymap::default()),
            Err(source) => Err(KeymapError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// The defaults overlaid by the text of a keymap file.
    pub fn from_toml(text: &str) -> Result<Keymap, KeymapError> {
        parse("keymap.toml", text)
    }
}

/// Parses keymap-file text over the defaults; `file` names it in errors.
fn parse(file: &str, text: &str) -> Result<Keymap, KeymapError> {
    let invalid = |at: usize, message: String| KeymapError::Invalid {
        file: file.to_string(),
        line: line_of(text, at),
        message,
    };
    let doc = DeTable::parse(text).map_err(|e| KeymapError::Syntax {
        file: file.to_string(),
        message: e.to_string().trim_end().to_string(),
    })?;
    // Each action the file names, with its keys and where each was written.
    let mut wanted: Vec<(Action, Vec<(Key, usize)>)> = Vec::new();
    for (section, value) in doc.get_ref() {
        let DeValue::Table(keys) = value.get_ref() else {
            return Err(invalid(
                section.span().start,
                format!(
                    "{:?} is outside [keys]: the keymap file holds one table, [keys], of action = \"key\" or [\"key\", ...]",
                    section.get_ref()
                ),
            ));
        };
        if section.get_ref() != "keys" {
            return Err(invalid(
                section.span().start,
                format!(
                    "unknown table [{}]: the keymap file holds one table, [keys]",
                    section.get_ref()
                ),
            ));
        }
        for (name, value) in keys {
            let Some(action) = Action::from_name(name.get_ref()) else {
                let names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
                return Err(invalid(
                    name.span().start,
                    format!(
                        "unknown action {:?}; the actions are {}",
                        name.get_ref(),
                        names.join(", ")
                    ),
                ));
            };
            let items = match value.get_ref() {
                DeValue::String(_) => std::slice::from_ref(value),
                DeValue::Array(items) => &items[..],
                other => {
                    return Err(invalid(
                        value.span().start,
                        format!(
                            "{}: found {}; write a key, \"k\", or a list of keys, [\"k\", \"ctrl-k\"], or [] to unbind it",
                            action.name(),
                            a(other)
                        ),
                    ));
                }
            };
            let mut keys = Vec::new();
            for item in items {
                let at = item.span().start;
                let key = item
                    .get_ref()
                    .as_str()
                    .and_then(Key::parse)
                    .ok_or_else(|| {
                        let shown = match item.get_ref().as_str() {
                            Some(s) => format!("{s:?}"),
                            None => a(item.get_ref()),
                        };
                        invalid(
                            at,
                            format!(
                                "{}: {shown} is not a key; keys are written like {KEY_SPELLINGS}",
                                action.name()
                            ),
                        )
                    })?;
                keys.push((key, line_of(text, at)));
            }
            wanted.push((action, keys));
        }
    }

    // In file order, so a conflict names the earlier line first.
    let mut written: Vec<(usize, Key, Action)> = wanted
        .iter()
        .flat_map(|(action, keys)| keys.iter().map(|&(key, line)| (line, key, *action)))
        .collect();
    written.sort_by_key(|&(line, ..)| line);
    let mut owner: HashMap<Key, (Action, usize)> = HashMap::new();
    for (line, key, action) in written {
        match owner.get(&key) {
            Some(&(other, other_line)) if other != action => {
                return Err(KeymapError::Invalid {
                    file: file.to_string(),
                    line,
                    message: format!(
                        "key \"{key}\" is bound to both {} (line {other_line}) and {} (line {line}); a key can do one thing, so remove one",
                        other.name(),
                        action.name()
                    ),
                });
            }
            _ => {
                owner.insert(key, (action, line));
            }
        }
    }

    let mut keymap = Keymap::default();
    // Every named action loses its defaults before any binding, so a key
    // moved from one named action to another is not then unbound.
    for (action, _) in &wanted {
        keymap.unbind(*action);
    }
    for (action, keys) in &wanted {
        for &(key, _) in keys {
            keymap.bind(key, *action);
        }
    }
    Ok(keymap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(spelled: &str) -> KeyEvent {
        let key = Key::parse(spelled).unwrap();
        let mut modifiers = KeyModifiers::empty();
        if key.ctrl {
            modifiers |= KeyModifiers::CONTROL;
        }
        if key.alt {
            modifiers |= KeyModifiers::ALT;
        }
        if matches!(key.code, KeyCode::Char(c) if c.is_ascii_uppercase()) {
            modifiers |= KeyModifiers::SHIFT;
        }
        KeyEvent::new(key.code, modifiers)
    }

    fn spelled(keymap: &Keymap, action: Action) -> Vec<String> {
        keymap.keys_of(action).iter().map(Key::to_string).collect()
    }

    #[test]
    fn every_default_key_round_trips_through_its_spelling() {
        for (key, action) in default_bindings() {
            let text = key.to_string();
            assert_eq!(Key::parse(&text), Some(key), "{text} ({})", action.name());
        }
        for text in KEY_SPELLINGS.trim_end_matches(", f1 to f24").split(", ") {
            let key = Key::parse(text).unwrap_or_else(|| panic!("{text} does not parse"));
            assert_eq!(key.to_string(), text);
        }
        assert_eq!(Key::parse("f24").unwrap().to_string(), "f24");
        assert_eq!(Key::parse("PgDn"), Key::parse("pgdn"));
        assert_eq!(Key::parse("ctrl-D"), Some(Key::ctrl('d')));
        for bad in ["", "ctrl-", "f0", "f25", "fx", "ctrl+k", "pageup2"] {
            assert_eq!(Key::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_defaults_bind_each_key_once_and_every_action() {
        let bindings = default_bindings();
        let keymap = Keymap::default();
        assert_eq!(
            keymap.by_key.len(),
            bindings.len(),
            "a default key is bound twice"
        );
        assert_eq!(keymap.unbound(), []);
    }

    #[test]
    fn terminal_events_find_their_action() {
        let keymap = Keymap::default();
        assert_eq!(keymap.action(&press("G")), Some(Action::Bottom));
        assert_eq!(keymap.action(&press("ctrl-d")), Some(Action::Delete));
        assert_eq!(keymap.action(&press("k")), Some(Action::Kill));
        assert_eq!(keymap.action(&press("z")), None);
    }

    #[test]
    fn hints_and_help_prefer_the_plain_key() {
        let keymap = Keymap::default();
        assert_eq!(keymap.hint(Action::Kill).as_deref(), Some("k"));
        let rows = keymap.help_rows();
        assert_eq!(rows.len(), Action::ALL.len());
        assert!(rows.contains(&("k, ctrl-k".to_string(), Action::Kill)));
        assert!(rows.contains(&("down, j".to_string(), Action::Down)));
        assert_eq!(rows[0].1, Action::Up);
    }

    #[test]
    fn a_binding_replaces_the_actions_defaults() {
        let keymap =
            Keymap::from_toml("[keys]\nlogs = \"L\"\nkill = [\"K\", \"ctrl-k\"]\n").unwrap();
        assert_eq!(keymap.action(&press("L")), Some(Action::Logs));
        assert_eq!(keymap.action(&press("l")), None);
        assert_eq!(spelled(&keymap, Action::Kill), ["K", "ctrl-k"]);
        assert_eq!(keymap.action(&press("k")), None);
        // Untouched actions keep their defaults.
        assert_eq!(spelled(&keymap, Action::Describe), ["d"]);
    }

    #[test]
    fn an_empty_list_unbinds() {
        let keymap = Keymap::from_toml("[keys]\nkill = []\n").unwrap();
        assert_eq!(keymap.keys_of(Action::Kill), []);
        assert_eq!(keymap.action(&press("k")), None);
        assert_eq!(keymap.action(&press("ctrl-k")), None);
        assert_eq!(keymap.unbound(), [Action::Kill]);
        assert!(!keymap.help_rows().iter().any(|(_, a)| *a == Action::Kill));
    }

    #[test]
    fn a_stolen_key_moves_and_the_other_action_keeps_the_rest() {
        let keymap = Keymap::from_toml("[keys]\nlogs = \"j\"\nhelp = [\"q\", \"?\"]\n").unwrap();
        assert_eq!(keymap.action(&press("j")), Some(Action::Logs));
        assert_eq!(spelled(&keymap, Action::Down), ["down"]);
        assert_eq!(keymap.action(&press("q")), Some(Action::Help));
        assert_eq!(spelled(&keymap, Action::Back), ["esc"]);
        // Stealing from an action the file also rebinds leaves no trace of it.
        let keymap = Keymap::from_toml("[keys]\nlogs = \"k\"\nkill = \"K\"\n").unwrap();
        assert_eq!(keymap.action(&press("k")), Some(Action::Logs));
        assert_eq!(spelled(&keymap, Action::Kill), ["K"]);
    }

    #[test]
    fn one_key_for_two_actions_in_the_file_is_an_error() {
        let err = Keymap::from_toml("[keys]\nlogs = \"z\"\nkill = [\"K\", \"z\"]\n")
            .unwrap_err()
            .to_string();
        for needle in [
            "keymap.toml",
            "\"z\"",
            "both logs (line 2) and kill (line 3)",
        ] {
            assert!(err.contains(needle), "{needle:?} not in: {err}");
        }
        // The same key twice for one action is harmless.
        assert!(Keymap::from_toml("[keys]\nkill = [\"k\", \"k\"]\n").is_ok());
    }

    #[test]
    fn readonly_blocks_mutating_actions_only() {
        let mut keymap = Keymap::from_toml("[keys]\ndrain = \"D\"\n").unwrap();
        keymap.readonly = true;
        for action in Action::ALL {
            for key in keymap.keys_of(action) {
                let found = keymap.by_key.get(&key).copied();
                let got = keymap.action(&KeyEvent::new(
                    key.code,
                    if key.ctrl {
                        KeyModifiers::CONTROL
                    } else {
                        KeyModifiers::empty()
                    },
                ));
                if action.mutates() {
                    assert_eq!(got, None, "{key} ({}) under readonly", action.name());
                } else {
                    assert_eq!(got, found, "{key}");
                }
            }
        }
        assert_eq!(keymap.action(&press("D")), None);
        assert_eq!(keymap.action(&press("l")), Some(Action::Logs));
        assert!(keymap.help_rows().iter().all(|(_, a)| !a.mutates()));
    }

    #[test]
    fn errors_name_the_action_or_key_and_list_the_choices() {
        let err = Keymap::from_toml("[keys]\n\nkil = \"k\"\n")
            .unwrap_err()
            .to_string();
        for needle in ["line 3", "\"kil\"", "previous-match", "close-pane"] {
            assert!(err.contains(needle), "{needle:?} not in: {err}");
        }
        let err = Keymap::from_toml("[keys]\nkill = \"ctrl+k\"\n")
            .unwrap_err()
            .to_string();
        for needle in ["line 2", "kill", "\"ctrl+k\"", "ctrl-d", "pgdn"] {
            assert!(err.contains(needle), "{needle:?} not in: {err}");
        }
        let err = Keymap::from_toml("[keys]\nkill = 3\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("kill: found an integer") && err.contains("[]"),
            "{err}"
        );
        let err = Keymap::from_toml("[bindings]\nkill = \"k\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[bindings]") && err.contains("[keys]"),
            "{err}"
        );
        let err = Keymap::from_toml("kill = \"k\"\n").unwrap_err().to_string();
        assert!(err.contains("[keys]"), "{err}");
    }

    #[test]
    fn a_missing_file_is_the_defaults_and_a_bad_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keymap.toml");
        let keymap = Keymap::load(&path).unwrap();
        assert_eq!(keymap.by_key, Keymap::default().by_key);
        std::fs::write(&path, "[keys]\nlogs = \n").unwrap();
        let err = Keymap::load(&path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("line 2"), "{err}");
        std::fs::write(&path, "[keys]\nlogs = \"L\"\n").unwrap();
        assert_eq!(
            Keymap::load(&path).unwrap().hint(Action::Logs).as_deref(),
            Some("L")
        );
    }
}
