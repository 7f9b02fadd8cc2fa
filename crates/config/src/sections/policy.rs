//! `policy`: the authorization policy.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Policy settings (MAS `policy`). MAS evaluates an OPA WASM module; Vestibule
/// implements the default policy natively and reads its knobs from `data`.
/// The module path and entrypoints are kept for compatibility.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Path to a WASM policy module (MAS). Unset means the built-in policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasm_module: Option<PathBuf>,
    /// Entrypoint for client registrations.
    pub client_registration_entrypoint: String,
    /// Entrypoint for user registrations.
    pub register_entrypoint: String,
    /// Entrypoint for authorization grants.
    pub authorization_grant_entrypoint: String,
    /// Entrypoint for compatibility logins.
    pub compat_login_entrypoint: String,
    /// Entrypoint for password changes.
    pub password_entrypoint: String,
    /// Entrypoint for adding email addresses.
    pub email_entrypoint: String,
    /// Free-form data passed to the policy (`admin_users`, `admin_clients`,
    /// `client_registration.allow_host_mismatch`, `registration`, `emails`,
    /// `requester`...).
    #[schemars(extend("default" = {}))]
    pub data: serde_json::Value,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            wasm_module: None,
            client_registration_entrypoint: "client_registration/violation".to_owned(),
            register_entrypoint: "register/violation".to_owned(),
            authorization_grant_entrypoint: "authorization_grant/violation".to_owned(),
            compat_login_entrypoint: "compat_login/violation".to_owned(),
            password_entrypoint: "password/violation".to_owned(),
            email_entrypoint: "email/violation".to_owned(),
            data: serde_json::Value::Object(serde_json::Map::new()),
        }
    }
}
