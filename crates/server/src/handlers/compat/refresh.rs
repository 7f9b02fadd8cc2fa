//! `POST /_matrix/client/{version}/refresh` (spec v1.3).

use axum::{
    body::Bytes,
    extract::{Path, State},
    response::Response,
};
use vestibule_proto::compat::{RefreshRequest, RefreshResponse};

use super::{MatrixError, check_version, env, millis, ok_json, parse_json};
use crate::{
    AppState,
    flows::compat::{self, CompatRefreshError},
};

impl From<CompatRefreshError> for MatrixError {
    fn from(e: CompatRefreshError) -> Self {
        match e {
            CompatRefreshError::UnknownToken => {
                MatrixError::unknown_token("Invalid refresh token", false)
            }
            CompatRefreshError::Storage(e) => MatrixError::storage(&e),
        }
    }
}

pub async fn post(
    State(state): State<AppState>,
    Path(version): Path<String>,
    body: Bytes,
) -> Result<Response, MatrixError> {
    check_version(&version)?;
    let req: RefreshRequest = parse_json(&body)?;
    let mut rng = state.rng.rng();
    let refreshed = compat::refresh(&env(&state), &mut rng, &req.refresh_token).await?;
    Ok(ok_json(&RefreshResponse {
        access_token: refreshed.access_token,
        refresh_token: refreshed.refresh_token,
        expires_in_ms: millis(refreshed.expires_in),
    }))
}
