//! RFC 7591 dynamic client registration with the MSC2966 rules.

use axum::Router;

use crate::AppState;

/// Routes of this module (mounted with the `oauth` resource).
pub fn routes() -> Router<AppState> {
    Router::new()
}
