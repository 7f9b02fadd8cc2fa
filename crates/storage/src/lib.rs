//! Repository traits: the only way the server touches persistent state.
//!
//! # Conventions (how to add a repository)
//!
//! 1. One trait per aggregate in its own module, `#[async_trait]`, methods take
//!    `&mut self`. Lookups return `Result<Option<T>, StorageError>`.
//! 2. Writes that create rows take the rng and the [`Clock`] as parameters; ids
//!    come from [`vestibule_domain::new_id`].
//! 3. Single-use things (codes, refresh tokens, device codes, login tokens) are
//!    consumed with a compare-and-set; losing the race is
//!    [`StorageError::ConcurrentUpdate`], never a silent success.
//! 4. Bearer material is only ever passed in as a hash
//!    ([`vestibule_domain::tokens::token_hash`]).
//! 5. Add an accessor to [`RepositoryAccess`], implement it in `storage-sql`,
//!    add migrations for *both* engines, and add a story to [`conformance`].
//!
//! A [`Repository`] is one database transaction: [`Repository::save`] commits,
//! dropping it rolls back. After any error the transaction must be dropped:
//! PostgreSQL refuses further statements in a transaction that saw an error.

pub mod browser_session;
pub mod client_assertion;
pub mod compat;
pub mod conformance;
pub mod device_code;
pub mod job;
pub mod oauth2;
pub mod upstream;
pub mod user;

mod error;

use async_trait::async_trait;
pub use error::StorageError;
pub use vestibule_domain::Clock;

/// The rng every write takes.
pub type Rng<'a> = &'a mut (dyn rand::RngCore + Send);

/// Access to every repository within one transaction.
pub trait RepositoryAccess: Send {
    fn users<'c>(&'c mut self) -> Box<dyn user::UserRepository + 'c>;
    fn user_emails<'c>(&'c mut self) -> Box<dyn user::UserEmailRepository + 'c>;
    fn user_passwords<'c>(&'c mut self) -> Box<dyn user::UserPasswordRepository + 'c>;
    fn user_attributes<'c>(&'c mut self) -> Box<dyn user::UserAttributeRepository + 'c>;
    fn browser_sessions<'c>(
        &'c mut self,
    ) -> Box<dyn browser_session::BrowserSessionRepository + 'c>;
    fn oauth2_clients<'c>(&'c mut self) -> Box<dyn oauth2::ClientRepository + 'c>;
    fn oauth2_grants<'c>(&'c mut self) -> Box<dyn oauth2::AuthorizationGrantRepository + 'c>;
    fn oauth2_sessions<'c>(&'c mut self) -> Box<dyn oauth2::SessionRepository + 'c>;
    fn oauth2_access_tokens<'c>(&'c mut self) -> Box<dyn oauth2::AccessTokenRepository + 'c>;
    fn oauth2_refresh_tokens<'c>(&'c mut self) -> Box<dyn oauth2::RefreshTokenRepository + 'c>;
    fn compat_sessions<'c>(&'c mut self) -> Box<dyn compat::CompatSessionRepository + 'c>;
    fn compat_access_tokens<'c>(&'c mut self) -> Box<dyn compat::CompatAccessTokenRepository + 'c>;
    fn compat_refresh_tokens<'c>(
        &'c mut self,
    ) -> Box<dyn compat::CompatRefreshTokenRepository + 'c>;
    fn compat_sso_logins<'c>(&'c mut self) -> Box<dyn compat::CompatSsoLoginRepository + 'c>;
    fn device_code_grants<'c>(&'c mut self)
    -> Box<dyn device_code::DeviceCodeGrantRepository + 'c>;
    fn upstream_providers<'c>(&'c mut self) -> Box<dyn upstream::UpstreamProviderRepository + 'c>;
    fn upstream_links<'c>(&'c mut self) -> Box<dyn upstream::UpstreamLinkRepository + 'c>;
    fn upstream_sessions<'c>(&'c mut self) -> Box<dyn upstream::UpstreamSessionRepository + 'c>;
    fn jobs<'c>(&'c mut self) -> Box<dyn job::JobRepository + 'c>;
    fn oauth2_client_assertions<'c>(
        &'c mut self,
    ) -> Box<dyn client_assertion::ClientAssertionRepository + 'c>;
}

/// One transaction. Commit with [`Repository::save`]; drop to roll back.
#[async_trait]
pub trait Repository: RepositoryAccess {
    async fn save(self: Box<Self>) -> Result<(), StorageError>;
    async fn cancel(self: Box<Self>) -> Result<(), StorageError>;
}

pub type BoxRepository = Box<dyn Repository>;

/// Opens transactions.
#[async_trait]
pub trait RepositoryFactory: Send + Sync {
    /// A transaction that may write (on SQLite it takes the write lock at once,
    /// `BEGIN IMMEDIATE`, so concurrent writers queue instead of failing).
    async fn write(&self) -> Result<BoxRepository, StorageError>;
    /// A transaction for reads only.
    async fn read(&self) -> Result<BoxRepository, StorageError>;
    /// Is the database reachable? (readiness)
    async fn ping(&self) -> Result<(), StorageError>;
}
