//! The JSON OAuth 2.0 endpoints: token, introspection, revocation, userinfo.

pub mod device;
pub mod introspect;
pub mod revoke;
pub mod token;
pub mod userinfo;

use axum::{
    Router,
    http::{HeaderMap, HeaderValue, Method, header},
    routing::{get, post},
};
use tower_http::cors::CorsLayer;
use vestibule_domain::oauth2::Client;

use crate::{
    AppState,
    client_auth::{self, AuthContext, ClientAuthError, ClientAuthParams, Credentials},
    routes::{self, Route},
};

/// Browser clients (Element Web) call these cross-origin. No cookies are
/// involved, so any origin without credentials is safe (RFC 9700 §2.6).
fn api_cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([Method::POST, Method::GET, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
}

/// Routes of this module (mounted when the listener has the `oauth` resource).
pub fn routes() -> Router<AppState> {
    let browser_callable = Router::new()
        .route(routes::Token::PATH, post(token::post))
        .route(routes::DeviceAuthorization::PATH, post(device::post))
        .route(routes::Revoke::PATH, post(revoke::post))
        .route(
            routes::Userinfo::PATH,
            get(userinfo::get).post(userinfo::post),
        )
        .layer(api_cors());
    Router::new()
        .route(routes::Introspect::PATH, post(introspect::post))
        .merge(browser_callable)
}

/// `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1).
pub(crate) fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// Authenticates the client of a token, revocation or introspection
/// request. A client assertion's `jti` is committed in its own transaction
/// right away, so that an assertion is spent even when the request then
/// fails.
pub(crate) async fn authenticate_client(
    state: &AppState,
    headers: &HeaderMap,
    params: &ClientAuthParams,
) -> Result<(Client, Credentials), ClientAuthError> {
    let credentials = client_auth::credentials(headers, params)?.ok_or(ClientAuthError::Missing)?;
    let audiences = [
        state.urls.issuer().as_str().to_owned(),
        state.urls.absolute::<routes::Token>().as_str().to_owned(),
    ];
    let ctx = AuthContext {
        clock: &*state.clock,
        encrypter: &state.encrypter,
        audiences: &audiences,
    };
    let mut repo = if matches!(credentials, Credentials::ClientAssertion { .. }) {
        state.repos.write().await?
    } else {
        state.repos.read().await?
    };
    let client = client_auth::authenticate(&mut repo, &ctx, &credentials).await?;
    repo.save().await?;
    Ok((client, credentials))
}
