//! The verification pages of the device authorization grant (RFC 8628
//! §3.3, MAS paths): `/link` where the user enters (or, from
//! `verification_uri_complete`, arrives with) the user code, and
//! `/device/{grant_id}` where the signed-in user allows or denies the
//! device. Sign-in goes through `/login?next=/device/<id>` (the id only,
//! rebuilt by `account::return_path`).

use axum::{
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use minijinja::context;
use serde::Deserialize;
use vestibule_domain::{
    Ulid,
    browser_session::BrowserSession,
    device_code::{DeviceCodeGrant, DeviceCodeGrantStage},
    oauth2::Client,
    scope,
    user::User,
};
use vestibule_storage::{BoxRepository, StorageError};

use super::{
    PageOpts, check_csrf, client_context, device_consent_path, internal, login::limited_form,
    matrix_id, parse_form, render, see_other,
};
use crate::{
    AppState, csrf,
    extract::parse_unique,
    flows::{
        authorize,
        device_code::{self, display_user_code, normalise_user_code},
    },
    requester::Requester,
    routes::{self, Route},
    session,
};

#[derive(Debug, Default, Deserialize)]
struct LinkQuery {
    code: Option<String>,
}

#[derive(Deserialize)]
struct LinkForm {
    csrf: Option<String>,
    #[serde(default)]
    code: String,
}

#[derive(Deserialize)]
struct ConsentForm {
    csrf: Option<String>,
    action: Option<String>,
}

const UNKNOWN_CODE: &str = "This code is not valid or has expired. Check the code shown on your device, or start again there.";

/// The code entry page, with an error (and the code as typed) when set.
fn link_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    code: &str,
    error: Option<&str>,
) -> Response {
    let csrf = csrf::issue(state, headers);
    render(
        state,
        status,
        "link.html",
        context! { csrf => csrf.token, code, error },
        &PageOpts::default().cookie(csrf.set_cookie),
    )
}

/// The pending, unexpired grant of a typed user code.
async fn pending_by_user_code(
    state: &AppState,
    input: &str,
) -> Result<Option<DeviceCodeGrant>, StorageError> {
    let Some(code) = normalise_user_code(input) else {
        return Ok(None);
    };
    let mut repo = state.repos.read().await?;
    let grant = repo.device_code_grants().find_by_user_code(&code).await?;
    Ok(grant
        .filter(|g| g.stage == DeviceCodeGrantStage::Pending && !g.is_expired(state.clock.now())))
}

/// Looks the code up and continues to its approval page, or shows the
/// entry page again with an error. Every lookup, from the form or from
/// `verification_uri_complete`, passes the `device_code_link` limit of the
/// requester first: user codes are short enough to guess at scale (RFC 8628
/// §5.1 asks for rate limiting).
async fn continue_with_code(
    state: &AppState,
    requester: Requester,
    headers: &HeaderMap,
    code: &str,
) -> Response {
    if let Err(limited) = state
        .limits
        .check_device_code_link(state.clock.as_ref(), requester)
    {
        return limited_form(limited, |status, error| {
            link_page(state, headers, status, code, Some(error))
        });
    }
    match pending_by_user_code(state, code).await {
        Ok(Some(grant)) => see_other(state, &device_consent_path(grant.id), &PageOpts::default()),
        Ok(None) => link_page(
            state,
            headers,
            StatusCode::NOT_FOUND,
            code,
            Some(UNKNOWN_CODE),
        ),
        Err(e) => internal(state, &e),
    }
}

/// `GET /link` and `GET /link?code=XXXX-XXXX` (`verification_uri_complete`).
pub async fn link_get(
    State(state): State<AppState>,
    requester: Requester,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let q: LinkQuery = parse_unique(query.unwrap_or_default().as_bytes()).unwrap_or_default();
    match q.code.as_deref().filter(|c| !c.trim().is_empty()) {
        Some(code) => continue_with_code(&state, requester, &headers, code).await,
        None => link_page(&state, &headers, StatusCode::OK, "", None),
    }
}

/// `POST /link`: the typed code (CSRF-checked).
pub async fn link_post(
    State(state): State<AppState>,
    requester: Requester,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: LinkForm = match parse_form(&state, &headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Err(r) = check_csrf(&state, &headers, form.csrf.as_deref()) {
        return r;
    }
    continue_with_code(&state, requester, &headers, &form.code).await
}

/// A finished page: "you can go back to your device", or why not.
fn done_page(state: &AppState, status: StatusCode, title: &str, message: &str) -> Response {
    render(
        state,
        status,
        "device_done.html",
        context! { title, message },
        &PageOpts::default(),
    )
}

/// Everything the approval page and its action need, once checked.
struct Ready {
    grant: DeviceCodeGrant,
    client: Client,
    user: User,
    browser_session: BrowserSession,
}

/// Loads the pending grant and the signed-in user; `Err` is the page to
/// send instead (unknown or finished code, or the login page).
async fn prepare(
    state: &AppState,
    repo: &mut BoxRepository,
    headers: &HeaderMap,
    grant_id: &str,
) -> Result<Ready, Response> {
    let gone = || {
        link_page(
            state,
            headers,
            StatusCode::NOT_FOUND,
            "",
            Some(
                "This sign-in request does not exist, has expired or was already answered. Start again on your device.",
            ),
        )
    };
    let grant_id = Ulid::from_string(grant_id).map_err(|_| gone())?;
    let grant = repo
        .device_code_grants()
        .lookup(grant_id)
        .await
        .map_err(|e| internal(state, &e))?
        .ok_or_else(gone)?;
    if grant.stage != DeviceCodeGrantStage::Pending || grant.is_expired(state.clock.now()) {
        return Err(gone());
    }
    let client = repo
        .oauth2_clients()
        .lookup(grant.client_id)
        .await
        .map_err(|e| internal(state, &e))?
        .ok_or_else(gone)?;
    let Some((browser_session, user)) = session::current(state, repo, headers)
        .await
        .map_err(|e| internal(state, &e))?
    else {
        let next: String =
            url::form_urlencoded::byte_serialize(device_consent_path(grant.id).as_bytes())
                .collect();
        return Err(see_other(
            state,
            &format!("{}?next={next}", routes::Login::PATH),
            &PageOpts::default(),
        ));
    };
    Ok(Ready {
        grant,
        client,
        user,
        browser_session,
    })
}

/// Whether the grant asks for `urn:synapse:admin:*` that the user may not
/// have (the consent page's policy: `authorize::may_request_admin`).
async fn admin_refused(
    state: &AppState,
    repo: &mut BoxRepository,
    ready: &Ready,
) -> Result<bool, Response> {
    if !ready
        .grant
        .scope
        .split(' ')
        .any(|s| s == scope::SYNAPSE_ADMIN)
    {
        return Ok(false);
    }
    authorize::may_request_admin(&state.config, repo, &ready.user)
        .await
        .map(|may| !may)
        .map_err(|e| internal(state, &e))
}

/// Records the answer (compare-and-set from pending) and shows the end page.
async fn answer(
    state: &AppState,
    mut repo: BoxRepository,
    ready: Ready,
    allow: bool,
    refusal: Option<&str>,
) -> Response {
    let decided = device_code::decide(
        &mut repo,
        state.clock.as_ref(),
        ready.grant,
        &ready.browser_session,
        allow,
    )
    .await;
    match decided {
        Ok(_) => {}
        Err(StorageError::ConcurrentUpdate(_) | StorageError::InvalidTransition(_)) => {
            return done_page(
                state,
                StatusCode::CONFLICT,
                "Already answered",
                "This sign-in request was already answered.",
            );
        }
        Err(e) => return internal(state, &e),
    }
    if let Err(e) = repo.save().await {
        return internal(state, &e);
    }
    let name = ready
        .client
        .client_name
        .clone()
        .unwrap_or_else(|| ready.client.client_id.clone());
    match (allow, refusal) {
        (true, _) => done_page(
            state,
            StatusCode::OK,
            "Device linked",
            &format!("{name} is now signing in. You can go back to your device."),
        ),
        (false, Some(why)) => done_page(state, StatusCode::FORBIDDEN, "Not allowed", why),
        (false, None) => done_page(
            state,
            StatusCode::OK,
            "Sign-in denied",
            &format!("{name} was not signed in. You can close this page."),
        ),
    }
}

const ADMIN_REFUSED: &str =
    "You may not give administrator access to a device. The request was denied.";

/// `GET /device/{grant_id}`: who asks, for what, Allow / Deny.
pub async fn consent_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(grant_id): Path<String>,
) -> Response {
    let mut repo = match state.repos.write().await {
        Ok(r) => r,
        Err(e) => return internal(&state, &e),
    };
    let ready = match prepare(&state, &mut repo, &headers, &grant_id).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    match admin_refused(&state, &mut repo, &ready).await {
        Ok(true) => return answer(&state, repo, ready, false, Some(ADMIN_REFUSED)).await,
        Ok(false) => {}
        Err(r) => return r,
    }
    drop(repo);
    let csrf = csrf::issue(&state, &headers);
    let client = &ready.client;
    let mut opts = PageOpts::default().cookie(csrf.set_cookie.clone());
    let client_ctx = client_context(client, &mut opts);
    let consent_path = device_consent_path(ready.grant.id);
    let next: String = url::form_urlencoded::byte_serialize(consent_path.as_bytes()).collect();
    render(
        &state,
        StatusCode::OK,
        "device_consent.html",
        context! {
            csrf => csrf.token,
            consent_path,
            switch_path => format!("{}?switch=1&next={next}", routes::Login::PATH),
            user_code => display_user_code(&ready.grant.user_code),
            client => client_ctx,
            scopes => authorize::describe_scopes(&ready.grant.scope),
            matrix_user_id => matrix_id(&state, &ready.user.username),
        },
        &opts,
    )
}

/// `POST /device/{grant_id}` (CSRF-checked): `action=allow` fulfils the
/// grant for this browser session, anything else rejects it.
pub async fn consent_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(grant_id): Path<String>,
    body: Bytes,
) -> Response {
    let form: ConsentForm = match parse_form(&state, &headers, &body) {
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
    let ready = match prepare(&state, &mut repo, &headers, &grant_id).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if form.action.as_deref() != Some("allow") {
        return answer(&state, repo, ready, false, None).await;
    }
    match admin_refused(&state, &mut repo, &ready).await {
        Ok(true) => answer(&state, repo, ready, false, Some(ADMIN_REFUSED)).await,
        Ok(false) => answer(&state, repo, ready, true, None).await,
        Err(r) => r,
    }
}
