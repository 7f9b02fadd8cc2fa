//! TODO(helper): real implementation.
#![allow(unused_variables, clippy::unused_async)]
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

use vestibule_storage::{Clock, Rng, StorageError};

use super::repo_struct;
/// Everything about a client except its id.
use vestibule_storage::oauth2::*;
repo_struct!(
    SqlClientRepository,
    SqlAuthorizationGrantRepository,
    SqlSessionRepository,
    SqlAccessTokenRepository,
    SqlRefreshTokenRepository
);
#[async_trait]
impl ClientRepository for SqlClientRepository<'_> {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        params: ClientParams,
    ) -> Result<Client, StorageError> {
        unimplemented!()
    }
    async fn upsert_static(
        &mut self,
        clock: &dyn Clock,
        id: Ulid,
        params: ClientParams,
    ) -> Result<Client, StorageError> {
        unimplemented!()
    }
    async fn lookup(&mut self, id: Ulid) -> Result<Option<Client>, StorageError> {
        unimplemented!()
    }
    async fn find_by_client_id(&mut self, client_id: &str) -> Result<Option<Client>, StorageError> {
        unimplemented!()
    }
    async fn find_by_metadata_digest(
        &mut self,
        digest: &str,
    ) -> Result<Option<Client>, StorageError> {
        unimplemented!()
    }
}
#[async_trait]
impl AuthorizationGrantRepository for SqlAuthorizationGrantRepository<'_> {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        client: &Client,
        grant: NewAuthorizationGrant,
    ) -> Result<AuthorizationGrant, StorageError> {
        unimplemented!()
    }
    async fn lookup(&mut self, id: Ulid) -> Result<Option<AuthorizationGrant>, StorageError> {
        unimplemented!()
    }
    async fn find_by_code_hash(
        &mut self,
        code_hash: &str,
    ) -> Result<Option<AuthorizationGrant>, StorageError> {
        unimplemented!()
    }
    async fn fulfill(
        &mut self,
        clock: &dyn Clock,
        session: &Session,
        grant: AuthorizationGrant,
    ) -> Result<AuthorizationGrant, StorageError> {
        unimplemented!()
    }
    async fn exchange(
        &mut self,
        clock: &dyn Clock,
        grant: AuthorizationGrant,
    ) -> Result<AuthorizationGrant, StorageError> {
        unimplemented!()
    }
    async fn cancel(
        &mut self,
        clock: &dyn Clock,
        grant: AuthorizationGrant,
    ) -> Result<AuthorizationGrant, StorageError> {
        unimplemented!()
    }
}
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
        unimplemented!()
    }
    async fn lookup(&mut self, id: Ulid) -> Result<Option<Session>, StorageError> {
        unimplemented!()
    }
    async fn finish(
        &mut self,
        clock: &dyn Clock,
        session: Session,
    ) -> Result<Session, StorageError> {
        unimplemented!()
    }
    async fn finish_all_for_user(
        &mut self,
        clock: &dyn Clock,
        user: &User,
    ) -> Result<u64, StorageError> {
        unimplemented!()
    }
    async fn list_active_for_user(&mut self, user: &User) -> Result<Vec<Session>, StorageError> {
        unimplemented!()
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
        unimplemented!()
    }
    async fn lookup(&mut self, id: Ulid) -> Result<Option<AccessToken>, StorageError> {
        unimplemented!()
    }
    async fn find_by_hash(
        &mut self,
        token_hash: &str,
    ) -> Result<Option<AccessToken>, StorageError> {
        unimplemented!()
    }
    async fn revoke(
        &mut self,
        clock: &dyn Clock,
        token: AccessToken,
    ) -> Result<AccessToken, StorageError> {
        unimplemented!()
    }
    async fn revoke_all_for_session(
        &mut self,
        clock: &dyn Clock,
        session: &Session,
    ) -> Result<u64, StorageError> {
        unimplemented!()
    }
    async fn mark_used(
        &mut self,
        clock: &dyn Clock,
        token: AccessToken,
    ) -> Result<AccessToken, StorageError> {
        unimplemented!()
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
        unimplemented!()
    }
    async fn lookup(&mut self, id: Ulid) -> Result<Option<RefreshToken>, StorageError> {
        unimplemented!()
    }
    async fn find_by_hash(
        &mut self,
        token_hash: &str,
    ) -> Result<Option<RefreshToken>, StorageError> {
        unimplemented!()
    }
    async fn consume(
        &mut self,
        clock: &dyn Clock,
        token: RefreshToken,
        next: &RefreshToken,
    ) -> Result<RefreshToken, StorageError> {
        unimplemented!()
    }
    async fn revoke_all_for_session(
        &mut self,
        clock: &dyn Clock,
        session: &Session,
    ) -> Result<u64, StorageError> {
        unimplemented!()
    }
}
