use serde::{Deserialize, Serialize};
use ulid::Ulid;
use url::Url;

/// How a client authenticates at the token endpoint (RFC 7591 §2
/// `token_endpoint_auth_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    None,
    ClientSecretBasic,
    ClientSecretPost,
    ClientSecretJwt,
    PrivateKeyJwt,
}

impl ClientAuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::ClientSecretJwt => "client_secret_jwt",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Self::None,
            "client_secret_basic" => Self::ClientSecretBasic,
            "client_secret_post" => Self::ClientSecretPost,
            "client_secret_jwt" => Self::ClientSecretJwt,
            "private_key_jwt" => Self::PrivateKeyJwt,
            _ => return None,
        })
    }
}

/// OpenID Connect Dynamic Client Registration `application_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationType {
    Web,
    Native,
}

impl ApplicationType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::Native => "native",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "web" => Some(Self::Web),
            "native" => Some(Self::Native),
            _ => None,
        }
    }
}

/// A registered OAuth 2.0 client, static (from the config) or dynamic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Client {
    pub id: Ulid,
    /// The `client_id` string the client presents (the ULID for both kinds).
    pub client_id: String,
    pub is_static: bool,
    pub client_name: Option<String>,
    pub client_uri: Option<Url>,
    pub logo_uri: Option<Url>,
    pub policy_uri: Option<Url>,
    pub tos_uri: Option<Url>,
    pub redirect_uris: Vec<Url>,
    pub grant_types: Vec<String>,
    pub application_type: Option<ApplicationType>,
    pub token_endpoint_auth_method: ClientAuthMethod,
    /// The client secret, encrypted with `secrets.encryption` (never plaintext).
    #[serde(skip)]
    pub encrypted_client_secret: Option<String>,
    pub jwks: Option<serde_json::Value>,
    pub jwks_uri: Option<Url>,
    pub id_token_signed_response_alg: Option<String>,
    /// A digest of the registration metadata of a public dynamic client, so
    /// that identical registrations get the same `client_id`.
    pub metadata_digest: Option<String>,
}
