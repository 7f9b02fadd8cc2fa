//! Vestibule's domain: entities, their state machines and pure rules.
//!
//! Nothing in here does IO. Time comes from a [`Clock`] and randomness from an
//! rng passed in by the caller, so every rule can be tested deterministically.

pub mod browser_session;
pub mod client_registration;
pub mod clock;
pub mod compat;
pub mod device_code;
pub mod job;
pub mod oauth2;
pub mod pkce;
pub mod redirect_uri;
pub mod scope;
pub mod token_format;
pub mod tokens;
pub mod upstream;
pub mod user;

pub use clock::{Clock, MockClock, SystemClock};
pub use ulid::Ulid;

use chrono::{DateTime, Utc};
use rand::RngCore;

/// A state machine was asked for a move it does not allow (e.g. exchanging an
/// authorization grant twice).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid state transition: {entity} cannot go from {from} to {to}")]
pub struct InvalidTransition {
    pub entity: &'static str,
    pub from: &'static str,
    pub to: &'static str,
}

/// A new ULID: its time part from the clock, its random part from the rng.
pub fn new_id(clock: &dyn Clock, rng: &mut (dyn RngCore + Send)) -> Ulid {
    new_id_at(clock.now(), rng)
}

/// A new ULID for a given instant.
pub fn new_id_at(at: DateTime<Utc>, rng: &mut (dyn RngCore + Send)) -> Ulid {
    let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    let mut random = [0u8; 16];
    rng.fill_bytes(&mut random);
    // A ULID has 80 random bits.
    let random = u128::from_be_bytes(random) >> 48;
    Ulid::from_parts(ms, random)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ids_follow_the_clock_and_the_rng() {
        let clock = MockClock::default();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
        let a = new_id(&clock, &mut rng);
        clock.advance(chrono::Duration::seconds(1));
        let b = new_id(&clock, &mut rng);
        assert!(b > a, "later ids sort after earlier ones");
        assert_eq!(b.timestamp_ms() - a.timestamp_ms(), 1000);
        let mut rng2 = rand_chacha::ChaCha8Rng::seed_from_u64(42);
        assert_eq!(
            new_id_at(
                DateTime::from_timestamp_millis(a.timestamp_ms().cast_signed()).unwrap(),
                &mut rng2
            ),
            a
        );
    }
}
