//! The legacy Matrix client-server login API (Matrix spec v1.16 §"Login",
//! "Logout", "Refresh"), served for clients that do not speak OAuth 2.0
//! (MSC3861 "compatibility layer").
//!
//! Secrets (passwords, login tokens, access and refresh tokens) are in
//! types without `Debug`, so they cannot end up in logs by accident.

use serde::{Deserialize, Serialize};

/// `GET /_matrix/client/v3/login`: the login types the server supports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginFlows {
    pub flows: Vec<LoginFlow>,
}

/// One login type. Unknown fields are allowed by the spec; we send only these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum LoginFlow {
    /// `m.login.password`.
    #[serde(rename = "m.login.password")]
    Password,
    /// `m.login.sso` (spec §"SSO client login"), with MSC3824's hints that
    /// the server delegates to OAuth 2.0 and prefers OAuth-aware clients.
    #[serde(rename = "m.login.sso")]
    Sso {
        /// The identity providers a client may offer by name.
        identity_providers: Vec<IdentityProvider>,
        /// MSC3824 (stable, spec v1.15): OAuth-aware clients should use
        /// OAuth 2.0 instead of this flow.
        oauth_aware_preferred: bool,
        /// MSC3824's unstable form of the same hint.
        #[serde(rename = "org.matrix.msc3824.delegated_oidc_compatibility")]
        delegated_oidc_compatibility: bool,
    },
    /// `m.login.token` (the `loginToken` of the SSO flow).
    #[serde(rename = "m.login.token")]
    Token,
}

/// An identity provider of `m.login.sso`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityProvider {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
}

/// `identifier` of a login request (spec §"Identifier types").
#[derive(Clone, Deserialize)]
pub struct UserIdentifier {
    /// `m.id.user`, `m.id.thirdparty`, `m.id.phone`.
    #[serde(rename = "type")]
    pub kind: String,
    /// For `m.id.user`: a localpart or a full user id.
    pub user: Option<String>,
}

/// `POST /_matrix/client/v3/login`. Fields of every login type, checked by
/// the handler according to `type`.
#[derive(Clone, Deserialize)]
pub struct LoginRequest {
    /// `m.login.password`, `m.login.token`, …
    #[serde(rename = "type")]
    pub kind: String,
    pub identifier: Option<UserIdentifier>,
    /// Deprecated top-level user (before `identifier`, r0.4).
    pub user: Option<String>,
    pub password: Option<String>,
    /// The `loginToken` of `m.login.token`.
    pub token: Option<String>,
    pub device_id: Option<String>,
    pub initial_device_display_name: Option<String>,
    /// Spec v1.3: the client supports refresh tokens.
    #[serde(default)]
    pub refresh_token: bool,
}

/// The answer to a successful login.
#[derive(Clone, Serialize, Deserialize)]
pub struct LoginResponse {
    /// `@localpart:server`.
    pub user_id: String,
    pub access_token: String,
    pub device_id: String,
    /// Deprecated, but still read by old clients (Synapse sends it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Lifetime of the access token; absent when it does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_ms: Option<i64>,
}

/// `POST /_matrix/client/v3/refresh`.
#[derive(Clone, Deserialize)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// The answer to a successful refresh.
#[derive(Clone, Serialize, Deserialize)]
pub struct RefreshResponse {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in_ms: i64,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn flows_serialise_as_the_spec_shows() {
        let flows = LoginFlows {
            flows: vec![
                LoginFlow::Password,
                LoginFlow::Sso {
                    identity_providers: vec![],
                    oauth_aware_preferred: true,
                    delegated_oidc_compatibility: true,
                },
                LoginFlow::Token,
            ],
        };
        assert_eq!(
            serde_json::to_value(&flows).unwrap(),
            json!({"flows": [
                {"type": "m.login.password"},
                {"type": "m.login.sso", "identity_providers": [], "oauth_aware_preferred": true,
                 "org.matrix.msc3824.delegated_oidc_compatibility": true},
                {"type": "m.login.token"},
            ]})
        );
    }

    #[test]
    fn login_requests_of_both_generations_parse() {
        let r: LoginRequest = serde_json::from_value(json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "alice"},
            "password": "pw",
            "refresh_token": true,
        }))
        .unwrap();
        assert_eq!(r.kind, "m.login.password");
        assert_eq!(r.identifier.unwrap().user.as_deref(), Some("alice"));
        assert!(r.refresh_token);
        let r: LoginRequest = serde_json::from_value(
            json!({"type": "m.login.password", "user": "bob", "password": "pw"}),
        )
        .unwrap();
        assert_eq!(r.user.as_deref(), Some("bob"));
        assert!(!r.refresh_token);
    }

    #[test]
    fn optional_response_fields_are_omitted() {
        let r = LoginResponse {
            user_id: "@a:b".into(),
            access_token: "mct_x".into(),
            device_id: "ABCDEFGHIJ".into(),
            home_server: None,
            refresh_token: None,
            expires_in_ms: None,
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"user_id": "@a:b", "access_token": "mct_x", "device_id": "ABCDEFGHIJ"})
        );
    }
}
