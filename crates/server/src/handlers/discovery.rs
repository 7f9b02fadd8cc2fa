use axum::{extract::State, http::HeaderMap, response::Response};

use crate::AppState;

/// `GET /.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §4).
pub async fn openid_configuration(State(state): State<AppState>, headers: HeaderMap) -> Response {
    state.discovery.respond(&headers)
}

/// `GET /oauth2/keys.json`: the public signing keys (RFC 7517 §5).
pub async fn jwks(State(state): State<AppState>, headers: HeaderMap) -> Response {
    state.jwks.respond(&headers)
}
