//! `POST /oauth2/introspect` (RFC 7662), answering exactly what Synapse's
//! `synapse/api/auth/mas.py` reads.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use vestibule_domain::oauth2::ClientAuthMethod;
use vestibule_storage::StorageError;

use crate::{
    AppState,
    client_auth::{ClientAuthError, ClientAuthParams},
    error::{ErrorCode, OAuthError},
    extract::OAuthForm,
    flows::{
        introspection::{Introspection, introspect},
        tokens::TokenSettings,
    },
};

/// The header with which Synapse says it reads `device_id`.
pub const SUPPORTS_DEVICE_ID_HEADER: &str = "x-mas-supports-device-id";

/// RFC 7662 §2.1 request. Not `Debug`: it holds a token and secrets.
#[derive(Deserialize)]
pub struct IntrospectionRequest {
    token: Option<String>,
    /// A hint only (§2.1); the token's own prefix decides.
    #[allow(dead_code)]
    token_type_hint: Option<String>,
    #[serde(flatten)]
    auth: ClientAuthParams,
}

/// What the introspection endpoint can answer instead of a description.
#[derive(Debug, thiserror::Error)]
pub enum IntrospectionEndpointError {
    /// RFC 7662 §2.1/§4: the caller must authenticate (the homeserver's
    /// shared secret as a Bearer token, or a confidential client); 401
    /// `invalid_client`.
    #[error("the caller must authenticate")]
    Unauthenticated,
    /// RFC 6749 §5.2 via RFC 7662 §2.1: client authentication failed.
    #[error(transparent)]
    ClientAuth(#[from] ClientAuthError),
    /// RFC 7662 §2.1: `token` is REQUIRED (`invalid_request`).
    #[error("missing parameter: token")]
    MissingToken,
    /// The database failed: 503 when unavailable (Synapse answers 503 too).
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<IntrospectionEndpointError> for OAuthError {
    fn from(e: IntrospectionEndpointError) -> Self {
        match e {
            IntrospectionEndpointError::Unauthenticated => {
                OAuthError::new(ErrorCode::InvalidClient, e.to_string())
            }
            IntrospectionEndpointError::ClientAuth(e) => e.into(),
            IntrospectionEndpointError::MissingToken => {
                OAuthError::new(ErrorCode::InvalidRequest, e.to_string())
            }
            IntrospectionEndpointError::Storage(s) => s.into(),
        }
    }
}

impl IntoResponse for IntrospectionEndpointError {
    fn into_response(self) -> Response {
        OAuthError::from(self).into_response()
    }
}

/// Is this `Authorization: Bearer …` the homeserver's shared secret?
/// Compared in constant time (over digests, so the length does not leak).
fn is_homeserver_secret(state: &AppState, bearer: &str) -> bool {
    let Some(secret) = &state.config.matrix.secret else {
        return false;
    };
    let a: [u8; 32] = Sha256::digest(bearer.as_bytes()).into();
    let b: [u8; 32] = Sha256::digest(secret.expose().as_bytes()).into();
    bool::from(a.ct_eq(&b))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
        Some(v[7..].trim())
    } else {
        None
    }
}

async fn authenticate_caller(
    state: &AppState,
    headers: &HeaderMap,
    auth: &ClientAuthParams,
) -> Result<(), IntrospectionEndpointError> {
    if let Some(token) = bearer(headers) {
        return if is_homeserver_secret(state, token) {
            Ok(())
        } else {
            Err(IntrospectionEndpointError::Unauthenticated)
        };
    }
    let (client, _) = match super::authenticate_client(state, headers, auth).await {
        Ok(c) => c,
        Err(ClientAuthError::Missing) => return Err(IntrospectionEndpointError::Unauthenticated),
        Err(e) => return Err(e.into()),
    };
    // Public clients cannot prove who they are.
    if client.token_endpoint_auth_method == ClientAuthMethod::None {
        return Err(IntrospectionEndpointError::Unauthenticated);
    }
    Ok(())
}

pub async fn post(
    State(state): State<AppState>,
    headers: HeaderMap,
    OAuthForm(req): OAuthForm<IntrospectionRequest>,
) -> Result<Response, IntrospectionEndpointError> {
    authenticate_caller(&state, &headers, &req.auth).await?;
    let token = req.token.ok_or(IntrospectionEndpointError::MissingToken)?;
    let supports_device_id = headers
        .get(SUPPORTS_DEVICE_ID_HEADER)
        .is_some_and(|v| v.as_bytes() == b"1");
    let settings = TokenSettings::from_config(&state.config);
    let result = introspect(
        &*state.repos,
        &*state.clock,
        &state.token_format,
        &settings,
        &token,
        supports_device_id,
    )
    .await?;
    let body = match result {
        // RFC 7662 §2.2: nothing but `active: false`.
        Introspection::Inactive => json!({ "active": false }),
        Introspection::Active(a) => {
            let mut m = Map::new();
            m.insert("active".to_owned(), json!(true));
            m.insert("scope".to_owned(), json!(a.scope));
            m.insert("client_id".to_owned(), json!(a.client_id));
            if let Some(username) = a.username {
                m.insert("username".to_owned(), json!(username));
            }
            if let Some(sub) = a.sub {
                m.insert("sub".to_owned(), json!(sub));
            }
            m.insert("token_type".to_owned(), json!(a.token_type));
            if let Some(exp) = a.exp {
                m.insert("exp".to_owned(), json!(exp));
            }
            if let Some(expires_in) = a.expires_in {
                m.insert("expires_in".to_owned(), json!(expires_in));
            }
            m.insert("iat".to_owned(), json!(a.iat));
            if let Some(device_id) = a.device_id {
                m.insert("device_id".to_owned(), json!(device_id));
            }
            Value::Object(m)
        }
    };
    let mut res = Json(body).into_response();
    super::no_store(res.headers_mut());
    Ok(res)
}
