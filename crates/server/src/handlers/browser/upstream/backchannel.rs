//! `backchannel` step of the upstream login: not built yet (answers 501).

use axum::http::StatusCode;

pub(super) async fn post() -> StatusCode {
    StatusCode::NOT_IMPLEMENTED
}
