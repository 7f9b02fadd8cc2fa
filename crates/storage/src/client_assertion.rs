//! Single use of client assertions (RFC 7523 §3 item 7, OIDC Core §9: the
//! `jti` of a `client_secret_jwt` / `private_key_jwt` assertion may be used
//! only once).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vestibule_domain::oauth2::Client;

use crate::{Clock, StorageError};

#[async_trait]
pub trait ClientAssertionRepository: Send {
    /// Records that `client` used `jti`, remembered until `expires_at` (the
    /// assertion's `exp`). Compare-and-set: a `jti` already recorded for the
    /// client (a replay, or the loser of two parallel uses) is
    /// [`StorageError::ConcurrentUpdate`], and the transaction stays usable.
    async fn record_jti(
        &mut self,
        client: &Client,
        jti: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StorageError>;

    /// Forgets the `jti`s whose assertion has expired (they can no longer be
    /// replayed: the `exp` check refuses them). Returns how many.
    async fn remove_expired(&mut self, clock: &dyn Clock) -> Result<u64, StorageError>;
}
