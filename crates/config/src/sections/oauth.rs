//! `oauth`: OAuth 2.0 protocol options.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// OAuth 2.0 protocol options (MAS `oauth`), plus Vestibule extensions.
///
/// MAS's `oauth` section has `device_code_grant_enabled` and
/// `device_code_user_code_auto_fill_enabled`. Vestibule adds token lifetimes
/// MAS hard-codes: `authorization_code_ttl` (default 60 s), `device_code_ttl`
/// (default 600 s) and `refresh_token_ttl` (unset: refresh tokens never expire
/// by age, they only rotate, as in MAS). The access token lifetime stays where
/// MAS has it, `experimental.access_token_ttl` (default 300 s; see
/// [`crate::Config::access_token_ttl`]). A config using the extensions will
/// not load in MAS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthConfig {
    /// Whether the Device Authorization Grant (RFC 8628) is enabled (default
    /// `true`).
    pub device_code_grant_enabled: bool,
    /// Whether the device authorization response includes
    /// `verification_uri_complete` (default `false`).
    pub device_code_user_code_auto_fill_enabled: bool,
    /// Vestibule extension: lifetime of authorization codes, in seconds.
    pub authorization_code_ttl: u64,
    /// Vestibule extension: lifetime of device codes, in seconds.
    pub device_code_ttl: u64,
    /// Vestibule extension: maximum age of refresh tokens, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token_ttl: Option<u64>,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            device_code_grant_enabled: true,
            device_code_user_code_auto_fill_enabled: false,
            authorization_code_ttl: 60,
            device_code_ttl: 600,
            refresh_token_ttl: None,
        }
    }
}
