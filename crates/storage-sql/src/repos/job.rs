use std::fmt::Write as _;

use async_trait::async_trait;
use chrono::Duration;
use vestibule_domain::{
    InvalidTransition, Ulid,
    job::{Job, JobStatus, retry_delay},
    new_id,
};
use vestibule_storage::{Clock, Rng, StorageError, job::JobRepository};

use super::repo_struct;
use crate::{
    Engine,
    conn::{DbResult, execute, expect_cas, from_ms, ms, opt_from_ms, run, to_u64, ulid},
};

repo_struct!(SqlJobRepository);

#[derive(sqlx::FromRow)]
struct JobRow {
    id: String,
    queue: String,
    payload: String,
    status: String,
    attempts: i64,
    max_attempts: i64,
    scheduled_at: i64,
    locked_until: Option<i64>,
    last_error: Option<String>,
    created_at: i64,
    completed_at: Option<i64>,
}

fn count(what: &str, n: i64) -> Result<u32, StorageError> {
    u32::try_from(n).map_err(|_| StorageError::InvalidData(format!("job {what} out of range: {n}")))
}

impl TryFrom<JobRow> for Job {
    type Error = StorageError;
    fn try_from(r: JobRow) -> Result<Self, StorageError> {
        let id = ulid(&r.id)?;
        Ok(Job {
            id,
            queue: r.queue,
            payload: serde_json::from_str(&r.payload).map_err(|e| {
                StorageError::InvalidData(format!("job {id} has a bad payload: {e}"))
            })?,
            status: JobStatus::parse(&r.status).ok_or_else(|| {
                StorageError::InvalidData(format!("job {id} has unknown status {:?}", r.status))
            })?,
            attempts: count("attempts", r.attempts)?,
            max_attempts: count("max_attempts", r.max_attempts)?,
            scheduled_at: from_ms(r.scheduled_at)?,
            locked_until: opt_from_ms(r.locked_until)?,
            last_error: r.last_error,
            created_at: from_ms(r.created_at)?,
            completed_at: opt_from_ms(r.completed_at)?,
        })
    }
}

const JOB_COLUMNS: &str = "id, queue, payload, status, attempts, max_attempts, scheduled_at, \
     locked_until, last_error, created_at, completed_at";

fn not_running(job: &Job, to: &'static str) -> StorageError {
    InvalidTransition {
        entity: "job",
        from: job.status.as_str(),
        to,
    }
    .into()
}

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
        let now = clock.now();
        let payload_text = serde_json::to_string(&payload).map_err(|e| {
            StorageError::InvalidData(format!("job payload does not serialise: {e}"))
        })?;
        let job = Job {
            id: new_id(clock, rng),
            queue: queue.to_owned(),
            payload,
            status: JobStatus::Scheduled,
            attempts: 0,
            max_attempts,
            scheduled_at: now + delay.unwrap_or_else(Duration::zero),
            locked_until: None,
            last_error: None,
            created_at: now,
            completed_at: None,
        };
        execute!(
            self.conn,
            sqlx::query(
                "INSERT INTO jobs \
                 (id, queue, payload, status, attempts, max_attempts, scheduled_at, created_at) \
                 VALUES ($1, $2, $3, $4, 0, $5, $6, $7)"
            )
            .bind(job.id.to_string())
            .bind(&job.queue)
            .bind(&payload_text)
            .bind(job.status.as_str())
            .bind(i64::from(job.max_attempts))
            .bind(ms(job.scheduled_at))
            .bind(ms(job.created_at))
        )
        .db()?;
        Ok(job)
    }

    async fn lookup(&mut self, id: Ulid) -> Result<Option<Job>, StorageError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        let row: Option<JobRow> = run!(self.conn, |c| sqlx::query_as(&sql)
            .bind(id.to_string())
            .fetch_optional(c)
            .await)
        .db()?;
        row.map(Job::try_from).transpose()
    }

    async fn reserve(
        &mut self,
        clock: &dyn Clock,
        queues: &[&str],
        count: u32,
        lease: Duration,
    ) -> Result<Vec<Job>, StorageError> {
        if queues.is_empty() || count == 0 {
            return Ok(Vec::new());
        }
        let now = clock.now();
        // $1 = locked_until, $2 = now, $3 = limit, $4… = queues.
        let mut queue_list = String::new();
        for i in 0..queues.len() {
            if i > 0 {
                queue_list.push_str(", ");
            }
            let _ = write!(queue_list, "${}", i + 4);
        }
        let due = format!(
            "SELECT id FROM jobs WHERE queue IN ({queue_list}) \
             AND ((status = 'scheduled' AND scheduled_at <= $2) \
               OR (status = 'running' AND locked_until <= $2)) \
             ORDER BY scheduled_at, id LIMIT $3"
        );
        let set = "SET status = 'running', locked_until = $1, attempts = jobs.attempts + 1";
        let sql = match self.conn.engine() {
            // Concurrent workers skip rows another transaction has leased but
            // not yet committed, instead of waiting for them or taking them too.
            Engine::Postgres => format!(
                "WITH due AS MATERIALIZED ({due} FOR UPDATE SKIP LOCKED) \
                 UPDATE jobs {set} FROM due WHERE jobs.id = due.id \
                 RETURNING {}",
                JOB_COLUMNS
                    .split(", ")
                    .map(|c| format!("jobs.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            // `BEGIN IMMEDIATE` already holds the database write lock.
            Engine::Sqlite => {
                format!("UPDATE jobs {set} WHERE id IN ({due}) RETURNING {JOB_COLUMNS}")
            }
        };
        let rows: Vec<JobRow> = run!(self.conn, |c| {
            let mut q = sqlx::query_as(&sql)
                .bind(ms(now + lease))
                .bind(ms(now))
                .bind(i64::from(count));
            for queue in queues {
                q = q.bind(*queue);
            }
            q.fetch_all(c).await
        })
        .db()?;
        let mut jobs = rows
            .into_iter()
            .map(Job::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        // RETURNING does not promise an order.
        jobs.sort_by_key(|j| (j.scheduled_at, j.id));
        Ok(jobs)
    }

    async fn complete(&mut self, clock: &dyn Clock, mut job: Job) -> Result<Job, StorageError> {
        if job.status != JobStatus::Running {
            return Err(not_running(&job, "completed"));
        }
        let now = clock.now();
        // The attempt count fences the lease: a worker whose lease ran out and
        // was handed to another worker loses.
        let rows = execute!(
            self.conn,
            sqlx::query(
                "UPDATE jobs SET status = 'completed', completed_at = $1, locked_until = NULL \
                 WHERE id = $2 AND status = 'running' AND attempts = $3"
            )
            .bind(ms(now))
            .bind(job.id.to_string())
            .bind(i64::from(job.attempts))
        )
        .db()?;
        expect_cas(rows, "job")?;
        job.status = JobStatus::Completed;
        job.completed_at = Some(now);
        job.locked_until = None;
        Ok(job)
    }

    async fn fail(
        &mut self,
        clock: &dyn Clock,
        mut job: Job,
        error: &str,
    ) -> Result<Job, StorageError> {
        if job.status != JobStatus::Running {
            return Err(not_running(&job, "failed"));
        }
        let now = clock.now();
        let (status, scheduled_at) = if job.attempts >= job.max_attempts {
            (JobStatus::Failed, job.scheduled_at)
        } else {
            (JobStatus::Scheduled, now + retry_delay(job.attempts))
        };
        let rows = execute!(
            self.conn,
            sqlx::query(
                "UPDATE jobs SET status = $1, scheduled_at = $2, locked_until = NULL, \
                 last_error = $3 \
                 WHERE id = $4 AND status = 'running' AND attempts = $5"
            )
            .bind(status.as_str())
            .bind(ms(scheduled_at))
            .bind(error)
            .bind(job.id.to_string())
            .bind(i64::from(job.attempts))
        )
        .db()?;
        expect_cas(rows, "job")?;
        job.status = status;
        job.scheduled_at = scheduled_at;
        job.locked_until = None;
        job.last_error = Some(error.to_owned());
        Ok(job)
    }

    async fn count_by_status(&mut self, status: JobStatus) -> Result<u64, StorageError> {
        let n: i64 = run!(self.conn, |c| sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE status = $1"
        )
        .bind(status.as_str())
        .fetch_one(c)
        .await)
        .db()?;
        Ok(to_u64(n))
    }
}
