use async_trait::async_trait;
use vestibule_domain::{
    Ulid,
    user::{Password, User, UserEmail},
};

use crate::{Clock, Rng, StorageError};

#[async_trait]
pub trait UserRepository: Send {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        username: &str,
    ) -> Result<User, StorageError>;
    async fn lookup(&mut self, id: Ulid) -> Result<Option<User>, StorageError>;
    async fn find_by_username(&mut self, username: &str) -> Result<Option<User>, StorageError>;
    /// Users ordered by id, after `after` (keyset pagination).
    async fn list(&mut self, after: Option<Ulid>, limit: u32) -> Result<Vec<User>, StorageError>;
    async fn count(&mut self) -> Result<u64, StorageError>;
    async fn lock(&mut self, clock: &dyn Clock, user: User) -> Result<User, StorageError>;
    async fn unlock(&mut self, user: User) -> Result<User, StorageError>;
    async fn deactivate(&mut self, clock: &dyn Clock, user: User) -> Result<User, StorageError>;
    async fn reactivate(&mut self, user: User) -> Result<User, StorageError>;
    async fn set_can_request_admin(&mut self, user: User, can: bool) -> Result<User, StorageError>;
}

#[async_trait]
pub trait UserEmailRepository: Send {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        user: &User,
        email: &str,
    ) -> Result<UserEmail, StorageError>;
    async fn lookup(&mut self, id: Ulid) -> Result<Option<UserEmail>, StorageError>;
    /// Case-insensitive lookup.
    async fn find_by_email(&mut self, email: &str) -> Result<Option<UserEmail>, StorageError>;
    async fn all(&mut self, user: &User) -> Result<Vec<UserEmail>, StorageError>;
    async fn remove(&mut self, email: UserEmail) -> Result<(), StorageError>;
}

/// Attributes of a user beyond the fixed set (e.g. `tenant_id`), one value
/// per name.
#[async_trait]
pub trait UserAttributeRepository: Send {
    /// Sets (inserts or replaces) one attribute; returns whether it changed.
    async fn set(
        &mut self,
        clock: &dyn Clock,
        user: &User,
        name: &str,
        value: &str,
    ) -> Result<bool, StorageError>;
    /// Every attribute of the user, by name.
    async fn all(
        &mut self,
        user: &User,
    ) -> Result<std::collections::BTreeMap<String, String>, StorageError>;
    /// Removes one attribute; returns whether it existed.
    async fn remove(&mut self, user: &User, name: &str) -> Result<bool, StorageError>;
}

#[async_trait]
pub trait UserPasswordRepository: Send {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        user: &User,
        version: u16,
        hashed_password: String,
        upgraded_from: Option<&Password>,
    ) -> Result<Password, StorageError>;
    /// The newest password of the user.
    async fn active(&mut self, user: &User) -> Result<Option<Password>, StorageError>;
}
