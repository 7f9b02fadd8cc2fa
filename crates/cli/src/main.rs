//! The `vestibule` binary.

mod config_cmd;
mod generate;
mod import;
mod manage;
mod server_cmd;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "vestibule",
    version,
    about = "A Matrix authentication service (MAS-compatible)"
)]
struct Cli {
    /// Configuration file(s), merged in order (later files win). Without any,
    /// Vestibule runs from a generated config in the data directory.
    #[arg(
        short,
        long = "config",
        global = true,
        env = "VESTIBULE_CONFIG",
        value_delimiter = ','
    )]
    config: Vec<PathBuf>,

    /// Data directory for the zero-config mode (generated config + SQLite).
    #[arg(
        long,
        global = true,
        env = "VESTIBULE_DATA_DIR",
        default_value = "vestibule-data"
    )]
    data_dir: PathBuf,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Server(server_cmd::ServerArgs),
    /// Generate, check and show configuration.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Database maintenance.
    #[command(subcommand)]
    Database(DatabaseCommand),
    /// Manage users (register, passwords, lock, admin, bulk import, sessions).
    #[command(subcommand)]
    Manage(manage::ManageCommand),
}

#[derive(Debug, Subcommand)]
enum DatabaseCommand {
    /// Apply pending migrations.
    Migrate,
    /// Show applied and pending migrations.
    Status,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .and_then(|runtime| runtime.block_on(run(cli)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole cause chain on one line, no backtrace: these are
            // operator-facing messages that name the config key at fault.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VESTIBULE_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => {
            server_cmd::run(
                &cli.config,
                &cli.data_dir,
                server_cmd::ServerArgs::default(),
            )
            .await
        }
        Some(Command::Server(args)) => server_cmd::run(&cli.config, &cli.data_dir, args).await,
        Some(Command::Config(cmd)) => config_cmd::run(cmd, &cli.config),
        Some(Command::Manage(cmd)) => manage::run(cmd, &cli.config, &cli.data_dir).await,
        Some(Command::Database(cmd)) => {
            let loaded = config_cmd::load(&cli.config)?;
            let storage = vestibule_server::bootstrap::connect(&loaded.config).await?;
            match cmd {
                DatabaseCommand::Migrate => {
                    let applied = storage.migrate().await?;
                    println!("applied {} migration(s) {:?}", applied.len(), applied);
                }
                DatabaseCommand::Status => {
                    let status = storage.migration_status().await?;
                    println!(
                        "applied: {:?}\npending: {:?}",
                        status.applied, status.pending
                    );
                }
            }
            storage.close().await;
            Ok(())
        }
    }
}
