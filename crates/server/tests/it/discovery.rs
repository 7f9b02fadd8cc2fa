use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use vestibule_server::Resources;

use crate::harness::{TestApp, body_json, get, send};

#[tokio::test]
async fn discovery_has_what_matrix_clients_require_and_nothing_that_does_not_exist() {
    let t = TestApp::new("https://auth.example.org/").await;
    let app = t.router(&Resources::all(), None);
    let res = get(&app, "/.well-known/openid-configuration").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
    let doc = body_json(res).await;
    assert_eq!(
        doc["issuer"], "https://auth.example.org/",
        "issuer byte for byte"
    );
    assert_eq!(doc["jwks_uri"], "https://auth.example.org/oauth2/keys.json");
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    let modes = doc["response_modes_supported"].as_array().unwrap();
    assert!(modes.contains(&"query".into()) && modes.contains(&"fragment".into()));
    let grants = doc["grant_types_supported"].as_array().unwrap();
    assert!(
        grants.contains(&"authorization_code".into()) && grants.contains(&"refresh_token".into())
    );
    // The device grant makes clients offer QR login (MSC4108).
    assert!(
        grants.contains(&"urn:ietf:params:oauth:grant-type:device_code".into()),
        "{grants:?}"
    );
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
    assert_eq!(
        doc["authorization_endpoint"],
        "https://auth.example.org/authorize"
    );
    for present in [
        "token_endpoint",
        "registration_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
        "userinfo_endpoint",
    ] {
        assert!(doc[present].as_str().is_some(), "{present} missing");
    }
    assert_eq!(
        doc["device_authorization_endpoint"],
        "https://auth.example.org/oauth2/device"
    );
    t.db.cleanup().await;
}

#[tokio::test]
async fn documents_are_cached_with_an_etag() {
    let t = TestApp::new("http://127.0.0.1:8080/").await;
    let app = t.router(&Resources::all(), None);
    for path in ["/.well-known/openid-configuration", "/oauth2/keys.json"] {
        let res = get(&app, path).await;
        assert_eq!(res.status(), StatusCode::OK);
        let etag = res.headers()[header::ETAG].clone();
        let again = send(
            &app,
            Request::get(path)
                .header(header::IF_NONE_MATCH, etag.clone())
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        let other = send(
            &app,
            Request::get(path)
                .header(header::IF_NONE_MATCH, "\"other\"")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(other.status(), StatusCode::OK, "{path}");
    }
    t.db.cleanup().await;
}

#[tokio::test]
async fn jwks_has_public_parts_only() {
    let t = TestApp::new("http://127.0.0.1:8080/").await;
    let app = t.router(&Resources::all(), None);
    let jwks = body_json(get(&app, "/oauth2/keys.json").await).await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let k = &keys[0];
    assert_eq!(k["kid"], "test-key");
    assert_eq!(k["kty"], "EC");
    assert_eq!(k["crv"], "P-256");
    assert_eq!(k["alg"], "ES256");
    assert_eq!(k["use"], "sig");
    assert!(k.get("d").is_none(), "no private scalar");
    t.db.cleanup().await;
}

#[tokio::test]
async fn prefix_and_public_base_move_every_url() {
    let t = TestApp::new("https://example.org/auth/").await;
    let app = t.router(&Resources::all(), Some("/auth"));
    let doc = body_json(get(&app, "/auth/.well-known/openid-configuration").await).await;
    assert_eq!(doc["jwks_uri"], "https://example.org/auth/oauth2/keys.json");
    assert_eq!(
        get(&app, "/auth/oauth2/keys.json").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get(&app, "/.well-known/openid-configuration")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    t.db.cleanup().await;
}

#[tokio::test]
async fn a_listener_serves_only_its_resources() {
    let t = TestApp::new("http://127.0.0.1:8080/").await;
    let health_only = Resources {
        health: true,
        ..Resources::default()
    };
    let app = t.router(&health_only, None);
    assert_eq!(get(&app, "/health").await.status(), StatusCode::OK);
    assert_eq!(
        get(&app, "/.well-known/openid-configuration")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, "/oauth2/keys.json").await.status(),
        StatusCode::NOT_FOUND
    );
    let no_health = Resources {
        discovery: true,
        ..Resources::default()
    };
    assert_eq!(
        get(&t.router(&no_health, None), "/health").await.status(),
        StatusCode::NOT_FOUND
    );
    t.db.cleanup().await;
}

#[tokio::test]
async fn security_headers_and_credential_free_cors() {
    let t = TestApp::new("http://127.0.0.1:8080/").await;
    let app = t.router(&Resources::all(), None);
    let res = get(&app, "/.well-known/openid-configuration").await;
    let h = res.headers();
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["content-security-policy"], "frame-ancestors 'none'");
    let preflight = send(
        &app,
        Request::options("/.well-known/openid-configuration")
            .header(header::ORIGIN, "https://app.element.io")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        preflight.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "*"
    );
    assert!(
        preflight
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
            .is_none(),
        "never `*` together with credentials"
    );
    t.db.cleanup().await;
}

#[tokio::test]
async fn health_reports_an_unavailable_database_as_503() {
    let t = TestApp::new("http://127.0.0.1:8080/").await;
    let app = t.router(&Resources::all(), None);
    assert_eq!(get(&app, "/health").await.status(), StatusCode::OK);
    t.db.storage.close().await;
    assert_eq!(
        get(&app, "/health").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}
