//! `~/.ssh/config` read the way `ssh` reads it, for the keywords flotilla
//! uses to reach a host: `Host`, `HostName`, `User`, `Port`, `IdentityFile`
//! and `Include`.
//!
//! The rules followed (ssh_config(5)):
//! * Keywords are case-insensitive; a keyword and its arguments are separated
//!   by whitespace or one `=` (`Port 22`, `Port=22`, `Port = 22`). Arguments
//!   may be quoted with `"` or `'`; an unquoted `#` starts a comment.
//! * `Host` takes one or more patterns (`*` and `?` wildcards, `!` to
//!   negate); a block applies when some pattern matches the alias and no
//!   negated one does. Matching ignores case (host names do).
//! * The first value obtained for a keyword wins; `IdentityFile` lines
//!   accumulate, in order, duplicates dropped.
//! * `Include` takes paths or globs (`*`, `?`), relative ones below `~/.ssh`;
//!   an Include inside a `Host` block applies only to that block's hosts, as
//!   in ssh. Nesting stops at 16 levels.
//! * `HostName` expands `%h` (the alias) and `%%`; `IdentityFile` expands `~`,
//!   `~user`, `%d` (local home), `%u` (local user), `%h` (remote host name),
//!   `%r` (remote user), `%p` (port), `%n` (the alias), `%i` (local uid),
//!   `%l` (local host name) and `%%`. Any other `%` token is an error naming
//!   the line, as in ssh.
//! * `Match` blocks are skipped: their conditions (`exec`, `canonical`,
//!   `localnetwork`…) cannot be evaluated faithfully here, so their settings
//!   apply to no host rather than to the wrong one. A `Host` line ends the
//!   skipping, as it ends any block.
//! * Every other keyword is ignored (it changes nothing flotilla does, or
//!   flotilla does not support it: `ProxyJump` and `ProxyCommand` are logged
//!   when they apply to a host).
//! * As ssh does, a config file writable by others, or owned by someone other
//!   than the user or root, is refused.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How deep `Include` may nest (OpenSSH's limit).
const MAX_INCLUDE_DEPTH: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum SshConfigError {
    #[error("cannot read the ssh config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "ssh config {}: bad owner or permissions ({why}); ssh refuses it too: `chmod go-w {}` and make it yours",
        path.display(),
        path.display()
    )]
    Permissions { path: PathBuf, why: String },
}

/// What `~/.ssh/config` says about one host. `None` (or empty) where it says
/// nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSettings {
    /// `HostName`, `%h` expanded: where to connect.
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    /// Every `IdentityFile` that applies, in order, `~` and tokens expanded.
    pub identity_files: Vec<PathBuf>,
}

/// The local side, for `~` and the `%d`, `%u`, `%i`, `%l` tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalUser {
    pub name: String,
    pub home: Option<PathBuf>,
    pub uid: u32,
}

impl LocalUser {
    /// `$USER` and `$HOME`, else the password database entry of our uid.
    pub fn from_env() -> LocalUser {
        let uid = nix::unistd::getuid();
        let entry = || nix::unistd::User::from_uid(uid).ok().flatten();
        let name = std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .or_else(|| entry().map(|u| u.name))
            .unwrap_or_else(|| uid.to_string());
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(|| entry().map(|u| u.dir));
        LocalUser {
            name,
            home,
            uid: uid.as_raw(),
        }
    }

    /// `~/.ssh`, where relative `Include` paths and default keys live.
    pub fn ssh_dir(&self) -> Option<PathBuf> {
        self.home.as_ref().map(|h| h.join(".ssh"))
    }
}

/// A parsed ssh client configuration: every setting flotilla uses, with the
/// `Host` conditions under which it applies.
#[derive(Debug, Clone, Default)]
pub struct SshConfig {
    conditions: Vec<Condition>,
    settings: Vec<Setting>,
    /// Keywords flotilla cannot honour, with the conditions they apply under.
    unsupported: Vec<Setting>,
}

#[derive(Debug, Clone)]
enum Condition {
    Host(Vec<Pattern>),
    /// A `Match` block: applies to nothing.
    Never,
}

#[derive(Debug, Clone)]
struct Pattern {
    negated: bool,
    glob: String,
}

#[derive(Debug, Clone)]
struct Setting {
    /// Indexes into `conditions`; all must hold.
    when: Vec<usize>,
    value: Value,
}

#[derive(Debug, Clone)]
enum Value {
    HostName(String),
    User(String),
    Port(u16),
    IdentityFile(String),
    /// A keyword flotilla does not follow (`ProxyJump`…), for a warning.
    Unsupported(String),
}

impl SshConfig {
    /// No settings at all: every host resolves to nothing.
    pub fn empty() -> SshConfig {
        SshConfig::default()
    }

    /// `~/.ssh/config`, or None without a home directory.
    pub fn default_path() -> Option<PathBuf> {
        LocalUser::from_env().ssh_dir().map(|d| d.join("config"))
    }

    /// Reads `path` and what it includes. A missing file is an error here;
    /// see [`SshConfig::load_default`] for ssh's "no config is fine".
    pub fn load(path: &Path) -> Result<SshConfig, SshConfigError> {
        let local = LocalUser::from_env();
        let ssh_dir = local
            .ssh_dir()
            .or_else(|| path.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        SshConfig::load_in(path, &ssh_dir, &local)
    }

    /// `~/.ssh/config` if there is one, else [`SshConfig::empty`].
    pub fn load_default() -> Result<SshConfig, SshConfigError> {
        match SshConfig::default_path() {
            Some(path) if path.exists() => SshConfig::load(&path),
            _ => Ok(SshConfig::empty()),
        }
    }

    /// Reads `path`, resolving relative `Include`s below `ssh_dir`.
    pub fn load_in(
        path: &Path,
        ssh_dir: &Path,
        local: &LocalUser,
    ) -> Result<SshConfig, SshConfigError> {
        let mut config = SshConfig::default();
        let mut parser = Parser {
            config: &mut config,
            ssh_dir,
            local,
        };
        let text = read_checked(path, local)?;
        parser.parse(path, &text, &[], 0)?;
        Ok(config)
    }

    /// Parses config text as if read from `path` (only used in messages and
    /// for nothing else; `Include`s resolve below `ssh_dir`).
    pub fn parse_str(
        path: &Path,
        text: &str,
        ssh_dir: &Path,
        local: &LocalUser,
    ) -> Result<SshConfig, SshConfigError> {
        let mut config = SshConfig::default();
        let mut parser = Parser {
            config: &mut config,
            ssh_dir,
            local,
        };
        parser.parse(path, text, &[], 0)?;
        Ok(config)
    }

    /// What applies to `alias`, tokens expanded with the config's own user
    /// and port (or the local user and 22).
    pub fn resolve(&self, alias: &str) -> HostSettings {
        self.resolve_for(alias, &LocalUser::from_env(), None, None)
    }

    /// What applies to `alias`, with `IdentityFile` tokens expanded as ssh
    /// would after a command-line user or port (`user`, `port`) overrode
    /// the config: `%r` and `%p` are the values actually used.
    pub fn resolve_for(
        &self,
        alias: &str,
        local: &LocalUser,
        user: Option<&str>,
        port: Option<u16>,
    ) -> HostSettings {
        let host = alias.to_ascii_lowercase();
        let mut hostname = None;
        let mut cfg_user = None;
        let mut cfg_port = None;
        let mut identities: Vec<&str> = Vec::new();
        for setting in &self.settings {
            if !self.applies(setting, &host) {
                continue;
            }
            match &setting.value {
                Value::HostName(h) => {
                    hostname.get_or_insert_with(|| expand_hostname(h, alias));
                }
                Value::User(u) => {
                    cfg_user.get_or_insert_with(|| u.clone());
                }
                Value::Port(p) => {
                    cfg_port.get_or_insert(*p);
                }
                Value::IdentityFile(f) => identities.push(f),
                Value::Unsupported(_) => {}
            }
        }
        for setting in &self.unsupported {
            if let Value::Unsupported(keyword) = &setting.value
                && self.applies(setting, &host)
            {
                tracing::warn!(
                    host = alias,
                    keyword,
                    "~/.ssh/config sets {keyword} for this host; flotilla does not follow it and connects directly"
                );
            }
        }
        let tokens = Tokens {
            local,
            alias,
            remote_host: hostname.as_deref().unwrap_or(alias),
            remote_user: user.or(cfg_user.as_deref()).unwrap_or(&local.name),
            port: port.or(cfg_port).unwrap_or(22),
        };
        let mut identity_files: Vec<PathBuf> = Vec::new();
        for raw in identities {
            let path = expand_path(&tokens.expand(raw), local);
            if !identity_files.contains(&path) {
                identity_files.push(path);
            }
        }
        HostSettings {
            hostname,
            user: cfg_user,
            port: cfg_port,
            identity_files,
        }
    }

    fn applies(&self, setting: &Setting, host: &str) -> bool {
        setting.when.iter().all(|&i| match &self.conditions[i] {
            Condition::Never => false,
            Condition::Host(patterns) => host_matches(patterns, host),
        })
    }
}

/// A `Host` line matches when a positive pattern matches and no negated one does.
fn host_matches(patterns: &[Pattern], host: &str) -> bool {
    let mut matched = false;
    for pattern in patterns {
        if wildcard_match(&pattern.glob.to_ascii_lowercase(), host) {
            if pattern.negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

/// OpenSSH's `match_pattern`: `*` is any run of characters, `?` any one.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it is trying to cover.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

struct Parser<'a> {
    config: &'a mut SshConfig,
    ssh_dir: &'a Path,
    local: &'a LocalUser,
}

impl Parser<'_> {
    /// Parses one file's text. `outer` are the conditions of the block that
    /// included it (empty at the top).
    fn parse(
        &mut self,
        path: &Path,
        text: &str,
        outer: &[usize],
        depth: usize,
    ) -> Result<(), SshConfigError> {
        // The file's own current Host/Match block, if any.
        let mut block: Option<usize> = None;
        for (index, raw_line) in text.lines().enumerate() {
            let line_no = index + 1;
            let syntax = |message: String| SshConfigError::Syntax {
                path: path.to_path_buf(),
                line: line_no,
                message,
            };
            let Some((keyword, args)) = split_line(raw_line).map_err(syntax)? else {
                continue;
            };
            let when = || {
                let mut when = outer.to_vec();
                when.extend(block);
                when
            };
            let keyword_lc = keyword.to_ascii_lowercase();
            let single = |args: &[String]| -> Result<String, SshConfigError> {
                match args {
                    [one] => Ok(one.clone()),
                    [] => Err(syntax(format!("{keyword} needs a value"))),
                    [_, extra, ..] => Err(syntax(format!(
                        "{keyword} takes one value; unexpected {extra:?} (quote a value with spaces)"
                    ))),
                }
            };
            match keyword_lc.as_str() {
                "host" => {
                    if args.is_empty() {
                        return Err(syntax("Host needs at least one pattern".into()));
                    }
                    let patterns = args
                        .iter()
                        .map(|a| match a.strip_prefix('!') {
                            Some(rest) => Pattern {
                                negated: true,
                                glob: rest.to_string(),
                            },
                            None => Pattern {
                                negated: false,
                                glob: a.clone(),
                            },
                        })
                        .collect();
                    block = Some(self.condition(Condition::Host(patterns)));
                }
                "match" => {
                    if args.is_empty() {
                        return Err(syntax("Match needs criteria".into()));
                    }
                    tracing::debug!(file = %path.display(), line = line_no, "skipping a Match block of the ssh config");
                    block = Some(self.condition(Condition::Never));
                }
                "hostname" => {
                    let value = single(&args)?;
                    check_tokens(&value, &['h']).map_err(syntax)?;
                    self.push(when(), Value::HostName(value));
                }
                "user" => {
                    let value = single(&args)?;
                    self.push(when(), Value::User(value));
                }
                "port" => {
                    let value = single(&args)?;
                    let port = value
                        .parse::<u16>()
                        .ok()
                        .filter(|&p| p != 0)
                        .ok_or_else(|| {
                            syntax(format!("Port {value:?}: not a port number (1-65535)"))
                        })?;
                    self.push(when(), Value::Port(port));
                }
                "identityfile" => {
                    let value = single(&args)?;
                    check_tokens(&value, &['d', 'u', 'h', 'r', 'p', 'n', 'i', 'l'])
                        .map_err(syntax)?;
                    self.push(when(), Value::IdentityFile(value));
                }
                "include" => {
                    if args.is_empty() {
                        return Err(syntax("Include needs a file name".into()));
                    }
                    if depth + 1 > MAX_INCLUDE_DEPTH {
                        return Err(syntax(format!(
                            "Include nested more than {MAX_INCLUDE_DEPTH} deep; is there an Include loop?"
                        )));
                    }
                    let when = when();
                    for arg in &args {
                        let pattern = expand_path(arg, self.local);
                        let pattern = if pattern.is_absolute() {
                            pattern
                        } else {
                            self.ssh_dir.join(pattern)
                        };
                        for file in glob(&pattern) {
                            let text = read_checked(&file, self.local)?;
                            self.parse(&file, &text, &when, depth + 1)?;
                        }
                    }
                }
                "proxyjump" | "proxycommand" => {
                    let value = Value::Unsupported(keyword.clone());
                    let when = when();
                    self.config.unsupported.push(Setting { when, value });
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn condition(&mut self, condition: Condition) -> usize {
        self.config.conditions.push(condition);
        self.config.conditions.len() - 1
    }

    fn push(&mut self, when: Vec<usize>, value: Value) {
        self.config.settings.push(Setting { when, value });
    }
}

/// Reads a config file after ssh's ownership and mode check.
fn read_checked(path: &Path, local: &LocalUser) -> Result<String, SshConfigError> {
    let read_err = |source| SshConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if meta.uid() != 0 && meta.uid() != local.uid {
        return Err(SshConfigError::Permissions {
            path: path.to_path_buf(),
            why: format!("owned by uid {}, not you or root", meta.uid()),
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(SshConfigError::Permissions {
            path: path.to_path_buf(),
            why: format!("mode {:o} lets others write it", meta.mode() & 0o777),
        });
    }
    std::fs::read_to_string(path).map_err(read_err)
}

/// Splits a line into its keyword and arguments; None for blank lines and
/// comments. Errors are messages for the caller to place.
fn split_line(line: &str) -> Result<Option<(String, Vec<String>)>, String> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let keyword = line[..end].to_string();
    let mut rest = line[end..].trim_start();
    if let Some(after) = rest.strip_prefix('=') {
        rest = after.trim_start();
    }
    let args = split_args(rest).map_err(|why| format!("{keyword}: {why}"))?;
    Ok(Some((keyword, args)))
}

/// OpenSSH's `argv_split`: whitespace separates arguments; `"…"` and `'…'`
/// quote (the quotes are dropped); a backslash escapes a backslash, a quote
/// or a space; an unquoted `#` at the start of an argument ends the line.
fn split_args(text: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.peek() {
            None | Some('#') => return Ok(args),
            Some(_) => {}
        }
        let mut arg = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match c {
                '\\' if matches!(chars.peek(), Some('\\' | '"' | '\'' | ' ')) => {
                    arg.extend(chars.next());
                }
                '"' | '\'' if quote.is_none() => quote = Some(c),
                c if Some(c) == quote => quote = None,
                c if c.is_whitespace() && quote.is_none() => break,
                c => arg.push(c),
            }
        }
        if let Some(q) = quote {
            return Err(format!("unterminated {q} quote"));
        }
        args.push(arg);
    }
}

/// Refuses `%` tokens outside `allowed` (and `%%`), as ssh does.
fn check_tokens(value: &str, allowed: &[char]) -> Result<(), String> {
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        match chars.next() {
            Some('%') => {}
            Some(t) if allowed.contains(&t) => {}
            Some(t) => {
                let list: Vec<String> = allowed.iter().map(|a| format!("%{a}")).collect();
                return Err(format!(
                    "unknown token %{t} in {value:?}; flotilla expands {} and %%",
                    list.join(" ")
                ));
            }
            None => {
                return Err(format!(
                    "{value:?} ends in a lone %; write %% for a percent sign"
                ));
            }
        }
    }
    Ok(())
}

fn expand_hostname(value: &str, alias: &str) -> String {
    let mut out = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        // Only %h and %% pass the check at load time.
        match chars.next() {
            Some('h') => out.push_str(alias),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// The values `IdentityFile` tokens stand for.
struct Tokens<'a> {
    local: &'a LocalUser,
    alias: &'a str,
    remote_host: &'a str,
    remote_user: &'a str,
    port: u16,
}

impl Tokens<'_> {
    fn expand(&self, value: &str) -> String {
        let mut out = String::new();
        let mut chars = value.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('d') => {
                    if let Some(home) = &self.local.home {
                        out.push_str(&home.display().to_string());
                    }
                }
                Some('u') => out.push_str(&self.local.name),
                Some('h') => out.push_str(self.remote_host),
                Some('r') => out.push_str(self.remote_user),
                Some('p') => out.push_str(&self.port.to_string()),
                Some('n') => out.push_str(self.alias),
                Some('i') => out.push_str(&self.local.uid.to_string()),
                Some('l') => out.push_str(&local_hostname()),
                Some(other) => out.push(other),
                None => {}
            }
        }
        out
    }
}

fn local_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.split('.').next().unwrap_or_default().to_string())
        .unwrap_or_default()
}

/// `~` and `~user` at the start of a path, as ssh's `tilde_expand_filename`.
fn expand_path(value: &str, local: &LocalUser) -> PathBuf {
    let Some(rest) = value.strip_prefix('~') else {
        return PathBuf::from(value);
    };
    let (user, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i + 1..].trim_start_matches('/')),
        None => (rest, ""),
    };
    let home = if user.is_empty() {
        local.home.clone()
    } else {
        nix::unistd::User::from_name(user)
            .ok()
            .flatten()
            .map(|u| u.dir)
    };
    match home {
        Some(home) if tail.is_empty() => home,
        Some(home) => home.join(tail),
        None => PathBuf::from(value),
    }
}

/// The files matching `pattern` (wildcards `*` and `?` in any component),
/// sorted as glob(3) sorts them; a wildcard does not match a leading dot.
fn glob(pattern: &Path) -> Vec<PathBuf> {
    let mut found = vec![PathBuf::from("/")];
    let components: Vec<String> = pattern
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            std::path::Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    if !pattern.is_absolute() {
        found = vec![PathBuf::new()];
    }
    for component in components {
        let mut next = Vec::new();
        for base in &found {
            if !component.contains(['*', '?']) {
                let path = base.join(&component);
                if path.exists() {
                    next.push(path);
                }
                continue;
            }
            let Ok(entries) = std::fs::read_dir(if base.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base
            }) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.') || component.starts_with('.'))
                .filter(|n| wildcard_match(&component, n))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| base.join(n)));
        }
        found = next;
    }
    found.retain(|p| p.is_file());
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn local() -> LocalUser {
        LocalUser {
            name: "me".into(),
            home: Some(PathBuf::from("/home/me")),
            uid: nix::unistd::getuid().as_raw(),
        }
    }

    fn parse(text: &str) -> SshConfig {
        SshConfig::parse_str(
            Path::new("/home/me/.ssh/config"),
            text,
            Path::new("/home/me/.ssh"),
            &local(),
        )
        .expect("valid config")
    }

    fn parse_err(text: &str) -> String {
        match SshConfig::parse_str(
            Path::new("/home/me/.ssh/config"),
            text,
            Path::new("/home/me/.ssh"),
            &local(),
        ) {
            Err(e) => e.to_string(),
            Ok(c) => panic!("accepted: {c:?}"),
        }
    }

    fn resolve(config: &SshConfig, alias: &str) -> HostSettings {
        config.resolve_for(alias, &local(), None, None)
    }

    #[test]
    fn host_blocks_set_hostname_user_port_and_identity() {
        let config = parse(
            "Host web\n  HostName 10.0.0.5\n  User deploy\n  Port 2222\n  IdentityFile ~/.ssh/web_key\n",
        );
        let web = resolve(&config, "web");
        assert_eq!(web.hostname.as_deref(), Some("10.0.0.5"));
        assert_eq!(web.user.as_deref(), Some("deploy"));
        assert_eq!(web.port, Some(2222));
        assert_eq!(
            web.identity_files,
            vec![PathBuf::from("/home/me/.ssh/web_key")]
        );
        assert_eq!(resolve(&config, "db"), HostSettings::default());
    }

    #[test]
    fn wildcards_match_as_ssh_does() {
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("node?", "node1"));
        assert!(!wildcard_match("node?", "node12"));
        assert!(wildcard_match("*.example.com", "a.b.example.com"));
        assert!(!wildcard_match("*.example.com", "example.com"));
        assert!(wildcard_match("n*d*1", "node1"));
        assert!(wildcard_match("10.0.*", "10.0.3.4"));
        assert!(!wildcard_match("web", "web2"));
        let config = parse("Host node?\n  User ops\nHost *.lab\n  Port 2200\n");
        assert_eq!(resolve(&config, "node7").user.as_deref(), Some("ops"));
        assert_eq!(resolve(&config, "node17").user, None);
        assert_eq!(resolve(&config, "x.lab").port, Some(2200));
    }

    #[test]
    fn several_patterns_and_negation() {
        let config = parse("Host a b *.lab !bad.lab\n  User ops\n");
        assert_eq!(resolve(&config, "a").user.as_deref(), Some("ops"));
        assert_eq!(resolve(&config, "b").user.as_deref(), Some("ops"));
        assert_eq!(resolve(&config, "good.lab").user.as_deref(), Some("ops"));
        assert_eq!(resolve(&config, "bad.lab").user, None, "negation wins");
        // A negated pattern alone matches nothing.
        let config = parse("Host !a\n  User ops\n");
        assert_eq!(resolve(&config, "b").user, None);
    }

    #[test]
    fn matching_ignores_case() {
        let config = parse("Host Web\n  User ops\n");
        assert_eq!(resolve(&config, "WEB").user.as_deref(), Some("ops"));
        assert_eq!(resolve(&config, "web").user.as_deref(), Some("ops"));
    }

    #[test]
    fn the_first_value_obtained_wins() {
        let config = parse(
            "Host web\n  User first\n  Port 1001\nHost web\n  User second\nHost *\n  User fallback\n  Port 22\n  HostName default.example\n",
        );
        let web = resolve(&config, "web");
        assert_eq!(web.user.as_deref(), Some("first"));
        assert_eq!(web.port, Some(1001));
        assert_eq!(web.hostname.as_deref(), Some("default.example"));
        let other = resolve(&config, "other");
        assert_eq!(other.user.as_deref(), Some("fallback"));
        // Settings before any Host line apply to every host, and come first.
        let config = parse("User top\nHost web\n  User web\n");
        assert_eq!(resolve(&config, "web").user.as_deref(), Some("top"));
    }

    #[test]
    fn identity_files_accumulate_in_order_without_duplicates() {
        let config = parse(
            "Host web\n  IdentityFile ~/.ssh/a\n  IdentityFile /keys/b\nHost *\n  IdentityFile ~/.ssh/a\n  IdentityFile ~/.ssh/c\n",
        );
        assert_eq!(
            resolve(&config, "web").identity_files,
            vec![
                PathBuf::from("/home/me/.ssh/a"),
                PathBuf::from("/keys/b"),
                PathBuf::from("/home/me/.ssh/c"),
            ]
        );
    }

    #[test]
    fn hostname_expands_percent_h() {
        let config = parse("Host *.int\n  HostName %h.example.com\nHost pct\n  HostName a%%b\n");
        assert_eq!(
            resolve(&config, "db.int").hostname.as_deref(),
            Some("db.int.example.com")
        );
        assert_eq!(resolve(&config, "pct").hostname.as_deref(), Some("a%b"));
        let msg = parse_err("Host x\n  HostName %r.example\n");
        assert!(msg.contains("config:2") && msg.contains("%r"), "{msg}");
    }

    #[test]
    fn identity_file_tokens_and_tilde() {
        let config = parse(
            "Host *\n  HostName real-%h\n  User bob\n  Port 2022\n  IdentityFile %d/keys/%u-%r@%h:%p-%n\n",
        );
        let settings = resolve(&config, "web");
        assert_eq!(
            settings.identity_files,
            vec![PathBuf::from("/home/me/keys/me-bob@real-web:2022-web")]
        );
        // A user and port given elsewhere (the cluster file) are the ones %r and %p name.
        let settings = config.resolve_for("web", &local(), Some("alice"), Some(22));
        assert_eq!(
            settings.identity_files,
            vec![PathBuf::from("/home/me/keys/me-alice@real-web:22-web")]
        );
        assert_eq!(
            settings.user.as_deref(),
            Some("bob"),
            "the config's own value"
        );
        let root_home = nix::unistd::User::from_name("root")
            .ok()
            .flatten()
            .map(|u| u.dir)
            .expect("root has a passwd entry");
        let config = parse("IdentityFile ~root/.ssh/k\n");
        assert_eq!(
            resolve(&config, "x").identity_files,
            vec![root_home.join(".ssh/k")]
        );
        let msg = parse_err("Host x\n\n  IdentityFile ~/.ssh/%C\n");
        assert!(msg.contains("config:3") && msg.contains("%C"), "{msg}");
    }

    #[test]
    fn equals_signs_case_and_quotes() {
        let config = parse(
            "HOST web\n  hostname=10.1.1.1\n  PORT = 2200\n  user= \"my user\"\n  IdentityFile \"/path with spaces/key\" # a comment\n",
        );
        let web = resolve(&config, "web");
        assert_eq!(web.hostname.as_deref(), Some("10.1.1.1"));
        assert_eq!(web.port, Some(2200));
        assert_eq!(web.user.as_deref(), Some("my user"));
        assert_eq!(
            web.identity_files,
            vec![PathBuf::from("/path with spaces/key")]
        );
        assert_eq!(
            split_args(r#"'a b' c\ d "e'f""#).expect("args"),
            vec!["a b", "c d", "e'f"]
        );
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let config = parse("# a comment\n\n   \n\t# indented\nHost web # trailing\n  User ops\r\n");
        assert_eq!(resolve(&config, "web").user.as_deref(), Some("ops"));
    }

    #[test]
    fn match_blocks_apply_to_no_host_and_end_at_the_next_host() {
        let config = parse(
            "Match exec \"true\"\n  User matched\n  Port 1\nHost web\n  User web\nMatch all\n  IdentityFile ~/never\nHost *\n  Port 2\n",
        );
        let web = resolve(&config, "web");
        assert_eq!(web.user.as_deref(), Some("web"));
        assert_eq!(web.port, Some(2));
        assert!(web.identity_files.is_empty());
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        for (text, needle) in [
            ("Host web\n  Port http\n", "config:2: Port \"http\""),
            ("Host web\n  Port 0\n", "config:2"),
            ("Host\n", "config:1: Host needs"),
            ("Host x\n  User\n", "config:2: User needs a value"),
            ("Host x\n  User a b\n", "config:2: User takes one value"),
            ("Host x\n\n\n  HostName \"unterminated\n", "config:4"),
        ] {
            let msg = parse_err(text);
            assert!(msg.contains(needle), "{text:?}: {msg}");
            assert!(msg.contains("/home/me/.ssh/config"), "{msg}");
        }
    }

    #[test]
    fn unknown_keywords_are_ignored() {
        let config = parse("Host web\n  ForwardAgent yes\n  ServerAliveInterval 5\n  User ops\n");
        assert_eq!(resolve(&config, "web").user.as_deref(), Some("ops"));
    }

    #[test]
    fn include_is_relative_to_the_ssh_dir_globs_and_nests_in_host_blocks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ssh_dir = dir.path();
        fs::create_dir(ssh_dir.join("conf.d")).expect("mkdir");
        fs::write(
            ssh_dir.join("conf.d/10-web"),
            "Host web\n  HostName 10.0.0.10\n  User webuser\n",
        )
        .expect("write");
        fs::write(
            ssh_dir.join("conf.d/20-db"),
            "Host db\n  HostName 10.0.0.20\n",
        )
        .expect("write");
        fs::write(ssh_dir.join("conf.d/.hidden"), "Host *\n  User hidden\n").expect("write");
        fs::write(ssh_dir.join("lab"), "Port 2222\n").expect("write");
        let config_path = ssh_dir.join("config");
        fs::write(
            &config_path,
            "Include conf.d/*\nHost *.lab\n  Include lab\nHost *\n  User everyone\n  Include /nonexistent/*\n",
        )
        .expect("write");
        let config = SshConfig::load_in(&config_path, ssh_dir, &local()).expect("load");
        let web = resolve(&config, "web");
        assert_eq!(web.hostname.as_deref(), Some("10.0.0.10"));
        assert_eq!(web.user.as_deref(), Some("webuser"));
        assert_eq!(web.port, None, "lab's Port applies only inside Host *.lab");
        assert_eq!(
            resolve(&config, "db").hostname.as_deref(),
            Some("10.0.0.20")
        );
        assert_eq!(resolve(&config, "db").user.as_deref(), Some("everyone"));
        assert_eq!(resolve(&config, "x.lab").port, Some(2222));
    }

    #[test]
    fn a_host_line_in_an_included_file_stays_inside_the_including_block() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("inner"), "Host web\n  User inner\n").expect("write");
        let config_path = dir.path().join("config");
        fs::write(
            &config_path,
            "Host other\n  Include inner\nHost *\n  User outer\n",
        )
        .expect("write");
        let config = SshConfig::load_in(&config_path, dir.path(), &local()).expect("load");
        // `web` matches the inner Host line, but the Include sits in `Host other`.
        assert_eq!(resolve(&config, "web").user.as_deref(), Some("outer"));
    }

    #[test]
    fn include_loops_stop_with_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("config");
        fs::write(&config_path, "Include config\n").expect("write");
        let msg = SshConfig::load_in(&config_path, dir.path(), &local())
            .expect_err("a loop")
            .to_string();
        assert!(msg.contains("Include nested"), "{msg}");
    }

    #[test]
    fn a_bad_line_in_an_included_file_names_that_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("extra"), "\nPort many\n").expect("write");
        let config_path = dir.path().join("config");
        fs::write(&config_path, "Include extra\n").expect("write");
        let msg = SshConfig::load_in(&config_path, dir.path(), &local())
            .expect_err("bad port")
            .to_string();
        assert!(msg.contains("extra:2"), "{msg}");
    }

    #[test]
    fn a_config_others_may_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("config");
        fs::write(&config_path, "Host x\n").expect("write");
        fs::set_permissions(&config_path, fs::Permissions::from_mode(0o666)).expect("chmod");
        let msg = SshConfig::load_in(&config_path, dir.path(), &local())
            .expect_err("world-writable")
            .to_string();
        assert!(msg.contains("bad owner or permissions"), "{msg}");
        fs::set_permissions(&config_path, fs::Permissions::from_mode(0o600)).expect("chmod");
        SshConfig::load_in(&config_path, dir.path(), &local()).expect("0600 is fine");
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let msg = SshConfig::load_in(Path::new("/nonexistent/config"), Path::new("/"), &local())
            .expect_err("missing")
            .to_string();
        assert!(msg.contains("/nonexistent/config"), "{msg}");
    }
}
