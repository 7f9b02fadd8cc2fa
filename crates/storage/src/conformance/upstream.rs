use chrono::Duration;
use vestibule_domain::new_id;

use super::Ctx;
use crate::{RepositoryFactory, StorageError, upstream::UpstreamProviderParams};

fn params(name: &str) -> UpstreamProviderParams {
    UpstreamProviderParams {
        issuer: Some(format!("https://{name}.example.com/")),
        human_name: Some(name.to_owned()),
        brand_name: None,
    }
}

pub async fn upstream_providers_links_sessions(f: &dyn RepositoryFactory) {
    let mut ctx = Ctx::default();
    let google_id = new_id(&ctx.clock, &mut ctx.rng);
    let gitlab_id = new_id(&ctx.clock, &mut ctx.rng);

    // Providers: upsert creates, then updates and re-enables, keeping created_at.
    let mut repo = f.write().await.unwrap();
    let google = repo
        .upstream_providers()
        .upsert(&ctx.clock, google_id, params("google"))
        .await
        .unwrap();
    assert_eq!(google.id, google_id);
    assert_eq!(google.created_at, ctx.clock.now());
    assert!(google.disabled_at.is_none());
    let gitlab = repo
        .upstream_providers()
        .upsert(&ctx.clock, gitlab_id, params("gitlab"))
        .await
        .unwrap();
    repo.save().await.unwrap();

    let mut repo = f.read().await.unwrap();
    assert_eq!(
        repo.upstream_providers().lookup(google_id).await.unwrap(),
        Some(google.clone())
    );
    let mut both = vec![google.clone(), gitlab.clone()];
    both.sort_by_key(|p| p.id);
    assert_eq!(repo.upstream_providers().all_enabled().await.unwrap(), both);
    drop(repo);

    ctx.clock.advance(Duration::minutes(1));
    let mut repo = f.write().await.unwrap();
    assert_eq!(
        repo.upstream_providers()
            .disable_all_except(&ctx.clock, &[google_id])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        repo.upstream_providers()
            .disable_all_except(&ctx.clock, &[google_id])
            .await
            .unwrap(),
        0,
        "already disabled providers are not counted again"
    );
    repo.save().await.unwrap();
    let mut repo = f.write().await.unwrap();
    assert_eq!(
        repo.upstream_providers().all_enabled().await.unwrap(),
        vec![google.clone()]
    );
    let disabled = repo
        .upstream_providers()
        .lookup(gitlab_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(disabled.disabled_at, Some(ctx.clock.now()));
    ctx.clock.advance(Duration::minutes(1));
    let renamed = UpstreamProviderParams {
        issuer: Some("https://gitlab.example.org/".to_owned()),
        human_name: Some("GitLab".to_owned()),
        brand_name: Some("gitlab".to_owned()),
    };
    let gitlab = repo
        .upstream_providers()
        .upsert(&ctx.clock, gitlab_id, renamed.clone())
        .await
        .unwrap();
    assert_eq!(gitlab.created_at, disabled.created_at, "created_at is kept");
    assert!(gitlab.disabled_at.is_none(), "upsert re-enables");
    assert_eq!(gitlab.issuer, renamed.issuer);
    assert_eq!(gitlab.human_name, renamed.human_name);
    assert_eq!(gitlab.brand_name, renamed.brand_name);
    repo.save().await.unwrap();
    let mut repo = f.read().await.unwrap();
    assert_eq!(
        repo.upstream_providers().lookup(gitlab_id).await.unwrap(),
        Some(gitlab.clone())
    );
    drop(repo);

    // Links: (provider, subject) identifies an account.
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
    let link = repo
        .upstream_links()
        .add(
            &mut ctx.rng,
            &ctx.clock,
            &google,
            "sub-1",
            Some("alice@gmail.example"),
        )
        .await
        .unwrap();
    assert!(link.user_id.is_none());
    let other = repo
        .upstream_links()
        .add(&mut ctx.rng, &ctx.clock, &gitlab, "sub-1", None)
        .await
        .unwrap();
    repo.save().await.unwrap();
    let mut repo = f.write().await.unwrap();
    assert_eq!(
        repo.upstream_links().lookup(link.id).await.unwrap(),
        Some(link.clone())
    );
    assert_eq!(
        repo.upstream_links()
            .find_by_subject(&google, "sub-1")
            .await
            .unwrap(),
        Some(link.clone())
    );
    assert_eq!(
        repo.upstream_links()
            .find_by_subject(&gitlab, "sub-1")
            .await
            .unwrap(),
        Some(other.clone()),
        "subjects are per provider"
    );
    assert!(
        repo.upstream_links()
            .find_by_subject(&google, "sub-2")
            .await
            .unwrap()
            .is_none()
    );
    let link = repo
        .upstream_links()
        .associate_to_user(link, &alice)
        .await
        .unwrap();
    assert_eq!(link.user_id, Some(alice.id));
    // The display name is updated (and read back below).
    let link = repo
        .upstream_links()
        .set_human_account_name(link, Some("alice@corp"))
        .await
        .unwrap();
    assert_eq!(link.human_account_name.as_deref(), Some("alice@corp"));
    // Again to its owner: a no-op.
    let link = repo
        .upstream_links()
        .associate_to_user(link, &alice)
        .await
        .unwrap();
    // Compare-and-set: a stale copy (user_id None) cannot move it to
    // someone else.
    let intruder = repo
        .users()
        .add(&mut ctx.rng, &ctx.clock, "intruder")
        .await
        .unwrap();
    let mut stale = link.clone();
    stale.user_id = None;
    let err = repo
        .upstream_links()
        .associate_to_user(stale, &intruder)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::ConcurrentUpdate(_)), "{err:?}");
    repo.save().await.unwrap();
    let mut repo = f.read().await.unwrap();
    assert_eq!(
        repo.upstream_links().all_for_user(&alice).await.unwrap(),
        vec![link.clone()]
    );
    assert!(
        repo.upstream_links()
            .all_for_user(&bob)
            .await
            .unwrap()
            .is_empty()
    );
    drop(repo);
    // Dissociating detaches the user and keeps the link (rolled back here).
    let mut repo = f.write().await.unwrap();
    let detached = repo
        .upstream_links()
        .dissociate(link.clone())
        .await
        .unwrap();
    assert_eq!(detached.user_id, None);
    let stored = repo
        .upstream_links()
        .lookup(link.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.user_id, None);
    assert!(
        repo.upstream_links()
            .all_for_user(&alice)
            .await
            .unwrap()
            .is_empty()
    );
    drop(repo);
    let mut repo = f.write().await.unwrap();
    let dup = repo
        .upstream_links()
        .add(&mut ctx.rng, &ctx.clock, &google, "sub-1", None)
        .await;
    assert!(
        matches!(dup, Err(StorageError::UniqueViolation(_))),
        "got {dup:?}"
    );
    drop(repo);

    // Authorization sessions: Pending → Completed → Consumed, once.
    let mut repo = f.write().await.unwrap();
    let session = repo
        .upstream_sessions()
        .add(
            &mut ctx.rng,
            &ctx.clock,
            &google,
            "state-1",
            Some("verifier-1"),
            Some("nonce-1"),
            Some("{\"grant\":\"g\"}"),
        )
        .await
        .unwrap();
    assert!(session.completed_at.is_none() && session.consumed_at.is_none());
    repo.save().await.unwrap();
    let mut repo = f.write().await.unwrap();
    assert_eq!(
        repo.upstream_sessions().lookup(session.id).await.unwrap(),
        Some(session.clone()),
        "round trip, PKCE verifier, nonce and post-auth action included"
    );
    let early = repo
        .upstream_sessions()
        .consume(&ctx.clock, session.clone())
        .await;
    assert!(
        matches!(early, Err(StorageError::InvalidTransition(_))),
        "a pending session cannot be consumed, got {early:?}"
    );
    drop(repo);
    let mut repo = f.write().await.unwrap();
    let dup = repo
        .upstream_sessions()
        .add(
            &mut ctx.rng,
            &ctx.clock,
            &gitlab,
            "state-1",
            None,
            None,
            None,
        )
        .await;
    assert!(
        matches!(dup, Err(StorageError::UniqueViolation(_))),
        "the state is unique, got {dup:?}"
    );
    drop(repo);

    ctx.clock.advance(Duration::seconds(3));
    let claims = serde_json::json!({
        "sub": "sub-1",
        "email": "alice@gmail.example",
        "email_verified": true,
        "groups": ["a", "b"],
    });
    let mut repo = f.write().await.unwrap();
    let completed = repo
        .upstream_sessions()
        .complete(
            &ctx.clock,
            session.clone(),
            &link,
            claims.clone(),
            Some("idp-sid-1"),
        )
        .await
        .unwrap();
    assert_eq!(completed.completed_at, Some(ctx.clock.now()));
    assert_eq!(completed.sid.as_deref(), Some("idp-sid-1"));
    assert_eq!(completed.link_id, Some(link.id));
    repo.save().await.unwrap();
    let mut repo = f.write().await.unwrap();
    let stored = repo
        .upstream_sessions()
        .lookup(session.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, completed);
    assert_eq!(stored.claims, Some(claims));
    let twice = repo
        .upstream_sessions()
        .complete(
            &ctx.clock,
            completed.clone(),
            &link,
            serde_json::json!({}),
            None,
        )
        .await;
    assert!(
        matches!(twice, Err(StorageError::InvalidTransition(_))),
        "got {twice:?}"
    );
    drop(repo);
    let mut repo = f.write().await.unwrap();
    let stale = repo
        .upstream_sessions()
        .complete(
            &ctx.clock,
            session.clone(),
            &link,
            serde_json::json!({}),
            None,
        )
        .await;
    assert!(
        matches!(stale, Err(StorageError::ConcurrentUpdate(_))),
        "got {stale:?}"
    );
    drop(repo);

    ctx.clock.advance(Duration::seconds(1));
    let mut repo = f.write().await.unwrap();
    let consumed = repo
        .upstream_sessions()
        .consume(&ctx.clock, completed.clone())
        .await
        .unwrap();
    assert_eq!(consumed.consumed_at, Some(ctx.clock.now()));
    repo.save().await.unwrap();
    let mut repo = f.write().await.unwrap();
    let replay = repo
        .upstream_sessions()
        .consume(&ctx.clock, completed.clone())
        .await;
    assert!(
        matches!(replay, Err(StorageError::ConcurrentUpdate(_))),
        "a completed session is consumed once, got {replay:?}"
    );
    drop(repo);
    let mut repo = f.write().await.unwrap();
    let replay = repo
        .upstream_sessions()
        .consume(&ctx.clock, consumed.clone())
        .await;
    assert!(
        matches!(replay, Err(StorageError::InvalidTransition(_))),
        "got {replay:?}"
    );
    drop(repo);
    let mut repo = f.read().await.unwrap();
    assert_eq!(
        repo.upstream_sessions().lookup(session.id).await.unwrap(),
        Some(consumed)
    );
    drop(repo);

    // With nothing to keep, every provider is disabled (links stay).
    let mut repo = f.write().await.unwrap();
    assert_eq!(
        repo.upstream_providers()
            .disable_all_except(&ctx.clock, &[])
            .await
            .unwrap(),
        2
    );
    assert!(
        repo.upstream_providers()
            .all_enabled()
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        repo.upstream_links().lookup(link.id).await.unwrap(),
        Some(link)
    );
}

/// Back-channel logout finds the browser sessions an upstream login
/// authenticated (by link, and by the provider's `sid` when given);
/// abandoned links can be removed, linked ones cannot.
pub async fn upstream_logout_lookup(f: &dyn RepositoryFactory) {
    let mut ctx = Ctx::default();
    let pid = new_id(&ctx.clock, &mut ctx.rng);
    let mut repo = f.write().await.unwrap();
    let idp = repo
        .upstream_providers()
        .upsert(&ctx.clock, pid, params("idp"))
        .await
        .unwrap();
    let alice = repo
        .users()
        .add(&mut ctx.rng, &ctx.clock, "alice")
        .await
        .unwrap();
    let link = repo
        .upstream_links()
        .add(&mut ctx.rng, &ctx.clock, &idp, "sub-a", None)
        .await
        .unwrap();
    let link = repo
        .upstream_links()
        .associate_to_user(link, &alice)
        .await
        .unwrap();
    let mut sessions = Vec::new();
    for (i, sid) in [Some("sid-1"), Some("sid-2"), None].into_iter().enumerate() {
        let up = repo
            .upstream_sessions()
            .add(
                &mut ctx.rng,
                &ctx.clock,
                &idp,
                &format!("st-{i}"),
                None,
                None,
                None,
            )
            .await
            .unwrap();
        let up = repo
            .upstream_sessions()
            .complete(&ctx.clock, up, &link, serde_json::json!({}), sid)
            .await
            .unwrap();
        let b = repo
            .browser_sessions()
            .add(&mut ctx.rng, &ctx.clock, &alice, None)
            .await
            .unwrap();
        let auth = repo
            .browser_sessions()
            .authenticate_with_upstream(&mut ctx.rng, &ctx.clock, &b, &link, Some(&up))
            .await
            .unwrap();
        assert_eq!(
            repo.browser_sessions()
                .last_authentication(&b)
                .await
                .unwrap(),
            Some(auth)
        );
        sessions.push(b);
    }
    // A browser session of alice signed in some other way is never matched.
    let other = repo
        .browser_sessions()
        .add(&mut ctx.rng, &ctx.clock, &alice, None)
        .await
        .unwrap();
    repo.save().await.unwrap();

    let mut repo = f.write().await.unwrap();
    let ids = |v: Vec<vestibule_domain::browser_session::BrowserSession>| {
        v.into_iter().map(|s| s.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(repo
            .browser_sessions()
            .list_active_for_upstream(&link, Some("sid-2"))
            .await
            .unwrap()),
        vec![sessions[1].id]
    );
    assert_eq!(
        ids(repo
            .browser_sessions()
            .list_active_for_upstream(&link, None)
            .await
            .unwrap()),
        sessions.iter().map(|s| s.id).collect::<Vec<_>>(),
        "without sid: every session of that link, not {:?}",
        other.id
    );
    assert!(
        repo.browser_sessions()
            .list_active_for_upstream(&link, Some("unknown"))
            .await
            .unwrap()
            .is_empty()
    );
    // By provider and sid alone (a logout token without sub).
    assert_eq!(
        ids(repo
            .browser_sessions()
            .list_active_for_upstream_sid(&idp, "sid-2")
            .await
            .unwrap()),
        vec![sessions[1].id]
    );
    assert!(
        repo.browser_sessions()
            .list_active_for_upstream_sid(&idp, "unknown")
            .await
            .unwrap()
            .is_empty()
    );
    repo.browser_sessions()
        .finish(&ctx.clock, sessions[0].clone())
        .await
        .unwrap();
    assert!(
        repo.browser_sessions()
            .list_active_for_upstream_sid(&idp, "sid-1")
            .await
            .unwrap()
            .is_empty(),
        "finished sessions are not listed"
    );
    assert_eq!(
        ids(repo
            .browser_sessions()
            .list_active_for_upstream(&link, Some("sid-1"))
            .await
            .unwrap()),
        Vec::<vestibule_domain::Ulid>::new(),
        "finished sessions are not listed"
    );

    // remove_unlinked: only a link without a user and without references.
    assert!(!repo.upstream_links().remove_unlinked(&link).await.unwrap());
    let loose = repo
        .upstream_links()
        .add(&mut ctx.rng, &ctx.clock, &idp, "sub-loose", None)
        .await
        .unwrap();
    assert!(repo.upstream_links().remove_unlinked(&loose).await.unwrap());
    assert_eq!(repo.upstream_links().lookup(loose.id).await.unwrap(), None);
    repo.save().await.unwrap();
}

/// Back-Channel Logout 1.0 §2.6 item 10: a logout `jti` is accepted once
/// per provider, until it expires.
pub async fn upstream_logout_jti_is_single_use(f: &dyn RepositoryFactory) {
    let mut ctx = Ctx::default();
    let mut repo = f.write().await.unwrap();
    let a = repo
        .upstream_providers()
        .upsert(&ctx.clock, new_id(&ctx.clock, &mut ctx.rng), params("a"))
        .await
        .unwrap();
    let b = repo
        .upstream_providers()
        .upsert(&ctx.clock, new_id(&ctx.clock, &mut ctx.rng), params("b"))
        .await
        .unwrap();
    repo.save().await.unwrap();

    let exp = ctx.clock.now() + Duration::minutes(2);
    let mut repo = f.write().await.unwrap();
    repo.upstream_providers()
        .record_logout_jti(&a, "j1", exp)
        .await
        .unwrap();
    let err = repo
        .upstream_providers()
        .record_logout_jti(&a, "j1", exp)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::ConcurrentUpdate(_)),
        "a replay loses: {err:?}"
    );
    // The transaction is still usable (PostgreSQL), and jtis are per
    // provider.
    repo.upstream_providers()
        .record_logout_jti(&b, "j1", exp)
        .await
        .expect("the same jti from another provider is another token");
    repo.save().await.unwrap();

    // Committed: a later transaction sees the replay too.
    let mut repo = f.write().await.unwrap();
    assert!(matches!(
        repo.upstream_providers()
            .record_logout_jti(&a, "j1", exp)
            .await,
        Err(StorageError::ConcurrentUpdate(_))
    ));
    drop(repo);

    // Forgotten once expired, not before.
    let mut repo = f.write().await.unwrap();
    assert_eq!(
        repo.upstream_providers()
            .remove_expired_logout_jtis(&ctx.clock)
            .await
            .unwrap(),
        0
    );
    ctx.clock.advance(Duration::minutes(2));
    assert_eq!(
        repo.upstream_providers()
            .remove_expired_logout_jtis(&ctx.clock)
            .await
            .unwrap(),
        2
    );
    repo.upstream_providers()
        .record_logout_jti(&a, "j1", exp + Duration::minutes(2))
        .await
        .unwrap();
    repo.save().await.unwrap();
}

/// Housekeeping: abandoned (never consumed) sessions past their lifetime
/// are deleted; consumed ones stay, their claims dropped after a while.
pub async fn upstream_sessions_are_purged(f: &dyn RepositoryFactory) {
    let mut ctx = Ctx::default();
    let mut repo = f.write().await.unwrap();
    let provider = repo
        .upstream_providers()
        .upsert(&ctx.clock, new_id(&ctx.clock, &mut ctx.rng), params("p"))
        .await
        .unwrap();
    let link = repo
        .upstream_links()
        .add(&mut ctx.rng, &ctx.clock, &provider, "sub-p", None)
        .await
        .unwrap();
    let abandoned = add_session(&mut repo, &mut ctx, &provider, "s-abandoned").await;
    let used = add_session(&mut repo, &mut ctx, &provider, "s-used").await;
    let claims = serde_json::json!({"sub": "sub-p"});
    let used = repo
        .upstream_sessions()
        .complete(&ctx.clock, used, &link, claims.clone(), None)
        .await
        .unwrap();
    let used = repo
        .upstream_sessions()
        .consume(&ctx.clock, used)
        .await
        .unwrap();
    ctx.clock.advance(Duration::minutes(40));
    let fresh = add_session(&mut repo, &mut ctx, &provider, "s-fresh").await;
    repo.save().await.unwrap();

    let ttl = Duration::minutes(30);
    let day = Duration::days(1);
    let mut repo = f.write().await.unwrap();
    let now = ctx.clock.now();
    assert_eq!(
        repo.upstream_sessions()
            .purge(now - ttl, now - day)
            .await
            .unwrap(),
        (1, 0)
    );
    assert!(
        repo.upstream_sessions()
            .lookup(abandoned.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        repo.upstream_sessions()
            .lookup(fresh.id)
            .await
            .unwrap()
            .is_some()
    );
    let kept = repo
        .upstream_sessions()
        .lookup(used.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.claims, Some(claims));
    repo.save().await.unwrap();

    ctx.clock.advance(Duration::days(2));
    let mut repo = f.write().await.unwrap();
    let now = ctx.clock.now();
    assert_eq!(
        repo.upstream_sessions()
            .purge(now - ttl, now - day)
            .await
            .unwrap(),
        (1, 1)
    );
    let kept = repo
        .upstream_sessions()
        .lookup(used.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.claims, None, "claims dropped a day after use");
    assert!(kept.consumed_at.is_some());
    repo.save().await.unwrap();
}

async fn add_session(
    repo: &mut crate::BoxRepository,
    ctx: &mut Ctx,
    provider: &vestibule_domain::upstream::UpstreamProvider,
    state: &str,
) -> vestibule_domain::upstream::UpstreamAuthorizationSession {
    repo.upstream_sessions()
        .add(&mut ctx.rng, &ctx.clock, provider, state, None, None, None)
        .await
        .unwrap()
}

/// Linked accounts are counted per provider (links without a user are
/// not), and `set_issuer` changes the stored issuer alone.
pub async fn upstream_issuer_and_linked_accounts(f: &dyn RepositoryFactory) {
    let mut ctx = Ctx::default();
    let corp_id = new_id(&ctx.clock, &mut ctx.rng);
    let other_id = new_id(&ctx.clock, &mut ctx.rng);
    let mut repo = f.write().await.unwrap();
    let corp = repo
        .upstream_providers()
        .upsert(&ctx.clock, corp_id, params("corp"))
        .await
        .unwrap();
    let other = repo
        .upstream_providers()
        .upsert(&ctx.clock, other_id, params("other"))
        .await
        .unwrap();
    assert_eq!(
        repo.upstream_providers()
            .count_linked_accounts(corp_id)
            .await
            .unwrap(),
        0
    );
    let alice = repo
        .users()
        .add(&mut ctx.rng, &ctx.clock, "alice")
        .await
        .unwrap();
    let link = repo
        .upstream_links()
        .add(&mut ctx.rng, &ctx.clock, &corp, "sub-a", None)
        .await
        .unwrap();
    repo.upstream_links()
        .add(&mut ctx.rng, &ctx.clock, &corp, "sub-abandoned", None)
        .await
        .unwrap();
    repo.upstream_links()
        .add(&mut ctx.rng, &ctx.clock, &other, "sub-a", None)
        .await
        .unwrap();
    assert_eq!(
        repo.upstream_providers()
            .count_linked_accounts(corp_id)
            .await
            .unwrap(),
        0,
        "links without a user are no accounts"
    );
    repo.upstream_links()
        .associate_to_user(link, &alice)
        .await
        .unwrap();
    repo.save().await.unwrap();

    let mut repo = f.write().await.unwrap();
    assert_eq!(
        repo.upstream_providers()
            .count_linked_accounts(corp_id)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        repo.upstream_providers()
            .count_linked_accounts(other_id)
            .await
            .unwrap(),
        0,
        "counted per provider"
    );
    let moved = repo
        .upstream_providers()
        .set_issuer(corp_id, Some("https://new-corp.example.com/"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        moved.issuer.as_deref(),
        Some("https://new-corp.example.com/")
    );
    assert_eq!(moved.human_name, corp.human_name);
    assert_eq!(moved.created_at, corp.created_at);
    assert!(
        repo.upstream_providers()
            .set_issuer(new_id(&ctx.clock, &mut ctx.rng), Some("https://x.example/"))
            .await
            .unwrap()
            .is_none(),
        "an unknown provider"
    );
    repo.save().await.unwrap();
    let mut repo = f.read().await.unwrap();
    assert_eq!(
        repo.upstream_providers().lookup(corp_id).await.unwrap(),
        Some(moved)
    );
    assert_eq!(
        repo.upstream_providers()
            .lookup(other_id)
            .await
            .unwrap()
            .unwrap()
            .issuer,
        other.issuer,
        "the other provider keeps its issuer"
    );
}
