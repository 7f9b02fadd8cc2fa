//! The token endpoint's grants (RFC 6749 §4.1.3, §4.4, §6).

use chrono::Duration;
use vestibule_domain::{
    Clock,
    browser_session::BrowserSession,
    device_code::{DeviceCodeGrant, DeviceCodeGrantStage},
    oauth2::{AuthorizationGrant, AuthorizationGrantStage, Client, ClientAuthMethod, Session},
    pkce,
    scope::{self, Scope},
    token_format::TokenFormat,
    tokens::{RefreshToken, token_hash},
    user::User,
};
use vestibule_keys::{KeyError, Keystore};
use vestibule_storage::{BoxRepository, Rng, StorageError};

pub use super::device_code::GRANT_DEVICE_CODE;
use super::{
    device_code::POLL_INTERVAL_SECONDS,
    provisioning::{self, DeviceProvisioning, EndedDevice},
    session::end_oauth_session,
    tokens::{IssuedTokens, TokenSettings, issue_access_token, issue_pair},
};
use crate::id_token::{self, IdTokenClaims};

/// How long after a rotation the old refresh token may be presented again
/// when the response carrying its successor was lost (the successor and its
/// access token still unused).
pub const REFRESH_RETRY_WINDOW: Duration = Duration::seconds(60);

pub const GRANT_AUTHORIZATION_CODE: &str = "authorization_code";
pub const GRANT_REFRESH_TOKEN: &str = "refresh_token";
pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";

/// The token request's parameters, as sent (RFC 6749 §4.1.3, §4.4.2, §6).
#[derive(Debug, Default, Clone)]
pub struct TokenParams {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    pub scope: Option<String>,
    /// RFC 8628 §3.4.
    pub device_code: Option<String>,
}

/// What a flow needs besides the repository and the rng.
pub struct TokenContext<'a> {
    pub clock: &'a dyn Clock,
    pub format: &'a TokenFormat,
    pub settings: &'a TokenSettings,
    pub keystore: &'a Keystore,
    /// The issuer, byte for byte as in the discovery document.
    pub issuer: &'a str,
    /// Whether the presented refresh token was unconsumed when this request
    /// first read it ([`refresh_token_unconsumed`], as soon as the request
    /// arrived). If the exchange then finds it consumed, a request running
    /// at the same time consumed it in between: a race this request lost,
    /// not a retry, whatever the instances' clocks say.
    pub refresh_token_was_unconsumed: bool,
}

/// A successful exchange (RFC 6749 §5.1).
#[derive(Debug)]
pub struct TokenGrantResult {
    pub tokens: IssuedTokens,
    /// The scope granted, in the client's own spelling.
    pub scope: String,
    pub expires_in: i64,
    pub id_token: Option<String>,
}

/// Why a token request failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// RFC 6749 §5.2 `invalid_request`: a required parameter is missing.
    #[error("missing parameter: {0}")]
    MissingParameter(&'static str),
    /// RFC 6749 §5.2 `unsupported_grant_type` (includes `password` and
    /// `implicit`, which RFC 9700 §2.4 forbids).
    #[error("unsupported grant type")]
    UnsupportedGrantType,
    /// RFC 6749 §5.2 `unauthorized_client`: the client may not use this
    /// grant type.
    #[error("{0}")]
    UnauthorizedClient(&'static str),
    /// RFC 6749 §5.2 `invalid_grant`: the code or refresh token is invalid,
    /// expired, revoked, or was issued to another client or redirect URI.
    #[error("{0}")]
    InvalidGrant(&'static str),
    /// RFC 6749 §4.1.2 `invalid_grant`: an authorization code was used twice;
    /// the session the first use created has been ended (its device, if
    /// any, is to be deleted on the homeserver after the commit).
    #[error("the authorization code was already used")]
    CodeReused(Option<EndedDevice>),
    /// RFC 9700 §4.14.2 `invalid_grant`: a rotated refresh token was
    /// replayed; the whole session has been ended (its device, if any, is
    /// to be deleted on the homeserver after the commit).
    #[error("the refresh token was already used")]
    RefreshTokenReplayed(Option<EndedDevice>),
    /// RFC 6749 §5.2 / §6 `invalid_scope`.
    #[error("{0}")]
    InvalidScope(&'static str),
    /// RFC 8628 §3.5 `authorization_pending`: the user has not answered yet
    /// (the poll is recorded: commit).
    #[error("the user has not yet approved the request")]
    AuthorizationPending,
    /// RFC 8628 §3.5 `slow_down`: polled faster than the interval (the poll
    /// is recorded: commit).
    #[error("polling too fast; add 5 seconds to the interval")]
    SlowDown,
    /// RFC 8628 §3.5 `access_denied`: the user denied the request.
    #[error("the user denied the request")]
    AccessDenied,
    /// RFC 8628 §3.5 `expired_token`: the device code has expired.
    #[error("the device code has expired")]
    ExpiredToken,
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The ID token could not be signed (RFC 6749 §5.2 has no code for it:
    /// `server_error`).
    #[error("cannot sign the ID token")]
    Signing(#[from] KeyError),
}

impl TokenError {
    /// Whether the writes done before the error must be committed (they end
    /// a compromised session, or record a device code poll for RFC 8628
    /// §3.5 `slow_down`).
    pub fn must_commit(&self) -> bool {
        matches!(
            self,
            Self::CodeReused(_)
                | Self::RefreshTokenReplayed(_)
                | Self::AuthorizationPending
                | Self::SlowDown
        )
    }

    /// The device of the session this error ended, to delete on the
    /// homeserver once the end is committed.
    pub fn ended_device(&self) -> Option<&EndedDevice> {
        match self {
            Self::CodeReused(d) | Self::RefreshTokenReplayed(d) => d.as_ref(),
            _ => None,
        }
    }
}

/// Runs the grant of a token request for an authenticated client.
///
/// When the tokens are for a Matrix device, the caller must first have made
/// the device exist on the homeserver ([`device_to_provision`], then
/// [`provisioning::ensure_device`]): Synapse refuses a token whose user or
/// device it does not know. That homeserver call happens BEFORE this
/// exchange and outside its write transaction, not inside it with a
/// rollback on failure: the code (or refresh token) is only consumed by
/// the compare-and-set here, so a homeserver outage leaves it untouched
/// and usable for a retry within its lifetime, and no database write lock
/// (all of SQLite's) is held while waiting for the homeserver. The price is
/// that the checks run twice (read-only first) and that a device may be
/// created for an exchange that then loses a race; the loser's session is
/// ended as a code reuse, which schedules a `sync_devices` job.
pub async fn exchange(
    repo: &mut BoxRepository,
    ctx: &TokenContext<'_>,
    rng: Rng<'_>,
    client: &Client,
    params: TokenParams,
) -> Result<TokenGrantResult, TokenError> {
    let grant_type = params
        .grant_type
        .as_deref()
        .ok_or(TokenError::MissingParameter("grant_type"))?;
    let known = [
        GRANT_AUTHORIZATION_CODE,
        GRANT_REFRESH_TOKEN,
        GRANT_CLIENT_CREDENTIALS,
        GRANT_DEVICE_CODE,
    ];
    if !known.contains(&grant_type) {
        return Err(TokenError::UnsupportedGrantType);
    }
    if !client.grant_types.iter().any(|g| g == grant_type) {
        return Err(TokenError::UnauthorizedClient(
            "the client is not allowed to use this grant type",
        ));
    }
    match grant_type {
        GRANT_AUTHORIZATION_CODE => authorization_code(repo, ctx, rng, client, params).await,
        GRANT_REFRESH_TOKEN => refresh_token(repo, ctx, rng, client, params).await,
        GRANT_DEVICE_CODE => device_code(repo, ctx, rng, client, params).await,
        _ => client_credentials(repo, ctx, rng, client, params).await,
    }
}

async fn valid_user(
    repo: &mut BoxRepository,
    session: &Session,
) -> Result<Option<User>, StorageError> {
    let Some(id) = session.user_id else {
        return Ok(None);
    };
    Ok(repo.users().lookup(id).await?.filter(User::is_valid))
}

fn expires_in(settings: &TokenSettings) -> i64 {
    settings.access_token_ttl.num_seconds()
}

/// A code that passed every check, with what it hangs on.
struct UsableCode {
    grant: AuthorizationGrant,
    session: Session,
    user: User,
}

/// What checking an authorization code found.
enum CodeCheck {
    /// Usable: every check of RFC 6749 §4.1.3 and RFC 7636 §4.6 passed.
    Usable(Box<UsableCode>),
    /// Already exchanged: the session it created must be ended.
    Reused(vestibule_domain::Ulid),
}

/// Checks an authorization code for `client` without writing anything, so
/// that it can run both before the homeserver call (in a read transaction)
/// and again in the exchange's write transaction.
async fn check_code(
    repo: &mut BoxRepository,
    ctx: &TokenContext<'_>,
    client: &Client,
    params: &TokenParams,
) -> Result<CodeCheck, TokenError> {
    let code = params
        .code
        .as_deref()
        .ok_or(TokenError::MissingParameter("code"))?;
    let redirect_uri = params
        .redirect_uri
        .as_deref()
        .ok_or(TokenError::MissingParameter("redirect_uri"))?;
    let Some(grant) = repo
        .oauth2_grants()
        .find_by_code_hash(&token_hash(code))
        .await?
    else {
        return Err(TokenError::InvalidGrant("unknown authorization code"));
    };
    // RFC 6749 §4.1.3: the code must have been issued to this client.
    if grant.client_id != client.id {
        return Err(TokenError::InvalidGrant(
            "the authorization code was issued to another client",
        ));
    }
    let (session_id, fulfilled_at) = match &grant.stage {
        AuthorizationGrantStage::Fulfilled {
            session_id,
            fulfilled_at,
        } => (*session_id, *fulfilled_at),
        // RFC 6749 §4.1.2: used twice → revoke what the first use got.
        AuthorizationGrantStage::Exchanged { session_id, .. } => {
            return Ok(CodeCheck::Reused(*session_id));
        }
        AuthorizationGrantStage::Pending | AuthorizationGrantStage::Cancelled { .. } => {
            return Err(TokenError::InvalidGrant(
                "the authorization code is not usable",
            ));
        }
    };
    // The code exists from the moment it is handed out (fulfilment).
    if ctx.clock.now() > fulfilled_at + ctx.settings.authorization_code_ttl {
        return Err(TokenError::InvalidGrant(
            "the authorization code has expired",
        ));
    }
    // RFC 6749 §4.1.3: the same redirect_uri as in the authorization request.
    let same_redirect = url::Url::parse(redirect_uri).is_ok_and(|u| u == grant.redirect_uri);
    if !same_redirect {
        return Err(TokenError::InvalidGrant("redirect_uri does not match"));
    }
    match (&grant.pkce, params.code_verifier.as_deref()) {
        (Some(p), Some(verifier)) => {
            if !pkce::verify(&p.challenge_method, &p.challenge, verifier) {
                return Err(TokenError::InvalidGrant("code_verifier does not match"));
            }
        }
        (Some(_), None) => {
            return Err(TokenError::InvalidGrant("code_verifier is required"));
        }
        // RFC 9700 §4.8.2: a verifier for a code issued without a challenge
        // is a downgrade attempt.
        (None, Some(_)) => {
            return Err(TokenError::InvalidGrant(
                "code_verifier sent but no code_challenge was used",
            ));
        }
        (None, None) => {}
    }
    let Some(session) = repo.oauth2_sessions().lookup(session_id).await? else {
        return Err(TokenError::InvalidGrant("the session is gone"));
    };
    if !session.is_valid() {
        return Err(TokenError::InvalidGrant("the session has ended"));
    }
    let Some(user) = valid_user(repo, &session).await? else {
        return Err(TokenError::InvalidGrant("the user cannot sign in"));
    };
    Ok(CodeCheck::Usable(Box::new(UsableCode {
        grant,
        session,
        user,
    })))
}

/// The Matrix device the token request is about to issue tokens for, if
/// it would succeed: read-only, run before the exchange so the device can
/// be created on the homeserver first (see [`exchange`]). `None` when the
/// grant has no device scope or the request will fail anyway (the exchange
/// then produces the error, and does what the error requires).
pub async fn device_to_provision(
    repo: &mut BoxRepository,
    ctx: &TokenContext<'_>,
    client: &Client,
    params: &TokenParams,
) -> Result<Option<DeviceProvisioning>, TokenError> {
    if !client
        .grant_types
        .iter()
        .any(|g| Some(g) == params.grant_type.as_ref())
    {
        return Ok(None);
    }
    let (session, user) = match params.grant_type.as_deref() {
        Some(GRANT_AUTHORIZATION_CODE) => match check_code(repo, ctx, client, params).await {
            Ok(CodeCheck::Usable(usable)) => (usable.session, usable.user),
            Ok(CodeCheck::Reused(_))
            | Err(TokenError::InvalidGrant(_) | TokenError::MissingParameter(_)) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        },
        Some(GRANT_REFRESH_TOKEN) => match refreshable(repo, ctx, client, params).await? {
            Some(found) => found,
            None => return Ok(None),
        },
        // The session is created by the exchange: the device comes from
        // the grant's scope.
        Some(GRANT_DEVICE_CODE) => {
            return match check_device_code(repo, ctx, client, params).await {
                Ok(DeviceCheck::Ready(ready)) => Ok(provisioning::device_of_scope(
                    repo,
                    &ready.grant.scope,
                    &ready.user,
                    client.client_name.as_deref(),
                )
                .await?),
                Err(e @ TokenError::Storage(_)) => Err(e),
                Ok(DeviceCheck::Pending(_)) | Err(_) => Ok(None),
            };
        }
        _ => return Ok(None),
    };
    Ok(
        provisioning::device_of_session(repo, &session, &user, client.client_name.as_deref())
            .await?,
    )
}

/// Whether the request presents a refresh token that exists and is not
/// consumed yet, read-only. The token endpoint asks this first, before
/// client authentication and before waiting for the write transaction, so
/// that the exchange can tell a race (the token was consumed after this
/// read: one winner, RFC 9700 §4.14.2) from a lost-response retry (it was
/// already consumed when the request arrived) by what the database showed,
/// not by comparing instants from two instances' clocks. Unknown or
/// malformed tokens, and other grants, are `false`: the exchange refuses
/// them on its own.
pub async fn refresh_token_unconsumed(
    repo: &mut BoxRepository,
    format: &TokenFormat,
    params: &TokenParams,
) -> Result<bool, StorageError> {
    if params.grant_type.as_deref() != Some(GRANT_REFRESH_TOKEN) {
        return Ok(false);
    }
    let Some(presented) = params.refresh_token.as_deref() else {
        return Ok(false);
    };
    if format.verify(presented) != Ok(vestibule_domain::token_format::TokenType::RefreshToken) {
        return Ok(false);
    }
    Ok(repo
        .oauth2_refresh_tokens()
        .find_by_hash(&token_hash(presented))
        .await?
        .is_some_and(|t| t.consumed_at.is_none()))
}

/// The session and user of a refresh token that would get new tokens (not
/// revoked, not consumed unless within the lost-response retry window),
/// read-only.
async fn refreshable(
    repo: &mut BoxRepository,
    ctx: &TokenContext<'_>,
    client: &Client,
    params: &TokenParams,
) -> Result<Option<(Session, User)>, StorageError> {
    let Some(presented) = params.refresh_token.as_deref() else {
        return Ok(None);
    };
    if ctx.format.verify(presented) != Ok(vestibule_domain::token_format::TokenType::RefreshToken) {
        return Ok(None);
    }
    let Some(token) = repo
        .oauth2_refresh_tokens()
        .find_by_hash(&token_hash(presented))
        .await?
    else {
        return Ok(None);
    };
    if token.revoked_at.is_some()
        || token
            .consumed_at
            .is_some_and(|c| ctx.clock.now() - c > REFRESH_RETRY_WINDOW)
    {
        return Ok(None);
    }
    let Some(session) = repo.oauth2_sessions().lookup(token.session_id).await? else {
        return Ok(None);
    };
    if session.client_id != client.id || !session.is_valid() {
        return Ok(None);
    }
    Ok(valid_user(repo, &session).await?.map(|u| (session, u)))
}

/// RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.6).
async fn authorization_code(
    repo: &mut BoxRepository,
    ctx: &TokenContext<'_>,
    rng: Rng<'_>,
    client: &Client,
    params: TokenParams,
) -> Result<TokenGrantResult, TokenError> {
    let (grant, session, user) = match check_code(repo, ctx, client, &params).await? {
        CodeCheck::Usable(usable) => {
            let UsableCode {
                grant,
                session,
                user,
            } = *usable;
            (grant, session, user)
        }
        CodeCheck::Reused(session_id) => {
            let ended = end_session_by_id(repo, ctx.clock, rng, session_id).await?;
            return Err(TokenError::CodeReused(ended));
        }
    };
    let session_id = session.id;
    // The compare-and-set: one winner among concurrent exchanges.
    let exchanged = repo
        .oauth2_grants()
        .exchange(ctx.clock, grant.clone())
        .await;
    match exchanged {
        Ok(_) => {}
        Err(StorageError::ConcurrentUpdate(_) | StorageError::InvalidTransition(_)) => {
            let ended = end_session_by_id(repo, ctx.clock, rng, session_id).await?;
            return Err(TokenError::CodeReused(ended));
        }
        Err(e) => return Err(e.into()),
    }
    // A refresh token only for a client that may use it.
    let tokens = if client.grant_types.iter().any(|g| g == GRANT_REFRESH_TOKEN) {
        issue_pair(
            repo,
            ctx.clock,
            rng,
            ctx.format,
            ctx.settings,
            &session,
            None,
        )
        .await?
    } else {
        issue_access_token(
            repo,
            ctx.clock,
            rng,
            ctx.format,
            ctx.settings,
            &session,
            None,
        )
        .await?
    };
    let id_token = id_token_for(
        repo,
        ctx,
        client,
        &session,
        &user,
        grant.nonce.as_deref(),
        &tokens,
    )
    .await?;
    Ok(TokenGrantResult {
        tokens,
        scope: session.scope.clone(),
        expires_in: expires_in(ctx.settings),
        id_token,
    })
}

/// The ID token of a code or device code exchange, when the session has
/// the `openid` scope (OpenID Connect Core §3.1.3.3).
async fn id_token_for(
    repo: &mut BoxRepository,
    ctx: &TokenContext<'_>,
    client: &Client,
    session: &Session,
    user: &User,
    nonce: Option<&str>,
    tokens: &IssuedTokens,
) -> Result<Option<String>, TokenError> {
    Ok(if session.scopes().any(|s| s == scope::OPENID) {
        let browser_session = match session.browser_session_id {
            Some(id) => repo.browser_sessions().lookup(id).await?,
            None => None,
        };
        let auth_time = match browser_session {
            Some(bs) => repo
                .browser_sessions()
                .last_authentication(&bs)
                .await?
                .map(|a| a.created_at),
            None => None,
        };
        let attributes = if session.scopes().any(|s| s == scope::PROFILE) {
            repo.user_attributes().all(user).await?
        } else {
            std::collections::BTreeMap::new()
        };
        Some(id_token::sign(
            ctx.keystore,
            &IdTokenClaims {
                issuer: ctx.issuer,
                client,
                user,
                nonce,
                auth_time,
                access_token: &tokens.access_token,
                issued_at: ctx.clock.now(),
                attributes: &attributes,
            },
        )?)
    } else {
        None
    })
}

/// A device code the user approved, with what it hangs on.
struct ReadyDeviceCode {
    grant: DeviceCodeGrant,
    user: User,
    browser_session: BrowserSession,
}

/// What checking a device code found.
enum DeviceCheck {
    /// The user has not answered yet.
    Pending(DeviceCodeGrant),
    /// Approved and exchangeable.
    Ready(Box<ReadyDeviceCode>),
}

/// Checks a device code for `client` without writing anything (RFC 8628
/// §3.4, §3.5), so that it can run both before the homeserver call and in
/// the exchange's write transaction.
async fn check_device_code(
    repo: &mut BoxRepository,
    ctx: &TokenContext<'_>,
    client: &Client,
    params: &TokenParams,
) -> Result<DeviceCheck, TokenError> {
    let code = params
        .device_code
        .as_deref()
        .ok_or(TokenError::MissingParameter("device_code"))?;
    let Some(grant) = repo
        .device_code_grants()
        .find_by_device_code_hash(&token_hash(code))
        .await?
    else {
        return Err(TokenError::InvalidGrant("unknown device code"));
    };
    // RFC 8628 §3.4 with RFC 6749 §5.2: a code of another client is
    // invalid_grant, revealing nothing about its state.
    if grant.client_id != client.id {
        return Err(TokenError::InvalidGrant(
            "the device code was issued to another client",
        ));
    }
    if matches!(grant.stage, DeviceCodeGrantStage::Exchanged { .. }) {
        return Err(TokenError::InvalidGrant("the device code was already used"));
    }
    // RFC 8628 §3.5 `expired_token`: past `expires_in`, whatever the answer.
    if grant.is_expired(ctx.clock.now()) {
        return Err(TokenError::ExpiredToken);
    }
    let browser_session_id = match &grant.stage {
        DeviceCodeGrantStage::Pending => return Ok(DeviceCheck::Pending(grant)),
        DeviceCodeGrantStage::Rejected { .. } => return Err(TokenError::AccessDenied),
        DeviceCodeGrantStage::Fulfilled {
            browser_session_id, ..
        } => *browser_session_id,
        DeviceCodeGrantStage::Exchanged { .. } => {
            return Err(TokenError::InvalidGrant("the device code was already used"));
        }
    };
    // The approval counts only while the browser session that gave it
    // lives: signing out there (or a back-channel logout) before the
    // device's next poll withdraws it.
    let Some(browser_session) = repo
        .browser_sessions()
        .lookup(browser_session_id)
        .await?
        .filter(BrowserSession::is_active)
    else {
        return Err(TokenError::InvalidGrant(
            "the browser session that approved has ended",
        ));
    };
    let Some(user) = repo
        .users()
        .lookup(browser_session.user_id)
        .await?
        .filter(User::is_valid)
    else {
        return Err(TokenError::InvalidGrant("the user cannot sign in"));
    };
    Ok(DeviceCheck::Ready(Box::new(ReadyDeviceCode {
        grant,
        user,
        browser_session,
    })))
}

/// RFC 8628 §3.4: exchanges an approved device code once; while the user
/// has not answered, records the poll and answers `authorization_pending`
/// or `slow_down` (§3.5).
async fn device_code(
    repo: &mut BoxRepository,
    ctx: &TokenContext<'_>,
    rng: Rng<'_>,
    client: &Client,
    params: TokenParams,
) -> Result<TokenGrantResult, TokenError> {
    let ready = match check_device_code(repo, ctx, client, &params).await? {
        DeviceCheck::Pending(grant) => {
            let previous = repo
                .device_code_grants()
                .record_poll(ctx.clock, &grant)
                .await?;
            // §3.5: polling faster than `interval` → slow_down. One second
            // of leeway: the client's clock measures from our response, we
            // measure between the requests' database writes.
            let min_gap = Duration::seconds(POLL_INTERVAL_SECONDS - 1);
            return Err(match previous {
                Some(at) if ctx.clock.now() - at < min_gap => TokenError::SlowDown,
                _ => TokenError::AuthorizationPending,
            });
        }
        DeviceCheck::Ready(ready) => *ready,
    };
    let ReadyDeviceCode {
        grant,
        user,
        browser_session,
    } = ready;
    // The session belongs to the browser session that approved.
    let session = repo
        .oauth2_sessions()
        .add(
            rng,
            ctx.clock,
            client,
            Some(&user),
            Some(&browser_session),
            &grant.scope,
        )
        .await?;
    // The compare-and-set: the device code is exchanged once.
    match repo
        .device_code_grants()
        .exchange(ctx.clock, grant, &session)
        .await
    {
        Ok(_) => {}
        Err(StorageError::ConcurrentUpdate(_) | StorageError::InvalidTransition(_)) => {
            return Err(TokenError::InvalidGrant("the device code was already used"));
        }
        Err(e) => return Err(e.into()),
    }
    let tokens = if client.grant_types.iter().any(|g| g == GRANT_REFRESH_TOKEN) {
        issue_pair(
            repo,
            ctx.clock,
            rng,
            ctx.format,
            ctx.settings,
            &session,
            None,
        )
        .await?
    } else {
        issue_access_token(
            repo,
            ctx.clock,
            rng,
            ctx.format,
            ctx.settings,
            &session,
            None,
        )
        .await?
    };
    let id_token = id_token_for(repo, ctx, client, &session, &user, None, &tokens).await?;
    Ok(TokenGrantResult {
        tokens,
        scope: session.scope.clone(),
        expires_in: expires_in(ctx.settings),
        id_token,
    })
}

async fn end_session_by_id(
    repo: &mut BoxRepository,
    clock: &dyn Clock,
    rng: Rng<'_>,
    id: vestibule_domain::Ulid,
) -> Result<Option<EndedDevice>, StorageError> {
    let session = repo.oauth2_sessions().lookup(id).await?;
    match session {
        Some(session) => end_oauth_session(repo, clock, rng, session).await,
        None => Ok(None),
    }
}

/// RFC 6749 §6: the requested scope must be a subset of the granted one.
/// Returns the access token's own scope when narrower (`None`: the session's).
fn narrowed_scope(
    session: &Session,
    requested: Option<&str>,
) -> Result<Option<String>, TokenError> {
    let Some(requested) = requested else {
        return Ok(None);
    };
    let wanted = Scope::parse(requested).map_err(|_| TokenError::InvalidScope("invalid scope"))?;
    let granted = Scope::parse(&session.scope)
        .map_err(|_| TokenError::InvalidScope("the session has no scope to narrow"))?;
    if !wanted.is_subset(&granted) {
        return Err(TokenError::InvalidScope(
            "the requested scope exceeds the granted scope",
        ));
    }
    if wanted == granted {
        Ok(None)
    } else {
        // The client's own spelling and order.
        Ok(Some(
            requested
                .split(' ')
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" "),
        ))
    }
}

/// RFC 6749 §6 with rotation (RFC 9700 §4.14.2).
async fn refresh_token(
    repo: &mut BoxRepository,
    ctx: &TokenContext<'_>,
    rng: Rng<'_>,
    client: &Client,
    params: TokenParams,
) -> Result<TokenGrantResult, TokenError> {
    let presented = params
        .refresh_token
        .ok_or(TokenError::MissingParameter("refresh_token"))?;
    let invalid = TokenError::InvalidGrant("invalid refresh token");
    if ctx.format.verify(&presented) != Ok(vestibule_domain::token_format::TokenType::RefreshToken)
    {
        return Err(invalid);
    }
    let Some(token) = repo
        .oauth2_refresh_tokens()
        .find_by_hash(&token_hash(&presented))
        .await?
    else {
        return Err(invalid);
    };
    let Some(session) = repo.oauth2_sessions().lookup(token.session_id).await? else {
        return Err(invalid);
    };
    // RFC 6749 §6: bound to the client it was issued to.
    if session.client_id != client.id {
        return Err(TokenError::InvalidGrant(
            "the refresh token was issued to another client",
        ));
    }
    if !session.is_valid() {
        return Err(TokenError::InvalidGrant("the session has ended"));
    }
    if valid_user(repo, &session).await?.is_none() {
        return Err(TokenError::InvalidGrant("the user cannot sign in"));
    }
    let now = ctx.clock.now();
    if token.revoked_at.is_some() {
        // Only a successor revoked by a lost-response retry is revoked in a
        // live session: whoever holds it was not the retrying client.
        let ended = end_oauth_session(repo, ctx.clock, rng, session).await?;
        return Err(TokenError::RefreshTokenReplayed(ended));
    }
    let scope = narrowed_scope(&session, params.scope.as_deref())?;
    if let Some(consumed_at) = token.consumed_at {
        if ctx.refresh_token_was_unconsumed {
            // Consumed by a request that ran at the same time as this one:
            // the other request won the race (RFC 9700 §4.14.2 one winner).
            return Err(TokenError::InvalidGrant(
                "the refresh token was used by a concurrent request",
            ));
        }
        if now - consumed_at <= REFRESH_RETRY_WINDOW
            && retire_unused_successor(repo, ctx.clock, &token).await?
        {
            // The response carrying the successor was lost: a new pair,
            // once (the successor is now revoked, so a second retry is a
            // replay).
            let tokens = issue_pair(
                repo,
                ctx.clock,
                rng,
                ctx.format,
                ctx.settings,
                &session,
                scope.as_deref(),
            )
            .await?;
            return Ok(refresh_result(ctx, &session, tokens, scope));
        }
        // RFC 9700 §4.14.2: replay of a rotated token → end the session.
        let ended = end_oauth_session(repo, ctx.clock, rng, session).await?;
        return Err(TokenError::RefreshTokenReplayed(ended));
    }
    if let Some(ttl) = ctx.settings.refresh_token_ttl
        && now >= token.created_at + ttl
    {
        return Err(TokenError::InvalidGrant("the refresh token has expired"));
    }
    let tokens = issue_pair(
        repo,
        ctx.clock,
        rng,
        ctx.format,
        ctx.settings,
        &session,
        scope.as_deref(),
    )
    .await?;
    let Some(next) = &tokens.refresh else {
        return Err(TokenError::InvalidGrant("no refresh token was issued"));
    };
    match repo
        .oauth2_refresh_tokens()
        .consume(ctx.clock, token, next)
        .await
    {
        Ok(_) => Ok(refresh_result(ctx, &session, tokens, scope)),
        // Lost the compare-and-set to a concurrent refresh (PostgreSQL).
        Err(StorageError::ConcurrentUpdate(_)) => Err(TokenError::InvalidGrant(
            "the refresh token was used by a concurrent request",
        )),
        Err(e) => Err(e.into()),
    }
}

/// If the consumed token's successor and the successor's access token were
/// never used, revokes both (compare-and-set) and returns `true`.
async fn retire_unused_successor(
    repo: &mut BoxRepository,
    clock: &dyn Clock,
    token: &RefreshToken,
) -> Result<bool, StorageError> {
    let Some(next_id) = token.next_refresh_token_id else {
        return Ok(false);
    };
    let Some(next) = repo.oauth2_refresh_tokens().lookup(next_id).await? else {
        return Ok(false);
    };
    if !next.is_valid() {
        return Ok(false);
    }
    let Some(at_id) = next.access_token_id else {
        return Ok(false);
    };
    let Some(access) = repo.oauth2_access_tokens().lookup(at_id).await? else {
        return Ok(false);
    };
    if access.first_used_at.is_some() || access.revoked_at.is_some() {
        return Ok(false);
    }
    match repo
        .oauth2_access_tokens()
        .revoke_if_unused(clock, access)
        .await
    {
        Ok(_) => {}
        Err(StorageError::ConcurrentUpdate(_)) => return Ok(false),
        Err(e) => return Err(e),
    }
    match repo
        .oauth2_refresh_tokens()
        .revoke_if_unused(clock, next)
        .await
    {
        Ok(_) => Ok(true),
        Err(StorageError::ConcurrentUpdate(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

fn refresh_result(
    ctx: &TokenContext<'_>,
    session: &Session,
    tokens: IssuedTokens,
    scope: Option<String>,
) -> TokenGrantResult {
    TokenGrantResult {
        tokens,
        scope: scope.unwrap_or_else(|| session.scope.clone()),
        expires_in: expires_in(ctx.settings),
        id_token: None,
    }
}

/// Scopes that only make sense with a user, or that need an admin's say-so:
/// never granted to a client acting for itself.
fn user_only_scope(token: &str) -> bool {
    token == scope::OPENID
        || token == scope::EMAIL
        || token == scope::PROFILE
        || token == scope::MATRIX_API_STABLE
        || token == scope::MATRIX_API_UNSTABLE
        || token == scope::SYNAPSE_ADMIN
        || token == scope::MAS_ADMIN
        || token.starts_with(scope::MATRIX_DEVICE_STABLE_PREFIX)
        || token.starts_with(scope::MATRIX_DEVICE_UNSTABLE_PREFIX)
}

/// RFC 6749 §4.4: a confidential client acting for itself; an access token
/// only (§4.4.3: no refresh token).
async fn client_credentials(
    repo: &mut BoxRepository,
    ctx: &TokenContext<'_>,
    rng: Rng<'_>,
    client: &Client,
    params: TokenParams,
) -> Result<TokenGrantResult, TokenError> {
    // RFC 6749 §4.4.2: "MUST only be used by confidential clients".
    if client.token_endpoint_auth_method == ClientAuthMethod::None {
        return Err(TokenError::UnauthorizedClient(
            "client_credentials is for confidential clients only",
        ));
    }
    let scope = match params.scope.as_deref() {
        None => String::new(),
        Some(s) if s.trim().is_empty() => String::new(),
        Some(s) => {
            let parsed = Scope::parse(s).map_err(|_| TokenError::InvalidScope("invalid scope"))?;
            if parsed.iter().any(user_only_scope) {
                return Err(TokenError::InvalidScope(
                    "this scope cannot be granted without a user",
                ));
            }
            s.split(' ')
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    let session = repo
        .oauth2_sessions()
        .add(rng, ctx.clock, client, None, None, &scope)
        .await?;
    let tokens = issue_access_token(
        repo,
        ctx.clock,
        rng,
        ctx.format,
        ctx.settings,
        &session,
        None,
    )
    .await?;
    Ok(TokenGrantResult {
        tokens,
        scope,
        expires_in: expires_in(ctx.settings),
        id_token: None,
    })
}
