//! Legacy Matrix `/login` sessions and their tokens.

use chrono::{DateTime, Utc};
use serde::Serialize;
use ulid::Ulid;
use url::Url;

use crate::InvalidTransition;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompatSession {
    pub id: Ulid,
    pub user_id: Ulid,
    pub device_id: String,
    pub human_name: Option<String>,
    pub browser_session_id: Option<Ulid>,
    pub is_synapse_admin: bool,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_active_at: Option<DateTime<Utc>>,
}

impl CompatSession {
    pub fn is_valid(&self) -> bool {
        self.finished_at.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompatAccessToken {
    pub id: Ulid,
    pub session_id: Ulid,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompatRefreshToken {
    pub id: Ulid,
    pub session_id: Ulid,
    pub access_token_id: Ulid,
    pub created_at: DateTime<Utc>,
    pub consumed_at: Option<DateTime<Utc>>,
}

/// `m.login.sso` round trip: `Pending → Fulfilled → Exchanged`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum CompatSsoLoginStage {
    Pending,
    Fulfilled {
        browser_session_id: Ulid,
        fulfilled_at: DateTime<Utc>,
    },
    Exchanged {
        browser_session_id: Ulid,
        fulfilled_at: DateTime<Utc>,
        exchanged_at: DateTime<Utc>,
        compat_session_id: Ulid,
    },
}

impl CompatSsoLoginStage {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Fulfilled { .. } => "fulfilled",
            Self::Exchanged { .. } => "exchanged",
        }
    }

    pub fn fulfill(
        self,
        at: DateTime<Utc>,
        browser_session_id: Ulid,
    ) -> Result<Self, InvalidTransition> {
        match self {
            Self::Pending => Ok(Self::Fulfilled {
                browser_session_id,
                fulfilled_at: at,
            }),
            other => Err(InvalidTransition {
                entity: "compat sso login",
                from: other.name(),
                to: "fulfilled",
            }),
        }
    }

    pub fn exchange(
        self,
        at: DateTime<Utc>,
        compat_session_id: Ulid,
    ) -> Result<Self, InvalidTransition> {
        match self {
            Self::Fulfilled {
                browser_session_id,
                fulfilled_at,
            } => Ok(Self::Exchanged {
                browser_session_id,
                fulfilled_at,
                exchanged_at: at,
                compat_session_id,
            }),
            other => Err(InvalidTransition {
                entity: "compat sso login",
                from: other.name(),
                to: "exchanged",
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompatSsoLogin {
    pub id: Ulid,
    pub redirect_uri: Url,
    pub created_at: DateTime<Utc>,
    pub stage: CompatSsoLoginStage,
}
