use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vestibule_domain::{Clock, oauth2::Client};
use vestibule_storage::{StorageError, client_assertion::ClientAssertionRepository};

use super::repo_struct;
use crate::conn::{DbResult, execute, expect_cas, ms};

repo_struct!(SqlClientAssertionRepository);

#[async_trait]
impl ClientAssertionRepository for SqlClientAssertionRepository<'_> {
    async fn record_jti(
        &mut self,
        client: &Client,
        jti: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StorageError> {
        // `ON CONFLICT DO NOTHING` rather than a unique violation: the
        // PostgreSQL transaction stays usable, and a parallel insert waits for
        // the first one to commit, then inserts nothing.
        let rows = execute!(
            self.conn,
            sqlx::query(
                "INSERT INTO oauth2_client_assertion_jtis (client_id, jti, expires_at) \
                 VALUES ($1, $2, $3) ON CONFLICT (client_id, jti) DO NOTHING"
            )
            .bind(client.id.to_string())
            .bind(jti)
            .bind(ms(expires_at))
        )
        .db()?;
        expect_cas(rows, "client assertion")
    }

    async fn remove_expired(&mut self, clock: &dyn Clock) -> Result<u64, StorageError> {
        execute!(
            self.conn,
            sqlx::query("DELETE FROM oauth2_client_assertion_jtis WHERE expires_at <= $1")
                .bind(ms(clock.now()))
        )
        .db()
    }
}
