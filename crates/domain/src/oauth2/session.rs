use chrono::{DateTime, Utc};
use serde::Serialize;
use ulid::Ulid;

use crate::InvalidTransition;

/// An OAuth 2.0 session: what a client was granted, for a user (or for
/// itself with `client_credentials`). Its tokens live and die with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    pub id: Ulid,
    pub client_id: Ulid,
    pub user_id: Option<Ulid>,
    pub browser_session_id: Option<Ulid>,
    /// Space-separated scope, as granted.
    pub scope: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub user_agent: Option<String>,
    pub last_active_at: Option<DateTime<Utc>>,
}

impl Session {
    pub fn is_valid(&self) -> bool {
        self.finished_at.is_none()
    }

    pub fn finish(&mut self, at: DateTime<Utc>) -> Result<(), InvalidTransition> {
        if self.finished_at.is_some() {
            return Err(InvalidTransition {
                entity: "oauth2 session",
                from: "finished",
                to: "finished",
            });
        }
        self.finished_at = Some(at);
        Ok(())
    }

    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split(' ').filter(|s| !s.is_empty())
    }
}
