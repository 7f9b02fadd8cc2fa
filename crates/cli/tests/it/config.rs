//! `vestibule config generate | check | dump`.

use std::path::Path;

use crate::support::{CmdOutput, generate_config, read_yaml, run, vestibule, write_yaml};

const SEED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../config/tests/fixtures/seed-mas-config.yaml"
);

const SEED_ENV: &[(&str, &str)] = &[
    ("DATABASE_URL", "postgres://u@127.0.0.1/db"),
    ("SYNAPSE_CLIENT_SECRET", "x"),
    ("OPENMEET_CLIENT_SECRET", "y"),
];

/// `config check -c …` with the seed's variables set, minus `without`.
fn check(files: &[&Path], without: Option<&str>) -> CmdOutput {
    let mut cmd = vestibule();
    cmd.args(["config", "check"]);
    for f in files {
        cmd.arg("-c").arg(f);
    }
    for (name, value) in SEED_ENV {
        if Some(*name) != without {
            cmd.env(name, value);
        }
    }
    run(&mut cmd)
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn config_check() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let seed = Path::new(SEED);
    assert!(seed.is_file(), "missing fixture {SEED}");

    // generate
    let gen_path = generate_config(tmp.path());
    let generated = read_yaml(&gen_path);
    let encryption = generated["secrets"]["encryption"]
        .as_str()
        .expect("secrets.encryption");
    assert!(
        is_hex(encryption, 64),
        "secrets.encryption = {encryption:?}"
    );
    let keys = generated["secrets"]["keys"]
        .as_sequence()
        .expect("secrets.keys");
    assert_eq!(keys.len(), 2, "{keys:?}");
    for k in keys {
        assert!(
            k["key"]
                .as_str()
                .is_some_and(|pem| pem.contains("BEGIN PRIVATE KEY")),
            "{k:?}"
        );
    }
    let matrix_secret = generated["matrix"]["secret"]
        .as_str()
        .expect("matrix.secret");
    assert!(!matrix_secret.is_empty());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&gen_path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "generated config mode is {mode:o}");
    }
    // `generate -o` refuses to overwrite (it holds secrets).
    let again = run(vestibule()
        .args(["config", "generate", "-o"])
        .arg(&gen_path));
    again.assert_failure();
    assert_eq!(
        read_yaml(&gen_path),
        generated,
        "generate -o overwrote the file"
    );

    // The generated file alone is a complete configuration.
    let out = check(&[&gen_path], None);
    out.assert_success();
    assert!(out.stdout.contains("OK"), "{out}");

    // The seed plus the generated secrets: valid, with two warnings.
    let out = check(&[seed, &gen_path], None);
    out.assert_success();
    assert!(out.stdout.contains("OK"), "{out}");
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("warning"))
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("listeners") && w.contains("http.listeners")),
        "no warning about the top-level `listeners`: {out}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("`oauth2`") && w.contains("`oauth`")),
        "no warning about the `oauth2` resource: {out}"
    );

    // A MAS provider linking existing accounts by the default localpart
    // template loads; `config check` prints the warning with its key path.
    let linking = tmp.path().join("linking.yaml");
    std::fs::write(
        &linking,
        "upstream_oauth2:\n  providers:\n    - id: 01JAYS74TCG3BTWKADN5Q4518C\n      issuer: https://idp.example.org/\n      client_id: c\n      client_secret: s\n      token_endpoint_auth_method: client_secret_basic\n      scope: openid\n      claims_imports:\n        localpart:\n          action: require\n          on_conflict: add\n",
    )
    .expect("writing linking.yaml");
    let out = check(&[seed, &gen_path, &linking], None);
    out.assert_success();
    assert!(
        out.stderr.lines().any(|l| l.starts_with(
            "warning: upstream_oauth2.providers[0].claims_imports.localpart.template: "
        ) && l.contains("preferred_username")),
        "{out}"
    );

    // The seed alone lacks `secrets` and `matrix`.
    let out = check(&[seed], None);
    out.assert_failure();
    assert!(out.stderr.contains("secrets."), "{out}");

    // A missing environment variable names the variable and the key.
    let out = check(&[seed, &gen_path], Some("DATABASE_URL"));
    out.assert_failure();
    assert!(
        out.stderr.contains("DATABASE_URL") && out.stderr.contains("database.uri"),
        "{out}"
    );
    assert!(!out.stdout.contains("OK"), "{out}");
    let out = check(&[seed, &gen_path], Some("SYNAPSE_CLIENT_SECRET"));
    out.assert_failure();
    assert!(
        out.stderr.contains("SYNAPSE_CLIENT_SECRET")
            && out.stderr.contains("clients[0].client_secret"),
        "{out}"
    );

    // A misspelled section in a third file names the key.
    let typo = tmp.path().join("typo.yaml");
    std::fs::write(&typo, "databse: {}\n").expect("writing typo.yaml");
    let out = check(&[seed, &gen_path, &typo], None);
    out.assert_failure();
    assert!(
        out.stderr.contains("databse") && out.stderr.contains("typo.yaml"),
        "{out}"
    );

    // A misspelled nested key (in a modified copy of the seed) names its path.
    let mut doc = read_yaml(seed);
    let localpart = &mut doc["upstream_oauth2"]["providers"][0]["claims_imports"]["localpart"];
    let action = localpart
        .as_mapping_mut()
        .expect("localpart mapping")
        .remove("action")
        .expect("localpart.action");
    localpart["actoin"] = action;
    let seed_typo = tmp.path().join("seed-typo.yaml");
    write_yaml(&seed_typo, &doc);
    let out = check(&[&seed_typo, &gen_path], None);
    out.assert_failure();
    assert!(
        out.stderr
            .contains("upstream_oauth2.providers[0].claims_imports.localpart"),
        "{out}"
    );
    assert!(out.stderr.contains("actoin"), "{out}");

    // A value that parses but breaks a rule: a short encryption key.
    let mut doc = generated.clone();
    doc["secrets"]["encryption"] = "abcd".into();
    let short = tmp.path().join("short.yaml");
    write_yaml(&short, &doc);
    let out = check(&[&short], None);
    out.assert_failure();
    assert!(out.stderr.contains("secrets.encryption"), "{out}");
}

#[test]
fn config_dump() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let gen_path = generate_config(tmp.path());
    let generated = read_yaml(&gen_path);
    let encryption = generated["secrets"]["encryption"]
        .as_str()
        .expect("secrets.encryption");
    let matrix_secret = generated["matrix"]["secret"]
        .as_str()
        .expect("matrix.secret");

    let out = run(vestibule().args(["config", "dump", "-c"]).arg(&gen_path));
    out.assert_success();
    assert!(!out.stdout.contains(encryption), "encryption key leaked");
    assert!(!out.stdout.contains(matrix_secret), "matrix secret leaked");
    assert!(!out.stdout.contains("PRIVATE KEY"), "signing key leaked");
    assert!(out.stdout.contains("[redacted]"), "{out}");

    // It is still the effective configuration: the non-secret values are
    // there, defaults filled in, secrets replaced in place.
    let dumped: serde_yaml::Value = serde_yaml::from_str(&out.stdout).expect("dump is YAML");
    assert_eq!(
        dumped["http"]["public_base"],
        generated["http"]["public_base"]
    );
    assert_eq!(dumped["database"]["uri"], "[redacted]");
    assert_eq!(dumped["secrets"]["encryption"], "[redacted]");
    assert_eq!(dumped["matrix"]["secret"], "[redacted]");
    assert_eq!(dumped["matrix"]["homeserver"], "localhost:8008");
    let keys = dumped["secrets"]["keys"].as_sequence().expect("keys");
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| k["key"] == "[redacted]"), "{keys:?}");
    assert!(
        dumped["passwords"].is_mapping(),
        "defaults not filled in: {out}"
    );
}
