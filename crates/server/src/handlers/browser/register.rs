//! `/register`: self-service password registration (`prompt=create`).

use axum::{
    body::Bytes,
    extract::{RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use minijinja::context;
use serde::Deserialize;
use vestibule_domain::{
    compat::CompatSsoLogin,
    oauth2::{AuthorizationGrant, Client},
};
use zeroize::Zeroizing;

use super::{
    PageOpts, check_csrf, error_page, internal,
    login::{
        PageQuery, limited_form, load_compat_sso, load_continuation, load_grant, next_path,
        password_error,
    },
    parse_form, render, see_other, user_agent,
};
use crate::{
    AppState, csrf,
    flows::browser_login::{self, Attempt, RegisterError},
    requester::Requester,
    session,
};

/// Whether the registration form is offered: password registration is
/// enabled and needs neither an email verification nor a registration token
/// (neither is implemented yet, and skipping them would bypass the
/// operator's policy).
pub(super) fn registration_open(state: &AppState) -> bool {
    let a = &state.config.account;
    state.passwords.is_enabled()
        && a.password_registration_enabled
        && !a.password_registration_email_required
        && !a.registration_token_required()
}

#[derive(Deserialize)]
struct RegisterForm {
    csrf: Option<String>,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    grant: Option<String>,
    compat_sso: Option<String>,
    /// A page of ours to come back to (`account::return_path`: the account
    /// page or a device code grant's approval page), when no grant or
    /// legacy SSO login is continued.
    next: Option<String>,
}

#[allow(clippy::too_many_arguments)]
fn register_page(
    state: &AppState,
    status: StatusCode,
    csrf: &csrf::CsrfToken,
    grant: Option<&(AuthorizationGrant, Client)>,
    compat: Option<&CompatSsoLogin>,
    next: Option<&str>,
    username: &str,
    error: Option<&str>,
) -> Response {
    let next = if grant.is_none() && compat.is_none() {
        next
    } else {
        None
    };
    render(
        state,
        status,
        "register.html",
        context! {
            csrf => csrf.token.clone(),
            grant_id => grant.map(|(g, _)| g.id.to_string()),
            compat_sso_id => if grant.is_none() { compat.map(|l| l.id.to_string()) } else { None },
            next_query => next.map(|n| url::form_urlencoded::byte_serialize(n.as_bytes()).collect::<String>()),
            next,
            username,
            error,
            registration_enabled => registration_open(state),
        },
        &PageOpts::default().cookie(csrf.set_cookie.clone()),
    )
}

pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let q = PageQuery::parse(query.as_deref());
    let grant = match load_grant(&state, q.grant_id()).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let compat = match load_compat_sso(&state, q.compat_sso_id()).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let csrf = csrf::issue(&state, &headers);
    register_page(
        &state,
        StatusCode::OK,
        &csrf,
        grant.as_ref(),
        compat.as_ref(),
        q.next().as_deref(),
        "",
        None,
    )
}

pub async fn post(
    State(state): State<AppState>,
    requester: Requester,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: RegisterForm = match parse_form(&state, &headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Err(r) = check_csrf(&state, &headers, form.csrf.as_deref()) {
        return r;
    }
    let (grant, compat) =
        match load_continuation(&state, form.grant.as_deref(), form.compat_sso.as_deref()).await {
            Ok(c) => c,
            Err(r) => return r,
        };
    let csrf = csrf::issue(&state, &headers);
    let next = form.next.as_deref().and_then(super::account::return_path);
    if !registration_open(&state) {
        return register_page(
            &state,
            StatusCode::FORBIDDEN,
            &csrf,
            grant.as_ref(),
            compat.as_ref(),
            next.as_deref(),
            "",
            None,
        );
    }
    let mut rng = state.rng.rng();
    let attempt = Attempt {
        limits: &state.limits,
        clock: state.clock.as_ref(),
        requester,
    };
    let result = browser_login::register(
        state.repos.as_ref(),
        attempt,
        &mut rng,
        &state.passwords,
        state.homeserver.as_ref(),
        &state.config.matrix.homeserver,
        &form.username,
        Zeroizing::new(form.password),
        user_agent(&headers),
        session::session_id(&state, &headers),
    )
    .await;
    let form_page = |status, error: &str| {
        register_page(
            &state,
            status,
            &csrf,
            grant.as_ref(),
            compat.as_ref(),
            next.as_deref(),
            &form.username,
            Some(error),
        )
    };
    let refuse = |msg: &str| form_page(StatusCode::BAD_REQUEST, msg);
    match result {
        Ok(done) => {
            let cookie = session::session_cookie(&state, done.session.id);
            let target = match (&grant, &compat, next.as_deref()) {
                (None, None, Some(next)) => next.to_owned(),
                _ => next_path(grant.as_ref(), compat.as_ref()),
            };
            see_other(&state, &target, &PageOpts::default().cookie(cookie))
        }
        Err(RegisterError::InvalidUsername(m)) => refuse(m),
        Err(RegisterError::Taken) => refuse("This username is taken."),
        // Logged by `homeserver_allows`.
        Err(RegisterError::Homeserver(_)) => error_page(
            &state,
            StatusCode::SERVICE_UNAVAILABLE,
            "The homeserver cannot be reached right now, so no account was created. Try again \
             in a moment.",
            None,
        ),
        Err(RegisterError::Limited(limited)) => limited_form(limited, form_page),
        Err(RegisterError::Policy(p)) => refuse(&p.to_string()),
        Err(RegisterError::Password(e)) => password_error(&state, &e),
        Err(RegisterError::Storage(e)) => internal(&state, &e),
    }
}
