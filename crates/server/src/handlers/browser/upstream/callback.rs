//! `/upstream/callback/{provider_id}`: the provider's authorization
//! response (OIDC Core §3.1.2.5–3.1.2.6), as a query (`GET`) or as a form
//! (`POST`, OAuth 2.0 Form Post Response Mode).
//!
//! The session is found by `state` among the upstream sessions this
//! browser's cookie lists (RFC 6749 §10.12: a response carried to another
//! browser leads nowhere). Then the code is exchanged, the ID token (and
//! userinfo) validated, the provider's `attribute_requirements` checked,
//! the (provider, subject) link found or created and the session completed
//! with the claims; the browser goes on to
//! `/upstream/link/{session}`. Every refusal is an error page and changes
//! nothing.
//!
//! A `form_post` response arrives as a cross-site POST, which carries no
//! `SameSite=Lax` cookie: without our cookie we answer with a page that
//! posts the same fields to ourselves (now same-site, so with cookies), as
//! MAS does.

use axum::{
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use minijinja::context;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use vestibule_domain::{Ulid, upstream::UpstreamAuthorizationSession};

use crate::{
    AppState,
    extract::parse_unique,
    handlers::browser::{PageOpts, error_page, internal, render, see_other},
    upstream::{
        client::printable,
        cookie,
        provider::{callback_url, claims_json, enabled_provider, subject},
    },
};

/// Marks our own re-submission of a `form_post` response.
const RESUBMITTED: &str = "vestibule_resubmit";

#[derive(Debug, Default, Deserialize)]
struct Params {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    iss: Option<String>,
    #[serde(rename = "vestibule_resubmit")]
    resubmitted: Option<String>,
    // Other members (e.g. `session_state`) are ignored.
    #[serde(flatten)]
    _rest: std::collections::BTreeMap<String, String>,
}

pub(super) async fn get(
    State(state): State<AppState>,
    Path(provider_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    handle(
        &state,
        &headers,
        &provider_id,
        query.unwrap_or_default().as_bytes(),
    )
    .await
}

pub(super) async fn post(
    State(state): State<AppState>,
    Path(provider_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(params) = parse_unique::<Params>(&body) else {
        return malformed(&state);
    };
    let Some(provider) = enabled_provider(&state.config, &provider_id) else {
        return error_page(
            &state,
            StatusCode::NOT_FOUND,
            "This sign-in provider does not exist or is disabled.",
            None,
        );
    };
    if cookie::ids(&state, &headers).is_empty() && params.resubmitted.is_none() {
        // The cross-site POST from the provider: post the fields again
        // from our own origin, so the browser sends our cookies.
        let fields: Vec<(String, String)> = url::form_urlencoded::parse(&body)
            .into_owned()
            .chain([(RESUBMITTED.to_owned(), "1".to_owned())])
            .collect();
        return render(
            &state,
            StatusCode::OK,
            "form_post.html",
            context! {
                redirect_uri => callback_url(&state.urls, &provider.id).to_string(),
                params => fields,
            },
            &PageOpts::default(),
        );
    }
    handle(&state, &headers, &provider_id, &body).await
}

fn malformed(state: &AppState) -> Response {
    error_page(
        state,
        StatusCode::BAD_REQUEST,
        "The identity provider's answer is malformed. Start signing in again.",
        None,
    )
}

fn refuse(state: &AppState, message: &str) -> Response {
    error_page(state, StatusCode::BAD_REQUEST, message, None)
}

/// The session of this browser whose `state` this is (compared in
/// constant time), if any.
async fn find_session(
    state: &AppState,
    headers: &HeaderMap,
    provider_id: Ulid,
    st: &str,
) -> Result<Option<UpstreamAuthorizationSession>, Response> {
    let ids = cookie::ids(state, headers);
    if ids.is_empty() {
        return Ok(None);
    }
    let mut repo = state.repos.read().await.map_err(|e| internal(state, &e))?;
    for id in ids.into_iter().rev() {
        let s = repo
            .upstream_sessions()
            .lookup(id)
            .await
            .map_err(|e| internal(state, &e))?;
        if let Some(s) = s
            && s.provider_id == provider_id
            && bool::from(s.state.as_bytes().ct_eq(st.as_bytes()))
        {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

async fn handle(state: &AppState, headers: &HeaderMap, provider_id: &str, raw: &[u8]) -> Response {
    let Some(provider) = enabled_provider(&state.config, provider_id) else {
        return error_page(
            state,
            StatusCode::NOT_FOUND,
            "This sign-in provider does not exist or is disabled.",
            None,
        );
    };
    let Ok(pid) = Ulid::from_string(&provider.id) else {
        return malformed(state);
    };
    let Ok(params) = parse_unique::<Params>(raw) else {
        return malformed(state);
    };
    let Some(st) = params.state.as_deref() else {
        return malformed(state);
    };
    let session = match find_session(state, headers, pid, st).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return refuse(
                state,
                "This sign-in was not started in this browser, or it has expired. Start signing in again.",
            );
        }
        Err(r) => return r,
    };
    if session.completed_at.is_some() || session.consumed_at.is_some() {
        return refuse(
            state,
            "This sign-in was already completed. Start signing in again.",
        );
    }

    let metadata = match state.upstream.metadata(provider).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(provider = %provider.id, error = %e, "upstream metadata unavailable");
            return error_page(
                state,
                StatusCode::BAD_GATEWAY,
                &format!("Signing in with this provider is not possible right now: {e}."),
                None,
            );
        }
    };

    // RFC 9207 §2.4: `iss`, when present, is the provider's issuer; when the
    // provider advertises it, it must be present (mix-up defence). Checked
    // on error responses too.
    match (params.iss.as_deref(), metadata.issuer.as_deref()) {
        (Some(got), Some(issuer)) if got != issuer => {
            return refuse(
                state,
                "The answer names a different identity provider (iss). Start signing in again.",
            );
        }
        (None, _) if metadata.authorization_response_iss_parameter_supported => {
            return refuse(
                state,
                "The identity provider's answer lacks its issuer (iss). Start signing in again.",
            );
        }
        _ => {}
    }

    // OIDC Core §3.1.2.6 / RFC 6749 §4.1.2.1: the provider said no.
    if let Some(error) = params.error.as_deref() {
        let description = params
            .error_description
            .as_deref()
            .map(printable)
            .filter(|d| !d.is_empty());
        let message = match description {
            Some(d) => format!(
                "The identity provider did not sign you in ({}: {d}).",
                printable(error)
            ),
            None => format!(
                "The identity provider did not sign you in ({}).",
                printable(error)
            ),
        };
        tracing::info!(provider = %provider.id, error = %printable(error), "upstream authorization error");
        return refuse(state, &message);
    }
    let Some(code) = params.code.as_deref() else {
        return malformed(state);
    };

    match complete(state, provider, &metadata, session, code).await {
        // The empty fragment: a browser carries the callback URL's fragment
        // (some providers add one) over to a Location without one (RFC 9110
        // §10.2.2); ours ends it here so it never reaches a client.
        Ok(session_id) => see_other(
            state,
            &format!("/upstream/link/{session_id}#"),
            &PageOpts::default(),
        ),
        Err(r) => r,
    }
}

/// Exchanges the code, validates what comes back and completes the
/// session. `Ok` is the completed session's id.
async fn complete(
    state: &AppState,
    provider: &vestibule_config::sections::upstream_oauth2::UpstreamProviderConfig,
    metadata: &crate::upstream::client::ProviderMetadata,
    session: UpstreamAuthorizationSession,
    code: &str,
) -> Result<Ulid, Response> {
    let upstream_failed = |e: crate::upstream::client::UpstreamError| {
        tracing::warn!(provider = %provider.id, error = %e, "upstream login refused");
        error_page(
            state,
            StatusCode::BAD_GATEWAY,
            &format!("Signing in failed: {e}. Start signing in again."),
            None,
        )
    };
    let now = state.clock.now();
    let mut rng = state.rng.rng();
    let redirect_uri = callback_url(&state.urls, &provider.id);
    let tokens = state
        .upstream
        .exchange_code(
            provider,
            metadata,
            &state.keystore,
            now,
            &mut rng,
            code,
            &redirect_uri,
            session.code_verifier.as_deref(),
        )
        .await
        .map_err(upstream_failed)?;
    let id_token = tokens.id_token.as_deref().ok_or_else(|| {
        upstream_failed(crate::upstream::client::UpstreamError::Invalid {
            what: "token response",
            why: "it has no ID token (is `openid` in the scope?)".to_owned(),
        })
    })?;
    let id_claims = state
        .upstream
        .validate_id_token(provider, metadata, id_token, session.nonce.as_deref(), now)
        .await
        .map_err(upstream_failed)?;
    let sub = id_claims
        .get("sub")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let userinfo = if provider.fetch_userinfo {
        Some(
            state
                .upstream
                .userinfo(provider, metadata, &tokens.access_token, &sub)
                .await
                .map_err(upstream_failed)?,
        )
    } else {
        None
    };
    let subject = subject(provider, &id_claims, userinfo.as_ref()).map_err(|why| {
        tracing::warn!(provider = %provider.id, %why, "upstream subject");
        error_page(
            state,
            StatusCode::BAD_GATEWAY,
            &format!("Signing in failed: {why}."),
            None,
        )
    })?;
    let sid = id_claims
        .get("sid")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    let claims = claims_json(&id_claims, userinfo.as_ref());
    let parsed = crate::upstream::claims::Claims::from_session(Some(&claims));
    // The provider's `attribute_requirements`, before anything is written:
    // a refused user leaves no link and no completed session behind.
    if crate::upstream::claims::unmet_requirement(&provider.attribute_requirements, &parsed)
        .is_some()
    {
        tracing::info!(provider = %provider.id, "upstream login refused by attribute_requirements");
        return Err(super::not_allowed(state, provider));
    }
    let account_name =
        crate::upstream::claims::human_account_name(&provider.claims_imports, &parsed);

    // One transaction: the link (found by (provider, subject), never by
    // email) and the completed session, or neither.
    let mut repo = state.repos.write().await.map_err(|e| internal(state, &e))?;
    let db_provider = match repo.upstream_providers().lookup(session.provider_id).await {
        Ok(Some(p)) if p.disabled_at.is_none() => p,
        Ok(_) => {
            return Err(error_page(
                state,
                StatusCode::NOT_FOUND,
                "This sign-in provider does not exist or is disabled.",
                None,
            ));
        }
        Err(e) => return Err(internal(state, &e)),
    };
    let existing = repo
        .upstream_links()
        .find_by_subject(&db_provider, &subject)
        .await
        .map_err(|e| internal(state, &e))?;
    // The account name is shown on the link offer and account pages; it is
    // refreshed on every login (the user may rename themselves upstream).
    let link = match existing {
        Some(l) if l.human_account_name == account_name => l,
        Some(l) => repo
            .upstream_links()
            .set_human_account_name(l, account_name.as_deref())
            .await
            .map_err(|e| internal(state, &e))?,
        None => repo
            .upstream_links()
            .add(
                &mut rng,
                state.clock.as_ref(),
                &db_provider,
                &subject,
                account_name.as_deref(),
            )
            .await
            .map_err(|e| internal(state, &e))?,
    };
    let completed = match repo
        .upstream_sessions()
        .complete(state.clock.as_ref(), session, &link, claims, sid.as_deref())
        .await
    {
        Ok(s) => s,
        Err(vestibule_storage::StorageError::ConcurrentUpdate(_)) => {
            return Err(refuse(
                state,
                "This sign-in was already completed. Start signing in again.",
            ));
        }
        Err(e) => return Err(internal(state, &e)),
    };
    repo.save().await.map_err(|e| internal(state, &e))?;
    Ok(completed.id)
}
