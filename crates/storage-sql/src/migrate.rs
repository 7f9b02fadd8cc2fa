//! Migrations: one ordered list, each entry carrying the SQL for both engines,
//! so the two directories cannot drift in versions. Applied migrations are
//! recorded with a checksum; editing a released migration is refused
//! (append-only), as is a database newer than the binary.

use sha2::{Digest, Sha256};
use sqlx::{Connection, Row};
use vestibule_domain::Clock;
use vestibule_storage::StorageError;

use crate::{Pool, conn::DbResult};

/// One schema change, written for both engines.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

/// Every migration, in order. Append only: never edit or remove an entry once
/// it has landed; add a new one.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sqlite: include_str!("../migrations/sqlite/0001_initial.sql"),
        postgres: include_str!("../migrations/postgres/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "client_assertions_token_scope",
        sqlite: include_str!("../migrations/sqlite/0002_client_assertions_token_scope.sql"),
        postgres: include_str!("../migrations/postgres/0002_client_assertions_token_scope.sql"),
    },
    Migration {
        version: 3,
        name: "upstream_login_user_attributes",
        sqlite: include_str!("../migrations/sqlite/0003_upstream_login_user_attributes.sql"),
        postgres: include_str!("../migrations/postgres/0003_upstream_login_user_attributes.sql"),
    },
    Migration {
        version: 4,
        name: "upstream_logout_jtis",
        sqlite: include_str!("../migrations/sqlite/0004_upstream_logout_jtis.sql"),
        postgres: include_str!("../migrations/postgres/0004_upstream_logout_jtis.sql"),
    },
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    pub applied: Vec<i64>,
    pub pending: Vec<i64>,
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS vestibule_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)";

/// An arbitrary constant: the advisory lock that serialises migrations of
/// several replicas starting at once on PostgreSQL.
const PG_LOCK_KEY: i64 = 0x7665_7374_6962_756c;

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

fn check_applied(
    applied: &[(i64, String)],
    pick: fn(&Migration) -> &'static str,
) -> Result<Vec<Migration>, StorageError> {
    for (version, sum) in applied {
        let Some(m) = MIGRATIONS.iter().find(|m| m.version == *version) else {
            return Err(StorageError::InvalidData(format!(
                "the database has migration {version}, which this binary does not know: it is newer than this binary"
            )));
        };
        if checksum(pick(m)) != *sum {
            return Err(StorageError::InvalidData(format!(
                "migration {version} ({}) was changed after it was applied; migrations are append-only",
                m.name
            )));
        }
    }
    Ok(MIGRATIONS
        .iter()
        .filter(|m| !applied.iter().any(|(v, _)| *v == m.version))
        .copied()
        .collect())
}

macro_rules! migrate_on {
    ($conn:expr, $pick:expr, $begin:expr) => {{
        let conn = $conn;
        sqlx::query(CREATE_TABLE).execute(&mut *conn).await.db()?;
        let applied: Vec<(i64, String)> = sqlx::query("SELECT version, checksum FROM vestibule_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await
            .db()?
            .iter()
            .map(|r| Ok((r.try_get::<i64, _>(0)?, r.try_get::<String, _>(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .db()?;
        let pending = check_applied(&applied, $pick)?;
        let mut done = Vec::new();
        for m in pending {
            let sql = ($pick)(&m);
            let mut tx = Connection::begin_with(&mut *conn, $begin).await.db()?;
            sqlx::raw_sql(sql).execute(&mut *tx).await.db()?;
            sqlx::query("INSERT INTO vestibule_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)")
                .bind(m.version)
                .bind(m.name)
                .bind(checksum(sql))
                .bind(vestibule_domain::SystemClock.now().timestamp_millis())
                .execute(&mut *tx)
                .await
                .db()?;
            tx.commit().await.db()?;
            tracing::info!(version = m.version, name = m.name, "applied migration");
            done.push(m.version);
        }
        done
    }};
}

pub(crate) async fn migrate(pool: &Pool) -> Result<Vec<i64>, StorageError> {
    match pool {
        Pool::Sqlite(p) => {
            let mut conn = p.acquire().await.db()?;
            Ok(migrate_on!(
                &mut *conn,
                |m: &Migration| m.sqlite,
                "BEGIN IMMEDIATE"
            ))
        }
        Pool::Postgres(p) => {
            let mut conn = p.acquire().await.db()?;
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(PG_LOCK_KEY)
                .execute(&mut *conn)
                .await
                .db()?;
            let result: Result<Vec<i64>, StorageError> =
                async { Ok(migrate_on!(&mut *conn, |m: &Migration| m.postgres, "BEGIN")) }.await;
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(PG_LOCK_KEY)
                .execute(&mut *conn)
                .await
                .db()?;
            result
        }
    }
}

pub(crate) async fn status(pool: &Pool) -> Result<MigrationStatus, StorageError> {
    let exists_sql = match pool {
        Pool::Sqlite(_) => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'vestibule_migrations'"
        }
        Pool::Postgres(_) => {
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'vestibule_migrations'"
        }
    };
    let applied: Vec<i64> = match pool {
        Pool::Sqlite(p) => {
            let n: i64 = sqlx::query_scalar(exists_sql).fetch_one(p).await.db()?;
            if n == 0 {
                Vec::new()
            } else {
                sqlx::query_scalar("SELECT version FROM vestibule_migrations ORDER BY version")
                    .fetch_all(p)
                    .await
                    .db()?
            }
        }
        Pool::Postgres(p) => {
            let n: i64 = sqlx::query_scalar(exists_sql).fetch_one(p).await.db()?;
            if n == 0 {
                Vec::new()
            } else {
                sqlx::query_scalar("SELECT version FROM vestibule_migrations ORDER BY version")
                    .fetch_all(p)
                    .await
                    .db()?
            }
        }
    };
    let pending = MIGRATIONS
        .iter()
        .map(|m| m.version)
        .filter(|v| !applied.contains(v))
        .collect();
    Ok(MigrationStatus { applied, pending })
}

pub(crate) async fn schema_columns(
    pool: &Pool,
) -> Result<Vec<(String, String, bool)>, StorageError> {
    let rows: Vec<(String, String, bool)> = match pool {
        Pool::Sqlite(p) => sqlx::query_as(
            "SELECT m.name, c.name, (c.\"notnull\" = 0 AND c.pk = 0) \
             FROM sqlite_master m JOIN pragma_table_info(m.name) c \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY 1, 2",
        )
        .fetch_all(p)
        .await
        .db()?,
        Pool::Postgres(p) => sqlx::query_as(
            "SELECT table_name::text, column_name::text, is_nullable::text = 'YES' \
             FROM information_schema.columns WHERE table_schema = current_schema() ORDER BY 1, 2",
        )
        .fetch_all(p)
        .await
        .db()?,
    };
    Ok(rows)
}
