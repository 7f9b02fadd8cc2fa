use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use vestibule_domain::{
    Ulid,
    browser_session::BrowserSession,
    device_code::DeviceCodeGrant,
    oauth2::{Client, Session},
};

use crate::{Clock, Rng, StorageError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeviceCodeGrant {
    pub scope: String,
    pub user_code: String,
    pub device_code_hash: String,
    pub expires_in: Duration,
}

#[async_trait]
pub trait DeviceCodeGrantRepository: Send {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        client: &Client,
        grant: NewDeviceCodeGrant,
    ) -> Result<DeviceCodeGrant, StorageError>;
    async fn lookup(&mut self, id: Ulid) -> Result<Option<DeviceCodeGrant>, StorageError>;
    async fn find_by_user_code(
        &mut self,
        user_code: &str,
    ) -> Result<Option<DeviceCodeGrant>, StorageError>;
    async fn find_by_device_code_hash(
        &mut self,
        hash: &str,
    ) -> Result<Option<DeviceCodeGrant>, StorageError>;
    /// Compare-and-set from pending.
    async fn fulfill(
        &mut self,
        clock: &dyn Clock,
        grant: DeviceCodeGrant,
        browser_session: &BrowserSession,
    ) -> Result<DeviceCodeGrant, StorageError>;
    /// Compare-and-set from pending.
    async fn reject(
        &mut self,
        clock: &dyn Clock,
        grant: DeviceCodeGrant,
        browser_session: &BrowserSession,
    ) -> Result<DeviceCodeGrant, StorageError>;
    /// Compare-and-set from fulfilled: the device code is exchanged once.
    async fn exchange(
        &mut self,
        clock: &dyn Clock,
        grant: DeviceCodeGrant,
        session: &Session,
    ) -> Result<DeviceCodeGrant, StorageError>;
    /// Records a poll; returns the previous poll time (for RFC 8628 §3.5 `slow_down`).
    async fn record_poll(
        &mut self,
        clock: &dyn Clock,
        grant: &DeviceCodeGrant,
    ) -> Result<Option<DateTime<Utc>>, StorageError>;
}
