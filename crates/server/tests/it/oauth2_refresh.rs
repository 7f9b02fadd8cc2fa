//! The refresh token grant: rotation, replay, races, lost-response retry,
//! binding and scope narrowing (S11–S14, S34).

use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use vestibule_storage_sql::testing::TestDatabase;

use crate::{
    harness::body_json,
    oauth2_support::{Fx, GrantOpts, SCOPE, assert_error, str_of},
};

/// A logged-in public client: returns (client, first token response).
async fn logged_in(fx: &Fx) -> (vestibule_domain::oauth2::Client, Value) {
    let client = fx.public_client().await;
    let g = fx.grant_for(&client, None, GrantOpts::default()).await;
    let body = fx.exchange_ok(&client, &g.code).await;
    (client, body)
}

async fn refresh_ok(fx: &Fx, client: &vestibule_domain::oauth2::Client, rt: &str) -> Value {
    let res = fx.refresh(client, rt).await;
    let status = res.status();
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    let body = body_json(res).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn refresh_rotates_the_refresh_token() {
    let fx = Fx::new().await;
    let (client, first) = logged_in(&fx).await;
    let rt1 = str_of(&first, "refresh_token");
    fx.advance(10);
    let second = refresh_ok(&fx, &client, rt1).await;
    let (at2, rt2) = (
        str_of(&second, "access_token"),
        str_of(&second, "refresh_token"),
    );
    assert_ne!(rt1, rt2);
    assert_ne!(str_of(&first, "access_token"), at2);
    assert_eq!(second["token_type"], "Bearer");
    assert_eq!(second["expires_in"], 300);
    assert_eq!(second["scope"], SCOPE);
    assert!(second.get("id_token").is_none());
    assert!(!fx.is_active(rt1).await, "RT1 is consumed");
    assert!(fx.is_active(rt2).await && fx.is_active(at2).await);
    // RT2 works in turn.
    refresh_ok(&fx, &client, rt2).await;
    fx.cleanup().await;
}

#[tokio::test]
async fn replaying_a_used_refresh_token_ends_the_session() {
    let fx = Fx::new().await;
    let (client, first) = logged_in(&fx).await;
    let rt1 = str_of(&first, "refresh_token");
    let second = refresh_ok(&fx, &client, rt1).await;
    let (at2, rt2) = (
        str_of(&second, "access_token"),
        str_of(&second, "refresh_token"),
    );
    // The client got RT2/AT2 and used AT2 (Synapse introspected it).
    assert!(fx.is_active(at2).await);
    fx.advance(5);
    let res = fx.refresh(&client, rt1).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert!(!fx.is_active(rt2).await, "RT2 revoked with the session");
    assert!(!fx.is_active(at2).await, "AT2 revoked with the session");
    assert!(!fx.is_active(str_of(&first, "access_token")).await);
    let res = fx.refresh(&client, rt2).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    fx.cleanup().await;
}

#[tokio::test]
async fn replay_after_the_successor_was_rotated_ends_the_session() {
    let fx = Fx::new().await;
    let (client, first) = logged_in(&fx).await;
    let rt1 = str_of(&first, "refresh_token");
    let second = refresh_ok(&fx, &client, rt1).await;
    let rt2 = str_of(&second, "refresh_token");
    fx.advance(1);
    let third = refresh_ok(&fx, &client, rt2).await;
    fx.advance(1);
    let res = fx.refresh(&client, rt1).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert!(!fx.is_active(str_of(&third, "refresh_token")).await);
    assert!(!fx.is_active(str_of(&third, "access_token")).await);
    fx.cleanup().await;
}

/// RFC 9700 §4.14.2: two requests with one refresh token, both having read
/// it unconsumed before either writes (the homeserver holds each at its
/// device upsert, between the read-only checks and the write transaction,
/// until both are there): exactly one gets new tokens.
async fn parallel_refreshes(mut fx: Fx) {
    let hs = fx.reachable_homeserver();
    let (client, first) = logged_in(&fx).await;
    let rt1 = str_of(&first, "refresh_token").to_owned();
    hs.hold_device_upserts();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let app = fx.app.clone();
        let form = serde_urlencoded::to_string([
            ("grant_type", "refresh_token"),
            ("refresh_token", rt1.as_str()),
            ("client_id", client.client_id.as_str()),
        ])
        .unwrap();
        tasks.push(tokio::spawn(async move {
            let req = Request::post("/oauth2/token")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(axum::body::Body::from(form))
                .unwrap();
            let res = crate::harness::send(&app, req).await;
            let status = res.status();
            (status, body_json(res).await)
        }));
    }
    hs.device_upserts_queued(2).await;
    hs.release_device_upserts();
    let mut winners = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        if status == StatusCode::OK {
            winners.push(body);
        } else {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(body["error"], "invalid_grant");
        }
    }
    assert_eq!(winners.len(), 1, "exactly one refresh wins");
    let winner = &winners[0];
    // The loser did not end the session: the winner's tokens live on.
    assert!(fx.is_active(str_of(winner, "access_token")).await);
    refresh_ok(&fx, &client, str_of(winner, "refresh_token")).await;
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_parallel_refreshes_have_one_winner_sqlite() {
    parallel_refreshes(Fx::new().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_parallel_refreshes_have_one_winner_postgres() {
    let Some(db) = TestDatabase::postgres().await.expect("postgres") else {
        return;
    };
    parallel_refreshes(Fx::on(db, |_| {})).await;
}

#[tokio::test]
async fn a_retry_after_a_lost_response_is_accepted_once() {
    let fx = Fx::new().await;
    let (client, first) = logged_in(&fx).await;
    let rt1 = str_of(&first, "refresh_token");
    // The response carrying RT2/AT2 never reaches the client.
    let lost = refresh_ok(&fx, &client, rt1).await;
    fx.advance(10);
    let retry = refresh_ok(&fx, &client, rt1).await;
    let (at3, rt3) = (
        str_of(&retry, "access_token"),
        str_of(&retry, "refresh_token"),
    );
    // Check RT3 first: introspecting an access token marks it used.
    assert!(fx.is_active(rt3).await);
    assert!(
        !fx.is_active(str_of(&lost, "refresh_token")).await,
        "RT2 revoked"
    );
    assert!(
        !fx.is_active(str_of(&lost, "access_token")).await,
        "AT2 revoked"
    );
    assert!(fx.is_active(at3).await);
    // A second retry is a replay: the session ends.
    fx.advance(1);
    let res = fx.refresh(&client, rt1).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert!(!fx.is_active(rt3).await);
    assert!(!fx.is_active(at3).await);
    fx.cleanup().await;
}

#[tokio::test]
async fn no_retry_grace_once_the_successor_access_token_was_used_or_after_60_seconds() {
    let fx = Fx::new().await;
    let (client, first) = logged_in(&fx).await;
    let rt1 = str_of(&first, "refresh_token");
    let second = refresh_ok(&fx, &client, rt1).await;
    fx.advance(61);
    let res = fx.refresh(&client, rt1).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert!(
        !fx.is_active(str_of(&second, "refresh_token")).await,
        "too late for a retry: a replay"
    );

    let (client, first) = logged_in(&fx).await;
    let rt1 = str_of(&first, "refresh_token");
    let second = refresh_ok(&fx, &client, rt1).await;
    let at2 = str_of(&second, "access_token");
    assert!(
        fx.is_active(at2).await,
        "AT2 used: the response was not lost"
    );
    fx.advance(5);
    let res = fx.refresh(&client, rt1).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert!(!fx.is_active(at2).await);
    fx.cleanup().await;
}

#[tokio::test]
async fn another_clients_refresh_token_is_refused() {
    let fx = Fx::new().await;
    let (client, first) = logged_in(&fx).await;
    let other = fx.public_client().await;
    let rt = str_of(&first, "refresh_token");
    let res = fx.refresh(&other, rt).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert!(fx.is_active(rt).await, "left alone for its owner");
    refresh_ok(&fx, &client, rt).await;
    fx.cleanup().await;
}

#[tokio::test]
async fn scope_may_narrow_but_not_widen() {
    let fx = Fx::new().await;
    let (client, first) = logged_in(&fx).await;
    let rt1 = str_of(&first, "refresh_token");
    for wider in [
        "openid urn:matrix:client:api:* urn:matrix:client:device:ABCDEFGHIJ urn:synapse:admin:*",
        "email",
    ] {
        let res = fx
            .token(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", rt1),
                ("client_id", &client.client_id),
                ("scope", wider),
            ])
            .await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_scope").await;
    }
    let narrow = "urn:matrix:client:device:ABCDEFGHIJ urn:matrix:client:api:*";
    let res = fx
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt1),
            ("client_id", &client.client_id),
            ("scope", narrow),
        ])
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = body_json(res).await;
    assert_eq!(body["scope"], narrow);
    let v = fx.introspect(str_of(&body, "access_token")).await;
    assert_eq!(
        v["scope"], narrow,
        "the new access token has the narrower scope"
    );
    // The refresh token keeps the session's scope.
    let v = fx.introspect(str_of(&body, "refresh_token")).await;
    assert_eq!(v["scope"], SCOPE);
    fx.cleanup().await;
}

#[tokio::test]
async fn locked_or_deactivated_users_cannot_refresh() {
    let fx = Fx::new().await;
    let client = fx.public_client().await;
    let g = fx.grant_for(&client, None, GrantOpts::default()).await;
    let first = fx.exchange_ok(&client, &g.code).await;
    let rt = str_of(&first, "refresh_token");
    let mut repo = fx.t.state.repos.write().await.unwrap();
    let locked = repo
        .users()
        .lock(&*fx.t.clock, g.user.clone())
        .await
        .unwrap();
    repo.save().await.unwrap();
    let res = fx.refresh(&client, rt).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert!(!fx.is_active(rt).await && !fx.is_active(str_of(&first, "access_token")).await);
    let mut repo = fx.t.state.repos.write().await.unwrap();
    let unlocked = repo.users().unlock(locked).await.unwrap();
    repo.save().await.unwrap();
    let body = refresh_ok(&fx, &client, rt).await;
    let mut repo = fx.t.state.repos.write().await.unwrap();
    repo.users()
        .deactivate(&*fx.t.clock, unlocked)
        .await
        .unwrap();
    repo.save().await.unwrap();
    let res = fx.refresh(&client, str_of(&body, "refresh_token")).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    fx.cleanup().await;
}

#[tokio::test]
async fn refresh_tokens_expire_with_the_configured_lifetime() {
    let fx = Fx::with_config(|c| c.oauth.refresh_token_ttl = Some(3600)).await;
    let (client, first) = logged_in(&fx).await;
    let rt1 = str_of(&first, "refresh_token");
    fx.advance(3599);
    let second = refresh_ok(&fx, &client, rt1).await;
    let rt2 = str_of(&second, "refresh_token");
    fx.advance(3600);
    assert!(!fx.is_active(rt2).await);
    let res = fx.refresh(&client, rt2).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    fx.cleanup().await;
}
