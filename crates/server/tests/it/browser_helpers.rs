//! A tiny browser for the browser tests: a cookie jar over `oneshot`, and
//! fixtures (users, clients, authorization URLs).

use std::collections::BTreeMap;

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Request, StatusCode, header},
};
use http_body_util::BodyExt;
use vestibule_domain::{
    oauth2::{ApplicationType, Client, ClientAuthMethod},
    pkce,
    user::User,
};
use vestibule_server::{AppState, Resources};
use vestibule_storage::oauth2::ClientParams;
use zeroize::Zeroizing;

use crate::harness::{TestApp, send};

pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const PASSWORD: &str = "correct horse battery";
pub const MATRIX_SCOPE: &str = "openid urn:matrix:client:api:* urn:matrix:client:device:DEVICE1";

/// A response with its body read.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn location(&self) -> Option<&str> {
        self.headers
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    /// The value of the first hidden `csrf` field.
    pub fn csrf(&self) -> String {
        hidden(&self.body, "csrf").unwrap_or_else(|| panic!("no csrf field in {}", self.body))
    }
}

/// The value of `<input type="hidden" name="NAME" value="...">`.
pub fn hidden(body: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body.find(&marker)? + marker.len();
    let end = body[start..].find('"')? + start;
    Some(body[start..end].to_owned())
}

/// A browser: follows nothing by itself, keeps cookies.
#[derive(Clone)]
pub struct Browser {
    pub app: Router,
    pub jar: BTreeMap<String, String>,
    /// The public base, stripped from absolute Locations.
    base: String,
    /// The TCP peer its requests come from (none: unknown, as `oneshot`).
    pub peer: Option<std::net::SocketAddr>,
}

impl Browser {
    pub fn new(t: &TestApp) -> Self {
        Self::with_router(t, t.router(&Resources::all(), None))
    }

    pub fn with_router(t: &TestApp, app: Router) -> Self {
        let base = t.state.urls.public_base().to_string();
        Self {
            app,
            jar: BTreeMap::new(),
            base,
            peer: None,
        }
    }

    /// The path (and query) of an absolute URL of ours.
    pub fn path_of(&self, location: &str) -> String {
        let rest = location
            .strip_prefix(&self.base)
            .unwrap_or_else(|| panic!("{location} is not under {}", self.base));
        format!("/{rest}")
    }

    pub fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn send(&mut self, mut req: Request<Body>) -> Resp {
        if !self.jar.is_empty() {
            req.headers_mut()
                .insert(header::COOKIE, self.cookie_header().parse().unwrap());
        }
        if let Some(peer) = self.peer {
            crate::harness::from_peer(&mut req, peer);
        }
        let res = send(&self.app, req).await;
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let resp = Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        };
        for c in resp.set_cookies() {
            let first = c.split(';').next().unwrap();
            let (name, value) = first.split_once('=').unwrap();
            if c.contains("Max-Age=0") {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_owned(), value.to_owned());
            }
        }
        resp
    }

    pub async fn get(&mut self, uri: &str) -> Resp {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    pub async fn post(&mut self, uri: &str, form: &[(&str, &str)]) -> Resp {
        self.post_with(uri, form, &[]).await
    }

    pub async fn post_with(
        &mut self,
        uri: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Resp {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req =
            Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        self.send(req.body(Body::from(body)).unwrap()).await
    }

    /// GET a Location of ours.
    pub async fn follow(&mut self, r: &Resp) -> Resp {
        assert_eq!(r.status, StatusCode::SEE_OTHER, "not a redirect: {r:?}");
        let path = self.path_of(r.location().unwrap());
        self.get(&path).await
    }

    /// Logs in through the form; returns the response to the POST.
    pub async fn login(&mut self, username: &str, password: &str, grant: Option<&str>) -> Resp {
        let page = match grant {
            Some(g) => self.get(&format!("/login?grant={g}")).await,
            None => self.get("/login?switch=1").await,
        };
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let csrf = page.csrf();
        let mut form = vec![
            ("csrf", csrf.as_str()),
            ("username", username),
            ("password", password),
        ];
        if let Some(g) = grant {
            form.push(("grant", g));
        }
        self.post("/login", &form).await
    }
}

/// A user with a password (hashed by the state's manager).
pub async fn add_user(state: &AppState, username: &str, password: &str) -> User {
    let mut rng = state.rng.rng();
    let (version, hash) = state
        .passwords
        .hash(&mut rng, Zeroizing::new(password.to_owned()))
        .await
        .unwrap();
    let mut repo = state.repos.write().await.unwrap();
    let user = repo
        .users()
        .add(&mut rng, state.clock.as_ref(), username)
        .await
        .unwrap();
    repo.user_passwords()
        .add(&mut rng, state.clock.as_ref(), &user, version, hash, None)
        .await
        .unwrap();
    repo.save().await.unwrap();
    user
}

/// A dynamically registered client.
pub async fn add_client(
    state: &AppState,
    auth: ClientAuthMethod,
    redirect_uris: &[&str],
) -> Client {
    let mut rng = state.rng.rng();
    let mut repo = state.repos.write().await.unwrap();
    let client = repo
        .oauth2_clients()
        .add(
            &mut rng,
            state.clock.as_ref(),
            ClientParams {
                client_name: Some("Test Client".to_owned()),
                client_uri: Some("https://client.example/".parse().unwrap()),
                logo_uri: None,
                policy_uri: None,
                tos_uri: None,
                redirect_uris: redirect_uris.iter().map(|u| u.parse().unwrap()).collect(),
                grant_types: vec!["authorization_code".to_owned()],
                application_type: Some(ApplicationType::Native),
                token_endpoint_auth_method: auth,
                encrypted_client_secret: None,
                jwks: None,
                jwks_uri: None,
                id_token_signed_response_alg: None,
                metadata_digest: None,
            },
        )
        .await
        .unwrap();
    repo.save().await.unwrap();
    client
}

/// `/authorize?…` with response_type=code, a Matrix scope, state and PKCE;
/// `extra` is appended as given (and may repeat or override nothing).
pub fn authorize_uri(client_id: &str, redirect_uri: &str, extra: &[(&str, &str)]) -> String {
    let challenge = pkce::s256_challenge(VERIFIER);
    let mut pairs: Vec<(&str, &str)> = vec![
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("response_type", "code"),
        ("scope", MATRIX_SCOPE),
        ("state", "st4te"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ];
    // An override replaces the default of the same name; "-name" removes it.
    for (k, v) in extra {
        if let Some(removed) = k.strip_prefix('-') {
            pairs.retain(|(n, _)| *n != removed);
        } else if let Some(p) = pairs.iter_mut().find(|(n, _)| n == k) {
            p.1 = v;
        } else {
            pairs.push((k, v));
        }
    }
    let q = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&pairs)
        .finish();
    format!("/authorize?{q}")
}

/// The query (or fragment) parameters of a client redirect.
pub fn params_of(location: &str, fragment: bool) -> BTreeMap<String, String> {
    let url = url::Url::parse(location).unwrap();
    let part = if fragment {
        url.fragment().unwrap_or_default().to_owned()
    } else {
        url.query().unwrap_or_default().to_owned()
    };
    url::form_urlencoded::parse(part.as_bytes())
        .into_owned()
        .collect()
}

/// Runs /authorize → consent (→ login) → allow, returning the final response.
pub async fn full_flow(b: &mut Browser, authorize: &str, username: &str) -> Resp {
    let r = b.get(authorize).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let consent_path = b.path_of(r.location().unwrap());
    assert!(consent_path.starts_with("/consent/"), "{consent_path}");
    let grant = consent_path.trim_start_matches("/consent/").to_owned();
    let c = b.get(&consent_path).await;
    if c.status == StatusCode::SEE_OTHER {
        assert!(
            b.path_of(c.location().unwrap())
                .starts_with("/login?grant=")
        );
        let l = b.login(username, PASSWORD, Some(&grant)).await;
        assert_eq!(l.status, StatusCode::SEE_OTHER, "{}", l.body);
        assert_eq!(b.path_of(l.location().unwrap()), consent_path);
    }
    let c = b.get(&consent_path).await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
    let csrf = c.csrf();
    b.post(&consent_path, &[("csrf", &csrf), ("action", "allow")])
        .await
}
