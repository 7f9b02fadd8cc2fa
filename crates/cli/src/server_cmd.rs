//! `vestibule server`, including the zero-config start.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context;
use clap::Args;
use rand::rngs::OsRng;
use vestibule_domain::SystemClock;
use vestibule_server::routes::{Jwks, OidcConfiguration};

#[derive(Debug, Default, Args)]
pub struct ServerArgs {
    /// Do not apply pending database migrations at startup.
    #[arg(long)]
    no_migrate: bool,

    /// Address for a newly generated zero-config data directory (ignored
    /// when a config file is given or the data directory already exists).
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: String,
}

/// The `--bind` default, also used by `manage` for a new data directory.
pub(crate) const DEFAULT_BIND: &str = "127.0.0.1:8080";
const CONFIG_FILE: &str = "config.yaml";
const DATABASE_FILE: &str = "vestibule.db";

/// Zero-config: the data directory holds a generated config and an SQLite
/// database. Creates both on first start; reuses them afterwards.
pub(crate) fn zero_config(data_dir: &Path, bind: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    let config = data_dir.join(CONFIG_FILE);
    if config.exists() {
        println!("Using the data directory {}", data_dir.display());
    } else {
        let opts = crate::generate::Options {
            bind: bind.to_owned(),
            public_base: format!("http://{bind}/"),
            database_uri: format!("sqlite://{}", data_dir.join(DATABASE_FILE).display()),
        };
        let yaml = crate::generate::generate(&opts)?;
        crate::config_cmd::write_secret_file(&config, &yaml)?;
        println!("Created the data directory {}", data_dir.display());
    }
    println!("  config:   {}", config.display());
    println!("  database: {}", data_dir.join(DATABASE_FILE).display());
    Ok(config)
}

pub async fn run(config: &[PathBuf], data_dir: &Path, args: ServerArgs) -> anyhow::Result<()> {
    let paths = if config.is_empty() {
        vec![zero_config(data_dir, &args.bind)?]
    } else {
        config.to_vec()
    };
    let loaded = crate::config_cmd::load(&paths)?;
    let cfg = loaded.config;
    vestibule_server::bootstrap::validate(&cfg)?;

    let storage = vestibule_server::bootstrap::connect(&cfg).await?;
    if args.no_migrate {
        let status = storage.migration_status().await?;
        anyhow::ensure!(
            status.pending.is_empty(),
            "the database has pending migrations {:?}; run `vestibule database migrate` or start without --no-migrate",
            status.pending
        );
    } else {
        storage.migrate().await?;
    }
    let clock = Arc::new(SystemClock);
    let state = vestibule_server::bootstrap::build_state(&cfg, storage.clone(), clock.clone())?;
    vestibule_server::bootstrap::sync_config(
        state.repos.as_ref(),
        &cfg,
        &state.encrypter,
        clock.as_ref(),
        &mut OsRng,
    )
    .await?;

    let listeners = vestibule_server::listeners::bind(&state, &cfg.http.listeners).await?;
    for l in &listeners {
        for addr in l.addresses() {
            println!("Listening on {addr} ({})", l.name);
        }
    }
    println!("Issuer:    {}", state.urls.issuer());
    println!("Discovery: {}", state.urls.absolute::<OidcConfiguration>());
    println!("JWKS:      {}", state.urls.absolute::<Jwks>());
    // Before `Ready`: a SIGTERM from then on is a clean stop.
    let shutdown = vestibule_server::listeners::shutdown_signal();
    println!("Ready");

    // Homeserver jobs (provisioning, device sync) run next to the listeners
    // and stop with them.
    let worker = vestibule_server::jobs::JobWorker::from_state(
        &state,
        vestibule_server::jobs::WorkerSettings::default(),
    );
    let worker = tokio::spawn(worker.run(shutdown.clone()));
    let served = vestibule_server::listeners::serve(listeners, shutdown).await;
    if served.is_err() {
        // Serving failed without a shutdown signal: the worker would not stop.
        worker.abort();
    }
    if let Err(e) = worker.await
        && e.is_panic()
    {
        tracing::error!(error = %e, "the job worker crashed");
    }
    served?;
    storage.close().await;
    println!("Stopped");
    Ok(())
}
