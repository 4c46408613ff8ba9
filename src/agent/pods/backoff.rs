//! Kubernetes' crash-loop back-off, as the kubelet applies it to a container
//! that keeps exiting: wait 10 s before the first restart, double the wait
//! after each further exit up to 5 minutes, and start again from 10 s once a
//! run has lasted 10 minutes. The same schedule spaces image pull retries
//! (ErrImagePull, then ImagePullBackOff). Pure: times are passed in, so tests
//! (and settings with short intervals) need no sleeping.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The schedule's three numbers; `kubernetes()` gives the kubelet's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackOffPolicy {
    pub initial: Duration,
    pub max: Duration,
    /// A run at least this long forgets earlier failures.
    pub reset_after: Duration,
}

impl BackOffPolicy {
    pub const fn kubernetes() -> BackOffPolicy {
        BackOffPolicy {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }

    /// The wait before the next attempt, given how many attempts in a row
    /// have failed so far (1 for the first failure).
    pub fn delay(&self, consecutive_failures: u32) -> Duration {
        if consecutive_failures == 0 {
            return Duration::ZERO;
        }
        let doublings = consecutive_failures.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// A container's failure streak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackOffState {
    pub consecutive_failures: u32,
}

impl BackOffState {
    /// Records an exit after a run of `ran_for` and returns the wait before
    /// the next start.
    pub fn after_exit(&mut self, policy: &BackOffPolicy, ran_for: Duration) -> Duration {
        if ran_for >= policy.reset_after {
            self.consecutive_failures = 0;
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        policy.delay(self.consecutive_failures)
    }

    /// Records a failed attempt that never ran (an image pull).
    pub fn after_failed_attempt(&mut self, policy: &BackOffPolicy) -> Duration {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        policy.delay(self.consecutive_failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_ten_seconds_to_five_minutes() {
        let policy = BackOffPolicy::kubernetes();
        let waits: Vec<u64> = (1..=8).map(|n| policy.delay(n).as_secs()).collect();
        assert_eq!(waits, vec![10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(policy.delay(u32::MAX).as_secs(), 300);
        assert_eq!(policy.delay(0), Duration::ZERO);
    }

    #[test]
    fn a_long_run_resets_the_streak() {
        let policy = BackOffPolicy::kubernetes();
        let mut state = BackOffState::default();
        let short = Duration::from_secs(1);
        assert_eq!(state.after_exit(&policy, short).as_secs(), 10);
        assert_eq!(state.after_exit(&policy, short).as_secs(), 20);
        assert_eq!(state.after_exit(&policy, short).as_secs(), 40);
        assert_eq!(
            state
                .after_exit(&policy, Duration::from_secs(600))
                .as_secs(),
            10
        );
    }

    #[test]
    fn short_settings_scale_the_whole_schedule() {
        let policy = BackOffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
            reset_after: Duration::from_secs(2),
        };
        let waits: Vec<u128> = (1..=5).map(|n| policy.delay(n).as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 400, 500, 500]);
    }
}
