//! [`Homeserver`] over HTTP against Synapse's `/_synapse/mas/*` API.

use std::{collections::BTreeSet, time::Duration};

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use url::Url;

use super::{
    DeviceOutcome, FieldAction, Homeserver, HomeserverError, HomeserverUser, ProvisionOutcome,
    ProvisionRequest,
};

/// How long one call may take in total.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long establishing the connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Synapse, reached at `matrix.endpoint` with `matrix.secret`.
#[derive(Clone)]
pub struct SynapseHomeserver {
    client: reqwest::Client,
    /// `<endpoint>/_synapse/mas/`, always ending in `/`.
    base: Url,
    server_name: String,
    /// Never logged; `Debug` hides it.
    secret: String,
}

impl std::fmt::Debug for SynapseHomeserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SynapseHomeserver")
            .field("base", &self.base.as_str())
            .field("server_name", &self.server_name)
            .field("secret", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// Synapse's error body (`{"errcode": "M_…", "error": "…"}`).
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errcode: String,
    #[serde(default)]
    error: String,
}

#[derive(Serialize)]
struct ProvisionBody<'a> {
    localpart: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    set_displayname: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    unset_displayname: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    set_avatar_url: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    unset_avatar_url: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    set_emails: Option<&'a [String]>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    unset_emails: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    locked: Option<bool>,
}

/// Synapse rejects a body that merely *contains* both `set_x` and `unset_x`
/// (even `null`/`false`), so absent fields are left out entirely.
fn split<T: ?Sized, U: std::ops::Deref<Target = T>>(action: &FieldAction<U>) -> (Option<&T>, bool) {
    match action {
        FieldAction::Keep => (None, false),
        FieldAction::Set(v) => (Some(&**v), false),
        FieldAction::Unset => (None, true),
    }
}

impl<'a> From<&'a ProvisionRequest> for ProvisionBody<'a> {
    fn from(r: &'a ProvisionRequest) -> Self {
        let (set_displayname, unset_displayname) = split(&r.displayname);
        let (set_avatar_url, unset_avatar_url) = split(&r.avatar_url);
        let (set_emails, unset_emails) = split(&r.emails);
        Self {
            localpart: &r.localpart,
            set_displayname,
            unset_displayname,
            set_avatar_url,
            unset_avatar_url,
            set_emails,
            unset_emails,
            locked: r.locked,
        }
    }
}

#[derive(Serialize)]
struct LocalpartBody<'a> {
    localpart: &'a str,
}

#[derive(Serialize)]
struct DeleteUserBody<'a> {
    localpart: &'a str,
    erase: bool,
}

#[derive(Serialize)]
struct DisplaynameBody<'a> {
    localpart: &'a str,
    displayname: &'a str,
}

#[derive(Serialize)]
struct DeviceBody<'a> {
    localpart: &'a str,
    device_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<&'a str>,
}

#[derive(Serialize)]
struct SyncDevicesBody<'a> {
    localpart: &'a str,
    devices: &'a BTreeSet<String>,
}

fn transport_error(endpoint: &str, e: &reqwest::Error) -> HomeserverError {
    // `reqwest::Error`'s display includes the URL, never headers, so the
    // secret cannot leak through it.
    let detail = format!("{endpoint}: {e}");
    if e.is_connect() || e.is_timeout() || e.is_request() {
        HomeserverError::Unavailable(detail)
    } else {
        HomeserverError::Other(detail)
    }
}

impl SynapseHomeserver {
    /// A client for the Synapse whose client API is at `endpoint` (Synapse's
    /// own `matrix.endpoint`; the paths are appended to it).
    pub fn new(server_name: &str, endpoint: &Url, secret: &str) -> Result<Self, HomeserverError> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("vestibule/", env!("CARGO_PKG_VERSION")))
            // The shared secret must not follow a redirect elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| HomeserverError::Other(format!("building the HTTP client: {e}")))?;
        let mut endpoint = endpoint.clone();
        if !endpoint.path().ends_with('/') {
            let path = format!("{}/", endpoint.path());
            endpoint.set_path(&path);
        }
        let base = endpoint
            .join("_synapse/mas/")
            .map_err(|e| HomeserverError::Other(format!("matrix.endpoint: {e}")))?;
        Ok(Self {
            client,
            base,
            server_name: server_name.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// The URL of one endpoint (for logs and tests).
    pub fn url(&self, endpoint: &str) -> Result<Url, HomeserverError> {
        self.base
            .join(endpoint)
            .map_err(|e| HomeserverError::Other(format!("{endpoint}: {e}")))
    }

    /// Sends one request; returns the status of a 2xx and its body, or the
    /// classified error.
    async fn call<B: Serialize + Sync>(
        &self,
        method: Method,
        endpoint: &'static str,
        query: Option<&[(&str, &str)]>,
        body: Option<&B>,
    ) -> Result<(StatusCode, Vec<u8>), HomeserverError> {
        let url = self.url(endpoint)?;
        let mut req = self
            .client
            .request(method, url)
            .bearer_auth(&self.secret)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(q) = query {
            req = req.query(q);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req
            .send()
            .await
            .map_err(|e| transport_error(endpoint, &e))?;
        let status = res.status();
        let bytes = res
            .bytes()
            .await
            .map_err(|e| transport_error(endpoint, &e))?;
        if status.is_success() {
            return Ok((status, bytes.to_vec()));
        }
        let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
        let err = classify(status, body);
        tracing::debug!(endpoint, %status, error = %err, "homeserver call failed");
        Err(err)
    }

    async fn post<B: Serialize + Sync>(
        &self,
        endpoint: &'static str,
        body: &B,
    ) -> Result<StatusCode, HomeserverError> {
        self.call(Method::POST, endpoint, None, Some(body))
            .await
            .map(|(s, _)| s)
    }
}

fn classify(status: StatusCode, body: ErrorBody) -> HomeserverError {
    let detail = |body: &ErrorBody| {
        if body.errcode.is_empty() && body.error.is_empty() {
            status.to_string()
        } else {
            format!("{status} {}: {}", body.errcode, body.error)
        }
    };
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return HomeserverError::Unavailable(detail(&body));
    }
    match (status, body.errcode.as_str()) {
        (StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED, _) => HomeserverError::Forbidden,
        (StatusCode::NOT_FOUND, "M_NOT_FOUND") => HomeserverError::NotFound,
        (StatusCode::BAD_REQUEST, "M_USER_IN_USE") => HomeserverError::UserInUse,
        (StatusCode::BAD_REQUEST, "M_INVALID_USERNAME") => {
            HomeserverError::InvalidUsername(body.error)
        }
        (StatusCode::BAD_REQUEST, _) => HomeserverError::BadRequest {
            errcode: body.errcode,
            error: body.error,
        },
        // 404 M_UNRECOGNIZED: the endpoint is missing (MAS delegation off, or
        // `matrix.endpoint` points somewhere else).
        _ => HomeserverError::Other(detail(&body)),
    }
}

#[async_trait]
impl Homeserver for SynapseHomeserver {
    fn server_name(&self) -> &str {
        &self.server_name
    }

    async fn query_user(&self, localpart: &str) -> Result<HomeserverUser, HomeserverError> {
        let (_, body) = self
            .call::<()>(
                Method::GET,
                "query_user",
                Some(&[("localpart", localpart)]),
                None,
            )
            .await?;
        serde_json::from_slice(&body)
            .map_err(|e| HomeserverError::Other(format!("query_user: bad response body: {e}")))
    }

    async fn is_localpart_available(&self, localpart: &str) -> Result<bool, HomeserverError> {
        match self
            .call::<()>(
                Method::GET,
                "is_localpart_available",
                Some(&[("localpart", localpart)]),
                None,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(HomeserverError::UserInUse) => Ok(false),
            // Reserved by an application service's exclusive namespace.
            Err(HomeserverError::BadRequest { errcode, .. }) if errcode == "M_EXCLUSIVE" => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn provision_user(
        &self,
        request: &ProvisionRequest,
    ) -> Result<ProvisionOutcome, HomeserverError> {
        let body = ProvisionBody::from(request);
        // Synapse's provision_user is create-or-update, but its "does the
        // user exist?" check and the creation are not atomic: when two
        // provisions of a new user overlap (the provisioning job and the
        // token endpoint's inline provision of a device's user), the loser
        // gets 400 M_USER_IN_USE. The user exists by then, so one more call
        // takes Synapse's update path and applies this request's fields.
        let status = match self.post("provision_user", &body).await {
            Err(HomeserverError::UserInUse) => self.post("provision_user", &body).await?,
            other => other?,
        };
        Ok(if status == StatusCode::CREATED {
            ProvisionOutcome::Created
        } else {
            ProvisionOutcome::Updated
        })
    }

    async fn delete_user(&self, localpart: &str, erase: bool) -> Result<(), HomeserverError> {
        self.post("delete_user", &DeleteUserBody { localpart, erase })
            .await
            .map(drop)
    }

    async fn reactivate_user(&self, localpart: &str) -> Result<(), HomeserverError> {
        self.post("reactivate_user", &LocalpartBody { localpart })
            .await
            .map(drop)
    }

    async fn set_displayname(
        &self,
        localpart: &str,
        displayname: &str,
    ) -> Result<(), HomeserverError> {
        self.post(
            "set_displayname",
            &DisplaynameBody {
                localpart,
                displayname,
            },
        )
        .await
        .map(drop)
    }

    async fn unset_displayname(&self, localpart: &str) -> Result<(), HomeserverError> {
        self.post("unset_displayname", &LocalpartBody { localpart })
            .await
            .map(drop)
    }

    async fn upsert_device(
        &self,
        localpart: &str,
        device_id: &str,
        display_name: Option<&str>,
    ) -> Result<DeviceOutcome, HomeserverError> {
        let status = self
            .post(
                "upsert_device",
                &DeviceBody {
                    localpart,
                    device_id,
                    display_name,
                },
            )
            .await?;
        Ok(if status == StatusCode::CREATED {
            DeviceOutcome::Created
        } else {
            DeviceOutcome::Existed
        })
    }

    async fn update_device_display_name(
        &self,
        localpart: &str,
        device_id: &str,
        display_name: &str,
    ) -> Result<(), HomeserverError> {
        self.post(
            "update_device_display_name",
            &DeviceBody {
                localpart,
                device_id,
                display_name: Some(display_name),
            },
        )
        .await
        .map(drop)
    }

    async fn delete_device(&self, localpart: &str, device_id: &str) -> Result<(), HomeserverError> {
        self.post(
            "delete_device",
            &DeviceBody {
                localpart,
                device_id,
                display_name: None,
            },
        )
        .await
        .map(drop)
    }

    async fn sync_devices(
        &self,
        localpart: &str,
        devices: &BTreeSet<String>,
    ) -> Result<(), HomeserverError> {
        self.post("sync_devices", &SyncDevicesBody { localpart, devices })
            .await
            .map(drop)
    }

    async fn allow_cross_signing_reset(&self, localpart: &str) -> Result<(), HomeserverError> {
        self.post("allow_cross_signing_reset", &LocalpartBody { localpart })
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provision_body_leaves_out_untouched_fields() {
        let r = ProvisionRequest::new("alice")
            .set_displayname("Alice")
            .unset_avatar_url()
            .locked(false);
        let json = serde_json::to_value(ProvisionBody::from(&r)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "localpart": "alice",
                "set_displayname": "Alice",
                "unset_avatar_url": true,
                "locked": false,
            })
        );
        let r = ProvisionRequest::new("bob").set_emails(vec!["b@example.org".to_owned()]);
        let json = serde_json::to_value(ProvisionBody::from(&r)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"localpart": "bob", "set_emails": ["b@example.org"]})
        );
    }

    #[test]
    fn paths_are_appended_to_the_endpoint() {
        for (endpoint, expected) in [
            (
                "http://127.0.0.1:8008/",
                "http://127.0.0.1:8008/_synapse/mas/query_user",
            ),
            (
                "http://hs.example/synapse",
                "http://hs.example/synapse/_synapse/mas/query_user",
            ),
        ] {
            let hs =
                SynapseHomeserver::new("example.org", &endpoint.parse().unwrap(), "s").unwrap();
            assert_eq!(hs.url("query_user").unwrap().as_str(), expected);
        }
    }

    #[test]
    fn statuses_are_classified() {
        let body = |errcode: &str| ErrorBody {
            errcode: errcode.to_owned(),
            error: "msg".to_owned(),
        };
        assert!(classify(StatusCode::BAD_GATEWAY, body("")).is_retryable());
        assert!(classify(StatusCode::TOO_MANY_REQUESTS, body("M_LIMIT_EXCEEDED")).is_retryable());
        assert_eq!(
            classify(StatusCode::FORBIDDEN, body("M_FORBIDDEN")),
            HomeserverError::Forbidden
        );
        assert_eq!(
            classify(StatusCode::NOT_FOUND, body("M_NOT_FOUND")),
            HomeserverError::NotFound
        );
        assert!(matches!(
            classify(StatusCode::NOT_FOUND, body("M_UNRECOGNIZED")),
            HomeserverError::Other(_)
        ));
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, body("M_USER_IN_USE")),
            HomeserverError::UserInUse
        );
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, body("M_INVALID_USERNAME")),
            HomeserverError::InvalidUsername("msg".to_owned())
        );
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, body("M_BAD_JSON")),
            HomeserverError::BadRequest {
                errcode: "M_BAD_JSON".to_owned(),
                error: "msg".to_owned()
            }
        );
    }

    /// What a durable job does with each answer: give up at once on the
    /// homeserver judging the request (400, 404 for the user), back off on
    /// the rest.
    #[test]
    fn permanent_refusals_are_told_apart_from_transient_errors() {
        let body = |errcode: &str| ErrorBody {
            errcode: errcode.to_owned(),
            error: "msg".to_owned(),
        };
        for (status, errcode) in [
            (StatusCode::BAD_REQUEST, "M_INVALID_USERNAME"),
            (StatusCode::BAD_REQUEST, "M_USER_IN_USE"),
            (StatusCode::BAD_REQUEST, "M_BAD_JSON"),
            (StatusCode::BAD_REQUEST, ""),
            (StatusCode::NOT_FOUND, "M_NOT_FOUND"),
        ] {
            let e = classify(status, body(errcode));
            assert!(e.is_permanent(), "{status} {errcode}: {e:?}");
            assert!(!e.is_retryable(), "{status} {errcode}: {e:?}");
        }
        for (status, errcode) in [
            (StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN"),
            (StatusCode::BAD_GATEWAY, ""),
            (StatusCode::SERVICE_UNAVAILABLE, ""),
            (StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED"),
            // A wrong secret: fixed by the operator, then the jobs must run.
            (StatusCode::FORBIDDEN, "M_FORBIDDEN"),
            (StatusCode::UNAUTHORIZED, ""),
            // No such endpoint (not Synapse, or MAS support off): not a
            // verdict on the request.
            (StatusCode::NOT_FOUND, "M_UNRECOGNIZED"),
            (StatusCode::CONFLICT, ""),
        ] {
            let e = classify(status, body(errcode));
            assert!(!e.is_permanent(), "{status} {errcode}: {e:?}");
        }
        assert!(!HomeserverError::Unavailable("connection refused".to_owned()).is_permanent());
    }

    #[test]
    fn debug_hides_the_secret() {
        let hs = SynapseHomeserver::new(
            "example.org",
            &"http://127.0.0.1:8008/".parse().unwrap(),
            "hunter2-very-secret",
        )
        .unwrap();
        assert!(!format!("{hs:?}").contains("hunter2"));
    }
}
