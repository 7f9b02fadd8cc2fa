//! RFC 7662 token introspection, shaped for Synapse (`synapse/api/auth/mas.py`).

use vestibule_domain::{
    Clock,
    scope::{MATRIX_DEVICE_STABLE_PREFIX, Scope},
    token_format::{TokenFormat, TokenType},
    tokens::token_hash,
};
use vestibule_storage::{BoxRepository, RepositoryFactory, StorageError};

use super::tokens::{FoundToken, TokenSettings, find_token, resolve_active};

/// An active token's description (RFC 7662 §2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveIntrospection {
    pub scope: String,
    pub client_id: String,
    /// The Matrix localpart (absent for a client acting for itself).
    pub username: Option<String>,
    /// The user's id (absent for a client acting for itself).
    pub sub: Option<String>,
    /// `access_token` or `refresh_token`.
    pub token_type: &'static str,
    /// Unix seconds; `None` when the token never expires.
    pub exp: Option<i64>,
    /// Seconds left, never negative (Synapse prefers it over `exp`, which
    /// suffers from clock skew); `None` when the token never expires.
    pub expires_in: Option<i64>,
    pub iat: i64,
    /// Only when the caller said it understands it
    /// (`X-MAS-Supports-Device-Id: 1`) and the scope has a device.
    pub device_id: Option<String>,
}

/// The answer: active with its description, or just inactive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Introspection {
    Inactive,
    Active(Box<ActiveIntrospection>),
}

/// Introspects `token`. A token failing the format/MAC check is inactive
/// before any database access. The first use of an access token is
/// recorded (only when unset, so the hot path stays read-only).
pub async fn introspect(
    repos: &dyn RepositoryFactory,
    clock: &dyn Clock,
    format: &TokenFormat,
    settings: &TokenSettings,
    token: &str,
    supports_device_id: bool,
) -> Result<Introspection, StorageError> {
    let Ok(kind) = format.verify(token) else {
        return Ok(Introspection::Inactive);
    };
    let mut repo = repos.read().await?;
    if kind == TokenType::CompatAccessToken {
        return introspect_compat(&mut repo, clock, token, supports_device_id).await;
    }
    let Some(found) = find_token(&mut repo, format, token).await? else {
        return Ok(Introspection::Inactive);
    };
    let Some(active) = resolve_active(&mut repo, clock, settings, found).await? else {
        return Ok(Introspection::Inactive);
    };
    drop(repo);
    let now = clock.now();
    let (token_type, iat, expires_at) = match &active.token {
        FoundToken::Access(t) => ("access_token", t.created_at, t.expires_at),
        FoundToken::Refresh(t) => (
            "refresh_token",
            t.created_at,
            settings.refresh_token_ttl.map(|ttl| t.created_at + ttl),
        ),
    };
    if let FoundToken::Access(t) = &active.token
        && t.first_used_at.is_none()
    {
        let mut repo = repos.write().await?;
        repo.oauth2_access_tokens()
            .mark_used(clock, t.clone())
            .await?;
        repo.save().await?;
    }
    let device_id = if supports_device_id {
        Scope::parse(&active.scope)
            .ok()
            .and_then(|s| s.device_id().map(str::to_owned))
    } else {
        None
    };
    Ok(Introspection::Active(Box::new(ActiveIntrospection {
        scope: active.scope,
        client_id: active.client.client_id,
        username: active.user.as_ref().map(|u| u.username.clone()),
        sub: active.user.as_ref().map(|u| u.id.to_string()),
        token_type,
        exp: expires_at.map(|e| e.timestamp()),
        expires_in: expires_at.map(|e| (e - now).num_seconds().max(0)),
        iat: iat.timestamp(),
        device_id,
    })))
}

/// What MAS answers as the `client_id` of a compat (`/login`) token.
pub const COMPAT_CLIENT_ID: &str = "legacy";

/// A compat access token (`mct_`): active while unexpired, its session not
/// finished and its user neither locked nor deactivated. Its scope is the
/// full client API and its device (plus `urn:synapse:admin:*` for an admin
/// session), as MAS answers.
async fn introspect_compat(
    repo: &mut BoxRepository,
    clock: &dyn Clock,
    token: &str,
    supports_device_id: bool,
) -> Result<Introspection, StorageError> {
    let now = clock.now();
    let Some(access) = repo
        .compat_access_tokens()
        .find_by_hash(&token_hash(token))
        .await?
        .filter(|t| t.expires_at.is_none_or(|e| now < e))
    else {
        return Ok(Introspection::Inactive);
    };
    let Some(session) = repo
        .compat_sessions()
        .lookup(access.session_id)
        .await?
        .filter(vestibule_domain::compat::CompatSession::is_valid)
    else {
        return Ok(Introspection::Inactive);
    };
    let Some(user) = repo
        .users()
        .lookup(session.user_id)
        .await?
        .filter(vestibule_domain::user::User::is_valid)
    else {
        return Ok(Introspection::Inactive);
    };
    let mut scope = format!(
        "urn:matrix:client:api:* {MATRIX_DEVICE_STABLE_PREFIX}{}",
        session.device_id
    );
    if session.is_synapse_admin {
        scope.push_str(" urn:synapse:admin:*");
    }
    Ok(Introspection::Active(Box::new(ActiveIntrospection {
        scope,
        client_id: COMPAT_CLIENT_ID.to_owned(),
        username: Some(user.username),
        sub: Some(user.id.to_string()),
        token_type: "access_token",
        exp: access.expires_at.map(|e| e.timestamp()),
        expires_in: access.expires_at.map(|e| (e - now).num_seconds().max(0)),
        iat: access.created_at.timestamp(),
        device_id: supports_device_id.then_some(session.device_id),
    })))
}
