//! Processes as the host sees them: a process is named by its pid *and* its
//! start time, so a recycled pid is never mistaken for ours and never killed.
//! Shared by the demo (its nodes and registry) and the agent (its shims).

use std::fs;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// A process we started, as recorded in a state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: i32,
    /// Field 22 of `/proc/PID/stat`: clock ticks after boot.
    pub start_time: u64,
}

impl ProcessId {
    /// Reads the identity of a running process; `None` if it is gone.
    pub fn of(pid: u32) -> Option<ProcessId> {
        let pid = i32::try_from(pid).ok()?;
        Some(ProcessId {
            pid,
            start_time: start_time(pid)?,
        })
    }

    /// True while this very process runs (not a zombie, not a recycled pid).
    pub fn is_alive(&self) -> bool {
        start_time(self.pid) == Some(self.start_time) && is_live(self.pid)
    }

    /// SIGKILL, only if the pid still names this process.
    pub fn kill(&self) {
        self.signal(Signal::SIGKILL);
    }

    /// Sends `signal`, only if the pid still names this process; whether it was sent.
    pub fn signal(&self, signal: Signal) -> bool {
        self.is_alive() && kill(Pid::from_raw(self.pid), signal).is_ok()
    }
}

fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn start_time(pid: i32) -> Option<u64> {
    // After the name, fields start at 3 (state), so field 22 is index 19.
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// The parent of a process (field 4 of `/proc/PID/stat`).
pub fn parent_pid(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// Every live (non-zombie) pid whose parent is `pid`.
pub fn children(pid: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&child| parent_pid(child) == Some(pid) && is_live(child))
        .collect()
}

/// True if the process exists and is not a zombie (its parent may be slow to reap it).
pub fn is_live(pid: i32) -> bool {
    stat_fields(pid)
        .and_then(|f| f.first().cloned())
        .is_some_and(|state| state != "Z" && state != "X")
}

/// The inode of a process's namespace of `kind` (`net`, `pid`, `mnt`…), read
/// from the `kind:[INODE]` link in `/proc/PID/ns`.
pub fn namespace_inode(pid: i32, kind: &str) -> Option<u64> {
    let link = fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()?;
    let text = link.to_str()?;
    text.strip_prefix(&format!("{kind}:["))?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Every live (non-zombie) pid whose namespace of `kind` has this inode.
pub fn pids_in_namespace(kind: &str, inode: u64) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| namespace_inode(pid, kind) == Some(inode) && is_live(pid))
        .collect()
}

/// Polls `done` every few milliseconds until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The command line of a process, arguments joined by spaces.
pub fn command_line(pid: i32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" "),
    )
}
