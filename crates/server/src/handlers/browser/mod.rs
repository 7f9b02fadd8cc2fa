//! The pages people see: authorization, login, consent, logout,
//! registration, and the static assets.
//!
//! Every page goes through [`render`] / [`see_other`], which set the full
//! set of security headers (checklist S19): a strict CSP (`default-src
//! 'self'`, `frame-ancestors 'none'`, `form-action` limited to us and, where
//! a form or a redirect after it leads to the client, the client's
//! redirect URI origin), `X-Frame-Options: DENY`, `Referrer-Policy:
//! no-referrer`, `nosniff`, COOP, HSTS on https, and `Cache-Control:
//! no-store`.
//!
//! Helpers return `Result<_, Response>`: the error is the page to send.
#![allow(
    clippy::result_large_err,
    reason = "the Err is the response itself, built once and returned at once"
)]

mod account;
mod assets;
mod authorize;
mod consent;
mod device;
mod login;
mod logout;
mod register;
mod upstream;

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use minijinja::{Value, context};
use serde::de::DeserializeOwned;
use url::Url;
use vestibule_domain::{Ulid, oauth2::Client};
use vestibule_storage::StorageError;

use crate::{
    AppState,
    extract::{MAX_FORM_BYTES, parse_unique},
    flows::authorize::ClientRedirect,
    routes::{self, Route},
    session,
};

/// Routes of the `human` resource.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            routes::Authorize::PATH,
            get(authorize::get).post(authorize::post),
        )
        .route(routes::Login::PATH, get(login::get).post(login::post))
        .route(
            routes::Register::PATH,
            get(register::get).post(register::post),
        )
        .route(routes::Consent::PATH, get(consent::get).post(consent::post))
        .route(routes::Logout::PATH, get(logout::get).post(logout::post))
        .route(
            routes::Link::PATH,
            get(device::link_get).post(device::link_post),
        )
        .route(
            routes::DeviceConsent::PATH,
            get(device::consent_get).post(device::consent_post),
        )
        .route(routes::Account::PATH, get(account::get).post(account::post))
        .route(
            routes::Account::PATH.trim_end_matches('/'),
            get(account::redirect),
        )
        .route("/", get(index))
        .merge(upstream::routes())
}

/// Routes of the `assets` resource.
pub fn assets_routes() -> Router<AppState> {
    Router::new().route(routes::Assets::PATH, get(assets::get))
}

/// The path of a grant's consent page.
pub fn consent_path(grant_id: Ulid) -> String {
    routes::Consent::PATH.replace("{grant_id}", &grant_id.to_string())
}

/// The path of a device code grant's approval page.
pub fn device_consent_path(grant_id: Ulid) -> String {
    routes::DeviceConsent::PATH.replace("{grant_id}", &grant_id.to_string())
}

/// The client as the approval pages show it (consent, device); its logo
/// only over https, allowed in the page's `img-src`.
pub(crate) fn client_context(client: &Client, opts: &mut PageOpts) -> Value {
    let logo = client.logo_uri.as_ref().filter(|u| u.scheme() == "https");
    opts.img_src.extend(logo.and_then(csp_source));
    context! {
        name => client.client_name.clone().unwrap_or_else(|| client.client_id.clone()),
        uri => client.client_uri.as_ref().map(ToString::to_string),
        logo_uri => logo.map(ToString::to_string),
        verified => client.is_static,
    }
}

/// `path?grant=<id>` (the only "next" we ever carry: S23).
fn with_grant(path: &str, grant: Option<Ulid>) -> String {
    match grant {
        Some(g) => format!("{path}?grant={g}"),
        None => path.to_owned(),
    }
}

/// Options of one page.
#[derive(Debug, Default)]
pub(crate) struct PageOpts {
    /// Extra `form-action` sources (the client, where a form leads there).
    pub form_action: Vec<String>,
    /// Extra `img-src` sources (the client's logo on the consent page).
    pub img_src: Vec<String>,
    pub cookies: Vec<HeaderValue>,
}

impl PageOpts {
    fn cookie(mut self, c: Option<HeaderValue>) -> Self {
        self.cookies.extend(c);
        self
    }
}

/// A CSP source expression for a URL: its origin for http(s), its scheme
/// for a native app's private-use scheme (RFC 8252 §7.1).
pub(crate) fn csp_source(url: &Url) -> Option<String> {
    match url.scheme() {
        "http" | "https" => Some(url.origin().ascii_serialization()),
        s if s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) =>
        {
            Some(format!("{s}:"))
        }
        _ => None,
    }
}

fn csp(opts: &PageOpts) -> String {
    let extra = |v: &[String]| -> String {
        v.iter().fold(String::new(), |mut acc, s| {
            acc.push(' ');
            acc.push_str(s);
            acc
        })
    };
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'{}; form-action 'self'{}; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        extra(&opts.img_src),
        extra(&opts.form_action)
    )
}

/// Sets the security headers of every page and redirect.
fn secure(state: &AppState, res: &mut Response, opts: &PageOpts) {
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp(opts)) {
        h.insert(HeaderName::from_static("content-security-policy"), v);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if session::is_secure(state) {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    for c in &opts.cookies {
        h.append(header::SET_COOKIE, c.clone());
    }
}

fn base_context(state: &AppState) -> Value {
    let b = &state.config.branding;
    let service_name = b.service_name.clone().unwrap_or_else(|| {
        state
            .urls
            .public_base()
            .host_str()
            .unwrap_or("Vestibule")
            .to_owned()
    });
    context! {
        service_name,
        homeserver => state.config.matrix.homeserver.clone(),
        policy_uri => b.policy_uri.as_ref().map(Url::to_string),
        tos_uri => b.tos_uri.as_ref().map(Url::to_string),
        imprint => b.imprint.clone(),
    }
}

/// Renders a page with the security headers.
pub(crate) fn render(
    state: &AppState,
    status: StatusCode,
    template: &str,
    ctx: Value,
    opts: &PageOpts,
) -> Response {
    let ctx = context! { ..ctx, ..base_context(state) };
    let mut res = match state.templates.render(template, ctx) {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, source = ?std::error::Error::source(&e), "template error");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "internal server error",
            )
                .into_response()
        }
    };
    secure(state, &mut res, opts);
    res
}

/// `303 See Other` to one of our own paths (RFC 9110 §15.4.4; never 307
/// after a POST: S17).
pub(crate) fn see_other(state: &AppState, path: &str, opts: &PageOpts) -> Response {
    let location = state.urls.join(path);
    redirect_to(state, &location, opts)
}

pub(crate) fn redirect_to(state: &AppState, location: &Url, opts: &PageOpts) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location.as_str()) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    secure(state, &mut res, opts);
    res
}

/// Sends the browser back to the client: a 303 for the query and fragment
/// modes, or a self-submitting form for `form_post` (with a visible button
/// for browsers without JavaScript).
pub(crate) fn to_client(state: &AppState, r: &ClientRedirect, mut opts: PageOpts) -> Response {
    opts.form_action.extend(csp_source(&r.redirect_uri));
    match r.mode {
        vestibule_domain::oauth2::ResponseMode::FormPost => {
            let params: Vec<(String, String)> = r.params.clone();
            render(
                state,
                StatusCode::OK,
                "form_post.html",
                context! { redirect_uri => r.redirect_uri.to_string(), params },
                &opts,
            )
        }
        _ => redirect_to(state, &r.location(), &opts),
    }
}

/// The error page, with a link back to the client (or our start page).
pub(crate) fn error_page(
    state: &AppState,
    status: StatusCode,
    message: &str,
    client: Option<&Client>,
) -> Response {
    let back_uri = client
        .and_then(|c| c.client_uri.as_ref())
        .map(Url::to_string);
    let back_name = client.map(|c| {
        c.client_name
            .clone()
            .unwrap_or_else(|| "the application".to_owned())
    });
    let title = if status.is_server_error() {
        "The service is having trouble"
    } else {
        "This request cannot be completed"
    };
    let mut res = render(
        state,
        status,
        "error.html",
        context! { title, message, back_uri, back_name },
        &PageOpts::default(),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    res
}

/// A storage failure as a page: 503 when the database is unavailable,
/// otherwise a generic 500. Logged here, once.
pub(crate) fn internal(state: &AppState, e: &StorageError) -> Response {
    if matches!(e, StorageError::Unavailable(_)) {
        tracing::warn!(error = %e, "database unavailable");
        return error_page(
            state,
            StatusCode::SERVICE_UNAVAILABLE,
            "The service is temporarily unavailable. Try again in a moment.",
            None,
        );
    }
    tracing::error!(error = %e, "internal error");
    error_page(
        state,
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong on our side.",
        None,
    )
}

/// Parses a form body (duplicates refused), or answers with a 400 page.
pub(crate) fn parse_form<T: DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, Response> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form || body.len() > MAX_FORM_BYTES {
        return Err(error_page(
            state,
            StatusCode::BAD_REQUEST,
            "The form could not be read.",
            None,
        ));
    }
    parse_unique(body).map_err(|e| {
        error_page(
            state,
            StatusCode::BAD_REQUEST,
            &format!("The form could not be read: {e}."),
            None,
        )
    })
}

/// Checks a form POST's CSRF token and origin; a 403 page otherwise.
pub(crate) fn check_csrf(
    state: &AppState,
    headers: &HeaderMap,
    token: Option<&str>,
) -> Result<(), Response> {
    crate::csrf::verify(state, headers, token).map_err(|e| {
        tracing::info!(reason = %e, "refused a form POST (CSRF)");
        error_page(
            state,
            StatusCode::FORBIDDEN,
            "This form has expired or did not come from this site. Go back, reload the page and try again.",
            None,
        )
    })
}

pub(crate) fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
}

pub(crate) fn matrix_id(state: &AppState, username: &str) -> String {
    format!("@{username}:{}", state.config.matrix.homeserver)
}

/// `/`: the signed-in status, or the login page.
async fn index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let mut repo = match state.repos.read().await {
        Ok(r) => r,
        Err(e) => return internal(&state, &e),
    };
    let current = match session::current(&state, &mut repo, &headers).await {
        Ok(c) => c,
        Err(e) => return internal(&state, &e),
    };
    match current {
        Some((_, user)) => render(
            &state,
            StatusCode::OK,
            "index.html",
            context! { matrix_user_id => matrix_id(&state, &user.username) },
            &PageOpts::default(),
        ),
        None => see_other(&state, routes::Login::PATH, &PageOpts::default()),
    }
}
