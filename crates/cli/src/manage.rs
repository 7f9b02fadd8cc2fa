//! `vestibule manage …`: operator commands on users (and on the stored
//! upstream providers).
//!
//! They load the config like the server (`-c FILE`, or the zero-config data
//! directory), apply pending migrations, and hash passwords with the same
//! [`PasswordManager`] and policy as the login pages.

use std::{
    io::BufRead as _,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use rand::rngs::OsRng;
use vestibule_domain::{SystemClock, Ulid, user::User};
use vestibule_server::{
    flows::{account, provisioning},
    passwords::{PasswordManager, check_new_password},
};
use vestibule_storage::{BoxRepository, RepositoryFactory};
use zeroize::Zeroizing;

#[derive(Debug, Subcommand)]
pub enum ManageCommand {
    /// Create a user with a password.
    RegisterUser {
        /// The Matrix localpart (`alice` for `@alice:server`).
        username: String,
        #[command(flatten)]
        password: PasswordArgs,
        /// An email address to attach (not verified by mail).
        #[arg(long)]
        email: Option<String>,
        /// Allow the user to request `urn:synapse:admin:*`.
        #[arg(long)]
        admin: bool,
    },
    /// Set a new password for a user.
    SetPassword {
        username: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Lock a user: no login, their tokens stop working, their browser
    /// sessions end; the homeserver is told (`locked`).
    LockUser { username: String },
    /// Unlock a locked user (and tell the homeserver).
    UnlockUser { username: String },
    /// Deactivate a user: every session ends (apps, legacy logins,
    /// browsers) and the homeserver deactivates the account.
    DeactivateUser {
        username: String,
        /// Also erase the user's data on the homeserver (GDPR erasure).
        #[arg(long)]
        erase: bool,
    },
    /// Reactivate a deactivated user (on the homeserver too).
    ReactivateUser { username: String },
    /// Allow a user to request `urn:synapse:admin:*`.
    PromoteAdmin { username: String },
    /// Stop a user from requesting `urn:synapse:admin:*`.
    DemoteAdmin { username: String },
    /// Create or update users in bulk from a CSV or JSON file
    ///
    /// For migrating an organisation's users, pre-linked to their
    /// identity at an upstream provider.
    ///
    /// Fields: `localpart` (required), `email`, `displayname`,
    /// `provider_id` (an `upstream_oauth2.providers[].id`) and `subject`
    /// (the user's `sub` at that provider; both or neither); any other
    /// field is stored as an attribute of the user (e.g. `tenant_id`).
    /// CSV: a header row naming the fields. JSON: an array of objects.
    /// Blank values are absent.
    ///
    /// Idempotent: existing users are brought up to date (a new email
    /// replaces their emails, the display name and attributes are set) and
    /// a second run changes nothing. Created and changed users are
    /// provisioned on the homeserver by the server's job worker. Invalid
    /// rows are reported with their CSV line or JSON array index (0-based)
    /// and skipped; the others are imported.
    ///
    /// Exit status: 0 when every row was valid, 1 when some rows were
    /// skipped as invalid (the valid ones are still imported) or on an
    /// error.
    #[command(verbatim_doc_comment)]
    ImportUsers {
        /// The file to import.
        file: PathBuf,
        /// The file's format (default: from its extension, .csv or .json).
        #[arg(long, value_enum)]
        format: Option<crate::import::Format>,
        /// Print what would change and write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Confirm that an upstream provider's IdP moved to another issuer.
    ///
    /// Accounts are linked to (issuer, subject): when a provider's
    /// `issuer` in the config changes while accounts are linked through
    /// it, the server refuses to start, since another IdP's subjects would
    /// sign in to those accounts. When it is the same IdP under a new
    /// issuer (same subjects, same people), this stores the new issuer so
    /// that the config and the database agree again.
    #[command(verbatim_doc_comment)]
    SetUpstreamIssuer {
        /// The provider's `id` (`upstream_oauth2.providers[].id`).
        provider_id: String,
        /// The new issuer, as in the config.
        issuer: String,
    },
    /// End every session of a user or of all users.
    ///
    /// Apps (OAuth), legacy logins and browsers, e.g. after a migration.
    /// Accounts stay as they are; the sessions' devices are removed from
    /// the homeserver by the server's job worker (`sync_devices`).
    KillSessions {
        /// The user's localpart.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        username: Option<String>,
        /// Every user.
        #[arg(long)]
        all: bool,
        /// Count the sessions that would end and end none.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Args)]
#[group(required = false, multiple = false)]
pub struct PasswordArgs {
    /// The password (visible in the process list: prefer --password-stdin).
    #[arg(long)]
    password: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

impl PasswordArgs {
    fn read(self) -> anyhow::Result<Zeroizing<String>> {
        if let Some(p) = self.password {
            return Ok(Zeroizing::new(p));
        }
        if self.password_stdin {
            let mut line = Zeroizing::new(String::new());
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            let trimmed = line.trim_end_matches(['\r', '\n']);
            return Ok(Zeroizing::new(trimmed.to_owned()));
        }
        bail!("give the password with --password or --password-stdin")
    }
}

async fn find_user(repo: &mut BoxRepository, username: &str) -> anyhow::Result<User> {
    repo.users()
        .find_by_username(username)
        .await?
        .with_context(|| format!("no user named `{username}`"))
}

async fn new_hash(
    passwords: &PasswordManager,
    password: Zeroizing<String>,
) -> anyhow::Result<(u16, String)> {
    anyhow::ensure!(
        passwords.is_enabled(),
        "password login is disabled (passwords.enabled: false)"
    );
    check_new_password(&password).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(passwords.hash(&mut OsRng, password).await?)
}

pub async fn run(cmd: ManageCommand, config: &[PathBuf], data_dir: &Path) -> anyhow::Result<()> {
    let paths = if config.is_empty() {
        vec![crate::server_cmd::zero_config(
            data_dir,
            crate::server_cmd::DEFAULT_BIND,
        )?]
    } else {
        config.to_vec()
    };
    let cfg = crate::config_cmd::load(&paths)?.config;
    vestibule_server::bootstrap::validate(&cfg)?;
    let passwords = PasswordManager::from_config(&cfg.passwords)?;
    let storage = vestibule_server::bootstrap::connect(&cfg).await?;
    storage.migrate().await?;
    let result = execute(cmd, &storage, &passwords, &cfg).await;
    storage.close().await;
    result
}

async fn execute(
    cmd: ManageCommand,
    repos: &dyn RepositoryFactory,
    passwords: &PasswordManager,
    cfg: &vestibule_config::Config,
) -> anyhow::Result<()> {
    let homeserver = cfg.matrix.homeserver.as_str();
    let clock = SystemClock;
    let rng = &mut OsRng;
    let mxid = |u: &str| format!("@{u}:{homeserver}");
    match cmd {
        ManageCommand::RegisterUser {
            username,
            password,
            email,
            admin,
        } => {
            vestibule_server::flows::browser_login::validate_new_localpart(&username, homeserver)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let (version, hash) = new_hash(passwords, password.read()?).await?;
            let mut repo = repos.write().await?;
            if repo.users().find_by_username(&username).await?.is_some() {
                bail!("the user `{username}` already exists");
            }
            let mut user = repo.users().add(rng, &clock, &username).await?;
            repo.user_passwords()
                .add(rng, &clock, &user, version, hash, None)
                .await?;
            if let Some(email) = &email {
                repo.user_emails().add(rng, &clock, &user, email).await?;
            }
            if admin {
                user = repo.users().set_can_request_admin(user, true).await?;
            }
            // The homeserver learns about the user in the same transaction
            // (a job the server's worker runs).
            provisioning::schedule_new_user(&mut *repo, rng, &clock, &user).await?;
            repo.save().await?;
            println!(
                "Registered {} (id {}){}{}",
                mxid(&user.username),
                user.id,
                email.map(|e| format!(", email {e}")).unwrap_or_default(),
                if admin { ", may request admin" } else { "" }
            );
        }
        ManageCommand::SetPassword { username, password } => {
            let (version, hash) = new_hash(passwords, password.read()?).await?;
            let mut repo = repos.write().await?;
            let user = find_user(&mut repo, &username).await?;
            repo.user_passwords()
                .add(rng, &clock, &user, version, hash, None)
                .await?;
            repo.save().await?;
            println!("Set a new password for {}", mxid(&username));
        }
        ManageCommand::LockUser { username } => {
            let mut repo = repos.write().await?;
            let user = find_user(&mut repo, &username).await?;
            if user.locked_at.is_some() {
                println!("{} was already locked", mxid(&username));
                return Ok(());
            }
            let (_, ended) = account::lock(&mut repo, &clock, rng, user).await?;
            repo.save().await?;
            println!(
                "Locked {} (ended {ended} browser session(s))",
                mxid(&username)
            );
        }
        ManageCommand::UnlockUser { username } => {
            let mut repo = repos.write().await?;
            let user = find_user(&mut repo, &username).await?;
            if user.locked_at.is_none() {
                println!("{} was not locked", mxid(&username));
                return Ok(());
            }
            account::unlock(&mut repo, &clock, rng, user).await?;
            repo.save().await?;
            println!("Unlocked {}", mxid(&username));
        }
        ManageCommand::DeactivateUser { username, erase } => {
            let mut repo = repos.write().await?;
            let user = find_user(&mut repo, &username).await?;
            let was_deactivated = user.deactivated_at.is_some();
            let (_, ended) = account::deactivate(&mut repo, &clock, rng, user, erase).await?;
            repo.save().await?;
            println!(
                "{} {} (ended {} app session(s), {} legacy session(s), {} browser session(s)){}",
                if was_deactivated {
                    "Deactivated again"
                } else {
                    "Deactivated"
                },
                mxid(&username),
                ended.oauth_sessions,
                ended.compat_sessions,
                ended.browser_sessions,
                if erase { ", erasing their data" } else { "" }
            );
        }
        ManageCommand::ReactivateUser { username } => {
            let mut repo = repos.write().await?;
            let user = find_user(&mut repo, &username).await?;
            if user.deactivated_at.is_none() {
                println!("{} was not deactivated", mxid(&username));
                return Ok(());
            }
            account::reactivate(&mut repo, &clock, rng, user).await?;
            repo.save().await?;
            println!("Reactivated {}", mxid(&username));
        }
        ManageCommand::PromoteAdmin { username } => {
            set_admin(repos, &username, true, &mxid).await?;
        }
        ManageCommand::DemoteAdmin { username } => {
            set_admin(repos, &username, false, &mxid).await?;
        }
        ManageCommand::KillSessions {
            username,
            all,
            dry_run,
        } => kill_sessions(repos, username.as_deref(), all, dry_run, &mxid).await?,
        ManageCommand::ImportUsers {
            file,
            format,
            dry_run,
        } => crate::import::run(cfg, repos, &file, format, dry_run).await?,
        ManageCommand::SetUpstreamIssuer {
            provider_id,
            issuer,
        } => set_upstream_issuer(repos, cfg, &provider_id, &issuer).await?,
    }
    Ok(())
}

async fn set_admin(
    repos: &dyn RepositoryFactory,
    username: &str,
    admin: bool,
    mxid: &dyn Fn(&str) -> String,
) -> anyhow::Result<()> {
    let mut repo = repos.write().await?;
    let user = find_user(&mut repo, username).await?;
    repo.users().set_can_request_admin(user, admin).await?;
    repo.save().await?;
    if admin {
        println!("{} may now request admin access", mxid(username));
    } else {
        println!("{} may no longer request admin access", mxid(username));
    }
    Ok(())
}

async fn set_upstream_issuer(
    repos: &dyn RepositoryFactory,
    cfg: &vestibule_config::Config,
    provider_id: &str,
    issuer: &str,
) -> anyhow::Result<()> {
    let id = Ulid::from_string(&provider_id.to_uppercase())
        .with_context(|| format!("`{provider_id}` is not a provider id (a ULID)"))?;
    anyhow::ensure!(!issuer.trim().is_empty(), "the issuer is empty");
    let mut repo = repos.write().await?;
    let Some(stored) = repo.upstream_providers().lookup(id).await? else {
        bail!(
            "no upstream provider {id} in the database (providers are stored when the server \
             starts with them in the config)"
        );
    };
    let before = stored.issuer.as_deref().unwrap_or("(none)").to_owned();
    if stored.issuer.as_deref() == Some(issuer) {
        repo.cancel().await?;
        println!("Provider {id} already has the issuer {issuer}");
    } else {
        let linked = repo.upstream_providers().count_linked_accounts(id).await?;
        repo.upstream_providers()
            .set_issuer(id, Some(issuer))
            .await?;
        repo.save().await?;
        println!(
            "Provider {id}: issuer {before} -> {issuer}; its {linked} linked account(s) now \
             sign in through {issuer}"
        );
    }
    let configured = cfg
        .upstream_oauth2
        .providers
        .iter()
        .find(|p| Ulid::from_string(&p.id.to_uppercase()).ok() == Some(id))
        .and_then(|p| p.issuer.as_deref());
    if configured.is_some_and(|c| c != issuer) {
        eprintln!(
            "note: the config gives this provider the issuer {}; the server starts only once \
             the two agree",
            configured.unwrap_or_default()
        );
    }
    Ok(())
}

/// Users per transaction for `kill-sessions --all`.
const KILL_BATCH: u32 = 200;

async fn kill_sessions(
    repos: &dyn RepositoryFactory,
    username: Option<&str>,
    all: bool,
    dry_run: bool,
    mxid: &dyn Fn(&str) -> String,
) -> anyhow::Result<()> {
    let clock = SystemClock;
    let rng = &mut OsRng;
    let mut total = account::EndedSessions::default();
    let mut users = 0u64;
    let mut end = async |repo: &mut BoxRepository, user: &User| -> anyhow::Result<()> {
        let ended = if dry_run {
            account::count_active_sessions(repo, user).await?
        } else {
            account::end_all_sessions(repo, &clock, &mut *rng, user).await?
        };
        if ended.total() > 0 {
            users += 1;
            total.add(ended);
        }
        Ok(())
    };
    match (username, all) {
        (Some(username), false) => {
            let mut repo = open(repos, dry_run).await?;
            let user = find_user(&mut repo, username).await?;
            end(&mut repo, &user).await?;
            finish(repo, dry_run).await?;
        }
        (None, true) => {
            let mut after = None;
            loop {
                let mut repo = open(repos, dry_run).await?;
                let page = repo.users().list(after, KILL_BATCH).await?;
                let Some(last) = page.last() else {
                    repo.cancel().await?;
                    break;
                };
                after = Some(last.id);
                for user in &page {
                    end(&mut repo, user).await?;
                }
                finish(repo, dry_run).await?;
            }
        }
        _ => bail!("give a username or --all"),
    }
    let whose = match username {
        Some(u) => mxid(u),
        None => format!("{users} user(s)"),
    };
    println!(
        "{} {} app session(s), {} legacy session(s) and {} browser session(s) of {whose}{}",
        if dry_run { "Would end" } else { "Ended" },
        total.oauth_sessions,
        total.compat_sessions,
        total.browser_sessions,
        if dry_run {
            " (dry run, nothing was written)"
        } else if total.oauth_sessions + total.compat_sessions > 0 {
            "; their devices leave the homeserver when the server's job worker runs"
        } else {
            ""
        },
    );
    Ok(())
}

/// A write transaction, or a read one for a dry run.
async fn open(repos: &dyn RepositoryFactory, dry_run: bool) -> anyhow::Result<BoxRepository> {
    Ok(if dry_run {
        repos.read().await?
    } else {
        repos.write().await?
    })
}

/// Commits, or rolls back in a dry run.
async fn finish(repo: BoxRepository, dry_run: bool) -> anyhow::Result<()> {
    if dry_run {
        repo.cancel().await?;
    } else {
        repo.save().await?;
    }
    Ok(())
}
