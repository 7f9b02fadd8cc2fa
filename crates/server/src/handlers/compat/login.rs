//! `GET`/`POST /_matrix/client/{version}/login`.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use vestibule_proto::compat::{LoginFlow, LoginFlows, LoginRequest, LoginResponse};
use zeroize::Zeroizing;

use super::{MatrixError, check_version, env, millis, ok_json, parse_json};
use crate::{
    AppState,
    flows::compat::{self, CompatLoginError, DeviceRequest},
    homeserver::HomeserverError,
    passwords::PasswordError,
    requester::Requester,
};

/// How long a client should wait when the password pool is saturated.
const BUSY_RETRY_AFTER_MS: u64 = 5_000;

/// The login types: password (when enabled), SSO (our approval page, with
/// MSC3824's hints that OAuth-aware clients should use OAuth 2.0 instead),
/// and the login token SSO hands back.
pub async fn get(State(state): State<AppState>, Path(version): Path<String>) -> Response {
    if let Err(e) = check_version(&version) {
        return e.into_response();
    }
    let mut flows = Vec::with_capacity(3);
    if state.passwords.is_enabled() {
        flows.push(LoginFlow::Password);
    }
    flows.push(LoginFlow::Sso {
        identity_providers: Vec::new(),
        oauth_aware_preferred: true,
        delegated_oidc_compatibility: true,
    });
    flows.push(LoginFlow::Token);
    Json(LoginFlows { flows }).into_response()
}

impl From<CompatLoginError> for MatrixError {
    fn from(e: CompatLoginError) -> Self {
        match e {
            CompatLoginError::InvalidCredentials => MatrixError::new(
                StatusCode::FORBIDDEN,
                "M_FORBIDDEN",
                "Invalid username or password",
            ),
            CompatLoginError::Locked => MatrixError::new(
                StatusCode::UNAUTHORIZED,
                "M_USER_LOCKED",
                "This account has been locked",
            ),
            CompatLoginError::Deactivated => MatrixError::new(
                StatusCode::FORBIDDEN,
                "M_USER_DEACTIVATED",
                "This account has been deactivated",
            ),
            CompatLoginError::InvalidLoginToken => {
                MatrixError::new(StatusCode::FORBIDDEN, "M_FORBIDDEN", "Invalid login token")
            }
            CompatLoginError::LoginTokenExpired => {
                MatrixError::new(StatusCode::FORBIDDEN, "M_FORBIDDEN", "Login token expired")
            }
            CompatLoginError::InvalidDeviceId => MatrixError::new(
                StatusCode::BAD_REQUEST,
                "M_INVALID_PARAM",
                "Invalid device_id",
            ),
            CompatLoginError::Homeserver(e) => homeserver_error(&e),
            CompatLoginError::Password(PasswordError::Busy) => {
                tracing::warn!("password hashing pool saturated");
                MatrixError {
                    retry_after_ms: Some(BUSY_RETRY_AFTER_MS),
                    ..MatrixError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "M_LIMIT_EXCEEDED",
                        "Too many login attempts right now",
                    )
                }
            }
            // Matrix spec, "Rate limiting": 429 `M_LIMIT_EXCEEDED` with
            // `retry_after_ms` (and `Retry-After`, set by `MatrixError`).
            CompatLoginError::Limited(l) => MatrixError {
                retry_after_ms: Some(l.retry_after_ms),
                ..MatrixError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "M_LIMIT_EXCEEDED",
                    "Too many login attempts, try again later",
                )
            },
            CompatLoginError::PasswordsDisabled
            | CompatLoginError::Password(PasswordError::Disabled) => MatrixError::new(
                StatusCode::BAD_REQUEST,
                "M_UNRECOGNIZED",
                "Password login is disabled on this server",
            ),
            CompatLoginError::Password(other) => {
                tracing::error!(error = %other, "password verification failed");
                MatrixError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "M_UNKNOWN",
                    "Internal server error",
                )
            }
            CompatLoginError::Storage(e) => MatrixError::storage(&e),
        }
    }
}

/// The device could not be created: 503 while the homeserver is down or
/// does not know the user yet (its provisioning job has not run), else 500.
fn homeserver_error(e: &HomeserverError) -> MatrixError {
    match e {
        HomeserverError::Unavailable(_) | HomeserverError::NotFound => {
            tracing::warn!(error = %e, "compat login: could not create the device");
            MatrixError::unavailable("The homeserver is unavailable, try again later")
        }
        other => {
            tracing::error!(error = %other, "compat login: the homeserver refused the device");
            MatrixError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "M_UNKNOWN",
                "Internal server error",
            )
        }
    }
}

fn unrecognized_login(what: &str) -> MatrixError {
    MatrixError::new(
        StatusCode::BAD_REQUEST,
        "M_UNRECOGNIZED",
        format!("Unsupported {what}"),
    )
}

pub async fn post(
    State(state): State<AppState>,
    requester: Requester,
    Path(version): Path<String>,
    body: Bytes,
) -> Result<Response, MatrixError> {
    check_version(&version)?;
    let req: LoginRequest = parse_json(&body)?;
    let device = DeviceRequest {
        device_id: req.device_id,
        display_name: req.initial_device_display_name,
    };
    let env = env(&state);
    let mut rng = state.rng.rng();
    let logged_in = match req.kind.as_str() {
        "m.login.password" => {
            let user = match (req.identifier, req.user) {
                (Some(id), _) if id.kind == "m.id.user" => id
                    .user
                    .ok_or_else(|| MatrixError::bad_json("identifier.user is required"))?,
                (Some(_), _) => return Err(unrecognized_login("identifier type")),
                (None, Some(user)) => user,
                (None, None) => return Err(MatrixError::bad_json("identifier is required")),
            };
            let password = req
                .password
                .ok_or_else(|| MatrixError::bad_json("password is required"))?;
            compat::password_login(
                &env,
                &mut rng,
                &state.passwords,
                &state.limits,
                requester,
                &user,
                Zeroizing::new(password),
                device,
                req.refresh_token,
            )
            .await?
        }
        "m.login.token" => {
            let token = req
                .token
                .ok_or_else(|| MatrixError::bad_json("token is required"))?;
            compat::token_login(&env, &mut rng, &token, device, req.refresh_token).await?
        }
        _ => return Err(unrecognized_login("login type")),
    };
    Ok(ok_json(&LoginResponse {
        user_id: format!(
            "@{}:{}",
            logged_in.user.username, state.config.matrix.homeserver
        ),
        access_token: logged_in.access_token,
        device_id: logged_in.session.device_id,
        home_server: Some(state.config.matrix.homeserver.clone()),
        refresh_token: logged_in.refresh_token,
        expires_in_ms: logged_in.expires_in.map(millis),
    }))
}
