//! The console's colours: named roles (accent, text, muted, …, and one per
//! status) rather than per-widget colours, so a theme file says what things
//! mean and every view follows. Views ask [`Theme::style`] for a role; a
//! status string maps to its role through [`status_role`].
//!
//! Themes are TOML files, one key per role (`accent = { fg = "cyan",
//! modifiers = ["bold"] }`, or `text = "#c0c0c0"` for a foreground alone).
//! The shipped ones (`themes/*.toml`) are compiled in, so the console looks
//! right with nothing installed; a file of the same name in the user's theme
//! directory (`<config_dir>/themes`) takes precedence, and a role it leaves
//! out keeps the shipped theme's style (dark's, for a new name). `NO_COLOR`
//! beats every choice ([`choose`]).

use std::path::{Path, PathBuf};

use ratatui::style::{Color, Modifier, Style};
use toml::de::{DeTable, DeValue};

/// What a piece of the screen means. A theme gives each a style.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Titles, the header's cluster name, key hints.
    Accent,
    /// Ordinary text.
    Text,
    /// Secondary text: ages, hints, placeholders.
    Muted,
    /// Block borders.
    Border,
    /// Search matches in logs and the filter.
    Highlight,
    /// The selected row.
    Selection,
    Ok,
    Warn,
    Error,
    /// Running, Ready, Completed: working as asked.
    StatusRunning,
    /// Pending, ContainerCreating, Waiting: on its way.
    StatusPending,
    /// Succeeded.
    StatusSucceeded,
    /// Failed, Error, OOMKilled, CrashLoopBackOff, ErrImagePull, NotReady.
    StatusFailed,
    /// Unknown, Unreachable: no word from the node.
    StatusUnknown,
    /// Terminating, SchedulingDisabled.
    StatusTerminating,
}

impl Role {
    /// Every role, in the order theme files list them.
    pub const ALL: [Role; 15] = [
        Role::Accent,
        Role::Text,
        Role::Muted,
        Role::Border,
        Role::Highlight,
        Role::Selection,
        Role::Ok,
        Role::Warn,
        Role::Error,
        Role::StatusRunning,
        Role::StatusPending,
        Role::StatusSucceeded,
        Role::StatusFailed,
        Role::StatusUnknown,
        Role::StatusTerminating,
    ];

    /// The key of the role in a theme file.
    pub fn name(self) -> &'static str {
        match self {
            Role::Accent => "accent",
            Role::Text => "text",
            Role::Muted => "muted",
            Role::Border => "border",
            Role::Highlight => "highlight",
            Role::Selection => "selection",
            Role::Ok => "ok",
            Role::Warn => "warn",
            Role::Error => "error",
            Role::StatusRunning => "status_running",
            Role::StatusPending => "status_pending",
            Role::StatusSucceeded => "status_succeeded",
            Role::StatusFailed => "status_failed",
            Role::StatusUnknown => "status_unknown",
            Role::StatusTerminating => "status_terminating",
        }
    }

    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// A set of styles by role.
#[derive(Clone, Debug, PartialEq)]
pub struct Theme {
    pub name: String,
    styles: [Style; Role::ALL.len()],
}

impl Theme {
    /// The style of `role`.
    pub fn style(&self, role: Role) -> Style {
        self.styles[role as usize]
    }

    /// Sets the style of `role`.
    pub fn set(&mut self, role: Role, style: Style) {
        self.styles[role as usize] = style;
    }

    /// The built-in dark theme, the default.
    pub fn dark() -> Theme {
        let fg = |c: Color| Style::new().fg(c);
        let mut theme = Theme {
            name: "dark".into(),
            styles: [Style::new(); Role::ALL.len()],
        };
        theme.set(Role::Accent, fg(Color::Cyan).add_modifier(Modifier::BOLD));
        theme.set(Role::Text, fg(Color::Gray));
        theme.set(Role::Muted, fg(Color::DarkGray));
        theme.set(Role::Border, fg(Color::DarkGray));
        theme.set(
            Role::Highlight,
            Style::new().fg(Color::Black).bg(Color::Yellow),
        );
        theme.set(
            Role::Selection,
            Style::new().fg(Color::Black).bg(Color::Cyan),
        );
        theme.set(Role::Ok, fg(Color::Green));
        theme.set(Role::Warn, fg(Color::Yellow));
        theme.set(Role::Error, fg(Color::Red));
        theme.set(Role::StatusRunning, fg(Color::Green));
        theme.set(Role::StatusPending, fg(Color::Yellow));
        theme.set(Role::StatusSucceeded, fg(Color::Blue));
        theme.set(
            Role::StatusFailed,
            fg(Color::Red).add_modifier(Modifier::BOLD),
        );
        theme.set(Role::StatusUnknown, fg(Color::Magenta));
        theme.set(Role::StatusTerminating, fg(Color::DarkGray));
        theme
    }

    /// No colour at all (`NO_COLOR`): selection and matches by reverse video.
    pub fn no_color() -> Theme {
        let mut theme = Theme {
            name: "no-color".into(),
            styles: [Style::new(); Role::ALL.len()],
        };
        theme.set(Role::Accent, Style::new().add_modifier(Modifier::BOLD));
        theme.set(
            Role::Highlight,
            Style::new().add_modifier(Modifier::REVERSED),
        );
        theme.set(
            Role::Selection,
            Style::new().add_modifier(Modifier::REVERSED),
        );
        theme.set(
            Role::StatusFailed,
            Style::new().add_modifier(Modifier::BOLD),
        );
        theme
    }
}

impl Default for Theme {
    fn default() -> Self {
        Theme::dark()
    }
}

/// The themes compiled into the binary, by name; the first is the default.
const SHIPPED: [(&str, &str); 3] = [
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
];

/// The theme used when neither `--theme` nor the config file names one.
pub const DEFAULT_THEME: &str = "dark";

/// What goes wrong choosing or reading a theme. Each says which file and
/// what to change, since the operator meets these before the console opens.
#[derive(Debug, thiserror::Error)]
pub enum ThemeError {
    #[error("{}", unknown_theme_message(name, available, user_file.as_deref()))]
    Unknown {
        name: String,
        available: Vec<String>,
        /// Where a user theme of this name would be read from.
        user_file: Option<PathBuf>,
    },
    #[error(
        "theme name {name:?} is not valid: use letters, digits, '-' and '_' (theme NAME is the file themes/NAME.toml)"
    )]
    BadName { name: String },
    #[error("cannot read the theme file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("theme file {file}: {message}")]
    Syntax { file: String, message: String },
    #[error("theme file {file}, line {line}, {key}: {message}")]
    Invalid {
        file: String,
        line: usize,
        key: String,
        message: String,
    },
}

fn unknown_theme_message(name: &str, available: &[String], user_file: Option<&Path>) -> String {
    let mut message = format!(
        "no theme named {name:?}: choose one of {}",
        available.join(", ")
    );
    if let Some(path) = user_file {
        message.push_str(&format!(", or write your own as {}", path.display()));
    }
    message
}

/// `NO_COLOR` as <https://no-color.org> defines it: set and not empty.
pub fn no_color_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// The theme to use. `NO_COLOR` wins over any choice, since the operator set
/// it to say colour is unwanted everywhere; then `--theme`, then the config
/// file's `theme`, then [`DEFAULT_THEME`].
pub fn choose(
    cli_theme: Option<&str>,
    config_theme: Option<&str>,
    user_dir: Option<&Path>,
    no_color: bool,
) -> Result<Theme, ThemeError> {
    if no_color {
        return Ok(Theme::no_color());
    }
    let name = cli_theme.or(config_theme).unwrap_or(DEFAULT_THEME);
    Theme::load(name, user_dir)
}

/// The names of every theme: the shipped ones first, then the user's own
/// (`*.toml` in `user_dir`), sorted, each once.
pub fn available(user_dir: Option<&Path>) -> Vec<String> {
    let mut names: Vec<String> = SHIPPED.iter().map(|(n, _)| n.to_string()).collect();
    let mut own: Vec<String> = user_dir
        .and_then(|dir| std::fs::read_dir(dir).ok())
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            if path.extension()? != "toml" {
                return None;
            }
            let stem = path.file_stem()?.to_str()?.to_string();
            valid_name(&stem).then_some(stem)
        })
        .filter(|n| !names.contains(n))
        .collect();
    own.sort();
    own.dedup();
    names.extend(own);
    names
}

/// Theme names become file names, so nothing that could leave the theme
/// directory (`../x`, `/etc/x`) is accepted.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn shipped(name: &str) -> Option<&'static str> {
    SHIPPED.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

impl Theme {
    /// The theme `name`: the user's `user_dir/NAME.toml` if there is one
    /// (`user_dir` is the theme directory, `<config_dir>/themes`), else the
    /// shipped theme. A user file need not set every role: the rest come
    /// from the shipped theme of the same name, or from dark.
    pub fn load(name: &str, user_dir: Option<&Path>) -> Result<Theme, ThemeError> {
        if !valid_name(name) {
            return Err(ThemeError::BadName {
                name: name.to_string(),
            });
        }
        let shipped_text = shipped(name);
        let base = || match shipped_text {
            Some(text) => Theme::dark().overlay(name, &shipped_label(name), text),
            None => Ok(Theme::dark()),
        };
        let user_file = user_dir.map(|dir| dir.join(format!("{name}.toml")));
        if let Some(path) = &user_file {
            match std::fs::read_to_string(path) {
                Ok(text) => return base()?.overlay(name, &path.display().to_string(), &text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(ThemeError::Read {
                        path: path.clone(),
                        source,
                    });
                }
            }
        }
        match shipped_text {
            Some(_) => base(),
            None => Err(ThemeError::Unknown {
                name: name.to_string(),
                available: available(user_dir),
                user_file,
            }),
        }
    }

    /// A theme from the text of a theme file; roles it leaves out are dark's.
    pub fn from_toml(name: &str, text: &str) -> Result<Theme, ThemeError> {
        Theme::dark().overlay(name, name, text)
    }

    /// This theme, renamed, with the roles `text` sets replaced.
    fn overlay(mut self, name: &str, file: &str, text: &str) -> Result<Theme, ThemeError> {
        for (role, style) in parse_roles(file, text)? {
            self.set(role, style);
        }
        self.name = name.to_string();
        Ok(self)
    }
}

fn shipped_label(name: &str) -> String {
    format!("themes/{name}.toml (built in)")
}

/// The roles a theme file sets, in file order. `file` names it in errors.
fn parse_roles(file: &str, text: &str) -> Result<Vec<(Role, Style)>, ThemeError> {
    let table = DeTable::parse(text).map_err(|e| ThemeError::Syntax {
        file: file.to_string(),
        message: e.to_string().trim_end().to_string(),
    })?;
    let mut roles = Vec::new();
    for (key, value) in table.get_ref() {
        let invalid = |at: usize, key: String, message: String| ThemeError::Invalid {
            file: file.to_string(),
            line: line_of(text, at),
            key,
            message,
        };
        let Some(role) = Role::from_name(key.get_ref()) else {
            let names: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
            return Err(invalid(
                key.span().start,
                key.get_ref().to_string(),
                format!("unknown role; the roles are {}", names.join(", ")),
            ));
        };
        let style = parse_style(value.get_ref(), value.span().start).map_err(|e| {
            let key = match e.field {
                Some(field) => format!("{}.{field}", role.name()),
                None => role.name().to_string(),
            };
            invalid(e.at, key, e.message)
        })?;
        roles.push((role, style));
    }
    Ok(roles)
}

/// A problem inside one style, before it knows its file.
struct StyleError {
    at: usize,
    field: Option<&'static str>,
    message: String,
}

const STYLE_SHAPE: &str = "a style is a colour (\"cyan\", \"#rrggbb\", 0-255) or a table like { fg = \"cyan\", bg = \"reset\", modifiers = [\"bold\"] }";

fn parse_style(value: &DeValue<'_>, at: usize) -> Result<Style, StyleError> {
    let fail = |at, field, message: String| StyleError { at, field, message };
    match value {
        DeValue::Table(table) => {
            let mut style = Style::new();
            for (key, value) in table {
                let at = value.span().start;
                match key.get_ref().as_ref() {
                    "fg" => {
                        style.fg = Some(
                            parse_color(value.get_ref()).map_err(|m| fail(at, Some("fg"), m))?,
                        )
                    }
                    "bg" => {
                        style.bg = Some(
                            parse_color(value.get_ref()).map_err(|m| fail(at, Some("bg"), m))?,
                        )
                    }
                    "modifiers" => {
                        style = style.add_modifier(parse_modifiers(value.get_ref()).map_err(
                            |(at, m)| fail(at.unwrap_or(value.span().start), Some("modifiers"), m),
                        )?)
                    }
                    other => {
                        return Err(fail(
                            key.span().start,
                            None,
                            format!("unknown field {other:?}: a style has fg, bg and modifiers"),
                        ));
                    }
                }
            }
            Ok(style)
        }
        DeValue::String(_) | DeValue::Integer(_) => parse_color(value)
            .map(|c| Style::new().fg(c))
            .map_err(|m| fail(at, None, m)),
        other => Err(fail(at, None, format!("found {}: {STYLE_SHAPE}", a(other)))),
    }
}

const COLOR_HELP: &str = "use a name (black, red, green, yellow, blue, magenta, cyan, gray, dark_gray, light_red, light_green, light_yellow, light_blue, light_magenta, light_cyan, white, reset), \"#rrggbb\", or an index 0-255";

fn parse_color(value: &DeValue<'_>) -> Result<Color, String> {
    match value {
        DeValue::String(s) => s
            .parse::<Color>()
            .map_err(|_| format!("unknown colour {s:?}: {COLOR_HELP}")),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .ok()
            .and_then(|n| u8::try_from(n).ok())
            .map(Color::Indexed)
            .ok_or_else(|| format!("colour index {i} is out of range: {COLOR_HELP}")),
        other => Err(format!("found {} for a colour: {COLOR_HELP}", a(other))),
    }
}

const MODIFIERS: [(&str, Modifier); 9] = [
    ("bold", Modifier::BOLD),
    ("dim", Modifier::DIM),
    ("italic", Modifier::ITALIC),
    ("underlined", Modifier::UNDERLINED),
    ("slow_blink", Modifier::SLOW_BLINK),
    ("rapid_blink", Modifier::RAPID_BLINK),
    ("reversed", Modifier::REVERSED),
    ("hidden", Modifier::HIDDEN),
    ("crossed_out", Modifier::CROSSED_OUT),
];

/// Errors carry the offending element's position when there is one.
fn parse_modifiers(value: &DeValue<'_>) -> Result<Modifier, (Option<usize>, String)> {
    let names = || {
        MODIFIERS
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let DeValue::Array(items) = value else {
        return Err((
            None,
            format!("modifiers is a list, like [\"bold\"], of: {}", names()),
        ));
    };
    let mut modifiers = Modifier::empty();
    for item in items.iter() {
        let found = item
            .get_ref()
            .as_str()
            .and_then(|name| MODIFIERS.iter().find(|(n, _)| *n == name));
        match found {
            Some((_, m)) => modifiers |= *m,
            None => {
                return Err((
                    Some(item.span().start),
                    format!(
                        "unknown modifier {}: use {}",
                        describe(item.get_ref()),
                        names()
                    ),
                ));
            }
        }
    }
    Ok(modifiers)
}

fn describe(value: &DeValue<'_>) -> String {
    match value.as_str() {
        Some(s) => format!("{s:?}"),
        None => format!("({})", a(value)),
    }
}

/// "a string", "an array": the type of a value, for messages.
pub(crate) fn a(value: &DeValue<'_>) -> String {
    let kind = value.type_str();
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {kind}")
}

/// The 1-based line of byte offset `at`, for messages.
pub(crate) fn line_of(text: &str, at: usize) -> usize {
    text.get(..at).unwrap_or(text).matches('\n').count() + 1
}

/// The role of a status or reason as Kubernetes writes it (pod phases,
/// container reasons, node statuses).
pub fn status_role(status: &str) -> Role {
    // "Ready,SchedulingDisabled": the first word says the most.
    let first = status.split(',').next().unwrap_or(status);
    match first {
        "Running" | "Ready" | "Completed" | "Available" | "Complete" => Role::StatusRunning,
        "Succeeded" => Role::StatusSucceeded,
        "Pending" | "ContainerCreating" | "PodInitializing" | "Waiting" | "Connecting"
        | "Bootstrapping" | "Progressing" | "Created" | "Paused" => Role::StatusPending,
        "Terminating" | "SchedulingDisabled" | "Stopped" => Role::StatusTerminating,
        "Unknown" | "Unreachable" | "NodeLost" => Role::StatusUnknown,
        "Failed"
        | "Error"
        | "OOMKilled"
        | "CrashLoopBackOff"
        | "ErrImagePull"
        | "ImagePullBackOff"
        | "NotReady"
        | "InvalidImageName"
        | "CreateContainerError"
        | "ContainerCannotRun"
        | "Evicted"
        | "Fenced" => Role::StatusFailed,
        _ => Role::Text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RGB a colour shows as in xterm's default palette: the shipped
    /// themes use ANSI names and indexes, so their contrast is judged there.
    fn xterm_rgb(color: Color) -> Option<(u8, u8, u8)> {
        const ANSI: [(u8, u8, u8); 16] = [
            (0, 0, 0),
            (205, 0, 0),
            (0, 205, 0),
            (205, 205, 0),
            (0, 0, 238),
            (205, 0, 205),
            (0, 205, 205),
            (229, 229, 229),
            (127, 127, 127),
            (255, 0, 0),
            (0, 255, 0),
            (255, 255, 0),
            (92, 92, 255),
            (255, 0, 255),
            (0, 255, 255),
            (255, 255, 255),
        ];
        let index = match color {
            Color::Reset => return None,
            Color::Rgb(r, g, b) => return Some((r, g, b)),
            Color::Black => 0,
            Color::Red => 1,
            Color::Green => 2,
            Color::Yellow => 3,
            Color::Blue => 4,
            Color::Magenta => 5,
            Color::Cyan => 6,
            Color::Gray => 7,
            Color::DarkGray => 8,
            Color::LightRed => 9,
            Color::LightGreen => 10,
            Color::LightYellow => 11,
            Color::LightBlue => 12,
            Color::LightMagenta => 13,
            Color::LightCyan => 14,
            Color::White => 15,
            Color::Indexed(i) => i,
        };
        Some(match index {
            0..=15 => ANSI[index as usize],
            16..=231 => {
                let level = |v: u8| if v == 0 { 0 } else { 55 + 40 * v };
                let i = index - 16;
                (level(i / 36), level((i / 6) % 6), level(i % 6))
            }
            _ => {
                let v = 8 + 10 * (index - 232);
                (v, v, v)
            }
        })
    }

    /// WCAG 2 contrast ratio.
    fn contrast(a: (u8, u8, u8), b: (u8, u8, u8)) -> f64 {
        let lum = |(r, g, b): (u8, u8, u8)| {
            let lin = |c: u8| {
                let c = f64::from(c) / 255.0;
                if c <= 0.03928 {
                    c / 12.92
                } else {
                    ((c + 0.055) / 1.055).powf(2.4)
                }
            };
            0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)
        };
        let (x, y) = (lum(a), lum(b));
        (x.max(y) + 0.05) / (x.min(y) + 0.05)
    }

    /// Each role's foreground against its background, or against `page`
    /// (the terminal's background) when it sets none.
    fn worst_contrast(theme: &Theme, page: (u8, u8, u8)) -> Vec<(Role, f64)> {
        Role::ALL
            .into_iter()
            .map(|role| {
                let style = theme.style(role);
                let fg = style.fg.and_then(xterm_rgb).expect("every role sets fg");
                let bg = style.bg.and_then(xterm_rgb).unwrap_or(page);
                (role, contrast(fg, bg))
            })
            .collect()
    }

    #[test]
    fn each_shipped_theme_sets_every_role_in_its_file() {
        for (name, text) in SHIPPED {
            let roles: Vec<Role> = parse_roles(name, text)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .into_iter()
                .map(|(r, _)| r)
                .collect();
            for role in Role::ALL {
                assert!(
                    roles.contains(&role),
                    "{name}.toml does not set {}",
                    role.name()
                );
            }
            let theme = Theme::load(name, None).unwrap();
            assert_eq!(theme.name, name);
        }
    }

    #[test]
    fn the_dark_file_looks_like_theme_dark() {
        assert_eq!(Theme::load("dark", None).unwrap(), Theme::dark());
    }

    #[test]
    fn role_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::from_name(role.name()), Some(role));
        }
        assert_eq!(Role::from_name("Accent"), None);
    }

    #[test]
    fn light_theme_text_is_dark_enough_for_white() {
        let light = Theme::load("light", None).unwrap();
        let text = light.style(Role::Text).fg.unwrap();
        assert!(
            !matches!(
                text,
                Color::White
                    | Color::Gray
                    | Color::Yellow
                    | Color::LightRed
                    | Color::LightGreen
                    | Color::LightYellow
                    | Color::LightBlue
                    | Color::LightMagenta
                    | Color::LightCyan
                    | Color::Reset
            ),
            "light text is {text:?}"
        );
        for (role, ratio) in worst_contrast(&light, (255, 255, 255)) {
            assert!(
                ratio >= 4.5,
                "light {}: contrast {ratio:.2} on white",
                role.name()
            );
        }
    }

    #[test]
    fn high_contrast_has_no_grey_and_reads_on_black() {
        let hc = Theme::load("high-contrast", None).unwrap();
        for role in Role::ALL {
            let style = hc.style(role);
            for color in [style.fg, style.bg].into_iter().flatten() {
                assert!(
                    !matches!(
                        color,
                        Color::DarkGray | Color::Gray | Color::Indexed(_) | Color::Rgb(..)
                    ),
                    "high-contrast {} uses {color:?}",
                    role.name()
                );
            }
        }
        assert!(hc.style(Role::Text).add_modifier.contains(Modifier::BOLD));
        for (role, ratio) in worst_contrast(&hc, (0, 0, 0)) {
            assert!(
                ratio >= 4.5,
                "high-contrast {}: contrast {ratio:.2}",
                role.name()
            );
        }
    }

    #[test]
    fn a_partial_user_theme_inherits_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mine.toml"), "text = \"#c0c0c0\"\n").unwrap();
        std::fs::write(
            dir.path().join("light.toml"),
            "accent = { fg = 21, modifiers = [\"italic\", \"bold\"] }\n",
        )
        .unwrap();

        let mine = Theme::load("mine", Some(dir.path())).unwrap();
        assert_eq!(mine.name, "mine");
        assert_eq!(
            mine.style(Role::Text),
            Style::new().fg(Color::Rgb(0xc0, 0xc0, 0xc0))
        );
        let dark = Theme::dark();
        for role in Role::ALL.into_iter().filter(|r| *r != Role::Text) {
            assert_eq!(mine.style(role), dark.style(role), "{}", role.name());
        }

        // A user file with a shipped name builds on that shipped theme.
        let light = Theme::load("light", Some(dir.path())).unwrap();
        let shipped = Theme::load("light", None).unwrap();
        assert_eq!(
            light.style(Role::Accent),
            Style::new()
                .fg(Color::Indexed(21))
                .add_modifier(Modifier::ITALIC | Modifier::BOLD)
        );
        assert_eq!(light.style(Role::Text), shipped.style(Role::Text));

        assert_eq!(
            available(Some(dir.path())),
            ["dark", "light", "high-contrast", "mine"]
        );
    }

    #[test]
    fn a_bad_colour_names_the_file_line_role_and_spellings() {
        let text = "text = \"gray\"\naccent = { fg = \"cyann\" }\n";
        let err = Theme::from_toml("mine", text).unwrap_err().to_string();
        for needle in [
            "mine",
            "line 2",
            "accent.fg",
            "\"cyann\"",
            "#rrggbb",
            "0-255",
        ] {
            assert!(err.contains(needle), "{needle:?} not in: {err}");
        }
        let err = Theme::from_toml("mine", "muted = 256")
            .unwrap_err()
            .to_string();
        assert!(err.contains("out of range"), "{err}");
        let err = Theme::from_toml("mine", "muted = { bg = \"red\", modifiers = [\"blod\"] }")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"blod\"") && err.contains("crossed_out"),
            "{err}"
        );
        let err = Theme::from_toml("mine", "muted = { colour = \"red\" }")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"colour\"") && err.contains("fg, bg and modifiers"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_role_lists_the_roles() {
        let err = Theme::from_toml("mine", "# mine\n\nacent = \"red\"\n")
            .unwrap_err()
            .to_string();
        for needle in [
            "line 3",
            "acent",
            "unknown role",
            "accent",
            "status_terminating",
        ] {
            assert!(err.contains(needle), "{needle:?} not in: {err}");
        }
    }

    #[test]
    fn bad_toml_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.toml");
        std::fs::write(&path, "text = \"gray\"\naccent = {\n").unwrap();
        let err = Theme::load("broken", Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn an_unknown_theme_lists_the_available_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mine.toml"), "").unwrap();
        let err = Theme::load("solarized", Some(dir.path())).unwrap_err();
        assert!(matches!(err, ThemeError::Unknown { .. }));
        let err = err.to_string();
        for needle in [
            "\"solarized\"",
            "dark, light, high-contrast, mine",
            &dir.path().join("solarized.toml").display().to_string(),
        ] {
            assert!(err.contains(needle), "{needle:?} not in: {err}");
        }
        assert!(matches!(
            Theme::load("../../etc/passwd", Some(dir.path())),
            Err(ThemeError::BadName { .. })
        ));
    }

    #[test]
    fn no_color_wins_then_cli_then_config_then_dark() {
        assert_eq!(
            choose(Some("light"), Some("high-contrast"), None, true).unwrap(),
            Theme::no_color()
        );
        // Even a theme that does not exist: colour is off, nothing to load.
        assert_eq!(
            choose(Some("nope"), None, None, true).unwrap(),
            Theme::no_color()
        );
        let name = |cli, config| choose(cli, config, None, false).unwrap().name;
        assert_eq!(name(Some("light"), Some("high-contrast")), "light");
        assert_eq!(name(None, Some("high-contrast")), "high-contrast");
        assert_eq!(name(None, None), "dark");
        assert!(choose(Some("nope"), None, None, false).is_err());
    }
}
