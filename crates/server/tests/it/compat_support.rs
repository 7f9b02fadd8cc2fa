//! Fixtures for the legacy Matrix login API tests: the production router
//! with an in-memory homeserver the tests can look into (and stop).

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Request, StatusCode, header},
};
use chrono::Duration;
use serde_json::{Value, json};
use vestibule_domain::{compat::CompatSession, user::User};
use vestibule_server::{
    Resources,
    homeserver::{MockHomeserver, MockUser},
};
use vestibule_storage_sql::testing::TestDatabase;

use crate::{
    browser_helpers::{Browser, PASSWORD, add_user},
    harness::{TestApp, body_json, send},
    oauth2_support::{HS_SECRET, ISSUER},
};

pub const LOGIN: &str = "/_matrix/client/v3/login";

/// A fresh SQLite database, and a PostgreSQL one when configured.
pub async fn databases() -> Vec<TestDatabase> {
    let mut dbs = vec![TestDatabase::sqlite().await.expect("sqlite")];
    if let Some(pg) = TestDatabase::postgres().await.expect("postgres") {
        dbs.push(pg);
    }
    dbs
}

/// A JSON response.
#[derive(Debug)]
pub struct JsonResp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl JsonResp {
    pub fn str(&self, key: &str) -> &str {
        self.body[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} missing in {}", self.body))
    }

    /// Asserts a Matrix error and returns its body.
    pub fn assert_error(&self, status: StatusCode, errcode: &str) -> &Value {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.body["errcode"], errcode, "{}", self.body);
        assert!(self.body["error"].is_string(), "{}", self.body);
        &self.body
    }
}

pub struct Cx {
    pub t: TestApp,
    pub app: Router,
    pub hs: Arc<MockHomeserver>,
}

impl Cx {
    pub async fn new() -> Self {
        Self::with_config(|_| {}).await
    }

    pub async fn with_config(configure: impl FnOnce(&mut vestibule_config::Config)) -> Self {
        Self::on(TestDatabase::sqlite().await.expect("sqlite"), configure)
    }

    pub fn on(db: TestDatabase, configure: impl FnOnce(&mut vestibule_config::Config)) -> Self {
        let mut t = TestApp::with(db, ISSUER, |c| {
            c.matrix.secret = Some(HS_SECRET.into());
            configure(c);
        });
        let hs = Arc::new(MockHomeserver::new("example.org"));
        t.state.homeserver = hs.clone();
        let app = t.router(&Resources::all(), None);
        Self { t, app, hs }
    }

    pub async fn cleanup(self) {
        self.t.db.cleanup().await;
    }

    pub fn advance(&self, seconds: i64) {
        self.t.clock.advance(Duration::seconds(seconds));
    }

    pub fn browser(&self) -> Browser {
        Browser::with_router(&self.t, self.app.clone())
    }

    /// A user with [`PASSWORD`], known to the homeserver too.
    pub async fn user(&self, username: &str) -> User {
        let user = add_user(&self.t.state, username, PASSWORD).await;
        self.hs.insert_user(username, MockUser::default());
        user
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        bearer: Option<&str>,
    ) -> JsonResp {
        let mut req = Request::builder().method(method).uri(path);
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(t) = bearer {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let res = send(
            &self.app,
            req.body(body.map_or_else(Body::empty, Body::from)).unwrap(),
        )
        .await;
        let status = res.status();
        let headers = res.headers().clone();
        let body = body_json(res).await;
        JsonResp {
            status,
            headers,
            body,
        }
    }

    pub async fn post(&self, path: &str, body: &Value, bearer: Option<&str>) -> JsonResp {
        self.request("POST", path, Some(body.to_string()), bearer)
            .await
    }

    pub async fn get(&self, path: &str) -> JsonResp {
        self.request("GET", path, None, None).await
    }

    /// `m.login.password` with `m.id.user`, plus `extra` fields.
    pub async fn password_login(&self, user: &str, password: &str, extra: &Value) -> JsonResp {
        let mut body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        self.post(LOGIN, &body, None).await
    }

    /// A successful password login.
    pub async fn login_ok(&self, user: &str, extra: &Value) -> JsonResp {
        let r = self.password_login(user, PASSWORD, extra).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r
    }

    /// Introspects as the homeserver (`X-MAS-Supports-Device-Id: 1` when
    /// `device_header`).
    pub async fn introspect(&self, token: &str, device_header: bool) -> Value {
        let body = serde_urlencoded::to_string([("token", token)]).unwrap();
        let mut req = Request::post("/oauth2/introspect")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::AUTHORIZATION, format!("Bearer {HS_SECRET}"));
        if device_header {
            req = req.header("x-mas-supports-device-id", "1");
        }
        let res = send(&self.app, req.body(Body::from(body)).unwrap()).await;
        assert_eq!(res.status(), StatusCode::OK);
        body_json(res).await
    }

    pub async fn is_active(&self, token: &str) -> bool {
        let v = self.introspect(token, true).await;
        if v["active"] == false {
            assert_eq!(v, json!({"active": false}), "inactive is bare");
        }
        v["active"] == true
    }

    /// The user's active compat sessions, from the database.
    pub async fn sessions(&self, user: &User) -> Vec<CompatSession> {
        let mut repo = self.t.state.repos.read().await.unwrap();
        repo.compat_sessions()
            .list_active_for_user(user)
            .await
            .unwrap()
    }

    /// The device ids the homeserver has for `localpart`.
    pub fn devices(&self, localpart: &str) -> Vec<String> {
        self.hs
            .user(localpart)
            .map(|u| u.devices.keys().cloned().collect())
            .unwrap_or_default()
    }
}
