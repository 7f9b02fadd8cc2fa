//! TODO(helper): real implementation.
#![allow(unused_variables, clippy::unused_async)]
use async_trait::async_trait;
use vestibule_domain::{
    Ulid,
    upstream::{UpstreamAuthorizationSession, UpstreamLink, UpstreamProvider},
    user::User,
};

use vestibule_storage::{Clock, Rng, StorageError};

use super::repo_struct;
use vestibule_storage::upstream::*;
repo_struct!(
    SqlUpstreamProviderRepository,
    SqlUpstreamLinkRepository,
    SqlUpstreamSessionRepository
);
#[async_trait]
impl UpstreamProviderRepository for SqlUpstreamProviderRepository<'_> {
    async fn upsert(
        &mut self,
        clock: &dyn Clock,
        id: Ulid,
        params: UpstreamProviderParams,
    ) -> Result<UpstreamProvider, StorageError> {
        unimplemented!()
    }
    async fn lookup(&mut self, id: Ulid) -> Result<Option<UpstreamProvider>, StorageError> {
        unimplemented!()
    }
    async fn disable_all_except(
        &mut self,
        clock: &dyn Clock,
        keep: &[Ulid],
    ) -> Result<u64, StorageError> {
        unimplemented!()
    }
    async fn all_enabled(&mut self) -> Result<Vec<UpstreamProvider>, StorageError> {
        unimplemented!()
    }
}
#[async_trait]
impl UpstreamLinkRepository for SqlUpstreamLinkRepository<'_> {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        provider: &UpstreamProvider,
        subject: &str,
        human_account_name: Option<&str>,
    ) -> Result<UpstreamLink, StorageError> {
        unimplemented!()
    }
    async fn lookup(&mut self, id: Ulid) -> Result<Option<UpstreamLink>, StorageError> {
        unimplemented!()
    }
    async fn find_by_subject(
        &mut self,
        provider: &UpstreamProvider,
        subject: &str,
    ) -> Result<Option<UpstreamLink>, StorageError> {
        unimplemented!()
    }
    async fn associate_to_user(
        &mut self,
        link: UpstreamLink,
        user: &User,
    ) -> Result<UpstreamLink, StorageError> {
        unimplemented!()
    }
    async fn all_for_user(&mut self, user: &User) -> Result<Vec<UpstreamLink>, StorageError> {
        unimplemented!()
    }
}
#[async_trait]
impl UpstreamSessionRepository for SqlUpstreamSessionRepository<'_> {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        provider: &UpstreamProvider,
        state: &str,
        code_verifier: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<UpstreamAuthorizationSession, StorageError> {
        unimplemented!()
    }
    async fn lookup(
        &mut self,
        id: Ulid,
    ) -> Result<Option<UpstreamAuthorizationSession>, StorageError> {
        unimplemented!()
    }
    async fn complete(
        &mut self,
        clock: &dyn Clock,
        session: UpstreamAuthorizationSession,
        link: &UpstreamLink,
        claims: serde_json::Value,
    ) -> Result<UpstreamAuthorizationSession, StorageError> {
        unimplemented!()
    }
    async fn consume(
        &mut self,
        clock: &dyn Clock,
        session: UpstreamAuthorizationSession,
    ) -> Result<UpstreamAuthorizationSession, StorageError> {
        unimplemented!()
    }
}
