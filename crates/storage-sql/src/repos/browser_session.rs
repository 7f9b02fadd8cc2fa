use async_trait::async_trait;
use vestibule_domain::{
    Clock, Ulid,
    browser_session::{Authentication, AuthenticationMethod, BrowserSession},
    new_id,
    upstream::{UpstreamAuthorizationSession, UpstreamLink, UpstreamProvider},
    user::{Password, User},
};
use vestibule_storage::{Rng, StorageError, browser_session::BrowserSessionRepository};

use super::repo_struct;
use crate::conn::{DbResult, execute, from_ms, ms, opt_from_ms, opt_ulid, run, ulid};

repo_struct!(SqlBrowserSessionRepository);

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: String,
    user_id: String,
    created_at: i64,
    finished_at: Option<i64>,
    user_agent: Option<String>,
    last_active_at: Option<i64>,
}

impl TryFrom<SessionRow> for BrowserSession {
    type Error = StorageError;
    fn try_from(r: SessionRow) -> Result<Self, StorageError> {
        Ok(BrowserSession {
            id: ulid(&r.id)?,
            user_id: ulid(&r.user_id)?,
            created_at: from_ms(r.created_at)?,
            finished_at: opt_from_ms(r.finished_at)?,
            user_agent: r.user_agent,
            last_active_at: opt_from_ms(r.last_active_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AuthRow {
    id: String,
    browser_session_id: String,
    created_at: i64,
    user_password_id: Option<String>,
    upstream_link_id: Option<String>,
    upstream_session_id: Option<String>,
}

impl TryFrom<AuthRow> for Authentication {
    type Error = StorageError;
    fn try_from(r: AuthRow) -> Result<Self, StorageError> {
        let method = match (
            opt_ulid(r.user_password_id.as_deref())?,
            opt_ulid(r.upstream_link_id.as_deref())?,
        ) {
            (Some(user_password_id), None) => AuthenticationMethod::Password { user_password_id },
            (None, Some(link_id)) => AuthenticationMethod::UpstreamOAuth {
                link_id,
                session_id: opt_ulid(r.upstream_session_id.as_deref())?,
            },
            _ => {
                return Err(StorageError::InvalidData(format!(
                    "authentication {} has no single method",
                    r.id
                )));
            }
        };
        Ok(Authentication {
            id: ulid(&r.id)?,
            browser_session_id: ulid(&r.browser_session_id)?,
            created_at: from_ms(r.created_at)?,
            method,
        })
    }
}

impl SqlBrowserSessionRepository<'_> {
    async fn add_authentication(
        &mut self,
        auth: Authentication,
    ) -> Result<Authentication, StorageError> {
        let (password, link, upstream_session) = match &auth.method {
            AuthenticationMethod::Password { user_password_id } => {
                (Some(user_password_id.to_string()), None, None)
            }
            AuthenticationMethod::UpstreamOAuth {
                link_id,
                session_id,
            } => (
                None,
                Some(link_id.to_string()),
                session_id.map(|s| s.to_string()),
            ),
        };
        execute!(
            self.conn,
            sqlx::query(
                "INSERT INTO browser_session_authentications \
                 (id, browser_session_id, created_at, user_password_id, upstream_link_id, \
                 upstream_session_id) VALUES ($1, $2, $3, $4, $5, $6)"
            )
            .bind(auth.id.to_string())
            .bind(auth.browser_session_id.to_string())
            .bind(ms(auth.created_at))
            .bind(&password)
            .bind(&link)
            .bind(&upstream_session)
        )
        .db()?;
        Ok(auth)
    }
}

#[async_trait]
impl BrowserSessionRepository for SqlBrowserSessionRepository<'_> {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        user: &User,
        user_agent: Option<&str>,
    ) -> Result<BrowserSession, StorageError> {
        let s = BrowserSession {
            id: new_id(clock, rng),
            user_id: user.id,
            created_at: clock.now(),
            finished_at: None,
            user_agent: user_agent.map(str::to_owned),
            last_active_at: None,
        };
        execute!(
            self.conn,
            sqlx::query("INSERT INTO browser_sessions (id, user_id, created_at, user_agent) VALUES ($1, $2, $3, $4)")
                .bind(s.id.to_string())
                .bind(s.user_id.to_string())
                .bind(ms(s.created_at))
                .bind(&s.user_agent)
        )
        .db()?;
        Ok(s)
    }

    async fn lookup(&mut self, id: Ulid) -> Result<Option<BrowserSession>, StorageError> {
        let row: Option<SessionRow> = run!(self.conn, |c| sqlx::query_as(
            "SELECT id, user_id, created_at, finished_at, user_agent, last_active_at FROM browser_sessions WHERE id = $1"
        )
        .bind(id.to_string())
        .fetch_optional(c)
        .await)
        .db()?;
        row.map(BrowserSession::try_from).transpose()
    }

    async fn finish(
        &mut self,
        clock: &dyn Clock,
        mut session: BrowserSession,
    ) -> Result<BrowserSession, StorageError> {
        let now = clock.now();
        execute!(
            self.conn,
            sqlx::query(
                "UPDATE browser_sessions SET finished_at = $1 WHERE id = $2 AND finished_at IS NULL"
            )
            .bind(ms(now))
            .bind(session.id.to_string())
        )
        .db()?;
        session.finished_at.get_or_insert(now);
        Ok(session)
    }

    async fn list_active_for_user(
        &mut self,
        user: &User,
    ) -> Result<Vec<BrowserSession>, StorageError> {
        let rows: Vec<SessionRow> = run!(self.conn, |c| sqlx::query_as(
            "SELECT id, user_id, created_at, finished_at, user_agent, last_active_at FROM browser_sessions \
             WHERE user_id = $1 AND finished_at IS NULL ORDER BY id"
        )
        .bind(user.id.to_string())
        .fetch_all(c)
        .await)
        .db()?;
        rows.into_iter().map(BrowserSession::try_from).collect()
    }

    async fn finish_all_for_user(
        &mut self,
        clock: &dyn Clock,
        user: &User,
    ) -> Result<u64, StorageError> {
        execute!(
            self.conn,
            sqlx::query("UPDATE browser_sessions SET finished_at = $1 WHERE user_id = $2 AND finished_at IS NULL")
                .bind(ms(clock.now()))
                .bind(user.id.to_string())
        )
        .db()
    }

    async fn authenticate_with_password(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        session: &BrowserSession,
        password: &Password,
    ) -> Result<Authentication, StorageError> {
        self.add_authentication(Authentication {
            id: new_id(clock, rng),
            browser_session_id: session.id,
            created_at: clock.now(),
            method: AuthenticationMethod::Password {
                user_password_id: password.id,
            },
        })
        .await
    }

    async fn authenticate_with_upstream(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        session: &BrowserSession,
        link: &UpstreamLink,
        upstream_session: Option<&UpstreamAuthorizationSession>,
    ) -> Result<Authentication, StorageError> {
        self.add_authentication(Authentication {
            id: new_id(clock, rng),
            browser_session_id: session.id,
            created_at: clock.now(),
            method: AuthenticationMethod::UpstreamOAuth {
                link_id: link.id,
                session_id: upstream_session.map(|s| s.id),
            },
        })
        .await
    }

    async fn list_active_for_upstream(
        &mut self,
        link: &UpstreamLink,
        sid: Option<&str>,
    ) -> Result<Vec<BrowserSession>, StorageError> {
        let rows: Vec<SessionRow> = run!(self.conn, |c| {
            sqlx::query_as(
            "SELECT b.id, b.user_id, b.created_at, b.finished_at, b.user_agent, b.last_active_at \
             FROM browser_sessions b WHERE b.finished_at IS NULL AND EXISTS ( \
             SELECT 1 FROM browser_session_authentications a \
             LEFT JOIN upstream_sessions u ON u.id = a.upstream_session_id \
             WHERE a.browser_session_id = b.id AND a.upstream_link_id = $1 \
             AND ($2 IS NULL OR u.sid = $2)) ORDER BY b.id"
        )
        .bind(link.id.to_string())
        .bind(sid)
        .fetch_all(c)
        .await
        })
        .db()?;
        rows.into_iter().map(BrowserSession::try_from).collect()
    }

    async fn list_active_for_upstream_sid(
        &mut self,
        provider: &UpstreamProvider,
        sid: &str,
    ) -> Result<Vec<BrowserSession>, StorageError> {
        let rows: Vec<SessionRow> = run!(self.conn, |c| {
            sqlx::query_as(
            "SELECT b.id, b.user_id, b.created_at, b.finished_at, b.user_agent, b.last_active_at \
             FROM browser_sessions b WHERE b.finished_at IS NULL AND EXISTS ( \
             SELECT 1 FROM browser_session_authentications a \
             JOIN upstream_sessions u ON u.id = a.upstream_session_id \
             WHERE a.browser_session_id = b.id AND u.provider_id = $1 AND u.sid = $2) ORDER BY b.id"
        )
        .bind(provider.id.to_string())
        .bind(sid)
        .fetch_all(c)
        .await
        })
        .db()?;
        rows.into_iter().map(BrowserSession::try_from).collect()
    }

    async fn last_authentication(
        &mut self,
        session: &BrowserSession,
    ) -> Result<Option<Authentication>, StorageError> {
        let row: Option<AuthRow> = run!(self.conn, |c| sqlx::query_as(
            "SELECT id, browser_session_id, created_at, user_password_id, upstream_link_id, \
             upstream_session_id FROM browser_session_authentications WHERE browser_session_id = $1 ORDER BY id DESC LIMIT 1"
        )
        .bind(session.id.to_string())
        .fetch_optional(c)
        .await)
        .db()?;
        row.map(Authentication::try_from).transpose()
    }
}
