//! `m.login.sso` for legacy clients: `/login/sso/redirect` → our login page
//! → the approval page → `redirectUrl?loginToken=…` → `m.login.token`.

use axum::http::StatusCode;
use serde_json::json;
use vestibule_domain::{compat::CompatSsoLoginStage, tokens::token_hash};

use crate::{
    browser_helpers::{Browser, PASSWORD, Resp, params_of},
    compat_support::{Cx, LOGIN, databases},
};

const REDIRECT: &str = "/_matrix/client/v3/login/sso/redirect";
const CLIENT_CB: &str = "https://client.example/cb?state=1";

fn redirect_uri(redirect_url: &str) -> String {
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("redirectUrl", redirect_url)
        .finish();
    format!("{REDIRECT}?{q}")
}

/// Starts an SSO login; returns the approval page's path.
async fn start(b: &mut Browser, redirect_url: &str) -> String {
    let r = b.get(&redirect_uri(redirect_url)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let path = b.path_of(r.location().unwrap());
    assert!(path.starts_with("/complete-compat-sso/"), "{path}");
    path
}

/// Approves on the approval page (signed in already); returns the 303.
async fn approve(b: &mut Browser, complete: &str) -> Resp {
    let page = b.get(complete).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let csrf = page.csrf();
    b.post(complete, &[("csrf", &csrf)]).await
}

/// The whole browser part for `user`: start, log in, approve. Returns the
/// login token from the final redirect.
async fn browser_flow(b: &mut Browser, user: &str) -> String {
    let complete = start(b, CLIENT_CB).await;
    let r = b.get(&complete).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let login_path = b.path_of(r.location().unwrap());
    let id = complete.trim_start_matches("/complete-compat-sso/");
    assert_eq!(login_path, format!("/login?compat_sso={id}"));
    let page = b.get(&login_path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains(&format!("name=\"compat_sso\" value=\"{id}\"")),
        "the login form carries the SSO login: {}",
        page.body
    );
    assert!(
        page.body.contains("client.example"),
        "shows where it continues to"
    );
    let csrf = page.csrf();
    let r = b
        .post(
            "/login",
            &[
                ("csrf", csrf.as_str()),
                ("username", user),
                ("password", PASSWORD),
                ("compat_sso", id),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(b.path_of(r.location().unwrap()), complete);
    let page = b.get(&complete).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("client.example"), "{}", page.body);
    assert!(page.body.contains("@alice:example.org") || user != "alice");
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("form-action 'self' https://client.example"),
        "{csp}"
    );
    let done = b.post(&complete, &[("csrf", &page.csrf())]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let location = done.location().unwrap();
    assert!(
        location.starts_with("https://client.example/cb?state=1&loginToken="),
        "{location}"
    );
    params_of(location, false)["loginToken"].clone()
}

#[tokio::test]
async fn sso_round_trip_gives_a_single_use_login_token() {
    for db in databases().await {
        let cx = Cx::on(db, |_| {});
        let alice = cx.user("alice").await;
        let mut b = cx.browser();
        let token = browser_flow(&mut b, "alice").await;

        let r = cx
            .post(
                LOGIN,
                &json!({"type": "m.login.token", "token": token, "device_id": "SSODEVICE1",
                        "initial_device_display_name": "Legacy client"}),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.str("user_id"), "@alice:example.org");
        assert_eq!(r.str("device_id"), "SSODEVICE1");
        assert!(cx.is_active(r.str("access_token")).await);
        assert_eq!(cx.devices("alice"), vec!["SSODEVICE1".to_owned()]);
        let sessions = cx.sessions(&alice).await;
        assert_eq!(sessions.len(), 1);
        assert!(
            sessions[0].browser_session_id.is_some(),
            "the compat session remembers the browser session"
        );

        // Once only.
        cx.post(
            LOGIN,
            &json!({"type": "m.login.token", "token": token}),
            None,
        )
        .await
        .assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");
        assert_eq!(cx.sessions(&alice).await.len(), 1);

        // The approval page of a used login is gone too.
        cx.cleanup().await;
    }
}

#[tokio::test]
async fn a_login_token_is_valid_for_30_seconds() {
    let cx = Cx::new().await;
    let alice = cx.user("alice").await;
    let mut b = cx.browser();
    let late = browser_flow(&mut b, "alice").await;
    cx.advance(31);
    let r = cx
        .post(
            LOGIN,
            &json!({"type": "m.login.token", "token": late}),
            None,
        )
        .await;
    r.assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert!(cx.sessions(&alice).await.is_empty());

    // Within the 30 s it works (same browser, already signed in: start and
    // approve directly).
    let complete = start(&mut b, CLIENT_CB).await;
    let done = approve(&mut b, &complete).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let token = params_of(done.location().unwrap(), false)["loginToken"].clone();
    cx.advance(30);
    let r = cx
        .post(
            LOGIN,
            &json!({"type": "m.login.token", "token": token}),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn redirect_urls_must_be_absolute_http() {
    let cx = Cx::new().await;
    let mut b = cx.browser();
    let r = b.get(REDIRECT).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("M_MISSING_PARAM"), "{}", r.body);
    for bad in [
        "/relative/cb",
        "javascript:alert(1)",
        "client.example/cb",
        "im.client:/cb",
        "https://user:pw@client.example/",
    ] {
        let r = b.get(&redirect_uri(bad)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["errcode"], "M_INVALID_PARAM", "{bad}");
        assert!(r.location().is_none());
    }
    // An identity provider we do not have.
    let r = b
        .get(&format!(
            "{REDIRECT}/oidc-nowhere?redirectUrl=https%3A%2F%2Fclient.example%2F"
        ))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["errcode"], "M_NOT_FOUND");
}

#[tokio::test]
async fn the_approval_form_is_csrf_checked() {
    let cx = Cx::new().await;
    cx.user("alice").await;
    let mut b = cx.browser();
    b.login("alice", PASSWORD, None).await;
    let complete = start(&mut b, CLIENT_CB).await;
    let page = b.get(&complete).await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = page.csrf();
    let id =
        vestibule_domain::Ulid::from_string(complete.trim_start_matches("/complete-compat-sso/"))
            .unwrap();

    let missing = b.post(&complete, &[]).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    let wrong = b.post(&complete, &[("csrf", "not-the-token")]).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let cross_site = b
        .post_with(
            &complete,
            &[("csrf", &csrf)],
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(cross_site.status, StatusCode::FORBIDDEN);
    for r in [&missing, &wrong, &cross_site] {
        assert!(r.location().is_none());
    }
    let stage = {
        let mut repo = cx.t.state.repos.read().await.unwrap();
        repo.compat_sso_logins()
            .lookup(id)
            .await
            .unwrap()
            .unwrap()
            .stage
    };
    assert_eq!(stage, CompatSsoLoginStage::Pending, "nothing was approved");

    let ok = b.post(&complete, &[("csrf", &csrf)]).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    // A second approval of the same login is refused.
    let again = b.post(&complete, &[("csrf", &csrf)]).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn only_the_browser_that_started_the_login_can_approve_it() {
    let cx = Cx::new().await;
    cx.user("alice").await;
    cx.user("mallory").await;
    // Mallory starts a login for her client and sends Alice the link.
    let mut mallory = cx.browser();
    let complete = start(&mut mallory, "https://mallory.example/cb").await;
    let mut alice = cx.browser();
    alice.login("alice", PASSWORD, None).await;
    let page = alice.get(&complete).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert!(page.location().is_none());
    // Even with a valid form token of her own browser.
    let own = alice.get("/login?switch=1").await.csrf();
    let post = alice.post(&complete, &[("csrf", &own)]).await;
    assert_eq!(post.status, StatusCode::BAD_REQUEST);
    assert!(post.location().is_none());
}

#[tokio::test]
async fn unapproved_and_unknown_login_tokens_are_refused() {
    let cx = Cx::new().await;
    cx.user("alice").await;
    // A pending login whose token we know (made through the repository).
    {
        let mut rng = cx.t.state.rng.rng();
        let mut repo = cx.t.state.repos.write().await.unwrap();
        repo.compat_sso_logins()
            .add(
                &mut rng,
                &*cx.t.clock,
                &token_hash("pending-login-token"),
                &"https://client.example/cb".parse().unwrap(),
            )
            .await
            .unwrap();
        repo.save().await.unwrap();
    }
    for token in ["pending-login-token", "unknown-login-token"] {
        cx.post(
            LOGIN,
            &json!({"type": "m.login.token", "token": token}),
            None,
        )
        .await
        .assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    }
    assert!(cx.devices("alice").is_empty());
}

#[tokio::test]
async fn concurrent_exchanges_of_one_login_token_let_only_one_win() {
    for db in databases().await {
        let cx = Cx::on(db, |_| {});
        let alice = cx.user("alice").await;
        let mut b = cx.browser();
        let token = browser_flow(&mut b, "alice").await;
        let body = json!({"type": "m.login.token", "token": token});
        let (r1, r2, r3) = tokio::join!(
            cx.post(LOGIN, &body, None),
            cx.post(LOGIN, &body, None),
            cx.post(LOGIN, &body, None)
        );
        let ok = [&r1, &r2, &r3]
            .iter()
            .filter(|r| r.status == StatusCode::OK)
            .count();
        assert_eq!(ok, 1, "{r1:?} {r2:?} {r3:?}");
        for r in [&r1, &r2, &r3] {
            if r.status != StatusCode::OK {
                r.assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");
            }
        }
        assert_eq!(cx.sessions(&alice).await.len(), 1);
        assert_eq!(
            cx.devices("alice").len(),
            1,
            "the losers' devices were removed again"
        );
        cx.cleanup().await;
    }
}
