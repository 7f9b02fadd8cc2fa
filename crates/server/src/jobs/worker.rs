//! The job worker: reserve due jobs, run them, record the outcome.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use tokio::{
    sync::watch,
    time::{MissedTickBehavior, interval},
};
use vestibule_domain::{
    Clock,
    job::{Job, JobStatus},
    scope::Scope,
};
use vestibule_storage::{RepositoryFactory, StorageError};

use super::{HOMESERVER_QUEUE, HomeserverJob, ProvisionUser};
use crate::homeserver::{FieldAction, Homeserver, HomeserverError, ProvisionRequest};

/// How the worker polls.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Time between polls when nobody wakes the worker.
    pub poll_interval: Duration,
    /// Jobs reserved per transaction.
    pub batch_size: u32,
    /// How long a reserved job is ours. Must outlast a batch of homeserver
    /// calls (each bounded by the request timeout); a crashed worker's jobs
    /// are due again after it.
    pub lease: chrono::Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(5),
            batch_size: 10,
            lease: chrono::Duration::minutes(5),
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Jobs reserved.
    pub reserved: u32,
    pub completed: u32,
    /// Failed and scheduled again after the backoff.
    pub rescheduled: u32,
    /// Failed for good: a permanent error (see [`HomeserverError::is_permanent`],
    /// or a payload that does not decode), or out of attempts.
    pub failed: u32,
}

/// What [`JobWorker::housekeeping`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Housekeeping {
    /// Upstream sessions never consumed, past their lifetime: deleted.
    pub abandoned_sessions: u64,
    /// Consumed upstream sessions whose claims were dropped.
    pub cleared_claims: u64,
    /// Expired logout-token and client-assertion `jti`s forgotten.
    pub expired_jtis: u64,
}

/// How often [`JobWorker::run`] does its housekeeping (and once at start).
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_hours(1);

/// Why a job did not succeed this time.
#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error("bad job payload: {0}")]
    Payload(#[from] serde_json::Error),
    #[error(transparent)]
    Homeserver(#[from] HomeserverError),
    #[error("database: {0}")]
    Storage(#[from] StorageError),
}

impl JobError {
    /// Whether running the job again cannot succeed: the homeserver refused
    /// the request itself (400, 404 for the user), or the payload does not
    /// decode. Everything else (homeserver down, 5xx, 429, a refused secret,
    /// database trouble) is worth the backoff.
    fn is_permanent(&self) -> bool {
        match self {
            Self::Payload(_) => true,
            Self::Homeserver(e) => e.is_permanent(),
            Self::Storage(_) => false,
        }
    }
}

/// Runs homeserver jobs. Cheap to share; [`JobWorker::run`] consumes it.
pub struct JobWorker {
    repos: Arc<dyn RepositoryFactory>,
    clock: Arc<dyn Clock>,
    homeserver: Arc<dyn Homeserver>,
    settings: WorkerSettings,
    passes: watch::Sender<u64>,
}

impl JobWorker {
    pub fn new(
        repos: Arc<dyn RepositoryFactory>,
        clock: Arc<dyn Clock>,
        homeserver: Arc<dyn Homeserver>,
        settings: WorkerSettings,
    ) -> Self {
        Self {
            repos,
            clock,
            homeserver,
            settings,
            passes: watch::Sender::new(0),
        }
    }

    /// A worker over the application's storage, clock and homeserver.
    pub fn from_state(state: &crate::AppState, settings: WorkerSettings) -> Self {
        Self::new(
            state.repos.clone(),
            state.clock.clone(),
            state.homeserver.clone(),
            settings,
        )
    }

    /// Counts the passes [`JobWorker::run`] finished (for tests and health).
    pub fn passes(&self) -> watch::Receiver<u64> {
        self.passes.subscribe()
    }

    /// Housekeeping of short-lived rows, in one transaction: upstream
    /// authorization sessions never consumed within their lifetime
    /// (`UPSTREAM_SESSION_TTL_SECONDS`) are deleted, the claims of those
    /// consumed more than a day ago dropped (only the link step reads
    /// them); expired logout-token and client-assertion `jti`s forgotten.
    pub async fn housekeeping(&self) -> Result<Housekeeping, StorageError> {
        let now = self.clock.now();
        let ttl = chrono::Duration::seconds(crate::upstream::cookie::UPSTREAM_SESSION_TTL_SECONDS);
        let mut repo = self.repos.write().await?;
        let (abandoned_sessions, cleared_claims) = repo
            .upstream_sessions()
            .purge(now - ttl, now - chrono::Duration::days(1))
            .await?;
        let logout_jtis = repo
            .upstream_providers()
            .remove_expired_logout_jtis(self.clock.as_ref())
            .await?;
        let client_assertion_jtis = repo
            .oauth2_client_assertions()
            .remove_expired(self.clock.as_ref())
            .await?;
        repo.save().await?;
        let done = Housekeeping {
            abandoned_sessions,
            cleared_claims,
            expired_jtis: logout_jtis + client_assertion_jtis,
        };
        tracing::debug!(?done, "housekeeping");
        Ok(done)
    }

    /// Reserves the due jobs (one batch), runs them one by one and records
    /// each outcome in its own transaction. Fails only if the reservation
    /// fails.
    pub async fn run_once(&self) -> Result<PassReport, StorageError> {
        let mut repo = self.repos.write().await?;
        let jobs = repo
            .jobs()
            .reserve(
                self.clock.as_ref(),
                &[HOMESERVER_QUEUE],
                self.settings.batch_size,
                self.settings.lease,
            )
            .await?;
        repo.save().await?;

        let mut report = PassReport {
            reserved: u32::try_from(jobs.len()).unwrap_or(u32::MAX),
            ..PassReport::default()
        };
        for job in jobs {
            let id = job.id;
            let outcome = self.execute(&job).await;
            // A job whose outcome cannot be recorded (database trouble, or
            // its lease ran out and another worker took it) is left to its
            // lease; the rest of the batch still runs.
            if let Err(e) = self.record(job, outcome, &mut report).await {
                tracing::warn!(job.id = %id, error = %e, "could not record the job's outcome");
            }
        }
        Ok(report)
    }

    async fn record(
        &self,
        job: Job,
        outcome: Result<(), JobError>,
        report: &mut PassReport,
    ) -> Result<(), StorageError> {
        let mut repo = self.repos.write().await?;
        match outcome {
            Ok(()) => {
                let done = repo.jobs().complete(self.clock.as_ref(), job).await?;
                repo.save().await?;
                tracing::info!(job.id = %done.id, attempts = done.attempts, "homeserver job done");
                report.completed += 1;
            }
            Err(e) => {
                let message = e.to_string();
                let permanent = e.is_permanent();
                let mut job = job;
                if permanent {
                    // The repository fails a job for good once the attempts
                    // made reach the `max_attempts` of the job handed to it
                    // (its compare-and-set is on the id, status and attempts
                    // only): this attempt is the last one. The error is
                    // recorded as for any failure.
                    job.max_attempts = job.attempts;
                }
                let failed = repo.jobs().fail(self.clock.as_ref(), job, &message).await?;
                repo.save().await?;
                if failed.status == JobStatus::Failed {
                    tracing::error!(
                        job.id = %failed.id,
                        attempts = failed.attempts,
                        permanent,
                        error = %message,
                        "homeserver job failed for good"
                    );
                    report.failed += 1;
                } else {
                    tracing::warn!(
                        job.id = %failed.id,
                        attempts = failed.attempts,
                        retry_at = %failed.scheduled_at,
                        error = %message,
                        "homeserver job failed; will retry"
                    );
                    report.rescheduled += 1;
                }
            }
        }
        Ok(())
    }

    /// Polls until `shutdown` turns true: every `poll_interval`, and at once
    /// when a `schedule_*` helper wakes it. A full batch is followed by
    /// another pass straight away. On shutdown the current pass (at most one
    /// batch, each call bounded by the homeserver client's timeout) finishes.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut ticks = interval(self.settings.poll_interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let wake = super::waker();
        tracing::info!(
            poll_interval = ?self.settings.poll_interval,
            "job worker started"
        );
        let mut last_housekeeping: Option<tokio::time::Instant> = None;
        loop {
            if last_housekeeping.is_none_or(|at| at.elapsed() >= HOUSEKEEPING_INTERVAL) {
                last_housekeeping = Some(tokio::time::Instant::now());
                if let Err(e) = self.housekeeping().await {
                    tracing::warn!(error = %e, "housekeeping failed; retrying in an hour");
                }
            }
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => break,
                () = wake.notified() => {}
                _ = ticks.tick() => {}
            }
            loop {
                if *shutdown.borrow() {
                    break;
                }
                match self.run_once().await {
                    Ok(report) if report.reserved >= self.settings.batch_size => {}
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "job worker: database error; retrying at the next poll");
                        break;
                    }
                }
            }
            self.passes.send_modify(|n| *n += 1);
        }
        tracing::info!("job worker stopped");
    }

    async fn execute(&self, job: &Job) -> Result<(), JobError> {
        let payload: HomeserverJob = serde_json::from_value(job.payload.clone())?;
        tracing::debug!(job.id = %job.id, kind = payload.kind(), attempt = job.attempts, "running homeserver job");
        let hs = self.homeserver.as_ref();
        match payload {
            HomeserverJob::ProvisionUser(p) => {
                hs.provision_user(&provision_request(p)).await?;
            }
            HomeserverJob::SyncDevices { user_id } => self.sync_devices(user_id).await?,
            HomeserverJob::DeleteUser { localpart, erase } => {
                hs.delete_user(&localpart, erase).await?;
            }
            HomeserverJob::ReactivateUser { localpart } => hs.reactivate_user(&localpart).await?,
        }
        Ok(())
    }

    async fn sync_devices(&self, user_id: vestibule_domain::Ulid) -> Result<(), JobError> {
        let mut repo = self.repos.read().await?;
        let Some(user) = repo.users().lookup(user_id).await? else {
            tracing::warn!(%user_id, "sync_devices: no such user any more; nothing to do");
            return Ok(());
        };
        // Every device of an active session: OAuth sessions with a device
        // scope, and compat (`/login`) sessions.
        let mut devices: BTreeSet<String> = repo
            .oauth2_sessions()
            .list_active_for_user(&user)
            .await?
            .iter()
            .filter_map(|s| Scope::parse(&s.scope).ok()?.device_id().map(str::to_owned))
            .collect();
        devices.extend(
            repo.compat_sessions()
                .list_active_for_user(&user)
                .await?
                .into_iter()
                .map(|s| s.device_id),
        );
        drop(repo);
        self.homeserver
            .sync_devices(&user.username, &devices)
            .await?;
        Ok(())
    }
}

fn provision_request(p: ProvisionUser) -> ProvisionRequest {
    ProvisionRequest {
        localpart: p.localpart,
        displayname: p.display_name.map_or(FieldAction::Keep, FieldAction::Set),
        avatar_url: FieldAction::Keep,
        emails: FieldAction::Set(p.emails),
        locked: Some(p.locked),
    }
}
