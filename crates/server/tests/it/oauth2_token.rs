//! `POST /oauth2/token`: the authorization code grant, client credentials,
//! refused grants and request hygiene (S05–S10, S15, S25).

use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use vestibule_domain::oauth2::{ClientAuthMethod, Pkce};
use vestibule_storage_sql::testing::TestDatabase;

use crate::{
    harness::body_json,
    oauth2_support::{
        CLIENT_SECRET, Fx, GrantOpts, ISSUER, REDIRECT, SCOPE, VERIFIER, assert_error, basic,
        str_of,
    },
};

fn b64url_json(part: &str) -> Value {
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn code_exchange_returns_tokens_and_a_verified_id_token() {
    let fx = Fx::new().await;
    let client = fx.public_client().await;
    let g = fx.grant_for(&client, None, GrantOpts::default()).await;
    // The login happened a while before the exchange: auth_time ≠ iat.
    fx.advance(30);
    let res = fx.exchange(&client, &g.code).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    let body = body_json(res).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert_eq!(
        body["scope"], SCOPE,
        "the scope as granted, client spelling"
    );
    let at = str_of(&body, "access_token");
    assert!(at.starts_with("mat_"), "{at}");
    assert!(str_of(&body, "refresh_token").starts_with("mar_"));

    let id_token = str_of(&body, "id_token");
    let claims = fx.t.state.keystore.verify_jwt(id_token).unwrap();
    let header = b64url_json(id_token.split('.').next().unwrap());
    assert_eq!(header["kid"], "test-key");
    assert_eq!(
        header["alg"], "ES256",
        "RS256 is the default, the only key is P-256: its default alg"
    );
    let now = fx.t.clock.now().timestamp();
    let digest = Sha256::digest(at.as_bytes());
    let at_hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16]);
    assert_eq!(
        claims,
        json!({
            "iss": ISSUER,
            "sub": g.user.id.to_string(),
            "aud": client.client_id,
            "azp": client.client_id,
            "iat": now,
            "exp": now + 3600,
            "nonce": "n-0S6_WzA2Mj",
            "auth_time": g.auth.created_at.timestamp(),
            "at_hash": at_hash,
        })
    );
    assert_eq!(claims["auth_time"], now - 30);
    assert!(fx.is_active(at).await);
    fx.cleanup().await;
}

#[tokio::test]
async fn no_id_token_without_openid() {
    let fx = Fx::new().await;
    let client = fx.public_client().await;
    let scope = "urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:org.matrix.msc2967.client:device:DEV1";
    let g = fx
        .grant_for(
            &client,
            None,
            GrantOpts {
                scope,
                ..GrantOpts::default()
            },
        )
        .await;
    let body = fx.exchange_ok(&client, &g.code).await;
    assert!(body.get("id_token").is_none());
    assert_eq!(body["scope"], scope, "unstable spelling echoed");
    fx.cleanup().await;
}

#[tokio::test]
async fn pkce_verifier_must_be_present_s256_and_right() {
    let fx = Fx::new().await;
    let client = fx.public_client().await;
    let user = fx.user("bob", None).await;
    let g = fx
        .grant_for(&client, Some(user.clone()), GrantOpts::default())
        .await;
    let base = [
        ("grant_type", "authorization_code"),
        ("code", g.code.as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", client.client_id.as_str()),
    ];
    let too_short = "a".repeat(42);
    let too_long = "a".repeat(129);
    let wrong = "b".repeat(43);
    let illegal = format!("{}+", "a".repeat(43));
    for verifier in [
        None,
        Some(wrong.as_str()),
        Some(too_short.as_str()),
        Some(too_long.as_str()),
        Some(illegal.as_str()),
    ] {
        let mut form = base.to_vec();
        if let Some(v) = verifier {
            form.push(("code_verifier", v));
        }
        let res = fx.token(&form).await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    }
    // None of the failures spent the code.
    fx.exchange_ok(&client, &g.code).await;

    // A grant stored with `plain` never verifies.
    let plain = fx
        .grant_for(
            &client,
            Some(user),
            GrantOpts {
                pkce: Some(Pkce {
                    challenge_method: "plain".to_owned(),
                    challenge: VERIFIER.to_owned(),
                }),
                ..GrantOpts::default()
            },
        )
        .await;
    let res = fx.exchange(&client, &plain.code).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    fx.cleanup().await;
}

#[tokio::test]
async fn pkce_downgrade_is_refused() {
    let fx = Fx::new().await;
    let client = fx
        .confidential_client(ClientAuthMethod::ClientSecretBasic, &["authorization_code"])
        .await;
    let g = fx
        .grant_for(
            &client,
            None,
            GrantOpts {
                pkce: None,
                ..GrantOpts::default()
            },
        )
        .await;
    let auth = Some(basic(&client.client_id, CLIENT_SECRET));
    let form = vec![
        ("grant_type", "authorization_code"),
        ("code", g.code.as_str()),
        ("redirect_uri", REDIRECT),
    ];
    let mut with_verifier = form.clone();
    with_verifier.push(("code_verifier", VERIFIER));
    let res = fx
        .post_form("/oauth2/token", &with_verifier, auth.clone())
        .await;
    let body = assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("code_challenge")
    );
    // Without the verifier the same code works: the client authenticated.
    let res = fx.post_form("/oauth2/token", &form, auth).await;
    let status = res.status();
    let body = body_json(res).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.get("refresh_token").is_none(),
        "no refresh token for a client without the refresh_token grant"
    );
    fx.cleanup().await;
}

#[tokio::test]
async fn a_reused_code_fails_and_ends_the_first_session() {
    let fx = Fx::new().await;
    let client = fx.public_client().await;
    let g = fx.grant_for(&client, None, GrantOpts::default()).await;
    let first = fx.exchange_ok(&client, &g.code).await;
    let at = str_of(&first, "access_token");
    let rt = str_of(&first, "refresh_token");
    assert!(fx.is_active(at).await && fx.is_active(rt).await);
    fx.advance(30);
    let res = fx.exchange(&client, &g.code).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert!(!fx.is_active(at).await, "the first access token is revoked");
    assert!(
        !fx.is_active(rt).await,
        "the first refresh token is revoked"
    );
    let res = fx.refresh(&client, rt).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    fx.cleanup().await;
}

async fn parallel_exchanges(fx: Fx) {
    let client = fx.public_client().await;
    let g = fx.grant_for(&client, None, GrantOpts::default()).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let app = fx.app.clone();
        let form = serde_urlencoded::to_string([
            ("grant_type", "authorization_code"),
            ("code", g.code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", client.client_id.as_str()),
        ])
        .unwrap();
        tasks.push(tokio::spawn(async move {
            let req = Request::post("/oauth2/token")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(axum::body::Body::from(form))
                .unwrap();
            let res = crate::harness::send(&app, req).await;
            let status = res.status();
            (status, body_json(res).await)
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        if status == StatusCode::OK {
            ok += 1;
        } else {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(body["error"], "invalid_grant");
        }
    }
    assert_eq!(ok, 1, "exactly one exchange wins");
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_parallel_exchanges_have_one_winner_sqlite() {
    parallel_exchanges(Fx::new().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_parallel_exchanges_have_one_winner_postgres() {
    let Some(db) = TestDatabase::postgres().await.expect("postgres") else {
        return;
    };
    parallel_exchanges(Fx::on(db, |_| {})).await;
}

#[tokio::test]
async fn code_is_bound_to_client_and_redirect_uri() {
    let fx = Fx::new().await;
    let client = fx.public_client().await;
    let other = fx.public_client().await;
    let g = fx.grant_for(&client, None, GrantOpts::default()).await;
    let res = fx.exchange(&other, &g.code).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    for redirect in [
        "https://app.example.org/cb/",
        "https://app.example.org/cb?x=1",
        "https://evil.example.org/cb",
    ] {
        let res = fx
            .token(&[
                ("grant_type", "authorization_code"),
                ("code", &g.code),
                ("redirect_uri", redirect),
                ("code_verifier", VERIFIER),
                ("client_id", &client.client_id),
            ])
            .await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    }
    let res = fx
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &g.code),
            ("code_verifier", VERIFIER),
            ("client_id", &client.client_id),
        ])
        .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    // Still unspent: the right client and URI succeed.
    fx.exchange_ok(&client, &g.code).await;
    fx.cleanup().await;
}

#[tokio::test]
async fn codes_expire() {
    let fx = Fx::new().await;
    let client = fx.public_client().await;
    let user = fx.user("carol", None).await;
    let fresh = fx
        .grant_for(&client, Some(user.clone()), GrantOpts::default())
        .await;
    let late = fx
        .grant_for(&client, Some(user), GrantOpts::default())
        .await;
    fx.advance(60);
    fx.exchange_ok(&client, &fresh.code).await;
    fx.advance(1);
    let res = fx.exchange(&client, &late.code).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    fx.cleanup().await;
}

#[tokio::test]
async fn locked_user_gets_no_tokens() {
    let fx = Fx::new().await;
    let client = fx.public_client().await;
    let g = fx.grant_for(&client, None, GrantOpts::default()).await;
    let mut repo = fx.t.state.repos.write().await.unwrap();
    repo.users()
        .lock(&*fx.t.clock, g.user.clone())
        .await
        .unwrap();
    repo.save().await.unwrap();
    let res = fx.exchange(&client, &g.code).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    fx.cleanup().await;
}

#[tokio::test]
async fn refused_grant_types() {
    let fx = Fx::new().await;
    let public = fx
        .client_with(vestibule_storage::oauth2::ClientParams {
            grant_types: vec![
                "authorization_code".to_owned(),
                "client_credentials".to_owned(),
            ],
            ..Fx::params(ClientAuthMethod::None, &[])
        })
        .await;
    for grant_type in ["password", "implicit", "urn:example:unknown"] {
        let res = fx
            .token(&[
                ("grant_type", grant_type),
                ("username", "alice"),
                ("password", "x"),
                ("client_id", &public.client_id),
            ])
            .await;
        assert_error(res, StatusCode::BAD_REQUEST, "unsupported_grant_type").await;
    }
    // RFC 6749 §4.4.2: client_credentials is for confidential clients only,
    // even if a public client lists it.
    let res = fx
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &public.client_id),
        ])
        .await;
    assert_error(res, StatusCode::BAD_REQUEST, "unauthorized_client").await;
    // A grant the client did not register.
    let res = fx
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "mar_x"),
            ("client_id", &public.client_id),
        ])
        .await;
    assert_error(res, StatusCode::BAD_REQUEST, "unauthorized_client").await;
    let res = fx.token(&[("client_id", &public.client_id)]).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    fx.cleanup().await;
}

#[tokio::test]
async fn client_credentials_for_a_confidential_client() {
    let fx = Fx::new().await;
    let client = fx
        .confidential_client(ClientAuthMethod::ClientSecretPost, &["client_credentials"])
        .await;
    let res = fx
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &client.client_id),
            ("client_secret", CLIENT_SECRET),
        ])
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = body_json(res).await;
    assert!(body.get("refresh_token").is_none(), "RFC 6749 §4.4.3");
    assert!(body.get("id_token").is_none());
    let at = str_of(&body, "access_token");
    let v = fx.introspect(at).await;
    assert_eq!(v["active"], true);
    assert_eq!(v["client_id"], client.client_id.as_str());
    assert!(v.get("username").is_none() && v.get("sub").is_none(), "{v}");
    // No user: no Matrix or admin scopes.
    let res = fx
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &client.client_id),
            ("client_secret", CLIENT_SECRET),
            ("scope", "urn:synapse:admin:*"),
        ])
        .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_scope").await;
    fx.cleanup().await;
}

#[tokio::test]
async fn duplicated_parameters_are_invalid_requests() {
    let fx = Fx::new().await;
    let client = fx.public_client().await;
    let g = fx.grant_for(&client, None, GrantOpts::default()).await;
    for dup in [
        "code",
        "redirect_uri",
        "client_id",
        "code_verifier",
        "grant_type",
    ] {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", g.code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", client.client_id.as_str()),
        ];
        let value = form.iter().find(|(k, _)| *k == dup).unwrap().1;
        form.push((dup, value));
        let res = fx.token(&form).await;
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
        let body = assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert!(body["error_description"].as_str().unwrap().contains(dup));
    }
    // The code was never spent by those.
    fx.exchange_ok(&client, &g.code).await;
    fx.cleanup().await;
}

#[tokio::test]
async fn token_endpoint_cors_allows_browser_clients_without_credentials() {
    let fx = Fx::new().await;
    let req = Request::builder()
        .method("OPTIONS")
        .uri("/oauth2/token")
        .header(header::ORIGIN, "https://app.element.io")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "content-type,authorization",
        )
        .body(axum::body::Body::empty())
        .unwrap();
    let res = crate::harness::send(&fx.app, req).await;
    assert!(res.status().is_success());
    let h = res.headers();
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert!(h.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
    let methods = h[header::ACCESS_CONTROL_ALLOW_METHODS].to_str().unwrap();
    assert!(methods.contains("POST"));
    let allowed = h[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"));
    fx.cleanup().await;
}

#[tokio::test]
async fn discovery_advertises_the_new_endpoints() {
    let fx = Fx::new().await;
    let doc =
        body_json(crate::harness::get(&fx.app, "/.well-known/openid-configuration").await).await;
    assert_eq!(
        doc["token_endpoint"],
        "https://auth.example.org/oauth2/token"
    );
    assert_eq!(
        doc["revocation_endpoint"],
        "https://auth.example.org/oauth2/revoke"
    );
    assert_eq!(
        doc["introspection_endpoint"],
        "https://auth.example.org/oauth2/introspect"
    );
    assert_eq!(
        doc["userinfo_endpoint"],
        "https://auth.example.org/oauth2/userinfo"
    );
    let grants = doc["grant_types_supported"].as_array().unwrap();
    assert!(grants.contains(&json!("client_credentials")));
    let algs = doc["token_endpoint_auth_signing_alg_values_supported"]
        .as_array()
        .unwrap();
    assert!(algs.contains(&json!("HS256")) && algs.contains(&json!("RS256")));
    assert!(!algs.contains(&json!("none")));
    fx.cleanup().await;
}
