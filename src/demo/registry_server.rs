//! The demo's OCI registry: the distribution server (Debian's
//! `docker-registry`) on the bridge address, with its own storage directory.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::DemoError;
use super::process::{ProcessId, open_log, wait_until};

pub const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";
pub const REGISTRY_PORT: u16 = 5000;

/// Writes the registry's configuration and starts it in its own process group
/// (so the operator's Ctrl-C does not reach it). Returns once it accepts
/// connections.
pub fn start(address: &str, dir: &Path) -> Result<ProcessId, DemoError> {
    let storage = dir.join("storage");
    fs::create_dir_all(&storage).map_err(|e| DemoError::io(&storage, e))?;
    let config_path = dir.join("config.yml");
    let config = format!(
        "version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
         http:\n  addr: {address}:{REGISTRY_PORT}\n",
        storage = storage.display()
    );
    fs::write(&config_path, config).map_err(|e| DemoError::io(&config_path, e))?;
    let log_path = dir.join("registry.log");
    let (log, log2) = open_log(&log_path)?;
    let child = Command::new(REGISTRY_BINARY)
        .arg("serve")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0)
        .spawn()
        .map_err(|e| DemoError::Spawn {
            what: REGISTRY_BINARY.into(),
            reason: e.to_string(),
        })?;
    let process = ProcessId::of(child.id()).ok_or_else(|| DemoError::Spawn {
        what: REGISTRY_BINARY.into(),
        reason: format!("it exited at once; see {}", log_path.display()),
    })?;
    let socket: SocketAddr =
        format!("{address}:{REGISTRY_PORT}")
            .parse()
            .map_err(|e| DemoError::Spawn {
                what: REGISTRY_BINARY.into(),
                reason: format!("bad address {address}: {e}"),
            })?;
    if !wait_for_listener(socket, Duration::from_secs(10), || process.is_alive()) {
        process.kill();
        return Err(DemoError::Spawn {
            what: REGISTRY_BINARY.into(),
            reason: format!("it does not answer on {socket}; see {}", log_path.display()),
        });
    }
    Ok(process)
}

/// Waits until something accepts TCP connections at `socket`, while `alive` holds.
pub fn wait_for_listener(
    socket: SocketAddr,
    timeout: Duration,
    mut alive: impl FnMut() -> bool,
) -> bool {
    let mut dead = false;
    let up = wait_until(timeout, || {
        if !alive() {
            dead = true;
            return true;
        }
        TcpStream::connect_timeout(&socket, Duration::from_millis(200)).is_ok()
    });
    up && !dead
}
