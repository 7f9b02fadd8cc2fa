//! `m.login.sso`: `GET /_matrix/client/{version}/login/sso/redirect[/{idp}]`
//! starts a login and sends the browser to `/complete-compat-sso/{id}`,
//! where the signed-in user approves it; the browser then goes back to the
//! client's `redirectUrl` with `loginToken`.
//!
//! The login token lives in an AEAD-encrypted cookie (`vestibule-compat-sso`,
//! `__Host-` on https) of the browser that started the login, next to the
//! database row that holds only its hash: the approval page of a login
//! started elsewhere (a link someone sent) cannot hand out its token.

use axum::{
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use minijinja::context;
use serde::{Deserialize, Serialize};
use vestibule_domain::{Ulid, browser_session::BrowserSession, compat::CompatSsoLogin, user::User};
use vestibule_storage::BoxRepository;

use super::{MatrixError, check_version, complete_path};
use crate::{
    AppState, csrf,
    extract::parse_unique,
    flows::compat_sso::{self, FulfilError, RedirectUrlError},
    handlers::browser::{
        PageOpts, check_csrf, csp_source, error_page, internal, matrix_id, parse_form, redirect_to,
        render, see_other,
    },
    routes::{self, Route},
    session,
};

const COOKIE: &str = "vestibule-compat-sso";
/// How many pending SSO logins one browser keeps.
const MAX_PENDING: usize = 8;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Pending(Vec<(Ulid, String)>);

fn read_pending(state: &AppState, headers: &HeaderMap) -> Pending {
    let name = session::cookie_name(state, COOKIE);
    session::read_cookie(headers, &name)
        .and_then(|raw| state.encrypter.decrypt_str(name.as_bytes(), raw).ok())
        .and_then(|plain| serde_json::from_slice(&plain).ok())
        .unwrap_or_default()
}

/// The login token of a pending SSO login started in this browser.
fn pending_login_token(state: &AppState, headers: &HeaderMap, login_id: Ulid) -> Option<String> {
    read_pending(state, headers)
        .0
        .into_iter()
        .find(|(id, _)| *id == login_id)
        .map(|(_, token)| token)
}

/// The `Set-Cookie` that adds a login's token (keeping the newest few), or
/// drops it when `token` is `None`.
fn pending_cookie(
    state: &AppState,
    headers: &HeaderMap,
    login_id: Ulid,
    token: Option<&str>,
) -> Option<HeaderValue> {
    let mut pending = read_pending(state, headers);
    pending.0.retain(|(id, _)| *id != login_id);
    if let Some(token) = token {
        pending.0.push((login_id, token.to_owned()));
    }
    let excess = pending.0.len().saturating_sub(MAX_PENDING);
    pending.0.drain(..excess);
    let name = session::cookie_name(state, COOKIE);
    if pending.0.is_empty() {
        return Some(session::clear_cookie(state, &name));
    }
    let plain = serde_json::to_vec(&pending).ok()?;
    let value = state
        .encrypter
        .encrypt_to_string(&mut state.rng.rng(), name.as_bytes(), &plain)
        .ok()?;
    Some(session::set_cookie(
        state,
        &name,
        &value,
        Some(compat_sso::PENDING_TTL_SECONDS),
    ))
}

#[derive(Deserialize)]
struct RedirectQuery {
    #[serde(rename = "redirectUrl")]
    redirect_url: Option<String>,
}

/// `GET /login/sso/redirect?redirectUrl=…`.
pub async fn redirect(
    State(state): State<AppState>,
    Path(version): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    match start(&state, &version, None, query.as_deref(), &headers).await {
        Ok(r) | Err(r) => r,
    }
}

/// `GET /login/sso/redirect/{idp}`: the idp must name an enabled upstream
/// provider (its id, `oidc-<id>` as Synapse names it, or its
/// `synapse_idp_id`); the browser goes straight to that provider, and the
/// login continues to the approval page afterwards.
pub async fn redirect_idp(
    State(state): State<AppState>,
    Path((version, idp)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    match start(&state, &version, Some(&idp), query.as_deref(), &headers).await {
        Ok(r) | Err(r) => r,
    }
}

async fn start(
    state: &AppState,
    version: &str,
    idp: Option<&str>,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, Response> {
    check_version(version).map_err(IntoResponse::into_response)?;
    let provider = match idp {
        Some(idp) => Some(
            crate::upstream::provider::provider_for_idp(&state.config, idp).ok_or_else(|| {
                MatrixError::new(
                    StatusCode::NOT_FOUND,
                    "M_NOT_FOUND",
                    "Unknown identity provider",
                )
                .into_response()
            })?,
        ),
        None => None,
    };
    let q: RedirectQuery = parse_unique(query.unwrap_or_default().as_bytes()).map_err(|e| {
        MatrixError::new(StatusCode::BAD_REQUEST, "M_INVALID_PARAM", e.to_string()).into_response()
    })?;
    let redirect_url = compat_sso::parse_redirect_url(q.redirect_url.as_deref()).map_err(|e| {
        let code = match e {
            RedirectUrlError::Missing => "M_MISSING_PARAM",
            RedirectUrlError::Invalid => "M_INVALID_PARAM",
        };
        MatrixError::new(StatusCode::BAD_REQUEST, code, e.to_string()).into_response()
    })?;
    let mut rng = state.rng.rng();
    let started = compat_sso::start(
        state.repos.as_ref(),
        state.clock.as_ref(),
        &mut rng,
        &redirect_url,
    )
    .await
    .map_err(|e| MatrixError::storage(&e).into_response())?;
    let mut opts = PageOpts::default();
    opts.cookies.extend(pending_cookie(
        state,
        headers,
        started.login.id,
        Some(&started.login_token),
    ));
    let next = match provider {
        Some(p) => format!(
            "/upstream/authorize/{}?compat_sso={}",
            p.id, started.login.id
        ),
        None => complete_path(started.login.id),
    };
    Ok(see_other(state, &next, &opts))
}

/// Everything the approval page and its action need, once checked.
struct Ready {
    login: CompatSsoLogin,
    login_token: String,
    browser_session: BrowserSession,
    user: User,
}

fn login_path(login_id: Ulid, switch: bool) -> String {
    let switch = if switch { "&switch=1" } else { "" };
    format!("{}?compat_sso={login_id}{switch}", routes::Login::PATH)
}

/// Loads and checks the login, this browser's token for it and the
/// signed-in user. `Err` is the response to send instead.
async fn prepare(
    state: &AppState,
    repo: &mut BoxRepository,
    headers: &HeaderMap,
    id: &str,
) -> Result<Ready, Response> {
    let not_found = || {
        error_page(
            state,
            StatusCode::NOT_FOUND,
            "This sign-in request does not exist.",
            None,
        )
    };
    let id = Ulid::from_string(id).map_err(|_| not_found())?;
    let login = repo
        .compat_sso_logins()
        .lookup(id)
        .await
        .map_err(|e| internal(state, &e))?
        .ok_or_else(not_found)?;
    if !compat_sso::is_approvable(&login, state.clock.as_ref()) {
        return Err(error_page(
            state,
            StatusCode::BAD_REQUEST,
            "This sign-in request was already completed or has expired. Start again from the application.",
            None,
        ));
    }
    let login_token = pending_login_token(state, headers, login.id).ok_or_else(|| {
        error_page(
            state,
            StatusCode::BAD_REQUEST,
            "This sign-in request was started in another browser or has expired. Start again from the application.",
            None,
        )
    })?;
    let Some((browser_session, user)) = session::current(state, repo, headers)
        .await
        .map_err(|e| internal(state, &e))?
    else {
        return Err(see_other(
            state,
            &login_path(login.id, false),
            &PageOpts::default(),
        ));
    };
    Ok(Ready {
        login,
        login_token,
        browser_session,
        user,
    })
}

fn redirect_host(login: &CompatSsoLogin) -> String {
    let url = &login.redirect_uri;
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => url.scheme().to_owned(),
    }
}

/// `GET /complete-compat-sso/{id}`: asks the user to continue.
pub async fn complete_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let mut repo = match state.repos.read().await {
        Ok(r) => r,
        Err(e) => return internal(&state, &e),
    };
    let ready = match prepare(&state, &mut repo, &headers, &id).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    drop(repo);
    let csrf = csrf::issue(&state, &headers);
    let mut opts = PageOpts::default();
    opts.cookies.extend(csrf.set_cookie.clone());
    // The POST ends in a redirect to the client (CSP form-action covers
    // redirects after a form submission).
    opts.form_action
        .extend(csp_source(&ready.login.redirect_uri));
    render(
        &state,
        StatusCode::OK,
        "compat_consent.html",
        context! {
            csrf => csrf.token,
            login_id => ready.login.id.to_string(),
            complete_path => complete_path(ready.login.id),
            switch_path => login_path(ready.login.id, true),
            redirect_host => redirect_host(&ready.login),
            redirect_scheme => ready.login.redirect_uri.scheme().to_owned(),
            matrix_user_id => matrix_id(&state, &ready.user.username),
        },
        &opts,
    )
}

#[derive(Deserialize)]
struct CompleteForm {
    csrf: Option<String>,
}

/// `POST /complete-compat-sso/{id}` (CSRF-checked): approves the login and
/// sends the browser to the client with `loginToken`.
pub async fn complete_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form: CompleteForm = match parse_form(&state, &headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Err(r) = check_csrf(&state, &headers, form.csrf.as_deref()) {
        return r;
    }
    let mut repo = match state.repos.write().await {
        Ok(r) => r,
        Err(e) => return internal(&state, &e),
    };
    let ready = match prepare(&state, &mut repo, &headers, &id).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let login_id = ready.login.id;
    let fulfilled = compat_sso::fulfil(
        &mut repo,
        state.clock.as_ref(),
        ready.login,
        &ready.browser_session,
    )
    .await;
    let login = match fulfilled {
        Ok(l) => l,
        Err(FulfilError::NotPending) => {
            return error_page(
                &state,
                StatusCode::BAD_REQUEST,
                "This sign-in request was already completed or has expired. Start again from the application.",
                None,
            );
        }
        Err(FulfilError::Storage(e)) => return internal(&state, &e),
    };
    if let Err(e) = repo.save().await {
        return internal(&state, &e);
    }
    let location = compat_sso::redirect_with_token(&login.redirect_uri, &ready.login_token);
    let mut opts = PageOpts::default();
    opts.cookies
        .extend(pending_cookie(&state, &headers, login_id, None));
    redirect_to(&state, &location, &opts)
}
