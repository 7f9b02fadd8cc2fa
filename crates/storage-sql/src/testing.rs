//! Fresh databases for tests, on either engine.
//!
//! PostgreSQL tests read `VESTIBULE_TEST_POSTGRES_URL` (an admin URL such as
//! `postgres://postgres@127.0.0.1:5432/postgres`) and create their own
//! database per test. Without it they are skipped, unless
//! `VESTIBULE_REQUIRE_POSTGRES=1` is set (as the test script and CI do), in
//! which case a missing or unreachable PostgreSQL is a failure.

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Connection, Executor, PgConnection};

use crate::{PoolSettings, SqlStorage};

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique_name(prefix: &str) -> String {
    let nanos = vestibule_domain::Clock::now(&vestibule_domain::SystemClock)
        .timestamp_nanos_opt()
        .unwrap_or_default();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A database that exists for one test.
pub struct TestDatabase {
    pub url: String,
    pub storage: SqlStorage,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(tempfile::TempDir),
    Postgres {
        admin_url: String,
        name: String,
    },
    /// A second pool on another test's database ([`TestDatabase::reopen`]):
    /// the owner removes the database.
    PoolOnly,
}

/// Is PostgreSQL required for this run?
pub fn postgres_required() -> bool {
    std::env::var("VESTIBULE_REQUIRE_POSTGRES").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The admin URL for PostgreSQL tests, or `None` to skip them.
///
/// # Panics
/// When PostgreSQL is required but not configured.
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("VESTIBULE_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                !postgres_required(),
                "VESTIBULE_REQUIRE_POSTGRES is set but VESTIBULE_TEST_POSTGRES_URL is not"
            );
            eprintln!("skipping PostgreSQL: VESTIBULE_TEST_POSTGRES_URL is not set");
            None
        }
    }
}

impl TestDatabase {
    /// A fresh, migrated SQLite database in a temporary directory.
    pub async fn sqlite() -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        let storage = SqlStorage::connect(&url, &PoolSettings::default()).await?;
        storage.migrate().await?;
        Ok(Self {
            url,
            storage,
            cleanup: Cleanup::Sqlite(dir),
        })
    }

    /// A fresh, migrated PostgreSQL database, or `None` when PostgreSQL tests
    /// are skipped.
    pub async fn postgres() -> Result<Option<Self>, Box<dyn std::error::Error + Send + Sync>> {
        let Some(admin_url) = postgres_admin_url() else {
            return Ok(None);
        };
        let name = unique_name("vestibule_test");
        let mut admin = PgConnection::connect(&admin_url).await.map_err(|e| {
            format!(
                "cannot reach PostgreSQL at {}: {e}",
                crate::redact_url(&admin_url)
            )
        })?;
        admin
            .execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await?;
        admin.close().await?;
        let mut url = url::Url::parse(&admin_url)?;
        url.set_path(&name);
        let url = url.to_string();
        let storage = SqlStorage::connect(&url, &PoolSettings::default()).await?;
        storage.migrate().await?;
        Ok(Some(Self {
            url,
            storage,
            cleanup: Cleanup::Postgres { admin_url, name },
        }))
    }

    /// A second, independent pool on the same database (the same SQLite file
    /// or PostgreSQL database), as a second instance of the server opens it
    /// at startup: its own connections and, on SQLite, its own writer queue.
    /// Migrating is a no-op here, as for a replica starting after the first.
    /// Its [`cleanup`](Self::cleanup) only closes the pool; clean up this one
    /// before the original.
    pub async fn reopen(&self) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let storage = SqlStorage::connect(&self.url, &PoolSettings::default()).await?;
        let applied = storage.migrate().await?;
        if !applied.is_empty() {
            return Err(format!("a reopened database applied migrations {applied:?}").into());
        }
        Ok(Self {
            url: self.url.clone(),
            storage,
            cleanup: Cleanup::PoolOnly,
        })
    }

    /// Closes the pool and removes the database.
    pub async fn cleanup(self) {
        self.storage.close().await;
        match self.cleanup {
            Cleanup::Sqlite(dir) => drop(dir),
            Cleanup::Postgres { admin_url, name } => {
                if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                    let _ = admin
                        .execute(
                            format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str(),
                        )
                        .await;
                    let _ = admin.close().await;
                }
            }
            Cleanup::PoolOnly => {}
        }
    }
}
