use async_trait::async_trait;
use vestibule_domain::{
    Ulid,
    upstream::{UpstreamAuthorizationSession, UpstreamLink, UpstreamProvider},
    user::User,
};

use crate::{Clock, Rng, StorageError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamProviderParams {
    pub issuer: Option<String>,
    pub human_name: Option<String>,
    pub brand_name: Option<String>,
}

#[async_trait]
pub trait UpstreamProviderRepository: Send {
    /// Creates or updates a provider from the config (re-enabling it).
    async fn upsert(
        &mut self,
        clock: &dyn Clock,
        id: Ulid,
        params: UpstreamProviderParams,
    ) -> Result<UpstreamProvider, StorageError>;
    async fn lookup(&mut self, id: Ulid) -> Result<Option<UpstreamProvider>, StorageError>;
    /// Marks providers no longer in the config as disabled; returns how many.
    async fn disable_all_except(
        &mut self,
        clock: &dyn Clock,
        keep: &[Ulid],
    ) -> Result<u64, StorageError>;
    async fn all_enabled(&mut self) -> Result<Vec<UpstreamProvider>, StorageError>;
    /// How many links of the provider belong to a user (the accounts that
    /// sign in through it). Links of abandoned logins are not counted.
    async fn count_linked_accounts(&mut self, id: Ulid) -> Result<u64, StorageError>;
    /// Sets the provider's stored issuer, and nothing else: the operator's
    /// confirmation that the IdP moved and its subjects stay the same
    /// people (`manage set-upstream-issuer`). `None` when there is no
    /// such provider.
    async fn set_issuer(
        &mut self,
        id: Ulid,
        issuer: Option<&str>,
    ) -> Result<Option<UpstreamProvider>, StorageError>;
    /// Records that `provider` sent a logout token with `jti`, remembered
    /// until `expires_at` (the token's `exp`): OpenID Connect Back-Channel
    /// Logout 1.0 §2.6 item 10 (refuse a `jti` already seen). Compare-and-
    /// set: a `jti` already recorded for the provider (a replay, or the
    /// loser of two parallel deliveries) is [`StorageError::ConcurrentUpdate`],
    /// and the transaction stays usable.
    async fn record_logout_jti(
        &mut self,
        provider: &UpstreamProvider,
        jti: &str,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StorageError>;
    /// Forgets the logout `jti`s whose token has expired (the `exp` check
    /// refuses them anyway). Returns how many.
    async fn remove_expired_logout_jtis(&mut self, clock: &dyn Clock) -> Result<u64, StorageError>;
}

#[async_trait]
pub trait UpstreamLinkRepository: Send {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        provider: &UpstreamProvider,
        subject: &str,
        human_account_name: Option<&str>,
    ) -> Result<UpstreamLink, StorageError>;
    async fn lookup(&mut self, id: Ulid) -> Result<Option<UpstreamLink>, StorageError>;
    async fn find_by_subject(
        &mut self,
        provider: &UpstreamProvider,
        subject: &str,
    ) -> Result<Option<UpstreamLink>, StorageError>;
    /// Links `link` to `user`. Compare-and-set on the stored link: when it
    /// already belongs to another user (whatever `link.user_id` says) this
    /// is [`StorageError::ConcurrentUpdate`]; to the same user, a no-op.
    async fn associate_to_user(
        &mut self,
        link: UpstreamLink,
        user: &User,
    ) -> Result<UpstreamLink, StorageError>;
    async fn all_for_user(&mut self, user: &User) -> Result<Vec<UpstreamLink>, StorageError>;
    /// Updates the display name of the upstream account (refreshed on each
    /// login from the claims).
    async fn set_human_account_name(
        &mut self,
        link: UpstreamLink,
        name: Option<&str>,
    ) -> Result<UpstreamLink, StorageError>;
    /// Detaches a link from its user (the link stays, with no user), as
    /// `on_conflict: replace` does to the user's previous link of a provider.
    async fn dissociate(&mut self, link: UpstreamLink) -> Result<UpstreamLink, StorageError>;
    /// Removes a link that has no user yet (an abandoned login); a linked
    /// one is kept. Returns whether it was removed.
    async fn remove_unlinked(&mut self, link: &UpstreamLink) -> Result<bool, StorageError>;
}

#[async_trait]
pub trait UpstreamSessionRepository: Send {
    #[allow(
        clippy::too_many_arguments,
        reason = "one column each; a params struct would only rename them"
    )]
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        provider: &UpstreamProvider,
        state: &str,
        code_verifier: Option<&str>,
        nonce: Option<&str>,
        post_auth_action: Option<&str>,
    ) -> Result<UpstreamAuthorizationSession, StorageError>;
    async fn lookup(
        &mut self,
        id: Ulid,
    ) -> Result<Option<UpstreamAuthorizationSession>, StorageError>;
    async fn complete(
        &mut self,
        clock: &dyn Clock,
        session: UpstreamAuthorizationSession,
        link: &UpstreamLink,
        claims: serde_json::Value,
        sid: Option<&str>,
    ) -> Result<UpstreamAuthorizationSession, StorageError>;
    /// Compare-and-set: a completed session is consumed once.
    async fn consume(
        &mut self,
        clock: &dyn Clock,
        session: UpstreamAuthorizationSession,
    ) -> Result<UpstreamAuthorizationSession, StorageError>;
    /// Housekeeping: deletes the sessions created before
    /// `unconsumed_before` that were never consumed (abandoned logins,
    /// past their lifetime), and drops the `claims` of those consumed
    /// before `consumed_before` (kept only for the link step). Returns
    /// (deleted, claims cleared).
    async fn purge(
        &mut self,
        unconsumed_before: chrono::DateTime<chrono::Utc>,
        consumed_before: chrono::DateTime<chrono::Utc>,
    ) -> Result<(u64, u64), StorageError>;
}
