use chrono::Duration;
use vestibule_domain::{
    device_code::DeviceCodeGrantStage,
    oauth2::{ApplicationType, ClientAuthMethod},
    tokens::token_hash,
};

use super::Ctx;
use crate::{
    RepositoryFactory, StorageError, device_code::NewDeviceCodeGrant, oauth2::ClientParams,
};

fn device_client() -> ClientParams {
    ClientParams {
        client_name: Some("TV app".to_owned()),
        client_uri: None,
        logo_uri: None,
        policy_uri: None,
        tos_uri: None,
        redirect_uris: Vec::new(),
        grant_types: vec!["urn:ietf:params:oauth:grant-type:device_code".to_owned()],
        application_type: Some(ApplicationType::Native),
        token_endpoint_auth_method: ClientAuthMethod::None,
        encrypted_client_secret: None,
        jwks: None,
        jwks_uri: None,
        id_token_signed_response_alg: None,
        metadata_digest: None,
    }
}

fn new_grant(user_code: &str, device_code: &str) -> NewDeviceCodeGrant {
    NewDeviceCodeGrant {
        scope: "openid urn:matrix:org.matrix.msc2967.client:api:*".to_owned(),
        user_code: user_code.to_owned(),
        device_code_hash: token_hash(device_code),
        expires_in: Duration::minutes(10),
    }
}

pub async fn device_code_lifecycle(f: &dyn RepositoryFactory) {
    let mut ctx = Ctx::default();
    let mut repo = f.write().await.unwrap();
    let alice = repo
        .users()
        .add(&mut ctx.rng, &ctx.clock, "alice")
        .await
        .unwrap();
    let browser = repo
        .browser_sessions()
        .add(&mut ctx.rng, &ctx.clock, &alice, None)
        .await
        .unwrap();
    let client = repo
        .oauth2_clients()
        .add(&mut ctx.rng, &ctx.clock, device_client())
        .await
        .unwrap();
    let grant = repo
        .device_code_grants()
        .add(
            &mut ctx.rng,
            &ctx.clock,
            &client,
            new_grant("ABCD-EFGH", "device-code-1"),
        )
        .await
        .unwrap();
    assert_eq!(grant.stage, DeviceCodeGrantStage::Pending);
    assert_eq!(grant.client_id, client.id);
    assert_eq!(grant.expires_at, grant.created_at + Duration::minutes(10));
    assert!(!grant.is_expired(ctx.clock.now()));
    assert!(grant.is_expired(ctx.clock.now() + Duration::minutes(10)));
    let other = repo
        .device_code_grants()
        .add(
            &mut ctx.rng,
            &ctx.clock,
            &client,
            new_grant("WXYZ-1234", "device-code-2"),
        )
        .await
        .unwrap();
    repo.save().await.unwrap();

    // Round trip and lookups.
    let mut repo = f.read().await.unwrap();
    assert_eq!(
        repo.device_code_grants().lookup(grant.id).await.unwrap(),
        Some(grant.clone()),
        "lookup returns what was stored, timestamps included"
    );
    assert_eq!(
        repo.device_code_grants()
            .find_by_user_code("ABCD-EFGH")
            .await
            .unwrap(),
        Some(grant.clone())
    );
    assert_eq!(
        repo.device_code_grants()
            .find_by_device_code_hash(&token_hash("device-code-2"))
            .await
            .unwrap(),
        Some(other.clone())
    );
    assert!(
        repo.device_code_grants()
            .find_by_user_code("NOPE-NOPE")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        repo.device_code_grants()
            .find_by_device_code_hash("device-code-1")
            .await
            .unwrap()
            .is_none(),
        "only the hash finds a device code"
    );
    drop(repo);

    // User codes are unique.
    let mut repo = f.write().await.unwrap();
    let dup = repo
        .device_code_grants()
        .add(
            &mut ctx.rng,
            &ctx.clock,
            &client,
            new_grant("ABCD-EFGH", "device-code-3"),
        )
        .await;
    assert!(
        matches!(dup, Err(StorageError::UniqueViolation(_))),
        "got {dup:?}"
    );
    drop(repo);

    // Polls: each returns the previous poll time.
    let mut repo = f.write().await.unwrap();
    assert_eq!(
        repo.device_code_grants()
            .record_poll(&ctx.clock, &grant)
            .await
            .unwrap(),
        None,
        "first poll"
    );
    let first_poll = ctx.clock.now();
    repo.save().await.unwrap();
    ctx.clock.advance(Duration::seconds(5));
    let mut repo = f.write().await.unwrap();
    assert_eq!(
        repo.device_code_grants()
            .record_poll(&ctx.clock, &grant)
            .await
            .unwrap(),
        Some(first_poll)
    );
    assert_eq!(
        repo.device_code_grants()
            .lookup(grant.id)
            .await
            .unwrap()
            .unwrap()
            .last_polled_at,
        Some(ctx.clock.now())
    );
    repo.save().await.unwrap();
    let grant = {
        let mut repo = f.read().await.unwrap();
        repo.device_code_grants()
            .lookup(grant.id)
            .await
            .unwrap()
            .unwrap()
    };

    // Nothing to exchange before the user approved.
    let mut repo = f.write().await.unwrap();
    let session = repo
        .oauth2_sessions()
        .add(
            &mut ctx.rng,
            &ctx.clock,
            &client,
            Some(&alice),
            Some(&browser),
            &grant.scope,
        )
        .await
        .unwrap();
    repo.save().await.unwrap();
    let mut repo = f.write().await.unwrap();
    let early = repo
        .device_code_grants()
        .exchange(&ctx.clock, grant.clone(), &session)
        .await;
    assert!(
        matches!(early, Err(StorageError::InvalidTransition(_))),
        "got {early:?}"
    );
    drop(repo);

    // Fulfil once.
    ctx.clock.advance(Duration::seconds(10));
    let fulfilled_at = ctx.clock.now();
    let mut repo = f.write().await.unwrap();
    let fulfilled = repo
        .device_code_grants()
        .fulfill(&ctx.clock, grant.clone(), &browser)
        .await
        .unwrap();
    assert_eq!(
        fulfilled.stage,
        DeviceCodeGrantStage::Fulfilled {
            browser_session_id: browser.id,
            fulfilled_at,
        }
    );
    repo.save().await.unwrap();
    let mut repo = f.write().await.unwrap();
    assert_eq!(
        repo.device_code_grants().lookup(grant.id).await.unwrap(),
        Some(fulfilled.clone())
    );
    let stale = repo
        .device_code_grants()
        .reject(&ctx.clock, grant.clone(), &browser)
        .await;
    assert!(
        matches!(stale, Err(StorageError::ConcurrentUpdate(_))),
        "a stale pending copy cannot reject a fulfilled grant, got {stale:?}"
    );
    drop(repo);
    let mut repo = f.write().await.unwrap();
    let stale = repo
        .device_code_grants()
        .fulfill(&ctx.clock, grant.clone(), &browser)
        .await;
    assert!(
        matches!(stale, Err(StorageError::ConcurrentUpdate(_))),
        "got {stale:?}"
    );
    drop(repo);
    let mut repo = f.write().await.unwrap();
    let reject = repo
        .device_code_grants()
        .reject(&ctx.clock, fulfilled.clone(), &browser)
        .await;
    assert!(
        matches!(reject, Err(StorageError::InvalidTransition(_))),
        "got {reject:?}"
    );
    drop(repo);

    // Exchange once.
    ctx.clock.advance(Duration::seconds(5));
    let mut repo = f.write().await.unwrap();
    let exchanged = repo
        .device_code_grants()
        .exchange(&ctx.clock, fulfilled.clone(), &session)
        .await
        .unwrap();
    assert_eq!(
        exchanged.stage,
        DeviceCodeGrantStage::Exchanged {
            browser_session_id: browser.id,
            fulfilled_at,
            exchanged_at: ctx.clock.now(),
            session_id: session.id,
        }
    );
    repo.save().await.unwrap();
    let mut repo = f.write().await.unwrap();
    let replay = repo
        .device_code_grants()
        .exchange(&ctx.clock, fulfilled.clone(), &session)
        .await;
    assert!(
        matches!(replay, Err(StorageError::ConcurrentUpdate(_))),
        "a device code is exchanged once, got {replay:?}"
    );
    drop(repo);
    let mut repo = f.write().await.unwrap();
    let replay = repo
        .device_code_grants()
        .exchange(&ctx.clock, exchanged.clone(), &session)
        .await;
    assert!(
        matches!(replay, Err(StorageError::InvalidTransition(_))),
        "got {replay:?}"
    );
    drop(repo);
    let mut repo = f.read().await.unwrap();
    assert_eq!(
        repo.device_code_grants()
            .find_by_device_code_hash(&token_hash("device-code-1"))
            .await
            .unwrap(),
        Some(exchanged)
    );
    drop(repo);

    // The other grant is rejected, then cannot be fulfilled.
    let mut repo = f.write().await.unwrap();
    let rejected = repo
        .device_code_grants()
        .reject(&ctx.clock, other.clone(), &browser)
        .await
        .unwrap();
    assert_eq!(
        rejected.stage,
        DeviceCodeGrantStage::Rejected {
            browser_session_id: browser.id,
            rejected_at: ctx.clock.now(),
        }
    );
    repo.save().await.unwrap();
    let mut repo = f.write().await.unwrap();
    assert_eq!(
        repo.device_code_grants()
            .find_by_user_code("WXYZ-1234")
            .await
            .unwrap(),
        Some(rejected.clone())
    );
    let stale = repo
        .device_code_grants()
        .fulfill(&ctx.clock, other.clone(), &browser)
        .await;
    assert!(
        matches!(stale, Err(StorageError::ConcurrentUpdate(_))),
        "got {stale:?}"
    );
    drop(repo);
    let mut repo = f.write().await.unwrap();
    let late = repo
        .device_code_grants()
        .fulfill(&ctx.clock, rejected, &browser)
        .await;
    assert!(
        matches!(late, Err(StorageError::InvalidTransition(_))),
        "got {late:?}"
    );
}
