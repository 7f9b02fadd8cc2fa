use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vestibule_domain::{Clock, oauth2::Client};
use vestibule_storage::{StorageError, client_assertion::ClientAssertionRepository};

use super::repo_struct;
use crate::conn::{JtiTable, record_jti, remove_expired_jtis};

repo_struct!(SqlClientAssertionRepository);

const JTIS: JtiTable = JtiTable {
    table: "oauth2_client_assertion_jtis",
    owner: "client_id",
    what: "client assertion",
};

#[async_trait]
impl ClientAssertionRepository for SqlClientAssertionRepository<'_> {
    async fn record_jti(
        &mut self,
        client: &Client,
        jti: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StorageError> {
        record_jti(self.conn, &JTIS, client.id.to_string(), jti, expires_at).await
    }

    async fn remove_expired(&mut self, clock: &dyn Clock) -> Result<u64, StorageError> {
        remove_expired_jtis(self.conn, &JTIS, clock.now()).await
    }
}
