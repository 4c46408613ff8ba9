//! The console's colours: named roles (accent, text, muted, …, and one per
//! status) rather than per-widget colours, so a theme file says what things
//! mean and every view follows. Views ask [`Theme::style`] for a role; a
//! status string maps to its role through [`status_role`].

use ratatui::style::{Color, Modifier, Style};

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
