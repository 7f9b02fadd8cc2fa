//! Asymmetric private keys: loading, public JWK, thumbprint, signing.

use std::fmt;

use ed25519_dalek::Signer as _;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::pkcs8;
use p256::pkcs8::der::asn1::{ContextSpecific, ObjectIdentifier, OctetStringRef};
use p256::pkcs8::der::{self, Decode as _, Reader as _, SliceReader, TagNumber};
use p256::pkcs8::{AlgorithmIdentifierRef, DecodePrivateKey as _, EncodePrivateKey as _};
use rand::{CryptoRng, RngCore};
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::traits::{PrivateKeyParts as _, PublicKeyParts as _};
use rsa::{Pkcs1v15Sign, Pss};
use serde_json::json;
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use zeroize::Zeroizing;

use crate::jwt::b64;
use crate::{KeyError, MIN_RSA_BITS};

const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_PBES2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.5.13");

const RSA_ALGS: &[&str] = &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"];
const P256_ALGS: &[&str] = &["ES256"];
const P384_ALGS: &[&str] = &["ES384"];
const ED25519_ALGS: &[&str] = &["EdDSA"];

/// An asymmetric private key usable for JWS signing.
///
/// Cloning copies the key material; all variants zeroize on drop.
#[derive(Clone)]
pub enum PrivateKey {
    /// An RSA key of at least 2048 bits.
    Rsa(Box<rsa::RsaPrivateKey>),
    /// An EC key on NIST P-256 (secp256r1).
    EcP256(Box<p256::SecretKey>),
    /// An EC key on NIST P-384 (secp384r1).
    EcP384(Box<p384::SecretKey>),
    /// An Ed25519 key.
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("kind", &self.kind())
            .field("key", &"[redacted]")
            .finish()
    }
}

/// The public members of a key, as needed for a JWK and its thumbprint.
enum PublicParts {
    Rsa {
        n: String,
        e: String,
    },
    Ec {
        crv: &'static str,
        x: String,
        y: String,
    },
    Okp {
        crv: &'static str,
        x: String,
    },
}

impl PublicParts {
    fn to_jwk(&self) -> serde_json::Value {
        match self {
            Self::Rsa { n, e } => json!({ "kty": "RSA", "n": n, "e": e }),
            Self::Ec { crv, x, y } => json!({ "kty": "EC", "crv": crv, "x": x, "y": y }),
            Self::Okp { crv, x } => json!({ "kty": "OKP", "crv": crv, "x": x }),
        }
    }

    /// RFC 7638 §3: the required members only, in lexicographic order, no
    /// whitespace. Built by hand so that it does not depend on serde_json's
    /// map ordering (the `preserve_order` feature may be on elsewhere). All
    /// values are base64url or fixed names, so no JSON escaping is needed.
    fn thumbprint_input(&self) -> String {
        match self {
            Self::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
            Self::Ec { crv, x, y } => {
                format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#)
            }
            Self::Okp { crv, x } => format!(r#"{{"crv":"{crv}","kty":"OKP","x":"{x}"}}"#),
        }
    }

    fn thumbprint(&self) -> String {
        b64(&Sha256::digest(self.thumbprint_input().as_bytes()))
    }
}

/// The `x` and `y` members of an uncompressed SEC1 point (`04 || x || y`).
fn ec_coordinates(uncompressed: &[u8], field_len: usize) -> (String, String) {
    let coords = uncompressed.get(1..).unwrap_or_default();
    let (x, y) = coords.split_at(field_len.min(coords.len()));
    (b64(x), b64(y))
}

#[derive(Clone, Copy)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(message).to_vec(),
            Self::Sha384 => Sha384::digest(message).to_vec(),
            Self::Sha512 => Sha512::digest(message).to_vec(),
        }
    }

    fn pkcs1v15(self) -> Pkcs1v15Sign {
        match self {
            Self::Sha256 => Pkcs1v15Sign::new::<Sha256>(),
            Self::Sha384 => Pkcs1v15Sign::new::<Sha384>(),
            Self::Sha512 => Pkcs1v15Sign::new::<Sha512>(),
        }
    }

    /// PSS with MGF1 over the same hash and a salt as long as the hash, as
    /// RFC 7518 §3.5 requires.
    fn pss(self) -> Pss {
        match self {
            Self::Sha256 => Pss::new::<Sha256>(),
            Self::Sha384 => Pss::new::<Sha384>(),
            Self::Sha512 => Pss::new::<Sha512>(),
        }
    }
}

#[derive(Clone, Copy)]
enum RsaAlg {
    Pkcs1v15(Hash),
    Pss(Hash),
}

impl RsaAlg {
    fn parse(alg: &str) -> Option<Self> {
        Some(match alg {
            "RS256" => Self::Pkcs1v15(Hash::Sha256),
            "RS384" => Self::Pkcs1v15(Hash::Sha384),
            "RS512" => Self::Pkcs1v15(Hash::Sha512),
            "PS256" => Self::Pss(Hash::Sha256),
            "PS384" => Self::Pss(Hash::Sha384),
            "PS512" => Self::Pss(Hash::Sha512),
            _ => return None,
        })
    }
}

/// A deterministic CSPRNG for RSA signing without a caller-supplied rng.
///
/// The seed is SHA-512 over a domain separator, the algorithm, the private
/// exponent and the message, so its output is unpredictable to anyone without
/// the private key (like RFC 6979 nonces for ECDSA). It supplies the PSS salt
/// and the RSA blinding factor. Output block `i` is `SHA-512(seed || i)`.
struct DeterministicRng {
    seed: Zeroizing<[u8; 64]>,
    counter: u64,
    block: Zeroizing<[u8; 64]>,
    pos: usize,
}

impl DeterministicRng {
    fn for_rsa(key: &rsa::RsaPrivateKey, alg: &str, message: &[u8]) -> Self {
        let d = Zeroizing::new(key.d().to_bytes_be());
        let mut hasher = Sha512::new();
        hasher.update(b"vestibule-keys/rsa-deterministic-signing/v1\0");
        hasher.update(alg.as_bytes());
        hasher.update([0]);
        hasher.update((d.len() as u64).to_be_bytes());
        hasher.update(d.as_slice());
        hasher.update(Sha512::digest(message));
        let mut seed = Zeroizing::new([0; 64]);
        seed.copy_from_slice(&hasher.finalize());
        Self {
            seed,
            counter: 0,
            block: Zeroizing::new([0; 64]),
            pos: 64,
        }
    }
}

impl RngCore for DeterministicRng {
    fn next_u32(&mut self) -> u32 {
        let mut bytes = [0; 4];
        self.fill_bytes(&mut bytes);
        u32::from_le_bytes(bytes)
    }

    fn next_u64(&mut self) -> u64 {
        let mut bytes = [0; 8];
        self.fill_bytes(&mut bytes);
        u64::from_le_bytes(bytes)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for byte in dest {
            if self.pos == self.block.len() {
                let mut hasher = Sha512::new();
                hasher.update(self.seed.as_slice());
                hasher.update(self.counter.to_be_bytes());
                self.block.copy_from_slice(&hasher.finalize());
                self.counter += 1;
                self.pos = 0;
            }
            *byte = self.block[self.pos];
            self.pos += 1;
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for DeterministicRng {}

impl PrivateKey {
    /// Load a private key from PEM text.
    ///
    /// Accepts PKCS#1 (`RSA PRIVATE KEY`), PKCS#8 (`PRIVATE KEY`: RSA, EC
    /// P-256/P-384, Ed25519) and SEC1 (`EC PRIVATE KEY`: P-256/P-384). Other
    /// blocks such as the `EC PARAMETERS` that `openssl ecparam -genkey`
    /// prints first are skipped; the first private key block is used.
    /// Encrypted keys give [`KeyError::EncryptedNotSupported`].
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let mut first_other_label = None;
        for block in pem_blocks(pem) {
            let block = block?;
            match block.label {
                "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {}
                "ENCRYPTED PRIVATE KEY" => return Err(KeyError::EncryptedNotSupported),
                "EC PARAMETERS" => continue,
                other => {
                    first_other_label.get_or_insert(other);
                    continue;
                }
            }
            if block.text.contains("Proc-Type: 4,ENCRYPTED") {
                // Legacy OpenSSL encryption (`openssl rsa -aes256`).
                return Err(KeyError::EncryptedNotSupported);
            }
            let (_, der) = der::pem::decode_vec(block.text.as_bytes())
                .map_err(|e| KeyError::InvalidPem(e.to_string()))?;
            let der = Zeroizing::new(der);
            return match block.label {
                "PRIVATE KEY" => match pkcs8::PrivateKeyInfo::try_from(der.as_slice()) {
                    Ok(info) => Self::from_pkcs8(&der, &info),
                    Err(e) => Err(invalid("PKCS#8", e)),
                },
                "RSA PRIVATE KEY" => Self::from_pkcs1_der(&der),
                _ => match parse_sec1(&der) {
                    Some(sec1) => Self::from_sec1(&der, &sec1),
                    None => Err(KeyError::InvalidKey {
                        format: "SEC1",
                        reason: "malformed ECPrivateKey structure".to_owned(),
                    }),
                },
            };
        }
        match first_other_label {
            Some(label) => Err(KeyError::UnsupportedPemLabel(label.to_owned())),
            None => Err(KeyError::NotAKey),
        }
    }

    /// Load a DER-encoded private key (PKCS#8, PKCS#1 or SEC1, detected from
    /// the structure).
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        if let Ok(info) = pkcs8::PrivateKeyInfo::try_from(der) {
            return Self::from_pkcs8(der, &info);
        }
        if is_encrypted_pkcs8(der) {
            return Err(KeyError::EncryptedNotSupported);
        }
        if rsa::pkcs1::RsaPrivateKey::from_der(der).is_ok() {
            return Self::from_pkcs1_der(der);
        }
        if let Some(sec1) = parse_sec1(der) {
            return Self::from_sec1(der, &sec1);
        }
        Err(KeyError::NotAKey)
    }

    /// Load a key file's contents: PEM if it looks like PEM, DER otherwise.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| KeyError::InvalidPem("not valid UTF-8".to_owned()))?;
            Self::from_pem(text)
        } else {
            Self::from_der(bytes)
        }
    }

    /// Load a password-protected PKCS#8 key (MAS's `password` /
    /// `password_file`).
    ///
    /// Not supported by this build (it would pull in PBES2, scrypt and AES);
    /// always returns [`KeyError::EncryptedNotSupported`] for encrypted input,
    /// and loads unencrypted input as [`PrivateKey::from_pem`] does.
    pub fn from_pem_encrypted(pem: &str, _password: &[u8]) -> Result<Self, KeyError> {
        Self::from_pem(pem)
    }

    fn from_pkcs1_der(der: &[u8]) -> Result<Self, KeyError> {
        let key = rsa::RsaPrivateKey::from_pkcs1_der(der).map_err(|e| invalid("PKCS#1", e))?;
        Self::from_rsa(key)
    }

    fn from_rsa(key: rsa::RsaPrivateKey) -> Result<Self, KeyError> {
        let bits = key.n().bits();
        if bits < MIN_RSA_BITS {
            return Err(KeyError::RsaKeyTooSmall(bits));
        }
        Ok(Self::Rsa(Box::new(key)))
    }

    fn from_pkcs8(der: &[u8], info: &pkcs8::PrivateKeyInfo<'_>) -> Result<Self, KeyError> {
        let oid = info.algorithm.oid;
        if oid == OID_RSA_ENCRYPTION {
            let key = rsa::RsaPrivateKey::from_pkcs8_der(der).map_err(|e| invalid("PKCS#8", e))?;
            Self::from_rsa(key)
        } else if oid == OID_EC_PUBLIC_KEY {
            match info.algorithm.parameters_oid() {
                Ok(OID_P256) => p256::SecretKey::from_pkcs8_der(der)
                    .map(|k| Self::EcP256(Box::new(k)))
                    .map_err(|e| invalid("PKCS#8", e)),
                Ok(OID_P384) => p384::SecretKey::from_pkcs8_der(der)
                    .map(|k| Self::EcP384(Box::new(k)))
                    .map_err(|e| invalid("PKCS#8", e)),
                Ok(curve) => Err(KeyError::UnsupportedCurve(curve_name(curve))),
                Err(_) => Err(KeyError::UnsupportedCurve(
                    "(explicit or missing curve parameters)".to_owned(),
                )),
            }
        } else if oid == OID_ED25519 {
            ed25519_dalek::SigningKey::from_pkcs8_der(der)
                .map(|k| Self::Ed25519(Box::new(k)))
                .map_err(|e| invalid("PKCS#8", e))
        } else {
            Err(KeyError::UnsupportedKeyAlgorithm(algorithm_name(oid)))
        }
    }

    fn from_sec1(der: &[u8], sec1: &Sec1Info) -> Result<Self, KeyError> {
        let curve = match sec1.curve {
            Some(curve) => curve,
            // No parameters: infer the curve from the scalar's length.
            None if sec1.private_key_len == 32 => OID_P256,
            None if sec1.private_key_len == 48 => OID_P384,
            None => {
                return Err(KeyError::UnsupportedCurve(
                    "(unknown: no curve parameters)".to_owned(),
                ));
            }
        };
        match curve {
            OID_P256 => p256::SecretKey::from_sec1_der(der)
                .map(|k| Self::EcP256(Box::new(k)))
                .map_err(|e| invalid("SEC1", e)),
            OID_P384 => p384::SecretKey::from_sec1_der(der)
                .map(|k| Self::EcP384(Box::new(k)))
                .map_err(|e| invalid("SEC1", e)),
            other => Err(KeyError::UnsupportedCurve(curve_name(other))),
        }
    }

    /// A short human-readable description, e.g. `RSA-2048` or `EC P-256`.
    pub fn kind(&self) -> String {
        match self {
            Self::Rsa(k) => format!("RSA-{}", k.n().bits()),
            Self::EcP256(_) => "EC P-256".to_owned(),
            Self::EcP384(_) => "EC P-384".to_owned(),
            Self::Ed25519(_) => "Ed25519".to_owned(),
        }
    }

    fn kind_static(&self) -> &'static str {
        match self {
            Self::Rsa(_) => "RSA",
            Self::EcP256(_) => "EC P-256",
            Self::EcP384(_) => "EC P-384",
            Self::Ed25519(_) => "Ed25519",
        }
    }

    fn public_parts(&self) -> PublicParts {
        match self {
            Self::Rsa(k) => PublicParts::Rsa {
                n: b64(&k.n().to_bytes_be()),
                e: b64(&k.e().to_bytes_be()),
            },
            Self::EcP256(k) => {
                let point = k.public_key().to_encoded_point(false);
                let (x, y) = ec_coordinates(point.as_bytes(), 32);
                PublicParts::Ec { crv: "P-256", x, y }
            }
            Self::EcP384(k) => {
                let point = k.public_key().to_encoded_point(false);
                let (x, y) = ec_coordinates(point.as_bytes(), 48);
                PublicParts::Ec { crv: "P-384", x, y }
            }
            Self::Ed25519(k) => PublicParts::Okp {
                crv: "Ed25519",
                x: b64(k.verifying_key().as_bytes()),
            },
        }
    }

    /// The public key as a JWK (RFC 7517/7518, RFC 8037 for OKP): `kty` and
    /// `n`, `e` (RSA), `crv`, `x`, `y` (EC) or `crv`, `x` (OKP), base64url
    /// without padding. Never contains private members.
    pub fn public_jwk(&self) -> serde_json::Value {
        self.public_parts().to_jwk()
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url without padding) of
    /// the public key; the default key id.
    pub fn thumbprint(&self) -> String {
        self.public_parts().thumbprint()
    }

    /// The algorithm advertised for this key in the JWKS.
    pub fn default_algorithm(&self) -> &'static str {
        self.algorithms()[0]
    }

    /// Every JWS algorithm this key can sign with; the first is the default.
    pub fn algorithms(&self) -> &'static [&'static str] {
        match self {
            Self::Rsa(_) => RSA_ALGS,
            Self::EcP256(_) => P256_ALGS,
            Self::EcP384(_) => P384_ALGS,
            Self::Ed25519(_) => ED25519_ALGS,
        }
    }

    /// Whether this key can sign with the JWS algorithm `alg`.
    pub fn supports(&self, alg: &str) -> bool {
        self.algorithms().contains(&alg)
    }

    fn unsupported(&self, alg: &str) -> KeyError {
        KeyError::AlgorithmNotSupported {
            alg: alg.to_owned(),
            key: self.kind_static(),
        }
    }

    /// Sign `message` (the JWS signing input) with `alg`, deterministically.
    ///
    /// Returns the JWS signature bytes: PKCS#1 v1.5 or PSS for RSA, the
    /// fixed-size `r || s` form for ECDSA (RFC 7518 §3.4), 64 bytes for
    /// EdDSA. ECDSA nonces follow RFC 6979. For RSA, the PSS salt and the
    /// blinding factor come from a CSPRNG seeded with SHA-512 of the private
    /// exponent and the message, so no rng is needed and outputs are
    /// unpredictable without the key. Use [`PrivateKey::sign_with_rng`] to
    /// supply randomness instead.
    pub fn sign(&self, alg: &str, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match self {
            Self::Rsa(key) => {
                let mut rng = DeterministicRng::for_rsa(key, alg, message);
                self.sign_with_rng(&mut rng, alg, message)
            }
            Self::EcP256(key) => {
                self.check(alg)?;
                let signer = p256::ecdsa::SigningKey::from(key.as_ref());
                let signature: p256::ecdsa::Signature =
                    p256::ecdsa::signature::Signer::try_sign(&signer, message)
                        .map_err(|e| KeyError::Signing(e.to_string()))?;
                Ok(signature.to_bytes().to_vec())
            }
            Self::EcP384(key) => {
                self.check(alg)?;
                let signer = p384::ecdsa::SigningKey::from(key.as_ref());
                let signature: p384::ecdsa::Signature =
                    p384::ecdsa::signature::Signer::try_sign(&signer, message)
                        .map_err(|e| KeyError::Signing(e.to_string()))?;
                Ok(signature.to_bytes().to_vec())
            }
            Self::Ed25519(key) => {
                self.check(alg)?;
                Ok(key.sign(message).to_bytes().to_vec())
            }
        }
    }

    /// Like [`PrivateKey::sign`], using `rng` for the RSA blinding factor and
    /// PSS salt, and as added entropy for ECDSA nonces. Ed25519 is
    /// deterministic by design and ignores `rng`.
    pub fn sign_with_rng(
        &self,
        rng: &mut (impl CryptoRng + RngCore),
        alg: &str,
        message: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        use p256::ecdsa::signature::RandomizedSigner as _;
        match self {
            Self::Rsa(key) => {
                let parsed = RsaAlg::parse(alg).ok_or_else(|| self.unsupported(alg))?;
                let result = match parsed {
                    RsaAlg::Pkcs1v15(hash) => {
                        key.sign_with_rng(rng, hash.pkcs1v15(), &hash.digest(message))
                    }
                    RsaAlg::Pss(hash) => key.sign_with_rng(rng, hash.pss(), &hash.digest(message)),
                };
                result.map_err(|e| KeyError::Signing(e.to_string()))
            }
            Self::EcP256(key) => {
                self.check(alg)?;
                let signer = p256::ecdsa::SigningKey::from(key.as_ref());
                let signature: p256::ecdsa::Signature = signer
                    .try_sign_with_rng(rng, message)
                    .map_err(|e| KeyError::Signing(e.to_string()))?;
                Ok(signature.to_bytes().to_vec())
            }
            Self::EcP384(key) => {
                self.check(alg)?;
                let signer = p384::ecdsa::SigningKey::from(key.as_ref());
                let signature: p384::ecdsa::Signature = signer
                    .try_sign_with_rng(rng, message)
                    .map_err(|e| KeyError::Signing(e.to_string()))?;
                Ok(signature.to_bytes().to_vec())
            }
            Self::Ed25519(_) => self.sign(alg, message),
        }
    }

    fn check(&self, alg: &str) -> Result<(), KeyError> {
        if self.supports(alg) {
            Ok(())
        } else {
            Err(self.unsupported(alg))
        }
    }

    /// Verify a JWS signature made by this key's public half.
    pub fn verify(&self, alg: &str, message: &[u8], signature: &[u8]) -> Result<(), KeyError> {
        use p256::ecdsa::signature::Verifier as _;
        self.check(alg)?;
        let ok = match self {
            Self::Rsa(key) => {
                let public = key.to_public_key();
                match RsaAlg::parse(alg) {
                    Some(RsaAlg::Pkcs1v15(hash)) => public
                        .verify(hash.pkcs1v15(), &hash.digest(message), signature)
                        .is_ok(),
                    Some(RsaAlg::Pss(hash)) => public
                        .verify(hash.pss(), &hash.digest(message), signature)
                        .is_ok(),
                    None => false,
                }
            }
            Self::EcP256(key) => p256::ecdsa::Signature::from_slice(signature).is_ok_and(|sig| {
                p256::ecdsa::VerifyingKey::from(key.public_key())
                    .verify(message, &sig)
                    .is_ok()
            }),
            Self::EcP384(key) => p384::ecdsa::Signature::from_slice(signature).is_ok_and(|sig| {
                p384::ecdsa::VerifyingKey::from(key.public_key())
                    .verify(message, &sig)
                    .is_ok()
            }),
            Self::Ed25519(key) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verifying_key().verify_strict(message, &sig).is_ok()),
        };
        if ok {
            Ok(())
        } else {
            Err(KeyError::InvalidSignature)
        }
    }

    /// Export as unencrypted PKCS#8 PEM (LF line endings).
    pub fn to_pkcs8_pem(&self) -> Result<String, KeyError> {
        let le = pkcs8::LineEnding::LF;
        let pem = match self {
            Self::Rsa(k) => k.to_pkcs8_pem(le),
            Self::EcP256(k) => k.to_pkcs8_pem(le),
            Self::EcP384(k) => k.to_pkcs8_pem(le),
            Self::Ed25519(k) => k.to_pkcs8_pem(le),
        }
        .map_err(|e| KeyError::Encoding(e.to_string()))?;
        Ok(pem.as_str().to_owned())
    }
}

fn invalid(format: &'static str, error: impl fmt::Display) -> KeyError {
    KeyError::InvalidKey {
        format,
        reason: error.to_string(),
    }
}

fn curve_name(oid: ObjectIdentifier) -> String {
    let name = match oid.to_string().as_str() {
        "1.3.132.0.10" => "secp256k1",
        "1.3.132.0.35" => "P-521",
        "1.2.840.10045.3.1.1" => "P-192",
        "1.3.132.0.33" => "P-224",
        "1.3.36.3.3.2.8.1.1.7" => "brainpoolP256r1",
        _ => return format!("(OID {oid})"),
    };
    format!("{name} (OID {oid})")
}

fn algorithm_name(oid: ObjectIdentifier) -> String {
    let name = match oid.to_string().as_str() {
        "1.3.101.113" => "Ed448",
        "1.3.101.110" => "X25519",
        "1.3.101.111" => "X448",
        "1.2.840.113549.1.1.10" => "RSASSA-PSS",
        "1.2.840.10040.4.1" => "DSA",
        _ => return format!("(OID {oid})"),
    };
    format!("{name} (OID {oid})")
}

/// What we need from a SEC1 `ECPrivateKey` to pick the curve.
struct Sec1Info {
    curve: Option<ObjectIdentifier>,
    private_key_len: usize,
}

/// Parse the SEC1 (RFC 5915) structure far enough to learn the curve:
/// `SEQUENCE { version INTEGER (1), privateKey OCTET STRING,
/// parameters [0] EXPLICIT OID OPTIONAL, publicKey [1] BIT STRING OPTIONAL }`.
fn parse_sec1(der: &[u8]) -> Option<Sec1Info> {
    let mut reader = SliceReader::new(der).ok()?;
    let info = reader
        .sequence(|r| {
            let version: u8 = r.decode()?;
            if version != 1 {
                return Err(der::Tag::Integer.value_error());
            }
            let private_key: OctetStringRef<'_> = r.decode()?;
            let curve = ContextSpecific::<ObjectIdentifier>::decode_explicit(r, TagNumber::N0)?
                .map(|field| field.value);
            // Skip the optional public key.
            while !r.is_finished() {
                let _: der::asn1::AnyRef<'_> = r.decode()?;
            }
            Ok(Sec1Info {
                curve,
                private_key_len: private_key.as_bytes().len(),
            })
        })
        .ok()?;
    reader.finish(info).ok()
}

/// Whether `der` looks like a PKCS#8 `EncryptedPrivateKeyInfo`:
/// `SEQUENCE { AlgorithmIdentifier, OCTET STRING }` with a PBES2 or PBES1
/// algorithm.
fn is_encrypted_pkcs8(der: &[u8]) -> bool {
    let Ok(mut reader) = SliceReader::new(der) else {
        return false;
    };
    reader
        .sequence(|r| {
            let algorithm: AlgorithmIdentifierRef<'_> = r.decode()?;
            let _: OctetStringRef<'_> = r.decode()?;
            Ok(algorithm.oid)
        })
        .is_ok_and(|oid| oid == OID_PBES2 || oid.to_string().starts_with("1.2.840.113549.1.5."))
}

struct PemBlock<'a> {
    label: &'a str,
    text: &'a str,
}

/// The `-----BEGIN X----- ... -----END X-----` blocks of `text`, in order.
fn pem_blocks(text: &str) -> impl Iterator<Item = Result<PemBlock<'_>, KeyError>> {
    const BEGIN: &str = "-----BEGIN ";
    let mut rest = text;
    std::iter::from_fn(move || {
        let start = rest.find(BEGIN)?;
        let after_begin = &rest[start + BEGIN.len()..];
        let Some(label_end) = after_begin.find("-----") else {
            rest = "";
            return Some(Err(KeyError::InvalidPem(
                "unterminated BEGIN line".to_owned(),
            )));
        };
        let label = &after_begin[..label_end];
        let end_line = format!("-----END {label}-----");
        let Some(end) = rest[start..].find(&end_line) else {
            rest = "";
            return Some(Err(KeyError::InvalidPem(format!(
                "missing \"-----END {label}-----\""
            ))));
        };
        let block_end = start + end + end_line.len();
        let block = &rest[start..block_end];
        rest = &rest[block_end..];
        Some(Ok(PemBlock { label, text: block }))
    })
}

/// Generate an RSA key of `bits` bits (at least 2048) with exponent 65537.
pub fn generate_rsa(
    rng: &mut (impl CryptoRng + RngCore),
    bits: usize,
) -> Result<PrivateKey, KeyError> {
    if bits < MIN_RSA_BITS {
        return Err(KeyError::RsaKeyTooSmall(bits));
    }
    let key =
        rsa::RsaPrivateKey::new(rng, bits).map_err(|e| KeyError::Generation(e.to_string()))?;
    Ok(PrivateKey::Rsa(Box::new(key)))
}

/// Generate an EC P-256 key.
pub fn generate_ec_p256(rng: &mut (impl CryptoRng + RngCore)) -> PrivateKey {
    PrivateKey::EcP256(Box::new(p256::SecretKey::random(rng)))
}

/// Generate an EC P-384 key.
pub fn generate_ec_p384(rng: &mut (impl CryptoRng + RngCore)) -> PrivateKey {
    PrivateKey::EcP384(Box::new(p384::SecretKey::random(rng)))
}

/// Generate an Ed25519 key.
pub fn generate_ed25519(rng: &mut (impl CryptoRng + RngCore)) -> PrivateKey {
    PrivateKey::Ed25519(Box::new(ed25519_dalek::SigningKey::generate(rng)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 §3.1: the example RSA key and its thumbprint.
    #[test]
    fn rfc7638_example_thumbprint() {
        let parts = PublicParts::Rsa {
            n: "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86z\
                wu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5Js\
                GY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMic\
                AtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-\
                bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csF\
                Cur-kEgU8awapJzKnqDKgw"
                .to_owned(),
            e: "AQAB".to_owned(),
        };
        assert_eq!(
            parts.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn deterministic_rng_is_deterministic_and_not_constant() {
        let mut a = DeterministicRng {
            seed: Zeroizing::new([7; 64]),
            counter: 0,
            block: Zeroizing::new([0; 64]),
            pos: 64,
        };
        let mut b = DeterministicRng {
            seed: Zeroizing::new([7; 64]),
            counter: 0,
            block: Zeroizing::new([0; 64]),
            pos: 64,
        };
        let mut x = [0u8; 200];
        let mut y = [0u8; 200];
        a.fill_bytes(&mut x[..13]);
        a.fill_bytes(&mut x[13..]);
        b.fill_bytes(&mut y);
        assert_eq!(x, y);
        assert_ne!(x[..64], x[64..128]);
    }

    #[test]
    fn pem_blocks_skips_parameters() {
        let text =
            "junk\n-----BEGIN A-----\nAA==\n-----END A-----\n-----BEGIN B-----\n-----END B-----";
        let labels: Vec<_> = pem_blocks(text).map(|b| b.unwrap().label).collect();
        assert_eq!(labels, ["A", "B"]);
        assert!(
            pem_blocks("-----BEGIN A-----\nAA==\n")
                .next()
                .unwrap()
                .is_err()
        );
    }
}
