//! `/account/`: the account page (MSC2965 `account_management_uri`), with
//! the MSC4191 `?action=` deep links Matrix clients use (and MAS's older
//! `org.matrix.device_*` names). Server-rendered, no JavaScript; every POST
//! is CSRF-checked; a browser without a session goes to the login page and
//! comes back here (same action) afterwards.

use axum::{
    body::Bytes,
    extract::{RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use minijinja::{Value, context};
use serde::Deserialize;
use vestibule_domain::{browser_session::BrowserSession, scope::is_valid_device_id, user::User};

use super::{PageOpts, check_csrf, error_page, internal, matrix_id, parse_form, render, see_other};
use crate::{
    AppState, csrf,
    extract::parse_unique,
    flows::{
        account::{self, ClientSession, SessionKind},
        provisioning::delete_devices,
    },
    routes::{self, Route},
    session,
};

pub const SESSIONS_LIST: &str = "org.matrix.sessions_list";
pub const SESSION_VIEW: &str = "org.matrix.session_view";
pub const SESSION_END: &str = "org.matrix.session_end";
pub const CROSS_SIGNING_RESET: &str = "org.matrix.cross_signing_reset";

/// What a `?action=` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Profile,
    SessionsList,
    SessionView(String),
    SessionEnd(String),
    CrossSigningReset,
}

impl Action {
    /// MSC4191 names, MAS's `org.matrix.device_*` / `devices_list` aliases;
    /// anything unknown (or a session action without a valid `device_id`)
    /// falls back to the profile / the sessions list.
    fn parse(action: Option<&str>, device_id: Option<&str>) -> Self {
        let device = device_id
            .filter(|d| is_valid_device_id(d))
            .map(str::to_owned);
        match action {
            Some(SESSIONS_LIST | "org.matrix.devices_list") => Self::SessionsList,
            Some(SESSION_VIEW | "org.matrix.device_view") => {
                device.map_or(Self::SessionsList, Self::SessionView)
            }
            Some(SESSION_END | "org.matrix.device_delete") => {
                device.map_or(Self::SessionsList, Self::SessionEnd)
            }
            Some(CROSS_SIGNING_RESET) => Self::CrossSigningReset,
            _ => Self::Profile,
        }
    }

    /// The canonical `/account/?…` path of this view.
    fn path(&self) -> String {
        let base = routes::Account::PATH;
        let q = |action: &str, device: Option<&str>| {
            let mut s = url::form_urlencoded::Serializer::new(String::new());
            s.append_pair("action", action);
            if let Some(d) = device {
                s.append_pair("device_id", d);
            }
            format!("{base}?{}", s.finish())
        };
        match self {
            Self::Profile => base.to_owned(),
            Self::SessionsList => q(SESSIONS_LIST, None),
            Self::SessionView(d) => q(SESSION_VIEW, Some(d)),
            Self::SessionEnd(d) => q(SESSION_END, Some(d)),
            Self::CrossSigningReset => q(CROSS_SIGNING_RESET, None),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct AccountQuery {
    action: Option<String>,
    device_id: Option<String>,
}

impl AccountQuery {
    fn action(&self) -> Action {
        Action::parse(self.action.as_deref(), self.device_id.as_deref())
    }
}

#[derive(Deserialize)]
struct AccountForm {
    csrf: Option<String>,
    action: Option<String>,
    device_id: Option<String>,
}

/// Where the login page may send the browser back to: only the account
/// page, rebuilt from its recognised parameters, or a device code grant's
/// approval page rebuilt from its id (never an arbitrary URL: no open
/// redirect).
pub(super) fn return_path(next: &str) -> Option<String> {
    // The approval page of a device code grant, rebuilt from its id.
    if let Some(id) = next.strip_prefix("/device/") {
        let id = vestibule_domain::Ulid::from_string(id).ok()?;
        return Some(super::device_consent_path(id));
    }
    let rest = next.strip_prefix(routes::Account::PATH)?;
    let query = match rest {
        "" => "",
        r => r.strip_prefix('?')?,
    };
    let q: AccountQuery = parse_unique(query.as_bytes()).unwrap_or_default();
    Some(q.action().path())
}

/// The login page, to come back to `action` afterwards.
fn to_login(state: &AppState, action: &Action) -> Response {
    let next: String = url::form_urlencoded::byte_serialize(action.path().as_bytes()).collect();
    see_other(
        state,
        &format!("{}?next={next}", routes::Login::PATH),
        &PageOpts::default(),
    )
}

fn fmt_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn session_value(s: &ClientSession) -> Value {
    let view = s
        .device_id
        .as_ref()
        .map(|d| Action::SessionView(d.clone()).path());
    let end = s
        .device_id
        .as_ref()
        .map(|d| Action::SessionEnd(d.clone()).path());
    context! {
        client_name => s.client_name.clone(),
        device_id => s.device_id.clone(),
        kind => match s.kind {
            SessionKind::OAuth => "OAuth 2.0",
            SessionKind::Compat => "Legacy login",
        },
        scope => s.scope.clone(),
        created_at => fmt_time(s.created_at),
        last_active_at => s.last_active_at.map(fmt_time),
        view_path => view,
        end_path => end,
    }
}

fn browser_value(s: &BrowserSession, current: &BrowserSession) -> Value {
    context! {
        user_agent => s.user_agent.clone(),
        created_at => fmt_time(s.created_at),
        last_active_at => s.last_active_at.map(fmt_time),
        current => s.id == current.id,
    }
}

/// The signed-in browser session and user, or the response to send.
async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    action: &Action,
) -> Result<(BrowserSession, User), Response> {
    let mut repo = state.repos.read().await.map_err(|e| internal(state, &e))?;
    let current = session::current(state, &mut repo, headers)
        .await
        .map_err(|e| internal(state, &e))?;
    drop(repo);
    current.ok_or_else(|| to_login(state, action))
}

fn not_found(state: &AppState) -> Response {
    error_page(
        state,
        StatusCode::NOT_FOUND,
        "You have no active session with this device.",
        None,
    )
}

pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let q: AccountQuery = parse_unique(query.unwrap_or_default().as_bytes()).unwrap_or_default();
    let action = q.action();
    let (browser, user) = match signed_in(&state, &headers, &action).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let csrf = csrf::issue(&state, &headers);
    let opts = PageOpts::default().cookie(csrf.set_cookie.clone());
    let mxid = matrix_id(&state, &user.username);
    let mut repo = match state.repos.read().await {
        Ok(r) => r,
        Err(e) => return internal(&state, &e),
    };
    match action {
        Action::Profile | Action::SessionsList => {
            let overview = match account::overview(&mut repo, &user).await {
                Ok(o) => o,
                Err(e) => return internal(&state, &e),
            };
            drop(repo);
            render(
                &state,
                StatusCode::OK,
                "account.html",
                context! {
                    matrix_user_id => mxid,
                    sessions_only => action == Action::SessionsList,
                    emails => overview.emails,
                    attributes => overview.attributes,
                    upstream_accounts => overview.upstream_accounts,
                    sessions => overview.sessions.iter().map(session_value).collect::<Vec<_>>(),
                    browser_sessions => overview
                        .browser_sessions
                        .iter()
                        .map(|s| browser_value(s, &browser))
                        .collect::<Vec<_>>(),
                    cross_signing_path => Action::CrossSigningReset.path(),
                    sessions_path => Action::SessionsList.path(),
                },
                &opts,
            )
        }
        Action::SessionView(ref device_id) | Action::SessionEnd(ref device_id) => {
            let confirm = matches!(action, Action::SessionEnd(_));
            let found = match account::find_by_device(&mut repo, &user, device_id).await {
                Ok(f) => f,
                Err(e) => return internal(&state, &e),
            };
            drop(repo);
            let Some(found) = found else {
                return not_found(&state);
            };
            render(
                &state,
                StatusCode::OK,
                "account_session.html",
                context! {
                    matrix_user_id => mxid,
                    session => session_value(&found),
                    confirm,
                    csrf => csrf.token,
                    action => SESSION_END,
                    sessions_path => Action::SessionsList.path(),
                },
                &opts,
            )
        }
        Action::CrossSigningReset => {
            drop(repo);
            render(
                &state,
                StatusCode::OK,
                "account_cross_signing.html",
                context! {
                    matrix_user_id => mxid,
                    csrf => csrf.token,
                    action => CROSS_SIGNING_RESET,
                    done => false,
                },
                &opts,
            )
        }
    }
}

pub async fn post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form: AccountForm = match parse_form(&state, &headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Err(r) = check_csrf(&state, &headers, form.csrf.as_deref()) {
        return r;
    }
    let action = Action::parse(form.action.as_deref(), form.device_id.as_deref());
    let (_, user) = match signed_in(&state, &headers, &action).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mxid = matrix_id(&state, &user.username);
    match action {
        Action::SessionEnd(device_id) => {
            let mut rng = state.rng.rng();
            let result = async {
                let mut repo = state.repos.write().await?;
                let found = account::find_by_device(&mut repo, &user, &device_id).await?;
                let ended = account::end_session_by_device(
                    &mut repo,
                    state.clock.as_ref(),
                    &mut rng,
                    &user,
                    &device_id,
                )
                .await?;
                repo.save().await?;
                Ok((found, ended))
            }
            .await;
            let (found, ended) = match result {
                Ok(r) => r,
                Err(e) => return internal(&state, &e),
            };
            let Some(found) = found else {
                return not_found(&state);
            };
            // After the commit: the device goes now, so Synapse refuses the
            // session's token at once (the committed sync job retries it).
            delete_devices(state.homeserver.as_ref(), ended.as_slice()).await;
            render(
                &state,
                StatusCode::OK,
                "account_session.html",
                context! {
                    matrix_user_id => mxid,
                    session => session_value(&found),
                    ended => true,
                    sessions_path => Action::SessionsList.path(),
                },
                &PageOpts::default(),
            )
        }
        Action::CrossSigningReset => {
            if let Err(e) = state
                .homeserver
                .allow_cross_signing_reset(&user.username)
                .await
            {
                tracing::warn!(error = %e, "allow_cross_signing_reset failed");
                let (status, message) = if e.is_retryable() {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "The homeserver could not be reached to allow the reset. Try again in a moment.",
                    )
                } else {
                    (
                        StatusCode::BAD_GATEWAY,
                        "The homeserver refused to allow the reset. Contact the server administrator.",
                    )
                };
                return error_page(&state, status, message, None);
            }
            tracing::info!(localpart = %user.username, "cross-signing reset allowed for 10 minutes");
            render(
                &state,
                StatusCode::OK,
                "account_cross_signing.html",
                context! { matrix_user_id => mxid, done => true },
                &PageOpts::default(),
            )
        }
        Action::Profile | Action::SessionsList | Action::SessionView(_) => error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "This form action is not known.",
            None,
        ),
    }
}

/// `/account` (no trailing slash): to the canonical `/account/`, keeping
/// the recognised parameters.
pub async fn redirect(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let q: AccountQuery = parse_unique(query.unwrap_or_default().as_bytes()).unwrap_or_default();
    see_other(&state, &q.action().path(), &PageOpts::default())
}
