use std::sync::Arc;

use axum::{Router, body::Body, http::Request, response::Response};
use http_body_util::BodyExt;
use tower::ServiceExt;
use vestibule_domain::MockClock;
use vestibule_keys::{Encrypter, Keystore};
use vestibule_server::{AppState, Resources, RngSource, homeserver::MockHomeserver};
use vestibule_storage_sql::testing::TestDatabase;

pub struct TestApp {
    pub state: AppState,
    pub db: TestDatabase,
    /// The state's clock, to move time in tests.
    pub clock: Arc<MockClock>,
}

impl TestApp {
    /// A state on a fresh SQLite database with one P-256 key.
    pub async fn new(public_base: &str) -> Self {
        Self::with_config(public_base, |_| {}).await
    }

    /// Like [`TestApp::new`], with a chance to change the config first.
    pub async fn with_config(
        public_base: &str,
        change: impl FnOnce(&mut vestibule_config::Config),
    ) -> Self {
        let db = TestDatabase::sqlite().await.expect("sqlite");
        Self::with(db, public_base, change)
    }

    /// A state on the given database, with a config adjusted by `configure`.
    pub fn with(
        db: TestDatabase,
        public_base: &str,
        configure: impl FnOnce(&mut vestibule_config::Config),
    ) -> Self {
        let key = vestibule_keys::generate_ec_p256(&mut rand::rngs::OsRng);
        let keystore = Keystore::new(vec![(Some("test-key".to_owned()), key)]).expect("keystore");
        let mut config = vestibule_config::Config::default();
        config.http.public_base = public_base.parse().expect("url");
        "example.org".clone_into(&mut config.matrix.homeserver);
        relax_rate_limits(&mut config);
        configure(&mut config);
        let clock = Arc::new(MockClock::default());
        let state = AppState::new(
            Arc::new(db.storage.clone()),
            clock.clone(),
            RngSource::seeded(42),
            keystore,
            Encrypter::new(&[7; 32]),
            config,
            Arc::new(MockHomeserver::new("example.org")),
        )
        .expect("state");
        Self { state, db, clock }
    }

    /// A second instance of the same deployment on `db` (a second pool on
    /// this app's database, [`TestDatabase::reopen`]): the same config,
    /// signing key, encryption secret (so the same token MAC key), clock and
    /// homeserver, but its own state: pools, caches, limiters, and its own rng (`seed`
    /// must differ from this app's 42, or both would mint the same ids and
    /// tokens, which OS randomness never does).
    pub fn twin(&self, db: TestDatabase, seed: u64) -> Self {
        self.twin_with_clock(db, seed, self.clock.clone())
    }

    /// Like [`TestApp::twin`], with its own clock (replicas whose clocks
    /// disagree).
    pub fn twin_with_clock(&self, db: TestDatabase, seed: u64, clock: Arc<MockClock>) -> Self {
        assert_ne!(seed, 42, "the twin needs its own randomness");
        let state = AppState::new(
            Arc::new(db.storage.clone()),
            clock.clone(),
            RngSource::seeded(seed),
            (*self.state.keystore).clone(),
            self.state.encrypter.clone(),
            (*self.state.config).clone(),
            // One homeserver behind both instances.
            self.state.homeserver.clone(),
        )
        .expect("state");
        Self { state, db, clock }
    }

    pub fn router(&self, resources: &Resources, prefix: Option<&str>) -> Router {
        vestibule_server::with_prefix(
            vestibule_server::router(self.state.clone(), resources),
            prefix,
        )
    }
}

/// Tests sign in many times from one (unknown) address: the limiters get
/// room enough never to interfere. The defaults (MAS's) stay as they are;
/// the rate limiting tests set their own limits after this.
pub fn relax_rate_limits(config: &mut vestibule_config::Config) {
    let roomy = vestibule_config::RateLimiterConfig {
        burst: 1_000_000,
        per_second: 1_000.0,
    };
    let r = &mut config.rate_limiting;
    r.login.per_ip = roomy;
    r.login.per_account = roomy;
    r.registration = roomy;
    r.device_code_link = roomy;
    r.account_recovery.per_ip = roomy;
    r.account_recovery.per_address = roomy;
    r.email_authentication.per_ip = roomy;
    r.email_authentication.per_address = roomy;
    r.email_authentication.emails_per_session = roomy;
    r.email_authentication.attempt_per_session = roomy;
}

/// Marks a request as coming from `peer`, as the listeners do
/// (`into_make_service_with_connect_info`).
pub fn from_peer(req: &mut Request<Body>, peer: std::net::SocketAddr) {
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
}

pub async fn send(app: &Router, req: Request<Body>) -> Response {
    app.clone().oneshot(req).await.expect("infallible")
}

pub async fn get(app: &Router, uri: &str) -> Response {
    send(app, Request::get(uri).body(Body::empty()).expect("request")).await
}

pub async fn body_json(res: Response) -> serde_json::Value {
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&bytes).expect("json body")
}
