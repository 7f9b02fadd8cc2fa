//! An in-memory homeserver with Synapse's semantics, for fast tests.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
};

use async_trait::async_trait;
use tokio::sync::{Semaphore, watch};

use super::{
    DeviceOutcome, FieldAction, Homeserver, HomeserverError, HomeserverUser, ProvisionOutcome,
    ProvisionRequest,
};

/// A device as the mock stores it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MockDevice {
    pub display_name: Option<String>,
}

/// A user as the mock stores it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MockUser {
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    pub emails: BTreeSet<String>,
    pub locked: bool,
    pub deactivated: bool,
    pub erased: bool,
    pub devices: BTreeMap<String, MockDevice>,
    /// Set by `allow_cross_signing_reset`.
    pub cross_signing_reset_allowed: bool,
}

#[derive(Debug, Default)]
struct Inner {
    users: BTreeMap<String, MockUser>,
    /// Every call that reached the mock, as `endpoint localpart`.
    calls: Vec<String>,
    /// Users that another writer creates right after a call missed them
    /// (see [`MockHomeserver::create_after_next_miss`]).
    after_miss: BTreeMap<String, MockUser>,
}

/// In-memory users and devices. [`MockHomeserver::set_down`] makes every call
/// fail with [`HomeserverError::Unavailable`], as a stopped Synapse would;
/// [`MockHomeserver::answer_with`] makes every call fail with a given error,
/// as Synapse answering 429, 500 or 403 to everything would.
#[derive(Debug)]
pub struct MockHomeserver {
    server_name: String,
    down: AtomicBool,
    answer: Mutex<Option<HomeserverError>>,
    inner: Mutex<Inner>,
    /// Set by [`MockHomeserver::hold_device_upserts`]: `upsert_device`
    /// calls queue here, first come first served, one per permit.
    device_gate: Mutex<Option<Arc<Semaphore>>>,
    /// How many `upsert_device` calls are queued at the gate.
    queued: watch::Sender<usize>,
}

impl MockHomeserver {
    pub fn new(server_name: impl Into<String>) -> Self {
        Self {
            server_name: server_name.into(),
            down: AtomicBool::new(false),
            answer: Mutex::new(None),
            inner: Mutex::new(Inner::default()),
            device_gate: Mutex::new(None),
            queued: watch::Sender::new(0),
        }
    }

    /// Makes `upsert_device` calls wait until [`Self::pass_device_upserts`]
    /// lets them through (in the order they came) or
    /// [`Self::release_device_upserts`]. The token endpoint makes this call
    /// after its read-only checks and before its write transaction, so a
    /// test can line concurrent token requests up at that point.
    pub fn hold_device_upserts(&self) {
        *self
            .device_gate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(Semaphore::new(0)));
    }

    /// Waits until `n` `upsert_device` calls are queued at the gate.
    pub async fn device_upserts_queued(&self, n: usize) {
        let mut queued = self.queued.subscribe();
        // The sender lives as long as `self`.
        let _ = queued.wait_for(|q| *q >= n).await;
    }

    /// Lets the next `n` queued (or future) `upsert_device` calls through.
    pub fn pass_device_upserts(&self, n: usize) {
        if let Some(gate) = &*self
            .device_gate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            gate.add_permits(n);
        }
    }

    /// Ends the hold: every queued and future `upsert_device` call goes on.
    pub fn release_device_upserts(&self) {
        if let Some(gate) = self
            .device_gate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            gate.close();
        }
    }

    /// Simulates the homeserver being down (`true`) or back (`false`).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Makes every call fail with `error` (`Some`), or work again (`None`).
    /// Such calls are not recorded and change nothing.
    pub fn answer_with(&self, error: Option<HomeserverError>) {
        *self
            .answer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = error;
    }

    /// A copy of a user's state.
    pub fn user(&self, localpart: &str) -> Option<MockUser> {
        self.lock().users.get(localpart).cloned()
    }

    /// Adds a user directly (as if registered on the homeserver by other means).
    pub fn insert_user(&self, localpart: &str, user: MockUser) {
        self.lock().users.insert(localpart.to_owned(), user);
    }

    /// Simulates a race: the next `upsert_device` for `localpart` answers
    /// "no such user", and `user` is created right after (as the user's
    /// provisioning job, running at the same moment, would).
    pub fn create_after_next_miss(&self, localpart: &str, user: MockUser) {
        self.lock().after_miss.insert(localpart.to_owned(), user);
    }

    /// The calls that reached the mock (`"provision_user alice"`, …), in order.
    /// Calls made while it was down or answering with an error are not
    /// recorded.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Checks the switch, records the call, and hands out the state.
    fn enter(
        &self,
        endpoint: &str,
        localpart: &str,
    ) -> Result<MutexGuard<'_, Inner>, HomeserverError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(HomeserverError::Unavailable(format!(
                "{endpoint}: connection refused (mock homeserver is down)"
            )));
        }
        if let Some(error) = self
            .answer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        {
            return Err(error);
        }
        let mut inner = self.lock();
        inner.calls.push(format!("{endpoint} {localpart}"));
        Ok(inner)
    }

    fn check_username(&self, inner: &Inner, localpart: &str) -> Result<(), HomeserverError> {
        if let Some(reason) = invalid_localpart(localpart, &self.server_name) {
            return Err(HomeserverError::InvalidUsername(reason.to_owned()));
        }
        if inner
            .users
            .keys()
            .any(|l| l.eq_ignore_ascii_case(localpart))
        {
            return Err(HomeserverError::UserInUse);
        }
        Ok(())
    }
}

/// Synapse's `RegistrationHandler.check_username` rules.
fn invalid_localpart(localpart: &str, server_name: &str) -> Option<&'static str> {
    if localpart.is_empty() {
        return Some("User ID cannot be empty");
    }
    if !localpart
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"=_-./+".contains(&b))
    {
        return Some("User ID can only contain characters a-z, 0-9, or '=_-./+'");
    }
    if localpart.starts_with('_') {
        return Some("User ID may not begin with _");
    }
    // `@` + localpart + `:` + server name.
    if localpart.len() + server_name.len() + 2 > 255 {
        return Some("User ID may not be longer than 255 characters");
    }
    if localpart.bytes().all(|b| b.is_ascii_digit()) {
        return Some("Numeric user IDs are reserved for guest users.");
    }
    None
}

fn user_mut<'a>(
    inner: &'a mut Inner,
    localpart: &str,
) -> Result<&'a mut MockUser, HomeserverError> {
    inner
        .users
        .get_mut(localpart)
        .ok_or(HomeserverError::NotFound)
}

/// Synapse stores an empty display name as none.
fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

#[async_trait]
impl Homeserver for MockHomeserver {
    fn server_name(&self) -> &str {
        &self.server_name
    }

    async fn query_user(&self, localpart: &str) -> Result<HomeserverUser, HomeserverError> {
        let inner = self.enter("query_user", localpart)?;
        let user = inner
            .users
            .get(localpart)
            .ok_or(HomeserverError::NotFound)?;
        Ok(HomeserverUser {
            user_id: self.mxid(localpart),
            display_name: user.display_name.clone(),
            avatar_url: user.avatar_url.clone(),
            is_suspended: false,
            is_deactivated: user.deactivated,
        })
    }

    async fn is_localpart_available(&self, localpart: &str) -> Result<bool, HomeserverError> {
        let inner = self.enter("is_localpart_available", localpart)?;
        match self.check_username(&inner, localpart) {
            Ok(()) => Ok(true),
            Err(HomeserverError::UserInUse) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn provision_user(
        &self,
        request: &ProvisionRequest,
    ) -> Result<ProvisionOutcome, HomeserverError> {
        let localpart = request.localpart.as_str();
        let mut inner = self.enter("provision_user", localpart)?;
        let outcome = if inner.users.contains_key(localpart) {
            let user = user_mut(&mut inner, localpart)?;
            match &request.displayname {
                FieldAction::Keep => {}
                FieldAction::Set(d) => user.display_name = non_empty(d),
                FieldAction::Unset => user.display_name = None,
            }
            match &request.emails {
                FieldAction::Keep => {}
                FieldAction::Set(e) => user.emails = e.iter().cloned().collect(),
                FieldAction::Unset => user.emails.clear(),
            }
            ProvisionOutcome::Updated
        } else {
            self.check_username(&inner, localpart)?;
            let user = MockUser {
                // Synapse falls back to the localpart as the display name.
                display_name: match &request.displayname {
                    FieldAction::Set(d) => non_empty(d),
                    FieldAction::Keep | FieldAction::Unset => Some(localpart.to_owned()),
                },
                emails: match &request.emails {
                    FieldAction::Set(e) => e.iter().cloned().collect(),
                    FieldAction::Keep | FieldAction::Unset => BTreeSet::new(),
                },
                ..MockUser::default()
            };
            inner.users.insert(localpart.to_owned(), user);
            ProvisionOutcome::Created
        };
        let user = user_mut(&mut inner, localpart)?;
        if let Some(locked) = request.locked {
            user.locked = locked;
        }
        match &request.avatar_url {
            FieldAction::Keep => {}
            FieldAction::Set(a) => user.avatar_url = non_empty(a),
            FieldAction::Unset => user.avatar_url = None,
        }
        Ok(outcome)
    }

    async fn delete_user(&self, localpart: &str, erase: bool) -> Result<(), HomeserverError> {
        let mut inner = self.enter("delete_user", localpart)?;
        let user = user_mut(&mut inner, localpart)?;
        user.deactivated = true;
        user.emails.clear();
        user.devices.clear();
        if erase {
            user.erased = true;
            user.display_name = None;
            user.avatar_url = None;
        }
        Ok(())
    }

    async fn reactivate_user(&self, localpart: &str) -> Result<(), HomeserverError> {
        let mut inner = self.enter("reactivate_user", localpart)?;
        let user = user_mut(&mut inner, localpart)?;
        user.deactivated = false;
        user.erased = false;
        Ok(())
    }

    async fn set_displayname(
        &self,
        localpart: &str,
        displayname: &str,
    ) -> Result<(), HomeserverError> {
        let mut inner = self.enter("set_displayname", localpart)?;
        user_mut(&mut inner, localpart)?.display_name = non_empty(displayname);
        Ok(())
    }

    async fn unset_displayname(&self, localpart: &str) -> Result<(), HomeserverError> {
        let mut inner = self.enter("unset_displayname", localpart)?;
        user_mut(&mut inner, localpart)?.display_name = None;
        Ok(())
    }

    async fn upsert_device(
        &self,
        localpart: &str,
        device_id: &str,
        display_name: Option<&str>,
    ) -> Result<DeviceOutcome, HomeserverError> {
        let gate = self
            .device_gate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(gate) = gate {
            self.queued.send_modify(|q| *q += 1);
            // A closed gate (released) lets everyone through.
            if let Ok(permit) = gate.acquire().await {
                permit.forget();
            }
            self.queued.send_modify(|q| *q -= 1);
        }
        let mut inner = self.enter("upsert_device", localpart)?;
        if !inner.users.contains_key(localpart) {
            if let Some(user) = inner.after_miss.remove(localpart) {
                inner.users.insert(localpart.to_owned(), user);
            }
            return Err(HomeserverError::NotFound);
        }
        let user = user_mut(&mut inner, localpart)?;
        if let Some(device) = user.devices.get_mut(device_id) {
            if let Some(name) = display_name {
                device.display_name = Some(name.to_owned());
            }
            return Ok(DeviceOutcome::Existed);
        }
        user.devices.insert(
            device_id.to_owned(),
            MockDevice {
                display_name: display_name.map(str::to_owned),
            },
        );
        Ok(DeviceOutcome::Created)
    }

    async fn update_device_display_name(
        &self,
        localpart: &str,
        device_id: &str,
        display_name: &str,
    ) -> Result<(), HomeserverError> {
        let mut inner = self.enter("update_device_display_name", localpart)?;
        let user = user_mut(&mut inner, localpart)?;
        let device = user
            .devices
            .get_mut(device_id)
            .ok_or(HomeserverError::NotFound)?;
        device.display_name = Some(display_name.to_owned());
        Ok(())
    }

    async fn delete_device(&self, localpart: &str, device_id: &str) -> Result<(), HomeserverError> {
        let mut inner = self.enter("delete_device", localpart)?;
        user_mut(&mut inner, localpart)?.devices.remove(device_id);
        Ok(())
    }

    async fn sync_devices(
        &self,
        localpart: &str,
        devices: &BTreeSet<String>,
    ) -> Result<(), HomeserverError> {
        let mut inner = self.enter("sync_devices", localpart)?;
        let user = user_mut(&mut inner, localpart)?;
        user.devices.retain(|id, _| devices.contains(id));
        for id in devices {
            user.devices.entry(id.clone()).or_default();
        }
        Ok(())
    }

    async fn allow_cross_signing_reset(&self, localpart: &str) -> Result<(), HomeserverError> {
        let mut inner = self.enter("allow_cross_signing_reset", localpart)?;
        user_mut(&mut inner, localpart)?.cross_signing_reset_allowed = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn mirrors_synapse_semantics() {
        let hs = MockHomeserver::new("example.org");
        assert_eq!(hs.mxid("alice"), "@alice:example.org");
        assert_eq!(hs.is_localpart_available("alice").await, Ok(true));
        assert!(matches!(
            hs.is_localpart_available("Alice").await,
            Err(HomeserverError::InvalidUsername(_))
        ));
        assert!(matches!(
            hs.is_localpart_available("12345").await,
            Err(HomeserverError::InvalidUsername(_))
        ));
        assert_eq!(hs.query_user("alice").await, Err(HomeserverError::NotFound));
        assert_eq!(
            hs.upsert_device("alice", "DEVICEAAAA", None).await,
            Err(HomeserverError::NotFound)
        );

        let created = hs
            .provision_user(&ProvisionRequest::new("alice"))
            .await
            .unwrap();
        assert_eq!(created, ProvisionOutcome::Created);
        let user = hs.query_user("alice").await.unwrap();
        assert_eq!(
            user.display_name.as_deref(),
            Some("alice"),
            "localpart fallback"
        );
        assert_eq!(hs.is_localpart_available("alice").await, Ok(false));

        let updated = hs
            .provision_user(
                &ProvisionRequest::new("alice")
                    .set_displayname("Alice")
                    .set_emails(vec!["alice@example.org".to_owned()])
                    .locked(true),
            )
            .await
            .unwrap();
        assert_eq!(updated, ProvisionOutcome::Updated);
        let stored = hs.user("alice").unwrap();
        assert_eq!(stored.display_name.as_deref(), Some("Alice"));
        assert!(stored.locked);
        assert!(stored.emails.contains("alice@example.org"));

        assert_eq!(
            hs.upsert_device("alice", "DEVICEAAAA", Some("Phone")).await,
            Ok(DeviceOutcome::Created)
        );
        assert_eq!(
            hs.upsert_device("alice", "DEVICEAAAA", None).await,
            Ok(DeviceOutcome::Existed)
        );
        hs.upsert_device("alice", "DEVICEBBBB", None).await.unwrap();
        hs.sync_devices(
            "alice",
            &BTreeSet::from(["DEVICEBBBB".to_owned(), "DEVICECCCC".to_owned()]),
        )
        .await
        .unwrap();
        let devices: Vec<_> = hs.user("alice").unwrap().devices.into_keys().collect();
        assert_eq!(devices, ["DEVICEBBBB", "DEVICECCCC"]);

        hs.set_down(true);
        assert!(hs.query_user("alice").await.unwrap_err().is_retryable());
        hs.set_down(false);

        hs.delete_user("alice", true).await.unwrap();
        let user = hs.query_user("alice").await.unwrap();
        assert!(user.is_deactivated);
        assert_eq!(user.display_name, None, "erased");
        assert!(hs.user("alice").unwrap().devices.is_empty());
        hs.reactivate_user("alice").await.unwrap();
        assert!(!hs.query_user("alice").await.unwrap().is_deactivated);
    }
}
