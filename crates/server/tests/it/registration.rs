//! `POST /oauth2/registration` through the production router: what the two
//! Matrix SDKs register, deduplication, secrets at rest, every refusal of
//! MSC2966 / RFC 7591 with its error and field, and the policy switches.

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
    response::Response,
};
use serde_json::{Value, json};
use vestibule_domain::{
    MockClock,
    oauth2::{ApplicationType, Client, ClientAuthMethod},
};
use vestibule_keys::{Encrypter, Keystore};
use vestibule_server::{AppState, Resources, RngSource};
use vestibule_storage_sql::testing::TestDatabase;

use crate::harness::{TestApp, body_json, get, send};

const PATH: &str = "/oauth2/registration";
static SEED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1000);

/// What matrix-rust-sdk (Element X) registers: a native app with a
/// private-use scheme reversed from its client_uri and a loopback redirect.
fn rust_sdk() -> Value {
    json!({
        "client_name": "Element X",
        "client_uri": "https://element.io",
        "application_type": "native",
        "redirect_uris": ["io.element.app:/callback", "http://127.0.0.1/callback"],
        "grant_types": [
            "authorization_code",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code"
        ],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "policy_uri": "https://element.io/privacy",
        "tos_uri": "https://element.io/acceptable-use-policy-terms"
    })
}

/// What matrix-js-sdk (Element Web) registers.
fn js_sdk() -> Value {
    json!({
        "client_name": "Element",
        "client_uri": "https://app.element.io/",
        "logo_uri": "https://app.element.io/vector-icons/1024.png",
        "application_type": "web",
        "redirect_uris": ["https://app.element.io/"],
        "response_types": ["code"],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none",
        "contacts": ["support@element.io"],
        "client_name#fr": "Élément"
    })
}

async fn register(app: &Router, body: &Value) -> Response {
    post_raw(app, body.to_string().into_bytes()).await
}

async fn post_raw(app: &Router, body: Vec<u8>) -> Response {
    send(
        app,
        Request::post(PATH)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ORIGIN, "https://app.element.io")
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

async fn stored(state: &AppState, client_id: &str) -> Client {
    let mut repo = state.repos.read().await.unwrap();
    let client = repo
        .oauth2_clients()
        .find_by_client_id(client_id)
        .await
        .unwrap()
        .expect("client stored");
    repo.cancel().await.unwrap();
    client
}

/// A state on `db` with `policy.data` set (the harness has no policy knob).
/// Each state gets its own rng seed: states sharing a database and a mock
/// clock would otherwise mint the same ids.
fn state_on(db: &TestDatabase, policy_data: Value) -> AppState {
    let key = vestibule_keys::generate_ec_p256(&mut rand::rngs::OsRng);
    let keystore = Keystore::new(vec![(Some("test-key".to_owned()), key)]).unwrap();
    let mut config = vestibule_config::Config::default();
    config.http.public_base = "https://auth.example.org/".parse().unwrap();
    "example.org".clone_into(&mut config.matrix.homeserver);
    config.policy.data = policy_data;
    crate::harness::relax_rate_limits(&mut config);
    AppState::new(
        Arc::new(db.storage.clone()),
        Arc::new(MockClock::default()),
        RngSource::seeded(SEED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
        keystore,
        Encrypter::new(&[7; 32]),
        config,
        Arc::new(vestibule_server::homeserver::MockHomeserver::new(
            "example.org",
        )),
    )
    .unwrap()
}

async fn assert_refused(app: &Router, body: &Value, error: &str, field: &str) {
    let res = register(app, body).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
    let doc = body_json(res).await;
    assert_eq!(doc["error"], error, "{body} -> {doc}");
    let description = doc["error_description"].as_str().unwrap();
    assert!(
        description.starts_with(&format!("{field}:")),
        "{description:?} should name {field}"
    );
}

fn with(mut body: Value, key: &str, value: Value) -> Value {
    body[key] = value;
    body
}

fn without(mut body: Value, key: &str) -> Value {
    body.as_object_mut().unwrap().remove(key);
    body
}

#[tokio::test]
async fn matrix_rust_sdk_registration_is_stored_as_a_public_native_client() {
    let t = TestApp::new("https://auth.example.org/").await;
    let app = t.router(&Resources::all(), None);
    let res = register(&app, &rust_sdk()).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let doc = body_json(res).await;
    let client_id = doc["client_id"].as_str().unwrap();
    assert!(doc.get("client_secret").is_none(), "public: no secret");
    assert!(doc.get("client_secret_expires_at").is_none());
    assert!(doc["client_id_issued_at"].is_i64());
    assert_eq!(doc["application_type"], "native");
    assert_eq!(doc["token_endpoint_auth_method"], "none");
    assert_eq!(doc["response_types"], json!(["code"]));
    assert_eq!(
        doc["redirect_uris"],
        json!(["io.element.app:/callback", "http://127.0.0.1/callback"])
    );

    let client = stored(&t.state, client_id).await;
    assert!(!client.is_static);
    assert_eq!(client.client_name.as_deref(), Some("Element X"));
    assert_eq!(client.application_type, Some(ApplicationType::Native));
    assert_eq!(client.token_endpoint_auth_method, ClientAuthMethod::None);
    assert_eq!(
        client
            .redirect_uris
            .iter()
            .map(url::Url::as_str)
            .collect::<Vec<_>>(),
        ["io.element.app:/callback", "http://127.0.0.1/callback"]
    );
    assert_eq!(
        client.grant_types,
        [
            "authorization_code",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code"
        ]
    );
    assert_eq!(client.encrypted_client_secret, None);
    assert_eq!(client.metadata_digest.as_ref().map(String::len), Some(64));
    assert_eq!(
        client.client_uri.as_ref().map(url::Url::as_str),
        Some("https://element.io/")
    );
    t.db.cleanup().await;
}

#[tokio::test]
async fn matrix_js_sdk_registration_is_stored_as_a_public_web_client() {
    let t = TestApp::new("https://auth.example.org/").await;
    let app = t.router(&Resources::all(), None);
    let res = register(&app, &js_sdk()).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let doc = body_json(res).await;
    assert_eq!(doc["application_type"], "web");
    assert_eq!(doc["client_name"], "Element");
    assert_eq!(
        doc["logo_uri"],
        "https://app.element.io/vector-icons/1024.png"
    );
    assert!(doc.get("contacts").is_none(), "contacts are ignored");
    let client = stored(&t.state, doc["client_id"].as_str().unwrap()).await;
    assert_eq!(client.application_type, Some(ApplicationType::Web));
    assert_eq!(client.redirect_uris[0].as_str(), "https://app.element.io/");
    assert_eq!(client.grant_types, ["authorization_code", "refresh_token"]);
    assert_eq!(client.token_endpoint_auth_method, ClientAuthMethod::None);
    t.db.cleanup().await;
}

#[tokio::test]
async fn registration_is_advertised_and_callable_cross_origin() {
    let t = TestApp::new("https://auth.example.org/prefix/").await;
    let app = t.router(&Resources::all(), Some("/prefix"));
    let doc = body_json(get(&app, "/prefix/.well-known/openid-configuration").await).await;
    assert_eq!(
        doc["registration_endpoint"],
        "https://auth.example.org/prefix/oauth2/registration"
    );
    // The CORS preflight Element Web's browser sends before the POST.
    let res = send(
        &app,
        Request::options("/prefix/oauth2/registration")
            .header(header::ORIGIN, "https://app.element.io")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(res.status().is_success(), "{}", res.status());
    let h = res.headers();
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert!(
        h[header::ACCESS_CONTROL_ALLOW_METHODS]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    assert!(
        h[header::ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .unwrap()
            .contains("content-type")
    );
    assert!(h.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
    // Only the oauth resource serves it.
    let app = t.router(
        &Resources {
            discovery: true,
            ..Resources::default()
        },
        None,
    );
    assert_eq!(
        register(&app, &js_sdk()).await.status(),
        StatusCode::NOT_FOUND
    );
    t.db.cleanup().await;
}

async fn identical_public_registrations_share_a_client_id_on(db: TestDatabase) {
    let state = state_on(&db, json!({}));
    let app = vestibule_server::router(state.clone(), &Resources::all());
    let first = register(&app, &rust_sdk()).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first = body_json(first).await;
    // Same metadata, fields and lists in another order: same client.
    let mut reordered = json!({});
    for (k, v) in rust_sdk().as_object().unwrap().iter().rev() {
        reordered[k] = v.clone();
    }
    reordered["redirect_uris"] = json!(["http://127.0.0.1/callback", "io.element.app:/callback"]);
    for body in [rust_sdk(), reordered] {
        let again = register(&app, &body).await;
        assert_eq!(again.status(), StatusCode::CREATED, "201 like the first");
        let again = body_json(again).await;
        assert_eq!(again["client_id"], first["client_id"]);
        assert_eq!(again["client_id_issued_at"], first["client_id_issued_at"]);
    }
    // Different metadata: a new client.
    let other = body_json(
        register(
            &app,
            &with(rust_sdk(), "client_name", json!("Element X Nightly")),
        )
        .await,
    )
    .await;
    assert_ne!(other["client_id"], first["client_id"]);
    assert!(other["client_id"].is_string());

    // Concurrent identical registrations (a new body): all get one client.
    let body = with(js_sdk(), "client_name", json!("Concurrent"));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let app = app.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let res = register(&app, &body).await;
                assert_eq!(res.status(), StatusCode::CREATED);
                body_json(res).await["client_id"].clone()
            })
        })
        .collect();
    let mut ids = Vec::new();
    for h in handles {
        ids.push(h.await.unwrap());
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    db.cleanup().await;
}

#[tokio::test]
async fn identical_public_registrations_share_a_client_id_sqlite() {
    identical_public_registrations_share_a_client_id_on(TestDatabase::sqlite().await.unwrap())
        .await;
}

#[tokio::test]
async fn identical_public_registrations_share_a_client_id_postgres() {
    let Some(db) = TestDatabase::postgres().await.unwrap() else {
        assert!(
            !vestibule_storage_sql::testing::postgres_required(),
            "PostgreSQL is required"
        );
        return;
    };
    identical_public_registrations_share_a_client_id_on(db).await;
}

#[tokio::test]
async fn confidential_clients_get_a_secret_stored_only_encrypted() {
    let t = TestApp::new("https://auth.example.org/").await;
    let app = t.router(&Resources::all(), None);
    let body = json!({
        "client_name": "Bridge admin",
        "client_uri": "https://bridge.example.net/",
        "redirect_uris": ["https://bridge.example.net/oauth/callback"],
        "token_endpoint_auth_method": "client_secret_basic",
    });
    let mut secrets = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let res = register(&app, &body).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let doc = body_json(res).await;
        assert_eq!(doc["client_secret_expires_at"], 0);
        assert_eq!(doc["token_endpoint_auth_method"], "client_secret_basic");
        let secret = doc["client_secret"].as_str().unwrap().to_owned();
        assert!(secret.len() >= 32, "{secret}");
        let client = stored(&t.state, doc["client_id"].as_str().unwrap()).await;
        let ciphertext = client.encrypted_client_secret.expect("stored encrypted");
        assert!(!ciphertext.contains(&secret), "not the plaintext");
        assert_eq!(client.metadata_digest, None, "never deduplicated");
        let plain = t
            .state
            .encrypter
            .decrypt_str(b"client_secret", &ciphertext)
            .unwrap();
        assert_eq!(plain, secret.as_bytes());
        assert!(
            t.state
                .encrypter
                .decrypt_str(b"other_column", &ciphertext)
                .is_err(),
            "bound to its column"
        );
        secrets.push(secret);
        ids.push(doc["client_id"].clone());
    }
    assert_ne!(ids[0], ids[1], "confidential clients are always new");
    assert_ne!(secrets[0], secrets[1]);

    // The default for a web client is client_secret_basic (RFC 7591 §2).
    let doc =
        body_json(register(&app, &without(body.clone(), "token_endpoint_auth_method")).await).await;
    assert_eq!(doc["token_endpoint_auth_method"], "client_secret_basic");
    assert!(doc["client_secret"].is_string());
    // client_secret_post too; private_key_jwt needs keys and gets no secret.
    let doc = body_json(
        register(
            &app,
            &with(
                body.clone(),
                "token_endpoint_auth_method",
                json!("client_secret_post"),
            ),
        )
        .await,
    )
    .await;
    assert!(doc["client_secret"].is_string());
    let jwt = with(
        body.clone(),
        "token_endpoint_auth_method",
        json!("private_key_jwt"),
    );
    assert_refused(&app, &jwt, "invalid_client_metadata", "jwks").await;
    let res = register(&app, &with(jwt, "jwks", json!({"keys": []}))).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert!(body_json(res).await.get("client_secret").is_none());
    t.db.cleanup().await;
}

#[tokio::test]
async fn msc2966_refusals_name_the_error_and_the_field() {
    let t = TestApp::new("https://auth.example.org/").await;
    let app = t.router(&Resources::all(), None);
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            with(
                js_sdk(),
                "redirect_uris",
                json!(["https://app.element.io/#frag"]),
            ),
            "invalid_redirect_uri",
            "redirect_uris[0]",
        ),
        (
            with(
                js_sdk(),
                "redirect_uris",
                json!(["https://app.element.io/", "http://app.element.io/callback"]),
            ),
            "invalid_redirect_uri",
            "redirect_uris[1]",
        ),
        (
            with(
                js_sdk(),
                "redirect_uris",
                json!(["https://evil.example.com/callback"]),
            ),
            "invalid_redirect_uri",
            "redirect_uris[0]",
        ),
        (
            with(rust_sdk(), "redirect_uris", json!(["com.evil:/callback"])),
            "invalid_redirect_uri",
            "redirect_uris[0]",
        ),
        (
            with(
                rust_sdk(),
                "redirect_uris",
                json!(["http://localhost/callback"]),
            ),
            "invalid_redirect_uri",
            "redirect_uris[0]",
        ),
        (
            without(js_sdk(), "redirect_uris"),
            "invalid_redirect_uri",
            "redirect_uris",
        ),
        (
            with(
                js_sdk(),
                "redirect_uris",
                json!(vec!["https://app.element.io/"; 21]),
            ),
            "invalid_redirect_uri",
            "redirect_uris",
        ),
        (
            without(js_sdk(), "client_uri"),
            "invalid_client_metadata",
            "client_uri",
        ),
        (
            with(js_sdk(), "client_uri", json!("http://app.element.io/")),
            "invalid_client_metadata",
            "client_uri",
        ),
        (
            with(js_sdk(), "logo_uri", json!("https://cdn.evil.com/logo.png")),
            "invalid_client_metadata",
            "logo_uri",
        ),
        (
            with(rust_sdk(), "tos_uri", json!("http://element.io/tos")),
            "invalid_client_metadata",
            "tos_uri",
        ),
        (
            with(js_sdk(), "response_types", json!(["token"])),
            "invalid_client_metadata",
            "response_types",
        ),
        (
            with(js_sdk(), "grant_types", json!(["implicit"])),
            "invalid_client_metadata",
            "grant_types",
        ),
        (
            with(js_sdk(), "grant_types", json!(["password"])),
            "invalid_client_metadata",
            "grant_types",
        ),
        (
            with(js_sdk(), "grant_types", json!(["client_credentials"])),
            "invalid_client_metadata",
            "grant_types",
        ),
        (
            with(js_sdk(), "client_name", json!("Vestibule")),
            "invalid_client_metadata",
            "client_name",
        ),
        (
            with(
                js_sdk(),
                "client_name",
                json!("Matrix Authentication Service"),
            ),
            "invalid_client_metadata",
            "client_name",
        ),
        (
            with(js_sdk(), "client_name", json!("Sign in to example.org")),
            "invalid_client_metadata",
            "client_name",
        ),
        (
            with(js_sdk(), "client_name", json!("@admin:matrix.org")),
            "invalid_client_metadata",
            "client_name",
        ),
        (
            with(js_sdk(), "client_name", json!("x".repeat(3000))),
            "invalid_client_metadata",
            "client_name",
        ),
        (
            with(js_sdk(), "application_type", json!("browser")),
            "invalid_client_metadata",
            "application_type",
        ),
        (
            with(js_sdk(), "redirect_uris", json!("https://app.element.io/")),
            "invalid_client_metadata",
            "redirect_uris",
        ),
    ];
    for (body, error, field) in &cases {
        assert_refused(&app, body, error, field).await;
    }
    // Nothing was stored by any of them.
    let res = register(&app, &js_sdk()).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    t.db.cleanup().await;
}

#[tokio::test]
async fn hostile_bodies_are_refused_without_harm() {
    let t = TestApp::new("https://auth.example.org/").await;
    let app = t.router(&Resources::all(), None);

    // 1 MB of otherwise valid metadata.
    let huge = with(js_sdk(), "contacts", json!(["a".repeat(1024 * 1024)]));
    let res = post_raw(&app, huge.to_string().into_bytes()).await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body_json(res).await["error"], "invalid_client_metadata");

    // Deeply nested JSON (well under the size limit).
    let deep = format!(
        "{{\"client_uri\":\"https://app.element.io/\",\"jwks\":{}{}}}",
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    let res = post_raw(&app, deep.into_bytes()).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let doc = body_json(res).await;
    assert_eq!(doc["error"], "invalid_client_metadata");
    assert!(
        doc["error_description"]
            .as_str()
            .unwrap()
            .contains("recursion limit"),
        "{doc}"
    );

    for bad in [&b"{not json"[..], b"", b"[]", b"\"string\"", b"\xff\xfe"] {
        let res = post_raw(&app, bad.to_vec()).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        assert_eq!(body_json(res).await["error"], "invalid_client_metadata");
    }

    // Not JSON by content type (a form post).
    let res = send(
        &app,
        Request::post(PATH)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(js_sdk().to_string()))
            .unwrap(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // The service is still fine.
    assert_eq!(
        register(&app, &js_sdk()).await.status(),
        StatusCode::CREATED
    );
    t.db.cleanup().await;
}

#[tokio::test]
async fn each_policy_switch_relaxes_exactly_its_rule() {
    let db = TestDatabase::sqlite().await.unwrap();
    let app_with = |data: Value| vestibule_server::router(state_on(&db, data), &Resources::all());
    let strict = app_with(json!({}));
    let missing = app_with(json!({"client_registration": {"allow_missing_client_uri": true}}));
    let insecure = app_with(json!({"client_registration": {"allow_insecure_uris": true}}));
    let mismatch = app_with(json!({"client_registration": {"allow_host_mismatch": true}}));

    let no_client_uri = without(without(js_sdk(), "client_uri"), "logo_uri");
    let http_client = json!({
        "client_name": "Dev client",
        "client_uri": "http://dev.example.net/",
        "redirect_uris": ["http://dev.example.net/callback"],
        "token_endpoint_auth_method": "none",
    });
    let other_host = with(
        js_sdk(),
        "redirect_uris",
        json!(["https://other.example.net/callback"]),
    );

    // allow_missing_client_uri
    assert_refused(
        &strict,
        &no_client_uri,
        "invalid_client_metadata",
        "client_uri",
    )
    .await;
    assert_eq!(
        register(&missing, &no_client_uri).await.status(),
        StatusCode::CREATED
    );
    assert_refused(
        &missing,
        &http_client,
        "invalid_client_metadata",
        "client_uri",
    )
    .await;
    assert_refused(
        &missing,
        &other_host,
        "invalid_redirect_uri",
        "redirect_uris[0]",
    )
    .await;

    // allow_insecure_uris
    assert_refused(
        &strict,
        &http_client,
        "invalid_client_metadata",
        "client_uri",
    )
    .await;
    assert_eq!(
        register(&insecure, &http_client).await.status(),
        StatusCode::CREATED
    );
    assert_refused(
        &insecure,
        &no_client_uri,
        "invalid_client_metadata",
        "client_uri",
    )
    .await;
    assert_refused(
        &insecure,
        &other_host,
        "invalid_redirect_uri",
        "redirect_uris[0]",
    )
    .await;

    // allow_host_mismatch
    assert_refused(
        &strict,
        &other_host,
        "invalid_redirect_uri",
        "redirect_uris[0]",
    )
    .await;
    assert_eq!(
        register(&mismatch, &other_host).await.status(),
        StatusCode::CREATED
    );
    assert_refused(
        &mismatch,
        &http_client,
        "invalid_client_metadata",
        "client_uri",
    )
    .await;
    assert_refused(
        &mismatch,
        &no_client_uri,
        "invalid_client_metadata",
        "client_uri",
    )
    .await;
    // It does not relax the private-use scheme rule.
    assert_refused(
        &mismatch,
        &with(rust_sdk(), "redirect_uris", json!(["com.evil:/callback"])),
        "invalid_redirect_uri",
        "redirect_uris[0]",
    )
    .await;
    db.cleanup().await;
}
