//! cgroup v2 (the unified hierarchy): delegating controllers down the tree,
//! and the v2 files for limits, the core freezer, usage and OOM counts.

use std::io::ErrorKind;
use std::path::Path;
use std::time::{Duration, Instant};

use super::limits::shares_to_weight;
use super::stats::{Stats, working_set};
use super::{CgroupError, Controller, Limits, files};

/// The controllers a pod or container group needs. The freezer and
/// cgroup.kill are core files and need no controller.
const WANTED: [Controller; 3] = [Controller::Cpu, Controller::Memory, Controller::Pids];

fn missing(controller: Controller, action: &'static str, dir: &Path) -> CgroupError {
    CgroupError::ControllerMissing {
        controller: controller.name(),
        action,
        where_: format!(
            "not delegated to {}; check cgroup.controllers of the cgroup2 root",
            dir.display()
        ),
    }
}

/// Enables cpu, memory and pids in `cgroup.subtree_control` of every
/// ancestor of `rel` below `root`, top-down, so the group at `rel` gets
/// their interface files. A controller the parent does not offer is skipped
/// (set_limits then reports it if a limit needs it). Only missing ones are
/// written: a write to a populated cgroup's subtree_control fails (the "no
/// internal processes" rule), even for controllers already on.
pub(crate) fn enable_controllers(root: &Path, rel: &Path) -> Result<(), CgroupError> {
    let controllers = root.join("cgroup.controllers");
    // A child's cgroup.controllers is its parent's subtree_control, so after
    // the root we track what each level offers instead of reading it again.
    let mut offered: Vec<String> = files::read(&controllers)?
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let mut dir = root.to_path_buf();
    for part in rel.components() {
        let file = dir.join("cgroup.subtree_control");
        let mut enabled: Vec<String> = files::read(&file)?
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let add: Vec<&str> = WANTED
            .iter()
            .map(|c| c.name())
            .filter(|name| offered.iter().any(|o| o == name))
            .filter(|name| !enabled.iter().any(|e| e == name))
            .collect();
        if !add.is_empty() {
            let value = add
                .iter()
                .map(|name| format!("+{name}"))
                .collect::<Vec<_>>()
                .join(" ");
            files::write(&file, &value)?;
            enabled.extend(add.iter().map(|s| (*s).to_owned()));
        }
        offered = enabled;
        // Next: the child on the way to the group. The group itself is
        // never visited, so it stays free to hold processes.
        dir.push(part);
    }
    Ok(())
}

/// Writes `value` to `dir/name`. A missing file is an error only when a
/// limit is actually asked for (`required`); otherwise there is nothing to
/// reset.
fn write_ctl(
    dir: &Path,
    name: &str,
    value: &str,
    controller: Controller,
    required: bool,
) -> Result<(), CgroupError> {
    match files::write(&dir.join(name), value) {
        Err(CgroupError::Write { source, .. }) if source.kind() == ErrorKind::NotFound => {
            if required {
                Err(missing(controller, "set limits", dir))
            } else {
                Ok(())
            }
        }
        other => other,
    }
}

pub(crate) fn set_limits(dir: &Path, limits: &Limits) -> Result<(), CgroupError> {
    let mem = limits
        .memory_max
        .map_or("max".to_owned(), |b| b.to_string());
    write_ctl(
        dir,
        "memory.max",
        &mem,
        Controller::Memory,
        limits.memory_max.is_some(),
    )?;
    // With a limit, swap must not extend it (memory.swap.max exists only
    // with swap accounting; without it there is nothing to extend).
    let swap = if limits.memory_max.is_some() {
        "0"
    } else {
        "max"
    };
    write_ctl(dir, "memory.swap.max", swap, Controller::Memory, false)?;

    let cpu_max = match limits.cpu_quota {
        Some(q) => format!("{} {}", q.quota_us, q.period_us),
        None => "max".to_owned(),
    };
    write_ctl(
        dir,
        "cpu.max",
        &cpu_max,
        Controller::Cpu,
        limits.cpu_quota.is_some(),
    )?;
    let shares = limits.cpu_shares.filter(|&s| s > 0);
    // No shares: the kernel's default weight, which is what 1024 shares map to.
    let weight = shares.map_or(100, shares_to_weight);
    write_ctl(
        dir,
        "cpu.weight",
        &weight.to_string(),
        Controller::Cpu,
        shares.is_some(),
    )?;

    let pids = limits.pids_max.map_or("max".to_owned(), |n| n.to_string());
    write_ctl(
        dir,
        "pids.max",
        &pids,
        Controller::Pids,
        limits.pids_max.is_some(),
    )?;
    Ok(())
}

/// Sets cgroup.freeze and waits until cgroup.events agrees. A freeze that
/// does not complete in time is undone, so a failed pause never leaves a
/// half-frozen pod behind.
pub(crate) fn set_frozen(dir: &Path, frozen: bool, wait: Duration) -> Result<(), CgroupError> {
    let freeze = dir.join("cgroup.freeze");
    match files::write(&freeze, if frozen { "1" } else { "0" }) {
        Err(CgroupError::Write { source, .. }) if source.kind() == ErrorKind::NotFound => {
            if !dir.exists() {
                return Err(CgroupError::Read {
                    path: dir.to_owned(),
                    source,
                });
            }
            // Linux < 5.2 has no v2 freezer.
            return Err(missing(Controller::Freezer, "freeze", dir));
        }
        other => other?,
    }
    let events = dir.join("cgroup.events");
    let wanted = if frozen { "frozen 1" } else { "frozen 0" };
    let start = Instant::now();
    let mut delay = Duration::from_millis(1);
    loop {
        let text = files::read(&events)?;
        let state = files::keyed(&events, &text, "frozen")?;
        if state == Some(u64::from(frozen)) {
            return Ok(());
        }
        if start.elapsed() > wait {
            if frozen {
                // Best effort: the timeout is the error worth reporting.
                let _ = files::write(&freeze, "0");
            }
            return Err(CgroupError::Timeout {
                path: events,
                wanted,
                waited: start.elapsed(),
                last: text.trim().replace('\n', ", "),
            });
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(20));
    }
}

pub(crate) fn stats(dir: &Path) -> Result<Stats, CgroupError> {
    // cpu.stat is a core file (usage always; throttling with the cpu controller).
    let cpu_stat = dir.join("cpu.stat");
    let cpu = files::read(&cpu_stat)?;
    let key = |k| files::keyed(&cpu_stat, &cpu, k).map(Option::unwrap_or_default);
    let mut stats = Stats {
        cpu_usage_ns: key("usage_usec")?.saturating_mul(1000),
        cpu_periods: key("nr_periods")?,
        cpu_throttled_periods: key("nr_throttled")?,
        cpu_throttled_ns: key("throttled_usec")?.saturating_mul(1000),
        ..Stats::default()
    };

    let current = dir.join("memory.current");
    let Some(text) = files::read_opt(&current)? else {
        return Err(missing(Controller::Memory, "read memory usage", dir));
    };
    stats.memory_usage_bytes = files::parse_u64(&current, text.trim(), "a byte count")?;
    let mstat = dir.join("memory.stat");
    let text = files::read(&mstat)?;
    let inactive = files::keyed(&mstat, &text, "inactive_file")?.unwrap_or(0);
    stats.memory_working_set_bytes = working_set(stats.memory_usage_bytes, inactive);

    let pids = dir.join("pids.current");
    let Some(text) = files::read_opt(&pids)? else {
        return Err(missing(Controller::Pids, "read the pid count", dir));
    };
    stats.pids_current = files::parse_u64(&pids, text.trim(), "a count")?;
    Ok(stats)
}

/// memory.events' oom_kill counts the group and its descendants (unless the
/// hierarchy is mounted with memory_localevents, where a pod group would
/// count only itself; our pods' processes live in container groups, so a
/// runtime asks the container group anyway).
pub(crate) fn oom_kills(dir: &Path) -> Result<u64, CgroupError> {
    let events = dir.join("memory.events");
    let Some(text) = files::read_opt(&events)? else {
        return Err(missing(Controller::Memory, "count OOM kills", dir));
    };
    Ok(files::keyed(&events, &text, "oom_kill")?.unwrap_or(0))
}
