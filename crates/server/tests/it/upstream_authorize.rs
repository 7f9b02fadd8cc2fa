//! The start of an upstream login: what the authorization request carries
//! (OIDC Core §3.1.2.1, PKCE, login_hint, extra parameters), what the token
//! request carries (the verifier, the redirect URI, client authentication),
//! what the login continues, and the legacy SSO redirect to a provider.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use base64::Engine;
use serde_json::{Value, json};
use vestibule_domain::Ulid;
use vestibule_server::upstream::PostAuthAction;

use crate::{
    browser_helpers::{Browser, params_of},
    upstream_support::{Fake, SECRET, UpApp, link_session_id, provider, sqlite},
};

const FAKE: &str = "01JB00000000000000000000C1";
const NO_PKCE: &str = "01JB00000000000000000000C2";
const OFF: &str = "01JB00000000000000000000C3";

async fn app(fake: &Fake) -> UpApp {
    UpApp::new(
        sqlite().await,
        vec![
            provider(
                FAKE,
                &fake.issuer,
                "rp",
                &json!({
                    "id_token_signed_response_alg": "ES256",
                    "forward_login_hint": true,
                    "synapse_idp_id": "oidc-corp",
                    "additional_authorization_parameters": {"prompt": "login", "acr_values": "mfa"},
                }),
            ),
            provider(
                NO_PKCE,
                &fake.issuer,
                "rp",
                &json!({"id_token_signed_response_alg": "ES256", "pkce_method": "never"}),
            ),
            provider(OFF, &fake.issuer, "rp", &json!({"enabled": false})),
        ],
        None,
    )
    .await
}

/// Completes the login the browser started (the redirect to the fake
/// provider is `to`) with an honest ID token; returns the session's stored
/// continuation.
async fn finish(app: &UpApp, fake: &Fake, b: &mut Browser, to: &str) -> Option<PostAuthAction> {
    let q = params_of(to, false);
    let now = app.t.clock.now().timestamp();
    *fake.claims.lock().unwrap() = json!({
        "iss": fake.issuer, "sub": "alice-sub", "aud": "rp",
        "nonce": q["nonce"], "iat": now, "exp": now + 300,
    });
    let r = b
        .get(&format!(
            "/upstream/callback/{FAKE}?code=the-code&state={}",
            q["state"]
        ))
        .await;
    let id = link_session_id(b, &r);
    let s = app.session(&id).await;
    PostAuthAction::from_json(s.post_auth_action.as_deref())
}

#[tokio::test]
async fn authorization_and_token_requests_carry_what_is_configured() {
    let fake = Fake::start().await;
    let app = app(&fake).await;
    let mut b = app.browser();
    let r = b
        .get(&format!("/upstream/authorize/{FAKE}?login_hint=alice"))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let to = r.location().unwrap().to_owned();
    assert!(to.starts_with(&format!("{}/auth?", fake.issuer)), "{to}");
    let q = params_of(&to, false);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "rp");
    assert_eq!(
        q["redirect_uri"],
        format!("https://auth.example/upstream/callback/{FAKE}")
    );
    assert_eq!(q["scope"], "openid profile email");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["login_hint"], "alice");
    assert_eq!(q["prompt"], "login");
    assert_eq!(q["acr_values"], "mfa");
    assert!(q["state"].len() >= 32 && q["nonce"].len() >= 32);
    assert!(!q.contains_key("response_mode"));
    assert!(!r.set_cookies().is_empty(), "the browser binding cookie");

    assert_eq!(finish(&app, &fake, &mut b, &to).await, None);
    // The token request: our callback as redirect_uri, the PKCE verifier
    // matching the challenge (RFC 7636 §4.6), client_secret_basic.
    let (auth, form) = fake.last_request.lock().unwrap().clone().unwrap();
    let form: BTreeMap<String, String> = form.into_iter().collect();
    assert_eq!(form["grant_type"], "authorization_code");
    assert_eq!(form["code"], "the-code");
    assert_eq!(form["redirect_uri"], q["redirect_uri"]);
    assert_eq!(
        vestibule_domain::pkce::s256_challenge(&form["code_verifier"]),
        q["code_challenge"]
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("rp:{SECRET}"));
    assert_eq!(auth.as_deref(), Some(format!("Basic {basic}").as_str()));
    assert!(!form.contains_key("client_secret"));

    // pkce_method: never; no login_hint without forward_login_hint.
    let r = b
        .get(&format!("/upstream/authorize/{NO_PKCE}?login_hint=alice"))
        .await;
    let q = params_of(r.location().unwrap(), false);
    assert!(!q.contains_key("code_challenge"));
    assert!(!q.contains_key("login_hint"));

    // Disabled and unknown providers.
    for id in [OFF, "01JB00000000000000000000ZZ", "not-an-id"] {
        let r = b.get(&format!("/upstream/authorize/{id}")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{id}");
        assert!(r.body.contains("does not exist"));
        let r = b
            .get(&format!("/upstream/callback/{id}?state=x&code=y"))
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{id}");
    }
    app.cleanup().await;
}

/// What the login continues is kept by id (a grant, a legacy SSO login) or
/// as an account page path that the account page accepts; anything else
/// is dropped (S23).
#[tokio::test]
async fn the_continuation_is_kept_by_id_or_checked_path() {
    let fake = Fake::start().await;
    let app = app(&fake).await;
    let id = Ulid::from_parts(1, 42);
    let cases: Vec<(String, Option<PostAuthAction>)> = vec![
        (
            format!("?grant={id}"),
            Some(PostAuthAction::ContinueGrant { id }),
        ),
        (
            format!("?compat_sso={id}"),
            Some(PostAuthAction::ContinueCompatSso { id }),
        ),
        (
            "?next=%2Faccount%2F".to_owned(),
            Some(PostAuthAction::Account {
                path: "/account/".to_owned(),
            }),
        ),
        ("?next=https%3A%2F%2Fevil.example%2F".to_owned(), None),
        ("?next=%2F%2Fevil.example".to_owned(), None),
        ("?grant=not-an-id".to_owned(), None),
    ];
    for (query, expected) in cases {
        let mut b = app.browser();
        let r = b.get(&format!("/upstream/authorize/{FAKE}{query}")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{query}: {}", r.body);
        let to = r.location().unwrap().to_owned();
        assert_eq!(finish(&app, &fake, &mut b, &to).await, expected, "{query}");
    }
    app.cleanup().await;
}

/// `/login/sso/redirect/{idp}` with the provider's id, `oidc-<id>` or its
/// `synapse_idp_id` goes straight to the provider, continuing the legacy
/// SSO login; an unknown or disabled one is M_NOT_FOUND.
#[tokio::test]
async fn legacy_sso_redirect_to_a_provider() {
    let fake = Fake::start().await;
    let app = app(&fake).await;
    for idp in [
        FAKE.to_owned(),
        format!("oidc-{FAKE}"),
        "oidc-corp".to_owned(),
    ] {
        let mut b = app.browser();
        let r = b
            .get(&format!(
                "/_matrix/client/v3/login/sso/redirect/{idp}?redirectUrl=https%3A%2F%2Fclient.example%2Fcb"
            ))
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{idp}: {}", r.body);
        let path = b.path_of(r.location().unwrap());
        let login_id = path
            .strip_prefix(&format!("/upstream/authorize/{FAKE}?compat_sso="))
            .unwrap_or_else(|| panic!("{path}"))
            .parse::<Ulid>()
            .unwrap();
        let r = b.get(&path).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        let to = r.location().unwrap().to_owned();
        assert_eq!(
            finish(&app, &fake, &mut b, &to).await,
            Some(PostAuthAction::ContinueCompatSso { id: login_id })
        );
    }
    for idp in [OFF.to_owned(), "oidc-unknown".to_owned()] {
        let r = app
            .browser()
            .get(&format!(
                "/_matrix/client/v3/login/sso/redirect/{idp}?redirectUrl=https%3A%2F%2Fclient.example%2Fcb"
            ))
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{idp}");
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["errcode"], "M_NOT_FOUND");
    }
    app.cleanup().await;
}
