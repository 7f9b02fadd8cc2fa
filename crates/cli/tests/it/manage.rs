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

/// `register-user`, `lock-user`/`unlock-user`, `deactivate-user` and
/// `reactivate-user` schedule homeserver jobs in their transaction; the job
/// worker (run here over the same database, against the in-memory
/// homeserver) carries them out.
#[test]
#[allow(clippy::too_many_lines)]
fn manage_schedules_homeserver_jobs_and_deactivation_ends_sessions() {
    use std::sync::Arc;

    use vestibule_domain::{SystemClock, oauth2::ClientAuthMethod, tokens::token_hash};
    use vestibule_server::{
        homeserver::MockHomeserver,
        jobs::{JobWorker, WorkerSettings},
    };
    use vestibule_storage::oauth2::ClientParams;

    let tmp = tempfile::tempdir().expect("tempdir");
    let generated = generate_config(tmp.path());
    let config = tmp.path().join("config.yaml");
    let db = tmp.path().join("jobs.db");
    let url = format!("sqlite://{}", db.display());
    write_config_for(&generated, &config, &url, free_port());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let hs = Arc::new(MockHomeserver::new("example.org"));
    // One pass of the worker over the CLI's database.
    let run_jobs = || {
        runtime.block_on(async {
            let storage = SqlStorage::connect(&url, &PoolSettings::default())
                .await
                .expect("connect");
            let worker = JobWorker::new(
                Arc::new(storage.clone()),
                Arc::new(SystemClock),
                hs.clone(),
                WorkerSettings::default(),
            );
            let report = worker.run_once().await.expect("worker pass");
            storage.close().await;
            report
        })
    };

    manage(
        &config,
        &[
            "register-user",
            "carol",
            "--password",
            "carol's password",
            "--email",
            "carol@example.org",
        ],
    )
    .assert_success();
    assert!(hs.user("carol").is_none());
    assert_eq!(run_jobs().completed, 1, "one provisioning job");
    let carol = hs.user("carol").expect("provisioned by the job");
    assert_eq!(carol.display_name.as_deref(), Some("carol"));
    assert!(carol.emails.contains("carol@example.org"), "{carol:?}");
    assert!(!carol.locked);

    manage(&config, &["lock-user", "carol"]).assert_success();
    assert_eq!(run_jobs().completed, 1);
    assert!(hs.user("carol").unwrap().locked, "locked on the homeserver");
    manage(&config, &["unlock-user", "carol"]).assert_success();
    assert_eq!(run_jobs().completed, 1);
    assert!(
        !hs.user("carol").unwrap().locked,
        "unlocked on the homeserver"
    );

    // An app session with a token, and a browser session.
    let (session_id, token_id) = runtime.block_on(async {
        let storage = SqlStorage::connect(&url, &PoolSettings::default())
            .await
            .expect("connect");
        let mut repo = storage.write().await.expect("write");
        let rng = &mut rand::rngs::OsRng;
        let clock = SystemClock;
        let user = repo
            .users()
            .find_by_username("carol")
            .await
            .unwrap()
            .unwrap();
        let client = repo
            .oauth2_clients()
            .add(
                rng,
                &clock,
                ClientParams {
                    client_name: Some("App".to_owned()),
                    client_uri: None,
                    logo_uri: None,
                    policy_uri: None,
                    tos_uri: None,
                    redirect_uris: vec!["https://app.example/cb".parse().unwrap()],
                    grant_types: vec!["authorization_code".to_owned()],
                    application_type: None,
                    token_endpoint_auth_method: ClientAuthMethod::None,
                    encrypted_client_secret: None,
                    jwks: None,
                    jwks_uri: None,
                    id_token_signed_response_alg: None,
                    metadata_digest: None,
                },
            )
            .await
            .unwrap();
        let session = repo
            .oauth2_sessions()
            .add(
                rng,
                &clock,
                &client,
                Some(&user),
                None,
                "urn:matrix:client:api:* urn:matrix:client:device:CLIDEVICE1",
            )
            .await
            .unwrap();
        let token = repo
            .oauth2_access_tokens()
            .add(rng, &clock, &session, &token_hash("mat_test"), None)
            .await
            .unwrap();
        repo.browser_sessions()
            .add(rng, &clock, &user, None)
            .await
            .unwrap();
        repo.save().await.unwrap();
        storage.close().await;
        (session.id, token.id)
    });

    let out = manage(&config, &["deactivate-user", "carol", "--erase"]);
    out.assert_success();
    assert!(
        out.stdout.contains("Deactivated @carol:")
            && out.stdout.contains("ended 1 app session(s)")
            && out.stdout.contains("1 browser session(s)"),
        "{out}"
    );
    runtime.block_on(async {
        let storage = SqlStorage::connect(&url, &PoolSettings::default())
            .await
            .expect("connect");
        let mut repo = storage.read().await.expect("read");
        let user = repo
            .users()
            .find_by_username("carol")
            .await
            .unwrap()
            .unwrap();
        assert!(user.deactivated_at.is_some());
        let session = repo
            .oauth2_sessions()
            .lookup(session_id)
            .await
            .unwrap()
            .unwrap();
        assert!(session.finished_at.is_some(), "app session ended");
        let token = repo
            .oauth2_access_tokens()
            .lookup(token_id)
            .await
            .unwrap()
            .unwrap();
        assert!(token.revoked_at.is_some(), "its token revoked");
        assert!(
            repo.browser_sessions()
                .list_active_for_user(&user)
                .await
                .unwrap()
                .is_empty()
        );
        drop(repo);
        storage.close().await;
    });
    assert_eq!(run_jobs().completed, 1, "one delete_user job");
    let carol = hs.user("carol").unwrap();
    assert!(carol.deactivated && carol.erased, "{carol:?}");
    assert!(hs.calls().contains(&"delete_user carol".to_owned()));

    let out = manage(&config, &["reactivate-user", "carol"]);
    out.assert_success();
    assert!(out.stdout.contains("Reactivated @carol:"), "{out}");
    assert_eq!(run_jobs().completed, 1);
    assert!(!hs.user("carol").unwrap().deactivated);
    let again = manage(&config, &["reactivate-user", "carol"]);
    again.assert_success();
    assert!(again.stdout.contains("was not deactivated"), "{again}");
    assert_eq!(run_jobs().reserved, 0, "nothing scheduled");
    manage(&config, &["deactivate-user", "nobody"]).assert_failure();
}
