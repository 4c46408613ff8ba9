//! Pod networking. So far: the node's host-gw routes ([`routes`]), one
//! route per other node to that node's pod subnet, marked with a private
//! route protocol so flotilla finds and removes only its own.

mod ipnet;
pub mod routes;

use std::path::PathBuf;

pub use ipnet::{Ipv4Net, ParseIpv4NetError};

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(
        "CNI plugin `{plugin}` not found in {}: install containernetworking-plugins \
         (`apt-get install containernetworking-plugins`, which puts them in /usr/lib/cni) \
         or let flotilla upload them to the node",
        display_dirs(.searched)
    )]
    PluginMissing {
        plugin: String,
        searched: Vec<PathBuf>,
    },
    #[error(
        "CNI plugin `{plugin}` failed on {command}{}: {message}",
        .code.map(|c| format!(" (code {c})")).unwrap_or_default()
    )]
    PluginFailed {
        plugin: String,
        /// ADD, DEL, CHECK or VERSION.
        command: String,
        code: Option<u64>,
        /// The plugin's error `msg` and `details`, or its stderr.
        message: String,
    },
    #[error("CNI plugin `{plugin}` returned an unusable result: {message}")]
    BadResult { plugin: String, message: String },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("netlink: {0}")]
    Netlink(String),
    /// A container id, port or namespace path flotilla cannot hand to CNI.
    #[error("{0}")]
    InvalidInput(String),
    /// CHECK for an id that has no saved ADD result.
    #[error("pod {container_id} has no network attachment on this node: ADD it first")]
    NotAttached { container_id: String },
}

fn display_dirs(dirs: &[PathBuf]) -> String {
    if dirs.is_empty() {
        return "(no plugin dirs configured)".into();
    }
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

