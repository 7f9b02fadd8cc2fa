//! Against a real database: `database status`, `server` on PostgreSQL, and
//! `server --no-migrate` on an unmigrated database.

use vestibule_storage_sql::{MIGRATIONS, testing::TestDatabase};

use crate::support::{Server, free_port, generate_config, get, run, vestibule, write_config_for};

/// Drops the test database even when the test fails.
struct PgGuard {
    db: Option<TestDatabase>,
    runtime: tokio::runtime::Runtime,
}

impl Drop for PgGuard {
    fn drop(&mut self) {
        if let Some(db) = self.db.take() {
            self.runtime.block_on(db.cleanup());
        }
    }
}

#[test]
fn postgres() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let Some(db) = runtime
        .block_on(TestDatabase::postgres())
        .expect("creating the PostgreSQL test database")
    else {
        return; // PostgreSQL tests are skipped.
    };
    let guard = PgGuard {
        db: Some(db),
        runtime,
    };
    let url = guard.db.as_ref().expect("database").url.clone();

    let tmp = tempfile::tempdir().expect("tempdir");
    let gen_path = generate_config(tmp.path());
    let port = free_port();
    let config = tmp.path().join("pg.yaml");
    write_config_for(&gen_path, &config, &url, port);

    // `TestDatabase::postgres()` has migrated it: everything applied.
    let all: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
    let out = run(vestibule()
        .arg("-c")
        .arg(&config)
        .args(["database", "status"]));
    out.assert_success();
    assert!(out.stdout.contains(&format!("applied: {all:?}")), "{out}");
    assert!(out.stdout.contains("pending: []"), "{out}");

    // Migrating again is a no-op.
    let out = run(vestibule()
        .arg("-c")
        .arg(&config)
        .args(["database", "migrate"]));
    out.assert_success();
    assert!(out.stdout.contains("applied 0 migration(s)"), "{out}");

    let mut cmd = vestibule();
    cmd.arg("-c").arg(&config).arg("server");
    let server = Server::start(cmd);
    let health = get(port, "/health");
    assert_eq!(health.status, 200, "{}", health.text());
    let discovery = get(port, "/.well-known/openid-configuration");
    assert_eq!(discovery.status, 200, "{}", discovery.text());
    assert_eq!(
        discovery.json()["issuer"],
        format!("http://127.0.0.1:{port}/").as_str()
    );
    assert_eq!(get(port, "/oauth2/keys.json").status, 200);
    server.stop();
    drop(guard);
}

#[test]
fn no_migrate_refuses_an_unmigrated_database() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let gen_path = generate_config(tmp.path());
    let port = free_port();
    let db_path = tmp.path().join("fresh.db");
    let url = format!("sqlite://{}", db_path.display());
    let config = tmp.path().join("sqlite.yaml");
    write_config_for(&gen_path, &config, &url, port);

    let all: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
    let out = run(vestibule()
        .arg("-c")
        .arg(&config)
        .args(["database", "status"]));
    out.assert_success();
    assert!(out.stdout.contains("applied: []"), "{out}");
    assert!(out.stdout.contains(&format!("pending: {all:?}")), "{out}");

    let mut cmd = vestibule();
    cmd.arg("-c").arg(&config).args(["server", "--no-migrate"]);
    let out = Server::spawn(cmd).wait_startup_failure();
    out.assert_failure();
    assert!(out.stderr.contains("database migrate"), "{out}");

    // After `database migrate`, `--no-migrate` starts.
    let out = run(vestibule()
        .arg("-c")
        .arg(&config)
        .args(["database", "migrate"]));
    out.assert_success();
    assert!(
        out.stdout
            .contains(&format!("applied {} migration(s)", all.len())),
        "{out}"
    );
    let mut cmd = vestibule();
    cmd.arg("-c").arg(&config).args(["server", "--no-migrate"]);
    let server = Server::start(cmd);
    assert_eq!(get(port, "/health").status, 200);
    server.stop();
}
