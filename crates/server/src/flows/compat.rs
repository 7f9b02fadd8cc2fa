//! The legacy Matrix login API (MSC3861's compatibility layer): compat
//! sessions opened by `m.login.password` or `m.login.token`, and their
//! logout and refresh.
//!
//! The device is created on the homeserver **before** anything is written:
//! clients use the access token at once, and Synapse refuses a token whose
//! device it does not know. If the homeserver cannot be reached, nothing is
//! stored. If storing then fails, a device we just created is deleted again
//! (best effort; a device that existed before is left alone).
//!
//! Password checks follow the browser login: read, verify outside any
//! transaction (the hash is slow), then write; unknown users get a dummy
//! verification and the same answer as a wrong password.

use chrono::{DateTime, Duration, Utc};
use rand::{Rng as _, RngCore};
use rand_chacha::ChaCha20Rng;
use vestibule_config::Config;
use vestibule_domain::{
    Clock,
    browser_session::BrowserSession,
    compat::{CompatAccessToken, CompatSession, CompatSsoLogin, CompatSsoLoginStage},
    scope::{Scope, is_valid_device_id},
    token_format::{TokenFormat, TokenType},
    tokens::token_hash,
    user::{Password, User},
};
use vestibule_storage::{BoxRepository, RepositoryFactory, StorageError};
use zeroize::Zeroizing;

use super::browser_login::{Attempt, CheckError, CheckedPassword, check_password};
use crate::{
    homeserver::{DeviceOutcome, Homeserver, HomeserverError},
    jobs,
    passwords::{PasswordError, PasswordManager},
    rate_limit::{Limited, RateLimits},
    requester::Requester,
};

/// How long after the user approved it a `loginToken` may be exchanged
/// (MAS uses the same 30 s).
pub const LOGIN_TOKEN_TTL_SECONDS: i64 = 30;

/// Length of a generated device id (upper-case letters, like Synapse's).
pub const DEVICE_ID_LEN: usize = 10;

/// Settings of the compat API.
#[derive(Debug, Clone, Copy)]
pub struct CompatSettings {
    /// `experimental.compat_token_ttl`: lifetime of an access token that
    /// comes with a refresh token (without one it never expires, as in MAS).
    pub token_ttl: Duration,
}

impl CompatSettings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            token_ttl: Duration::seconds(
                i64::try_from(config.experimental.compat_token_ttl).unwrap_or(i64::MAX / 1000),
            ),
        }
    }
}

/// What a compat flow works with.
#[derive(Clone, Copy)]
pub struct CompatEnv<'a> {
    pub repos: &'a dyn RepositoryFactory,
    pub clock: &'a dyn Clock,
    pub homeserver: &'a dyn Homeserver,
    pub format: &'a TokenFormat,
    pub settings: CompatSettings,
}

/// The device a login asks for.
#[derive(Debug, Clone, Default)]
pub struct DeviceRequest {
    /// A device id to (re)use; generated when absent.
    pub device_id: Option<String>,
    /// `initial_device_display_name`.
    pub display_name: Option<String>,
}

/// A new compat session with its tokens. The plaintext tokens exist only
/// here, on their way to the client.
pub struct CompatLoggedIn {
    pub user: User,
    pub session: CompatSession,
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// The access token's lifetime (only when a refresh token was asked for).
    pub expires_in: Option<Duration>,
}

impl std::fmt::Debug for CompatLoggedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompatLoggedIn")
            .field("user", &self.user.username)
            .field("session", &self.session.id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompatLoginError {
    /// Unknown user, other server, no password, or wrong password: one
    /// answer for all (ASVS 6.3.8).
    #[error("invalid username or password")]
    InvalidCredentials,
    /// The password was right, but the account is locked.
    #[error("the account is locked")]
    Locked,
    /// The password was right, but the account is deactivated.
    #[error("the account is deactivated")]
    Deactivated,
    /// Unknown, unapproved or already used login token.
    #[error("invalid login token")]
    InvalidLoginToken,
    /// The login token was approved more than 30 s ago.
    #[error("the login token has expired")]
    LoginTokenExpired,
    #[error("invalid device id")]
    InvalidDeviceId,
    #[error("password login is disabled")]
    PasswordsDisabled,
    /// Too many attempts (the browser login's limiters): try again later.
    #[error("too many attempts")]
    Limited(Limited),
    /// The device could not be created on the homeserver.
    #[error("the homeserver could not create the device: {0}")]
    Homeserver(HomeserverError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<CheckError> for CompatLoginError {
    fn from(e: CheckError) -> Self {
        match e {
            CheckError::Limited(l) => Self::Limited(l),
            CheckError::Password(e) => Self::Password(e),
            CheckError::Storage(e) => Self::Storage(e),
        }
    }
}

/// A fresh device id: [`DEVICE_ID_LEN`] upper-case ASCII letters (about 47
/// bits; device ids are names, not secrets).
pub fn generate_device_id(rng: &mut impl RngCore) -> String {
    (0..DEVICE_ID_LEN)
        .map(|_| char::from(b'A' + rng.gen_range(0..26u8)))
        .collect()
}

/// Why the user of a session may not log in, once the password (or the
/// login token) proved who they are.
fn check_status(user: &User) -> Result<(), CompatLoginError> {
    if user.deactivated_at.is_some() {
        return Err(CompatLoginError::Deactivated);
    }
    if user.locked_at.is_some() {
        return Err(CompatLoginError::Locked);
    }
    Ok(())
}

/// What proved the user's identity.
enum Proof {
    Password {
        stored: Password,
        /// A re-hash with the current scheme, to store.
        upgrade: Option<(u16, String)>,
    },
    LoginToken {
        login: CompatSsoLogin,
        browser_session: BrowserSession,
    },
}

fn device_id_of(device: &DeviceRequest, rng: &mut ChaCha20Rng) -> Result<String, CompatLoginError> {
    match &device.device_id {
        Some(d) if is_valid_device_id(d) => Ok(d.clone()),
        Some(_) => Err(CompatLoginError::InvalidDeviceId),
        None => Ok(generate_device_id(rng)),
    }
}

/// `m.login.password`.
#[allow(clippy::too_many_arguments)]
pub async fn password_login(
    env: &CompatEnv<'_>,
    rng: &mut ChaCha20Rng,
    passwords: &PasswordManager,
    limits: &RateLimits,
    requester: Requester,
    username: &str,
    password: Zeroizing<String>,
    device: DeviceRequest,
    refresh: bool,
) -> Result<CompatLoggedIn, CompatLoginError> {
    if !passwords.is_enabled() {
        return Err(CompatLoginError::PasswordsDisabled);
    }
    let device_id = device_id_of(&device, rng)?;
    let Some(CheckedPassword {
        user,
        stored,
        upgrade,
    }) = check_password(
        env.repos,
        rng,
        passwords,
        env.homeserver.server_name(),
        username,
        password,
        Attempt {
            limits,
            clock: env.clock,
            requester,
        },
    )
    .await?
    else {
        return Err(CompatLoginError::InvalidCredentials);
    };
    // Only once the password is right: guessing does not reveal the state.
    check_status(&user)?;
    let proof = Proof::Password { stored, upgrade };
    start_session(env, rng, &user, proof, &device_id, &device, refresh).await
}

/// `m.login.token`: exchanges the `loginToken` of an approved SSO login,
/// once, within [`LOGIN_TOKEN_TTL_SECONDS`] of the approval.
pub async fn token_login(
    env: &CompatEnv<'_>,
    rng: &mut ChaCha20Rng,
    login_token: &str,
    device: DeviceRequest,
    refresh: bool,
) -> Result<CompatLoggedIn, CompatLoginError> {
    let device_id = device_id_of(&device, rng)?;
    let mut repo = env.repos.read().await?;
    let login = repo
        .compat_sso_logins()
        .find_by_token_hash(&token_hash(login_token))
        .await?
        .ok_or(CompatLoginError::InvalidLoginToken)?;
    let (browser_session_id, fulfilled_at) = match &login.stage {
        CompatSsoLoginStage::Fulfilled {
            browser_session_id,
            fulfilled_at,
        } => (*browser_session_id, *fulfilled_at),
        CompatSsoLoginStage::Pending | CompatSsoLoginStage::Exchanged { .. } => {
            return Err(CompatLoginError::InvalidLoginToken);
        }
    };
    if env.clock.now() - fulfilled_at > Duration::seconds(LOGIN_TOKEN_TTL_SECONDS) {
        return Err(CompatLoginError::LoginTokenExpired);
    }
    let browser_session = repo
        .browser_sessions()
        .lookup(browser_session_id)
        .await?
        .ok_or(CompatLoginError::InvalidLoginToken)?;
    let user = repo
        .users()
        .lookup(browser_session.user_id)
        .await?
        .ok_or(CompatLoginError::InvalidLoginToken)?;
    repo.cancel().await?;
    check_status(&user)?;
    let proof = Proof::LoginToken {
        login,
        browser_session,
    };
    start_session(env, rng, &user, proof, &device_id, &device, refresh).await
}

/// Creates the device on the homeserver, then stores the session and its
/// tokens; undoes the device if storing fails.
async fn start_session(
    env: &CompatEnv<'_>,
    rng: &mut ChaCha20Rng,
    user: &User,
    proof: Proof,
    device_id: &str,
    device: &DeviceRequest,
    refresh: bool,
) -> Result<CompatLoggedIn, CompatLoginError> {
    let display_name = device.display_name.as_deref();
    let upsert = || {
        env.homeserver
            .upsert_device(&user.username, device_id, display_name)
    };
    let outcome = match upsert().await {
        // The user's provisioning job has not run yet (e.g. Synapse was
        // down when the account was created): create the user now, as the
        // OAuth token endpoint does; the job fills in the rest later.
        Err(HomeserverError::NotFound) => {
            let request = crate::homeserver::ProvisionRequest::new(user.username.clone())
                .set_displayname(user.username.clone())
                .locked(user.locked_at.is_some());
            env.homeserver
                .provision_user(&request)
                .await
                .map_err(CompatLoginError::Homeserver)?;
            upsert().await
        }
        other => other,
    }
    .map_err(CompatLoginError::Homeserver)?;
    let stored = store_session(env, rng, user, proof, device_id, display_name, refresh).await;
    if stored.is_err()
        && outcome == DeviceOutcome::Created
        && let Err(e) = env
            .homeserver
            .delete_device(&user.username, device_id)
            .await
    {
        tracing::warn!(
            error = %e,
            user = %user.username,
            device_id,
            "a compat login failed after creating its device, which could not be deleted"
        );
    }
    stored
}

async fn store_session(
    env: &CompatEnv<'_>,
    rng: &mut ChaCha20Rng,
    user: &User,
    proof: Proof,
    device_id: &str,
    display_name: Option<&str>,
    refresh: bool,
) -> Result<CompatLoggedIn, CompatLoginError> {
    let clock = env.clock;
    let mut repo = env.repos.write().await?;
    // The user may have been locked since the password was checked.
    let user = repo
        .users()
        .lookup(user.id)
        .await?
        .ok_or(CompatLoginError::InvalidCredentials)?;
    check_status(&user)?;
    let browser_session = match &proof {
        Proof::Password { stored, upgrade } => {
            if let Some((version, hash)) = upgrade {
                repo.user_passwords()
                    .add(rng, clock, &user, *version, hash.clone(), Some(stored))
                    .await?;
            }
            None
        }
        Proof::LoginToken {
            browser_session, ..
        } => Some(browser_session),
    };
    // Logging in again with a device id ends the session that had it.
    let old = repo
        .compat_sessions()
        .find_active_by_device(&user, device_id)
        .await?;
    if let Some(old) = old {
        repo.compat_sessions().finish(clock, old).await?;
    }
    let session = repo
        .compat_sessions()
        .add(
            rng,
            clock,
            &user,
            device_id,
            display_name,
            browser_session,
            false,
        )
        .await?;
    if let Proof::LoginToken { login, .. } = proof {
        // Compare-and-set: a login token is exchanged once.
        repo.compat_sso_logins()
            .exchange(clock, login, &session)
            .await
            .map_err(|e| match e {
                StorageError::ConcurrentUpdate(_) | StorageError::InvalidTransition(_) => {
                    CompatLoginError::InvalidLoginToken
                }
                other => CompatLoginError::Storage(other),
            })?;
    }
    let expires_in = refresh.then_some(env.settings.token_ttl);
    let (access_token, access) =
        issue_access_token(&mut repo, env, rng, &session, expires_in).await?;
    let refresh_token = if refresh {
        Some(issue_refresh_token(&mut repo, env, rng, &session, &access).await?)
    } else {
        None
    };
    repo.save().await?;
    Ok(CompatLoggedIn {
        user,
        session,
        access_token,
        refresh_token,
        expires_in,
    })
}

async fn issue_access_token(
    repo: &mut BoxRepository,
    env: &CompatEnv<'_>,
    rng: &mut ChaCha20Rng,
    session: &CompatSession,
    expires_in: Option<Duration>,
) -> Result<(String, CompatAccessToken), StorageError> {
    let token = env.format.generate(TokenType::CompatAccessToken, rng);
    let access = repo
        .compat_access_tokens()
        .add(rng, env.clock, session, &token_hash(&token), expires_in)
        .await?;
    Ok((token, access))
}

async fn issue_refresh_token(
    repo: &mut BoxRepository,
    env: &CompatEnv<'_>,
    rng: &mut ChaCha20Rng,
    session: &CompatSession,
    access: &CompatAccessToken,
) -> Result<String, StorageError> {
    let token = env.format.generate(TokenType::CompatRefreshToken, rng);
    repo.compat_refresh_tokens()
        .add(rng, env.clock, session, access, &token_hash(&token))
        .await?;
    Ok(token)
}

/// Why a bearer token does not authenticate a compat request.
#[derive(Debug, thiserror::Error)]
pub enum CompatAuthError {
    /// No token at all (`M_MISSING_TOKEN`).
    #[error("missing access token")]
    Missing,
    /// Not a valid compat access token (`M_UNKNOWN_TOKEN`). `soft_logout`
    /// when only the token expired and the session lives on (the client can
    /// refresh or log in again keeping its data).
    #[error("unknown or expired access token")]
    Unknown { soft_logout: bool },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn access_token_valid(token: &CompatAccessToken, now: DateTime<Utc>) -> bool {
    token.expires_at.is_none_or(|e| now < e)
}

/// The session and user of a compat access token, if it is valid now.
async fn authenticate(
    repo: &mut BoxRepository,
    env: &CompatEnv<'_>,
    token: Option<&str>,
) -> Result<(CompatSession, User), CompatAuthError> {
    let token = token.ok_or(CompatAuthError::Missing)?;
    let unknown = CompatAuthError::Unknown { soft_logout: false };
    if env.format.verify(token) != Ok(TokenType::CompatAccessToken) {
        return Err(unknown);
    }
    let access = repo
        .compat_access_tokens()
        .find_by_hash(&token_hash(token))
        .await?
        .ok_or(CompatAuthError::Unknown { soft_logout: false })?;
    let session = repo
        .compat_sessions()
        .lookup(access.session_id)
        .await?
        .filter(CompatSession::is_valid)
        .ok_or(CompatAuthError::Unknown { soft_logout: false })?;
    if !access_token_valid(&access, env.clock.now()) {
        return Err(CompatAuthError::Unknown { soft_logout: true });
    }
    let user = repo
        .users()
        .lookup(session.user_id)
        .await?
        .ok_or(CompatAuthError::Unknown { soft_logout: false })?;
    Ok((session, user))
}

/// Whether another active session of the user (compat or OAuth) still uses
/// this device, in which case it must stay on the homeserver.
async fn device_in_use(
    repo: &mut BoxRepository,
    user: &User,
    device_id: &str,
) -> Result<bool, StorageError> {
    if repo
        .compat_sessions()
        .find_active_by_device(user, device_id)
        .await?
        .is_some()
    {
        return Ok(true);
    }
    Ok(repo
        .oauth2_sessions()
        .list_active_for_user(user)
        .await?
        .iter()
        .any(|s| {
            Scope::parse(&s.scope)
                .ok()
                .is_some_and(|scope| scope.device_id() == Some(device_id))
        }))
}

/// Deletes devices on the homeserver; if any deletion fails, schedules a
/// device sync so the job worker retries until the homeserver agrees.
async fn delete_devices(
    env: &CompatEnv<'_>,
    rng: &mut ChaCha20Rng,
    user: &User,
    devices: &[String],
) {
    let mut failed = false;
    for device_id in devices {
        if let Err(e) = env
            .homeserver
            .delete_device(&user.username, device_id)
            .await
        {
            tracing::warn!(
                error = %e,
                user = %user.username,
                device_id,
                "could not delete a logged-out device; scheduling a device sync"
            );
            failed = true;
        }
    }
    if !failed {
        return;
    }
    let scheduled = async {
        let mut repo = env.repos.write().await?;
        jobs::schedule_sync_devices(&mut *repo, rng, env.clock, user.id).await?;
        repo.save().await
    }
    .await;
    if let Err(e) = scheduled {
        tracing::error!(
            error = %e,
            user = %user.username,
            "could not schedule a device sync after a failed device deletion"
        );
    }
}

/// `POST /logout`: ends the token's session and deletes its device.
pub async fn logout(
    env: &CompatEnv<'_>,
    rng: &mut ChaCha20Rng,
    token: Option<&str>,
) -> Result<(), CompatAuthError> {
    let mut repo = env.repos.write().await?;
    let (session, user) = authenticate(&mut repo, env, token).await?;
    let device_id = session.device_id.clone();
    repo.compat_sessions().finish(env.clock, session).await?;
    let in_use = device_in_use(&mut repo, &user, &device_id).await?;
    repo.save().await?;
    if !in_use {
        delete_devices(env, rng, &user, &[device_id]).await;
    }
    Ok(())
}

/// `POST /logout/all`: ends every compat session of the token's user and
/// deletes their devices. Returns how many sessions were ended.
pub async fn logout_all(
    env: &CompatEnv<'_>,
    rng: &mut ChaCha20Rng,
    token: Option<&str>,
) -> Result<usize, CompatAuthError> {
    let mut repo = env.repos.write().await?;
    let (_, user) = authenticate(&mut repo, env, token).await?;
    let sessions = repo.compat_sessions().list_active_for_user(&user).await?;
    let count = sessions.len();
    let mut devices: Vec<String> = Vec::with_capacity(count);
    for session in sessions {
        devices.push(session.device_id.clone());
        repo.compat_sessions().finish(env.clock, session).await?;
    }
    devices.sort();
    devices.dedup();
    let mut to_delete = Vec::with_capacity(devices.len());
    for device_id in devices {
        if !device_in_use(&mut repo, &user, &device_id).await? {
            to_delete.push(device_id);
        }
    }
    repo.save().await?;
    delete_devices(env, rng, &user, &to_delete).await;
    Ok(count)
}

/// A rotated token pair.
pub struct Refreshed {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: Duration,
}

impl std::fmt::Debug for Refreshed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refreshed")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompatRefreshError {
    /// Unknown, consumed (replayed) or foreign token, or its session or
    /// user is no longer valid (`M_UNKNOWN_TOKEN`, `soft_logout: false`).
    #[error("unknown refresh token")]
    UnknownToken,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// `POST /refresh`: consumes the refresh token (compare-and-set), expires
/// its access token and issues a new pair.
pub async fn refresh(
    env: &CompatEnv<'_>,
    rng: &mut ChaCha20Rng,
    refresh_token: &str,
) -> Result<Refreshed, CompatRefreshError> {
    if env.format.verify(refresh_token) != Ok(TokenType::CompatRefreshToken) {
        return Err(CompatRefreshError::UnknownToken);
    }
    let clock = env.clock;
    let mut repo = env.repos.write().await?;
    let old = repo
        .compat_refresh_tokens()
        .find_by_hash(&token_hash(refresh_token))
        .await?
        .filter(|t| t.consumed_at.is_none())
        .ok_or(CompatRefreshError::UnknownToken)?;
    let session = repo
        .compat_sessions()
        .lookup(old.session_id)
        .await?
        .filter(CompatSession::is_valid)
        .ok_or(CompatRefreshError::UnknownToken)?;
    let user_valid = repo
        .users()
        .lookup(session.user_id)
        .await?
        .is_some_and(|u| u.is_valid());
    if !user_valid {
        return Err(CompatRefreshError::UnknownToken);
    }
    let old_access = repo
        .compat_access_tokens()
        .lookup(old.access_token_id)
        .await?;
    repo.compat_refresh_tokens()
        .consume(clock, old)
        .await
        .map_err(|e| match e {
            StorageError::ConcurrentUpdate(_) | StorageError::InvalidTransition(_) => {
                CompatRefreshError::UnknownToken
            }
            other => CompatRefreshError::Storage(other),
        })?;
    if let Some(a) = old_access.filter(|a| access_token_valid(a, clock.now())) {
        repo.compat_access_tokens().expire(clock, a).await?;
    }
    let expires_in = env.settings.token_ttl;
    let (access_token, access) =
        issue_access_token(&mut repo, env, rng, &session, Some(expires_in)).await?;
    let refresh_token = issue_refresh_token(&mut repo, env, rng, &session, &access).await?;
    repo.save().await?;
    Ok(Refreshed {
        access_token,
        refresh_token,
        expires_in,
    })
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn generated_device_ids_are_ten_upper_case_letters_and_valid() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let a = generate_device_id(&mut rng);
        let b = generate_device_id(&mut rng);
        assert_ne!(a, b);
        for d in [a, b] {
            assert_eq!(d.len(), DEVICE_ID_LEN);
            assert!(d.bytes().all(|c| c.is_ascii_uppercase()), "{d}");
            assert!(is_valid_device_id(&d));
        }
    }
}
