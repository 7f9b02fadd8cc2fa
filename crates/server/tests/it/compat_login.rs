//! `GET`/`POST /_matrix/client/{v3,r0}/login`: flows, password login, the
//! device on the homeserver, device ids and refreshable tokens.

use std::time::Duration as StdDuration;

use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use serde_json::json;
use vestibule_server::passwords::PasswordManager;

use crate::{
    browser_helpers::{PASSWORD, add_user},
    compat_support::{Cx, LOGIN, databases},
    harness::send,
};

#[tokio::test]
async fn login_flows_follow_the_password_setting() {
    let cx = Cx::new().await;
    let expected = json!({"flows": [
        {"type": "m.login.password"},
        {"type": "m.login.sso", "identity_providers": [], "oauth_aware_preferred": true,
         "org.matrix.msc3824.delegated_oidc_compatibility": true},
        {"type": "m.login.token"},
    ]});
    for path in [LOGIN, "/_matrix/client/r0/login"] {
        let r = cx.get(path).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, expected, "{path}");
    }
    cx.get("/_matrix/client/v1/login")
        .await
        .assert_error(StatusCode::NOT_FOUND, "M_UNRECOGNIZED");

    let off = Cx::with_config(|c| c.passwords.enabled = false).await;
    let r = off.get(LOGIN).await;
    assert_eq!(
        r.body,
        json!({"flows": [
            {"type": "m.login.sso", "identity_providers": [], "oauth_aware_preferred": true,
             "org.matrix.msc3824.delegated_oidc_compatibility": true},
            {"type": "m.login.token"},
        ]})
    );
    off.password_login("alice", PASSWORD, &json!({}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "M_UNRECOGNIZED");
}

#[tokio::test]
async fn web_clients_may_call_the_api_cross_origin() {
    let cx = Cx::new().await;
    let preflight = send(
        &cx.app,
        Request::builder()
            .method("OPTIONS")
            .uri(LOGIN)
            .header(header::ORIGIN, "https://web.example")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "authorization,content-type",
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(preflight.status().is_success());
    let h = preflight.headers();
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let allowed = h[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"));
    assert!(h.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
    let res = send(
        &cx.app,
        Request::get(LOGIN)
            .header(header::ORIGIN, "https://web.example")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
}

#[tokio::test]
async fn password_login_accepts_every_form_of_the_user() {
    for db in databases().await {
        let cx = Cx::on(db, |_| {});
        let alice = cx.user("alice").await;
        let forms = [
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": PASSWORD}),
            json!({"type": "m.login.password", "user": "alice", "password": PASSWORD}),
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "@alice:example.org"}, "password": PASSWORD}),
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "Alice"}, "password": PASSWORD}),
        ];
        let mut tokens = Vec::new();
        for body in &forms {
            let r = cx.post(LOGIN, body, None).await;
            assert_eq!(r.status, StatusCode::OK, "{body}: {}", r.body);
            assert_eq!(r.str("user_id"), "@alice:example.org");
            assert_eq!(r.str("home_server"), "example.org");
            assert!(r.str("access_token").starts_with("mct_"));
            assert!(r.body.get("refresh_token").is_none(), "{}", r.body);
            assert!(r.body.get("expires_in_ms").is_none(), "{}", r.body);
            assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
            assert!(cx.is_active(r.str("access_token")).await);
            tokens.push(r.str("access_token").to_owned());
        }
        tokens.dedup();
        assert_eq!(tokens.len(), forms.len(), "every login mints its own token");
        assert_eq!(cx.sessions(&alice).await.len(), forms.len());

        // Another server's user id is not ours: the same answer as a wrong
        // password, and nothing stored.
        let wrong = cx
            .password_login("alice", "not the password", &json!({}))
            .await;
        let other = cx
            .password_login("@alice:evil.example", PASSWORD, &json!({}))
            .await;
        other.assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");
        assert_eq!(other.body, wrong.body);
        assert_eq!(cx.sessions(&alice).await.len(), forms.len());
        cx.cleanup().await;
    }
}

#[tokio::test]
async fn unknown_user_and_wrong_password_answer_alike() {
    let cx = Cx::new().await;
    let alice = cx.user("alice").await;
    let wrong = cx
        .password_login("alice", "hunter2 hunter2", &json!({}))
        .await;
    let unknown = cx.password_login("nobody", PASSWORD, &json!({})).await;
    wrong.assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    unknown.assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_eq!(wrong.body, unknown.body);
    assert!(cx.sessions(&alice).await.is_empty());
    assert!(cx.devices("alice").is_empty());
    assert!(
        !cx.hs.calls().iter().any(|c| c.starts_with("upsert_device")),
        "no device for a failed login"
    );
}

#[tokio::test]
async fn locked_and_deactivated_users_are_told_after_the_right_password() {
    let cx = Cx::new().await;
    let alice = cx.user("alice").await;
    let bob = cx.user("bob").await;
    {
        let mut repo = cx.t.state.repos.write().await.unwrap();
        repo.users()
            .lock(&*cx.t.clock, alice.clone())
            .await
            .unwrap();
        repo.users()
            .deactivate(&*cx.t.clock, bob.clone())
            .await
            .unwrap();
        repo.save().await.unwrap();
    }
    cx.password_login("alice", PASSWORD, &json!({}))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "M_USER_LOCKED");
    cx.password_login("bob", PASSWORD, &json!({}))
        .await
        .assert_error(StatusCode::FORBIDDEN, "M_USER_DEACTIVATED");
    // A wrong password does not reveal the account's state.
    cx.password_login("alice", "wrong password!", &json!({}))
        .await
        .assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    cx.password_login("bob", "wrong password!", &json!({}))
        .await
        .assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert!(cx.sessions(&alice).await.is_empty());
    assert!(cx.sessions(&bob).await.is_empty());
    assert!(cx.devices("alice").is_empty() && cx.devices("bob").is_empty());
}

#[tokio::test]
async fn the_device_exists_before_the_answer_and_an_outage_stores_nothing() {
    for db in databases().await {
        let cx = Cx::on(db, |_| {});
        let alice = cx.user("alice").await;
        let r = cx
            .login_ok(
                "alice",
                &json!({"device_id": "PHONE00001", "initial_device_display_name": "Alice's phone"}),
            )
            .await;
        assert_eq!(r.str("device_id"), "PHONE00001");
        let device = cx.hs.user("alice").unwrap().devices["PHONE00001"].clone();
        assert_eq!(device.display_name.as_deref(), Some("Alice's phone"));
        let sessions = cx.sessions(&alice).await;
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].human_name.as_deref(), Some("Alice's phone"));

        cx.hs.set_down(true);
        let down = cx
            .password_login("alice", PASSWORD, &json!({"device_id": "LAPTOP0001"}))
            .await;
        down.assert_error(StatusCode::SERVICE_UNAVAILABLE, "M_UNKNOWN");
        assert!(down.headers.get(header::RETRY_AFTER).is_some());
        cx.hs.set_down(false);
        assert_eq!(
            cx.sessions(&alice).await,
            sessions,
            "no compat session was stored during the outage"
        );
        assert_eq!(cx.devices("alice"), vec!["PHONE00001".to_owned()]);
        // And it works again once the homeserver is back.
        cx.login_ok("alice", &json!({"device_id": "LAPTOP0001"}))
            .await;
        assert_eq!(cx.devices("alice"), vec!["LAPTOP0001", "PHONE00001"]);
        cx.cleanup().await;
    }
}

#[tokio::test]
async fn device_ids_are_validated_generated_and_reused() {
    let cx = Cx::new().await;
    let alice = cx.user("alice").await;
    let a = cx.login_ok("alice", &json!({})).await;
    let b = cx.login_ok("alice", &json!({})).await;
    for r in [&a, &b] {
        let d = r.str("device_id");
        assert_eq!(d.len(), 10, "{d}");
        assert!(d.bytes().all(|c| c.is_ascii_uppercase()), "{d}");
    }
    assert_ne!(a.str("device_id"), b.str("device_id"));
    let mut devices = vec![a.str("device_id").to_owned(), b.str("device_id").to_owned()];
    devices.sort();
    assert_eq!(cx.devices("alice"), devices);

    for bad in ["", "has space", "slash/no", "émoji"] {
        cx.password_login("alice", PASSWORD, &json!({"device_id": bad}))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    }

    // Logging in again with a device id ends the session that had it; the
    // device stays.
    let first = cx
        .login_ok("alice", &json!({"device_id": "TABLET0001"}))
        .await;
    let second = cx
        .login_ok("alice", &json!({"device_id": "TABLET0001"}))
        .await;
    assert_eq!(second.str("device_id"), "TABLET0001");
    assert!(!cx.is_active(first.str("access_token")).await);
    assert!(cx.is_active(second.str("access_token")).await);
    assert!(cx.is_active(a.str("access_token")).await);
    let tablets = cx
        .sessions(&alice)
        .await
        .into_iter()
        .filter(|s| s.device_id == "TABLET0001")
        .count();
    assert_eq!(tablets, 1);
    assert!(cx.devices("alice").contains(&"TABLET0001".to_owned()));
}

#[tokio::test]
async fn refreshable_logins_get_an_expiring_token_and_a_refresh_token() {
    let cx = Cx::with_config(|c| c.experimental.compat_token_ttl = 120).await;
    cx.user("alice").await;
    let r = cx.login_ok("alice", &json!({"refresh_token": true})).await;
    assert_eq!(r.body["expires_in_ms"], 120_000);
    assert!(r.str("refresh_token").starts_with("mcr_"));
    let access = r.str("access_token");
    let v = cx.introspect(access, true).await;
    assert_eq!(v["expires_in"], 120);
    cx.advance(119);
    assert!(cx.is_active(access).await);
    cx.advance(1);
    assert!(
        !cx.is_active(access).await,
        "expired after compat_token_ttl"
    );

    // Without refresh tokens the token does not expire (like MAS).
    let r = cx.login_ok("alice", &json!({"refresh_token": false})).await;
    let v = cx.introspect(r.str("access_token"), true).await;
    assert!(
        v.get("exp").is_none() && v.get("expires_in").is_none(),
        "{v}"
    );
    cx.advance(86_400 * 365);
    assert!(cx.is_active(r.str("access_token")).await);
}

#[tokio::test]
async fn malformed_requests_get_matrix_errors() {
    let cx = Cx::new().await;
    cx.user("alice").await;
    let not_json = cx
        .request(
            "POST",
            LOGIN,
            Some("type=m.login.password".to_owned()),
            None,
        )
        .await;
    not_json.assert_error(StatusCode::BAD_REQUEST, "M_NOT_JSON");
    for (body, errcode) in [
        (json!(["m.login.password"]), "M_BAD_JSON"),
        (json!({"type": 5}), "M_BAD_JSON"),
        (
            json!({"type": "m.login.password", "password": PASSWORD}),
            "M_BAD_JSON",
        ),
        (
            json!({"type": "m.login.password", "user": "alice"}),
            "M_BAD_JSON",
        ),
        (json!({"type": "m.login.token"}), "M_BAD_JSON"),
        (json!({"type": "m.login.dummy"}), "M_UNRECOGNIZED"),
        (
            json!({"type": "m.login.password", "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "a@example.org"}, "password": PASSWORD}),
            "M_UNRECOGNIZED",
        ),
    ] {
        let r = cx.post(LOGIN, &body, None).await;
        r.assert_error(StatusCode::BAD_REQUEST, errcode);
    }
    cx.post(
        LOGIN,
        &json!({"type": "m.login.token", "token": "no-such-token"}),
        None,
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");
}

#[tokio::test]
async fn a_saturated_password_pool_answers_limit_exceeded() {
    let mut cx = Cx::new().await;
    cx.user("alice").await;
    cx.t.state.passwords = PasswordManager::with_limits(
        &cx.t.state.config.passwords,
        0,
        StdDuration::from_millis(20),
    )
    .unwrap();
    cx.app = cx.t.router(&vestibule_server::Resources::all(), None);
    let r = cx.password_login("alice", PASSWORD, &json!({})).await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED");
    assert_eq!(r.body["retry_after_ms"], 5000);
    assert_eq!(r.headers[header::RETRY_AFTER], "5");
}

#[tokio::test]
async fn a_user_not_yet_on_the_homeserver_is_provisioned_at_login() {
    // The provisioning job may not have run yet (the homeserver was down when
    // the account was created): the login creates the user, then the device,
    // like the OAuth token endpoint does. Found by the legacy e2e test.
    let cx = Cx::new().await;
    add_user(&cx.t.state, "newbie", PASSWORD).await;
    assert!(cx.hs.user("newbie").is_none(), "not on the homeserver yet");
    let r = cx
        .login_ok("newbie", &json!({"device_id": "NEWDEVICE1"}))
        .await;
    assert_eq!(r.str("device_id"), "NEWDEVICE1");
    let on_hs = cx.hs.user("newbie").expect("provisioned at login");
    assert!(on_hs.devices.contains_key("NEWDEVICE1"));
    cx.cleanup().await;
}
