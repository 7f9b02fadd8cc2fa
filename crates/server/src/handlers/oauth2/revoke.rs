//! `POST /oauth2/revoke` (RFC 7009).

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use vestibule_storage::StorageError;

use crate::{
    AppState,
    client_auth::{ClientAuthError, ClientAuthParams},
    error::{ErrorCode, OAuthError},
    extract::OAuthForm,
    flows::{
        provisioning::delete_devices,
        revocation::{RevocationError, revoke},
    },
};

/// RFC 7009 §2.1 request. Not `Debug`: it holds a token and secrets.
#[derive(Deserialize)]
pub struct RevocationRequest {
    token: Option<String>,
    /// A hint only (§2.1); the token's own prefix decides.
    #[allow(dead_code)]
    token_type_hint: Option<String>,
    #[serde(flatten)]
    auth: ClientAuthParams,
}

/// What the revocation endpoint can answer instead of 200.
#[derive(Debug, thiserror::Error)]
pub enum RevocationEndpointError {
    /// RFC 7009 §2.1 / RFC 6749 §5.2: client authentication failed
    /// (`invalid_client`).
    #[error(transparent)]
    ClientAuth(#[from] ClientAuthError),
    /// RFC 7009 §2.1: `token` is REQUIRED (`invalid_request`).
    #[error("missing parameter: token")]
    MissingToken,
    /// RFC 7009 §2.1 / §2.2.1: see [`RevocationError`].
    #[error(transparent)]
    Revocation(#[from] RevocationError),
    /// The database failed: 503 when unavailable (never a 200).
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<RevocationEndpointError> for OAuthError {
    fn from(e: RevocationEndpointError) -> Self {
        match e {
            RevocationEndpointError::ClientAuth(e) => e.into(),
            RevocationEndpointError::MissingToken => {
                OAuthError::new(ErrorCode::InvalidRequest, e.to_string())
            }
            RevocationEndpointError::Revocation(RevocationError::OtherClient) => {
                OAuthError::new(ErrorCode::UnauthorizedClient, e.to_string())
            }
            RevocationEndpointError::Revocation(RevocationError::Storage(s))
            | RevocationEndpointError::Storage(s) => s.into(),
        }
    }
}

impl IntoResponse for RevocationEndpointError {
    fn into_response(self) -> Response {
        OAuthError::from(self).into_response()
    }
}

pub async fn post(
    State(state): State<AppState>,
    headers: HeaderMap,
    OAuthForm(req): OAuthForm<RevocationRequest>,
) -> Result<Response, RevocationEndpointError> {
    let (client, _) = super::authenticate_client(&state, &headers, &req.auth).await?;
    let token = req.token.ok_or(RevocationEndpointError::MissingToken)?;
    let mut rng = state.rng.rng();
    let mut repo = state.repos.write().await?;
    let ended = revoke(
        &mut repo,
        &*state.clock,
        &mut rng,
        &state.token_format,
        &client,
        &token,
    )
    .await?;
    repo.save().await?;
    // After the commit: the device goes now (Synapse then refuses the token
    // at once); if the homeserver is down the committed sync job does it.
    delete_devices(state.homeserver.as_ref(), ended.as_slice()).await;
    let mut res = StatusCode::OK.into_response();
    super::no_store(res.headers_mut());
    Ok(res)
}
