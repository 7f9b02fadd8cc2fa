use chrono::Duration;
use vestibule_domain::job::{JobStatus, retry_delay};

use super::Ctx;
use crate::{RepositoryFactory, StorageError};

pub async fn job_queue(f: &dyn RepositoryFactory) {
    let mut ctx = Ctx::default();
    let lease = Duration::seconds(60);
    let t0 = ctx.clock.now();

    let mut repo = f.write().await.unwrap();
    let payload =
        serde_json::json!({"user_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "devices": ["A", "B"], "n": 3});
    let provision = repo
        .jobs()
        .schedule(
            &mut ctx.rng,
            &ctx.clock,
            "provision",
            payload.clone(),
            3,
            None,
        )
        .await
        .unwrap();
    assert_eq!(provision.status, JobStatus::Scheduled);
    assert_eq!(provision.attempts, 0);
    assert_eq!(provision.scheduled_at, t0);
    let email = repo
        .jobs()
        .schedule(
            &mut ctx.rng,
            &ctx.clock,
            "email",
            serde_json::json!({"to": "alice@example.org"}),
            5,
            Some(Duration::seconds(60)),
        )
        .await
        .unwrap();
    assert_eq!(email.scheduled_at, t0 + Duration::seconds(60));
    let later = repo
        .jobs()
        .schedule(
            &mut ctx.rng,
            &ctx.clock,
            "provision",
            serde_json::json!(null),
            3,
            Some(Duration::seconds(30)),
        )
        .await
        .unwrap();
    repo.save().await.unwrap();

    let mut repo = f.read().await.unwrap();
    let stored = repo.jobs().lookup(provision.id).await.unwrap().unwrap();
    assert_eq!(
        stored, provision,
        "round trip, payload and timestamps included"
    );
    assert_eq!(stored.payload, payload);
    assert_eq!(
        repo.jobs().lookup(later.id).await.unwrap(),
        Some(later.clone())
    );
    assert_eq!(
        repo.jobs()
            .count_by_status(JobStatus::Scheduled)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        repo.jobs()
            .count_by_status(JobStatus::Running)
            .await
            .unwrap(),
        0
    );
    drop(repo);

    // Reserve: only due jobs of the asked queues, leased, attempts 1.
    let mut repo = f.write().await.unwrap();
    assert!(
        repo.jobs()
            .reserve(&ctx.clock, &[], 10, lease)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        repo.jobs()
            .reserve(&ctx.clock, &["provision"], 0, lease)
            .await
            .unwrap()
            .is_empty()
    );
    let got = repo
        .jobs()
        .reserve(&ctx.clock, &["provision", "email"], 10, lease)
        .await
        .unwrap();
    assert_eq!(got.len(), 1, "only the job that is due: {got:?}");
    let first = got.into_iter().next().unwrap();
    assert_eq!(first.id, provision.id);
    assert_eq!(first.status, JobStatus::Running);
    assert_eq!(first.attempts, 1);
    assert_eq!(first.locked_until, Some(t0 + lease));
    assert_eq!(first.payload, payload);
    repo.save().await.unwrap();

    let mut repo = f.write().await.unwrap();
    assert_eq!(
        repo.jobs().lookup(provision.id).await.unwrap(),
        Some(first.clone())
    );
    assert!(
        repo.jobs()
            .reserve(&ctx.clock, &["provision", "email"], 10, lease)
            .await
            .unwrap()
            .is_empty(),
        "a leased job is not handed out again"
    );
    repo.save().await.unwrap();

    // Past the lease, the job is due again (a crashed worker); so are the
    // delayed ones. Oldest scheduled first, at most `count`.
    ctx.clock.advance(lease + Duration::seconds(1));
    let t1 = ctx.clock.now();
    let mut repo = f.write().await.unwrap();
    assert!(
        repo.jobs()
            .reserve(&ctx.clock, &["cleanup"], 10, lease)
            .await
            .unwrap()
            .is_empty(),
        "other queues are not touched"
    );
    let got = repo
        .jobs()
        .reserve(&ctx.clock, &["provision", "email"], 2, lease)
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![provision.id, later.id],
        "ordered by scheduled_at, limited to count"
    );
    let second = got[0].clone();
    let later_running = got[1].clone();
    assert_eq!(second.attempts, 2, "a re-lease is another attempt");
    assert_eq!(second.locked_until, Some(t1 + lease));
    assert_eq!(later_running.attempts, 1);
    repo.save().await.unwrap();

    // The worker whose lease ran out cannot complete or fail the job any more.
    let mut repo = f.write().await.unwrap();
    let stale = repo.jobs().complete(&ctx.clock, first.clone()).await;
    assert!(
        matches!(stale, Err(StorageError::ConcurrentUpdate(_))),
        "got {stale:?}"
    );
    drop(repo);
    let mut repo = f.write().await.unwrap();
    let stale = repo.jobs().fail(&ctx.clock, first.clone(), "late").await;
    assert!(
        matches!(stale, Err(StorageError::ConcurrentUpdate(_))),
        "got {stale:?}"
    );
    drop(repo);

    // Fail: rescheduled with backoff, the error kept.
    let mut repo = f.write().await.unwrap();
    let failed = repo
        .jobs()
        .fail(&ctx.clock, second.clone(), "homeserver said 503")
        .await
        .unwrap();
    assert_eq!(failed.status, JobStatus::Scheduled);
    assert_eq!(failed.scheduled_at, t1 + retry_delay(2));
    assert_eq!(failed.locked_until, None);
    assert_eq!(failed.last_error.as_deref(), Some("homeserver said 503"));
    assert_eq!(failed.attempts, 2);
    repo.save().await.unwrap();
    let mut repo = f.write().await.unwrap();
    assert_eq!(
        repo.jobs().lookup(provision.id).await.unwrap(),
        Some(failed.clone())
    );
    let got = repo
        .jobs()
        .reserve(&ctx.clock, &["provision", "email"], 10, lease)
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![email.id],
        "the failed job waits for its backoff"
    );
    let email_running = got[0].clone();
    repo.save().await.unwrap();

    // After the backoff it runs again; the last attempt fails for good.
    ctx.clock.advance(retry_delay(2));
    let mut repo = f.write().await.unwrap();
    let got = repo
        .jobs()
        .reserve(&ctx.clock, &["provision"], 10, lease)
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![provision.id]
    );
    let third = got[0].clone();
    assert_eq!(third.attempts, 3);
    let dead = repo
        .jobs()
        .fail(&ctx.clock, third, "still 503")
        .await
        .unwrap();
    assert_eq!(dead.status, JobStatus::Failed);
    assert_eq!(dead.attempts, 3);
    assert_eq!(dead.last_error.as_deref(), Some("still 503"));
    assert_eq!(dead.locked_until, None);
    repo.save().await.unwrap();

    ctx.clock.advance(Duration::hours(1));
    let mut repo = f.write().await.unwrap();
    assert_eq!(
        repo.jobs().lookup(provision.id).await.unwrap(),
        Some(dead.clone())
    );
    // The other two jobs' leases ran out meanwhile, so they come back; the
    // failed one never does.
    let got = repo
        .jobs()
        .reserve(&ctx.clock, &["provision", "email"], 10, lease)
        .await
        .unwrap();
    assert!(
        got.iter().all(|j| j.id != provision.id),
        "a failed job is never handed out again"
    );
    assert_eq!(got.len(), 2);
    drop(repo); // roll back that reservation

    // Complete.
    let mut repo = f.write().await.unwrap();
    let done = repo
        .jobs()
        .complete(&ctx.clock, later_running.clone())
        .await
        .unwrap();
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(done.completed_at, Some(ctx.clock.now()));
    assert_eq!(done.locked_until, None);
    repo.save().await.unwrap();
    let mut repo = f.write().await.unwrap();
    assert_eq!(
        repo.jobs().lookup(later.id).await.unwrap(),
        Some(done.clone())
    );
    let again = repo.jobs().complete(&ctx.clock, done.clone()).await;
    assert!(
        matches!(again, Err(StorageError::InvalidTransition(_))),
        "got {again:?}"
    );
    let again = repo.jobs().fail(&ctx.clock, dead.clone(), "x").await;
    assert!(
        matches!(again, Err(StorageError::InvalidTransition(_))),
        "got {again:?}"
    );
    drop(repo);

    let mut repo = f.read().await.unwrap();
    assert_eq!(
        repo.jobs().lookup(email.id).await.unwrap(),
        Some(email_running)
    );
    for (status, n) in [
        (JobStatus::Scheduled, 0),
        (JobStatus::Running, 1),
        (JobStatus::Completed, 1),
        (JobStatus::Failed, 1),
    ] {
        assert_eq!(
            repo.jobs().count_by_status(status).await.unwrap(),
            n,
            "{status:?}"
        );
    }
}
