use chrono::Duration;

use crate::{RepositoryFactory, StorageError};

use super::{Ctx, oauth2::add_client};

/// A narrowed access token scope survives the round trip; `None` stays
/// `None` (the session's scope).
pub async fn access_token_scope(f: &dyn RepositoryFactory) {
    let mut ctx = Ctx::default();
    let mut repo = f.write().await.unwrap();
    let client = add_client(&mut repo, &mut ctx).await;
    let session = repo
        .oauth2_sessions()
        .add(
            &mut ctx.rng,
            &ctx.clock,
            &client,
            None,
            None,
            "openid email",
        )
        .await
        .unwrap();
    let narrow = repo
        .oauth2_access_tokens()
        .add_with_scope(
            &mut ctx.rng,
            &ctx.clock,
            &session,
            "h-narrow",
            Some(Duration::minutes(5)),
            Some("openid"),
        )
        .await
        .unwrap();
    let full = repo
        .oauth2_access_tokens()
        .add(&mut ctx.rng, &ctx.clock, &session, "h-full", None)
        .await
        .unwrap();
    repo.save().await.unwrap();

    let mut repo = f.read().await.unwrap();
    let stored = repo
        .oauth2_access_tokens()
        .find_by_hash("h-narrow")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, narrow);
    assert_eq!(stored.scope.as_deref(), Some("openid"));
    let stored = repo
        .oauth2_access_tokens()
        .lookup(full.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.scope, None);
}

/// `revoke_if_unused` is a compare-and-set on both token kinds: a used (or
/// consumed) token, or one already revoked, is left alone.
pub async fn revoke_if_unused(f: &dyn RepositoryFactory) {
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
    let at2 = repo
        .oauth2_access_tokens()
        .add(&mut ctx.rng, &ctx.clock, &session, "h-at2", None)
        .await
        .unwrap();
    let rt1 = repo
        .oauth2_refresh_tokens()
        .add(&mut ctx.rng, &ctx.clock, &session, &at1, "h-rt1")
        .await
        .unwrap();
    let rt2 = repo
        .oauth2_refresh_tokens()
        .add(&mut ctx.rng, &ctx.clock, &session, &at2, "h-rt2")
        .await
        .unwrap();
    repo.save().await.unwrap();

    let mut repo = f.write().await.unwrap();
    let used = repo
        .oauth2_access_tokens()
        .mark_used(&ctx.clock, at1)
        .await
        .unwrap();
    assert!(matches!(
        repo.oauth2_access_tokens()
            .revoke_if_unused(&ctx.clock, used)
            .await,
        Err(StorageError::ConcurrentUpdate(_))
    ));
    let revoked = repo
        .oauth2_access_tokens()
        .revoke_if_unused(&ctx.clock, at2.clone())
        .await
        .unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(matches!(
        repo.oauth2_access_tokens()
            .revoke_if_unused(&ctx.clock, at2)
            .await,
        Err(StorageError::ConcurrentUpdate(_))
    ));

    let consumed = repo
        .oauth2_refresh_tokens()
        .consume(&ctx.clock, rt1, &rt2)
        .await
        .unwrap();
    assert!(matches!(
        repo.oauth2_refresh_tokens()
            .revoke_if_unused(&ctx.clock, consumed)
            .await,
        Err(StorageError::ConcurrentUpdate(_))
    ));
    let revoked = repo
        .oauth2_refresh_tokens()
        .revoke_if_unused(&ctx.clock, rt2.clone())
        .await
        .unwrap();
    assert!(!revoked.is_valid());
    assert!(matches!(
        repo.oauth2_refresh_tokens()
            .revoke_if_unused(&ctx.clock, rt2.clone())
            .await,
        Err(StorageError::ConcurrentUpdate(_))
    ));
    repo.save().await.unwrap();
    let mut repo = f.read().await.unwrap();
    assert!(
        repo.oauth2_refresh_tokens()
            .lookup(rt2.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
}
