//! `matrix`: the homeserver.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::Secret;

/// The kind of homeserver. MAS's `synapse_modern` and `synapse_legacy` are
/// accepted with a warning and treated as `synapse` (Vestibule always talks
/// to Synapse's `/_synapse/mas/*` API).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HomeserverKind {
    /// Synapse.
    #[default]
    Synapse,
    /// Synapse, without ever writing to it (for trial roll-outs).
    SynapseReadOnly,
}

/// Homeserver settings (MAS `matrix`). Required by MAS; see
/// [`crate::Config::check_required_sections`].
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MatrixConfig {
    /// The kind of homeserver.
    pub kind: HomeserverKind,
    /// The homeserver's server name (`server_name` in Synapse).
    pub homeserver: String,
    /// Shared secret for the homeserver's admin API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// File holding the shared secret (read into `secret`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// Base URL of the homeserver's client API.
    #[schemars(with = "String", url)]
    pub endpoint: Url,
}

impl Default for MatrixConfig {
    fn default() -> Self {
        Self {
            kind: HomeserverKind::Synapse,
            homeserver: "localhost:8008".to_owned(),
            secret: None,
            secret_file: None,
            endpoint: Url::parse("http://localhost:8008/")
                .unwrap_or_else(|_| unreachable!("static URL")),
        }
    }
}
