//! Zero-config start: a data directory with a generated config and SQLite.

use std::path::Path;

use serde_json::Value;

use crate::support::{Response, Server, free_port, get, get_with, vestibule};

fn start(data_dir: &Path, port: u16) -> Server {
    let mut cmd = vestibule();
    cmd.arg("--data-dir")
        .arg(data_dir)
        .args(["server", "--bind", &format!("127.0.0.1:{port}")]);
    Server::start(cmd)
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(|s| s.as_str().expect("array of strings"))
        .collect()
}

fn assert_security_headers(r: &Response, what: &str) {
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}: {r:?}");
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "{what}: {r:?}"
    );
}

fn check_discovery(port: u16) {
    let r = get(port, "/.well-known/openid-configuration");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{r:?}"
    );
    assert_security_headers(&r, "discovery");
    let doc = r.json();
    let base = format!("http://127.0.0.1:{port}/");
    assert_eq!(doc["issuer"], base.as_str(), "{doc:#}");
    assert_eq!(
        doc["jwks_uri"],
        format!("{base}oauth2/keys.json").as_str(),
        "{doc:#}"
    );
    assert!(strings(&doc["response_types_supported"]).contains(&"code"));
    let modes = strings(&doc["response_modes_supported"]);
    assert!(
        modes.contains(&"query") && modes.contains(&"fragment"),
        "{modes:?}"
    );
    assert_eq!(strings(&doc["code_challenge_methods_supported"]), ["S256"]);
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    let grants = strings(&doc["grant_types_supported"]);
    assert!(
        grants.contains(&"authorization_code") && grants.contains(&"refresh_token"),
        "{grants:?}"
    );
    assert_eq!(
        doc["authorization_endpoint"],
        format!("{base}authorize").as_str(),
        "{doc:#}"
    );
    assert!(doc["token_endpoint"].as_str().is_some(), "{doc:#}");
    // RFC 8628: the device authorization endpoint and its grant (QR login).
    assert_eq!(
        doc["device_authorization_endpoint"],
        format!("{base}oauth2/device").as_str(),
        "{doc:#}"
    );
    assert!(
        grants.contains(&"urn:ietf:params:oauth:grant-type:device_code"),
        "{grants:?}"
    );
}

/// Checks the JWKS and returns its body.
fn check_jwks(port: u16) -> Vec<u8> {
    let r = get(port, "/oauth2/keys.json");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_security_headers(&r, "jwks");
    let jwks = r.json();
    let keys = jwks["keys"].as_array().expect("`keys` array");
    assert_eq!(keys.len(), 2, "{jwks:#}");
    for key in keys {
        for member in ["kid", "alg", "use", "kty"] {
            assert!(
                key.get(member).and_then(Value::as_str).is_some(),
                "key without `{member}`: {key}"
            );
        }
        assert_eq!(key["use"], "sig", "{key}");
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(
                key.get(private).is_none(),
                "public JWKS leaks private member `{private}`: {key}"
            );
        }
    }
    assert!(
        keys.iter()
            .any(|k| k["kty"] == "RSA" && k["alg"] == "RS256"),
        "no RSA key: {jwks:#}"
    );
    assert!(
        keys.iter()
            .any(|k| k["kty"] == "EC" && k["crv"] == "P-256" && k["alg"] == "ES256"),
        "no EC P-256 key: {jwks:#}"
    );
    let kids: Vec<_> = keys.iter().map(|k| &k["kid"]).collect();
    assert_ne!(kids[0], kids[1], "duplicate kid");

    let etag = r.header("etag").expect("JWKS has an ETag").to_owned();
    let again = get_with(port, "/oauth2/keys.json", &[("If-None-Match", &etag)]);
    assert_eq!(again.status, 304, "{again:?}");
    assert!(again.body.is_empty(), "304 with a body: {again:?}");
    let other = get_with(port, "/oauth2/keys.json", &[("If-None-Match", "\"other\"")]);
    assert_eq!(other.status, 200, "{other:?}");
    r.body
}

#[test]
fn zero_config() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir = tmp.path().join("data");
    let port = free_port();

    // First start: creates the data directory.
    let server = start(&data_dir, port);
    let config_path = data_dir.join("config.yaml");
    assert!(config_path.is_file(), "no config.yaml");
    assert!(data_dir.join("vestibule.db").is_file(), "no vestibule.db");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config_path)
            .expect("config metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "config.yaml mode is {mode:o}");
    }
    let config = std::fs::read(&config_path).expect("reading config.yaml");

    check_discovery(port);
    let jwks = check_jwks(port);
    let health = get(port, "/health");
    assert_eq!(health.status, 200, "{}", health.text());
    assert_security_headers(&health, "health");
    assert_eq!(get(port, "/no-such-page").status, 404);

    let out = server.stop();
    assert!(
        out.stdout.contains("Created the data directory"),
        "first start: {out}"
    );
    assert!(
        out.stdout.contains(&format!("http://127.0.0.1:{port}")),
        "listening address not printed: {out}"
    );

    // Second start: reuses the config (and so the keys and the address: a
    // new `--bind` is ignored) and the database.
    let server = start(&data_dir, free_port());
    assert_eq!(
        std::fs::read(&config_path).expect("reading config.yaml"),
        config,
        "config.yaml changed on the second start"
    );
    check_discovery(port);
    assert_eq!(
        check_jwks(port),
        jwks,
        "the keys changed on the second start"
    );
    assert_eq!(get(port, "/health").status, 200);
    let out = server.stop();
    assert!(
        out.stdout.contains("Using the data directory"),
        "second start: {out}"
    );
    assert!(
        !out.stdout.contains("Created the data directory"),
        "second start: {out}"
    );
}
