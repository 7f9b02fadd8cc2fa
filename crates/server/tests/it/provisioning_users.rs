//! Users on the homeserver: a provisioning job at registration, re-provision
//! on lock/unlock, `delete_user` / `reactivate_user` on deactivation and
//! reactivation; locked and deactivated users' tokens are inactive.

use axum::http::StatusCode;
use vestibule_server::{
    flows::account,
    homeserver::MockUser,
    jobs::{HomeserverJob, ProvisionUser},
};
use vestibule_storage_sql::testing::TestDatabase;

use crate::{
    browser_helpers::{Browser, PASSWORD},
    compat_support::databases,
    oauth2_support::{GrantOpts, str_of},
    provisioning_support::{Hx, app_with_mock, pending_jobs, run_jobs},
};

#[tokio::test]
async fn browser_registration_schedules_provisioning_in_its_transaction() {
    let db = TestDatabase::sqlite().await.expect("sqlite");
    let (t, hs) = app_with_mock(db, "http://127.0.0.1:8080/", |c| {
        c.account.password_registration_enabled = true;
        c.account.password_registration_email_required = false;
    });
    let mut b = Browser::new(&t);
    let csrf = b.get("/register").await.csrf();
    // A refused registration schedules nothing.
    let bad = b
        .post(
            "/register",
            &[
                ("csrf", &csrf),
                ("username", "Not Valid"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(pending_jobs(&t).await.is_empty());

    let ok = b
        .post(
            "/register",
            &[
                ("csrf", &csrf),
                ("username", "newbie"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    assert_eq!(
        pending_jobs(&t).await,
        [HomeserverJob::ProvisionUser(ProvisionUser {
            localpart: "newbie".to_owned(),
            display_name: Some("newbie".to_owned()),
            emails: vec![],
            locked: false,
        })]
    );
    assert!(hs.user("newbie").is_none(), "only once the job runs");
    let report = run_jobs(&t).await;
    assert_eq!(report.completed, 1, "{report:?}");
    let user = hs.user("newbie").expect("provisioned");
    assert_eq!(user.display_name.as_deref(), Some("newbie"));
    assert!(!user.locked);
    t.db.cleanup().await;
}

/// Password registration asks the homeserver too: a name only the
/// homeserver has (a user not imported yet, or an application service's)
/// is "taken", so provisioning never takes over that Matrix account; with
/// the homeserver unreachable nothing is created and a 503 page says so.
#[tokio::test]
async fn registration_refuses_names_only_the_homeserver_has() {
    for db in databases().await {
        let (t, hs) = app_with_mock(db, "http://127.0.0.1:8080/", |c| {
            c.account.password_registration_enabled = true;
            c.account.password_registration_email_required = false;
        });
        hs.insert_user("alice", MockUser::default());
        let mut b = Browser::new(&t);
        let csrf = b.get("/register").await.csrf();
        let users = async || {
            let mut repo = t.state.repos.read().await.unwrap();
            let n = repo.users().count().await.unwrap();
            repo.cancel().await.unwrap();
            n
        };
        let r = b
            .post(
                "/register",
                &[
                    ("csrf", &csrf),
                    ("username", "alice"),
                    ("password", PASSWORD),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert!(r.body.contains("This username is taken."), "{}", r.body);
        assert_eq!(users().await, 0);
        assert!(pending_jobs(&t).await.is_empty());
        assert_eq!(hs.user("alice"), Some(MockUser::default()), "untouched");

        hs.set_down(true);
        let form = [
            ("csrf", csrf.as_str()),
            ("username", "bob"),
            ("password", PASSWORD),
        ];
        let r = b.post("/register", &form).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
        assert!(r.body.contains("no account was created"), "{}", r.body);
        assert_eq!(users().await, 0);
        assert!(pending_jobs(&t).await.is_empty());

        hs.set_down(false);
        let r = b.post("/register", &form).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        assert_eq!(users().await, 1);
        t.db.cleanup().await;
    }
}

/// What `manage lock-user`, `unlock-user`, `deactivate-user` and
/// `reactivate-user` run, seen from Synapse's side (the mock) and from
/// introspection.
#[tokio::test]
async fn lock_unlock_deactivate_reactivate() {
    let hx = Hx::new().await;
    let fx = &hx.fx;
    let client = fx.public_client().await;
    let g = fx.grant_for(&client, None, GrantOpts::default()).await;
    let localpart = g.user.username.clone();
    let body = fx.exchange_ok(&client, &g.code).await;
    let at = str_of(&body, "access_token").to_owned();
    let rt = str_of(&body, "refresh_token").to_owned();
    assert!(fx.is_active(&at).await);
    let state = &fx.t.state;
    let mut rng = state.rng.rng();

    // Lock: tokens inactive (the session itself stays), homeserver locked.
    let mut repo = state.repos.write().await.unwrap();
    let (user, _) = account::lock(&mut repo, state.clock.as_ref(), &mut rng, g.user.clone())
        .await
        .unwrap();
    repo.save().await.unwrap();
    assert!(
        !fx.is_active(&at).await,
        "a locked user's token is inactive"
    );
    assert!(!fx.is_active(&rt).await);
    assert_eq!(
        hx.pending_jobs().await,
        [HomeserverJob::ProvisionUser(ProvisionUser {
            localpart: localpart.clone(),
            display_name: None,
            emails: vec![format!("{localpart}@example.org")],
            locked: true,
        })],
        "re-provisioning leaves the display name alone"
    );
    hx.run_jobs().await;
    assert!(hx.hs.user(&localpart).unwrap().locked);

    // Unlock: active again, homeserver unlocked.
    let mut repo = state.repos.write().await.unwrap();
    let user = account::unlock(&mut repo, state.clock.as_ref(), &mut rng, user)
        .await
        .unwrap();
    repo.save().await.unwrap();
    assert!(fx.is_active(&at).await);
    assert_eq!(hx.run_jobs().await.completed, 1);
    assert!(!hx.hs.user(&localpart).unwrap().locked);

    // Deactivate: every session ends, tokens inactive, delete_user. (The
    // lock ended the browser sessions: sign in again first.)
    let mut repo = state.repos.write().await.unwrap();
    repo.browser_sessions()
        .add(&mut rng, state.clock.as_ref(), &user, Some("again"))
        .await
        .unwrap();
    let (user, ended) = account::deactivate(&mut repo, state.clock.as_ref(), &mut rng, user, false)
        .await
        .unwrap();
    repo.save().await.unwrap();
    assert_eq!(ended.oauth_sessions, 1);
    assert_eq!(ended.browser_sessions, 1);
    assert!(
        !fx.is_active(&at).await,
        "a deactivated user's token is inactive"
    );
    assert!(!fx.is_active(&rt).await);
    let mut repo = state.repos.read().await.unwrap();
    assert!(
        repo.oauth2_sessions()
            .list_active_for_user(&user)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        repo.browser_sessions()
            .list_active_for_user(&user)
            .await
            .unwrap()
            .is_empty()
    );
    drop(repo);
    assert_eq!(
        hx.pending_jobs().await,
        [HomeserverJob::DeleteUser {
            localpart: localpart.clone(),
            erase: false
        }]
    );
    hx.run_jobs().await;
    assert!(hx.hs.calls().contains(&format!("delete_user {localpart}")));
    let on_hs = hx.hs.user(&localpart).unwrap();
    assert!(on_hs.deactivated);
    assert!(on_hs.devices.is_empty());

    // Reactivate: the user may sign in again; reactivate_user reaches it.
    // Their old tokens stay dead (their sessions ended).
    let mut repo = state.repos.write().await.unwrap();
    account::reactivate(&mut repo, state.clock.as_ref(), &mut rng, user)
        .await
        .unwrap();
    repo.save().await.unwrap();
    assert!(!fx.is_active(&at).await);
    hx.run_jobs().await;
    assert!(!hx.hs.user(&localpart).unwrap().deactivated);
    hx.cleanup().await;
}
