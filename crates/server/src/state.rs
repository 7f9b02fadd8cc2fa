//! `AppState`: everything a handler may use, as `Arc<dyn Trait>` parts.

use std::sync::{Arc, Mutex};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use vestibule_config::Config;
use vestibule_domain::{Clock, token_format::TokenFormat};
use vestibule_keys::{Encrypter, Keystore};
use vestibule_proto::discovery::ProviderMetadata;
use vestibule_storage::RepositoryFactory;

use crate::{
    cached::CachedJson,
    homeserver::Homeserver,
    passwords::PasswordManager,
    rate_limit::RateLimits,
    requester::TrustedProxies,
    routes::{Authorize, Jwks, UrlBuilder},
    templates::Templates,
};

/// Where request handlers get randomness: the OS in production, a seeded
/// sequence in tests (so ids and tokens are reproducible).
#[derive(Debug)]
pub enum RngSource {
    Os,
    Seeded(Box<Mutex<ChaCha20Rng>>),
}

impl RngSource {
    pub fn seeded(seed: u64) -> Self {
        Self::Seeded(Box::new(Mutex::new(ChaCha20Rng::seed_from_u64(seed))))
    }

    /// A fresh CSPRNG for one request.
    pub fn rng(&self) -> ChaCha20Rng {
        match self {
            Self::Os => ChaCha20Rng::from_rng(rand::rngs::OsRng)
                .unwrap_or_else(|_| ChaCha20Rng::from_seed([0; 32])),
            Self::Seeded(m) => {
                let mut seed = [0u8; 32];
                match m.lock() {
                    Ok(mut g) => g.fill_bytes(&mut seed),
                    Err(p) => p.into_inner().fill_bytes(&mut seed),
                }
                ChaCha20Rng::from_seed(seed)
            }
        }
    }
}

/// Everything a handler may use. Cheap to clone (`Arc`s).
#[derive(Clone)]
pub struct AppState {
    pub repos: Arc<dyn RepositoryFactory>,
    pub clock: Arc<dyn Clock>,
    pub rng: Arc<RngSource>,
    pub keystore: Arc<Keystore>,
    pub encrypter: Encrypter,
    /// Mints and checks bearer tokens (MAC key derived from `secrets.encryption`).
    pub token_format: TokenFormat,
    pub urls: UrlBuilder,
    /// The loaded configuration (read-only).
    pub config: Arc<Config>,
    pub discovery: CachedJson,
    pub jwks: CachedJson,
    /// Hashes and verifies local passwords on a bounded pool.
    pub passwords: PasswordManager,
    /// The HTML templates (embedded, `templates.path` overrides).
    pub templates: Arc<Templates>,
    /// The homeserver's `/_synapse/mas/*` API (Synapse, or a mock in tests).
    pub homeserver: Arc<dyn Homeserver>,
    /// The HTTP client of upstream logins, with the providers' metadata
    /// and keys cached.
    pub upstream: Arc<crate::upstream::client::UpstreamClient>,
    /// `http.trusted_proxies`, parsed: whose `X-Forwarded-For` to believe.
    pub trusted_proxies: Arc<TrustedProxies>,
    /// The `rate_limiting` limiters (in memory, per process).
    pub limits: Arc<RateLimits>,
}

impl AppState {
    pub fn new(
        repos: Arc<dyn RepositoryFactory>,
        clock: Arc<dyn Clock>,
        rng: RngSource,
        keystore: Keystore,
        encrypter: Encrypter,
        config: Config,
        homeserver: Arc<dyn Homeserver>,
    ) -> Result<Self, reqwest::Error> {
        // Built first: without it there are no upstream logins.
        let upstream = crate::upstream::client::UpstreamClient::for_config(&config)?;
        let urls = UrlBuilder::new(&config.http.public_base, config.http.issuer());
        let discovery = CachedJson::new(&provider_metadata(&urls, &keystore));
        let jwks = CachedJson::new(&keystore.jwks());
        let token_format = TokenFormat::new(encrypter.derive("vestibule token checksum"));
        // `bootstrap::validate` refuses a bad `passwords` section at startup;
        // here it can only be a programming error, so fail closed.
        let passwords = PasswordManager::from_config(&config.passwords).unwrap_or_else(|e| {
            tracing::error!(error = %e, "invalid passwords config: password login disabled");
            PasswordManager::disabled()
        });
        let templates = Arc::new(Templates::new(&urls, config.templates.path.clone()));
        let trusted_proxies = Arc::new(TrustedProxies::parse(&config.http.trusted_proxies));
        let limits = Arc::new(RateLimits::from_config(&config.rate_limiting));
        Ok(Self {
            repos,
            clock,
            rng: Arc::new(rng),
            keystore: Arc::new(keystore),
            encrypter,
            token_format,
            urls,
            config: Arc::new(config),
            discovery,
            jwks,
            passwords,
            templates,
            homeserver,
            upstream: Arc::new(upstream),
            trusted_proxies,
            limits,
        })
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// The discovery document. Endpoints appear here only once they are served.
pub fn provider_metadata(urls: &UrlBuilder, keystore: &Keystore) -> ProviderMetadata {
    ProviderMetadata {
        issuer: urls.issuer().clone(),
        authorization_endpoint: Some(urls.absolute::<Authorize>()),
        token_endpoint: Some(urls.absolute::<crate::routes::Token>()),
        jwks_uri: Some(urls.absolute::<Jwks>()),
        registration_endpoint: Some(urls.absolute::<crate::routes::Registration>()),
        userinfo_endpoint: Some(urls.absolute::<crate::routes::Userinfo>()),
        revocation_endpoint: Some(urls.absolute::<crate::routes::Revoke>()),
        introspection_endpoint: Some(urls.absolute::<crate::routes::Introspect>()),
        device_authorization_endpoint: Some(urls.absolute::<crate::routes::DeviceAuthorization>()),
        end_session_endpoint: None,
        scopes_supported: strings(&[
            "openid",
            "email",
            "urn:matrix:client:api:*",
            "urn:synapse:admin:*",
        ]),
        response_types_supported: strings(&["code"]),
        response_modes_supported: strings(&["query", "fragment", "form_post"]),
        // The device code grant (RFC 8628) makes Element offer QR login
        // (MSC4108).
        grant_types_supported: strings(&[
            "authorization_code",
            "refresh_token",
            "client_credentials",
            crate::flows::device_code::GRANT_DEVICE_CODE,
        ]),
        code_challenge_methods_supported: strings(&["S256"]),
        token_endpoint_auth_methods_supported: strings(&[
            "client_secret_basic",
            "client_secret_post",
            "client_secret_jwt",
            "private_key_jwt",
            "none",
        ]),
        // client_secret_jwt (HMAC) and private_key_jwt (what client JWKs verify).
        token_endpoint_auth_signing_alg_values_supported: strings(&[
            "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
            "ES256", "ES384", "EdDSA",
        ]),
        // RFC 8414 §2: same methods as the token endpoint.
        revocation_endpoint_auth_methods_supported: strings(&[
            "client_secret_basic",
            "client_secret_post",
            "client_secret_jwt",
            "private_key_jwt",
            "none",
        ]),
        introspection_endpoint_auth_methods_supported: strings(&[
            "client_secret_basic",
            "client_secret_post",
            "client_secret_jwt",
            "private_key_jwt",
        ]),
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
        account_management_uri: Some(urls.absolute::<crate::routes::Account>()),
        account_management_actions_supported: strings(&[
            "org.matrix.profile",
            "org.matrix.sessions_list",
            "org.matrix.session_view",
            "org.matrix.session_end",
            "org.matrix.cross_signing_reset",
        ]),
    }
}
