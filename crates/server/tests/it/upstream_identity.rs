//! An upstream account is the pair (issuer, subject) (S33): the same `sub`
//! at two providers is two accounts, and a provider whose configured
//! `issuer` changes while accounts are linked through it stops the start
//! until the operator confirms the move.

use axum::http::StatusCode;
use serde_json::{Value, json};
use vestibule_domain::Ulid;
use vestibule_server::bootstrap::{BootstrapError, sync_config};

use crate::{
    compat_support::databases,
    upstream_support::{Fake, UpApp, link_session_id, provider, sqlite, start},
};

const A: &str = "01JB00000000000000000000F1";
const B: &str = "01JB00000000000000000000F2";

/// Registers without questions from the IdP's `preferred_username`.
fn registering(issuer: &str, id: &str) -> Value {
    provider(
        id,
        issuer,
        "rp",
        &json!({
            "id_token_signed_response_alg": "ES256",
            "claims_imports": {
                "skip_confirmation": true,
                "localpart": {"action": "require"},
            },
        }),
    )
}

/// A whole upstream login at `fake` as (`sub`, `username`): callback, then
/// the link page, which registers or signs in.
async fn sign_in(app: &UpApp, fake: &Fake, pid: &str, sub: &str, username: &str) {
    let mut b = app.browser();
    let url = start(&mut b, pid, "").await;
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    let now = app.t.clock.now().timestamp();
    *fake.claims.lock().unwrap() = json!({
        "iss": fake.issuer, "sub": sub, "aud": "rp", "preferred_username": username,
        "nonce": q["nonce"], "iat": now, "exp": now + 300,
    });
    let r = b
        .get(&format!(
            "/upstream/callback/{pid}?code=c&state={}",
            q["state"]
        ))
        .await;
    let id = link_session_id(&b, &r);
    let r = b.get(&format!("/upstream/link/{id}")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
}

/// Two IdPs that give the same `sub` to different people: each login
/// lands on its own account, and signing in again through either finds
/// that provider's account, never the other's.
#[tokio::test]
async fn the_same_subject_at_two_providers_is_two_accounts() {
    let (fa, fb) = (Fake::start().await, Fake::start().await);
    let app = UpApp::new(
        sqlite().await,
        vec![registering(&fa.issuer, A), registering(&fb.issuer, B)],
        None,
    )
    .await;
    sign_in(&app, &fa, A, "same-sub", "ann").await;
    sign_in(&app, &fb, B, "same-sub", "bea").await;
    let user_of = async |pid: &str| app.link(pid, "same-sub").await.unwrap().user_id.unwrap();
    let (ann, bea) = (user_of(A).await, user_of(B).await);
    assert_ne!(ann, bea);
    let mut repo = app.t.state.repos.read().await.unwrap();
    let name = async |repo: &mut vestibule_storage::BoxRepository, id: Ulid| {
        repo.users().lookup(id).await.unwrap().unwrap().username
    };
    assert_eq!(name(&mut repo, ann).await, "ann");
    assert_eq!(name(&mut repo, bea).await, "bea");
    drop(repo);

    // Again, both ways round: the same two accounts, no third.
    sign_in(&app, &fb, B, "same-sub", "bea").await;
    sign_in(&app, &fa, A, "same-sub", "ann").await;
    assert_eq!((user_of(A).await, user_of(B).await), (ann, bea));
    let mut repo = app.t.state.repos.read().await.unwrap();
    assert_eq!(repo.users().count().await.unwrap(), 2);
    drop(repo);
    app.cleanup().await;
}

/// Startup (`sync_config`) with a provider's `issuer` changed: refused
/// while an account is linked through it, naming the key; a provider
/// without linked accounts just takes the new issuer; once the move is
/// confirmed (what `manage set-upstream-issuer` stores) it starts. On
/// SQLite and PostgreSQL.
#[tokio::test]
async fn an_issuer_change_with_linked_accounts_needs_confirmation() {
    for db in databases().await {
        let app = UpApp::new(
            db,
            vec![
                provider(A, "https://idp-a.example/", "rp", &json!({})),
                provider(B, "https://idp-b.example/", "rp", &json!({})),
            ],
            None,
        )
        .await;
        let state = &app.t.state;
        let (pa, pb) = (A.parse::<Ulid>().unwrap(), B.parse::<Ulid>().unwrap());
        // Alice is linked through A; B has only an abandoned login's link.
        {
            let mut rng = state.rng.rng();
            let mut repo = state.repos.write().await.unwrap();
            let alice = repo
                .users()
                .add(&mut rng, state.clock.as_ref(), "alice")
                .await
                .unwrap();
            let a = repo.upstream_providers().lookup(pa).await.unwrap().unwrap();
            let b = repo.upstream_providers().lookup(pb).await.unwrap().unwrap();
            let link = repo
                .upstream_links()
                .add(&mut rng, state.clock.as_ref(), &a, "sub-1", None)
                .await
                .unwrap();
            repo.upstream_links()
                .associate_to_user(link, &alice)
                .await
                .unwrap();
            repo.upstream_links()
                .add(&mut rng, state.clock.as_ref(), &b, "sub-2", None)
                .await
                .unwrap();
            repo.save().await.unwrap();
        }
        let sync = async |issuer_a: &str, issuer_b: &str| {
            let mut cfg = (*state.config).clone();
            cfg.upstream_oauth2.providers[0].issuer = Some(issuer_a.to_owned());
            cfg.upstream_oauth2.providers[1].issuer = Some(issuer_b.to_owned());
            let mut rng = state.rng.rng();
            sync_config(
                state.repos.as_ref(),
                &cfg,
                &state.encrypter,
                state.clock.as_ref(),
                &mut rng,
            )
            .await
        };
        let stored = async |id: Ulid| {
            let mut repo = state.repos.read().await.unwrap();
            repo.upstream_providers()
                .lookup(id)
                .await
                .unwrap()
                .unwrap()
                .issuer
                .unwrap()
        };

        // B has no linked account: its new issuer is simply stored.
        sync("https://idp-a.example/", "https://idp-b2.example/")
            .await
            .unwrap();
        assert_eq!(stored(pb).await, "https://idp-b2.example/");

        // A has one: refused, naming the key, the count and the command;
        // nothing is written (B's change in the same start neither).
        let err = sync("https://idp-a2.example/", "https://idp-b3.example/")
            .await
            .unwrap_err();
        let BootstrapError::Config { path, message } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(path, "upstream_oauth2.providers[0].issuer");
        assert!(message.contains("1 account(s) are linked"), "{message}");
        assert!(
            message.contains(&format!(
                "vestibule manage set-upstream-issuer {A} https://idp-a2.example/"
            )),
            "{message}"
        );
        assert_eq!(stored(pa).await, "https://idp-a.example/");
        assert_eq!(stored(pb).await, "https://idp-b2.example/");
        // A trailing slash is another issuer (exact match, OIDC Core §2).
        assert!(
            sync("https://idp-a.example", "https://idp-b2.example/")
                .await
                .is_err()
        );

        // The operator confirms the move: the next start goes through and
        // Alice's link is still hers.
        {
            let mut repo = state.repos.write().await.unwrap();
            repo.upstream_providers()
                .set_issuer(pa, Some("https://idp-a2.example/"))
                .await
                .unwrap();
            repo.save().await.unwrap();
        }
        sync("https://idp-a2.example/", "https://idp-b3.example/")
            .await
            .unwrap();
        assert_eq!(stored(pa).await, "https://idp-a2.example/");
        assert_eq!(stored(pb).await, "https://idp-b3.example/");
        assert!(app.link(A, "sub-1").await.unwrap().user_id.is_some());
        app.cleanup().await;
    }
}
