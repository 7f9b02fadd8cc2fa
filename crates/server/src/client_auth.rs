//! Client authentication at the token, revocation and introspection
//! endpoints (RFC 6749 §2.3, OpenID Connect Core §9, RFC 7523 §2.2/§3).
//!
//! The method a client uses must be the one it registered
//! (`token_endpoint_auth_method`). Secrets are stored encrypted and compared
//! in constant time; an unknown `client_id` goes through a dummy decryption
//! and comparison so that response time does not tell which clients exist.

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use vestibule_domain::{
    Clock,
    oauth2::{Client, ClientAuthMethod},
};
use vestibule_keys::{Encrypter, KeyError};
use vestibule_storage::{BoxRepository, StorageError};

use crate::error::{ErrorCode, OAuthError};

/// RFC 7523 §2.2 `client_assertion_type`.
pub const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Associated data under which client secrets are encrypted.
pub const CLIENT_SECRET_AAD: &[u8] = b"client_secret";

/// How far in the future a client assertion's `exp` may be.
pub const MAX_ASSERTION_LIFETIME: Duration = Duration::minutes(5);

/// A well-formed ciphertext (24-byte nonce, 32-byte body, 16-byte tag) that
/// never decrypts: the dummy work done for unknown clients.
const DUMMY_CIPHERTEXT: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// The client authentication parameters of a form body (RFC 6749 §2.3.1,
/// RFC 7521 §4.2). Flattened into each endpoint's request.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct ClientAuthParams {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_assertion: Option<String>,
    pub client_assertion_type: Option<String>,
}

/// What the client presented.
#[derive(Clone)]
pub enum Credentials {
    /// `none`: a public client names itself.
    None { client_id: String },
    /// RFC 6749 §2.3.1 HTTP Basic.
    ClientSecretBasic { client_id: String, secret: String },
    /// RFC 6749 §2.3.1 in the body.
    ClientSecretPost { client_id: String, secret: String },
    /// RFC 7523 §2.2 (`client_secret_jwt` or `private_key_jwt`).
    ClientAssertion {
        client_id: Option<String>,
        assertion: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets or assertions.
        let (kind, id) = match self {
            Self::None { client_id } => ("none", Some(client_id)),
            Self::ClientSecretBasic { client_id, .. } => ("client_secret_basic", Some(client_id)),
            Self::ClientSecretPost { client_id, .. } => ("client_secret_post", Some(client_id)),
            Self::ClientAssertion { client_id, .. } => ("client_assertion", client_id.as_ref()),
        };
        f.debug_struct("Credentials")
            .field("kind", &kind)
            .field("client_id", &id)
            .finish_non_exhaustive()
    }
}

/// Why client authentication failed. Every variant but
/// [`ClientAuthError::SeveralMethods`] and [`ClientAuthError::Storage`] is
/// RFC 6749 §5.2 `invalid_client` (401 with `WWW-Authenticate`).
#[derive(Debug, thiserror::Error)]
pub enum ClientAuthError {
    /// RFC 6749 §2.3: "The client MUST NOT use more than one authentication
    /// method in each request" → `invalid_request`.
    #[error("more than one client authentication method was used")]
    SeveralMethods,
    /// RFC 6749 §5.2: no client authentication included.
    #[error("client authentication is required")]
    Missing,
    /// RFC 6749 §2.3.1 / RFC 7617 §2: the Basic credentials are not
    /// base64 of `urlencoded(id):urlencoded(secret)`.
    #[error("malformed HTTP Basic credentials")]
    BadBasicEncoding,
    /// RFC 7521 §4.2: only the JWT bearer assertion type is supported.
    #[error("unsupported client_assertion_type")]
    UnsupportedAssertionType,
    /// RFC 6749 §5.2: unknown client, or wrong secret (deliberately the
    /// same message).
    #[error("client authentication failed")]
    Failed,
    /// RFC 6749 §2.3 / RFC 7591 §2: the method is not the one registered.
    #[error("the client must authenticate with {registered}")]
    WrongMethod { registered: &'static str },
    /// RFC 7523 §3: the assertion is malformed, badly signed or has bad
    /// claims.
    #[error("invalid client assertion: {0}")]
    InvalidAssertion(&'static str),
    /// RFC 7523 §3 item 7: the `jti` was already used.
    #[error("the client assertion was already used")]
    AssertionReplayed,
    /// OIDC Core §9: `private_key_jwt` keys from `jwks_uri` are not fetched.
    #[error("jwks_uri is not supported yet: register the keys inline with `jwks`")]
    JwksUriUnsupported,
    /// The database failed (503 when unavailable, else 500).
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<ClientAuthError> for OAuthError {
    fn from(e: ClientAuthError) -> Self {
        match e {
            ClientAuthError::SeveralMethods => {
                OAuthError::new(ErrorCode::InvalidRequest, e.to_string())
            }
            ClientAuthError::Missing
            | ClientAuthError::BadBasicEncoding
            | ClientAuthError::UnsupportedAssertionType
            | ClientAuthError::Failed
            | ClientAuthError::WrongMethod { .. }
            | ClientAuthError::InvalidAssertion(_)
            | ClientAuthError::AssertionReplayed
            | ClientAuthError::JwksUriUnsupported => {
                OAuthError::new(ErrorCode::InvalidClient, e.to_string())
            }
            ClientAuthError::Storage(s) => OAuthError::from(s),
        }
    }
}

/// Decodes RFC 6749 §2.3.1 Basic credentials: base64 of
/// `urlencoded(client_id) ":" urlencoded(client_secret)`.
fn parse_basic(value: &str) -> Result<(String, String), ClientAuthError> {
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
        .ok_or(ClientAuthError::BadBasicEncoding)?
        .trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| ClientAuthError::BadBasicEncoding)?;
    let decoded = String::from_utf8(decoded).map_err(|_| ClientAuthError::BadBasicEncoding)?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or(ClientAuthError::BadBasicEncoding)?;
    let unescape = |s: &str| -> String {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let id = unescape(id);
    if id.is_empty() {
        return Err(ClientAuthError::BadBasicEncoding);
    }
    Ok((id, unescape(secret)))
}

/// Works out which method the request uses (RFC 6749 §2.3: exactly one).
/// `Ok(None)` when there is nothing at all.
pub fn credentials(
    headers: &HeaderMap,
    params: &ClientAuthParams,
) -> Result<Option<Credentials>, ClientAuthError> {
    let basic = match headers.get(header::AUTHORIZATION) {
        Some(v) => {
            let v = v.to_str().map_err(|_| ClientAuthError::BadBasicEncoding)?;
            if v.len() >= 6 && v[..6].eq_ignore_ascii_case("basic ") {
                Some(parse_basic(v)?)
            } else {
                // A Bearer header is not client authentication (introspection
                // handles the homeserver's secret itself).
                None
            }
        }
        None => None,
    };
    let methods = usize::from(basic.is_some())
        + usize::from(params.client_secret.is_some())
        + usize::from(params.client_assertion.is_some());
    if methods > 1 {
        return Err(ClientAuthError::SeveralMethods);
    }
    if let Some((client_id, secret)) = basic {
        if params.client_id.as_ref().is_some_and(|c| *c != client_id) {
            return Err(ClientAuthError::Failed);
        }
        return Ok(Some(Credentials::ClientSecretBasic { client_id, secret }));
    }
    if let Some(assertion) = &params.client_assertion {
        if params.client_assertion_type.as_deref() != Some(JWT_BEARER_ASSERTION_TYPE) {
            return Err(ClientAuthError::UnsupportedAssertionType);
        }
        return Ok(Some(Credentials::ClientAssertion {
            client_id: params.client_id.clone(),
            assertion: assertion.clone(),
        }));
    }
    let Some(client_id) = params.client_id.clone() else {
        return if params.client_secret.is_some() {
            Err(ClientAuthError::Missing)
        } else {
            Ok(None)
        };
    };
    Ok(Some(match &params.client_secret {
        Some(secret) => Credentials::ClientSecretPost {
            client_id,
            secret: secret.clone(),
        },
        None => Credentials::None { client_id },
    }))
}

/// What the checks need besides the request.
pub struct AuthContext<'a> {
    pub clock: &'a dyn Clock,
    pub encrypter: &'a Encrypter,
    /// Acceptable `aud` values of a client assertion (RFC 7523 §3 item 3):
    /// the issuer and the token endpoint URL.
    pub audiences: &'a [String],
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Constant-time comparison of a presented secret with the stored one
/// (digests first, so lengths do not leak either).
fn secrets_equal(presented: &str, expected: &[u8]) -> bool {
    bool::from(digest(presented.as_bytes()).ct_eq(&digest(expected)))
}

fn decrypt_secret(ctx: &AuthContext<'_>, client: &Client) -> Option<Vec<u8>> {
    let encrypted = client.encrypted_client_secret.as_deref()?;
    match ctx.encrypter.decrypt_str(CLIENT_SECRET_AAD, encrypted) {
        Ok(secret) => Some(secret),
        Err(e) => {
            tracing::error!(client_id = %client.client_id, error = %e, "cannot decrypt a client secret");
            None
        }
    }
}

/// Dummy work matching a secret check, for unknown clients.
fn dummy_secret_check(ctx: &AuthContext<'_>, presented: &str) {
    let _ = ctx
        .encrypter
        .decrypt_str(CLIENT_SECRET_AAD, DUMMY_CIPHERTEXT);
    let _ = secrets_equal(presented, b"vestibule dummy client secret");
}

/// Authenticates the client. Client assertions record their `jti` in
/// `repo` (the caller commits it).
pub async fn authenticate(
    repo: &mut BoxRepository,
    ctx: &AuthContext<'_>,
    credentials: &Credentials,
) -> Result<Client, ClientAuthError> {
    match credentials {
        Credentials::None { client_id } => {
            let client = repo
                .oauth2_clients()
                .find_by_client_id(client_id)
                .await?
                .ok_or(ClientAuthError::Failed)?;
            expect_method(&client, &[ClientAuthMethod::None])?;
            Ok(client)
        }
        Credentials::ClientSecretBasic { client_id, secret }
        | Credentials::ClientSecretPost { client_id, secret } => {
            let method = if matches!(credentials, Credentials::ClientSecretBasic { .. }) {
                ClientAuthMethod::ClientSecretBasic
            } else {
                ClientAuthMethod::ClientSecretPost
            };
            let Some(client) = repo.oauth2_clients().find_by_client_id(client_id).await? else {
                dummy_secret_check(ctx, secret);
                return Err(ClientAuthError::Failed);
            };
            let Some(expected) = decrypt_secret(ctx, &client) else {
                let _ = secrets_equal(secret, b"vestibule dummy client secret");
                return Err(ClientAuthError::Failed);
            };
            let ok = secrets_equal(secret, &expected);
            expect_method(&client, &[method])?;
            if ok {
                Ok(client)
            } else {
                Err(ClientAuthError::Failed)
            }
        }
        Credentials::ClientAssertion {
            client_id,
            assertion,
        } => authenticate_assertion(repo, ctx, client_id.as_deref(), assertion).await,
    }
}

fn expect_method(client: &Client, allowed: &[ClientAuthMethod]) -> Result<(), ClientAuthError> {
    if allowed.contains(&client.token_endpoint_auth_method) {
        Ok(())
    } else {
        Err(ClientAuthError::WrongMethod {
            registered: client.token_endpoint_auth_method.as_str(),
        })
    }
}

fn str_claim<'a>(claims: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(serde_json::Value::as_str)
}

fn time_claim(claims: &serde_json::Value, name: &str) -> Option<DateTime<Utc>> {
    let v = claims.get(name)?;
    // RFC 7519 §2 NumericDate: integral seconds (fractions are refused).
    let secs = v.as_i64()?;
    DateTime::from_timestamp(secs, 0)
}

async fn authenticate_assertion(
    repo: &mut BoxRepository,
    ctx: &AuthContext<'_>,
    form_client_id: Option<&str>,
    assertion: &str,
) -> Result<Client, ClientAuthError> {
    // Which client does it claim to be? (RFC 7523 §3 item 1/2: iss = sub =
    // client_id.) Read unverified only to pick the keys.
    let unverified = vestibule_keys::peek_jws_claims(assertion)
        .map_err(|_| ClientAuthError::InvalidAssertion("not a JWS"))?;
    let claimed =
        str_claim(&unverified, "sub").ok_or(ClientAuthError::InvalidAssertion("missing sub"))?;
    if form_client_id.is_some_and(|c| c != claimed) {
        return Err(ClientAuthError::InvalidAssertion(
            "sub does not match client_id",
        ));
    }
    let header = vestibule_keys::peek_jws_header(assertion)
        .map_err(|_| ClientAuthError::InvalidAssertion("not a JWS"))?;
    let alg = header
        .get("alg")
        .and_then(serde_json::Value::as_str)
        .ok_or(ClientAuthError::InvalidAssertion("missing alg"))?;
    // RFC 8725 §3.1: never `none`.
    if alg.eq_ignore_ascii_case("none") {
        return Err(ClientAuthError::InvalidAssertion("alg none is refused"));
    }
    let Some(client) = repo.oauth2_clients().find_by_client_id(claimed).await? else {
        dummy_secret_check(ctx, assertion);
        return Err(ClientAuthError::Failed);
    };
    let is_hmac = vestibule_keys::HMAC_ALGS.contains(&alg);
    let verified = match client.token_endpoint_auth_method {
        ClientAuthMethod::ClientSecretJwt => {
            // OIDC Core §9: MACed with the client secret.
            if !is_hmac {
                return Err(ClientAuthError::InvalidAssertion(
                    "client_secret_jwt needs an HMAC algorithm",
                ));
            }
            let Some(secret) = decrypt_secret(ctx, &client) else {
                return Err(ClientAuthError::Failed);
            };
            vestibule_keys::verify_jws_hmac(assertion, &secret)
        }
        ClientAuthMethod::PrivateKeyJwt => {
            // RFC 8725 §2.1: an HMAC "signed" with the public key is the
            // classic algorithm confusion; only asymmetric algorithms here.
            if is_hmac {
                return Err(ClientAuthError::InvalidAssertion(
                    "private_key_jwt needs an asymmetric algorithm",
                ));
            }
            let Some(jwks) = &client.jwks else {
                return Err(if client.jwks_uri.is_some() {
                    ClientAuthError::JwksUriUnsupported
                } else {
                    ClientAuthError::InvalidAssertion("the client has no registered keys")
                });
            };
            vestibule_keys::verify_jws_with_jwks(assertion, jwks)
        }
        other => {
            return Err(ClientAuthError::WrongMethod {
                registered: other.as_str(),
            });
        }
    };
    let claims = verified
        .map_err(|e| {
            ClientAuthError::InvalidAssertion(match e {
                KeyError::InvalidSignature => "bad signature",
                _ => "the assertion cannot be verified",
            })
        })?
        .claims;
    check_assertion_claims(ctx, &client, &claims)?;
    let jti = str_claim(&claims, "jti").unwrap_or_default();
    let exp = time_claim(&claims, "exp").unwrap_or_else(|| ctx.clock.now());
    match repo
        .oauth2_client_assertions()
        .record_jti(&client, jti, exp)
        .await
    {
        Ok(()) => Ok(client),
        Err(StorageError::ConcurrentUpdate(_)) => Err(ClientAuthError::AssertionReplayed),
        Err(e) => Err(e.into()),
    }
}

/// RFC 7523 §3 (and OIDC Core §9): `iss` = `sub` = client_id, `aud` names
/// us, `exp` in the future (and at most [`MAX_ASSERTION_LIFETIME`] ahead),
/// `nbf` not in the future, a `jti`.
fn check_assertion_claims(
    ctx: &AuthContext<'_>,
    client: &Client,
    claims: &serde_json::Value,
) -> Result<(), ClientAuthError> {
    let bad = ClientAuthError::InvalidAssertion;
    if str_claim(claims, "iss") != Some(client.client_id.as_str()) {
        return Err(bad("iss must be the client_id"));
    }
    if str_claim(claims, "sub") != Some(client.client_id.as_str()) {
        return Err(bad("sub must be the client_id"));
    }
    let aud_ok = match claims.get("aud") {
        Some(serde_json::Value::String(a)) => ctx.audiences.contains(a),
        Some(serde_json::Value::Array(list)) => list
            .iter()
            .filter_map(serde_json::Value::as_str)
            .any(|a| ctx.audiences.iter().any(|x| x == a)),
        _ => false,
    };
    if !aud_ok {
        return Err(bad("aud must be the issuer or the token endpoint"));
    }
    let now = ctx.clock.now();
    let exp = time_claim(claims, "exp").ok_or(bad("missing exp"))?;
    if exp <= now {
        return Err(bad("the assertion has expired"));
    }
    if exp > now + MAX_ASSERTION_LIFETIME {
        return Err(bad("exp is too far in the future"));
    }
    if let Some(nbf) = time_claim(claims, "nbf")
        && nbf > now
    {
        return Err(bad("the assertion is not valid yet"));
    }
    match str_claim(claims, "jti") {
        Some(j) if !j.is_empty() && j.len() <= 255 => Ok(()),
        _ => Err(bad("missing or oversized jti")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::http::HeaderValue;

    use super::*;

    fn basic(raw: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        );
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(&v).unwrap());
        h
    }

    #[test]
    fn basic_credentials_are_form_urlencoded() {
        let c = credentials(
            &basic("my%3Aclient:p%40ss+word"),
            &ClientAuthParams::default(),
        )
        .unwrap()
        .unwrap();
        match c {
            Credentials::ClientSecretBasic { client_id, secret } => {
                assert_eq!(client_id, "my:client");
                assert_eq!(secret, "p@ss word");
            }
            other => panic!("{other:?}"),
        }
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic %%%"));
        assert!(matches!(
            credentials(&h, &ClientAuthParams::default()),
            Err(ClientAuthError::BadBasicEncoding)
        ));
        assert!(matches!(
            credentials(&basic("no-colon"), &ClientAuthParams::default()),
            Err(ClientAuthError::BadBasicEncoding)
        ));
    }

    #[test]
    fn one_method_only() {
        let params = ClientAuthParams {
            client_id: Some("c".to_owned()),
            client_secret: Some("s".to_owned()),
            ..ClientAuthParams::default()
        };
        assert!(matches!(
            credentials(&basic("c:s"), &params),
            Err(ClientAuthError::SeveralMethods)
        ));
        assert!(matches!(
            credentials(&HeaderMap::new(), &ClientAuthParams::default()),
            Ok(None)
        ));
    }
}
