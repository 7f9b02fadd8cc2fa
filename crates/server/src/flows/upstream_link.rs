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

use super::browser_login::{
    HOMESERVER_REFUSES_USERNAME, HomeserverVerdict, RegisterError, homeserver_allows,
    validate_new_localpart,
};
use crate::homeserver::{Homeserver, HomeserverError};

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
    /// The imported (fixed) username is taken on the homeserver by a user
    /// we do not have (not imported yet, or an application service's), and
    /// `on_conflict` is `add`, `replace` or `set`: there is no account here
    /// to link, and creating one would take over the homeserver's user.
    #[error("the username is taken on the homeserver by a user this service does not have")]
    HomeserverAccount { localpart: String },
    /// The homeserver could not be asked whether the username is free;
    /// nothing is created blind.
    #[error("the homeserver could not be asked whether the username is free")]
    Homeserver(#[source] HomeserverError),
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

/// Custom attributes to bring up to date at a sign-in: `Some` sets the
/// value, `None` removes the attribute.
pub type AttributeUpdates = BTreeMap<String, Option<String>>;

/// Signs in the user the link belongs to, and brings the attributes the
/// provider is authoritative for (`force`/`require` imports) up to date.
pub async fn sign_in(
    repos: &dyn RepositoryFactory,
    clock: &dyn Clock,
    rng: &mut ChaCha20Rng,
    upstream_id: Ulid,
    attributes: &AttributeUpdates,
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
    for (name, value) in attributes {
        match value {
            Some(v) => {
                repo.user_attributes().set(clock, &user, name, v).await?;
            }
            None => {
                repo.user_attributes().remove(&user, name).await?;
            }
        }
    }
    let session = open_session(&mut repo, clock, rng, &user, &link, &up, browser).await?;
    repo.save().await?;
    Ok(Linked {
        session,
        user,
        new_session: true,
    })
}

/// Sets custom attributes (imported from the claims) on `user`.
async fn set_attributes(
    repo: &mut BoxRepository,
    clock: &dyn Clock,
    user: &User,
    attributes: &BTreeMap<String, String>,
) -> Result<(), StorageError> {
    for (name, value) in attributes {
        repo.user_attributes().set(clock, user, name, value).await?;
    }
    Ok(())
}

/// Links the (still unlinked) upstream account to the signed-in user,
/// stores the custom attributes imported from the claims on them, and
/// records the upstream authentication on their current session.
pub async fn link_to_current(
    repos: &dyn RepositoryFactory,
    clock: &dyn Clock,
    rng: &mut ChaCha20Rng,
    upstream_id: Ulid,
    session_id: Ulid,
    attributes: &BTreeMap<String, String>,
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
    set_attributes(&mut repo, clock, &user, attributes).await?;
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

/// Whether `localpart` can be taken by the account being registered,
/// before anything is written: `Ok(true)` if a user of ours has it (then
/// `on_conflict` decides, in [`register`]'s transaction), `Ok(false)` if
/// it is free here and on the homeserver.
///
/// A name that only the homeserver has is treated like one of ours that
/// cannot be linked: typed → [`LinkError::Taken`]; imported →
/// [`LinkError::ExistingAccount`] with `on_conflict: fail`, else
/// [`LinkError::HomeserverAccount`] (there is no account here to link).
/// An imported name one of ours has with `on_conflict: fail` is
/// [`LinkError::ExistingAccount`] at once.
pub async fn check_localpart(
    repos: &dyn RepositoryFactory,
    hs: &dyn Homeserver,
    localpart: &str,
    imported: bool,
    on_conflict: OnConflict,
) -> Result<bool, LinkError> {
    let conflict = || {
        if on_conflict == OnConflict::Fail {
            LinkError::ExistingAccount {
                localpart: localpart.to_owned(),
            }
        } else {
            LinkError::HomeserverAccount {
                localpart: localpart.to_owned(),
            }
        }
    };
    let known = {
        let mut repo = repos.read().await?;
        let user = repo.users().find_by_username(localpart).await?;
        repo.cancel().await?;
        user.is_some()
    };
    if known {
        return match (imported, on_conflict) {
            (false, _) => Err(LinkError::Taken),
            (true, OnConflict::Fail) => Err(conflict()),
            (true, _) => Ok(true),
        };
    }
    match homeserver_allows(hs, localpart).await {
        Ok(HomeserverVerdict::Free) => Ok(false),
        Ok(HomeserverVerdict::Taken) if imported => Err(conflict()),
        Ok(HomeserverVerdict::Taken) => Err(LinkError::Taken),
        Ok(HomeserverVerdict::Invalid) => {
            Err(LinkError::InvalidUsername(HOMESERVER_REFUSES_USERNAME))
        }
        Err(e) => Err(LinkError::Homeserver(e)),
    }
}

/// Creates the user (or, with `on_conflict` `add`/`replace`/`set` and an
/// imported localpart, links the existing one and sets the imported custom
/// attributes on it), links the upstream account, schedules provisioning on
/// the homeserver, and signs in. The homeserver is asked first
/// ([`check_localpart`]), outside the transaction; a refusal consumes
/// nothing, so the browser may try again.
#[allow(clippy::too_many_arguments)]
pub async fn register(
    repos: &dyn RepositoryFactory,
    clock: &dyn Clock,
    rng: &mut ChaCha20Rng,
    hs: &dyn Homeserver,
    homeserver: &str,
    upstream_id: Ulid,
    account: &NewAccount,
    browser: Browser<'_>,
) -> Result<Linked, LinkError> {
    validate_new_localpart(&account.localpart, homeserver).map_err(|e| match e {
        RegisterError::InvalidUsername(m) => LinkError::InvalidUsername(m),
        _ => LinkError::InvalidUsername("This username is not valid."),
    })?;
    let known = check_localpart(
        repos,
        hs,
        &account.localpart,
        account.localpart_imported,
        account.on_conflict,
    )
    .await?;
    let mut repo = repos.write().await?;
    let (up, link) = consume(&mut repo, clock, upstream_id).await?;
    if link.user_id.is_some() {
        return Err(LinkError::LinkChanged);
    }
    let existing = repo.users().find_by_username(&account.localpart).await?;
    let (user, created) = match existing {
        // Users are never deleted: one of ours that vanished since the
        // check is a race lost; the browser starts again.
        None if known => return Err(LinkError::LinkChanged),
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
        set_attributes(&mut repo, clock, &user, &account.attributes).await?;
        super::provisioning::schedule_new_user_with_display_name(
            &mut *repo,
            rng,
            clock,
            &user,
            account.displayname.as_deref(),
        )
        .await?;
    } else {
        set_attributes(&mut repo, clock, &user, &account.attributes).await?;
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
