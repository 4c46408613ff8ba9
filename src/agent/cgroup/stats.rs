//! Usage figures of a group, and how a container's end is reported
//! (Kubernetes' reasons, OOMKilled included).

/// A group's usage, children included, in the units kubelet reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// CPU time used since the group was created.
    pub cpu_usage_ns: u64,
    /// CFS bandwidth periods that had a quota, periods in which the group
    /// ran out of it, and the time it spent waiting (0 without a quota).
    pub cpu_periods: u64,
    pub cpu_throttled_periods: u64,
    pub cpu_throttled_ns: u64,
    /// Memory charged to the group, page cache included.
    pub memory_usage_bytes: u64,
    /// Usage minus inactive file pages: what kubelet and `kubectl top` call
    /// the working set, and what its evictions look at.
    pub memory_working_set_bytes: u64,
    /// Processes and threads in the group.
    pub pids_current: u64,
}

/// kubelet's working set: usage minus inactive_file, never below zero.
pub(crate) fn working_set(usage: u64, inactive_file: u64) -> u64 {
    usage.saturating_sub(inactive_file)
}

/// How a container ended, as Kubernetes reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Termination {
    pub exit_code: i32,
    /// "OOMKilled", "Completed" or "Error".
    pub reason: &'static str,
}

/// How a container's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signaled(i32),
}

/// The exit code and reason of a container whose main process `ended`.
/// `oom_killed` is whether [`super::Group::oom_kills`] rose while the
/// container ran. As with containerd, an OOM kill anywhere in the
/// container's group makes the reason OOMKilled; a signal gives 128 +
/// signal, so the usual OOM-killed main process reports 137.
pub fn termination(ended: Ended, oom_killed: bool) -> Termination {
    let code = match ended {
        Ended::Exited(code) => code,
        Ended::Signaled(sig) => 128 + sig,
    };
    let reason = if oom_killed {
        "OOMKilled"
    } else if code == 0 {
        "Completed"
    } else {
        "Error"
    };
    Termination {
        exit_code: code,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kill_is_137_oomkilled() {
        assert_eq!(
            termination(Ended::Signaled(9), true),
            Termination {
                exit_code: 137,
                reason: "OOMKilled"
            }
        );
        assert_eq!(termination(Ended::Exited(0), false).reason, "Completed");
        assert_eq!(termination(Ended::Exited(3), false).reason, "Error");
        assert_eq!(termination(Ended::Signaled(15), false).exit_code, 143);
    }

    #[test]
    fn working_set_never_negative() {
        assert_eq!(working_set(100, 30), 70);
        assert_eq!(working_set(10, 30), 0);
    }
}
