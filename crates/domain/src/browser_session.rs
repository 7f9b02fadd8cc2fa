//! Browser sessions (the cookie-bound login of a person) and the
//! authentications that happened in them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use ulid::Ulid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrowserSession {
    pub id: Ulid,
    pub user_id: Ulid,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub user_agent: Option<String>,
    pub last_active_at: Option<DateTime<Utc>>,
}

impl BrowserSession {
    pub fn is_active(&self) -> bool {
        self.finished_at.is_none()
    }
}

/// How a user proved who they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuthenticationMethod {
    Password {
        user_password_id: Ulid,
    },
    /// Through an upstream provider; `session_id` is the upstream
    /// authorization session (its `sid` is matched by back-channel logout).
    UpstreamOAuth {
        link_id: Ulid,
        session_id: Option<Ulid>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Authentication {
    pub id: Ulid,
    pub browser_session_id: Ulid,
    pub created_at: DateTime<Utc>,
    pub method: AuthenticationMethod,
}
