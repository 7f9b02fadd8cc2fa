//! `/login`: the password form.

use axum::{
    body::Bytes,
    extract::{RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use minijinja::context;
use serde::Deserialize;
use vestibule_domain::{
    Ulid,
    compat::CompatSsoLogin,
    oauth2::{AuthorizationGrant, Client},
};
use zeroize::Zeroizing;

use super::{
    PageOpts, check_csrf, consent_path, error_page, internal, parse_form, render, see_other,
    user_agent,
};
use crate::{
    AppState, csrf,
    extract::parse_unique,
    flows::browser_login::{self, Attempt, LoginError, localpart_of},
    passwords::PasswordError,
    rate_limit::Limited,
    requester::Requester,
    routes::{self, Route},
    session,
};

/// `?grant=<id>` or `?compat_sso=<id>` (the consent page of a grant, or
/// the approval page of a legacy SSO login; only paths we build from an id,
/// S23), `?next=/account/…` to come back to the account page, and
/// `switch=1` to sign in as someone else.
#[derive(Debug, Default, Deserialize)]
pub(super) struct PageQuery {
    pub grant: Option<String>,
    pub compat_sso: Option<String>,
    pub switch: Option<String>,
    pub next: Option<String>,
}

impl PageQuery {
    pub fn parse(query: Option<&str>) -> Self {
        parse_unique(query.unwrap_or_default().as_bytes()).unwrap_or_default()
    }

    pub fn grant_id(&self) -> Option<Ulid> {
        self.grant
            .as_deref()
            .and_then(|g| Ulid::from_string(g).ok())
    }

    pub fn compat_sso_id(&self) -> Option<Ulid> {
        self.compat_sso
            .as_deref()
            .and_then(|g| Ulid::from_string(g).ok())
    }

    /// The account page to return to (only ever one of ours, rebuilt).
    pub fn next(&self) -> Option<String> {
        self.next.as_deref().and_then(super::account::return_path)
    }
}

#[derive(Deserialize)]
struct LoginForm {
    csrf: Option<String>,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    grant: Option<String>,
    compat_sso: Option<String>,
    next: Option<String>,
}

/// The grant (and its client) a page continues, if it exists.
pub(super) async fn load_grant(
    state: &AppState,
    grant_id: Option<Ulid>,
) -> Result<Option<(AuthorizationGrant, Client)>, Response> {
    let Some(id) = grant_id else {
        return Ok(None);
    };
    let mut repo = state.repos.read().await.map_err(|e| internal(state, &e))?;
    let Some(grant) = repo
        .oauth2_grants()
        .lookup(id)
        .await
        .map_err(|e| internal(state, &e))?
    else {
        return Ok(None);
    };
    let client = repo
        .oauth2_clients()
        .lookup(grant.client_id)
        .await
        .map_err(|e| internal(state, &e))?;
    Ok(client.map(|c| (grant, c)))
}

/// The legacy SSO login a page continues, if it exists.
pub(super) async fn load_compat_sso(
    state: &AppState,
    login_id: Option<Ulid>,
) -> Result<Option<CompatSsoLogin>, Response> {
    let Some(id) = login_id else {
        return Ok(None);
    };
    let mut repo = state.repos.read().await.map_err(|e| internal(state, &e))?;
    repo.compat_sso_logins()
        .lookup(id)
        .await
        .map_err(|e| internal(state, &e))
}

/// What a login or registration form continues, from its hidden fields:
/// the grant (and its client) and/or the legacy SSO login. Ids that do not
/// parse or do not exist count as absent.
pub(super) async fn load_continuation(
    state: &AppState,
    grant: Option<&str>,
    compat_sso: Option<&str>,
) -> Result<(Option<(AuthorizationGrant, Client)>, Option<CompatSsoLogin>), Response> {
    let id = |s: Option<&str>| s.and_then(|v| Ulid::from_string(v).ok());
    let grant = load_grant(state, id(grant)).await?;
    let compat = load_compat_sso(state, id(compat_sso)).await?;
    Ok((grant, compat))
}

/// Where the browser goes after signing in: the grant's consent page, the
/// legacy SSO login's approval page, or our start page.
pub(super) fn next_path(
    grant: Option<&(AuthorizationGrant, Client)>,
    compat: Option<&CompatSsoLogin>,
) -> String {
    match (grant, compat) {
        (Some((g, _)), _) => consent_path(g.id),
        (None, Some(l)) => crate::handlers::compat::complete_path(l.id),
        (None, None) => "/".to_owned(),
    }
}

/// The name of what the sign-in continues to: the client, or the host a
/// legacy SSO login returns to.
pub(super) fn continue_to(
    grant: Option<&(AuthorizationGrant, Client)>,
    compat: Option<&CompatSsoLogin>,
) -> Option<String> {
    match (grant, compat) {
        (Some((_, c)), _) => Some(c.client_name.clone().unwrap_or_else(|| c.client_id.clone())),
        (None, Some(l)) => l.redirect_uri.host_str().map(ToOwned::to_owned),
        (None, None) => None,
    }
}

/// The username to pre-fill from an OIDC `login_hint`: `mxid:@user:server`
/// (MAS's form) or a bare localpart.
fn prefill(state: &AppState, hint: Option<&str>) -> String {
    let Some(hint) = hint else {
        return String::new();
    };
    let hint = hint.strip_prefix("mxid:").unwrap_or(hint);
    localpart_of(hint, &state.config.matrix.homeserver).unwrap_or_default()
}

/// A provider button on the login page.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct ProviderButton {
    pub name: String,
    /// The icon asset (`brand-<name>.svg`, or the neutral one).
    pub icon: String,
    /// `/upstream/authorize/{id}?…` carrying what the login continues.
    pub path: String,
}

/// The enabled upstream providers as buttons, each continuing to the same
/// grant / legacy SSO login / account page as the login page itself.
pub(super) fn provider_buttons(
    state: &AppState,
    grant: Option<Ulid>,
    compat: Option<Ulid>,
    next: Option<&str>,
) -> Vec<ProviderButton> {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(g) = grant {
        query.append_pair("grant", &g.to_string());
    } else if let Some(c) = compat {
        query.append_pair("compat_sso", &c.to_string());
    }
    if let Some(n) = next {
        query.append_pair("next", n);
    }
    let query = query.finish();
    state
        .config
        .upstream_oauth2
        .providers
        .iter()
        .filter(|p| p.enabled)
        .filter_map(|p| {
            let id = Ulid::from_string(&p.id.to_uppercase()).ok()?;
            let path = <routes::UpstreamAuthorize as Route>::PATH
                .replace("{provider_id}", &id.to_string());
            Some(ProviderButton {
                name: p
                    .human_name
                    .clone()
                    .or_else(|| p.issuer.clone())
                    .unwrap_or_else(|| id.to_string()),
                icon: crate::templates::brand_icon(p.brand_name.as_deref()),
                path: if query.is_empty() {
                    path
                } else {
                    format!("{path}?{query}")
                },
            })
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn login_page(
    state: &AppState,
    status: StatusCode,
    csrf: &csrf::CsrfToken,
    grant: Option<&(AuthorizationGrant, Client)>,
    compat: Option<&CompatSsoLogin>,
    next: Option<&str>,
    username: &str,
    error: Option<&str>,
) -> Response {
    let opts = PageOpts::default().cookie(csrf.set_cookie.clone());
    let compat = if grant.is_none() { compat } else { None };
    let providers = provider_buttons(
        state,
        grant.map(|(g, _)| g.id),
        compat.map(|l| l.id),
        if grant.is_none() && compat.is_none() {
            next
        } else {
            None
        },
    );
    render(
        state,
        status,
        "login.html",
        context! {
            csrf => csrf.token.clone(),
            grant_id => grant.map(|(g, _)| g.id.to_string()),
            compat_sso_id => if grant.is_none() { compat.map(|l| l.id.to_string()) } else { None },
            client_name => continue_to(grant, compat),
            next_query => next.map(|n| url::form_urlencoded::byte_serialize(n.as_bytes()).collect::<String>()),
            next,
            username,
            error,
            passwords_enabled => state.passwords.is_enabled(),
            registration_enabled => super::register::registration_open(state),
            providers,
        },
        &opts,
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
    if grant.is_none() && compat.is_none() && q.switch.is_none() {
        let signed_in = match state.repos.read().await {
            Ok(mut repo) => session::current(&state, &mut repo, &headers).await,
            Err(e) => Err(e),
        };
        match signed_in {
            Ok(Some(_)) => {
                let target = q.next().unwrap_or_else(|| "/".to_owned());
                return see_other(&state, &target, &PageOpts::default());
            }
            Ok(None) => {}
            Err(e) => return internal(&state, &e),
        }
    }
    let next = q.next();
    // No password form and a single provider: straight to it (MAS does
    // the same), carrying what the login continues.
    if !state.passwords.is_enabled() {
        let compat_id = if grant.is_some() {
            None
        } else {
            compat.as_ref().map(|l| l.id)
        };
        let only_next = if grant.is_none() && compat.is_none() {
            next.as_deref()
        } else {
            None
        };
        let buttons = provider_buttons(
            &state,
            grant.as_ref().map(|(g, _)| g.id),
            compat_id,
            only_next,
        );
        if let [only] = buttons.as_slice() {
            return see_other(&state, &only.path, &PageOpts::default());
        }
    }
    let username = prefill(
        &state,
        grant.as_ref().and_then(|(g, _)| g.login_hint.as_deref()),
    );
    let csrf = csrf::issue(&state, &headers);
    login_page(
        &state,
        StatusCode::OK,
        &csrf,
        grant.as_ref(),
        compat.as_ref(),
        next.as_deref(),
        &username,
        None,
    )
}

pub async fn post(
    State(state): State<AppState>,
    requester: Requester,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: LoginForm = match parse_form(&state, &headers, &body) {
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
    if !state.passwords.is_enabled() {
        return login_page(
            &state,
            StatusCode::FORBIDDEN,
            &csrf,
            grant.as_ref(),
            compat.as_ref(),
            next.as_deref(),
            "",
            Some("Password sign-in is disabled on this server."),
        );
    }
    let mut rng = state.rng.rng();
    let attempt = Attempt {
        limits: &state.limits,
        clock: state.clock.as_ref(),
        requester,
    };
    let result = browser_login::login(
        state.repos.as_ref(),
        attempt,
        &mut rng,
        &state.passwords,
        &state.config.matrix.homeserver,
        &form.username,
        Zeroizing::new(form.password),
        user_agent(&headers),
        session::session_id(&state, &headers),
    )
    .await;
    let form_page = |status, error: &str| {
        login_page(
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
    match result {
        Ok(logged_in) => {
            let cookie = session::session_cookie(&state, logged_in.session.id);
            let target = match (&grant, &compat, next) {
                (None, None, Some(next)) => next,
                _ => next_path(grant.as_ref(), compat.as_ref()),
            };
            see_other(&state, &target, &PageOpts::default().cookie(cookie))
        }
        // One answer for unknown users and wrong passwords (S38).
        Err(LoginError::InvalidCredentials) => {
            form_page(StatusCode::UNAUTHORIZED, "Wrong username or password.")
        }
        // The form again, with when to retry; whatever the sign-in
        // continues (grant, SSO login, next) is kept in its hidden fields.
        Err(LoginError::Limited(limited)) => limited_form(limited, form_page),
        Err(LoginError::Locked) => error_page(
            &state,
            StatusCode::FORBIDDEN,
            "This account is locked or deactivated. Contact the server administrator.",
            grant.as_ref().map(|(_, c)| c),
        ),
        Err(LoginError::Password(e)) => password_error(&state, &e),
        Err(LoginError::Storage(e)) => internal(&state, &e),
    }
}

/// The form again after a refused attempt: 429 (RFC 6585 §4) with
/// `Retry-After` (RFC 9110 §10.2.3), and a message saying when to retry.
/// `page` renders the form with a status and an error message.
pub(super) fn limited_form(
    limited: Limited,
    page: impl FnOnce(StatusCode, &str) -> Response,
) -> Response {
    let message = format!("Too many attempts. Try again in {}.", limited.human());
    let mut page = page(StatusCode::TOO_MANY_REQUESTS, &message);
    if let Ok(v) = HeaderValue::from_str(&limited.retry_after_secs().to_string()) {
        page.headers_mut().insert(header::RETRY_AFTER, v);
    }
    page
}

/// A hashing failure: 503 when the pool is saturated (retry later).
pub(super) fn password_error(state: &AppState, e: &PasswordError) -> Response {
    match e {
        PasswordError::Busy => {
            tracing::warn!("password hashing pool saturated");
            let mut r = error_page(
                state,
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many sign-ins right now. Try again in a few seconds.",
                None,
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            r
        }
        PasswordError::Disabled => error_page(
            state,
            StatusCode::FORBIDDEN,
            "Password sign-in is disabled on this server.",
            None,
        ),
        other => {
            tracing::error!(error = %other, "password hashing failed");
            error_page(
                state,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong on our side.",
                None,
            )
        }
    }
}
