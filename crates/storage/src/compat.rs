use async_trait::async_trait;
use chrono::Duration;
use url::Url;
use vestibule_domain::{
    Ulid,
    browser_session::BrowserSession,
    compat::{CompatAccessToken, CompatRefreshToken, CompatSession, CompatSsoLogin},
    user::User,
};

use crate::{Clock, Rng, StorageError};

#[async_trait]
pub trait CompatSessionRepository: Send {
    #[allow(clippy::too_many_arguments)]
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        user: &User,
        device_id: &str,
        human_name: Option<&str>,
        browser_session: Option<&BrowserSession>,
        is_synapse_admin: bool,
    ) -> Result<CompatSession, StorageError>;
    async fn lookup(&mut self, id: Ulid) -> Result<Option<CompatSession>, StorageError>;
    /// The active session of a user with that device id, if any.
    async fn find_active_by_device(
        &mut self,
        user: &User,
        device_id: &str,
    ) -> Result<Option<CompatSession>, StorageError>;
    /// The user's active (unfinished) compat sessions, oldest first.
    async fn list_active_for_user(
        &mut self,
        user: &User,
    ) -> Result<Vec<CompatSession>, StorageError>;
    async fn finish(
        &mut self,
        clock: &dyn Clock,
        session: CompatSession,
    ) -> Result<CompatSession, StorageError>;
    async fn finish_all_for_user(
        &mut self,
        clock: &dyn Clock,
        user: &User,
    ) -> Result<u64, StorageError>;
}

#[async_trait]
pub trait CompatAccessTokenRepository: Send {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        session: &CompatSession,
        token_hash: &str,
        expires_after: Option<Duration>,
    ) -> Result<CompatAccessToken, StorageError>;
    async fn lookup(&mut self, id: Ulid) -> Result<Option<CompatAccessToken>, StorageError>;
    async fn find_by_hash(
        &mut self,
        token_hash: &str,
    ) -> Result<Option<CompatAccessToken>, StorageError>;
    /// Makes the token expire now.
    async fn expire(
        &mut self,
        clock: &dyn Clock,
        token: CompatAccessToken,
    ) -> Result<CompatAccessToken, StorageError>;
}

#[async_trait]
pub trait CompatRefreshTokenRepository: Send {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        session: &CompatSession,
        access_token: &CompatAccessToken,
        token_hash: &str,
    ) -> Result<CompatRefreshToken, StorageError>;
    async fn find_by_hash(
        &mut self,
        token_hash: &str,
    ) -> Result<Option<CompatRefreshToken>, StorageError>;
    /// Compare-and-set: a compat refresh token is used once.
    async fn consume(
        &mut self,
        clock: &dyn Clock,
        token: CompatRefreshToken,
    ) -> Result<CompatRefreshToken, StorageError>;
}

#[async_trait]
pub trait CompatSsoLoginRepository: Send {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        login_token_hash: &str,
        redirect_uri: &Url,
    ) -> Result<CompatSsoLogin, StorageError>;
    async fn lookup(&mut self, id: Ulid) -> Result<Option<CompatSsoLogin>, StorageError>;
    async fn find_by_token_hash(
        &mut self,
        login_token_hash: &str,
    ) -> Result<Option<CompatSsoLogin>, StorageError>;
    async fn fulfill(
        &mut self,
        clock: &dyn Clock,
        login: CompatSsoLogin,
        browser_session: &BrowserSession,
    ) -> Result<CompatSsoLogin, StorageError>;
    /// Compare-and-set: a login token is exchanged once.
    async fn exchange(
        &mut self,
        clock: &dyn Clock,
        login: CompatSsoLogin,
        compat_session: &CompatSession,
    ) -> Result<CompatSsoLogin, StorageError>;
}
