//! The end of an upstream login (`/upstream/link/{session}`): sign in the
//! linked user, link the upstream account to the signed-in user, or create
//! a new user from the imported claims.
//!
//! Each action is one write transaction that first consumes the upstream
//! session by compare-and-set: a replay, a double submit or a race loses
//! with [`LinkError::Replayed`] and nothing is written twice.

use std::collections::BTreeMap;

use rand_chacha::ChaCha20Rng;
use vestibule_config::OnConflict;
use vestibule_domain::{
    Clock, Ulid,
    browser_session::BrowserSession,
    upstream::{UpstreamAuthorizationSession, UpstreamLink},
    user::User,
};
use vestibule_storage::{BoxRepository, RepositoryFactory, StorageError};

use super::browser_login::{RegisterError, validate_new_localpart};

/// A browser session that now carries an upstream authentication.
#[derive(Debug)]
pub struct Linked {
    pub session: BrowserSession,
    pub user: User,
    /// Whether `session` is new (the browser needs a new session cookie).
    pub new_session: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The upstream session was already used (or is not completed).
    #[error("this sign-in was already used")]
    Replayed,
    /// The link changed since the page was shown (someone else finished
    /// first, or it was linked meanwhile).
    #[error("the upstream account was linked meanwhile")]
    LinkChanged,
    /// The user is locked or deactivated.
    #[error("the account is locked or deactivated")]
    Locked,
    /// The chosen (suggested or typed) username is taken.
    #[error("this username is taken")]
    Taken,
    /// The imported (fixed) username belongs to an existing account and
    /// `on_conflict` does not allow linking it (`fail`, or `set` when the
    /// account already has a link for this provider).
    #[error("the username belongs to an existing account, which was not linked")]
    ExistingAccount { localpart: String },
    #[error("{0}")]
    InvalidUsername(&'static str),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Who the browser is: its current session, if any.
#[derive(Debug, Clone, Copy)]
pub struct Browser<'a> {
    pub user_agent: Option<&'a str>,
    /// The browser's current session id (finished when a new one starts).
    pub previous: Option<Ulid>,
}

/// Re-reads and consumes the upstream session, and returns its link.
async fn consume(
    repo: &mut BoxRepository,
    clock: &dyn Clock,
    upstream_id: Ulid,
) -> Result<(UpstreamAuthorizationSession, UpstreamLink), LinkError> {
    let up = repo
        .upstream_sessions()
        .lookup(upstream_id)
        .await?
        .filter(|s| s.completed_at.is_some() && s.consumed_at.is_none())
        .ok_or(LinkError::Replayed)?;
    let link_id = up.link_id.ok_or(LinkError::Replayed)?;
    let link = repo
        .upstream_links()
        .lookup(link_id)
        .await?
        .ok_or(LinkError::LinkChanged)?;
    let up = match repo.upstream_sessions().consume(clock, up).await {
        Ok(up) => up,
        Err(StorageError::ConcurrentUpdate(_) | StorageError::InvalidTransition(_)) => {
            return Err(LinkError::Replayed);
        }
        Err(e) => return Err(e.into()),
    };
    Ok((up, link))
}

/// Links `link` to `user`; a link someone else linked meanwhile (the
/// storage's compare-and-set lost) is [`LinkError::LinkChanged`].
async fn associate(
    repo: &mut BoxRepository,
    link: UpstreamLink,
    user: &User,
) -> Result<UpstreamLink, LinkError> {
    match repo.upstream_links().associate_to_user(link, user).await {
        Ok(link) => Ok(link),
        Err(StorageError::ConcurrentUpdate(_)) => Err(LinkError::LinkChanged),
        Err(e) => Err(e.into()),
    }
}

/// Opens a new browser session for `user` authenticated by the upstream
/// session (finishing the browser's previous one).
async fn open_session(
    repo: &mut BoxRepository,
    clock: &dyn Clock,
    rng: &mut ChaCha20Rng,
    user: &User,
    link: &UpstreamLink,
    up: &UpstreamAuthorizationSession,
    browser: Browser<'_>,
) -> Result<BrowserSession, StorageError> {
    if let Some(prev) = browser.previous {
        let old = repo.browser_sessions().lookup(prev).await?;
        if let Some(old) = old.filter(BrowserSession::is_active) {
            repo.browser_sessions().finish(clock, old).await?;
        }
    }
    let session = repo
        .browser_sessions()
        .add(rng, clock, user, browser.user_agent)
        .await?;
    repo.browser_sessions()
        .authenticate_with_upstream(rng, clock, &session, link, Some(up))
        .await?;
    Ok(session)
}

/// Signs in the user the link belongs to.
pub async fn sign_in(
    repos: &dyn RepositoryFactory,
    clock: &dyn Clock,
    rng: &mut ChaCha20Rng,
    upstream_id: Ulid,
    browser: Browser<'_>,
) -> Result<Linked, LinkError> {
    let mut repo = repos.write().await?;
    let (up, link) = consume(&mut repo, clock, upstream_id).await?;
    let user_id = link.user_id.ok_or(LinkError::LinkChanged)?;
    let user = repo
        .users()
        .lookup(user_id)
        .await?
        .ok_or(LinkError::LinkChanged)?;
    if !user.is_valid() {
        return Err(LinkError::Locked);
    }
    let session = open_session(&mut repo, clock, rng, &user, &link, &up, browser).await?;
    repo.save().await?;
    Ok(Linked {
        session,
        user,
        new_session: true,
    })
}

/// Links the (still unlinked) upstream account to the signed-in user and
/// records the upstream authentication on their current session.
pub async fn link_to_current(
    repos: &dyn RepositoryFactory,
    clock: &dyn Clock,
    rng: &mut ChaCha20Rng,
    upstream_id: Ulid,
    session_id: Ulid,
) -> Result<Linked, LinkError> {
    let mut repo = repos.write().await?;
    let (up, link) = consume(&mut repo, clock, upstream_id).await?;
    if link.user_id.is_some() {
        return Err(LinkError::LinkChanged);
    }
    let session = repo
        .browser_sessions()
        .lookup(session_id)
        .await?
        .filter(BrowserSession::is_active)
        .ok_or(LinkError::LinkChanged)?;
    let user = repo
        .users()
        .lookup(session.user_id)
        .await?
        .ok_or(LinkError::LinkChanged)?;
    if !user.is_valid() {
        return Err(LinkError::Locked);
    }
    let link = associate(&mut repo, link, &user).await?;
    repo.browser_sessions()
        .authenticate_with_upstream(rng, clock, &session, &link, Some(&up))
        .await?;
    repo.save().await?;
    Ok(Linked {
        session,
        user,
        new_session: false,
    })
}

/// What a new account gets from the claims and the form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccount {
    pub localpart: String,
    /// The localpart came from the claims (`force`/`require`), so an
    /// existing account of that name is a conflict handled by
    /// `on_conflict`; a typed or suggested one that is taken is just taken.
    pub localpart_imported: bool,
    pub on_conflict: OnConflict,
    pub displayname: Option<String>,
    pub email: Option<String>,
    /// Custom attributes (e.g. `tenant_id`).
    pub attributes: BTreeMap<String, String>,
}

/// Creates the user (or, with `on_conflict` `add`/`replace`/`set` and an
/// imported localpart, links the existing one), links the upstream account,
/// schedules provisioning on the homeserver, and signs in.
pub async fn register(
    repos: &dyn RepositoryFactory,
    clock: &dyn Clock,
    rng: &mut ChaCha20Rng,
    homeserver: &str,
    upstream_id: Ulid,
    account: &NewAccount,
    browser: Browser<'_>,
) -> Result<Linked, LinkError> {
    validate_new_localpart(&account.localpart, homeserver).map_err(|e| match e {
        RegisterError::InvalidUsername(m) => LinkError::InvalidUsername(m),
        _ => LinkError::InvalidUsername("This username is not valid."),
    })?;
    let mut repo = repos.write().await?;
    let (up, link) = consume(&mut repo, clock, upstream_id).await?;
    if link.user_id.is_some() {
        return Err(LinkError::LinkChanged);
    }
    let existing = repo.users().find_by_username(&account.localpart).await?;
    let (user, created) = match existing {
        None => {
            let user = repo.users().add(rng, clock, &account.localpart).await?;
            (user, true)
        }
        Some(_) if !account.localpart_imported => return Err(LinkError::Taken),
        Some(user) => {
            let refuse = || LinkError::ExistingAccount {
                localpart: account.localpart.clone(),
            };
            // MAS semantics of `localpart.on_conflict`.
            let same_provider: Vec<UpstreamLink> = repo
                .upstream_links()
                .all_for_user(&user)
                .await?
                .into_iter()
                .filter(|l| l.provider_id == link.provider_id)
                .collect();
            match account.on_conflict {
                OnConflict::Fail => return Err(refuse()),
                OnConflict::Add => {}
                OnConflict::Set => {
                    if !same_provider.is_empty() {
                        return Err(refuse());
                    }
                }
                OnConflict::Replace => {
                    for old in same_provider {
                        repo.upstream_links().dissociate(old).await?;
                    }
                }
            }
            if !user.is_valid() {
                return Err(LinkError::Locked);
            }
            (user, false)
        }
    };
    if created {
        if let Some(email) = &account.email {
            // Emails are unique: one another account uses is not imported.
            if repo.user_emails().find_by_email(email).await?.is_none() {
                repo.user_emails().add(rng, clock, &user, email).await?;
            } else {
                tracing::info!(localpart = %user.username, "imported email already in use; not added");
            }
        }
        for (name, value) in &account.attributes {
            repo.user_attributes()
                .set(clock, &user, name, value)
                .await?;
        }
        super::provisioning::schedule_new_user_with_display_name(
            &mut *repo,
            rng,
            clock,
            &user,
            account.displayname.as_deref(),
        )
        .await?;
    }
    let link = associate(&mut repo, link, &user).await?;
    let session = open_session(&mut repo, clock, rng, &user, &link, &up, browser).await?;
    repo.save().await?;
    Ok(Linked {
        session,
        user,
        new_session: true,
    })
}
