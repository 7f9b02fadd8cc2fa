use async_trait::async_trait;
use chrono::Duration;
use url::Url;
use vestibule_domain::{
    InvalidTransition, Ulid,
    browser_session::BrowserSession,
    compat::{
        CompatAccessToken, CompatRefreshToken, CompatSession, CompatSsoLogin, CompatSsoLoginStage,
    },
    new_id,
    user::User,
};
use vestibule_storage::{
    Clock, Rng, StorageError,
    compat::{
        CompatAccessTokenRepository, CompatRefreshTokenRepository, CompatSessionRepository,
        CompatSsoLoginRepository,
    },
};

use super::repo_struct;
use crate::conn::{
    DbResult, execute, expect_cas, from_ms, ms, opt_from_ms, opt_ms, opt_ulid, parse_url, run, ulid,
};

repo_struct!(
    SqlCompatSessionRepository,
    SqlCompatAccessTokenRepository,
    SqlCompatRefreshTokenRepository,
    SqlCompatSsoLoginRepository
);

// ---------------------------------------------------------------------------
// Sessions

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: String,
    user_id: String,
    device_id: String,
    human_name: Option<String>,
    browser_session_id: Option<String>,
    is_synapse_admin: bool,
    created_at: i64,
    finished_at: Option<i64>,
    last_active_at: Option<i64>,
}

impl TryFrom<SessionRow> for CompatSession {
    type Error = StorageError;
    fn try_from(r: SessionRow) -> Result<Self, StorageError> {
        Ok(CompatSession {
            id: ulid(&r.id)?,
            user_id: ulid(&r.user_id)?,
            device_id: r.device_id,
            human_name: r.human_name,
            browser_session_id: opt_ulid(r.browser_session_id.as_deref())?,
            is_synapse_admin: r.is_synapse_admin,
            created_at: from_ms(r.created_at)?,
            finished_at: opt_from_ms(r.finished_at)?,
            last_active_at: opt_from_ms(r.last_active_at)?,
        })
    }
}

const SESSION_COLUMNS: &str = "id, user_id, device_id, human_name, browser_session_id, \
     is_synapse_admin, created_at, finished_at, last_active_at";

#[async_trait]
impl CompatSessionRepository for SqlCompatSessionRepository<'_> {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        user: &User,
        device_id: &str,
        human_name: Option<&str>,
        browser_session: Option<&BrowserSession>,
        is_synapse_admin: bool,
    ) -> Result<CompatSession, StorageError> {
        let session = CompatSession {
            id: new_id(clock, rng),
            user_id: user.id,
            device_id: device_id.to_owned(),
            human_name: human_name.map(ToOwned::to_owned),
            browser_session_id: browser_session.map(|b| b.id),
            is_synapse_admin,
            created_at: clock.now(),
            finished_at: None,
            last_active_at: None,
        };
        execute!(
            self.conn,
            sqlx::query(
                "INSERT INTO compat_sessions \
                 (id, user_id, device_id, human_name, browser_session_id, is_synapse_admin, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)"
            )
            .bind(session.id.to_string())
            .bind(session.user_id.to_string())
            .bind(&session.device_id)
            .bind(session.human_name.as_deref())
            .bind(session.browser_session_id.map(|i| i.to_string()))
            .bind(session.is_synapse_admin)
            .bind(ms(session.created_at))
        )
        .db()?;
        Ok(session)
    }

    async fn lookup(&mut self, id: Ulid) -> Result<Option<CompatSession>, StorageError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM compat_sessions WHERE id = $1");
        let row: Option<SessionRow> = run!(self.conn, |c| sqlx::query_as(&sql)
            .bind(id.to_string())
            .fetch_optional(c)
            .await)
        .db()?;
        row.map(CompatSession::try_from).transpose()
    }

    async fn find_active_by_device(
        &mut self,
        user: &User,
        device_id: &str,
    ) -> Result<Option<CompatSession>, StorageError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM compat_sessions \
             WHERE user_id = $1 AND device_id = $2 AND finished_at IS NULL \
             ORDER BY id DESC LIMIT 1"
        );
        let row: Option<SessionRow> = run!(self.conn, |c| sqlx::query_as(&sql)
            .bind(user.id.to_string())
            .bind(device_id)
            .fetch_optional(c)
            .await)
        .db()?;
        row.map(CompatSession::try_from).transpose()
    }

    async fn list_active_for_user(
        &mut self,
        user: &User,
    ) -> Result<Vec<CompatSession>, StorageError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM compat_sessions \
             WHERE user_id = $1 AND finished_at IS NULL ORDER BY id"
        );
        let rows: Vec<SessionRow> = run!(self.conn, |c| sqlx::query_as(&sql)
            .bind(user.id.to_string())
            .fetch_all(c)
            .await)
        .db()?;
        rows.into_iter().map(CompatSession::try_from).collect()
    }

    async fn finish(
        &mut self,
        clock: &dyn Clock,
        mut session: CompatSession,
    ) -> Result<CompatSession, StorageError> {
        if session.finished_at.is_some() {
            return Err(InvalidTransition {
                entity: "compat session",
                from: "finished",
                to: "finished",
            }
            .into());
        }
        let now = clock.now();
        let rows = execute!(
            self.conn,
            sqlx::query(
                "UPDATE compat_sessions SET finished_at = $1 WHERE id = $2 AND finished_at IS NULL"
            )
            .bind(ms(now))
            .bind(session.id.to_string())
        )
        .db()?;
        expect_cas(rows, "compat session")?;
        session.finished_at = Some(now);
        Ok(session)
    }

    async fn finish_all_for_user(
        &mut self,
        clock: &dyn Clock,
        user: &User,
    ) -> Result<u64, StorageError> {
        execute!(
            self.conn,
            sqlx::query(
                "UPDATE compat_sessions SET finished_at = $1 \
                 WHERE user_id = $2 AND finished_at IS NULL"
            )
            .bind(ms(clock.now()))
            .bind(user.id.to_string())
        )
        .db()
    }
}

// ---------------------------------------------------------------------------
// Access tokens

#[derive(sqlx::FromRow)]
struct AccessTokenRow {
    id: String,
    session_id: String,
    created_at: i64,
    expires_at: Option<i64>,
}

impl TryFrom<AccessTokenRow> for CompatAccessToken {
    type Error = StorageError;
    fn try_from(r: AccessTokenRow) -> Result<Self, StorageError> {
        Ok(CompatAccessToken {
            id: ulid(&r.id)?,
            session_id: ulid(&r.session_id)?,
            created_at: from_ms(r.created_at)?,
            expires_at: opt_from_ms(r.expires_at)?,
        })
    }
}

const ACCESS_TOKEN_COLUMNS: &str = "id, session_id, created_at, expires_at";

#[async_trait]
impl CompatAccessTokenRepository for SqlCompatAccessTokenRepository<'_> {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        session: &CompatSession,
        token_hash: &str,
        expires_after: Option<Duration>,
    ) -> Result<CompatAccessToken, StorageError> {
        let now = clock.now();
        let token = CompatAccessToken {
            id: new_id(clock, rng),
            session_id: session.id,
            created_at: now,
            expires_at: expires_after.map(|d| now + d),
        };
        execute!(
            self.conn,
            sqlx::query(
                "INSERT INTO compat_access_tokens (id, session_id, token_hash, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)"
            )
            .bind(token.id.to_string())
            .bind(token.session_id.to_string())
            .bind(token_hash)
            .bind(ms(token.created_at))
            .bind(opt_ms(token.expires_at))
        )
        .db()?;
        Ok(token)
    }

    async fn lookup(&mut self, id: Ulid) -> Result<Option<CompatAccessToken>, StorageError> {
        let sql = format!("SELECT {ACCESS_TOKEN_COLUMNS} FROM compat_access_tokens WHERE id = $1");
        let row: Option<AccessTokenRow> = run!(self.conn, |c| sqlx::query_as(&sql)
            .bind(id.to_string())
            .fetch_optional(c)
            .await)
        .db()?;
        row.map(CompatAccessToken::try_from).transpose()
    }

    async fn find_by_hash(
        &mut self,
        token_hash: &str,
    ) -> Result<Option<CompatAccessToken>, StorageError> {
        let sql = format!(
            "SELECT {ACCESS_TOKEN_COLUMNS} FROM compat_access_tokens WHERE token_hash = $1"
        );
        let row: Option<AccessTokenRow> = run!(self.conn, |c| sqlx::query_as(&sql)
            .bind(token_hash)
            .fetch_optional(c)
            .await)
        .db()?;
        row.map(CompatAccessToken::try_from).transpose()
    }

    async fn expire(
        &mut self,
        clock: &dyn Clock,
        mut token: CompatAccessToken,
    ) -> Result<CompatAccessToken, StorageError> {
        let now = clock.now();
        // Never push an earlier expiry further out.
        execute!(
            self.conn,
            sqlx::query(
                "UPDATE compat_access_tokens SET expires_at = $1 \
                 WHERE id = $2 AND (expires_at IS NULL OR expires_at > $1)"
            )
            .bind(ms(now))
            .bind(token.id.to_string())
        )
        .db()?;
        token.expires_at = Some(token.expires_at.map_or(now, |e| e.min(now)));
        Ok(token)
    }
}

// ---------------------------------------------------------------------------
// Refresh tokens

#[derive(sqlx::FromRow)]
struct RefreshTokenRow {
    id: String,
    session_id: String,
    access_token_id: String,
    created_at: i64,
    consumed_at: Option<i64>,
}

impl TryFrom<RefreshTokenRow> for CompatRefreshToken {
    type Error = StorageError;
    fn try_from(r: RefreshTokenRow) -> Result<Self, StorageError> {
        Ok(CompatRefreshToken {
            id: ulid(&r.id)?,
            session_id: ulid(&r.session_id)?,
            access_token_id: ulid(&r.access_token_id)?,
            created_at: from_ms(r.created_at)?,
            consumed_at: opt_from_ms(r.consumed_at)?,
        })
    }
}

#[async_trait]
impl CompatRefreshTokenRepository for SqlCompatRefreshTokenRepository<'_> {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        session: &CompatSession,
        access_token: &CompatAccessToken,
        token_hash: &str,
    ) -> Result<CompatRefreshToken, StorageError> {
        let token = CompatRefreshToken {
            id: new_id(clock, rng),
            session_id: session.id,
            access_token_id: access_token.id,
            created_at: clock.now(),
            consumed_at: None,
        };
        execute!(
            self.conn,
            sqlx::query(
                "INSERT INTO compat_refresh_tokens \
                 (id, session_id, access_token_id, token_hash, created_at) \
                 VALUES ($1, $2, $3, $4, $5)"
            )
            .bind(token.id.to_string())
            .bind(token.session_id.to_string())
            .bind(token.access_token_id.to_string())
            .bind(token_hash)
            .bind(ms(token.created_at))
        )
        .db()?;
        Ok(token)
    }

    async fn find_by_hash(
        &mut self,
        token_hash: &str,
    ) -> Result<Option<CompatRefreshToken>, StorageError> {
        let row: Option<RefreshTokenRow> = run!(self.conn, |c| sqlx::query_as(
            "SELECT id, session_id, access_token_id, created_at, consumed_at \
             FROM compat_refresh_tokens WHERE token_hash = $1"
        )
        .bind(token_hash)
        .fetch_optional(c)
        .await)
        .db()?;
        row.map(CompatRefreshToken::try_from).transpose()
    }

    async fn consume(
        &mut self,
        clock: &dyn Clock,
        mut token: CompatRefreshToken,
    ) -> Result<CompatRefreshToken, StorageError> {
        if token.consumed_at.is_some() {
            return Err(InvalidTransition {
                entity: "compat refresh token",
                from: "consumed",
                to: "consumed",
            }
            .into());
        }
        let now = clock.now();
        let rows = execute!(
            self.conn,
            sqlx::query(
                "UPDATE compat_refresh_tokens SET consumed_at = $1 \
                 WHERE id = $2 AND consumed_at IS NULL"
            )
            .bind(ms(now))
            .bind(token.id.to_string())
        )
        .db()?;
        expect_cas(rows, "compat refresh token")?;
        token.consumed_at = Some(now);
        Ok(token)
    }
}

// ---------------------------------------------------------------------------
// SSO logins

#[derive(sqlx::FromRow)]
struct SsoLoginRow {
    id: String,
    redirect_uri: String,
    created_at: i64,
    fulfilled_at: Option<i64>,
    exchanged_at: Option<i64>,
    browser_session_id: Option<String>,
    compat_session_id: Option<String>,
}

impl TryFrom<SsoLoginRow> for CompatSsoLogin {
    type Error = StorageError;
    fn try_from(r: SsoLoginRow) -> Result<Self, StorageError> {
        let id = ulid(&r.id)?;
        let stage = match (
            opt_from_ms(r.fulfilled_at)?,
            opt_from_ms(r.exchanged_at)?,
            opt_ulid(r.browser_session_id.as_deref())?,
            opt_ulid(r.compat_session_id.as_deref())?,
        ) {
            (None, None, None, None) => CompatSsoLoginStage::Pending,
            (Some(fulfilled_at), None, Some(browser_session_id), None) => {
                CompatSsoLoginStage::Fulfilled {
                    browser_session_id,
                    fulfilled_at,
                }
            }
            (
                Some(fulfilled_at),
                Some(exchanged_at),
                Some(browser_session_id),
                Some(compat_session_id),
            ) => CompatSsoLoginStage::Exchanged {
                browser_session_id,
                fulfilled_at,
                exchanged_at,
                compat_session_id,
            },
            _ => {
                return Err(StorageError::InvalidData(format!(
                    "compat sso login {id} is in an inconsistent state"
                )));
            }
        };
        Ok(CompatSsoLogin {
            id,
            redirect_uri: parse_url(&r.redirect_uri)?,
            created_at: from_ms(r.created_at)?,
            stage,
        })
    }
}

const SSO_LOGIN_COLUMNS: &str = "id, redirect_uri, created_at, fulfilled_at, exchanged_at, \
     browser_session_id, compat_session_id";

#[async_trait]
impl CompatSsoLoginRepository for SqlCompatSsoLoginRepository<'_> {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        login_token_hash: &str,
        redirect_uri: &Url,
    ) -> Result<CompatSsoLogin, StorageError> {
        let login = CompatSsoLogin {
            id: new_id(clock, rng),
            redirect_uri: redirect_uri.clone(),
            created_at: clock.now(),
            stage: CompatSsoLoginStage::Pending,
        };
        execute!(
            self.conn,
            sqlx::query(
                "INSERT INTO compat_sso_logins (id, redirect_uri, login_token_hash, created_at) \
                 VALUES ($1, $2, $3, $4)"
            )
            .bind(login.id.to_string())
            .bind(login.redirect_uri.as_str())
            .bind(login_token_hash)
            .bind(ms(login.created_at))
        )
        .db()?;
        Ok(login)
    }

    async fn lookup(&mut self, id: Ulid) -> Result<Option<CompatSsoLogin>, StorageError> {
        let sql = format!("SELECT {SSO_LOGIN_COLUMNS} FROM compat_sso_logins WHERE id = $1");
        let row: Option<SsoLoginRow> = run!(self.conn, |c| sqlx::query_as(&sql)
            .bind(id.to_string())
            .fetch_optional(c)
            .await)
        .db()?;
        row.map(CompatSsoLogin::try_from).transpose()
    }

    async fn find_by_token_hash(
        &mut self,
        login_token_hash: &str,
    ) -> Result<Option<CompatSsoLogin>, StorageError> {
        let sql = format!(
            "SELECT {SSO_LOGIN_COLUMNS} FROM compat_sso_logins WHERE login_token_hash = $1"
        );
        let row: Option<SsoLoginRow> = run!(self.conn, |c| sqlx::query_as(&sql)
            .bind(login_token_hash)
            .fetch_optional(c)
            .await)
        .db()?;
        row.map(CompatSsoLogin::try_from).transpose()
    }

    async fn fulfill(
        &mut self,
        clock: &dyn Clock,
        mut login: CompatSsoLogin,
        browser_session: &BrowserSession,
    ) -> Result<CompatSsoLogin, StorageError> {
        let now = clock.now();
        login.stage = login.stage.fulfill(now, browser_session.id)?;
        let rows = execute!(
            self.conn,
            sqlx::query(
                "UPDATE compat_sso_logins SET fulfilled_at = $1, browser_session_id = $2 \
                 WHERE id = $3 AND fulfilled_at IS NULL AND exchanged_at IS NULL"
            )
            .bind(ms(now))
            .bind(browser_session.id.to_string())
            .bind(login.id.to_string())
        )
        .db()?;
        expect_cas(rows, "compat sso login")?;
        Ok(login)
    }

    async fn exchange(
        &mut self,
        clock: &dyn Clock,
        mut login: CompatSsoLogin,
        compat_session: &CompatSession,
    ) -> Result<CompatSsoLogin, StorageError> {
        let now = clock.now();
        login.stage = login.stage.exchange(now, compat_session.id)?;
        let rows = execute!(
            self.conn,
            sqlx::query(
                "UPDATE compat_sso_logins SET exchanged_at = $1, compat_session_id = $2 \
                 WHERE id = $3 AND fulfilled_at IS NOT NULL AND exchanged_at IS NULL"
            )
            .bind(ms(now))
            .bind(compat_session.id.to_string())
            .bind(login.id.to_string())
        )
        .db()?;
        expect_cas(rows, "compat sso login")?;
        Ok(login)
    }
}
