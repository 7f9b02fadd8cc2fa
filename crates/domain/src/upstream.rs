//! Upstream OpenID Connect providers, the links between their subjects and
//! our users, and the authorization sessions of a login through them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use ulid::Ulid;

/// A provider as synced from `upstream_oauth2.providers`. The full settings
/// stay in the config; the database keeps what links and sessions refer to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpstreamProvider {
    pub id: Ulid,
    pub issuer: Option<String>,
    pub human_name: Option<String>,
    pub brand_name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
}

/// The identity (provider, subject) — never an email alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpstreamLink {
    pub id: Ulid,
    pub provider_id: Ulid,
    pub subject: String,
    pub user_id: Option<Ulid>,
    pub human_account_name: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// One round trip to the provider: `Pending → Completed → Consumed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpstreamAuthorizationSession {
    pub id: Ulid,
    pub provider_id: Ulid,
    pub state: String,
    /// The PKCE verifier, if PKCE is used with this provider.
    #[serde(skip)]
    pub code_verifier: Option<String>,
    pub nonce: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub consumed_at: Option<DateTime<Utc>>,
    pub link_id: Option<Ulid>,
    /// Claims imported on completion (ID token merged with userinfo).
    pub claims: Option<serde_json::Value>,
    /// What the login continues once done; opaque to storage.
    pub post_auth_action: Option<String>,
    /// The provider's session id (`sid` of the ID token), if it sent one.
    pub sid: Option<String>,
}
