//! `POST /upstream/backchannel-logout/{provider_id}`: the receiver of
//! OpenID Connect Back-Channel Logout 1.0. The provider posts a signed
//! logout token (§2.5); we validate it (§2.6) and, as the provider's
//! `on_backchannel_logout` says, end nothing, the browser sessions its
//! login started, or those and every client session started from them
//! (their Matrix devices deleted). Answers 200, or 400 with an OAuth-style
//! error body (§2.8).

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;
use vestibule_config::sections::upstream_oauth2::OnBackchannelLogout;
use vestibule_domain::Ulid;
use vestibule_storage::StorageError;

use crate::{
    AppState,
    extract::parse_unique,
    flows::{provisioning::delete_devices, session::end_browser_session},
    upstream::{client::LogoutToken, provider::enabled_provider},
};

#[derive(Debug, Deserialize)]
struct Form {
    logout_token: Option<String>,
}

/// §2.8: 400 with `error` and `error_description` (RFC 6749 §5.2 shape).
fn bad_request(description: &str) -> Response {
    no_store(
        (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "invalid_request", "error_description": description })),
        )
            .into_response(),
    )
}

fn no_store(mut res: Response) -> Response {
    // §2.8: "The response SHOULD include Cache-Control: no-store".
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

pub(super) async fn post(
    State(state): State<AppState>,
    Path(provider_id): Path<String>,
    body: Bytes,
) -> Response {
    let Some(provider) = enabled_provider(&state.config, &provider_id) else {
        return no_store(
            (
                StatusCode::NOT_FOUND,
                Json(
                    json!({ "error": "invalid_request", "error_description": "unknown provider" }),
                ),
            )
                .into_response(),
        );
    };
    let Ok(pid) = Ulid::from_string(&provider.id) else {
        return bad_request("unknown provider");
    };
    let token = match parse_unique::<Form>(&body) {
        Ok(Form {
            logout_token: Some(t),
        }) if !t.is_empty() => t,
        _ => return bad_request("logout_token is required"),
    };
    let metadata = match state.upstream.metadata(provider).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(provider = %provider.id, error = %e, "upstream metadata unavailable");
            return no_store(
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({ "error": "temporarily_unavailable", "error_description": "the provider's metadata is unavailable" })),
                )
                    .into_response(),
            );
        }
    };
    let logout = match state
        .upstream
        .validate_logout_token(provider, &metadata, &token, state.clock.now())
        .await
    {
        Ok(t) => t,
        Err(e) => {
            tracing::info!(provider = %provider.id, error = %e, "logout token refused");
            return bad_request(&e.to_string());
        }
    };
    let with_clients = match provider.on_backchannel_logout {
        OnBackchannelLogout::DoNothing => return no_store(StatusCode::OK.into_response()),
        OnBackchannelLogout::LogoutBrowserOnly => false,
        OnBackchannelLogout::LogoutAll => true,
    };
    // With a subject template, links are keyed by the rendered subject: the
    // token's raw `sub` means something else there (and could collide with
    // another user's rendered subject), so only `sid` is used.
    let match_sub = provider.claims_imports.subject.template.is_none();
    match end_sessions(&state, pid, &logout, match_sub, with_clients).await {
        Ok(()) => no_store(StatusCode::OK.into_response()),
        // §2.6 item 10: a jti already received is refused.
        Err(StorageError::ConcurrentUpdate(_)) => {
            tracing::info!(provider = %provider.id, "logout token replayed");
            bad_request(
                "the identity provider sent an invalid logout token: its jti was already used",
            )
        }
        Err(e) => {
            // §2.8: a failed logout is an error response too.
            tracing::error!(provider = %provider.id, error = %e, "back-channel logout failed");
            no_store(
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({ "error": "server_error", "error_description": "the logout could not be performed" })),
                )
                    .into_response(),
            )
        }
    }
}

/// Ends the browser sessions of the link (provider, `sub`), only those of
/// the provider session `sid` when given (or those of `sid` alone), in one
/// transaction; then deletes the ended devices on the homeserver.
///
/// With a `claims_imports.subject.template` (`match_sub` false), links are
/// keyed by the rendered subject, which a logout token cannot reproduce:
/// then only a token with `sid` finds the sessions (so providers should
/// send `sid`).
async fn end_sessions(
    state: &AppState,
    provider_id: Ulid,
    logout: &LogoutToken,
    match_sub: bool,
    with_clients: bool,
) -> Result<(), StorageError> {
    let mut repo = state.repos.write().await?;
    let Some(provider) = repo.upstream_providers().lookup(provider_id).await? else {
        return Ok(());
    };
    // §2.6 item 10: remember the jti until the token expires; a replay is
    // `ConcurrentUpdate` (and nothing of this transaction is saved).
    repo.upstream_providers()
        .record_logout_jti(&provider, &logout.jti, logout.exp)
        .await?;
    // Expired jtis can go (their tokens fail the `exp` check anyway).
    repo.upstream_providers()
        .remove_expired_logout_jtis(state.clock.as_ref())
        .await?;
    // §2.4: `sub` names the user at the provider (our link), `sid` one
    // provider session. A `sub` we have no link for (or none) leaves `sid`
    // alone to find the sessions whose upstream login carried it.
    let link = match logout.sub.as_deref().filter(|_| match_sub) {
        Some(sub) => {
            repo.upstream_links()
                .find_by_subject(&provider, sub)
                .await?
        }
        None => None,
    };
    let sessions = match (link, logout.sid.as_deref()) {
        (Some(link), sid) => {
            repo.browser_sessions()
                .list_active_for_upstream(&link, sid)
                .await?
        }
        (None, Some(sid)) => {
            repo.browser_sessions()
                .list_active_for_upstream_sid(&provider, sid)
                .await?
        }
        (None, None) => return Ok(()),
    };
    let mut rng = state.rng.rng();
    let mut devices = Vec::new();
    let count = sessions.len();
    for bs in sessions {
        devices.extend(
            end_browser_session(&mut repo, state.clock.as_ref(), &mut rng, bs, with_clients)
                .await?,
        );
    }
    repo.save().await?;
    tracing::info!(provider = %provider_id, sessions = count, devices = devices.len(), "back-channel logout");
    delete_devices(state.homeserver.as_ref(), &devices).await;
    Ok(())
}
