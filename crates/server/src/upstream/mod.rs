//! Logging in through an upstream OpenID Connect provider (the
//! organisation's IdP), as MAS's `upstream_oauth2`.
//!
//! The flow: `/upstream/authorize/{provider}` starts an upstream
//! authorization session (state, nonce, PKCE verifier, and what the login
//! continues) and sends the browser to the provider; the provider sends it
//! back to `/upstream/callback/{provider}`, which checks the state against
//! this browser's cookie, exchanges the code, validates the ID token and
//! completes the session with the claims and the (provider, subject) link;
//! `/upstream/link/{session}` then signs in, registers or links, and
//! continues. `/upstream/backchannel-logout/{provider}` ends sessions when
//! the provider says so.

pub mod claims;
pub mod client;
pub mod cookie;
pub mod provider;

use serde::{Deserialize, Serialize};
use vestibule_domain::Ulid;

/// What an upstream login continues once the user is signed in. Stored
/// with the upstream session (as JSON), never taken from a URL as a path:
/// only paths we build from an id (checklist S23).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PostAuthAction {
    /// The consent page of an authorization grant.
    ContinueGrant { id: Ulid },
    /// The approval page of a legacy SSO login.
    ContinueCompatSso { id: Ulid },
    /// A page of the account area (already checked by
    /// `handlers::browser::account::return_path`).
    Account { path: String },
}

impl PostAuthAction {
    /// The JSON stored with the upstream session.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads what `to_json` stored; anything else counts as absent.
    pub fn from_json(s: Option<&str>) -> Option<Self> {
        s.and_then(|s| serde_json::from_str(s).ok())
    }

    /// Where the browser goes once signed in.
    pub fn path(&self) -> String {
        match self {
            Self::ContinueGrant { id } => crate::handlers::browser::consent_path(*id),
            Self::ContinueCompatSso { id } => crate::handlers::compat::complete_path(*id),
            Self::Account { path } => path.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_auth_action_round_trips_and_rejects_junk() {
        let id = Ulid::from_parts(1, 2);
        for a in [
            PostAuthAction::ContinueGrant { id },
            PostAuthAction::ContinueCompatSso { id },
            PostAuthAction::Account {
                path: "/account/".to_owned(),
            },
        ] {
            assert_eq!(PostAuthAction::from_json(Some(&a.to_json())), Some(a));
        }
        assert_eq!(PostAuthAction::from_json(Some("{\"kind\":\"x\"}")), None);
        assert_eq!(PostAuthAction::from_json(None), None);
        assert_eq!(
            PostAuthAction::ContinueGrant { id }.path(),
            format!("/consent/{id}")
        );
    }
}
