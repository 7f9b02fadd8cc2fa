//! TODO(helper): real implementation.
#![allow(unused_variables, clippy::unused_async)]
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use vestibule_domain::{
    Ulid,
    browser_session::BrowserSession,
    device_code::DeviceCodeGrant,
    oauth2::{Client, Session},
};

use vestibule_storage::{Clock, Rng, StorageError};

use super::repo_struct;
use vestibule_storage::device_code::*;
repo_struct!(SqlDeviceCodeGrantRepository);
#[async_trait]
impl DeviceCodeGrantRepository for SqlDeviceCodeGrantRepository<'_> {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        client: &Client,
        grant: NewDeviceCodeGrant,
    ) -> Result<DeviceCodeGrant, StorageError> {
        unimplemented!()
    }
    async fn lookup(&mut self, id: Ulid) -> Result<Option<DeviceCodeGrant>, StorageError> {
        unimplemented!()
    }
    async fn find_by_user_code(
        &mut self,
        user_code: &str,
    ) -> Result<Option<DeviceCodeGrant>, StorageError> {
        unimplemented!()
    }
    async fn find_by_device_code_hash(
        &mut self,
        hash: &str,
    ) -> Result<Option<DeviceCodeGrant>, StorageError> {
        unimplemented!()
    }
    async fn fulfill(
        &mut self,
        clock: &dyn Clock,
        grant: DeviceCodeGrant,
        browser_session: &BrowserSession,
    ) -> Result<DeviceCodeGrant, StorageError> {
        unimplemented!()
    }
    async fn reject(
        &mut self,
        clock: &dyn Clock,
        grant: DeviceCodeGrant,
        browser_session: &BrowserSession,
    ) -> Result<DeviceCodeGrant, StorageError> {
        unimplemented!()
    }
    async fn exchange(
        &mut self,
        clock: &dyn Clock,
        grant: DeviceCodeGrant,
        session: &Session,
    ) -> Result<DeviceCodeGrant, StorageError> {
        unimplemented!()
    }
    async fn record_poll(
        &mut self,
        clock: &dyn Clock,
        grant: &DeviceCodeGrant,
    ) -> Result<Option<DateTime<Utc>>, StorageError> {
        unimplemented!()
    }
}
