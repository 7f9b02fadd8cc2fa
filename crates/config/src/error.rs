//! Errors and warnings produced while loading a configuration.

use std::path::PathBuf;

/// A configuration error. Every variant names the configuration source (file
/// name) and, where there is one, the key path (e.g. `clients[0].client_secret`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A configuration file could not be read.
    #[error("{file}: cannot read configuration file: {source}")]
    Read {
        /// The configuration file.
        file: String,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A configuration source is not valid YAML (or not a mapping).
    #[error("{file}: invalid YAML: {message}")]
    Syntax {
        /// The configuration source.
        file: String,
        /// What is wrong, with the location when known.
        message: String,
    },

    /// A `${VAR}` placeholder names a variable that is not set.
    #[error("{path}: environment variable `{var}` is not set (referenced in {file})")]
    MissingEnv {
        /// The variable name.
        var: String,
        /// The key path of the value holding the placeholder.
        path: String,
        /// The configuration source.
        file: String,
    },

    /// A value is missing, misspelled, of the wrong type, or breaks a rule.
    #[error("{path}: {message} (in {file})")]
    Invalid {
        /// The key path (`.` for the root).
        path: String,
        /// What is wrong.
        message: String,
        /// The configuration source(s) the value came from.
        file: String,
    },

    /// A `*_file` variant points to a file that cannot be read.
    #[error("{path}: cannot read `{}`: {source} (in {file})", secret_file.display())]
    SecretFile {
        /// The key path of the `*_file` setting.
        path: String,
        /// The file that could not be read.
        secret_file: PathBuf,
        /// The configuration source that named it.
        file: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl ConfigError {
    /// The key path the error is about, when there is one.
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::Read { .. } | Self::Syntax { .. } => None,
            Self::MissingEnv { path, .. }
            | Self::Invalid { path, .. }
            | Self::SecretFile { path, .. } => Some(path),
        }
    }
}

/// A non-fatal finding: the configuration was accepted, possibly after being
/// rewritten to its canonical form, which the message shows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// The key path the warning is about.
    pub path: String,
    /// What was done and what to write instead.
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "warning: {}: {}", self.path, self.message)
    }
}
