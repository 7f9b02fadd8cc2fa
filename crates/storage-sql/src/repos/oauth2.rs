use async_trait::async_trait;
use chrono::Duration;
use vestibule_domain::{
    Clock, Ulid,
    browser_session::BrowserSession,
    new_id,
    oauth2::{
        ApplicationType, AuthorizationGrant, AuthorizationGrantStage, Client, ClientAuthMethod,
        Pkce, ResponseMode, Session,
    },
    tokens::{AccessToken, RefreshToken},
    user::User,
};
use vestibule_storage::{
    Rng, StorageError,
    oauth2::{
        AccessTokenRepository, AuthorizationGrantRepository, ClientParams, ClientRepository,
        NewAuthorizationGrant, RefreshTokenRepository, SessionRepository,
    },
};

use super::repo_struct;
use crate::conn::{
    DbResult, execute, expect_cas, from_ms, ms, opt_from_ms, opt_ulid, opt_url, parse_url, run,
    ulid,
};

repo_struct!(
    SqlClientRepository,
    SqlAuthorizationGrantRepository,
    SqlSessionRepository,
    SqlAccessTokenRepository,
    SqlRefreshTokenRepository,
);

// ---------------------------------------------------------------- clients

#[derive(sqlx::FromRow)]
struct ClientRow {
    id: String,
    client_id: String,
    is_static: bool,
    client_name: Option<String>,
    client_uri: Option<String>,
    logo_uri: Option<String>,
    policy_uri: Option<String>,
    tos_uri: Option<String>,
    redirect_uris: String,
    grant_types: String,
    application_type: Option<String>,
    token_endpoint_auth_method: String,
    encrypted_client_secret: Option<String>,
    jwks: Option<String>,
    jwks_uri: Option<String>,
    id_token_signed_response_alg: Option<String>,
    metadata_digest: Option<String>,
}

fn json<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T, StorageError> {
    serde_json::from_str(s).map_err(|e| StorageError::InvalidData(format!("bad {what}: {e}")))
}

impl TryFrom<ClientRow> for Client {
    type Error = StorageError;
    fn try_from(r: ClientRow) -> Result<Self, StorageError> {
        let redirect_uris: Vec<String> = json(&r.redirect_uris, "redirect_uris")?;
        Ok(Client {
            id: ulid(&r.id)?,
            client_id: r.client_id,
            is_static: r.is_static,
            client_name: r.client_name,
            client_uri: opt_url(r.client_uri.as_deref())?,
            logo_uri: opt_url(r.logo_uri.as_deref())?,
            policy_uri: opt_url(r.policy_uri.as_deref())?,
            tos_uri: opt_url(r.tos_uri.as_deref())?,
            redirect_uris: redirect_uris
                .iter()
                .map(|u| parse_url(u))
                .collect::<Result<_, _>>()?,
            grant_types: json(&r.grant_types, "grant_types")?,
            application_type: r
                .application_type
                .as_deref()
                .map(|a| {
                    ApplicationType::parse(a)
                        .ok_or_else(|| StorageError::InvalidData(format!("application_type {a}")))
                })
                .transpose()?,
            token_endpoint_auth_method: ClientAuthMethod::parse(&r.token_endpoint_auth_method)
                .ok_or_else(|| {
                    StorageError::InvalidData(format!(
                        "auth method {}",
                        r.token_endpoint_auth_method
                    ))
                })?,
            encrypted_client_secret: r.encrypted_client_secret,
            jwks: r.jwks.as_deref().map(|j| json(j, "jwks")).transpose()?,
            jwks_uri: opt_url(r.jwks_uri.as_deref())?,
            id_token_signed_response_alg: r.id_token_signed_response_alg,
            metadata_digest: r.metadata_digest,
        })
    }
}

const CLIENT_COLUMNS: &str = "id, client_id, is_static, client_name, client_uri, logo_uri, policy_uri, tos_uri, \
    redirect_uris, grant_types, application_type, token_endpoint_auth_method, encrypted_client_secret, \
    jwks, jwks_uri, id_token_signed_response_alg, metadata_digest";

fn client_from(id: Ulid, is_static: bool, p: ClientParams) -> Client {
    Client {
        id,
        client_id: id.to_string(),
        is_static,
        client_name: p.client_name,
        client_uri: p.client_uri,
        logo_uri: p.logo_uri,
        policy_uri: p.policy_uri,
        tos_uri: p.tos_uri,
        redirect_uris: p.redirect_uris,
        grant_types: p.grant_types,
        application_type: p.application_type,
        token_endpoint_auth_method: p.token_endpoint_auth_method,
        encrypted_client_secret: p.encrypted_client_secret,
        jwks: p.jwks,
        jwks_uri: p.jwks_uri,
        id_token_signed_response_alg: p.id_token_signed_response_alg,
        metadata_digest: p.metadata_digest,
    }
}

impl SqlClientRepository<'_> {
    async fn write(
        &mut self,
        c: &Client,
        created_at: i64,
        upsert: bool,
    ) -> Result<(), StorageError> {
        let redirect_uris: Vec<&str> = c.redirect_uris.iter().map(url::Url::as_str).collect();
        let redirect_uris = serde_json::to_string(&redirect_uris).unwrap_or_default();
        let grant_types = serde_json::to_string(&c.grant_types).unwrap_or_default();
        let jwks = c.jwks.as_ref().map(ToString::to_string);
        let conflict = if upsert {
            " ON CONFLICT (id) DO UPDATE SET client_id = excluded.client_id, is_static = excluded.is_static, \
             client_name = excluded.client_name, client_uri = excluded.client_uri, logo_uri = excluded.logo_uri, \
             policy_uri = excluded.policy_uri, tos_uri = excluded.tos_uri, redirect_uris = excluded.redirect_uris, \
             grant_types = excluded.grant_types, application_type = excluded.application_type, \
             token_endpoint_auth_method = excluded.token_endpoint_auth_method, \
             encrypted_client_secret = excluded.encrypted_client_secret, jwks = excluded.jwks, \
             jwks_uri = excluded.jwks_uri, id_token_signed_response_alg = excluded.id_token_signed_response_alg, \
             metadata_digest = excluded.metadata_digest"
        } else {
            ""
        };
        let sql = format!(
            "INSERT INTO oauth2_clients ({CLIENT_COLUMNS}, created_at) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18){conflict}"
        );
        execute!(
            self.conn,
            sqlx::query(&sql)
                .bind(c.id.to_string())
                .bind(&c.client_id)
                .bind(c.is_static)
                .bind(&c.client_name)
                .bind(c.client_uri.as_ref().map(url::Url::as_str))
                .bind(c.logo_uri.as_ref().map(url::Url::as_str))
                .bind(c.policy_uri.as_ref().map(url::Url::as_str))
                .bind(c.tos_uri.as_ref().map(url::Url::as_str))
                .bind(&redirect_uris)
                .bind(&grant_types)
                .bind(c.application_type.map(ApplicationType::as_str))
                .bind(c.token_endpoint_auth_method.as_str())
                .bind(&c.encrypted_client_secret)
                .bind(&jwks)
                .bind(c.jwks_uri.as_ref().map(url::Url::as_str))
                .bind(&c.id_token_signed_response_alg)
                .bind(&c.metadata_digest)
                .bind(created_at)
        )
        .db()?;
        Ok(())
    }

    async fn find_by(&mut self, column: &str, value: &str) -> Result<Option<Client>, StorageError> {
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM oauth2_clients WHERE {column} = $1");
        let row: Option<ClientRow> = run!(self.conn, |c| sqlx::query_as(&sql)
            .bind(value)
            .fetch_optional(c)
            .await)
        .db()?;
        row.map(Client::try_from).transpose()
    }
}

#[async_trait]
impl ClientRepository for SqlClientRepository<'_> {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        params: ClientParams,
    ) -> Result<Client, StorageError> {
        let client = client_from(new_id(clock, rng), false, params);
        self.write(&client, ms(clock.now()), false).await?;
        Ok(client)
    }

    async fn upsert_static(
        &mut self,
        clock: &dyn Clock,
        id: Ulid,
        params: ClientParams,
    ) -> Result<Client, StorageError> {
        let client = client_from(id, true, params);
        self.write(&client, ms(clock.now()), true).await?;
        Ok(client)
    }

    async fn lookup(&mut self, id: Ulid) -> Result<Option<Client>, StorageError> {
        self.find_by("id", &id.to_string()).await
    }

    async fn find_by_client_id(&mut self, client_id: &str) -> Result<Option<Client>, StorageError> {
        self.find_by("client_id", client_id).await
    }

    async fn find_by_metadata_digest(
        &mut self,
        digest: &str,
    ) -> Result<Option<Client>, StorageError> {
        self.find_by("metadata_digest", digest).await
    }
}

// ---------------------------------------------------------------- grants

#[derive(sqlx::FromRow)]
struct GrantRow {
    id: String,
    client_id: String,
    redirect_uri: String,
    scope: String,
    state: Option<String>,
    nonce: Option<String>,
    response_mode: String,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    max_age: Option<i64>,
    login_hint: Option<String>,
    prompt: Option<String>,
    created_at: i64,
    fulfilled_at: Option<i64>,
    exchanged_at: Option<i64>,
    cancelled_at: Option<i64>,
    session_id: Option<String>,
}

impl TryFrom<GrantRow> for AuthorizationGrant {
    type Error = StorageError;
    fn try_from(r: GrantRow) -> Result<Self, StorageError> {
        let session_id = opt_ulid(r.session_id.as_deref())?;
        let stage = match (r.fulfilled_at, r.exchanged_at, r.cancelled_at, session_id) {
            (None, None, None, _) => AuthorizationGrantStage::Pending,
            (Some(f), None, None, Some(session_id)) => AuthorizationGrantStage::Fulfilled {
                session_id,
                fulfilled_at: from_ms(f)?,
            },
            (Some(f), Some(e), None, Some(session_id)) => AuthorizationGrantStage::Exchanged {
                session_id,
                fulfilled_at: from_ms(f)?,
                exchanged_at: from_ms(e)?,
            },
            (None, None, Some(c), _) => AuthorizationGrantStage::Cancelled {
                cancelled_at: from_ms(c)?,
            },
            _ => {
                return Err(StorageError::InvalidData(format!(
                    "authorization grant {} has an impossible stage",
                    r.id
                )));
            }
        };
        let pkce = match (r.code_challenge, r.code_challenge_method) {
            (Some(challenge), Some(challenge_method)) => Some(Pkce {
                challenge_method,
                challenge,
            }),
            _ => None,
        };
        Ok(AuthorizationGrant {
            id: ulid(&r.id)?,
            client_id: ulid(&r.client_id)?,
            redirect_uri: parse_url(&r.redirect_uri)?,
            scope: r.scope,
            state: r.state,
            nonce: r.nonce,
            response_mode: ResponseMode::parse(&r.response_mode).ok_or_else(|| {
                StorageError::InvalidData(format!("response_mode {}", r.response_mode))
            })?,
            pkce,
            max_age: r.max_age.and_then(|m| u32::try_from(m).ok()),
            login_hint: r.login_hint,
            prompt: r.prompt,
            created_at: from_ms(r.created_at)?,
            stage,
        })
    }
}

const GRANT_COLUMNS: &str = "id, client_id, redirect_uri, scope, state, nonce, response_mode, code_challenge, \
    code_challenge_method, max_age, login_hint, prompt, created_at, fulfilled_at, exchanged_at, cancelled_at, session_id";

impl SqlAuthorizationGrantRepository<'_> {
    async fn find_by(
        &mut self,
        column: &str,
        value: &str,
    ) -> Result<Option<AuthorizationGrant>, StorageError> {
        let sql =
            format!("SELECT {GRANT_COLUMNS} FROM oauth2_authorization_grants WHERE {column} = $1");
        let row: Option<GrantRow> = run!(self.conn, |c| sqlx::query_as(&sql)
            .bind(value)
            .fetch_optional(c)
            .await)
        .db()?;
        row.map(AuthorizationGrant::try_from).transpose()
    }
}

#[async_trait]
impl AuthorizationGrantRepository for SqlAuthorizationGrantRepository<'_> {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        client: &Client,
        g: NewAuthorizationGrant,
    ) -> Result<AuthorizationGrant, StorageError> {
        let grant = AuthorizationGrant {
            id: new_id(clock, rng),
            client_id: client.id,
            redirect_uri: g.redirect_uri,
            scope: g.scope,
            state: g.state,
            nonce: g.nonce,
            response_mode: g.response_mode,
            pkce: g.pkce,
            max_age: g.max_age,
            login_hint: g.login_hint,
            prompt: g.prompt,
            created_at: clock.now(),
            stage: AuthorizationGrantStage::Pending,
        };
        execute!(
            self.conn,
            sqlx::query(
                "INSERT INTO oauth2_authorization_grants (id, client_id, redirect_uri, scope, state, nonce, \
                 response_mode, code_challenge, code_challenge_method, max_age, login_hint, prompt, code_hash, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            )
            .bind(grant.id.to_string())
            .bind(grant.client_id.to_string())
            .bind(grant.redirect_uri.as_str())
            .bind(&grant.scope)
            .bind(&grant.state)
            .bind(&grant.nonce)
            .bind(grant.response_mode.as_str())
            .bind(grant.pkce.as_ref().map(|p| p.challenge.as_str()))
            .bind(grant.pkce.as_ref().map(|p| p.challenge_method.as_str()))
            .bind(grant.max_age.map(i64::from))
            .bind(&grant.login_hint)
            .bind(&grant.prompt)
            .bind(&g.code_hash)
            .bind(ms(grant.created_at))
        )
        .db()?;
        Ok(grant)
    }

    async fn lookup(&mut self, id: Ulid) -> Result<Option<AuthorizationGrant>, StorageError> {
        self.find_by("id", &id.to_string()).await
    }

    async fn find_by_code_hash(
        &mut self,
        code_hash: &str,
    ) -> Result<Option<AuthorizationGrant>, StorageError> {
        self.find_by("code_hash", code_hash).await
    }

    async fn fulfill(
        &mut self,
        clock: &dyn Clock,
        session: &Session,
        mut grant: AuthorizationGrant,
    ) -> Result<AuthorizationGrant, StorageError> {
        let now = clock.now();
        grant.fulfill(now, session.id)?;
        let rows = execute!(
            self.conn,
            sqlx::query(
                "UPDATE oauth2_authorization_grants SET fulfilled_at = $1, session_id = $2 \
                 WHERE id = $3 AND fulfilled_at IS NULL AND cancelled_at IS NULL"
            )
            .bind(ms(now))
            .bind(session.id.to_string())
            .bind(grant.id.to_string())
        )
        .db()?;
        expect_cas(rows, "authorization grant")?;
        Ok(grant)
    }

    async fn exchange(
        &mut self,
        clock: &dyn Clock,
        mut grant: AuthorizationGrant,
    ) -> Result<AuthorizationGrant, StorageError> {
        let now = clock.now();
        grant.exchange(now)?;
        // RFC 6749 §4.1.2: the code is single use. The compare-and-set makes
        // concurrent exchanges of one code have exactly one winner.
        let rows = execute!(
            self.conn,
            sqlx::query(
                "UPDATE oauth2_authorization_grants SET exchanged_at = $1 \
                 WHERE id = $2 AND exchanged_at IS NULL AND fulfilled_at IS NOT NULL"
            )
            .bind(ms(now))
            .bind(grant.id.to_string())
        )
        .db()?;
        expect_cas(rows, "authorization code")?;
        Ok(grant)
    }

    async fn cancel(
        &mut self,
        clock: &dyn Clock,
        mut grant: AuthorizationGrant,
    ) -> Result<AuthorizationGrant, StorageError> {
        let now = clock.now();
        grant.cancel(now)?;
        let rows = execute!(
            self.conn,
            sqlx::query(
                "UPDATE oauth2_authorization_grants SET cancelled_at = $1 \
                 WHERE id = $2 AND fulfilled_at IS NULL AND cancelled_at IS NULL"
            )
            .bind(ms(now))
            .bind(grant.id.to_string())
        )
        .db()?;
        expect_cas(rows, "authorization grant")?;
        Ok(grant)
    }
}

// ---------------------------------------------------------------- sessions

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: String,
    client_id: String,
    user_id: Option<String>,
    browser_session_id: Option<String>,
    scope: String,
    created_at: i64,
    finished_at: Option<i64>,
    user_agent: Option<String>,
    last_active_at: Option<i64>,
}

impl TryFrom<SessionRow> for Session {
    type Error = StorageError;
    fn try_from(r: SessionRow) -> Result<Self, StorageError> {
        Ok(Session {
            id: ulid(&r.id)?,
            client_id: ulid(&r.client_id)?,
            user_id: opt_ulid(r.user_id.as_deref())?,
            browser_session_id: opt_ulid(r.browser_session_id.as_deref())?,
            scope: r.scope,
            created_at: from_ms(r.created_at)?,
            finished_at: opt_from_ms(r.finished_at)?,
            user_agent: r.user_agent,
            last_active_at: opt_from_ms(r.last_active_at)?,
        })
    }
}

const SESSION_COLUMNS: &str = "id, client_id, user_id, browser_session_id, scope, created_at, finished_at, user_agent, last_active_at";

#[async_trait]
impl SessionRepository for SqlSessionRepository<'_> {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        client: &Client,
        user: Option<&User>,
        browser_session: Option<&BrowserSession>,
        scope: &str,
    ) -> Result<Session, StorageError> {
        let s = Session {
            id: new_id(clock, rng),
            client_id: client.id,
            user_id: user.map(|u| u.id),
            browser_session_id: browser_session.map(|b| b.id),
            scope: scope.to_owned(),
            created_at: clock.now(),
            finished_at: None,
            user_agent: None,
            last_active_at: None,
        };
        execute!(
            self.conn,
            sqlx::query(
                "INSERT INTO oauth2_sessions (id, client_id, user_id, browser_session_id, scope, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)"
            )
            .bind(s.id.to_string())
            .bind(s.client_id.to_string())
            .bind(s.user_id.map(|u| u.to_string()))
            .bind(s.browser_session_id.map(|b| b.to_string()))
            .bind(&s.scope)
            .bind(ms(s.created_at))
        )
        .db()?;
        Ok(s)
    }

    async fn lookup(&mut self, id: Ulid) -> Result<Option<Session>, StorageError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM oauth2_sessions WHERE id = $1");
        let row: Option<SessionRow> = run!(self.conn, |c| sqlx::query_as(&sql)
            .bind(id.to_string())
            .fetch_optional(c)
            .await)
        .db()?;
        row.map(Session::try_from).transpose()
    }

    async fn finish(
        &mut self,
        clock: &dyn Clock,
        mut session: Session,
    ) -> Result<Session, StorageError> {
        let now = clock.now();
        session.finish(now)?;
        let rows = execute!(
            self.conn,
            sqlx::query(
                "UPDATE oauth2_sessions SET finished_at = $1 WHERE id = $2 AND finished_at IS NULL"
            )
            .bind(ms(now))
            .bind(session.id.to_string())
        )
        .db()?;
        expect_cas(rows, "oauth2 session")?;
        Ok(session)
    }

    async fn finish_all_for_user(
        &mut self,
        clock: &dyn Clock,
        user: &User,
    ) -> Result<u64, StorageError> {
        execute!(
            self.conn,
            sqlx::query("UPDATE oauth2_sessions SET finished_at = $1 WHERE user_id = $2 AND finished_at IS NULL")
                .bind(ms(clock.now()))
                .bind(user.id.to_string())
        )
        .db()
    }

    async fn list_active_for_user(&mut self, user: &User) -> Result<Vec<Session>, StorageError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM oauth2_sessions WHERE user_id = $1 AND finished_at IS NULL ORDER BY id"
        );
        let rows: Vec<SessionRow> = run!(self.conn, |c| sqlx::query_as(&sql)
            .bind(user.id.to_string())
            .fetch_all(c)
            .await)
        .db()?;
        rows.into_iter().map(Session::try_from).collect()
    }
}

// ---------------------------------------------------------------- access tokens

#[derive(sqlx::FromRow)]
struct AccessTokenRow {
    id: String,
    session_id: String,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    first_used_at: Option<i64>,
    scope: Option<String>,
}

impl TryFrom<AccessTokenRow> for AccessToken {
    type Error = StorageError;
    fn try_from(r: AccessTokenRow) -> Result<Self, StorageError> {
        Ok(AccessToken {
            id: ulid(&r.id)?,
            session_id: ulid(&r.session_id)?,
            created_at: from_ms(r.created_at)?,
            expires_at: opt_from_ms(r.expires_at)?,
            revoked_at: opt_from_ms(r.revoked_at)?,
            first_used_at: opt_from_ms(r.first_used_at)?,
            scope: r.scope,
        })
    }
}

const AT_COLUMNS: &str = "id, session_id, created_at, expires_at, revoked_at, first_used_at, scope";

impl SqlAccessTokenRepository<'_> {
    async fn find_by(
        &mut self,
        column: &str,
        value: &str,
    ) -> Result<Option<AccessToken>, StorageError> {
        let sql = format!("SELECT {AT_COLUMNS} FROM oauth2_access_tokens WHERE {column} = $1");
        let row: Option<AccessTokenRow> = run!(self.conn, |c| sqlx::query_as(&sql)
            .bind(value)
            .fetch_optional(c)
            .await)
        .db()?;
        row.map(AccessToken::try_from).transpose()
    }
}

#[async_trait]
impl AccessTokenRepository for SqlAccessTokenRepository<'_> {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        session: &Session,
        token_hash: &str,
        expires_after: Option<Duration>,
    ) -> Result<AccessToken, StorageError> {
        self.add_with_scope(rng, clock, session, token_hash, expires_after, None)
            .await
    }

    async fn add_with_scope(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        session: &Session,
        token_hash: &str,
        expires_after: Option<Duration>,
        scope: Option<&str>,
    ) -> Result<AccessToken, StorageError> {
        let now = clock.now();
        let t = AccessToken {
            id: new_id(clock, rng),
            session_id: session.id,
            created_at: now,
            expires_at: expires_after.map(|d| now + d),
            revoked_at: None,
            first_used_at: None,
            scope: scope.map(str::to_owned),
        };
        execute!(
            self.conn,
            sqlx::query(
                "INSERT INTO oauth2_access_tokens (id, session_id, token_hash, created_at, expires_at, scope) \
                 VALUES ($1, $2, $3, $4, $5, $6)"
            )
            .bind(t.id.to_string())
            .bind(t.session_id.to_string())
            .bind(token_hash)
            .bind(ms(t.created_at))
            .bind(t.expires_at.map(ms))
            .bind(&t.scope)
        )
        .db()?;
        Ok(t)
    }

    async fn revoke_if_unused(
        &mut self,
        clock: &dyn Clock,
        mut token: AccessToken,
    ) -> Result<AccessToken, StorageError> {
        let now = clock.now();
        let rows = execute!(
            self.conn,
            sqlx::query(
                "UPDATE oauth2_access_tokens SET revoked_at = $1 \
                 WHERE id = $2 AND revoked_at IS NULL AND first_used_at IS NULL"
            )
            .bind(ms(now))
            .bind(token.id.to_string())
        )
        .db()?;
        expect_cas(rows, "access token")?;
        token.revoked_at = Some(now);
        Ok(token)
    }

    async fn lookup(&mut self, id: Ulid) -> Result<Option<AccessToken>, StorageError> {
        self.find_by("id", &id.to_string()).await
    }

    async fn find_by_hash(
        &mut self,
        token_hash: &str,
    ) -> Result<Option<AccessToken>, StorageError> {
        self.find_by("token_hash", token_hash).await
    }

    async fn revoke(
        &mut self,
        clock: &dyn Clock,
        mut token: AccessToken,
    ) -> Result<AccessToken, StorageError> {
        let now = clock.now();
        execute!(
            self.conn,
            sqlx::query("UPDATE oauth2_access_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(ms(now))
                .bind(token.id.to_string())
        )
        .db()?;
        token.revoked_at.get_or_insert(now);
        Ok(token)
    }

    async fn revoke_all_for_session(
        &mut self,
        clock: &dyn Clock,
        session: &Session,
    ) -> Result<u64, StorageError> {
        execute!(
            self.conn,
            sqlx::query("UPDATE oauth2_access_tokens SET revoked_at = $1 WHERE session_id = $2 AND revoked_at IS NULL")
                .bind(ms(clock.now()))
                .bind(session.id.to_string())
        )
        .db()
    }

    async fn mark_used(
        &mut self,
        clock: &dyn Clock,
        mut token: AccessToken,
    ) -> Result<AccessToken, StorageError> {
        let now = clock.now();
        execute!(
            self.conn,
            sqlx::query("UPDATE oauth2_access_tokens SET first_used_at = $1 WHERE id = $2 AND first_used_at IS NULL")
                .bind(ms(now))
                .bind(token.id.to_string())
        )
        .db()?;
        token.first_used_at.get_or_insert(now);
        Ok(token)
    }
}

// ---------------------------------------------------------------- refresh tokens

#[derive(sqlx::FromRow)]
struct RefreshTokenRow {
    id: String,
    session_id: String,
    access_token_id: Option<String>,
    created_at: i64,
    consumed_at: Option<i64>,
    revoked_at: Option<i64>,
    next_refresh_token_id: Option<String>,
}

impl TryFrom<RefreshTokenRow> for RefreshToken {
    type Error = StorageError;
    fn try_from(r: RefreshTokenRow) -> Result<Self, StorageError> {
        Ok(RefreshToken {
            id: ulid(&r.id)?,
            session_id: ulid(&r.session_id)?,
            access_token_id: opt_ulid(r.access_token_id.as_deref())?,
            created_at: from_ms(r.created_at)?,
            consumed_at: opt_from_ms(r.consumed_at)?,
            revoked_at: opt_from_ms(r.revoked_at)?,
            next_refresh_token_id: opt_ulid(r.next_refresh_token_id.as_deref())?,
        })
    }
}

const RT_COLUMNS: &str =
    "id, session_id, access_token_id, created_at, consumed_at, revoked_at, next_refresh_token_id";

impl SqlRefreshTokenRepository<'_> {
    async fn find_by(
        &mut self,
        column: &str,
        value: &str,
    ) -> Result<Option<RefreshToken>, StorageError> {
        let sql = format!("SELECT {RT_COLUMNS} FROM oauth2_refresh_tokens WHERE {column} = $1");
        let row: Option<RefreshTokenRow> = run!(self.conn, |c| sqlx::query_as(&sql)
            .bind(value)
            .fetch_optional(c)
            .await)
        .db()?;
        row.map(RefreshToken::try_from).transpose()
    }
}

#[async_trait]
impl RefreshTokenRepository for SqlRefreshTokenRepository<'_> {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        session: &Session,
        access_token: &AccessToken,
        token_hash: &str,
    ) -> Result<RefreshToken, StorageError> {
        let t = RefreshToken {
            id: new_id(clock, rng),
            session_id: session.id,
            access_token_id: Some(access_token.id),
            created_at: clock.now(),
            consumed_at: None,
            revoked_at: None,
            next_refresh_token_id: None,
        };
        execute!(
            self.conn,
            sqlx::query(
                "INSERT INTO oauth2_refresh_tokens (id, session_id, access_token_id, token_hash, created_at) \
                 VALUES ($1, $2, $3, $4, $5)"
            )
            .bind(t.id.to_string())
            .bind(t.session_id.to_string())
            .bind(access_token.id.to_string())
            .bind(token_hash)
            .bind(ms(t.created_at))
        )
        .db()?;
        Ok(t)
    }

    async fn lookup(&mut self, id: Ulid) -> Result<Option<RefreshToken>, StorageError> {
        self.find_by("id", &id.to_string()).await
    }

    async fn find_by_hash(
        &mut self,
        token_hash: &str,
    ) -> Result<Option<RefreshToken>, StorageError> {
        self.find_by("token_hash", token_hash).await
    }

    async fn consume(
        &mut self,
        clock: &dyn Clock,
        mut token: RefreshToken,
        next: &RefreshToken,
    ) -> Result<RefreshToken, StorageError> {
        let now = clock.now();
        if !token.is_valid() {
            return Err(StorageError::ConcurrentUpdate("refresh token"));
        }
        // RFC 9700 §4.14.2: rotation; the compare-and-set gives one winner
        // among concurrent refreshes with the same token.
        let rows = execute!(
            self.conn,
            sqlx::query(
                "UPDATE oauth2_refresh_tokens SET consumed_at = $1, next_refresh_token_id = $2 \
                 WHERE id = $3 AND consumed_at IS NULL AND revoked_at IS NULL"
            )
            .bind(ms(now))
            .bind(next.id.to_string())
            .bind(token.id.to_string())
        )
        .db()?;
        expect_cas(rows, "refresh token")?;
        token.consumed_at = Some(now);
        token.next_refresh_token_id = Some(next.id);
        Ok(token)
    }

    async fn revoke_if_unused(
        &mut self,
        clock: &dyn Clock,
        mut token: RefreshToken,
    ) -> Result<RefreshToken, StorageError> {
        let now = clock.now();
        let rows = execute!(
            self.conn,
            sqlx::query(
                "UPDATE oauth2_refresh_tokens SET revoked_at = $1 \
                 WHERE id = $2 AND revoked_at IS NULL AND consumed_at IS NULL"
            )
            .bind(ms(now))
            .bind(token.id.to_string())
        )
        .db()?;
        expect_cas(rows, "refresh token")?;
        token.revoked_at = Some(now);
        Ok(token)
    }

    async fn revoke_all_for_session(
        &mut self,
        clock: &dyn Clock,
        session: &Session,
    ) -> Result<u64, StorageError> {
        execute!(
            self.conn,
            sqlx::query("UPDATE oauth2_refresh_tokens SET revoked_at = $1 WHERE session_id = $2 AND revoked_at IS NULL")
                .bind(ms(clock.now()))
                .bind(session.id.to_string())
        )
        .db()
    }
}
