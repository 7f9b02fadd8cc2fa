//! `experimental`: settings without a stable place yet.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Automatic expiry of inactive sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InactiveSessionExpirationConfig {
    /// Inactivity after which a session ends, in seconds (600 to 7776000).
    pub ttl: u64,
    /// Expire compatibility sessions (default `true`).
    #[serde(default = "yes")]
    pub expire_compat_sessions: bool,
    /// Expire OAuth 2.0 sessions (default `true`).
    #[serde(default = "yes")]
    pub expire_oauth_sessions: bool,
    /// Expire browser sessions (default `true`).
    #[serde(default = "yes")]
    pub expire_user_sessions: bool,
}

const fn yes() -> bool {
    true
}

/// Limits on the number of sessions per user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionLimitConfig {
    /// Interactive logins show a session-removal screen past this.
    pub soft_limit: u64,
    /// Logins are refused (or sessions evicted) past this.
    pub hard_limit: u64,
    /// Only apply limits to accounts with at most this many sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_session_threshold: Option<u64>,
    /// Evict the least recently used sessions instead of refusing.
    #[serde(default)]
    pub dangerous_hard_limit_eviction: bool,
}

/// Experimental settings (MAS `experimental`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ExperimentalConfig {
    /// Access token lifetime in seconds, 60 to 86400 (default 300).
    pub access_token_ttl: u64,
    /// Compatibility access token lifetime in seconds (default 300).
    pub compat_token_ttl: u64,
    /// Expire inactive sessions (disabled by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inactive_session_expiration: Option<InactiveSessionExpirationConfig>,
    /// URI of a plan management iframe, passed through as is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_management_iframe_uri: Option<String>,
    /// Limit sessions per user (disabled by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_limit: Option<SessionLimitConfig>,
}

impl Default for ExperimentalConfig {
    fn default() -> Self {
        Self {
            access_token_ttl: 300,
            compat_token_ttl: 300,
            inactive_session_expiration: None,
            plan_management_iframe_uri: None,
            session_limit: None,
        }
    }
}
