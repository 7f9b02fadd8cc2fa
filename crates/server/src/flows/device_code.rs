//! RFC 8628 device authorization grant: the device authorization endpoint
//! (§3.1, §3.2) and the user's approval on the verification page (§3.3).
//! The token endpoint's part (§3.4, §3.5) is in [`super::token`].

use chrono::Duration;
use rand::Rng as _;
use vestibule_domain::{
    Clock, browser_session::BrowserSession, device_code::DeviceCodeGrant, oauth2::Client,
    scope::Scope, tokens::token_hash,
};
use vestibule_storage::{BoxRepository, Rng, StorageError, device_code::NewDeviceCodeGrant};

use super::authorize::{is_known_scope, new_code};

/// The grant type URN (RFC 8628 §3.4).
pub const GRANT_DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// How long a device code lives (RFC 8628 §3.2 `expires_in`; MAS uses 20
/// minutes, 10 is plenty for a QR code scanned next to the device).
pub const DEVICE_CODE_TTL: Duration = Duration::seconds(600);

/// The minimum polling interval we announce (RFC 8628 §3.2 `interval`).
pub const POLL_INTERVAL_SECONDS: i64 = 5;

/// RFC 8628 §6.1: consonants only (no vowels: no words; no digits or
/// look-alikes such as 0/O, 1/I/L, 5/S… are avoided by having no digits).
/// 20 characters, 8 of them: 20^8 ≈ 2.6·10^10 codes, about 34 bits.
pub const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
pub const USER_CODE_LENGTH: usize = 8;

/// A fresh user code, normalised (no separator).
pub fn new_user_code(rng: &mut (impl rand::RngCore + ?Sized)) -> String {
    (0..USER_CODE_LENGTH)
        .map(|_| char::from(USER_CODE_ALPHABET[rng.gen_range(0..USER_CODE_ALPHABET.len())]))
        .collect()
}

/// What a person types, normalised (RFC 8628 §6.1: case-insensitive,
/// separators and spaces ignored). `None` when it cannot be a user code.
pub fn normalise_user_code(input: &str) -> Option<String> {
    let code: String = input
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '\t'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LENGTH && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)))
        .then_some(code)
}

/// `XXXX-XXXX`, as shown and put in `verification_uri_complete`.
pub fn display_user_code(code: &str) -> String {
    if code.len() == USER_CODE_LENGTH && code.is_ascii() {
        format!("{}-{}", &code[..4], &code[4..])
    } else {
        code.to_owned()
    }
}

/// Why a device authorization request was refused (RFC 8628 §3.2 uses the
/// error codes of RFC 6749 §5.2).
#[derive(Debug, thiserror::Error)]
pub enum DeviceAuthorizationError {
    /// `unauthorized_client`: the client may not use the device code grant.
    #[error("the client is not allowed to use the device authorization grant")]
    UnauthorizedClient,
    /// `invalid_scope`.
    #[error("{0}")]
    InvalidScope(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A new device authorization (RFC 8628 §3.2): the grant and the device
/// code itself, which is stored only as its SHA-256.
#[derive(Debug)]
pub struct Started {
    pub grant: DeviceCodeGrant,
    pub device_code: String,
}

/// RFC 8628 §3.1: validates the request of an authenticated client and
/// stores the grant. The scope follows the rules of `/authorize`.
pub async fn start(
    repo: &mut BoxRepository,
    clock: &dyn Clock,
    rng: Rng<'_>,
    client: &Client,
    scope: Option<&str>,
) -> Result<Started, DeviceAuthorizationError> {
    if !client.grant_types.iter().any(|g| g == GRANT_DEVICE_CODE) {
        return Err(DeviceAuthorizationError::UnauthorizedClient);
    }
    let Some(scope) = scope.and_then(|s| Scope::parse(s).ok()) else {
        return Err(DeviceAuthorizationError::InvalidScope(
            "missing or malformed scope".to_owned(),
        ));
    };
    if let Some(unknown) = scope.iter().find(|t| !is_known_scope(t)) {
        return Err(DeviceAuthorizationError::InvalidScope(format!(
            "unknown scope {unknown}"
        )));
    }
    // User codes are unique among all grants (a UNIQUE column): draw again
    // on a collision instead of failing the insert (which would abort the
    // transaction on PostgreSQL).
    let mut user_code = new_user_code(&mut *rng);
    for _ in 0..8 {
        if repo
            .device_code_grants()
            .find_by_user_code(&user_code)
            .await?
            .is_none()
        {
            break;
        }
        user_code = new_user_code(&mut *rng);
    }
    let device_code = new_code(&mut *rng);
    let grant = repo
        .device_code_grants()
        .add(
            rng,
            clock,
            client,
            NewDeviceCodeGrant {
                scope: scope.to_string(),
                user_code,
                device_code_hash: token_hash(&device_code),
                expires_in: DEVICE_CODE_TTL,
            },
        )
        .await?;
    Ok(Started { grant, device_code })
}

/// The user's answer on the verification page (RFC 8628 §3.3), as a
/// compare-and-set from pending.
pub async fn decide(
    repo: &mut BoxRepository,
    clock: &dyn Clock,
    grant: DeviceCodeGrant,
    browser_session: &BrowserSession,
    allow: bool,
) -> Result<DeviceCodeGrant, StorageError> {
    if allow {
        repo.device_code_grants()
            .fulfill(clock, grant, browser_session)
            .await
    } else {
        repo.device_code_grants()
            .reject(clock, grant, browser_session)
            .await
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;

    use super::*;

    #[test]
    fn user_codes_are_unambiguous_and_normalise() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..100 {
            let code = new_user_code(&mut rng);
            assert_eq!(code.len(), 8);
            assert!(code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)));
            let shown = display_user_code(&code);
            assert_eq!(shown.len(), 9);
            assert_eq!(normalise_user_code(&shown).as_deref(), Some(code.as_str()));
            assert_eq!(
                normalise_user_code(&shown.to_lowercase()).as_deref(),
                Some(code.as_str())
            );
        }
        assert_eq!(
            normalise_user_code("bcdf ghjk").as_deref(),
            Some("BCDFGHJK")
        );
        assert_eq!(normalise_user_code("BCDF-GHJ"), None, "too short");
        assert_eq!(normalise_user_code("BCDF-GHJA"), None, "vowel");
        assert_eq!(normalise_user_code("BCDF-GHJ1"), None, "digit");
    }
}
