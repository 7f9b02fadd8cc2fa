//! Fixtures for the OAuth 2.0 endpoint tests: users, clients, browser
//! sessions, sessions and fulfilled grants made directly through the
//! repositories, and request helpers.

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
    response::Response,
};
use base64::Engine as _;
use chrono::Duration;
use serde_json::Value;
use vestibule_domain::{
    browser_session::{Authentication, BrowserSession},
    oauth2::{Client, ClientAuthMethod, Pkce, ResponseMode, Session},
    pkce::s256_challenge,
    tokens::token_hash,
    user::User,
};
use vestibule_server::{Resources, homeserver::MockHomeserver};
use vestibule_storage::oauth2::{ClientParams, NewAuthorizationGrant};
use vestibule_storage_sql::testing::TestDatabase;

use crate::harness::{TestApp, body_json, send};

pub const ISSUER: &str = "https://auth.example.org/";
pub const TOKEN_URL: &str = "https://auth.example.org/oauth2/token";
pub const HS_SECRET: &str = "homeserver-shared-secret";
pub const REDIRECT: &str = "https://app.example.org/cb";
/// RFC 7636 Appendix B.
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CLIENT_SECRET: &str = "s3cret-of-the-client";
pub const SCOPE: &str = "openid urn:matrix:client:api:* urn:matrix:client:device:ABCDEFGHIJ";

static NEXT_USER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub struct Fx {
    pub t: TestApp,
    pub app: Router,
}

/// What a fulfilled grant came with.
pub struct Granted {
    pub code: String,
    pub user: User,
    pub session: Session,
    #[allow(dead_code)]
    pub browser_session: BrowserSession,
    pub auth: Authentication,
}

pub struct GrantOpts<'a> {
    pub scope: &'a str,
    pub pkce: Option<Pkce>,
    pub nonce: Option<&'a str>,
}

impl Default for GrantOpts<'_> {
    fn default() -> Self {
        Self {
            scope: SCOPE,
            pkce: Some(Pkce {
                challenge_method: "S256".to_owned(),
                challenge: s256_challenge(VERIFIER),
            }),
            nonce: Some("n-0S6_WzA2Mj"),
        }
    }
}

impl Fx {
    pub async fn new() -> Self {
        Self::on(TestDatabase::sqlite().await.expect("sqlite"), |_| {})
    }

    pub async fn with_config(configure: impl FnOnce(&mut vestibule_config::Config)) -> Self {
        Self::on(TestDatabase::sqlite().await.expect("sqlite"), configure)
    }

    pub fn on(db: TestDatabase, configure: impl FnOnce(&mut vestibule_config::Config)) -> Self {
        let t = TestApp::with(db, ISSUER, |c| {
            c.matrix.secret = Some(HS_SECRET.into());
            configure(c);
        });
        let app = t.router(&Resources::all(), None);
        Self { t, app }
    }

    pub async fn cleanup(self) {
        self.t.db.cleanup().await;
    }

    /// Gives the state a fresh mock homeserver the test can reach (to hold
    /// token requests at their device upsert), and rebuilds the router.
    pub fn reachable_homeserver(&mut self) -> Arc<MockHomeserver> {
        let hs = Arc::new(MockHomeserver::new("example.org"));
        self.t.state.homeserver = hs.clone();
        self.app = self.t.router(&Resources::all(), None);
        hs
    }

    pub fn advance(&self, seconds: i64) {
        self.t.clock.advance(Duration::seconds(seconds));
    }

    pub async fn user(&self, username: &str, email: Option<&str>) -> User {
        let mut repo = self.t.state.repos.write().await.unwrap();
        let mut rng = self.t.state.rng.rng();
        let user = repo
            .users()
            .add(&mut rng, &*self.t.clock, username)
            .await
            .unwrap();
        if let Some(email) = email {
            repo.user_emails()
                .add(&mut rng, &*self.t.clock, &user, email)
                .await
                .unwrap();
        }
        repo.save().await.unwrap();
        user
    }

    pub async fn client_with(&self, params: ClientParams) -> Client {
        let mut repo = self.t.state.repos.write().await.unwrap();
        let mut rng = self.t.state.rng.rng();
        let client = repo
            .oauth2_clients()
            .add(&mut rng, &*self.t.clock, params)
            .await
            .unwrap();
        repo.save().await.unwrap();
        client
    }

    pub fn params(method: ClientAuthMethod, grant_types: &[&str]) -> ClientParams {
        ClientParams {
            client_name: Some("Test client".to_owned()),
            client_uri: None,
            logo_uri: None,
            policy_uri: None,
            tos_uri: None,
            redirect_uris: vec![REDIRECT.parse().unwrap()],
            grant_types: grant_types.iter().map(|g| (*g).to_owned()).collect(),
            application_type: None,
            token_endpoint_auth_method: method,
            encrypted_client_secret: None,
            jwks: None,
            jwks_uri: None,
            id_token_signed_response_alg: None,
            metadata_digest: None,
        }
    }

    pub fn encrypt_secret(&self, secret: &str) -> String {
        self.t
            .state
            .encrypter
            .encrypt_to_string(&mut rand::rngs::OsRng, b"client_secret", secret.as_bytes())
            .unwrap()
    }

    /// A public client (`none`) with the code and refresh grants.
    pub async fn public_client(&self) -> Client {
        self.client_with(Self::params(
            ClientAuthMethod::None,
            &["authorization_code", "refresh_token"],
        ))
        .await
    }

    /// A confidential client with an encrypted secret.
    pub async fn confidential_client(
        &self,
        method: ClientAuthMethod,
        grant_types: &[&str],
    ) -> Client {
        let mut params = Self::params(method, grant_types);
        params.encrypted_client_secret = Some(self.encrypt_secret(CLIENT_SECRET));
        self.client_with(params).await
    }

    /// A user with a password login in a browser session, an OAuth session
    /// for `client` and a fulfilled grant whose code is returned.
    pub async fn grant_for(
        &self,
        client: &Client,
        user: Option<User>,
        opts: GrantOpts<'_>,
    ) -> Granted {
        let user = if let Some(u) = user {
            u
        } else {
            let n = NEXT_USER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.user(&format!("alice{n}"), Some(&format!("alice{n}@example.org")))
                .await
        };
        let mut repo = self.t.state.repos.write().await.unwrap();
        let mut rng = self.t.state.rng.rng();
        let clock = &*self.t.clock;
        let password = repo
            .user_passwords()
            .add(
                &mut rng,
                clock,
                &user,
                1,
                "$argon2id$v=19$test".to_owned(),
                None,
            )
            .await
            .unwrap();
        let browser_session = repo
            .browser_sessions()
            .add(&mut rng, clock, &user, Some("test"))
            .await
            .unwrap();
        let auth = repo
            .browser_sessions()
            .authenticate_with_password(&mut rng, clock, &browser_session, &password)
            .await
            .unwrap();
        let code = format!("code-{}", vestibule_domain::new_id(clock, &mut rng));
        let grant = repo
            .oauth2_grants()
            .add(
                &mut rng,
                clock,
                client,
                NewAuthorizationGrant {
                    redirect_uri: REDIRECT.parse().unwrap(),
                    scope: opts.scope.to_owned(),
                    state: Some("st".to_owned()),
                    nonce: opts.nonce.map(str::to_owned),
                    response_mode: ResponseMode::Query,
                    pkce: opts.pkce,
                    max_age: None,
                    login_hint: None,
                    prompt: None,
                    code_hash: token_hash(&code),
                },
            )
            .await
            .unwrap();
        let session = repo
            .oauth2_sessions()
            .add(
                &mut rng,
                clock,
                client,
                Some(&user),
                Some(&browser_session),
                opts.scope,
            )
            .await
            .unwrap();
        repo.oauth2_grants()
            .fulfill(clock, &session, grant)
            .await
            .unwrap();
        repo.save().await.unwrap();
        Granted {
            code,
            user,
            session,
            browser_session,
            auth,
        }
    }

    pub async fn post_form(
        &self,
        path: &str,
        form: &[(&str, &str)],
        auth: Option<String>,
    ) -> Response {
        let body = serde_urlencoded::to_string(form).unwrap();
        self.post_raw(path, body, auth).await
    }

    pub async fn post_raw(&self, path: &str, body: String, auth: Option<String>) -> Response {
        let mut req =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(auth) = auth {
            req = req.header(header::AUTHORIZATION, auth);
        }
        send(&self.app, req.body(Body::from(body)).unwrap()).await
    }

    pub async fn token(&self, form: &[(&str, &str)]) -> Response {
        self.post_form("/oauth2/token", form, None).await
    }

    /// Exchanges a code for a public client with the right verifier.
    pub async fn exchange(&self, client: &Client, code: &str) -> Response {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", &client.client_id),
        ])
        .await
    }

    /// Exchanges and returns the JSON body (asserting 200).
    pub async fn exchange_ok(&self, client: &Client, code: &str) -> Value {
        let res = self.exchange(client, code).await;
        assert_eq!(res.status(), StatusCode::OK);
        body_json(res).await
    }

    pub async fn refresh(&self, client: &Client, rt: &str) -> Response {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", &client.client_id),
        ])
        .await
    }

    /// Introspects with the homeserver's secret.
    pub async fn introspect(&self, token: &str) -> Value {
        let res = self
            .post_form(
                "/oauth2/introspect",
                &[("token", token), ("token_type_hint", "access_token")],
                Some(format!("Bearer {HS_SECRET}")),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        body_json(res).await
    }

    pub async fn is_active(&self, token: &str) -> bool {
        let v = self.introspect(token).await;
        if v["active"] == false {
            assert_eq!(v, serde_json::json!({"active": false}), "inactive is bare");
        }
        v["active"] == true
    }
}

pub fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

/// Asserts an RFC 6749 §5.2 error response and returns its body.
pub async fn assert_error(res: Response, status: StatusCode, error: &str) -> Value {
    assert_eq!(res.status(), status);
    let www = res.headers().get(header::WWW_AUTHENTICATE).cloned();
    let body = body_json(res).await;
    assert_eq!(body["error"], error, "{body}");
    if error == "invalid_client" {
        assert!(www.is_some(), "invalid_client carries WWW-Authenticate");
    }
    body
}

pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}
