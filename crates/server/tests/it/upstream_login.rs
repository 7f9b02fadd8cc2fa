//! Login through an upstream OpenID Connect provider, against the real
//! `oidc-provider` (tests/e2e/idp.mjs): authorize → IdP login → callback →
//! completed upstream session with the claims and the (provider, subject)
//! link → `/upstream/link/{session}`. Tampered tokens come from a fake
//! provider that signs what the test says (the real IdP cannot be made to),
//! and from a proxy that alters the real IdP's own signed tokens.

use axum::http::StatusCode;
use serde_json::{Value, json};
use vestibule_keys::Keystore;

use crate::{
    browser_helpers::{Browser, Resp},
    compat_support::databases,
    upstream_support::{
        BASE, Back, Fake, Idp, IdpDriver, SECRET, UpApp, callback, deliver, link_session_id, login,
        provider, start, users,
    },
};

const BASIC: &str = "01JB0000000000000000000001";
const POST: &str = "01JB0000000000000000000002";
const JWT: &str = "01JB0000000000000000000003";
const PKJWT: &str = "01JB0000000000000000000004";
const FORM: &str = "01JB0000000000000000000005";
const NONE_PROMPT: &str = "01JB0000000000000000000006";
const PUBLIC: &str = "01JB0000000000000000000007";

fn client(id: &str, method: &str, extra: &Value) -> Value {
    let mut c = json!({
        "client_id": format!("vestibule-{method}"),
        "client_secret": SECRET,
        "redirect_uris": [callback(id)],
        "token_endpoint_auth_method": method,
        // With a back-channel logout URI, oidc-provider puts `sid` in
        // ID tokens (its `includeSid`).
        "backchannel_logout_uri": format!("{BASE}upstream/backchannel-logout/{id}"),
        "backchannel_logout_session_required": true,
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    if method == "none" {
        c.as_object_mut().unwrap().remove("client_secret");
    }
    c
}

/// The claims of a completed session, and the checks every happy path
/// shares: completed, linked to (provider, sub), `sid` kept.
async fn completed(app: &UpApp, b: &Browser, r: &Resp, pid: &str) -> Value {
    let sid = link_session_id(b, r);
    let s = app.session(&sid).await;
    assert!(s.completed_at.is_some());
    assert!(s.consumed_at.is_none());
    let link = app
        .link(pid, "alice-sub")
        .await
        .expect("a link for (provider, sub)");
    assert_eq!(s.link_id, Some(link.id));
    assert_eq!(link.user_id, None, "nobody is linked by the callback");
    assert!(s.sid.as_deref().is_some_and(|x| !x.is_empty()), "{s:?}");
    s.claims.unwrap()
}

/// Every token endpoint authentication method oidc-provider supports
/// (private_key_jwt with our keystore registered as the client's JWKS;
/// `none` for a public client, which PKCE alone protects), the
/// query and the form_post response modes; claims in the ID token. On
/// SQLite and PostgreSQL.
#[tokio::test]
async fn real_idp_login_with_every_client_auth_method() {
    let key = vestibule_keys::generate_ec_p256(&mut rand::rngs::OsRng);
    let keystore = Keystore::new(vec![(Some("ours".to_owned()), key)]).unwrap();
    let idp = Idp::start(&json!({
        "idTokenClaims": true,
        "users": users(),
        "clients": [
            client(BASIC, "client_secret_basic", &json!({})),
            client(POST, "client_secret_post", &json!({})),
            client(JWT, "client_secret_jwt", &json!({})),
            client(PKJWT, "private_key_jwt", &json!({
                "jwks": keystore.jwks(),
                "token_endpoint_auth_signing_alg": "ES256",
            })),
            client(FORM, "client_secret_basic", &json!({"client_id": "vestibule-form"})),
            client(PUBLIC, "none", &json!({})),
        ],
    }));
    for db in databases().await {
        let iss = idp.issuer.as_str();
        let key = Keystore::new(vec![(
            Some("ours".to_owned()),
            keystore.entries()[0].key.clone(),
        )])
        .unwrap();
        let app = UpApp::new(
            db,
            vec![
                provider(BASIC, iss, "vestibule-client_secret_basic", &json!({})),
                provider(
                    POST,
                    iss,
                    "vestibule-client_secret_post",
                    &json!({
                    "token_endpoint_auth_method": "client_secret_post"}),
                ),
                provider(
                    JWT,
                    iss,
                    "vestibule-client_secret_jwt",
                    &json!({
                    "token_endpoint_auth_method": "client_secret_jwt"}),
                ),
                provider(
                    PKJWT,
                    iss,
                    "vestibule-private_key_jwt",
                    &json!({
                    "token_endpoint_auth_method": "private_key_jwt",
                    "token_endpoint_auth_signing_alg": "ES256"}),
                ),
                provider(
                    PUBLIC,
                    iss,
                    "vestibule-none",
                    &json!({"token_endpoint_auth_method": "none"}),
                ),
                provider(
                    FORM,
                    iss,
                    "vestibule-form",
                    &json!({"response_mode": "form_post"}),
                ),
            ],
            Some(key),
        )
        .await;
        let mut links = Vec::new();
        for pid in [BASIC, POST, JWT, PKJWT, PUBLIC, FORM] {
            let mut b = app.browser();
            let mut driver = IdpDriver::default();
            let r = login(&mut b, &mut driver, pid, "alice-sub").await;
            let claims = completed(&app, &b, &r, pid).await;
            let id = &claims["id_token"];
            assert_eq!(id["iss"], json!(idp.issuer), "{pid}");
            assert_eq!(id["sub"], "alice-sub");
            assert_eq!(id["preferred_username"], "alice", "{claims}");
            assert_eq!(id["email"], "alice@corp.example");
            assert_eq!(id["tenant_id"], "t-1");
            assert_eq!(claims["userinfo"], Value::Null, "fetch_userinfo is off");
            links.push(app.link(pid, "alice-sub").await.unwrap().id);

            // A second login of the same person reuses the link.
            let mut b2 = app.browser();
            let r = login(&mut b2, &mut IdpDriver::default(), pid, "alice").await;
            completed(&app, &b2, &r, pid).await;
            assert_eq!(
                app.link(pid, "alice-sub").await.unwrap().id,
                *links.last().unwrap()
            );
        }
        links.sort();
        links.dedup();
        assert_eq!(links.len(), 6, "one link per provider");
        app.cleanup().await;
    }
}

/// An ID token with only `sub` (oidc-provider's default): with
/// `fetch_userinfo` the claims come from userinfo; without, they are
/// absent.
#[tokio::test]
async fn claims_come_from_userinfo_when_the_id_token_only_has_sub() {
    let idp = Idp::start(&json!({
        "users": users(),
        "clients": [
            client(BASIC, "client_secret_basic", &json!({})),
            client(POST, "client_secret_basic", &json!({"client_id": "no-userinfo"})),
        ],
    }));
    let iss = idp.issuer.as_str();
    let app = UpApp::new(
        crate::upstream_support::sqlite().await,
        vec![
            provider(
                BASIC,
                iss,
                "vestibule-client_secret_basic",
                &json!({"fetch_userinfo": true}),
            ),
            provider(POST, iss, "no-userinfo", &json!({})),
        ],
        None,
    )
    .await;
    let mut b = app.browser();
    let r = login(&mut b, &mut IdpDriver::default(), BASIC, "alice-sub").await;
    let claims = completed(&app, &b, &r, BASIC).await;
    assert!(
        claims["id_token"].get("preferred_username").is_none(),
        "{claims}"
    );
    let ui = &claims["userinfo"];
    assert_eq!(ui["sub"], "alice-sub");
    assert_eq!(ui["preferred_username"], "alice");
    assert_eq!(ui["name"], "Alice Liddell");
    assert_eq!(ui["email"], "alice@corp.example");
    assert_eq!(ui["email_verified"], true);
    assert_eq!(ui["tenant_id"], "t-1");

    let mut b = app.browser();
    let r = login(&mut b, &mut IdpDriver::default(), POST, "alice-sub").await;
    let claims = completed(&app, &b, &r, POST).await;
    assert_eq!(claims["userinfo"], Value::Null);
    assert!(claims["id_token"].get("email").is_none(), "{claims}");
    app.cleanup().await;
}

/// Refusals with the real IdP: the answer delivered to another browser,
/// an unknown state, a wrong `iss` (RFC 9207), the provider's own error
/// (`prompt=none` without an IdP session → `login_required`). Each is an
/// error page with a way back, and leaves the session uncompleted and no
/// link behind.
#[tokio::test]
async fn callback_refusals_change_nothing() {
    let idp = Idp::start(&json!({
        "users": users(),
        "clients": [
            client(BASIC, "client_secret_basic", &json!({})),
            client(NONE_PROMPT, "client_secret_basic", &json!({"client_id": "silent"})),
        ],
    }));
    let iss = idp.issuer.as_str();
    let app = UpApp::new(
        crate::upstream_support::sqlite().await,
        vec![
            provider(BASIC, iss, "vestibule-client_secret_basic", &json!({})),
            provider(
                NONE_PROMPT,
                iss,
                "silent",
                &json!({
                "additional_authorization_parameters": {"prompt": "none"}}),
            ),
        ],
        None,
    )
    .await;
    let refused = |r: &Resp, status: StatusCode, text: &str| {
        assert_eq!(r.status, status, "{}", r.body);
        assert!(r.body.contains(text), "{text:?} not in {}", r.body);
        assert!(r.body.contains("href="), "a way back: {}", r.body);
    };

    // The IdP's answer carried to another browser.
    let mut a = app.browser();
    let url = start(&mut a, BASIC, "").await;
    let state: String = url
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into();
    let Back::Redirect(back) = IdpDriver::default().run(url, "alice-sub").await else {
        panic!("query mode")
    };
    let mut other = app.browser();
    let r = deliver(&mut other, Back::Redirect(back.clone())).await;
    refused(&r, StatusCode::BAD_REQUEST, "not started in this browser");
    assert!(app.link(BASIC, "alice-sub").await.is_none());

    // The answer delivered to the callback of another provider.
    let other_provider = a.path_of(back.as_str()).replace(
        &format!("/callback/{BASIC}"),
        &format!("/callback/{NONE_PROMPT}"),
    );
    let r = a.get(&other_provider).await;
    refused(&r, StatusCode::BAD_REQUEST, "not started in this browser");

    // An unknown state in the right browser.
    let path = a.path_of(back.as_str()).replace(&state, "not-the-state");
    let r = a.get(&path).await;
    refused(&r, StatusCode::BAD_REQUEST, "not started in this browser");

    // RFC 9207: another issuer named in the answer.
    let mut u = back.clone();
    let pairs: Vec<(String, String)> = back
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "iss" {
                "https://evil.example".into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(&pairs);
    let r = a.get(&a.path_of(u.as_str())).await;
    refused(&r, StatusCode::BAD_REQUEST, "different identity provider");
    // Without `iss` although the IdP advertises it.
    let pairs: Vec<_> = pairs.into_iter().filter(|(k, _)| k != "iss").collect();
    u.query_pairs_mut().clear().extend_pairs(&pairs);
    let r = a.get(&a.path_of(u.as_str())).await;
    refused(&r, StatusCode::BAD_REQUEST, "lacks its issuer");
    assert!(
        app.link(BASIC, "alice-sub").await.is_none(),
        "nothing half-done"
    );

    // The untouched answer still works in the right browser, once.
    let r = a.get(&a.path_of(back.as_str())).await;
    let id = link_session_id(&a, &r);
    assert!(app.session(&id).await.completed_at.is_some());
    let r = a.get(&a.path_of(back.as_str())).await;
    refused(&r, StatusCode::BAD_REQUEST, "already completed");

    // The provider's own error (OIDC Core §3.1.2.6).
    let mut c = app.browser();
    let url = start(&mut c, NONE_PROMPT, "").await;
    let back = IdpDriver::default().run(url, "alice-sub").await;
    let r = deliver(&mut c, back).await;
    refused(&r, StatusCode::BAD_REQUEST, "login_required");
    assert!(app.link(NONE_PROMPT, "alice-sub").await.is_none());

    // Unknown and disabled providers.
    let r = c
        .get("/upstream/authorize/01JB0000000000000000000099")
        .await;
    refused(&r, StatusCode::NOT_FOUND, "does not exist");
    app.cleanup().await;
}

/// Tampered ID tokens from a provider signing what the test says: bad
/// signature, wrong aud, wrong nonce, wrong iss, expired, unsigned. Each is
/// refused with an error page, the session stays uncompleted and no link
/// is made; the untampered token then passes.
#[tokio::test]
async fn tampered_id_tokens_are_refused() {
    const FAKE: &str = "01JB00000000000000000000FA";
    let fake = Fake::start().await;
    let app = UpApp::new(
        crate::upstream_support::sqlite().await,
        vec![provider(
            FAKE,
            &fake.issuer,
            "rp",
            &json!({"id_token_signed_response_alg": "ES256"}),
        )],
        None,
    )
    .await;
    let now = app.t.clock.now().timestamp();
    let other_key = Keystore::new(vec![(
        Some("fake".to_owned()),
        vestibule_keys::generate_ec_p256(&mut rand::rngs::OsRng),
    )])
    .unwrap();

    // (what to change, the message, whether to sign with the wrong key)
    let cases: Vec<(Value, &str, bool)> = vec![
        (json!({}), "bad signature", true),
        (json!({"aud": "someone-else"}), "aud does not name", false),
        (json!({"aud": ["rp", "x"], "azp": "x"}), "azp is not", false),
        (
            json!({"nonce": "another-nonce"}),
            "nonce does not match",
            false,
        ),
        (json!({"iss": "https://evil.example"}), "iss is not", false),
        (
            json!({"exp": now - 3600, "iat": now - 7200}),
            "expired",
            false,
        ),
        (json!({"alg_none": true}), "signed with", false),
    ];
    for (i, (change, message, wrong_key)) in cases.into_iter().enumerate() {
        let sub = format!("alice-{i}");
        let mut b = app.browser();
        let url = start(&mut b, FAKE, "").await;
        let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
        let mut claims = json!({
            "iss": fake.issuer, "sub": sub, "aud": "rp",
            "nonce": q["nonce"], "iat": now, "exp": now + 300,
        });
        for (k, v) in change.as_object().unwrap() {
            claims[k] = v.clone();
        }
        *fake.claims.lock().unwrap() = claims;
        *fake.signer.lock().unwrap() = wrong_key.then(|| {
            Keystore::new(vec![(
                Some("fake".to_owned()),
                other_key.entries()[0].key.clone(),
            )])
            .unwrap()
        });
        let r = b
            .get(&format!(
                "/upstream/callback/{FAKE}?code=c&state={}",
                q["state"]
            ))
            .await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{change}: {}", r.body);
        assert!(
            r.body.contains(message),
            "{change}: {message:?} not in {}",
            r.body
        );
        assert!(app.link(FAKE, &sub).await.is_none(), "{change}");

        // The same session (so it was left uncompleted) with an honest
        // token completes.
        let mut honest = json!({
            "iss": fake.issuer, "sub": sub, "aud": "rp",
            "nonce": q["nonce"], "iat": now, "exp": now + 300,
        });
        honest["sid"] = json!("fake-sid");
        *fake.claims.lock().unwrap() = honest;
        *fake.signer.lock().unwrap() = None;
        let r = b
            .get(&format!(
                "/upstream/callback/{FAKE}?code=c&state={}",
                q["state"]
            ))
            .await;
        let id = link_session_id(&b, &r);
        let s = app.session(&id).await;
        assert_eq!(s.sid.as_deref(), Some("fake-sid"));
        assert_eq!(s.link_id, Some(app.link(FAKE, &sub).await.unwrap().id));
    }
    app.cleanup().await;
}

/// Starts a login at the fake provider `pid`, lets it sign an ID token
/// for `sub` (with `extra` claims) and returns our callback's answer.
async fn fake_login(app: &UpApp, fake: &Fake, pid: &str, sub: &str, extra: &Value) -> Resp {
    fake_login_in(app, &mut app.browser(), fake, pid, sub, extra).await
}

/// [`fake_login`] in the browser `b` (which may then go on to the link
/// page).
async fn fake_login_in(
    app: &UpApp,
    b: &mut Browser,
    fake: &Fake,
    pid: &str,
    sub: &str,
    extra: &Value,
) -> Resp {
    let url = start(b, pid, "").await;
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    let now = app.t.clock.now().timestamp();
    let mut claims = json!({
        "iss": fake.issuer, "sub": sub, "aud": "rp",
        "nonce": q["nonce"], "iat": now, "exp": now + 300,
    });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    *fake.claims.lock().unwrap() = claims;
    let r = b
        .get(&format!(
            "/upstream/callback/{pid}?code=c&state={}",
            q["state"]
        ))
        .await;
    if r.status == StatusCode::SEE_OTHER {
        let id = link_session_id(b, &r);
        assert!(app.session(&id).await.completed_at.is_some());
    }
    r
}

/// A user's attributes, by username.
async fn attributes_of(app: &UpApp, username: &str) -> std::collections::BTreeMap<String, String> {
    let mut repo = app.t.state.repos.read().await.unwrap();
    let user = repo
        .users()
        .find_by_username(username)
        .await
        .unwrap()
        .unwrap();
    let a = repo.user_attributes().all(&user).await.unwrap();
    repo.cancel().await.unwrap();
    a
}

async fn user_count(app: &UpApp) -> u64 {
    let mut repo = app.t.state.repos.read().await.unwrap();
    let n = repo.users().count().await.unwrap();
    repo.cancel().await.unwrap();
    n
}

/// `attribute_requirements` are checked in the callback, before anything
/// is written: a refused login gets the clear page and leaves no link, no
/// completed session and no user; one that meets them goes on to the link
/// page.
#[tokio::test]
async fn attribute_requirements_refuse_before_any_link_is_made() {
    const P: &str = "01JB00000000000000000000E8";
    let fake = Fake::start().await;
    for db in databases().await {
        let app = UpApp::new(
            db,
            vec![provider(
                P,
                &fake.issuer,
                "rp",
                &json!({
                    "id_token_signed_response_alg": "ES256",
                    "human_name": "Corp",
                    "attribute_requirements": [{"attribute": "tenant_id", "value": "acme"}],
                }),
            )],
            None,
        )
        .await;
        let r = fake_login(
            &app,
            &fake,
            P,
            "eve-sub",
            &json!({"preferred_username": "eve", "tenant_id": "other"}),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        assert!(
            r.body
                .contains("You are not allowed to use this service through Corp"),
            "{}",
            r.body
        );
        assert!(app.link(P, "eve-sub").await.is_none(), "no link row");
        assert_eq!(user_count(&app).await, 0);

        let r = fake_login(
            &app,
            &fake,
            P,
            "eve-sub",
            &json!({"preferred_username": "eve", "tenant_id": "acme"}),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        assert!(app.link(P, "eve-sub").await.is_some());
        app.cleanup().await;
    }
}

/// Custom claims through a provider: registered with `tenant_id`, the
/// organisation then moves the user to another tenant. With `force` the
/// next sign-in updates the attribute (and a claim no longer sent removes
/// it); with `suggest` it stays what the user chose at registration.
#[tokio::test]
async fn forced_custom_claims_follow_the_provider_at_each_sign_in() {
    const P: &str = "01JB00000000000000000000E9";
    let fake = Fake::start().await;
    for action in ["force", "suggest"] {
        for db in databases().await {
            let app = UpApp::new(
                db,
                vec![provider(
                    P,
                    &fake.issuer,
                    "rp",
                    &json!({
                        "id_token_signed_response_alg": "ES256",
                        "claims_imports": {
                            "localpart": {"action": "require"},
                            "custom": {"tenant_id": {"action": action, "template": "{{ user.tenant_id }}"}},
                        },
                    }),
                )],
                None,
            )
            .await;
            let sign_in = |tenant: Option<&'static str>| {
                let mut claims = json!({"preferred_username": "dana"});
                if let Some(t) = tenant {
                    claims["tenant_id"] = json!(t);
                }
                claims
            };
            let mut b = app.browser();
            let r = fake_login_in(&app, &mut b, &fake, P, "dana-sub", &sign_in(Some("acme"))).await;
            let id = link_session_id(&b, &r);
            let page = b.get(&format!("/upstream/link/{id}")).await;
            assert_eq!(page.status, StatusCode::OK, "{action}: {}", page.body);
            let csrf = page.csrf();
            let r = b
                .post(
                    &format!("/upstream/link/{id}"),
                    &[
                        ("csrf", csrf.as_str()),
                        ("action", "register"),
                        ("attr.tenant_id", "on"),
                    ],
                )
                .await;
            assert_eq!(r.status, StatusCode::SEE_OTHER, "{action}: {}", r.body);
            assert_eq!(attributes_of(&app, "dana").await["tenant_id"], "acme");

            // Signing in again through the link (a new browser).
            let again = async |tenant| {
                let mut b = app.browser();
                let r = fake_login_in(&app, &mut b, &fake, P, "dana-sub", &sign_in(tenant)).await;
                let id = link_session_id(&b, &r);
                let r = b.get(&format!("/upstream/link/{id}")).await;
                assert_eq!(r.status, StatusCode::SEE_OTHER, "{action}: {}", r.body);
                attributes_of(&app, "dana").await
            };
            let after = again(Some("globex")).await;
            let expected = if action == "force" { "globex" } else { "acme" };
            assert_eq!(after["tenant_id"], expected, "{action}");
            let after = again(None).await;
            if action == "force" {
                assert!(!after.contains_key("tenant_id"), "{after:?}");
            } else {
                assert_eq!(after["tenant_id"], "acme");
            }
            app.cleanup().await;
        }
    }
}

/// Userinfo (OIDC Core §5.3): its `sub` must be the ID token's (§5.3.4);
/// with `userinfo_signed_response_alg` it must be a JWT signed by the
/// provider for us (§5.3.2), and plain JSON is refused.
#[tokio::test]
async fn userinfo_is_checked_and_may_be_signed() {
    const PLAIN: &str = "01JB00000000000000000000D1";
    const SIGNED: &str = "01JB00000000000000000000D2";
    let fake = Fake::start().await;
    let app = UpApp::new(
        crate::upstream_support::sqlite().await,
        vec![
            provider(
                PLAIN,
                &fake.issuer,
                "rp",
                &json!({"id_token_signed_response_alg": "ES256", "fetch_userinfo": true}),
            ),
            provider(
                SIGNED,
                &fake.issuer,
                "rp",
                &json!({
                    "id_token_signed_response_alg": "ES256",
                    "fetch_userinfo": true,
                    "userinfo_signed_response_alg": "ES256",
                }),
            ),
        ],
        None,
    )
    .await;
    *fake.userinfo.lock().unwrap() = json!({"sub": "someone-else", "email": "x@corp.example"});
    let r = fake_login(&app, &fake, PLAIN, "u1", &json!({})).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert!(r.body.contains("sub differs"), "{}", r.body);
    assert!(app.link(PLAIN, "u1").await.is_none());

    *fake.userinfo.lock().unwrap() = json!({"sub": "u1", "email": "u1@corp.example"});
    let r = fake_login(&app, &fake, PLAIN, "u1", &json!({})).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let link = app.link(PLAIN, "u1").await.unwrap();
    assert_eq!(link.subject, "u1");

    // Signed: plain JSON is refused, a JWT for someone else too.
    let r = fake_login(&app, &fake, SIGNED, "u2", &json!({})).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert!(r.body.contains("not a signed JWT"), "{}", r.body);
    *fake.userinfo.lock().unwrap() = json!({"jwt": {
        "iss": fake.issuer, "aud": "another-rp", "sub": "u2", "email": "u2@corp.example"}});
    let r = fake_login(&app, &fake, SIGNED, "u2", &json!({})).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert!(r.body.contains("aud does not name"), "{}", r.body);
    *fake.userinfo.lock().unwrap() = json!({"jwt": {
        "iss": fake.issuer, "aud": "rp", "sub": "u2", "email": "u2@corp.example"}});
    let r = fake_login(&app, &fake, SIGNED, "u2", &json!({})).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(app.link(SIGNED, "u2").await.is_some());
    app.cleanup().await;
}

/// The provider's keys are cached; a token signed with a key id we have
/// not seen makes us fetch them again (rotation), at most once per
/// interval; a key the provider does not publish stays refused.
#[tokio::test]
async fn rotated_provider_keys_are_fetched_again() {
    const P: &str = "01JB00000000000000000000E1";
    let fake = Fake::start().await;
    let app = UpApp::new(
        crate::upstream_support::sqlite().await,
        vec![provider(
            P,
            &fake.issuer,
            "rp",
            &json!({"id_token_signed_response_alg": "ES256"}),
        )],
        None,
    )
    .await;
    let r = fake_login(&app, &fake, P, "k0", &json!({})).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "the keys are now cached");

    let rotated = Keystore::new(vec![(
        Some("rotated".to_owned()),
        vestibule_keys::generate_ec_p256(&mut rand::rngs::OsRng),
    )])
    .unwrap();
    fake.extra_jwks
        .lock()
        .unwrap()
        .push(rotated.jwks()["keys"][0].clone());
    *fake.signer.lock().unwrap() = Some(rotated);
    let r = fake_login(&app, &fake, P, "k1", &json!({})).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);

    let unpublished = Keystore::new(vec![(
        Some("unpublished".to_owned()),
        vestibule_keys::generate_ec_p256(&mut rand::rngs::OsRng),
    )])
    .unwrap();
    *fake.signer.lock().unwrap() = Some(unpublished.clone());
    let r = fake_login(&app, &fake, P, "k2", &json!({})).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert!(r.body.contains("no key of the provider"), "{}", r.body);

    // Unknown key ids do not make us fetch the keys again and again: once
    // the provider publishes that key, we only see it after the refresh
    // interval (or the cache's lifetime).
    fake.extra_jwks
        .lock()
        .unwrap()
        .push(unpublished.jwks()["keys"][0].clone());
    let r = fake_login(&app, &fake, P, "k3", &json!({})).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.body);
    app.cleanup().await;
}

/// `id_token_signed_response_alg: HS256`: the ID token is MACed with the
/// client secret (OIDC Core §10.1); another secret, or an asymmetric
/// signature, is refused.
#[tokio::test]
async fn hs256_id_tokens_use_the_client_secret() {
    const HS: &str = "01JB00000000000000000000F1";
    let fake = Fake::start().await;
    let app = UpApp::new(
        crate::upstream_support::sqlite().await,
        vec![provider(
            HS,
            &fake.issuer,
            "rp",
            &json!({"id_token_signed_response_alg": "HS256"}),
        )],
        None,
    )
    .await;
    let r = fake_login(
        &app,
        &fake,
        HS,
        "h1",
        &json!({"hs256_secret": "not-the-secret"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert!(r.body.contains("bad signature"), "{}", r.body);
    let r = fake_login(&app, &fake, HS, "h1", &json!({})).await;
    assert_eq!(
        r.status,
        StatusCode::BAD_GATEWAY,
        "ES256 where HS256 is expected"
    );
    assert!(r.body.contains("signed with"), "{}", r.body);
    assert!(app.link(HS, "h1").await.is_none());
    let r = fake_login(&app, &fake, HS, "h1", &json!({"hs256_secret": SECRET})).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(app.link(HS, "h1").await.is_some());
    app.cleanup().await;
}

/// The link keeps the upstream account's display name (MAS's
/// `account_name` template, else preferred_username, email, sub) for the
/// link offer and account pages, refreshed on every login.
#[tokio::test]
async fn the_link_remembers_the_upstream_account_name() {
    const P: &str = "01JB00000000000000000000E7";
    let fake = Fake::start().await;
    let app = UpApp::new(
        crate::upstream_support::sqlite().await,
        vec![provider(
            P,
            &fake.issuer,
            "rp",
            &json!({"id_token_signed_response_alg": "ES256"}),
        )],
        None,
    )
    .await;
    let r = fake_login(
        &app,
        &fake,
        P,
        "n-1",
        &json!({"preferred_username": "carol.up", "email": "c@corp.example"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let link = app.link(P, "n-1").await.unwrap();
    assert_eq!(link.human_account_name.as_deref(), Some("carol.up"));
    // Renamed upstream (and no username any more): the email next time.
    let r = fake_login(&app, &fake, P, "n-1", &json!({"email": "c@corp.example"})).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let again = app.link(P, "n-1").await.unwrap();
    assert_eq!(again.id, link.id);
    assert_eq!(again.human_account_name.as_deref(), Some("c@corp.example"));
    app.cleanup().await;
}

/// What the tampering proxy does to the real IdP's `id_token`.
#[derive(Clone)]
enum Tamper {
    Pass,
    FlipSignature,
    Replace(String),
    ChangeSub,
}

/// A proxy on 127.0.0.1 in front of the real IdP's token endpoint: it
/// forwards the request and tampers with the ID token of the answer; it
/// keeps every original ID token it saw.
#[derive(Clone)]
struct TokenProxy {
    upstream: String,
    http: reqwest::Client,
    tamper: std::sync::Arc<std::sync::Mutex<Tamper>>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl TokenProxy {
    async fn start(issuer: &str) -> (Self, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let proxy = Self {
            upstream: format!("{issuer}/token"),
            http: reqwest::Client::new(),
            tamper: std::sync::Arc::new(std::sync::Mutex::new(Tamper::Pass)),
            seen: std::sync::Arc::new(std::sync::Mutex::new(Vec::new())),
        };
        let app = axum::Router::new()
            .route("/token", axum::routing::post(proxy_token))
            .with_state(proxy.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (proxy, url)
    }

    fn set(&self, t: Tamper) {
        *self.tamper.lock().unwrap() = t;
    }

    fn last_id_token(&self) -> String {
        self.seen.lock().unwrap().last().unwrap().clone()
    }
}

async fn proxy_token(
    axum::extract::State(p): axum::extract::State<TokenProxy>,
    headers: http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use base64::Engine;
    let mut req = p.http.post(&p.upstream).body(body);
    for name in ["authorization", "content-type", "accept"] {
        if let Some(v) = headers.get(name) {
            req = req.header(name, v.to_str().unwrap());
        }
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let mut answer: Value = res.json().await.unwrap();
    if let Some(original) = answer["id_token"].as_str().map(str::to_owned) {
        p.seen.lock().unwrap().push(original.clone());
        let parts: Vec<&str> = original.split('.').collect();
        assert_eq!(parts.len(), 3, "a JWS from the IdP");
        let tampered = match p.tamper.lock().unwrap().clone() {
            Tamper::Pass => original.clone(),
            Tamper::FlipSignature => {
                // The first character holds 6 whole bits of the signature.
                let first = if parts[2].starts_with('A') { "B" } else { "A" };
                format!("{}.{}.{first}{}", parts[0], parts[1], &parts[2][1..])
            }
            Tamper::Replace(other) => other,
            Tamper::ChangeSub => {
                let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
                let mut claims: Value =
                    serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
                claims["sub"] = json!("mallory-sub");
                let payload = b64.encode(claims.to_string());
                format!("{}.{payload}.{}", parts[0], parts[2])
            }
        };
        answer["id_token"] = json!(tampered);
    }
    (StatusCode::from_u16(status).unwrap(), axum::Json(answer)).into_response()
}

/// The real IdP's own signed ID tokens, tampered with on the way from its
/// token endpoint (a proxy configured as the provider's `token_endpoint`;
/// discovery and keys stay the IdP's): a flipped signature, an ID token
/// the IdP issued to another client, one it issued to the same client in
/// an earlier login (other nonce), a changed `sub` under the original
/// signature. Each is refused with an error page naming the problem, the
/// link is neither made nor changed, the session is not completed; an
/// untampered login through the proxy then completes.
#[tokio::test]
async fn tokens_signed_by_the_real_idp_but_tampered_are_refused() {
    const A: &str = "01JB00000000000000000000A1";
    const B: &str = "01JB00000000000000000000B1";
    let idp = Idp::start(&json!({
        "users": users(),
        "clients": [
            client(A, "client_secret_basic", &json!({"client_id": "client-a"})),
            client(B, "client_secret_basic", &json!({"client_id": "client-b"})),
        ],
    }));
    let (proxy, token_endpoint) = TokenProxy::start(&idp.issuer).await;
    let iss = idp.issuer.as_str();
    let through_proxy = json!({"token_endpoint": token_endpoint});
    let app = UpApp::new(
        crate::upstream_support::sqlite().await,
        vec![
            provider(A, iss, "client-a", &through_proxy),
            provider(B, iss, "client-b", &through_proxy),
        ],
        None,
    )
    .await;

    // Honest logins through the proxy: client B's ID token, and client
    // A's from an earlier login.
    let mut b = app.browser();
    let r = login(&mut b, &mut IdpDriver::default(), B, "alice-sub").await;
    completed(&app, &b, &r, B).await;
    let for_b = proxy.last_id_token();
    let mut b = app.browser();
    let r = login(&mut b, &mut IdpDriver::default(), A, "alice-sub").await;
    completed(&app, &b, &r, A).await;
    let earlier_a = proxy.last_id_token();
    let link_a = app.link(A, "alice-sub").await.unwrap();
    let link_b = app.link(B, "alice-sub").await.unwrap();

    let cases = [
        ("bad signature", Tamper::FlipSignature, "bad signature"),
        ("other client", Tamper::Replace(for_b), "aud does not name"),
        (
            "earlier login",
            Tamper::Replace(earlier_a),
            "nonce does not match",
        ),
        ("changed sub", Tamper::ChangeSub, "bad signature"),
    ];
    for (case, tamper, message) in cases {
        proxy.set(tamper);
        let mut b = app.browser();
        let url = start(&mut b, A, "").await;
        let back = IdpDriver::default().run(url, "alice-sub").await;
        let Back::Redirect(back) = back else {
            panic!("query mode")
        };
        let r = deliver(&mut b, Back::Redirect(back.clone())).await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{case}: {}", r.body);
        assert!(
            r.body.contains(message),
            "{case}: {message:?} not in {}",
            r.body
        );
        assert_eq!(
            app.link(A, "alice-sub").await,
            Some(link_a.clone()),
            "{case}"
        );
        assert_eq!(
            app.link(B, "alice-sub").await,
            Some(link_b.clone()),
            "{case}"
        );
        assert!(app.link(A, "mallory-sub").await.is_none(), "{case}");
        // Not completed: the same answer again is not "already completed"
        // but a new (now refused: the code is spent) exchange.
        proxy.set(Tamper::Pass);
        let r = b.get(&b.path_of(back.as_str())).await;
        assert_ne!(r.status, StatusCode::SEE_OTHER, "{case}: {}", r.body);
        assert!(!r.body.contains("already completed"), "{case}: {}", r.body);
        assert!(r.body.contains("invalid_grant"), "{case}: {}", r.body);

        // An untampered login through the proxy completes.
        let mut b = app.browser();
        let r = login(&mut b, &mut IdpDriver::default(), A, "alice-sub").await;
        completed(&app, &b, &r, A).await;
        assert_eq!(app.link(A, "alice-sub").await.unwrap().id, link_a.id);
    }
    app.cleanup().await;
}
