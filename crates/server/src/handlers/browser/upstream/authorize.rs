//! `GET /upstream/authorize/{provider_id}`: starts a login through an
//! upstream provider. Creates the upstream authorization session (random
//! `state`, `nonce` and PKCE verifier, and what the login continues), lists
//! it in this browser's upstream cookie and sends the browser to the
//! provider (OIDC Core §3.1.2.1).

use axum::{
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use serde::Deserialize;
use vestibule_config::UpstreamProviderConfig;
use vestibule_domain::Ulid;
use vestibule_storage::{BoxRepository, StorageError};

use crate::{
    AppState,
    extract::parse_unique,
    handlers::browser::{PageOpts, account::return_path, error_page, internal, redirect_to},
    upstream::{
        PostAuthAction,
        client::{AuthorizationRequest, authorization_url, random_string, use_pkce},
        cookie,
        provider::{callback_url, enabled_provider},
    },
};

#[derive(Debug, Default, Deserialize)]
struct Query {
    grant: Option<String>,
    compat_sso: Option<String>,
    next: Option<String>,
}

/// What the login continues: a grant or a legacy SSO login by id, or an
/// account page that `return_path` accepts (never an arbitrary path: S23).
fn post_auth_action(q: &Query) -> Option<PostAuthAction> {
    let id = |s: &Option<String>| s.as_deref().and_then(|v| Ulid::from_string(v).ok());
    if let Some(id) = id(&q.grant) {
        return Some(PostAuthAction::ContinueGrant { id });
    }
    if let Some(id) = id(&q.compat_sso) {
        return Some(PostAuthAction::ContinueCompatSso { id });
    }
    q.next
        .as_deref()
        .and_then(return_path)
        .map(|path| PostAuthAction::Account { path })
}

/// The `login_hint` the Matrix client gave the grant this login continues,
/// passed on as given (e.g. MSC4198's `mxid:@user:server`) when the
/// provider has `forward_login_hint`, as MAS does; the provider reads it as
/// it sees fit (OIDC Core §3.1.2.1). Nothing for other continuations.
async fn forwarded_login_hint(
    provider: &UpstreamProviderConfig,
    repo: &mut BoxRepository,
    q: &Query,
) -> Result<Option<String>, StorageError> {
    if !provider.forward_login_hint {
        return Ok(None);
    }
    let Some(PostAuthAction::ContinueGrant { id }) = post_auth_action(q) else {
        return Ok(None);
    };
    Ok(repo
        .oauth2_grants()
        .lookup(id)
        .await?
        .and_then(|g| g.login_hint))
}

pub(super) async fn get(
    State(state): State<AppState>,
    Path(provider_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let not_found = || {
        error_page(
            &state,
            StatusCode::NOT_FOUND,
            "This sign-in provider does not exist or is disabled.",
            None,
        )
    };
    let Some(provider) = enabled_provider(&state.config, &provider_id) else {
        return not_found();
    };
    let Ok(id) = Ulid::from_string(&provider.id) else {
        return not_found();
    };
    let Ok(q) = parse_unique::<Query>(query.unwrap_or_default().as_bytes()) else {
        return error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "This sign-in link is malformed.",
            None,
        );
    };

    let metadata = match state.upstream.metadata(provider).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(provider = %provider.id, error = %e, "upstream metadata unavailable");
            return error_page(
                &state,
                StatusCode::BAD_GATEWAY,
                &format!("Signing in with this provider is not possible right now: {e}."),
                None,
            );
        }
    };

    let mut rng = state.rng.rng();
    let st = random_string(&mut rng, 32);
    let nonce = random_string(&mut rng, 32);
    let verifier = use_pkce(provider, &metadata).then(|| random_string(&mut rng, 64));
    let action = post_auth_action(&q).map(|a| a.to_json());

    let mut repo = match state.repos.write().await {
        Ok(r) => r,
        Err(e) => return internal(&state, &e),
    };
    let db_provider = match repo.upstream_providers().lookup(id).await {
        Ok(Some(p)) if p.disabled_at.is_none() => p,
        Ok(_) => return not_found(),
        Err(e) => return internal(&state, &e),
    };
    let login_hint = match forwarded_login_hint(provider, &mut repo, &q).await {
        Ok(h) => h,
        Err(e) => return internal(&state, &e),
    };
    let session = match repo
        .upstream_sessions()
        .add(
            &mut rng,
            state.clock.as_ref(),
            &db_provider,
            &st,
            verifier.as_deref(),
            Some(&nonce),
            action.as_deref(),
        )
        .await
    {
        Ok(s) => s,
        Err(e) => return internal(&state, &e),
    };
    if let Err(e) = repo.save().await {
        return internal(&state, &e);
    }

    let redirect_uri = callback_url(&state.urls, &provider.id);
    let url = authorization_url(
        provider,
        &metadata,
        &AuthorizationRequest {
            redirect_uri: &redirect_uri,
            state: &st,
            nonce: &nonce,
            code_verifier: verifier.as_deref(),
            login_hint: login_hint.as_deref(),
        },
    );
    let mut opts = PageOpts::default();
    opts.cookies
        .extend(cookie::add(&state, &headers, session.id));
    redirect_to(&state, &url, &opts)
}
