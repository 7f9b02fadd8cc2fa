//! RFC 8628 device authorization grant (MSC4108 QR login): the device
//! authorization endpoint, the `/link` and `/device/{id}` pages, and the
//! token endpoint's polling, against the in-memory homeserver, on SQLite
//! and PostgreSQL.

use axum::http::{StatusCode, header};
use serde_json::Value;
use vestibule_domain::{device_code::DeviceCodeGrantStage, oauth2::ClientAuthMethod};
use vestibule_storage_sql::testing::TestDatabase;

use crate::{
    browser_helpers::{Browser, PASSWORD, Resp, add_user},
    compat_support::databases,
    harness::body_json,
    oauth2_support::{CLIENT_SECRET, Fx, assert_error, basic, str_of},
    provisioning_support::Hx,
};

const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const DEVICE: &str = "QRDEVICE01";
const SCOPE: &str = "openid urn:matrix:client:api:* urn:matrix:client:device:QRDEVICE01";

async fn public_device_client(fx: &Fx) -> vestibule_domain::oauth2::Client {
    fx.client_with(Fx::params(
        ClientAuthMethod::None,
        &[GRANT, "refresh_token"],
    ))
    .await
}

/// `POST /oauth2/device` for a public client; the JSON body (200 asserted).
async fn authorize_device(fx: &Fx, client_id: &str, scope: &str) -> Value {
    let res = fx
        .post_form(
            "/oauth2/device",
            &[("client_id", client_id), ("scope", scope)],
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    body_json(res).await
}

async fn poll(fx: &Fx, client_id: &str, device_code: &str) -> axum::response::Response {
    fx.token(&[
        ("grant_type", GRANT),
        ("device_code", device_code),
        ("client_id", client_id),
    ])
    .await
}

/// Signs in through `/login?next=…` as the page redirected us, and returns
/// the response to the login POST.
async fn login_via(b: &mut Browser, login_redirect: &Resp, username: &str) -> Resp {
    let page = b.follow(login_redirect).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let next = crate::browser_helpers::hidden(&page.body, "next").expect("next carried");
    let csrf = page.csrf();
    b.post(
        "/login",
        &[
            ("csrf", csrf.as_str()),
            ("username", username),
            ("password", PASSWORD),
            ("next", next.as_str()),
        ],
    )
    .await
}

/// Opens `verification_uri_complete` in the browser (signing in on the
/// way) and returns the approval page.
async fn open_approval(b: &mut Browser, complete: &str, username: &str) -> Resp {
    let path = b.path_of(complete);
    let r = b.get(&path).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let device_path = b.path_of(r.location().unwrap());
    assert!(device_path.starts_with("/device/"), "{device_path}");
    let r = b.get(&device_path).await;
    let r = if r.status == StatusCode::SEE_OTHER && r.location().unwrap().contains("/login?next=") {
        let logged_in = login_via(b, &r, username).await;
        assert_eq!(
            logged_in.status,
            StatusCode::SEE_OTHER,
            "{}",
            logged_in.body
        );
        assert_eq!(b.path_of(logged_in.location().unwrap()), device_path);
        b.follow(&logged_in).await
    } else {
        r
    };
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r
}

async fn decide(b: &mut Browser, page: &Resp, action: &str) -> Resp {
    let action_path = {
        let marker = "<form method=\"post\" action=\"";
        let start = page.body.find(marker).unwrap() + marker.len();
        let end = page.body[start..].find('"').unwrap() + start;
        b.path_of(&page.body[start..end])
    };
    let csrf = page.csrf();
    b.post(&action_path, &[("csrf", csrf.as_str()), ("action", action)])
        .await
}

async fn whole_flow(db: TestDatabase) {
    let hx = Hx::on(db, |_| {});
    let fx = &hx.fx;
    let client = public_device_client(fx).await;
    let cid = client.client_id.clone();
    let user = add_user(&fx.t.state, "qruser", PASSWORD).await;

    // RFC 8628 §3.2.
    let auth = authorize_device(fx, &cid, SCOPE).await;
    let user_code = str_of(&auth, "user_code").to_owned();
    let device_code = str_of(&auth, "device_code").to_owned();
    let (a, b_) = user_code.split_once('-').expect("XXXX-XXXX");
    assert!(a.len() == 4 && b_.len() == 4, "{user_code}");
    assert!(
        user_code
            .chars()
            .filter(|c| *c != '-')
            .all(|c| "BCDFGHJKLMNPQRSTVWXZ".contains(c)),
        "{user_code}"
    );
    assert_eq!(auth["verification_uri"], "https://auth.example.org/link");
    assert_eq!(
        auth["verification_uri_complete"],
        format!("https://auth.example.org/link?code={user_code}")
    );
    assert_eq!(auth["expires_in"], 600);
    assert_eq!(auth["interval"], 5);
    // Only the hash of the device code is stored.
    {
        let mut repo = fx.t.state.repos.read().await.unwrap();
        assert!(
            repo.device_code_grants()
                .find_by_device_code_hash(&device_code)
                .await
                .unwrap()
                .is_none()
        );
        let stored = repo
            .device_code_grants()
            .find_by_user_code(&user_code.replace('-', ""))
            .await
            .unwrap()
            .expect("stored normalised");
        assert_eq!(stored.scope, SCOPE);
    }

    // §3.5: pending, then too fast, then pending again after the interval.
    assert_error(
        poll(fx, &cid, &device_code).await,
        StatusCode::BAD_REQUEST,
        "authorization_pending",
    )
    .await;
    fx.advance(1);
    assert_error(
        poll(fx, &cid, &device_code).await,
        StatusCode::BAD_REQUEST,
        "slow_down",
    )
    .await;
    fx.advance(5);
    assert_error(
        poll(fx, &cid, &device_code).await,
        StatusCode::BAD_REQUEST,
        "authorization_pending",
    )
    .await;

    // §3.3: the user opens the link (lower case, typed without the dash
    // works too), signs in, and allows.
    let mut b = Browser::new(&fx.t);
    let typed = format!("/link?code={}", user_code.replace('-', "").to_lowercase());
    let r = b.get(&typed).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = open_approval(
        &mut b,
        auth["verification_uri_complete"].as_str().unwrap(),
        "qruser",
    )
    .await;
    assert!(page.body.contains("Test client"), "{}", page.body);
    assert!(page.body.contains("Sign in as the device QRDEVICE01"));
    assert!(page.body.contains(&user_code));
    assert!(page.body.contains("@qruser:"));
    // The form is CSRF-protected.
    let device_path = b.path_of(
        page.body[page.body.find("https://auth.example.org/device/").unwrap()..]
            .split('"')
            .next()
            .unwrap(),
    );
    let forged = b.post(&device_path, &[("action", "allow")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let done = decide(&mut b, &page, "allow").await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(
        done.body.contains("go back to your device"),
        "{}",
        done.body
    );
    // Answered: the page does not offer it again.
    assert_eq!(b.get(&device_path).await.status, StatusCode::NOT_FOUND);

    // Homeserver down: 503, and the code stays exchangeable.
    hx.hs.set_down(true);
    fx.advance(6);
    let res = poll(fx, &cid, &device_code).await;
    assert_error(
        res,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
    )
    .await;
    hx.hs.set_down(false);
    assert!(hx.hs.user("qruser").is_none_or(|u| u.devices.is_empty()));

    fx.advance(6);
    let res = poll(fx, &cid, &device_code).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    let tokens = body_json(res).await;
    // The device exists on the homeserver by the time the tokens are out.
    let on_hs = hx.hs.user("qruser").expect("user provisioned");
    let device = on_hs.devices.get(DEVICE).expect("device created");
    assert_eq!(device.display_name.as_deref(), Some("Test client"));
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], SCOPE);
    assert!(str_of(&tokens, "access_token").starts_with("mat_"));
    assert!(str_of(&tokens, "refresh_token").starts_with("mar_"));
    assert!(tokens["id_token"].as_str().is_some(), "openid → ID token");
    let intro = fx.introspect(str_of(&tokens, "access_token")).await;
    assert_eq!(intro["active"], true);
    assert_eq!(intro["username"], "qruser");
    assert_eq!(intro["scope"], SCOPE);

    // The session hangs on the browser session that approved.
    {
        let mut repo = fx.t.state.repos.read().await.unwrap();
        let grant = repo
            .device_code_grants()
            .find_by_user_code(&user_code.replace('-', ""))
            .await
            .unwrap()
            .unwrap();
        let DeviceCodeGrantStage::Exchanged {
            session_id,
            browser_session_id,
            ..
        } = grant.stage
        else {
            panic!("{:?}", grant.stage)
        };
        let session = repo
            .oauth2_sessions()
            .lookup(session_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(session.browser_session_id, Some(browser_session_id));
        assert_eq!(session.user_id, Some(user.id));
    }

    // Single use.
    fx.advance(6);
    let res = poll(fx, &cid, &device_code).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;

    // The refresh token works (the client may refresh).
    let res = fx.refresh(&client, str_of(&tokens, "refresh_token")).await;
    assert_eq!(res.status(), StatusCode::OK);
    hx.cleanup().await;
}

#[tokio::test]
async fn device_flow_from_code_to_tokens_with_the_device_on_the_homeserver() {
    for db in databases().await {
        whole_flow(db).await;
    }
}

#[tokio::test]
async fn device_grant_denied_expired_and_foreign_codes() {
    let hx = Hx::new().await;
    let fx = &hx.fx;
    let client = public_device_client(fx).await;
    let cid = client.client_id.clone();
    add_user(&fx.t.state, "denier", PASSWORD).await;

    // Deny → access_denied (§3.5), and the homeserver is never called.
    let auth = authorize_device(fx, &cid, SCOPE).await;
    let dc = str_of(&auth, "device_code").to_owned();
    let mut b = Browser::new(&fx.t);
    let page = open_approval(
        &mut b,
        auth["verification_uri_complete"].as_str().unwrap(),
        "denier",
    )
    .await;
    let done = decide(&mut b, &page, "deny").await;
    assert_eq!(done.status, StatusCode::OK);
    assert!(done.body.contains("denied"), "{}", done.body);
    assert_error(
        poll(fx, &cid, &dc).await,
        StatusCode::BAD_REQUEST,
        "access_denied",
    )
    .await;
    assert!(hx.hs.calls().is_empty(), "{:?}", hx.hs.calls());

    // Another client's device code → invalid_grant.
    let other = public_device_client(fx).await;
    let auth = authorize_device(fx, &cid, SCOPE).await;
    let dc = str_of(&auth, "device_code").to_owned();
    assert_error(
        poll(fx, &other.client_id, &dc).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    // Unknown device code → invalid_grant; none → invalid_request.
    assert_error(
        poll(fx, &cid, "not-a-device-code").await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    assert_error(
        fx.token(&[("grant_type", GRANT), ("client_id", &cid)])
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;

    // Expired → expired_token, and the link page no longer knows the code.
    let complete = auth["verification_uri_complete"]
        .as_str()
        .unwrap()
        .to_owned();
    fx.advance(601);
    assert_error(
        poll(fx, &cid, &dc).await,
        StatusCode::BAD_REQUEST,
        "expired_token",
    )
    .await;
    let r = b.get(&b.path_of(&complete)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.contains("not valid or has expired"), "{}", r.body);
    assert!(r.body.contains("name=\"code\""), "a way back: the form");

    // The entry form: CSRF-checked, wrong codes answered on the page.
    let form = b.get("/link").await;
    assert_eq!(form.status, StatusCode::OK);
    let csrf = form.csrf();
    let r = b.post("/link", &[("code", "BCDF-GHJK")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no CSRF token");
    let r = b
        .post("/link", &[("csrf", csrf.as_str()), ("code", "BCDF-GHJK")])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let fresh = authorize_device(fx, &cid, SCOPE).await;
    let r = b
        .post(
            "/link",
            &[
                ("csrf", csrf.as_str()),
                ("code", &str_of(&fresh, "user_code").to_lowercase()),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.location().unwrap().contains("/device/"));
    hx.cleanup().await;
}

#[tokio::test]
async fn device_authorization_endpoint_checks_the_client_and_the_scope() {
    let fx = Fx::new().await;
    // A client without the grant type.
    let code_only = fx.public_client().await;
    let res = fx
        .post_form(
            "/oauth2/device",
            &[("client_id", &code_only.client_id), ("scope", SCOPE)],
            None,
        )
        .await;
    assert_error(res, StatusCode::BAD_REQUEST, "unauthorized_client").await;
    // The same scope rules as /authorize.
    let client = public_device_client(&fx).await;
    for bad in ["", "openid urn:unknown:scope"] {
        let res = fx
            .post_form(
                "/oauth2/device",
                &[("client_id", &client.client_id), ("scope", bad)],
                None,
            )
            .await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_scope").await;
    }
    // Client authentication as at the token endpoint.
    let conf = fx
        .confidential_client(ClientAuthMethod::ClientSecretBasic, &[GRANT])
        .await;
    let res = fx
        .post_form(
            "/oauth2/device",
            &[("scope", SCOPE)],
            Some(basic(&conf.client_id, "wrong")),
        )
        .await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let res = fx
        .post_form(
            "/oauth2/device",
            &[("scope", SCOPE)],
            Some(basic(&conf.client_id, CLIENT_SECRET)),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // Unknown public client.
    let res = fx
        .post_form(
            "/oauth2/device",
            &[("client_id", "nobody"), ("scope", SCOPE)],
            None,
        )
        .await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
    fx.cleanup().await;
}

#[tokio::test]
async fn admin_scope_follows_the_consent_policy() {
    let hx = Hx::new().await;
    let fx = &hx.fx;
    let client = public_device_client(fx).await;
    add_user(&fx.t.state, "plain", PASSWORD).await;
    let auth = authorize_device(
        fx,
        &client.client_id,
        "urn:matrix:client:api:* urn:synapse:admin:*",
    )
    .await;
    let mut b = Browser::new(&fx.t);
    let path = b.path_of(auth["verification_uri_complete"].as_str().unwrap());
    let r = b.get(&path).await;
    let r = b.follow(&r).await;
    let logged_in = login_via(&mut b, &r, "plain").await;
    let refused = b.follow(&logged_in).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(refused.body.contains("administrator"), "{}", refused.body);
    assert_error(
        poll(fx, &client.client_id, str_of(&auth, "device_code")).await,
        StatusCode::BAD_REQUEST,
        "access_denied",
    )
    .await;
    hx.cleanup().await;
}

#[tokio::test]
async fn an_approval_is_withdrawn_when_its_browser_session_ends() {
    let hx = Hx::new().await;
    let fx = &hx.fx;
    let client = public_device_client(fx).await;
    add_user(&fx.t.state, "leaver", PASSWORD).await;
    let auth = authorize_device(fx, &client.client_id, SCOPE).await;
    let mut b = Browser::new(&fx.t);
    let page = open_approval(
        &mut b,
        auth["verification_uri_complete"].as_str().unwrap(),
        "leaver",
    )
    .await;
    assert_eq!(decide(&mut b, &page, "allow").await.status, StatusCode::OK);
    // The approving browser session ends before the device polls.
    {
        let mut repo = fx.t.state.repos.write().await.unwrap();
        let grant = repo
            .device_code_grants()
            .find_by_user_code(&str_of(&auth, "user_code").replace('-', ""))
            .await
            .unwrap()
            .unwrap();
        let DeviceCodeGrantStage::Fulfilled {
            browser_session_id, ..
        } = grant.stage
        else {
            panic!("{:?}", grant.stage)
        };
        let bs = repo
            .browser_sessions()
            .lookup(browser_session_id)
            .await
            .unwrap()
            .unwrap();
        repo.browser_sessions()
            .finish(fx.t.state.clock.as_ref(), bs)
            .await
            .unwrap();
        repo.save().await.unwrap();
    }
    let res = poll(fx, &client.client_id, str_of(&auth, "device_code")).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert!(hx.hs.calls().is_empty(), "{:?}", hx.hs.calls());
    hx.cleanup().await;
}

#[tokio::test]
async fn a_new_account_registered_on_the_way_comes_back_to_the_approval() {
    let hx = Hx::on(TestDatabase::sqlite().await.unwrap(), |c| {
        c.account.password_registration_enabled = true;
        c.account.password_registration_email_required = false;
    });
    let fx = &hx.fx;
    let client = public_device_client(fx).await;
    let auth = authorize_device(fx, &client.client_id, SCOPE).await;
    let mut b = Browser::new(&fx.t);
    let r = b
        .get(&b.path_of(auth["verification_uri_complete"].as_str().unwrap()))
        .await;
    let device_path = b.path_of(r.location().unwrap());
    let to_login = b.get(&device_path).await;
    let login = b.follow(&to_login).await;
    assert_eq!(login.status, StatusCode::OK);
    let encoded = device_path.replace('/', "%2F");
    let link = format!("/register?next={encoded}");
    assert!(login.body.contains(&link), "{}", login.body);
    let page = b.get(&link).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let next = crate::browser_helpers::hidden(&page.body, "next").expect("next carried");
    let csrf = page.csrf();
    let r = b
        .post(
            "/register",
            &[
                ("csrf", csrf.as_str()),
                ("username", "newcomer"),
                ("password", PASSWORD),
                ("next", next.as_str()),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(b.path_of(r.location().unwrap()), device_path);
    let approval = b.follow(&r).await;
    assert_eq!(approval.status, StatusCode::OK);
    assert!(approval.body.contains("@newcomer:"), "{}", approval.body);
    // Anything else as `next` is not followed (no open redirect).
    let page = b.get("/register?next=https://evil.example/").await;
    assert!(crate::browser_helpers::hidden(&page.body, "next").is_none());
    hx.cleanup().await;
}

async fn racing_exchanges(db: TestDatabase) {
    let hx = Hx::on(db, |_| {});
    let fx = &hx.fx;
    let client = public_device_client(fx).await;
    add_user(&fx.t.state, "racer", PASSWORD).await;
    let auth = authorize_device(fx, &client.client_id, SCOPE).await;
    let mut b = Browser::new(&fx.t);
    let page = open_approval(
        &mut b,
        auth["verification_uri_complete"].as_str().unwrap(),
        "racer",
    )
    .await;
    assert_eq!(decide(&mut b, &page, "allow").await.status, StatusCode::OK);
    let dc = str_of(&auth, "device_code");
    let (a, b_, c) = tokio::join!(
        poll(fx, &client.client_id, dc),
        poll(fx, &client.client_id, dc),
        poll(fx, &client.client_id, dc),
    );
    let statuses = [a.status(), b_.status(), c.status()];
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "exactly one exchange wins: {statuses:?}"
    );
    for res in [a, b_, c] {
        if res.status() != StatusCode::OK {
            assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
        }
    }
    // One OAuth session came out of it.
    let mut repo = fx.t.state.repos.read().await.unwrap();
    let user = repo
        .users()
        .find_by_username("racer")
        .await
        .unwrap()
        .unwrap();
    let sessions = repo
        .oauth2_sessions()
        .list_active_for_user(&user)
        .await
        .unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    drop(repo);
    hx.cleanup().await;
}

#[tokio::test]
async fn concurrent_exchanges_of_one_device_code_have_one_winner() {
    for db in databases().await {
        racing_exchanges(db).await;
    }
}
