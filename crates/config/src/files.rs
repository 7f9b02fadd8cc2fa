//! Step 5: `*_file` variants are read, so that consumers read one field.
//!
//! For every pair (`client_secret` / `client_secret_file`, ...), setting both
//! is an error; when only the file is set, its content (minus one trailing
//! newline) is stored in the inline field. The `*_file` field is kept, for
//! diagnostics. Relative paths are relative to the directory of the
//! configuration file that named them (`load_files`) or to the given base
//! directory (`load_strs`).

use std::path::{Path, PathBuf};

use crate::{Config, ConfigError, Secret, path};

/// Where a key path came from.
pub(crate) trait Origin {
    /// The name of the source that set `at`.
    fn file_of(&self, at: &str) -> String;
    /// The directory relative `*_file` paths set at `at` are resolved from.
    fn base_dir_of(&self, at: &str) -> PathBuf;
}

/// Reads every `*_file` variant of `config`.
pub(crate) fn resolve(config: &mut Config, origin: &dyn Origin) -> Result<(), ConfigError> {
    let r = Resolver { origin };

    let db = &mut config.database;
    r.pair(
        &mut db.password,
        db.password_file.as_deref(),
        "database",
        "password",
    )?;
    r.pair(
        &mut db.ssl_ca,
        db.ssl_ca_file.as_deref(),
        "database",
        "ssl_ca",
    )?;
    r.pair(
        &mut db.ssl_certificate,
        db.ssl_certificate_file.as_deref(),
        "database",
        "ssl_certificate",
    )?;
    r.pair(
        &mut db.ssl_key,
        db.ssl_key_file.as_deref(),
        "database",
        "ssl_key",
    )?;

    let secrets = &mut config.secrets;
    r.pair(
        &mut secrets.encryption,
        secrets.encryption_file.as_deref(),
        "secrets",
        "encryption",
    )?;
    for (i, key) in secrets.keys.iter_mut().enumerate() {
        let at = path::index("secrets.keys", i);
        r.pair(&mut key.key, key.key_file.as_deref(), &at, "key")?;
        r.pair(
            &mut key.password,
            key.password_file.as_deref(),
            &at,
            "password",
        )?;
    }

    let matrix = &mut config.matrix;
    r.pair(
        &mut matrix.secret,
        matrix.secret_file.as_deref(),
        "matrix",
        "secret",
    )?;

    for (i, client) in config.clients.iter_mut().enumerate() {
        r.pair(
            &mut client.client_secret,
            client.client_secret_file.as_deref(),
            &path::index("clients", i),
            "client_secret",
        )?;
    }

    for (i, provider) in config.upstream_oauth2.providers.iter_mut().enumerate() {
        let at = path::index("upstream_oauth2.providers", i);
        r.pair(
            &mut provider.client_secret,
            provider.client_secret_file.as_deref(),
            &at,
            "client_secret",
        )?;
        if let Some(apple) = &mut provider.sign_in_with_apple {
            r.pair(
                &mut apple.private_key,
                apple.private_key_file.as_deref(),
                &path::key(&at, "sign_in_with_apple"),
                "private_key",
            )?;
        }
    }

    for (i, scheme) in config.passwords.schemes.iter_mut().enumerate() {
        r.pair(
            &mut scheme.secret,
            scheme.secret_file.as_deref(),
            &path::index("passwords.schemes", i),
            "secret",
        )?;
    }

    for (i, listener) in config.http.listeners.iter_mut().enumerate() {
        if let Some(tls) = &mut listener.tls {
            let at = format!("http.listeners[{i}].tls");
            r.pair(
                &mut tls.certificate,
                tls.certificate_file.as_deref(),
                &at,
                "certificate",
            )?;
            r.pair(&mut tls.key, tls.key_file.as_deref(), &at, "key")?;
            r.pair(
                &mut tls.password,
                tls.password_file.as_deref(),
                &at,
                "password",
            )?;
        }
    }
    Ok(())
}

struct Resolver<'a> {
    origin: &'a dyn Origin,
}

/// A value that can be read from a file.
trait FromFile {
    fn from_file(content: String) -> Self;
}

impl FromFile for String {
    fn from_file(content: String) -> Self {
        content
    }
}

impl FromFile for Secret {
    fn from_file(content: String) -> Self {
        Secret::from(content)
    }
}

impl Resolver<'_> {
    fn pair<T: FromFile>(
        &self,
        inline: &mut Option<T>,
        file: Option<&Path>,
        parent: &str,
        name: &str,
    ) -> Result<(), ConfigError> {
        let Some(file) = file else { return Ok(()) };
        let file_key = path::key(parent, &format!("{name}_file"));
        if inline.is_some() {
            let at = path::key(parent, name);
            return Err(ConfigError::Invalid {
                message: format!(
                    "both `{name}` and `{name}_file` are set; they are mutually exclusive, keep \
                     one"
                ),
                file: self.origin.file_of(&at),
                path: at,
            });
        }
        let full = if file.is_absolute() {
            file.to_path_buf()
        } else {
            self.origin.base_dir_of(&file_key).join(file)
        };
        let bytes = std::fs::read(&full).map_err(|source| ConfigError::SecretFile {
            file: self.origin.file_of(&file_key),
            path: file_key.clone(),
            secret_file: full.clone(),
            source,
        })?;
        let mut content = String::from_utf8(bytes).map_err(|_| ConfigError::Invalid {
            message: format!(
                "`{}` is not UTF-8 text (binary DER keys are not supported: convert to PEM)",
                full.display()
            ),
            file: self.origin.file_of(&file_key),
            path: file_key.clone(),
        })?;
        if content.ends_with('\n') {
            content.pop();
            if content.ends_with('\r') {
                content.pop();
            }
        }
        *inline = Some(T::from_file(content));
        Ok(())
    }
}
