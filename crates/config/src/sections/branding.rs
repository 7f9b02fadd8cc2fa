//! `branding`: names and links shown to users.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use url::Url;

/// Branding settings (MAS `branding`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BrandingConfig {
    /// Human-readable service name; defaults to the server's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Privacy policy link (`op_policy_uri`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub policy_uri: Option<Url>,
    /// Terms of service link (`op_tos_uri`); adds a checkbox to registration.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub tos_uri: Option<Url>,
    /// Legal imprint shown in footers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imprint: Option<String>,
}
