//! OpenID Connect Back-Channel Logout 1.0 from the upstream provider: the
//! real `oidc-provider` posts a logout token to our receiver (served on a
//! real port) when the user signs out there; refusals with tokens a fake
//! provider signs.

use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use serde_json::{Value, json};
use vestibule_domain::{Ulid, browser_session::BrowserSession, compat::CompatSession};

use crate::{
    harness::{body_json, send},
    upstream_support::{
        Fake, Idp, IdpDriver, SECRET, UpApp, callback, link_session_id, login, provider, sqlite,
        users,
    },
};

const IDP: &str = "01JB00000000000000000000B1";
const FAKE: &str = "01JB00000000000000000000B2";

async fn browser_session(app: &UpApp, id: Ulid) -> BrowserSession {
    let mut repo = app.t.state.repos.read().await.unwrap();
    repo.browser_sessions().lookup(id).await.unwrap().unwrap()
}

/// The app with one provider, `FAKE`, backed by `fake` and configured
/// with `options`, on SQLite.
async fn fake_app(fake: &Fake, options: &Value) -> UpApp {
    UpApp::new(
        sqlite().await,
        vec![provider(FAKE, &fake.issuer, "rp", options)],
        None,
    )
    .await
}

async fn compat_session(app: &UpApp, id: Ulid) -> CompatSession {
    let mut repo = app.t.state.repos.read().await.unwrap();
    repo.compat_sessions().lookup(id).await.unwrap().unwrap()
}

/// Provider options: ID tokens signed with ES256 (as `Fake` signs), and
/// `on_backchannel_logout` set to `mode`.
fn es256(mode: &str) -> Value {
    json!({
        "id_token_signed_response_alg": "ES256",
        "on_backchannel_logout": mode,
    })
}

/// Signing out at the IdP ends the browser session the upstream login
/// started and (`logout_all`) the legacy session started from it, whose
/// device is deleted on the homeserver; another browser session of the
/// same user (password login) stays. On SQLite and PostgreSQL.
#[tokio::test]
async fn logout_at_the_real_idp_ends_our_sessions() {
    for db in crate::compat_support::databases().await {
        real_idp_logout(db).await;
    }
}

async fn real_idp_logout(db: vestibule_storage_sql::testing::TestDatabase) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ours = format!("http://{}", listener.local_addr().unwrap());
    let idp = Idp::start(&json!({
        "users": users(),
        "clients": [{
            "client_id": "rp",
            "client_secret": SECRET,
            "redirect_uris": [callback(IDP)],
            "backchannel_logout_uri": format!("{ours}/upstream/backchannel-logout/{IDP}"),
            "backchannel_logout_session_required": true,
        }],
    }));
    let app = UpApp::new(
        db,
        vec![provider(
            IDP,
            &idp.issuer,
            "rp",
            &json!({"on_backchannel_logout": "logout_all"}),
        )],
        None,
    )
    .await;
    let router = app.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let mut b = app.browser();
    let mut driver = IdpDriver::default();
    let r = login(&mut b, &mut driver, IDP, "alice-sub").await;
    let session_id = link_session_id(&b, &r);
    let upstream = app.session(&session_id).await;
    assert!(
        upstream.sid.is_some(),
        "oidc-provider sends sid: {upstream:?}"
    );

    // What the link page does once the user registers: the user, the link,
    // a browser session authenticated by this upstream session; then a
    // legacy login from it.
    let state = &app.t.state;
    let mut rng = state.rng.rng();
    let mut repo = state.repos.write().await.unwrap();
    let user = repo
        .users()
        .add(&mut rng, state.clock.as_ref(), "alice")
        .await
        .unwrap();
    let link = repo
        .upstream_links()
        .lookup(upstream.link_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    let link = repo
        .upstream_links()
        .associate_to_user(link, &user)
        .await
        .unwrap();
    let bs = repo
        .browser_sessions()
        .add(&mut rng, state.clock.as_ref(), &user, None)
        .await
        .unwrap();
    repo.browser_sessions()
        .authenticate_with_upstream(&mut rng, state.clock.as_ref(), &bs, &link, Some(&upstream))
        .await
        .unwrap();
    let compat = repo
        .compat_sessions()
        .add(
            &mut rng,
            state.clock.as_ref(),
            &user,
            "DEVUP",
            None,
            Some(&bs),
            false,
        )
        .await
        .unwrap();
    let other = repo
        .browser_sessions()
        .add(&mut rng, state.clock.as_ref(), &user, None)
        .await
        .unwrap();
    repo.save().await.unwrap();

    // The user signs out at the IdP, which calls our receiver before it
    // answers.
    driver.end_session(&idp.issuer).await;

    assert!(browser_session(&app, bs.id).await.finished_at.is_some());
    assert!(
        browser_session(&app, other.id).await.finished_at.is_none(),
        "a session not started by that upstream login stays"
    );
    let compat = compat_session(&app, compat.id).await;
    assert!(
        compat.finished_at.is_some(),
        "logout_all ends client sessions"
    );
    assert!(
        app.hs
            .calls()
            .iter()
            .any(|c| c.starts_with("delete_device alice")),
        "{:?}",
        app.hs.calls()
    );
    app.cleanup().await;
}

async fn post_token(app: &UpApp, token: Option<&str>) -> (StatusCode, Value) {
    let body = match token {
        Some(t) => url::form_urlencoded::Serializer::new(String::new())
            .append_pair("logout_token", t)
            .finish(),
        None => String::new(),
    };
    let res = send(
        &app.router(),
        Request::post(format!("/upstream/backchannel-logout/{FAKE}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap(),
    )
    .await;
    let status = res.status();
    assert_eq!(
        res.headers().get(header::CACHE_CONTROL).unwrap(),
        "no-store"
    );
    let body = if status == StatusCode::OK {
        Value::Null
    } else {
        body_json(res).await
    };
    (status, body)
}

/// §2.6: a logout token is refused (400, `invalid_request` with a
/// description, §2.8) with a bad signature, without the event, with a
/// nonce, without sub and sid, with a wrong aud or iss, or missing; a good
/// one is accepted (200).
#[tokio::test]
async fn bad_logout_tokens_are_refused() {
    let fake = Fake::start().await;
    let app = fake_app(&fake, &es256("logout_browser_only")).await;
    let now = app.t.clock.now().timestamp();
    let good = json!({
        "iss": fake.issuer, "aud": "rp", "iat": now, "exp": now + 120,
        "jti": "j1", "sub": "someone", "sid": "s1",
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    });
    let (status, _) = post_token(&app, Some(&fake.sign_logout(&good))).await;
    assert_eq!(status, StatusCode::OK);
    // §2.6 item 10: the same token (its jti) again is refused.
    let (status, body) = post_token(&app, Some(&fake.sign_logout(&good))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let d = body["error_description"].as_str().unwrap();
    assert!(d.contains("jti was already used"), "{d}");

    let other = vestibule_keys::Keystore::new(vec![(
        Some("fake".to_owned()),
        vestibule_keys::generate_ec_p256(&mut rand::rngs::OsRng),
    )])
    .unwrap();
    let forged = other.sign_typed_jwt("ES256", "logout+jwt", &good).unwrap();
    let (status, body) = post_token(&app, Some(&forged)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("bad signature")
    );

    let cases: Vec<(&str, Value, &str)> = vec![
        ("events", Value::Null, "events"),
        ("events", json!({"other": {}}), "events"),
        ("nonce", json!("n"), "nonce"),
        ("aud", json!("someone-else"), "aud"),
        ("iss", json!("https://evil.example"), "iss"),
        ("jti", Value::Null, "jti"),
        ("iat", json!(now + 3600), "future"),
        // §2.6 item 10: too old to be worth remembering its jti.
        ("iat", json!(now - 3600), "too long ago"),
        // §2.4 (errata): exp is required, and must not be past.
        ("exp", Value::Null, "exp is missing"),
        ("exp", json!(now - 3600), "expired"),
    ];
    for (key, value, message) in cases {
        let mut claims = good.clone();
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(key);
        } else {
            claims[key] = value;
        }
        let (status, body) = post_token(&app, Some(&fake.sign_logout(&claims))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{key}");
        let d = body["error_description"].as_str().unwrap();
        assert!(d.contains(message), "{key}: {d}");
    }
    let mut neither = good.clone();
    neither.as_object_mut().unwrap().remove("sub");
    neither.as_object_mut().unwrap().remove("sid");
    let (status, _) = post_token(&app, Some(&fake.sign_logout(&neither))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // §2.4 / RFC 8725 §3.11: a token typed as another kind of JWT (e.g. an
    // access token) is refused; `logout+jwt` and the generic `JWT` that
    // several providers send are accepted (the `events` claim and the
    // absence of `nonce` already keep an ID token from passing as one).
    let mut another = good.clone();
    another["jti"] = json!("j-typ");
    let (status, body) = post_token(&app, Some(&fake.sign_typed("at+jwt", &another))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let d = body["error_description"].as_str().unwrap();
    assert!(d.contains("typ"), "{d}");
    let (status, body) = post_token(&app, Some(&fake.sign_typed("JWT", &another))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = post_token(&app, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request");
    app.cleanup().await;
}

/// A logout token with `sid` and no `sub` (§2.4 allows either) ends the
/// browser sessions whose upstream login carried that provider session,
/// and only those (`logout_browser_only`: the legacy session stays).
#[tokio::test]
async fn a_sid_only_logout_token_ends_that_provider_session() {
    let fake = Fake::start().await;
    let app = fake_app(&fake, &es256("logout_browser_only")).await;
    let sessions = carol_sessions(&app, &fake, &["op-sid-1", "op-sid-2"]).await;
    let now = app.t.clock.now().timestamp();
    let token = fake.sign_logout(&json!({
        "iss": fake.issuer, "aud": "rp", "iat": now, "exp": now + 120, "jti": "j-sid", "sid": "op-sid-2",
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    }));
    let (status, _) = post_token(&app, Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        browser_session(&app, sessions[1].0.id)
            .await
            .finished_at
            .is_some()
    );
    assert!(
        browser_session(&app, sessions[0].0.id)
            .await
            .finished_at
            .is_none(),
        "another provider session of the same user stays"
    );
    let compat = compat_session(&app, sessions[1].1.id).await;
    assert!(compat.finished_at.is_none(), "logout_browser_only");
    assert!(
        app.hs
            .calls()
            .iter()
            .all(|c| !c.starts_with("delete_device"))
    );
    app.cleanup().await;
}

/// §2.4: "Logout Tokens MUST be signed". A provider configured with
/// `id_token_signed_response_alg: none` (which config validation allows
/// only with `on_backchannel_logout: do_nothing`; here it is set directly)
/// still never gets an unsigned logout token accepted.
#[tokio::test]
async fn unsigned_logout_tokens_are_refused_even_with_alg_none() {
    use base64::Engine;
    let fake = Fake::start().await;
    let app = fake_app(
        &fake,
        &json!({
            "id_token_signed_response_alg": "none",
            "on_backchannel_logout": "logout_all",
        }),
    )
    .await;
    let now = app.t.clock.now().timestamp();
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let claims = json!({
        "iss": fake.issuer, "aud": "rp", "iat": now, "exp": now + 120,
        "jti": "j-none", "sub": "someone",
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    });
    for typ in ["logout+jwt", "JWT"] {
        let unsigned = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": typ})),
            b64(&claims)
        );
        let (status, body) = post_token(&app, Some(&unsigned)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{typ}");
        let d = body["error_description"].as_str().unwrap();
        assert!(d.contains("unsigned"), "{d}");
    }
    app.cleanup().await;
}

/// Carol signs in through the fake provider once per provider session
/// `sid`; each login gets a browser session and a compat session on it.
async fn carol_sessions(
    app: &UpApp,
    fake: &Fake,
    sids: &[&str],
) -> Vec<(BrowserSession, CompatSession)> {
    let state = &app.t.state;
    let mut sessions = Vec::new();
    for &sid in sids {
        let mut b = app.browser();
        let r = b.get(&format!("/upstream/authorize/{FAKE}")).await;
        let q = crate::browser_helpers::params_of(r.location().unwrap(), false);
        let now = app.t.clock.now().timestamp();
        *fake.claims.lock().unwrap() = json!({
            "iss": fake.issuer, "sub": "carol-sub", "aud": "rp", "sid": sid,
            "nonce": q["nonce"], "iat": now, "exp": now + 300,
        });
        let r = b
            .get(&format!(
                "/upstream/callback/{FAKE}?code=c&state={}",
                q["state"]
            ))
            .await;
        let upstream = app.session(&link_session_id(&b, &r)).await;
        let mut rng = state.rng.rng();
        let mut repo = state.repos.write().await.unwrap();
        let existing = repo.users().find_by_username("carol").await.unwrap();
        let user = match existing {
            Some(u) => u,
            None => repo
                .users()
                .add(&mut rng, state.clock.as_ref(), "carol")
                .await
                .unwrap(),
        };
        let link = repo
            .upstream_links()
            .lookup(upstream.link_id.unwrap())
            .await
            .unwrap()
            .unwrap();
        let link = repo
            .upstream_links()
            .associate_to_user(link, &user)
            .await
            .unwrap();
        let bs = repo
            .browser_sessions()
            .add(&mut rng, state.clock.as_ref(), &user, None)
            .await
            .unwrap();
        repo.browser_sessions()
            .authenticate_with_upstream(&mut rng, state.clock.as_ref(), &bs, &link, Some(&upstream))
            .await
            .unwrap();
        let compat = repo
            .compat_sessions()
            .add(
                &mut rng,
                state.clock.as_ref(),
                &user,
                sid,
                None,
                Some(&bs),
                false,
            )
            .await
            .unwrap();
        repo.save().await.unwrap();
        sessions.push((bs, compat));
    }
    sessions
}

/// With a subject template, links are keyed by the rendered subject: a
/// logout token's raw `sub` equal to a rendered subject must not end that
/// link's sessions; its `sid` alone is used.
#[tokio::test]
async fn with_a_subject_template_only_sid_finds_sessions() {
    let fake = Fake::start().await;
    let mut options = es256("logout_browser_only");
    options["claims_imports"] = json!({"subject": {"template": "t1-{{ user.sub }}"}});
    let app = fake_app(&fake, &options).await;
    let sessions = carol_sessions(&app, &fake, &["op-sid-1"]).await;
    let bs = sessions[0].0.id;
    let now = app.t.clock.now().timestamp();
    let token = |jti: &str, sub: &str, sid: Option<&str>| {
        let mut claims = json!({
            "iss": fake.issuer, "aud": "rp", "iat": now, "exp": now + 120,
            "jti": jti, "sub": sub,
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        });
        if let Some(sid) = sid {
            claims["sid"] = json!(sid);
        }
        fake.sign_logout(&claims)
    };
    // The raw sub equals the link's rendered subject, and no sid: nothing
    // is ended (matching it would end every session of that link).
    let (status, _) = post_token(&app, Some(&token("j1", "t1-carol-sub", None))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        browser_session(&app, bs).await.finished_at.is_none(),
        "a raw sub is not matched against rendered subjects"
    );
    let (status, _) = post_token(&app, Some(&token("j2", "whatever", Some("op-sid-1")))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(browser_session(&app, bs).await.finished_at.is_some());
    app.cleanup().await;
}

/// `on_backchannel_logout: do_nothing`: a valid logout token naming
/// Carol's `sub` and provider session is answered 200 as MAS answers it,
/// and ends nothing (browser and legacy sessions stay, no device leaves
/// the homeserver); an invalid one is still refused (§2.6).
#[tokio::test]
async fn do_nothing_accepts_a_valid_logout_token_and_ends_nothing() {
    let fake = Fake::start().await;
    let app = fake_app(&fake, &es256("do_nothing")).await;
    let sessions = carol_sessions(&app, &fake, &["op-sid-1"]).await;
    let now = app.t.clock.now().timestamp();
    let claims = json!({
        "iss": fake.issuer, "aud": "rp", "iat": now, "exp": now + 120,
        "jti": "j-nothing", "sub": "carol-sub", "sid": "op-sid-1",
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    });
    let mut wrong_aud = claims.clone();
    wrong_aud["aud"] = json!("someone-else");
    let (status, body) = post_token(&app, Some(&fake.sign_logout(&wrong_aud))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_request");

    let (status, body) = post_token(&app, Some(&fake.sign_logout(&claims))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (bs, compat) = &sessions[0];
    assert!(browser_session(&app, bs.id).await.finished_at.is_none());
    let compat = compat_session(&app, compat.id).await;
    assert!(compat.finished_at.is_none());
    assert!(
        app.hs
            .calls()
            .iter()
            .all(|c| !c.starts_with("delete_device")),
        "{:?}",
        app.hs.calls()
    );
    app.cleanup().await;
}
