use chrono::Duration;
use vestibule_domain::{compat::CompatSsoLoginStage, tokens::token_hash};

use super::Ctx;
use crate::{RepositoryFactory, StorageError};

pub async fn compat_sessions_and_tokens(f: &dyn RepositoryFactory) {
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
    let browser = repo
        .browser_sessions()
        .add(&mut ctx.rng, &ctx.clock, &alice, Some("Firefox"))
        .await
        .unwrap();
    let phone = repo
        .compat_sessions()
        .add(
            &mut ctx.rng,
            &ctx.clock,
            &alice,
            "PHONE",
            Some("Alice's phone"),
            Some(&browser),
            false,
        )
        .await
        .unwrap();
    assert!(phone.is_valid());
    assert_eq!(phone.browser_session_id, Some(browser.id));
    ctx.clock.advance(Duration::seconds(1));
    let laptop = repo
        .compat_sessions()
        .add(&mut ctx.rng, &ctx.clock, &alice, "LAPTOP", None, None, true)
        .await
        .unwrap();
    let bobs_phone = repo
        .compat_sessions()
        .add(&mut ctx.rng, &ctx.clock, &bob, "PHONE", None, None, false)
        .await
        .unwrap();
    let access = repo
        .compat_access_tokens()
        .add(
            &mut ctx.rng,
            &ctx.clock,
            &phone,
            &token_hash("mct_access"),
            Some(Duration::minutes(5)),
        )
        .await
        .unwrap();
    assert_eq!(
        access.expires_at,
        Some(access.created_at + Duration::minutes(5))
    );
    let forever = repo
        .compat_access_tokens()
        .add(
            &mut ctx.rng,
            &ctx.clock,
            &laptop,
            &token_hash("mct_forever"),
            None,
        )
        .await
        .unwrap();
    let refresh = repo
        .compat_refresh_tokens()
        .add(
            &mut ctx.rng,
            &ctx.clock,
            &phone,
            &access,
            &token_hash("mcr_refresh"),
        )
        .await
        .unwrap();
    assert_eq!(refresh.access_token_id, access.id);
    assert!(refresh.consumed_at.is_none());
    repo.save().await.unwrap();

    // Round trips and lookups.
    let mut repo = f.read().await.unwrap();
    for s in [&phone, &laptop, &bobs_phone] {
        assert_eq!(
            repo.compat_sessions().lookup(s.id).await.unwrap().as_ref(),
            Some(s),
            "lookup returns what was stored, timestamps included"
        );
    }
    assert_eq!(
        repo.compat_sessions()
            .find_active_by_device(&alice, "PHONE")
            .await
            .unwrap(),
        Some(phone.clone())
    );
    assert_eq!(
        repo.compat_sessions()
            .find_active_by_device(&bob, "PHONE")
            .await
            .unwrap(),
        Some(bobs_phone.clone()),
        "device ids are per user"
    );
    assert!(
        repo.compat_sessions()
            .find_active_by_device(&alice, "phone")
            .await
            .unwrap()
            .is_none(),
        "device ids are exact"
    );
    assert_eq!(
        repo.compat_access_tokens()
            .find_by_hash(&token_hash("mct_access"))
            .await
            .unwrap(),
        Some(access.clone())
    );
    assert_eq!(
        repo.compat_access_tokens()
            .lookup(forever.id)
            .await
            .unwrap(),
        Some(forever.clone())
    );
    assert!(
        repo.compat_access_tokens()
            .find_by_hash(&token_hash("mct_unknown"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        repo.compat_access_tokens()
            .find_by_hash("mct_access")
            .await
            .unwrap()
            .is_none(),
        "only the hash finds a token"
    );
    assert_eq!(
        repo.compat_refresh_tokens()
            .find_by_hash(&token_hash("mcr_refresh"))
            .await
            .unwrap(),
        Some(refresh.clone())
    );
    drop(repo);

    // A token hash belongs to one token.
    let mut repo = f.write().await.unwrap();
    let dup = repo
        .compat_access_tokens()
        .add(
            &mut ctx.rng,
            &ctx.clock,
            &laptop,
            &token_hash("mct_access"),
            None,
        )
        .await;
    assert!(
        matches!(dup, Err(StorageError::UniqueViolation(_))),
        "got {dup:?}"
    );
    drop(repo);

    // Refresh tokens are used once.
    ctx.clock.advance(Duration::seconds(10));
    let mut repo = f.write().await.unwrap();
    let consumed = repo
        .compat_refresh_tokens()
        .consume(&ctx.clock, refresh.clone())
        .await
        .unwrap();
    assert_eq!(consumed.consumed_at, Some(ctx.clock.now()));
    repo.save().await.unwrap();
    let mut repo = f.write().await.unwrap();
    let again = repo
        .compat_refresh_tokens()
        .consume(&ctx.clock, refresh.clone())
        .await;
    assert!(
        matches!(again, Err(StorageError::ConcurrentUpdate(_))),
        "a second consume of a stale copy loses the compare-and-set, got {again:?}"
    );
    drop(repo);
    let mut repo = f.write().await.unwrap();
    let again = repo
        .compat_refresh_tokens()
        .consume(&ctx.clock, consumed.clone())
        .await;
    assert!(
        matches!(again, Err(StorageError::InvalidTransition(_))),
        "got {again:?}"
    );
    drop(repo);
    let mut repo = f.read().await.unwrap();
    assert_eq!(
        repo.compat_refresh_tokens()
            .find_by_hash(&token_hash("mcr_refresh"))
            .await
            .unwrap(),
        Some(consumed)
    );
    drop(repo);

    // Expiring a token makes it expire now, and never later than before.
    let mut repo = f.write().await.unwrap();
    let expired = repo
        .compat_access_tokens()
        .expire(&ctx.clock, forever.clone())
        .await
        .unwrap();
    assert_eq!(expired.expires_at, Some(ctx.clock.now()));
    let early = repo
        .compat_access_tokens()
        .expire(&ctx.clock, access.clone())
        .await
        .unwrap();
    assert_eq!(early.expires_at, Some(ctx.clock.now()));
    repo.save().await.unwrap();
    let first_expiry = ctx.clock.now();
    ctx.clock.advance(Duration::minutes(10));
    let mut repo = f.write().await.unwrap();
    let still = repo
        .compat_access_tokens()
        .expire(&ctx.clock, expired.clone())
        .await
        .unwrap();
    assert_eq!(still.expires_at, Some(first_expiry));
    repo.save().await.unwrap();
    let mut repo = f.read().await.unwrap();
    assert_eq!(
        repo.compat_access_tokens()
            .lookup(forever.id)
            .await
            .unwrap(),
        Some(expired)
    );
    assert_eq!(
        repo.compat_access_tokens().lookup(access.id).await.unwrap(),
        Some(early)
    );
    drop(repo);

    // Finishing a session; find_active_by_device ignores finished sessions.
    let mut repo = f.write().await.unwrap();
    let finished = repo
        .compat_sessions()
        .finish(&ctx.clock, phone.clone())
        .await
        .unwrap();
    assert_eq!(finished.finished_at, Some(ctx.clock.now()));
    assert!(!finished.is_valid());
    assert!(
        repo.compat_sessions()
            .find_active_by_device(&alice, "PHONE")
            .await
            .unwrap()
            .is_none(),
        "a finished session is not active"
    );
    ctx.clock.advance(Duration::seconds(1));
    let phone2 = repo
        .compat_sessions()
        .add(&mut ctx.rng, &ctx.clock, &alice, "PHONE", None, None, false)
        .await
        .unwrap();
    assert_eq!(
        repo.compat_sessions()
            .find_active_by_device(&alice, "PHONE")
            .await
            .unwrap(),
        Some(phone2.clone()),
        "the device id can be reused once the old session is finished"
    );
    repo.save().await.unwrap();

    let mut repo = f.write().await.unwrap();
    assert_eq!(
        repo.compat_sessions().lookup(phone.id).await.unwrap(),
        Some(finished.clone())
    );
    let twice = repo
        .compat_sessions()
        .finish(&ctx.clock, finished.clone())
        .await;
    assert!(
        matches!(twice, Err(StorageError::InvalidTransition(_))),
        "got {twice:?}"
    );
    drop(repo);
    let mut repo = f.write().await.unwrap();
    let stale = repo
        .compat_sessions()
        .finish(&ctx.clock, phone.clone())
        .await;
    assert!(
        matches!(stale, Err(StorageError::ConcurrentUpdate(_))),
        "got {stale:?}"
    );
    drop(repo);

    // list_active_for_user: only this user's unfinished sessions.
    let mut repo = f.read().await.unwrap();
    let mut active: Vec<String> = repo
        .compat_sessions()
        .list_active_for_user(&alice)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.device_id)
        .collect();
    active.sort();
    assert_eq!(active, ["LAPTOP", "PHONE"], "laptop and the second phone");
    drop(repo);

    // finish_all_for_user counts only the sessions it ended.
    ctx.clock.advance(Duration::seconds(1));
    let mut repo = f.write().await.unwrap();
    assert_eq!(
        repo.compat_sessions()
            .finish_all_for_user(&ctx.clock, &alice)
            .await
            .unwrap(),
        2,
        "laptop and the second phone session"
    );
    assert_eq!(
        repo.compat_sessions()
            .finish_all_for_user(&ctx.clock, &alice)
            .await
            .unwrap(),
        0
    );
    repo.save().await.unwrap();
    let mut repo = f.read().await.unwrap();
    let laptop_now = repo
        .compat_sessions()
        .lookup(laptop.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(laptop_now.finished_at, Some(ctx.clock.now()));
    assert_eq!(
        repo.compat_sessions()
            .lookup(phone.id)
            .await
            .unwrap()
            .unwrap()
            .finished_at,
        finished.finished_at,
        "an already finished session keeps its finish time"
    );
    assert_eq!(
        repo.compat_sessions().lookup(bobs_phone.id).await.unwrap(),
        Some(bobs_phone.clone()),
        "other users' sessions are untouched"
    );
    assert!(
        repo.compat_sessions()
            .find_active_by_device(&alice, "LAPTOP")
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn compat_sso_login(f: &dyn RepositoryFactory) {
    let mut ctx = Ctx::default();
    let redirect: url::Url = "https://app.example.org/login?after=1".parse().unwrap();
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
    let login = repo
        .compat_sso_logins()
        .add(
            &mut ctx.rng,
            &ctx.clock,
            &token_hash("loginToken"),
            &redirect,
        )
        .await
        .unwrap();
    assert_eq!(login.stage, CompatSsoLoginStage::Pending);
    assert_eq!(login.redirect_uri, redirect);
    repo.save().await.unwrap();

    let mut repo = f.read().await.unwrap();
    assert_eq!(
        repo.compat_sso_logins().lookup(login.id).await.unwrap(),
        Some(login.clone())
    );
    assert_eq!(
        repo.compat_sso_logins()
            .find_by_token_hash(&token_hash("loginToken"))
            .await
            .unwrap(),
        Some(login.clone())
    );
    assert!(
        repo.compat_sso_logins()
            .find_by_token_hash(&token_hash("other"))
            .await
            .unwrap()
            .is_none()
    );
    drop(repo);

    // A pending login cannot be exchanged.
    let mut repo = f.write().await.unwrap();
    let session = repo
        .compat_sessions()
        .add(
            &mut ctx.rng,
            &ctx.clock,
            &alice,
            "SSODEVICE",
            None,
            Some(&browser),
            false,
        )
        .await
        .unwrap();
    repo.save().await.unwrap();
    let mut repo = f.write().await.unwrap();
    let early = repo
        .compat_sso_logins()
        .exchange(&ctx.clock, login.clone(), &session)
        .await;
    assert!(
        matches!(early, Err(StorageError::InvalidTransition(_))),
        "got {early:?}"
    );
    drop(repo);

    // Fulfil once.
    ctx.clock.advance(Duration::seconds(5));
    let mut repo = f.write().await.unwrap();
    let fulfilled = repo
        .compat_sso_logins()
        .fulfill(&ctx.clock, login.clone(), &browser)
        .await
        .unwrap();
    assert_eq!(
        fulfilled.stage,
        CompatSsoLoginStage::Fulfilled {
            browser_session_id: browser.id,
            fulfilled_at: ctx.clock.now(),
        }
    );
    repo.save().await.unwrap();
    let mut repo = f.write().await.unwrap();
    assert_eq!(
        repo.compat_sso_logins().lookup(login.id).await.unwrap(),
        Some(fulfilled.clone())
    );
    let stale = repo
        .compat_sso_logins()
        .fulfill(&ctx.clock, login.clone(), &browser)
        .await;
    assert!(
        matches!(stale, Err(StorageError::ConcurrentUpdate(_))),
        "a stale pending copy loses the compare-and-set, got {stale:?}"
    );
    drop(repo);
    let mut repo = f.write().await.unwrap();
    let twice = repo
        .compat_sso_logins()
        .fulfill(&ctx.clock, fulfilled.clone(), &browser)
        .await;
    assert!(
        matches!(twice, Err(StorageError::InvalidTransition(_))),
        "got {twice:?}"
    );
    drop(repo);

    // Exchange once.
    ctx.clock.advance(Duration::seconds(5));
    let mut repo = f.write().await.unwrap();
    let exchanged = repo
        .compat_sso_logins()
        .exchange(&ctx.clock, fulfilled.clone(), &session)
        .await
        .unwrap();
    assert_eq!(
        exchanged.stage,
        CompatSsoLoginStage::Exchanged {
            browser_session_id: browser.id,
            fulfilled_at: ctx.clock.now() - Duration::seconds(5),
            exchanged_at: ctx.clock.now(),
            compat_session_id: session.id,
        }
    );
    repo.save().await.unwrap();
    let mut repo = f.write().await.unwrap();
    let replay = repo
        .compat_sso_logins()
        .exchange(&ctx.clock, fulfilled.clone(), &session)
        .await;
    assert!(
        matches!(replay, Err(StorageError::ConcurrentUpdate(_))),
        "a login token is exchanged once, got {replay:?}"
    );
    drop(repo);
    let mut repo = f.write().await.unwrap();
    let replay = repo
        .compat_sso_logins()
        .exchange(&ctx.clock, exchanged.clone(), &session)
        .await;
    assert!(
        matches!(replay, Err(StorageError::InvalidTransition(_))),
        "got {replay:?}"
    );
    drop(repo);
    let mut repo = f.read().await.unwrap();
    assert_eq!(
        repo.compat_sso_logins()
            .find_by_token_hash(&token_hash("loginToken"))
            .await
            .unwrap(),
        Some(exchanged)
    );
}

/// `list_active_for_user` returns exactly the user's unfinished sessions,
/// oldest first, and nobody else's.
pub async fn compat_list_active_for_user(f: &dyn RepositoryFactory) {
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
    assert!(
        repo.compat_sessions()
            .list_active_for_user(&alice)
            .await
            .unwrap()
            .is_empty()
    );
    let mut made = Vec::new();
    for device in ["DEVICEONE", "DEVICETWO", "DEVICETHREE"] {
        ctx.clock.advance(Duration::seconds(1));
        made.push(
            repo.compat_sessions()
                .add(&mut ctx.rng, &ctx.clock, &alice, device, None, None, false)
                .await
                .unwrap(),
        );
    }
    let bobs = repo
        .compat_sessions()
        .add(
            &mut ctx.rng,
            &ctx.clock,
            &bob,
            "DEVICEONE",
            None,
            None,
            false,
        )
        .await
        .unwrap();
    repo.compat_sessions()
        .finish(&ctx.clock, made[1].clone())
        .await
        .unwrap();
    repo.save().await.unwrap();

    let mut repo = f.read().await.unwrap();
    let active = repo
        .compat_sessions()
        .list_active_for_user(&alice)
        .await
        .unwrap();
    assert_eq!(
        active,
        vec![made[0].clone(), made[2].clone()],
        "unfinished sessions only, oldest first"
    );
    assert_eq!(
        repo.compat_sessions()
            .list_active_for_user(&bob)
            .await
            .unwrap(),
        vec![bobs]
    );
    drop(repo);

    let mut repo = f.write().await.unwrap();
    assert_eq!(
        repo.compat_sessions()
            .finish_all_for_user(&ctx.clock, &alice)
            .await
            .unwrap(),
        2
    );
    assert!(
        repo.compat_sessions()
            .list_active_for_user(&alice)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        repo.compat_sessions()
            .list_active_for_user(&bob)
            .await
            .unwrap()
            .len(),
        1,
        "finishing alice's sessions leaves bob's alone"
    );
    repo.save().await.unwrap();
}
