//! Client authentication at the token, revocation and introspection
//! endpoints (S26, S27).

use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use serde_json::{Value, json};
use vestibule_domain::oauth2::{Client, ClientAuthMethod};
use vestibule_keys::Keystore;

use crate::{
    harness::body_json,
    oauth2_support::{CLIENT_SECRET, Fx, ISSUER, TOKEN_URL, assert_error, basic},
};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn claims(fx: &Fx, client: &Client, jti: &str) -> Value {
    let now = fx.t.clock.now().timestamp();
    json!({
        "iss": client.client_id,
        "sub": client.client_id,
        "aud": TOKEN_URL,
        "iat": now,
        "exp": now + 60,
        "jti": jti,
    })
}

async fn with_assertion(fx: &Fx, assertion: &str) -> axum::response::Response {
    fx.token(&[
        ("grant_type", "client_credentials"),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
    ])
    .await
}

async fn cc_with(fx: &Fx, form: &[(&str, &str)], auth: Option<String>) -> axum::response::Response {
    let mut f = vec![("grant_type", "client_credentials")];
    f.extend_from_slice(form);
    fx.post_form("/oauth2/token", &f, auth).await
}

#[tokio::test]
async fn secret_methods_succeed_only_as_registered() {
    let fx = Fx::new().await;
    let basic_client = fx
        .confidential_client(ClientAuthMethod::ClientSecretBasic, &["client_credentials"])
        .await;
    let post_client = fx
        .confidential_client(ClientAuthMethod::ClientSecretPost, &["client_credentials"])
        .await;
    let res = cc_with(
        &fx,
        &[],
        Some(basic(&basic_client.client_id, CLIENT_SECRET)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = cc_with(
        &fx,
        &[
            ("client_id", &post_client.client_id),
            ("client_secret", CLIENT_SECRET),
        ],
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);

    // Wrong secret, both ways.
    let res = cc_with(&fx, &[], Some(basic(&basic_client.client_id, "wrong"))).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let res = cc_with(
        &fx,
        &[
            ("client_id", &post_client.client_id),
            ("client_secret", "wrong"),
        ],
        None,
    )
    .await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
    // Unknown client: the same answer as a wrong secret.
    let res = cc_with(
        &fx,
        &[],
        Some(basic("01J0000000000000000000UNKN", CLIENT_SECRET)),
    )
    .await;
    let unknown = assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let res = cc_with(&fx, &[], Some(basic(&basic_client.client_id, "nope"))).await;
    let wrong = assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert_eq!(unknown, wrong, "no hint whether the client exists");
    // A method the client did not register, with the right secret.
    let res = cc_with(
        &fx,
        &[
            ("client_id", &basic_client.client_id),
            ("client_secret", CLIENT_SECRET),
        ],
        None,
    )
    .await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let res = cc_with(&fx, &[], Some(basic(&post_client.client_id, CLIENT_SECRET))).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
    // A confidential client may not pass as public.
    let res = cc_with(&fx, &[("client_id", &basic_client.client_id)], None).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
    // No client authentication at all.
    let res = cc_with(&fx, &[], None).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
    // Bad Basic encodings.
    for bad in ["Basic %%%notbase64", "Basic bm8tY29sb24=", "Basic "] {
        let res = cc_with(&fx, &[], Some(bad.to_owned())).await;
        let www = res.headers()[header::WWW_AUTHENTICATE].clone();
        assert!(www.to_str().unwrap().starts_with("Basic"));
        assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
    }
    // Two methods at once.
    let res = cc_with(
        &fx,
        &[("client_secret", CLIENT_SECRET)],
        Some(basic(&basic_client.client_id, CLIENT_SECRET)),
    )
    .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    fx.cleanup().await;
}

#[tokio::test]
async fn client_secret_jwt_is_single_use_and_checked() {
    let fx = Fx::new().await;
    let client = fx
        .confidential_client(ClientAuthMethod::ClientSecretJwt, &["client_credentials"])
        .await;
    let sign =
        |c: &Value| vestibule_keys::sign_jws_hmac("HS256", CLIENT_SECRET.as_bytes(), c).unwrap();
    let assertion = sign(&claims(&fx, &client, "jti-1"));
    let res = with_assertion(&fx, &assertion).await;
    assert_eq!(res.status(), StatusCode::OK);
    // Replay of the same assertion.
    let res = with_assertion(&fx, &assertion).await;
    let body = assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("already used")
    );

    // aud: the issuer, or an array with the token endpoint, are fine.
    let mut c = claims(&fx, &client, "jti-2");
    c["aud"] = json!(ISSUER);
    assert_eq!(
        with_assertion(&fx, &sign(&c)).await.status(),
        StatusCode::OK
    );
    let mut c = claims(&fx, &client, "jti-3");
    c["aud"] = json!(["https://other.example/", TOKEN_URL]);
    assert_eq!(
        with_assertion(&fx, &sign(&c)).await.status(),
        StatusCode::OK
    );

    let mut bad = Vec::new();
    let mut c = claims(&fx, &client, "jti-4");
    c["aud"] = json!("https://other.example/token");
    bad.push(("other aud", sign(&c)));
    let mut c = claims(&fx, &client, "jti-5");
    c["aud"] = json!(["https://other.example/"]);
    bad.push(("array without us", sign(&c)));
    let mut c = claims(&fx, &client, "jti-6");
    c["exp"] = json!(fx.t.clock.now().timestamp() - 1);
    bad.push(("expired", sign(&c)));
    let mut c = claims(&fx, &client, "jti-7");
    c["exp"] = json!(fx.t.clock.now().timestamp() + 301);
    bad.push(("too far ahead", sign(&c)));
    let mut c = claims(&fx, &client, "jti-8");
    c.as_object_mut().unwrap().remove("jti");
    bad.push(("no jti", sign(&c)));
    let mut c = claims(&fx, &client, "jti-9");
    c["iss"] = json!("someone-else");
    bad.push(("iss", sign(&c)));
    let c = claims(&fx, &client, "jti-10");
    bad.push((
        "wrong secret",
        vestibule_keys::sign_jws_hmac("HS256", b"not-the-secret", &c).unwrap(),
    ));
    let c = claims(&fx, &client, "jti-11");
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    bad.push((
        "alg none",
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&c)
        ),
    ));
    for (what, assertion) in bad {
        let res = with_assertion(&fx, &assertion).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}");
        let body = body_json(res).await;
        assert_eq!(body["error"], "invalid_client", "{what}");
    }
    // A wrong assertion type.
    let res = fx
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:example:saml"),
            ("client_assertion", &sign(&claims(&fx, &client, "jti-12"))),
        ])
        .await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn private_key_jwt_verifies_against_the_registered_keys() {
    let fx = Fx::new().await;
    let key = vestibule_keys::generate_rsa(&mut rand::rngs::OsRng, 2048).unwrap();
    let keys = Keystore::new(vec![(Some("client-key".to_owned()), key)]).unwrap();
    let mut params = Fx::params(ClientAuthMethod::PrivateKeyJwt, &["client_credentials"]);
    params.jwks = Some(keys.jwks());
    let client = fx.client_with(params).await;

    let assertion = keys
        .sign_jwt("RS256", &claims(&fx, &client, "k-1"))
        .unwrap();
    let res = with_assertion(&fx, &assertion).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = with_assertion(&fx, &assertion).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;

    // Two parallel uses of one fresh assertion: exactly one wins.
    let assertion = keys
        .sign_jwt("RS256", &claims(&fx, &client, "k-2"))
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let app = fx.app.clone();
        let form = serde_urlencoded::to_string([
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion.as_str()),
        ])
        .unwrap();
        tasks.push(tokio::spawn(async move {
            let req = Request::post("/oauth2/token")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(axum::body::Body::from(form))
                .unwrap();
            crate::harness::send(&app, req).await.status()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::UNAUTHORIZED]);

    // Alg confusion: HS256 keyed with the public JWK.
    let public = serde_json::to_vec(&keys.jwks()["keys"][0]).unwrap();
    let confused =
        vestibule_keys::sign_jws_hmac("HS256", &public, &claims(&fx, &client, "k-3")).unwrap();
    let res = with_assertion(&fx, &confused).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
    // Signed by another key.
    let other = Keystore::new(vec![(
        Some("client-key".to_owned()),
        vestibule_keys::generate_ec_p256(&mut rand::rngs::OsRng),
    )])
    .unwrap();
    let forged = other
        .sign_jwt("ES256", &claims(&fx, &client, "k-4"))
        .unwrap();
    let res = with_assertion(&fx, &forged).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
    fx.cleanup().await;
}

#[tokio::test]
async fn jwks_uri_is_refused_clearly() {
    let fx = Fx::new().await;
    let mut params = Fx::params(ClientAuthMethod::PrivateKeyJwt, &["client_credentials"]);
    params.jwks_uri = Some("https://client.example/jwks.json".parse().unwrap());
    let client = fx.client_with(params).await;
    let keys = Keystore::new(vec![(
        None,
        vestibule_keys::generate_ec_p256(&mut rand::rngs::OsRng),
    )])
    .unwrap();
    let assertion = keys
        .sign_jwt("ES256", &claims(&fx, &client, "u-1"))
        .unwrap();
    let res = with_assertion(&fx, &assertion).await;
    let body = assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("jwks_uri is not supported yet"),
        "{body}"
    );
    fx.cleanup().await;
}

#[tokio::test]
async fn revocation_and_introspection_authenticate_clients_too() {
    let fx = Fx::new().await;
    let client = fx
        .confidential_client(ClientAuthMethod::ClientSecretBasic, &["client_credentials"])
        .await;
    for path in ["/oauth2/revoke", "/oauth2/introspect"] {
        let res = fx
            .post_form(
                path,
                &[("token", "mat_x")],
                Some(basic(&client.client_id, "wrong")),
            )
            .await;
        assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
        let res = fx
            .post_form(path, &[("token", "mat_x")], Some("Basic !!".to_owned()))
            .await;
        assert_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
        let res = fx
            .post_form(
                path,
                &[("token", "mat_x")],
                Some(basic(&client.client_id, CLIENT_SECRET)),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
    fx.cleanup().await;
}
