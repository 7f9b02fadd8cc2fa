//! `POST /_matrix/client/{version}/logout` and `…/logout/all`.

use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use serde_json::json;

use super::{MatrixError, bearer, check_version, env, ok_json};
use crate::{
    AppState,
    flows::compat::{self, CompatAuthError},
};

impl From<CompatAuthError> for MatrixError {
    fn from(e: CompatAuthError) -> Self {
        match e {
            CompatAuthError::Missing => MatrixError::new(
                StatusCode::UNAUTHORIZED,
                "M_MISSING_TOKEN",
                "Missing access token",
            ),
            CompatAuthError::Unknown { soft_logout } => {
                MatrixError::unknown_token("Invalid access token", soft_logout)
            }
            CompatAuthError::Storage(e) => MatrixError::storage(&e),
        }
    }
}

/// Ends the session of the access token and deletes its device.
pub async fn logout(
    State(state): State<AppState>,
    Path(version): Path<String>,
    headers: HeaderMap,
) -> Result<Response, MatrixError> {
    check_version(&version)?;
    let mut rng = state.rng.rng();
    compat::logout(&env(&state), &mut rng, bearer(&headers)).await?;
    Ok(ok_json(&json!({})))
}

/// Ends every compat session of the token's user and deletes their
/// devices. OAuth 2.0 sessions are not touched (as in MAS, which ends only
/// compat sessions here).
pub async fn logout_all(
    State(state): State<AppState>,
    Path(version): Path<String>,
    headers: HeaderMap,
) -> Result<Response, MatrixError> {
    check_version(&version)?;
    let mut rng = state.rng.rng();
    let ended = compat::logout_all(&env(&state), &mut rng, bearer(&headers)).await?;
    tracing::info!(sessions = ended, "compat logout/all");
    Ok(ok_json(&json!({})))
}
