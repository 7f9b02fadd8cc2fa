//! Error bodies.

use serde::{Deserialize, Serialize};

/// RFC 6749 §5.2 error response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthErrorBody {
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

/// Matrix client-server API error body (`{errcode, error}`, spec §"Standard
/// error response"), with the extra fields some codes carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatrixErrorBody {
    pub errcode: String,
    pub error: String,
    /// `M_UNKNOWN_TOKEN`: whether the client may keep its data and log in
    /// again (spec §"Soft logout").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_logout: Option<bool>,
    /// `M_LIMIT_EXCEEDED`: how long to wait before retrying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}
