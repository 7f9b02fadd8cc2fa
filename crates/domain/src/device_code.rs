//! RFC 8628 device authorization grants (used by MSC4108 QR login).

use chrono::{DateTime, Utc};
use serde::Serialize;
use ulid::Ulid;

use crate::InvalidTransition;

/// `Pending → Fulfilled → Exchanged`, or `Pending → Rejected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum DeviceCodeGrantStage {
    Pending,
    Fulfilled {
        browser_session_id: Ulid,
        fulfilled_at: DateTime<Utc>,
    },
    Rejected {
        browser_session_id: Ulid,
        rejected_at: DateTime<Utc>,
    },
    Exchanged {
        browser_session_id: Ulid,
        fulfilled_at: DateTime<Utc>,
        exchanged_at: DateTime<Utc>,
        session_id: Ulid,
    },
}

impl DeviceCodeGrantStage {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Fulfilled { .. } => "fulfilled",
            Self::Rejected { .. } => "rejected",
            Self::Exchanged { .. } => "exchanged",
        }
    }

    fn invalid(&self, to: &'static str) -> InvalidTransition {
        InvalidTransition {
            entity: "device code grant",
            from: self.name(),
            to,
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
            other => Err(other.invalid("fulfilled")),
        }
    }

    pub fn reject(
        self,
        at: DateTime<Utc>,
        browser_session_id: Ulid,
    ) -> Result<Self, InvalidTransition> {
        match self {
            Self::Pending => Ok(Self::Rejected {
                browser_session_id,
                rejected_at: at,
            }),
            other => Err(other.invalid("rejected")),
        }
    }

    pub fn exchange(self, at: DateTime<Utc>, session_id: Ulid) -> Result<Self, InvalidTransition> {
        match self {
            Self::Fulfilled {
                browser_session_id,
                fulfilled_at,
            } => Ok(Self::Exchanged {
                browser_session_id,
                fulfilled_at,
                exchanged_at: at,
                session_id,
            }),
            other => Err(other.invalid("exchanged")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceCodeGrant {
    pub id: Ulid,
    pub client_id: Ulid,
    pub scope: String,
    /// The short code a person types or sees (RFC 8628 §6.1).
    pub user_code: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub last_polled_at: Option<DateTime<Utc>>,
    pub stage: DeviceCodeGrantStage,
}

impl DeviceCodeGrant {
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }
}
