//! Password login and self-service registration in the browser.
//!
//! Password hashing runs outside any database transaction (on SQLite a
//! write transaction holds the database lock): read, verify, then write.
//!
//! Every password check passes the `rate_limiting.login` limiters first
//! (per IP, then per account; checklist S37), and registration the
//! `rate_limiting.registration` one, before any hashing. The bounded
//! hashing pool then caps the CPU whatever gets through.

use rand_chacha::ChaCha20Rng;
use vestibule_domain::{
    Clock, Ulid,
    browser_session::BrowserSession,
    user::{Password, User},
};
use vestibule_storage::{RepositoryFactory, StorageError};
use zeroize::Zeroizing;

use crate::{
    homeserver::{Homeserver, HomeserverError},
    passwords::{PasswordError, PasswordManager, PasswordPolicyError, check_new_password},
    rate_limit::{Limited, RateLimits},
    requester::Requester,
};

/// The limiters an attempt goes through, and who is attempting.
#[derive(Clone, Copy)]
pub struct Attempt<'a> {
    pub limits: &'a RateLimits,
    pub clock: &'a dyn Clock,
    pub requester: Requester,
}

/// A successful login or registration: a NEW browser session (the id is
/// never reused across logins: session fixation, ASVS 3.2.1 / S21).
#[derive(Debug)]
pub struct LoggedIn {
    pub session: BrowserSession,
    pub user: User,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown user, no password, or wrong password: one answer for all
    /// (ASVS 6.3.8, S38).
    #[error("wrong username or password")]
    InvalidCredentials,
    /// The password was right but the account is locked or deactivated.
    #[error("the account is locked or deactivated")]
    Locked,
    /// Too many attempts: try again later (nothing was checked).
    #[error("too many attempts")]
    Limited(Limited),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("{0}")]
    InvalidUsername(&'static str),
    #[error("this username is taken")]
    Taken,
    /// The homeserver could not say whether the username is free, so no
    /// user is created (never blind: see [`homeserver_allows`]).
    #[error("the homeserver could not be asked whether the username is free")]
    Homeserver(#[source] HomeserverError),
    /// Too many registrations from this address: try again later.
    #[error("too many registrations")]
    Limited(Limited),
    #[error(transparent)]
    Policy(#[from] PasswordPolicyError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The localpart a person typed: a bare localpart, or a full Matrix ID
/// `@localpart:server` of our homeserver. Lower-cased (Matrix localparts
/// are lower case; Synapse does the same at login).
pub fn localpart_of(input: &str, homeserver: &str) -> Option<String> {
    let input = input.trim();
    let local = match input.strip_prefix('@') {
        Some(rest) => {
            let (local, server) = rest.split_once(':')?;
            if server != homeserver {
                return None;
            }
            local
        }
        None => input,
    };
    if local.is_empty() {
        return None;
    }
    Some(local.to_lowercase())
}

/// The Matrix user-id grammar for new localparts (Matrix spec "User
/// Identifiers": `a-z 0-9 . _ = - / +`), and a full MXID of at most 255
/// bytes.
pub fn validate_new_localpart(local: &str, homeserver: &str) -> Result<(), RegisterError> {
    if local.is_empty() {
        return Err(RegisterError::InvalidUsername("Choose a username."));
    }
    if !local
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._=-/+".contains(&b))
    {
        return Err(RegisterError::InvalidUsername(
            "Usernames may contain only lower-case letters, digits and . _ = - / +",
        ));
    }
    if local.len() + homeserver.len() + 2 > 255 {
        return Err(RegisterError::InvalidUsername("This username is too long."));
    }
    Ok(())
}

/// What the homeserver says about a localpart no user of ours has.
#[derive(Debug)]
pub enum HomeserverVerdict {
    Free,
    /// Taken on the homeserver (a user not imported here, or reserved by an
    /// application service's exclusive namespace).
    Taken,
    /// The homeserver refuses the localpart as a username.
    Invalid,
}

/// Asks the homeserver whether a localpart that no user of ours has is free
/// there. A user that exists only on the homeserver (not imported yet, or
/// an application service's) must never be created here: provisioning would
/// then take over their Matrix account. MAS asks the same before it
/// registers anyone. `Err`: the homeserver could not be asked; the caller
/// refuses rather than create the user blind.
pub async fn homeserver_allows(
    homeserver: &dyn Homeserver,
    local: &str,
) -> Result<HomeserverVerdict, HomeserverError> {
    match homeserver.is_localpart_available(local).await {
        Ok(true) => Ok(HomeserverVerdict::Free),
        Ok(false) => {
            tracing::info!(localpart = %local, "localpart taken on the homeserver");
            Ok(HomeserverVerdict::Taken)
        }
        Err(HomeserverError::InvalidUsername(reason)) => {
            tracing::info!(localpart = %local, %reason, "homeserver refuses the localpart");
            Ok(HomeserverVerdict::Invalid)
        }
        Err(e) => {
            tracing::warn!(localpart = %local, error = %e, "homeserver unavailable for a localpart check");
            Err(e)
        }
    }
}

/// The message for [`HomeserverVerdict::Invalid`].
pub const HOMESERVER_REFUSES_USERNAME: &str =
    "The homeserver does not accept this username. Choose another one.";

/// A password that matched: the user, their stored password, and a new hash
/// to store when the stored one used an older scheme.
pub struct CheckedPassword {
    pub user: User,
    pub stored: Password,
    pub upgrade: Option<(u16, String)>,
}

/// Why a password could not be checked (as opposed to being wrong).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Refused by a rate limit before anything was looked up or hashed.
    #[error("too many attempts")]
    Limited(Limited),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<CheckError> for LoginError {
    fn from(e: CheckError) -> Self {
        match e {
            CheckError::Limited(l) => Self::Limited(l),
            CheckError::Password(e) => Self::Password(e),
            CheckError::Storage(e) => Self::Storage(e),
        }
    }
}

/// Checks a username (a localpart, or a full MXID on `homeserver`) and a
/// password — the one check behind every password login (pages, legacy
/// `/login`). Reads in a read transaction and hashes outside any
/// transaction, so no write lock is held while Argon2 runs. Unknown users get
/// a dummy verification, so "no such user" and "wrong password" take the
/// same time and give the same answer, `Ok(None)` (ASVS 6.3.8, S38). The
/// account's state (locked, deactivated) is the caller's to check, and only
/// after this succeeded, so guessing does not reveal it.
///
/// First of all, the attempt passes the login limiters: per IP, then per
/// account (the normalised localpart, whether or not it exists), so no
/// pathway gets more guesses than another (S37).
pub async fn check_password(
    repos: &dyn RepositoryFactory,
    rng: &mut ChaCha20Rng,
    passwords: &PasswordManager,
    homeserver: &str,
    username: &str,
    password: Zeroizing<String>,
    attempt: Attempt<'_>,
) -> Result<Option<CheckedPassword>, CheckError> {
    let localpart = localpart_of(username, homeserver);
    attempt
        .limits
        .check_password(attempt.clock, attempt.requester, localpart.as_deref())
        .map_err(CheckError::Limited)?;
    let found = match localpart {
        None => None,
        Some(local) => {
            let mut repo = repos.read().await?;
            let user = repo.users().find_by_username(&local).await?;
            let found = match user {
                Some(user) => repo
                    .user_passwords()
                    .active(&user)
                    .await?
                    .map(|pw| (user, pw)),
                None => None,
            };
            repo.cancel().await?;
            found
        }
    };
    let Some((user, stored)) = found else {
        passwords.dummy_verify(password).await?;
        return Ok(None);
    };
    let verified = passwords
        .verify(
            rng,
            stored.version,
            stored.hashed_password.clone(),
            password,
        )
        .await?;
    Ok(verified.valid.then_some(CheckedPassword {
        user,
        stored,
        upgrade: verified.upgrade,
    }))
}

/// Checks a username and password and opens a new browser session.
/// `previous` (the browser's current session, if any) is finished.
#[allow(clippy::too_many_arguments)]
pub async fn login(
    repos: &dyn RepositoryFactory,
    attempt: Attempt<'_>,
    rng: &mut ChaCha20Rng,
    passwords: &PasswordManager,
    homeserver: &str,
    username: &str,
    password: Zeroizing<String>,
    user_agent: Option<&str>,
    previous: Option<Ulid>,
) -> Result<LoggedIn, LoginError> {
    let Some(CheckedPassword {
        user,
        stored,
        upgrade,
    }) = check_password(
        repos, rng, passwords, homeserver, username, password, attempt,
    )
    .await?
    else {
        return Err(LoginError::InvalidCredentials);
    };
    let clock = attempt.clock;
    // Only once the password is right: guessing does not reveal the lock.
    if !user.is_valid() {
        return Err(LoginError::Locked);
    }
    let mut repo = repos.write().await?;
    let password = match upgrade {
        Some((version, hash)) => {
            repo.user_passwords()
                .add(rng, clock, &user, version, hash, Some(&stored))
                .await?
        }
        None => stored,
    };
    if let Some(prev) = previous {
        let old = repo.browser_sessions().lookup(prev).await?;
        if let Some(old) = old.filter(BrowserSession::is_active) {
            repo.browser_sessions().finish(clock, old).await?;
        }
    }
    let session = repo
        .browser_sessions()
        .add(rng, clock, &user, user_agent)
        .await?;
    repo.browser_sessions()
        .authenticate_with_password(rng, clock, &session, &password)
        .await?;
    repo.save().await?;
    Ok(LoggedIn { session, user })
}

/// Creates a user with a password and opens a browser session for them,
/// within the `registration` limit of the requester. The name must be free
/// here and on the homeserver (asked before the password is hashed; see
/// [`homeserver_allows`]).
#[allow(clippy::too_many_arguments)]
pub async fn register(
    repos: &dyn RepositoryFactory,
    attempt: Attempt<'_>,
    rng: &mut ChaCha20Rng,
    passwords: &PasswordManager,
    hs: &dyn Homeserver,
    homeserver: &str,
    username: &str,
    password: Zeroizing<String>,
    user_agent: Option<&str>,
    previous: Option<Ulid>,
) -> Result<LoggedIn, RegisterError> {
    let local = username.trim().to_owned();
    validate_new_localpart(&local, homeserver)?;
    check_new_password(&password)?;
    // Limited after the local checks (a typo costs nothing) and before the
    // lookup (which tells whether a name exists) and the hash.
    let clock = attempt.clock;
    attempt
        .limits
        .check_registration(clock, attempt.requester)
        .map_err(RegisterError::Limited)?;
    {
        let mut repo = repos.read().await?;
        let taken = repo.users().find_by_username(&local).await?.is_some();
        repo.cancel().await?;
        if taken {
            return Err(RegisterError::Taken);
        }
    }
    match homeserver_allows(hs, &local).await {
        Ok(HomeserverVerdict::Free) => {}
        Ok(HomeserverVerdict::Taken) => return Err(RegisterError::Taken),
        Ok(HomeserverVerdict::Invalid) => {
            return Err(RegisterError::InvalidUsername(HOMESERVER_REFUSES_USERNAME));
        }
        Err(e) => return Err(RegisterError::Homeserver(e)),
    }
    let (version, hash) = passwords.hash(rng, password).await?;
    let mut repo = repos.write().await?;
    if repo.users().find_by_username(&local).await?.is_some() {
        return Err(RegisterError::Taken);
    }
    let user = repo.users().add(rng, clock, &local).await?;
    // The homeserver learns about the user in the same transaction (a job).
    super::provisioning::schedule_new_user(&mut *repo, rng, clock, &user).await?;
    let password = repo
        .user_passwords()
        .add(rng, clock, &user, version, hash, None)
        .await?;
    if let Some(prev) = previous {
        let old = repo.browser_sessions().lookup(prev).await?;
        if let Some(old) = old.filter(BrowserSession::is_active) {
            repo.browser_sessions().finish(clock, old).await?;
        }
    }
    let session = repo
        .browser_sessions()
        .add(rng, clock, &user, user_agent)
        .await?;
    repo.browser_sessions()
        .authenticate_with_password(rng, clock, &session, &password)
        .await?;
    repo.save().await?;
    Ok(LoggedIn { session, user })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_as_typed() {
        assert_eq!(
            localpart_of("alice", "example.org").as_deref(),
            Some("alice")
        );
        assert_eq!(
            localpart_of(" Alice ", "example.org").as_deref(),
            Some("alice")
        );
        assert_eq!(
            localpart_of("@alice:example.org", "example.org").as_deref(),
            Some("alice")
        );
        assert_eq!(localpart_of("@alice:evil.org", "example.org"), None);
        assert_eq!(localpart_of("@:example.org", "example.org"), None);
        assert!(validate_new_localpart("bob.smith_1", "example.org").is_ok());
        assert!(validate_new_localpart("Bob", "example.org").is_err());
        assert!(validate_new_localpart("bob smith", "example.org").is_err());
    }
}
