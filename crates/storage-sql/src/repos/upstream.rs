use std::fmt::Write as _;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vestibule_domain::{
    InvalidTransition, Ulid, new_id,
    upstream::{UpstreamAuthorizationSession, UpstreamLink, UpstreamProvider},
    user::User,
};
use vestibule_storage::{
    Clock, Rng, StorageError,
    upstream::{
        UpstreamLinkRepository, UpstreamProviderParams, UpstreamProviderRepository,
        UpstreamSessionRepository,
    },
};

use super::repo_struct;

/// Logout tokens' jtis, single use per provider.
const LOGOUT_JTIS: crate::conn::JtiTable = crate::conn::JtiTable {
    table: "upstream_logout_jtis",
    owner: "provider_id",
    what: "logout token jti",
};
use crate::conn::{
    DbResult, execute, expect_cas, from_ms, ms, opt_from_ms, opt_ulid, run, to_u64, ulid,
};

repo_struct!(
    SqlUpstreamProviderRepository,
    SqlUpstreamLinkRepository,
    SqlUpstreamSessionRepository
);

// ---------------------------------------------------------------------------
// Providers

#[derive(sqlx::FromRow)]
struct ProviderRow {
    id: String,
    issuer: Option<String>,
    human_name: Option<String>,
    brand_name: Option<String>,
    created_at: i64,
    disabled_at: Option<i64>,
}

impl TryFrom<ProviderRow> for UpstreamProvider {
    type Error = StorageError;
    fn try_from(r: ProviderRow) -> Result<Self, StorageError> {
        Ok(UpstreamProvider {
            id: ulid(&r.id)?,
            issuer: r.issuer,
            human_name: r.human_name,
            brand_name: r.brand_name,
            created_at: from_ms(r.created_at)?,
            disabled_at: opt_from_ms(r.disabled_at)?,
        })
    }
}

const PROVIDER_COLUMNS: &str = "id, issuer, human_name, brand_name, created_at, disabled_at";

#[async_trait]
impl UpstreamProviderRepository for SqlUpstreamProviderRepository<'_> {
    async fn upsert(
        &mut self,
        clock: &dyn Clock,
        id: Ulid,
        params: UpstreamProviderParams,
    ) -> Result<UpstreamProvider, StorageError> {
        // `created_at` is kept on update; the provider is re-enabled.
        let sql = format!(
            "INSERT INTO upstream_providers (id, issuer, human_name, brand_name, created_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO UPDATE SET issuer = excluded.issuer, \
             human_name = excluded.human_name, brand_name = excluded.brand_name, \
             disabled_at = NULL \
             RETURNING {PROVIDER_COLUMNS}"
        );
        let row: ProviderRow = run!(self.conn, |c| sqlx::query_as(&sql)
            .bind(id.to_string())
            .bind(params.issuer.as_deref())
            .bind(params.human_name.as_deref())
            .bind(params.brand_name.as_deref())
            .bind(ms(clock.now()))
            .fetch_one(c)
            .await)
        .db()?;
        UpstreamProvider::try_from(row)
    }

    async fn lookup(&mut self, id: Ulid) -> Result<Option<UpstreamProvider>, StorageError> {
        let sql = format!("SELECT {PROVIDER_COLUMNS} FROM upstream_providers WHERE id = $1");
        let row: Option<ProviderRow> = run!(self.conn, |c| sqlx::query_as(&sql)
            .bind(id.to_string())
            .fetch_optional(c)
            .await)
        .db()?;
        row.map(UpstreamProvider::try_from).transpose()
    }

    async fn disable_all_except(
        &mut self,
        clock: &dyn Clock,
        keep: &[Ulid],
    ) -> Result<u64, StorageError> {
        let mut sql = String::from(
            "UPDATE upstream_providers SET disabled_at = $1 WHERE disabled_at IS NULL",
        );
        if !keep.is_empty() {
            sql.push_str(" AND id NOT IN (");
            for i in 0..keep.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                let _ = write!(sql, "${}", i + 2);
            }
            sql.push(')');
        }
        let keep: Vec<String> = keep.iter().map(ToString::to_string).collect();
        let now = ms(clock.now());
        run!(self.conn, |c| {
            let mut q = sqlx::query(&sql).bind(now);
            for id in &keep {
                q = q.bind(id);
            }
            q.execute(c).await.map(|r| r.rows_affected())
        })
        .db()
    }

    async fn all_enabled(&mut self) -> Result<Vec<UpstreamProvider>, StorageError> {
        let sql = format!(
            "SELECT {PROVIDER_COLUMNS} FROM upstream_providers \
             WHERE disabled_at IS NULL ORDER BY id"
        );
        let rows: Vec<ProviderRow> =
            run!(self.conn, |c| sqlx::query_as(&sql).fetch_all(c).await).db()?;
        rows.into_iter().map(UpstreamProvider::try_from).collect()
    }

    async fn count_linked_accounts(&mut self, id: Ulid) -> Result<u64, StorageError> {
        let n: i64 = run!(self.conn, |c| sqlx::query_scalar(
            "SELECT COUNT(*) FROM upstream_links \
             WHERE provider_id = $1 AND user_id IS NOT NULL"
        )
        .bind(id.to_string())
        .fetch_one(c)
        .await)
        .db()?;
        Ok(to_u64(n))
    }

    async fn set_issuer(
        &mut self,
        id: Ulid,
        issuer: Option<&str>,
    ) -> Result<Option<UpstreamProvider>, StorageError> {
        let sql = format!(
            "UPDATE upstream_providers SET issuer = $1 WHERE id = $2 RETURNING {PROVIDER_COLUMNS}"
        );
        let row: Option<ProviderRow> = run!(self.conn, |c| sqlx::query_as(&sql)
            .bind(issuer)
            .bind(id.to_string())
            .fetch_optional(c)
            .await)
        .db()?;
        row.map(UpstreamProvider::try_from).transpose()
    }

    async fn record_logout_jti(
        &mut self,
        provider: &UpstreamProvider,
        jti: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StorageError> {
        crate::conn::record_jti(
            self.conn,
            &LOGOUT_JTIS,
            provider.id.to_string(),
            jti,
            expires_at,
        )
        .await
    }

    async fn remove_expired_logout_jtis(&mut self, clock: &dyn Clock) -> Result<u64, StorageError> {
        crate::conn::remove_expired_jtis(self.conn, &LOGOUT_JTIS, clock.now()).await
    }
}

// ---------------------------------------------------------------------------
// Links

#[derive(sqlx::FromRow)]
struct LinkRow {
    id: String,
    provider_id: String,
    subject: String,
    user_id: Option<String>,
    human_account_name: Option<String>,
    created_at: i64,
}

impl TryFrom<LinkRow> for UpstreamLink {
    type Error = StorageError;
    fn try_from(r: LinkRow) -> Result<Self, StorageError> {
        Ok(UpstreamLink {
            id: ulid(&r.id)?,
            provider_id: ulid(&r.provider_id)?,
            subject: r.subject,
            user_id: opt_ulid(r.user_id.as_deref())?,
            human_account_name: r.human_account_name,
            created_at: from_ms(r.created_at)?,
        })
    }
}

const LINK_COLUMNS: &str = "id, provider_id, subject, user_id, human_account_name, created_at";

#[async_trait]
impl UpstreamLinkRepository for SqlUpstreamLinkRepository<'_> {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        provider: &UpstreamProvider,
        subject: &str,
        human_account_name: Option<&str>,
    ) -> Result<UpstreamLink, StorageError> {
        let link = UpstreamLink {
            id: new_id(clock, rng),
            provider_id: provider.id,
            subject: subject.to_owned(),
            user_id: None,
            human_account_name: human_account_name.map(ToOwned::to_owned),
            created_at: clock.now(),
        };
        execute!(
            self.conn,
            sqlx::query(
                "INSERT INTO upstream_links \
                 (id, provider_id, subject, human_account_name, created_at) \
                 VALUES ($1, $2, $3, $4, $5)"
            )
            .bind(link.id.to_string())
            .bind(link.provider_id.to_string())
            .bind(&link.subject)
            .bind(link.human_account_name.as_deref())
            .bind(ms(link.created_at))
        )
        .db()?;
        Ok(link)
    }

    async fn lookup(&mut self, id: Ulid) -> Result<Option<UpstreamLink>, StorageError> {
        let sql = format!("SELECT {LINK_COLUMNS} FROM upstream_links WHERE id = $1");
        let row: Option<LinkRow> = run!(self.conn, |c| sqlx::query_as(&sql)
            .bind(id.to_string())
            .fetch_optional(c)
            .await)
        .db()?;
        row.map(UpstreamLink::try_from).transpose()
    }

    async fn find_by_subject(
        &mut self,
        provider: &UpstreamProvider,
        subject: &str,
    ) -> Result<Option<UpstreamLink>, StorageError> {
        let sql = format!(
            "SELECT {LINK_COLUMNS} FROM upstream_links WHERE provider_id = $1 AND subject = $2"
        );
        let row: Option<LinkRow> = run!(self.conn, |c| sqlx::query_as(&sql)
            .bind(provider.id.to_string())
            .bind(subject)
            .fetch_optional(c)
            .await)
        .db()?;
        row.map(UpstreamLink::try_from).transpose()
    }

    async fn associate_to_user(
        &mut self,
        mut link: UpstreamLink,
        user: &User,
    ) -> Result<UpstreamLink, StorageError> {
        // Compare-and-set: a link already owned by someone else is never
        // taken over (the loser of two parallel links gets
        // `ConcurrentUpdate`); associating it again to its owner is a no-op.
        let rows = execute!(
            self.conn,
            sqlx::query(
                "UPDATE upstream_links SET user_id = $1 \
                 WHERE id = $2 AND (user_id IS NULL OR user_id = $1)"
            )
            .bind(user.id.to_string())
            .bind(link.id.to_string())
        )
        .db()?;
        expect_cas(rows, "upstream link")?;
        link.user_id = Some(user.id);
        Ok(link)
    }

    async fn set_human_account_name(
        &mut self,
        mut link: UpstreamLink,
        name: Option<&str>,
    ) -> Result<UpstreamLink, StorageError> {
        let rows = execute!(
            self.conn,
            sqlx::query("UPDATE upstream_links SET human_account_name = $1 WHERE id = $2")
                .bind(name)
                .bind(link.id.to_string())
        )
        .db()?;
        expect_cas(rows, "upstream link")?;
        link.human_account_name = name.map(str::to_owned);
        Ok(link)
    }

    async fn dissociate(&mut self, mut link: UpstreamLink) -> Result<UpstreamLink, StorageError> {
        execute!(
            self.conn,
            sqlx::query("UPDATE upstream_links SET user_id = NULL WHERE id = $1")
                .bind(link.id.to_string())
        )
        .db()?;
        link.user_id = None;
        Ok(link)
    }

    async fn remove_unlinked(&mut self, link: &UpstreamLink) -> Result<bool, StorageError> {
        // Sessions that point at the link go first (foreign key).
        let n = execute!(
            self.conn,
            sqlx::query(
                "DELETE FROM upstream_links WHERE id = $1 AND user_id IS NULL \
                 AND NOT EXISTS (SELECT 1 FROM upstream_sessions s WHERE s.link_id = $1) \
                 AND NOT EXISTS (SELECT 1 FROM browser_session_authentications a \
                 WHERE a.upstream_link_id = $1)"
            )
            .bind(link.id.to_string())
        )
        .db()?;
        Ok(n > 0)
    }

    async fn all_for_user(&mut self, user: &User) -> Result<Vec<UpstreamLink>, StorageError> {
        let sql =
            format!("SELECT {LINK_COLUMNS} FROM upstream_links WHERE user_id = $1 ORDER BY id");
        let rows: Vec<LinkRow> = run!(self.conn, |c| sqlx::query_as(&sql)
            .bind(user.id.to_string())
            .fetch_all(c)
            .await)
        .db()?;
        rows.into_iter().map(UpstreamLink::try_from).collect()
    }
}

// ---------------------------------------------------------------------------
// Authorization sessions

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: String,
    provider_id: String,
    state: String,
    code_verifier: Option<String>,
    nonce: Option<String>,
    created_at: i64,
    completed_at: Option<i64>,
    consumed_at: Option<i64>,
    link_id: Option<String>,
    claims: Option<String>,
    post_auth_action: Option<String>,
    sid: Option<String>,
}

impl TryFrom<SessionRow> for UpstreamAuthorizationSession {
    type Error = StorageError;
    fn try_from(r: SessionRow) -> Result<Self, StorageError> {
        let id = ulid(&r.id)?;
        let claims = r
            .claims
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| {
                StorageError::InvalidData(format!("upstream session {id} has bad claims: {e}"))
            })?;
        Ok(UpstreamAuthorizationSession {
            id,
            provider_id: ulid(&r.provider_id)?,
            state: r.state,
            code_verifier: r.code_verifier,
            nonce: r.nonce,
            created_at: from_ms(r.created_at)?,
            completed_at: opt_from_ms(r.completed_at)?,
            consumed_at: opt_from_ms(r.consumed_at)?,
            link_id: opt_ulid(r.link_id.as_deref())?,
            claims,
            post_auth_action: r.post_auth_action,
            sid: r.sid,
        })
    }
}

const SESSION_COLUMNS: &str = "id, provider_id, state, code_verifier, nonce, created_at, \
     completed_at, consumed_at, link_id, claims, post_auth_action, sid";

fn session_stage(session: &UpstreamAuthorizationSession) -> &'static str {
    if session.consumed_at.is_some() {
        "consumed"
    } else if session.completed_at.is_some() {
        "completed"
    } else {
        "pending"
    }
}

#[async_trait]
impl UpstreamSessionRepository for SqlUpstreamSessionRepository<'_> {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        provider: &UpstreamProvider,
        state: &str,
        code_verifier: Option<&str>,
        nonce: Option<&str>,
        post_auth_action: Option<&str>,
    ) -> Result<UpstreamAuthorizationSession, StorageError> {
        let session = UpstreamAuthorizationSession {
            id: new_id(clock, rng),
            provider_id: provider.id,
            state: state.to_owned(),
            code_verifier: code_verifier.map(ToOwned::to_owned),
            nonce: nonce.map(ToOwned::to_owned),
            created_at: clock.now(),
            completed_at: None,
            consumed_at: None,
            link_id: None,
            claims: None,
            post_auth_action: post_auth_action.map(ToOwned::to_owned),
            sid: None,
        };
        execute!(
            self.conn,
            sqlx::query(
                "INSERT INTO upstream_sessions \
                 (id, provider_id, state, code_verifier, nonce, created_at, post_auth_action) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)"
            )
            .bind(session.id.to_string())
            .bind(session.provider_id.to_string())
            .bind(&session.state)
            .bind(session.code_verifier.as_deref())
            .bind(session.nonce.as_deref())
            .bind(ms(session.created_at))
            .bind(session.post_auth_action.as_deref())
        )
        .db()?;
        Ok(session)
    }

    async fn lookup(
        &mut self,
        id: Ulid,
    ) -> Result<Option<UpstreamAuthorizationSession>, StorageError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM upstream_sessions WHERE id = $1");
        let row: Option<SessionRow> = run!(self.conn, |c| sqlx::query_as(&sql)
            .bind(id.to_string())
            .fetch_optional(c)
            .await)
        .db()?;
        row.map(UpstreamAuthorizationSession::try_from).transpose()
    }

    async fn complete(
        &mut self,
        clock: &dyn Clock,
        mut session: UpstreamAuthorizationSession,
        link: &UpstreamLink,
        claims: serde_json::Value,
        sid: Option<&str>,
    ) -> Result<UpstreamAuthorizationSession, StorageError> {
        if session.completed_at.is_some() {
            return Err(InvalidTransition {
                entity: "upstream authorization session",
                from: session_stage(&session),
                to: "completed",
            }
            .into());
        }
        let now = clock.now();
        let claims_text = serde_json::to_string(&claims)
            .map_err(|e| StorageError::InvalidData(format!("claims do not serialise: {e}")))?;
        let rows = execute!(
            self.conn,
            sqlx::query(
                "UPDATE upstream_sessions SET completed_at = $1, link_id = $2, claims = $3, \
                 sid = $4 WHERE id = $5 AND completed_at IS NULL"
            )
            .bind(ms(now))
            .bind(link.id.to_string())
            .bind(&claims_text)
            .bind(sid)
            .bind(session.id.to_string())
        )
        .db()?;
        expect_cas(rows, "upstream authorization session")?;
        session.completed_at = Some(now);
        session.link_id = Some(link.id);
        session.claims = Some(claims);
        session.sid = sid.map(ToOwned::to_owned);
        Ok(session)
    }

    async fn consume(
        &mut self,
        clock: &dyn Clock,
        mut session: UpstreamAuthorizationSession,
    ) -> Result<UpstreamAuthorizationSession, StorageError> {
        if session.completed_at.is_none() || session.consumed_at.is_some() {
            return Err(InvalidTransition {
                entity: "upstream authorization session",
                from: session_stage(&session),
                to: "consumed",
            }
            .into());
        }
        let now = clock.now();
        let rows = execute!(
            self.conn,
            sqlx::query(
                "UPDATE upstream_sessions SET consumed_at = $1 \
                 WHERE id = $2 AND completed_at IS NOT NULL AND consumed_at IS NULL"
            )
            .bind(ms(now))
            .bind(session.id.to_string())
        )
        .db()?;
        expect_cas(rows, "upstream authorization session")?;
        session.consumed_at = Some(now);
        Ok(session)
    }

    async fn purge(
        &mut self,
        unconsumed_before: DateTime<Utc>,
        consumed_before: DateTime<Utc>,
    ) -> Result<(u64, u64), StorageError> {
        // An unconsumed session authenticated nothing, but the reference
        // is checked anyway (foreign key of browser_session_authentications).
        let deleted = execute!(
            self.conn,
            sqlx::query(
                "DELETE FROM upstream_sessions WHERE consumed_at IS NULL AND created_at < $1 \
                 AND NOT EXISTS (SELECT 1 FROM browser_session_authentications a \
                 WHERE a.upstream_session_id = upstream_sessions.id)"
            )
            .bind(ms(unconsumed_before))
        )
        .db()?;
        let cleared = execute!(
            self.conn,
            sqlx::query(
                "UPDATE upstream_sessions SET claims = NULL \
                 WHERE consumed_at IS NOT NULL AND consumed_at < $1 AND claims IS NOT NULL"
            )
            .bind(ms(consumed_before))
        )
        .db()?;
        Ok((deleted, cleared))
    }
}
