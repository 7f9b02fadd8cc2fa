use async_trait::async_trait;
use chrono::Duration;
use url::Url;
use vestibule_domain::{
    Ulid,
    browser_session::BrowserSession,
    oauth2::{
        ApplicationType, AuthorizationGrant, Client, ClientAuthMethod, Pkce, ResponseMode, Session,
    },
    tokens::{AccessToken, RefreshToken},
    user::User,
};

use crate::{Clock, Rng, StorageError};

/// Everything about a client except its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientParams {
    pub client_name: Option<String>,
    pub client_uri: Option<Url>,
    pub logo_uri: Option<Url>,
    pub policy_uri: Option<Url>,
    pub tos_uri: Option<Url>,
    pub redirect_uris: Vec<Url>,
    pub grant_types: Vec<String>,
    pub application_type: Option<ApplicationType>,
    pub token_endpoint_auth_method: ClientAuthMethod,
    pub encrypted_client_secret: Option<String>,
    pub jwks: Option<serde_json::Value>,
    pub jwks_uri: Option<Url>,
    pub id_token_signed_response_alg: Option<String>,
    pub metadata_digest: Option<String>,
}

#[async_trait]
pub trait ClientRepository: Send {
    /// Registers a dynamic client.
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        params: ClientParams,
    ) -> Result<Client, StorageError>;
    /// Creates or replaces a static client from the config, under its configured id.
    async fn upsert_static(
        &mut self,
        clock: &dyn Clock,
        id: Ulid,
        params: ClientParams,
    ) -> Result<Client, StorageError>;
    async fn lookup(&mut self, id: Ulid) -> Result<Option<Client>, StorageError>;
    /// By the `client_id` string a client presents.
    async fn find_by_client_id(&mut self, client_id: &str) -> Result<Option<Client>, StorageError>;
    async fn find_by_metadata_digest(
        &mut self,
        digest: &str,
    ) -> Result<Option<Client>, StorageError>;
}

/// What `/authorize` accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuthorizationGrant {
    pub redirect_uri: Url,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub response_mode: ResponseMode,
    pub pkce: Option<Pkce>,
    pub max_age: Option<u32>,
    pub login_hint: Option<String>,
    pub prompt: Option<String>,
    /// Hash of the authorization code that will be handed out.
    pub code_hash: String,
}

#[async_trait]
pub trait AuthorizationGrantRepository: Send {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        client: &Client,
        grant: NewAuthorizationGrant,
    ) -> Result<AuthorizationGrant, StorageError>;
    async fn lookup(&mut self, id: Ulid) -> Result<Option<AuthorizationGrant>, StorageError>;
    async fn find_by_code_hash(
        &mut self,
        code_hash: &str,
    ) -> Result<Option<AuthorizationGrant>, StorageError>;
    async fn fulfill(
        &mut self,
        clock: &dyn Clock,
        session: &Session,
        grant: AuthorizationGrant,
    ) -> Result<AuthorizationGrant, StorageError>;
    /// Compare-and-set: only one caller ever exchanges a code.
    async fn exchange(
        &mut self,
        clock: &dyn Clock,
        grant: AuthorizationGrant,
    ) -> Result<AuthorizationGrant, StorageError>;
    async fn cancel(
        &mut self,
        clock: &dyn Clock,
        grant: AuthorizationGrant,
    ) -> Result<AuthorizationGrant, StorageError>;
}

#[async_trait]
pub trait SessionRepository: Send {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        client: &Client,
        user: Option<&User>,
        browser_session: Option<&BrowserSession>,
        scope: &str,
    ) -> Result<Session, StorageError>;
    async fn lookup(&mut self, id: Ulid) -> Result<Option<Session>, StorageError>;
    async fn finish(
        &mut self,
        clock: &dyn Clock,
        session: Session,
    ) -> Result<Session, StorageError>;
    async fn finish_all_for_user(
        &mut self,
        clock: &dyn Clock,
        user: &User,
    ) -> Result<u64, StorageError>;
    async fn list_active_for_user(&mut self, user: &User) -> Result<Vec<Session>, StorageError>;
}

#[async_trait]
pub trait AccessTokenRepository: Send {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        session: &Session,
        token_hash: &str,
        expires_after: Option<Duration>,
    ) -> Result<AccessToken, StorageError>;
    /// Like [`AccessTokenRepository::add`], with a scope narrower than the
    /// session's (`None`: the session's scope).
    async fn add_with_scope(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        session: &Session,
        token_hash: &str,
        expires_after: Option<Duration>,
        scope: Option<&str>,
    ) -> Result<AccessToken, StorageError>;
    /// Compare-and-set: revokes the token only if it was never used and is
    /// not revoked yet; otherwise [`StorageError::ConcurrentUpdate`].
    async fn revoke_if_unused(
        &mut self,
        clock: &dyn Clock,
        token: AccessToken,
    ) -> Result<AccessToken, StorageError>;
    async fn lookup(&mut self, id: Ulid) -> Result<Option<AccessToken>, StorageError>;
    async fn find_by_hash(&mut self, token_hash: &str)
    -> Result<Option<AccessToken>, StorageError>;
    async fn revoke(
        &mut self,
        clock: &dyn Clock,
        token: AccessToken,
    ) -> Result<AccessToken, StorageError>;
    async fn revoke_all_for_session(
        &mut self,
        clock: &dyn Clock,
        session: &Session,
    ) -> Result<u64, StorageError>;
    async fn mark_used(
        &mut self,
        clock: &dyn Clock,
        token: AccessToken,
    ) -> Result<AccessToken, StorageError>;
}

#[async_trait]
pub trait RefreshTokenRepository: Send {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        session: &Session,
        access_token: &AccessToken,
        token_hash: &str,
    ) -> Result<RefreshToken, StorageError>;
    async fn lookup(&mut self, id: Ulid) -> Result<Option<RefreshToken>, StorageError>;
    async fn find_by_hash(
        &mut self,
        token_hash: &str,
    ) -> Result<Option<RefreshToken>, StorageError>;
    /// Compare-and-set rotation: marks `token` consumed and points it at `next`.
    async fn consume(
        &mut self,
        clock: &dyn Clock,
        token: RefreshToken,
        next: &RefreshToken,
    ) -> Result<RefreshToken, StorageError>;
    /// Compare-and-set: revokes the token only if it is neither consumed nor
    /// revoked; otherwise [`StorageError::ConcurrentUpdate`].
    async fn revoke_if_unused(
        &mut self,
        clock: &dyn Clock,
        token: RefreshToken,
    ) -> Result<RefreshToken, StorageError>;
    async fn revoke_all_for_session(
        &mut self,
        clock: &dyn Clock,
        session: &Session,
    ) -> Result<u64, StorageError>;
}
