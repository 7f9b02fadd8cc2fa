//! `clients`: statically configured OAuth 2.0 clients.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::Secret;

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    /// Public client.
    None,
    /// HTTP Basic with `client_secret`.
    ClientSecretBasic,
    /// `client_secret` in the request body.
    ClientSecretPost,
    /// JWT assertion signed with `client_secret`.
    ClientSecretJwt,
    /// JWT assertion signed with a key from `jwks` / `jwks_uri`.
    PrivateKeyJwt,
}

impl ClientAuthMethod {
    /// The method's name as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::ClientSecretJwt => "client_secret_jwt",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }

    /// Whether the method needs a client secret.
    pub fn needs_secret(self) -> bool {
        matches!(
            self,
            Self::ClientSecretBasic | Self::ClientSecretPost | Self::ClientSecretJwt
        )
    }
}

/// A static OAuth 2.0 client (an entry of MAS `clients`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The client ID: a ULID (26 Crockford base32 characters).
    #[schemars(regex(pattern = r"^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$"))]
    pub client_id: String,
    /// Authentication method at the token endpoint.
    pub client_auth_method: ClientAuthMethod,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// Home page of the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", url)]
    pub client_uri: Option<Url>,
    /// Secret for the `client_secret_*` methods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    /// File holding the secret (read into `client_secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    /// Public JWKS for `private_key_jwt` (exclusive with `jwks_uri`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// URL of the JWKS for `private_key_jwt` (exclusive with `jwks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", url)]
    pub jwks_uri: Option<Url>,
    /// Allowed redirect URIs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    pub redirect_uris: Vec<Url>,
}
