//! `passwords`: the local password database.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Secret;

/// Password hashing algorithm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PasswordAlgorithm {
    /// bcrypt.
    Bcrypt,
    /// Argon2id (default).
    #[default]
    Argon2id,
    /// PBKDF2.
    Pbkdf2,
}

/// Local password settings (MAS `passwords`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordsConfig {
    /// Whether password login is enabled (default `true`).
    pub enabled: bool,
    /// Hashing schemes; the highest `version` hashes new passwords.
    pub schemes: Vec<HashingScheme>,
    /// Minimum zxcvbn score, 0 to 4 (default 3).
    pub minimum_complexity: u8,
}

impl Default for PasswordsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            schemes: vec![HashingScheme {
                version: 1,
                algorithm: PasswordAlgorithm::Argon2id,
                unicode_normalization: false,
                cost: None,
                secret: None,
                secret_file: None,
            }],
            minimum_complexity: 3,
        }
    }
}

/// A password hashing scheme.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HashingScheme {
    /// Unique version number.
    pub version: u16,
    /// Hashing algorithm.
    pub algorithm: PasswordAlgorithm,
    /// Apply NFKC normalisation before hashing (as Synapse does).
    #[serde(default)]
    pub unicode_normalization: bool,
    /// bcrypt cost (default 12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<u32>,
    /// Pepper mixed into the hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// File holding the pepper (read into `secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
}
