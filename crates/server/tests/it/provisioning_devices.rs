//! Matrix devices of OAuth sessions on the homeserver: created before the
//! token response, kept on refresh, deleted when the session ends (with a
//! `sync_devices` job as the fallback). Against the in-memory homeserver.

use axum::http::StatusCode;
use vestibule_domain::{oauth2::AuthorizationGrantStage, tokens::token_hash};
use vestibule_server::{
    homeserver::{Homeserver, MockUser},
    jobs::HomeserverJob,
};
use vestibule_storage_sql::testing::TestDatabase;

use crate::{
    harness::body_json,
    oauth2_support::{GrantOpts, assert_error, str_of},
    provisioning_support::Hx,
};

const DEVICE: &str = "ABCDEFGHIJ";

fn devices(hx: &Hx, localpart: &str) -> Vec<String> {
    hx.hs
        .user(localpart)
        .map(|u| u.devices.into_keys().collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn code_exchange_creates_the_user_and_the_device_before_answering() {
    let hx = Hx::new().await;
    let client = hx.fx.public_client().await;
    let g = hx.fx.grant_for(&client, None, GrantOpts::default()).await;
    let localpart = g.user.username.clone();
    assert!(
        hx.hs.user(&localpart).is_none(),
        "not on the homeserver yet"
    );

    let body = hx.fx.exchange_ok(&client, &g.code).await;
    // The response is out: the user and the device exist already.
    let user = hx.hs.user(&localpart).expect("user provisioned");
    assert_eq!(user.display_name.as_deref(), Some(localpart.as_str()));
    assert!(
        user.emails.contains(&format!("{localpart}@example.org")),
        "{user:?}"
    );
    let device = user.devices.get(DEVICE).expect("device created");
    assert_eq!(device.display_name.as_deref(), Some("Test client"));
    let calls = hx.hs.calls();
    assert_eq!(
        calls,
        [
            format!("upsert_device {localpart}"),
            format!("provision_user {localpart}"),
            format!("upsert_device {localpart}"),
        ],
        "the user is provisioned only because the homeserver did not know it"
    );
    assert!(hx.fx.is_active(str_of(&body, "access_token")).await);

    // A second login of the same (now known) user: one call.
    let g2 = hx
        .fx
        .grant_for(
            &client,
            Some(g.user.clone()),
            GrantOpts {
                scope: "urn:matrix:client:api:* urn:matrix:client:device:SECONDDEV1",
                ..GrantOpts::default()
            },
        )
        .await;
    hx.fx.exchange_ok(&client, &g2.code).await;
    assert_eq!(hx.hs.calls().len(), 4, "{:?}", hx.hs.calls());
    assert_eq!(devices(&hx, &localpart), [DEVICE, "SECONDDEV1"]);

    // No device scope: the homeserver is not called.
    let g3 = hx
        .fx
        .grant_for(
            &client,
            None,
            GrantOpts {
                scope: "openid",
                ..GrantOpts::default()
            },
        )
        .await;
    hx.fx.exchange_ok(&client, &g3.code).await;
    assert_eq!(hx.hs.calls().len(), 4, "{:?}", hx.hs.calls());
    hx.cleanup().await;
}

/// The user's provisioning job creates them on the homeserver (with the
/// name imported from an upstream login) while the token endpoint finds
/// them missing and provisions them inline: the inline call must not
/// overwrite the job's display name with the localpart.
#[tokio::test]
async fn an_inline_provision_racing_the_job_keeps_the_jobs_display_name() {
    for db in databases().await {
        let hx = Hx::on(db, |_| {});
        let client = hx.fx.public_client().await;
        let g = hx.fx.grant_for(&client, None, GrantOpts::default()).await;
        let localpart = g.user.username.clone();
        hx.hs.create_after_next_miss(
            &localpart,
            MockUser {
                display_name: Some("Dana Scully".to_owned()),
                ..MockUser::default()
            },
        );
        hx.fx.exchange_ok(&client, &g.code).await;
        let user = hx.hs.user(&localpart).expect("user provisioned");
        assert_eq!(user.display_name.as_deref(), Some("Dana Scully"));
        assert!(user.devices.contains_key(DEVICE), "{user:?}");
        assert_eq!(
            hx.hs.calls(),
            [
                format!("upsert_device {localpart}"),
                format!("provision_user {localpart}"),
                format!("upsert_device {localpart}"),
            ]
        );
        hx.cleanup().await;
    }
}

/// The homeserver call happens before the code is consumed, outside the
/// write transaction: while it is down the request is a 503 and the code
/// stays usable; once it is back the same code works.
#[tokio::test]
async fn homeserver_down_is_a_503_and_the_code_survives_for_a_retry() {
    for db in databases().await {
        let hx = Hx::on(db, |_| {});
        let client = hx.fx.public_client().await;
        let g = hx.fx.grant_for(&client, None, GrantOpts::default()).await;
        hx.hs.set_down(true);
        let res = hx.fx.exchange(&client, &g.code).await;
        assert_eq!(
            res.headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap()),
            Some("5")
        );
        assert_error(
            res,
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
        )
        .await;
        // Nothing was committed: the grant is still only fulfilled, the
        // session has no tokens, and no job was scheduled.
        let mut repo = hx.fx.t.state.repos.read().await.unwrap();
        let grant = repo
            .oauth2_grants()
            .find_by_code_hash(&token_hash(&g.code))
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(grant.stage, AuthorizationGrantStage::Fulfilled { .. }),
            "{:?}",
            grant.stage
        );
        drop(repo);
        assert!(hx.pending_jobs().await.is_empty());

        hx.hs.set_down(false);
        let body = hx.fx.exchange_ok(&client, &g.code).await;
        assert_eq!(devices(&hx, &g.user.username), [DEVICE]);
        assert!(hx.fx.is_active(str_of(&body, "access_token")).await);
        hx.cleanup().await;
    }
}

#[tokio::test]
async fn refresh_keeps_the_device_and_recreates_a_lost_one() {
    let hx = Hx::new().await;
    let client = hx.fx.public_client().await;
    let g = hx.fx.grant_for(&client, None, GrantOpts::default()).await;
    let localpart = g.user.username.clone();
    let body = hx.fx.exchange_ok(&client, &g.code).await;
    let rt = str_of(&body, "refresh_token").to_owned();

    let res = hx.fx.refresh(&client, &rt).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = body_json(res).await;
    assert_eq!(devices(&hx, &localpart), [DEVICE], "kept");
    assert!(hx.fx.is_active(str_of(&body, "access_token")).await);
    let rt = str_of(&body, "refresh_token").to_owned();

    // The device vanished from the homeserver (deleted by an admin, a
    // failed sync): the next refresh puts it back before answering.
    hx.hs.delete_device(&localpart, DEVICE).await.unwrap();
    assert!(devices(&hx, &localpart).is_empty());
    hx.hs.set_down(true);
    let res = hx.fx.refresh(&client, &rt).await;
    assert_error(
        res,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
    )
    .await;
    hx.hs.set_down(false);
    // The refresh token was not consumed by the failed attempt.
    let res = hx.fx.refresh(&client, &rt).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(devices(&hx, &localpart), [DEVICE], "recreated");
    hx.cleanup().await;
}

#[tokio::test]
async fn revocation_deletes_the_device_and_schedules_a_sync() {
    let hx = Hx::new().await;
    let client = hx.fx.public_client().await;
    let g = hx.fx.grant_for(&client, None, GrantOpts::default()).await;
    let localpart = g.user.username.clone();
    let body = hx.fx.exchange_ok(&client, &g.code).await;
    let at = str_of(&body, "access_token").to_owned();
    assert_eq!(devices(&hx, &localpart), [DEVICE]);
    assert!(hx.pending_jobs().await.is_empty());

    let res = hx
        .fx
        .post_form(
            "/oauth2/revoke",
            &[("token", &at), ("client_id", &client.client_id)],
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(devices(&hx, &localpart).is_empty(), "deleted at once");
    assert_eq!(
        hx.hs.calls().last().map(String::as_str),
        Some(format!("delete_device {localpart}").as_str())
    );
    assert_eq!(
        hx.pending_jobs().await,
        [HomeserverJob::SyncDevices { user_id: g.user.id }]
    );
    assert!(!hx.fx.is_active(&at).await);
    hx.cleanup().await;
}

/// With the homeserver down at logout, the device survives the request but
/// the committed `sync_devices` job removes it once the homeserver is back.
#[tokio::test]
async fn a_device_the_homeserver_missed_at_logout_is_removed_by_the_sync_job() {
    let hx = Hx::new().await;
    let client = hx.fx.public_client().await;
    let g = hx.fx.grant_for(&client, None, GrantOpts::default()).await;
    let localpart = g.user.username.clone();
    let body = hx.fx.exchange_ok(&client, &g.code).await;
    // A second session that stays.
    let g2 = hx
        .fx
        .grant_for(
            &client,
            Some(g.user.clone()),
            GrantOpts {
                scope: "urn:matrix:client:api:* urn:matrix:client:device:STAYING123",
                ..GrantOpts::default()
            },
        )
        .await;
    hx.fx.exchange_ok(&client, &g2.code).await;
    assert_eq!(devices(&hx, &localpart), [DEVICE, "STAYING123"]);

    hx.hs.set_down(true);
    let res = hx
        .fx
        .post_form(
            "/oauth2/revoke",
            &[
                ("token", str_of(&body, "refresh_token")),
                ("client_id", &client.client_id),
            ],
            None,
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "revocation does not wait for it"
    );
    assert!(!hx.fx.is_active(str_of(&body, "access_token")).await);
    hx.hs.set_down(false);
    assert_eq!(devices(&hx, &localpart), [DEVICE, "STAYING123"], "missed");

    let report = hx.run_jobs().await;
    assert_eq!(report.completed, 1, "{report:?}");
    assert_eq!(devices(&hx, &localpart), ["STAYING123"]);
    hx.cleanup().await;
}

#[tokio::test]
async fn code_reuse_and_refresh_replay_delete_the_device() {
    let hx = Hx::new().await;
    let client = hx.fx.public_client().await;
    let g = hx.fx.grant_for(&client, None, GrantOpts::default()).await;
    let localpart = g.user.username.clone();
    let body = hx.fx.exchange_ok(&client, &g.code).await;
    assert_eq!(devices(&hx, &localpart), [DEVICE]);
    let res = hx.fx.exchange(&client, &g.code).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert!(devices(&hx, &localpart).is_empty(), "code reuse");
    assert!(!hx.fx.is_active(str_of(&body, "access_token")).await);
    assert_eq!(
        hx.pending_jobs().await,
        [HomeserverJob::SyncDevices { user_id: g.user.id }]
    );

    // Refresh replay: rotate once, wait past the retry window, replay.
    let g = hx
        .fx
        .grant_for(&client, Some(g.user.clone()), GrantOpts::default())
        .await;
    let body = hx.fx.exchange_ok(&client, &g.code).await;
    assert_eq!(devices(&hx, &localpart), [DEVICE]);
    let rt = str_of(&body, "refresh_token").to_owned();
    let res = hx.fx.refresh(&client, &rt).await;
    assert_eq!(res.status(), StatusCode::OK);
    let rotated = body_json(res).await;
    hx.fx.advance(120);
    let res = hx.fx.refresh(&client, &rt).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert!(devices(&hx, &localpart).is_empty(), "refresh replay");
    assert!(!hx.fx.is_active(str_of(&rotated, "access_token")).await);
    hx.cleanup().await;
}

async fn databases() -> Vec<TestDatabase> {
    let mut dbs = vec![TestDatabase::sqlite().await.expect("sqlite")];
    if let Some(pg) = TestDatabase::postgres().await.expect("postgres") {
        dbs.push(pg);
    }
    dbs
}
