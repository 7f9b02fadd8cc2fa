//! The upstream provider pages: start, callback, link, back-channel logout.
//! See [`crate::upstream`] for the flow.

mod authorize;
mod backchannel;
mod callback;
mod link;

use axum::{
    Router,
    routing::{get, post},
};

use crate::{
    AppState,
    routes::{self, Route},
};

/// Routes of the upstream login (part of the `human` resource).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(routes::UpstreamAuthorize::PATH, get(authorize::get))
        .route(
            routes::UpstreamCallback::PATH,
            get(callback::get).post(callback::post),
        )
        .route(routes::UpstreamLink::PATH, get(link::get).post(link::post))
        .route(
            routes::UpstreamBackchannelLogout::PATH,
            post(backchannel::post),
        )
}
