//! `GET` and `POST /authorize` (RFC 6749 §3.1, OpenID Connect Core
//! §3.1.2.1: both methods must be supported).

use axum::{
    body::Bytes,
    extract::{RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};

use super::{PageOpts, consent_path, error_page, internal, see_other, to_client, with_grant};
use crate::{
    AppState,
    extract::{MAX_FORM_BYTES, parse_unique},
    flows::authorize::{self, AuthorizeOutcome, AuthorizeParams, ExistingSession},
    routes::{self, Route},
    session,
};

pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    handle(&state, &headers, query.unwrap_or_default().as_bytes()).await
}

pub async fn post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if body.len() > MAX_FORM_BYTES {
        return error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "The request is too large.",
            None,
        );
    }
    handle(&state, &headers, &body).await
}

async fn handle(state: &AppState, headers: &HeaderMap, input: &[u8]) -> Response {
    // RFC 6749 §3.1: a repeated parameter is an error; we cannot trust
    // which redirect_uri or client_id was meant, so it is never redirected.
    let params: AuthorizeParams = match parse_unique(input) {
        Ok(p) => p,
        Err(e) => {
            return error_page(
                state,
                StatusCode::BAD_REQUEST,
                &format!("The authorization request is invalid: {e}."),
                None,
            );
        }
    };
    match run(state, headers, params).await {
        Ok(r) | Err(r) => r,
    }
}

async fn run(
    state: &AppState,
    headers: &HeaderMap,
    params: AuthorizeParams,
) -> Result<Response, Response> {
    let mut repo = state.repos.write().await.map_err(|e| internal(state, &e))?;
    let prompt_none = params
        .prompt
        .as_deref()
        .is_some_and(|p| p.split(' ').any(|v| v == "none"));
    let existing = if prompt_none {
        match session::current(state, &mut repo, headers)
            .await
            .map_err(|e| internal(state, &e))?
        {
            Some((browser_session, user)) => {
                let last_auth_at = repo
                    .browser_sessions()
                    .last_authentication(&browser_session)
                    .await
                    .map_err(|e| internal(state, &e))?
                    .map(|a| a.created_at);
                Some(ExistingSession {
                    browser_session,
                    user,
                    last_auth_at,
                })
            }
            None => None,
        }
    } else {
        None
    };
    let mut rng = state.rng.rng();
    let outcome = authorize::start(
        &mut repo,
        state.clock.as_ref(),
        &mut rng,
        &state.config,
        state.urls.issuer(),
        params,
        existing,
    )
    .await
    .map_err(|e| internal(state, &e))?;
    match outcome {
        AuthorizeOutcome::ErrorPage { message } => {
            Ok(error_page(state, StatusCode::BAD_REQUEST, &message, None))
        }
        AuthorizeOutcome::Redirect(r) => {
            repo.save().await.map_err(|e| internal(state, &e))?;
            Ok(to_client(state, &r, PageOpts::default()))
        }
        AuthorizeOutcome::Continue {
            grant,
            code,
            register,
        } => {
            repo.save().await.map_err(|e| internal(state, &e))?;
            let cookie = session::pending_cookie(state, headers, grant.id, Some(&code));
            let target = if register {
                with_grant(routes::Register::PATH, Some(grant.id))
            } else {
                consent_path(grant.id)
            };
            Ok(see_other(
                state,
                &target,
                &PageOpts::default().cookie(cookie),
            ))
        }
    }
}
