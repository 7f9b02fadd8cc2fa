use async_trait::async_trait;
use chrono::Duration;
use vestibule_domain::{
    Ulid,
    job::{Job, JobStatus},
};

use crate::{Clock, Rng, StorageError};

#[async_trait]
pub trait JobRepository: Send {
    async fn schedule(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        queue: &str,
        payload: serde_json::Value,
        max_attempts: u32,
        delay: Option<Duration>,
    ) -> Result<Job, StorageError>;
    async fn lookup(&mut self, id: Ulid) -> Result<Option<Job>, StorageError>;
    /// Leases up to `count` due jobs of the given queues for `lease`. Jobs whose
    /// lease ran out (a crashed worker) are due again. On PostgreSQL concurrent
    /// workers skip each other's rows (`FOR UPDATE SKIP LOCKED`).
    async fn reserve(
        &mut self,
        clock: &dyn Clock,
        queues: &[&str],
        count: u32,
        lease: Duration,
    ) -> Result<Vec<Job>, StorageError>;
    async fn complete(&mut self, clock: &dyn Clock, job: Job) -> Result<Job, StorageError>;
    /// Records a failure: rescheduled with backoff, or `Failed` after `max_attempts`.
    async fn fail(&mut self, clock: &dyn Clock, job: Job, error: &str)
    -> Result<Job, StorageError>;
    async fn count_by_status(&mut self, status: JobStatus) -> Result<u64, StorageError>;
}
