//! The one storage implementation: sqlx on SQLite (embedded default) or
//! PostgreSQL, chosen by the database URL.
//!
//! Both engines run the *same SQL text*: `$1`-style placeholders are accepted
//! by SQLite too, `RETURNING` and `ON CONFLICT` exist in both, timestamps are
//! Unix milliseconds and ids are ULID strings. The few statements that must
//! differ (e.g. `FOR UPDATE SKIP LOCKED` in the job queue) branch on
//! [`Engine`]. This keeps one implementation with no query builder in between;
//! the conformance suite in `vestibule-storage` proves the behaviour on both.

mod conn;
mod migrate;
mod repos;
pub mod testing;

use std::{str::FromStr, time::Duration};

use async_trait::async_trait;
use sqlx::{
    ConnectOptions, Executor,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use vestibule_storage::{BoxRepository, RepositoryFactory, StorageError};

pub use conn::db_err;
pub use migrate::{MIGRATIONS, Migration, MigrationStatus};
pub use repos::SqlRepository;

/// Which database engine a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    /// `sqlite:…` or `postgres://…` / `postgresql://…`.
    pub fn from_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// How long [`SqlStorage::close`] waits for connections in use.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Pool settings (from the `database` config section).
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub min_connections: u32,
    pub connect_timeout: Duration,
    /// Setting this or `max_lifetime` starts sqlx's pool reaper task.
    /// Known upstream bug (transact-rs/sqlx#3645, fixed by PR #4289, in no
    /// release up to and including sqlx 0.9.0): `PoolInner::release` makes a
    /// returned connection acquirable before it increments `num_idle`, so a
    /// concurrent acquire can wrap `num_idle` to `usize::MAX`; a reaper pass
    /// that reads it then loops with no await, pinning a runtime worker at
    /// 100% CPU; closing the pool or shutting the runtime down can then hang
    /// ([`CLOSE_TIMEOUT`] cannot interrupt a task that never yields). It is
    /// rare; the production defaults (600 s / 1800 s) keep the reaper on,
    /// the test databases (`Default`) do not. Recheck when upgrading sqlx.
    pub idle_timeout: Option<Duration>,
    /// Also starts the reaper; see `idle_timeout`.
    pub max_lifetime: Option<Duration>,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            min_connections: 0,
            connect_timeout: Duration::from_secs(30),
            idle_timeout: None,
            max_lifetime: None,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// A connection pool on either engine; opens [`SqlRepository`] transactions.
#[derive(Debug, Clone)]
pub struct SqlStorage {
    pool: Pool,
    /// SQLite has one writer at a time. Queueing writers here, in order,
    /// beats SQLite's busy handler (which sleeps and retries with growing
    /// pauses, so latency balloons under contention).
    sqlite_writer: std::sync::Arc<tokio::sync::Semaphore>,
    acquire_timeout: Duration,
}

impl SqlStorage {
    /// Connects (creating the SQLite file if needed). Does not migrate.
    pub async fn connect(url: &str, settings: &PoolSettings) -> Result<Self, StorageError> {
        let engine = Engine::from_url(url).ok_or_else(|| {
            StorageError::InvalidData(format!(
                "unsupported database URL scheme (expected sqlite: or postgres://): {}",
                redact_url(url)
            ))
        })?;
        let pool = match engine {
            Engine::Sqlite => {
                let options = SqliteConnectOptions::from_str(url)
                    .map_err(db_err)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
                    .disable_statement_logging();
                let pool = SqlitePoolOptions::new()
                    .max_connections(settings.max_connections.max(1))
                    .min_connections(settings.min_connections)
                    .acquire_timeout(settings.connect_timeout)
                    .idle_timeout(settings.idle_timeout)
                    .max_lifetime(settings.max_lifetime)
                    .connect_with(options)
                    .await
                    .map_err(db_err)?;
                Pool::Sqlite(pool)
            }
            Engine::Postgres => {
                let options = PgConnectOptions::from_str(url)
                    .map_err(db_err)?
                    .application_name("vestibule")
                    .disable_statement_logging();
                let pool = PgPoolOptions::new()
                    .max_connections(settings.max_connections.max(1))
                    .min_connections(settings.min_connections)
                    .acquire_timeout(settings.connect_timeout)
                    .idle_timeout(settings.idle_timeout)
                    .max_lifetime(settings.max_lifetime)
                    .connect_with(options)
                    .await
                    .map_err(db_err)?;
                Pool::Postgres(pool)
            }
        };
        Ok(Self {
            pool,
            sqlite_writer: std::sync::Arc::new(tokio::sync::Semaphore::new(1)),
            acquire_timeout: settings.connect_timeout,
        })
    }

    pub fn engine(&self) -> Engine {
        match self.pool {
            Pool::Sqlite(_) => Engine::Sqlite,
            Pool::Postgres(_) => Engine::Postgres,
        }
    }

    /// Applies pending migrations; refuses to run if an applied migration was
    /// edited or the database is newer than this binary.
    pub async fn migrate(&self) -> Result<Vec<i64>, StorageError> {
        migrate::migrate(&self.pool).await
    }

    /// Which migrations are applied and which are pending.
    pub async fn migration_status(&self) -> Result<MigrationStatus, StorageError> {
        migrate::status(&self.pool).await
    }

    /// Tables and their columns `(table, column, nullable)`, sorted; used by
    /// the lockstep test and by `doctor`.
    pub async fn schema_columns(&self) -> Result<Vec<(String, String, bool)>, StorageError> {
        migrate::schema_columns(&self.pool).await
    }

    /// Closes the pool: idle connections at once, then waits for those in
    /// use to come back, for at most [`CLOSE_TIMEOUT`]. A connection that
    /// never comes back (a transaction leaked by a task, or a lost wake-up
    /// inside the pool) must not hang shutdown or a test's cleanup; it is
    /// dropped with the process (or the test's database) instead.
    pub async fn close(&self) {
        let closing = async {
            match &self.pool {
                Pool::Sqlite(p) => p.close().await,
                Pool::Postgres(p) => p.close().await,
            }
        };
        if tokio::time::timeout(CLOSE_TIMEOUT, closing).await.is_err() {
            tracing::warn!(
                timeout = ?CLOSE_TIMEOUT,
                "the database pool did not close in time: connections still in use are abandoned"
            );
        }
    }
}

#[async_trait]
impl RepositoryFactory for SqlStorage {
    async fn write(&self) -> Result<BoxRepository, StorageError> {
        let conn = match &self.pool {
            // Take SQLite's write lock up front so concurrent writers wait on
            // the busy timeout instead of failing on lock upgrade.
            Pool::Sqlite(p) => {
                let permit = tokio::time::timeout(
                    self.acquire_timeout,
                    self.sqlite_writer.clone().acquire_owned(),
                )
                .await
                .map_err(|_| {
                    StorageError::Unavailable("timed out waiting for the SQLite writer".into())
                })?
                .map_err(|e| StorageError::Unavailable(Box::new(e)))?;
                let tx = p.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
                return Ok(Box::new(SqlRepository::with_writer_permit(
                    conn::Conn::Sqlite(tx),
                    permit,
                )));
            }
            Pool::Postgres(p) => conn::Conn::Postgres(p.begin().await.map_err(db_err)?),
        };
        Ok(Box::new(SqlRepository::new(conn)))
    }

    async fn read(&self) -> Result<BoxRepository, StorageError> {
        let conn = match &self.pool {
            Pool::Sqlite(p) => conn::Conn::Sqlite(p.begin().await.map_err(db_err)?),
            Pool::Postgres(p) => conn::Conn::Postgres(p.begin().await.map_err(db_err)?),
        };
        Ok(Box::new(SqlRepository::new(conn)))
    }

    async fn ping(&self) -> Result<(), StorageError> {
        match &self.pool {
            Pool::Sqlite(p) => p.execute("SELECT 1").await.map(|_| ()).map_err(db_err),
            Pool::Postgres(p) => p.execute("SELECT 1").await.map(|_| ()).map_err(db_err),
        }
    }
}

/// A database URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("[redacted]"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}
