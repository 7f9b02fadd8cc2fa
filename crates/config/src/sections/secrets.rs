//! `secrets`: the encryption key and the signing keys.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Secret;

/// Application secrets (MAS `secrets`). Required by MAS; Vestibule checks its
/// presence separately ([`crate::Config::check_required_sections`]) so that a
/// zero-configuration start can generate it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// Encryption key for cookies and database fields: 32 bytes, hex-encoded
    /// (64 hex characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{64}$"))]
    pub encryption: Option<Secret>,
    /// File holding the hex encryption key (read into `encryption`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_file: Option<PathBuf>,
    /// Signing keys.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyConfig>,
    /// Directory holding unencrypted key files (MAS `keys_dir`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys_dir: Option<PathBuf>,
}

impl SecretsConfig {
    /// The decoded encryption key, if `encryption` is set and valid.
    pub fn encryption_key(&self) -> Option<[u8; 32]> {
        decode_hex_32(self.encryption.as_ref()?.expose())
    }
}

/// Decodes exactly 32 bytes from 64 hex characters.
pub(crate) fn decode_hex_32(s: &str) -> Option<[u8; 32]> {
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// One signing key: `key` or `key_file`, optionally encrypted with `password`
/// or `password_file`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct KeyConfig {
    /// JWK key ID; derived from the key when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Password of an encrypted PKCS#8 key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// File holding the password (read into `password`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// The key, PEM-encoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<Secret>,
    /// File holding the key (read into `key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}
