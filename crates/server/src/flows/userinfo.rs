//! OpenID Connect Core §5.3 UserInfo.

use vestibule_domain::{Clock, scope, token_format::TokenFormat};
use vestibule_storage::{RepositoryFactory, StorageError};

use super::tokens::{FoundToken, TokenSettings, find_token, resolve_active};

/// The claims returned (OIDC Core §5.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Userinfo {
    pub sub: String,
    /// The Matrix localpart.
    pub username: String,
    /// The user's first email, only with the `email` scope (OIDC Core §5.4).
    pub email: Option<String>,
    /// The user's attributes (e.g. `tenant_id`), only with the `profile`
    /// scope; see [`crate::id_token::attribute_claims`].
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// Why a UserInfo request failed.
#[derive(Debug, thiserror::Error)]
pub enum UserinfoError {
    /// RFC 6750 §3.1 `invalid_token`: missing, malformed, expired or revoked
    /// access token, or one without a user.
    #[error("the access token is invalid")]
    InvalidToken,
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub async fn userinfo(
    repos: &dyn RepositoryFactory,
    clock: &dyn Clock,
    format: &TokenFormat,
    settings: &TokenSettings,
    token: &str,
) -> Result<Userinfo, UserinfoError> {
    if format.verify(token).is_err() {
        return Err(UserinfoError::InvalidToken);
    }
    let mut repo = repos.write().await?;
    let Some(found @ FoundToken::Access(_)) = find_token(&mut repo, format, token).await? else {
        return Err(UserinfoError::InvalidToken);
    };
    let Some(active) = resolve_active(&mut repo, clock, settings, found).await? else {
        return Err(UserinfoError::InvalidToken);
    };
    let Some(user) = active.user else {
        return Err(UserinfoError::InvalidToken);
    };
    if let FoundToken::Access(t) = active.token
        && t.first_used_at.is_none()
    {
        repo.oauth2_access_tokens().mark_used(clock, t).await?;
    }
    let email = if active.scope.split(' ').any(|s| s == scope::EMAIL) {
        repo.user_emails()
            .all(&user)
            .await?
            .into_iter()
            .next()
            .map(|e| e.email)
    } else {
        None
    };
    let attributes = if active.scope.split(' ').any(|s| s == scope::PROFILE) {
        repo.user_attributes().all(&user).await?
    } else {
        std::collections::BTreeMap::new()
    };
    repo.save().await?;
    Ok(Userinfo {
        sub: user.id.to_string(),
        username: user.username,
        email,
        attributes,
    })
}
