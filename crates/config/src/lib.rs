//! Loading of Vestibule's configuration, which is MAS's (Matrix Authentication
//! Service) YAML configuration format.
//!
//! [`load_files`] and [`load_strs`] run this pipeline (order matters):
//!
//! 1. **Parse and interpolate**: each
//!    source is parsed to a YAML value (YAML merge keys `<<` applied), then
//!    `${VAR}` placeholders in string scalars are replaced from the
//!    environment closure. A value may mix text and several placeholders; `$$`
//!    is a literal `$`. A missing variable is an error naming the variable, the
//!    key path and the file.
//! 2. **Rewrite known deviations** (per file): a top-level `listeners` moves to
//!    `http.listeners` and a resource named `oauth2` becomes `oauth`, each with
//!    a [`Warning`] showing the canonical form.
//! 3. **Merge** the files in order: mappings deep-merge, later files win,
//!    sequences and scalars are replaced wholesale (figment's behaviour, as in
//!    MAS). The source of every key is remembered so errors can name the file.
//!    The merged document is then normalised: MAS's `synapse_modern` /
//!    `synapse_legacy` homeserver kinds, an upstream provider's missing
//!    `token_endpoint_auth_method`, and custom claims imports (a Vestibule
//!    extension, moved to `claims_imports.custom` with a warning each).
//! 4. **Deserialize** into [`Config`] through `serde_path_to_error`; every
//!    struct denies unknown fields, so a misspelled key or a bad value fails
//!    with its full path (`upstream_oauth2.providers[0].claims_imports.localpart.action`).
//!    Missing sections and fields take MAS's defaults.
//! 5. **Read `*_file` variants** (`secrets.encryption_file`,
//!    `clients[].client_secret_file`, `matrix.secret_file`...): the content,
//!    minus a trailing newline, is stored in the inline field so consumers read
//!    one field. Setting both forms is an error; so is an unreadable file.
//! 6. **Validate** semantic rules (URLs, ULIDs, the 32-byte hex encryption key,
//!    client authentication methods and their secrets, claims import rules...).
//!
//! `secrets` and `matrix` are required by MAS, but loading does not require
//! them so that a zero-configuration start can generate them; call
//! [`Config::check_required_sections`] for MAS's rule.
//!
//! Secrets are [`Secret`]s: `Debug` hides them, [`Config::redacted`] replaces
//! each one with `"[redacted]"`, plain serialization writes them (for
//! `config generate`). [`schema`] gives the JSON schema of [`Config`].

mod error;
mod files;
mod interpolate;
mod merge;
mod path;
mod rewrite;
mod secret;
pub mod sections;
mod validate;

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

pub use crate::{
    error::{ConfigError, Warning},
    secret::{REDACTED, Secret},
    sections::{
        account::AccountConfig,
        branding::BrandingConfig,
        captcha::{CaptchaConfig, CaptchaServiceKind},
        clients::{ClientAuthMethod, ClientConfig},
        database::{DatabaseConfig, PgSslMode},
        email::{EmailConfig, EmailSmtpMode, EmailTransportKind},
        experimental::{ExperimentalConfig, InactiveSessionExpirationConfig, SessionLimitConfig},
        guest_invites::GuestInvitesConfig,
        http::{
            BindConfig, GraphQLIntrospection, HttpConfig, ListenerConfig, Resource, TlsConfig,
            UnixOrTcp,
        },
        matrix::{HomeserverKind, MatrixConfig},
        oauth::OAuthConfig,
        passwords::{HashingScheme, PasswordAlgorithm, PasswordsConfig},
        policy::PolicyConfig,
        rate_limiting::{RateLimiterConfig, RateLimitingConfig},
        secrets::{KeyConfig, SecretsConfig},
        telemetry::{
            MetricsConfig, MetricsExporterKind, Propagator, SentryConfig, TelemetryConfig,
            TracingConfig, TracingExporterKind,
        },
        templates::TemplatesConfig,
        upstream_oauth2::{
            AccountNameImport, AttributeImport, AttributeRequirement, ClaimsImports,
            CustomClaimImport, DiscoveryMode, ImportAction, JwsAlg, LocalpartImport,
            OnBackchannelLogout, OnConflict, PkceMethod, ResponseMode, SignInWithApple,
            SubjectImport, TokenAuthMethod, UpstreamOAuth2Config, UpstreamProviderConfig,
        },
    },
    validate::is_ulid,
};

/// The whole configuration: MAS's sections (plus `oauth` extensions, see
/// [`OAuthConfig`]). Every section is optional and defaults to MAS's defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Web server.
    pub http: HttpConfig,
    /// Database connection.
    pub database: DatabaseConfig,
    /// Encryption and signing keys (required by MAS).
    pub secrets: SecretsConfig,
    /// Homeserver (required by MAS).
    pub matrix: MatrixConfig,
    /// Static OAuth 2.0 clients.
    pub clients: Vec<ClientConfig>,
    /// Local passwords.
    pub passwords: PasswordsConfig,
    /// Account management.
    pub account: AccountConfig,
    /// Sending emails.
    pub email: EmailConfig,
    /// Upstream OAuth 2.0 / OIDC providers.
    pub upstream_oauth2: UpstreamOAuth2Config,
    /// Authorization policy.
    pub policy: PolicyConfig,
    /// Branding.
    pub branding: BrandingConfig,
    /// CAPTCHA.
    pub captcha: CaptchaConfig,
    /// Rate limiting.
    pub rate_limiting: RateLimitingConfig,
    /// OAuth 2.0 protocol options.
    pub oauth: OAuthConfig,
    /// Guest invites by email.
    pub guest_invites: GuestInvitesConfig,
    /// Experimental settings.
    pub experimental: ExperimentalConfig,
    /// Traces, metrics, Sentry.
    pub telemetry: TelemetryConfig,
    /// Custom templates.
    pub templates: TemplatesConfig,
}

/// Name used in errors about the merged configuration as a whole.
const MERGED: &str = "the merged configuration";

impl Config {
    /// The effective configuration as JSON, every [`Secret`] replaced by
    /// `"[redacted]"`.
    pub fn redacted(&self) -> serde_json::Value {
        secret::with_redaction(|| serde_json::to_value(self)).unwrap_or(serde_json::Value::Null)
    }

    /// MAS's rule that `secrets` (with `encryption` and at least one key) and
    /// `matrix` (with `secret`) are present. Not part of loading so that a
    /// zero-configuration start can generate them instead.
    pub fn check_required_sections(&self) -> Result<(), ConfigError> {
        let missing = |path: &str, what: &str| ConfigError::Invalid {
            path: path.to_owned(),
            message: format!(
                "missing: MAS requires {what}; `vestibule config generate` writes one"
            ),
            file: MERGED.to_owned(),
        };
        if self.secrets.encryption.is_none() {
            return Err(missing(
                "secrets.encryption",
                "`secrets.encryption` or `secrets.encryption_file`",
            ));
        }
        if self.secrets.keys.is_empty() && self.secrets.keys_dir.is_none() {
            return Err(missing("secrets.keys", "at least one signing key"));
        }
        if self.matrix.secret.is_none() {
            return Err(missing(
                "matrix.secret",
                "`matrix.secret` or `matrix.secret_file`",
            ));
        }
        Ok(())
    }

    /// Access token lifetime in seconds (MAS keeps it in
    /// `experimental.access_token_ttl`).
    pub fn access_token_ttl(&self) -> u64 {
        self.experimental.access_token_ttl
    }
}

/// A loaded configuration and the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Deviations that were accepted (and rewritten), in order.
    pub warnings: Vec<Warning>,
}

/// Loads configuration files, merged in order. `*_file` paths are relative to
/// the directory of the file that names them.
pub fn load_files(
    paths: &[PathBuf],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let mut sources = Vec::with_capacity(paths.len());
    for path in paths {
        let name = path.display().to_string();
        let yaml = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: name.clone(),
            source,
        })?;
        let base_dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        sources.push(Source {
            name,
            yaml,
            base_dir,
        });
    }
    load(&sources, env)
}

/// Loads configuration sources given as `(name shown in errors, YAML)`,
/// merged in order. `*_file` paths are relative to `base_dir`.
pub fn load_strs(
    sources: &[(String, String)],
    env: &dyn Fn(&str) -> Option<String>,
    base_dir: &Path,
) -> Result<Loaded, ConfigError> {
    let sources = sources
        .iter()
        .map(|(name, yaml)| Source {
            name: name.clone(),
            yaml: yaml.clone(),
            base_dir: base_dir.to_path_buf(),
        })
        .collect::<Vec<_>>();
    load(&sources, env)
}

/// The JSON schema of [`Config`], with object keys sorted (stable output).
pub fn schema() -> serde_json::Value {
    sort_keys(schemars::schema_for!(Config).to_value())
}

fn sort_keys(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sort_keys(v)))
                    .collect(),
            )
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sort_keys).collect())
        }
        other => other,
    }
}

struct Source {
    name: String,
    yaml: String,
    base_dir: PathBuf,
}

struct Origins<'a> {
    sources: &'a [Source],
    provenance: &'a merge::Provenance,
}

impl Origins<'_> {
    fn source(&self, at: &str) -> Option<&Source> {
        self.provenance
            .source_of(at)
            .and_then(|i| self.sources.get(i))
    }
}

impl files::Origin for Origins<'_> {
    fn file_of(&self, at: &str) -> String {
        match self.source(at) {
            Some(source) => source.name.clone(),
            None if self.sources.len() == 1 => self.sources[0].name.clone(),
            None if self.sources.is_empty() => "the default configuration".to_owned(),
            None => self
                .sources
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    fn base_dir_of(&self, at: &str) -> PathBuf {
        self.source(at)
            .or_else(|| self.sources.last())
            .map_or_else(|| PathBuf::from("."), |s| s.base_dir.clone())
    }
}

fn parse(source: &Source) -> Result<Mapping, ConfigError> {
    let syntax = |message: String| ConfigError::Syntax {
        file: source.name.clone(),
        message,
    };
    let mut value: Value = serde_yaml::from_str(&source.yaml).map_err(|e| syntax(e.to_string()))?;
    value.apply_merge().map_err(|e| syntax(e.to_string()))?;
    match value {
        Value::Null => Ok(Mapping::new()),
        Value::Mapping(map) => Ok(map),
        _ => Err(syntax(
            "the top level must be a mapping of sections".to_owned(),
        )),
    }
}

fn load(sources: &[Source], env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    let mut warnings = Vec::new();
    let mut merged = Mapping::new();
    let mut provenance = merge::Provenance::default();

    for (idx, source) in sources.iter().enumerate() {
        let mut value = Value::Mapping(parse(source)?);
        interpolate::interpolate(&mut value, env, &source.name)?;
        let Value::Mapping(mut map) = value else {
            unreachable!("interpolation keeps the shape")
        };
        rewrite::fix_deviations(&mut map, &source.name, &mut warnings)?;
        merge::merge_into(&mut merged, map, idx, &mut provenance);
    }

    let origins = Origins {
        sources,
        provenance: &provenance,
    };
    let file_of = |at: &str| files::Origin::file_of(&origins, at);
    rewrite::normalize(&mut merged, &file_of, &mut warnings)?;

    let mut config: Config =
        serde_path_to_error::deserialize(Value::Mapping(merged)).map_err(|e| {
            let at = e.path().to_string();
            let at = if at == "." { String::new() } else { at };
            ConfigError::Invalid {
                file: file_of(&at),
                path: path::display(&at).to_owned(),
                message: e.into_inner().to_string(),
            }
        })?;

    files::resolve(&mut config, &origins)?;
    validate::validate(&config, &origins, &mut warnings)?;

    Ok(Loaded { config, warnings })
}
