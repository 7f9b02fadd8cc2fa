//! `/authorize` → login → consent → redirect, and every way it must refuse.
#![allow(
    clippy::many_single_char_names,
    reason = "t(est app), b(rowser), r(esponse) read well here"
)]

use axum::http::StatusCode;
use vestibule_domain::{
    oauth2::{AuthorizationGrantStage, ClientAuthMethod},
    tokens::token_hash,
};

use crate::{
    browser_helpers::{
        Browser, PASSWORD, add_client, add_user, authorize_uri, full_flow, params_of,
    },
    harness::TestApp,
};

const CB: &str = "https://client.example/cb";
const ISS: &str = "https://auth.example.org/";

async fn setup() -> (TestApp, String) {
    let t = TestApp::new(ISS).await;
    add_user(&t.state, "alice", PASSWORD).await;
    let c = add_client(
        &t.state,
        ClientAuthMethod::None,
        &[CB, "http://127.0.0.1/native"],
    )
    .await;
    (t, c.client_id)
}

#[tokio::test]
async fn full_flow_query_mode_ends_with_an_empty_fragment_and_stores_the_code_hash() {
    let (t, cid) = setup().await;
    let mut b = Browser::new(&t);
    let r = full_flow(&mut b, &authorize_uri(&cid, CB, &[]), "alice").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "303 after the POST (S17)");
    let loc = r.location().unwrap();
    assert!(loc.starts_with("https://client.example/cb?code="), "{loc}");
    assert!(loc.ends_with('#'), "query mode ends with `#` (S18): {loc}");
    let p = params_of(loc, false);
    assert_eq!(p["state"], "st4te");
    assert_eq!(p["iss"], ISS, "RFC 9207 iss equals the issuer");
    let code = &p["code"];
    assert!(code.len() >= 32);
    let mut repo = t.state.repos.read().await.unwrap();
    let grant = repo
        .oauth2_grants()
        .find_by_code_hash(&token_hash(code))
        .await
        .unwrap()
        .expect("the code's hash is stored on the grant");
    assert!(matches!(
        grant.stage,
        AuthorizationGrantStage::Fulfilled { .. }
    ));
    assert_eq!(grant.state.as_deref(), Some("st4te"));
    drop(repo);
    t.db.cleanup().await;
}

#[tokio::test]
async fn fragment_and_form_post_modes() {
    let (t, cid) = setup().await;
    let mut b = Browser::new(&t);
    let r = full_flow(
        &mut b,
        &authorize_uri(&cid, CB, &[("response_mode", "fragment")]),
        "alice",
    )
    .await;
    let loc = r.location().unwrap();
    assert!(loc.starts_with("https://client.example/cb#code="), "{loc}");
    let p = params_of(loc, true);
    assert_eq!(p["state"], "st4te");
    assert_eq!(p["iss"], ISS);

    let r = full_flow(
        &mut b,
        &authorize_uri(&cid, CB, &[("response_mode", "form_post")]),
        "alice",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.location().is_none());
    assert!(
        r.body.contains("action=\"https://client.example/cb\""),
        "{}",
        r.body
    );
    assert!(r.body.contains("name=\"code\" value=\""));
    assert!(
        r.body
            .contains("name=\"iss\" value=\"https://auth.example.org/\"")
    );
    assert!(
        r.body.contains("<button type=\"submit\">"),
        "works without JS"
    );
    let csp = r.header("content-security-policy").unwrap();
    assert!(
        csp.contains("form-action 'self' https://client.example"),
        "{csp}"
    );
    t.db.cleanup().await;
}

#[tokio::test]
async fn redirect_uri_variants_get_an_html_400_and_never_a_redirect() {
    let (t, cid) = setup().await;
    let mut b = Browser::new(&t);
    for bad in [
        "https://CLIENT.example/cb",
        "https://client.example/CB",
        "https://client.example/cb/",
        "https://client.example/cb?x=1",
        "https://client.example/cb#frag",
        "https://client.example:8443/cb",
        "http://client.example/cb",
        "https://client.example/x/../cb",
        "https://evil@client.example/cb",
        "http://127.0.0.1:5000/native/extra",
    ] {
        for prompt in [None, Some("none")] {
            let extra: Vec<(&str, &str)> = prompt.map(|p| ("prompt", p)).into_iter().collect();
            let r = b.get(&authorize_uri(&cid, bad, &extra)).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
            assert!(r.location().is_none(), "{bad} must not redirect");
            assert!(r.header("content-type").unwrap().starts_with("text/html"));
            assert!(r.body.contains("redirect_uri"), "{bad}: {}", r.body);
        }
    }
    let r = b
        .get(&authorize_uri(&cid, "", &[("-redirect_uri", "")]))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.location().is_none());
    t.db.cleanup().await;
}

#[tokio::test]
async fn loopback_redirect_uris_may_use_any_port() {
    let (t, cid) = setup().await;
    let mut b = Browser::new(&t);
    let r = b
        .get(&authorize_uri(&cid, "http://127.0.0.1:53124/native", &[]))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(b.path_of(r.location().unwrap()).starts_with("/consent/"));
    t.db.cleanup().await;
}

#[tokio::test]
async fn unknown_client_and_duplicates_get_an_html_400_even_with_prompt_none() {
    let (t, cid) = setup().await;
    let mut b = Browser::new(&t);
    let r = b
        .get(&authorize_uri(
            "01J00000000000000000000000",
            CB,
            &[("prompt", "none")],
        ))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.location().is_none());
    for dup in ["state", "redirect_uri", "client_id"] {
        let uri = format!("{}&{dup}=again", authorize_uri(&cid, CB, &[]));
        let r = b.get(&uri).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{dup}");
        assert!(r.location().is_none(), "{dup}");
        assert!(r.body.contains("repeated"), "{}", r.body);
    }
    t.db.cleanup().await;
}

async fn error_of(b: &mut Browser, uri: &str) -> std::collections::BTreeMap<String, String> {
    let r = b.get(uri).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let loc = r.location().unwrap();
    assert!(loc.starts_with(CB), "{loc}");
    let p = params_of(loc, false);
    assert_eq!(p["iss"], ISS, "{loc}");
    assert_eq!(p["state"], "st4te", "{loc}");
    p
}

#[tokio::test]
async fn errors_after_the_redirect_uri_is_trusted_go_back_with_state_and_iss() {
    let (t, cid) = setup().await;
    let mut b = Browser::new(&t);
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("-code_challenge", ""), ("-code_challenge_method", "")],
            "invalid_request",
        ),
        (&[("code_challenge_method", "plain")], "invalid_request"),
        (&[("-code_challenge_method", "")], "invalid_request"),
        (&[("response_type", "token")], "unsupported_response_type"),
        (
            &[("response_type", "id_token token")],
            "unsupported_response_type",
        ),
        (&[("-response_type", "")], "invalid_request"),
        (&[("scope", "openid \"bad\"")], "invalid_scope"),
        (&[("scope", "openid made-up-scope")], "invalid_scope"),
        (&[("prompt", "none")], "login_required"),
    ];
    for (extra, error) in cases {
        let p = error_of(&mut b, &authorize_uri(&cid, CB, extra)).await;
        assert_eq!(p["error"], *error, "{extra:?}");
        assert!(p.contains_key("error_description"));
    }
    t.db.cleanup().await;
}

#[tokio::test]
async fn confidential_clients_may_omit_pkce() {
    let t = TestApp::new(ISS).await;
    add_user(&t.state, "alice", PASSWORD).await;
    let c = add_client(&t.state, ClientAuthMethod::ClientSecretBasic, &[CB]).await;
    let mut b = Browser::new(&t);
    let uri = authorize_uri(
        &c.client_id,
        CB,
        &[("-code_challenge", ""), ("-code_challenge_method", "")],
    );
    let r = full_flow(&mut b, &uri, "alice").await;
    assert!(params_of(r.location().unwrap(), false).contains_key("code"));
    // But not plain PKCE.
    let p = error_of(
        &mut b,
        &authorize_uri(&c.client_id, CB, &[("code_challenge_method", "plain")]),
    )
    .await;
    assert_eq!(p["error"], "invalid_request");
    t.db.cleanup().await;
}

#[tokio::test]
async fn prompt_none_with_a_session_completes_without_ui() {
    let (t, cid) = setup().await;
    let mut b = Browser::new(&t);
    full_flow(&mut b, &authorize_uri(&cid, CB, &[]), "alice").await;
    let r = b.get(&authorize_uri(&cid, CB, &[("prompt", "none")])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let p = params_of(r.location().unwrap(), false);
    assert!(p.contains_key("code"), "{p:?}");
    assert_eq!(p["iss"], ISS);
    // Another browser has no session.
    let mut other = Browser::new(&t);
    let p = error_of(&mut other, &authorize_uri(&cid, CB, &[("prompt", "none")])).await;
    assert_eq!(p["error"], "login_required");
    t.db.cleanup().await;
}

#[tokio::test]
async fn prompt_none_needs_an_earlier_consent_for_this_client() {
    // A page that registers its own client cannot silently take a token for a
    // signed-in visitor (OIDC Core §3.1.2.6 consent_required; S36).
    let (t, cid) = setup().await;
    let mut b = Browser::new(&t);
    full_flow(&mut b, &authorize_uri(&cid, CB, &[]), "alice").await;
    let other = add_client(
        &t.state,
        ClientAuthMethod::None,
        &["https://evil.example/cb"],
    )
    .await;
    let r = b
        .get(&authorize_uri(
            &other.client_id,
            "https://evil.example/cb",
            &[("prompt", "none")],
        ))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let p = params_of(r.location().unwrap(), false);
    assert_eq!(p["error"], "consent_required", "{p:?}");
    assert_eq!(p["iss"], ISS);
    assert!(!p.contains_key("code"));
    t.db.cleanup().await;
}

#[tokio::test]
async fn prompt_login_and_max_age_force_a_new_login() {
    let (t, cid) = setup().await;
    let mut b = Browser::new(&t);
    full_flow(&mut b, &authorize_uri(&cid, CB, &[]), "alice").await;
    // Signed in: a plain request goes straight to the consent page.
    let r = b.get(&authorize_uri(&cid, CB, &[])).await;
    let c = b.follow(&r).await;
    assert_eq!(c.status, StatusCode::OK, "no login needed");

    t.clock.advance(chrono::Duration::seconds(1));
    let r = b
        .get(&authorize_uri(&cid, CB, &[("prompt", "login")]))
        .await;
    let c = b.follow(&r).await;
    assert_eq!(
        c.status,
        StatusCode::SEE_OTHER,
        "prompt=login shows the form"
    );
    assert!(
        b.path_of(c.location().unwrap())
            .starts_with("/login?grant=")
    );

    t.clock.advance(chrono::Duration::seconds(120));
    let r = b.get(&authorize_uri(&cid, CB, &[("max_age", "60")])).await;
    let c = b.follow(&r).await;
    assert_eq!(c.status, StatusCode::SEE_OTHER, "older than max_age");
    assert!(
        b.path_of(c.location().unwrap())
            .starts_with("/login?grant=")
    );
    let r = b
        .get(&authorize_uri(&cid, CB, &[("max_age", "3600")]))
        .await;
    let c = b.follow(&r).await;
    assert_eq!(c.status, StatusCode::OK, "recent enough");
    // prompt=none with a too-old login fails.
    let p = error_of(
        &mut b,
        &authorize_uri(&cid, CB, &[("prompt", "none"), ("max_age", "60")]),
    )
    .await;
    assert_eq!(p["error"], "login_required");
    t.db.cleanup().await;
}

#[tokio::test]
async fn login_hint_prefills_the_form() {
    let (t, cid) = setup().await;
    for hint in ["mxid:@bob:example.org", "bob"] {
        let mut b = Browser::new(&t);
        let r = b
            .get(&authorize_uri(&cid, CB, &[("login_hint", hint)]))
            .await;
        let c = b.follow(&r).await;
        let l = b.follow(&c).await;
        assert_eq!(l.status, StatusCode::OK);
        assert!(
            l.body.contains("name=\"username\" value=\"bob\""),
            "{hint}: {}",
            l.body
        );
    }
    t.db.cleanup().await;
}

#[tokio::test]
async fn consent_page_in_plain_words_and_deny() {
    let (t, cid) = setup().await;
    let mut b = Browser::new(&t);
    let r = b
        .get(&authorize_uri(
            &cid,
            CB,
            &[(
                "scope",
                "openid email urn:matrix:client:api:* urn:matrix:client:device:ABCDEF",
            )],
        ))
        .await;
    let consent = b.path_of(r.location().unwrap());
    let grant = consent.trim_start_matches("/consent/").to_owned();
    b.login("alice", PASSWORD, Some(&grant)).await;
    let c = b.get(&consent).await;
    for s in [
        "Test Client",
        "https://client.example/",
        "Use your Matrix account",
        "ABCDEF",
        "See your email address",
        "@alice:example.org",
        "has not been verified",
    ] {
        assert!(c.body.contains(s), "consent page lacks {s}: {}", c.body);
    }
    let csrf = c.csrf();
    let r = b
        .post(&consent, &[("csrf", &csrf), ("action", "deny")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let p = params_of(r.location().unwrap(), false);
    assert_eq!(p["error"], "access_denied");
    assert_eq!(p["state"], "st4te");
    // The grant is over: the page cannot be used again.
    let again = b.get(&consent).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    t.db.cleanup().await;
}

#[tokio::test]
async fn consent_needs_the_browser_that_started_the_request() {
    let (t, cid) = setup().await;
    let mut a = Browser::new(&t);
    let r = a.get(&authorize_uri(&cid, CB, &[])).await;
    let consent = a.path_of(r.location().unwrap());
    let mut other = Browser::new(&t);
    other.login("alice", PASSWORD, None).await;
    let c = other.get(&consent).await;
    assert_eq!(
        c.status,
        StatusCode::BAD_REQUEST,
        "no code cookie in this browser"
    );
    t.db.cleanup().await;
}

#[tokio::test]
async fn admin_scope_only_for_admins() {
    let t = TestApp::with_config(ISS, |c| {
        c.policy.data = serde_json::json!({ "admin_users": ["@root:example.org"] });
    })
    .await;
    add_user(&t.state, "alice", PASSWORD).await;
    add_user(&t.state, "root", PASSWORD).await;
    let c = add_client(&t.state, ClientAuthMethod::None, &[CB]).await;
    let scope = "urn:matrix:client:api:* urn:synapse:admin:*";

    let mut b = Browser::new(&t);
    let r = b
        .get(&authorize_uri(&c.client_id, CB, &[("scope", scope)]))
        .await;
    let consent = b.path_of(r.location().unwrap());
    let grant = consent.trim_start_matches("/consent/").to_owned();
    b.login("alice", PASSWORD, Some(&grant)).await;
    let r = b.get(&consent).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let p = params_of(r.location().unwrap(), false);
    assert_eq!(p["error"], "access_denied", "{p:?}");

    let mut b = Browser::new(&t);
    let r = b
        .get(&authorize_uri(&c.client_id, CB, &[("scope", scope)]))
        .await;
    let consent = b.path_of(r.location().unwrap());
    let grant = consent.trim_start_matches("/consent/").to_owned();
    b.login("root", PASSWORD, Some(&grant)).await;
    let page = b.get(&consent).await;
    assert!(
        page.body
            .contains("Access the homeserver as an administrator")
    );
    let csrf = page.csrf();
    let r = b
        .post(&consent, &[("csrf", &csrf), ("action", "allow")])
        .await;
    assert!(params_of(r.location().unwrap(), false).contains_key("code"));
    t.db.cleanup().await;
}

/// Vestibule extension: `policy.data.admin_attributes` lets the policy see
/// user attributes (imported from upstream claims or by import-users).
#[tokio::test]
async fn admin_scope_by_user_attribute() {
    let t = TestApp::with_config(ISS, |c| {
        c.policy.data = serde_json::json!({ "admin_attributes": { "tenant_id": ["ops"] } });
    })
    .await;
    let ops = add_user(&t.state, "olga", PASSWORD).await;
    let blue = add_user(&t.state, "bert", PASSWORD).await;
    {
        let mut repo = t.state.repos.write().await.unwrap();
        let clock = t.state.clock.clone();
        repo.user_attributes()
            .set(clock.as_ref(), &ops, "tenant_id", "ops")
            .await
            .unwrap();
        repo.user_attributes()
            .set(clock.as_ref(), &blue, "tenant_id", "blue")
            .await
            .unwrap();
        repo.save().await.unwrap();
    }
    let c = add_client(&t.state, ClientAuthMethod::None, &[CB]).await;
    let scope = "urn:matrix:client:api:* urn:synapse:admin:*";
    for (user, allowed) in [("bert", false), ("olga", true)] {
        let mut b = Browser::new(&t);
        let r = b
            .get(&authorize_uri(&c.client_id, CB, &[("scope", scope)]))
            .await;
        let consent = b.path_of(r.location().unwrap());
        let grant = consent.trim_start_matches("/consent/").to_owned();
        b.login(user, PASSWORD, Some(&grant)).await;
        let r = b.get(&consent).await;
        if allowed {
            assert_eq!(r.status, StatusCode::OK, "{user}");
            assert!(r.body.contains("Access the homeserver as an administrator"));
        } else {
            assert_eq!(r.status, StatusCode::SEE_OTHER, "{user}");
            let p = params_of(r.location().unwrap(), false);
            assert_eq!(p["error"], "access_denied", "{p:?}");
        }
    }
    t.db.cleanup().await;
}

#[tokio::test]
async fn post_authorize_works_like_get() {
    let (t, cid) = setup().await;
    let mut b = Browser::new(&t);
    let uri = authorize_uri(&cid, CB, &[]);
    let query = uri.trim_start_matches("/authorize?");
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let form: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = b.post("/authorize", &form).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(b.path_of(r.location().unwrap()).starts_with("/consent/"));
    t.db.cleanup().await;
}
