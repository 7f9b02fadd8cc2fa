//! Migrations on both engines stay in lockstep, and applied migrations are
//! append-only.

use std::collections::BTreeSet;

use vestibule_storage_sql::{MIGRATIONS, testing::TestDatabase};

fn files(engine: &str) -> BTreeSet<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(engine);
    std::fs::read_dir(dir)
        .expect("migrations dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn both_engines_have_the_same_migration_files_and_all_are_registered() {
    let sqlite = files("sqlite");
    let postgres = files("postgres");
    assert_eq!(
        sqlite, postgres,
        "migrations/sqlite and migrations/postgres must hold the same versions"
    );
    let registered: BTreeSet<String> = MIGRATIONS
        .iter()
        .map(|m| format!("{:04}_{}.sql", m.version, m.name))
        .collect();
    assert_eq!(
        sqlite, registered,
        "every migration file is listed in MIGRATIONS, and only those"
    );
    let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
    let mut sorted = versions.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(versions, sorted, "versions strictly increase");
}

#[tokio::test]
async fn resulting_schemas_match_on_both_engines() {
    let sqlite = TestDatabase::sqlite().await.expect("sqlite");
    let Some(pg) = TestDatabase::postgres().await.expect("postgres") else {
        return;
    };
    let a = sqlite
        .storage
        .schema_columns()
        .await
        .expect("sqlite columns");
    let b = pg.storage.schema_columns().await.expect("postgres columns");
    assert!(
        a.len() > 50,
        "the schema has its tables ({} columns)",
        a.len()
    );
    let only_sqlite: Vec<_> = a.iter().filter(|c| !b.contains(c)).collect();
    let only_pg: Vec<_> = b.iter().filter(|c| !a.contains(c)).collect();
    assert!(
        only_sqlite.is_empty() && only_pg.is_empty(),
        "tables/columns/nullability differ:\n only in SQLite: {only_sqlite:?}\n only in PostgreSQL: {only_pg:?}"
    );
    sqlite.cleanup().await;
    pg.cleanup().await;
}

#[tokio::test]
async fn migrating_twice_is_a_no_op_and_status_is_clean() {
    let db = TestDatabase::sqlite().await.expect("sqlite");
    assert!(db.storage.migrate().await.expect("again").is_empty());
    let status = db.storage.migration_status().await.expect("status");
    assert!(status.pending.is_empty());
    assert_eq!(status.applied.len(), MIGRATIONS.len());
    db.cleanup().await;
}

#[tokio::test]
async fn an_edited_applied_migration_is_refused() {
    let db = TestDatabase::sqlite().await.expect("sqlite");
    // Simulate an edit of migration 1 after it was applied.
    let pool = sqlx::SqlitePool::connect(&db.url).await.expect("pool");
    sqlx::query("UPDATE vestibule_migrations SET checksum = 'edited' WHERE version = 1")
        .execute(&pool)
        .await
        .expect("update");
    pool.close().await;
    let err = db.storage.migrate().await.expect_err("must refuse");
    assert!(err.to_string().contains("append-only"), "{err}");
    db.cleanup().await;
}

#[tokio::test]
async fn a_database_newer_than_the_binary_is_refused() {
    let db = TestDatabase::sqlite().await.expect("sqlite");
    let pool = sqlx::SqlitePool::connect(&db.url).await.expect("pool");
    sqlx::query("INSERT INTO vestibule_migrations (version, name, checksum, applied_at) VALUES (9999, 'future', 'x', 0)")
        .execute(&pool)
        .await
        .expect("insert");
    pool.close().await;
    let err = db.storage.migrate().await.expect_err("must refuse");
    assert!(err.to_string().contains("newer than this binary"), "{err}");
    db.cleanup().await;
}
