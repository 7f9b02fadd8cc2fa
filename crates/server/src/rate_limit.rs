//! In-process rate limiters (MAS `rate_limiting`), checked before any
//! expensive or guessable work (password hashing, user-code lookups).
//!
//! Each limiter is a keyed GCRA (generic cell rate algorithm, the token
//! bucket expressed as one "theoretical arrival time" per key): `burst`
//! actions at once, one more every `1 / per_second` seconds. Refusal is
//! backoff, never a lock: the answer says when to retry (NIST SP 800-63B
//! §5.2.2 asks for rate limiting, not permanent lockout).
//!
//! Time comes from the injected [`Clock`] (wall clock in production, the mock
//! clock in tests). A clock that jumps backwards shifts every key's
//! schedule back by the same amount, so nobody is locked out longer than
//! they would have been; a forward jump simply refills buckets. All
//! arithmetic saturates. Keys whose bucket is full again are swept once the
//! map grows, and the map has a hard cap (the keys nearest to full go
//! first), so memory stays bounded whatever the key space.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

use vestibule_config::{RateLimiterConfig, RateLimitingConfig};
use vestibule_domain::Clock;

use crate::requester::Requester;

/// Sweep full buckets once the map holds this many keys…
const SWEEP_AT: usize = 4_096;
/// …and never hold more than this many (per limiter).
const MAX_KEYS: usize = 100_000;

/// A refused action: when it may be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Milliseconds until the next attempt is allowed (at least 1).
    pub retry_after_ms: u64,
}

impl Limited {
    /// Whole seconds, rounded up, for `Retry-After` (RFC 9110 §10.2.3).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after_ms.div_ceil(1000).max(1)
    }

    /// "in N seconds/minutes/hours", for pages.
    pub fn human(&self) -> String {
        let s = self.retry_after_secs();
        let (n, unit) = if s < 120 {
            (s, "second")
        } else if s < 2 * 3600 {
            (s.div_ceil(60), "minute")
        } else {
            (s.div_ceil(3600), "hour")
        };
        format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
    }
}

/// One key's schedule, in milliseconds since the epoch.
#[derive(Debug, Clone, Copy)]
struct Cell {
    /// When the bucket is full again (GCRA's theoretical arrival time).
    tat: i64,
    /// The latest time this key saw, to notice a clock going backwards.
    seen: i64,
}

#[derive(Debug, Default)]
struct Cells {
    map: HashMap<String, Cell>,
    /// `len` after the last sweep: sweep again once it doubles.
    swept_len: usize,
}

/// A keyed limiter.
#[derive(Debug)]
pub struct RateLimiter {
    /// Milliseconds per action (`1 / per_second`), at least 1.
    interval: i64,
    /// `burst * interval`: how far ahead of now the schedule may run.
    capacity: i64,
    cells: Mutex<Cells>,
}

impl RateLimiter {
    pub fn new(config: RateLimiterConfig) -> Self {
        // Validation guarantees a positive finite rate; clamp anyway so an
        // absurd value cannot overflow (1e15 ms is 30 000 years).
        let per_ms = if config.per_second.is_finite() && config.per_second > 0.0 {
            1000.0 / config.per_second
        } else {
            1e15
        };
        #[allow(clippy::cast_possible_truncation)]
        let interval = per_ms.clamp(1.0, 1e15).round() as i64;
        let burst = i64::from(config.burst.max(1));
        Self {
            interval,
            capacity: interval.saturating_mul(burst),
            cells: Mutex::new(Cells::default()),
        }
    }

    /// Counts one action for `key` at `now` (milliseconds), atomically.
    pub fn check_at(&self, key: &str, now: i64) -> Result<(), Limited> {
        let mut cells = self.cells.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = Cell {
            tat: now,
            seen: now,
        };
        let cell = cells.map.get(key).copied().unwrap_or(fresh);
        // Backwards jump: move the schedule back with the clock.
        let tat = if now < cell.seen {
            cell.tat.saturating_sub(cell.seen.saturating_sub(now))
        } else {
            cell.tat
        };
        let next = tat.max(now).saturating_add(self.interval);
        let ahead = next.saturating_sub(now);
        let result = if ahead <= self.capacity {
            Ok(next)
        } else {
            Err(Limited {
                retry_after_ms: u64::try_from(ahead.saturating_sub(self.capacity))
                    .unwrap_or(u64::MAX)
                    .max(1),
            })
        };
        let stored = Cell {
            tat: *result.as_ref().unwrap_or(&tat),
            seen: now,
        };
        if !cells.map.contains_key(key) {
            make_room(&mut cells, now);
        }
        cells.map.insert(key.to_owned(), stored);
        result.map(|_| ())
    }

    /// Keys currently held (for tests of the memory bound).
    pub fn len(&self) -> usize {
        self.cells
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Before adding a key: drop full buckets when the map has grown, and
/// enforce the hard cap.
fn make_room(cells: &mut Cells, now: i64) {
    let len = cells.map.len();
    if len < SWEEP_AT.max(cells.swept_len.saturating_mul(2)) && len < MAX_KEYS {
        return;
    }
    cells.map.retain(|_, c| c.tat > now);
    if cells.map.len() >= MAX_KEYS {
        // Every key is still limited: drop the quarter nearest to full.
        let mut tats: Vec<i64> = cells.map.values().map(|c| c.tat).collect();
        let cut = MAX_KEYS / 4;
        let (_, nth, _) = tats.select_nth_unstable(cut);
        let limit = *nth;
        cells.map.retain(|_, c| c.tat > limit);
    }
    cells.swept_len = cells.map.len();
}

/// The limiters the server enforces.
#[derive(Debug)]
pub struct RateLimits {
    pub login_per_ip: RateLimiter,
    pub login_per_account: RateLimiter,
    pub registration: RateLimiter,
    pub device_code_link: RateLimiter,
}

impl RateLimits {
    pub fn from_config(config: &RateLimitingConfig) -> Self {
        Self {
            login_per_ip: RateLimiter::new(config.login.per_ip),
            login_per_account: RateLimiter::new(config.login.per_account),
            registration: RateLimiter::new(config.registration),
            device_code_link: RateLimiter::new(config.device_code_link),
        }
    }

    /// A password attempt for `account` (the normalised localpart, when
    /// the input names one) from `requester`: per IP first, then per account,
    /// so a refused IP does not spend the account's allowance.
    pub fn check_password(
        &self,
        clock: &dyn Clock,
        requester: Requester,
        account: Option<&str>,
    ) -> Result<(), Limited> {
        let now = clock.now().timestamp_millis();
        self.login_per_ip.check_at(&requester.limit_key(), now)?;
        if let Some(account) = account {
            self.login_per_account.check_at(account, now)?;
        }
        Ok(())
    }

    /// A self-service registration from `requester`.
    pub fn check_registration(
        &self,
        clock: &dyn Clock,
        requester: Requester,
    ) -> Result<(), Limited> {
        self.registration
            .check_at(&requester.limit_key(), clock.now().timestamp_millis())
    }

    /// A user code submitted on the device link page by `requester`.
    pub fn check_device_code_link(
        &self,
        clock: &dyn Clock,
        requester: Requester,
    ) -> Result<(), Limited> {
        self.device_code_link
            .check_at(&requester.limit_key(), clock.now().timestamp_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(burst: u32, per_second: f64) -> RateLimiter {
        RateLimiter::new(RateLimiterConfig { burst, per_second })
    }

    #[test]
    fn burst_then_one_per_interval() {
        let l = limiter(3, 0.5); // one every 2 s
        let t = 1_000_000;
        for _ in 0..3 {
            assert_eq!(l.check_at("k", t), Ok(()));
        }
        assert_eq!(
            l.check_at("k", t),
            Err(Limited {
                retry_after_ms: 2000
            })
        );
        assert_eq!(l.check_at("other", t), Ok(()), "keys are independent");
        assert_eq!(
            l.check_at("k", t + 1999),
            Err(Limited { retry_after_ms: 1 })
        );
        assert_eq!(l.check_at("k", t + 2000), Ok(()));
        assert!(l.check_at("k", t + 2000).is_err());
        // Refusals do not push the schedule further (backoff, not lockout).
        for _ in 0..100 {
            assert!(l.check_at("k", t + 2001).is_err());
        }
        assert_eq!(l.check_at("k", t + 4000), Ok(()));
        // Long idle: full burst again, no more.
        let later = t + 3_600_000;
        for _ in 0..3 {
            assert_eq!(l.check_at("k", later), Ok(()));
        }
        assert!(l.check_at("k", later).is_err());
    }

    #[test]
    fn clock_jumps() {
        let l = limiter(2, 1.0);
        let t = 10_000_000;
        assert!(l.check_at("k", t).is_ok());
        assert!(l.check_at("k", t).is_ok());
        assert!(l.check_at("k", t).is_err());
        // An hour back: still one interval to wait, not an hour.
        let back = t - 3_600_000;
        assert_eq!(
            l.check_at("k", back),
            Err(Limited {
                retry_after_ms: 1000
            })
        );
        assert!(l.check_at("k", back + 1000).is_ok());
        // And forward again: a full bucket, no overflow.
        assert!(l.check_at("k", t + 3_600_000).is_ok());
        // The ends of time neither panic nor leave the key locked once the
        // clock is sane again.
        let _ = l.check_at("k", i64::MAX);
        let _ = l.check_at("k", i64::MIN);
        assert!(l.check_at("k", t).is_ok());
        let slow = limiter(u32::MAX, f64::MIN_POSITIVE);
        assert!(slow.check_at("k", i64::MAX - 1).is_ok());
    }

    #[test]
    fn memory_is_bounded() {
        let l = limiter(1, 1.0);
        // Buckets that refilled are swept.
        for i in 0..(SWEEP_AT * 3) {
            let now = i64::try_from(i).unwrap_or(0) * 2000;
            assert!(l.check_at(&i.to_string(), now).is_ok());
        }
        assert!(l.len() <= SWEEP_AT, "{}", l.len());
        // Keys all still limited: the hard cap holds.
        let l = limiter(1, 0.000_001);
        for i in 0..(MAX_KEYS + 10) {
            let _ = l.check_at(&i.to_string(), i64::try_from(i).unwrap_or(0));
        }
        assert!(l.len() <= MAX_KEYS, "{}", l.len());
        // The newest key is still limited.
        let last = MAX_KEYS + 9;
        assert!(
            l.check_at(&last.to_string(), i64::try_from(last).unwrap_or(0))
                .is_err()
        );
    }

    #[test]
    fn human_delays() {
        let l = |ms| Limited { retry_after_ms: ms }.human();
        assert_eq!(l(1), "1 second");
        assert_eq!(l(20_000), "20 seconds");
        assert_eq!(l(1_250_000), "21 minutes");
        assert_eq!(l(10_000_000), "3 hours");
    }
}
