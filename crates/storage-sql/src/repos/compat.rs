//! TODO(helper): real implementation.
#![allow(unused_variables, clippy::unused_async)]
use async_trait::async_trait;
use chrono::Duration;
use url::Url;
use vestibule_domain::{
    Ulid,
    browser_session::BrowserSession,
    compat::{CompatAccessToken, CompatRefreshToken, CompatSession, CompatSsoLogin},
    user::User,
};

use vestibule_storage::{Clock, Rng, StorageError};

use super::repo_struct;
use vestibule_storage::compat::*;
repo_struct!(
    SqlCompatSessionRepository,
    SqlCompatAccessTokenRepository,
    SqlCompatRefreshTokenRepository,
    SqlCompatSsoLoginRepository
);
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
        unimplemented!()
    }
    async fn lookup(&mut self, id: Ulid) -> Result<Option<CompatSession>, StorageError> {
        unimplemented!()
    }
    async fn find_active_by_device(
        &mut self,
        user: &User,
        device_id: &str,
    ) -> Result<Option<CompatSession>, StorageError> {
        unimplemented!()
    }
    async fn finish(
        &mut self,
        clock: &dyn Clock,
        session: CompatSession,
    ) -> Result<CompatSession, StorageError> {
        unimplemented!()
    }
    async fn finish_all_for_user(
        &mut self,
        clock: &dyn Clock,
        user: &User,
    ) -> Result<u64, StorageError> {
        unimplemented!()
    }
}
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
        unimplemented!()
    }
    async fn lookup(&mut self, id: Ulid) -> Result<Option<CompatAccessToken>, StorageError> {
        unimplemented!()
    }
    async fn find_by_hash(
        &mut self,
        token_hash: &str,
    ) -> Result<Option<CompatAccessToken>, StorageError> {
        unimplemented!()
    }
    async fn expire(
        &mut self,
        clock: &dyn Clock,
        token: CompatAccessToken,
    ) -> Result<CompatAccessToken, StorageError> {
        unimplemented!()
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
        unimplemented!()
    }
    async fn find_by_hash(
        &mut self,
        token_hash: &str,
    ) -> Result<Option<CompatRefreshToken>, StorageError> {
        unimplemented!()
    }
    async fn consume(
        &mut self,
        clock: &dyn Clock,
        token: CompatRefreshToken,
    ) -> Result<CompatRefreshToken, StorageError> {
        unimplemented!()
    }
}
#[async_trait]
impl CompatSsoLoginRepository for SqlCompatSsoLoginRepository<'_> {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        login_token_hash: &str,
        redirect_uri: &Url,
    ) -> Result<CompatSsoLogin, StorageError> {
        unimplemented!()
    }
    async fn lookup(&mut self, id: Ulid) -> Result<Option<CompatSsoLogin>, StorageError> {
        unimplemented!()
    }
    async fn find_by_token_hash(
        &mut self,
        login_token_hash: &str,
    ) -> Result<Option<CompatSsoLogin>, StorageError> {
        unimplemented!()
    }
    async fn fulfill(
        &mut self,
        clock: &dyn Clock,
        login: CompatSsoLogin,
        browser_session: &BrowserSession,
    ) -> Result<CompatSsoLogin, StorageError> {
        unimplemented!()
    }
    async fn exchange(
        &mut self,
        clock: &dyn Clock,
        login: CompatSsoLogin,
        compat_session: &CompatSession,
    ) -> Result<CompatSsoLogin, StorageError> {
        unimplemented!()
    }
}
