//! Concurrent workers never get the same job: on PostgreSQL through
//! `FOR UPDATE SKIP LOCKED`, on SQLite through the write lock that
//! `BEGIN IMMEDIATE` takes.

use std::collections::HashSet;

use chrono::Duration;
use vestibule_domain::Ulid;
use vestibule_storage::{RepositoryFactory, conformance::Ctx};
use vestibule_storage_sql::testing::TestDatabase;

const JOBS: usize = 20;

async fn reserver(f: &dyn RepositoryFactory, ctx: &Ctx) -> Vec<Ulid> {
    let mut repo = f.write().await.expect("write");
    let jobs = repo
        .jobs()
        .reserve(&ctx.clock, &["provision"], 10, Duration::seconds(60))
        .await
        .expect("reserve");
    // Hold the transaction open a little so the reservers really overlap.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    repo.save().await.expect("save");
    jobs.into_iter().map(|j| j.id).collect()
}

async fn concurrent_reserve_is_exclusive(f: &dyn RepositoryFactory) {
    let mut ctx = Ctx::default();
    let mut repo = f.write().await.expect("write");
    let mut scheduled = HashSet::new();
    for i in 0..JOBS {
        let job = repo
            .jobs()
            .schedule(
                &mut ctx.rng,
                &ctx.clock,
                "provision",
                serde_json::json!({ "n": i }),
                3,
                None,
            )
            .await
            .expect("schedule");
        scheduled.insert(job.id);
    }
    repo.save().await.expect("save");

    let handed_out = tokio::join!(
        reserver(f, &ctx),
        reserver(f, &ctx),
        reserver(f, &ctx),
        reserver(f, &ctx),
    );
    let handed_out = [handed_out.0, handed_out.1, handed_out.2, handed_out.3];
    let mut seen = HashSet::new();
    for id in handed_out.iter().flatten() {
        assert!(seen.insert(*id), "job {id} was handed out twice");
    }
    assert_eq!(
        seen,
        scheduled,
        "every job was handed out (per reserver: {:?})",
        handed_out.iter().map(Vec::len).collect::<Vec<_>>()
    );

    let mut repo = f.read().await.expect("read");
    assert_eq!(
        repo.jobs()
            .count_by_status(vestibule_domain::job::JobStatus::Running)
            .await
            .expect("count"),
        JOBS as u64
    );
    for id in &scheduled {
        let job = repo.jobs().lookup(*id).await.expect("lookup").expect("job");
        assert_eq!(job.attempts, 1, "each job was reserved exactly once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_reserve_is_exclusive() {
    let db = TestDatabase::sqlite().await.expect("sqlite");
    concurrent_reserve_is_exclusive(&db.storage).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_reserve_is_exclusive() {
    let Some(db) = TestDatabase::postgres().await.expect("postgres") else {
        return;
    };
    concurrent_reserve_is_exclusive(&db.storage).await;
    db.cleanup().await;
}
