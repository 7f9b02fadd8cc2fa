//! Keeping the homeserver in step with our users and sessions.
//!
//! Two paths, on purpose:
//!
//! - **Durable** (the job queue, [`crate::jobs`]): a change that must reach
//!   the homeserver eventually (a new user, a lock, a deactivation, a
//!   device that must go) is scheduled in the same transaction as the change
//!   itself, so the job exists if and only if the change was committed.
//! - **Synchronous**: where a client is about to use what we hand out (a
//!   token's device must exist in Synapse before the token is used, PEERS.md)
//!   or where we want the effect at once (a logout deleting its device), the
//!   call is made inline; a failure of the inline device deletion is covered
//!   by a `sync_devices` job scheduled with the session's end.

use rand::RngCore;
use vestibule_domain::{Clock, job::Job, oauth2::Session, scope::Scope, user::User};
use vestibule_storage::{BoxRepository, RepositoryAccess, StorageError};

use crate::{
    homeserver::{Homeserver, HomeserverError, ProvisionRequest},
    jobs::{self, ProvisionUser},
};

/// What the homeserver should know about a user: their emails and whether
/// they are locked. `display_name` is `Some` only when creating the user
/// (Synapse's own default is the localpart too); re-provisioning leaves the
/// display name alone so a name the user set in their client survives.
pub async fn provision_payload(
    repo: &mut (dyn RepositoryAccess + '_),
    user: &User,
    display_name: Option<String>,
) -> Result<ProvisionUser, StorageError> {
    let emails = repo
        .user_emails()
        .all(user)
        .await?
        .into_iter()
        .map(|e| e.email)
        .collect();
    Ok(ProvisionUser {
        localpart: user.username.clone(),
        display_name,
        emails,
        locked: user.locked_at.is_some(),
    })
}

/// Schedules creating a new user on the homeserver (display name = the
/// localpart, the user's emails, their locked flag), in the caller's
/// transaction. Call it after the user's emails were added.
pub async fn schedule_new_user(
    repo: &mut (dyn RepositoryAccess + '_),
    rng: &mut (dyn RngCore + Send),
    clock: &dyn Clock,
    user: &User,
) -> Result<Job, StorageError> {
    let payload = provision_payload(repo, user, Some(user.username.clone())).await?;
    jobs::schedule_provision_user(repo, rng, clock, payload).await
}

/// Like [`schedule_new_user`], with the display name to create the user
/// with (an upstream login's imported name); the localpart when `None`.
pub async fn schedule_new_user_with_display_name(
    repo: &mut (dyn RepositoryAccess + '_),
    rng: &mut (dyn RngCore + Send),
    clock: &dyn Clock,
    user: &User,
    display_name: Option<&str>,
) -> Result<Job, StorageError> {
    let name = display_name.map_or_else(|| user.username.clone(), str::to_owned);
    let payload = provision_payload(repo, user, Some(name)).await?;
    jobs::schedule_provision_user(repo, rng, clock, payload).await
}

/// Schedules bringing an existing user up to date on the homeserver (emails
/// and the locked flag; the display name is left as it is).
pub async fn schedule_reprovision(
    repo: &mut (dyn RepositoryAccess + '_),
    rng: &mut (dyn RngCore + Send),
    clock: &dyn Clock,
    user: &User,
) -> Result<Job, StorageError> {
    let payload = provision_payload(repo, user, None).await?;
    jobs::schedule_provision_user(repo, rng, clock, payload).await
}

/// A Matrix device a token is about to be issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceProvisioning {
    pub localpart: String,
    pub device_id: String,
    /// The client's name, as the device's display name.
    pub display_name: Option<String>,
    /// Used only if the user does not exist on the homeserver yet.
    pub user: ProvisionUser,
}

/// The device of an OAuth session, if its scope has a Matrix device scope
/// and it belongs to a user.
pub async fn device_of_session(
    repo: &mut BoxRepository,
    session: &Session,
    user: &User,
    client_name: Option<&str>,
) -> Result<Option<DeviceProvisioning>, StorageError> {
    device_of_scope(repo, &session.scope, user, client_name).await
}

/// The device named by a scope (e.g. a device code grant's, before its
/// session exists), if it has a Matrix device scope.
pub async fn device_of_scope(
    repo: &mut BoxRepository,
    scope: &str,
    user: &User,
    client_name: Option<&str>,
) -> Result<Option<DeviceProvisioning>, StorageError> {
    let Some(device_id) = Scope::parse(scope)
        .ok()
        .and_then(|s| s.device_id().map(str::to_owned))
    else {
        return Ok(None);
    };
    // No display name: this payload is sent only when the user's
    // provisioning job has not created them yet, and the job may be doing
    // so right now with the imported name. Sending ours would overwrite it
    // (Synapse's update path); without one, Synapse creates the user with
    // the localpart and the job's name wins either way.
    let user_payload = provision_payload(&mut **repo, user, None).await?;
    Ok(Some(DeviceProvisioning {
        localpart: user.username.clone(),
        device_id,
        display_name: client_name.map(str::to_owned),
        user: user_payload,
    }))
}

/// The Matrix device id in a session's scope.
pub fn session_device_id(session: &Session) -> Option<String> {
    Scope::parse(&session.scope)
        .ok()?
        .device_id()
        .map(str::to_owned)
}

/// Makes sure the user and the device exist on the homeserver (idempotent).
/// One call in the usual case: `upsert_device`; only when the homeserver
/// does not know the user yet (its provisioning job has not run) is the user
/// provisioned first.
pub async fn ensure_device(
    homeserver: &dyn Homeserver,
    device: &DeviceProvisioning,
) -> Result<(), HomeserverError> {
    let upsert = || {
        homeserver.upsert_device(
            &device.localpart,
            &device.device_id,
            device.display_name.as_deref(),
        )
    };
    match upsert().await {
        Ok(_) => Ok(()),
        Err(HomeserverError::NotFound) => {
            let request = provision_request(&device.user);
            homeserver.provision_user(&request).await?;
            upsert().await.map(|_| ())
        }
        Err(e) => Err(e),
    }
}

/// The `provision_user` request of a job payload.
pub fn provision_request(p: &ProvisionUser) -> ProvisionRequest {
    let mut request = ProvisionRequest::new(p.localpart.clone())
        .set_emails(p.emails.clone())
        .locked(p.locked);
    if let Some(name) = &p.display_name {
        request = request.set_displayname(name.clone());
    }
    request
}

/// A device whose session just ended: to delete on the homeserver once the
/// end is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedDevice {
    pub localpart: String,
    pub device_id: String,
}

/// Deletes ended sessions' devices on the homeserver now, so Synapse
/// refuses their tokens at once (it re-checks the device on every request,
/// despite caching introspection for 2 minutes). Best effort: a failure is
/// logged, and the `sync_devices` job scheduled with the session's end
/// deletes the device later.
pub async fn delete_devices(homeserver: &dyn Homeserver, devices: &[EndedDevice]) {
    for d in devices {
        match homeserver.delete_device(&d.localpart, &d.device_id).await {
            Ok(()) | Err(HomeserverError::NotFound) => {
                tracing::debug!(localpart = %d.localpart, device_id = %d.device_id, "deleted the device of an ended session");
            }
            Err(e) => tracing::warn!(
                localpart = %d.localpart,
                device_id = %d.device_id,
                error = %e,
                "could not delete the device of an ended session now; the sync_devices job will"
            ),
        }
    }
}
