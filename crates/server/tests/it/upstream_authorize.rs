//! The start of an upstream login: what the authorization request carries
//! (OIDC Core §3.1.2.1, PKCE, login_hint, extra parameters), what the token
//! request carries (the verifier, the redirect URI, client authentication),
//! what the login continues, and the legacy SSO redirect to a provider.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use base64::Engine;
use serde_json::{Value, json};
use vestibule_domain::{Ulid, oauth2::ClientAuthMethod};
use vestibule_server::upstream::PostAuthAction;

use crate::{
    browser_helpers::{Browser, Resp, add_client, authorize_uri, params_of},
    upstream_support::{BASE, Fake, SECRET, UpApp, link_session_id, provider, sqlite},
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
    // Only the grant's hint is forwarded, never one put on this URL.
    assert!(!q.contains_key("login_hint"), "{to}");
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

    // pkce_method: never.
    let r = b.get(&format!("/upstream/authorize/{NO_PKCE}")).await;
    let q = params_of(r.location().unwrap(), false);
    assert!(!q.contains_key("code_challenge"));
    assert!(!q.contains_key("code_challenge_method"));

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

const REDIRECT: &str = "https://app.example.org/cb";

/// A Matrix client's `/authorize` (with `login_hint` if given) in `b`, to
/// the login page of its grant; returns that page.
async fn login_page_of_grant(app: &UpApp, b: &mut Browser, hint: Option<&str>) -> Resp {
    let client = add_client(&app.t.state, ClientAuthMethod::None, &[REDIRECT]).await;
    let extra: Vec<(&str, &str)> = hint.map(|h| ("login_hint", h)).into_iter().collect();
    let r = b
        .get(&authorize_uri(&client.client_id, REDIRECT, &extra))
        .await;
    assert!(
        b.path_of(r.location().unwrap()).starts_with("/consent/"),
        "{r:?}"
    );
    let consent = b.follow(&r).await;
    assert!(
        b.path_of(consent.location().unwrap())
            .starts_with("/login?grant="),
        "{consent:?}"
    );
    b.follow(&consent).await
}

/// The path of the login page's button for provider `id`.
fn button_path(b: &Browser, page: &Resp, id: &str) -> String {
    let marker = format!("href=\"{BASE}upstream/authorize/{id}");
    let start = page
        .body
        .find(&marker)
        .unwrap_or_else(|| panic!("no button for {id}: {}", page.body))
        + "href=\"".len();
    let end = page.body[start..].find('"').unwrap() + start;
    b.path_of(&page.body[start..end].replace("&amp;", "&"))
}

/// What the provider's authorization URL carries after `/upstream/authorize`
/// at `path`.
async fn upstream_query(b: &mut Browser, path: &str) -> BTreeMap<String, String> {
    let r = b.get(path).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}: {}", r.body);
    params_of(r.location().unwrap(), false)
}

/// `forward_login_hint`: the `login_hint` a Matrix client gave `/authorize`
/// (MSC4198's `mxid:` form here) reaches the provider as given (as MAS
/// forwards it; OIDC Core §3.1.2.1 leaves its reading to the provider),
/// through the login page's button; a provider without the flag gets none,
/// and a grant without a hint forwards nothing.
#[tokio::test]
async fn the_grants_login_hint_is_forwarded_from_the_login_page() {
    let fake = Fake::start().await;
    let app = app(&fake).await;
    let hint = "mxid:@alice:example.org";
    let mut b = app.browser();
    let page = login_page_of_grant(&app, &mut b, Some(hint)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let path = button_path(&b, &page, FAKE);
    let q = upstream_query(&mut b, &path).await;
    assert_eq!(q.get("login_hint").map(String::as_str), Some(hint), "{q:?}");
    let path = button_path(&b, &page, NO_PKCE);
    let q = upstream_query(&mut b, &path).await;
    assert!(!q.contains_key("login_hint"), "not configured: {q:?}");

    let mut b = app.browser();
    let page = login_page_of_grant(&app, &mut b, None).await;
    let path = button_path(&b, &page, FAKE);
    let q = upstream_query(&mut b, &path).await;
    assert!(!q.contains_key("login_hint"), "no hint given: {q:?}");
    app.cleanup().await;
}

/// Without password login and with one provider, `/login` sends the
/// browser straight on; the grant's hint still reaches the provider.
#[tokio::test]
async fn the_grants_login_hint_is_forwarded_on_the_straight_redirect() {
    let fake = Fake::start().await;
    let app = UpApp::with(
        sqlite().await,
        vec![provider(
            FAKE,
            &fake.issuer,
            "rp",
            &json!({"id_token_signed_response_alg": "ES256", "forward_login_hint": true}),
        )],
        None,
        |c| c.passwords.enabled = false,
    )
    .await;
    let hint = "mxid:@alice:example.org";
    let mut b = app.browser();
    let r = login_page_of_grant(&app, &mut b, Some(hint)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let path = b.path_of(r.location().unwrap());
    assert!(
        path.starts_with(&format!("/upstream/authorize/{FAKE}?grant=")),
        "{path}"
    );
    let q = upstream_query(&mut b, &path).await;
    assert_eq!(q.get("login_hint").map(String::as_str), Some(hint), "{q:?}");
    app.cleanup().await;
}

/// `pkce_method` (RFC 7636): `always` sends a challenge even when the
/// provider's discovery document does not advertise S256, `auto` then
/// sends none, and `never` sends none although it is advertised.
#[tokio::test]
async fn pkce_method_always_auto_never() {
    const ALWAYS: &str = "01JB00000000000000000000C4";
    const AUTO: &str = "01JB00000000000000000000C5";
    let plain = Fake::start().await;
    plain
        .discovery_overrides
        .lock()
        .unwrap()
        .insert("code_challenge_methods_supported".to_owned(), Value::Null);
    let advertised = Fake::start().await;
    let app = UpApp::new(
        sqlite().await,
        vec![
            provider(
                ALWAYS,
                &plain.issuer,
                "rp",
                &json!({"id_token_signed_response_alg": "ES256", "pkce_method": "always"}),
            ),
            provider(
                AUTO,
                &plain.issuer,
                "rp",
                &json!({"id_token_signed_response_alg": "ES256"}),
            ),
            provider(
                NO_PKCE,
                &advertised.issuer,
                "rp",
                &json!({"id_token_signed_response_alg": "ES256", "pkce_method": "never"}),
            ),
        ],
        None,
    )
    .await;
    let mut b = app.browser();
    let q = upstream_query(&mut b, &format!("/upstream/authorize/{ALWAYS}")).await;
    assert_eq!(q["code_challenge_method"], "S256");
    // 43 base64url characters: a SHA-256 digest (RFC 7636 §4.2).
    assert_eq!(q["code_challenge"].len(), 43, "{q:?}");
    for id in [AUTO, NO_PKCE] {
        let q = upstream_query(&mut b, &format!("/upstream/authorize/{id}")).await;
        assert!(!q.contains_key("code_challenge"), "{id}: {q:?}");
        assert!(!q.contains_key("code_challenge_method"), "{id}: {q:?}");
    }
    app.cleanup().await;
}
