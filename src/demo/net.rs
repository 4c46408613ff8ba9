//! The demo's network, made with iproute2's `ip` (the same tool an operator
//! would use to inspect it): one bridge on the host carrying the gateway and
//! registry address, and one veth pair per node whose inner end is the node's
//! `eth0`. Commands go through `ip -batch`, one process per namespace.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use super::DemoError;

/// Runs `ip` commands (one per line, without the leading `ip`) in the host's
/// network namespace, or in the one `in_netns_of` (a pid) lives in.
pub fn ip_batch(commands: &[String], in_netns_of: Option<i32>) -> Result<(), DemoError> {
    let mut command = match in_netns_of {
        // nsenter (util-linux, always on Debian) enters only the network namespace.
        Some(pid) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/proc/{pid}/ns/net")).arg("ip");
            c
        }
        None => Command::new("ip"),
    };
    command
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let script = commands.join("\n") + "\n";
    let fail = |reason: String| DemoError::Network {
        commands: script.trim_end().to_string(),
        reason,
    };
    let mut child = command.spawn().map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let output = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(fail(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ))
    }
}

pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Deletes a link if it exists (deleting one end of a veth pair removes both).
pub fn delete_link(name: &str) -> Result<(), DemoError> {
    if !link_exists(name) {
        return Ok(());
    }
    ip_batch(&[format!("link del {name}")], None).or_else(|e| {
        // It may have gone on its own (its namespace died) between the check and the delete.
        if link_exists(name) { Err(e) } else { Ok(()) }
    })
}
