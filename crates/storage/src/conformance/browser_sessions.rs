use vestibule_domain::browser_session::AuthenticationMethod;

use crate::RepositoryFactory;

use super::Ctx;

pub async fn browser_sessions(f: &dyn RepositoryFactory) {
    let mut ctx = Ctx::default();
    let mut repo = f.write().await.unwrap();
    let user = repo
        .users()
        .add(&mut ctx.rng, &ctx.clock, "alice")
        .await
        .unwrap();
    let password = repo
        .user_passwords()
        .add(
            &mut ctx.rng,
            &ctx.clock,
            &user,
            1,
            "$argon2id$x".to_owned(),
            None,
        )
        .await
        .unwrap();
    let s1 = repo
        .browser_sessions()
        .add(&mut ctx.rng, &ctx.clock, &user, Some("Firefox"))
        .await
        .unwrap();
    let s2 = repo
        .browser_sessions()
        .add(&mut ctx.rng, &ctx.clock, &user, None)
        .await
        .unwrap();
    assert!(
        repo.browser_sessions()
            .last_authentication(&s1)
            .await
            .unwrap()
            .is_none()
    );
    let a1 = repo
        .browser_sessions()
        .authenticate_with_password(&mut ctx.rng, &ctx.clock, &s1, &password)
        .await
        .unwrap();
    ctx.clock.advance(chrono::Duration::minutes(5));
    let a2 = repo
        .browser_sessions()
        .authenticate_with_password(&mut ctx.rng, &ctx.clock, &s1, &password)
        .await
        .unwrap();
    repo.save().await.unwrap();

    let mut repo = f.write().await.unwrap();
    let stored = repo
        .browser_sessions()
        .lookup(s1.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, s1);
    assert_eq!(stored.user_agent.as_deref(), Some("Firefox"));
    let last = repo
        .browser_sessions()
        .last_authentication(&s1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last, a2, "the newest authentication is the last one");
    assert_ne!(last.id, a1.id);
    assert_eq!(
        last.method,
        AuthenticationMethod::Password {
            user_password_id: password.id
        }
    );

    let finished = repo
        .browser_sessions()
        .finish(&ctx.clock, stored)
        .await
        .unwrap();
    assert!(!finished.is_active());
    // Only s2 is still active.
    let active = repo
        .browser_sessions()
        .list_active_for_user(&user)
        .await
        .unwrap();
    assert_eq!(
        active.iter().map(|s| s.id).collect::<Vec<_>>(),
        [s2.id],
        "a finished session is not listed"
    );
    assert_eq!(
        repo.browser_sessions()
            .finish_all_for_user(&ctx.clock, &user)
            .await
            .unwrap(),
        1
    );
    repo.save().await.unwrap();
    let mut repo = f.read().await.unwrap();
    assert!(
        repo.browser_sessions()
            .lookup(s2.id)
            .await
            .unwrap()
            .unwrap()
            .finished_at
            .is_some()
    );
    assert!(
        repo.browser_sessions()
            .lookup(vestibule_domain::Ulid::nil())
            .await
            .unwrap()
            .is_none()
    );
}
