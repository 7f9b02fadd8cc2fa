//! `GET`/`POST /oauth2/userinfo` (OpenID Connect Core §5.3, RFC 6750).

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;
use vestibule_storage::StorageError;

use crate::{
    AppState,
    error::OAuthError,
    flows::{
        tokens::TokenSettings,
        userinfo::{UserinfoError, userinfo},
    },
};

/// What the UserInfo endpoint can answer instead of claims.
#[derive(Debug, thiserror::Error)]
pub enum UserinfoEndpointError {
    /// RFC 6750 §3.1: no credentials at all → 401 with a bare
    /// `WWW-Authenticate: Bearer` (no error code).
    #[error("a bearer token is required")]
    MissingToken,
    /// RFC 6750 §3.1 `invalid_token` → 401 with
    /// `WWW-Authenticate: Bearer error="invalid_token"`.
    #[error(transparent)]
    Userinfo(#[from] UserinfoError),
    /// The database failed: 503 when unavailable, else 500.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl IntoResponse for UserinfoEndpointError {
    fn into_response(self) -> Response {
        let challenge = match self {
            Self::MissingToken => "Bearer",
            Self::Userinfo(UserinfoError::InvalidToken) => "Bearer error=\"invalid_token\"",
            Self::Userinfo(UserinfoError::Storage(e)) | Self::Storage(e) => {
                return OAuthError::from(e).into_response();
            }
        };
        let mut res = if challenge == "Bearer" {
            StatusCode::UNAUTHORIZED.into_response()
        } else {
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({
                    "error": "invalid_token",
                    "error_description": "the access token is invalid",
                })),
            )
                .into_response()
        };
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        super::no_store(res.headers_mut());
        res
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
        Some(v[7..].trim().to_owned())
    } else {
        None
    }
}

async fn handle(state: &AppState, headers: &HeaderMap) -> Result<Response, UserinfoEndpointError> {
    let token = bearer(headers).ok_or(UserinfoEndpointError::MissingToken)?;
    let settings = TokenSettings::from_config(&state.config);
    let info = userinfo(
        &*state.repos,
        &*state.clock,
        &state.token_format,
        &settings,
        &token,
    )
    .await?;
    let mut body = json!({ "sub": info.sub, "username": info.username });
    if let Some(object) = body.as_object_mut() {
        if let Some(email) = &info.email {
            object.insert("email".to_owned(), json!(email));
        }
        for (name, value) in crate::id_token::attribute_claims(&info.attributes) {
            object.insert(name.to_owned(), json!(value));
        }
    }
    let mut res = Json(body).into_response();
    super::no_store(res.headers_mut());
    Ok(res)
}

pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, UserinfoEndpointError> {
    handle(&state, &headers).await
}

pub async fn post(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, UserinfoEndpointError> {
    handle(&state, &headers).await
}
