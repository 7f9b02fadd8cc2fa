//! Dynamic client registration rules: RFC 7591 §2 metadata, the MSC2966
//! rules Matrix adds (every URI of a client is tied to its `client_uri`), and
//! RFC 8252 for native apps. Pure functions; the handler maps the typed
//! [`RegistrationError`] to an RFC 7591 §3.2.2 body.
//!
//! # What is accepted (the built-in policy, MAS `client_registration`)
//!
//! - `client_uri` is required and `https` (switches below). Its host must be a
//!   domain name with at least two labels (a cheap stand-in for MAS's public
//!   suffix check: `https://com/` is refused; the full list is not consulted).
//! - `logo_uri`, `policy_uri`, `tos_uri`: `https`, on the `client_uri` host or
//!   a subdomain of it.
//! - Redirect URIs never carry a fragment (RFC 6749 §3.1.2) or user
//!   information, and must be in the normalised form the authorization
//!   endpoint compares byte for byte ([`crate::redirect_uri::matches`]).
//!   - **web** clients: `https` on the `client_uri` host or a subdomain.
//!   - **native** clients (RFC 8252 §7): either a loopback redirect
//!     `http://127.0.0.1[:port]/…` or `http://[::1][:port]/…` (§7.3), or a
//!     private-use scheme (§7.1) written `scheme:/path` (one slash, no
//!     authority) whose scheme is the reverse-DNS form of the `client_uri`
//!     host or of a subdomain of it (`https://element.io` allows
//!     `io.element:/cb` and `io.element.app:/cb`, never `com.evil:/cb`), or
//!     an `https` URI under the web rule (claimed URLs, §7.2).
//!     The `client_uri` host must be the scheme's domain or a *parent* of it,
//!     not the other way round: whoever controls `evil.github.io` does not
//!     control `github.io`, so it may not claim the `io.github` scheme.
//!     `localhost` is refused (§8.3 says NOT RECOMMENDED: a hosts file or
//!     resolver can send it elsewhere, and our redirect matching only gives
//!     the IP literals their any-port exception).
//! - `client_name` must not imitate a first party: it may not contain the
//!   homeserver name or "Vestibule" / "Matrix Authentication Service"
//!   (compared on letters and digits only, case-insensitive), may not be the
//!   name of a statically configured client, may not contain something shaped
//!   like a Matrix user ID (`@alice:example.org`), and may not contain control,
//!   bidirectional-override or zero-width characters. This is deliberately
//!   modest; the consent page is the real defence.
//! - Grants: `authorization_code` (default), `refresh_token`,
//!   `urn:ietf:params:oauth:grant-type:device_code`; `client_credentials` only
//!   for clients that authenticate. `implicit`, `password` and anything else
//!   are refused. `response_types` may only be `code`, and only with the
//!   authorization code grant.
//!
//! # Policy switches (`policy.data.client_registration.*`, default false)
//!
//! - `allow_missing_client_uri`: `client_uri` may be absent. With no
//!   `client_uri` there is no host to compare against, so the host checks are
//!   skipped (as in MAS); private-use schemes still need a `client_uri`.
//! - `allow_insecure_uris`: `http` (and loopback or single-label hosts) are
//!   accepted wherever `https` would be required.
//! - `allow_host_mismatch`: URIs need not be on the `client_uri` host. It does
//!   not relax the private-use scheme rule (as in MAS).

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use url::{Host, Url};

use crate::oauth2::{ApplicationType, ClientAuthMethod};

/// Longest string accepted in any metadata field, in bytes.
pub const MAX_STRING_LEN: usize = 2048;
/// Most redirect URIs one client may register.
pub const MAX_REDIRECT_URIS: usize = 20;

pub const GRANT_AUTHORIZATION_CODE: &str = "authorization_code";
pub const GRANT_REFRESH_TOKEN: &str = "refresh_token";
pub const GRANT_DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";
pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";

/// Names no dynamic client may use, compared on lowercase letters and digits.
const FIRST_PARTY_NAMES: &[&str] = &["vestibule", "matrixauthenticationservice"];

/// The operator's switches (MAS `policy.data.client_registration`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistrationPolicy {
    pub allow_host_mismatch: bool,
    pub allow_insecure_uris: bool,
    pub allow_missing_client_uri: bool,
}

impl RegistrationPolicy {
    /// Reads the switches from `policy.data`; anything but `true` is off.
    pub fn from_policy_data(data: &Value) -> Self {
        let flag = |name: &str| {
            data.get("client_registration")
                .and_then(|c| c.get(name))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        Self {
            allow_host_mismatch: flag("allow_host_mismatch"),
            allow_insecure_uris: flag("allow_insecure_uris"),
            allow_missing_client_uri: flag("allow_missing_client_uri"),
        }
    }
}

/// What the rules need to know about this deployment.
#[derive(Debug, Clone, Default)]
pub struct RegistrationContext {
    pub policy: RegistrationPolicy,
    /// The homeserver's server name (`matrix.homeserver`): no client name may
    /// contain it.
    pub homeserver: String,
    /// Names of first-party clients (statically configured clients, the
    /// branding service name): no client may be called exactly that.
    pub first_party_names: Vec<String>,
    /// `id_token_signed_response_alg` values we can sign with.
    pub id_token_algs: Vec<String>,
}

/// The metadata as sent (RFC 7591 §2), strings unparsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegistrationRequest {
    pub redirect_uris: Option<Vec<String>>,
    pub client_name: Option<String>,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    pub policy_uri: Option<String>,
    pub tos_uri: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
    pub token_endpoint_auth_method: Option<String>,
    pub application_type: Option<String>,
    pub jwks: Option<Value>,
    pub jwks_uri: Option<String>,
    pub id_token_signed_response_alg: Option<String>,
}

/// Metadata that passed every rule, normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedRegistration {
    pub client_name: Option<String>,
    pub client_uri: Option<Url>,
    pub logo_uri: Option<Url>,
    pub policy_uri: Option<Url>,
    pub tos_uri: Option<Url>,
    /// In the order sent, duplicates removed.
    pub redirect_uris: Vec<Url>,
    /// Sorted, duplicates removed.
    pub grant_types: Vec<String>,
    pub application_type: ApplicationType,
    pub token_endpoint_auth_method: ClientAuthMethod,
    pub jwks: Option<Value>,
    pub jwks_uri: Option<Url>,
    pub id_token_signed_response_alg: Option<String>,
}

/// Why a registration is refused; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    /// RFC 7591 §3.2.2 `invalid_redirect_uri`. `index` is `None` when the
    /// list itself is wrong (missing, empty, too long).
    #[error("{}: {reason}", redirect_field(*index))]
    InvalidRedirectUri {
        index: Option<usize>,
        reason: String,
    },
    /// RFC 7591 §3.2.2 `invalid_client_metadata`.
    #[error("{field}: {reason}")]
    InvalidClientMetadata { field: &'static str, reason: String },
}

fn redirect_field(index: Option<usize>) -> String {
    match index {
        Some(i) => format!("redirect_uris[{i}]"),
        None => "redirect_uris".to_owned(),
    }
}

impl RegistrationError {
    /// The field the error is about (`redirect_uris[1]`, `client_uri`…).
    pub fn field(&self) -> String {
        match self {
            Self::InvalidRedirectUri { index, .. } => redirect_field(*index),
            Self::InvalidClientMetadata { field, .. } => (*field).to_owned(),
        }
    }

    fn metadata(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidClientMetadata {
            field,
            reason: reason.into(),
        }
    }

    fn redirect(index: Option<usize>, reason: impl Into<String>) -> Self {
        Self::InvalidRedirectUri {
            index,
            reason: reason.into(),
        }
    }
}

type Result<T, E = RegistrationError> = std::result::Result<T, E>;

/// Applies every rule to a registration request.
pub fn validate(
    req: &RegistrationRequest,
    ctx: &RegistrationContext,
) -> Result<ValidatedRegistration> {
    let policy = ctx.policy;
    check_lengths(req)?;

    let application_type = match req.application_type.as_deref() {
        None => ApplicationType::Web,
        Some(s) => ApplicationType::parse(s).ok_or_else(|| {
            RegistrationError::metadata("application_type", "must be `web` or `native`")
        })?,
    };

    // RFC 7591 §2: the default is `client_secret_basic`; native apps cannot
    // keep a secret (RFC 8252 §8.5), so for them the default is `none`.
    let token_endpoint_auth_method = match req.token_endpoint_auth_method.as_deref() {
        None if application_type == ApplicationType::Native => ClientAuthMethod::None,
        None => ClientAuthMethod::ClientSecretBasic,
        Some(s) => ClientAuthMethod::parse(s).ok_or_else(|| {
            RegistrationError::metadata("token_endpoint_auth_method", "unsupported method")
        })?,
    };

    let grant_types = check_grant_types(req.grant_types.as_deref(), token_endpoint_auth_method)?;
    let uses_code = grant_types.iter().any(|g| g == GRANT_AUTHORIZATION_CODE);
    check_response_types(req.response_types.as_deref(), uses_code)?;

    let client_name = req
        .client_name
        .as_deref()
        .map(|n| check_client_name(n, ctx))
        .transpose()?;

    let client_uri = match req.client_uri.as_deref() {
        Some(s) => Some(check_client_uri(s, policy)?),
        None if policy.allow_missing_client_uri => None,
        None => return Err(RegistrationError::metadata("client_uri", "is required")),
    };
    let client_host = client_uri.as_ref().and_then(host_name);

    let about = |field: &'static str, value: Option<&str>| -> Result<Option<Url>> {
        value
            .map(|s| check_about_uri(field, s, client_host.as_deref(), policy))
            .transpose()
    };
    let logo_uri = about("logo_uri", req.logo_uri.as_deref())?;
    let policy_uri = about("policy_uri", req.policy_uri.as_deref())?;
    let tos_uri = about("tos_uri", req.tos_uri.as_deref())?;

    let redirect_uris = check_redirect_uris(
        req.redirect_uris.as_deref(),
        uses_code,
        application_type,
        client_host.as_deref(),
        policy,
    )?;

    let (jwks, jwks_uri) = check_keys(req, token_endpoint_auth_method, policy)?;

    let id_token_signed_response_alg = match req.id_token_signed_response_alg.as_deref() {
        None => None,
        Some(alg) if ctx.id_token_algs.iter().any(|a| a == alg) => Some(alg.to_owned()),
        Some(_) => {
            return Err(RegistrationError::metadata(
                "id_token_signed_response_alg",
                format!(
                    "must be one of the algorithms we sign with: {}",
                    ctx.id_token_algs.join(", ")
                ),
            ));
        }
    };

    Ok(ValidatedRegistration {
        client_name,
        client_uri,
        logo_uri,
        policy_uri,
        tos_uri,
        redirect_uris,
        grant_types,
        application_type,
        token_endpoint_auth_method,
        jwks,
        jwks_uri,
        id_token_signed_response_alg,
    })
}

impl ValidatedRegistration {
    /// Does the client authenticate with a secret we generate?
    pub fn needs_secret(&self) -> bool {
        matches!(
            self.token_endpoint_auth_method,
            ClientAuthMethod::ClientSecretBasic
                | ClientAuthMethod::ClientSecretPost
                | ClientAuthMethod::ClientSecretJwt
        )
    }

    /// A public client (`none`): identical registrations share one client.
    pub fn is_public(&self) -> bool {
        self.token_endpoint_auth_method == ClientAuthMethod::None
    }

    /// SHA-256 (hex) of a canonical JSON form of the normalised metadata:
    /// keys sorted at every level, redirect URIs sorted, absent fields
    /// omitted. Two requests that mean the same thing get the same digest.
    pub fn metadata_digest(&self) -> String {
        let mut redirect_uris: Vec<&str> = self.redirect_uris.iter().map(Url::as_str).collect();
        redirect_uris.sort_unstable();
        let mut fields: Vec<(&str, Value)> = vec![
            ("application_type", self.application_type.as_str().into()),
            ("grant_types", self.grant_types.clone().into()),
            ("redirect_uris", redirect_uris.into()),
            (
                "token_endpoint_auth_method",
                self.token_endpoint_auth_method.as_str().into(),
            ),
        ];
        let optional = [
            ("client_name", self.client_name.clone()),
            (
                "client_uri",
                self.client_uri.as_ref().map(ToString::to_string),
            ),
            ("logo_uri", self.logo_uri.as_ref().map(ToString::to_string)),
            (
                "policy_uri",
                self.policy_uri.as_ref().map(ToString::to_string),
            ),
            ("tos_uri", self.tos_uri.as_ref().map(ToString::to_string)),
            ("jwks_uri", self.jwks_uri.as_ref().map(ToString::to_string)),
            (
                "id_token_signed_response_alg",
                self.id_token_signed_response_alg.clone(),
            ),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                fields.push((k, v.into()));
            }
        }
        if let Some(jwks) = &self.jwks {
            fields.push(("jwks", jwks.clone()));
        }
        let object: serde_json::Map<String, Value> =
            fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let mut canonical = String::from("vestibule-client-registration-v1\n");
        write_canonical(&Value::Object(object), &mut canonical);
        hex::encode(Sha256::digest(canonical.as_bytes()))
    }
}

/// JSON with object keys sorted at every level, no whitespace.
fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn check_lengths(req: &RegistrationRequest) -> Result<()> {
    let too_long = |field: &'static str| {
        RegistrationError::metadata(field, format!("longer than {MAX_STRING_LEN} bytes"))
    };
    let singles = [
        ("client_name", &req.client_name),
        ("client_uri", &req.client_uri),
        ("logo_uri", &req.logo_uri),
        ("policy_uri", &req.policy_uri),
        ("tos_uri", &req.tos_uri),
        (
            "token_endpoint_auth_method",
            &req.token_endpoint_auth_method,
        ),
        ("application_type", &req.application_type),
        ("jwks_uri", &req.jwks_uri),
        (
            "id_token_signed_response_alg",
            &req.id_token_signed_response_alg,
        ),
    ];
    for (field, value) in singles {
        if value.as_ref().is_some_and(|v| v.len() > MAX_STRING_LEN) {
            return Err(too_long(field));
        }
    }
    for (field, list) in [
        ("grant_types", &req.grant_types),
        ("response_types", &req.response_types),
    ] {
        let list = list.as_deref().unwrap_or_default();
        if list.len() > 8 {
            return Err(RegistrationError::metadata(field, "too many values"));
        }
        if list.iter().any(|v| v.len() > MAX_STRING_LEN) {
            return Err(too_long(field));
        }
    }
    if let Some(uris) = &req.redirect_uris {
        if uris.len() > MAX_REDIRECT_URIS {
            return Err(RegistrationError::redirect(
                None,
                format!("at most {MAX_REDIRECT_URIS} redirect URIs"),
            ));
        }
        if let Some(i) = uris.iter().position(|u| u.len() > MAX_STRING_LEN) {
            return Err(RegistrationError::redirect(
                Some(i),
                format!("longer than {MAX_STRING_LEN} bytes"),
            ));
        }
    }
    Ok(())
}

fn check_grant_types(
    requested: Option<&[String]>,
    auth_method: ClientAuthMethod,
) -> Result<Vec<String>> {
    let field = "grant_types";
    let requested = match requested {
        None => return Ok(vec![GRANT_AUTHORIZATION_CODE.to_owned()]),
        Some([]) => return Err(RegistrationError::metadata(field, "must not be empty")),
        Some(list) => list,
    };
    let mut out = Vec::new();
    for g in requested {
        match g.as_str() {
            GRANT_AUTHORIZATION_CODE | GRANT_REFRESH_TOKEN | GRANT_DEVICE_CODE => {}
            GRANT_CLIENT_CREDENTIALS if auth_method != ClientAuthMethod::None => {}
            GRANT_CLIENT_CREDENTIALS => {
                return Err(RegistrationError::metadata(
                    field,
                    "`client_credentials` requires client authentication, not `none`",
                ));
            }
            "implicit" | "password" => {
                return Err(RegistrationError::metadata(
                    field,
                    format!("`{g}` is not allowed (RFC 9700 §2.1.2, §2.4)"),
                ));
            }
            _ => {
                return Err(RegistrationError::metadata(field, "unsupported grant type"));
            }
        }
        out.push(g.clone());
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn check_response_types(requested: Option<&[String]>, uses_code: bool) -> Result<()> {
    let field = "response_types";
    let Some(requested) = requested else {
        return Ok(());
    };
    if requested.iter().any(|r| r != "code") {
        return Err(RegistrationError::metadata(
            field,
            "only `code` is supported",
        ));
    }
    match (requested.is_empty(), uses_code) {
        (false, false) => Err(RegistrationError::metadata(
            field,
            "`code` requires the `authorization_code` grant type",
        )),
        (true, true) => Err(RegistrationError::metadata(
            field,
            "the `authorization_code` grant type requires `code`",
        )),
        _ => Ok(()),
    }
}

/// Letters and digits, lowercased: "Matrix-Authentication Service" and
/// "matrixauthenticationservice" compare equal.
fn fold(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Control, bidirectional-override and zero-width characters make a name
/// display as something else.
fn is_deceptive_char(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}' | '\u{061C}' | '\u{00AD}')
}

fn looks_like_matrix_user_id(name: &str) -> bool {
    name.split_whitespace().any(|word| {
        word.find('@')
            .is_some_and(|at| word[at + 1..].find(':').is_some_and(|colon| colon > 0))
    })
}

fn check_client_name(name: &str, ctx: &RegistrationContext) -> Result<String> {
    let field = "client_name";
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(RegistrationError::metadata(field, "must not be empty"));
    }
    if trimmed.chars().any(is_deceptive_char) {
        return Err(RegistrationError::metadata(
            field,
            "contains control or invisible characters",
        ));
    }
    let folded = fold(trimmed);
    if FIRST_PARTY_NAMES.iter().any(|n| folded.contains(n)) {
        return Err(RegistrationError::metadata(
            field,
            "must not imitate this authentication service",
        ));
    }
    let homeserver = ctx.homeserver.trim().to_lowercase();
    if !homeserver.is_empty() && trimmed.to_lowercase().contains(&homeserver) {
        return Err(RegistrationError::metadata(
            field,
            "must not contain the homeserver name",
        ));
    }
    if ctx
        .first_party_names
        .iter()
        .map(|n| fold(n))
        .any(|n| !n.is_empty() && n == folded)
    {
        return Err(RegistrationError::metadata(
            field,
            "is the name of a first-party client",
        ));
    }
    if looks_like_matrix_user_id(trimmed) {
        return Err(RegistrationError::metadata(
            field,
            "must not look like a Matrix user ID",
        ));
    }
    Ok(trimmed.to_owned())
}

/// The host of an `http(s)` URL as a lowercase domain or IP text, without a
/// trailing dot.
fn host_name(url: &Url) -> Option<String> {
    url.host().map(|h| match h {
        Host::Domain(d) => d.trim_end_matches('.').to_owned(),
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => format!("[{ip}]"),
    })
}

fn is_loopback_literal(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip == Ipv4Addr::LOCALHOST,
        Some(Host::Ipv6(ip)) => ip == Ipv6Addr::LOCALHOST,
        _ => false,
    }
}

/// Hosts that are never a public web origin of a client.
fn is_local_host(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback() || ip.is_unspecified(),
        Some(Host::Ipv6(ip)) => ip.is_loopback() || ip.is_unspecified(),
        Some(Host::Domain(d)) => {
            let d = d.trim_end_matches('.');
            d == "localhost" || d.ends_with(".localhost")
        }
        None => false,
    }
}

/// `child` is `parent` or a subdomain of it (`app.element.io` under
/// `element.io`). IP literals only match themselves.
fn is_same_or_subdomain(parent: &str, child: &str) -> bool {
    child == parent
        || (!parent.starts_with('[')
            && parent.parse::<Ipv4Addr>().is_err()
            && child
                .strip_suffix(parent)
                .is_some_and(|rest| rest.ends_with('.')))
}

fn parse_url(field: &'static str, s: &str) -> Result<Url> {
    let url =
        Url::parse(s).map_err(|e| RegistrationError::metadata(field, format!("not a URL: {e}")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(RegistrationError::metadata(
            field,
            "must not contain user information",
        ));
    }
    Ok(url)
}

/// `https` (or `http` when insecure URIs are allowed), with a host that is not
/// local unless insecure URIs are allowed.
fn check_web_url(url: &Url, policy: RegistrationPolicy) -> std::result::Result<(), String> {
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_insecure_uris => {}
        "http" => return Err("must use https".to_owned()),
        _ => return Err("must be an https URL".to_owned()),
    }
    if url.host().is_none() {
        return Err("must have a host".to_owned());
    }
    if !policy.allow_insecure_uris && is_local_host(url) {
        return Err("must not be on a local host".to_owned());
    }
    Ok(())
}

fn check_client_uri(s: &str, policy: RegistrationPolicy) -> Result<Url> {
    let field = "client_uri";
    let url = parse_url(field, s)?;
    check_web_url(&url, policy).map_err(|r| RegistrationError::metadata(field, r))?;
    if !policy.allow_insecure_uris
        && matches!(url.host(), Some(Host::Domain(d)) if !d.trim_end_matches('.').contains('.'))
    {
        return Err(RegistrationError::metadata(
            field,
            "the host must be a registrable domain name",
        ));
    }
    Ok(url)
}

fn host_mismatch(client_host: Option<&str>, url: &Url, policy: RegistrationPolicy) -> bool {
    if policy.allow_host_mismatch {
        return false;
    }
    match (client_host, host_name(url)) {
        // No client_uri (only with `allow_missing_client_uri`): nothing to
        // compare against.
        (None, _) => false,
        (Some(parent), Some(child)) => !is_same_or_subdomain(parent, &child),
        (Some(_), None) => true,
    }
}

fn check_about_uri(
    field: &'static str,
    s: &str,
    client_host: Option<&str>,
    policy: RegistrationPolicy,
) -> Result<Url> {
    let url = parse_url(field, s)?;
    check_web_url(&url, policy).map_err(|r| RegistrationError::metadata(field, r))?;
    if host_mismatch(client_host, &url, policy) {
        return Err(RegistrationError::metadata(
            field,
            "must be on the client_uri host or a subdomain of it",
        ));
    }
    Ok(url)
}

fn check_redirect_uris(
    uris: Option<&[String]>,
    uses_code: bool,
    application_type: ApplicationType,
    client_host: Option<&str>,
    policy: RegistrationPolicy,
) -> Result<Vec<Url>> {
    let uris = uris.unwrap_or_default();
    if uses_code && uris.is_empty() {
        return Err(RegistrationError::redirect(
            None,
            "at least one is required with the authorization_code grant",
        ));
    }
    let mut out: Vec<Url> = Vec::with_capacity(uris.len());
    for (i, raw) in uris.iter().enumerate() {
        let url = check_redirect_uri(raw, application_type, client_host, policy)
            .map_err(|reason| RegistrationError::redirect(Some(i), reason))?;
        if !out.contains(&url) {
            out.push(url);
        }
    }
    Ok(out)
}

/// One redirect URI; the error is the reason.
pub fn check_redirect_uri(
    raw: &str,
    application_type: ApplicationType,
    client_host: Option<&str>,
    policy: RegistrationPolicy,
) -> std::result::Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
    if url.fragment().is_some() {
        return Err("must not contain a fragment (RFC 6749 §3.1.2)".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain user information".to_owned());
    }
    if url.as_str() != raw {
        // The authorization endpoint compares byte for byte; a URI that is
        // only equal after normalisation would never match.
        return Err(format!("must be written in normalised form `{url}`"));
    }
    let on_client_host = |url: &Url| -> std::result::Result<(), String> {
        check_web_url(url, policy)?;
        if host_mismatch(client_host, url, policy) {
            return Err("must be on the client_uri host or a subdomain of it".to_owned());
        }
        Ok(())
    };
    let native = application_type == ApplicationType::Native;
    let is_localhost =
        matches!(url.host(), Some(Host::Domain(d)) if d.trim_end_matches('.') == "localhost");
    match url.scheme() {
        "http" if native && is_loopback_literal(&url) => {}
        "http" if native && is_localhost && !policy.allow_insecure_uris => {
            return Err(
                "use the loopback IP literal http://127.0.0.1 or http://[::1], not localhost (RFC 8252 §8.3)"
                    .to_owned(),
            );
        }
        scheme if native && scheme != "http" && scheme != "https" => {
            check_private_use_scheme(&url, scheme, client_host)?;
        }
        // Web clients, and native clients using claimed https URLs.
        _ => on_client_host(&url)?,
    }
    Ok(url)
}

/// RFC 8252 §7.1: `com.example.app:/path`, the scheme being the reverse-DNS
/// form of the `client_uri` host or of one of its subdomains.
fn check_private_use_scheme(
    url: &Url,
    scheme: &str,
    client_host: Option<&str>,
) -> std::result::Result<(), String> {
    let rest = &url.as_str()[scheme.len() + 1..];
    if !rest.starts_with('/') || rest.starts_with("//") || url.host().is_some() {
        return Err(format!(
            "a private-use URI scheme is written `{scheme}:/path` (one slash, no host; RFC 8252 §7.1)"
        ));
    }
    let labels: Vec<&str> = scheme.split('.').collect();
    if labels.len() < 2 || labels.iter().any(|l| l.is_empty()) {
        return Err(
            "a private-use URI scheme must be a reverse domain name such as `com.example.app` (RFC 8252 §7.1)"
                .to_owned(),
        );
    }
    let Some(host) = client_host else {
        return Err("a private-use URI scheme needs a client_uri to check it against".to_owned());
    };
    if host.starts_with('[') || host.parse::<Ipv4Addr>().is_ok() {
        return Err("a private-use URI scheme needs a client_uri with a domain name".to_owned());
    }
    let reversed: Vec<&str> = host.split('.').rev().collect();
    if labels.len() < reversed.len() || labels[..reversed.len()] != reversed[..] {
        return Err(format!(
            "the scheme must be the reverse domain name of the client_uri host `{host}` or of a subdomain of it"
        ));
    }
    Ok(())
}

fn check_keys(
    req: &RegistrationRequest,
    auth_method: ClientAuthMethod,
    policy: RegistrationPolicy,
) -> Result<(Option<Value>, Option<Url>)> {
    if req.jwks.is_some() && req.jwks_uri.is_some() {
        return Err(RegistrationError::metadata(
            "jwks",
            "`jwks` and `jwks_uri` must not both be present (RFC 7591 §2)",
        ));
    }
    let jwks = match &req.jwks {
        Some(v) if v.get("keys").is_some_and(Value::is_array) => Some(v.clone()),
        Some(_) => {
            return Err(RegistrationError::metadata(
                "jwks",
                "must be a JWK Set: an object with a `keys` array",
            ));
        }
        None => None,
    };
    let jwks_uri = req
        .jwks_uri
        .as_deref()
        .map(|s| {
            let url = parse_url("jwks_uri", s)?;
            check_web_url(&url, policy).map_err(|r| RegistrationError::metadata("jwks_uri", r))?;
            Ok(url)
        })
        .transpose()?;
    if auth_method == ClientAuthMethod::PrivateKeyJwt && jwks.is_none() && jwks_uri.is_none() {
        return Err(RegistrationError::metadata(
            "jwks",
            "`private_key_jwt` needs `jwks` or `jwks_uri`",
        ));
    }
    Ok((jwks, jwks_uri))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RegistrationContext {
        RegistrationContext {
            policy: RegistrationPolicy::default(),
            homeserver: "example.org".to_owned(),
            first_party_names: vec!["Element Admin".to_owned()],
            id_token_algs: vec!["RS256".to_owned(), "ES256".to_owned()],
        }
    }

    fn with(policy: RegistrationPolicy) -> RegistrationContext {
        RegistrationContext { policy, ..ctx() }
    }

    #[allow(clippy::unnecessary_wraps)]
    fn strings(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| (*s).to_owned()).collect())
    }

    /// What matrix-rust-sdk (Element X) registers.
    fn native() -> RegistrationRequest {
        RegistrationRequest {
            client_name: Some("Element X".to_owned()),
            client_uri: Some("https://element.io".to_owned()),
            application_type: Some("native".to_owned()),
            redirect_uris: strings(&["io.element.app:/callback", "http://127.0.0.1/callback"]),
            grant_types: strings(&[
                GRANT_AUTHORIZATION_CODE,
                GRANT_REFRESH_TOKEN,
                GRANT_DEVICE_CODE,
            ]),
            token_endpoint_auth_method: Some("none".to_owned()),
            ..Default::default()
        }
    }

    /// What matrix-js-sdk (Element Web) registers.
    fn web() -> RegistrationRequest {
        RegistrationRequest {
            client_name: Some("Element".to_owned()),
            client_uri: Some("https://app.element.io/".to_owned()),
            logo_uri: Some("https://app.element.io/logo.png".to_owned()),
            application_type: Some("web".to_owned()),
            redirect_uris: strings(&["https://app.element.io/"]),
            grant_types: strings(&[GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN]),
            response_types: strings(&["code"]),
            token_endpoint_auth_method: Some("none".to_owned()),
            ..Default::default()
        }
    }

    fn field_of(r: Result<ValidatedRegistration>) -> String {
        r.expect_err("must be refused").field()
    }

    #[test]
    fn the_two_matrix_sdks_are_accepted() {
        let n = validate(&native(), &ctx()).unwrap();
        assert_eq!(n.application_type, ApplicationType::Native);
        assert_eq!(n.token_endpoint_auth_method, ClientAuthMethod::None);
        assert_eq!(n.redirect_uris.len(), 2);
        assert_eq!(n.grant_types.len(), 3);
        assert!(n.is_public() && !n.needs_secret());
        let w = validate(&web(), &ctx()).unwrap();
        assert_eq!(w.application_type, ApplicationType::Web);
        assert_eq!(w.redirect_uris[0].as_str(), "https://app.element.io/");
    }

    #[test]
    fn defaults_follow_rfc_7591() {
        let mut r = web();
        r.application_type = None;
        r.token_endpoint_auth_method = None;
        r.grant_types = None;
        r.response_types = None;
        let v = validate(&r, &ctx()).unwrap();
        assert_eq!(v.application_type, ApplicationType::Web);
        assert_eq!(v.grant_types, vec![GRANT_AUTHORIZATION_CODE]);
        assert_eq!(
            v.token_endpoint_auth_method,
            ClientAuthMethod::ClientSecretBasic
        );
        assert!(v.needs_secret());
        let mut n = native();
        n.token_endpoint_auth_method = None;
        assert_eq!(
            validate(&n, &ctx()).unwrap().token_endpoint_auth_method,
            ClientAuthMethod::None
        );
    }

    #[test]
    fn private_use_schemes_must_be_the_reverse_of_the_client_uri_host() {
        let ok = |uri: &str, client_uri: &str| {
            let mut r = native();
            r.client_uri = Some(client_uri.to_owned());
            r.redirect_uris = strings(&[uri]);
            validate(&r, &ctx())
        };
        assert!(ok("io.element.app:/callback", "https://element.io").is_ok());
        assert!(ok("io.element:/callback", "https://element.io").is_ok());
        assert!(ok("io.element:/", "https://element.io/").is_ok());
        assert!(ok("io.element.app.x:/cb", "https://app.element.io").is_ok());
        for (uri, client_uri) in [
            ("com.evil:/cb", "https://element.io"),
            ("io.elementx:/cb", "https://element.io"),
            ("io.element:/cb", "https://app.element.io"),
            ("io.github:/cb", "https://evil.github.io"),
            ("io:/cb", "https://element.io"),
            ("element:/cb", "https://element.io"),
            ("io.element://callback", "https://element.io"),
            ("io.element:callback", "https://element.io"),
            ("io.element:/cb#frag", "https://element.io"),
        ] {
            let err = ok(uri, client_uri).expect_err(uri);
            assert_eq!(err.field(), "redirect_uris[0]", "{uri}");
            assert!(
                matches!(err, RegistrationError::InvalidRedirectUri { .. }),
                "{uri}"
            );
        }
    }

    #[test]
    fn native_loopback_is_the_ip_literals_over_http() {
        let check = |uri: &str| {
            let mut r = native();
            r.redirect_uris = strings(&[uri]);
            validate(&r, &ctx())
        };
        for good in [
            "http://127.0.0.1/callback",
            "http://127.0.0.1:8123/callback",
            "http://[::1]/callback",
            "http://[::1]:4000/",
            "https://element.io/native-callback",
            "https://app.element.io/cb",
        ] {
            assert!(check(good).is_ok(), "{good}");
        }
        for bad in [
            "http://localhost/callback",
            "http://localhost:8080/callback",
            "http://element.io/callback",
            "http://192.168.1.10/callback",
            "https://evil.example/callback",
            "http://127.0.0.1/callback#x",
            "http://user@127.0.0.1/callback",
            "HTTP://127.0.0.1/callback",
        ] {
            assert_eq!(field_of(check(bad)), "redirect_uris[0]", "{bad}");
        }
    }

    #[test]
    fn web_redirects_are_https_on_the_client_uri_host() {
        let check = |uri: &str| {
            let mut r = web();
            r.redirect_uris = strings(&[uri]);
            validate(&r, &ctx())
        };
        assert!(check("https://app.element.io/callback").is_ok());
        assert!(check("https://staging.app.element.io/callback?x=1").is_ok());
        for bad in [
            "http://app.element.io/callback",
            "https://element.io/callback",
            "https://app.element.io.evil.com/callback",
            "https://evilapp.element.io.com/",
            "https://app.element.io/callback#fragment",
            "http://127.0.0.1/callback",
            "io.element.app:/callback",
            "javascript:alert(1)",
            "not a url",
        ] {
            assert_eq!(field_of(check(bad)), "redirect_uris[0]", "{bad}");
        }
        let mut r = web();
        r.redirect_uris = None;
        assert_eq!(field_of(validate(&r, &ctx())), "redirect_uris");
        r.redirect_uris = Some(vec!["https://app.element.io/".to_owned(); 21]);
        assert_eq!(field_of(validate(&r, &ctx())), "redirect_uris");
    }

    #[test]
    fn client_uri_is_required_and_https() {
        let mut r = web();
        r.client_uri = None;
        assert_eq!(field_of(validate(&r, &ctx())), "client_uri");
        for bad in [
            "http://app.element.io/",
            "ftp://app.element.io/",
            "https://user:pw@app.element.io/",
            "https://com/",
            "https://localhost/",
            "nonsense",
        ] {
            r.client_uri = Some(bad.to_owned());
            assert_eq!(field_of(validate(&r, &ctx())), "client_uri", "{bad}");
        }
    }

    #[test]
    fn about_uris_are_https_on_the_client_uri_host() {
        for field in ["logo_uri", "policy_uri", "tos_uri"] {
            let set = |v: &str| {
                let mut r = web();
                let v = Some(v.to_owned());
                match field {
                    "logo_uri" => r.logo_uri = v,
                    "policy_uri" => r.policy_uri = v,
                    _ => r.tos_uri = v,
                }
                validate(&r, &ctx())
            };
            assert!(set("https://app.element.io/x").is_ok(), "{field}");
            assert!(set("https://cdn.app.element.io/x").is_ok(), "{field}");
            assert_eq!(field_of(set("https://element.io/x")), field);
            assert_eq!(field_of(set("http://app.element.io/x")), field);
            assert_eq!(field_of(set("https://evil.com/x")), field);
        }
    }

    #[test]
    fn grants_and_response_types() {
        let check = |grants: &[&str], auth: &str| {
            let mut r = web();
            r.grant_types = strings(grants);
            r.response_types = None;
            r.token_endpoint_auth_method = Some(auth.to_owned());
            validate(&r, &ctx())
        };
        for bad in ["implicit", "password", "client_credentials", "urn:x:y", ""] {
            assert_eq!(field_of(check(&[bad], "none")), "grant_types", "{bad}");
        }
        assert_eq!(field_of(check(&[], "none")), "grant_types");
        assert!(check(&["client_credentials"], "client_secret_basic").is_ok());
        assert_eq!(
            field_of(check(&["password"], "client_secret_basic")),
            "grant_types"
        );
        let dedup = check(
            &["refresh_token", "authorization_code", "refresh_token"],
            "none",
        );
        assert_eq!(
            dedup.unwrap().grant_types,
            vec![GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN]
        );
        // Device-code only: no redirect URI needed.
        let mut r = native();
        r.grant_types = strings(&[GRANT_DEVICE_CODE]);
        r.redirect_uris = None;
        assert!(validate(&r, &ctx()).is_ok());

        for (types, ok) in [
            (&["token"][..], false),
            (&["code", "id_token"][..], false),
            (&["code id_token"][..], false),
            (&[][..], false),
            (&["code"][..], true),
        ] {
            let mut r = web();
            r.response_types = strings(types);
            assert_eq!(validate(&r, &ctx()).is_ok(), ok, "{types:?}");
            if !ok {
                assert_eq!(field_of(validate(&r, &ctx())), "response_types");
            }
        }
        let mut r = native();
        r.grant_types = strings(&[GRANT_DEVICE_CODE]);
        r.response_types = strings(&["code"]);
        assert_eq!(field_of(validate(&r, &ctx())), "response_types");
    }

    #[test]
    fn names_that_imitate_first_parties_or_users_are_refused() {
        let check = |name: &str| {
            let mut r = web();
            r.client_name = Some(name.to_owned());
            validate(&r, &ctx())
        };
        for bad in [
            "Vestibule",
            "vestibule login",
            "Matrix Authentication Service",
            "matrix-authentication-service",
            "Login to example.org",
            "EXAMPLE.ORG",
            "element admin",
            "@alice:example.net",
            "Message from @admin:matrix.org",
            "Element\u{202E}",
            "a\u{200B}b",
            "line\nbreak",
            "   ",
        ] {
            assert_eq!(field_of(check(bad)), "client_name", "{bad:?}");
        }
        for good in [
            "Element",
            "Fractal",
            "Element Admin Tools",
            "alice@work",
            "Cinny: web",
        ] {
            assert!(check(good).is_ok(), "{good}");
        }
        assert_eq!(
            check("  Element  ").unwrap().client_name.as_deref(),
            Some("Element")
        );
    }

    #[test]
    fn lengths_are_bounded() {
        let mut r = web();
        r.client_name = Some("a".repeat(MAX_STRING_LEN + 1));
        assert_eq!(field_of(validate(&r, &ctx())), "client_name");
        let mut r = web();
        r.redirect_uris = Some(vec![format!(
            "https://app.element.io/{}",
            "a".repeat(MAX_STRING_LEN)
        )]);
        assert_eq!(field_of(validate(&r, &ctx())), "redirect_uris[0]");
    }

    #[test]
    fn keys_and_algorithms() {
        let mut r = web();
        r.token_endpoint_auth_method = Some("private_key_jwt".to_owned());
        assert_eq!(field_of(validate(&r, &ctx())), "jwks");
        r.jwks = Some(serde_json::json!({"keys": []}));
        assert!(validate(&r, &ctx()).is_ok());
        r.jwks_uri = Some("https://app.element.io/jwks".to_owned());
        assert_eq!(field_of(validate(&r, &ctx())), "jwks");
        r.jwks = Some(serde_json::json!([1]));
        r.jwks_uri = None;
        assert_eq!(field_of(validate(&r, &ctx())), "jwks");
        let mut r = web();
        r.id_token_signed_response_alg = Some("none".to_owned());
        assert_eq!(
            field_of(validate(&r, &ctx())),
            "id_token_signed_response_alg"
        );
        r.id_token_signed_response_alg = Some("ES256".to_owned());
        assert!(validate(&r, &ctx()).is_ok());
        let mut r = web();
        r.application_type = Some("desktop".to_owned());
        assert_eq!(field_of(validate(&r, &ctx())), "application_type");
        r.application_type = None;
        r.token_endpoint_auth_method = Some("tls_client_auth".to_owned());
        assert_eq!(field_of(validate(&r, &ctx())), "token_endpoint_auth_method");
    }

    #[test]
    fn each_switch_relaxes_exactly_its_rule() {
        let missing = RegistrationPolicy {
            allow_missing_client_uri: true,
            ..Default::default()
        };
        let insecure = RegistrationPolicy {
            allow_insecure_uris: true,
            ..Default::default()
        };
        let mismatch = RegistrationPolicy {
            allow_host_mismatch: true,
            ..Default::default()
        };

        // Missing client_uri.
        let mut r = web();
        r.client_uri = None;
        r.logo_uri = None;
        assert!(validate(&r, &with(missing)).is_ok());
        assert_eq!(field_of(validate(&r, &with(insecure))), "client_uri");
        assert_eq!(field_of(validate(&r, &with(mismatch))), "client_uri");
        // …but a present client_uri is still checked, and a private-use
        // scheme still needs one.
        let mut r = web();
        r.client_uri = Some("http://app.element.io/".to_owned());
        assert_eq!(field_of(validate(&r, &with(missing))), "client_uri");
        let mut r = native();
        r.client_uri = None;
        assert_eq!(field_of(validate(&r, &with(missing))), "redirect_uris[0]");

        // http.
        let mut r = web();
        r.client_uri = Some("http://app.element.io/".to_owned());
        r.redirect_uris = strings(&["http://app.element.io/cb"]);
        r.logo_uri = None;
        assert!(validate(&r, &with(insecure)).is_ok());
        assert_eq!(field_of(validate(&r, &with(mismatch))), "client_uri");
        r.redirect_uris = strings(&["http://other.example/cb"]);
        assert_eq!(
            field_of(validate(&r, &with(insecure))),
            "redirect_uris[0]",
            "insecure does not allow another host"
        );

        // Other hosts.
        let mut r = web();
        r.redirect_uris = strings(&["https://other.example/cb"]);
        r.logo_uri = Some("https://cdn.other.example/logo.png".to_owned());
        assert!(validate(&r, &with(mismatch)).is_ok());
        assert_eq!(field_of(validate(&r, &with(insecure))), "logo_uri");
        r.redirect_uris = strings(&["http://other.example/cb"]);
        assert_eq!(
            field_of(validate(&r, &with(mismatch))),
            "redirect_uris[0]",
            "mismatch does not allow http"
        );
        let mut r = native();
        r.redirect_uris = strings(&["com.evil:/cb"]);
        assert_eq!(
            field_of(validate(&r, &with(mismatch))),
            "redirect_uris[0]",
            "mismatch does not relax private-use schemes"
        );
    }

    #[test]
    fn policy_switches_are_read_from_policy_data() {
        let p = RegistrationPolicy::from_policy_data(&serde_json::json!({
            "client_registration": {"allow_host_mismatch": true, "allow_insecure_uris": "yes"}
        }));
        assert_eq!(
            p,
            RegistrationPolicy {
                allow_host_mismatch: true,
                ..Default::default()
            }
        );
        assert_eq!(
            RegistrationPolicy::from_policy_data(&serde_json::json!({})),
            RegistrationPolicy::default()
        );
    }

    #[test]
    fn digest_is_stable_under_reordering_and_sensitive_to_content() {
        let a = validate(&native(), &ctx()).unwrap();
        let mut reordered = native();
        reordered.redirect_uris =
            strings(&["http://127.0.0.1/callback", "io.element.app:/callback"]);
        reordered.grant_types = strings(&[
            GRANT_DEVICE_CODE,
            GRANT_REFRESH_TOKEN,
            GRANT_AUTHORIZATION_CODE,
        ]);
        let b = validate(&reordered, &ctx()).unwrap();
        assert_eq!(a.metadata_digest(), b.metadata_digest());
        assert_eq!(a.metadata_digest().len(), 64);
        let mut other = native();
        other.client_name = Some("Element X Nightly".to_owned());
        let c = validate(&other, &ctx()).unwrap();
        assert_ne!(a.metadata_digest(), c.metadata_digest());
        let mut jwks_a = a.clone();
        jwks_a.jwks = Some(serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256"}]}));
        let mut jwks_b = a.clone();
        jwks_b.jwks = Some(serde_json::json!({"keys": [{"crv": "P-256", "kty": "EC"}]}));
        assert_eq!(jwks_a.metadata_digest(), jwks_b.metadata_digest());
        assert_ne!(jwks_a.metadata_digest(), a.metadata_digest());
    }
}
