//! Issuing and resolving OAuth 2.0 access and refresh tokens.

use chrono::Duration;
use vestibule_config::Config;
use vestibule_domain::{
    Clock,
    oauth2::{Client, Session},
    token_format::{TokenFormat, TokenType},
    tokens::{AccessToken, RefreshToken, token_hash},
    user::User,
};
use vestibule_storage::{BoxRepository, Rng, StorageError};

/// Lifetimes that govern the token endpoint.
#[derive(Debug, Clone, Copy)]
pub struct TokenSettings {
    /// `experimental.access_token_ttl`.
    pub access_token_ttl: Duration,
    /// `oauth.refresh_token_ttl` (unset: refresh tokens only rotate).
    pub refresh_token_ttl: Option<Duration>,
    /// `oauth.authorization_code_ttl`.
    pub authorization_code_ttl: Duration,
}

fn seconds(s: u64) -> Duration {
    Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000))
}

impl TokenSettings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            access_token_ttl: seconds(config.access_token_ttl()),
            refresh_token_ttl: config.oauth.refresh_token_ttl.map(seconds),
            authorization_code_ttl: seconds(config.oauth.authorization_code_ttl),
        }
    }
}

/// A freshly minted access token (and refresh token). The plaintext tokens
/// exist only here, on their way to the client.
pub struct IssuedTokens {
    pub access_token: String,
    pub access: AccessToken,
    pub refresh_token: Option<String>,
    pub refresh: Option<RefreshToken>,
}

impl std::fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedTokens")
            .field("access", &self.access)
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

/// Mints an access token (`mat_`) for the session; only its hash is stored.
/// `scope` is `Some` when narrower than the session's.
pub async fn issue_access_token(
    repo: &mut BoxRepository,
    clock: &dyn Clock,
    rng: Rng<'_>,
    format: &TokenFormat,
    settings: &TokenSettings,
    session: &Session,
    scope: Option<&str>,
) -> Result<IssuedTokens, StorageError> {
    let access_token = format.generate(TokenType::AccessToken, rng);
    let access = repo
        .oauth2_access_tokens()
        .add_with_scope(
            rng,
            clock,
            session,
            &token_hash(&access_token),
            Some(settings.access_token_ttl),
            scope,
        )
        .await?;
    Ok(IssuedTokens {
        access_token,
        access,
        refresh_token: None,
        refresh: None,
    })
}

/// Mints an access token and a refresh token (`mar_`) bound to it.
pub async fn issue_pair(
    repo: &mut BoxRepository,
    clock: &dyn Clock,
    rng: Rng<'_>,
    format: &TokenFormat,
    settings: &TokenSettings,
    session: &Session,
    scope: Option<&str>,
) -> Result<IssuedTokens, StorageError> {
    let mut issued = issue_access_token(repo, clock, rng, format, settings, session, scope).await?;
    let refresh_token = format.generate(TokenType::RefreshToken, rng);
    let refresh = repo
        .oauth2_refresh_tokens()
        .add(
            rng,
            clock,
            session,
            &issued.access,
            &token_hash(&refresh_token),
        )
        .await?;
    issued.refresh_token = Some(refresh_token);
    issued.refresh = Some(refresh);
    Ok(issued)
}

/// Which kind of token a caller presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FoundToken {
    Access(AccessToken),
    Refresh(RefreshToken),
}

/// A token that is valid right now, with everything it hangs on.
#[derive(Debug, Clone)]
pub struct ActiveToken {
    pub token: FoundToken,
    pub session: Session,
    pub client: Client,
    pub user: Option<User>,
    /// The token's effective scope (its own, or its session's).
    pub scope: String,
}

/// Finds an OAuth 2.0 access or refresh token by its plaintext. A token
/// whose format or MAC check fails is `None` without touching the database
/// (forged tokens die before it); other kinds (compat, personal) are `None`.
pub async fn find_token(
    repo: &mut BoxRepository,
    format: &TokenFormat,
    token: &str,
) -> Result<Option<FoundToken>, StorageError> {
    let Ok(kind) = format.verify(token) else {
        return Ok(None);
    };
    let hash = token_hash(token);
    Ok(match kind {
        TokenType::AccessToken => repo
            .oauth2_access_tokens()
            .find_by_hash(&hash)
            .await?
            .map(FoundToken::Access),
        TokenType::RefreshToken => repo
            .oauth2_refresh_tokens()
            .find_by_hash(&hash)
            .await?
            .map(FoundToken::Refresh),
        TokenType::CompatAccessToken
        | TokenType::CompatRefreshToken
        | TokenType::PersonalAccessToken => None,
    })
}

impl FoundToken {
    pub fn session_id(&self) -> vestibule_domain::Ulid {
        match self {
            Self::Access(t) => t.session_id,
            Self::Refresh(t) => t.session_id,
        }
    }
}

/// Whether a found token is active now (RFC 7662 §2.2): not revoked, not
/// expired (refresh tokens: not consumed, not older than the refresh
/// lifetime), its session not finished, its user neither locked nor
/// deactivated (ASVS 7.4.2).
pub async fn resolve_active(
    repo: &mut BoxRepository,
    clock: &dyn Clock,
    settings: &TokenSettings,
    token: FoundToken,
) -> Result<Option<ActiveToken>, StorageError> {
    let now = clock.now();
    let valid = match &token {
        FoundToken::Access(t) => t.is_valid(now),
        FoundToken::Refresh(t) => {
            t.is_valid()
                && settings
                    .refresh_token_ttl
                    .is_none_or(|ttl| now < t.created_at + ttl)
        }
    };
    if !valid {
        return Ok(None);
    }
    let Some(session) = repo.oauth2_sessions().lookup(token.session_id()).await? else {
        return Ok(None);
    };
    if !session.is_valid() {
        return Ok(None);
    }
    let user = match session.user_id {
        Some(id) => match repo.users().lookup(id).await? {
            Some(user) if user.is_valid() => Some(user),
            _ => return Ok(None),
        },
        None => None,
    };
    let Some(client) = repo.oauth2_clients().lookup(session.client_id).await? else {
        return Ok(None);
    };
    let scope = match &token {
        FoundToken::Access(t) => t.scope.clone().unwrap_or_else(|| session.scope.clone()),
        FoundToken::Refresh(_) => session.scope.clone(),
    };
    Ok(Some(ActiveToken {
        token,
        session,
        client,
        user,
        scope,
    }))
}
