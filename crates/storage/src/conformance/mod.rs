//! The storage conformance suite: one set of stories written against the
//! traits, run by `storage-sql`'s tests on SQLite and on PostgreSQL.
//!
//! Each story gets a fresh, migrated database from the factory, a mock clock
//! and a seeded rng, so failures reproduce exactly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

mod browser_sessions;
mod client_assertions;
mod compat;
mod device_codes;
mod jobs;
mod oauth2;
mod oauth2_tokens;
mod upstream;
mod users;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vestibule_domain::MockClock;

use crate::RepositoryFactory;

/// Deterministic clock and rng for a story.
pub struct Ctx {
    pub clock: MockClock,
    pub rng: ChaCha8Rng,
}

impl Default for Ctx {
    fn default() -> Self {
        Self {
            clock: MockClock::default(),
            rng: ChaCha8Rng::seed_from_u64(42),
        }
    }
}

/// A story: an async fn taking the factory. Boxed so they can be listed.
pub type Story = for<'a> fn(
    &'a dyn RepositoryFactory,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

macro_rules! stories {
    ($($module:ident :: $name:ident),* $(,)?) => {
        /// Every story, by name.
        pub const STORIES: &[(&str, Story)] = &[
            $((concat!(stringify!($module), "::", stringify!($name)), |f| Box::pin($module::$name(f)))),*
        ];
    };
}

stories! {
    users::users_crud,
    users::username_is_unique,
    users::lock_deactivate_admin,
    users::list_paginates,
    users::emails,
    users::passwords_newest_wins,
    users::rollback_on_drop,
    browser_sessions::browser_sessions,
    oauth2::clients,
    oauth2::grant_lifecycle,
    oauth2::code_exchange_is_single_use,
    oauth2::sessions_and_tokens,
    oauth2::refresh_rotation_is_single_use,
    compat::compat_sessions_and_tokens,
    compat::compat_sso_login,
    compat::compat_list_active_for_user,
    device_codes::device_code_lifecycle,
    upstream::upstream_providers_links_sessions,
    upstream::upstream_logout_lookup,
    upstream::upstream_logout_jti_is_single_use,
    upstream::upstream_sessions_are_purged,
    upstream::upstream_issuer_and_linked_accounts,
    users::user_attributes,
    jobs::job_queue,
    client_assertions::jti_is_single_use,
    oauth2_tokens::access_token_scope,
    oauth2_tokens::revoke_if_unused,
}
