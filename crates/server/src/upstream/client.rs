//! The relying-party side of an upstream login: the provider's metadata
//! and keys (cached), the authorization URL, the token request with every
//! client authentication method, and the validation of what comes back (ID
//! token, userinfo, logout token).
//!
//! Every error is an [`UpstreamError`] whose `Display` is safe to show to
//! the user and to log: it never carries a token, a secret or a code.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::Engine;
use chrono::{DateTime, Utc};
use rand::{Rng, distributions::Alphanumeric};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;
use url::Url;
use vestibule_config::sections::upstream_oauth2::{
    DiscoveryMode, JwsAlg, PkceMethod, ResponseMode, TokenAuthMethod, UpstreamProviderConfig,
};
use vestibule_keys::Keystore;

/// How long metadata and key sets are reused before being fetched again.
const CACHE_TTL: Duration = Duration::from_mins(15);
/// The shortest time between two fetches of a key set forced by tokens
/// naming a key we do not know.
const FORCED_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// How long a failed metadata or key-set fetch is answered from memory
/// (so a down or slow provider is not asked again by every request).
const NEGATIVE_CACHE_TTL: Duration = Duration::from_secs(30);
/// Clock skew tolerated on `exp`/`iat`/`nbf` (OIDC Core §3.1.3.7 items 9–10
/// leave it to the client; a minute is common practice).
const LEEWAY_SECONDS: i64 = 60;
/// Logout tokens issued longer ago than this (plus the leeway) are
/// refused (Back-Channel Logout 1.0 §2.6 item 10).
const MAX_LOGOUT_TOKEN_AGE_SECONDS: i64 = 5 * 60;
/// Timeout of every request to the provider.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses larger than this are refused (metadata, keys, tokens).
const MAX_BODY: usize = 1024 * 1024;

/// The back-channel logout event (OpenID Connect Back-Channel Logout 1.0 §2.4).
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Why an upstream step failed. The message is shown on our error page.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("the identity provider could not be reached ({0})")]
    Unreachable(String),
    #[error("the identity provider's {what} is invalid: {why}")]
    BadMetadata { what: &'static str, why: String },
    #[error("the provider is not configured correctly: {0}")]
    Config(String),
    #[error("the identity provider refused the token request: {0}")]
    TokenRequest(String),
    #[error("the identity provider sent an invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
}

fn invalid(what: &'static str, why: impl Into<String>) -> UpstreamError {
    UpstreamError::Invalid {
        what,
        why: why.into(),
    }
}

/// What we use of a provider's metadata (OpenID Connect Discovery 1.0 §3,
/// RFC 8414 §2), after the configured overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderMetadata {
    pub issuer: Option<String>,
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub userinfo_endpoint: Option<Url>,
    pub jwks_uri: Option<Url>,
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// RFC 9207 §3: the provider puts `iss` on every authorization response.
    pub authorization_response_iss_parameter_supported: bool,
}

#[derive(Debug, Deserialize)]
struct RawMetadata {
    issuer: Option<String>,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    userinfo_endpoint: Option<String>,
    jwks_uri: Option<String>,
    #[serde(default)]
    response_types_supported: Option<Vec<String>>,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
}

/// `https`, or `http` to a loopback host (tests, a provider on the same
/// machine); anything else is refused for metadata endpoints in `oidc`
/// discovery mode.
fn secure_url(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

fn parse_endpoint(
    raw: Option<&str>,
    what: &'static str,
    strict: bool,
) -> Result<Option<Url>, UpstreamError> {
    let Some(raw) = raw else { return Ok(None) };
    let url = Url::parse(raw).map_err(|_| UpstreamError::BadMetadata {
        what: "metadata",
        why: format!("{what} is not a URL"),
    })?;
    if strict && (!secure_url(&url) || url.fragment().is_some()) {
        return Err(UpstreamError::BadMetadata {
            what: "metadata",
            why: format!("{what} must be an https URL without a fragment"),
        });
    }
    Ok(Some(url))
}

/// Builds the effective metadata from the discovered document (if any) and
/// the configured overrides.
fn effective_metadata(
    provider: &UpstreamProviderConfig,
    raw: Option<RawMetadata>,
) -> Result<ProviderMetadata, UpstreamError> {
    let strict = provider.discovery_mode == DiscoveryMode::Oidc;
    let raw = raw.unwrap_or(RawMetadata {
        issuer: None,
        authorization_endpoint: None,
        token_endpoint: None,
        userinfo_endpoint: None,
        jwks_uri: None,
        response_types_supported: None,
        code_challenge_methods_supported: None,
        authorization_response_iss_parameter_supported: false,
    });
    if strict {
        // Discovery §4.3: the issuer in the document MUST be identical to
        // the one the document was requested for.
        if raw.issuer.as_deref() != provider.issuer.as_deref() {
            return Err(UpstreamError::BadMetadata {
                what: "discovery document",
                why: "its issuer differs from the configured issuer".to_owned(),
            });
        }
        // Discovery §3: REQUIRED members.
        for (name, present) in [
            (
                "authorization_endpoint",
                raw.authorization_endpoint.is_some(),
            ),
            ("jwks_uri", raw.jwks_uri.is_some()),
            (
                "response_types_supported",
                raw.response_types_supported.is_some(),
            ),
        ] {
            if !present {
                return Err(UpstreamError::BadMetadata {
                    what: "discovery document",
                    why: format!("{name} is missing"),
                });
            }
        }
    }
    let internal_ok = issuer_is_internal(provider);
    let pick = |over: &Option<Url>, found: Option<&str>, what: &'static str| {
        // Configured by the operator: trusted.
        if let Some(u) = over {
            return Ok(Some(u.clone()));
        }
        let url = parse_endpoint(found, what, strict)?;
        // Learned from the provider: for a public issuer, never an
        // internal address (SSRF; the resolver also checks names).
        if let Some(u) = &url
            && !internal_ok
            && host_is_internal(u)
        {
            return Err(UpstreamError::BadMetadata {
                what: "metadata",
                why: format!("{what} points to an internal address"),
            });
        }
        Ok(url)
    };
    let authorization_endpoint = pick(
        &provider.authorization_endpoint,
        raw.authorization_endpoint.as_deref(),
        "authorization_endpoint",
    )?
    .ok_or_else(|| UpstreamError::Config("no authorization endpoint".to_owned()))?;
    let token_endpoint = pick(
        &provider.token_endpoint,
        raw.token_endpoint.as_deref(),
        "token_endpoint",
    )?
    .ok_or_else(|| UpstreamError::Config("no token endpoint".to_owned()))?;
    let userinfo_endpoint = pick(
        &provider.userinfo_endpoint,
        raw.userinfo_endpoint.as_deref(),
        "userinfo_endpoint",
    )?;
    let jwks_uri = pick(&provider.jwks_uri, raw.jwks_uri.as_deref(), "jwks_uri")?;
    Ok(ProviderMetadata {
        issuer: provider.issuer.clone().or(raw.issuer),
        authorization_endpoint,
        token_endpoint,
        userinfo_endpoint,
        jwks_uri,
        code_challenge_methods_supported: raw.code_challenge_methods_supported,
        authorization_response_iss_parameter_supported: raw
            .authorization_response_iss_parameter_supported,
    })
}

/// Whether an address must not be reached on behalf of a provider with a
/// public issuer (SSRF): loopback, RFC 1918 private, link-local (incl.
/// cloud metadata at 169.254.169.254), RFC 6598 CGNAT, "this network",
/// broadcast, multicast, unspecified, RFC 4193 ULA, and IPv6 forms that
/// embed such an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64).
pub fn is_internal_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || a == 0
                || (a == 100 && (b & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal_ip(IpAddr::V4(v4));
            }
            // IPv4-compatible (::a.b.c.d, deprecated) and NAT64 64:ff9b::/96.
            if seg[..6] == [0; 6] || seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [.., a, b, c, d] = v6.octets();
                return is_internal_ip(IpAddr::V4(Ipv4Addr::new(a, b, c, d)));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Whether a URL's host is `localhost` (RFC 6761 §6.3, also its
/// subdomains) or an internal IP literal.
fn host_is_internal(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => is_internal_ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_internal_ip(IpAddr::V6(ip)),
        None => true,
    }
}

/// Whether the operator configured this provider's issuer on an internal
/// host: then its requests may reach internal addresses; otherwise none
/// may (whatever the discovery document or DNS says).
pub fn issuer_is_internal(provider: &UpstreamProviderConfig) -> bool {
    provider
        .issuer
        .as_deref()
        .and_then(|i| Url::parse(i).ok())
        .is_some_and(|u| host_is_internal(&u))
}

/// Refuses an IP-literal (or `localhost`) destination of an internal class
/// for a provider with a public issuer (names are checked at resolution),
/// unless the operator configured that very endpoint.
fn check_destination(provider: &UpstreamProviderConfig, url: &Url) -> Result<(), UpstreamError> {
    let configured = [
        &provider.authorization_endpoint,
        &provider.token_endpoint,
        &provider.userinfo_endpoint,
        &provider.jwks_uri,
    ]
    .into_iter()
    .any(|c| c.as_ref() == Some(url));
    if !configured && !issuer_is_internal(provider) && host_is_internal(url) {
        return Err(UpstreamError::Unreachable(
            "the address is internal and the provider's issuer is not".to_owned(),
        ));
    }
    Ok(())
}

/// A resolver that drops internal addresses ([`is_internal_ip`]) from the
/// answer, failing when none is left: a public name cannot be made to
/// point us at an internal service (DNS rebinding included: the check is
/// on the very addresses we connect to). Host names the operator wrote in
/// the config (issuers and endpoint overrides) are trusted as they resolve:
/// an organisation's IdP behind split-horizon DNS (a public name that
/// resolves to 10.x inside) keeps working, while a discovery document
/// cannot add new internal destinations.
#[derive(Debug, Clone, Default)]
struct PublicOnlyResolver {
    trusted: Arc<std::collections::HashSet<String>>,
}

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let trusted = self.trusted.contains(&name.as_str().to_ascii_lowercase());
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| trusted || !is_internal_ip(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "the name resolves only to internal addresses",
                ))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

type Cached<T> = Mutex<HashMap<String, (Instant, Arc<T>)>>;

fn cached<T>(cache: &Cached<T>, key: &str) -> Option<Arc<T>> {
    let guard = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    guard
        .get(key)
        .filter(|(at, _)| at.elapsed() < CACHE_TTL)
        .map(|(_, v)| v.clone())
}

fn store<T>(cache: &Cached<T>, key: String, value: Arc<T>) {
    let mut guard = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    guard.insert(key, (Instant::now(), value));
}

/// The upstream HTTP client with its caches (one per process, in
/// `AppState`).
pub struct UpstreamClient {
    /// For providers whose configured issuer is public: resolved addresses
    /// of internal classes are refused ([`PublicOnlyResolver`]).
    http: reqwest::Client,
    /// For providers whose configured issuer is itself internal
    /// (`localhost`, a loopback or private literal): the operator pointed
    /// us there on purpose.
    http_internal: reqwest::Client,
    metadata: Cached<ProviderMetadata>,
    jwks: Cached<Value>,
    /// When each key set was last fetched because a token named an
    /// unknown key: at most once per [`FORCED_REFRESH_INTERVAL`], so
    /// unauthenticated tokens (back-channel logout) cannot make us hammer
    /// the provider.
    forced: Mutex<HashMap<String, Instant>>,
    /// Failed fetches by cache key, answered as is for
    /// [`NEGATIVE_CACHE_TTL`].
    failures: Mutex<HashMap<String, (Instant, UpstreamError)>>,
    /// One fetch at a time per cache key (single flight): the others wait
    /// and then find the cache filled (or the failure recorded).
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient").finish_non_exhaustive()
    }
}

/// The token endpoint's answer (RFC 6749 §5.1, OIDC Core §3.1.3.3).
#[derive(Clone, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub id_token: Option<String>,
}

/// The tokens are credentials: never in logs or panics.
impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"[redacted]")
            .field("token_type", &self.token_type)
            .field("id_token", &self.id_token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// A validated logout token (Back-Channel Logout 1.0 §2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutToken {
    pub sub: Option<String>,
    pub sid: Option<String>,
    /// Unique per token (§2.4); recorded until `exp` against replays
    /// (§2.6 item 10).
    pub jti: String,
    pub exp: DateTime<Utc>,
}

impl UpstreamClient {
    /// Fails when the HTTP client cannot be built (e.g. no TLS backend):
    /// falling back to a default client would silently drop the timeout and
    /// the no-redirect policy.
    pub fn new() -> Result<Self, reqwest::Error> {
        Self::with_trusted_hosts(std::iter::empty())
    }

    /// As [`Self::new`], trusting the resolution of the host names of
    /// every configured provider's issuer and endpoint overrides.
    pub fn for_config(config: &vestibule_config::Config) -> Result<Self, reqwest::Error> {
        let hosts = config.upstream_oauth2.providers.iter().flat_map(|p| {
            let issuer = p.issuer.as_deref().and_then(|i| Url::parse(i).ok());
            [
                issuer,
                p.authorization_endpoint.clone(),
                p.token_endpoint.clone(),
                p.userinfo_endpoint.clone(),
                p.jwks_uri.clone(),
            ]
            .into_iter()
            .flatten()
            .filter_map(|u| u.host_str().map(str::to_ascii_lowercase))
        });
        Self::with_trusted_hosts(hosts)
    }

    fn with_trusted_hosts(hosts: impl Iterator<Item = String>) -> Result<Self, reqwest::Error> {
        let resolver = PublicOnlyResolver {
            trusted: Arc::new(hosts.collect()),
        };
        let builder = || {
            reqwest::Client::builder()
                .timeout(HTTP_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("vestibule/", env!("CARGO_PKG_VERSION")))
        };
        Ok(Self {
            http: builder().dns_resolver(Arc::new(resolver)).build()?,
            http_internal: builder().build()?,
            metadata: Mutex::default(),
            jwks: Mutex::default(),
            forced: Mutex::default(),
            failures: Mutex::default(),
            flights: Mutex::default(),
        })
    }

    /// The client for requests on behalf of `provider` (see
    /// [`issuer_is_internal`]).
    fn http_for(&self, provider: &UpstreamProviderConfig) -> &reqwest::Client {
        if issuer_is_internal(provider) {
            &self.http_internal
        } else {
            &self.http
        }
    }

    async fn get_json(
        &self,
        provider: &UpstreamProviderConfig,
        url: &Url,
        what: &'static str,
    ) -> Result<Value, UpstreamError> {
        check_destination(provider, url)?;
        let res = self
            .http_for(provider)
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| UpstreamError::Unreachable(without_url(&e)))?;
        if !res.status().is_success() {
            return Err(UpstreamError::BadMetadata {
                what,
                why: format!("HTTP {}", res.status().as_u16()),
            });
        }
        let body = read_body(res).await?;
        serde_json::from_slice(&body).map_err(|_| UpstreamError::BadMetadata {
            what,
            why: "not JSON".to_owned(),
        })
    }

    /// The provider's metadata by its `discovery_mode`: OpenID Connect
    /// Discovery 1.0 (validated for `oidc`, as found for `insecure`) or the
    /// configured endpoints alone (`disabled`); configured endpoints always
    /// override discovered ones. Cached for a while.
    pub async fn metadata(
        &self,
        provider: &UpstreamProviderConfig,
    ) -> Result<Arc<ProviderMetadata>, UpstreamError> {
        let key = format!(
            "{}|{}",
            provider.id,
            provider.issuer.as_deref().unwrap_or("")
        );
        if let Some(m) = cached(&self.metadata, &key) {
            return Ok(m);
        }
        let key = format!("metadata|{key}");
        let flight = self.flight(&key);
        let _flying = flight.lock().await;
        let cache_key = &key["metadata|".len()..];
        if let Some(m) = cached(&self.metadata, cache_key) {
            return Ok(m);
        }
        self.recent_failure(&key)?;
        match self.fetch_metadata(provider).await {
            Ok(m) => {
                let m = Arc::new(m);
                store(&self.metadata, cache_key.to_owned(), m.clone());
                Ok(m)
            }
            Err(e) => Err(self.remember_failure(key, e)),
        }
    }

    /// The single-flight lock of a cache key.
    fn flight(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.flights
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key.to_owned())
            .or_default()
            .clone()
    }

    /// The failure of a fetch of `key` less than [`NEGATIVE_CACHE_TTL`] ago.
    fn recent_failure(&self, key: &str) -> Result<(), UpstreamError> {
        let failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match failures.get(key) {
            Some((at, e)) if at.elapsed() < NEGATIVE_CACHE_TTL => Err(e.clone()),
            _ => Ok(()),
        }
    }

    fn remember_failure(&self, key: String, e: UpstreamError) -> UpstreamError {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, (Instant::now(), e.clone()));
        e
    }

    async fn fetch_metadata(
        &self,
        provider: &UpstreamProviderConfig,
    ) -> Result<ProviderMetadata, UpstreamError> {
        let raw = match provider.discovery_mode {
            DiscoveryMode::Disabled => None,
            mode => {
                let issuer = provider
                    .issuer
                    .as_deref()
                    .ok_or_else(|| UpstreamError::Config("discovery needs an issuer".to_owned()))?;
                let issuer_url = Url::parse(issuer)
                    .map_err(|_| UpstreamError::Config("the issuer is not a URL".to_owned()))?;
                if mode == DiscoveryMode::Oidc && !secure_url(&issuer_url) {
                    return Err(UpstreamError::Config(
                        "the issuer must be an https URL".to_owned(),
                    ));
                }
                // Discovery §4: issuer + "/.well-known/openid-configuration",
                // keeping any path of the issuer.
                let url = Url::parse(&format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                ))
                .map_err(|_| UpstreamError::Config("the issuer is not a URL".to_owned()))?;
                let doc = self.get_json(provider, &url, "discovery document").await?;
                Some(serde_json::from_value::<RawMetadata>(doc).map_err(|_| {
                    UpstreamError::BadMetadata {
                        what: "discovery document",
                        why: "members have the wrong types".to_owned(),
                    }
                })?)
            }
        };
        effective_metadata(provider, raw)
    }

    /// The provider's JWK Set, from the cache unless `refresh` (which is
    /// honoured once per [`FORCED_REFRESH_INTERVAL`] per key set).
    pub async fn jwks(
        &self,
        provider: &UpstreamProviderConfig,
        uri: &Url,
        refresh: bool,
    ) -> Result<Arc<Value>, UpstreamError> {
        let key = uri.to_string();
        let refresh = refresh && {
            let mut forced = self
                .forced
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let recent = forced
                .get(&key)
                .is_some_and(|at| at.elapsed() < FORCED_REFRESH_INTERVAL);
            if !recent {
                forced.insert(key.clone(), Instant::now());
            }
            !recent
        };
        if !refresh && let Some(j) = cached(&self.jwks, &key) {
            return Ok(j);
        }
        let flight_key = format!("jwks|{key}");
        let flight = self.flight(&flight_key);
        let started = Instant::now();
        let _flying = flight.lock().await;
        // Fetched by another request while we waited (fresh enough even
        // for a forced refresh: it started after ours was asked for).
        {
            let guard = self
                .jwks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((at, j)) = guard.get(&key)
                && (*at >= started || (!refresh && at.elapsed() < CACHE_TTL))
            {
                return Ok(j.clone());
            }
        }
        self.recent_failure(&flight_key)?;
        let doc = match self.get_json(provider, uri, "key set").await {
            Ok(doc) if doc.get("keys").is_some_and(Value::is_array) => doc,
            Ok(_) => {
                let e = UpstreamError::BadMetadata {
                    what: "key set",
                    why: "no keys array".to_owned(),
                };
                return Err(self.remember_failure(flight_key, e));
            }
            Err(e) => return Err(self.remember_failure(flight_key, e)),
        };
        let j = Arc::new(doc);
        store(&self.jwks, key, j.clone());
        Ok(j)
    }

    /// Verifies a JWS signed as the provider's ID tokens are (OIDC Core
    /// §3.1.3.7 items 6–8), requires its claims to be an object and checks
    /// `iss` and `aud` (items 2–3). Shared by ID and logout tokens.
    async fn verify_id_token_jws(
        &self,
        provider: &UpstreamProviderConfig,
        metadata: &ProviderMetadata,
        token: &str,
        what: &'static str,
    ) -> Result<Map<String, Value>, UpstreamError> {
        let claims = self
            .verify_jws(
                provider,
                metadata,
                token,
                provider.id_token_signed_response_alg,
                what,
            )
            .await?;
        let Value::Object(claims) = claims else {
            return Err(invalid(what, "its claims are not an object"));
        };
        check_iss_aud(provider, metadata, &claims, what)?;
        Ok(claims)
    }

    /// Verifies a JWS from the provider signed with `expected_alg`: `none`
    /// only when configured, HMAC with the client secret for `HS*`,
    /// otherwise the provider's keys (fetched again once when the token
    /// names a key we do not know, for key rotation).
    pub async fn verify_jws(
        &self,
        provider: &UpstreamProviderConfig,
        metadata: &ProviderMetadata,
        token: &str,
        expected_alg: JwsAlg,
        what: &'static str,
    ) -> Result<Value, UpstreamError> {
        let header =
            vestibule_keys::peek_jws_header(token).map_err(|_| invalid(what, "it is not a JWT"))?;
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
        if alg != alg_name(expected_alg) {
            // Attacker-supplied: only printable ASCII, bounded, is echoed.
            return Err(invalid(
                what,
                format!(
                    "it is signed with {:?}, expected {}",
                    printable(alg),
                    alg_name(expected_alg)
                ),
            ));
        }
        match expected_alg {
            JwsAlg::None => {
                // Only reachable when the operator configured `none`
                // (OIDC Core §3.1.3.7 item 7 leaves it to registration).
                if !token.ends_with('.') {
                    return Err(invalid(what, "an unsigned token carries a signature"));
                }
                vestibule_keys::peek_jws_claims(token).map_err(|_| invalid(what, "bad payload"))
            }
            JwsAlg::HS256 | JwsAlg::HS384 | JwsAlg::HS512 => {
                // OIDC Core §10.1: MACed with the octets of the client secret.
                let secret = provider
                    .client_secret
                    .as_ref()
                    .ok_or_else(|| UpstreamError::Config("HS* needs a client_secret".to_owned()))?;
                vestibule_keys::verify_jws_hmac(token, secret.expose().as_bytes())
                    .map(|v| v.claims)
                    .map_err(|_| invalid(what, "bad signature"))
            }
            _ => {
                let uri = metadata
                    .jwks_uri
                    .as_ref()
                    .ok_or_else(|| UpstreamError::Config("no jwks_uri".to_owned()))?;
                let keys = self.jwks(provider, uri, false).await?;
                let kid = header.get("kid").and_then(Value::as_str);
                let known = |keys: &Value| {
                    kid.is_none_or(|kid| {
                        keys.get("keys")
                            .and_then(Value::as_array)
                            .is_some_and(|ks| ks.iter().any(|k| k["kid"].as_str() == Some(kid)))
                    })
                };
                let keys = if known(&keys) {
                    keys
                } else {
                    self.jwks(provider, uri, true).await?
                };
                vestibule_keys::verify_jws_with_jwks(token, &keys)
                    .map(|v| v.claims)
                    .map_err(|e| match e {
                        vestibule_keys::KeyError::InvalidSignature => {
                            invalid(what, "bad signature")
                        }
                        _ => invalid(what, "no key of the provider can verify it"),
                    })
            }
        }
    }

    /// Exchanges the authorization code at the token endpoint (RFC 6749
    /// §4.1.3, RFC 7636 §4.5), authenticating as configured.
    #[allow(
        clippy::too_many_arguments,
        reason = "each is one input of the token request"
    )]
    pub async fn exchange_code(
        &self,
        provider: &UpstreamProviderConfig,
        metadata: &ProviderMetadata,
        keystore: &Keystore,
        now: DateTime<Utc>,
        rng: &mut (impl rand::RngCore + ?Sized),
        code: &str,
        redirect_uri: &Url,
        code_verifier: Option<&str>,
    ) -> Result<TokenResponse, UpstreamError> {
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", redirect_uri.to_string()),
        ];
        if let Some(v) = code_verifier {
            form.push(("code_verifier", v.to_owned()));
        }
        check_destination(provider, &metadata.token_endpoint)?;
        let mut req = self
            .http_for(provider)
            .post(metadata.token_endpoint.clone());
        let secret = || {
            provider
                .client_secret
                .as_ref()
                .map(|s| s.expose().to_owned())
                .ok_or_else(|| UpstreamError::Config("client_secret is not set".to_owned()))
        };
        match provider.token_endpoint_auth_method {
            TokenAuthMethod::None => form.push(("client_id", provider.client_id.clone())),
            TokenAuthMethod::ClientSecretBasic => {
                // RFC 6749 §2.3.1: both form-urlencoded before Basic.
                let enc = |s: &str| -> String {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
                };
                let creds = format!("{}:{}", enc(&provider.client_id), enc(&secret()?));
                let b64 = base64::engine::general_purpose::STANDARD.encode(creds);
                req = req.header(reqwest::header::AUTHORIZATION, format!("Basic {b64}"));
            }
            TokenAuthMethod::ClientSecretPost => {
                form.push(("client_id", provider.client_id.clone()));
                form.push(("client_secret", secret()?));
            }
            TokenAuthMethod::ClientSecretJwt | TokenAuthMethod::PrivateKeyJwt => {
                let claims = client_assertion_claims(provider, metadata, now, rng);
                let jwt = if provider.token_endpoint_auth_method == TokenAuthMethod::ClientSecretJwt
                {
                    let alg = alg_name(
                        provider
                            .token_endpoint_auth_signing_alg
                            .unwrap_or(JwsAlg::HS256),
                    );
                    vestibule_keys::sign_jws_hmac(alg, secret()?.as_bytes(), &claims)
                        .map_err(|e| UpstreamError::Config(format!("client_secret_jwt: {e}")))?
                } else {
                    let alg = match provider.token_endpoint_auth_signing_alg {
                        Some(a) => alg_name(a).to_owned(),
                        None => keystore
                            .entries()
                            .first()
                            .map(|e| e.key.default_algorithm().to_owned())
                            .ok_or_else(|| UpstreamError::Config("no signing key".to_owned()))?,
                    };
                    keystore
                        .sign_jwt(&alg, &claims)
                        .map_err(|e| UpstreamError::Config(format!("private_key_jwt: {e}")))?
                };
                form.push(("client_id", provider.client_id.clone()));
                form.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
                ));
                form.push(("client_assertion", jwt));
            }
            TokenAuthMethod::SignInWithApple => {
                return Err(UpstreamError::Config(
                    "sign_in_with_apple is not supported".to_owned(),
                ));
            }
        }
        let res = req
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| UpstreamError::Unreachable(without_url(&e)))?;
        let status = res.status();
        let body = read_body(res).await?;
        if !status.is_success() {
            // RFC 6749 §5.2: show the error code, not the body.
            let err: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let code = err["error"].as_str().unwrap_or("unknown error");
            return Err(UpstreamError::TokenRequest(format!(
                "{} (HTTP {})",
                printable(code),
                status.as_u16()
            )));
        }
        let tokens: TokenResponse = serde_json::from_slice(&body)
            .map_err(|_| invalid("token response", "it is not a token response"))?;
        // RFC 6749 §7.1 / RFC 6750: a bearer token, case-insensitively.
        if !tokens.token_type.eq_ignore_ascii_case("bearer") {
            return Err(invalid("token response", "token_type is not Bearer"));
        }
        Ok(tokens)
    }

    /// Validates an ID token as OIDC Core §3.1.3.7 asks and returns its
    /// claims.
    pub async fn validate_id_token(
        &self,
        provider: &UpstreamProviderConfig,
        metadata: &ProviderMetadata,
        id_token: &str,
        nonce: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Map<String, Value>, UpstreamError> {
        const W: &str = "ID token";
        // Item 6–8: the signature with the registered algorithm.
        let claims = self
            .verify_id_token_jws(provider, metadata, id_token, W)
            .await?;
        // Items 9–10: exp in the future, iat not absurd (small leeway).
        let now = now.timestamp();
        check_exp(&claims, now, W)?;
        check_iat(&claims, now, W)?;
        // Item 11: the nonce we sent, compared in constant time.
        if let Some(nonce) = nonce {
            let got = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
            if !bool::from(got.as_bytes().ct_eq(nonce.as_bytes())) {
                return Err(invalid(W, "its nonce does not match this login"));
            }
        }
        if claims
            .get("sub")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(invalid(W, "sub is missing"));
        }
        Ok(claims)
    }

    /// The userinfo response (OIDC Core §5.3): JSON, or a JWT signed with
    /// `userinfo_signed_response_alg` (§5.3.2: then also `iss`/`aud`). Its
    /// `sub` must equal the ID token's (§5.3.4).
    pub async fn userinfo(
        &self,
        provider: &UpstreamProviderConfig,
        metadata: &ProviderMetadata,
        access_token: &str,
        expected_sub: &str,
    ) -> Result<Map<String, Value>, UpstreamError> {
        const W: &str = "userinfo response";
        let endpoint = metadata
            .userinfo_endpoint
            .as_ref()
            .ok_or_else(|| UpstreamError::Config("no userinfo endpoint".to_owned()))?;
        check_destination(provider, endpoint)?;
        let res = self
            .http_for(provider)
            .get(endpoint.clone())
            .bearer_auth(access_token)
            .send()
            .await
            .map_err(|e| UpstreamError::Unreachable(without_url(&e)))?;
        if !res.status().is_success() {
            return Err(invalid(W, format!("HTTP {}", res.status().as_u16())));
        }
        let is_jwt = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/jwt"));
        let body = read_body(res).await?;
        let claims = match provider.userinfo_signed_response_alg {
            Some(alg) => {
                if !is_jwt {
                    return Err(invalid(W, "it is not a signed JWT"));
                }
                let token = std::str::from_utf8(&body)
                    .map_err(|_| invalid(W, "not text"))?
                    .trim();
                let claims = self.verify_jws(provider, metadata, token, alg, W).await?;
                let Value::Object(claims) = claims else {
                    return Err(invalid(W, "its claims are not an object"));
                };
                check_iss_aud(provider, metadata, &claims, W)?;
                claims
            }
            None => match serde_json::from_slice(&body) {
                Ok(Value::Object(m)) => m,
                _ => return Err(invalid(W, "it is not a JSON object")),
            },
        };
        if claims.get("sub").and_then(Value::as_str) != Some(expected_sub) {
            return Err(invalid(W, "its sub differs from the ID token's"));
        }
        Ok(claims)
    }

    /// Validates a logout token (Back-Channel Logout 1.0 §2.6).
    pub async fn validate_logout_token(
        &self,
        provider: &UpstreamProviderConfig,
        metadata: &ProviderMetadata,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<LogoutToken, UpstreamError> {
        const W: &str = "logout token";
        // §2.4: "Logout Tokens MUST be signed": whatever the ID token
        // algorithm is configured to, an unsigned one is never accepted
        // (config validation refuses `none` with back-channel logout on).
        if provider.id_token_signed_response_alg == JwsAlg::None {
            return Err(invalid(W, "unsigned logout tokens are not accepted"));
        }
        let header =
            vestibule_keys::peek_jws_header(token).map_err(|_| invalid(W, "it is not a JWT"))?;
        // §2.4 / RFC 8725 §3.11: explicit typing is RECOMMENDED, not
        // required: `logout+jwt` (RFC 7515 §4.1.9: the `application/` prefix
        // may be present, media types compare case-insensitively) or the
        // generic `JWT` several providers send; any other type (e.g.
        // `at+jwt`) is another kind of token. The `events` claim and the
        // absence of `nonce` (below) keep an ID token from passing as one.
        if let Some(typ) = header.get("typ") {
            let typ = typ.as_str().unwrap_or("").to_ascii_lowercase();
            if !matches!(
                typ.as_str(),
                "logout+jwt" | "application/logout+jwt" | "jwt" | "application/jwt"
            ) {
                return Err(invalid(W, "its typ is not logout+jwt"));
            }
        }
        // §2.6 item 3: as an ID token's signature (OIDC Core §3.1.3.7 6–8).
        // Item 4: iss, aud, iat (and exp when present).
        let claims = self
            .verify_id_token_jws(provider, metadata, token, W)
            .await?;
        let now = now.timestamp();
        let iat = check_iat(&claims, now, W)?;
        // §2.6 item 10 lets the RP refuse tokens issued too far in the
        // past: that bounds how long a jti must be remembered.
        if iat + MAX_LOGOUT_TOKEN_AGE_SECONDS + LEEWAY_SECONDS < now {
            return Err(invalid(W, "it was issued too long ago"));
        }
        // §2.4 (as amended by the 2023 errata set): `exp` is REQUIRED.
        let exp = check_exp(&claims, now, W)?;
        // §2.4: jti REQUIRED.
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .filter(|j| !j.is_empty())
            .ok_or_else(|| invalid(W, "jti is missing"))?
            .to_owned();
        if jti.len() > 255 {
            return Err(invalid(W, "jti is too long"));
        }
        let exp = DateTime::from_timestamp(exp, 0).ok_or_else(|| invalid(W, "exp is invalid"))?;
        // Item 5–6: sub and/or sid.
        let sub = claims.get("sub").and_then(Value::as_str).map(str::to_owned);
        let sid = claims.get("sid").and_then(Value::as_str).map(str::to_owned);
        if sub.is_none() && sid.is_none() {
            return Err(invalid(W, "it has neither sub nor sid"));
        }
        // Item 7: the events member with the back-channel logout event.
        let has_event = claims
            .get("events")
            .and_then(Value::as_object)
            .and_then(|e| e.get(BACKCHANNEL_LOGOUT_EVENT))
            .is_some_and(Value::is_object);
        if !has_event {
            return Err(invalid(W, "events lacks the back-channel logout event"));
        }
        // Item 8: no nonce (so an ID token cannot pass as a logout token).
        if claims.contains_key("nonce") {
            return Err(invalid(W, "it carries a nonce"));
        }
        Ok(LogoutToken { sub, sid, jti, exp })
    }
}

/// `exp` is present and not past (with [`LEEWAY_SECONDS`]); returns it.
fn check_exp(
    claims: &Map<String, Value>,
    now: i64,
    what: &'static str,
) -> Result<i64, UpstreamError> {
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| invalid(what, "exp is missing"))?;
    if exp + LEEWAY_SECONDS < now {
        return Err(invalid(what, "it has expired"));
    }
    Ok(exp)
}

/// `iat` is present and not in the future (with [`LEEWAY_SECONDS`]);
/// returns it.
fn check_iat(
    claims: &Map<String, Value>,
    now: i64,
    what: &'static str,
) -> Result<i64, UpstreamError> {
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or_else(|| invalid(what, "iat is missing"))?;
    if iat > now + LEEWAY_SECONDS {
        return Err(invalid(what, "it was issued in the future"));
    }
    Ok(iat)
}

/// OIDC Core §3.1.3.7 items 2–5: `iss` exactly the issuer, `aud` contains
/// our client id, `azp` (required with several audiences) is our client id.
fn check_iss_aud(
    provider: &UpstreamProviderConfig,
    metadata: &ProviderMetadata,
    claims: &Map<String, Value>,
    what: &'static str,
) -> Result<(), UpstreamError> {
    if let Some(issuer) = metadata.issuer.as_deref()
        && claims.get("iss").and_then(Value::as_str) != Some(issuer)
    {
        return Err(invalid(what, "iss is not the provider's issuer"));
    }
    let ours = provider.client_id.as_str();
    let (contains, several) = match claims.get("aud") {
        Some(Value::String(a)) => (a == ours, false),
        Some(Value::Array(a)) => (a.iter().any(|x| x.as_str() == Some(ours)), a.len() > 1),
        _ => (false, false),
    };
    if !contains {
        return Err(invalid(what, "aud does not name this service"));
    }
    // Items 4–5: with several audiences `azp` is required; whenever it is
    // present it must be our client id.
    match claims.get("azp") {
        Some(azp) if azp.as_str() != Some(ours) => {
            return Err(invalid(what, "azp is not this service"));
        }
        None if several => return Err(invalid(what, "azp is missing")),
        _ => {}
    }
    Ok(())
}

/// RFC 7523 §3 assertion claims for `client_secret_jwt`/`private_key_jwt`
/// (OIDC Core §9): iss = sub = client_id, aud = the token endpoint, a
/// unique jti, a short exp.
fn client_assertion_claims(
    provider: &UpstreamProviderConfig,
    metadata: &ProviderMetadata,
    now: DateTime<Utc>,
    rng: &mut (impl rand::RngCore + ?Sized),
) -> Value {
    let now = now.timestamp();
    json!({
        "iss": provider.client_id,
        "sub": provider.client_id,
        "aud": metadata.token_endpoint.as_str(),
        "jti": random_string(rng, 32),
        "iat": now,
        "exp": now + 120,
    })
}

/// The JWA name of an algorithm (RFC 7518 §3.1; `EdDSA` RFC 8037).
pub fn alg_name(alg: JwsAlg) -> &'static str {
    match alg {
        JwsAlg::HS256 => "HS256",
        JwsAlg::HS384 => "HS384",
        JwsAlg::HS512 => "HS512",
        JwsAlg::RS256 => "RS256",
        JwsAlg::RS384 => "RS384",
        JwsAlg::RS512 => "RS512",
        JwsAlg::ES256 => "ES256",
        JwsAlg::ES384 => "ES384",
        JwsAlg::ES512 => "ES512",
        JwsAlg::PS256 => "PS256",
        JwsAlg::PS384 => "PS384",
        JwsAlg::PS512 => "PS512",
        JwsAlg::EdDSA => "EdDSA",
        JwsAlg::ES256K => "ES256K",
        JwsAlg::None => "none",
    }
}

/// A random URL-safe string (state, nonce, PKCE verifier: RFC 7636 §4.1
/// allows 43–128 of these characters).
pub fn random_string(rng: &mut (impl rand::RngCore + ?Sized), len: usize) -> String {
    (0..len)
        .map(|_| char::from(rng.sample(Alphanumeric)))
        .collect()
}

/// Whether to send a PKCE challenge (`auto`: when the provider advertises
/// S256, RFC 8414 §2).
pub fn use_pkce(provider: &UpstreamProviderConfig, metadata: &ProviderMetadata) -> bool {
    match provider.pkce_method {
        PkceMethod::Always => true,
        PkceMethod::Never => false,
        PkceMethod::Auto => metadata
            .code_challenge_methods_supported
            .as_ref()
            .is_some_and(|m| m.iter().any(|x| x == "S256")),
    }
}

/// What an authorization request carries besides the provider's settings.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest<'a> {
    pub redirect_uri: &'a Url,
    pub state: &'a str,
    pub nonce: &'a str,
    pub code_verifier: Option<&'a str>,
    pub login_hint: Option<&'a str>,
}

/// The URL that sends the browser to the provider (OIDC Core §3.1.2.1,
/// RFC 7636 §4.3, OAuth 2.0 Form Post Response Mode).
pub fn authorization_url(
    provider: &UpstreamProviderConfig,
    metadata: &ProviderMetadata,
    req: &AuthorizationRequest<'_>,
) -> Url {
    let mut url = metadata.authorization_endpoint.clone();
    url.set_fragment(None);
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &provider.client_id)
            .append_pair("redirect_uri", req.redirect_uri.as_str())
            .append_pair("scope", &provider.scope)
            .append_pair("state", req.state)
            .append_pair("nonce", req.nonce);
        if let Some(v) = req.code_verifier {
            q.append_pair("code_challenge", &vestibule_domain::pkce::s256_challenge(v))
                .append_pair("code_challenge_method", "S256");
        }
        if provider.response_mode == Some(ResponseMode::FormPost) {
            q.append_pair("response_mode", "form_post");
        }
        if provider.forward_login_hint
            && let Some(hint) = req.login_hint
        {
            q.append_pair("login_hint", hint);
        }
        // Sent as written (plain strings, like MAS); the config refuses
        // the parameters set above.
        for (k, v) in &provider.additional_authorization_parameters {
            q.append_pair(k, v);
        }
    }
    url
}

/// A reqwest error, said without the URL (it may carry a code or token in
/// its query).
fn without_url(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    }
}

/// The body, refused past [`MAX_BODY`]: early by `Content-Length`, and
/// otherwise (chunked, or a lying length) while reading, so that no more
/// than the limit plus one chunk is ever buffered.
async fn read_body(mut res: reqwest::Response) -> Result<Vec<u8>, UpstreamError> {
    let too_large = || UpstreamError::Unreachable("response too large".to_owned());
    if res.content_length().is_some_and(|l| l > MAX_BODY as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| UpstreamError::Unreachable(without_url(&e)))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// At most 80 printable ASCII characters of something the provider said.
pub fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(80)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn provider() -> UpstreamProviderConfig {
        serde_json::from_value(json!({
            "id": "01H8PKNWKKRPCBW4YGH1RWV279",
            "issuer": "https://idp.example",
            "client_id": "vestibule",
            "client_secret": "s3cret",
        }))
        .unwrap()
    }

    fn raw(issuer: &str) -> RawMetadata {
        serde_json::from_value(json!({
            "issuer": issuer,
            "authorization_endpoint": "https://idp.example/auth",
            "token_endpoint": "https://idp.example/token",
            "jwks_uri": "https://idp.example/jwks",
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
        }))
        .unwrap()
    }

    #[test]
    fn discovery_is_validated_in_oidc_mode_only() {
        let p = provider();
        assert!(effective_metadata(&p, Some(raw("https://idp.example"))).is_ok());
        // Discovery §4.3: exact issuer match, not even a trailing slash.
        assert!(effective_metadata(&p, Some(raw("https://idp.example/"))).is_err());
        let mut insecure = p.clone();
        insecure.discovery_mode = DiscoveryMode::Insecure;
        assert!(effective_metadata(&insecure, Some(raw("https://other.example"))).is_ok());
        // Plain http only to loopback.
        let mut r = raw("https://idp.example");
        r.token_endpoint = Some("http://idp.example/token".to_owned());
        assert!(effective_metadata(&p, Some(r)).is_err());
        // SSRF: a public issuer's document cannot send us to loopback...
        let mut r = raw("https://idp.example");
        r.token_endpoint = Some("http://127.0.0.1:9/token".to_owned());
        assert!(effective_metadata(&p, Some(r)).is_err());
        // ...but a provider configured on loopback may use it.
        let mut local = p.clone();
        local.issuer = Some("http://127.0.0.1:9".to_owned());
        let mut r = raw("http://127.0.0.1:9");
        r.token_endpoint = Some("http://127.0.0.1:9/token".to_owned());
        assert!(effective_metadata(&local, Some(r)).is_ok());
        // Disabled: only what is configured, and it must be complete.
        let mut disabled = p;
        disabled.discovery_mode = DiscoveryMode::Disabled;
        assert!(effective_metadata(&disabled, None).is_err());
        disabled.authorization_endpoint = Some("https://idp.example/a".parse().unwrap());
        disabled.token_endpoint = Some("https://idp.example/t".parse().unwrap());
        let m = effective_metadata(&disabled, None).unwrap();
        assert_eq!(m.token_endpoint.as_str(), "https://idp.example/t");
        assert!(!use_pkce(&disabled, &m), "auto without advertised S256");
    }

    #[test]
    fn authorization_url_carries_what_is_configured() {
        let mut p = provider();
        p.response_mode = Some(ResponseMode::FormPost);
        p.forward_login_hint = true;
        p.additional_authorization_parameters
            .insert("prompt".to_owned(), "login".to_owned());
        let m = effective_metadata(&p, Some(raw("https://idp.example"))).unwrap();
        assert!(use_pkce(&p, &m));
        let cb: Url = "https://auth.example/upstream/callback/x".parse().unwrap();
        let url = authorization_url(
            &p,
            &m,
            &AuthorizationRequest {
                redirect_uri: &cb,
                state: "st",
                nonce: "no",
                code_verifier: Some("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
                login_hint: Some("alice"),
            },
        );
        let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["redirect_uri"], cb.as_str());
        assert_eq!(
            q["code_challenge"],
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["response_mode"], "form_post");
        assert_eq!(q["login_hint"], "alice");
        assert_eq!(q["prompt"], "login");
        assert_eq!(q["nonce"], "no");
    }

    #[test]
    fn aud_and_azp_are_checked() {
        let p = provider();
        let m = effective_metadata(&p, Some(raw("https://idp.example"))).unwrap();
        let ok = |c: Value| check_iss_aud(&p, &m, c.as_object().unwrap(), "t").is_ok();
        assert!(ok(
            json!({"iss": "https://idp.example", "aud": "vestibule"})
        ));
        assert!(ok(
            json!({"iss": "https://idp.example", "aud": ["vestibule"]})
        ));
        assert!(!ok(json!({"iss": "https://idp.example", "aud": "other"})));
        assert!(!ok(
            json!({"iss": "https://evil.example", "aud": "vestibule"})
        ));
        assert!(!ok(
            json!({"iss": "https://idp.example", "aud": ["vestibule", "x"], "azp": "x"})
        ));
    }

    #[test]
    fn internal_addresses_are_classified() {
        let internal = [
            "127.0.0.1",
            "127.255.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ];
        for ip in internal {
            assert!(is_internal_ip(ip.parse().unwrap()), "{ip}");
        }
        let public = [
            "8.8.8.8",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "100.63.255.255",
            "192.169.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ];
        for ip in public {
            assert!(!is_internal_ip(ip.parse().unwrap()), "{ip}");
        }
    }

    /// The SSRF policy: what a provider with a public issuer may reach.
    #[test]
    fn public_issuers_cannot_reach_internal_addresses() {
        let public = provider();
        assert!(!issuer_is_internal(&public));
        for url in [
            "http://127.0.0.1:8080/jwks",
            "http://[::1]/x",
            "https://10.0.0.5/token",
            "http://169.254.169.254/latest/meta-data/",
            "https://[::ffff:192.168.0.1]/x",
            "http://localhost:9000/x",
            "http://api.localhost/x",
        ] {
            let url: Url = url.parse().unwrap();
            assert!(check_destination(&public, &url).is_err(), "{url}");
            // Nor through a discovery document (jwks_uri and endpoints).
            let mut r = raw("https://idp.example");
            r.jwks_uri = Some(url.to_string());
            assert!(effective_metadata(&public, Some(r)).is_err(), "{url}");
        }
        assert!(check_destination(&public, &"https://idp.example/t".parse().unwrap()).is_ok());
        // What the operator configured is trusted.
        let mut configured = public.clone();
        configured.token_endpoint = Some("https://10.0.0.5/token".parse().unwrap());
        let t = configured.token_endpoint.clone().unwrap();
        assert!(check_destination(&configured, &t).is_ok());
        // An issuer the operator put on an internal host may use them.
        for issuer in [
            "http://127.0.0.1:4000",
            "https://10.0.0.5",
            "http://localhost:3000",
        ] {
            let mut internal = public.clone();
            internal.issuer = Some(issuer.to_owned());
            assert!(issuer_is_internal(&internal), "{issuer}");
            let url: Url = "http://127.0.0.1:8080/jwks".parse().unwrap();
            assert!(check_destination(&internal, &url).is_ok(), "{issuer}");
        }
    }

    /// The resolver behind every request of a public-issuer provider never
    /// yields an internal address: `localhost` resolves to loopback only,
    /// so it fails; an IP literal given as a name is filtered the same way.
    #[tokio::test]
    async fn the_resolver_drops_internal_addresses() {
        use reqwest::dns::Resolve;
        for name in ["localhost", "127.0.0.1", "10.0.0.1"] {
            let r = PublicOnlyResolver::default()
                .resolve(name.parse().unwrap())
                .await;
            assert!(r.is_err(), "{name}");
        }
        // A name the operator configured (split-horizon DNS) resolves as
        // it is; others stay filtered.
        let configured = PublicOnlyResolver {
            trusted: Arc::new(["localhost".to_owned()].into_iter().collect()),
        };
        assert!(
            configured
                .resolve("localhost".parse().unwrap())
                .await
                .is_ok()
        );
        assert!(
            configured
                .resolve("127.0.0.1".parse().unwrap())
                .await
                .is_err()
        );
        // End to end: a public-issuer provider's request to a name that
        // resolves to loopback fails before any connection.
        let client = UpstreamClient::new().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let url: Url = format!("http://localhost:{port}/jwks").parse().unwrap();
        let err = client
            .http_for(&provider())
            .get(url.clone())
            .send()
            .await
            .unwrap_err();
        assert!(err.is_connect() || err.is_request(), "{err}");
        // A provider configured on loopback uses the unfiltered client.
        let mut local = provider();
        local.issuer = Some(format!("http://localhost:{port}"));
        assert!(std::ptr::eq(
            client.http_for(&local),
            &raw const client.http_internal
        ));
        drop(listener);
    }

    #[test]
    fn token_response_debug_redacts_tokens() {
        let t: TokenResponse = serde_json::from_value(json!({
            "access_token": "at-secret", "token_type": "Bearer", "id_token": "eyJ.idt-secret.sig"
        }))
        .unwrap();
        let d = format!("{t:?}");
        assert!(!d.contains("at-secret") && !d.contains("idt-secret"), "{d}");
        assert!(d.contains("Bearer"), "{d}");
    }

    /// A chunked body (no Content-Length) over the limit is refused while
    /// reading, without waiting for its end; one at the limit is read whole.
    #[tokio::test]
    async fn chunked_bodies_over_the_limit_are_refused() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        async fn serve(total: usize) -> Url {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                            transfer-encoding: chunked\r\nconnection: close\r\n\r\n";
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b' '; 64 * 1024];
                let mut sent = 0;
                while sent < total {
                    let n = chunk.len().min(total - sent);
                    let mut frame = format!("{n:x}\r\n").into_bytes();
                    frame.extend_from_slice(&chunk[..n]);
                    frame.extend_from_slice(b"\r\n");
                    if sock.write_all(&frame).await.is_err() {
                        return;
                    }
                    sent += n;
                }
                let _ = sock.write_all(b"0\r\n\r\n").await;
            });
            format!("http://{addr}/").parse().unwrap()
        }
        let client = UpstreamClient::new().unwrap();
        let mut local = provider();
        local.issuer = Some("http://127.0.0.1".to_owned());
        let get = |url: Url| {
            let req = client.http_for(&local).get(url);
            async move { read_body(req.send().await.unwrap()).await }
        };
        // An endless body: refused once past the limit (reading it whole
        // would only end with the request timeout, after buffering it all).
        let err = get(serve(usize::MAX).await).await.unwrap_err();
        assert!(err.to_string().contains("too large"), "{err}");
        let ok = get(serve(MAX_BODY).await).await.unwrap();
        assert_eq!(ok.len(), MAX_BODY);
    }

    /// A server answering every request after `delay` with `status` and
    /// `body`, counting the requests.
    async fn counting_server(
        status: u16,
        body: Value,
        delay: Duration,
    ) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let counter = hits.clone();
        let body = body.to_string();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = body.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    tokio::time::sleep(delay).await;
                    let res = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(res.as_bytes()).await;
                });
            }
        });
        (base, hits)
    }

    /// Concurrent requests for an uncached document make one fetch; a
    /// failed fetch is answered from memory for a while.
    #[tokio::test]
    async fn metadata_fetches_are_single_flight_and_failures_are_cached() {
        use std::sync::atomic::Ordering::SeqCst;
        let (base, hits) = counting_server(200, json!({}), Duration::from_millis(200)).await;
        let mut p = provider();
        p.issuer = Some(base.clone());
        p.discovery_mode = DiscoveryMode::Insecure;
        p.authorization_endpoint = Some(format!("{base}/a").parse().unwrap());
        p.token_endpoint = Some(format!("{base}/t").parse().unwrap());
        let client = UpstreamClient::new().unwrap();
        let (r1, r2, r3, r4, r5) = tokio::join!(
            client.metadata(&p),
            client.metadata(&p),
            client.metadata(&p),
            client.metadata(&p),
            client.metadata(&p),
        );
        assert!([r1, r2, r3, r4, r5].iter().all(Result::is_ok));
        assert_eq!(hits.load(SeqCst), 1, "one fetch for five requests");

        let (base, hits) = counting_server(500, json!({}), Duration::ZERO).await;
        let mut down = p.clone();
        down.issuer = Some(base.clone());
        let uri: Url = format!("{base}/jwks").parse().unwrap();
        for _ in 0..3 {
            assert!(client.metadata(&down).await.is_err());
            assert!(client.jwks(&down, &uri, false).await.is_err());
            assert!(client.jwks(&down, &uri, true).await.is_err());
        }
        assert_eq!(hits.load(SeqCst), 2, "one metadata and one key set fetch");
    }
}
