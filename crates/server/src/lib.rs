//! The HTTP server: `AppState`, `router`, handlers, and serving listeners.
//!
//! The same [`router`] is used in production and in tests (tests call it with
//! `tower::ServiceExt::oneshot`, or bind `127.0.0.1:0` and hand the listener
//! in).

pub mod bootstrap;
pub mod cached;
pub mod client_auth;
pub mod csrf;
pub mod error;
pub mod extract;
pub mod flows;
pub mod handlers;
pub mod homeserver;
pub mod id_token;
pub mod jobs;
pub mod listeners;
pub mod passwords;
pub mod rate_limit;
pub mod requester;
pub mod routes;
pub mod session;
pub mod state;
pub mod templates;
pub mod upstream;

use axum::{
    Router,
    http::{HeaderName, HeaderValue, Method, header},
    routing::get,
};
use tower_http::{cors::CorsLayer, set_header::SetResponseHeaderLayer};
use vestibule_config::Resource;

pub use state::{AppState, RngSource};

use routes::Route;

/// Which groups of routes a listener serves (MAS `http.listeners[].resources`).
#[derive(Debug, Clone, Default)]
pub struct Resources {
    pub health: bool,
    pub discovery: bool,
    pub human: bool,
    pub oauth: bool,
    pub compat: bool,
    pub assets: bool,
    pub admin_api: bool,
}

impl Resources {
    pub fn all() -> Self {
        Self {
            health: true,
            discovery: true,
            human: true,
            oauth: true,
            compat: true,
            assets: true,
            admin_api: true,
        }
    }

    pub fn from_config(resources: &[Resource]) -> Self {
        let mut r = Self::default();
        for resource in resources {
            match resource {
                Resource::Health => r.health = true,
                Resource::Discovery => r.discovery = true,
                Resource::Human => r.human = true,
                Resource::OAuth => r.oauth = true,
                Resource::Compat => r.compat = true,
                Resource::Assets { .. } => r.assets = true,
                Resource::AdminApi => r.admin_api = true,
                // Not served by Vestibule (yet); accepted so MAS configs load.
                Resource::Prometheus | Resource::GraphQL { .. } | Resource::ConnectionInfo => {}
            }
        }
        r
    }
}

/// Public, credential-free JSON documents may be read cross-origin
/// (RFC 9700 §2.6: no credentials, so `*` is safe here).
fn public_cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
        .allow_headers([header::IF_NONE_MATCH])
}

/// The application router for the given resources.
pub fn router(state: AppState, resources: &Resources) -> Router {
    let mut app = Router::new();
    if resources.health {
        app = app.route(routes::Health::PATH, get(handlers::health::health));
    }
    if resources.discovery {
        app = app.merge(
            Router::new()
                .route(
                    routes::OidcConfiguration::PATH,
                    get(handlers::discovery::openid_configuration),
                )
                .layer(public_cors()),
        );
    }
    if resources.oauth || resources.discovery {
        app = app.merge(
            Router::new()
                .route(routes::Jwks::PATH, get(handlers::discovery::jwks))
                .layer(public_cors()),
        );
    }
    if resources.oauth {
        // Token, introspection, revocation, userinfo, registration: called
        // by clients and the homeserver, never with cookies.
        app = app.merge(handlers::oauth2::routes().merge(handlers::registration::routes()));
    }
    if resources.compat {
        // The legacy Matrix login API (`/_matrix/client/{v3,r0}/login`…).
        app = app.merge(handlers::compat::routes());
    }
    if resources.human {
        app = app
            .merge(handlers::browser::routes())
            .merge(handlers::compat::human_routes());
    }
    if resources.assets {
        app = app.merge(handlers::browser::assets_routes());
    }
    app.layer(SetResponseHeaderLayer::if_not_present(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ))
    .layer(SetResponseHeaderLayer::if_not_present(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ))
    .layer(SetResponseHeaderLayer::if_not_present(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("DENY"),
    ))
    .layer(SetResponseHeaderLayer::if_not_present(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static("frame-ancestors 'none'"),
    ))
    .with_state(state)
}

/// Mounts a router under a listener's `prefix` (e.g. `/auth`).
pub fn with_prefix(app: Router, prefix: Option<&str>) -> Router {
    match prefix.map(|p| p.trim_end_matches('/')) {
        None | Some("") => app,
        Some(p) if p.starts_with('/') => Router::new().nest(p, app),
        Some(p) => Router::new().nest(&format!("/{p}"), app),
    }
}
