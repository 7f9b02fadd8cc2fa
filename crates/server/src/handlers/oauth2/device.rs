//! `POST /oauth2/device`: the device authorization endpoint (RFC 8628 §3.1,
//! MAS path). Used by MSC4108 QR login.

use axum::{
    Json,
    extract::State,
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

use crate::{
    AppState,
    client_auth::ClientAuthParams,
    error::{ErrorCode, OAuthError},
    extract::OAuthForm,
    flows::device_code::{
        self, DEVICE_CODE_TTL, DeviceAuthorizationError, POLL_INTERVAL_SECONDS, display_user_code,
    },
    routes,
};

/// RFC 8628 §3.1 request, with the client authentication parameters (the
/// client authenticates as at the token endpoint). Not `Debug`: secrets.
#[derive(Deserialize)]
pub struct DeviceAuthorizationRequest {
    scope: Option<String>,
    #[serde(flatten)]
    auth: ClientAuthParams,
}

/// RFC 8628 §3.2 response.
#[derive(Serialize)]
struct DeviceAuthorizationResponse {
    device_code: String,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: String,
    expires_in: i64,
    interval: i64,
}

impl From<DeviceAuthorizationError> for OAuthError {
    fn from(e: DeviceAuthorizationError) -> Self {
        match e {
            DeviceAuthorizationError::UnauthorizedClient => {
                OAuthError::new(ErrorCode::UnauthorizedClient, e.to_string())
            }
            DeviceAuthorizationError::InvalidScope(m) => {
                OAuthError::new(ErrorCode::InvalidScope, m)
            }
            DeviceAuthorizationError::Storage(s) => s.into(),
        }
    }
}

pub async fn post(
    State(state): State<AppState>,
    headers: HeaderMap,
    OAuthForm(req): OAuthForm<DeviceAuthorizationRequest>,
) -> Result<Response, OAuthError> {
    let (client, _) = super::authenticate_client(&state, &headers, &req.auth).await?;
    let mut repo = state.repos.write().await?;
    let mut rng = state.rng.rng();
    let started = device_code::start(
        &mut repo,
        state.clock.as_ref(),
        &mut rng,
        &client,
        req.scope.as_deref(),
    )
    .await?;
    repo.save().await?;
    let user_code = display_user_code(&started.grant.user_code);
    let verification_uri = state.urls.absolute::<routes::Link>();
    let mut complete = verification_uri.clone();
    complete.query_pairs_mut().append_pair("code", &user_code);
    let body = DeviceAuthorizationResponse {
        device_code: started.device_code,
        user_code,
        verification_uri: verification_uri.to_string(),
        verification_uri_complete: complete.to_string(),
        expires_in: DEVICE_CODE_TTL.num_seconds(),
        interval: POLL_INTERVAL_SECONDS,
    };
    let mut res = Json(body).into_response();
    super::no_store(res.headers_mut());
    Ok(res)
}
