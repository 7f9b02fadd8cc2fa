//! `/upstream/link/{session}`: the end of an upstream login, through the
//! production router. The provider is the seed configuration's block as
//! loaded from YAML (synced into the database like at startup); the
//! callback's work (a link, a completed session with claims) is done
//! directly through storage, and the browser gets the upstream cookie
//! built with `upstream::cookie::add` on the test state.

use std::sync::Arc;

use axum::{
    body::Body,
    http::{HeaderMap, Request, StatusCode, header},
};
use serde_json::{Value, json};
use vestibule_config::{AttributeRequirement, ImportAction, OnConflict, UpstreamProviderConfig};
use vestibule_domain::{
    Ulid,
    oauth2::ClientAuthMethod,
    upstream::{UpstreamLink, UpstreamProvider},
    user::User,
};
use vestibule_server::{
    homeserver::{MockHomeserver, MockUser},
    jobs::HomeserverJob,
    upstream::{PostAuthAction, cookie},
};
use vestibule_storage_sql::testing::TestDatabase;

use crate::{
    browser_helpers::{Browser, PASSWORD, Resp, add_client, add_user, authorize_uri},
    compat_support::databases,
    harness::TestApp,
    oauth2_support::{HS_SECRET, ISSUER},
    provisioning_support::{app_with_mock, pending_jobs},
};

const REDIRECT: &str = "https://app.example.org/cb";

/// The seed configuration's provider, loaded as the binary loads it.
fn seed_provider() -> UpstreamProviderConfig {
    let seed = include_str!("../../../config/tests/fixtures/seed-mas-config.yaml");
    let second = include_str!("../../../config/tests/fixtures/secrets-matrix.yaml");
    let env = |k: &str| match k {
        "DATABASE_URL" => Some("postgresql://x@db/mas".to_owned()),
        "SYNAPSE_CLIENT_SECRET" | "OPENMEET_CLIENT_SECRET" => Some("s".to_owned()),
        _ => None,
    };
    let loaded = vestibule_config::load_strs(
        &[
            ("seed.yaml".to_owned(), seed.to_owned()),
            ("secrets.yaml".to_owned(), second.to_owned()),
        ],
        &env,
        std::path::Path::new("."),
    )
    .expect("seed loads");
    loaded.config.upstream_oauth2.providers[0].clone()
}

/// What the organisation's IdP says about Alice.
fn alice_claims() -> Value {
    json!({
        "id_token": {
            "sub": "idp-alice",
            "preferred_username": "alice",
            "name": "Alice Liddell",
            "email": "alice@example.com",
            "tenant_id": "acme",
        },
        "userinfo": null,
    })
}

struct Ux {
    t: TestApp,
    hs: Arc<MockHomeserver>,
    provider: UpstreamProvider,
}

impl Ux {
    async fn new(configure: impl FnOnce(&mut UpstreamProviderConfig)) -> Self {
        Self::on(TestDatabase::sqlite().await.expect("sqlite"), configure).await
    }

    async fn on(db: TestDatabase, configure: impl FnOnce(&mut UpstreamProviderConfig)) -> Self {
        let mut p = seed_provider();
        configure(&mut p);
        let (t, hs) = app_with_mock(db, ISSUER, |c| {
            c.matrix.secret = Some(HS_SECRET.into());
            c.upstream_oauth2.providers = vec![p];
        });
        let mut rng = t.state.rng.rng();
        vestibule_server::bootstrap::sync_config(
            t.state.repos.as_ref(),
            &t.state.config,
            &t.state.encrypter,
            t.state.clock.as_ref(),
            &mut rng,
        )
        .await
        .unwrap();
        let mut repo = t.state.repos.read().await.unwrap();
        let provider = repo.upstream_providers().all_enabled().await.unwrap()[0].clone();
        repo.cancel().await.unwrap();
        Self { t, hs, provider }
    }

    fn browser(&self) -> Browser {
        Browser::new(&self.t)
    }

    /// What the callback leaves behind: the (provider, subject) link
    /// (linked to `user` if given) and a completed upstream session.
    async fn completed(
        &self,
        claims: Value,
        user: Option<&User>,
        then: Option<PostAuthAction>,
    ) -> (Ulid, UpstreamLink) {
        let state = &self.t.state;
        let clock = state.clock.as_ref();
        let mut rng = state.rng.rng();
        let subject = claims["id_token"]["sub"].as_str().unwrap().to_owned();
        let mut repo = state.repos.write().await.unwrap();
        let found = repo
            .upstream_links()
            .find_by_subject(&self.provider, &subject)
            .await
            .unwrap();
        let link = match found {
            Some(l) => l,
            None => repo
                .upstream_links()
                .add(&mut rng, clock, &self.provider, &subject, None)
                .await
                .unwrap(),
        };
        let link = match user {
            Some(u) => repo
                .upstream_links()
                .associate_to_user(link, u)
                .await
                .unwrap(),
            None => link,
        };
        let then = then.map(|a| a.to_json());
        let up = repo
            .upstream_sessions()
            .add(
                &mut rng,
                clock,
                &self.provider,
                &format!("state-{}", Ulid::new()),
                None,
                Some("nonce"),
                then.as_deref(),
            )
            .await
            .unwrap();
        let up = repo
            .upstream_sessions()
            .complete(clock, up, &link, claims, None)
            .await
            .unwrap();
        repo.save().await.unwrap();
        (up.id, link)
    }

    /// Puts the upstream session in the browser's cookie, as
    /// `/upstream/authorize` does.
    fn admit(&self, b: &mut Browser, id: Ulid) {
        let mut headers = HeaderMap::new();
        if !b.jar.is_empty() {
            headers.insert(header::COOKIE, b.cookie_header().parse().unwrap());
        }
        let set = cookie::add(&self.t.state, &headers, id).unwrap();
        let first = set.to_str().unwrap().split(';').next().unwrap().to_owned();
        let (name, value) = first.split_once('=').unwrap();
        b.jar.insert(name.to_owned(), value.to_owned());
    }

    /// The browser back from the provider: what the callback leaves
    /// behind (`completed`), the session in `b`'s cookie (`admit`).
    async fn arrive(
        &self,
        b: &mut Browser,
        claims: Value,
        user: Option<&User>,
        then: Option<PostAuthAction>,
    ) -> (Ulid, UpstreamLink) {
        let (id, link) = self.completed(claims, user, then).await;
        self.admit(b, id);
        (id, link)
    }

    /// A pending grant (the consent page it continues to), started in `b`.
    async fn grant(&self, b: &mut Browser) -> Ulid {
        let client = add_client(&self.t.state, ClientAuthMethod::None, &[REDIRECT]).await;
        let r = b
            .get(&authorize_uri(&client.client_id, REDIRECT, &[]))
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        let path = b.path_of(r.location().unwrap());
        Ulid::from_string(path.trim_start_matches("/consent/")).unwrap()
    }

    async fn user(&self, name: &str) -> Option<User> {
        let mut repo = self.t.state.repos.read().await.unwrap();
        let u = repo.users().find_by_username(name).await.unwrap();
        repo.cancel().await.unwrap();
        u
    }

    async fn user_count(&self) -> u64 {
        let mut repo = self.t.state.repos.read().await.unwrap();
        let n = repo.users().count().await.unwrap();
        repo.cancel().await.unwrap();
        n
    }

    async fn link(&self, id: Ulid) -> UpstreamLink {
        let mut repo = self.t.state.repos.read().await.unwrap();
        let l = repo.upstream_links().lookup(id).await.unwrap().unwrap();
        repo.cancel().await.unwrap();
        l
    }

    async fn links_of(&self, user: &User) -> Vec<UpstreamLink> {
        let mut repo = self.t.state.repos.read().await.unwrap();
        let l = repo.upstream_links().all_for_user(user).await.unwrap();
        repo.cancel().await.unwrap();
        l
    }

    async fn signed_in_as(&self, b: &mut Browser) -> Option<String> {
        let r = b.get("/").await;
        (r.status == StatusCode::OK).then(|| {
            let start = r.body.find('@').unwrap();
            let end = r.body[start..].find(":example.org").unwrap() + start;
            r.body[start + 1..end].to_owned()
        })
    }

    async fn cleanup(self) {
        self.t.db.cleanup().await;
    }
}

fn link_path(id: Ulid) -> String {
    format!("/upstream/link/{id}")
}

/// Posts the link page's form: `action` with the CSRF token and `fields`.
async fn submit(
    b: &mut Browser,
    id: Ulid,
    csrf: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> Resp {
    let mut form = vec![("csrf", csrf), ("action", action)];
    form.extend_from_slice(fields);
    b.post(&link_path(id), &form).await
}

fn assert_page(r: &Resp, status: StatusCode, needle: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert!(r.body.contains(needle), "{needle:?} not in {}", r.body);
    assert!(
        r.header("content-type").unwrap().starts_with("text/html"),
        "{r:?}"
    );
}

/// An existing link signs its user in and continues to the grant's
/// consent page; a replay of the consumed session is an error page.
#[tokio::test]
async fn existing_link_signs_in_and_continues_to_consent() {
    for db in databases().await {
        let u = Ux::on(db, |_| {}).await;
        let alice = add_user(&u.t.state, "alice", PASSWORD).await;
        let mut b = u.browser();
        let grant = u.grant(&mut b).await;
        let (id, _) = u
            .arrive(
                &mut b,
                alice_claims(),
                Some(&alice),
                Some(PostAuthAction::ContinueGrant { id: grant }),
            )
            .await;
        let before = b.clone();

        let r = b.get(&link_path(id)).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        assert_eq!(
            b.path_of(r.location().unwrap()),
            format!("/consent/{grant}")
        );
        let consent = b.follow(&r).await;
        assert_eq!(consent.status, StatusCode::OK, "{}", consent.body);
        assert!(
            consent.body.contains("@alice:example.org"),
            "{}",
            consent.body
        );
        assert_eq!(u.signed_in_as(&mut b).await.as_deref(), Some("alice"));
        // The upstream session left this browser's cookie...
        assert!(b.get(&link_path(id)).await.status.is_client_error());
        // ...and replaying it with the old cookie finds it consumed.
        let mut replay = before;
        let r = replay.get(&link_path(id)).await;
        assert_page(&r, StatusCode::BAD_REQUEST, "already used");
        assert_eq!(u.signed_in_as(&mut replay).await, None);
        u.cleanup().await;
    }
}

/// No link yet, nobody signed in: the registration form shows the seed's
/// imports (localpart required → fixed; display name suggested →
/// editable; email and tenant_id suggested → opt-out boxes). Submitting
/// creates the user with the email, the attribute and the link, schedules
/// provisioning with the display name, signs in and continues; a double
/// submit creates nothing twice.
#[tokio::test]
async fn new_user_registers_from_the_claims() {
    for db in databases().await {
        let u = Ux::on(db, |_| {}).await;
        let mut b = u.browser();
        let grant = u.grant(&mut b).await;
        let (id, link) = u
            .arrive(
                &mut b,
                alice_claims(),
                None,
                Some(PostAuthAction::ContinueGrant { id: grant }),
            )
            .await;

        let page = b.get(&link_path(id)).await;
        assert_page(&page, StatusCode::OK, "Create your account");
        assert!(
            page.body
                .contains(r#"<strong id="localpart">alice</strong>"#),
            "{}",
            page.body
        );
        assert!(
            !page.body.contains(r#"name="username""#),
            "fixed, not editable"
        );
        assert!(
            page.body
                .contains(r#"name="displayname" value="Alice Liddell""#)
        );
        assert!(
            page.body
                .contains(r#"name="import_email" value="on" checked"#)
        );
        assert!(page.body.contains("alice@example.com"));
        assert!(
            page.body
                .contains(r#"name="attr.tenant_id" value="on" checked"#)
        );
        assert!(
            page.body
                .contains(r#"<strong class="attribute">acme</strong>"#)
        );
        assert!(page.body.contains("OpenMeet"));

        // Without the CSRF token: refused, nothing created.
        let r = b
            .post(
                &link_path(id),
                &[("action", "register"), ("username", "mallory")],
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(u.user_count().await, 0);

        let csrf = page.csrf();
        let form = [
            ("csrf", csrf.as_str()),
            ("action", "register"),
            // A forced localpart cannot be changed from the form.
            ("username", "mallory"),
            ("displayname", "Alice L."),
            ("import_email", "on"),
            ("attr.tenant_id", "on"),
        ];
        let r = b.post(&link_path(id), &form).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        assert_eq!(
            b.path_of(r.location().unwrap()),
            format!("/consent/{grant}")
        );
        assert_eq!(u.signed_in_as(&mut b).await.as_deref(), Some("alice"));

        let alice = u.user("alice").await.expect("alice created");
        assert!(u.user("mallory").await.is_none());
        let mut repo = u.t.state.repos.read().await.unwrap();
        let emails = repo.user_emails().all(&alice).await.unwrap();
        assert_eq!(emails.len(), 1);
        assert_eq!(emails[0].email, "alice@example.com");
        let attrs = repo.user_attributes().all(&alice).await.unwrap();
        assert_eq!(attrs.get("tenant_id").map(String::as_str), Some("acme"));
        repo.cancel().await.unwrap();
        assert_eq!(u.link(link.id).await.user_id, Some(alice.id));
        let jobs = pending_jobs(&u.t).await;
        let provision: Vec<_> = jobs
            .iter()
            .filter_map(|j| match j {
                HomeserverJob::ProvisionUser(p) => Some(p),
                _ => None,
            })
            .collect();
        assert_eq!(provision.len(), 1, "{jobs:?}");
        assert_eq!(provision[0].localpart, "alice");
        assert_eq!(provision[0].display_name.as_deref(), Some("Alice L."));
        assert_eq!(provision[0].emails, ["alice@example.com"]);

        // The account page shows the link and the organisation's tenant.
        let account = b.get("/account/").await;
        assert_eq!(account.status, StatusCode::OK, "{}", account.body);
        assert!(
            account.body.contains("<li>OpenMeet</li>"),
            "{}",
            account.body
        );
        assert!(account.body.contains("<dt>tenant_id</dt><dd>acme</dd>"));

        // Double submit (the form again, with the old cookie): a clear
        // page, nothing created twice.
        let mut again = b.clone();
        u.admit(&mut again, id);
        let r = again.post(&link_path(id), &form).await;
        assert_page(&r, StatusCode::BAD_REQUEST, "already used");
        assert_eq!(u.user_count().await, 1);
        assert_eq!(pending_jobs(&u.t).await.len(), jobs.len());
        u.cleanup().await;
    }
}

/// Declining the suggestions: no email, no attribute, no display name.
#[tokio::test]
async fn suggestions_can_be_declined() {
    let u = Ux::new(|_| {}).await;
    let mut b = u.browser();
    let (id, _) = u.arrive(&mut b, alice_claims(), None, None).await;
    let page = b.get(&link_path(id)).await;
    let csrf = page.csrf();
    let r = submit(&mut b, id, &csrf, "register", &[("displayname", "")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(b.path_of(r.location().unwrap()), "/");
    let alice = u.user("alice").await.unwrap();
    let mut repo = u.t.state.repos.read().await.unwrap();
    assert!(repo.user_emails().all(&alice).await.unwrap().is_empty());
    assert!(repo.user_attributes().all(&alice).await.unwrap().is_empty());
    repo.cancel().await.unwrap();
    let jobs = pending_jobs(&u.t).await;
    assert!(
        matches!(&jobs[..], [HomeserverJob::ProvisionUser(p)] if p.display_name.as_deref() == Some("alice")),
        "{jobs:?}"
    );
    u.cleanup().await;
}

/// A suggested (editable) localpart: the user may choose another, and a
/// taken one re-shows the form.
#[tokio::test]
async fn suggested_localpart_is_editable_and_taken_names_are_refused() {
    let u = Ux::new(|p| {
        p.claims_imports.localpart.action = ImportAction::Suggest;
    })
    .await;
    add_user(&u.t.state, "alice", PASSWORD).await;
    let mut b = u.browser();
    let (id, _) = u.arrive(&mut b, alice_claims(), None, None).await;
    let page = b.get(&link_path(id)).await;
    assert!(
        page.body.contains(r#"name="username" value="alice""#),
        "{}",
        page.body
    );
    let csrf = page.csrf();
    let r = submit(&mut b, id, &csrf, "register", &[("username", "alice")]).await;
    assert_page(&r, StatusCode::BAD_REQUEST, "This username is taken");
    let r = submit(&mut b, id, &csrf, "register", &[("username", "Bad Name")]).await;
    assert_page(&r, StatusCode::BAD_REQUEST, "lower-case");
    let r = submit(&mut b, id, &csrf, "register", &[("username", "alice2")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(u.signed_in_as(&mut b).await.as_deref(), Some("alice2"));
    u.cleanup().await;
}

/// `on_conflict: fail` (the default) with a local `alice`: a clear page,
/// alice untouched and unlinked, nothing created.
#[tokio::test]
async fn on_conflict_fail_never_takes_over_a_local_account() {
    for db in databases().await {
        let u = Ux::on(db, |_| {}).await;
        let mut b = u.browser();
        let (id, link) = u.arrive(&mut b, alice_claims(), None, None).await;
        // The form is shown while the name is free; a local alice appears
        // before the submit, which checks again in its transaction.
        let page = b.get(&link_path(id)).await;
        let csrf = page.csrf();
        let alice = add_user(&u.t.state, "alice", PASSWORD).await;
        let r = submit(&mut b, id, &csrf, "register", &[("import_email", "on")]).await;
        assert_page(&r, StatusCode::CONFLICT, "belongs to an existing account");
        assert!(r.body.contains("NOT linked"), "{}", r.body);
        assert!(r.body.contains("@alice:example.org"), "{}", r.body);
        assert!(
            r.body.contains(r#"href="https://auth.example.org/""#),
            "a way back"
        );
        // Coming back, the page says so at once, before any form.
        let again = b.get(&link_path(id)).await;
        assert_page(&again, StatusCode::CONFLICT, "NOT linked");
        assert!(!again.body.contains("Create account"), "{}", again.body);
        assert_eq!(u.signed_in_as(&mut b).await, None);
        assert!(u.links_of(&alice).await.is_empty());
        assert_eq!(u.link(link.id).await.user_id, None);
        assert_eq!(u.user_count().await, 1);
        let mut repo = u.t.state.repos.read().await.unwrap();
        assert!(repo.user_emails().all(&alice).await.unwrap().is_empty());
        assert!(repo.user_attributes().all(&alice).await.unwrap().is_empty());
        repo.cancel().await.unwrap();
        assert!(pending_jobs(&u.t).await.is_empty());
        u.cleanup().await;
    }
}

/// `add`, `set` and `replace` link the existing account (MAS semantics):
/// `set` only when it has no link of this provider yet, `replace` moves
/// the provider's link.
#[tokio::test]
async fn on_conflict_add_set_replace() {
    for (mode, with_old_link, expect_linked) in [
        (OnConflict::Add, true, true),
        (OnConflict::Set, false, true),
        (OnConflict::Set, true, false),
        (OnConflict::Replace, true, true),
    ] {
        let u = Ux::new(|p| p.claims_imports.localpart.on_conflict = mode).await;
        let alice = add_user(&u.t.state, "alice", PASSWORD).await;
        let old = if with_old_link {
            let mut claims = alice_claims();
            claims["id_token"]["sub"] = json!("idp-old");
            Some(u.completed(claims, Some(&alice), None).await.1)
        } else {
            None
        };
        let mut b = u.browser();
        let (id, link) = u.arrive(&mut b, alice_claims(), None, None).await;
        let page = b.get(&link_path(id)).await;
        let csrf = page.csrf();
        let r = submit(&mut b, id, &csrf, "register", &[("attr.tenant_id", "on")]).await;
        let ctx = format!("{mode:?} old={with_old_link}");
        let attributes = || async {
            let mut repo = u.t.state.repos.read().await.unwrap();
            let a = repo.user_attributes().all(&alice).await.unwrap();
            repo.cancel().await.unwrap();
            a
        };
        if expect_linked {
            assert_eq!(r.status, StatusCode::SEE_OTHER, "{ctx}: {}", r.body);
            assert_eq!(u.link(link.id).await.user_id, Some(alice.id), "{ctx}");
            assert_eq!(u.signed_in_as(&mut b).await.as_deref(), Some("alice"));
            // The existing account gets the imported custom attributes.
            assert_eq!(
                attributes().await.get("tenant_id").map(String::as_str),
                Some("acme"),
                "{ctx}"
            );
        } else {
            assert_page(&r, StatusCode::CONFLICT, "NOT linked");
            assert_eq!(u.link(link.id).await.user_id, None, "{ctx}");
            assert!(attributes().await.is_empty(), "{ctx}");
        }
        if let Some(old) = old {
            let kept = u.link(old.id).await.user_id;
            if mode == OnConflict::Replace {
                assert_eq!(kept, None, "{ctx}: the old link is detached");
            } else {
                assert_eq!(kept, Some(alice.id), "{ctx}");
            }
        }
        assert_eq!(u.user_count().await, 1, "{ctx}");
        u.cleanup().await;
    }
}

/// `localpart: require` and no `preferred_username`: a clear refusal
/// naming the claim; nothing created.
#[tokio::test]
async fn required_claim_missing_is_refused() {
    let u = Ux::new(|_| {}).await;
    let mut b = u.browser();
    let mut claims = alice_claims();
    claims["id_token"]
        .as_object_mut()
        .unwrap()
        .remove("preferred_username");
    let (id, _) = u.arrive(&mut b, claims, None, None).await;
    let r = b.get(&link_path(id)).await;
    assert_page(
        &r,
        StatusCode::FORBIDDEN,
        "did not send `preferred_username`",
    );
    assert!(r.body.contains("No account was created"), "{}", r.body);
    assert_eq!(u.user_count().await, 0);
    u.cleanup().await;
}

/// `attribute_requirements` not met: refused before anything, on every
/// path (new and existing links).
#[tokio::test]
async fn attribute_requirements_refuse_other_tenants() {
    let u = Ux::new(|p| {
        p.attribute_requirements = vec![AttributeRequirement {
            attribute: "tenant_id".into(),
            value: Some("other-tenant".into()),
            one_of: vec![],
        }];
    })
    .await;
    let alice = add_user(&u.t.state, "alice", PASSWORD).await;
    for user in [None, Some(&alice)] {
        let mut b = u.browser();
        let mut claims = alice_claims();
        claims["id_token"]["sub"] = json!(format!("sub-{}", user.is_some()));
        let (id, _) = u.arrive(&mut b, claims, user, None).await;
        let r = b.get(&link_path(id)).await;
        assert_page(
            &r,
            StatusCode::FORBIDDEN,
            "You are not allowed to use this service through OpenMeet",
        );
        assert_eq!(u.signed_in_as(&mut b).await, None);
    }
    assert_eq!(u.user_count().await, 1);

    // The same provider with a requirement Alice meets (a list claim).
    let u = Ux::new(|p| {
        p.attribute_requirements = vec![AttributeRequirement {
            attribute: "groups".into(),
            value: None,
            one_of: vec!["staff".into(), "admins".into()],
        }];
    })
    .await;
    let mut b = u.browser();
    let mut claims = alice_claims();
    claims["userinfo"] = json!({"groups": ["users", "staff"]});
    let (id, _) = u.arrive(&mut b, claims, None, None).await;
    assert_page(
        &b.get(&link_path(id)).await,
        StatusCode::OK,
        "Create your account",
    );
    u.cleanup().await;
}

/// Someone signed in, the upstream account unlinked: an offer to link,
/// confirmed with a CSRF-checked POST.
#[tokio::test]
async fn signed_in_user_is_offered_to_link() {
    let u = Ux::new(|_| {}).await;
    let bob = add_user(&u.t.state, "bob", PASSWORD).await;
    let mut b = u.browser();
    let r = b.login("bob", PASSWORD, None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let (id, link) = u.arrive(&mut b, alice_claims(), None, None).await;
    let page = b.get(&link_path(id)).await;
    assert_page(&page, StatusCode::OK, "Link your OpenMeet account?");
    assert!(page.body.contains("@bob:example.org"), "{}", page.body);
    // The seed's suggested `tenant_id`, as an opt-out box.
    assert!(
        page.body
            .contains(r#"name="attr.tenant_id" value="on" checked"#),
        "{}",
        page.body
    );
    let csrf = page.csrf();
    let r = b
        .post(&link_path(id), &[("csrf", "wrong"), ("action", "link")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(u.link(link.id).await.user_id, None);
    let r = submit(&mut b, id, &csrf, "link", &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(u.link(link.id).await.user_id, Some(bob.id));
    assert_eq!(u.signed_in_as(&mut b).await.as_deref(), Some("bob"));
    assert!(u.user("alice").await.is_none(), "no account created");
    // The box was left unticked: the suggested attribute is not stored.
    let mut repo = u.t.state.repos.read().await.unwrap();
    assert!(repo.user_attributes().all(&bob).await.unwrap().is_empty());
    repo.cancel().await.unwrap();
    u.cleanup().await;
}

async fn attributes_of(u: &Ux, user: &User) -> std::collections::BTreeMap<String, String> {
    let mut repo = u.t.state.repos.read().await.unwrap();
    let a = repo.user_attributes().all(user).await.unwrap();
    repo.cancel().await.unwrap();
    a
}

/// Linking an existing account through the offer stores the custom claims
/// (here the seed's suggested `tenant_id`, its box ticked). A `require`d
/// custom claim that is missing refuses the link with the same page as at
/// registration, on the offer and on its POST; nothing is linked or stored.
#[tokio::test]
async fn linking_an_existing_account_imports_custom_claims() {
    for db in databases().await {
        let u = Ux::on(db, |_| {}).await;
        let bob = add_user(&u.t.state, "bob", PASSWORD).await;
        let mut b = u.browser();
        b.login("bob", PASSWORD, None).await;
        let (id, link) = u.arrive(&mut b, alice_claims(), None, None).await;
        let page = b.get(&link_path(id)).await;
        assert_page(&page, StatusCode::OK, "Link your OpenMeet account?");
        let csrf = page.csrf();
        let r = submit(&mut b, id, &csrf, "link", &[("attr.tenant_id", "on")]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        assert_eq!(u.link(link.id).await.user_id, Some(bob.id));
        assert_eq!(
            attributes_of(&u, &bob)
                .await
                .get("tenant_id")
                .map(String::as_str),
            Some("acme")
        );
        u.cleanup().await;
    }

    let u = Ux::new(|p| {
        p.claims_imports.custom.get_mut("tenant_id").unwrap().action = ImportAction::Require;
    })
    .await;
    let bob = add_user(&u.t.state, "bob", PASSWORD).await;
    let mut b = u.browser();
    b.login("bob", PASSWORD, None).await;
    let mut claims = alice_claims();
    claims["id_token"]
        .as_object_mut()
        .unwrap()
        .remove("tenant_id");
    let (id, link) = u.arrive(&mut b, claims, None, None).await;
    let r = b.get(&link_path(id)).await;
    assert_page(&r, StatusCode::FORBIDDEN, "did not send `tenant_id`");
    assert!(
        r.body.contains("Your OpenMeet account was NOT linked"),
        "{}",
        r.body
    );
    let csrf = b.get("/login?switch=1").await.csrf();
    let r = submit(&mut b, id, &csrf, "link", &[]).await;
    assert_page(&r, StatusCode::FORBIDDEN, "did not send `tenant_id`");
    assert_eq!(u.link(link.id).await.user_id, None);
    assert!(attributes_of(&u, &bob).await.is_empty());
    u.cleanup().await;
}

/// On later sign-ins through the link, custom attributes whose import is
/// `force` or `require` follow the provider (an organisation moving a user
/// to another tenant must reach policy); `suggest`ed ones stay what the
/// user chose at registration. The callback's work is done through
/// storage here; `upstream_login` shows the same through a provider.
#[tokio::test]
async fn sign_in_updates_forced_attributes_only() {
    for action in [
        ImportAction::Force,
        ImportAction::Require,
        ImportAction::Suggest,
    ] {
        for db in databases().await {
            let u = Ux::on(db, |p| {
                p.claims_imports.custom.get_mut("tenant_id").unwrap().action = action;
            })
            .await;
            let alice = add_user(&u.t.state, "alice", PASSWORD).await;
            {
                let mut repo = u.t.state.repos.write().await.unwrap();
                repo.user_attributes()
                    .set(u.t.state.clock.as_ref(), &alice, "tenant_id", "acme")
                    .await
                    .unwrap();
                repo.save().await.unwrap();
            }
            let mut claims = alice_claims();
            claims["id_token"]["tenant_id"] = json!("globex");
            let mut b = u.browser();
            let (id, _) = u.arrive(&mut b, claims, Some(&alice), None).await;
            let r = b.get(&link_path(id)).await;
            assert_eq!(r.status, StatusCode::SEE_OTHER, "{action:?}: {}", r.body);
            let expected = if action == ImportAction::Suggest {
                "acme"
            } else {
                "globex"
            };
            assert_eq!(
                attributes_of(&u, &alice)
                    .await
                    .get("tenant_id")
                    .map(String::as_str),
                Some(expected),
                "{action:?}"
            );
            u.cleanup().await;
        }
    }
}

/// `alice` exists only on the homeserver (not imported yet, or in an
/// application service's namespace): an upstream registration never
/// creates her here, since provisioning would then take over her Matrix
/// account. With `on_conflict: fail` it is the usual conflict page; `add`,
/// `replace` and `set` have no account here to link, and a page says so.
/// The form's POST is refused the same way; no user, no link, no
/// provisioning job.
#[tokio::test]
async fn homeserver_only_user_is_never_taken_over() {
    for mode in [
        OnConflict::Fail,
        OnConflict::Add,
        OnConflict::Replace,
        OnConflict::Set,
    ] {
        for db in databases().await {
            let u = Ux::on(db, |p| p.claims_imports.localpart.on_conflict = mode).await;
            u.hs.insert_user("alice", MockUser::default());
            let mut b = u.browser();
            let (id, link) = u.arrive(&mut b, alice_claims(), None, None).await;
            let why = if mode == OnConflict::Fail {
                "belongs to an existing account"
            } else {
                "already in use on the homeserver"
            };
            let page = b.get(&link_path(id)).await;
            assert_page(&page, StatusCode::CONFLICT, why);
            assert!(page.body.contains("NOT linked"), "{mode:?}: {}", page.body);
            assert!(page.body.contains("@alice:example.org"), "{}", page.body);
            let csrf = b.get("/login").await.csrf();
            let r = submit(&mut b, id, &csrf, "register", &[("import_email", "on")]).await;
            assert_page(&r, StatusCode::CONFLICT, why);
            assert_eq!(u.user_count().await, 0, "{mode:?}");
            assert_eq!(u.link(link.id).await.user_id, None, "{mode:?}");
            assert!(pending_jobs(&u.t).await.is_empty(), "{mode:?}");
            assert_eq!(u.signed_in_as(&mut b).await, None);
            assert!(
                u.hs.calls()
                    .iter()
                    .any(|c| c == "is_localpart_available alice"),
                "{:?}",
                u.hs.calls()
            );
            assert_eq!(u.hs.user("alice"), Some(MockUser::default()), "untouched");
            u.cleanup().await;
        }
    }
}

/// A typed (suggested) name only the homeserver has is "taken", as a local
/// one is; another name works.
#[tokio::test]
async fn typed_name_taken_on_the_homeserver_is_taken() {
    for db in databases().await {
        let u = Ux::on(db, |p| {
            p.claims_imports.localpart.action = ImportAction::Suggest;
        })
        .await;
        u.hs.insert_user("alice", MockUser::default());
        let mut b = u.browser();
        let (id, _) = u.arrive(&mut b, alice_claims(), None, None).await;
        let page = b.get(&link_path(id)).await;
        assert_page(&page, StatusCode::OK, "Create your account");
        let csrf = page.csrf();
        let r = submit(&mut b, id, &csrf, "register", &[("username", "alice")]).await;
        assert_page(&r, StatusCode::BAD_REQUEST, "This username is taken");
        assert_eq!(u.user_count().await, 0);
        assert!(pending_jobs(&u.t).await.is_empty());
        let r = submit(&mut b, id, &csrf, "register", &[("username", "alice2")]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        assert_eq!(u.signed_in_as(&mut b).await.as_deref(), Some("alice2"));
        u.cleanup().await;
    }
}

/// The homeserver cannot be reached: no account is created blind. The page
/// and its POST answer 503 (with Retry-After) and say so; nothing is
/// written, so the same sign-in completes once the homeserver is back.
#[tokio::test]
async fn homeserver_down_creates_no_account() {
    for db in databases().await {
        let u = Ux::on(db, |_| {}).await;
        let mut b = u.browser();
        let (id, link) = u.arrive(&mut b, alice_claims(), None, None).await;
        let page = b.get(&link_path(id)).await;
        assert_page(&page, StatusCode::OK, "Create your account");
        let csrf = page.csrf();
        u.hs.set_down(true);
        let r = b.get(&link_path(id)).await;
        assert_page(&r, StatusCode::SERVICE_UNAVAILABLE, "cannot be reached");
        assert_eq!(r.header("retry-after"), Some("5"));
        let form = [("csrf", csrf.as_str()), ("action", "register")];
        let r = b.post(&link_path(id), &form).await;
        assert_page(
            &r,
            StatusCode::SERVICE_UNAVAILABLE,
            "no account was created",
        );
        assert_eq!(u.user_count().await, 0);
        assert_eq!(u.link(link.id).await.user_id, None);
        assert!(pending_jobs(&u.t).await.is_empty());
        assert_eq!(u.signed_in_as(&mut b).await, None);
        u.hs.set_down(false);
        let r = b.post(&link_path(id), &form).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        assert_eq!(u.signed_in_as(&mut b).await.as_deref(), Some("alice"));
        u.cleanup().await;
    }
}

/// The link belongs to someone else than the signed-in user: a mismatch
/// page, no silent switch; continuing is an explicit POST.
#[tokio::test]
async fn mismatch_page_never_switches_silently() {
    let u = Ux::new(|_| {}).await;
    let alice = add_user(&u.t.state, "alice", PASSWORD).await;
    add_user(&u.t.state, "bob", PASSWORD).await;
    let mut b = u.browser();
    b.login("bob", PASSWORD, None).await;
    let (id, _) = u.arrive(&mut b, alice_claims(), Some(&alice), None).await;
    let page = b.get(&link_path(id)).await;
    assert_page(&page, StatusCode::OK, "belongs to someone else");
    assert!(page.body.contains("@alice:example.org"));
    assert!(page.body.contains("@bob:example.org"));
    assert_eq!(u.signed_in_as(&mut b).await.as_deref(), Some("bob"));
    let csrf = page.csrf();
    let r = submit(&mut b, id, &csrf, "continue", &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(u.signed_in_as(&mut b).await.as_deref(), Some("alice"));
    u.cleanup().await;
}

/// A locked user with a link is refused with a clear page.
#[tokio::test]
async fn locked_user_is_refused() {
    let u = Ux::new(|_| {}).await;
    let alice = add_user(&u.t.state, "alice", PASSWORD).await;
    {
        let mut repo = u.t.state.repos.write().await.unwrap();
        repo.users()
            .lock(u.t.state.clock.as_ref(), alice.clone())
            .await
            .unwrap();
        repo.save().await.unwrap();
    }
    let mut b = u.browser();
    let (id, _) = u.arrive(&mut b, alice_claims(), Some(&alice), None).await;
    let r = b.get(&link_path(id)).await;
    assert_page(&r, StatusCode::FORBIDDEN, "locked or deactivated");
    assert_eq!(u.signed_in_as(&mut b).await, None);
    u.cleanup().await;
}

/// A deactivated user with a link is refused with a clear page, and no
/// session is opened (checklist S34).
#[tokio::test]
async fn deactivated_user_is_refused() {
    for db in databases().await {
        let u = Ux::on(db, |_| {}).await;
        let alice = add_user(&u.t.state, "alice", PASSWORD).await;
        {
            let mut repo = u.t.state.repos.write().await.unwrap();
            repo.users()
                .deactivate(u.t.state.clock.as_ref(), alice.clone())
                .await
                .unwrap();
            repo.save().await.unwrap();
        }
        let mut b = u.browser();
        let (id, _) = u.arrive(&mut b, alice_claims(), Some(&alice), None).await;
        let r = b.get(&link_path(id)).await;
        assert_page(&r, StatusCode::FORBIDDEN, "locked or deactivated");
        let session_cookie = vestibule_server::session::session_cookie_name(&u.t.state);
        assert!(
            r.set_cookies()
                .iter()
                .all(|c| !c.starts_with(&format!("{session_cookie}="))),
            "{:?}",
            r.set_cookies()
        );
        assert_eq!(u.signed_in_as(&mut b).await, None);
        let mut repo = u.t.state.repos.read().await.unwrap();
        assert!(
            repo.browser_sessions()
                .list_active_for_user(&alice)
                .await
                .unwrap()
                .is_empty()
        );
        repo.cancel().await.unwrap();
        u.cleanup().await;
    }
}

/// A session id this browser did not start, or no such session, or one
/// not completed: error pages with a way back.
#[tokio::test]
async fn session_not_started_in_this_browser_is_refused() {
    let u = Ux::new(|_| {}).await;
    let (id, link) = u.completed(alice_claims(), None, None).await;
    let mut other = u.browser();
    let r = other.get(&link_path(id)).await;
    assert_page(&r, StatusCode::BAD_REQUEST, "not valid in this browser");
    assert!(r.body.contains("Go to the start page"), "{}", r.body);
    let r = other.get("/upstream/link/not-a-ulid").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let unknown = Ulid::new();
    u.admit(&mut other, unknown);
    let r = other.get(&link_path(unknown)).await;
    assert_page(&r, StatusCode::NOT_FOUND, "Start again");
    // POST with a valid CSRF token but no cookie entry: refused too.
    let mut b = u.browser();
    let csrf = b.get("/login").await.csrf();
    let r = submit(&mut b, id, &csrf, "register", &[]).await;
    assert_page(&r, StatusCode::BAD_REQUEST, "not valid in this browser");
    assert_eq!(u.link(link.id).await.user_id, None);
    assert_eq!(u.user_count().await, 0);
    u.cleanup().await;
}

/// `skip_confirmation` with nothing to ask: the account is created at
/// once (no form).
#[tokio::test]
async fn skip_confirmation_creates_at_once() {
    let u = Ux::new(|p| {
        let c = &mut p.claims_imports;
        c.skip_confirmation = true;
        c.displayname.action = ImportAction::Force;
        c.email.action = ImportAction::Require;
        c.custom.get_mut("tenant_id").unwrap().action = ImportAction::Force;
    })
    .await;
    let mut b = u.browser();
    let (id, _) = u.arrive(&mut b, alice_claims(), None, None).await;
    let r = b.get(&link_path(id)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let alice = u.user("alice").await.unwrap();
    let mut repo = u.t.state.repos.read().await.unwrap();
    assert_eq!(
        repo.user_attributes().all(&alice).await.unwrap()["tenant_id"],
        "acme"
    );
    assert_eq!(repo.user_emails().all(&alice).await.unwrap().len(), 1);
    repo.cancel().await.unwrap();
    let _ = &u.hs;
    u.cleanup().await;
}

/// A second provider, with a known brand.
fn google_provider() -> UpstreamProviderConfig {
    let mut p = seed_provider();
    "01JAYS74TCG3BTWKADN5Q4518D".clone_into(&mut p.id);
    p.human_name = Some("Google".to_owned());
    p.brand_name = Some("google".to_owned());
    p
}

async fn app_with_providers(providers: Vec<UpstreamProviderConfig>, passwords: bool) -> TestApp {
    let db = TestDatabase::sqlite().await.expect("sqlite");
    app_with_mock(db, ISSUER, |c| {
        c.upstream_oauth2.providers = providers;
        c.passwords.enabled = passwords;
    })
    .0
}

/// One button per enabled provider, brand icon or neutral, each carrying
/// what the login page continues; the icon is served from our assets.
#[tokio::test]
async fn login_page_shows_a_button_per_enabled_provider() {
    let mut disabled = google_provider();
    "01JAYS74TCG3BTWKADN5Q4518E".clone_into(&mut disabled.id);
    disabled.human_name = Some("Gone".to_owned());
    disabled.enabled = false;
    let t = app_with_providers(vec![seed_provider(), google_provider(), disabled], true).await;
    let mut b = Browser::new(&t);
    let client = add_client(&t.state, ClientAuthMethod::None, &[REDIRECT]).await;
    let r = b
        .get(&authorize_uri(&client.client_id, REDIRECT, &[]))
        .await;
    let grant = b
        .path_of(r.location().unwrap())
        .trim_start_matches("/consent/")
        .to_owned();
    let page = b.get(&format!("/login?grant={grant}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("name=\"password\""),
        "password form kept"
    );
    assert!(
        page.body.contains(&format!(
            "href=\"https://auth.example.org/upstream/authorize/01JAYS74TCG3BTWKADN5Q4518C?grant={grant}\""
        )),
        "{}",
        page.body
    );
    assert!(page.body.contains("Continue with OpenMeet"));
    assert!(page.body.contains("Continue with Google"));
    assert!(!page.body.contains("Gone"), "disabled providers are hidden");
    assert!(page.body.contains("/assets/brand-google."), "{}", page.body);
    assert!(
        page.body.contains("/assets/brand-neutral."),
        "openmeet: neutral"
    );
    // The icon is ours, same origin (CSP img-src 'self').
    let start = page.body.find("/assets/brand-google.").unwrap();
    let end = page.body[start..].find('"').unwrap() + start;
    let icon = b.get(&page.body[start..end]).await;
    assert_eq!(icon.status, StatusCode::OK);
    assert_eq!(icon.header("content-type"), Some("image/svg+xml"));
    assert!(icon.body.starts_with("<svg"));

    // `next` to the account page and a legacy SSO login are carried too.
    let page = b.get("/login?switch=1&next=/account/").await;
    assert!(
        page.body
            .contains("upstream/authorize/01JAYS74TCG3BTWKADN5Q4518D?next=%2Faccount%2F\""),
        "{}",
        page.body
    );
}

/// Password login disabled and a single provider: `/login` goes straight
/// to it with the same continuation; with two, the page lists both.
#[tokio::test]
async fn login_goes_straight_to_the_only_provider_without_passwords() {
    let t = app_with_providers(vec![seed_provider()], false).await;
    let mut b = Browser::new(&t);
    let client = add_client(&t.state, ClientAuthMethod::None, &[REDIRECT]).await;
    let r = b
        .get(&authorize_uri(&client.client_id, REDIRECT, &[]))
        .await;
    let grant = b
        .path_of(r.location().unwrap())
        .trim_start_matches("/consent/")
        .to_owned();
    let r = b.get(&format!("/login?grant={grant}")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        b.path_of(r.location().unwrap()),
        format!("/upstream/authorize/01JAYS74TCG3BTWKADN5Q4518C?grant={grant}")
    );

    let t = app_with_providers(vec![seed_provider(), google_provider()], false).await;
    let mut b = Browser::new(&t);
    let page = b.get("/login").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(!page.body.contains("name=\"password\""));
    assert!(!page.body.contains("Password sign-in is disabled"));
    assert!(page.body.contains("Continue with OpenMeet"));
    assert!(page.body.contains("Continue with Google"));

    // With passwords on, one provider is a button, not a redirect.
    let t = app_with_providers(vec![seed_provider()], true).await;
    let mut b = Browser::new(&t);
    assert_eq!(b.get("/login").await.status, StatusCode::OK);
}

/// Custom attributes (here set directly, as a registration through the
/// provider stores them) are released with the `profile` scope in the ID
/// token and at userinfo, never over a standard claim; without `profile`
/// they stay out. The account page shows them.
#[tokio::test]
async fn attributes_reach_the_id_token_userinfo_and_account_page() {
    use crate::oauth2_support::{Fx, GrantOpts, str_of};
    let fx = Fx::new().await;
    let user = fx.user("carol", Some("carol@example.org")).await;
    {
        let mut repo = fx.t.state.repos.write().await.unwrap();
        let clock = fx.t.state.clock.as_ref();
        for (k, v) in [("tenant_id", "acme"), ("email", "spoof@evil"), ("sub", "x")] {
            repo.user_attributes()
                .set(clock, &user, k, v)
                .await
                .unwrap();
        }
        repo.save().await.unwrap();
    }
    let client = fx.public_client().await;
    for (scope, released) in [
        ("openid profile urn:matrix:client:api:*", true),
        ("openid urn:matrix:client:api:*", false),
    ] {
        let g = fx
            .grant_for(
                &client,
                Some(user.clone()),
                GrantOpts {
                    scope,
                    ..GrantOpts::default()
                },
            )
            .await;
        let body = fx.exchange_ok(&client, &g.code).await;
        let claims =
            fx.t.state
                .keystore
                .verify_jwt(str_of(&body, "id_token"))
                .unwrap();
        assert_eq!(claims["sub"], user.id.to_string(), "{scope}");
        assert!(claims.get("email").is_none(), "{scope}: reserved");
        assert_eq!(
            claims.get("tenant_id").and_then(Value::as_str),
            released.then_some("acme"),
            "{scope}"
        );
        let res = crate::harness::send(
            &fx.app,
            Request::get("/oauth2/userinfo")
                .header(
                    header::AUTHORIZATION,
                    format!("Bearer {}", str_of(&body, "access_token")),
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        let info = crate::harness::body_json(res).await;
        assert_eq!(info["sub"], user.id.to_string(), "{scope}");
        assert!(info.get("email").is_none(), "{scope}");
        assert_eq!(
            info.get("tenant_id").and_then(Value::as_str),
            released.then_some("acme"),
            "{scope}: {info}"
        );
    }

    // The account page lists them.
    let mut b = Browser::new(&fx.t);
    let carol = add_user(&fx.t.state, "dave", PASSWORD).await;
    {
        let mut repo = fx.t.state.repos.write().await.unwrap();
        repo.user_attributes()
            .set(fx.t.state.clock.as_ref(), &carol, "tenant_id", "acme-<b>")
            .await
            .unwrap();
        repo.save().await.unwrap();
    }
    b.login("dave", PASSWORD, None).await;
    let page = b.get("/account/").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body
            .contains("<dt>tenant_id</dt><dd>acme-&lt;b&gt;</dd>"),
        "{}",
        page.body
    );
    fx.cleanup().await;
}

/// A display name given to `manage import-users` is kept in the attribute
/// `displayname` (so a later import can tell whether it changed): that is
/// bookkeeping, not a custom attribute. An imported user's ID token and
/// userinfo carry their custom attribute but no `displayname` claim, and
/// the account page does not list it. On SQLite and PostgreSQL.
#[tokio::test]
async fn an_imported_display_name_is_not_released_as_an_attribute() {
    use std::collections::BTreeMap;

    use vestibule_server::flows::user_import::{self, DISPLAYNAME_ATTRIBUTE, ImportRow, Outcome};

    use crate::oauth2_support::{Fx, GrantOpts, str_of};
    for db in databases().await {
        let fx = Fx::on(db, |_| {});
        // A local account the import brings up to date (so it can sign in
        // to see its account page).
        let erin = add_user(&fx.t.state, "erin", PASSWORD).await;
        let row = ImportRow {
            localpart: "erin".to_owned(),
            email: None,
            displayname: Some("Erin Example".to_owned()),
            link: None,
            attributes: BTreeMap::from([("tenant_id".to_owned(), "acme".to_owned())]),
        };
        {
            let mut repo = fx.t.state.repos.write().await.unwrap();
            let mut rng = fx.t.state.rng.rng();
            let outcome = user_import::apply(
                &mut repo,
                fx.t.state.clock.as_ref(),
                &mut rng,
                &BTreeMap::new(),
                &row,
            )
            .await
            .unwrap();
            assert!(matches!(outcome, Outcome::Updated(_)), "{outcome:?}");
            let attrs = repo.user_attributes().all(&erin).await.unwrap();
            assert_eq!(
                attrs.get(DISPLAYNAME_ATTRIBUTE).map(String::as_str),
                Some("Erin Example"),
                "kept for the next import"
            );
            repo.save().await.unwrap();
        }

        let client = fx.public_client().await;
        let g = fx
            .grant_for(
                &client,
                Some(erin.clone()),
                GrantOpts {
                    scope: "openid profile urn:matrix:client:api:*",
                    ..GrantOpts::default()
                },
            )
            .await;
        let body = fx.exchange_ok(&client, &g.code).await;
        let claims =
            fx.t.state
                .keystore
                .verify_jwt(str_of(&body, "id_token"))
                .unwrap();
        assert_eq!(claims["tenant_id"], "acme", "{claims}");
        assert!(claims.get("displayname").is_none(), "{claims}");
        let res = crate::harness::send(
            &fx.app,
            Request::get("/oauth2/userinfo")
                .header(
                    header::AUTHORIZATION,
                    format!("Bearer {}", str_of(&body, "access_token")),
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
        let info = crate::harness::body_json(res).await;
        assert_eq!(info["sub"], erin.id.to_string(), "{info}");
        assert_eq!(info["tenant_id"], "acme", "{info}");
        assert!(info.get("displayname").is_none(), "{info}");

        let mut b = Browser::new(&fx.t);
        b.login("erin", PASSWORD, None).await;
        let page = b.get("/account/").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(
            page.body.contains("<dt>tenant_id</dt><dd>acme</dd>"),
            "{}",
            page.body
        );
        assert!(!page.body.contains("Erin Example"), "{}", page.body);
        assert!(!page.body.contains("<dt>displayname</dt>"), "{}", page.body);
        fx.cleanup().await;
    }
}

/// `registration_token_required` on the provider: no account is created
/// (tokens are not implemented), while existing links still sign in.
#[tokio::test]
async fn registration_token_required_refuses_new_accounts() {
    let u = Ux::new(|p| {
        p.registration_token_required = true;
        p.claims_imports.skip_confirmation = true;
        p.claims_imports.displayname.action = ImportAction::Ignore;
        p.claims_imports.email.action = ImportAction::Ignore;
        p.claims_imports.custom.clear();
    })
    .await;
    let mut b = u.browser();
    let (id, _) = u.arrive(&mut b, alice_claims(), None, None).await;
    let r = b.get(&link_path(id)).await;
    assert_page(&r, StatusCode::FORBIDDEN, "registration token");
    assert_eq!(u.user_count().await, 0);

    let bob = add_user(&u.t.state, "bob", PASSWORD).await;
    let mut claims = alice_claims();
    claims["id_token"]["sub"] = json!("idp-bob");
    let (id, _) = u.arrive(&mut b, claims, Some(&bob), None).await;
    assert_eq!(b.get(&link_path(id)).await.status, StatusCode::SEE_OTHER);
    assert_eq!(u.signed_in_as(&mut b).await.as_deref(), Some("bob"));
    u.cleanup().await;
}

/// Two submits of the same registration at once: exactly one account, the
/// other gets a page (compare-and-set on the upstream session).
#[tokio::test]
async fn parallel_submits_create_one_account() {
    for db in databases().await {
        let u = Ux::on(db, |_| {}).await;
        let mut b = u.browser();
        let (id, _) = u.arrive(&mut b, alice_claims(), None, None).await;
        let csrf = b.get(&link_path(id)).await.csrf();
        let form = [("csrf", csrf.as_str()), ("action", "register")];
        let mut b2 = b.clone();
        let path = link_path(id);
        let (r1, r2) = tokio::join!(b.post(&path, &form), b2.post(&path, &form));
        let mut statuses = [r1.status, r2.status];
        statuses.sort();
        assert_eq!(statuses[0], StatusCode::SEE_OTHER, "{r1:?} {r2:?}");
        assert!(statuses[1].is_client_error(), "{r1:?} {r2:?}");
        assert_eq!(u.user_count().await, 1);
        assert_eq!(pending_jobs(&u.t).await.len(), 1);
        u.cleanup().await;
    }
}
