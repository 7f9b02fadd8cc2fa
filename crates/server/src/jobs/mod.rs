//! Durable background jobs: what must reach the homeserver even if it is
//! down at the moment (provisioning users, syncing devices, deactivation).
//!
//! A flow schedules a job in its own transaction (so the job exists if and
//! only if the change that needs it was committed), then the [`JobWorker`]
//! runs it against the [`Homeserver`](crate::homeserver::Homeserver),
//! retrying with the domain's backoff ([`vestibule_domain::job::retry_delay`])
//! until it succeeds or runs out of attempts. An error that no retry can
//! mend (the homeserver refusing the request itself with a 400 or a 404 for
//! the user, or a payload that does not decode) fails the job at once, with
//! the error recorded; transient ones (connection refused, timeouts, 5xx,
//! 429) and a refused shared secret (fixed by the operator) keep backing off.
//!
//! The `schedule_*` helpers also wake the worker of this process at once
//! ([`wake_workers`]). The wake may arrive before the scheduling transaction
//! commits; on SQLite the worker's write transaction then waits for it, on
//! PostgreSQL the worker may miss the job and take it at the next poll
//! ([`WorkerSettings::poll_interval`]). Workers of other replicas only poll.

mod worker;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use vestibule_domain::{Clock, Ulid, job::Job};
use vestibule_storage::{RepositoryAccess, Rng, StorageError};

pub use worker::{Housekeeping, JobWorker, PassReport, WorkerSettings};

/// The queue of homeserver jobs. One queue, so jobs run roughly in the order
/// they were scheduled (provisioning before the device sync that needs it).
pub const HOMESERVER_QUEUE: &str = "homeserver";

/// Attempts before a homeserver job is given up (`failed`). With the backoff
/// (5 s doubling, capped at 10 min) this covers about two hours of outage.
pub const HOMESERVER_MAX_ATTEMPTS: u32 = 20;

/// Create the user on the homeserver, or bring its profile up to date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionUser {
    pub localpart: String,
    /// `None` leaves the display name as it is (Synapse defaults a new user's
    /// display name to the localpart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The complete list of the user's emails (replaces the homeserver's).
    #[serde(default)]
    pub emails: Vec<String>,
    #[serde(default)]
    pub locked: bool,
}

/// A job payload, stored as JSON tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HomeserverJob {
    ProvisionUser(ProvisionUser),
    /// Make the homeserver's device list of the user match their active
    /// sessions.
    SyncDevices {
        user_id: Ulid,
    },
    /// Deactivate the user (and erase their data if `erase`).
    DeleteUser {
        localpart: String,
        erase: bool,
    },
    ReactivateUser {
        localpart: String,
    },
}

impl HomeserverJob {
    /// A short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ProvisionUser(_) => "provision_user",
            Self::SyncDevices { .. } => "sync_devices",
            Self::DeleteUser { .. } => "delete_user",
            Self::ReactivateUser { .. } => "reactivate_user",
        }
    }
}

/// Wakes the job worker of this process. Process-wide (not per state) so any
/// flow can schedule a job with only a repository at hand.
static WAKE: Notify = Notify::const_new();

/// Wakes the job worker (a stored permit if it is busy, so no wake is lost).
pub fn wake_workers() {
    WAKE.notify_one();
}

pub(crate) fn waker() -> &'static Notify {
    &WAKE
}

/// Schedules a homeserver job in the caller's transaction and wakes the
/// worker. The job runs once the transaction is saved.
pub async fn schedule(
    repo: &mut (dyn RepositoryAccess + '_),
    rng: Rng<'_>,
    clock: &dyn Clock,
    job: &HomeserverJob,
) -> Result<Job, StorageError> {
    let payload = serde_json::to_value(job)
        .map_err(|e| StorageError::InvalidData(format!("job payload does not serialise: {e}")))?;
    let scheduled = repo
        .jobs()
        .schedule(
            rng,
            clock,
            HOMESERVER_QUEUE,
            payload,
            HOMESERVER_MAX_ATTEMPTS,
            None,
        )
        .await?;
    tracing::debug!(job.id = %scheduled.id, kind = job.kind(), "scheduled homeserver job");
    wake_workers();
    Ok(scheduled)
}

/// Schedules creating or updating the user on the homeserver.
pub async fn schedule_provision_user(
    repo: &mut (dyn RepositoryAccess + '_),
    rng: Rng<'_>,
    clock: &dyn Clock,
    provision: ProvisionUser,
) -> Result<Job, StorageError> {
    schedule(repo, rng, clock, &HomeserverJob::ProvisionUser(provision)).await
}

/// Schedules syncing the user's devices with their active sessions.
pub async fn schedule_sync_devices(
    repo: &mut (dyn RepositoryAccess + '_),
    rng: Rng<'_>,
    clock: &dyn Clock,
    user_id: Ulid,
) -> Result<Job, StorageError> {
    schedule(repo, rng, clock, &HomeserverJob::SyncDevices { user_id }).await
}

/// Schedules deactivating the user on the homeserver.
pub async fn schedule_delete_user(
    repo: &mut (dyn RepositoryAccess + '_),
    rng: Rng<'_>,
    clock: &dyn Clock,
    localpart: &str,
    erase: bool,
) -> Result<Job, StorageError> {
    schedule(
        repo,
        rng,
        clock,
        &HomeserverJob::DeleteUser {
            localpart: localpart.to_owned(),
            erase,
        },
    )
    .await
}

/// Schedules reactivating the user on the homeserver.
pub async fn schedule_reactivate_user(
    repo: &mut (dyn RepositoryAccess + '_),
    rng: Rng<'_>,
    clock: &dyn Clock,
    localpart: &str,
) -> Result<Job, StorageError> {
    schedule(
        repo,
        rng,
        clock,
        &HomeserverJob::ReactivateUser {
            localpart: localpart.to_owned(),
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_tagged() {
        let job = HomeserverJob::ProvisionUser(ProvisionUser {
            localpart: "alice".to_owned(),
            display_name: Some("Alice".to_owned()),
            emails: vec!["alice@example.org".to_owned()],
            locked: false,
        });
        let json = serde_json::to_value(&job).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "type": "provision_user",
                "localpart": "alice",
                "display_name": "Alice",
                "emails": ["alice@example.org"],
                "locked": false,
            })
        );
        assert_eq!(serde_json::from_value::<HomeserverJob>(json).unwrap(), job);
        let json = serde_json::json!({"type": "delete_user", "localpart": "bob", "erase": true});
        assert_eq!(
            serde_json::from_value::<HomeserverJob>(json).unwrap(),
            HomeserverJob::DeleteUser {
                localpart: "bob".to_owned(),
                erase: true
            }
        );
        let id = Ulid::from_parts(1, 2);
        let json = serde_json::to_value(HomeserverJob::SyncDevices { user_id: id }).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "sync_devices", "user_id": id.to_string()})
        );
        assert!(
            serde_json::from_value::<HomeserverJob>(serde_json::json!({"type": "nope"})).is_err()
        );
    }
}
