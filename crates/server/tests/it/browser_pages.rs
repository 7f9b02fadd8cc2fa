//! Templates, assets and the security headers of every page.
#![allow(
    clippy::many_single_char_names,
    reason = "t(est app), b(rowser), r(esponse) read well here"
)]

use axum::http::StatusCode;
use vestibule_domain::oauth2::ClientAuthMethod;
use vestibule_server::{Resources, templates::TEMPLATES};

use crate::{
    browser_helpers::{Browser, PASSWORD, add_client, add_user, authorize_uri, hidden},
    harness::TestApp,
};

const CB: &str = "https://client.example/cb";

#[tokio::test]
async fn every_template_renders_with_sample_data() {
    let t = TestApp::new("https://auth.example.org/").await;
    let base = serde_json::json!({
        "service_name": "Example Auth",
        "homeserver": "example.org",
        "csrf": "TOKEN123",
        "grant_id": "01J0000000000000000000GRNT",
    });
    let samples: &[(&str, serde_json::Value, &[&str])] = &[
        (
            "login.html",
            serde_json::json!({"passwords_enabled": true, "username": "alice", "client_name": "Element", "error": "Wrong username or password.", "registration_enabled": true}),
            &[
                "Sign in",
                "Element",
                "value=\"alice\"",
                "Wrong username or password.",
                "name=\"csrf\" value=\"TOKEN123\"",
                "https://auth.example.org/login",
                "Create an account",
            ],
        ),
        (
            "register.html",
            serde_json::json!({"registration_enabled": true}),
            &[
                "Create an account",
                "@username:example.org",
                "https://auth.example.org/register",
            ],
        ),
        (
            "register.html",
            serde_json::json!({"registration_enabled": false}),
            &["Registration is closed"],
        ),
        (
            "consent.html",
            serde_json::json!({"client": {"name": "Element", "uri": "https://element.example/", "logo_uri": "https://element.example/logo.png", "verified": false}, "scopes": ["Use your Matrix account", "Access the homeserver as an administrator"], "matrix_user_id": "@alice:example.org", "consent_path": "/consent/01J0000000000000000000GRNT", "redirect_host": "element.example"}),
            &[
                "Element",
                "https://element.example/",
                "logo.png",
                "Use your Matrix account",
                "Access the homeserver as an administrator",
                "@alice:example.org",
                "not been verified",
                "value=\"allow\"",
                "value=\"deny\"",
            ],
        ),
        (
            "compat_consent.html",
            serde_json::json!({"csrf": "tok", "login_id": "01J0000000000000000000000A",
                "complete_path": "/complete-compat-sso/01J0000000000000000000000A",
                "switch_path": "/login?compat_sso=01J0000000000000000000000A&switch=1",
                "redirect_host": "client.example", "redirect_scheme": "https",
                "matrix_user_id": "@alice:example.org"}),
            &[
                "client.example",
                "https://client.example",
                "@alice:example.org",
                "action=\"https://auth.example.org/complete-compat-sso/01J0000000000000000000000A\"",
                "name=\"csrf\" value=\"tok\"",
                "compat_sso=01J0000000000000000000000A&amp;switch=1",
            ],
        ),
        (
            "logout.html",
            serde_json::json!({"matrix_user_id": "@alice:example.org"}),
            &[
                "Sign out?",
                "@alice:example.org",
                "https://auth.example.org/logout",
            ],
        ),
        (
            "logout.html",
            serde_json::json!({}),
            &["You are signed out"],
        ),
        (
            "index.html",
            serde_json::json!({"matrix_user_id": "@alice:example.org"}),
            &["@alice:example.org"],
        ),
        (
            "account.html",
            serde_json::json!({
                "matrix_user_id": "@alice:example.org",
                "emails": ["alice@example.org"],
                "sessions": [{"client_name": "Element <X>", "device_id": "DEVICEAAAA", "kind": "OAuth 2.0",
                    "created_at": "2026-01-01 10:00 UTC", "view_path": "/account/?action=org.matrix.session_view&device_id=DEVICEAAAA",
                    "end_path": "/account/?action=org.matrix.session_end&device_id=DEVICEAAAA"}],
                "browser_sessions": [{"user_agent": "Firefox", "created_at": "2026-01-01 09:00 UTC", "current": true}],
                "cross_signing_path": "/account/?action=org.matrix.cross_signing_reset",
                "sessions_path": "/account/?action=org.matrix.sessions_list",
            }),
            &[
                "@alice:example.org",
                "alice@example.org",
                "Element &lt;X&gt;",
                "DEVICEAAAA",
                "action=org.matrix.session_end&amp;device_id=DEVICEAAAA",
                "(this browser)",
                "org.matrix.cross_signing_reset",
            ],
        ),
        (
            "account_session.html",
            serde_json::json!({
                "matrix_user_id": "@alice:example.org",
                "session": {"client_name": "Element", "device_id": "DEVICEAAAA", "kind": "OAuth 2.0", "created_at": "2026-01-01 10:00 UTC"},
                "confirm": true, "csrf": "tok", "action": "org.matrix.session_end",
                "sessions_path": "/account/?action=org.matrix.sessions_list",
            }),
            &[
                "Sign out this session?",
                "name=\"device_id\" value=\"DEVICEAAAA\"",
                "name=\"csrf\" value=\"tok\"",
            ],
        ),
        (
            "account_cross_signing.html",
            serde_json::json!({"matrix_user_id": "@alice:example.org", "csrf": "tok", "action": "org.matrix.cross_signing_reset", "done": false}),
            &[
                "Reset your cryptographic identity?",
                "name=\"csrf\" value=\"tok\"",
            ],
        ),
        (
            "account_cross_signing.html",
            serde_json::json!({"matrix_user_id": "@alice:example.org", "done": true}),
            &["go back to your app and retry"],
        ),
        (
            "error.html",
            serde_json::json!({"title": "Oops", "message": "The redirect_uri is not registered", "back_uri": "https://element.example/", "back_name": "Element"}),
            &["Oops", "not registered", "Go back to Element"],
        ),
        (
            "error.html",
            serde_json::json!({"title": "Oops", "message": "m"}),
            &["Go to the start page", "https://auth.example.org/"],
        ),
        (
            "login.html",
            serde_json::json!({"passwords_enabled": false, "providers": [{"name": "OpenMeet", "icon": "brand-neutral.svg", "path": "/upstream/authorize/01JAYS74TCG3BTWKADN5Q4518C?grant=G"}]}),
            &[
                "Continue with OpenMeet",
                "href=\"https://auth.example.org/upstream/authorize/01JAYS74TCG3BTWKADN5Q4518C?grant=G\"",
                "/assets/brand-neutral.",
            ],
        ),
        (
            "upstream_register.html",
            serde_json::json!({"provider_name": "OpenMeet", "action_path": "/upstream/link/S",
                "localpart": {"mode": "fixed", "value": "alice"},
                "displayname": {"mode": "editable", "value": "Alice"},
                "email": {"mode": "optional", "value": "a@example.com"},
                "attributes": [["tenant_id", {"mode": "optional", "value": "acme"}]]}),
            &[
                "Create your account",
                "<strong id=\"localpart\">alice</strong>",
                "name=\"displayname\" value=\"Alice\"",
                "name=\"import_email\"",
                "name=\"attr.tenant_id\"",
                "action=\"https://auth.example.org/upstream/link/S\"",
            ],
        ),
        (
            "upstream_link.html",
            serde_json::json!({"provider_name": "OpenMeet", "action_path": "/upstream/link/S", "current_user_id": "@bob:example.org",
                "attributes": [["tenant_id", {"mode": "optional", "value": "acme"}], ["region", {"mode": "fixed", "value": "eu"}]]}),
            &[
                "Link your OpenMeet account?",
                "@bob:example.org",
                "value=\"link\"",
                "name=\"attr.tenant_id\" value=\"on\" checked",
                "region: <strong class=\"attribute\">eu</strong>",
            ],
        ),
        (
            "upstream_mismatch.html",
            serde_json::json!({"provider_name": "OpenMeet", "action_path": "/upstream/link/S", "current_user_id": "@bob:example.org", "linked_user_id": "@alice:example.org"}),
            &[
                "@alice:example.org",
                "@bob:example.org",
                "value=\"continue\"",
            ],
        ),
        (
            "link.html",
            serde_json::json!({"csrf": "C", "code": "bcdf-ghjk", "error": "This code is not valid"}),
            &[
                "action=\"https://auth.example.org/link\"",
                "name=\"code\" type=\"text\" value=\"bcdf-ghjk\"",
                "This code is not valid",
            ],
        ),
        (
            "device_consent.html",
            serde_json::json!({"csrf": "C", "consent_path": "/device/D", "switch_path": "/login?switch=1&next=%2Fdevice%2FD",
                "user_code": "BCDF-GHJK", "client": {"name": "Element X", "verified": false},
                "scopes": ["Sign in as the device ABC"], "matrix_user_id": "@alice:example.org"}),
            &[
                "Sign in Element X on another device?",
                "BCDF-GHJK",
                "Sign in as the device ABC",
                "action=\"https://auth.example.org/device/D\"",
                "value=\"allow\"",
                "value=\"deny\"",
                "has not been verified",
            ],
        ),
        (
            "device_done.html",
            serde_json::json!({"title": "Device linked", "message": "You can go back to your device."}),
            &["Device linked", "go back to your device"],
        ),
        (
            "form_post.html",
            serde_json::json!({"redirect_uri": "https://element.example/cb", "params": [["code", "abc"], ["state", "<x>"]]}),
            &[
                "action=\"https://element.example/cb\"",
                "name=\"code\" value=\"abc\"",
                "&lt;x&gt;",
                "<button",
            ],
        ),
    ];
    let mut rendered = std::collections::BTreeSet::new();
    for (name, extra, expect) in samples {
        let mut ctx = base.clone();
        ctx.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let html = t
            .state
            .templates
            .render(name, minijinja::Value::from_serialize(&ctx))
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        for s in *expect {
            assert!(html.contains(s), "{name} lacks {s:?}:\n{html}");
        }
        assert!(
            html.contains("/assets/style."),
            "{name} links the stylesheet"
        );
        rendered.insert(*name);
    }
    for (name, _) in TEMPLATES {
        assert!(
            *name == "base.html" || rendered.contains(name),
            "{name} has no sample"
        );
    }
    t.db.cleanup().await;
}

#[tokio::test]
async fn template_override_directory_replaces_an_embedded_template() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("error.html"),
        "{% extends \"base.html\" %}{% block content %}CUSTOM {{ message }}{% endblock %}",
    )
    .unwrap();
    let path = dir.path().to_owned();
    let t = TestApp::with_config("http://127.0.0.1:8080/", |c| c.templates.path = Some(path)).await;
    let mut b = Browser::new(&t);
    let r = b.get("/authorize?client_id=unknown").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("CUSTOM"), "{}", r.body);
    let login = b.get("/login").await;
    assert!(login.body.contains("Sign in"), "others stay embedded");
    t.db.cleanup().await;
}

fn assert_page_headers(r: &crate::browser_helpers::Resp, what: &str, https: bool) {
    let csp = r
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no CSP"));
    for part in [
        "default-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(part), "{what}: {csp}");
    }
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}");
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{what}");
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        r.header("cross-origin-opener-policy"),
        Some("same-origin"),
        "{what}"
    );
    assert_eq!(r.header("cache-control"), Some("no-store"), "{what}");
    if https {
        assert_eq!(
            r.header("strict-transport-security"),
            Some("max-age=31536000"),
            "{what}"
        );
    } else {
        assert!(r.header("strict-transport-security").is_none(), "{what}");
    }
}

/// Every absolute URL in the page is ours (no third-party origins), except
/// the allowed ones.
fn assert_only_our_origin(body: &str, ours: &str, allowed: &[&str]) {
    for (i, _) in body.match_indices("http") {
        let rest = &body[i..];
        if rest.starts_with("https://") || rest.starts_with("http://") {
            assert!(
                rest.starts_with(ours) || allowed.iter().any(|a| rest.starts_with(a)),
                "third-party URL in page: {}",
                &rest[..rest.len().min(60)]
            );
        }
    }
}

#[tokio::test]
async fn security_headers_on_every_page() {
    for base in ["https://auth.example.org/", "http://127.0.0.1:8080/"] {
        let https = base.starts_with("https");
        let t = TestApp::new(base).await;
        add_user(&t.state, "alice", PASSWORD).await;
        let client = add_client(&t.state, ClientAuthMethod::None, &[CB]).await;
        let mut b = Browser::new(&t);
        let r = b.get(&authorize_uri(&client.client_id, CB, &[])).await;
        assert_page_headers(&r, "authorize redirect", https);
        let consent_path = b.path_of(r.location().unwrap());
        let bad = b.get(&authorize_uri("nope", CB, &[])).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert_page_headers(&bad, "authorize error page", https);
        assert_only_our_origin(&bad.body, base, &[]);
        let login = b.get("/login").await;
        assert_page_headers(&login, "login", https);
        assert_only_our_origin(&login.body, base, &[]);
        let grant = consent_path.trim_start_matches("/consent/").to_owned();
        b.login("alice", PASSWORD, Some(&grant)).await;
        let consent = b.get(&consent_path).await;
        assert_eq!(consent.status, StatusCode::OK);
        assert_page_headers(&consent, "consent", https);
        assert!(
            consent
                .header("content-security-policy")
                .unwrap()
                .contains("https://client.example"),
            "the redirect after the consent form is allowed"
        );
        assert_only_our_origin(&consent.body, base, &["https://client.example/"]);
        let logout = b.get("/logout").await;
        assert_page_headers(&logout, "logout", https);
        let register = b.get("/register").await;
        assert_page_headers(&register, "register", https);
        let index = b.get("/").await;
        assert_page_headers(&index, "index", https);
        let csrf = hidden(&consent.body, "csrf").unwrap();
        let done = b
            .post(&consent_path, &[("csrf", &csrf), ("action", "allow")])
            .await;
        assert_page_headers(&done, "redirect to the client", https);
        t.db.cleanup().await;
    }
}

#[tokio::test]
async fn assets_are_content_hashed_and_cached_forever_and_urls_follow_the_prefix() {
    let t = TestApp::new("https://example.org/auth/").await;
    let mut b = Browser::with_router(&t, t.router(&Resources::all(), Some("/auth")));
    let login = b.get("/auth/login").await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(
        login
            .body
            .contains("action=\"https://example.org/auth/login\""),
        "{}",
        login.body
    );
    let start = login
        .body
        .find("https://example.org/auth/assets/style.")
        .unwrap();
    let end = login.body[start..].find('"').unwrap() + start;
    let url = &login.body[start..end];
    let path = url.trim_start_matches("https://example.org");
    let css = b.get(path).await;
    assert_eq!(css.status, StatusCode::OK, "{path}");
    assert_eq!(
        css.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
    assert!(css.body.contains("font-family"));
    assert_eq!(
        b.get("/auth/assets/style.0000000000000000.css")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    t.db.cleanup().await;
}
