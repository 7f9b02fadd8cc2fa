//! `AppState`: everything a handler may use, as `Arc<dyn Trait>` parts.

use std::sync::Arc;

use vestibule_domain::Clock;
use vestibule_keys::{Encrypter, Keystore};
use vestibule_proto::discovery::ProviderMetadata;
use vestibule_storage::RepositoryFactory;

use crate::{
    cached::CachedJson,
    routes::{Jwks, UrlBuilder},
};

/// Settings handlers need, derived from the config at startup.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Matrix server name (`matrix.homeserver`).
    pub homeserver: String,
}

#[derive(Clone)]
pub struct AppState {
    pub repos: Arc<dyn RepositoryFactory>,
    pub clock: Arc<dyn Clock>,
    pub keystore: Arc<Keystore>,
    pub encrypter: Encrypter,
    pub urls: UrlBuilder,
    pub settings: Arc<Settings>,
    pub discovery: CachedJson,
    pub jwks: CachedJson,
}

impl AppState {
    pub fn new(
        repos: Arc<dyn RepositoryFactory>,
        clock: Arc<dyn Clock>,
        keystore: Keystore,
        encrypter: Encrypter,
        urls: UrlBuilder,
        settings: Settings,
    ) -> Self {
        let discovery = CachedJson::new(&provider_metadata(&urls, &keystore));
        let jwks = CachedJson::new(&keystore.jwks());
        Self {
            repos,
            clock,
            keystore: Arc::new(keystore),
            encrypter,
            urls,
            settings: Arc::new(settings),
            discovery,
            jwks,
        }
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// The discovery document. Endpoints appear here only once they are served.
pub fn provider_metadata(urls: &UrlBuilder, keystore: &Keystore) -> ProviderMetadata {
    ProviderMetadata {
        issuer: urls.issuer().clone(),
        authorization_endpoint: None,
        token_endpoint: None,
        jwks_uri: Some(urls.absolute::<Jwks>()),
        registration_endpoint: None,
        userinfo_endpoint: None,
        revocation_endpoint: None,
        introspection_endpoint: None,
        device_authorization_endpoint: None,
        end_session_endpoint: None,
        scopes_supported: strings(&[
            "openid",
            "email",
            "urn:matrix:client:api:*",
            "urn:synapse:admin:*",
        ]),
        response_types_supported: strings(&["code"]),
        response_modes_supported: strings(&["query", "fragment", "form_post"]),
        // Grants are added here as the token endpoint learns them; the device
        // code grant in particular makes Element offer QR login.
        grant_types_supported: strings(&["authorization_code", "refresh_token"]),
        code_challenge_methods_supported: strings(&["S256"]),
        token_endpoint_auth_methods_supported: strings(&[
            "client_secret_basic",
            "client_secret_post",
            "client_secret_jwt",
            "private_key_jwt",
            "none",
        ]),
        token_endpoint_auth_signing_alg_values_supported: Vec::new(),
        subject_types_supported: strings(&["public"]),
        id_token_signing_alg_values_supported: keystore
            .signing_algorithms()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        claims_supported: strings(&[
            "iss",
            "sub",
            "aud",
            "iat",
            "exp",
            "nonce",
            "auth_time",
            "at_hash",
        ]),
        prompt_values_supported: strings(&["none", "login", "create"]),
        authorization_response_iss_parameter_supported: true,
        account_management_uri: None,
        account_management_actions_supported: strings(&[
            "org.matrix.profile",
            "org.matrix.sessions_list",
            "org.matrix.session_view",
            "org.matrix.session_end",
            "org.matrix.cross_signing_reset",
        ]),
    }
}
