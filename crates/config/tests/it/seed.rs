//! The seed configuration, merged with a second file carrying `secrets` and
//! `matrix`.

use vestibule_config::{ClientAuthMethod, ImportAction, Resource, TokenAuthMethod, load_files};

use crate::{env_of, fixture};

const ENV: &[(&str, &str)] = &[
    ("DATABASE_URL", "postgresql://mas:dbpass@db/mas"),
    ("SYNAPSE_CLIENT_SECRET", "synapse-secret-from-env"),
    ("OPENMEET_CLIENT_SECRET", "openmeet-secret-from-env"),
];

fn seed_paths() -> Vec<std::path::PathBuf> {
    vec![
        fixture("seed-mas-config.yaml"),
        fixture("secrets-matrix.yaml"),
    ]
}

#[test]
fn seed_loads_with_exactly_the_expected_warnings() {
    let loaded = load_files(&seed_paths(), &env_of(ENV)).expect("seed loads");
    let paths: Vec<&str> = loaded.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "listeners",
            "http.listeners[0].resources[2].name",
            "upstream_oauth2.providers[0].claims_imports.tenant_id",
        ],
        "{:#?}",
        loaded.warnings
    );
    let shown: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert!(shown[0].starts_with("warning: listeners: "));
    assert!(shown[0].contains("http.listeners"), "{}", shown[0]);
    assert!(shown[0].contains("seed-mas-config.yaml"), "{}", shown[0]);
    assert!(shown[1].contains("`oauth`"), "{}", shown[1]);
    assert!(shown[2].contains("Vestibule extension"), "{}", shown[2]);

    let config = &loaded.config;
    config
        .check_required_sections()
        .expect("secrets and matrix present");

    // The listener moved under http.listeners, with the resource renamed.
    assert_eq!(config.http.listeners.len(), 1);
    let web = &config.http.listeners[0];
    assert_eq!(web.name.as_deref(), Some("web"));
    assert_eq!(
        web.resources,
        [
            Resource::Discovery,
            Resource::Human,
            Resource::OAuth,
            Resource::Compat
        ]
    );

    // Environment values.
    assert_eq!(
        config.database.uri.as_ref().unwrap().expose(),
        "postgresql://mas:dbpass@db/mas"
    );
    let client = &config.clients[0];
    assert_eq!(client.client_id, "0000000000000000000SYNAPSE");
    assert_eq!(
        client.client_auth_method,
        ClientAuthMethod::ClientSecretPost
    );
    assert_eq!(
        client.client_secret.as_ref().unwrap().expose(),
        "synapse-secret-from-env"
    );

    let provider = &config.upstream_oauth2.providers[0];
    assert_eq!(
        provider.client_secret.as_ref().unwrap().expose(),
        "openmeet-secret-from-env"
    );
    assert_eq!(
        provider.token_endpoint_auth_method,
        TokenAuthMethod::ClientSecretBasic
    );
    assert_eq!(
        provider.claims_imports.localpart.action,
        ImportAction::Require
    );
    let tenant = &provider.claims_imports.custom["tenant_id"];
    assert_eq!(tenant.action, ImportAction::Suggest);
    assert_eq!(tenant.template, "{{ user.tenant_id }}");

    // Second file.
    assert_eq!(config.matrix.homeserver, "matrix.openmeet.net");
    assert_eq!(config.secrets.encryption_key().unwrap()[0], 0x00);
    assert_eq!(config.secrets.encryption_key().unwrap()[31], 0xff);
    assert_eq!(
        config.policy.data["admin_users"][0],
        "@admin:matrix.openmeet.net"
    );
    // Defaults stay MAS's.
    assert_eq!(config.http.public_base.as_str(), "http://[::]:8080/");
    assert_eq!(config.database.max_connections, 10);
}

#[test]
fn redacted_hides_every_secret() {
    let loaded = load_files(&seed_paths(), &env_of(ENV)).unwrap();
    let json = serde_json::to_string(&loaded.config.redacted()).unwrap();
    for secret in [
        "dbpass",
        "synapse-secret-from-env",
        "openmeet-secret-from-env",
        "SEEDKEYMATERIAL",
        "SEEDMATRIXSECRET",
        "0000111122223333",
    ] {
        assert!(!json.contains(secret), "{secret} leaked: {json}");
    }
    assert!(json.contains("[redacted]"));
    assert!(json.contains("matrix.openmeet.net"), "non-secrets stay");
    // Debug hides them too, while plain serialization keeps them.
    let debug = format!("{:?}", loaded.config);
    assert!(!debug.contains("synapse-secret-from-env"));
    let plain = serde_json::to_string(&loaded.config).unwrap();
    assert!(plain.contains("synapse-secret-from-env"));
}

#[test]
fn missing_database_url_names_variable_path_and_file() {
    let env = env_of(&ENV[1..]);
    let msg = load_files(&seed_paths(), &env).unwrap_err().to_string();
    assert!(msg.contains("DATABASE_URL"), "{msg}");
    assert!(msg.contains("database.uri"), "{msg}");
    assert!(msg.contains("seed-mas-config.yaml"), "{msg}");
}

#[test]
fn missing_synapse_secret_names_client_path() {
    let env = env_of(&[ENV[0], ENV[2]]);
    let msg = load_files(&seed_paths(), &env).unwrap_err().to_string();
    assert!(msg.contains("SYNAPSE_CLIENT_SECRET"), "{msg}");
    assert!(msg.contains("clients[0].client_secret"), "{msg}");
}

#[test]
fn seed_alone_lacks_required_sections() {
    let loaded = load_files(&[fixture("seed-mas-config.yaml")], &env_of(ENV)).unwrap();
    let err = loaded.config.check_required_sections().unwrap_err();
    assert_eq!(err.path(), Some("secrets.encryption"));
}
