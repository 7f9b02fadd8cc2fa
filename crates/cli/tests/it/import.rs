//! `vestibule manage import-users`, `manage kill-sessions` and `manage
//! set-upstream-issuer` end to end, on
//! SQLite and PostgreSQL: the real binary against a fresh database, checked
//! through the storage traits; the homeserver jobs they schedule are run by
//! the job worker against the in-memory homeserver.

use std::{fmt::Write as _, path::Path, sync::Arc};

use vestibule_domain::{
    SystemClock, Ulid, job::JobStatus, oauth2::ClientAuthMethod, tokens::token_hash,
    upstream::UpstreamProvider, user::User,
};
use vestibule_server::{
    homeserver::{MockDevice, MockHomeserver, MockUser},
    jobs::{JobWorker, WorkerSettings},
};
use vestibule_storage::{BoxRepository, RepositoryFactory as _, oauth2::ClientParams};
use vestibule_storage_sql::{SqlStorage, testing::TestDatabase};

use crate::support::{
    CmdOutput, Server, free_port, generate_config, read_yaml, run, vestibule, write_yaml,
};

/// The configured upstream provider.
const PROVIDER: &str = "01JAYS74TCG3BTWKADN5Q4518C";
/// A well-formed provider id that is not in the config.
const OTHER_PROVIDER: &str = "01JAYS74TCG3BTWKADN5Q45199";

/// A fresh database (dropped at the end, also on failure) and a config
/// pointing at it, with one upstream provider.
struct Env {
    db: Option<TestDatabase>,
    runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(db) = self.db.take() {
            self.runtime.block_on(db.cleanup());
        }
    }
}

impl Env {
    fn new(postgres: bool) -> Option<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let db = if postgres {
            runtime
                .block_on(TestDatabase::postgres())
                .expect("creating the PostgreSQL test database")?
        } else {
            runtime
                .block_on(TestDatabase::sqlite())
                .expect("creating the SQLite test database")
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let generated = generate_config(dir.path());
        let mut doc = read_yaml(&generated);
        doc["database"]["uri"] = db.url.as_str().into();
        let address = format!("127.0.0.1:{}", free_port());
        doc["http"]["listeners"][0]["binds"][0]["address"] = address.as_str().into();
        doc["http"]["public_base"] = format!("http://{address}/").into();
        doc["upstream_oauth2"] = serde_yaml::from_str(&format!(
            "providers:\n  - id: \"{PROVIDER}\"\n    issuer: \"https://idp.example.org/\"\n    human_name: Corp\n    client_id: vestibule\n    scope: openid\n"
        ))
        .expect("provider YAML");
        let config = dir.path().join("config.yaml");
        write_yaml(&config, &doc);
        Some(Self {
            db: Some(db),
            runtime,
            dir,
            config,
        })
    }

    fn storage(&self) -> &SqlStorage {
        &self.db.as_ref().expect("database").storage
    }

    fn manage(&self, args: &[&str]) -> CmdOutput {
        run(vestibule()
            .arg("-c")
            .arg(&self.config)
            .arg("manage")
            .args(args))
    }

    fn import(&self, file: &Path, extra: &[&str]) -> CmdOutput {
        let mut args = vec!["import-users", file.to_str().expect("utf-8 path")];
        args.extend_from_slice(extra);
        self.manage(&args)
    }

    fn write(&self, name: &str, text: &str) -> std::path::PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("writing the import file");
        path
    }

    /// Runs `f` in a read transaction.
    fn read<T>(&self, f: impl AsyncFnOnce(&mut BoxRepository) -> T) -> T {
        self.runtime.block_on(async {
            let mut repo = self.storage().read().await.expect("read");
            f(&mut repo).await
        })
    }

    fn scheduled_jobs(&self) -> u64 {
        self.read(async |repo| {
            repo.jobs()
                .count_by_status(JobStatus::Scheduled)
                .await
                .expect("count")
        })
    }

    fn user_count(&self) -> u64 {
        self.read(async |repo| repo.users().count().await.expect("count"))
    }

    /// One pass of the job worker against `hs`.
    fn run_jobs(&self, hs: &Arc<MockHomeserver>) -> u32 {
        self.runtime.block_on(async {
            let worker = JobWorker::new(
                Arc::new(self.storage().clone()),
                Arc::new(SystemClock),
                hs.clone(),
                WorkerSettings::default(),
            );
            let mut completed = 0;
            loop {
                let report = worker.run_once().await.expect("worker pass");
                if report.reserved == 0 {
                    return completed;
                }
                completed += report.completed;
            }
        })
    }
}

async fn provider(repo: &mut BoxRepository) -> UpstreamProvider {
    repo.upstream_providers()
        .lookup(Ulid::from_string(PROVIDER).expect("ulid"))
        .await
        .expect("query")
        .expect("the provider was synced from the config")
}

async fn user(repo: &mut BoxRepository, name: &str) -> User {
    repo.users()
        .find_by_username(name)
        .await
        .expect("query")
        .unwrap_or_else(|| panic!("{name} exists"))
}

/// A CSV of `n` valid users with a handful of invalid rows among them, and
/// the expected (line, reason) of each invalid one.
fn generated_csv(n: usize) -> (String, Vec<(usize, &'static str)>) {
    let mut csv = String::from("localpart,email,displayname,provider_id,subject,tenant_id\n");
    let mut line = 1;
    let mut invalid = Vec::new();
    let bad: [(usize, String, &'static str); 5] = [
        (
            10,
            format!("Bad Name,bad@example.org,,{PROVIDER},sub-bad"),
            "invalid localpart `Bad Name`",
        ),
        (
            n / 4,
            "bademail,not-an-email,,,".to_owned(),
            "invalid email `not-an-email`",
        ),
        (
            n / 2,
            format!("unknownidp,,,{OTHER_PROVIDER},sub-x"),
            "unknown provider",
        ),
        (
            n / 2 + 1,
            "user00003,dup@example.org,,,".to_owned(),
            "duplicate localpart (first at line 5)",
        ),
        (
            n - 1,
            "nosub,,,,lonely-subject".to_owned(),
            "`subject` is given without `provider_id`",
        ),
    ];
    for i in 0..n {
        for (at, row, why) in &bad {
            if *at == i {
                line += 1;
                // Every bad row leaves `tenant_id` blank.
                csv.push_str(row);
                csv.push_str(",\n");
                invalid.push((line, *why));
            }
        }
        line += 1;
        let name = if i == 7 {
            "\"Doe, Jane\"".to_owned()
        } else {
            format!("User {i}")
        };
        writeln!(
            csv,
            "user{i:05},user{i:05}@example.org,{name},{PROVIDER},sub-{i},tenant-{}",
            i % 7
        )
        .expect("write");
    }
    (csv, invalid)
}

fn assert_invalid_reported(out: &CmdOutput, invalid: &[(usize, &str)]) {
    for (line, why) in invalid {
        let expected = format!("line {line}: skipped: {why}");
        assert!(
            out.stderr.contains(&expected),
            "missing `{expected}`:\n{out}"
        );
    }
    assert_eq!(
        out.stderr.matches(": skipped: ").count(),
        invalid.len(),
        "{out}"
    );
}

fn import_story(postgres: bool, n: usize) {
    let Some(env) = Env::new(postgres) else {
        return; // PostgreSQL tests are skipped.
    };
    let (csv, invalid) = generated_csv(n);
    let file = env.write("users.csv", &csv);
    let total = n as u64;

    // A dry run reports what it would do and writes nothing.
    let dry = env.import(&file, &["--dry-run"]);
    dry.assert_failure();
    assert!(
        dry.stdout.contains(&format!(
            "Dry run, nothing was written: {n} to create, 0 to update, 0 unchanged, 5 invalid"
        )),
        "{dry}"
    );
    assert!(
        dry.stdout
            .contains("would create user00042: email user00042@example.org"),
        "{dry}"
    );
    assert_invalid_reported(&dry, &invalid);
    assert_eq!(env.user_count(), 0);
    assert_eq!(env.scheduled_jobs(), 0);

    // The import: valid rows in, invalid ones reported by line, exit 1.
    let out = env.import(&file, &[]);
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert!(
        out.stdout
            .contains(&format!("{n} created, 0 updated, 0 unchanged, 5 invalid")),
        "{out}"
    );
    assert!(out.stderr.contains("5 invalid row(s) skipped"), "{out}");
    assert_invalid_reported(&out, &invalid);
    assert_eq!(env.user_count(), total);
    assert_eq!(env.scheduled_jobs(), total, "one provisioning job per user");

    env.read(async |repo| {
        let provider = provider(repo).await;
        let u = user(repo, "user00042").await;
        let emails = repo.user_emails().all(&u).await.unwrap();
        assert_eq!(emails.len(), 1);
        assert_eq!(emails[0].email, "user00042@example.org");
        let attrs = repo.user_attributes().all(&u).await.unwrap();
        assert_eq!(attrs.get("tenant_id").map(String::as_str), Some("tenant-0"));
        assert_eq!(
            attrs.get("displayname").map(String::as_str),
            Some("User 42")
        );
        let link = repo
            .upstream_links()
            .find_by_subject(&provider, "sub-42")
            .await
            .unwrap()
            .expect("the link exists");
        assert_eq!(link.user_id, Some(u.id), "linked to the right user");
        let jane = user(repo, "user00007").await;
        let attrs = repo.user_attributes().all(&jane).await.unwrap();
        assert_eq!(
            attrs.get("displayname").map(String::as_str),
            Some("Doe, Jane")
        );
        assert!(
            repo.users()
                .find_by_username("unknownidp")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            repo.users()
                .find_by_username("nosub")
                .await
                .unwrap()
                .is_none()
        );
        let first = user(repo, "user00003").await;
        let emails = repo.user_emails().all(&first).await.unwrap();
        assert_eq!(
            emails[0].email, "user00003@example.org",
            "the first row won"
        );
    });

    // Idempotent: the second run changes nothing.
    let again = env.import(&file, &[]);
    again.assert_failure();
    assert!(
        again.stdout.contains(&format!(
            "0 created, 0 updated, {n} unchanged, 5 invalid; nothing changed"
        )),
        "{again}"
    );
    assert_eq!(env.user_count(), total);
    assert_eq!(env.scheduled_jobs(), total, "no new job");

    // Changed values of existing users are updated.
    let changed = csv
        .replace(
            "user00005,user00005@example.org,",
            "user00005,new.five@example.org,",
        )
        .replace("User 6,", "User Six,")
        .replace("sub-8,tenant-1", "sub-8,tenant-9");
    let file2 = env.write("changed.csv", &changed);
    let out = env.import(&file2, &["--dry-run"]);
    assert!(out.stdout.contains("would update user00005: email user00005@example.org removed, email new.five@example.org"), "{out}");
    assert_eq!(env.scheduled_jobs(), total);
    let out = env.import(&file2, &[]);
    assert!(
        out.stdout.contains(&format!(
            "0 created, 3 updated, {} unchanged, 5 invalid",
            n - 3
        )),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("updated user00006: display name `User Six`"),
        "{out}"
    );
    assert!(
        out.stdout.contains("updated user00008: tenant_id=tenant-9"),
        "{out}"
    );
    assert_eq!(
        env.scheduled_jobs(),
        total + 3,
        "the changed users are re-provisioned"
    );
    env.read(async |repo| {
        let u = user(repo, "user00005").await;
        let emails: Vec<_> = repo
            .user_emails()
            .all(&u)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.email)
            .collect();
        assert_eq!(emails, ["new.five@example.org"]);
    });

    // JSON: a new user, a conflict with an existing link, a non-object, and
    // an extra attribute given as a number. Invalid elements are reported
    // by the line they start on (the first element spans three).
    let json = env.write(
        "more.json",
        &format!(
            r#"[
  {{"localpart": "json1", "email": "json1@example.org",
    "provider_id": "{PROVIDER}", "subject": "sub-json1",
    "tenant_id": 7}},
  {{"localpart": "json2", "provider_id": "{PROVIDER}", "subject": "sub-1"}},
  "nope",
  {{"localpart": "json3", "email": "USER00010@example.org"}}
]"#
        ),
    );
    let out = env.import(&json, &[]);
    out.assert_failure();
    assert!(
        out.stdout
            .contains("1 created, 0 updated, 0 unchanged, 3 invalid"),
        "{out}"
    );
    assert!(
        out.stderr.contains("line 5 (index 1): skipped: the identity `sub-1` of this provider is already linked to another user (`user00001`)"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("line 6 (index 2): skipped: not a JSON object"),
        "{out}"
    );
    assert!(
        out.stderr.contains(
            "line 7 (index 3): skipped: the email `USER00010@example.org` belongs to another user"
        ),
        "{out}"
    );
    env.read(async |repo| {
        let provider = provider(repo).await;
        let u = user(repo, "json1").await;
        let attrs = repo.user_attributes().all(&u).await.unwrap();
        assert_eq!(attrs.get("tenant_id").map(String::as_str), Some("7"));
        let link = repo
            .upstream_links()
            .find_by_subject(&provider, "sub-json1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(link.user_id, Some(u.id));
        assert!(
            repo.users()
                .find_by_username("json2")
                .await
                .unwrap()
                .is_none()
        );
    });
}

#[test]
fn import_users_sqlite() {
    import_story(false, 10_000);
}

/// 2 000 rows: the story runs the file six times, and 10 000 rows take
/// about 45 s a run on PostgreSQL in a debug build on these machines (the
/// 10 000-row figures are in the issue note, measured outside the tests).
#[test]
fn import_users_postgres() {
    import_story(true, 2_000);
}

/// The imported users reach the homeserver through the job worker, with
/// their display name and email; a changed display name follows.
#[test]
fn imported_users_are_provisioned_by_the_worker() {
    let env = Env::new(false).expect("SQLite");
    let hs = Arc::new(MockHomeserver::new("example.org"));
    let file = env.write(
        "users.csv",
        &format!(
            "localpart,email,displayname,provider_id,subject\nalice,alice@example.org,Alice Smith,{PROVIDER},a-1\nbob,,,,\n"
        ),
    );
    let out = env.import(&file, &[]);
    out.assert_success();
    assert!(
        out.stdout
            .contains("2 created, 0 updated, 0 unchanged, 0 invalid"),
        "{out}"
    );
    assert_eq!(env.run_jobs(&hs), 2);
    let alice = hs.user("alice").expect("alice provisioned");
    assert_eq!(alice.display_name.as_deref(), Some("Alice Smith"));
    assert!(alice.emails.contains("alice@example.org"), "{alice:?}");
    assert_eq!(
        hs.user("bob").expect("bob").display_name.as_deref(),
        Some("bob")
    );

    let file = env.write(
        "users.csv",
        &format!(
            "localpart,email,displayname,provider_id,subject\nalice,alice@example.org,Alice Jones,{PROVIDER},a-1\nbob,,,,\n"
        ),
    );
    let out = env.import(&file, &[]);
    out.assert_success();
    assert!(
        out.stdout
            .contains("0 created, 1 updated, 1 unchanged, 0 invalid"),
        "{out}"
    );
    assert_eq!(env.run_jobs(&hs), 1);
    assert_eq!(
        hs.user("alice").unwrap().display_name.as_deref(),
        Some("Alice Jones")
    );

    // Another subject for the same provider is a conflict, not a second link.
    let file = env.write(
        "users.csv",
        &format!("localpart,provider_id,subject\nalice,{PROVIDER},a-2\n"),
    );
    let out = env.import(&file, &[]);
    out.assert_failure();
    assert!(
        out.stderr
            .contains("line 2: skipped: the user is already linked to this provider as `a-1`"),
        "{out}"
    );

    // A byte-order mark (spreadsheet exports) and CRLF line ends are fine.
    let out = env.import(
        &env.write(
            "bom.csv",
            "\u{feff}LocalPart,Email\r\ncarol,carol@example.org\r\n",
        ),
        &[],
    );
    out.assert_success();
    assert!(
        out.stdout
            .contains("created carol: email carol@example.org"),
        "{out}"
    );

    // Unusable files are errors that say why; --format overrides the
    // extension.
    let txt = env.write("x.txt", "localpart\ndave\n");
    let out = env.import(&txt, &[]);
    out.assert_failure();
    assert!(out.stderr.contains("--format csv"), "{out}");
    let out = env.import(&txt, &["--format", "csv"]);
    out.assert_success();
    assert!(out.stdout.contains("1 created"), "{out}");
    let out = env.import(&env.write("h.csv", "email\na@b.c\n"), &[]);
    out.assert_failure();
    assert!(out.stderr.contains("no `localpart` column"), "{out}");
    let out = env.import(&env.write("j.json", "{\"localpart\": \"a\"}"), &[]);
    out.assert_failure();
    assert!(
        out.stderr.contains("expected a JSON array of objects"),
        "{out}"
    );
    let out = env.import(&env.write("short.csv", "localpart,email\na\n"), &[]);
    out.assert_failure();
    assert!(
        out.stderr
            .contains("line 2: skipped: 1 field(s), the header has 2"),
        "{out}"
    );
}

/// Two users with an app session (device), a legacy session and a browser
/// session each.
fn seed_sessions(env: &Env) -> Vec<(String, Ulid, Ulid, Ulid, Ulid)> {
    env.runtime.block_on(async {
        let mut repo = env.storage().write().await.expect("write");
        let rng = &mut rand::rngs::OsRng;
        let clock = SystemClock;
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
        let mut out = Vec::new();
        for name in ["ann", "ben"] {
            let user = repo.users().add(rng, &clock, name).await.unwrap();
            let session = repo
                .oauth2_sessions()
                .add(
                    rng,
                    &clock,
                    &client,
                    Some(&user),
                    None,
                    &format!("urn:matrix:client:api:* urn:matrix:client:device:{name}APP"),
                )
                .await
                .unwrap();
            let token = repo
                .oauth2_access_tokens()
                .add(
                    rng,
                    &clock,
                    &session,
                    &token_hash(&format!("mat_{name}")),
                    None,
                )
                .await
                .unwrap();
            let compat = repo
                .compat_sessions()
                .add(rng, &clock, &user, &format!("{name}OLD"), None, None, false)
                .await
                .unwrap();
            let browser = repo
                .browser_sessions()
                .add(rng, &clock, &user, None)
                .await
                .unwrap();
            out.push((name.to_owned(), session.id, token.id, compat.id, browser.id));
        }
        repo.save().await.unwrap();
        out
    })
}

/// Whether each of the seeded sessions is still active.
fn active(env: &Env, ids: &(String, Ulid, Ulid, Ulid, Ulid)) -> [bool; 4] {
    let (_, session, token, compat, browser) = *ids;
    env.read(async |repo| {
        let session = repo
            .oauth2_sessions()
            .lookup(session)
            .await
            .unwrap()
            .unwrap();
        let token = repo
            .oauth2_access_tokens()
            .lookup(token)
            .await
            .unwrap()
            .unwrap();
        let compat = repo
            .compat_sessions()
            .lookup(compat)
            .await
            .unwrap()
            .unwrap();
        let browser = repo
            .browser_sessions()
            .lookup(browser)
            .await
            .unwrap()
            .unwrap();
        [
            session.finished_at.is_none(),
            token.revoked_at.is_none(),
            compat.finished_at.is_none(),
            browser.finished_at.is_none(),
        ]
    })
}

fn kill_sessions_story(postgres: bool) {
    let Some(env) = Env::new(postgres) else {
        return;
    };
    let out = env.manage(&["kill-sessions", "--all"]);
    out.assert_success();
    assert!(
        out.stdout.contains(
            "Ended 0 app session(s), 0 legacy session(s) and 0 browser session(s) of 0 user(s)"
        ),
        "{out}"
    );
    let seeded = seed_sessions(&env);
    let (ann, ben) = (&seeded[0], &seeded[1]);
    // The homeserver knows both users and their devices.
    let hs = Arc::new(MockHomeserver::new("example.org"));
    for name in ["ann", "ben"] {
        let devices = [format!("{name}APP"), format!("{name}OLD")]
            .into_iter()
            .map(|d| (d, MockDevice::default()))
            .collect();
        hs.insert_user(
            name,
            MockUser {
                devices,
                ..MockUser::default()
            },
        );
    }
    let devices = |name: &str| hs.user(name).unwrap().devices.len();

    let dry = env.manage(&["kill-sessions", "ann", "--dry-run"]);
    dry.assert_success();
    assert!(
        dry.stdout.contains(
            "Would end 1 app session(s), 1 legacy session(s) and 1 browser session(s) of @ann:"
        ),
        "{dry}"
    );
    assert_eq!(active(&env, ann), [true; 4]);
    assert_eq!(env.scheduled_jobs(), 0);

    let out = env.manage(&["kill-sessions", "ann"]);
    out.assert_success();
    assert!(
        out.stdout.contains(
            "Ended 1 app session(s), 1 legacy session(s) and 1 browser session(s) of @ann:"
        ),
        "{out}"
    );
    assert_eq!(active(&env, ann), [false; 4], "ann's sessions ended");
    assert_eq!(active(&env, ben), [true; 4], "ben's untouched");
    assert_eq!(env.scheduled_jobs(), 1, "one sync_devices job");
    assert_eq!(env.run_jobs(&hs), 1);
    assert!(
        hs.calls().iter().any(|c| c == "sync_devices ann"),
        "{:?}",
        hs.calls()
    );
    assert_eq!(devices("ann"), 0, "ann's devices left the homeserver");
    assert_eq!(devices("ben"), 2);

    let again = env.manage(&["kill-sessions", "ann"]);
    again.assert_success();
    assert!(
        again.stdout.contains("Ended 0 app session(s), 0 legacy"),
        "{again}"
    );
    assert_eq!(env.scheduled_jobs(), 0, "nothing to sync");

    let out = env.manage(&["kill-sessions", "--all"]);
    out.assert_success();
    assert!(
        out.stdout.contains(
            "Ended 1 app session(s), 1 legacy session(s) and 1 browser session(s) of 1 user(s)"
        ),
        "{out}"
    );
    assert_eq!(active(&env, ben), [false; 4]);
    assert_eq!(env.run_jobs(&hs), 1);
    assert!(
        hs.calls().iter().any(|c| c == "sync_devices ben"),
        "{:?}",
        hs.calls()
    );
    assert_eq!(devices("ben"), 0);

    let out = env.manage(&["kill-sessions", "nobody"]);
    out.assert_failure();
    assert!(out.stderr.contains("no user named `nobody`"), "{out}");
    env.manage(&["kill-sessions"]).assert_failure();
}

#[test]
fn kill_sessions_sqlite() {
    kill_sessions_story(false);
}

#[test]
fn kill_sessions_postgres() {
    kill_sessions_story(true);
}

/// The provider's `issuer` changed in the config while an account is
/// linked through it (S33): `server` refuses to start, naming the key and
/// the way out; `manage set-upstream-issuer` confirms the move (refusing
/// unknown providers), after which the server starts and the link is
/// still the user's.
fn issuer_change_story(postgres: bool) {
    const NEW_ISSUER: &str = "https://login.example.net/";
    let Some(env) = Env::new(postgres) else {
        return;
    };
    let file = env.write(
        "linked.csv",
        &format!("localpart,provider_id,subject\nalice,{PROVIDER},a-1\n"),
    );
    env.import(&file, &[]).assert_success();
    let mut doc = read_yaml(&env.config);
    doc["upstream_oauth2"]["providers"][0]["issuer"] = NEW_ISSUER.into();
    write_yaml(&env.config, &doc);
    let server = || {
        let mut cmd = vestibule();
        cmd.arg("-c").arg(&env.config).arg("server");
        cmd
    };

    let out = Server::spawn(server()).wait_startup_failure();
    out.assert_failure();
    assert!(
        out.stderr.contains("upstream_oauth2.providers[0].issuer"),
        "{out}"
    );
    assert!(out.stderr.contains("1 account(s) are linked"), "{out}");
    assert!(
        out.stderr.contains(&format!(
            "vestibule manage set-upstream-issuer {PROVIDER} {NEW_ISSUER}"
        )),
        "{out}"
    );

    let out = env.manage(&["set-upstream-issuer", OTHER_PROVIDER, NEW_ISSUER]);
    out.assert_failure();
    assert!(out.stderr.contains("no upstream provider"), "{out}");
    let out = env.manage(&["set-upstream-issuer", "not-an-id", NEW_ISSUER]);
    out.assert_failure();
    assert!(out.stderr.contains("not a provider id"), "{out}");
    let issuer = || {
        env.read(async |repo| provider(repo).await.issuer)
            .expect("an issuer")
    };
    assert_eq!(issuer(), "https://idp.example.org/", "nothing changed yet");

    let out = env.manage(&["set-upstream-issuer", PROVIDER, NEW_ISSUER]);
    out.assert_success();
    assert!(
        out.stdout
            .contains("its 1 linked account(s) now sign in through"),
        "{out}"
    );
    assert!(
        !out.stderr.contains("note:"),
        "config and database agree: {out}"
    );
    assert_eq!(issuer(), NEW_ISSUER);
    Server::start(server()).stop();
    env.read(async |repo| {
        let p = provider(repo).await;
        let link = repo
            .upstream_links()
            .find_by_subject(&p, "a-1")
            .await
            .expect("query")
            .expect("the link");
        assert_eq!(link.user_id, Some(user(repo, "alice").await.id));
    });
}

#[test]
fn issuer_change_sqlite() {
    issuer_change_story(false);
}

#[test]
fn issuer_change_postgres() {
    issuer_change_story(true);
}
