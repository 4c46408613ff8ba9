//! cgroup v1 (also hybrid mode's resource control): one hierarchy per
//! controller, with the v1 files for limits, the freezer, usage and OOM
//! counts.

use std::io::ErrorKind;
use std::path::Path;
use std::time::{Duration, Instant};

use super::stats::{Stats, working_set};
use super::{CgroupError, Controller, Group, Limits, files};

/// The directory of `controller` for `group`, or the error that says the
/// controller is missing when something needs it.
fn dir_for(
    group: &Group,
    controller: Controller,
    action: &'static str,
) -> Result<std::path::PathBuf, CgroupError> {
    group
        .v1_dir(controller)
        .ok_or_else(|| group.missing(controller, action))
}

pub(crate) fn set_limits(group: &Group, limits: &Limits) -> Result<(), CgroupError> {
    // Each controller is written only when it is mounted; a missing one is
    // an error only when a limit needs it.
    let needs_memory = limits.memory_max.is_some();
    if let Some(dir) = group.v1_dir(Controller::Memory) {
        set_memory(&dir, limits.memory_max)?;
    } else if needs_memory {
        return Err(group.missing(Controller::Memory, "set the memory limit"));
    }

    let needs_cpu = limits.cpu_quota.is_some() || limits.cpu_shares.is_some();
    if let Some(dir) = group.v1_dir(Controller::Cpu) {
        set_cpu(&dir, limits)?;
    } else if needs_cpu {
        dir_for(group, Controller::Cpu, "set CPU limits")?;
    }

    if let Some(dir) = group.v1_dir(Controller::Pids) {
        let value = limits.pids_max.map_or("max".to_owned(), |n| n.to_string());
        files::write(&dir.join("pids.max"), &value)?;
    } else if limits.pids_max.is_some() {
        dir_for(group, Controller::Pids, "set the pids limit")?;
    }
    Ok(())
}

/// memory.limit_in_bytes, and memory.memsw.limit_in_bytes (memory + swap)
/// to the same value so swap does not extend the limit. The kernel insists
/// that limit <= memsw at every moment, so raising writes memsw first and
/// lowering writes the limit first.
fn set_memory(dir: &Path, max: Option<u64>) -> Result<(), CgroupError> {
    let value = max.map_or("-1".to_owned(), |b| b.to_string());
    let limit = dir.join("memory.limit_in_bytes");
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    // Without swap accounting (swapaccount=0) there is no memsw file.
    if !memsw.exists() {
        return files::write(&limit, &value);
    }
    let current = files::read_u64(&limit)?;
    let raising = max.unwrap_or(u64::MAX) > current;
    if raising {
        files::write(&memsw, &value)?;
        files::write(&limit, &value)
    } else {
        files::write(&limit, &value)?;
        files::write(&memsw, &value)
    }
}

fn set_cpu(dir: &Path, limits: &Limits) -> Result<(), CgroupError> {
    let quota = dir.join("cpu.cfs_quota_us");
    match limits.cpu_quota {
        Some(q) => {
            let period = dir.join("cpu.cfs_period_us");
            let (q_val, p_val) = (q.quota_us.to_string(), q.period_us.to_string());
            // The kernel checks each write against the other value (and the
            // parent's bandwidth), so one order can fail where the other
            // succeeds; runc does the same dance.
            if files::write(&period, &p_val).is_err() {
                files::write(&quota, &q_val)?;
                files::write(&period, &p_val)?;
            } else {
                files::write(&quota, &q_val)?;
            }
        }
        None => files::write(&quota, "-1")?,
    }
    // 1024 is the kernel's default: no request means an ordinary share.
    let shares = limits.cpu_shares.filter(|&s| s > 0).unwrap_or(1024);
    files::write(&dir.join("cpu.shares"), &shares.to_string())
}

/// Writes freezer.state and waits until it reads back the wanted state.
/// FREEZING means some task has not stopped yet; writing FROZEN again makes
/// the kernel retry those (as runc does). A freeze that does not complete in
/// time is undone.
pub(crate) fn set_frozen(dir: &Path, frozen: bool, wait: Duration) -> Result<(), CgroupError> {
    let state = dir.join("freezer.state");
    let wanted = if frozen { "FROZEN" } else { "THAWED" };
    files::write(&state, wanted)?;
    let start = Instant::now();
    let mut last_write = Instant::now();
    let mut delay = Duration::from_millis(1);
    loop {
        let text = files::read(&state)?;
        if text.trim() == wanted {
            return Ok(());
        }
        if start.elapsed() > wait {
            if frozen {
                // Best effort: the timeout is the error worth reporting.
                let _ = files::write(&state, "THAWED");
            }
            return Err(CgroupError::Timeout {
                path: state,
                wanted,
                waited: start.elapsed(),
                last: text.trim().to_owned(),
            });
        }
        if last_write.elapsed() > Duration::from_millis(50) {
            files::write(&state, wanted)?;
            last_write = Instant::now();
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(20));
    }
}

pub(crate) fn stats(group: &Group) -> Result<Stats, CgroupError> {
    let mut stats = Stats::default();

    let acct = dir_for(group, Controller::Cpuacct, "read CPU usage")?;
    stats.cpu_usage_ns = files::read_u64(&acct.join("cpuacct.usage"))?;
    if let Some(cpu) = group.v1_dir(Controller::Cpu) {
        let path = cpu.join("cpu.stat");
        if let Some(text) = files::read_opt(&path)? {
            let key = |k| files::keyed(&path, &text, k).map(Option::unwrap_or_default);
            stats.cpu_periods = key("nr_periods")?;
            stats.cpu_throttled_periods = key("nr_throttled")?;
            stats.cpu_throttled_ns = key("throttled_time")?;
        }
    }

    let mem = dir_for(group, Controller::Memory, "read memory usage")?;
    stats.memory_usage_bytes = files::read_u64(&mem.join("memory.usage_in_bytes"))?;
    let path = mem.join("memory.stat");
    let text = files::read(&path)?;
    // total_* counts the group's descendants too, as usage_in_bytes does
    // (cadvisor uses total_inactive_file for v1).
    let inactive = files::keyed(&path, &text, "total_inactive_file")?.unwrap_or(0);
    stats.memory_working_set_bytes = working_set(stats.memory_usage_bytes, inactive);

    let pids = dir_for(group, Controller::Pids, "read the pid count")?;
    stats.pids_current = files::read_u64(&pids.join("pids.current"))?;
    Ok(stats)
}

/// memory.oom_control's oom_kill (Linux 4.13+) counts only the group itself
/// on v1, so the group's descendants are summed to match v2, where a pod
/// group counts its containers' kills.
pub(crate) fn oom_kills(dir: &Path) -> Result<u64, CgroupError> {
    let mut total = 0u64;
    let mut found = false;
    for sub in files::subtree_deepest_first(dir)? {
        let path = sub.join("memory.oom_control");
        match files::read(&path) {
            Ok(text) => {
                found = true;
                total += files::keyed(&path, &text, "oom_kill")?.unwrap_or(0);
            }
            // A child removed while we walk simply has no kills left to count.
            Err(CgroupError::Read { source, .. }) if source.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if !found {
        return Err(CgroupError::Read {
            path: dir.join("memory.oom_control"),
            source: std::io::Error::from(ErrorKind::NotFound),
        });
    }
    Ok(total)
}
