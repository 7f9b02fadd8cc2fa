use chrono::Duration;

use crate::{RepositoryFactory, StorageError};

use super::{Ctx, oauth2::add_client};

pub async fn jti_is_single_use(f: &dyn RepositoryFactory) {
    let mut ctx = Ctx::default();
    let mut repo = f.write().await.unwrap();
    let a = add_client(&mut repo, &mut ctx).await;
    let mut params = super::oauth2::client_params();
    params.metadata_digest = None;
    let b = repo
        .oauth2_clients()
        .add(&mut ctx.rng, &ctx.clock, params)
        .await
        .unwrap();
    repo.save().await.unwrap();

    let exp = ctx.clock.now() + Duration::minutes(1);
    let mut repo = f.write().await.unwrap();
    repo.oauth2_client_assertions()
        .record_jti(&a, "jti-1", exp)
        .await
        .unwrap();
    let err = repo
        .oauth2_client_assertions()
        .record_jti(&a, "jti-1", exp)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::ConcurrentUpdate(_)),
        "a replay loses: {err:?}"
    );
    // The transaction is still usable after the lost insert (PostgreSQL).
    repo.oauth2_client_assertions()
        .record_jti(&b, "jti-1", exp)
        .await
        .expect("the same jti of another client is another assertion");
    repo.save().await.unwrap();

    // Two transactions racing for the same jti: one wins.
    let mut t1 = f.write().await.unwrap();
    t1.oauth2_client_assertions()
        .record_jti(&a, "jti-2", exp)
        .await
        .unwrap();
    t1.save().await.unwrap();
    let mut t2 = f.write().await.unwrap();
    assert!(matches!(
        t2.oauth2_client_assertions()
            .record_jti(&a, "jti-2", exp)
            .await,
        Err(StorageError::ConcurrentUpdate(_))
    ));
    drop(t2);

    // Expired jtis are forgotten.
    let mut repo = f.write().await.unwrap();
    assert_eq!(
        repo.oauth2_client_assertions()
            .remove_expired(&ctx.clock)
            .await
            .unwrap(),
        0
    );
    ctx.clock.advance(Duration::minutes(1));
    assert_eq!(
        repo.oauth2_client_assertions()
            .remove_expired(&ctx.clock)
            .await
            .unwrap(),
        3
    );
    repo.save().await.unwrap();
}
