use chrono::Duration;
use vestibule_domain::{
    oauth2::{
        ApplicationType, AuthorizationGrantStage, Client, ClientAuthMethod, Pkce, ResponseMode,
    },
    tokens::token_hash,
};

use crate::{
    BoxRepository, RepositoryFactory, StorageError,
    oauth2::{ClientParams, NewAuthorizationGrant},
};

use super::Ctx;

pub(super) fn client_params() -> ClientParams {
    ClientParams {
        client_name: Some("Element".to_owned()),
        client_uri: Some("https://element.example/".parse().unwrap()),
        logo_uri: None,
        policy_uri: None,
        tos_uri: None,
        redirect_uris: vec![
            "io.element.app:/callback".parse().unwrap(),
            "http://127.0.0.1/cb".parse().unwrap(),
        ],
        grant_types: vec!["authorization_code".to_owned(), "refresh_token".to_owned()],
        application_type: Some(ApplicationType::Native),
        token_endpoint_auth_method: ClientAuthMethod::None,
        encrypted_client_secret: None,
        jwks: None,
        jwks_uri: None,
        id_token_signed_response_alg: None,
        metadata_digest: Some("digest-1".to_owned()),
    }
}

pub(super) async fn add_client(repo: &mut BoxRepository, ctx: &mut Ctx) -> Client {
    repo.oauth2_clients()
        .add(&mut ctx.rng, &ctx.clock, client_params())
        .await
        .unwrap()
}

fn new_grant(code: &str) -> NewAuthorizationGrant {
    NewAuthorizationGrant {
        redirect_uri: "io.element.app:/callback".parse().unwrap(),
        scope: "openid urn:matrix:client:api:*".to_owned(),
        state: Some("xyz".to_owned()),
        nonce: Some("n-0S6".to_owned()),
        response_mode: ResponseMode::Fragment,
        pkce: Some(Pkce {
            challenge_method: "S256".to_owned(),
            challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".to_owned(),
        }),
        max_age: Some(3600),
        login_hint: Some("mxid:@alice:example.org".to_owned()),
        prompt: None,
        code_hash: token_hash(code),
    }
}

pub async fn clients(f: &dyn RepositoryFactory) {
    let mut ctx = Ctx::default();
    let mut repo = f.write().await.unwrap();
    let client = add_client(&mut repo, &mut ctx).await;
    assert_eq!(client.client_id, client.id.to_string());
    assert!(!client.is_static);
    let static_id = vestibule_domain::Ulid::from_string("0000000000000000000SYNAPSE").unwrap();
    let mut params = client_params();
    params.token_endpoint_auth_method = ClientAuthMethod::ClientSecretPost;
    params.encrypted_client_secret = Some("ciphertext".to_owned());
    params.metadata_digest = None;
    params.jwks = Some(serde_json::json!({"keys": []}));
    let st = repo
        .oauth2_clients()
        .upsert_static(&ctx.clock, static_id, params.clone())
        .await
        .unwrap();
    params.client_name = Some("Synapse".to_owned());
    let st2 = repo
        .oauth2_clients()
        .upsert_static(&ctx.clock, static_id, params)
        .await
        .unwrap();
    repo.save().await.unwrap();

    let mut repo = f.read().await.unwrap();
    assert_eq!(
        repo.oauth2_clients()
            .lookup(client.id)
            .await
            .unwrap()
            .unwrap(),
        client
    );
    assert_eq!(
        repo.oauth2_clients()
            .find_by_client_id(&client.client_id)
            .await
            .unwrap()
            .unwrap(),
        client
    );
    assert_eq!(
        repo.oauth2_clients()
            .find_by_metadata_digest("digest-1")
            .await
            .unwrap()
            .unwrap()
            .id,
        client.id
    );
    assert!(
        repo.oauth2_clients()
            .find_by_metadata_digest("other")
            .await
            .unwrap()
            .is_none()
    );
    let stored = repo
        .oauth2_clients()
        .find_by_client_id("0000000000000000000SYNAPSE")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(stored, st, "upsert replaced the first version");
    assert_eq!(stored, st2);
    assert!(stored.is_static);
    assert_eq!(
        stored.token_endpoint_auth_method,
        ClientAuthMethod::ClientSecretPost
    );
}

pub async fn grant_lifecycle(f: &dyn RepositoryFactory) {
    let mut ctx = Ctx::default();
    let mut repo = f.write().await.unwrap();
    let client = add_client(&mut repo, &mut ctx).await;
    let user = repo
        .users()
        .add(&mut ctx.rng, &ctx.clock, "alice")
        .await
        .unwrap();
    let grant = repo
        .oauth2_grants()
        .add(&mut ctx.rng, &ctx.clock, &client, new_grant("code-1"))
        .await
        .unwrap();
    assert_eq!(grant.stage, AuthorizationGrantStage::Pending);
    assert_eq!(
        repo.oauth2_grants()
            .find_by_code_hash(&token_hash("code-1"))
            .await
            .unwrap()
            .unwrap(),
        grant
    );
    assert!(
        repo.oauth2_grants()
            .find_by_code_hash("code-1")
            .await
            .unwrap()
            .is_none(),
        "found by hash only"
    );

    let session = repo
        .oauth2_sessions()
        .add(
            &mut ctx.rng,
            &ctx.clock,
            &client,
            Some(&user),
            None,
            &grant.scope,
        )
        .await
        .unwrap();
    let fulfilled = repo
        .oauth2_grants()
        .fulfill(&ctx.clock, &session, grant.clone())
        .await
        .unwrap();
    assert!(
        matches!(fulfilled.stage, AuthorizationGrantStage::Fulfilled { session_id, .. } if session_id == session.id)
    );
    repo.save().await.unwrap();

    let mut repo = f.write().await.unwrap();
    let stored = repo
        .oauth2_grants()
        .lookup(grant.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored, fulfilled,
        "stage and every field survive the round trip"
    );
    let err = repo
        .oauth2_grants()
        .cancel(&ctx.clock, stored)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::InvalidTransition(_)),
        "a fulfilled grant cannot be cancelled: {err:?}"
    );

    let other = repo
        .oauth2_grants()
        .add(&mut ctx.rng, &ctx.clock, &client, new_grant("code-2"))
        .await
        .unwrap();
    let cancelled = repo
        .oauth2_grants()
        .cancel(&ctx.clock, other)
        .await
        .unwrap();
    assert!(matches!(
        cancelled.stage,
        AuthorizationGrantStage::Cancelled { .. }
    ));
    repo.save().await.unwrap();
    let mut repo = f.read().await.unwrap();
    assert_eq!(
        repo.oauth2_grants()
            .lookup(cancelled.id)
            .await
            .unwrap()
            .unwrap(),
        cancelled
    );
}

pub async fn code_exchange_is_single_use(f: &dyn RepositoryFactory) {
    let mut ctx = Ctx::default();
    let mut repo = f.write().await.unwrap();
    let client = add_client(&mut repo, &mut ctx).await;
    let grant = repo
        .oauth2_grants()
        .add(&mut ctx.rng, &ctx.clock, &client, new_grant("code"))
        .await
        .unwrap();
    let session = repo
        .oauth2_sessions()
        .add(&mut ctx.rng, &ctx.clock, &client, None, None, "x")
        .await
        .unwrap();
    let fulfilled = repo
        .oauth2_grants()
        .fulfill(&ctx.clock, &session, grant)
        .await
        .unwrap();
    repo.save().await.unwrap();

    // Two callers read the same fulfilled grant; both try to exchange it.
    let mut a = f.write().await.unwrap();
    let exchanged = a
        .oauth2_grants()
        .exchange(&ctx.clock, fulfilled.clone())
        .await
        .unwrap();
    assert!(matches!(
        exchanged.stage,
        AuthorizationGrantStage::Exchanged { .. }
    ));
    a.save().await.unwrap();
    let mut b = f.write().await.unwrap();
    let err = b
        .oauth2_grants()
        .exchange(&ctx.clock, fulfilled)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::ConcurrentUpdate(_)),
        "the stale copy loses: {err:?}"
    );
    drop(b);
    let mut c = f.write().await.unwrap();
    let err = c
        .oauth2_grants()
        .exchange(&ctx.clock, exchanged)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::InvalidTransition(_)),
        "an exchanged grant cannot be exchanged: {err:?}"
    );
}

pub async fn sessions_and_tokens(f: &dyn RepositoryFactory) {
    let mut ctx = Ctx::default();
    let mut repo = f.write().await.unwrap();
    let client = add_client(&mut repo, &mut ctx).await;
    let user = repo
        .users()
        .add(&mut ctx.rng, &ctx.clock, "alice")
        .await
        .unwrap();
    let bs = repo
        .browser_sessions()
        .add(&mut ctx.rng, &ctx.clock, &user, None)
        .await
        .unwrap();
    let session = repo
        .oauth2_sessions()
        .add(
            &mut ctx.rng,
            &ctx.clock,
            &client,
            Some(&user),
            Some(&bs),
            "urn:matrix:client:api:* urn:matrix:client:device:ABCDEF",
        )
        .await
        .unwrap();
    let at = repo
        .oauth2_access_tokens()
        .add(
            &mut ctx.rng,
            &ctx.clock,
            &session,
            &token_hash("mat_1"),
            Some(Duration::minutes(5)),
        )
        .await
        .unwrap();
    let rt = repo
        .oauth2_refresh_tokens()
        .add(
            &mut ctx.rng,
            &ctx.clock,
            &session,
            &at,
            &token_hash("mar_1"),
        )
        .await
        .unwrap();
    repo.save().await.unwrap();

    let mut repo = f.write().await.unwrap();
    let found = repo
        .oauth2_access_tokens()
        .find_by_hash(&token_hash("mat_1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, at);
    assert!(found.is_valid(ctx.clock.now()));
    assert!(
        !found.is_valid(ctx.clock.now() + Duration::minutes(5)),
        "expires after its lifetime"
    );
    assert!(
        repo.oauth2_access_tokens()
            .find_by_hash("mat_1")
            .await
            .unwrap()
            .is_none(),
        "never by plaintext"
    );
    let used = repo
        .oauth2_access_tokens()
        .mark_used(&ctx.clock, found)
        .await
        .unwrap();
    assert!(used.first_used_at.is_some());
    assert_eq!(
        repo.oauth2_refresh_tokens()
            .find_by_hash(&token_hash("mar_1"))
            .await
            .unwrap()
            .unwrap(),
        rt
    );
    assert_eq!(
        repo.oauth2_sessions()
            .list_active_for_user(&user)
            .await
            .unwrap(),
        vec![session.clone()]
    );
    let stored = repo
        .oauth2_sessions()
        .lookup(session.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.scopes().collect::<Vec<_>>(),
        ["urn:matrix:client:api:*", "urn:matrix:client:device:ABCDEF"]
    );

    // Ending the session: tokens revoked, session finished, only once.
    assert_eq!(
        repo.oauth2_access_tokens()
            .revoke_all_for_session(&ctx.clock, &session)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        repo.oauth2_refresh_tokens()
            .revoke_all_for_session(&ctx.clock, &session)
            .await
            .unwrap(),
        1
    );
    let finished = repo
        .oauth2_sessions()
        .finish(&ctx.clock, stored.clone())
        .await
        .unwrap();
    assert!(!finished.is_valid());
    repo.save().await.unwrap();
    let mut repo = f.write().await.unwrap();
    let err = repo
        .oauth2_sessions()
        .finish(&ctx.clock, stored)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::ConcurrentUpdate(_)), "{err:?}");
    drop(repo);
    let mut repo = f.write().await.unwrap();
    let at = repo
        .oauth2_access_tokens()
        .lookup(at.id)
        .await
        .unwrap()
        .unwrap();
    assert!(!at.is_valid(ctx.clock.now()), "revoked");
    assert!(
        !repo
            .oauth2_refresh_tokens()
            .lookup(rt.id)
            .await
            .unwrap()
            .unwrap()
            .is_valid()
    );
    assert!(
        repo.oauth2_sessions()
            .list_active_for_user(&user)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        repo.oauth2_sessions()
            .finish_all_for_user(&ctx.clock, &user)
            .await
            .unwrap(),
        0
    );
}

pub async fn refresh_rotation_is_single_use(f: &dyn RepositoryFactory) {
    let mut ctx = Ctx::default();
    let mut repo = f.write().await.unwrap();
    let client = add_client(&mut repo, &mut ctx).await;
    let session = repo
        .oauth2_sessions()
        .add(&mut ctx.rng, &ctx.clock, &client, None, None, "x")
        .await
        .unwrap();
    let at1 = repo
        .oauth2_access_tokens()
        .add(&mut ctx.rng, &ctx.clock, &session, "h-at1", None)
        .await
        .unwrap();
    let rt1 = repo
        .oauth2_refresh_tokens()
        .add(&mut ctx.rng, &ctx.clock, &session, &at1, "h-rt1")
        .await
        .unwrap();
    repo.save().await.unwrap();

    let mut a = f.write().await.unwrap();
    let at2 = a
        .oauth2_access_tokens()
        .add(&mut ctx.rng, &ctx.clock, &session, "h-at2", None)
        .await
        .unwrap();
    let rt2 = a
        .oauth2_refresh_tokens()
        .add(&mut ctx.rng, &ctx.clock, &session, &at2, "h-rt2")
        .await
        .unwrap();
    let consumed = a
        .oauth2_refresh_tokens()
        .consume(&ctx.clock, rt1.clone(), &rt2)
        .await
        .unwrap();
    assert_eq!(consumed.next_refresh_token_id, Some(rt2.id));
    a.save().await.unwrap();

    // A second refresh with the same (stale) RT1 loses the compare-and-set.
    let mut b = f.write().await.unwrap();
    let at3 = b
        .oauth2_access_tokens()
        .add(&mut ctx.rng, &ctx.clock, &session, "h-at3", None)
        .await
        .unwrap();
    let rt3 = b
        .oauth2_refresh_tokens()
        .add(&mut ctx.rng, &ctx.clock, &session, &at3, "h-rt3")
        .await
        .unwrap();
    let err = b
        .oauth2_refresh_tokens()
        .consume(&ctx.clock, rt1.clone(), &rt3)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::ConcurrentUpdate(_)), "{err:?}");
    drop(b);

    let mut repo = f.read().await.unwrap();
    let stored = repo
        .oauth2_refresh_tokens()
        .lookup(rt1.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.next_refresh_token_id,
        Some(rt2.id),
        "the winner's successor is recorded"
    );
    assert!(
        repo.oauth2_refresh_tokens()
            .find_by_hash("h-rt3")
            .await
            .unwrap()
            .is_none(),
        "the loser's writes rolled back"
    );
}
