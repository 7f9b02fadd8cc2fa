//! Verifying JWS made by others: client assertions (RFC 7523) signed with a
//! client's private key (checked against the public JWKs it registered) or
//! with its shared secret (HMAC).
//!
//! Nothing here trusts the JWS header more than it must: the algorithm must
//! belong to the key type (RFC 8725 §2.1/§3.1: no `none`, no HMAC with a
//! public key), and the claims are returned only after the signature checks.

use hmac::{Hmac, Mac};
use rsa::traits::PublicKeyParts as _;
use rsa::{BigUint, Pkcs1v15Sign, Pss};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256, Sha384, Sha512};

use crate::jwt::{self, b64, b64_decode};
use crate::{KeyError, MIN_RSA_BITS};

const RSA_ALGS: &[&str] = &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"];
const P256_ALGS: &[&str] = &["ES256"];
const P384_ALGS: &[&str] = &["ES384"];
const ED25519_ALGS: &[&str] = &["EdDSA"];
/// RFC 7518 §3.2 HMAC algorithms.
pub const HMAC_ALGS: &[&str] = &["HS256", "HS384", "HS512"];

/// A public key taken from a JWK (RFC 7517 §4, RFC 7518 §6, RFC 8037 §2).
#[derive(Clone, Debug)]
pub enum PublicKey {
    Rsa(Box<rsa::RsaPublicKey>),
    EcP256(Box<p256::PublicKey>),
    EcP384(Box<p384::PublicKey>),
    Ed25519(Box<ed25519_dalek::VerifyingKey>),
}

fn member<'a>(jwk: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, KeyError> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or(KeyError::InvalidJwt("JWK member missing"))
}

fn b64_member(jwk: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, KeyError> {
    b64_decode(member(jwk, name)?)
}

impl PublicKey {
    /// Parses a public JWK. Private members, if any, are ignored.
    pub fn from_jwk(jwk: &Value) -> Result<Self, KeyError> {
        let jwk = jwk
            .as_object()
            .ok_or(KeyError::InvalidJwt("JWK is not an object"))?;
        match member(jwk, "kty")? {
            "RSA" => {
                let n = BigUint::from_bytes_be(&b64_member(jwk, "n")?);
                let e = BigUint::from_bytes_be(&b64_member(jwk, "e")?);
                let key = rsa::RsaPublicKey::new(n, e)
                    .map_err(|_| KeyError::InvalidJwt("invalid RSA JWK"))?;
                if key.size() * 8 < MIN_RSA_BITS {
                    return Err(KeyError::RsaKeyTooSmall(key.size() * 8));
                }
                Ok(Self::Rsa(Box::new(key)))
            }
            "EC" => {
                let x = b64_member(jwk, "x")?;
                let y = b64_member(jwk, "y")?;
                let mut point = Vec::with_capacity(1 + x.len() + y.len());
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                match member(jwk, "crv")? {
                    "P-256" if x.len() == 32 && y.len() == 32 => {
                        p256::PublicKey::from_sec1_bytes(&point)
                            .map(|k| Self::EcP256(Box::new(k)))
                            .map_err(|_| KeyError::InvalidJwt("invalid P-256 JWK"))
                    }
                    "P-384" if x.len() == 48 && y.len() == 48 => {
                        p384::PublicKey::from_sec1_bytes(&point)
                            .map(|k| Self::EcP384(Box::new(k)))
                            .map_err(|_| KeyError::InvalidJwt("invalid P-384 JWK"))
                    }
                    other => Err(KeyError::UnsupportedCurve(other.to_owned())),
                }
            }
            "OKP" => {
                if member(jwk, "crv")? != "Ed25519" {
                    return Err(KeyError::UnsupportedCurve(member(jwk, "crv")?.to_owned()));
                }
                let x: [u8; 32] = b64_member(jwk, "x")?
                    .try_into()
                    .map_err(|_| KeyError::InvalidJwt("invalid Ed25519 JWK"))?;
                ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .map(|k| Self::Ed25519(Box::new(k)))
                    .map_err(|_| KeyError::InvalidJwt("invalid Ed25519 JWK"))
            }
            other => Err(KeyError::UnsupportedKeyAlgorithm(other.to_owned())),
        }
    }

    /// The JWS algorithms this key verifies.
    pub fn algorithms(&self) -> &'static [&'static str] {
        match self {
            Self::Rsa(_) => RSA_ALGS,
            Self::EcP256(_) => P256_ALGS,
            Self::EcP384(_) => P384_ALGS,
            Self::Ed25519(_) => ED25519_ALGS,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Rsa(_) => "RSA",
            Self::EcP256(_) => "EC P-256",
            Self::EcP384(_) => "EC P-384",
            Self::Ed25519(_) => "Ed25519",
        }
    }

    /// Verifies a JWS signature. An algorithm the key type does not have
    /// (`none`, `HS256`, another curve…) is refused before any maths.
    pub fn verify(&self, alg: &str, message: &[u8], signature: &[u8]) -> Result<(), KeyError> {
        use p256::ecdsa::signature::Verifier as _;
        if !self.algorithms().contains(&alg) {
            return Err(KeyError::AlgorithmNotSupported {
                alg: alg.to_owned(),
                key: self.kind(),
            });
        }
        let ok = match self {
            Self::Rsa(key) => {
                let (hashed, pkcs1, pss) = match alg {
                    "RS256" | "PS256" => (
                        Sha256::digest(message).to_vec(),
                        Pkcs1v15Sign::new::<Sha256>(),
                        Pss::new::<Sha256>(),
                    ),
                    "RS384" | "PS384" => (
                        Sha384::digest(message).to_vec(),
                        Pkcs1v15Sign::new::<Sha384>(),
                        Pss::new::<Sha384>(),
                    ),
                    _ => (
                        Sha512::digest(message).to_vec(),
                        Pkcs1v15Sign::new::<Sha512>(),
                        Pss::new::<Sha512>(),
                    ),
                };
                if alg.starts_with("RS") {
                    key.verify(pkcs1, &hashed, signature).is_ok()
                } else {
                    key.verify(pss, &hashed, signature).is_ok()
                }
            }
            Self::EcP256(key) => p256::ecdsa::Signature::from_slice(signature).is_ok_and(|sig| {
                p256::ecdsa::VerifyingKey::from(key.as_ref())
                    .verify(message, &sig)
                    .is_ok()
            }),
            Self::EcP384(key) => p384::ecdsa::Signature::from_slice(signature).is_ok_and(|sig| {
                p384::ecdsa::VerifyingKey::from(key.as_ref())
                    .verify(message, &sig)
                    .is_ok()
            }),
            Self::Ed25519(key) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify_strict(message, &sig).is_ok()),
        };
        if ok {
            Ok(())
        } else {
            Err(KeyError::InvalidSignature)
        }
    }
}

/// A JWS whose signature verified.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedJws {
    pub header: Map<String, Value>,
    pub claims: Value,
}

/// The header of a compact JWS, **unverified** (to pick the key or the
/// method before verifying).
pub fn peek_jws_header(token: &str) -> Result<Map<String, Value>, KeyError> {
    Ok(jwt::parse(token)?.header)
}

/// The claims of a compact JWS, **unverified** (to find out which client
/// claims to have signed it before looking up its keys).
pub fn peek_jws_claims(token: &str) -> Result<Value, KeyError> {
    let parsed = jwt::parse(token)?;
    serde_json::from_slice(&parsed.payload).map_err(|_| KeyError::InvalidJwt("payload is not JSON"))
}

fn header_alg(header: &Map<String, Value>) -> Result<&str, KeyError> {
    header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(KeyError::InvalidJwt("missing alg"))
}

fn verified(parsed: jwt::ParsedJws<'_>) -> Result<VerifiedJws, KeyError> {
    let claims = serde_json::from_slice(&parsed.payload)
        .map_err(|_| KeyError::InvalidJwt("payload is not JSON"))?;
    Ok(VerifiedJws {
        header: parsed.header,
        claims,
    })
}

/// Verifies a compact JWS against a JWK Set (`{"keys": [...]}`).
///
/// The header's `kid`, when present, selects the key; otherwise every key
/// whose type supports the header's `alg` is tried. A JWK with an `alg`
/// member is only used with that algorithm, and one with `use` other than
/// `sig` is never used (RFC 7517 §4.2/§4.4).
pub fn verify_jws_with_jwks(token: &str, jwks: &Value) -> Result<VerifiedJws, KeyError> {
    let parsed = jwt::parse(token)?;
    let alg = header_alg(&parsed.header)?.to_owned();
    let kid = parsed.header.get("kid").and_then(Value::as_str);
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(KeyError::InvalidJwt("not a JWK Set"))?;
    let mut tried = false;
    for jwk in keys {
        if let Some(kid) = kid
            && jwk.get("kid").and_then(Value::as_str) != Some(kid)
        {
            continue;
        }
        if jwk
            .get("alg")
            .and_then(Value::as_str)
            .is_some_and(|a| a != alg)
        {
            continue;
        }
        if jwk
            .get("use")
            .and_then(Value::as_str)
            .is_some_and(|u| u != "sig")
        {
            continue;
        }
        let Ok(key) = PublicKey::from_jwk(jwk) else {
            continue;
        };
        if !key.algorithms().contains(&alg.as_str()) {
            continue;
        }
        tried = true;
        if key
            .verify(&alg, parsed.signing_input.as_bytes(), &parsed.signature)
            .is_ok()
        {
            return verified(parsed);
        }
    }
    if tried {
        Err(KeyError::InvalidSignature)
    } else {
        Err(KeyError::InvalidJwt(
            "no registered key can verify this algorithm",
        ))
    }
}

fn hmac_tag(alg: &str, secret: &[u8], message: &[u8]) -> Result<Vec<u8>, KeyError> {
    macro_rules! tag {
        ($hash:ty) => {{
            let Ok(mut mac) = <Hmac<$hash> as Mac>::new_from_slice(secret) else {
                unreachable!("HMAC accepts keys of any length")
            };
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }};
    }
    match alg {
        "HS256" => Ok(tag!(Sha256)),
        "HS384" => Ok(tag!(Sha384)),
        "HS512" => Ok(tag!(Sha512)),
        other => Err(KeyError::AlgorithmNotSupported {
            alg: other.to_owned(),
            key: "shared secret",
        }),
    }
}

/// Verifies a compact JWS MACed with a shared secret (RFC 7518 §3.2;
/// `client_secret_jwt`, OIDC Core §9). Only `HS256`/`HS384`/`HS512`; the tag
/// is compared in constant time.
pub fn verify_jws_hmac(token: &str, secret: &[u8]) -> Result<VerifiedJws, KeyError> {
    let parsed = jwt::parse(token)?;
    let alg = header_alg(&parsed.header)?;
    let expected = hmac_tag(alg, secret, parsed.signing_input.as_bytes())?;
    let diff = expected
        .iter()
        .zip(parsed.signature.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if expected.len() == parsed.signature.len() && diff == 0 {
        verified(parsed)
    } else {
        Err(KeyError::InvalidSignature)
    }
}

/// Signs `claims` with a shared secret (`HS256`/`HS384`/`HS512`), header
/// `{alg, typ: "JWT"}`. Used by clients (and tests) for `client_secret_jwt`.
pub fn sign_jws_hmac(alg: &str, secret: &[u8], claims: &Value) -> Result<String, KeyError> {
    let header = serde_json::json!({ "alg": alg, "typ": "JWT" });
    let input = jwt::signing_input(&header, claims)?;
    let tag = hmac_tag(alg, secret, input.as_bytes())?;
    Ok(format!("{input}.{}", b64(&tag)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rand::SeedableRng;
    use serde_json::json;

    use super::*;
    use crate::Keystore;

    #[test]
    fn jwks_verification_round_trips_and_refuses_confusion() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let key = crate::generate_ec_p256(&mut rng);
        let ks = Keystore::new(vec![(Some("k1".to_owned()), key)]).unwrap();
        let claims = json!({"iss": "c", "n": 1});
        let token = ks.sign_jwt("ES256", &claims).unwrap();
        let jwks = ks.jwks();
        assert_eq!(verify_jws_with_jwks(&token, &jwks).unwrap().claims, claims);

        // Tampered payload.
        let mut parts: Vec<&str> = token.split('.').collect();
        let other = b64(br#"{"iss":"c","n":2}"#);
        parts[1] = &other;
        assert!(verify_jws_with_jwks(&parts.join("."), &jwks).is_err());

        // alg none.
        let none = format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(br#"{"iss":"c"}"#));
        assert!(verify_jws_with_jwks(&none, &jwks).is_err());

        // HS256 "signed" with the public key material as secret.
        let public = serde_json::to_vec(&jwks["keys"][0]).unwrap();
        let hs = sign_jws_hmac("HS256", &public, &claims).unwrap();
        assert!(verify_jws_with_jwks(&hs, &jwks).is_err());
    }

    #[test]
    fn hmac_round_trip() {
        let claims = json!({"a": "b"});
        let t = sign_jws_hmac("HS256", b"secret", &claims).unwrap();
        assert_eq!(verify_jws_hmac(&t, b"secret").unwrap().claims, claims);
        assert_eq!(
            verify_jws_hmac(&t, b"other"),
            Err(KeyError::InvalidSignature)
        );
        let none = format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(br#"{"a":"b"}"#));
        assert!(verify_jws_hmac(&none, b"secret").is_err());
    }

    #[test]
    fn rsa_jwk_verifies() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
        let key = crate::generate_rsa(&mut rng, 2048).unwrap();
        let ks = Keystore::new(vec![(None, key)]).unwrap();
        let token = ks.sign_jwt("RS256", &json!({"x": 1})).unwrap();
        assert!(verify_jws_with_jwks(&token, &ks.jwks()).is_ok());
        let token = ks.sign_jwt("PS384", &json!({"x": 1})).unwrap();
        assert!(
            verify_jws_with_jwks(&token, &ks.jwks()).is_err(),
            "JWKS pins alg RS256"
        );
    }
}
