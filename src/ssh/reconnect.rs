//! When a node session tries again after a failed or lost connection:
//! exponential back-off with full jitter, capped (30 s by default), reset once
//! a connection has stayed up long enough to count as healthy.
//!
//! Full jitter (a uniform draw in `[0, cap]`, as AWS's architecture note on
//! back-off recommends) rather than a fixed doubling, so that fifty nodes
//! lost together (the operator's laptop sleeping, a switch restarting) do not
//! come back in lockstep and hit the network and sshd at the same instant.
//! A floor keeps a flapping host from being hammered in a tight loop.

use std::time::Duration;

/// The shape of the back-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// The cap of the first retry's draw.
    pub initial: Duration,
    /// No wait is longer than this.
    pub max: Duration,
    /// No wait is shorter than this.
    pub floor: Duration,
    /// A connection that lasted this long resets the streak.
    pub healthy_after: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            floor: Duration::from_millis(250),
            healthy_after: Duration::from_secs(60),
        }
    }
}

/// A node's failure streak.
#[derive(Debug, Clone, Default)]
pub struct Reconnect {
    failures: u32,
}

impl Reconnect {
    /// The cap of the next draw: `initial × 2^(failures-1)`, at most `max`.
    pub fn ceiling(&self, policy: &ReconnectPolicy) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(31);
        policy
            .initial
            .saturating_mul(1u32 << doublings)
            .min(policy.max)
    }

    /// Records a failed attempt (or a connection that did not stay up long
    /// enough) and returns how long to wait before the next one, drawing the
    /// jitter from `unit`, a number in `[0, 1)`.
    pub fn after_failure_with(&mut self, policy: &ReconnectPolicy, unit: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let ceiling = self.ceiling(policy);
        ceiling.mul_f64(unit.clamp(0.0, 1.0)).max(policy.floor)
    }

    /// As [`Reconnect::after_failure_with`], with a random draw.
    pub fn after_failure(&mut self, policy: &ReconnectPolicy) -> Duration {
        self.after_failure_with(policy, rand::random::<f64>())
    }

    /// Records that a connection ended after being up for `lasted`: a healthy
    /// one starts a new streak.
    pub fn connection_ended(&mut self, policy: &ReconnectPolicy, lasted: Duration) {
        if lasted >= policy.healthy_after {
            self.failures = 0;
        }
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_doubles_to_the_cap() {
        let policy = ReconnectPolicy::default();
        let mut r = Reconnect::default();
        let ceilings: Vec<u64> = (0..8)
            .map(|_| {
                r.after_failure_with(&policy, 0.5);
                r.ceiling(&policy).as_secs()
            })
            .collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn waits_are_jittered_within_floor_and_ceiling() {
        let policy = ReconnectPolicy::default();
        let mut r = Reconnect::default();
        for _ in 0..5 {
            r.after_failure_with(&policy, 0.0);
        }
        assert_eq!(r.after_failure_with(&policy, 0.0), policy.floor);
        assert_eq!(
            r.after_failure_with(&policy, 0.999_999).as_secs(),
            29,
            "just under the 30 s cap"
        );
        assert_eq!(r.after_failure_with(&policy, 7.0), policy.max, "clamped");
        for _ in 0..1000 {
            let wait = r.after_failure(&policy);
            assert!(wait >= policy.floor && wait <= policy.max, "{wait:?}");
        }
    }

    #[test]
    fn a_healthy_connection_resets_the_streak_and_a_short_one_does_not() {
        let policy = ReconnectPolicy::default();
        let mut r = Reconnect::default();
        for _ in 0..4 {
            r.after_failure_with(&policy, 0.5);
        }
        r.connection_ended(&policy, Duration::from_secs(5));
        assert_eq!(r.failures(), 4);
        r.connection_ended(&policy, Duration::from_secs(60));
        assert_eq!(r.failures(), 0);
        assert_eq!(
            r.after_failure_with(&policy, 1.0),
            Duration::from_secs(1),
            "back to the first step"
        );
    }

    #[test]
    fn huge_streaks_do_not_overflow() {
        let policy = ReconnectPolicy::default();
        let mut r = Reconnect {
            failures: u32::MAX - 1,
        };
        assert_eq!(r.after_failure_with(&policy, 1.0), policy.max);
        assert_eq!(r.after_failure_with(&policy, 1.0), policy.max);
    }
}
