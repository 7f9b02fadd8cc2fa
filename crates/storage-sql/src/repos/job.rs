//! TODO(helper): real implementation.
#![allow(unused_variables, clippy::unused_async)]
use async_trait::async_trait;
use chrono::Duration;
use vestibule_domain::{
    Ulid,
    job::{Job, JobStatus},
};

use vestibule_storage::{Clock, Rng, StorageError};

use super::repo_struct;
use vestibule_storage::job::*;
repo_struct!(SqlJobRepository);
#[async_trait]
impl JobRepository for SqlJobRepository<'_> {
    async fn schedule(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        queue: &str,
        payload: serde_json::Value,
        max_attempts: u32,
        delay: Option<Duration>,
    ) -> Result<Job, StorageError> {
        unimplemented!()
    }
    async fn lookup(&mut self, id: Ulid) -> Result<Option<Job>, StorageError> {
        unimplemented!()
    }
    async fn reserve(
        &mut self,
        clock: &dyn Clock,
        queues: &[&str],
        count: u32,
        lease: Duration,
    ) -> Result<Vec<Job>, StorageError> {
        unimplemented!()
    }
    async fn complete(&mut self, clock: &dyn Clock, job: Job) -> Result<Job, StorageError> {
        unimplemented!()
    }
    async fn fail(
        &mut self,
        clock: &dyn Clock,
        job: Job,
        error: &str,
    ) -> Result<Job, StorageError> {
        unimplemented!()
    }
    async fn count_by_status(&mut self, status: JobStatus) -> Result<u64, StorageError> {
        unimplemented!()
    }
}
