//! Where the cluster state reads the time. Statuses depend on it (figures go
//! stale, conditions record when they changed), so tests drive a
//! [`ManualClock`] instead of sleeping.
//!
//! Wall time (`DateTime<Utc>`) rather than a monotonic clock, because every time
//! the state records is shown to people or compared with times the agents send.
//! A clock stepped backwards makes ages read as zero (they saturate), one
//! stepped forwards makes figures look stale until the next sample, a second later.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    pub fn set(&self, now: DateTime<Utc>) {
        *self.lock() = now;
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.lock();
        let later = chrono::Duration::from_std(by)
            .ok()
            .and_then(|by| now.checked_add_signed(by));
        // A step past the end of time leaves the clock where it was.
        if let Some(later) = later {
            *now = later;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DateTime<Utc>> {
        // Plain data: a panic elsewhere cannot leave it half-written.
        self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.lock()
    }
}
