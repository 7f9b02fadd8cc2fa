//! `/logout`: GET shows a confirmation, POST (with CSRF) ends the browser
//! session. The session is only ended on an explicit user action (S24).

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use minijinja::context;
use serde::Deserialize;

use super::{PageOpts, check_csrf, internal, matrix_id, parse_form, render, see_other};
use crate::{AppState, csrf, session};

#[derive(Deserialize)]
struct LogoutForm {
    csrf: Option<String>,
}

pub async fn get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let mut repo = match state.repos.read().await {
        Ok(r) => r,
        Err(e) => return internal(&state, &e),
    };
    let current = match session::current(&state, &mut repo, &headers).await {
        Ok(c) => c,
        Err(e) => return internal(&state, &e),
    };
    let csrf = csrf::issue(&state, &headers);
    render(
        &state,
        StatusCode::OK,
        "logout.html",
        context! {
            csrf => csrf.token,
            matrix_user_id => current.map(|(_, u)| matrix_id(&state, &u.username)),
        },
        &PageOpts::default().cookie(csrf.set_cookie),
    )
}

pub async fn post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form: LogoutForm = match parse_form(&state, &headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Err(r) = check_csrf(&state, &headers, form.csrf.as_deref()) {
        return r;
    }
    if let Some(id) = session::session_id(&state, &headers) {
        let result = async {
            let mut repo = state.repos.write().await?;
            let s = repo.browser_sessions().lookup(id).await?;
            if let Some(s) = s.filter(vestibule_domain::browser_session::BrowserSession::is_active)
            {
                repo.browser_sessions()
                    .finish(state.clock.as_ref(), s)
                    .await?;
            }
            repo.save().await
        }
        .await;
        if let Err(e) = result {
            return internal(&state, &e);
        }
    }
    let clear = session::clear_cookie(&state, &session::session_cookie_name(&state));
    see_other(
        &state,
        <crate::routes::Logout as crate::routes::Route>::PATH,
        &PageOpts::default().cookie(Some(clear)),
    )
}
