//! The JSON OAuth 2.0 endpoints: token, introspection, revocation, userinfo.

use axum::Router;

use crate::AppState;

/// Routes of this module (mounted when the listener has the `oauth` resource).
pub fn routes() -> Router<AppState> {
    Router::new()
}
