//! Every conformance story, each on a fresh database, on SQLite and on
//! PostgreSQL.

use vestibule_storage::conformance::STORIES;
use vestibule_storage_sql::testing::TestDatabase;

async fn run_on_sqlite(name: &str) {
    let story = STORIES.iter().find(|(n, _)| *n == name).expect("story").1;
    let db = TestDatabase::sqlite().await.expect("sqlite");
    story(&db.storage).await;
    db.cleanup().await;
}

async fn run_on_postgres(name: &str) {
    let story = STORIES.iter().find(|(n, _)| *n == name).expect("story").1;
    let Some(db) = TestDatabase::postgres().await.expect("postgres") else {
        return;
    };
    story(&db.storage).await;
    db.cleanup().await;
}

#[test]
fn every_story_is_listed_below() {
    // Keeps the generated test list in sync with the suite.
    let listed = include_str!("conformance.rs");
    for (name, _) in STORIES {
        let fn_name = name.replace("::", "__");
        assert!(
            listed.contains(&format!("({fn_name},")),
            "story {name} has no test line here"
        );
    }
}

macro_rules! stories {
    ($(($fn_name:ident, $story:literal)),* $(,)?) => {
        // `module__story`, mirroring `module::story`.
        #[allow(non_snake_case)]
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $fn_name() { super::run_on_sqlite($story).await }
            )*
        }
        // `module__story`, mirroring `module::story`.
        #[allow(non_snake_case)]
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $fn_name() { super::run_on_postgres($story).await }
            )*
        }
    };
}

stories! {
    (users__users_crud, "users::users_crud"),
    (users__username_is_unique, "users::username_is_unique"),
    (users__lock_deactivate_admin, "users::lock_deactivate_admin"),
    (users__list_paginates, "users::list_paginates"),
    (users__emails, "users::emails"),
    (users__passwords_newest_wins, "users::passwords_newest_wins"),
    (users__rollback_on_drop, "users::rollback_on_drop"),
    (users__user_attributes, "users::user_attributes"),
    (browser_sessions__browser_sessions, "browser_sessions::browser_sessions"),
    (oauth2__clients, "oauth2::clients"),
    (oauth2__grant_lifecycle, "oauth2::grant_lifecycle"),
    (oauth2__code_exchange_is_single_use, "oauth2::code_exchange_is_single_use"),
    (oauth2__sessions_and_tokens, "oauth2::sessions_and_tokens"),
    (oauth2__refresh_rotation_is_single_use, "oauth2::refresh_rotation_is_single_use"),
    (compat__compat_sessions_and_tokens, "compat::compat_sessions_and_tokens"),
    (compat__compat_sso_login, "compat::compat_sso_login"),
    (compat__compat_list_active_for_user, "compat::compat_list_active_for_user"),
    (device_codes__device_code_lifecycle, "device_codes::device_code_lifecycle"),
    (upstream__upstream_providers_links_sessions, "upstream::upstream_providers_links_sessions"),
    (upstream__upstream_logout_lookup, "upstream::upstream_logout_lookup"),
    (upstream__upstream_logout_jti_is_single_use, "upstream::upstream_logout_jti_is_single_use"),
    (upstream__upstream_sessions_are_purged, "upstream::upstream_sessions_are_purged"),
    (upstream__upstream_issuer_and_linked_accounts, "upstream::upstream_issuer_and_linked_accounts"),
    (jobs__job_queue, "jobs::job_queue"),
    (client_assertions__jti_is_single_use, "client_assertions::jti_is_single_use"),
    (oauth2_tokens__access_token_scope, "oauth2_tokens::access_token_scope"),
    (oauth2_tokens__revoke_if_unused, "oauth2_tokens::revoke_if_unused"),
}
