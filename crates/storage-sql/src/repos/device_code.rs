use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vestibule_domain::{
    Ulid,
    browser_session::BrowserSession,
    device_code::{DeviceCodeGrant, DeviceCodeGrantStage},
    new_id,
    oauth2::{Client, Session},
};
use vestibule_storage::{
    Clock, Rng, StorageError,
    device_code::{DeviceCodeGrantRepository, NewDeviceCodeGrant},
};

use super::repo_struct;
use crate::{
    Engine,
    conn::{DbResult, execute, expect_cas, from_ms, ms, opt_from_ms, opt_ulid, run, ulid},
};

repo_struct!(SqlDeviceCodeGrantRepository);

#[derive(sqlx::FromRow)]
struct GrantRow {
    id: String,
    client_id: String,
    scope: String,
    user_code: String,
    created_at: i64,
    expires_at: i64,
    last_polled_at: Option<i64>,
    fulfilled_at: Option<i64>,
    rejected_at: Option<i64>,
    exchanged_at: Option<i64>,
    browser_session_id: Option<String>,
    session_id: Option<String>,
}

impl TryFrom<GrantRow> for DeviceCodeGrant {
    type Error = StorageError;
    fn try_from(r: GrantRow) -> Result<Self, StorageError> {
        let id = ulid(&r.id)?;
        let stage = match (
            opt_from_ms(r.fulfilled_at)?,
            opt_from_ms(r.rejected_at)?,
            opt_from_ms(r.exchanged_at)?,
            opt_ulid(r.browser_session_id.as_deref())?,
            opt_ulid(r.session_id.as_deref())?,
        ) {
            (None, None, None, None, None) => DeviceCodeGrantStage::Pending,
            (Some(fulfilled_at), None, None, Some(browser_session_id), None) => {
                DeviceCodeGrantStage::Fulfilled {
                    browser_session_id,
                    fulfilled_at,
                }
            }
            (None, Some(rejected_at), None, Some(browser_session_id), None) => {
                DeviceCodeGrantStage::Rejected {
                    browser_session_id,
                    rejected_at,
                }
            }
            (
                Some(fulfilled_at),
                None,
                Some(exchanged_at),
                Some(browser_session_id),
                Some(session_id),
            ) => DeviceCodeGrantStage::Exchanged {
                browser_session_id,
                fulfilled_at,
                exchanged_at,
                session_id,
            },
            _ => {
                return Err(StorageError::InvalidData(format!(
                    "device code grant {id} is in an inconsistent state"
                )));
            }
        };
        Ok(DeviceCodeGrant {
            id,
            client_id: ulid(&r.client_id)?,
            scope: r.scope,
            user_code: r.user_code,
            created_at: from_ms(r.created_at)?,
            expires_at: from_ms(r.expires_at)?,
            last_polled_at: opt_from_ms(r.last_polled_at)?,
            stage,
        })
    }
}

const GRANT_COLUMNS: &str = "id, client_id, scope, user_code, created_at, expires_at, \
     last_polled_at, fulfilled_at, rejected_at, exchanged_at, browser_session_id, session_id";

impl SqlDeviceCodeGrantRepository<'_> {
    async fn find_by(
        &mut self,
        column: &'static str,
        value: &str,
    ) -> Result<Option<DeviceCodeGrant>, StorageError> {
        let sql = format!("SELECT {GRANT_COLUMNS} FROM device_code_grants WHERE {column} = $1");
        let row: Option<GrantRow> = run!(self.conn, |c| sqlx::query_as(&sql)
            .bind(value)
            .fetch_optional(c)
            .await)
        .db()?;
        row.map(DeviceCodeGrant::try_from).transpose()
    }
}

#[async_trait]
impl DeviceCodeGrantRepository for SqlDeviceCodeGrantRepository<'_> {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        client: &Client,
        grant: NewDeviceCodeGrant,
    ) -> Result<DeviceCodeGrant, StorageError> {
        let now = clock.now();
        let g = DeviceCodeGrant {
            id: new_id(clock, rng),
            client_id: client.id,
            scope: grant.scope,
            user_code: grant.user_code,
            created_at: now,
            expires_at: now + grant.expires_in,
            last_polled_at: None,
            stage: DeviceCodeGrantStage::Pending,
        };
        execute!(
            self.conn,
            sqlx::query(
                "INSERT INTO device_code_grants \
                 (id, client_id, scope, user_code, device_code_hash, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)"
            )
            .bind(g.id.to_string())
            .bind(g.client_id.to_string())
            .bind(&g.scope)
            .bind(&g.user_code)
            .bind(&grant.device_code_hash)
            .bind(ms(g.created_at))
            .bind(ms(g.expires_at))
        )
        .db()?;
        Ok(g)
    }

    async fn lookup(&mut self, id: Ulid) -> Result<Option<DeviceCodeGrant>, StorageError> {
        self.find_by("id", &id.to_string()).await
    }

    async fn find_by_user_code(
        &mut self,
        user_code: &str,
    ) -> Result<Option<DeviceCodeGrant>, StorageError> {
        self.find_by("user_code", user_code).await
    }

    async fn find_by_device_code_hash(
        &mut self,
        hash: &str,
    ) -> Result<Option<DeviceCodeGrant>, StorageError> {
        self.find_by("device_code_hash", hash).await
    }

    async fn fulfill(
        &mut self,
        clock: &dyn Clock,
        mut grant: DeviceCodeGrant,
        browser_session: &BrowserSession,
    ) -> Result<DeviceCodeGrant, StorageError> {
        let now = clock.now();
        grant.stage = grant.stage.fulfill(now, browser_session.id)?;
        let rows = execute!(
            self.conn,
            sqlx::query(
                "UPDATE device_code_grants SET fulfilled_at = $1, browser_session_id = $2 \
                 WHERE id = $3 AND fulfilled_at IS NULL AND rejected_at IS NULL \
                 AND exchanged_at IS NULL"
            )
            .bind(ms(now))
            .bind(browser_session.id.to_string())
            .bind(grant.id.to_string())
        )
        .db()?;
        expect_cas(rows, "device code grant")?;
        Ok(grant)
    }

    async fn reject(
        &mut self,
        clock: &dyn Clock,
        mut grant: DeviceCodeGrant,
        browser_session: &BrowserSession,
    ) -> Result<DeviceCodeGrant, StorageError> {
        let now = clock.now();
        grant.stage = grant.stage.reject(now, browser_session.id)?;
        let rows = execute!(
            self.conn,
            sqlx::query(
                "UPDATE device_code_grants SET rejected_at = $1, browser_session_id = $2 \
                 WHERE id = $3 AND fulfilled_at IS NULL AND rejected_at IS NULL \
                 AND exchanged_at IS NULL"
            )
            .bind(ms(now))
            .bind(browser_session.id.to_string())
            .bind(grant.id.to_string())
        )
        .db()?;
        expect_cas(rows, "device code grant")?;
        Ok(grant)
    }

    async fn exchange(
        &mut self,
        clock: &dyn Clock,
        mut grant: DeviceCodeGrant,
        session: &Session,
    ) -> Result<DeviceCodeGrant, StorageError> {
        let now = clock.now();
        grant.stage = grant.stage.exchange(now, session.id)?;
        let rows = execute!(
            self.conn,
            sqlx::query(
                "UPDATE device_code_grants SET exchanged_at = $1, session_id = $2 \
                 WHERE id = $3 AND fulfilled_at IS NOT NULL AND rejected_at IS NULL \
                 AND exchanged_at IS NULL"
            )
            .bind(ms(now))
            .bind(session.id.to_string())
            .bind(grant.id.to_string())
        )
        .db()?;
        expect_cas(rows, "device code grant")?;
        Ok(grant)
    }

    async fn record_poll(
        &mut self,
        clock: &dyn Clock,
        grant: &DeviceCodeGrant,
    ) -> Result<Option<DateTime<Utc>>, StorageError> {
        // Read the previous poll under a row lock so two concurrent polls do
        // not both see the same previous time. On SQLite the write
        // transaction already holds the database lock.
        let sql = match self.conn.engine() {
            Engine::Postgres => {
                "SELECT last_polled_at FROM device_code_grants WHERE id = $1 FOR UPDATE"
            }
            Engine::Sqlite => "SELECT last_polled_at FROM device_code_grants WHERE id = $1",
        };
        let previous: Option<Option<i64>> = run!(self.conn, |c| sqlx::query_scalar(sql)
            .bind(grant.id.to_string())
            .fetch_optional(c)
            .await)
        .db()?;
        let Some(previous) = previous else {
            return Err(StorageError::ConcurrentUpdate("device code grant"));
        };
        let rows = execute!(
            self.conn,
            sqlx::query("UPDATE device_code_grants SET last_polled_at = $1 WHERE id = $2")
                .bind(ms(clock.now()))
                .bind(grant.id.to_string())
        )
        .db()?;
        expect_cas(rows, "device code grant")?;
        opt_from_ms(previous)
    }
}
