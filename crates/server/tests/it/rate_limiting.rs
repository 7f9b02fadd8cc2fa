//! Rate limiting (checklist S37, R08) through the production router, with
//! the mock clock: password guesses through the login page and the legacy
//! `/login` share one per-IP and one per-account limiter, checked before
//! the password; `X-Forwarded-For` counts only from a trusted proxy;
//! refusals are backoff (the next attempt is allowed one interval later),
//! whatever the clock does. On SQLite and PostgreSQL.

use std::net::SocketAddr;

use axum::{
    body::Body,
    http::{HeaderMap, Request, StatusCode, header},
};
use chrono::Duration;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use vestibule_config::RateLimiterConfig;
use vestibule_domain::oauth2::ClientAuthMethod;
use vestibule_storage_sql::testing::TestDatabase;

use crate::{
    browser_helpers::{Browser, PASSWORD, Resp, add_user, hidden},
    compat_support::{Cx, LOGIN, databases},
    harness::{body_json, from_peer, send},
    oauth2_support::Fx,
    provisioning_support::Hx,
};

/// An address outside the default `http.trusted_proxies`.
const CLIENT: &str = "203.0.113.7:50000";
/// A trusted reverse proxy (default `127.0.0.0/8`).
const PROXY: &str = "127.0.0.1:40000";
const WRONG: &str = "not the password";

fn limit(burst: u32, per_second: f64) -> RateLimiterConfig {
    RateLimiterConfig { burst, per_second }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// What came back from one attempt, from either pathway.
#[derive(Debug)]
enum Outcome {
    /// The password was checked (and was wrong).
    Checked,
    /// The password was right.
    LoggedIn,
    /// Refused by a limiter, with `Retry-After` (seconds) and the
    /// `retry_after_ms` of the Matrix body (compat only).
    Limited { retry_after: u64, ms: Option<u64> },
}

fn retry_after(headers: &HeaderMap) -> u64 {
    headers
        .get(header::RETRY_AFTER)
        .expect("Retry-After on a 429")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// `m.login.password` on the legacy API from `peer`, with `xff` if set.
async fn compat_attempt(
    cx: &Cx,
    peer: SocketAddr,
    xff: Option<&str>,
    user: &str,
    password: &str,
) -> Outcome {
    let body = json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
    });
    let mut req = Request::post(LOGIN).header(header::CONTENT_TYPE, "application/json");
    if let Some(x) = xff {
        req = req.header("x-forwarded-for", x);
    }
    let mut req = req.body(Body::from(body.to_string())).unwrap();
    from_peer(&mut req, peer);
    let res = send(&cx.app, req).await;
    let status = res.status();
    let headers = res.headers().clone();
    let body: Value = body_json(res).await;
    match status {
        StatusCode::OK => Outcome::LoggedIn,
        StatusCode::FORBIDDEN => {
            assert_eq!(body["errcode"], "M_FORBIDDEN", "{body}");
            Outcome::Checked
        }
        StatusCode::TOO_MANY_REQUESTS => {
            assert_eq!(body["errcode"], "M_LIMIT_EXCEEDED", "{body}");
            assert!(body["error"].is_string(), "{body}");
            let ms = body["retry_after_ms"].as_u64().expect("retry_after_ms");
            assert!(ms > 0, "{body}");
            Outcome::Limited {
                retry_after: retry_after(&headers),
                ms: Some(ms),
            }
        }
        other => panic!("unexpected {other}: {body}"),
    }
}

/// A browser from `peer` holding a login page (its CSRF cookie and token).
async fn browser_at(cx: &Cx, peer: SocketAddr) -> (Browser, String) {
    let mut b = cx.browser();
    b.peer = Some(peer);
    let page = b.get("/login?switch=1").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let csrf = page.csrf();
    (b, csrf)
}

/// The login form POST, with `xff` if set.
async fn browser_attempt(
    b: &mut Browser,
    csrf: &str,
    xff: Option<&str>,
    user: &str,
    password: &str,
) -> Outcome {
    let headers: Vec<(&str, &str)> = xff.map(|x| ("x-forwarded-for", x)).into_iter().collect();
    let r = b
        .post_with(
            "/login",
            &[("csrf", csrf), ("username", user), ("password", password)],
            &headers,
        )
        .await;
    browser_outcome(&r, user)
}

fn browser_outcome(r: &Resp, user: &str) -> Outcome {
    match r.status {
        StatusCode::SEE_OTHER => Outcome::LoggedIn,
        StatusCode::UNAUTHORIZED => {
            assert!(r.body.contains("Wrong username or password"), "{}", r.body);
            Outcome::Checked
        }
        StatusCode::TOO_MANY_REQUESTS => {
            // The form again, with what was typed and when to retry.
            assert!(
                r.body.contains("Too many attempts. Try again in"),
                "{}",
                r.body
            );
            assert!(hidden(&r.body, "csrf").is_some(), "{}", r.body);
            assert!(r.body.contains(&format!("value=\"{user}\"")), "{}", r.body);
            Outcome::Limited {
                retry_after: retry_after(&r.headers),
                ms: None,
            }
        }
        other => panic!("unexpected {other}: {}", r.body),
    }
}

fn count(outcomes: &[Outcome]) -> (usize, usize, usize) {
    let checked = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Checked))
        .count();
    let ok = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::LoggedIn))
        .count();
    let limited = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Limited { .. }))
        .count();
    (checked, ok, limited)
}

/// 200 parallel wrong passwords for one account from one address, half
/// through the login page and half through the legacy API: exactly
/// `burst` reach the password check, the rest are 429 with when to retry.
/// The right password is refused too while limited (it is not even
/// checked), and accepted one interval later.
async fn one_address(db: TestDatabase) {
    let cx = Cx::on(db, |c| {
        c.rate_limiting.login.per_ip = limit(5, 0.1); // one every 10 s
        c.rate_limiting.login.per_account = limit(1000, 1.0);
    });
    cx.user("alice").await;
    let peer = addr(CLIENT);
    let (b, csrf) = browser_at(&cx, peer).await;
    let cx = std::sync::Arc::new(cx);
    let mut set = JoinSet::new();
    for i in 0..200 {
        let cx = cx.clone();
        let mut b = b.clone();
        let csrf = csrf.clone();
        set.spawn(async move {
            if i % 2 == 0 {
                browser_attempt(&mut b, &csrf, None, "alice", WRONG).await
            } else {
                compat_attempt(&cx, peer, None, "alice", WRONG).await
            }
        });
    }
    let outcomes: Vec<Outcome> = set.join_all().await;
    assert_eq!(count(&outcomes), (5, 0, 195), "{outcomes:?}");
    for o in &outcomes {
        if let Outcome::Limited { retry_after, ms } = o {
            assert_eq!(*retry_after, 10, "{o:?}");
            assert!(ms.is_none_or(|ms| ms == 10_000), "{o:?}");
        }
    }
    // Still limited: the right password is not checked either.
    let mut b = b.clone();
    assert!(matches!(
        browser_attempt(&mut b, &csrf, None, "alice", PASSWORD).await,
        Outcome::Limited { .. }
    ));
    assert!(matches!(
        compat_attempt(&cx, peer, None, "alice", PASSWORD).await,
        Outcome::Limited { .. }
    ));
    // Backoff, not lockout: one interval later, one more attempt.
    cx.t.clock.advance(Duration::seconds(10));
    assert!(matches!(
        compat_attempt(&cx, peer, None, "alice", PASSWORD).await,
        Outcome::LoggedIn
    ));
    assert!(matches!(
        browser_attempt(&mut b, &csrf, None, "alice", PASSWORD).await,
        Outcome::Limited { .. }
    ));
    cx.t.clock.advance(Duration::seconds(10));
    assert!(matches!(
        browser_attempt(&mut b, &csrf, None, "alice", PASSWORD).await,
        Outcome::LoggedIn
    ));
    // Another address was never limited.
    assert!(matches!(
        compat_attempt(&cx, addr("198.51.100.1:1"), None, "alice", PASSWORD).await,
        Outcome::LoggedIn
    ));
    std::sync::Arc::into_inner(cx).unwrap().cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_guesses_from_one_address_get_burst_attempts_on_every_pathway() {
    for db in databases().await {
        one_address(db).await;
    }
}

/// 200 parallel wrong passwords for one account from 200 addresses behind
/// a trusted proxy: the per-account limit holds; another account is not
/// affected, and each address still has its own allowance.
async fn many_addresses(db: TestDatabase) {
    let cx = Cx::on(db, |c| {
        c.rate_limiting.login.per_ip = limit(3, 0.05);
        c.rate_limiting.login.per_account = limit(10, 0.5);
    });
    cx.user("alice").await;
    cx.user("bob").await;
    let proxy = addr(PROXY);
    let (b, csrf) = browser_at(&cx, proxy).await;
    let cx = std::sync::Arc::new(cx);
    let mut set = JoinSet::new();
    for i in 0..200u32 {
        let cx = cx.clone();
        let mut b = b.clone();
        let csrf = csrf.clone();
        // The client's own (spoofable) entry, then the proxy's.
        let xff = format!("6.6.6.6, 198.51.{}.{}", i / 100, i % 100 + 1);
        set.spawn(async move {
            if i % 2 == 0 {
                browser_attempt(&mut b, &csrf, Some(&xff), "Alice", WRONG).await
            } else {
                compat_attempt(&cx, proxy, Some(&xff), "@alice:example.org", WRONG).await
            }
        });
    }
    let outcomes: Vec<Outcome> = set.join_all().await;
    // "Alice", "alice" and "@alice:example.org" are one account.
    assert_eq!(count(&outcomes), (10, 0, 190), "{outcomes:?}");
    for o in &outcomes {
        if let Outcome::Limited { retry_after, .. } = o {
            assert_eq!(*retry_after, 2, "{o:?}");
        }
    }
    // Bob, from an address that guessed at Alice, is fine.
    assert!(matches!(
        compat_attempt(&cx, proxy, Some("198.51.0.1"), "bob", PASSWORD).await,
        Outcome::LoggedIn
    ));
    // Alice herself, from a fresh address, waits one account interval.
    assert!(matches!(
        compat_attempt(&cx, proxy, Some("192.0.2.77"), "alice", PASSWORD).await,
        Outcome::Limited { retry_after: 2, .. }
    ));
    cx.t.clock.advance(Duration::seconds(2));
    assert!(matches!(
        compat_attempt(&cx, proxy, Some("192.0.2.77"), "alice", PASSWORD).await,
        Outcome::LoggedIn
    ));
    std::sync::Arc::into_inner(cx).unwrap().cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_guesses_from_many_addresses_hit_the_account_limit() {
    for db in databases().await {
        many_addresses(db).await;
    }
}

/// An untrusted peer's `X-Forwarded-For` is ignored: a new spoofed address
/// per attempt does not escape its limit. Unknown accounts count too.
async fn spoofed(db: TestDatabase) {
    let cx = Cx::on(db, |c| {
        c.rate_limiting.login.per_ip = limit(4, 0.05);
    });
    cx.user("alice").await;
    let peer = addr(CLIENT);
    let (mut b, csrf) = browser_at(&cx, peer).await;
    let mut outcomes = Vec::new();
    for i in 0..40 {
        let xff = format!("10.0.0.{i}, 127.0.0.1");
        let user = format!("nobody{i}");
        outcomes.push(if i % 2 == 0 {
            browser_attempt(&mut b, &csrf, Some(&xff), &user, WRONG).await
        } else {
            compat_attempt(&cx, peer, Some(&xff), &user, WRONG).await
        });
    }
    assert_eq!(count(&outcomes), (4, 0, 36), "{outcomes:?}");
    assert!(matches!(
        compat_attempt(&cx, peer, Some("192.0.2.1"), "alice", PASSWORD).await,
        Outcome::Limited { .. }
    ));
    // A request without connection information (an in-process call) is
    // limited under one shared key, not waved through.
    let mut anon = cx.browser();
    let page = anon.get("/login?switch=1").await;
    let csrf = page.csrf();
    let anon_outcomes = {
        let mut v = Vec::new();
        for _ in 0..6 {
            v.push(browser_attempt(&mut anon, &csrf, Some("192.0.2.9"), "alice", WRONG).await);
        }
        v
    };
    assert_eq!(count(&anon_outcomes), (4, 0, 2), "{anon_outcomes:?}");
    cx.cleanup().await;
}

#[tokio::test]
async fn spoofed_forwarded_for_from_an_untrusted_peer_does_not_escape_the_limit() {
    for db in databases().await {
        spoofed(db).await;
    }
}

/// R08: the clock jumps an hour back, then forward. Nothing panics, the
/// wait stays one interval (not an hour), and after the jump forward the
/// whole burst is back.
async fn clock_jumps(db: TestDatabase) {
    let cx = Cx::on(db, |c| {
        c.rate_limiting.login.per_ip = limit(2, 0.1);
    });
    cx.user("alice").await;
    let peer = addr(CLIENT);
    for _ in 0..2 {
        assert!(matches!(
            compat_attempt(&cx, peer, None, "alice", WRONG).await,
            Outcome::Checked
        ));
    }
    assert!(matches!(
        compat_attempt(&cx, peer, None, "alice", WRONG).await,
        Outcome::Limited {
            retry_after: 10,
            ..
        }
    ));
    cx.t.clock.advance(Duration::hours(-1));
    assert!(matches!(
        compat_attempt(&cx, peer, None, "alice", WRONG).await,
        Outcome::Limited {
            retry_after: 10,
            ..
        }
    ));
    cx.t.clock.advance(Duration::seconds(10));
    assert!(matches!(
        compat_attempt(&cx, peer, None, "alice", PASSWORD).await,
        Outcome::LoggedIn
    ));
    cx.t.clock.advance(Duration::hours(2));
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        outcomes.push(compat_attempt(&cx, peer, None, "alice", WRONG).await);
    }
    assert_eq!(count(&outcomes), (2, 0, 1), "{outcomes:?}");
    cx.cleanup().await;
}

#[tokio::test]
async fn clock_jumps_neither_lock_out_nor_overflow() {
    for db in databases().await {
        clock_jumps(db).await;
    }
}

/// A fresh browser (same address) registering `name`.
async fn register(b: &mut Browser, name: &str) -> Resp {
    let mut b = b.clone();
    b.jar.clear();
    let page = b.get("/register").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let csrf = page.csrf();
    b.post(
        "/register",
        &[("csrf", &csrf), ("username", name), ("password", PASSWORD)],
    )
    .await
}

/// `rate_limiting.registration`, per address: the third registration from
/// one address is refused with the form (and what was typed) kept; another
/// address may still register, and so may the first one later.
async fn registration(db: TestDatabase) {
    let cx = Cx::on(db, |c| {
        c.account.password_registration_enabled = true;
        c.account.password_registration_email_required = false;
        c.rate_limiting.registration = limit(2, 0.001); // one every 1000 s
    });
    let mut b = cx.browser();
    b.peer = Some(addr(CLIENT));
    // A form error costs nothing.
    let bad = register(&mut b, "Not Valid").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    for name in ["first", "second"] {
        let r = register(&mut b, name).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{name}: {}", r.body);
    }
    let r = register(&mut b, "third").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("1000"));
    assert!(
        r.body
            .contains("Too many attempts. Try again in 17 minutes."),
        "{}",
        r.body
    );
    assert!(r.body.contains("value=\"third\""), "{}", r.body);
    {
        let mut repo = cx.t.state.repos.read().await.unwrap();
        assert!(
            repo.users()
                .find_by_username("third")
                .await
                .unwrap()
                .is_none(),
            "nothing created"
        );
    }
    let mut other = b.clone();
    other.peer = Some(addr("198.51.100.20:1"));
    let r = register(&mut other, "third").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    cx.t.clock.advance(Duration::seconds(1000));
    let r = register(&mut b, "fourth").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    cx.cleanup().await;
}

#[tokio::test]
async fn registration_is_limited_per_address() {
    for db in databases().await {
        registration(db).await;
    }
}

/// `rate_limiting.device_code_link`, per address: after `burst` codes
/// (from the form or the `verification_uri_complete` link) even the right
/// code is refused, with the code kept in the form; one interval later it
/// continues to the approval page.
async fn device_link(db: TestDatabase) {
    let hx = Hx::on(db, |c| {
        c.rate_limiting.device_code_link = limit(3, 0.1);
    });
    let fx = &hx.fx;
    let client = fx
        .client_with(Fx::params(
            ClientAuthMethod::None,
            &["urn:ietf:params:oauth:grant-type:device_code"],
        ))
        .await;
    let res = fx
        .post_form(
            "/oauth2/device",
            &[
                ("client_id", &client.client_id),
                (
                    "scope",
                    "openid urn:matrix:client:api:* urn:matrix:client:device:QRDEVICE01",
                ),
            ],
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let auth = body_json(res).await;
    let code = auth["user_code"].as_str().unwrap().to_owned();

    let mut b = Browser::with_router(&fx.t, fx.app.clone());
    b.peer = Some(addr(CLIENT));
    let page = b.get("/link").await;
    let csrf = page.csrf();
    for guess in ["BBBB-BBBB", "CCCC-CCCC"] {
        let r = b.post("/link", &[("csrf", &csrf), ("code", guess)]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    }
    let r = b.get("/link?code=DDDD-DDDD").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = b.post("/link", &[("csrf", &csrf), ("code", &code)]).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("10"));
    assert!(r.body.contains("Try again in 10 seconds"), "{}", r.body);
    assert!(r.body.contains(&code), "the code is kept: {}", r.body);
    let r = b.get(&format!("/link?code={code}")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    fx.t.clock.advance(Duration::seconds(10));
    let r = b.post("/link", &[("csrf", &csrf), ("code", &code)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(
        b.path_of(r.location().unwrap()).starts_with("/device/"),
        "{r:?}"
    );
    hx.cleanup().await;
}

#[tokio::test]
async fn device_link_codes_are_limited_per_address() {
    for db in databases().await {
        device_link(db).await;
    }
}

/// The password form still works for someone who typed it right, while a
/// neighbour behind the same proxy is limited (keys are per client).
#[tokio::test]
async fn a_limited_neighbour_does_not_limit_others_behind_the_proxy() {
    let cx = Cx::on(TestDatabase::sqlite().await.unwrap(), |c| {
        c.rate_limiting.login.per_ip = limit(1, 0.01);
    });
    add_user(&cx.t.state, "alice", PASSWORD).await;
    let proxy = addr(PROXY);
    let (mut b, csrf) = browser_at(&cx, proxy).await;
    for expected in ["checked", "limited"] {
        let o = browser_attempt(&mut b, &csrf, Some("192.0.2.66"), "alice", WRONG).await;
        assert_eq!(
            matches!(o, Outcome::Checked),
            expected == "checked",
            "{o:?}"
        );
    }
    let o = browser_attempt(&mut b, &csrf, Some("192.0.2.67"), "alice", PASSWORD).await;
    assert!(matches!(o, Outcome::LoggedIn), "{o:?}");
    cx.cleanup().await;
}
