//! `/consent/{grant_id}`: the user allows or denies a pending grant.

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use chrono::Duration;
use minijinja::context;
use serde::Deserialize;
use vestibule_domain::{
    Ulid,
    browser_session::BrowserSession,
    oauth2::{AuthorizationGrant, AuthorizationGrantStage, Client},
    user::User,
};
use vestibule_storage::BoxRepository;

use super::{
    PageOpts, check_csrf, consent_path, csp_source, error_page, internal, matrix_id, parse_form,
    render, see_other, to_client, with_grant,
};
use crate::{
    AppState, csrf,
    error::ErrorCode,
    flows::authorize::{self, AuthNeed},
    routes::{self, Route},
    session,
};

#[derive(Deserialize)]
struct ConsentForm {
    csrf: Option<String>,
    action: Option<String>,
}

/// Everything the page and the action need, once checked.
struct Ready {
    grant: AuthorizationGrant,
    client: Client,
    user: User,
    browser_session: BrowserSession,
    code: String,
}

/// Whether the grant asks for `urn:synapse:admin:*` and the user may not
/// have it (checked when the page is shown and again on submit).
async fn admin_refused(
    state: &AppState,
    repo: &mut BoxRepository,
    ready: &Ready,
) -> Result<bool, Response> {
    if !ready
        .grant
        .scope
        .split(' ')
        .any(|s| s == "urn:synapse:admin:*")
    {
        return Ok(false);
    }
    authorize::may_request_admin(&state.config, repo, &ready.user)
        .await
        .map(|may| !may)
        .map_err(|e| internal(state, &e))
}

/// Loads and checks the grant, the code cookie and the session. `Err` is
/// the response to send instead (error page, login redirect, or an error
/// redirect to the client).
async fn prepare(
    state: &AppState,
    repo: &mut BoxRepository,
    headers: &HeaderMap,
    grant_id: &str,
) -> Result<Ready, Response> {
    let not_found = || {
        error_page(
            state,
            StatusCode::NOT_FOUND,
            "This sign-in request does not exist.",
            None,
        )
    };
    let grant_id = Ulid::from_string(grant_id).map_err(|_| not_found())?;
    let grant = repo
        .oauth2_grants()
        .lookup(grant_id)
        .await
        .map_err(|e| internal(state, &e))?
        .ok_or_else(not_found)?;
    let client = repo
        .oauth2_clients()
        .lookup(grant.client_id)
        .await
        .map_err(|e| internal(state, &e))?
        .ok_or_else(not_found)?;
    let now = state.clock.now();
    if grant.stage != AuthorizationGrantStage::Pending
        || now - grant.created_at > Duration::seconds(session::PENDING_GRANT_TTL_SECONDS)
    {
        return Err(error_page(
            state,
            StatusCode::BAD_REQUEST,
            "This sign-in request was already completed or has expired. Start again from the application.",
            Some(&client),
        ));
    }
    // The code lives only in the cookie of the browser that started the
    // request: the grant cannot be completed from another browser.
    let code = session::pending_code(state, headers, grant.id).ok_or_else(|| {
        error_page(
            state,
            StatusCode::BAD_REQUEST,
            "This sign-in request was started in another browser or has expired. Start again from the application.",
            Some(&client),
        )
    })?;
    let login = || {
        see_other(
            state,
            &with_grant(routes::Login::PATH, Some(grant.id)),
            &PageOpts::default(),
        )
    };
    let Some((browser_session, user)) = session::current(state, repo, headers)
        .await
        .map_err(|e| internal(state, &e))?
    else {
        return Err(login());
    };
    let last_auth_at = repo
        .browser_sessions()
        .last_authentication(&browser_session)
        .await
        .map_err(|e| internal(state, &e))?
        .map(|a| a.created_at);
    if authorize::auth_need(
        grant.created_at,
        grant.prompt.as_deref(),
        grant.max_age,
        last_auth_at,
        now,
    ) == AuthNeed::Login
    {
        return Err(login());
    }
    Ok(Ready {
        grant,
        client,
        user,
        browser_session,
        code,
    })
}

/// Cancels the grant and sends `access_denied` to the client.
async fn deny(
    state: &AppState,
    mut repo: BoxRepository,
    headers: &HeaderMap,
    ready: Ready,
    description: &str,
) -> Response {
    let grant_id = ready.grant.id;
    let redirect = authorize::grant_error(
        state.urls.issuer(),
        &ready.grant,
        ErrorCode::AccessDenied,
        description,
    );
    let cancelled = repo
        .oauth2_grants()
        .cancel(state.clock.as_ref(), ready.grant)
        .await;
    if let Err(e) = cancelled {
        return internal(state, &e);
    }
    if let Err(e) = repo.save().await {
        return internal(state, &e);
    }
    let cookie = session::pending_cookie(state, headers, grant_id, None);
    to_client(state, &redirect, PageOpts::default().cookie(cookie))
}

pub async fn get(
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
    let refused = match admin_refused(&state, &mut repo, &ready).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if refused {
        return deny(
            &state,
            repo,
            &headers,
            ready,
            "the user may not request administrator access",
        )
        .await;
    }
    let csrf = csrf::issue(&state, &headers);
    let client = &ready.client;
    let mut opts = PageOpts::default().cookie(csrf.set_cookie.clone());
    // After the consent POST we redirect to the client (CSP form-action
    // covers redirects after a form submission).
    opts.form_action
        .extend(csp_source(&ready.grant.redirect_uri));
    let client_ctx = super::client_context(client, &mut opts);
    render(
        &state,
        StatusCode::OK,
        "consent.html",
        context! {
            csrf => csrf.token,
            grant_id => ready.grant.id.to_string(),
            consent_path => consent_path(ready.grant.id),
            client => client_ctx,
            scopes => authorize::describe_scopes(&ready.grant.scope),
            matrix_user_id => matrix_id(&state, &ready.user.username),
            redirect_host => ready.grant.redirect_uri.host_str().map_or_else(
                || ready.grant.redirect_uri.scheme().to_owned(),
                ToOwned::to_owned,
            ),
        },
        &opts,
    )
}

pub async fn post(
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
        return deny(&state, repo, &headers, ready, "the user denied the request").await;
    }
    let refused = match admin_refused(&state, &mut repo, &ready).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if refused {
        return deny(
            &state,
            repo,
            &headers,
            ready,
            "the user may not request administrator access",
        )
        .await;
    }
    let grant_id = ready.grant.id;
    let mut rng = state.rng.rng();
    let redirect = authorize::complete(
        &mut repo,
        state.clock.as_ref(),
        &mut rng,
        state.urls.issuer(),
        ready.grant,
        &ready.client,
        &ready.user,
        &ready.browser_session,
        &ready.code,
    )
    .await;
    let redirect = match redirect {
        Ok(r) => r,
        Err(e) => return internal(&state, &e),
    };
    if let Err(e) = repo.save().await {
        return internal(&state, &e);
    }
    let cookie = session::pending_cookie(&state, &headers, grant_id, None);
    to_client(&state, &redirect, PageOpts::default().cookie(cookie))
}
