//! Compat tokens after login: refresh rotation, logout, logout/all and
//! introspection of `mct_` tokens.

use axum::http::StatusCode;
use serde_json::json;
use vestibule_domain::tokens::token_hash;
use vestibule_server::jobs::{JobWorker, WorkerSettings};

use crate::compat_support::{Cx, databases};

const REFRESH: &str = "/_matrix/client/v3/refresh";
const LOGOUT: &str = "/_matrix/client/v3/logout";
const LOGOUT_ALL: &str = "/_matrix/client/v3/logout/all";

#[tokio::test]
async fn refresh_rotates_and_a_replay_is_refused() {
    for db in databases().await {
        let cx = Cx::on(db, |_| {});
        cx.user("alice").await;
        let login = cx.login_ok("alice", &json!({"refresh_token": true})).await;
        let (a1, r1) = (login.str("access_token"), login.str("refresh_token"));

        let r = cx.post(REFRESH, &json!({"refresh_token": r1}), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let (a2, r2) = (r.str("access_token"), r.str("refresh_token"));
        assert!(a2.starts_with("mct_") && r2.starts_with("mcr_"));
        assert_ne!(a2, a1);
        assert_ne!(r2, r1);
        assert_eq!(r.body["expires_in_ms"], 300_000);
        assert!(!cx.is_active(a1).await, "the old access token ends");
        assert!(cx.is_active(a2).await);
        let v = cx.introspect(a2, true).await;
        assert_eq!(
            v["device_id"], login.body["device_id"],
            "same session, same device"
        );

        // A consumed refresh token is refused (not soft: the client must
        // log in again).
        let replay = cx.post(REFRESH, &json!({"refresh_token": r1}), None).await;
        let body = replay.assert_error(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
        assert_eq!(body["soft_logout"], false);

        // The current pair keeps working.
        let r = cx.post(REFRESH, &json!({"refresh_token": r2}), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(cx.is_active(r.str("access_token")).await);
        assert!(!cx.is_active(a2).await);

        // Other kinds of tokens and garbage are unknown refresh tokens.
        for bad in [a1, "mcr_garbage", "not-a-token"] {
            cx.post(REFRESH, &json!({"refresh_token": bad}), None)
                .await
                .assert_error(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
        }
        cx.post(REFRESH, &json!({}), None)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "M_BAD_JSON");
        cx.cleanup().await;
    }
}

#[tokio::test]
async fn logout_ends_the_session_and_deletes_the_device() {
    let cx = Cx::new().await;
    let alice = cx.user("alice").await;
    let phone = cx
        .login_ok(
            "alice",
            &json!({"device_id": "PHONE00001", "refresh_token": true}),
        )
        .await;
    let laptop = cx
        .login_ok("alice", &json!({"device_id": "LAPTOP0001"}))
        .await;
    let token = phone.str("access_token");
    assert!(cx.is_active(token).await);

    let r = cx.post(LOGOUT, &json!({}), Some(token)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, json!({}));
    assert!(!cx.is_active(token).await);
    assert_eq!(cx.devices("alice"), vec!["LAPTOP0001".to_owned()]);
    assert_eq!(cx.sessions(&alice).await.len(), 1);
    assert!(cx.is_active(laptop.str("access_token")).await);
    // The session's refresh token died with it.
    cx.post(
        REFRESH,
        &json!({"refresh_token": phone.str("refresh_token")}),
        None,
    )
    .await
    .assert_error(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");

    // The token is spent; no token at all is another error.
    let again = cx.post(LOGOUT, &json!({}), Some(token)).await;
    assert_eq!(
        again.assert_error(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN")["soft_logout"],
        false
    );
    cx.post(LOGOUT, &json!({}), None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    // r0 works as well; a body is not needed.
    let r = cx
        .request(
            "POST",
            "/_matrix/client/r0/logout",
            None,
            Some(laptop.str("access_token")),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(cx.devices("alice").is_empty());
}

#[tokio::test]
async fn an_expired_token_gets_a_soft_logout() {
    let cx = Cx::new().await;
    cx.user("alice").await;
    let r = cx.login_ok("alice", &json!({"refresh_token": true})).await;
    cx.advance(301);
    let res = cx
        .post(LOGOUT, &json!({}), Some(r.str("access_token")))
        .await;
    assert_eq!(
        res.assert_error(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN")["soft_logout"],
        true
    );
}

#[tokio::test]
async fn a_failed_device_deletion_is_retried_by_the_job_worker() {
    let cx = Cx::new().await;
    let alice = cx.user("alice").await;
    let r = cx
        .login_ok("alice", &json!({"device_id": "PHONE00001"}))
        .await;
    cx.login_ok("alice", &json!({"device_id": "LAPTOP0001"}))
        .await;
    cx.hs.set_down(true);
    let res = cx
        .post(LOGOUT, &json!({}), Some(r.str("access_token")))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(!cx.is_active(r.str("access_token")).await);
    cx.hs.set_down(false);
    assert_eq!(
        cx.devices("alice"),
        vec!["LAPTOP0001", "PHONE00001"],
        "the homeserver was down"
    );
    assert_eq!(cx.sessions(&alice).await.len(), 1);
    let worker = JobWorker::from_state(&cx.t.state, WorkerSettings::default());
    worker.run_once().await.unwrap();
    assert_eq!(
        cx.devices("alice"),
        vec!["LAPTOP0001".to_owned()],
        "the scheduled sync deleted the device, and kept the compat device that is still in use"
    );
}

#[tokio::test]
async fn logout_all_ends_every_compat_session_of_the_user() {
    let cx = Cx::new().await;
    let alice = cx.user("alice").await;
    let bob = cx.user("bob").await;
    let a1 = cx
        .login_ok("alice", &json!({"device_id": "ALICEONE01"}))
        .await;
    let a2 = cx
        .login_ok("alice", &json!({"device_id": "ALICETWO01"}))
        .await;
    let b1 = cx
        .login_ok("bob", &json!({"device_id": "BOBONE0001"}))
        .await;
    let r = cx
        .post(LOGOUT_ALL, &json!({}), Some(a1.str("access_token")))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, json!({}));
    assert!(!cx.is_active(a1.str("access_token")).await);
    assert!(!cx.is_active(a2.str("access_token")).await);
    assert!(cx.sessions(&alice).await.is_empty());
    assert!(cx.devices("alice").is_empty());
    assert!(
        cx.is_active(b1.str("access_token")).await,
        "bob is untouched"
    );
    assert_eq!(cx.sessions(&bob).await.len(), 1);
    assert_eq!(cx.devices("bob"), vec!["BOBONE0001".to_owned()]);
    cx.post(LOGOUT_ALL, &json!({}), Some(a2.str("access_token")))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn compat_tokens_introspect_like_mas() {
    let cx = Cx::new().await;
    let alice = cx.user("alice").await;
    let r = cx
        .login_ok("alice", &json!({"device_id": "PHONE00001"}))
        .await;
    let token = r.str("access_token");
    let v = cx.introspect(token, true).await;
    let iat = v["iat"].as_i64().unwrap();
    assert_eq!(
        v,
        json!({
            "active": true,
            "scope": "urn:matrix:client:api:* urn:matrix:client:device:PHONE00001",
            "client_id": "legacy",
            "username": "alice",
            "sub": alice.id.to_string(),
            "token_type": "access_token",
            "iat": iat,
            "device_id": "PHONE00001",
        })
    );
    assert_eq!(iat, cx.t.clock.now().timestamp());
    let v = cx.introspect(token, false).await;
    assert!(
        v.get("device_id").is_none(),
        "device_id only for callers that announce they read it: {v}"
    );

    // A compat session of a Synapse admin carries the admin scope.
    let admin_token = "mct_admin-token-made-in-the-test";
    {
        let mut rng = cx.t.state.rng.rng();
        let token = cx.t.state.token_format.generate(
            vestibule_domain::token_format::TokenType::CompatAccessToken,
            &mut rng,
        );
        let mut repo = cx.t.state.repos.write().await.unwrap();
        let session = repo
            .compat_sessions()
            .add(
                &mut rng,
                &*cx.t.clock,
                &alice,
                "ADMINDEV01",
                None,
                None,
                true,
            )
            .await
            .unwrap();
        repo.compat_access_tokens()
            .add(&mut rng, &*cx.t.clock, &session, &token_hash(&token), None)
            .await
            .unwrap();
        repo.save().await.unwrap();
        let v = cx.introspect(&token, true).await;
        assert_eq!(
            v["scope"],
            "urn:matrix:client:api:* urn:matrix:client:device:ADMINDEV01 urn:synapse:admin:*"
        );
    }
    // A token that fails the MAC check is inactive without a lookup.
    assert!(!cx.is_active(admin_token).await);

    // Locking the user makes the token inactive; unlocking revives it.
    {
        let mut repo = cx.t.state.repos.write().await.unwrap();
        repo.users()
            .lock(&*cx.t.clock, alice.clone())
            .await
            .unwrap();
        repo.save().await.unwrap();
    }
    assert!(!cx.is_active(token).await);
    {
        let mut repo = cx.t.state.repos.write().await.unwrap();
        let locked = repo.users().lookup(alice.id).await.unwrap().unwrap();
        repo.users().unlock(locked).await.unwrap();
        repo.save().await.unwrap();
    }
    assert!(cx.is_active(token).await);
    cx.post(LOGOUT, &json!({}), Some(token)).await;
    assert!(!cx.is_active(token).await, "inactive after logout");
}
