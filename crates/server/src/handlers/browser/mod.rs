//! The pages people see: authorization, login, consent, logout.

use axum::Router;

use crate::AppState;

/// Routes of the `human` resource.
pub fn routes() -> Router<AppState> {
    Router::new()
}

/// Routes of the `assets` resource.
pub fn assets_routes() -> Router<AppState> {
    Router::new()
}
