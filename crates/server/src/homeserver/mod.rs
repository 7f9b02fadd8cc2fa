//! The homeserver: what Vestibule asks Synapse to do through its
//! `/_synapse/mas/*` API (`synapse/rest/synapse/mas/` in Synapse), behind a
//! trait so flows and the job worker can run against [`MockHomeserver`] in
//! fast tests and [`SynapseHomeserver`] in production.
//!
//! One method per Synapse endpoint. Shapes (Synapse 1.163):
//!
//! | method | Synapse endpoint | success |
//! |---|---|---|
//! | [`Homeserver::query_user`] | `GET query_user?localpart=` | 200 `{user_id, display_name, avatar_url, is_suspended, is_deactivated}`, 404 if absent |
//! | [`Homeserver::is_localpart_available`] | `GET is_localpart_available?localpart=` | 200, or 400 `M_USER_IN_USE` / `M_EXCLUSIVE` / `M_INVALID_USERNAME` |
//! | [`Homeserver::provision_user`] | `POST provision_user` | 201 created, 200 updated |
//! | [`Homeserver::delete_user`] | `POST delete_user {localpart, erase}` | 200 (deactivates) |
//! | [`Homeserver::reactivate_user`] | `POST reactivate_user {localpart}` | 200 |
//! | [`Homeserver::set_displayname`] | `POST set_displayname {localpart, displayname}` | 200 |
//! | [`Homeserver::unset_displayname`] | `POST unset_displayname {localpart}` | 200 |
//! | [`Homeserver::upsert_device`] | `POST upsert_device {localpart, device_id, display_name?}` | 201 new, 200 existing |
//! | [`Homeserver::update_device_display_name`] | `POST update_device_display_name {localpart, device_id, display_name}` | 200 |
//! | [`Homeserver::delete_device`] | `POST delete_device {localpart, device_id}` | 204 |
//! | [`Homeserver::sync_devices`] | `POST sync_devices {localpart, devices}` | 200 (adds missing, deletes extra) |
//! | [`Homeserver::allow_cross_signing_reset`] | `POST allow_cross_signing_reset {localpart}` | 200 |
//!
//! Every endpoint but the two reads answers 404 `M_NOT_FOUND` for an unknown
//! user; a wrong shared secret is 403.

mod mock;
mod read_only;
mod synapse;

use std::{collections::BTreeSet, sync::Arc};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use vestibule_config::{Config, HomeserverKind};

pub use mock::{MockDevice, MockHomeserver, MockUser};
pub use read_only::ReadOnlyHomeserver;
pub use synapse::{CONNECT_TIMEOUT, REQUEST_TIMEOUT, SynapseHomeserver};

/// What can go wrong talking to the homeserver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HomeserverError {
    /// Connection refused, timeout, 5xx or 429: worth retrying later.
    #[error("the homeserver is unavailable: {0}")]
    Unavailable(String),
    /// The homeserver refused the shared secret (403/401).
    #[error("the homeserver refused our shared secret (check `matrix.secret`)")]
    Forbidden,
    /// Any other 400.
    #[error("the homeserver refused the request: {errcode}: {error}")]
    BadRequest { errcode: String, error: String },
    /// 400 `M_USER_IN_USE`.
    #[error("the localpart is already taken on the homeserver")]
    UserInUse,
    /// 400 `M_INVALID_USERNAME`.
    #[error("the homeserver rejects the localpart: {0}")]
    InvalidUsername(String),
    /// 404 `M_NOT_FOUND`: no such user on the homeserver.
    #[error("no such user on the homeserver")]
    NotFound,
    /// Anything else (unexpected status, undecodable body, misconfiguration).
    #[error("unexpected homeserver response: {0}")]
    Other(String),
}

impl HomeserverError {
    /// Whether trying again later may succeed without anyone changing
    /// anything (the homeserver being down or overloaded).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// Whether the homeserver understood the request and refused it for
    /// what it asks (400, or 404 `M_NOT_FOUND` for the user): sending the
    /// same request again will be refused again, so a durable job should
    /// give up at once rather than back off for hours.
    ///
    /// Not permanent: [`Self::Unavailable`] (connection refused, timeout,
    /// 5xx, 429), [`Self::Forbidden`] (a wrong `matrix.secret`: every call
    /// fails until the operator fixes the configuration, after which the
    /// queued jobs must still run) and [`Self::Other`] (an unexpected answer,
    /// e.g. a proxy's error page or a missing endpoint: not the homeserver
    /// judging the request).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::BadRequest { .. } | Self::UserInUse | Self::InvalidUsername(_) | Self::NotFound
        )
    }
}

/// A user as the homeserver knows it (`query_user`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HomeserverUser {
    /// The full Matrix id, `@localpart:server_name`.
    pub user_id: String,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    pub is_suspended: bool,
    pub is_deactivated: bool,
}

/// What to do with one profile field when provisioning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FieldAction<T> {
    /// Leave it as it is (on creation: no value).
    #[default]
    Keep,
    /// Set it to this value.
    Set(T),
    /// Remove it.
    Unset,
}

/// `provision_user`: create the user if absent, else update the fields that
/// are not [`FieldAction::Keep`]. Synapse refuses a body that has both
/// `set_x` and `unset_x`; [`FieldAction`] makes that unrepresentable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProvisionRequest {
    pub localpart: String,
    pub displayname: FieldAction<String>,
    pub avatar_url: FieldAction<String>,
    /// The complete list of the user's (verified) emails.
    pub emails: FieldAction<Vec<String>>,
    /// `Some(true)` locks, `Some(false)` unlocks, `None` leaves it.
    pub locked: Option<bool>,
}

impl ProvisionRequest {
    pub fn new(localpart: impl Into<String>) -> Self {
        Self {
            localpart: localpart.into(),
            ..Self::default()
        }
    }

    #[must_use]
    pub fn set_displayname(mut self, displayname: impl Into<String>) -> Self {
        self.displayname = FieldAction::Set(displayname.into());
        self
    }

    #[must_use]
    pub fn unset_displayname(mut self) -> Self {
        self.displayname = FieldAction::Unset;
        self
    }

    #[must_use]
    pub fn set_avatar_url(mut self, avatar_url: impl Into<String>) -> Self {
        self.avatar_url = FieldAction::Set(avatar_url.into());
        self
    }

    #[must_use]
    pub fn unset_avatar_url(mut self) -> Self {
        self.avatar_url = FieldAction::Unset;
        self
    }

    #[must_use]
    pub fn set_emails(mut self, emails: Vec<String>) -> Self {
        self.emails = FieldAction::Set(emails);
        self
    }

    #[must_use]
    pub fn unset_emails(mut self) -> Self {
        self.emails = FieldAction::Unset;
        self
    }

    #[must_use]
    pub fn locked(mut self, locked: bool) -> Self {
        self.locked = Some(locked);
        self
    }
}

/// Whether `provision_user` created the user (201) or updated it (200).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisionOutcome {
    Created,
    Updated,
}

/// Whether `upsert_device` created the device (201) or it existed (200).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceOutcome {
    Created,
    Existed,
}

/// The homeserver's `/_synapse/mas/*` API.
#[async_trait]
pub trait Homeserver: Send + Sync {
    /// The homeserver's `server_name` (`matrix.homeserver`).
    fn server_name(&self) -> &str;

    /// `@localpart:server_name`.
    fn mxid(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.server_name())
    }

    /// The user's profile and status; [`HomeserverError::NotFound`] if absent.
    async fn query_user(&self, localpart: &str) -> Result<HomeserverUser, HomeserverError>;

    /// `Ok(false)` if the localpart is taken (or reserved by an application
    /// service); [`HomeserverError::InvalidUsername`] if it can never be used.
    async fn is_localpart_available(&self, localpart: &str) -> Result<bool, HomeserverError>;

    async fn provision_user(
        &self,
        request: &ProvisionRequest,
    ) -> Result<ProvisionOutcome, HomeserverError>;

    /// Deactivates the user (and erases their data if `erase`).
    async fn delete_user(&self, localpart: &str, erase: bool) -> Result<(), HomeserverError>;

    async fn reactivate_user(&self, localpart: &str) -> Result<(), HomeserverError>;

    async fn set_displayname(
        &self,
        localpart: &str,
        displayname: &str,
    ) -> Result<(), HomeserverError>;

    async fn unset_displayname(&self, localpart: &str) -> Result<(), HomeserverError>;

    async fn upsert_device(
        &self,
        localpart: &str,
        device_id: &str,
        display_name: Option<&str>,
    ) -> Result<DeviceOutcome, HomeserverError>;

    async fn update_device_display_name(
        &self,
        localpart: &str,
        device_id: &str,
        display_name: &str,
    ) -> Result<(), HomeserverError>;

    async fn delete_device(&self, localpart: &str, device_id: &str) -> Result<(), HomeserverError>;

    /// Makes the user's device list exactly `devices` (adds the missing ones,
    /// deletes the others).
    async fn sync_devices(
        &self,
        localpart: &str,
        devices: &BTreeSet<String>,
    ) -> Result<(), HomeserverError>;

    /// Lets the user replace their cross-signing master key without
    /// user-interactive auth for the next 10 minutes (MSC4312).
    async fn allow_cross_signing_reset(&self, localpart: &str) -> Result<(), HomeserverError>;
}

/// A `matrix` setting the homeserver client cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct HomeserverConfigError {
    /// The config key, e.g. `matrix.secret`.
    pub path: &'static str,
    pub message: String,
}

/// The homeserver client for a config: Synapse, wrapped read-only for
/// `matrix.kind: synapse_read_only`.
pub fn from_config(config: &Config) -> Result<Arc<dyn Homeserver>, HomeserverConfigError> {
    let matrix = &config.matrix;
    let secret = matrix
        .secret
        .as_ref()
        .ok_or_else(|| HomeserverConfigError {
            path: "matrix.secret",
            message: "missing: the homeserver's shared secret is required".to_owned(),
        })?;
    let synapse = SynapseHomeserver::new(&matrix.homeserver, &matrix.endpoint, secret.expose())
        .map_err(|e| HomeserverConfigError {
            path: "matrix.endpoint",
            message: e.to_string(),
        })?;
    Ok(match matrix.kind {
        HomeserverKind::Synapse => Arc::new(synapse),
        HomeserverKind::SynapseReadOnly => Arc::new(ReadOnlyHomeserver::new(Arc::new(synapse))),
    })
}
