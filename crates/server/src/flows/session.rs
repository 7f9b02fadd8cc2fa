//! Ending OAuth 2.0 sessions.

use rand::RngCore;
use vestibule_domain::{Clock, oauth2::Session};
use vestibule_storage::{BoxRepository, StorageError};

use super::provisioning::{EndedDevice, session_device_id};
use crate::jobs;

/// Ends a session: revokes all its access and refresh tokens, marks it
/// finished and, when it had a Matrix device, schedules a `sync_devices` job
/// for its user (in this transaction) and returns the device. Idempotent: an
/// already finished session only has its tokens revoked (again, a no-op).
///
/// The caller commits, then deletes the returned device on the homeserver
/// at once with [`super::provisioning::delete_devices`] (best effort; the
/// job retries it if that fails).
///
/// Used on logout (RFC 7009 revocation of any of its tokens), on an
/// authorization code used twice (RFC 6749 §4.1.2), on a refresh token
/// replay (RFC 9700 §4.14.2) and from the account page.
pub async fn end_oauth_session(
    repo: &mut BoxRepository,
    clock: &dyn Clock,
    rng: &mut (dyn RngCore + Send),
    session: Session,
) -> Result<Option<EndedDevice>, StorageError> {
    let was_valid = session.is_valid();
    revoke_oauth_session(repo, clock, session.clone()).await?;
    let device = match (session.user_id, session_device_id(&session)) {
        (Some(user_id), Some(device_id)) if was_valid => {
            let user = repo.users().lookup(user_id).await?;
            match user {
                Some(user) => {
                    jobs::schedule_sync_devices(&mut **repo, rng, clock, user.id).await?;
                    Some(EndedDevice {
                        localpart: user.username,
                        device_id,
                    })
                }
                None => None,
            }
        }
        _ => None,
    };
    Ok(device)
}

/// Revokes a session's tokens and finishes it, without touching the
/// homeserver (for callers that deal with the devices themselves, like
/// deactivation, where `delete_user` removes them all).
pub async fn revoke_oauth_session(
    repo: &mut BoxRepository,
    clock: &dyn Clock,
    session: Session,
) -> Result<(), StorageError> {
    repo.oauth2_access_tokens()
        .revoke_all_for_session(clock, &session)
        .await?;
    repo.oauth2_refresh_tokens()
        .revoke_all_for_session(clock, &session)
        .await?;
    if session.is_valid() {
        match repo.oauth2_sessions().finish(clock, session).await {
            // Finished concurrently by someone else: the goal is reached.
            Ok(_) | Err(StorageError::ConcurrentUpdate(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Ends a browser session and, with `with_clients`, the OAuth 2.0 and
/// legacy (compat) sessions started from it (their tokens revoked, a
/// `sync_devices` job scheduled). Returns the devices to delete on the
/// homeserver once committed (see [`end_oauth_session`]).
///
/// Used by the upstream back-channel logout (OpenID Connect Back-Channel
/// Logout 1.0 §2.7: "logout_all" ends every session the upstream login
/// led to).
pub async fn end_browser_session(
    repo: &mut BoxRepository,
    clock: &dyn Clock,
    rng: &mut (dyn RngCore + Send),
    browser_session: vestibule_domain::browser_session::BrowserSession,
    with_clients: bool,
) -> Result<Vec<EndedDevice>, StorageError> {
    let bs_id = browser_session.id;
    let user_id = browser_session.user_id;
    if browser_session.is_active() {
        match repo.browser_sessions().finish(clock, browser_session).await {
            Ok(_) | Err(StorageError::ConcurrentUpdate(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let mut devices = Vec::new();
    if !with_clients {
        return Ok(devices);
    }
    let Some(user) = repo.users().lookup(user_id).await? else {
        return Ok(devices);
    };
    let oauth = repo.oauth2_sessions().list_active_for_user(&user).await?;
    for session in oauth {
        if session.browser_session_id == Some(bs_id) {
            devices.extend(end_oauth_session(repo, clock, rng, session).await?);
        }
    }
    let compat = repo.compat_sessions().list_active_for_user(&user).await?;
    let mut ended_compat = false;
    for session in compat {
        if session.browser_session_id == Some(bs_id) {
            let device_id = session.device_id.clone();
            match repo.compat_sessions().finish(clock, session).await {
                Ok(_) | Err(StorageError::ConcurrentUpdate(_)) => {}
                Err(e) => return Err(e),
            }
            ended_compat = true;
            devices.push(EndedDevice {
                localpart: user.username.clone(),
                device_id,
            });
        }
    }
    if ended_compat {
        jobs::schedule_sync_devices(&mut **repo, rng, clock, user.id).await?;
    }
    Ok(devices)
}
