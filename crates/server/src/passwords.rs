//! Local passwords: hashing, verification, upgrades and the policy for new
//! passwords.
//!
//! - New passwords are hashed with the scheme of the highest `version` in
//!   `passwords.schemes`; it must be Argon2id or PBKDF2 (bcrypt silently
//!   truncates at 72 bytes, so it is only used to *verify* imported hashes,
//!   e.g. from Synapse, and those are re-hashed at the next login).
//! - Hashing and verification are CPU- and memory-heavy: they run on
//!   `spawn_blocking` behind a semaphore sized to the CPU count, with a queue
//!   timeout. A login flood then degrades to 503 instead of piling up
//!   threads and memory (ARCHITECTURE "Performance design", checklist R05).
//! - Unknown users get a dummy verification of the same cost (ASVS 6.3.8).
//! - Unicode: a scheme with `unicode_normalization: true` normalises to NFKC
//!   (what Synapse does, so imported Synapse hashes verify); every other
//!   scheme normalises to NFC, at hashing and at verification alike, so the
//!   same typed password always gives the same bytes.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString},
};
use rand::{CryptoRng, RngCore};
use tokio::sync::Semaphore;
use unicode_normalization::UnicodeNormalization as _;
use vestibule_config::sections::passwords::{PasswordAlgorithm, PasswordsConfig};
use zeroize::Zeroizing;

/// Minimum length of a new password, in characters (ASVS 6.2.1).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Maximum length of a new password, in characters (ASVS 6.2.9 asks for at
/// least 64 to be allowed; every character is hashed, nothing is truncated).
pub const MAX_PASSWORD_CHARS: usize = 128;
/// Default time a hashing request may wait for a free slot.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// The most common passwords of at least 8 characters (shorter ones fail the
/// length rule anyway), one per line, lower case. About 300 entries compiled
/// from public breach top lists; not the full top-3000 of checklist S39.
const COMMON_PASSWORDS: &str = include_str!("common_passwords.txt");

/// An Argon2id hash with the default parameters of [`Argon2::default`]
/// (m=19456, t=2, p=1), of no known password: verifying against it costs
/// the same as a real verification and always fails.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$dmVzdGlidWxlLWR1bW15$oGMxyVb8lvLFT29wUsHqVJVxONbTVjmqAjzW2Ux6xUE";

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Every hashing slot is taken and the queue timeout passed: answer 503.
    #[error("too many password operations in progress")]
    Busy,
    #[error("password login is disabled")]
    Disabled,
    #[error("the stored hash uses unknown scheme version {0}")]
    UnknownScheme(u16),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordConfigError {
    #[error("passwords.schemes is empty")]
    NoScheme,
    #[error("passwords.schemes: version {0} appears twice")]
    DuplicateVersion(u16),
    #[error(
        "passwords.schemes: the newest scheme (version {0}) is bcrypt, which truncates passwords at 72 bytes; use argon2id for new passwords and keep bcrypt as an older version for imported hashes"
    )]
    BcryptNewest(u16),
    #[error("passwords.schemes[version {0}]: bcrypt cost {1} is outside 4..=31")]
    BcryptCost(u16, u32),
}

/// Why a new password is refused (the message is shown to the user).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordPolicyError {
    #[error("The password must be at least {MIN_PASSWORD_CHARS} characters long.")]
    TooShort,
    #[error("The password must be at most {MAX_PASSWORD_CHARS} characters long.")]
    TooLong,
    #[error("This password is too common. Choose another one.")]
    TooCommon,
}

/// Checks a new password against the policy (S39): 8 to 128 characters
/// (counted after NFC normalisation) and not one of the most common
/// passwords (case-insensitive).
pub fn check_new_password(password: &str) -> Result<(), PasswordPolicyError> {
    let normalized: String = password.nfc().collect();
    let chars = normalized.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(PasswordPolicyError::TooShort);
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(PasswordPolicyError::TooLong);
    }
    let lower = normalized.to_lowercase();
    if COMMON_PASSWORDS
        .lines()
        .map(str::trim)
        .any(|common| common == lower)
    {
        return Err(PasswordPolicyError::TooCommon);
    }
    Ok(())
}

#[derive(Clone)]
struct Scheme {
    algorithm: PasswordAlgorithm,
    nfkc: bool,
    cost: u32,
    pepper: Option<Zeroizing<Vec<u8>>>,
}

impl Scheme {
    /// The bytes that are hashed: normalised password, then the pepper for
    /// bcrypt and PBKDF2 (as Synapse and MAS do). Argon2 takes the pepper
    /// as its secret key instead.
    fn input(&self, password: &str) -> Zeroizing<Vec<u8>> {
        let normalized: Zeroizing<String> = Zeroizing::new(if self.nfkc {
            password.nfkc().collect()
        } else {
            password.nfc().collect()
        });
        let mut bytes = Zeroizing::new(normalized.as_bytes().to_vec());
        if self.algorithm != PasswordAlgorithm::Argon2id
            && let Some(p) = &self.pepper
        {
            bytes.extend_from_slice(p);
        }
        bytes
    }

    fn argon2(&self) -> Result<Argon2<'_>, PasswordError> {
        match &self.pepper {
            None => Ok(Argon2::default()),
            Some(p) => Argon2::new_with_secret(
                p,
                argon2::Algorithm::Argon2id,
                argon2::Version::V0x13,
                argon2::Params::default(),
            )
            .map_err(|e| PasswordError::Hash(e.to_string())),
        }
    }

    fn hash(&self, salt: &[u8; 16], password: &str) -> Result<String, PasswordError> {
        let input = self.input(password);
        let salt = SaltString::encode_b64(salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
        let phc = match self.algorithm {
            PasswordAlgorithm::Argon2id => self.argon2()?.hash_password(&input, &salt),
            PasswordAlgorithm::Pbkdf2 => pbkdf2::Pbkdf2.hash_password(&input, &salt),
            PasswordAlgorithm::Bcrypt => {
                return Err(PasswordError::Hash(
                    "bcrypt is only used to verify imported hashes".to_owned(),
                ));
            }
        };
        phc.map(|h| h.to_string())
            .map_err(|e| PasswordError::Hash(e.to_string()))
    }

    fn verify(&self, hash: &str, password: &str) -> Result<bool, PasswordError> {
        let input = self.input(password);
        match self.algorithm {
            // Imported hashes (Synapse): bcrypt only reads the first 72
            // bytes; they are upgraded to Argon2id at the next login.
            PasswordAlgorithm::Bcrypt => Ok(bcrypt::verify(&*input, hash).unwrap_or(false)),
            PasswordAlgorithm::Argon2id => {
                let Ok(parsed) = PasswordHash::new(hash) else {
                    return Ok(false);
                };
                Ok(self.argon2()?.verify_password(&input, &parsed).is_ok())
            }
            PasswordAlgorithm::Pbkdf2 => {
                let Ok(parsed) = PasswordHash::new(hash) else {
                    return Ok(false);
                };
                Ok(pbkdf2::Pbkdf2.verify_password(&input, &parsed).is_ok())
            }
        }
    }
}

struct Inner {
    schemes: BTreeMap<u16, Scheme>,
    current: u16,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    queue_timeout: Duration,
}

/// The outcome of checking a user's password.
#[derive(Debug)]
pub struct Verified {
    pub valid: bool,
    /// When the stored hash used an older scheme: `(version, new hash)` to
    /// store with `upgraded_from` set.
    pub upgrade: Option<(u16, String)>,
}

/// Hashes and verifies passwords on a bounded blocking pool. Cheap to clone.
#[derive(Clone)]
pub struct PasswordManager {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for PasswordManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordManager")
            .field("enabled", &self.is_enabled())
            .finish_non_exhaustive()
    }
}

impl PasswordManager {
    /// A manager that refuses everything (`passwords.enabled: false`).
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Builds the manager from `passwords`, with one hashing slot per CPU
    /// and the default queue timeout.
    pub fn from_config(config: &PasswordsConfig) -> Result<Self, PasswordConfigError> {
        let slots = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Self::with_limits(config, slots, DEFAULT_QUEUE_TIMEOUT)
    }

    /// Like [`PasswordManager::from_config`] with an explicit number of
    /// concurrent hashing slots (0 refuses every operation after the
    /// timeout: useful in tests) and queue timeout.
    pub fn with_limits(
        config: &PasswordsConfig,
        slots: usize,
        queue_timeout: Duration,
    ) -> Result<Self, PasswordConfigError> {
        if !config.enabled {
            return Ok(Self::disabled());
        }
        let mut schemes = BTreeMap::new();
        for s in &config.schemes {
            let cost = s.cost.unwrap_or(bcrypt::DEFAULT_COST);
            if s.algorithm == PasswordAlgorithm::Bcrypt && !(4..=31).contains(&cost) {
                return Err(PasswordConfigError::BcryptCost(s.version, cost));
            }
            let scheme = Scheme {
                algorithm: s.algorithm,
                nfkc: s.unicode_normalization,
                cost,
                pepper: s
                    .secret
                    .as_ref()
                    .map(|p| Zeroizing::new(p.expose().as_bytes().to_vec())),
            };
            if schemes.insert(s.version, scheme).is_some() {
                return Err(PasswordConfigError::DuplicateVersion(s.version));
            }
        }
        let (&current, newest) = schemes
            .iter()
            .next_back()
            .ok_or(PasswordConfigError::NoScheme)?;
        if newest.algorithm == PasswordAlgorithm::Bcrypt {
            return Err(PasswordConfigError::BcryptNewest(current));
        }
        let _ = newest.cost;
        Ok(Self {
            inner: Some(Arc::new(Inner {
                schemes,
                current,
                slots: Arc::new(Semaphore::new(slots)),
                waiting: AtomicUsize::new(0),
                max_waiting: slots.max(1) * 64,
                queue_timeout,
            })),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    fn inner(&self) -> Result<&Arc<Inner>, PasswordError> {
        self.inner.as_ref().ok_or(PasswordError::Disabled)
    }

    /// Runs `f` on the blocking pool once a slot is free, or fails with
    /// [`PasswordError::Busy`] after the queue timeout (or at once when the
    /// queue is already long).
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, PasswordError> + Send + 'static,
    ) -> Result<T, PasswordError> {
        let inner = self.inner()?.clone();
        if inner.waiting.fetch_add(1, Ordering::SeqCst) >= inner.max_waiting {
            inner.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(PasswordError::Busy);
        }
        let permit =
            tokio::time::timeout(inner.queue_timeout, inner.slots.clone().acquire_owned()).await;
        inner.waiting.fetch_sub(1, Ordering::SeqCst);
        let Ok(Ok(permit)) = permit else {
            return Err(PasswordError::Busy);
        };
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f(&inner)
        })
        .await?
    }

    /// Hashes a new password with the newest scheme; returns its version and
    /// the PHC string. Check the policy first ([`check_new_password`]).
    pub async fn hash(
        &self,
        rng: &mut (impl RngCore + CryptoRng),
        password: Zeroizing<String>,
    ) -> Result<(u16, String), PasswordError> {
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut salt);
        self.run(move |inner| {
            let scheme = inner
                .schemes
                .get(&inner.current)
                .ok_or(PasswordError::UnknownScheme(inner.current))?;
            Ok((inner.current, scheme.hash(&salt, &password)?))
        })
        .await
    }

    /// Verifies `password` against a stored hash of scheme `version`; when
    /// it is valid and the scheme is not the newest, also re-hashes it with
    /// the newest scheme.
    pub async fn verify(
        &self,
        rng: &mut (impl RngCore + CryptoRng),
        version: u16,
        hash: String,
        password: Zeroizing<String>,
    ) -> Result<Verified, PasswordError> {
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut salt);
        self.run(move |inner| {
            let scheme = inner
                .schemes
                .get(&version)
                .ok_or(PasswordError::UnknownScheme(version))?;
            let valid = scheme.verify(&hash, &password)?;
            let upgrade = if valid && version != inner.current {
                let newest = inner
                    .schemes
                    .get(&inner.current)
                    .ok_or(PasswordError::UnknownScheme(inner.current))?;
                Some((inner.current, newest.hash(&salt, &password)?))
            } else {
                None
            };
            Ok(Verified { valid, upgrade })
        })
        .await
    }

    /// Spends the time of one verification and fails: for unknown users and
    /// users without a password, so the response time does not tell them
    /// apart (ASVS 6.3.8).
    pub async fn dummy_verify(&self, password: Zeroizing<String>) -> Result<(), PasswordError> {
        self.run(move |_| {
            let scheme = Scheme {
                algorithm: PasswordAlgorithm::Argon2id,
                nfkc: false,
                cost: 0,
                pepper: None,
            };
            let _ = scheme.verify(DUMMY_HASH, &password)?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;
    use vestibule_config::{Secret, sections::passwords::HashingScheme};

    use super::*;

    fn scheme(version: u16, algorithm: PasswordAlgorithm) -> HashingScheme {
        HashingScheme {
            version,
            algorithm,
            unicode_normalization: false,
            cost: None,
            secret: None,
            secret_file: None,
        }
    }

    #[test]
    fn dummy_hash_is_a_valid_phc_string() {
        let parsed = PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
    }

    #[test]
    fn policy() {
        assert_eq!(
            check_new_password("abcdefg"),
            Err(PasswordPolicyError::TooShort)
        );
        assert_eq!(check_new_password("correct h"), Ok(()));
        assert_eq!(check_new_password(&"x".repeat(128)), Ok(()));
        assert_eq!(
            check_new_password(&"x".repeat(129)),
            Err(PasswordPolicyError::TooLong)
        );
        assert_eq!(
            check_new_password("Password1"),
            Err(PasswordPolicyError::TooCommon)
        );
        assert_eq!(
            check_new_password("qwertyuiop"),
            Err(PasswordPolicyError::TooCommon)
        );
        // "e" + combining acute is one character after NFC.
        assert_eq!(
            check_new_password("abcdef\u{0065}\u{0301}"),
            Err(PasswordPolicyError::TooShort)
        );
    }

    #[tokio::test]
    async fn argon2id_round_trip_with_pepper_and_nfc() {
        let mut s = scheme(1, PasswordAlgorithm::Argon2id);
        s.secret = Some(Secret::new("pepper"));
        let cfg = PasswordsConfig {
            schemes: vec![s],
            ..PasswordsConfig::default()
        };
        let m = PasswordManager::from_config(&cfg).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let (v, hash) = m
            .hash(&mut rng, Zeroizing::new("caf\u{e9} au lait".to_owned()))
            .await
            .unwrap();
        assert_eq!(v, 1);
        assert!(hash.starts_with("$argon2id$"));
        // The decomposed spelling is the same password.
        let ok = m
            .verify(
                &mut rng,
                1,
                hash.clone(),
                Zeroizing::new("cafe\u{301} au lait".to_owned()),
            )
            .await
            .unwrap();
        assert!(ok.valid && ok.upgrade.is_none());
        let bad = m
            .verify(&mut rng, 1, hash, Zeroizing::new("cafe au lait".to_owned()))
            .await
            .unwrap();
        assert!(!bad.valid);
    }

    #[tokio::test]
    async fn pbkdf2_import_is_upgraded() {
        let cfg = PasswordsConfig {
            schemes: vec![
                scheme(1, PasswordAlgorithm::Pbkdf2),
                scheme(2, PasswordAlgorithm::Argon2id),
            ],
            ..PasswordsConfig::default()
        };
        let old = PasswordManager::from_config(&PasswordsConfig {
            schemes: vec![scheme(1, PasswordAlgorithm::Pbkdf2)],
            ..PasswordsConfig::default()
        })
        .unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let (_, hash) = old
            .hash(&mut rng, Zeroizing::new("imported pw".to_owned()))
            .await
            .unwrap();
        assert!(hash.starts_with("$pbkdf2-sha256$"));
        let m = PasswordManager::from_config(&cfg).unwrap();
        let r = m
            .verify(&mut rng, 1, hash, Zeroizing::new("imported pw".to_owned()))
            .await
            .unwrap();
        assert!(r.valid);
        let (v, new) = r.upgrade.unwrap();
        assert_eq!(v, 2);
        assert!(new.starts_with("$argon2id$"));
    }

    #[test]
    fn bcrypt_cannot_hash_new_passwords() {
        let cfg = PasswordsConfig {
            schemes: vec![scheme(1, PasswordAlgorithm::Bcrypt)],
            ..PasswordsConfig::default()
        };
        assert!(matches!(
            PasswordManager::from_config(&cfg),
            Err(PasswordConfigError::BcryptNewest(1))
        ));
    }

    #[tokio::test]
    async fn no_slot_means_busy() {
        let m =
            PasswordManager::with_limits(&PasswordsConfig::default(), 0, Duration::from_millis(10))
                .unwrap();
        assert!(matches!(
            m.dummy_verify(Zeroizing::new("x".to_owned())).await,
            Err(PasswordError::Busy)
        ));
    }
}
