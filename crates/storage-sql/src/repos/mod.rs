//! `SqlRepository`: one transaction, every repository.

mod browser_session;
mod client_assertion;
mod compat;
mod device_code;
mod job;
mod oauth2;
mod upstream;
mod user;

use async_trait::async_trait;
use vestibule_storage::{
    Repository, RepositoryAccess, StorageError,
    browser_session::BrowserSessionRepository,
    client_assertion::ClientAssertionRepository,
    compat::{
        CompatAccessTokenRepository, CompatRefreshTokenRepository, CompatSessionRepository,
        CompatSsoLoginRepository,
    },
    device_code::DeviceCodeGrantRepository,
    job::JobRepository,
    oauth2::{
        AccessTokenRepository, AuthorizationGrantRepository, ClientRepository,
        RefreshTokenRepository, SessionRepository,
    },
    upstream::{UpstreamLinkRepository, UpstreamProviderRepository, UpstreamSessionRepository},
    user::{UserAttributeRepository, UserEmailRepository, UserPasswordRepository, UserRepository},
};

use crate::conn::{Conn, DbResult};

/// One database transaction on either engine.
pub struct SqlRepository {
    // Field order matters: the transaction is dropped (rolled back) before
    // the SQLite writer permit is released.
    conn: Conn,
    _writer: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl SqlRepository {
    pub(crate) fn new(conn: Conn) -> Self {
        Self {
            conn,
            _writer: None,
        }
    }

    pub(crate) fn with_writer_permit(
        conn: Conn,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Self {
        Self {
            conn,
            _writer: Some(permit),
        }
    }
}

macro_rules! accessors {
    ($($method:ident => $trait:ident : $ty:ty),* $(,)?) => {
        impl RepositoryAccess for SqlRepository {
            $(
                fn $method<'c>(&'c mut self) -> Box<dyn $trait + 'c> {
                    Box::new(<$ty>::new(&mut self.conn))
                }
            )*
        }
    };
}

accessors! {
    users => UserRepository: user::SqlUserRepository<'c>,
    user_emails => UserEmailRepository: user::SqlUserEmailRepository<'c>,
    user_passwords => UserPasswordRepository: user::SqlUserPasswordRepository<'c>,
    user_attributes => UserAttributeRepository: user::SqlUserAttributeRepository<'c>,
    browser_sessions => BrowserSessionRepository: browser_session::SqlBrowserSessionRepository<'c>,
    oauth2_clients => ClientRepository: oauth2::SqlClientRepository<'c>,
    oauth2_grants => AuthorizationGrantRepository: oauth2::SqlAuthorizationGrantRepository<'c>,
    oauth2_sessions => SessionRepository: oauth2::SqlSessionRepository<'c>,
    oauth2_access_tokens => AccessTokenRepository: oauth2::SqlAccessTokenRepository<'c>,
    oauth2_refresh_tokens => RefreshTokenRepository: oauth2::SqlRefreshTokenRepository<'c>,
    compat_sessions => CompatSessionRepository: compat::SqlCompatSessionRepository<'c>,
    compat_access_tokens => CompatAccessTokenRepository: compat::SqlCompatAccessTokenRepository<'c>,
    compat_refresh_tokens => CompatRefreshTokenRepository: compat::SqlCompatRefreshTokenRepository<'c>,
    compat_sso_logins => CompatSsoLoginRepository: compat::SqlCompatSsoLoginRepository<'c>,
    device_code_grants => DeviceCodeGrantRepository: device_code::SqlDeviceCodeGrantRepository<'c>,
    upstream_providers => UpstreamProviderRepository: upstream::SqlUpstreamProviderRepository<'c>,
    upstream_links => UpstreamLinkRepository: upstream::SqlUpstreamLinkRepository<'c>,
    upstream_sessions => UpstreamSessionRepository: upstream::SqlUpstreamSessionRepository<'c>,
    jobs => JobRepository: job::SqlJobRepository<'c>,
    oauth2_client_assertions => ClientAssertionRepository: client_assertion::SqlClientAssertionRepository<'c>,
}

#[async_trait]
impl Repository for SqlRepository {
    async fn save(self: Box<Self>) -> Result<(), StorageError> {
        // The writer permit (if any) is released when `self` is dropped,
        // after the commit.
        match self.conn {
            Conn::Sqlite(t) => t.commit().await.db(),
            Conn::Postgres(t) => t.commit().await.db(),
        }
    }

    async fn cancel(self: Box<Self>) -> Result<(), StorageError> {
        match self.conn {
            Conn::Sqlite(t) => t.rollback().await.db(),
            Conn::Postgres(t) => t.rollback().await.db(),
        }
    }
}

/// Declares a repository struct borrowing the transaction.
macro_rules! repo_struct {
    ($($name:ident),* $(,)?) => {
        $(
            pub(crate) struct $name<'c> {
                conn: &'c mut $crate::conn::Conn,
            }

            impl<'c> $name<'c> {
                pub(crate) fn new(conn: &'c mut $crate::conn::Conn) -> Self {
                    Self { conn }
                }
            }
        )*
    };
}
pub(crate) use repo_struct;
