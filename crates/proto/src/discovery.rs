//! Authorization server metadata: RFC 8414 §2, OpenID Connect Discovery 1.0
//! §3, RFC 9207 §3, MSC2965 (account management) and MSC4191 (actions).

use serde::{Deserialize, Serialize};
use url::Url;

/// The discovery document. Endpoint fields are `None` until the endpoint
/// exists: we never advertise something we do not serve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderMetadata {
    /// RFC 8414 §2 `issuer` (REQUIRED), compared byte for byte by RPs.
    pub issuer: Url,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<Url>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<Url>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<Url>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_endpoint: Option<Url>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userinfo_endpoint: Option<Url>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<Url>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<Url>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_authorization_endpoint: Option<Url>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_session_endpoint: Option<Url>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub scopes_supported: Vec<String>,
    /// RFC 8414 §2 (REQUIRED).
    pub response_types_supported: Vec<String>,
    /// OAuth 2.0 Multiple Response Type Encoding Practices; matrix-js-sdk
    /// requires both `query` and `fragment`.
    pub response_modes_supported: Vec<String>,
    pub grant_types_supported: Vec<String>,
    /// RFC 7636 §4.3 / RFC 9700 §2.1.1: `S256` only.
    pub code_challenge_methods_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    /// RFC 8414 §2.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    /// RFC 8414 §2.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub subject_types_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub claims_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub prompt_values_supported: Vec<String>,
    /// RFC 9207 §3: `iss` is on every authorization response.
    pub authorization_response_iss_parameter_supported: bool,
    /// MSC2965: where users manage their account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_management_uri: Option<Url>,
    /// MSC4191: the `?action=` values the account page understands.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub account_management_actions_supported: Vec<String>,
}
