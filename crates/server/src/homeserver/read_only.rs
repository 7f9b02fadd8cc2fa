//! `matrix.kind: synapse_read_only`: reads go to the homeserver, writes are
//! logged and skipped (for trying Vestibule next to an existing setup).

use std::{collections::BTreeSet, sync::Arc};

use async_trait::async_trait;

use super::{
    DeviceOutcome, Homeserver, HomeserverError, HomeserverUser, ProvisionOutcome, ProvisionRequest,
};

/// Wraps a homeserver; performs only its reads.
#[derive(Clone)]
pub struct ReadOnlyHomeserver {
    inner: Arc<dyn Homeserver>,
}

impl std::fmt::Debug for ReadOnlyHomeserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyHomeserver")
            .field("server_name", &self.inner.server_name())
            .finish_non_exhaustive()
    }
}

impl ReadOnlyHomeserver {
    pub fn new(inner: Arc<dyn Homeserver>) -> Self {
        Self { inner }
    }
}

fn skipped(what: &str, localpart: &str) {
    tracing::info!(
        localpart,
        "homeserver is read-only (matrix.kind: synapse_read_only): skipping {what}"
    );
}

#[async_trait]
impl Homeserver for ReadOnlyHomeserver {
    fn server_name(&self) -> &str {
        self.inner.server_name()
    }

    async fn query_user(&self, localpart: &str) -> Result<HomeserverUser, HomeserverError> {
        self.inner.query_user(localpart).await
    }

    async fn is_localpart_available(&self, localpart: &str) -> Result<bool, HomeserverError> {
        self.inner.is_localpart_available(localpart).await
    }

    async fn provision_user(
        &self,
        request: &ProvisionRequest,
    ) -> Result<ProvisionOutcome, HomeserverError> {
        skipped("provision_user", &request.localpart);
        Ok(ProvisionOutcome::Updated)
    }

    async fn delete_user(&self, localpart: &str, _erase: bool) -> Result<(), HomeserverError> {
        skipped("delete_user", localpart);
        Ok(())
    }

    async fn reactivate_user(&self, localpart: &str) -> Result<(), HomeserverError> {
        skipped("reactivate_user", localpart);
        Ok(())
    }

    async fn set_displayname(
        &self,
        localpart: &str,
        _displayname: &str,
    ) -> Result<(), HomeserverError> {
        skipped("set_displayname", localpart);
        Ok(())
    }

    async fn unset_displayname(&self, localpart: &str) -> Result<(), HomeserverError> {
        skipped("unset_displayname", localpart);
        Ok(())
    }

    async fn upsert_device(
        &self,
        localpart: &str,
        _device_id: &str,
        _display_name: Option<&str>,
    ) -> Result<DeviceOutcome, HomeserverError> {
        skipped("upsert_device", localpart);
        Ok(DeviceOutcome::Existed)
    }

    async fn update_device_display_name(
        &self,
        localpart: &str,
        _device_id: &str,
        _display_name: &str,
    ) -> Result<(), HomeserverError> {
        skipped("update_device_display_name", localpart);
        Ok(())
    }

    async fn delete_device(
        &self,
        localpart: &str,
        _device_id: &str,
    ) -> Result<(), HomeserverError> {
        skipped("delete_device", localpart);
        Ok(())
    }

    async fn sync_devices(
        &self,
        localpart: &str,
        _devices: &BTreeSet<String>,
    ) -> Result<(), HomeserverError> {
        skipped("sync_devices", localpart);
        Ok(())
    }

    async fn allow_cross_signing_reset(&self, localpart: &str) -> Result<(), HomeserverError> {
        skipped("allow_cross_signing_reset", localpart);
        Ok(())
    }
}
