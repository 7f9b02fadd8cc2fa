//! The legacy Matrix login API (`compat` resource): `/login`, `/logout`,
//! `/logout/all`, `/refresh` and `/login/sso/redirect` under
//! `/_matrix/client/{v3,r0}/`, which the reverse proxy routes to us once
//! Synapse delegates authentication. Errors are Matrix-shaped
//! (`{errcode, error}`); web clients call these cross-origin, so they carry
//! CORS headers (any origin, no credentials: the API uses bearer tokens).
//!
//! The approval page of the SSO flow (`/complete-compat-sso/{id}`) is a
//! human page ([`human_routes`]).

mod login;
mod logout;
mod refresh;
mod sso;

use axum::{
    Json, Router,
    body::Bytes,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::de::DeserializeOwned;
use tower_http::cors::CorsLayer;
use vestibule_domain::Ulid;
use vestibule_proto::errors::MatrixErrorBody;
use vestibule_storage::StorageError;

use crate::{
    AppState,
    extract::MAX_FORM_BYTES,
    flows::compat::{CompatEnv, CompatSettings},
    routes::{self, Route},
};

/// The client-server API versions we answer on (what MAS and Synapse serve).
const VERSIONS: &[&str] = &["v3", "r0"];

fn api_cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
}

/// Routes of the `compat` resource.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(routes::CompatLogin::PATH, get(login::get).post(login::post))
        .route(routes::CompatLogout::PATH, post(logout::logout))
        .route(routes::CompatLogoutAll::PATH, post(logout::logout_all))
        .route(routes::CompatRefresh::PATH, post(refresh::post))
        .route(routes::CompatLoginSsoRedirect::PATH, get(sso::redirect))
        .route(
            routes::CompatLoginSsoRedirectIdp::PATH,
            get(sso::redirect_idp),
        )
        .layer(api_cors())
}

/// The SSO approval page (mounted with the `human` resource).
pub fn human_routes() -> Router<AppState> {
    Router::new().route(
        routes::CompatLoginSsoComplete::PATH,
        get(sso::complete_get).post(sso::complete_post),
    )
}

/// The path of an SSO login's approval page.
pub fn complete_path(login_id: Ulid) -> String {
    routes::CompatLoginSsoComplete::PATH.replace("{id}", &login_id.to_string())
}

/// A Matrix error response (spec §"Standard error response").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatrixError {
    pub status: StatusCode,
    pub errcode: &'static str,
    pub error: String,
    pub soft_logout: Option<bool>,
    pub retry_after_ms: Option<u64>,
}

impl MatrixError {
    pub fn new(status: StatusCode, errcode: &'static str, error: impl Into<String>) -> Self {
        Self {
            status,
            errcode,
            error: error.into(),
            soft_logout: None,
            retry_after_ms: None,
        }
    }

    /// 401 `M_UNKNOWN_TOKEN` with `soft_logout`.
    pub fn unknown_token(error: &str, soft_logout: bool) -> Self {
        Self {
            soft_logout: Some(soft_logout),
            ..Self::new(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN", error)
        }
    }

    pub fn bad_json(error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "M_BAD_JSON", error)
    }

    /// 503 `M_UNKNOWN`: try again later.
    pub fn unavailable(error: &str) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "M_UNKNOWN", error)
    }

    /// A storage failure: 503 when the database is unavailable, else 500.
    /// Logged here, once.
    pub fn storage(e: &StorageError) -> Self {
        if matches!(e, StorageError::Unavailable(_)) {
            tracing::warn!(error = %e, "database unavailable");
            return Self::unavailable("The service is temporarily unavailable");
        }
        tracing::error!(error = %e, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "M_UNKNOWN",
            "Internal server error",
        )
    }

    /// 404 `M_UNRECOGNIZED` (what Synapse answers for unknown endpoints).
    pub fn unrecognized() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "M_UNRECOGNIZED",
            "Unrecognized request",
        )
    }
}

impl IntoResponse for MatrixError {
    fn into_response(self) -> Response {
        let retry_after = self.retry_after_ms;
        let status = self.status;
        let mut res = (
            status,
            Json(MatrixErrorBody {
                errcode: self.errcode.to_owned(),
                error: self.error,
                soft_logout: self.soft_logout,
                retry_after_ms: self.retry_after_ms,
            }),
        )
            .into_response();
        let h = res.headers_mut();
        no_store(h);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        } else if let Some(ms) = retry_after
            && let Ok(v) = HeaderValue::from_str(&ms.div_ceil(1000).to_string())
        {
            h.insert(header::RETRY_AFTER, v);
        }
        res
    }
}

/// Responses that carry tokens are not cached (as RFC 6749 §5.1 for OAuth).
fn no_store(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// A JSON success response, not cached.
fn ok_json<T: serde::Serialize>(body: &T) -> Response {
    let mut res = Json(body).into_response();
    no_store(res.headers_mut());
    res
}

/// Only `v3` and `r0` exist here; anything else is an unknown endpoint.
fn check_version(version: &str) -> Result<(), MatrixError> {
    if VERSIONS.contains(&version) {
        Ok(())
    } else {
        Err(MatrixError::unrecognized())
    }
}

/// Parses a JSON body: not JSON at all is `M_NOT_JSON`, JSON of the wrong
/// shape is `M_BAD_JSON` (spec §"Common error codes"). The content type is
/// not checked (clients are lax about it; Synapse does not check either).
fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, MatrixError> {
    if body.len() > MAX_FORM_BYTES {
        return Err(MatrixError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "M_TOO_LARGE",
            "Request body too large",
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| {
        MatrixError::new(StatusCode::BAD_REQUEST, "M_NOT_JSON", "Content not JSON.")
    })?;
    if !value.is_object() {
        return Err(MatrixError::bad_json("The body must be a JSON object"));
    }
    serde_json::from_value(value).map_err(|e| MatrixError::bad_json(e.to_string()))
}

/// The bearer token of `Authorization: Bearer …`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
        Some(v[7..].trim())
    } else {
        None
    }
}

fn env(state: &AppState) -> CompatEnv<'_> {
    CompatEnv {
        repos: state.repos.as_ref(),
        clock: state.clock.as_ref(),
        homeserver: state.homeserver.as_ref(),
        format: &state.token_format,
        settings: CompatSettings::from_config(&state.config),
    }
}

fn millis(d: chrono::Duration) -> i64 {
    d.num_milliseconds()
}
