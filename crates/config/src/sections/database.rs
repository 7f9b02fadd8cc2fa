//! `database`: how to reach the database.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Secret;

/// PostgreSQL SSL mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PgSslMode {
    /// Only try a non-SSL connection.
    Disable,
    /// Try non-SSL first, then SSL.
    Allow,
    /// Try SSL first, then non-SSL.
    Prefer,
    /// Only SSL.
    Require,
    /// Only SSL, verifying the CA.
    VerifyCa,
    /// Only SSL, verifying the CA and the host name.
    VerifyFull,
}

/// Database connection settings (MAS `database`). Either `uri` or the split
/// options (`host`, `port`, `socket`, `username`, `password`, `database`).
/// Vestibule also accepts `sqlite:` URIs.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Connection URI, e.g. `postgresql://user:pass@host/db`. It may carry a
    /// password, so it is treated as a secret. MAS's default is `postgresql://`
    /// (libpq defaults / `PG*` variables); unset here means the same.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<Secret>,
    /// Host to connect to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Port to connect to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Directory containing the UNIX socket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    /// User name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// File holding the password (read at load time into `password`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Database name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// SSL mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_mode: Option<PgSslMode>,
    /// PEM root certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_ca: Option<String>,
    /// File holding the PEM root certificate (read into `ssl_ca`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_ca_file: Option<PathBuf>,
    /// PEM client certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_certificate: Option<String>,
    /// File holding the PEM client certificate (read into `ssl_certificate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_certificate_file: Option<PathBuf>,
    /// PEM client key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_key: Option<Secret>,
    /// File holding the PEM client key (read into `ssl_key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_key_file: Option<PathBuf>,
    /// Maximum number of pooled connections (default 10).
    pub max_connections: u32,
    /// Minimum number of pooled connections (default 0).
    pub min_connections: u32,
    /// Connection timeout in seconds (default 30).
    pub connect_timeout: u64,
    /// Idle timeout of a connection in seconds (default 600).
    pub idle_timeout: Option<u64>,
    /// Maximum lifetime of a connection in seconds (default 1800).
    pub max_lifetime: Option<u64>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            uri: None,
            host: None,
            port: None,
            socket: None,
            username: None,
            password: None,
            password_file: None,
            database: None,
            ssl_mode: None,
            ssl_ca: None,
            ssl_ca_file: None,
            ssl_certificate: None,
            ssl_certificate_file: None,
            ssl_key: None,
            ssl_key_file: None,
            max_connections: 10,
            min_connections: 0,
            connect_timeout: 30,
            idle_timeout: Some(600),
            max_lifetime: Some(1800),
        }
    }
}

impl DatabaseConfig {
    /// Whether any of the split connection options is set.
    pub fn has_split_options(&self) -> bool {
        self.host.is_some()
            || self.port.is_some()
            || self.socket.is_some()
            || self.username.is_some()
            || self.password.is_some()
            || self.password_file.is_some()
            || self.database.is_some()
    }
}
