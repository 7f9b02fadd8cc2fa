//! Time as a parameter.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, Utc};

/// Where "now" comes from.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock. This is the one place allowed to read it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock for tests: starts at a fixed instant and moves only when told.
#[derive(Debug)]
pub struct MockClock {
    millis: AtomicI64,
}

impl Default for MockClock {
    fn default() -> Self {
        // 2022-01-16T14:40:00Z, an arbitrary fixed point.
        Self::at(DateTime::from_timestamp(1_642_344_000, 0).unwrap_or_default())
    }
}

impl MockClock {
    pub fn at(at: DateTime<Utc>) -> Self {
        Self {
            millis: AtomicI64::new(at.timestamp_millis()),
        }
    }

    /// The current mock time (same as [`Clock::now`], without the import).
    pub fn now(&self) -> DateTime<Utc> {
        Clock::now(self)
    }

    pub fn advance(&self, by: Duration) {
        self.millis
            .fetch_add(by.num_milliseconds(), Ordering::SeqCst);
    }
}

impl Clock for MockClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.millis.load(Ordering::SeqCst)).unwrap_or_default()
    }
}
