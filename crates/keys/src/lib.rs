//! Key handling for Vestibule: signing keys, JWKS, JWT signing and the
//! symmetric encrypter.
//!
//! This crate owns everything Vestibule does with key material:
//!
//! * [`PrivateKey`] loads the asymmetric keys configured in MAS's
//!   `secrets.keys[]` (PEM or DER; PKCS#1, PKCS#8 and SEC1; RSA, EC P-256,
//!   EC P-384 and Ed25519), exports their public half as a JWK (RFC 7517/7518,
//!   RFC 8037), computes RFC 7638 thumbprints and produces JWS signatures.
//! * [`Keystore`] is the set of signing keys: it serves the JWKS document,
//!   lists the supported signing algorithms for discovery, and signs (and
//!   verifies) compact JWTs such as ID tokens.
//! * [`Encrypter`] is the AEAD (XChaCha20-Poly1305) keyed by MAS's
//!   `secrets.encryption`, used for secrets stored in the database and for
//!   cookies, and the source of derived subkeys.
//!
//! # A compile-time firewall
//!
//! `rsa`, `p256`, `p384`, `ed25519-dalek`, `chacha20poly1305` and their
//! dependency trees are heavy to compile. Only this crate depends on them;
//! the rest of the workspace sees this crate's small API. Editing the server
//! therefore never recompiles the crypto stack (it is built once, and
//! optimised even in dev builds), and the server's code never names a crypto
//! crate, so swapping or upgrading one touches only this crate. Errors are
//! flattened into [`KeyError`] so that crypto crates' types do not leak into
//! signatures elsewhere (the [`PrivateKey`] variants are the one deliberate
//! exception, for callers that need the raw key).
//!
//! # Randomness
//!
//! Nothing here reads ambient randomness: every function that needs it takes
//! an rng parameter. [`PrivateKey::sign`] is deterministic (RFC 6979 for
//! ECDSA, inherent for Ed25519, and a secret-derived salt and blinding factor
//! for RSA; see its docs); [`PrivateKey::sign_with_rng`] uses the caller's rng.
//!
//! Debug output of every type holding key material prints `[redacted]`.

mod encrypter;
mod error;
mod jwt;
mod keystore;
mod private_key;
mod public_key;

pub use encrypter::Encrypter;
pub use error::KeyError;
pub use keystore::{KeyEntry, Keystore};
pub use private_key::{
    PrivateKey, generate_ec_p256, generate_ec_p384, generate_ed25519, generate_rsa,
};
pub use public_key::{
    HMAC_ALGS, PublicKey, VerifiedJws, peek_jws_claims, peek_jws_header, sign_jws_hmac,
    verify_jws_hmac, verify_jws_with_jwks,
};

/// Minimum RSA modulus size accepted when loading or generating keys.
pub const MIN_RSA_BITS: usize = 2048;
