//! The error type of this crate.

/// Everything that can go wrong loading keys, signing or encrypting.
///
/// Messages never contain key material. Errors from the underlying crypto
/// crates are flattened into strings so that their types stay out of this
/// crate's public API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The input is neither a PEM block nor a DER structure we recognise.
    #[error("not a PEM or DER private key")]
    NotAKey,

    /// A PEM block was found but its label is not one of a private key.
    #[error(
        "unsupported PEM label {0:?}: expected \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\""
    )]
    UnsupportedPemLabel(String),

    /// The PEM text is malformed (bad base64, missing END line, ...).
    #[error("invalid PEM: {0}")]
    InvalidPem(String),

    /// The structure was recognised but the key inside is invalid.
    #[error("invalid {format} private key: {reason}")]
    InvalidKey {
        /// The container format: "PKCS#1", "PKCS#8" or "SEC1".
        format: &'static str,
        /// What the decoder complained about.
        reason: String,
    },

    /// A PKCS#8 key of an algorithm we cannot use (e.g. Ed448, X25519, DSA).
    #[error("unsupported key algorithm {0}: supported are RSA, EC P-256, EC P-384 and Ed25519")]
    UnsupportedKeyAlgorithm(String),

    /// An EC key on a curve other than P-256 and P-384.
    #[error("unsupported curve {0}: supported curves are P-256 and P-384")]
    UnsupportedCurve(String),

    /// RSA keys must have a modulus of at least 2048 bits.
    #[error("RSA key too small ({0} bits < 2048 bits)")]
    RsaKeyTooSmall(usize),

    /// The key is password-protected; this build cannot decrypt it.
    #[error(
        "encrypted private keys are not supported: decrypt the key first (e.g. `openssl pkcs8 -in encrypted.pem -out plain.pem`)"
    )]
    EncryptedNotSupported,

    /// Key generation failed.
    #[error("key generation failed: {0}")]
    Generation(String),

    /// The JWS algorithm is unknown or cannot be used with this key.
    #[error("algorithm {alg:?} cannot be used with a {key} key")]
    AlgorithmNotSupported {
        /// The requested JWS `alg`.
        alg: String,
        /// The kind of key, e.g. "RSA" or "EC P-256".
        key: &'static str,
    },

    /// Signing failed in the underlying crypto library.
    #[error("signing failed: {0}")]
    Signing(String),

    /// Serialising a key or a JWT failed.
    #[error("encoding failed: {0}")]
    Encoding(String),

    /// A keystore needs at least one key.
    #[error("the keystore is empty: configure at least one signing key")]
    EmptyKeystore,

    /// Two keys in a keystore share a key id.
    #[error("duplicate key id {0:?}")]
    DuplicateKid(String),

    /// No key in the keystore can sign with the algorithm.
    #[error("no key can sign with algorithm {0:?}")]
    NoKeyForAlgorithm(String),

    /// A JWT is malformed or was not issued by a key of this keystore.
    #[error("invalid JWT: {0}")]
    InvalidJwt(&'static str),

    /// A signature does not verify.
    #[error("signature verification failed")]
    InvalidSignature,

    /// AEAD encryption failed.
    #[error("encryption failed")]
    Encryption,

    /// AEAD decryption failed: wrong key, wrong associated data, tampered or
    /// truncated ciphertext. Deliberately says no more than that.
    #[error("decryption failed")]
    Decryption,

    /// A string that should be base64 is not.
    #[error("invalid base64")]
    InvalidBase64,
}
