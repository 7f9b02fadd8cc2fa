//! The account page (`account_management_uri`): login required (and come
//! back), the session list with device ids, ending a session (CSRF, device
//! deleted), cross-signing reset approval, discovery.

use axum::http::StatusCode;
use vestibule_domain::oauth2::ClientAuthMethod;
use vestibule_server::{Resources, jobs::HomeserverJob};
use vestibule_storage_sql::testing::TestDatabase;

use crate::{
    browser_helpers::{
        Browser, PASSWORD, VERIFIER, add_client, add_user, authorize_uri, full_flow, params_of,
    },
    harness::{TestApp, body_json, get},
    oauth2_support::HS_SECRET,
    provisioning_support::{app_with_mock, pending_jobs},
};

const BASE: &str = "http://127.0.0.1:8080/";
const CB: &str = "http://127.0.0.1:9999/cb";
/// The device of `browser_helpers::MATRIX_SCOPE`.
const DEVICE: &str = "DEVICE1";

struct Setup {
    t: TestApp,
    hs: std::sync::Arc<vestibule_server::homeserver::MockHomeserver>,
    b: Browser,
    client_id: String,
    access_token: String,
}

/// Alice signs in in a browser and an app gets tokens for device DEVICE1.
async fn setup() -> Setup {
    let db = TestDatabase::sqlite().await.expect("sqlite");
    let (t, hs) = app_with_mock(db, BASE, |c| {
        c.matrix.secret = Some(HS_SECRET.into());
    });
    add_user(&t.state, "alice", PASSWORD).await;
    let client = add_client(&t.state, ClientAuthMethod::None, &[CB]).await;
    let mut b = Browser::new(&t);
    let done = full_flow(&mut b, &authorize_uri(&client.client_id, CB, &[]), "alice").await;
    let code = params_of(done.location().unwrap(), false)["code"].clone();
    let res = b
        .post(
            "/oauth2/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CB),
                ("code_verifier", VERIFIER),
                ("client_id", &client.client_id),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let tokens: serde_json::Value = serde_json::from_str(&res.body).unwrap();
    assert!(hs.user("alice").unwrap().devices.contains_key(DEVICE));
    Setup {
        access_token: tokens["access_token"].as_str().unwrap().to_owned(),
        client_id: client.client_id,
        t,
        hs,
        b,
    }
}

async fn active(t: &TestApp, token: &str) -> bool {
    let app = t.router(&Resources::all(), None);
    let mut b = Browser::with_router(t, app);
    let res = b
        .post_with(
            "/oauth2/introspect",
            &[("token", token)],
            &[("authorization", &format!("Bearer {HS_SECRET}"))],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let v: serde_json::Value = serde_json::from_str(&res.body).unwrap();
    v["active"] == true
}

#[tokio::test]
async fn the_account_page_needs_a_login_and_comes_back_to_the_action() {
    let db = TestDatabase::sqlite().await.expect("sqlite");
    let (t, _hs) = app_with_mock(db, BASE, |_| {});
    add_user(&t.state, "alice", PASSWORD).await;
    let mut b = Browser::new(&t);
    let target = "/account/?action=org.matrix.device_view&device_id=DEVICE1";
    let res = b.get(target).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let login = b.path_of(res.location().unwrap());
    assert!(login.starts_with("/login?next="), "{login}");
    assert!(res.header("content-security-policy").is_some());
    let page = b.get(&login).await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = page.csrf();
    let next = crate::browser_helpers::hidden(&page.body, "next").expect("next field");
    // The MAS alias is rewritten to the MSC4191 name.
    assert_eq!(
        next,
        "/account/?action=org.matrix.session_view&amp;device_id=DEVICE1"
    );
    let next = next.replace("&amp;", "&");
    let signed = b
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", "alice"),
                ("password", PASSWORD),
                ("next", &next),
            ],
        )
        .await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
    assert_eq!(
        b.path_of(signed.location().unwrap()),
        "/account/?action=org.matrix.session_view&device_id=DEVICE1"
    );
    // Signed in now: the profile.
    let profile = b.get("/account/").await;
    assert_eq!(profile.status, StatusCode::OK);
    assert!(
        profile.body.contains("@alice:example.org"),
        "{}",
        profile.body
    );
    assert_eq!(profile.header("cache-control"), Some("no-store"));
    assert!(
        profile
            .header("content-security-policy")
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(profile.header("x-frame-options"), Some("DENY"));
    // `/account` without the slash, and an unknown action: the profile.
    let res = b.get("/account?action=nonsense").await;
    assert_eq!(b.path_of(res.location().unwrap()), "/account/");
    let profile = b.get("/account/?action=org.example.nonsense").await;
    assert_eq!(profile.status, StatusCode::OK);
    assert!(profile.body.contains("Your account"));

    // `next` is never an arbitrary URL.
    let mut b2 = Browser::new(&t);
    let page = b2.get("/login?next=https%3A%2F%2Fevil.example%2F").await;
    assert!(crate::browser_helpers::hidden(&page.body, "next").is_none());
    let csrf = page.csrf();
    let signed = b2
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", "alice"),
                ("password", PASSWORD),
                ("next", "https://evil.example/"),
            ],
        )
        .await;
    assert_eq!(b2.path_of(signed.location().unwrap()), "/");
    t.db.cleanup().await;
}

#[tokio::test]
async fn the_account_page_lists_sessions_with_their_devices() {
    let mut s = setup().await;
    let p = s.b.get("/account/").await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains("@alice:example.org"));
    assert!(p.body.contains("Test Client"), "{}", p.body);
    assert!(p.body.contains(DEVICE), "{}", p.body);
    assert!(p.body.contains("(this browser)"), "the browser session");
    let list = s.b.get("/account/?action=org.matrix.sessions_list").await;
    assert!(list.body.contains(DEVICE));
    assert!(list.body.contains("Your sessions"));
    // Element's link.
    let view =
        s.b.get("/account/?action=org.matrix.device_view&device_id=DEVICE1")
            .await;
    assert_eq!(view.status, StatusCode::OK);
    assert!(view.body.contains("Test Client"));
    assert!(view.body.contains("urn:matrix:client:api:*"), "scope shown");
    let unknown =
        s.b.get("/account/?action=org.matrix.session_view&device_id=NOSUCHDEV")
            .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    s.t.db.cleanup().await;
}

#[tokio::test]
async fn ending_a_session_needs_csrf_and_deletes_the_device() {
    let mut s = setup().await;
    let confirm =
        s.b.get("/account/?action=org.matrix.session_end&device_id=DEVICE1")
            .await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("Sign out this session?"));
    let csrf = confirm.csrf();

    // Without the CSRF token: refused, nothing ended.
    let no_csrf =
        s.b.post(
            "/account/",
            &[("action", "org.matrix.session_end"), ("device_id", DEVICE)],
        )
        .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    // From another site, even with the token: refused.
    let cross =
        s.b.post_with(
            "/account/",
            &[
                ("csrf", &csrf),
                ("action", "org.matrix.session_end"),
                ("device_id", DEVICE),
            ],
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    assert!(active(&s.t, &s.access_token).await);
    assert!(s.hs.user("alice").unwrap().devices.contains_key(DEVICE));

    let done =
        s.b.post(
            "/account/",
            &[
                ("csrf", &csrf),
                ("action", "org.matrix.session_end"),
                ("device_id", DEVICE),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("Signed out"));
    assert!(!active(&s.t, &s.access_token).await, "session ended");
    assert!(
        !s.hs.user("alice").unwrap().devices.contains_key(DEVICE),
        "device deleted on the homeserver"
    );
    let alice = {
        let mut repo = s.t.state.repos.read().await.unwrap();
        repo.users()
            .find_by_username("alice")
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(
        pending_jobs(&s.t).await,
        [HomeserverJob::SyncDevices { user_id: alice.id }]
    );
    let list = s.b.get("/account/").await;
    assert!(!list.body.contains(DEVICE), "no longer listed");
    // Again: nothing to end.
    let again =
        s.b.post(
            "/account/",
            &[
                ("csrf", &csrf),
                ("action", "org.matrix.device_delete"),
                ("device_id", DEVICE),
            ],
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let _ = s.client_id;
    s.t.db.cleanup().await;
}

#[tokio::test]
async fn cross_signing_reset_is_approved_on_the_homeserver() {
    let mut s = setup().await;
    let page =
        s.b.get("/account/?action=org.matrix.cross_signing_reset")
            .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Reset your cryptographic identity?"));
    let csrf = page.csrf();
    let refused =
        s.b.post("/account/", &[("action", "org.matrix.cross_signing_reset")])
            .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(!s.hs.user("alice").unwrap().cross_signing_reset_allowed);

    s.hs.set_down(true);
    let down =
        s.b.post(
            "/account/",
            &[
                ("csrf", &csrf),
                ("action", "org.matrix.cross_signing_reset"),
            ],
        )
        .await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    s.hs.set_down(false);

    let ok =
        s.b.post(
            "/account/",
            &[
                ("csrf", &csrf),
                ("action", "org.matrix.cross_signing_reset"),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert!(ok.body.contains("go back to your app and retry"));
    assert!(s.hs.user("alice").unwrap().cross_signing_reset_allowed);
    assert_eq!(
        s.hs.calls().last().map(String::as_str),
        Some("allow_cross_signing_reset alice")
    );
    s.t.db.cleanup().await;
}

#[tokio::test]
async fn discovery_advertises_the_account_page() {
    for (base, expected, path) in [
        (
            "https://auth.example.org/",
            "https://auth.example.org/account/",
            "/.well-known/openid-configuration",
        ),
        (
            "https://example.org/auth/",
            "https://example.org/auth/account/",
            "/auth/.well-known/openid-configuration",
        ),
    ] {
        let t = TestApp::new(base).await;
        let prefix = base
            .strip_prefix("https://example.org")
            .map(|p| p.trim_end_matches('/'));
        let app = t.router(&Resources::all(), prefix.filter(|p| !p.is_empty()));
        let doc = body_json(get(&app, path).await).await;
        assert_eq!(doc["account_management_uri"], expected, "{doc}");
        let actions = doc["account_management_actions_supported"]
            .as_array()
            .unwrap();
        for a in [
            "org.matrix.profile",
            "org.matrix.sessions_list",
            "org.matrix.session_view",
            "org.matrix.session_end",
            "org.matrix.cross_signing_reset",
        ] {
            assert!(actions.iter().any(|v| v == a), "{a} in {actions:?}");
        }
        // The advertised page is served there.
        let page = get(
            &app,
            &format!(
                "{}account/",
                prefix.map_or("/".to_owned(), |p| format!("{p}/"))
            ),
        )
        .await;
        assert_eq!(page.status(), StatusCode::SEE_OTHER, "to the login page");
        t.db.cleanup().await;
    }
}
