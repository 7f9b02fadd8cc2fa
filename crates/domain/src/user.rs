//! Users, their emails and their passwords.

use chrono::{DateTime, Utc};
use serde::Serialize;
use ulid::Ulid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: Ulid,
    /// The Matrix localpart.
    pub username: String,
    pub created_at: DateTime<Utc>,
    pub locked_at: Option<DateTime<Utc>>,
    pub deactivated_at: Option<DateTime<Utc>>,
    /// Promoted admins may request `urn:synapse:admin:*`.
    pub can_request_admin: bool,
}

impl User {
    /// Whether the user may sign in and use tokens.
    pub fn is_valid(&self) -> bool {
        self.locked_at.is_none() && self.deactivated_at.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserEmail {
    pub id: Ulid,
    pub user_id: Ulid,
    pub email: String,
    pub created_at: DateTime<Utc>,
}

/// A password hash of a user. Only the newest one counts; older ones are kept
/// so an upgrade chain (e.g. bcrypt → argon2id) stays auditable.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct Password {
    pub id: Ulid,
    pub user_id: Ulid,
    /// A PHC string (or a bcrypt `$2b$` string for imported hashes).
    #[serde(skip)]
    pub hashed_password: String,
    /// Index into `passwords.schemes`.
    pub version: u16,
    pub upgraded_from_id: Option<Ulid>,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Password")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("hashed_password", &"[redacted]")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}
