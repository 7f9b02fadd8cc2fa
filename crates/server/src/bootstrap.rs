//! From a loaded config to a running state: database, keys, config sync.

use std::{sync::Arc, time::Duration};

use rand::RngCore;
use vestibule_config::{ClientAuthMethod as CfgAuth, Config, DatabaseConfig, SecretsConfig};
use vestibule_domain::{
    Clock, Ulid,
    oauth2::{ApplicationType, ClientAuthMethod},
};
use vestibule_keys::{Encrypter, Keystore, PrivateKey};
use vestibule_storage::{
    BoxRepository, RepositoryFactory, StorageError, oauth2::ClientParams,
    upstream::UpstreamProviderParams,
};
use vestibule_storage_sql::{PoolSettings, SqlStorage};

use crate::AppState;

/// Startup failures, each naming the config key it comes from.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("{path}: {message}")]
    Config { path: String, message: String },
    #[error("database: {0}")]
    Database(#[from] StorageError),
}

fn config_err(path: impl Into<String>, message: impl std::fmt::Display) -> BootstrapError {
    BootstrapError::Config {
        path: path.into(),
        message: message.to_string(),
    }
}

/// The database URL from `database.uri` or MAS's split options.
pub fn database_url(cfg: &DatabaseConfig) -> Result<String, BootstrapError> {
    if let Some(uri) = &cfg.uri {
        return Ok(uri.expose().to_owned());
    }
    let mut url =
        url::Url::parse("postgresql://localhost/").map_err(|e| config_err("database", e))?;
    if let Some(host) = &cfg.host {
        url.set_host(Some(host))
            .map_err(|e| config_err("database.host", e))?;
    }
    if let Some(port) = cfg.port {
        let _ = url.set_port(Some(port));
    }
    if let Some(user) = &cfg.username {
        let _ = url.set_username(user);
    }
    if let Some(password) = &cfg.password {
        let _ = url.set_password(Some(password.expose()));
    }
    if let Some(db) = &cfg.database {
        url.set_path(db);
    }
    if let Some(socket) = &cfg.socket {
        url.query_pairs_mut()
            .append_pair("host", &socket.to_string_lossy());
    }
    Ok(url.to_string())
}

pub fn pool_settings(cfg: &DatabaseConfig) -> PoolSettings {
    PoolSettings {
        max_connections: cfg.max_connections,
        min_connections: cfg.min_connections,
        connect_timeout: Duration::from_secs(cfg.connect_timeout),
        idle_timeout: cfg.idle_timeout.map(Duration::from_secs),
        max_lifetime: cfg.max_lifetime.map(Duration::from_secs),
    }
}

/// Loads `secrets.keys` (and `secrets.keys_dir`) into a keystore.
pub fn keystore(cfg: &SecretsConfig) -> Result<Keystore, BootstrapError> {
    let mut entries = Vec::new();
    for (i, k) in cfg.keys.iter().enumerate() {
        let path = format!("secrets.keys[{i}]");
        let pem = k
            .key
            .as_ref()
            .ok_or_else(|| config_err(&path, "needs `key` or `key_file`"))?;
        let key = match &k.password {
            Some(password) => {
                PrivateKey::from_pem_encrypted(pem.expose(), password.expose().as_bytes())
            }
            None => PrivateKey::from_pem(pem.expose()),
        }
        .map_err(|e| config_err(format!("{path}.key"), e))?;
        entries.push((k.kid.clone(), key));
    }
    if let Some(dir) = &cfg.keys_dir {
        let read = std::fs::read_dir(dir)
            .map_err(|e| config_err("secrets.keys_dir", format!("{}: {e}", dir.display())))?;
        let mut files: Vec<_> = read
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for file in files {
            let bytes = std::fs::read(&file)
                .map_err(|e| config_err("secrets.keys_dir", format!("{}: {e}", file.display())))?;
            let key = PrivateKey::from_bytes(&bytes)
                .map_err(|e| config_err("secrets.keys_dir", format!("{}: {e}", file.display())))?;
            entries.push((None, key));
        }
    }
    Keystore::new(entries).map_err(|e| config_err("secrets.keys", e))
}

/// The AEAD for secrets at rest and cookies, from `secrets.encryption`.
pub fn encrypter(cfg: &SecretsConfig) -> Result<Encrypter, BootstrapError> {
    let key = cfg.encryption_key().ok_or_else(|| {
        config_err(
            "secrets.encryption",
            "missing or not 32 bytes of hex (64 hex characters)",
        )
    })?;
    Ok(Encrypter::new(&key))
}

/// Validates everything that needs more than parsing: the listeners use
/// only supported features, secrets load, the database URL is usable. Used
/// by `config check` and at startup.
pub fn validate(cfg: &Config) -> Result<(), BootstrapError> {
    crate::listeners::check_supported(&cfg.http.listeners).map_err(|e| match e {
        crate::listeners::ListenError::Config { path, message } => {
            BootstrapError::Config { path, message }
        }
        other @ crate::listeners::ListenError::Bind { .. } => config_err("http.listeners", other),
    })?;
    keystore(&cfg.secrets)?;
    encrypter(&cfg.secrets)?;
    crate::passwords::PasswordManager::from_config(&cfg.passwords)
        .map_err(|e| config_err("passwords.schemes", e))?;
    let url = database_url(&cfg.database)?;
    if vestibule_storage_sql::Engine::from_url(&url).is_none() {
        return Err(config_err(
            "database.uri",
            "expected a sqlite: or postgres:// URL",
        ));
    }
    Ok(())
}

pub async fn connect(cfg: &Config) -> Result<SqlStorage, BootstrapError> {
    let url = database_url(&cfg.database)?;
    Ok(SqlStorage::connect(&url, &pool_settings(&cfg.database)).await?)
}

fn auth_method(m: CfgAuth) -> ClientAuthMethod {
    match m {
        CfgAuth::None => ClientAuthMethod::None,
        CfgAuth::ClientSecretBasic => ClientAuthMethod::ClientSecretBasic,
        CfgAuth::ClientSecretPost => ClientAuthMethod::ClientSecretPost,
        CfgAuth::ClientSecretJwt => ClientAuthMethod::ClientSecretJwt,
        CfgAuth::PrivateKeyJwt => ClientAuthMethod::PrivateKeyJwt,
    }
}

/// Writes the static clients and upstream providers of the config into the
/// database (client secrets encrypted), disabling providers that left it.
pub async fn sync_config(
    repos: &dyn RepositoryFactory,
    cfg: &Config,
    encrypter: &Encrypter,
    clock: &dyn Clock,
    rng: &mut (dyn RngCore + Send),
) -> Result<(), BootstrapError> {
    let mut repo = repos.write().await?;
    for (i, c) in cfg.clients.iter().enumerate() {
        let path = format!("clients[{i}]");
        let id = Ulid::from_string(&c.client_id.to_uppercase())
            .map_err(|e| config_err(format!("{path}.client_id"), e))?;
        let encrypted_client_secret = c
            .client_secret
            .as_ref()
            .map(|s| {
                encrypter.encrypt_to_string(
                    &mut RngAdapter(rng),
                    b"client_secret",
                    s.expose().as_bytes(),
                )
            })
            .transpose()
            .map_err(|e| config_err(format!("{path}.client_secret"), e))?;
        let params = ClientParams {
            client_name: c.client_name.clone(),
            client_uri: c.client_uri.clone(),
            logo_uri: None,
            policy_uri: None,
            tos_uri: None,
            redirect_uris: c.redirect_uris.clone(),
            grant_types: vec![
                "authorization_code".to_owned(),
                "refresh_token".to_owned(),
                "client_credentials".to_owned(),
                "urn:ietf:params:oauth:grant-type:device_code".to_owned(),
            ],
            application_type: Some(ApplicationType::Web),
            token_endpoint_auth_method: auth_method(c.client_auth_method),
            encrypted_client_secret,
            jwks: c.jwks.clone(),
            jwks_uri: c.jwks_uri.clone(),
            id_token_signed_response_alg: None,
            metadata_digest: None,
        };
        repo.oauth2_clients()
            .upsert_static(clock, id, params)
            .await?;
    }
    sync_upstream_providers(&mut repo, cfg, clock).await?;
    repo.save().await?;
    Ok(())
}

/// Writes the upstream providers of the config into the database, in the
/// caller's transaction (re-enabling them), disables those that left the
/// config, and returns the configured ids in config order. Part of
/// [`sync_config`]; also used alone by `manage import-users --dry-run`,
/// which rolls its transactions back.
pub async fn sync_upstream_providers(
    repo: &mut BoxRepository,
    cfg: &Config,
    clock: &dyn Clock,
) -> Result<Vec<Ulid>, BootstrapError> {
    let mut keep = Vec::new();
    for (i, p) in cfg.upstream_oauth2.providers.iter().enumerate() {
        let id = Ulid::from_string(&p.id.to_uppercase())
            .map_err(|e| config_err(format!("upstream_oauth2.providers[{i}].id"), e))?;
        check_issuer_unchanged(repo, i, id, p.issuer.as_deref()).await?;
        repo.upstream_providers()
            .upsert(
                clock,
                id,
                UpstreamProviderParams {
                    issuer: p.issuer.clone(),
                    human_name: p.human_name.clone(),
                    brand_name: p.brand_name.clone(),
                },
            )
            .await?;
        keep.push(id);
    }
    repo.upstream_providers()
        .disable_all_except(clock, &keep)
        .await?;
    Ok(keep)
}

/// An account is the (issuer, subject) pair, but links are stored per
/// provider id: a provider whose configured `issuer` differs from the
/// stored one while accounts are linked through it would let the new
/// issuer's subjects sign in to the old issuer's accounts (S33). Startup
/// refuses that until the operator confirms the move with
/// `manage set-upstream-issuer`; without linked accounts the new issuer is
/// simply stored.
async fn check_issuer_unchanged(
    repo: &mut BoxRepository,
    index: usize,
    id: Ulid,
    configured: Option<&str>,
) -> Result<(), BootstrapError> {
    let Some(stored) = repo.upstream_providers().lookup(id).await? else {
        return Ok(());
    };
    if stored.issuer.as_deref() == configured {
        return Ok(());
    }
    let linked = repo.upstream_providers().count_linked_accounts(id).await?;
    if linked == 0 {
        return Ok(());
    }
    let shown = |i: Option<&str>| i.map_or_else(|| "(none)".to_owned(), |i| format!("`{i}`"));
    Err(config_err(
        format!("upstream_oauth2.providers[{index}].issuer"),
        format!(
            "provider {id} was configured with issuer {} and {linked} account(s) are linked \
             to its subjects; the configured issuer {} is another identity provider whose \
             subjects would sign in to those accounts. Restore the issuer, or give the \
             provider a new id; if the same IdP really moved (same subjects, same people), \
             confirm with `vestibule manage set-upstream-issuer {id} {}`",
            shown(stored.issuer.as_deref()),
            shown(configured),
            configured.unwrap_or("ISSUER"),
        ),
    ))
}

/// `rand` wants a sized `CryptoRng`; this adapts the `dyn RngCore` we pass
/// around. Only ever constructed over a cryptographically secure rng.
struct RngAdapter<'a>(&'a mut (dyn RngCore + Send));

impl RngCore for RngAdapter<'_> {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.0.try_fill_bytes(dest)
    }
}
impl rand::CryptoRng for RngAdapter<'_> {}

/// Builds the application state from a validated config and a connected,
/// migrated storage.
pub fn build_state(
    cfg: &Config,
    storage: SqlStorage,
    clock: Arc<dyn Clock>,
) -> Result<AppState, BootstrapError> {
    let keystore = keystore(&cfg.secrets)?;
    let encrypter = encrypter(&cfg.secrets)?;
    let homeserver =
        crate::homeserver::from_config(cfg).map_err(|e| config_err(e.path, e.message))?;
    AppState::new(
        Arc::new(storage),
        clock,
        crate::state::RngSource::Os,
        keystore,
        encrypter,
        cfg.clone(),
        homeserver,
    )
    .map_err(|e| {
        config_err(
            "upstream_oauth2",
            format!("the HTTP client cannot be built: {e}"),
        )
    })
}
