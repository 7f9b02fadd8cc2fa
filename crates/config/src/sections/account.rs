//! `account`: what users may do with their account.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Account management settings (MAS `account`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AccountConfig {
    /// Users may change their email addresses (default `true`).
    pub email_change_allowed: bool,
    /// Users may change their display name (default `true`).
    pub displayname_change_allowed: bool,
    /// Self-service password registration (default `false`).
    pub password_registration_enabled: bool,
    /// Password registration requires an email (default `true`).
    pub password_registration_email_required: bool,
    /// Users may change their password (default `true`).
    pub password_change_allowed: bool,
    /// Email-based password recovery (default `false`).
    pub password_recovery_enabled: bool,
    /// Users may deactivate their account (default `true`).
    pub account_deactivation_allowed: bool,
    /// Users may log in with their email address (default `false`).
    pub login_with_email_allowed: bool,
    /// Password registration requires a registration token (default `false`).
    pub password_registration_token_required: bool,
    /// Deprecated spelling of `password_registration_token_required`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_token_required: Option<bool>,
}

impl Default for AccountConfig {
    fn default() -> Self {
        Self {
            email_change_allowed: true,
            displayname_change_allowed: true,
            password_registration_enabled: false,
            password_registration_email_required: true,
            password_change_allowed: true,
            password_recovery_enabled: false,
            account_deactivation_allowed: true,
            login_with_email_allowed: false,
            password_registration_token_required: false,
            registration_token_required: None,
        }
    }
}

impl AccountConfig {
    /// Whether registration tokens are required, honouring the deprecated key.
    pub fn registration_token_required(&self) -> bool {
        self.password_registration_token_required
            || self.registration_token_required.unwrap_or(false)
    }
}
