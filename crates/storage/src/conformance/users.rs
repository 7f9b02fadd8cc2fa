use crate::{RepositoryFactory, StorageError};

use super::Ctx;

pub async fn users_crud(f: &dyn RepositoryFactory) {
    let mut ctx = Ctx::default();
    let mut repo = f.write().await.unwrap();
    let alice = repo
        .users()
        .add(&mut ctx.rng, &ctx.clock, "alice")
        .await
        .unwrap();
    assert_eq!(alice.username, "alice");
    assert!(alice.is_valid());
    repo.save().await.unwrap();

    let mut repo = f.read().await.unwrap();
    let found = repo.users().lookup(alice.id).await.unwrap().unwrap();
    assert_eq!(
        found, alice,
        "lookup returns what was stored, timestamps included"
    );
    let by_name = repo
        .users()
        .find_by_username("alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_name.id, alice.id);
    assert!(
        repo.users()
            .find_by_username("bob")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        repo.users()
            .find_by_username("ALICE")
            .await
            .unwrap()
            .is_none(),
        "usernames are exact"
    );
    assert_eq!(repo.users().count().await.unwrap(), 1);
}

pub async fn username_is_unique(f: &dyn RepositoryFactory) {
    let mut ctx = Ctx::default();
    let mut repo = f.write().await.unwrap();
    repo.users()
        .add(&mut ctx.rng, &ctx.clock, "alice")
        .await
        .unwrap();
    let err = repo
        .users()
        .add(&mut ctx.rng, &ctx.clock, "alice")
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::UniqueViolation(_)),
        "got {err:?}"
    );
}

pub async fn lock_deactivate_admin(f: &dyn RepositoryFactory) {
    let mut ctx = Ctx::default();
    let mut repo = f.write().await.unwrap();
    let user = repo
        .users()
        .add(&mut ctx.rng, &ctx.clock, "carol")
        .await
        .unwrap();
    let user = repo.users().lock(&ctx.clock, user).await.unwrap();
    assert!(user.locked_at.is_some());
    let user = repo
        .users()
        .set_can_request_admin(user, true)
        .await
        .unwrap();
    let user = repo.users().deactivate(&ctx.clock, user).await.unwrap();
    repo.save().await.unwrap();

    let mut repo = f.write().await.unwrap();
    let stored = repo.users().lookup(user.id).await.unwrap().unwrap();
    assert!(
        stored.locked_at.is_some() && stored.deactivated_at.is_some() && stored.can_request_admin
    );
    assert!(!stored.is_valid());
    let stored = repo.users().unlock(stored).await.unwrap();
    let stored = repo.users().reactivate(stored).await.unwrap();
    repo.save().await.unwrap();
    let mut repo = f.read().await.unwrap();
    let again = repo.users().lookup(stored.id).await.unwrap().unwrap();
    assert!(again.is_valid());
    assert_eq!(again, stored);
}

pub async fn list_paginates(f: &dyn RepositoryFactory) {
    let mut ctx = Ctx::default();
    let mut repo = f.write().await.unwrap();
    for i in 0..5 {
        repo.users()
            .add(&mut ctx.rng, &ctx.clock, &format!("user{i}"))
            .await
            .unwrap();
        ctx.clock.advance(chrono::Duration::seconds(1));
    }
    repo.save().await.unwrap();
    let mut repo = f.read().await.unwrap();
    let first = repo.users().list(None, 2).await.unwrap();
    assert_eq!(
        first
            .iter()
            .map(|u| u.username.as_str())
            .collect::<Vec<_>>(),
        ["user0", "user1"]
    );
    let next = repo.users().list(Some(first[1].id), 10).await.unwrap();
    assert_eq!(next.len(), 3);
    assert_eq!(next[0].username, "user2");
}

pub async fn emails(f: &dyn RepositoryFactory) {
    let mut ctx = Ctx::default();
    let mut repo = f.write().await.unwrap();
    let user = repo
        .users()
        .add(&mut ctx.rng, &ctx.clock, "dave")
        .await
        .unwrap();
    let e = repo
        .user_emails()
        .add(&mut ctx.rng, &ctx.clock, &user, "Dave@Example.org")
        .await
        .unwrap();
    let found = repo
        .user_emails()
        .find_by_email("dave@example.ORG")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, e, "email lookup ignores case");
    let other = repo
        .users()
        .add(&mut ctx.rng, &ctx.clock, "eve")
        .await
        .unwrap();
    repo.save().await.unwrap();
    // A failed statement aborts the transaction on PostgreSQL: try the
    // duplicate in a transaction of its own.
    let mut repo = f.write().await.unwrap();
    let dup = repo
        .user_emails()
        .add(&mut ctx.rng, &ctx.clock, &other, "dave@example.org")
        .await;
    assert!(
        matches!(dup, Err(StorageError::UniqueViolation(_))),
        "an address belongs to one user"
    );
    drop(repo);
    let mut repo = f.write().await.unwrap();
    assert_eq!(
        repo.user_emails().all(&user).await.unwrap(),
        vec![e.clone()]
    );
    repo.user_emails().remove(e).await.unwrap();
    assert!(repo.user_emails().all(&user).await.unwrap().is_empty());
}

pub async fn passwords_newest_wins(f: &dyn RepositoryFactory) {
    let mut ctx = Ctx::default();
    let mut repo = f.write().await.unwrap();
    let user = repo
        .users()
        .add(&mut ctx.rng, &ctx.clock, "frank")
        .await
        .unwrap();
    assert!(repo.user_passwords().active(&user).await.unwrap().is_none());
    let old = repo
        .user_passwords()
        .add(
            &mut ctx.rng,
            &ctx.clock,
            &user,
            0,
            "$2b$12$old".to_owned(),
            None,
        )
        .await
        .unwrap();
    ctx.clock.advance(chrono::Duration::seconds(1));
    let new = repo
        .user_passwords()
        .add(
            &mut ctx.rng,
            &ctx.clock,
            &user,
            1,
            "$argon2id$new".to_owned(),
            Some(&old),
        )
        .await
        .unwrap();
    let active = repo.user_passwords().active(&user).await.unwrap().unwrap();
    assert_eq!(active, new);
    assert_eq!(active.upgraded_from_id, Some(old.id));
    assert_eq!(active.version, 1);
}

pub async fn rollback_on_drop(f: &dyn RepositoryFactory) {
    let mut ctx = Ctx::default();
    {
        let mut repo = f.write().await.unwrap();
        repo.users()
            .add(&mut ctx.rng, &ctx.clock, "ghost")
            .await
            .unwrap();
        // dropped without save
    }
    let mut repo = f.write().await.unwrap();
    repo.users()
        .add(&mut ctx.rng, &ctx.clock, "kept")
        .await
        .unwrap();
    repo.cancel().await.unwrap();
    let mut repo = f.read().await.unwrap();
    assert!(
        repo.users()
            .find_by_username("ghost")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        repo.users()
            .find_by_username("kept")
            .await
            .unwrap()
            .is_none()
    );
}

/// Attributes beyond the fixed set: set reports a change, an identical
/// value is not one, values are per user, and they go with the user.
pub async fn user_attributes(f: &dyn RepositoryFactory) {
    let mut ctx = Ctx::default();
    let mut repo = f.write().await.unwrap();
    let alice = repo
        .users()
        .add(&mut ctx.rng, &ctx.clock, "alice")
        .await
        .unwrap();
    let bob = repo
        .users()
        .add(&mut ctx.rng, &ctx.clock, "bob")
        .await
        .unwrap();
    {
        let mut a = repo.user_attributes();
        assert!(a.set(&ctx.clock, &alice, "tenant_id", "t-1").await.unwrap());
        assert!(
            !a.set(&ctx.clock, &alice, "tenant_id", "t-1").await.unwrap(),
            "the same value is no change"
        );
        assert!(a.set(&ctx.clock, &alice, "tenant_id", "t-2").await.unwrap());
        assert!(a.set(&ctx.clock, &alice, "dept", "ops").await.unwrap());
        assert!(a.set(&ctx.clock, &bob, "tenant_id", "t-9").await.unwrap());
    }
    repo.save().await.unwrap();

    let mut repo = f.write().await.unwrap();
    let all = repo.user_attributes().all(&alice).await.unwrap();
    assert_eq!(
        all.into_iter().collect::<Vec<_>>(),
        vec![
            ("dept".to_owned(), "ops".to_owned()),
            ("tenant_id".to_owned(), "t-2".to_owned())
        ]
    );
    assert!(repo.user_attributes().remove(&alice, "dept").await.unwrap());
    assert!(!repo.user_attributes().remove(&alice, "dept").await.unwrap());
    assert_eq!(
        repo.user_attributes()
            .all(&bob)
            .await
            .unwrap()
            .get("tenant_id")
            .map(String::as_str),
        Some("t-9")
    );
    repo.save().await.unwrap();
}
