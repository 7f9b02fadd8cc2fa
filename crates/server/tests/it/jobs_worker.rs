//! The homeserver job worker against the in-memory homeserver, on SQLite and
//! PostgreSQL.

use std::{sync::Arc, time::Duration};

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use vestibule_domain::{
    MockClock, Ulid,
    job::{Job, JobStatus, retry_delay},
    oauth2::ClientAuthMethod,
};
use vestibule_server::{
    homeserver::{Homeserver, HomeserverError, MockHomeserver, MockUser, ReadOnlyHomeserver},
    jobs::{self, HOMESERVER_MAX_ATTEMPTS, JobWorker, ProvisionUser, WorkerSettings},
};
use vestibule_storage::{RepositoryFactory, oauth2::ClientParams};
use vestibule_storage_sql::testing::TestDatabase;

/// A fresh SQLite database, and a PostgreSQL one when configured.
async fn databases() -> Vec<TestDatabase> {
    let mut dbs = vec![TestDatabase::sqlite().await.expect("sqlite")];
    if let Some(pg) = TestDatabase::postgres().await.expect("postgres") {
        dbs.push(pg);
    }
    dbs
}

struct Setup {
    repos: Arc<dyn RepositoryFactory>,
    clock: Arc<MockClock>,
    rng: ChaCha20Rng,
}

impl Setup {
    fn new(db: &TestDatabase) -> Self {
        Self {
            repos: Arc::new(db.storage.clone()),
            clock: Arc::new(MockClock::default()),
            rng: ChaCha20Rng::seed_from_u64(7),
        }
    }

    fn worker(&self, hs: Arc<dyn Homeserver>) -> JobWorker {
        JobWorker::new(
            self.repos.clone(),
            self.clock.clone(),
            hs,
            WorkerSettings::default(),
        )
    }

    async fn provision(&mut self, localpart: &str, display_name: &str) -> Job {
        let mut repo = self.repos.write().await.unwrap();
        let job = jobs::schedule_provision_user(
            &mut *repo,
            &mut self.rng,
            self.clock.as_ref(),
            ProvisionUser {
                localpart: localpart.to_owned(),
                display_name: Some(display_name.to_owned()),
                emails: vec![format!("{localpart}@example.org")],
                locked: false,
            },
        )
        .await
        .unwrap();
        repo.save().await.unwrap();
        job
    }

    async fn job(&self, id: Ulid) -> Job {
        let mut repo = self.repos.read().await.unwrap();
        repo.jobs().lookup(id).await.unwrap().expect("job")
    }
}

#[tokio::test]
async fn worker_provisions_and_retries_while_the_homeserver_is_down() {
    for db in databases().await {
        let mut s = Setup::new(&db);
        let hs = Arc::new(MockHomeserver::new("example.org"));
        let worker = s.worker(hs.clone());
        hs.set_down(true);
        let job = s.provision("alice", "Alice").await;

        // First attempt: refused, rescheduled after the first backoff step.
        let report = worker.run_once().await.unwrap();
        assert_eq!((report.reserved, report.rescheduled), (1, 1), "{report:?}");
        let stored = s.job(job.id).await;
        assert_eq!(stored.status, JobStatus::Scheduled);
        assert_eq!(stored.attempts, 1);
        assert_eq!(stored.scheduled_at, s.clock.now() + retry_delay(1));
        assert!(
            stored
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("unavailable")),
            "{stored:?}"
        );
        assert_eq!(
            worker.run_once().await.unwrap().reserved,
            0,
            "not before the backoff"
        );

        // Second attempt, still down: the backoff grows.
        s.clock.advance(retry_delay(1));
        let report = worker.run_once().await.unwrap();
        assert_eq!(report.rescheduled, 1, "{report:?}");
        let stored = s.job(job.id).await;
        assert_eq!(stored.attempts, 2);
        assert_eq!(stored.scheduled_at, s.clock.now() + retry_delay(2));
        assert!(retry_delay(2) > retry_delay(1));
        assert_eq!(hs.user("alice"), None);

        // Back up: the next due attempt succeeds.
        hs.set_down(false);
        s.clock.advance(retry_delay(1));
        assert_eq!(
            worker.run_once().await.unwrap().reserved,
            0,
            "still inside the second backoff"
        );
        s.clock.advance(retry_delay(2) - retry_delay(1));
        let report = worker.run_once().await.unwrap();
        assert_eq!((report.reserved, report.completed), (1, 1), "{report:?}");
        let stored = s.job(job.id).await;
        assert_eq!(stored.status, JobStatus::Completed);
        assert_eq!(stored.attempts, 3);
        let alice = hs.user("alice").expect("provisioned");
        assert_eq!(alice.display_name.as_deref(), Some("Alice"));
        assert!(alice.emails.contains("alice@example.org"));
        assert_eq!(hs.calls(), ["provision_user alice"]);

        // Done means done.
        s.clock.advance(chrono::Duration::hours(1));
        assert_eq!(worker.run_once().await.unwrap().reserved, 0);
        db.cleanup().await;
    }
}

/// A homeserver that stays down: the job backs off until it runs out of
/// attempts, then it is failed for good and never runs again.
#[tokio::test]
async fn a_job_that_never_succeeds_ends_failed_after_max_attempts() {
    let db = TestDatabase::sqlite().await.unwrap();
    let mut s = Setup::new(&db);
    let hs = Arc::new(MockHomeserver::new("example.org"));
    let worker = s.worker(hs.clone());
    hs.set_down(true);
    let job = s.provision("alice", "Alice").await;
    let mut attempts = 0;
    loop {
        let report = worker.run_once().await.unwrap();
        assert_eq!(report.reserved, 1, "attempt {attempts}: {report:?}");
        attempts += 1;
        let stored = s.job(job.id).await;
        if stored.status == JobStatus::Failed {
            assert_eq!(report.failed, 1);
            break;
        }
        assert_eq!(stored.status, JobStatus::Scheduled);
        assert!(attempts < HOMESERVER_MAX_ATTEMPTS, "never gave up");
        s.clock.advance(retry_delay(stored.attempts));
    }
    assert_eq!(attempts, HOMESERVER_MAX_ATTEMPTS);
    let stored = s.job(job.id).await;
    assert!(
        stored
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("unavailable")),
        "{stored:?}"
    );
    hs.set_down(false);
    s.clock.advance(chrono::Duration::days(1));
    assert_eq!(
        worker.run_once().await.unwrap().reserved,
        0,
        "a failed job is not run again"
    );
    assert_eq!(hs.user("alice"), None);
    db.cleanup().await;
}

/// The homeserver refusing the request itself (400 for a localpart it can
/// never accept, 404 for a user it does not have, any other 400) and a
/// payload that does not decode fail the job at the first attempt, with the
/// error recorded; none of them runs again.
#[tokio::test]
async fn permanent_errors_fail_the_job_at_once() {
    for db in databases().await {
        let mut s = Setup::new(&db);
        let hs = Arc::new(MockHomeserver::new("example.org"));
        let worker = s.worker(hs.clone());

        // 400 M_INVALID_USERNAME: Synapse refuses upper-case localparts.
        let invalid = s.provision("Not-Valid", "Nope").await;
        let mut repo = s.repos.write().await.unwrap();
        // 404 M_NOT_FOUND: nobody to deactivate or reactivate.
        let delete =
            jobs::schedule_delete_user(&mut *repo, &mut s.rng, s.clock.as_ref(), "ghost", false)
                .await
                .unwrap();
        let reactivate =
            jobs::schedule_reactivate_user(&mut *repo, &mut s.rng, s.clock.as_ref(), "ghost")
                .await
                .unwrap();
        // A payload this version cannot read.
        let garbled = repo
            .jobs()
            .schedule(
                &mut s.rng,
                s.clock.as_ref(),
                jobs::HOMESERVER_QUEUE,
                serde_json::json!({"type": "no_such_job"}),
                HOMESERVER_MAX_ATTEMPTS,
                None,
            )
            .await
            .unwrap();
        repo.save().await.unwrap();

        let report = worker.run_once().await.unwrap();
        assert_eq!(
            (report.reserved, report.failed, report.rescheduled),
            (4, 4, 0),
            "{report:?}"
        );
        for (id, error) in [
            (invalid.id, "rejects the localpart"),
            (delete.id, "no such user"),
            (reactivate.id, "no such user"),
            (garbled.id, "bad job payload"),
        ] {
            let stored = s.job(id).await;
            assert_eq!(stored.status, JobStatus::Failed, "{stored:?}");
            assert_eq!(stored.attempts, 1, "{stored:?}");
            assert!(
                stored
                    .last_error
                    .as_deref()
                    .is_some_and(|e| e.contains(error)),
                "{error:?} recorded: {stored:?}"
            );
        }

        // Any other 400 (here for a provisioning that would otherwise work).
        hs.answer_with(Some(HomeserverError::BadRequest {
            errcode: "M_BAD_JSON".to_owned(),
            error: "Invalid JSON".to_owned(),
        }));
        let bad = s.provision("alice", "Alice").await;
        let report = worker.run_once().await.unwrap();
        assert_eq!((report.reserved, report.failed), (1, 1), "{report:?}");
        let stored = s.job(bad.id).await;
        assert_eq!((stored.status, stored.attempts), (JobStatus::Failed, 1));
        assert!(
            stored
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("M_BAD_JSON")),
            "{stored:?}"
        );

        hs.answer_with(None);
        s.clock.advance(chrono::Duration::days(1));
        assert_eq!(
            worker.run_once().await.unwrap().reserved,
            0,
            "a failed job is not run again"
        );
        // One attempt each (jobs scheduled in the same millisecond run in
        // id order, not necessarily in the order they were scheduled).
        let mut calls = hs.calls();
        calls.sort();
        assert_eq!(
            calls,
            [
                "delete_user ghost",
                "provision_user Not-Valid",
                "reactivate_user ghost"
            ]
        );
        db.cleanup().await;
    }
}

/// 5xx, 429, a refused secret and unexpected answers are not the
/// homeserver's verdict on the request: the job backs off and succeeds once
/// the homeserver answers properly.
#[tokio::test]
async fn transient_errors_keep_backing_off() {
    for db in databases().await {
        let mut s = Setup::new(&db);
        let hs = Arc::new(MockHomeserver::new("example.org"));
        let worker = s.worker(hs.clone());
        let job = s.provision("alice", "Alice").await;
        let answers = [
            HomeserverError::Unavailable("500 Internal Server Error".to_owned()),
            HomeserverError::Unavailable("429 Too Many Requests M_LIMIT_EXCEEDED".to_owned()),
            HomeserverError::Forbidden,
            HomeserverError::Other("404 Not Found M_UNRECOGNIZED: Unrecognized request".to_owned()),
        ];
        for (n, answer) in (1_u32..).zip(answers) {
            let expected = answer.to_string();
            hs.answer_with(Some(answer));
            let report = worker.run_once().await.unwrap();
            assert_eq!(
                (report.reserved, report.rescheduled, report.failed),
                (1, 1, 0),
                "{expected}: {report:?}"
            );
            let stored = s.job(job.id).await;
            assert_eq!(stored.status, JobStatus::Scheduled, "{stored:?}");
            assert_eq!(stored.attempts, n);
            assert_eq!(stored.scheduled_at, s.clock.now() + retry_delay(n));
            assert_eq!(stored.last_error.as_deref(), Some(expected.as_str()));
            s.clock.advance(retry_delay(n));
        }
        hs.answer_with(None);
        let report = worker.run_once().await.unwrap();
        assert_eq!((report.reserved, report.completed), (1, 1), "{report:?}");
        assert_eq!(s.job(job.id).await.status, JobStatus::Completed);
        assert!(hs.user("alice").is_some());
        db.cleanup().await;
    }
}

#[tokio::test]
async fn read_only_homeserver_makes_no_writes() {
    let db = TestDatabase::sqlite().await.unwrap();
    let mut s = Setup::new(&db);
    let mock = Arc::new(MockHomeserver::new("example.org"));
    mock.insert_user(
        "bob",
        MockUser {
            display_name: Some("Bob".to_owned()),
            ..MockUser::default()
        },
    );
    let ro = Arc::new(ReadOnlyHomeserver::new(mock.clone()));
    let worker = s.worker(ro.clone());

    s.provision("alice", "Alice").await;
    let mut repo = s.repos.write().await.unwrap();
    jobs::schedule_delete_user(&mut *repo, &mut s.rng, s.clock.as_ref(), "bob", true)
        .await
        .unwrap();
    jobs::schedule_reactivate_user(&mut *repo, &mut s.rng, s.clock.as_ref(), "bob")
        .await
        .unwrap();
    repo.save().await.unwrap();

    let report = worker.run_once().await.unwrap();
    assert_eq!(
        (report.reserved, report.completed),
        (3, 3),
        "skipped writes count as done: {report:?}"
    );
    ro.upsert_device("bob", "DEVICEAAAA", None).await.unwrap();
    ro.sync_devices("bob", &std::collections::BTreeSet::new())
        .await
        .unwrap();
    ro.delete_device("bob", "DEVICEAAAA").await.unwrap();
    ro.set_displayname("bob", "Robert").await.unwrap();
    ro.unset_displayname("bob").await.unwrap();
    ro.allow_cross_signing_reset("bob").await.unwrap();
    assert_eq!(mock.calls(), Vec::<String>::new(), "no write reached it");
    assert_eq!(mock.user("alice"), None);
    let bob = mock.user("bob").unwrap();
    assert!(!bob.deactivated);
    assert_eq!(bob.display_name.as_deref(), Some("Bob"));

    // Reads do reach it.
    assert_eq!(
        ro.query_user("bob").await.unwrap().display_name.as_deref(),
        Some("Bob")
    );
    assert_eq!(ro.is_localpart_available("bob").await, Ok(false));
    assert_eq!(
        mock.calls(),
        ["query_user bob", "is_localpart_available bob"]
    );
    db.cleanup().await;
}

/// `matrix.kind: synapse_read_only` in the config gives the read-only wrapper:
/// against an address where nothing listens, writes "succeed" (skipped) and
/// reads fail as unavailable.
#[tokio::test]
async fn config_kind_synapse_read_only_skips_writes() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut config = vestibule_config::Config::default();
    config.matrix.kind = vestibule_config::HomeserverKind::SynapseReadOnly;
    config.matrix.secret = Some("s3cret".into());
    config.matrix.endpoint = format!("http://127.0.0.1:{port}/").parse().unwrap();
    "example.org".clone_into(&mut config.matrix.homeserver);
    let hs = vestibule_server::homeserver::from_config(&config).unwrap();
    assert_eq!(hs.mxid("alice"), "@alice:example.org");
    hs.provision_user(&vestibule_server::homeserver::ProvisionRequest::new(
        "alice",
    ))
    .await
    .unwrap();
    hs.delete_user("alice", false).await.unwrap();
    assert!(hs.query_user("alice").await.unwrap_err().is_retryable());

    config.matrix.kind = vestibule_config::HomeserverKind::Synapse;
    let hs = vestibule_server::homeserver::from_config(&config).unwrap();
    assert!(
        hs.provision_user(&vestibule_server::homeserver::ProvisionRequest::new(
            "alice"
        ))
        .await
        .unwrap_err()
        .is_retryable(),
        "the plain kind does write"
    );

    config.matrix.secret = None;
    let missing = vestibule_server::homeserver::from_config(&config).map(|_| ());
    assert!(
        matches!(&missing, Err(e) if e.path == "matrix.secret"),
        "{missing:?}"
    );
}

#[tokio::test]
async fn sync_devices_job_uses_the_active_sessions() {
    for db in databases().await {
        let mut s = Setup::new(&db);
        let hs = Arc::new(MockHomeserver::new("example.org"));
        hs.insert_user("alice", MockUser::default());
        hs.upsert_device("alice", "OLDDEVICE1", None).await.unwrap();
        hs.upsert_device("alice", "KEPTDEVICE", None).await.unwrap();

        let mut repo = s.repos.write().await.unwrap();
        let user = repo
            .users()
            .add(&mut s.rng, s.clock.as_ref(), "alice")
            .await
            .unwrap();
        let client = repo
            .oauth2_clients()
            .add(
                &mut s.rng,
                s.clock.as_ref(),
                ClientParams {
                    client_name: None,
                    client_uri: None,
                    logo_uri: None,
                    policy_uri: None,
                    tos_uri: None,
                    redirect_uris: vec!["https://app.example.org/cb".parse().unwrap()],
                    grant_types: vec!["authorization_code".to_owned()],
                    application_type: None,
                    token_endpoint_auth_method: ClientAuthMethod::None,
                    encrypted_client_secret: None,
                    jwks: None,
                    jwks_uri: None,
                    id_token_signed_response_alg: None,
                    metadata_digest: None,
                },
            )
            .await
            .unwrap();
        for scope in [
            "openid urn:matrix:client:api:* urn:matrix:client:device:KEPTDEVICE",
            "urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:org.matrix.msc2967.client:device:NEWDEVICE2",
            // No device: contributes nothing.
            "openid",
        ] {
            repo.oauth2_sessions()
                .add(
                    &mut s.rng,
                    s.clock.as_ref(),
                    &client,
                    Some(&user),
                    None,
                    scope,
                )
                .await
                .unwrap();
        }
        let ended = repo
            .oauth2_sessions()
            .add(
                &mut s.rng,
                s.clock.as_ref(),
                &client,
                Some(&user),
                None,
                "urn:matrix:client:api:* urn:matrix:client:device:ENDEDDEVIC",
            )
            .await
            .unwrap();
        repo.oauth2_sessions()
            .finish(s.clock.as_ref(), ended)
            .await
            .unwrap();
        jobs::schedule_sync_devices(&mut *repo, &mut s.rng, s.clock.as_ref(), user.id)
            .await
            .unwrap();
        // A user that no longer exists: nothing to sync, nothing to retry.
        jobs::schedule_sync_devices(
            &mut *repo,
            &mut s.rng,
            s.clock.as_ref(),
            Ulid::from_parts(1, 1),
        )
        .await
        .unwrap();
        repo.save().await.unwrap();

        let report = s.worker(hs.clone()).run_once().await.unwrap();
        assert_eq!((report.reserved, report.completed), (2, 2), "{report:?}");
        let devices: Vec<String> = hs.user("alice").unwrap().devices.into_keys().collect();
        assert_eq!(devices, ["KEPTDEVICE", "NEWDEVICE2"]);
        db.cleanup().await;
    }
}

/// The running worker wakes as soon as a job is scheduled (its poll interval
/// here is an hour) and stops on the shutdown signal.
#[tokio::test]
async fn running_worker_wakes_on_schedule_and_stops_on_shutdown() {
    let db = TestDatabase::sqlite().await.unwrap();
    let mut s = Setup::new(&db);
    let hs = Arc::new(MockHomeserver::new("example.org"));
    let worker = JobWorker::new(
        s.repos.clone(),
        s.clock.clone(),
        hs.clone(),
        WorkerSettings {
            poll_interval: Duration::from_hours(1),
            ..WorkerSettings::default()
        },
    );
    let mut passes = worker.passes();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(worker.run(shutdown));
    // The first pass runs at start.
    tokio::time::timeout(Duration::from_secs(10), passes.wait_for(|n| *n >= 1))
        .await
        .expect("first pass")
        .unwrap();

    let job = s.provision("alice", "Alice").await;
    // Other tests in this binary may wake the worker too; wait for the pass
    // that ran our job, bounded well below the poll interval.
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            passes.changed().await.unwrap();
            if s.job(job.id).await.status == JobStatus::Completed {
                break;
            }
        }
    })
    .await
    .expect("the schedule helper woke the worker");
    assert!(hs.user("alice").is_some());

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the worker stops on shutdown")
        .unwrap();
    db.cleanup().await;
}

/// Housekeeping deletes upstream sessions abandoned past their 30-minute
/// lifetime and keeps the fresh ones.
#[tokio::test]
async fn housekeeping_purges_abandoned_upstream_sessions() {
    for db in databases().await {
        let mut s = Setup::new(&db);
        let worker = s.worker(Arc::new(MockHomeserver::new("example.org")));
        let mut repo = s.repos.write().await.unwrap();
        let provider = repo
            .upstream_providers()
            .upsert(
                s.clock.as_ref(),
                vestibule_domain::new_id(s.clock.as_ref(), &mut s.rng),
                vestibule_storage::upstream::UpstreamProviderParams {
                    issuer: Some("https://idp.example/".to_owned()),
                    human_name: None,
                    brand_name: None,
                },
            )
            .await
            .unwrap();
        let old = repo
            .upstream_sessions()
            .add(
                &mut s.rng,
                s.clock.as_ref(),
                &provider,
                "st-old",
                None,
                None,
                None,
            )
            .await
            .unwrap();
        repo.save().await.unwrap();
        s.clock.advance(chrono::Duration::minutes(29));
        assert_eq!(worker.housekeeping().await.unwrap().abandoned_sessions, 0);
        s.clock.advance(chrono::Duration::minutes(2));
        let done = worker.housekeeping().await.unwrap();
        assert_eq!(done.abandoned_sessions, 1, "{done:?}");
        let mut repo = s.repos.read().await.unwrap();
        assert!(
            repo.upstream_sessions()
                .lookup(old.id)
                .await
                .unwrap()
                .is_none()
        );
    }
}
