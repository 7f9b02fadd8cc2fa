//! ID tokens (OpenID Connect Core §2, §3.1.3.6).

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use vestibule_domain::{oauth2::Client, user::User};
use vestibule_keys::{KeyError, Keystore};

/// OIDC Core §2 `exp`: how long an ID token is valid.
pub const ID_TOKEN_LIFETIME: Duration = Duration::hours(1);

/// The algorithm to sign with: the client's registered
/// `id_token_signed_response_alg`, else RS256 (OIDC Dynamic Client
/// Registration §2 default); when no key can do that, the first key's
/// default algorithm.
pub fn signing_alg(keystore: &Keystore, client: &Client) -> Result<String, KeyError> {
    let wanted = client
        .id_token_signed_response_alg
        .as_deref()
        .unwrap_or("RS256");
    if keystore.find(wanted).is_some() {
        return Ok(wanted.to_owned());
    }
    keystore
        .entries()
        .first()
        .map(|e| e.key.default_algorithm().to_owned())
        .ok_or(KeyError::EmptyKeystore)
}

/// OIDC Core §3.1.3.6 `at_hash`: the left half of the hash of the access
/// token's ASCII octets, the hash being the one of the JWS `alg` (SHA-256 for
/// `*256`, SHA-384 for `*384`, SHA-512 for `*512` and for EdDSA over
/// Ed25519), base64url-encoded without padding.
pub fn at_hash(alg: &str, access_token: &str) -> String {
    let digest = if alg.ends_with("384") {
        Sha384::digest(access_token.as_bytes()).to_vec()
    } else if alg.ends_with("512") || alg == "EdDSA" {
        Sha512::digest(access_token.as_bytes()).to_vec()
    } else {
        Sha256::digest(access_token.as_bytes()).to_vec()
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

/// Claim names a user attribute never overrides, in the ID token or at
/// userinfo: the registered JWT and ID token claims, the OIDC Core §5.1
/// standard claims, and ours (`username`).
pub const RESERVED_CLAIMS: &[&str] = &[
    // RFC 7519 §4.1, OIDC Core §2, §3.1.3.6, §3.3.2.11, Back-Channel Logout.
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "azp",
    "nonce",
    "auth_time",
    "acr",
    "amr",
    "at_hash",
    "c_hash",
    "sid",
    "cnf",
    "scope",
    "client_id",
    // OIDC Core §5.1.
    "name",
    "given_name",
    "family_name",
    "middle_name",
    "nickname",
    "preferred_username",
    "profile",
    "picture",
    "website",
    "email",
    "email_verified",
    "gender",
    "birthdate",
    "zoneinfo",
    "locale",
    "phone_number",
    "phone_number_verified",
    "address",
    "updated_at",
    // Ours.
    "username",
];

/// The user attributes (custom claims imported from an upstream provider,
/// e.g. `tenant_id`) released as claims: every one whose name is not
/// reserved, nor our bookkeeping (the imported display name). Released with
/// the `profile` scope, in the ID token and at userinfo alike.
pub fn attribute_claims(
    attributes: &std::collections::BTreeMap<String, String>,
) -> impl Iterator<Item = (&str, &str)> {
    attributes
        .iter()
        .filter(|(k, _)| {
            !RESERVED_CLAIMS.contains(&k.as_str())
                && !crate::flows::user_import::is_internal_attribute(k)
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
}

/// What goes into an ID token.
#[derive(Debug)]
pub struct IdTokenClaims<'a> {
    /// Byte-equal to the discovery document's `issuer`.
    pub issuer: &'a str,
    pub client: &'a Client,
    pub user: &'a User,
    pub nonce: Option<&'a str>,
    /// When the user last authenticated in the browser session (§2
    /// `auth_time`).
    pub auth_time: Option<DateTime<Utc>>,
    pub access_token: &'a str,
    pub issued_at: DateTime<Utc>,
    /// The user's attributes, when the `profile` scope releases them
    /// (empty otherwise); reserved names are skipped.
    pub attributes: &'a std::collections::BTreeMap<String, String>,
}

/// Signs an ID token with the keystore (header `kid` from the keystore).
pub fn sign(keystore: &Keystore, claims: &IdTokenClaims<'_>) -> Result<String, KeyError> {
    let alg = signing_alg(keystore, claims.client)?;
    let mut body = json!({
        "iss": claims.issuer,
        "sub": claims.user.id.to_string(),
        "aud": claims.client.client_id,
        "azp": claims.client.client_id,
        "iat": claims.issued_at.timestamp(),
        "exp": (claims.issued_at + ID_TOKEN_LIFETIME).timestamp(),
        "at_hash": at_hash(&alg, claims.access_token),
    });
    if let Some(object) = body.as_object_mut() {
        if let Some(nonce) = claims.nonce {
            object.insert("nonce".to_owned(), json!(nonce));
        }
        if let Some(auth_time) = claims.auth_time {
            object.insert("auth_time".to_owned(), json!(auth_time.timestamp()));
        }
        for (name, value) in attribute_claims(claims.attributes) {
            object.insert(name.to_owned(), json!(value));
        }
    }
    keystore.sign_jwt(&alg, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_matches_the_oidc_example() {
        // OIDC Core Appendix A.3/A.4: access token "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"
        // has at_hash "77QmUPtjPfzWtF2AnpK9RQ" with RS256.
        assert_eq!(
            at_hash("RS256", "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
        assert_eq!(at_hash("ES384", "x").len(), 32);
        assert_eq!(at_hash("EdDSA", "x").len(), 43);
    }
}
