//! Access and refresh tokens. Only their SHA-256 hashes are stored.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use ulid::Ulid;

/// The hash under which a bearer token is stored and looked up (hex SHA-256).
/// The token itself is never written anywhere.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessToken {
    pub id: Ulid,
    pub session_id: Ulid,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub first_used_at: Option<DateTime<Utc>>,
    /// The scope of this token when narrower than its session's (RFC 6749
    /// §6: a refresh may ask for less); `None` means the session's scope.
    pub scope: Option<String>,
}

impl AccessToken {
    pub fn is_valid(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

/// A refresh token. Rotation links each token to its successor; a used token
/// stays in the table (consumed) so a replay can be detected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefreshToken {
    pub id: Ulid,
    pub session_id: Ulid,
    pub access_token_id: Option<Ulid>,
    pub created_at: DateTime<Utc>,
    pub consumed_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub next_refresh_token_id: Option<Ulid>,
}

impl RefreshToken {
    pub fn is_valid(&self) -> bool {
        self.consumed_at.is_none() && self.revoked_at.is_none()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn token_hash_is_sha256_hex() {
        // echo -n abc | sha256sum
        assert_eq!(
            super::token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
