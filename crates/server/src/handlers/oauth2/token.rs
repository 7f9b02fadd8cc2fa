//! `POST /oauth2/token` (RFC 6749 §3.2).

use axum::{
    Json,
    extract::State,
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use vestibule_storage::StorageError;

use crate::{
    AppState,
    client_auth::{ClientAuthError, ClientAuthParams},
    error::{ErrorCode, OAuthError},
    extract::OAuthForm,
    flows::{
        token::{TokenContext, TokenError, TokenParams, exchange},
        tokens::TokenSettings,
    },
};

/// The form of a token request (RFC 6749 §4.1.3, §4.4.2, §6), with the
/// client authentication parameters. Deliberately not `Debug`: it holds
/// secrets.
#[derive(Deserialize)]
pub struct TokenRequest {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    scope: Option<String>,
    #[serde(flatten)]
    auth: ClientAuthParams,
}

/// RFC 6749 §5.1 successful response.
#[derive(Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

/// Everything the token endpoint can answer instead of tokens.
#[derive(Debug, thiserror::Error)]
pub enum TokenEndpointError {
    /// RFC 6749 §2.3 / §5.2: client authentication failed (`invalid_client`,
    /// or `invalid_request` for several methods at once).
    #[error(transparent)]
    ClientAuth(#[from] ClientAuthError),
    /// RFC 6749 §5.2: the grant failed (see [`TokenError`]'s variants).
    #[error(transparent)]
    Grant(#[from] TokenError),
    /// The database failed: 503 when unavailable, else 500.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<TokenError> for OAuthError {
    fn from(e: TokenError) -> Self {
        let code = match &e {
            TokenError::MissingParameter(_) => ErrorCode::InvalidRequest,
            TokenError::UnsupportedGrantType => ErrorCode::UnsupportedGrantType,
            TokenError::UnauthorizedClient(_) => ErrorCode::UnauthorizedClient,
            TokenError::InvalidGrant(_)
            | TokenError::CodeReused
            | TokenError::RefreshTokenReplayed => ErrorCode::InvalidGrant,
            TokenError::InvalidScope(_) => ErrorCode::InvalidScope,
            TokenError::Storage(s) => return OAuthError::internal(s),
            TokenError::Signing(k) => return OAuthError::internal(k),
        };
        OAuthError::new(code, e.to_string())
    }
}

impl From<TokenEndpointError> for OAuthError {
    fn from(e: TokenEndpointError) -> Self {
        match e {
            TokenEndpointError::ClientAuth(e) => e.into(),
            TokenEndpointError::Grant(e) => e.into(),
            TokenEndpointError::Storage(e) => e.into(),
        }
    }
}

impl IntoResponse for TokenEndpointError {
    fn into_response(self) -> Response {
        OAuthError::from(self).into_response()
    }
}

pub async fn post(
    State(state): State<AppState>,
    headers: HeaderMap,
    OAuthForm(req): OAuthForm<TokenRequest>,
) -> Result<Response, TokenEndpointError> {
    let received_at = state.clock.now();
    let (client, _) = super::authenticate_client(&state, &headers, &req.auth).await?;
    let settings = TokenSettings::from_config(&state.config);
    let ctx = TokenContext {
        clock: &*state.clock,
        format: &state.token_format,
        settings: &settings,
        keystore: &state.keystore,
        issuer: state.urls.issuer().as_str(),
        received_at,
    };
    let params = TokenParams {
        grant_type: req.grant_type,
        code: req.code,
        redirect_uri: req.redirect_uri,
        code_verifier: req.code_verifier,
        refresh_token: req.refresh_token,
        scope: req.scope,
    };
    let mut rng = state.rng.rng();
    // One write transaction per exchange.
    let mut repo = state.repos.write().await?;
    match exchange(&mut repo, &ctx, &mut rng, &client, params).await {
        Ok(result) => {
            repo.save().await?;
            let body = TokenResponse {
                access_token: result.tokens.access_token,
                token_type: "Bearer",
                expires_in: result.expires_in,
                refresh_token: result.tokens.refresh_token,
                scope: result.scope,
                id_token: result.id_token,
            };
            let mut res = Json(body).into_response();
            super::no_store(res.headers_mut());
            Ok(res)
        }
        Err(e) => {
            if e.must_commit() {
                repo.save().await?;
            }
            Err(e.into())
        }
    }
}
