//! `templates`: custom templates and translations.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Template settings (MAS `templates`). Vestibule embeds its templates and
/// assets; these paths override them when set.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TemplatesConfig {
    /// Directory to load templates from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Frontend assets manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assets_manifest: Option<PathBuf>,
    /// Directory to load translations from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub translations_path: Option<PathBuf>,
}
