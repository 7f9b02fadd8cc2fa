//! Upstream login test support: the real IdP (`oidc-provider` through
//! `tests/e2e/idp.mjs`), a tiny HTTP driver for its login forms, a fake
//! provider that signs whatever a test asks (for tampered tokens), and the
//! app configured with providers.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, OnceLock},
};

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};
use vestibule_domain::upstream::UpstreamAuthorizationSession;
use vestibule_keys::Keystore;
use vestibule_server::{Resources, homeserver::MockHomeserver};
use vestibule_storage_sql::testing::TestDatabase;

use crate::{
    browser_helpers::{Browser, Resp},
    harness::TestApp,
};

pub const BASE: &str = "https://auth.example/";
pub const SECRET: &str = "an-upstream-client-secret-long-enough-for-hs256-0123456789";

/// The Node test package (`tests/e2e`), where `node_modules` resolve.
fn e2e_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e")
}

/// `npm ci` once per test process when `oidc-provider` is not installed
/// yet (scripts/test.sh installs it before the Rust tests).
fn ensure_node_modules() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let dir = e2e_dir();
        if dir.join("node_modules/oidc-provider/package.json").exists() {
            return;
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("npm (Node.js) is needed for the upstream IdP tests");
        assert!(status.success(), "npm ci in tests/e2e failed");
    });
}

/// A running `oidc-provider`; killed on drop (it also exits when its stdin
/// closes, so it never outlives the test process).
pub struct Idp {
    child: Child,
    // Kept open: the script's stdout stays a live pipe.
    _stdout: BufReader<std::process::ChildStdout>,
    pub issuer: String,
}

impl Idp {
    pub fn start(config: &Value) -> Self {
        ensure_node_modules();
        let mut child = Command::new("node")
            .arg("idp.mjs")
            .arg(config.to_string())
            .current_dir(e2e_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node");
        let stdout = child.stdout.take().unwrap();
        // The script prints its issuer once it listens: that line is the
        // readiness signal.
        let mut line = String::new();
        let mut stdout = BufReader::new(stdout);
        stdout.read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("idp.mjs did not start: {line:?}"));
        let issuer = v["issuer"].as_str().unwrap().to_owned();
        Self {
            child,
            _stdout: stdout,
            issuer,
        }
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh SQLite database.
pub async fn sqlite() -> TestDatabase {
    TestDatabase::sqlite().await.expect("sqlite")
}

/// The IdP's users.
pub fn users() -> Value {
    json!([
        {"sub": "alice-sub", "preferred_username": "alice", "name": "Alice Liddell",
         "email": "alice@corp.example", "email_verified": true, "tenant_id": "t-1"},
        {"sub": "bob-sub", "preferred_username": "bob", "name": "Bob",
         "email": "bob@corp.example", "email_verified": false, "tenant_id": "t-2"},
    ])
}

/// Our callback URL at the IdP for a provider id.
pub fn callback(id: &str) -> String {
    format!("{BASE}upstream/callback/{id}")
}

/// A provider block as an operator writes it.
pub fn provider(id: &str, issuer: &str, client_id: &str, extra: &Value) -> Value {
    let mut p = json!({
        "id": id,
        "issuer": issuer,
        "client_id": client_id,
        "client_secret": SECRET,
        "scope": "openid profile email",
    });
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

/// The app with these provider blocks, synced into the database as at
/// startup, its clock at the real time (the IdP's tokens carry real
/// timestamps), a mock homeserver the test can inspect, and optionally a
/// given signing keystore (for `private_key_jwt`).
pub struct UpApp {
    pub t: TestApp,
    pub hs: Arc<MockHomeserver>,
}

impl UpApp {
    pub async fn new(db: TestDatabase, providers: Vec<Value>, keystore: Option<Keystore>) -> Self {
        Self::with(db, providers, keystore, |_| {}).await
    }

    /// Like [`UpApp::new`], with a chance to change the rest of the config.
    pub async fn with(
        db: TestDatabase,
        providers: Vec<Value>,
        keystore: Option<Keystore>,
        change: impl FnOnce(&mut vestibule_config::Config),
    ) -> Self {
        let mut t = TestApp::with(db, BASE, |c| {
            c.upstream_oauth2.providers = providers
                .into_iter()
                .map(|p| serde_json::from_value(p).unwrap())
                .collect();
            change(c);
        });
        let hs = Arc::new(MockHomeserver::new("example.org"));
        t.state.homeserver = hs.clone();
        // Real randomness: apps of one test share an IdP, which refuses a
        // client assertion `jti` it has seen (a seeded sequence repeats).
        t.state.rng = Arc::new(vestibule_server::RngSource::Os);
        if let Some(k) = keystore {
            t.state.keystore = Arc::new(k);
        }
        let skew =
            vestibule_domain::Clock::now(&vestibule_domain::clock::SystemClock) - t.clock.now();
        t.clock.advance(skew);
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
        Self { t, hs }
    }

    pub fn browser(&self) -> Browser {
        Browser::new(&self.t)
    }

    pub fn router(&self) -> Router {
        self.t.router(&Resources::all(), None)
    }

    pub async fn session(&self, id: &str) -> UpstreamAuthorizationSession {
        let mut repo = self.t.state.repos.read().await.unwrap();
        repo.upstream_sessions()
            .lookup(id.parse().unwrap())
            .await
            .unwrap()
            .unwrap()
    }

    /// Upstream links of a provider for a subject.
    pub async fn link(
        &self,
        provider_id: &str,
        subject: &str,
    ) -> Option<vestibule_domain::upstream::UpstreamLink> {
        let mut repo = self.t.state.repos.read().await.unwrap();
        let p = repo
            .upstream_providers()
            .lookup(provider_id.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        repo.upstream_links()
            .find_by_subject(&p, subject)
            .await
            .unwrap()
    }

    pub async fn cleanup(self) {
        self.t.db.cleanup().await;
    }
}

/// Starts an upstream login in `b`; returns the provider URL it redirects
/// to.
pub async fn start(b: &mut Browser, provider_id: &str, query: &str) -> url::Url {
    let r = b
        .get(&format!("/upstream/authorize/{provider_id}{query}"))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    r.location().unwrap().parse().unwrap()
}

/// What the IdP finally sends the browser back with.
#[derive(Debug)]
pub enum Back {
    /// A redirect to this URL of ours (query response mode).
    Redirect(url::Url),
    /// A page that posts these fields to this URL of ours (form_post).
    FormPost(url::Url, Vec<(String, String)>),
}

/// A user agent at the IdP: follows redirects on the IdP and fills the
/// devInteractions login and consent forms, until the IdP sends it to us.
pub struct IdpDriver {
    http: reqwest::Client,
    jar: BTreeMap<String, String>,
}

impl Default for IdpDriver {
    fn default() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jar: BTreeMap::new(),
        }
    }
}

/// `name="…"` / `value="…"` of one tag.
fn attr(tag: &str, name: &str) -> Option<String> {
    let marker = format!("{name}=\"");
    let start = tag.find(&marker)? + marker.len();
    let end = tag[start..].find('"')? + start;
    Some(tag[start..end].replace("&amp;", "&").replace("&#x2F;", "/"))
}

/// The first form of a page: its action and its named inputs.
fn form(html: &str) -> Option<(String, Vec<(String, String)>)> {
    let start = html.find("<form")?;
    let html = &html[start..];
    let action = attr(&html[..html.find('>')?], "action")?;
    let end = html.find("</form>").unwrap_or(html.len());
    let inputs = html[..end]
        .split("<input")
        .skip(1)
        .filter_map(|t| {
            let t = &t[..t.find('>').unwrap_or(t.len())];
            Some((attr(t, "name")?, attr(t, "value").unwrap_or_default()))
        })
        .collect();
    Some((action, inputs))
}

impl IdpDriver {
    async fn send(&mut self, req: reqwest::RequestBuilder) -> (u16, Option<String>, String) {
        let cookie = self
            .jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let res = req.header("cookie", cookie).send().await.unwrap();
        for c in res.headers().get_all("set-cookie") {
            let first = c.to_str().unwrap().split(';').next().unwrap();
            let (k, v) = first.split_once('=').unwrap();
            if v.is_empty() {
                self.jar.remove(k);
            } else {
                self.jar.insert(k.to_owned(), v.to_owned());
            }
        }
        let status = res.status().as_u16();
        let location = res
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        (status, location, res.text().await.unwrap())
    }

    /// Drives the IdP from `url` (the authorization URL, or any IdP page)
    /// logging in as `login` when asked, until it sends the browser to us.
    pub async fn run(&mut self, url: url::Url, login: &str) -> Back {
        let mut next = self.http.get(url.clone());
        let mut current = url;
        for _ in 0..20 {
            let (status, location, body) = self.send(next).await;
            if let Some(loc) = location {
                let target = current.join(&loc).unwrap();
                if target.as_str().starts_with(BASE) {
                    return Back::Redirect(target);
                }
                current = target.clone();
                next = self.http.get(target);
                continue;
            }
            assert_eq!(status, 200, "IdP answered {status}: {body}");
            let (action, mut fields) =
                form(&body).unwrap_or_else(|| panic!("no form on the IdP page: {body}"));
            let target = current.join(&action).unwrap();
            if target.as_str().starts_with(BASE) {
                return Back::FormPost(target, fields);
            }
            if fields.iter().any(|(n, v)| n == "prompt" && v == "login") {
                fields.retain(|(n, _)| n != "login" && n != "password");
                fields.push(("login".to_owned(), login.to_owned()));
                fields.push(("password".to_owned(), "any password".to_owned()));
            }
            if body.contains("op.logoutForm") {
                fields.push(("logout".to_owned(), "yes".to_owned()));
            }
            current = target.clone();
            next = self.http.post(target).form(&fields);
        }
        panic!("the IdP never sent the browser back");
    }

    /// Signs out at the IdP (RP-initiated logout page, "yes"): the IdP
    /// sends its back-channel logout tokens before it answers.
    pub async fn end_session(&mut self, issuer: &str) {
        let url: url::Url = format!("{issuer}/session/end").parse().unwrap();
        let (status, _, body) = self.send(self.http.get(url.clone())).await;
        assert_eq!(status, 200, "{body}");
        let (action, mut fields) = form(&body).unwrap();
        fields.push(("logout".to_owned(), "yes".to_owned()));
        let target = url.join(&action).unwrap();
        let (status, _, body) = self.send(self.http.post(target).form(&fields)).await;
        assert!(status == 303 || status == 200, "{status}: {body}");
    }
}

/// Logs in at the real IdP through `b`: start, IdP forms, back to our
/// callback (query or form_post, the latter first without our cookies as a
/// cross-site POST would be). Returns our callback's final answer.
pub async fn login(b: &mut Browser, idp: &mut IdpDriver, provider_id: &str, user: &str) -> Resp {
    let url = start(b, provider_id, "").await;
    deliver(b, idp.run(url, user).await).await
}

/// Hands the IdP's answer to our callback in browser `b`.
pub async fn deliver(b: &mut Browser, back: Back) -> Resp {
    match back {
        Back::Redirect(u) => {
            let path = b.path_of(u.as_str());
            b.get(&path).await
        }
        Back::FormPost(u, fields) => {
            let path = b.path_of(u.as_str());
            let pairs: Vec<(&str, &str)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            // Cross-site: the browser sends no SameSite=Lax cookie.
            let mut cross = b.clone();
            cross.jar.clear();
            let page = cross.post(&path, &pairs).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.body);
            let (action, again) = form(&page.body).expect("a self-submitting form");
            assert_eq!(b.path_of(&action), path, "it posts to ourselves");
            let pairs: Vec<(&str, &str)> = again
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            b.post(&path, &pairs).await
        }
    }
}

/// The session id from a callback's `303 /upstream/link/{id}`.
pub fn link_session_id(b: &Browser, r: &Resp) -> String {
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let location = r.location().unwrap();
    // An empty fragment, so the provider's fragment is not carried over.
    let path = b.path_of(
        location
            .strip_suffix('#')
            .unwrap_or_else(|| panic!("{location} does not end the fragment")),
    );
    path.strip_prefix("/upstream/link/")
        .unwrap_or_else(|| panic!("{path}"))
        .to_owned()
}

/// A token request the fake saw: its Authorization header and form.
pub type TokenRequest = (Option<String>, Vec<(String, String)>);

/// A fake provider on 127.0.0.1 that signs whatever the test puts in
/// `claims` (for tampered ID tokens and logout tokens). Its token endpoint
/// answers any code with an ID token built from `claims`, signed with
/// `signer` (ES256, kid "fake").
#[derive(Clone)]
pub struct Fake {
    pub issuer: String,
    pub keys: Arc<Keystore>,
    pub claims: Arc<Mutex<Value>>,
    pub signer: Arc<Mutex<Option<Keystore>>>,
    /// The last token request: its Authorization header and form.
    pub last_request: Arc<Mutex<Option<TokenRequest>>>,
    /// What the userinfo endpoint answers; `{"jwt": <claims>}` answers
    /// those claims signed, as `application/jwt`.
    pub userinfo: Arc<Mutex<Value>>,
    /// Keys published besides the fake's own (key rotation).
    pub extra_jwks: Arc<Mutex<Vec<Value>>>,
    /// Changes to the discovery document: a member set here replaces the
    /// default one; `null` removes it.
    pub discovery_overrides: Arc<Mutex<serde_json::Map<String, Value>>>,
}

impl Fake {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let key = vestibule_keys::generate_ec_p256(&mut rand::rngs::OsRng);
        let keys = Arc::new(Keystore::new(vec![(Some("fake".to_owned()), key)]).unwrap());
        let fake = Self {
            issuer,
            keys,
            claims: Arc::new(Mutex::new(json!({}))),
            signer: Arc::new(Mutex::new(None)),
            last_request: Arc::new(Mutex::new(None)),
            userinfo: Arc::new(Mutex::new(json!({}))),
            extra_jwks: Arc::new(Mutex::new(Vec::new())),
            discovery_overrides: Arc::new(Mutex::new(serde_json::Map::new())),
        };
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/token", post(token))
            .route("/userinfo", get(userinfo))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    /// Signs `claims` with the fake's key (or the substitute signer).
    pub fn sign(&self, claims: &Value) -> String {
        match &*self.signer.lock().unwrap() {
            Some(other) => other.sign_jwt("ES256", claims).unwrap(),
            None => self.keys.sign_jwt("ES256", claims).unwrap(),
        }
    }

    /// A logout token: explicitly typed `logout+jwt` (Back-Channel Logout
    /// 1.0 §2.4).
    pub fn sign_logout(&self, claims: &Value) -> String {
        self.sign_typed("logout+jwt", claims)
    }

    /// A JWT with the header `typ` given.
    pub fn sign_typed(&self, typ: &str, claims: &Value) -> String {
        match &*self.signer.lock().unwrap() {
            Some(other) => other.sign_typed_jwt("ES256", typ, claims),
            None => self.keys.sign_typed_jwt("ES256", typ, claims),
        }
        .unwrap()
    }
}

async fn discovery(State(f): State<Fake>) -> Json<Value> {
    let mut doc = json!({
        "issuer": f.issuer,
        "authorization_endpoint": format!("{}/auth", f.issuer),
        "token_endpoint": format!("{}/token", f.issuer),
        "jwks_uri": format!("{}/jwks", f.issuer),
        "userinfo_endpoint": format!("{}/userinfo", f.issuer),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "id_token_signing_alg_values_supported": ["ES256"],
    });
    let members = doc.as_object_mut().unwrap();
    for (k, v) in f.discovery_overrides.lock().unwrap().iter() {
        if v.is_null() {
            members.remove(k);
        } else {
            members.insert(k.clone(), v.clone());
        }
    }
    Json(doc)
}

async fn jwks(State(f): State<Fake>) -> Json<Value> {
    let mut set = f.keys.jwks();
    let keys = set["keys"].as_array_mut().unwrap();
    keys.extend(f.extra_jwks.lock().unwrap().iter().cloned());
    Json(set)
}

async fn userinfo(State(f): State<Fake>) -> Response {
    let answer = f.userinfo.lock().unwrap().clone();
    match answer.get("jwt") {
        Some(claims) => (
            [(http::header::CONTENT_TYPE, "application/jwt")],
            f.sign(claims),
        )
            .into_response(),
        None => Json(answer).into_response(),
    }
}

async fn token(
    State(f): State<Fake>,
    headers: http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let auth = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned());
    let form = url::form_urlencoded::parse(&body).into_owned().collect();
    *f.last_request.lock().unwrap() = Some((auth, form));
    let claims = f.claims.lock().unwrap().clone();
    let id_token = if let Some(secret) = claims.get("hs256_secret").and_then(Value::as_str) {
        let mut c = claims.clone();
        c.as_object_mut().unwrap().remove("hs256_secret");
        vestibule_keys::sign_jws_hmac("HS256", secret.as_bytes(), &c).unwrap()
    } else if claims["alg_none"] == json!(true) {
        use base64::Engine;
        let b = |v: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        let mut c = claims;
        c.as_object_mut().unwrap().remove("alg_none");
        format!("{}.{}.", b(&json!({"alg": "none"})), b(&c))
    } else {
        f.sign(&claims)
    };
    Json(json!({
        "access_token": "at",
        "token_type": "Bearer",
        "id_token": id_token,
    }))
    .into_response()
}
