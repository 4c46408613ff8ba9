//! The console's own settings, `console.toml` in the config dir: which theme,
//! whether to start read-only, how often to redraw, and where else to look
//! for manifests. Every key is optional and a missing file means the
//! defaults, so a fresh install needs nothing; unknown keys are errors, since
//! a misspelt `readonyl = true` silently ignored would leave the console able
//! to change the cluster.
//!
//! [`ConsoleFiles`] says where the console's files live, so the theme
//! directory, the keymap and this file are found the same way everywhere.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::config::paths::config_relative;

pub const CONSOLE_FILE_NAME: &str = "console.toml";
pub const KEYMAP_FILE_NAME: &str = "keymap.toml";
pub const THEMES_DIR_NAME: &str = "themes";

/// Where the console's files live inside the config dir
/// ([`crate::config::paths::Dirs::config`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ConsoleFiles {
    pub console: PathBuf,
    pub keymap: PathBuf,
    /// The user's theme files, `NAME.toml`: the `user_dir` of
    /// [`crate::tui::theme::Theme::load`].
    pub themes: PathBuf,
}

impl ConsoleFiles {
    pub fn in_dir(config_dir: &Path) -> ConsoleFiles {
        ConsoleFiles {
            console: config_dir.join(CONSOLE_FILE_NAME),
            keymap: config_dir.join(KEYMAP_FILE_NAME),
            themes: config_dir.join(THEMES_DIR_NAME),
        }
    }
}

pub const DEFAULT_REFRESH_FPS: u32 = 30;
/// Bounds of `refresh_fps`: below 1 nothing would move; above 60 the
/// terminal cannot show the difference and the redraws cost CPU.
pub const REFRESH_FPS_RANGE: std::ops::RangeInclusive<u32> = 1..=60;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the console file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The message is toml's, which gives the line and column and shows the
    /// line, for bad syntax, unknown keys and out-of-range values alike.
    #[error("console file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
}

/// `console.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// A theme name; `--theme` wins over it, `NO_COLOR` over both.
    pub theme: Option<String>,
    /// Start as if `--readonly` were given: no action changes the cluster.
    pub readonly: bool,
    /// The most frames drawn per second.
    #[serde(deserialize_with = "refresh_fps")]
    pub refresh_fps: u32,
    /// Directories the manifests view lists besides the default ones. A
    /// relative path is taken from the directory of `console.toml`, and `~/`
    /// is the home directory, so the file means the same from any cwd.
    pub manifests: Vec<PathBuf>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            theme: None,
            readonly: false,
            refresh_fps: DEFAULT_REFRESH_FPS,
            manifests: Vec::new(),
        }
    }
}

/// Range-checked while deserializing so toml's error carries the line.
fn refresh_fps<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let fps = i64::deserialize(deserializer)?;
    u32::try_from(fps)
        .ok()
        .filter(|f| REFRESH_FPS_RANGE.contains(f))
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "refresh_fps = {fps} is out of range: use {} to {} frames per second",
                REFRESH_FPS_RANGE.start(),
                REFRESH_FPS_RANGE.end()
            ))
        })
}

impl ConsoleConfig {
    /// The console file at `path`; no file means the defaults.
    pub fn load(path: &Path) -> Result<ConsoleConfig, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => ConsoleConfig::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConsoleConfig::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses console-file text; `path` names it in errors and anchors
    /// relative manifest directories.
    pub fn parse(path: &Path, text: &str) -> Result<ConsoleConfig, ConfigError> {
        let mut config: ConsoleConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        for dir in &mut config.manifests {
            *dir = config_relative(base, &dir.to_string_lossy());
        }
        Ok(config)
    }

    /// The shortest time between two frames.
    pub fn frame_interval(&self) -> Duration {
        Duration::from_secs(1) / self.refresh_fps.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConsoleConfig, ConfigError> {
        ConsoleConfig::parse(Path::new("/home/op/.config/flotilla/console.toml"), text)
    }

    #[test]
    fn no_file_and_an_empty_file_are_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let config = ConsoleConfig::load(&dir.path().join(CONSOLE_FILE_NAME)).unwrap();
        assert_eq!(config, ConsoleConfig::default());
        assert_eq!(parse("# nothing yet\n").unwrap(), ConsoleConfig::default());
        assert_eq!(config.theme, None);
        assert!(!config.readonly);
        assert_eq!(config.refresh_fps, 30);
        assert_eq!(
            config.frame_interval(),
            Duration::from_millis(33) + Duration::from_nanos(333_333)
        );
        assert!(config.manifests.is_empty());
    }

    #[test]
    fn every_key_is_read() {
        let config = parse(
            "theme = \"light\"\nreadonly = true\nrefresh_fps = 60\nmanifests = [\"/srv/manifests\", \"mine\"]\n",
        )
        .unwrap();
        assert_eq!(config.theme.as_deref(), Some("light"));
        assert!(config.readonly);
        assert_eq!(config.refresh_fps, 60);
        assert_eq!(
            config.manifests,
            [
                PathBuf::from("/srv/manifests"),
                PathBuf::from("/home/op/.config/flotilla/mine")
            ]
        );
    }

    #[test]
    fn an_unknown_key_is_an_error_with_its_line() {
        let err = parse("theme = \"light\"\nreadonyl = true\n")
            .unwrap_err()
            .to_string();
        for needle in ["console.toml", "line 2", "readonyl", "readonly"] {
            assert!(err.contains(needle), "{needle:?} not in: {err}");
        }
    }

    #[test]
    fn refresh_fps_must_be_1_to_60() {
        assert_eq!(parse("refresh_fps = 1").unwrap().refresh_fps, 1);
        assert_eq!(parse("refresh_fps = 60").unwrap().refresh_fps, 60);
        for bad in ["0", "61", "-5", "99999999999"] {
            let err = parse(&format!("\nrefresh_fps = {bad}"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("line 2") && err.contains("1 to 60"),
                "{bad}: {err}"
            );
        }
        assert!(parse("refresh_fps = \"fast\"").is_err());
    }

    #[test]
    fn the_files_live_in_the_config_dir() {
        let files = ConsoleFiles::in_dir(Path::new("/c"));
        assert_eq!(files.console, Path::new("/c/console.toml"));
        assert_eq!(files.keymap, Path::new("/c/keymap.toml"));
        assert_eq!(files.themes, Path::new("/c/themes"));
    }
}
