//! The set of signing keys: JWKS, algorithm discovery and JWT signing.

use std::collections::HashSet;
use std::fmt;

use rand::{CryptoRng, RngCore};
use serde_json::json;

use crate::jwt::{self, b64};
use crate::{KeyError, PrivateKey};

/// A signing key with its key id.
#[derive(Clone)]
pub struct KeyEntry {
    /// The `kid`: the configured one, or the RFC 7638 thumbprint.
    pub kid: String,
    /// The private key.
    pub key: PrivateKey,
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEntry")
            .field("kid", &self.kid)
            .field("key", &self.key)
            .finish()
    }
}

impl KeyEntry {
    /// The public JWK with `kid`, `use: "sig"` and the key's default `alg`.
    pub fn public_jwk(&self) -> serde_json::Value {
        let mut jwk = self.key.public_jwk();
        if let Some(object) = jwk.as_object_mut() {
            object.insert("kid".to_owned(), json!(self.kid));
            object.insert("use".to_owned(), json!("sig"));
            object.insert("alg".to_owned(), json!(self.key.default_algorithm()));
        }
        jwk
    }
}

/// The server's signing keys, in configuration order.
#[derive(Clone, Debug)]
pub struct Keystore {
    entries: Vec<KeyEntry>,
}

impl Keystore {
    /// Build a keystore from `(configured kid, key)` pairs. A missing kid
    /// defaults to the key's RFC 7638 thumbprint. Fails if there are no keys
    /// or two keys end up with the same kid.
    pub fn new(entries: Vec<(Option<String>, PrivateKey)>) -> Result<Self, KeyError> {
        if entries.is_empty() {
            return Err(KeyError::EmptyKeystore);
        }
        let mut seen = HashSet::new();
        let entries = entries
            .into_iter()
            .map(|(kid, key)| {
                let kid = kid.unwrap_or_else(|| key.thumbprint());
                if seen.insert(kid.clone()) {
                    Ok(KeyEntry { kid, key })
                } else {
                    Err(KeyError::DuplicateKid(kid))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { entries })
    }

    /// All keys, in configuration order.
    pub fn entries(&self) -> &[KeyEntry] {
        &self.entries
    }

    /// The key with this kid.
    pub fn get(&self, kid: &str) -> Option<&KeyEntry> {
        self.entries.iter().find(|entry| entry.kid == kid)
    }

    /// The JWKS document served at `jwks_uri`:
    /// `{"keys": [{kty, ..., kid, use: "sig", alg}, ...]}`, public members
    /// only.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self.entries.iter().map(KeyEntry::public_jwk).collect();
        json!({ "keys": keys })
    }

    /// Every algorithm some key can sign with, sorted and deduplicated (for
    /// `id_token_signing_alg_values_supported` and friends).
    pub fn signing_algorithms(&self) -> Vec<&'static str> {
        let mut algs: Vec<_> = self
            .entries
            .iter()
            .flat_map(|entry| entry.key.algorithms().iter().copied())
            .collect();
        algs.sort_unstable();
        algs.dedup();
        algs
    }

    /// The first key (in configuration order) that can sign with `alg`.
    pub fn find(&self, alg: &str) -> Option<&KeyEntry> {
        self.entries.iter().find(|entry| entry.key.supports(alg))
    }

    fn header_and_input(
        &self,
        alg: &str,
        claims: &serde_json::Value,
    ) -> Result<(&KeyEntry, String), KeyError> {
        self.typed_header_and_input(alg, "JWT", claims)
    }

    fn typed_header_and_input(
        &self,
        alg: &str,
        typ: &str,
        claims: &serde_json::Value,
    ) -> Result<(&KeyEntry, String), KeyError> {
        let entry = self
            .find(alg)
            .ok_or_else(|| KeyError::NoKeyForAlgorithm(alg.to_owned()))?;
        let header = json!({ "alg": alg, "typ": typ, "kid": entry.kid });
        let input = jwt::signing_input(&header, claims)?;
        Ok((entry, input))
    }

    /// Sign `claims` as a compact JWS with header `{alg, typ: "JWT", kid}`,
    /// using the first key that supports `alg`. Deterministic; see
    /// [`PrivateKey::sign`].
    pub fn sign_jwt(&self, alg: &str, claims: &serde_json::Value) -> Result<String, KeyError> {
        let (entry, input) = self.header_and_input(alg, claims)?;
        let signature = entry.key.sign(alg, input.as_bytes())?;
        Ok(format!("{input}.{}", b64(&signature)))
    }

    /// Like [`Keystore::sign_jwt`] with an explicit `typ` header (RFC 8725
    /// §3.11, e.g. `logout+jwt`).
    pub fn sign_typed_jwt(
        &self,
        alg: &str,
        typ: &str,
        claims: &serde_json::Value,
    ) -> Result<String, KeyError> {
        let (entry, input) = self.typed_header_and_input(alg, typ, claims)?;
        let signature = entry.key.sign(alg, input.as_bytes())?;
        Ok(format!("{input}.{}", b64(&signature)))
    }

    /// Like [`Keystore::sign_jwt`], with caller-supplied randomness (see
    /// [`PrivateKey::sign_with_rng`]).
    pub fn sign_jwt_with_rng(
        &self,
        rng: &mut (impl CryptoRng + RngCore),
        alg: &str,
        claims: &serde_json::Value,
    ) -> Result<String, KeyError> {
        let (entry, input) = self.header_and_input(alg, claims)?;
        let signature = entry.key.sign_with_rng(rng, alg, input.as_bytes())?;
        Ok(format!("{input}.{}", b64(&signature)))
    }

    /// Verify a compact JWS signed by one of this keystore's keys (e.g. an
    /// `id_token_hint`) and return its claims.
    ///
    /// The header's `alg` must be one the key supports (so `none` and
    /// algorithm confusion are rejected); if `kid` is present it selects the
    /// key, otherwise every key supporting `alg` is tried. Only the signature
    /// is checked: expiry, issuer and audience are the caller's business.
    pub fn verify_jwt(&self, token: &str) -> Result<serde_json::Value, KeyError> {
        let parsed = jwt::parse(token)?;
        let alg = parsed
            .header
            .get("alg")
            .and_then(serde_json::Value::as_str)
            .ok_or(KeyError::InvalidJwt("missing alg"))?;
        let message = parsed.signing_input.as_bytes();
        if let Some(kid) = parsed.header.get("kid") {
            let kid = kid
                .as_str()
                .ok_or(KeyError::InvalidJwt("kid is not a string"))?;
            let entry = self.get(kid).ok_or(KeyError::InvalidJwt("unknown kid"))?;
            entry.key.verify(alg, message, &parsed.signature)?;
        } else if !self
            .entries
            .iter()
            .any(|entry| entry.key.verify(alg, message, &parsed.signature).is_ok())
        {
            return Err(KeyError::InvalidSignature);
        }
        serde_json::from_slice(&parsed.payload)
            .map_err(|_| KeyError::InvalidJwt("payload is not JSON"))
    }
}
