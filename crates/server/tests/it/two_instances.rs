//! Two instances of one deployment on one database (R11): A and B have the
//! same config, signing key and encryption secret, and their own pools,
//! in-process state and rng, as two replicas behind a load balancer. On
//! PostgreSQL, and on SQLite as two pools on one file. Single use, rotation
//! and revocation are decided in the database (compare-and-set, no
//! cross-instance cache), so they hold across instances at once.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
};
use serde_json::{Value, json};
use vestibule_domain::{MockClock, Ulid, job::JobStatus, oauth2::Client, tokens::token_hash};
use vestibule_server::{
    Resources,
    homeserver::MockHomeserver,
    jobs::{self, HOMESERVER_QUEUE, JobWorker, ProvisionUser, WorkerSettings},
};
use vestibule_storage::RepositoryFactory;
use vestibule_storage_sql::testing::TestDatabase;

use crate::{
    harness::{body_json, send},
    oauth2_support::{Fx, GrantOpts, REDIRECT, VERIFIER, assert_error, str_of},
};

/// Instance A (rng seed 42) and instance B (seed 43) on one database.
struct Twins {
    a: Fx,
    b: Fx,
    /// The homeserver behind both.
    hs: Arc<MockHomeserver>,
}

impl Twins {
    /// A and B share one clock.
    async fn on(db: TestDatabase) -> Self {
        Self::skewed(db, None).await
    }

    /// With `skew`, B has its own clock, that many seconds ahead of A's
    /// (behind when negative); time then moves separately on each.
    async fn skewed(db: TestDatabase, skew: Option<i64>) -> Self {
        let second = db.reopen().await.expect("a second pool on the database");
        let mut a = Fx::on(db, |_| {});
        let hs = a.reachable_homeserver();
        let t = match skew {
            None => a.t.twin(second, 43),
            Some(seconds) => {
                let clock = MockClock::at(a.t.clock.now() + chrono::Duration::seconds(seconds));
                a.t.twin_with_clock(second, 43, Arc::new(clock))
            }
        };
        let app = t.router(&Resources::all(), None);
        Self {
            a,
            b: Fx { t, app },
            hs,
        }
    }

    async fn cleanup(self) {
        self.b.cleanup().await;
        self.a.cleanup().await;
    }
}

/// One test per engine; the body gets a fresh database.
macro_rules! on_both_engines {
    ($sqlite:ident, $postgres:ident, $body:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $sqlite() {
            $body(TestDatabase::sqlite().await.expect("sqlite")).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $postgres() {
            let Some(db) = TestDatabase::postgres().await.expect("postgres") else {
                return;
            };
            $body(db).await;
        }
    };
}

fn form_request(path: &str, form: &[(&str, &str)]) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(serde_urlencoded::to_string(form).unwrap()))
        .unwrap()
}

/// Sends the token requests at once, request `i` to `apps[i]`; returns
/// each (status, body) in order.
async fn race(apps: Vec<Router>, forms: Vec<Vec<(String, String)>>) -> Vec<(StatusCode, Value)> {
    let barrier = Arc::new(tokio::sync::Barrier::new(apps.len()));
    let mut tasks = Vec::new();
    for (app, form) in apps.into_iter().zip(forms) {
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let form: Vec<(&str, &str)> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let req = form_request("/oauth2/token", &form);
            barrier.wait().await;
            let res = send(&app, req).await;
            let status = res.status();
            (status, body_json(res).await)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn owned(form: &[(&str, &str)]) -> Vec<(String, String)> {
    form.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

// --- 1. Authorization codes: single use across instances -----------------

/// RFC 6749 §4.1.2: a code is used once; a second use is refused and
/// SHOULD revoke what the first use got. A redeems, B sees the replay.
async fn code_redeemed_on_a_then_on_b(db: TestDatabase) {
    let tw = Twins::on(db).await;
    let client = tw.a.public_client().await;
    let g = tw.a.grant_for(&client, None, GrantOpts::default()).await;
    let first = tw.a.exchange_ok(&client, &g.code).await;
    let (at, rt) = (
        str_of(&first, "access_token"),
        str_of(&first, "refresh_token"),
    );
    // B already knows A's tokens (same database, same MAC key).
    assert!(tw.b.is_active(rt).await && tw.b.is_active(at).await);
    tw.a.advance(30);
    let res = tw.b.exchange(&client, &g.code).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    // The replay on B ended the session A created, on both instances.
    for fx in [&tw.a, &tw.b] {
        assert!(!fx.is_active(at).await, "the first access token is revoked");
        assert!(
            !fx.is_active(rt).await,
            "the first refresh token is revoked"
        );
    }
    let res = tw.a.refresh(&client, rt).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    tw.cleanup().await;
}

on_both_engines!(
    code_redeemed_on_a_then_on_b_is_refused_and_revokes_sqlite,
    code_redeemed_on_a_then_on_b_is_refused_and_revokes_postgres,
    code_redeemed_on_a_then_on_b
);

/// Twenty exchanges of one code, alternating between A and B, released at
/// once: exactly one wins (the compare-and-set on the grant), every other
/// one is `invalid_grant`.
async fn parallel_exchanges_across_instances(db: TestDatabase) {
    let tw = Twins::on(db).await;
    let client = tw.a.public_client().await;
    let g = tw.a.grant_for(&client, None, GrantOpts::default()).await;
    let form = owned(&[
        ("grant_type", "authorization_code"),
        ("code", &g.code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
        ("client_id", &client.client_id),
    ]);
    let apps = (0..20)
        .map(|i| if i % 2 == 0 { &tw.a } else { &tw.b }.app.clone())
        .collect();
    let results = race(apps, vec![form; 20]).await;
    let mut winners = Vec::new();
    for (status, body) in results {
        if status == StatusCode::OK {
            winners.push(body);
        } else {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(body["error"], "invalid_grant", "{body}");
        }
    }
    assert_eq!(winners.len(), 1, "exactly one exchange wins");
    // The losers count as replays (RFC 6749 §4.1.2): whichever instance
    // ran them, the winner's tokens are revoked everywhere.
    let winner = &winners[0];
    for fx in [&tw.a, &tw.b] {
        assert!(!fx.is_active(str_of(winner, "refresh_token")).await);
        assert!(!fx.is_active(str_of(winner, "access_token")).await);
    }
    tw.cleanup().await;
}

on_both_engines!(
    twenty_exchanges_split_across_two_instances_have_one_winner_sqlite,
    twenty_exchanges_split_across_two_instances_have_one_winner_postgres,
    parallel_exchanges_across_instances
);

// --- 2. Refresh token rotation: one winner across instances --------------

/// RFC 9700 §4.14.2: one refresh token, presented to A and B at the same
/// moment, rotates once. Both requests read it unconsumed before either
/// writes (the homeserver holds them at their device upsert until both are
/// there), then race for the write. Several rounds, so both instances get
/// to win.
async fn parallel_refresh_across_instances(db: TestDatabase) {
    let tw = Twins::on(db).await;
    let client = tw.a.public_client().await;
    for round in 0..6 {
        let (login, other) = if round % 2 == 0 {
            (&tw.a, &tw.b)
        } else {
            (&tw.b, &tw.a)
        };
        let g = login.grant_for(&client, None, GrantOpts::default()).await;
        let first = login.exchange_ok(&client, &g.code).await;
        let rt1 = str_of(&first, "refresh_token");
        let form = owned(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt1),
            ("client_id", &client.client_id),
        ]);
        tw.hs.hold_device_upserts();
        let tasks = [
            spawn_token_request(tw.a.app.clone(), form.clone()),
            spawn_token_request(tw.b.app.clone(), form),
        ];
        tw.hs.device_upserts_queued(2).await;
        tw.hs.release_device_upserts();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        let mut winners = Vec::new();
        for (i, (status, body)) in results.into_iter().enumerate() {
            if status == StatusCode::OK {
                winners.push((i, body));
            } else {
                assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
                assert_eq!(body["error"], "invalid_grant", "{body}");
                assert!(body.get("refresh_token").is_none());
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one refresh wins");
        let (won_on, winner) = &winners[0];
        let rt2 = str_of(winner, "refresh_token");
        // The rotation points at the winner's token only: the loser's pair
        // (if it got as far as minting one) was rolled back.
        {
            let mut repo = tw.a.t.state.repos.read().await.unwrap();
            let old = repo
                .oauth2_refresh_tokens()
                .find_by_hash(&token_hash(rt1))
                .await
                .unwrap()
                .expect("RT1");
            let new = repo
                .oauth2_refresh_tokens()
                .find_by_hash(&token_hash(rt2))
                .await
                .unwrap()
                .expect("RT2");
            assert!(old.consumed_at.is_some());
            assert_eq!(old.next_refresh_token_id, Some(new.id));
        }
        // The loser did not end the session: the winner's tokens work on
        // the instance that lost, and RT1 is dead on the one that won.
        let (winner_fx, loser_fx) = if *won_on == 0 {
            (&tw.a, &tw.b)
        } else {
            (&tw.b, &tw.a)
        };
        assert!(!winner_fx.is_active(rt1).await, "RT1 is consumed");
        assert!(loser_fx.is_active(rt2).await);
        assert!(loser_fx.is_active(str_of(winner, "access_token")).await);
        let res = other.refresh(&client, rt2).await;
        assert_eq!(res.status(), StatusCode::OK, "{}", body_json(res).await);
    }
    tw.cleanup().await;
}

on_both_engines!(
    one_refresh_token_raced_on_two_instances_rotates_once_sqlite,
    one_refresh_token_raced_on_two_instances_rotates_once_postgres,
    parallel_refresh_across_instances
);

/// Sends one token request to `app` in a task of its own.
fn spawn_token_request(
    app: Router,
    form: Vec<(String, String)>,
) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    tokio::spawn(async move {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let res = send(&app, form_request("/oauth2/token", &form)).await;
        let status = res.status();
        (status, body_json(res).await)
    })
}

/// `rt` is consumed and rotated to `next`, and to nothing else.
async fn assert_rotated_to(fx: &Fx, rt: &str, next: &str) {
    let mut repo = fx.t.state.repos.read().await.unwrap();
    let mut tokens = repo.oauth2_refresh_tokens();
    let old = tokens.find_by_hash(&token_hash(rt)).await.unwrap().unwrap();
    let new = tokens
        .find_by_hash(&token_hash(next))
        .await
        .unwrap()
        .unwrap();
    assert!(
        old.consumed_at.is_some(),
        "the old refresh token is consumed"
    );
    assert_eq!(old.next_refresh_token_id, Some(new.id));
}

/// RFC 9700 §4.14.2 on replicas whose clocks disagree (B `skew` seconds
/// ahead of A). Both requests read the refresh token while it is unused
/// (the homeserver holds them after their read-only checks); then one
/// rotates it and answers, and only then does the other reach its write
/// transaction and find the token consumed. That one lost a race, however
/// the two clocks order "consumed" and "arrived": `invalid_grant`, and the
/// session and the winner's pair live on. Each instance wins once, so in
/// one of the two rounds the winner's clock is behind the loser's (the
/// order in which comparing the two instants takes the race for a
/// lost-response retry and answers both).
async fn race_on_skewed_instances(db: TestDatabase, skew: i64) {
    let tw = Twins::skewed(db, Some(skew)).await;
    let client = tw.a.public_client().await;
    for (winner, loser) in [(&tw.a, &tw.b), (&tw.b, &tw.a)] {
        let g = tw.a.grant_for(&client, None, GrantOpts::default()).await;
        let first = tw.a.exchange_ok(&client, &g.code).await;
        let rt1 = str_of(&first, "refresh_token");
        let form = owned(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt1),
            ("client_id", &client.client_id),
        ]);
        tw.hs.hold_device_upserts();
        let won = spawn_token_request(winner.app.clone(), form.clone());
        tw.hs.device_upserts_queued(1).await;
        let lost = spawn_token_request(loser.app.clone(), form);
        tw.hs.device_upserts_queued(2).await;
        // Both have read RT1 unconsumed; the first goes on and rotates it.
        tw.hs.pass_device_upserts(1);
        let (status, won) = won.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{won}");
        tw.hs.pass_device_upserts(1);
        let (status, lost) = lost.await.unwrap();
        tw.hs.release_device_upserts();
        assert_eq!(status, StatusCode::BAD_REQUEST, "skew {skew} s: {lost}");
        assert_eq!(lost["error"], "invalid_grant", "{lost}");
        let (at2, rt2) = (str_of(&won, "access_token"), str_of(&won, "refresh_token"));
        assert_rotated_to(&tw.a, rt1, rt2).await;
        for fx in [&tw.a, &tw.b] {
            assert!(
                fx.is_active(at2).await,
                "the winner's access token is valid"
            );
            assert!(
                fx.is_active(rt2).await,
                "the winner's refresh token is valid"
            );
        }
        let res = loser.refresh(&client, rt2).await;
        assert_eq!(res.status(), StatusCode::OK, "{}", body_json(res).await);
    }
    tw.cleanup().await;
}

async fn race_with_b_5_seconds_ahead(db: TestDatabase) {
    race_on_skewed_instances(db, 5).await;
}

async fn race_with_b_5_seconds_behind(db: TestDatabase) {
    race_on_skewed_instances(db, -5).await;
}

on_both_engines!(
    a_race_on_instances_with_b_5_s_ahead_has_one_winner_sqlite,
    a_race_on_instances_with_b_5_s_ahead_has_one_winner_postgres,
    race_with_b_5_seconds_ahead
);

on_both_engines!(
    a_race_on_instances_with_b_5_s_behind_has_one_winner_sqlite,
    a_race_on_instances_with_b_5_s_behind_has_one_winner_postgres,
    race_with_b_5_seconds_behind
);

/// A lost-response retry on replicas whose clocks disagree (B `skew`
/// seconds ahead of A): the client refreshes on one instance, never gets
/// the answer, and at once presents the same refresh token again, which
/// the load balancer sends to the other instance. The token was consumed
/// before the retry arrived, so it is a retry even when the retrying
/// instance's clock says it arrived before the consumption: one new pair,
/// the lost pair revoked everywhere; a second retry is a replay and ends
/// the session (RFC 9700 §4.14.2). Both directions, A then B and B then A.
async fn retry_on_skewed_instances(db: TestDatabase, skew: i64) {
    let tw = Twins::skewed(db, Some(skew)).await;
    let client = tw.a.public_client().await;
    for (first_fx, retry_fx) in [(&tw.a, &tw.b), (&tw.b, &tw.a)] {
        let g = tw.a.grant_for(&client, None, GrantOpts::default()).await;
        let first = tw.a.exchange_ok(&client, &g.code).await;
        let rt1 = str_of(&first, "refresh_token");
        let res = first_fx.refresh(&client, rt1).await;
        assert_eq!(res.status(), StatusCode::OK);
        let lost = body_json(res).await;
        let res = retry_fx.refresh(&client, rt1).await;
        let status = res.status();
        let retry = body_json(res).await;
        assert_eq!(status, StatusCode::OK, "skew {skew} s: {retry}");
        let (at3, rt3) = (
            str_of(&retry, "access_token"),
            str_of(&retry, "refresh_token"),
        );
        for fx in [&tw.a, &tw.b] {
            assert!(!fx.is_active(str_of(&lost, "access_token")).await);
            assert!(!fx.is_active(str_of(&lost, "refresh_token")).await);
            assert!(fx.is_active(at3).await && fx.is_active(rt3).await);
        }
        // Once only: the lost successor is now revoked, so presenting RT1
        // again is a replay, on either instance.
        let res = first_fx.refresh(&client, rt1).await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
        for fx in [&tw.a, &tw.b] {
            assert!(!fx.is_active(at3).await, "the replay ended the session");
            assert!(!fx.is_active(rt3).await, "the replay ended the session");
        }
    }
    tw.cleanup().await;
}

async fn retry_with_b_5_seconds_ahead(db: TestDatabase) {
    retry_on_skewed_instances(db, 5).await;
}

async fn retry_with_b_5_seconds_behind(db: TestDatabase) {
    retry_on_skewed_instances(db, -5).await;
}

on_both_engines!(
    a_lost_response_retry_on_instances_with_b_5_s_ahead_is_accepted_once_sqlite,
    a_lost_response_retry_on_instances_with_b_5_s_ahead_is_accepted_once_postgres,
    retry_with_b_5_seconds_ahead
);

on_both_engines!(
    a_lost_response_retry_on_instances_with_b_5_s_behind_is_accepted_once_sqlite,
    a_lost_response_retry_on_instances_with_b_5_s_behind_is_accepted_once_postgres,
    retry_with_b_5_seconds_behind
);

// --- 3. Revocation: visible on the other instance at once ----------------

async fn revoke(fx: &Fx, client: &Client, token: &str) {
    let res = fx
        .post_form(
            "/oauth2/revoke",
            &[("token", token), ("client_id", &client.client_id)],
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

/// RFC 7009 §2.2: after a revocation the token is invalid. B introspects a
/// token (so anything B could cache about it is warm), A revokes it, and
/// B's very next introspection, with no time passing, says inactive: the
/// bound in docs/architecture.md is "immediate" (no cross-instance cache).
async fn revoke_on_a_introspect_on_b(db: TestDatabase) {
    let tw = Twins::on(db).await;
    let client = tw.a.public_client().await;
    let inactive = json!({"active": false});
    for revoke_refresh in [false, true] {
        let g = tw.a.grant_for(&client, None, GrantOpts::default()).await;
        let body = tw.a.exchange_ok(&client, &g.code).await;
        let (at, rt) = (
            str_of(&body, "access_token"),
            str_of(&body, "refresh_token"),
        );
        assert_eq!(tw.b.introspect(at).await["active"], true);
        assert_eq!(tw.b.introspect(rt).await["active"], true);
        revoke(&tw.a, &client, if revoke_refresh { rt } else { at }).await;
        // Revoking either token ends the session: both are dead on B.
        assert_eq!(tw.b.introspect(at).await, inactive);
        assert_eq!(tw.b.introspect(rt).await, inactive);
        let res = tw.b.refresh(&client, rt).await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    }
    // And the other way round: revoked on B, dead on A.
    let g = tw.b.grant_for(&client, None, GrantOpts::default()).await;
    let body = tw.b.exchange_ok(&client, &g.code).await;
    let at = str_of(&body, "access_token");
    assert_eq!(tw.a.introspect(at).await["active"], true);
    revoke(&tw.b, &client, at).await;
    assert_eq!(tw.a.introspect(at).await, inactive);
    tw.cleanup().await;
}

on_both_engines!(
    revoked_on_one_instance_is_inactive_on_the_other_at_once_sqlite,
    revoked_on_one_instance_is_inactive_on_the_other_at_once_postgres,
    revoke_on_a_introspect_on_b
);

// --- 4. Job workers: each job runs once ----------------------------------

async fn schedule_provisioning(repos: &dyn RepositoryFactory, tw: &Twins, localparts: &[String]) {
    let mut rng = tw.a.t.state.rng.rng();
    let mut repo = repos.write().await.unwrap();
    for localpart in localparts {
        jobs::schedule_provision_user(
            &mut *repo,
            &mut rng,
            tw.a.t.clock.as_ref(),
            ProvisionUser {
                localpart: localpart.clone(),
                display_name: None,
                emails: vec![],
                locked: false,
            },
        )
        .await
        .unwrap();
    }
    repo.save().await.unwrap();
}

/// One worker per instance on the same queue: every job runs exactly once.
async fn two_workers_one_queue(db: TestDatabase) {
    let is_postgres = db.url.starts_with("postgres");
    let tw = Twins::on(db).await;
    let clock = tw.a.t.clock.clone();
    let (repos_a, repos_b) = (tw.a.t.state.repos.clone(), tw.b.t.state.repos.clone());
    let lease = chrono::Duration::minutes(5);

    if is_postgres {
        // A's reservation is not committed yet: B's `FOR UPDATE SKIP LOCKED`
        // passes over those rows without waiting and takes the rest. (On
        // SQLite B would wait for A's write lock: one writer at a time.)
        let localparts: Vec<String> = (0..6).map(|i| format!("early{i}")).collect();
        schedule_provisioning(repos_a.as_ref(), &tw, &localparts).await;
        let mut on_a = repos_a.write().await.unwrap();
        let taken_a = on_a
            .jobs()
            .reserve(clock.as_ref(), &[HOMESERVER_QUEUE], 2, lease)
            .await
            .unwrap();
        let taken_b = tokio::time::timeout(Duration::from_secs(10), async {
            let mut on_b = repos_b.write().await.unwrap();
            let taken = on_b
                .jobs()
                .reserve(clock.as_ref(), &[HOMESERVER_QUEUE], 10, lease)
                .await
                .unwrap();
            on_b.save().await.unwrap();
            taken
        })
        .await
        .expect("B does not wait for A's uncommitted reservation");
        on_a.save().await.unwrap();
        let ids = |jobs: &[vestibule_domain::job::Job]| -> BTreeSet<Ulid> {
            jobs.iter().map(|j| j.id).collect()
        };
        assert_eq!(taken_a.len(), 2);
        assert_eq!(taken_b.len(), 4, "B takes what A did not");
        assert!(ids(&taken_a).is_disjoint(&ids(&taken_b)));
        let mut repo = repos_a.write().await.unwrap();
        for job in taken_a.into_iter().chain(taken_b) {
            repo.jobs().complete(clock.as_ref(), job).await.unwrap();
        }
        repo.save().await.unwrap();
    }

    // Both workers drain one queue of provisioning jobs at the same time.
    let hs = Arc::new(MockHomeserver::new("example.org"));
    let localparts: Vec<String> = (0..16).map(|i| format!("user{i}")).collect();
    schedule_provisioning(repos_a.as_ref(), &tw, &localparts).await;
    let settings = WorkerSettings {
        batch_size: 2,
        ..WorkerSettings::default()
    };
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let mut workers = Vec::new();
    for repos in [repos_a.clone(), repos_b.clone()] {
        let worker = JobWorker::new(repos, clock.clone(), hs.clone(), settings.clone());
        let barrier = barrier.clone();
        workers.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut reserved = 0;
            loop {
                let report = worker.run_once().await.unwrap();
                assert_eq!(report.reserved, report.completed, "{report:?}");
                if report.reserved == 0 {
                    return reserved;
                }
                reserved += report.reserved;
            }
        }));
    }
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    assert_eq!(total, 16, "each job reserved once");
    let calls = hs.calls();
    for localpart in &localparts {
        let n = calls
            .iter()
            .filter(|c| **c == format!("provision_user {localpart}"))
            .count();
        assert_eq!(n, 1, "{localpart} provisioned once: {calls:?}");
    }
    let mut repo = repos_b.read().await.unwrap();
    assert_eq!(
        repo.jobs()
            .count_by_status(JobStatus::Completed)
            .await
            .unwrap(),
        if is_postgres { 22 } else { 16 }
    );
    assert_eq!(
        repo.jobs()
            .count_by_status(JobStatus::Running)
            .await
            .unwrap(),
        0
    );
    drop(repo);
    tw.cleanup().await;
}

on_both_engines!(
    two_job_workers_on_one_queue_run_each_job_once_sqlite,
    two_job_workers_on_one_queue_run_each_job_once_postgres,
    two_workers_one_queue
);
