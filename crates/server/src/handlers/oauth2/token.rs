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
        provisioning::{delete_devices, ensure_device},
        token::{
            GRANT_AUTHORIZATION_CODE, GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN, TokenContext,
            TokenError, TokenParams, device_to_provision, exchange, refresh_token_unconsumed,
        },
        tokens::TokenSettings,
    },
    homeserver::HomeserverError,
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
    device_code: Option<String>,
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
    /// The homeserver could not create the token's device: 503
    /// `temporarily_unavailable` when it is down (retry later; nothing was
    /// consumed), else 500.
    #[error("the homeserver could not create the device: {0}")]
    Homeserver(#[from] HomeserverError),
}

impl From<TokenError> for OAuthError {
    fn from(e: TokenError) -> Self {
        let code = match &e {
            TokenError::MissingParameter(_) => ErrorCode::InvalidRequest,
            TokenError::UnsupportedGrantType => ErrorCode::UnsupportedGrantType,
            TokenError::UnauthorizedClient(_) => ErrorCode::UnauthorizedClient,
            TokenError::InvalidGrant(_)
            | TokenError::CodeReused(_)
            | TokenError::RefreshTokenReplayed(_) => ErrorCode::InvalidGrant,
            TokenError::InvalidScope(_) => ErrorCode::InvalidScope,
            TokenError::AuthorizationPending => ErrorCode::AuthorizationPending,
            TokenError::SlowDown => ErrorCode::SlowDown,
            TokenError::AccessDenied => ErrorCode::AccessDenied,
            TokenError::ExpiredToken => ErrorCode::ExpiredToken,
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
            TokenEndpointError::Homeserver(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "homeserver unavailable: token request refused");
                OAuthError::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the homeserver is unavailable; try again in a moment",
                )
            }
            TokenEndpointError::Homeserver(e) => {
                tracing::error!(error = %e, "homeserver refused to create a device");
                OAuthError::new(ErrorCode::ServerError, "the homeserver refused the device")
            }
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
    let params = TokenParams {
        grant_type: req.grant_type,
        code: req.code,
        redirect_uri: req.redirect_uri,
        code_verifier: req.code_verifier,
        refresh_token: req.refresh_token,
        scope: req.scope,
        device_code: req.device_code,
    };
    // First of all, before client authentication (which may wait for the
    // write lock, for a client assertion's `jti`): was the refresh token
    // still unconsumed when this request arrived? See
    // `flows::token::refresh_token_unconsumed`.
    let refresh_token_was_unconsumed = if params.grant_type.as_deref() == Some(GRANT_REFRESH_TOKEN)
    {
        let mut repo = state.repos.read().await?;
        let unconsumed = refresh_token_unconsumed(&mut repo, &state.token_format, &params).await;
        drop(repo);
        unconsumed?
    } else {
        false
    };
    let (client, _) = super::authenticate_client(&state, &headers, &req.auth).await?;
    let settings = TokenSettings::from_config(&state.config);
    let ctx = TokenContext {
        clock: &*state.clock,
        format: &state.token_format,
        settings: &settings,
        keystore: &state.keystore,
        issuer: state.urls.issuer().as_str(),
        refresh_token_was_unconsumed,
    };
    let mut rng = state.rng.rng();
    // The homeserver first (see `flows::token::exchange`): a read-only check
    // of the request, then the user and device on the homeserver.
    let may_need_device = matches!(
        params.grant_type.as_deref(),
        Some(GRANT_AUTHORIZATION_CODE | GRANT_REFRESH_TOKEN | GRANT_DEVICE_CODE)
    );
    let device = if may_need_device {
        let mut repo = state.repos.read().await?;
        let device = device_to_provision(&mut repo, &ctx, &client, &params).await;
        drop(repo);
        device?
    } else {
        None
    };
    if let Some(device) = &device {
        ensure_device(state.homeserver.as_ref(), device).await?;
    }
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
                if let Some(ended) = e.ended_device() {
                    delete_devices(state.homeserver.as_ref(), std::slice::from_ref(ended)).await;
                }
            }
            Err(e.into())
        }
    }
}
