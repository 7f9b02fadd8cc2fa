//! Login, logout, registration, CSRF, cookies and passwords.
#![allow(
    clippy::many_single_char_names,
    reason = "t(est app), b(rowser), r(esponse) read well here"
)]

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use vestibule_config::sections::passwords::{HashingScheme, PasswordAlgorithm, PasswordsConfig};
use vestibule_domain::oauth2::ClientAuthMethod;
use vestibule_server::{
    passwords::{PasswordManager, PasswordPolicyError, check_new_password},
    session,
};
use zeroize::Zeroizing;

use crate::{
    browser_helpers::{Browser, PASSWORD, add_client, add_user, authorize_uri, params_of},
    harness::TestApp,
};

const CB: &str = "https://client.example/cb";

fn session_of(t: &TestApp, b: &Browser) -> Option<vestibule_domain::Ulid> {
    let mut h = HeaderMap::new();
    h.insert(header::COOKIE, b.cookie_header().parse().unwrap());
    session::session_id(&t.state, &h)
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let t = TestApp::new("http://127.0.0.1:8080/").await;
    add_user(&t.state, "alice", PASSWORD).await;
    let mut b = Browser::new(&t);
    let page = b.get("/login").await;
    let csrf = page.csrf();
    let wrong = b
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", "alice"),
                ("password", "nope nope"),
            ],
        )
        .await;
    let unknown = b
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", "nobody"),
                ("password", "nope nope"),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(
        wrong.body.replace("value=\"alice\"", ""),
        unknown.body.replace("value=\"nobody\"", ""),
        "same page apart from the echoed username"
    );
    assert!(wrong.body.contains("Wrong username or password"));
    assert!(session_of(&t, &b).is_none());
    // The right password, also as a full MXID.
    let ok = b
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", "@alice:example.org"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert!(session_of(&t, &b).is_some());
    // An MXID of another server is not ours.
    let mut b2 = Browser::new(&t);
    let r = b2.login("@alice:evil.example", PASSWORD, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    t.db.cleanup().await;
}

#[tokio::test]
async fn locked_users_are_refused() {
    let t = TestApp::new("http://127.0.0.1:8080/").await;
    let user = add_user(&t.state, "alice", PASSWORD).await;
    let mut repo = t.state.repos.write().await.unwrap();
    repo.users()
        .lock(t.state.clock.as_ref(), user)
        .await
        .unwrap();
    repo.save().await.unwrap();
    let mut b = Browser::new(&t);
    let r = b.login("alice", PASSWORD, None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("locked"), "{}", r.body);
    assert!(session_of(&t, &b).is_none());
    // A wrong password on a locked account says nothing about the lock.
    let r = b.login("alice", "wrong password", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    t.db.cleanup().await;
}

#[tokio::test]
async fn csrf_is_checked_on_every_post() {
    let t = TestApp::new("https://auth.example.org/").await;
    add_user(&t.state, "alice", PASSWORD).await;
    let client = add_client(&t.state, ClientAuthMethod::None, &[CB]).await;
    let mut a = Browser::new(&t);
    let mut other = Browser::new(&t);
    let token_a = a.get("/login").await.csrf();
    let token_other = other.get("/login").await.csrf();
    assert_ne!(token_a, token_other);
    let no_token = a
        .post("/login", &[("username", "alice"), ("password", PASSWORD)])
        .await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    let foreign = a
        .post(
            "/login",
            &[
                ("csrf", &token_other),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(
        foreign.status,
        StatusCode::FORBIDDEN,
        "another browser's token"
    );
    let evil = a
        .post_with(
            "/login",
            &[
                ("csrf", &token_a),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(evil.status, StatusCode::FORBIDDEN, "cross-site Origin");
    let cross = a
        .post_with(
            "/login",
            &[
                ("csrf", &token_a),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN, "Sec-Fetch-Site");
    let null_cross = a
        .post_with(
            "/login",
            &[
                ("csrf", &token_a),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
            &[("origin", "null"), ("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(
        null_cross.status,
        StatusCode::FORBIDDEN,
        "null Origin from another site"
    );
    assert!(session_of(&t, &a).is_none(), "no login happened");
    // What real browsers send for a form POST from our own page, whose
    // Referrer-Policy is no-referrer: `Origin: null` (Fetch standard).
    let null_ours = a
        .post_with(
            "/login",
            &[
                ("csrf", &token_a),
                ("username", "alice"),
                ("password", "wrong password"),
            ],
            &[("origin", "null"), ("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_ne!(
        null_ours.status,
        StatusCode::FORBIDDEN,
        "our own page's POST is not a CSRF"
    );
    let ok = a
        .post_with(
            "/login",
            &[
                ("csrf", &token_a),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
            &[
                ("origin", "https://auth.example.org"),
                ("sec-fetch-site", "same-origin"),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);

    // Consent and logout too.
    let r = a.get(&authorize_uri(&client.client_id, CB, &[])).await;
    let consent = a.path_of(r.location().unwrap());
    assert_eq!(a.get(&consent).await.status, StatusCode::OK);
    let r = a.post(&consent, &[("action", "allow")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = a
        .post(&consent, &[("csrf", &token_other), ("action", "allow")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = a.post("/logout", &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(session_of(&t, &a).is_some(), "still signed in");
    // The token expires (1 hour).
    t.clock.advance(chrono::Duration::hours(2));
    let r = a.post("/logout", &[("csrf", &token_a)]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "expired token");
    t.db.cleanup().await;
}

#[tokio::test]
async fn a_new_session_id_at_every_login_and_logout_kills_the_old_cookie() {
    let t = TestApp::new("http://127.0.0.1:8080/").await;
    add_user(&t.state, "alice", PASSWORD).await;
    let client = add_client(&t.state, ClientAuthMethod::None, &[CB]).await;
    let mut b = Browser::new(&t);
    b.login("alice", PASSWORD, None).await;
    let first = session_of(&t, &b).unwrap();
    let r = b.login("alice", PASSWORD, None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let second = session_of(&t, &b).unwrap();
    assert_ne!(first, second, "session fixation (S21)");
    let mut repo = t.state.repos.read().await.unwrap();
    let old = repo
        .browser_sessions()
        .lookup(first)
        .await
        .unwrap()
        .unwrap();
    assert!(!old.is_active(), "the previous session is finished");
    drop(repo);

    let saved = b.clone();
    let page = b.get("/logout").await;
    assert!(page.body.contains("@alice:example.org"));
    let csrf = page.csrf();
    let r = b.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.starts_with("vestibule-session=;") && c.contains("Max-Age=0")),
        "{:?}",
        r.set_cookies()
    );
    assert!(session_of(&t, &b).is_none());
    // Replaying the old cookie does not sign in.
    let mut replay = saved;
    let r = replay.get("/").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.location().unwrap().ends_with("/login"));
    let r = replay
        .get(&authorize_uri(&client.client_id, CB, &[("prompt", "none")]))
        .await;
    assert_eq!(
        params_of(r.location().unwrap(), false)["error"],
        "login_required"
    );
    t.db.cleanup().await;
}

#[tokio::test]
async fn cookie_attributes() {
    let t = TestApp::new("https://auth.example.org/").await;
    add_user(&t.state, "alice", PASSWORD).await;
    let mut b = Browser::new(&t);
    let r = b.login("alice", PASSWORD, None).await;
    let c = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__Host-vestibule-session="))
        .expect("__Host- session cookie on https");
    for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(c.contains(attr), "{attr} missing: {c}");
    }
    assert!(!c.contains("Domain"), "{c}");
    let value = c.split(';').next().unwrap().split_once('=').unwrap().1;
    assert!(
        !value.contains(&session_of(&t, &b).unwrap().to_string()),
        "encrypted"
    );
    let csrf_cookie = b.jar.keys().find(|k| k.contains("csrf")).unwrap();
    assert_eq!(csrf_cookie, "__Host-vestibule-csrf");

    let t2 = TestApp::new("http://127.0.0.1:8080/").await;
    add_user(&t2.state, "alice", PASSWORD).await;
    let mut b = Browser::new(&t2);
    let r = b.login("alice", PASSWORD, None).await;
    let c = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("vestibule-session="))
        .expect("plain name on http");
    assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax"));
    assert!(!c.contains("Secure"), "{c}");
    t.db.cleanup().await;
    t2.db.cleanup().await;
}

#[tokio::test]
async fn bcrypt_import_is_upgraded_to_argon2id_at_login() {
    let t = TestApp::with_config("http://127.0.0.1:8080/", |c| {
        c.passwords = PasswordsConfig {
            schemes: vec![
                HashingScheme {
                    version: 1,
                    algorithm: PasswordAlgorithm::Bcrypt,
                    unicode_normalization: true,
                    cost: Some(4),
                    secret: None,
                    secret_file: None,
                },
                HashingScheme {
                    version: 2,
                    algorithm: PasswordAlgorithm::Argon2id,
                    unicode_normalization: false,
                    cost: None,
                    secret: None,
                    secret_file: None,
                },
            ],
            ..PasswordsConfig::default()
        };
    })
    .await;
    let mut rng = t.state.rng.rng();
    let bcrypt_hash = bcrypt::hash_with_salt(PASSWORD, 4, [7u8; 16])
        .unwrap()
        .format_for_version(bcrypt::Version::TwoB);
    let mut repo = t.state.repos.write().await.unwrap();
    let user = repo
        .users()
        .add(&mut rng, t.state.clock.as_ref(), "imported")
        .await
        .unwrap();
    let old = repo
        .user_passwords()
        .add(
            &mut rng,
            t.state.clock.as_ref(),
            &user,
            1,
            bcrypt_hash,
            None,
        )
        .await
        .unwrap();
    repo.save().await.unwrap();

    let mut b = Browser::new(&t);
    let r = b.login("imported", PASSWORD, None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let mut repo = t.state.repos.read().await.unwrap();
    let now = repo.user_passwords().active(&user).await.unwrap().unwrap();
    assert_eq!(now.version, 2);
    assert!(now.hashed_password.starts_with("$argon2id$"));
    assert_eq!(now.upgraded_from_id, Some(old.id));
    drop(repo);
    // And the upgraded hash works.
    let mut b = Browser::new(&t);
    assert_eq!(
        b.login("imported", PASSWORD, None).await.status,
        StatusCode::SEE_OTHER
    );
    t.db.cleanup().await;
}

#[tokio::test]
async fn a_saturated_hashing_pool_answers_503() {
    let mut t = TestApp::new("http://127.0.0.1:8080/").await;
    add_user(&t.state, "alice", PASSWORD).await;
    t.state.passwords =
        PasswordManager::with_limits(&PasswordsConfig::default(), 0, Duration::from_millis(20))
            .unwrap();
    let mut b = Browser::new(&t);
    let r = b.login("alice", PASSWORD, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.header("retry-after"), Some("5"));
    t.db.cleanup().await;
}

#[tokio::test]
async fn password_policy() {
    assert_eq!(
        check_new_password("1234567"),
        Err(PasswordPolicyError::TooShort)
    );
    assert_eq!(
        check_new_password("seven!!"),
        Err(PasswordPolicyError::TooShort)
    );
    assert_eq!(check_new_password("eight!!x"), Ok(()));
    assert_eq!(
        check_new_password("password123"),
        Err(PasswordPolicyError::TooCommon)
    );
    assert_eq!(
        check_new_password("iloveyou"),
        Err(PasswordPolicyError::TooCommon)
    );
    let long: String = "abcdefgh".repeat(16);
    assert_eq!(long.len(), 128);
    assert_eq!(check_new_password(&long), Ok(()));
    assert_eq!(
        check_new_password(&format!("{long}x")),
        Err(PasswordPolicyError::TooLong)
    );
    // 128 characters are verified in full: changing the last one fails.
    let m = PasswordManager::from_config(&PasswordsConfig::default()).unwrap();
    let mut rng = rand::rngs::OsRng;
    let (v, hash) = m
        .hash(&mut rng, Zeroizing::new(long.clone()))
        .await
        .unwrap();
    assert!(
        m.verify(&mut rng, v, hash.clone(), Zeroizing::new(long.clone()))
            .await
            .unwrap()
            .valid
    );
    let mut changed = long[..127].to_owned();
    changed.push('X');
    assert!(
        !m.verify(&mut rng, v, hash, Zeroizing::new(changed))
            .await
            .unwrap()
            .valid
    );
}

#[tokio::test]
async fn registration_continues_the_grant_or_is_closed() {
    let t = TestApp::with_config("http://127.0.0.1:8080/", |c| {
        c.account.password_registration_enabled = true;
        c.account.password_registration_email_required = false;
    })
    .await;
    let client = add_client(&t.state, ClientAuthMethod::None, &[CB]).await;
    let mut b = Browser::new(&t);
    let r = b
        .get(&authorize_uri(
            &client.client_id,
            CB,
            &[("prompt", "create")],
        ))
        .await;
    let reg = b.path_of(r.location().unwrap());
    assert!(reg.starts_with("/register?grant="), "{reg}");
    let grant = reg.trim_start_matches("/register?grant=").to_owned();
    let page = b.get(&reg).await;
    assert!(page.body.contains("Create an account"));
    let csrf = page.csrf();
    let short = b
        .post(
            "/register",
            &[
                ("csrf", &csrf),
                ("username", "newbie"),
                ("password", "short12"),
                ("grant", &grant),
            ],
        )
        .await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST);
    assert!(short.body.contains("at least 8"), "{}", short.body);
    let common = b
        .post(
            "/register",
            &[
                ("csrf", &csrf),
                ("username", "newbie"),
                ("password", "password123"),
                ("grant", &grant),
            ],
        )
        .await;
    assert!(common.body.contains("too common"));
    let ok = b
        .post(
            "/register",
            &[
                ("csrf", &csrf),
                ("username", "newbie"),
                ("password", PASSWORD),
                ("grant", &grant),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    assert_eq!(
        b.path_of(ok.location().unwrap()),
        format!("/consent/{grant}")
    );
    let consent = b.follow(&ok).await;
    assert!(consent.body.contains("@newbie:example.org"));
    let mut b2 = Browser::new(&t);
    let csrf2 = b2.get("/register").await.csrf();
    let dup = b2
        .post(
            "/register",
            &[
                ("csrf", &csrf2),
                ("username", "newbie"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert!(dup.body.contains("taken"));

    // Closed by default.
    let closed = TestApp::new("http://127.0.0.1:8080/").await;
    let mut b = Browser::new(&closed);
    let page = b.get("/register").await;
    assert!(
        page.body.contains("Registration is closed"),
        "{}",
        page.body
    );
    let csrf = b.get("/login").await.csrf();
    let r = b
        .post(
            "/register",
            &[
                ("csrf", &csrf),
                ("username", "xavier"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    t.db.cleanup().await;
    closed.db.cleanup().await;
}
