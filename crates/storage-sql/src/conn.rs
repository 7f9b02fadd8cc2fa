//! The transaction handle and the helpers every repository uses.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Sqlite, Transaction};
use vestibule_domain::Ulid;
use vestibule_storage::StorageError;

pub(crate) enum Conn {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl Conn {
    pub(crate) fn engine(&self) -> crate::Engine {
        match self {
            Self::Sqlite(_) => crate::Engine::Sqlite,
            Self::Postgres(_) => crate::Engine::Postgres,
        }
    }
}

/// Runs the same expression against whichever connection we hold. The body
/// is compiled once per engine, so `sqlx::query*` infer the right database.
macro_rules! run {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::conn::Conn::Sqlite(t) => {
                let $c = &mut **t;
                $body
            }
            $crate::conn::Conn::Postgres(t) => {
                let $c = &mut **t;
                $body
            }
        }
    };
}
pub(crate) use run;

/// Executes a statement on whichever connection we hold; rows affected.
macro_rules! execute {
    ($conn:expr, $q:expr) => {
        $crate::conn::run!($conn, |c| $q.execute(c).await.map(|r| r.rows_affected()))
    };
}
pub(crate) use execute;

/// Maps a sqlx error to what callers can act on: unavailability (retry, 503),
/// a unique violation, or a plain database error.
pub fn db_err(e: sqlx::Error) -> StorageError {
    match e {
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                return StorageError::UniqueViolation(Box::new(sqlx::Error::Database(db)));
            }
            let code = db
                .code()
                .map(std::borrow::Cow::into_owned)
                .unwrap_or_default();
            // PostgreSQL: 08 connection exception, 53 insufficient resources,
            // 57P0x operator intervention (e.g. restart), 40001/40P01
            // serialization failure/deadlock. SQLite: 5 BUSY, 6 LOCKED,
            // 517 BUSY_SNAPSHOT.
            let transient = code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P0")
                || code == "40001"
                || code == "40P01"
                || code == "5"
                || code == "6"
                || code == "517";
            if transient {
                StorageError::Unavailable(Box::new(sqlx::Error::Database(db)))
            } else {
                StorageError::Database(Box::new(sqlx::Error::Database(db)))
            }
        }
        e @ (sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_)) => StorageError::Unavailable(Box::new(e)),
        e => StorageError::Database(Box::new(e)),
    }
}

pub(crate) trait DbResult<T> {
    fn db(self) -> Result<T, StorageError>;
}

impl<T> DbResult<T> for Result<T, sqlx::Error> {
    fn db(self) -> Result<T, StorageError> {
        self.map_err(db_err)
    }
}

pub(crate) fn ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub(crate) fn opt_ms(at: Option<DateTime<Utc>>) -> Option<i64> {
    at.map(ms)
}

pub(crate) fn from_ms(ms: i64) -> Result<DateTime<Utc>, StorageError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StorageError::InvalidData(format!("timestamp out of range: {ms}")))
}

pub(crate) fn opt_from_ms(ms: Option<i64>) -> Result<Option<DateTime<Utc>>, StorageError> {
    ms.map(from_ms).transpose()
}

pub(crate) fn ulid(s: &str) -> Result<Ulid, StorageError> {
    Ulid::from_string(s).map_err(|e| StorageError::InvalidData(format!("bad id {s:?}: {e}")))
}

pub(crate) fn opt_ulid(s: Option<&str>) -> Result<Option<Ulid>, StorageError> {
    s.map(ulid).transpose()
}

pub(crate) fn parse_url(s: &str) -> Result<url::Url, StorageError> {
    url::Url::parse(s).map_err(|e| StorageError::InvalidData(format!("bad URL {s:?}: {e}")))
}

pub(crate) fn opt_url(s: Option<&str>) -> Result<Option<url::Url>, StorageError> {
    s.map(parse_url).transpose()
}

/// Turns the row count of a compare-and-set `UPDATE` into an error when it
/// lost the race.
pub(crate) fn expect_cas(rows: u64, what: &'static str) -> Result<(), StorageError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(StorageError::ConcurrentUpdate(what))
    }
}

/// A table of single-use token ids (`jti`s) and their expiry, one row per
/// (owner, jti): client assertions per client, logout tokens per provider.
pub(crate) struct JtiTable {
    pub table: &'static str,
    /// The column naming whose token it is.
    pub owner: &'static str,
    /// For the error when the jti was seen before.
    pub what: &'static str,
}

/// Records a jti once; a second use is [`StorageError::ConcurrentUpdate`].
/// `ON CONFLICT DO NOTHING` rather than a unique violation: the PostgreSQL
/// transaction stays usable, and a parallel insert waits for the first one
/// to commit, then inserts nothing.
pub(crate) async fn record_jti(
    conn: &mut Conn,
    t: &JtiTable,
    owner_id: String,
    jti: &str,
    expires_at: DateTime<Utc>,
) -> Result<(), StorageError> {
    let sql = format!(
        "INSERT INTO {table} ({owner}, jti, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT ({owner}, jti) DO NOTHING",
        table = t.table,
        owner = t.owner
    );
    let rows = execute!(
        conn,
        sqlx::query(&sql)
            .bind(owner_id)
            .bind(jti)
            .bind(ms(expires_at))
    )
    .db()?;
    expect_cas(rows, t.what)
}

/// Deletes the jtis that expired by `now`; how many.
pub(crate) async fn remove_expired_jtis(
    conn: &mut Conn,
    t: &JtiTable,
    now: DateTime<Utc>,
) -> Result<u64, StorageError> {
    let sql = format!("DELETE FROM {} WHERE expires_at <= $1", t.table);
    execute!(conn, sqlx::query(&sql).bind(ms(now))).db()
}

pub(crate) fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
