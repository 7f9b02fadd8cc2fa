//! The upstream provider pages: start, callback, link, back-channel logout.
//! See [`crate::upstream`] for the flow.

mod authorize;
mod backchannel;
mod callback;
mod link;

use axum::{
    Router,
    http::StatusCode,
    response::Response,
    routing::{get, post},
};
use vestibule_config::UpstreamProviderConfig;

use crate::{
    AppState,
    handlers::browser::error_page,
    routes::{self, Route},
};

/// The provider as users know it.
fn provider_name(p: &UpstreamProviderConfig) -> String {
    p.human_name
        .clone()
        .or_else(|| p.issuer.clone())
        .unwrap_or_else(|| "your identity provider".to_owned())
}

/// The refusal when the claims do not meet the provider's
/// `attribute_requirements` (which one is not said: it is the operator's
/// policy, and the user cannot change their claims anyway).
fn not_allowed(state: &AppState, provider: &UpstreamProviderConfig) -> Response {
    error_page(
        state,
        StatusCode::FORBIDDEN,
        &format!(
            "You are not allowed to use this service through {}. If you think this is a \
             mistake, contact the administrator.",
            provider_name(provider)
        ),
        None,
    )
}

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
