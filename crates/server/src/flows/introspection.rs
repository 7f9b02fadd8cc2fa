//! RFC 7662 token introspection, shaped for Synapse (`synapse/api/auth/mas.py`).

use vestibule_domain::{Clock, scope::Scope, token_format::TokenFormat};
use vestibule_storage::{RepositoryFactory, StorageError};

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
    if format.verify(token).is_err() {
        return Ok(Introspection::Inactive);
    }
    let mut repo = repos.read().await?;
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
