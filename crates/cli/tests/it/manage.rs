//! `vestibule manage …` end to end: register → set-password → lock →
//! unlock → promote → demote, checked in the database.

use std::{io::Write as _, process::Stdio};

use vestibule_storage::RepositoryFactory as _;
use vestibule_storage_sql::{PoolSettings, SqlStorage};

use crate::support::{CmdOutput, free_port, generate_config, run, vestibule, write_config_for};

fn manage(config: &std::path::Path, args: &[&str]) -> CmdOutput {
    run(vestibule().arg("-c").arg(config).arg("manage").args(args))
}

fn manage_stdin(config: &std::path::Path, args: &[&str], stdin: &str) -> CmdOutput {
    let mut cmd = vestibule();
    cmd.arg("-c")
        .arg(config)
        .arg("manage")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawning vestibule");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("writing stdin");
    CmdOutput::from(child.wait_with_output().expect("waiting"))
}

#[test]
fn register_set_password_lock_unlock_promote() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let generated = generate_config(tmp.path());
    let config = tmp.path().join("config.yaml");
    let db = tmp.path().join("manage.db");
    let url = format!("sqlite://{}", db.display());
    write_config_for(&generated, &config, &url, free_port());

    let out = manage(
        &config,
        &[
            "register-user",
            "alice",
            "--password",
            "first password",
            "--email",
            "alice@example.org",
        ],
    );
    out.assert_success();
    assert!(out.stdout.contains("Registered @alice:"), "{out}");
    assert!(out.stdout.contains("alice@example.org"), "{out}");

    // Clear errors, non-zero exit.
    let dup = manage(
        &config,
        &["register-user", "alice", "--password", "another password"],
    );
    dup.assert_failure();
    assert!(dup.stderr.contains("already exists"), "{dup}");
    let weak = manage(&config, &["register-user", "bob", "--password", "short"]);
    weak.assert_failure();
    assert!(weak.stderr.contains("at least 8"), "{weak}");
    let missing = manage(&config, &["lock-user", "nobody"]);
    missing.assert_failure();
    assert!(
        missing.stderr.contains("no user named `nobody`"),
        "{missing}"
    );
    let no_pw = manage(&config, &["set-password", "alice"]);
    no_pw.assert_failure();

    let out = manage_stdin(
        &config,
        &["set-password", "alice", "--password-stdin"],
        "second password\n",
    );
    out.assert_success();
    assert!(
        out.stdout.contains("Set a new password for @alice:"),
        "{out}"
    );
    let out = manage(&config, &["lock-user", "alice"]);
    out.assert_success();
    assert!(out.stdout.contains("Locked @alice:"), "{out}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let check = |f: &dyn Fn(&vestibule_domain::user::User, u16, &str)| {
        runtime.block_on(async {
            let storage = SqlStorage::connect(&url, &PoolSettings::default())
                .await
                .expect("connect");
            let mut repo = storage.read().await.expect("read");
            let user = repo
                .users()
                .find_by_username("alice")
                .await
                .expect("query")
                .expect("alice exists");
            let pw = repo
                .user_passwords()
                .active(&user)
                .await
                .expect("query")
                .expect("a password");
            f(&user, pw.version, &pw.hashed_password);
            drop(repo);
            storage.close().await;
        });
    };
    check(&|user, _, hash| {
        assert!(user.locked_at.is_some(), "locked");
        assert!(!user.can_request_admin);
        assert!(hash.starts_with("$argon2id$"), "argon2id PHC string");
    });

    manage(&config, &["unlock-user", "alice"]).assert_success();
    let out = manage(&config, &["promote-admin", "alice"]);
    out.assert_success();
    assert!(out.stdout.contains("may now request admin"), "{out}");
    check(&|user, _, _| {
        assert!(user.locked_at.is_none(), "unlocked");
        assert!(user.can_request_admin, "promoted");
    });
    manage(&config, &["demote-admin", "alice"]).assert_success();
    check(&|user, _, _| assert!(!user.can_request_admin, "demoted"));

    // --admin at registration, and the password from stdin.
    let out = manage_stdin(
        &config,
        &["register-user", "root", "--password-stdin", "--admin"],
        "root password 1\n",
    );
    out.assert_success();
    assert!(out.stdout.contains("may request admin"), "{out}");
}
