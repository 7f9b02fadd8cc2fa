//! Account life: what the account page shows and does, and what operators
//! do to accounts (`vestibule manage`): lock, unlock, deactivate, reactivate.
//!
//! Every change that the homeserver must learn schedules its job in the
//! same transaction ([`super::provisioning`]).

use chrono::{DateTime, Utc};
use rand::RngCore;
use vestibule_domain::{Clock, Ulid, browser_session::BrowserSession, user::User};
use vestibule_storage::{BoxRepository, StorageError};

use super::{
    provisioning::{self, EndedDevice, session_device_id},
    session::{end_oauth_session, revoke_oauth_session},
};
use crate::jobs;

/// How a client session signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// OAuth 2.0 (next-gen auth).
    OAuth,
    /// The legacy `/login` API.
    Compat,
}

/// A client session of the user, as the account page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSession {
    pub kind: SessionKind,
    pub id: Ulid,
    /// The Matrix device, when the session has one.
    pub device_id: Option<String>,
    /// The client's name (or its `client_id`), or the compat session's name.
    pub client_name: String,
    pub scope: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_active_at: Option<DateTime<Utc>>,
}

/// Everything the account page shows.
#[derive(Debug, Clone)]
pub struct Overview {
    pub emails: Vec<String>,
    /// Attributes imported from an upstream provider (e.g. `tenant_id`).
    pub attributes: std::collections::BTreeMap<String, String>,
    /// The upstream accounts linked to the user: (provider name, the
    /// upstream account's name if known).
    pub upstream_accounts: Vec<(String, Option<String>)>,
    pub sessions: Vec<ClientSession>,
    pub browser_sessions: Vec<BrowserSession>,
}

/// The user's emails and active sessions (client and browser).
pub async fn overview(repo: &mut BoxRepository, user: &User) -> Result<Overview, StorageError> {
    let emails = repo
        .user_emails()
        .all(user)
        .await?
        .into_iter()
        .map(|e| e.email)
        .collect();
    let mut attributes = repo.user_attributes().all(user).await?;
    attributes.retain(|name, _| !super::user_import::is_internal_attribute(name));
    let mut upstream_accounts = Vec::new();
    let links = repo.upstream_links().all_for_user(user).await?;
    for link in links {
        let provider = repo.upstream_providers().lookup(link.provider_id).await?;
        let name = provider
            .and_then(|p| p.human_name.or(p.issuer))
            .unwrap_or_else(|| "An identity provider".to_owned());
        upstream_accounts.push((name, link.human_account_name));
    }
    let sessions = client_sessions(repo, user).await?;
    let browser_sessions = repo.browser_sessions().list_active_for_user(user).await?;
    Ok(Overview {
        emails,
        attributes,
        upstream_accounts,
        sessions,
        browser_sessions,
    })
}

/// The user's active OAuth and compat sessions, newest first.
pub async fn client_sessions(
    repo: &mut BoxRepository,
    user: &User,
) -> Result<Vec<ClientSession>, StorageError> {
    let mut out = Vec::new();
    let oauth = repo.oauth2_sessions().list_active_for_user(user).await?;
    for s in oauth {
        let client = repo.oauth2_clients().lookup(s.client_id).await?;
        let client_name = client.map_or_else(
            || "Unknown application".to_owned(),
            |c| c.client_name.unwrap_or(c.client_id),
        );
        out.push(ClientSession {
            kind: SessionKind::OAuth,
            id: s.id,
            device_id: session_device_id(&s),
            client_name,
            scope: Some(s.scope.clone()),
            created_at: s.created_at,
            last_active_at: s.last_active_at,
        });
    }
    let compat = repo.compat_sessions().list_active_for_user(user).await?;
    for s in compat {
        out.push(ClientSession {
            kind: SessionKind::Compat,
            id: s.id,
            device_id: Some(s.device_id.clone()),
            client_name: s
                .human_name
                .clone()
                .unwrap_or_else(|| "Legacy client".to_owned()),
            scope: None,
            created_at: s.created_at,
            last_active_at: s.last_active_at,
        });
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    Ok(out)
}

/// The user's active session with this Matrix device id.
pub async fn find_by_device(
    repo: &mut BoxRepository,
    user: &User,
    device_id: &str,
) -> Result<Option<ClientSession>, StorageError> {
    Ok(client_sessions(repo, user)
        .await?
        .into_iter()
        .find(|s| s.device_id.as_deref() == Some(device_id)))
}

/// Ends the user's session with this device id ("sign out" on the account
/// page): its tokens are revoked, a `sync_devices` job is scheduled, and the
/// device is returned for the caller to delete on the homeserver after the
/// commit. `None` if the user has no active session with that device.
pub async fn end_session_by_device(
    repo: &mut BoxRepository,
    clock: &dyn Clock,
    rng: &mut (dyn RngCore + Send),
    user: &User,
    device_id: &str,
) -> Result<Option<EndedDevice>, StorageError> {
    let Some(found) = find_by_device(repo, user, device_id).await? else {
        return Ok(None);
    };
    match found.kind {
        SessionKind::OAuth => {
            let Some(session) = repo.oauth2_sessions().lookup(found.id).await? else {
                return Ok(None);
            };
            end_oauth_session(repo, clock, rng, session).await
        }
        SessionKind::Compat => {
            let Some(session) = repo.compat_sessions().lookup(found.id).await? else {
                return Ok(None);
            };
            match repo.compat_sessions().finish(clock, session).await {
                Ok(_) | Err(StorageError::ConcurrentUpdate(_)) => {}
                Err(e) => return Err(e),
            }
            jobs::schedule_sync_devices(&mut **repo, rng, clock, user.id).await?;
            Ok(Some(EndedDevice {
                localpart: user.username.clone(),
                device_id: device_id.to_owned(),
            }))
        }
    }
}

/// What deactivating a user ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deactivated {
    pub oauth_sessions: u64,
    pub compat_sessions: u64,
    pub browser_sessions: u64,
}

/// Deactivates a user: ends every session (OAuth with their tokens,
/// compat, browser), marks the user deactivated and schedules `delete_user`
/// on the homeserver (which removes the user's devices there). Their
/// remaining tokens are inactive at introspection from the commit on.
pub async fn deactivate(
    repo: &mut BoxRepository,
    clock: &dyn Clock,
    rng: &mut (dyn RngCore + Send),
    user: User,
    erase: bool,
) -> Result<(User, Deactivated), StorageError> {
    let mut report = Deactivated::default();
    let sessions = repo.oauth2_sessions().list_active_for_user(&user).await?;
    for session in sessions {
        revoke_oauth_session(repo, clock, session).await?;
        report.oauth_sessions += 1;
    }
    report.compat_sessions = repo
        .compat_sessions()
        .finish_all_for_user(clock, &user)
        .await?;
    report.browser_sessions = repo
        .browser_sessions()
        .finish_all_for_user(clock, &user)
        .await?;
    let user = if user.deactivated_at.is_some() {
        user
    } else {
        repo.users().deactivate(clock, user).await?
    };
    jobs::schedule_delete_user(&mut **repo, rng, clock, &user.username, erase).await?;
    Ok((user, report))
}

/// Reactivates a deactivated user and schedules `reactivate_user` on the
/// homeserver.
pub async fn reactivate(
    repo: &mut BoxRepository,
    clock: &dyn Clock,
    rng: &mut (dyn RngCore + Send),
    user: User,
) -> Result<User, StorageError> {
    let user = repo.users().reactivate(user).await?;
    jobs::schedule_reactivate_user(&mut **repo, rng, clock, &user.username).await?;
    Ok(user)
}

/// Locks a user (no sign-in, tokens inactive), ends their browser sessions
/// and re-provisions them on the homeserver with `locked: true`. Returns the
/// number of browser sessions ended.
pub async fn lock(
    repo: &mut BoxRepository,
    clock: &dyn Clock,
    rng: &mut (dyn RngCore + Send),
    user: User,
) -> Result<(User, u64), StorageError> {
    let user = repo.users().lock(clock, user).await?;
    let ended = repo
        .browser_sessions()
        .finish_all_for_user(clock, &user)
        .await?;
    provisioning::schedule_reprovision(&mut **repo, rng, clock, &user).await?;
    Ok((user, ended))
}

/// Unlocks a user and re-provisions them with `locked: false`.
pub async fn unlock(
    repo: &mut BoxRepository,
    clock: &dyn Clock,
    rng: &mut (dyn RngCore + Send),
    user: User,
) -> Result<User, StorageError> {
    let user = repo.users().unlock(user).await?;
    provisioning::schedule_reprovision(&mut **repo, rng, clock, &user).await?;
    Ok(user)
}

/// The user's sessions that [`end_all_sessions`] ended (or, counted by
/// [`count_active_sessions`], would end).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndedSessions {
    pub oauth_sessions: u64,
    pub compat_sessions: u64,
    pub browser_sessions: u64,
}

impl EndedSessions {
    pub fn total(&self) -> u64 {
        self.oauth_sessions + self.compat_sessions + self.browser_sessions
    }

    pub fn add(&mut self, other: Self) {
        self.oauth_sessions += other.oauth_sessions;
        self.compat_sessions += other.compat_sessions;
        self.browser_sessions += other.browser_sessions;
    }
}

/// Ends every session of a user and keeps the account as it is (`manage
/// kill-sessions`, the session-invalidation step of a migration): OAuth
/// sessions with all their tokens, compat sessions, browser sessions. When a
/// session with a Matrix device ended, one `sync_devices` job is scheduled
/// in this transaction; it removes those devices from the homeserver (the
/// durable path: the caller may be another process than the server, whose
/// worker runs the job).
pub async fn end_all_sessions(
    repo: &mut BoxRepository,
    clock: &dyn Clock,
    rng: &mut (dyn RngCore + Send),
    user: &User,
) -> Result<EndedSessions, StorageError> {
    let mut ended = EndedSessions::default();
    let mut had_device = false;
    let sessions = repo.oauth2_sessions().list_active_for_user(user).await?;
    for session in sessions {
        had_device |= session_device_id(&session).is_some();
        revoke_oauth_session(repo, clock, session).await?;
        ended.oauth_sessions += 1;
    }
    ended.compat_sessions = repo
        .compat_sessions()
        .finish_all_for_user(clock, user)
        .await?;
    ended.browser_sessions = repo
        .browser_sessions()
        .finish_all_for_user(clock, user)
        .await?;
    if had_device || ended.compat_sessions > 0 {
        jobs::schedule_sync_devices(&mut **repo, rng, clock, user.id).await?;
    }
    Ok(ended)
}

/// What [`end_all_sessions`] would end, without ending anything.
pub async fn count_active_sessions(
    repo: &mut BoxRepository,
    user: &User,
) -> Result<EndedSessions, StorageError> {
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let oauth = repo.oauth2_sessions().list_active_for_user(user).await?;
    let compat = repo.compat_sessions().list_active_for_user(user).await?;
    let browser = repo.browser_sessions().list_active_for_user(user).await?;
    Ok(EndedSessions {
        oauth_sessions: count(oauth.len()),
        compat_sessions: count(compat.len()),
        browser_sessions: count(browser.len()),
    })
}
