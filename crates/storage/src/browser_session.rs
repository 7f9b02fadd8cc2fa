use async_trait::async_trait;
use vestibule_domain::{
    Ulid,
    browser_session::{Authentication, BrowserSession},
    upstream::{UpstreamAuthorizationSession, UpstreamLink, UpstreamProvider},
    user::{Password, User},
};

use crate::{Clock, Rng, StorageError};

#[async_trait]
pub trait BrowserSessionRepository: Send {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        user: &User,
        user_agent: Option<&str>,
    ) -> Result<BrowserSession, StorageError>;
    async fn lookup(&mut self, id: Ulid) -> Result<Option<BrowserSession>, StorageError>;
    async fn finish(
        &mut self,
        clock: &dyn Clock,
        session: BrowserSession,
    ) -> Result<BrowserSession, StorageError>;
    /// The user's active (unfinished) browser sessions, oldest first.
    async fn list_active_for_user(
        &mut self,
        user: &User,
    ) -> Result<Vec<BrowserSession>, StorageError>;
    /// Ends every active browser session of a user; returns how many.
    async fn finish_all_for_user(
        &mut self,
        clock: &dyn Clock,
        user: &User,
    ) -> Result<u64, StorageError>;
    async fn authenticate_with_password(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        session: &BrowserSession,
        password: &Password,
    ) -> Result<Authentication, StorageError>;
    async fn authenticate_with_upstream(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        session: &BrowserSession,
        link: &UpstreamLink,
        upstream_session: Option<&UpstreamAuthorizationSession>,
    ) -> Result<Authentication, StorageError>;
    /// Active browser sessions that authenticated through `link`; with
    /// `sid`, only those whose upstream login carried that provider session
    /// id (OpenID Connect Back-Channel Logout 1.0 §2.4).
    async fn list_active_for_upstream(
        &mut self,
        link: &UpstreamLink,
        sid: Option<&str>,
    ) -> Result<Vec<BrowserSession>, StorageError>;
    /// Active browser sessions whose upstream login through `provider`
    /// carried the provider session id `sid`, whoever the subject (a
    /// logout token with `sid` and no `sub`: OpenID Connect Back-Channel
    /// Logout 1.0 §2.4).
    async fn list_active_for_upstream_sid(
        &mut self,
        provider: &UpstreamProvider,
        sid: &str,
    ) -> Result<Vec<BrowserSession>, StorageError>;
    async fn last_authentication(
        &mut self,
        session: &BrowserSession,
    ) -> Result<Option<Authentication>, StorageError>;
}
