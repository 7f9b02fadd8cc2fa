//! Merge order: later files win for scalars, maps deep-merge, sequences are
//! replaced.

use crate::{load, load_err};

#[test]
fn later_file_wins_and_maps_deep_merge() {
    let loaded = load(&[
        "database:\n  uri: postgresql://first\n  max_connections: 5\nmatrix:\n  homeserver: one.example\n  secret: s\naccount:\n  password_registration_enabled: true\n",
        "database:\n  uri: postgresql://second\nmatrix:\n  homeserver: two.example\n",
    ])
    .unwrap();
    let c = &loaded.config;
    assert_eq!(
        c.database.uri.as_ref().unwrap().expose(),
        "postgresql://second"
    );
    assert_eq!(c.database.max_connections, 5, "kept from the first file");
    assert_eq!(c.matrix.homeserver, "two.example");
    assert_eq!(c.matrix.secret.as_ref().unwrap().expose(), "s");
    assert!(c.account.password_registration_enabled);
}

#[test]
fn sequences_are_replaced_wholesale() {
    let loaded = load(&[
        "http:\n  trusted_proxies: [10.0.0.0/8, 192.168.0.0/16]\n",
        "http:\n  trusted_proxies: [127.0.0.1]\n",
    ])
    .unwrap();
    assert_eq!(loaded.config.http.trusted_proxies, ["127.0.0.1"]);
}

#[test]
fn errors_name_the_file_that_set_the_value() {
    let msg = load_err(&[
        "database:\n  uri: postgresql://x\n",
        "database:\n  max_connections: many\n",
    ]);
    assert!(msg.starts_with("database.max_connections: "), "{msg}");
    assert!(msg.ends_with("(in b.yaml)"), "{msg}");
}

#[test]
fn defaults_are_mas_defaults() {
    let c = load(&[]).unwrap().config;
    assert_eq!(c.http.listeners.len(), 2);
    assert_eq!(c.http.listeners[0].name.as_deref(), Some("web"));
    assert_eq!(c.http.listeners[1].name.as_deref(), Some("internal"));
    assert_eq!(c.http.issuer().as_str(), "http://[::]:8080/");
    assert_eq!(c.matrix.endpoint.as_str(), "http://localhost:8008/");
    assert_eq!(c.matrix.homeserver, "localhost:8008");
    assert_eq!(c.experimental.access_token_ttl, 300);
    assert_eq!(c.oauth.authorization_code_ttl, 60);
    assert_eq!(c.oauth.device_code_ttl, 600);
    assert_eq!(c.passwords.minimum_complexity, 3);
    assert!(c.oauth.device_code_grant_enabled);
}
