use chrono::{DateTime, Utc};
use serde::Serialize;
use ulid::Ulid;
use url::Url;

use crate::InvalidTransition;

/// RFC 7636 PKCE parameters. Only `S256` is ever accepted when a grant is
/// created (RFC 9700 §2.1.1), but the method is stored as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pkce {
    pub challenge_method: String,
    pub challenge: String,
}

/// OAuth 2.0 Multiple Response Type Encoding Practices `response_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    Query,
    Fragment,
    FormPost,
}

impl ResponseMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Fragment => "fragment",
            Self::FormPost => "form_post",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "query" => Some(Self::Query),
            "fragment" => Some(Self::Fragment),
            "form_post" => Some(Self::FormPost),
            _ => None,
        }
    }
}

/// The life of an authorization grant:
/// `Pending → Fulfilled → Exchanged`, or `Pending → Cancelled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum AuthorizationGrantStage {
    Pending,
    Fulfilled {
        session_id: Ulid,
        fulfilled_at: DateTime<Utc>,
    },
    Exchanged {
        session_id: Ulid,
        fulfilled_at: DateTime<Utc>,
        exchanged_at: DateTime<Utc>,
    },
    Cancelled {
        cancelled_at: DateTime<Utc>,
    },
}

impl AuthorizationGrantStage {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Fulfilled { .. } => "fulfilled",
            Self::Exchanged { .. } => "exchanged",
            Self::Cancelled { .. } => "cancelled",
        }
    }

    fn invalid(&self, to: &'static str) -> InvalidTransition {
        InvalidTransition {
            entity: "authorization grant",
            from: self.name(),
            to,
        }
    }

    pub fn fulfill(self, at: DateTime<Utc>, session_id: Ulid) -> Result<Self, InvalidTransition> {
        match self {
            Self::Pending => Ok(Self::Fulfilled {
                session_id,
                fulfilled_at: at,
            }),
            other => Err(other.invalid("fulfilled")),
        }
    }

    pub fn exchange(self, at: DateTime<Utc>) -> Result<Self, InvalidTransition> {
        match self {
            Self::Fulfilled {
                session_id,
                fulfilled_at,
            } => Ok(Self::Exchanged {
                session_id,
                fulfilled_at,
                exchanged_at: at,
            }),
            other => Err(other.invalid("exchanged")),
        }
    }

    pub fn cancel(self, at: DateTime<Utc>) -> Result<Self, InvalidTransition> {
        match self {
            Self::Pending => Ok(Self::Cancelled { cancelled_at: at }),
            other => Err(other.invalid("cancelled")),
        }
    }
}

/// An authorization request that was accepted at `/authorize` (RFC 6749 §4.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthorizationGrant {
    pub id: Ulid,
    pub client_id: Ulid,
    pub redirect_uri: Url,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub response_mode: ResponseMode,
    pub pkce: Option<Pkce>,
    pub max_age: Option<u32>,
    pub login_hint: Option<String>,
    pub prompt: Option<String>,
    pub created_at: DateTime<Utc>,
    pub stage: AuthorizationGrantStage,
}

impl AuthorizationGrant {
    pub fn fulfill(
        &mut self,
        at: DateTime<Utc>,
        session_id: Ulid,
    ) -> Result<(), InvalidTransition> {
        self.stage = self.stage.clone().fulfill(at, session_id)?;
        Ok(())
    }

    pub fn exchange(&mut self, at: DateTime<Utc>) -> Result<(), InvalidTransition> {
        self.stage = self.stage.clone().exchange(at)?;
        Ok(())
    }

    pub fn cancel(&mut self, at: DateTime<Utc>) -> Result<(), InvalidTransition> {
        self.stage = self.stage.clone().cancel(at)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_moves_only_forward() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let sid = Ulid::from_parts(1, 2);
        let stage = AuthorizationGrantStage::Pending;
        assert!(
            stage.clone().exchange(at).is_err(),
            "cannot exchange before fulfilment"
        );
        let fulfilled = stage.fulfill(at, sid).unwrap();
        assert!(fulfilled.clone().fulfill(at, sid).is_err());
        assert!(fulfilled.clone().cancel(at).is_err());
        let exchanged = fulfilled.exchange(at).unwrap();
        let err = exchanged.exchange(at).unwrap_err();
        assert_eq!(err.from, "exchanged");
    }
}
