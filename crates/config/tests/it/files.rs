//! `*_file` variants.

use std::fs;

use vestibule_config::{load_files, load_strs};

use crate::no_env;

#[test]
fn reads_secret_files_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("client.secret"), "from-a-file\n").unwrap();
    fs::write(
        dir.path().join("enc.hex"),
        "0000111122223333444455556666777788889999aaaabbbbccccddddeeeeffff\n",
    )
    .unwrap();
    fs::write(dir.path().join("matrix.secret"), "m472!x53c237").unwrap();
    let config = dir.path().join("config.yaml");
    fs::write(
        &config,
        "clients:\n  - client_id: 01JAYS74TCG3BTWKADN5Q4518C\n    client_auth_method: client_secret_basic\n    client_secret_file: client.secret\nsecrets:\n  encryption_file: enc.hex\nmatrix:\n  secret_file: matrix.secret\n",
    )
    .unwrap();
    let loaded = load_files(&[config], &no_env).unwrap();
    let c = &loaded.config;
    assert_eq!(
        c.clients[0].client_secret.as_ref().unwrap().expose(),
        "from-a-file"
    );
    assert_eq!(c.matrix.secret.as_ref().unwrap().expose(), "m472!x53c237");
    assert_eq!(c.secrets.encryption_key().unwrap()[1], 0x00);
    assert_eq!(c.secrets.encryption_key().unwrap()[2], 0x11);
}

#[test]
fn both_forms_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("s"), "x").unwrap();
    let err = load_strs(
        &[(
            "both.yaml".to_owned(),
            "matrix:\n  secret: inline\n  secret_file: s\n".to_owned(),
        )],
        &no_env,
        dir.path(),
    )
    .unwrap_err();
    assert_eq!(err.path(), Some("matrix.secret"));
    let msg = err.to_string();
    assert!(
        msg.contains("secret_file") && msg.contains("both.yaml"),
        "{msg}"
    );
}

#[test]
fn missing_file_names_path_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_strs(
        &[(
            "c.yaml".to_owned(),
            "upstream_oauth2:\n  providers:\n    - id: 01JAYS74TCG3BTWKADN5Q4518C\n      issuer: https://x/\n      client_id: c\n      client_secret_file: nowhere.txt\n".to_owned(),
        )],
        &no_env,
        dir.path(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("upstream_oauth2.providers[0].client_secret_file: cannot read"),
        "{msg}"
    );
    assert!(
        msg.contains("nowhere.txt") && msg.contains("c.yaml"),
        "{msg}"
    );
}
