//! flotilla's directories on the operator's machine, from the `directories`
//! crate (project "flotilla"): `config_dir` holds what the operator chose or
//! trusted (cluster file, known_hosts, keys, themes, keymap); `data_local_dir`
//! holds only what can be thrown away (logs, the demo's runtime state), and
//! `cache_dir` (`$XDG_CACHE_HOME/flotilla`) what is only there to save time
//! (the agent binary's digest).

use std::path::{Path, PathBuf};

use directories::ProjectDirs;

/// The file names flotilla uses inside its directories.
pub const CLUSTER_FILE_NAME: &str = "cluster.toml";
pub const KNOWN_HOSTS_FILE_NAME: &str = "known_hosts";

/// Environment variable naming the cluster file, below `--cluster` in precedence.
pub const CLUSTER_ENV: &str = "FLOTILLA_CLUSTER";

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot find a home directory for flotilla's configuration: set HOME (or XDG_CONFIG_HOME and XDG_DATA_HOME)"
)]
pub struct NoHomeDir;

/// flotilla's two directories, resolved once.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub config: PathBuf,
    pub data_local: PathBuf,
    pub cache: PathBuf,
}

impl Dirs {
    pub fn from_env() -> Result<Dirs, NoHomeDir> {
        let dirs = ProjectDirs::from("", "", "flotilla").ok_or(NoHomeDir)?;
        Ok(Dirs {
            config: dirs.config_dir().to_path_buf(),
            data_local: dirs.data_local_dir().to_path_buf(),
            cache: dirs.cache_dir().to_path_buf(),
        })
    }

    pub fn default_cluster_file(&self) -> PathBuf {
        self.config.join(CLUSTER_FILE_NAME)
    }

    /// flotilla's own known_hosts, consulted after `~/.ssh/known_hosts`.
    pub fn known_hosts(&self) -> PathBuf {
        self.config.join(KNOWN_HOSTS_FILE_NAME)
    }

    pub fn log_dir(&self) -> PathBuf {
        self.data_local.join("logs")
    }
}

/// Which cluster file to use: `--cluster FILE`, else `FLOTILLA_CLUSTER`, else the default.
pub fn cluster_file_path(flag: Option<PathBuf>, dirs: &Dirs) -> PathBuf {
    flag.or_else(|| {
        std::env::var_os(CLUSTER_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(|| dirs.default_cluster_file())
}

/// A directory named in a config file: `~/` is the home directory and a
/// relative path is taken from `base` (the file's own directory), so the
/// file means the same from any working directory.
pub fn config_relative(base: &Path, path: &str) -> PathBuf {
    let expanded = expand_tilde(path);
    if expanded.is_relative() {
        base.join(expanded)
    } else {
        expanded
    }
}

/// Expands a leading `~/` the way OpenSSH does for paths in config files.
pub fn expand_tilde(path: &str) -> PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) => match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(rest),
            None => PathBuf::from(path),
        },
        None if path == "~" => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(path)),
        None => PathBuf::from(path),
    }
}
