//! `vestibule config …`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use vestibule_config::Loaded;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print a new config with fresh secrets (or write it with --output).
    Generate {
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Load and validate the config; print warnings; exit non-zero on error.
    Check,
    /// Print the effective config (all files merged, defaults filled in,
    /// secrets redacted).
    Dump,
}

/// Loads the config files (env placeholders from the process environment),
/// prints warnings to stderr, and enforces the required sections.
pub fn load(paths: &[PathBuf]) -> anyhow::Result<Loaded> {
    anyhow::ensure!(
        !paths.is_empty(),
        "no configuration file given (use -c FILE, or VESTIBULE_CONFIG)"
    );
    let env = |name: &str| std::env::var(name).ok();
    let loaded = vestibule_config::load_files(paths, &env)?;
    for w in &loaded.warnings {
        eprintln!("{w}");
    }
    loaded.config.check_required_sections()?;
    Ok(loaded)
}

pub fn run(cmd: ConfigCommand, paths: &[PathBuf]) -> anyhow::Result<()> {
    match cmd {
        ConfigCommand::Generate { output } => {
            let yaml = crate::generate::generate(&crate::generate::Options::default())?;
            match output {
                Some(path) => write_secret_file(&path, &yaml)?,
                None => print!("{yaml}"),
            }
        }
        ConfigCommand::Check => {
            let result = load(paths).and_then(|l| {
                vestibule_server::bootstrap::validate(&l.config)?;
                Ok(l)
            });
            match result {
                Ok(loaded) => {
                    println!(
                        "OK: configuration is valid ({} file(s), {} warning(s))",
                        paths.len(),
                        loaded.warnings.len()
                    );
                }
                Err(e) => return Err(e.context("configuration is invalid")),
            }
        }
        ConfigCommand::Dump => {
            let loaded = load(paths)?;
            print!("{}", serde_yaml::to_string(&loaded.config.redacted())?);
        }
    }
    Ok(())
}

/// Writes a file readable by its owner only.
pub fn write_secret_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}
