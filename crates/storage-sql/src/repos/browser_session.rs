//! TODO(helper): real implementation.
#![allow(unused_variables, clippy::unused_async)]
use async_trait::async_trait;
use vestibule_domain::{
    Ulid,
    browser_session::{Authentication, BrowserSession},
    upstream::UpstreamLink,
    user::{Password, User},
};

use vestibule_storage::{Clock, Rng, StorageError};

use super::repo_struct;
use vestibule_storage::browser_session::*;
repo_struct!(SqlBrowserSessionRepository);
#[async_trait]
impl BrowserSessionRepository for SqlBrowserSessionRepository<'_> {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        user: &User,
        user_agent: Option<&str>,
    ) -> Result<BrowserSession, StorageError> {
        unimplemented!()
    }
    async fn lookup(&mut self, id: Ulid) -> Result<Option<BrowserSession>, StorageError> {
        unimplemented!()
    }
    async fn finish(
        &mut self,
        clock: &dyn Clock,
        session: BrowserSession,
    ) -> Result<BrowserSession, StorageError> {
        unimplemented!()
    }
    async fn finish_all_for_user(
        &mut self,
        clock: &dyn Clock,
        user: &User,
    ) -> Result<u64, StorageError> {
        unimplemented!()
    }
    async fn authenticate_with_password(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        session: &BrowserSession,
        password: &Password,
    ) -> Result<Authentication, StorageError> {
        unimplemented!()
    }
    async fn authenticate_with_upstream(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        session: &BrowserSession,
        link: &UpstreamLink,
    ) -> Result<Authentication, StorageError> {
        unimplemented!()
    }
    async fn last_authentication(
        &mut self,
        session: &BrowserSession,
    ) -> Result<Option<Authentication>, StorageError> {
        unimplemented!()
    }
}
