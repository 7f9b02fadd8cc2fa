//! Bulk import of an organisation's users (`vestibule manage import-users`,
//! the migration of the integration design).
//!
//! A row names a user by localpart and may carry an email, a display name,
//! an upstream identity (provider, subject) and extra attributes (e.g.
//! `tenant_id`). [`validate`] checks what needs no database; [`apply`]
//! creates or brings up to date one user in the caller's transaction and
//! reports what changed, so running the same file twice changes nothing.
//!
//! The pre-created link (provider, subject) → user is what makes an
//! imported user's first upstream login land in their account. Each created
//! or changed user gets a `provision_user` job ([`super::provisioning`]), so
//! they appear on the homeserver once the server's job worker runs.

use std::collections::BTreeMap;

use rand::RngCore;
use vestibule_domain::{Clock, Ulid, upstream::UpstreamProvider, user::User};
use vestibule_storage::{BoxRepository, StorageError};

use super::{browser_login::validate_new_localpart, provisioning};
use crate::jobs;

/// The columns (CSV) or keys (JSON) with a meaning of their own; any other
/// one is an extra attribute of the user.
pub const KNOWN_FIELDS: [&str; 5] = [
    "localpart",
    "email",
    "displayname",
    "provider_id",
    "subject",
];

/// The attribute the imported display name is kept in, so a later import
/// can tell whether it changed (the homeserver owns the profile; we have no
/// display name of our own). It is bookkeeping, not a custom attribute:
/// never released as a claim nor listed on the account page (see
/// [`is_internal_attribute`]).
pub const DISPLAYNAME_ATTRIBUTE: &str = "displayname";

/// Whether a user attribute is our own bookkeeping rather than a custom
/// attribute (from an upstream claim or an import's extra column).
pub fn is_internal_attribute(name: &str) -> bool {
    name == DISPLAYNAME_ATTRIBUTE
}

/// Longest value accepted in any field.
const MAX_VALUE_LEN: usize = 1024;

/// One row of the file, as read: every field by name, blank ones absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawRow {
    pub fields: BTreeMap<String, String>,
}

impl RawRow {
    /// Adds a field; surrounding whitespace is trimmed and a blank value
    /// means "absent".
    /// The known fields' names are matched case-insensitively.
    pub fn insert(&mut self, name: &str, value: &str) {
        let value = value.trim();
        if value.is_empty() {
            return;
        }
        let name = name.trim();
        let lower = name.to_lowercase();
        let name = if KNOWN_FIELDS.contains(&lower.as_str()) {
            lower
        } else {
            name.to_owned()
        };
        self.fields.insert(name, value.to_owned());
    }
}

/// A row that passed [`validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    pub localpart: String,
    pub email: Option<String>,
    pub displayname: Option<String>,
    /// The upstream identity: (provider id, subject).
    pub link: Option<(Ulid, String)>,
    /// Extra attributes (not including the display name).
    pub attributes: BTreeMap<String, String>,
}

/// Checks a row without the database: localpart as at registration, email
/// shape, a configured provider (`providers`: the config's ids, lower-cased,
/// to their ULID), provider and subject given together.
pub fn validate(
    raw: &RawRow,
    homeserver: &str,
    providers: &BTreeMap<String, Ulid>,
) -> Result<ImportRow, String> {
    let get = |name: &str| raw.fields.get(name).cloned();
    for (name, value) in &raw.fields {
        if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
            return Err(format!("`{name}` is not a usable attribute name"));
        }
        if value.len() > MAX_VALUE_LEN {
            return Err(format!(
                "`{name}` is longer than {MAX_VALUE_LEN} characters"
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(format!("`{name}` contains control characters"));
        }
    }
    let localpart = get("localpart").ok_or("`localpart` is missing")?;
    validate_new_localpart(&localpart, homeserver)
        .map_err(|e| format!("invalid localpart `{localpart}`: {e}"))?;
    let email = get("email");
    if let Some(email) = &email {
        check_email(email).map_err(|why| format!("invalid email `{email}`: {why}"))?;
    }
    let link = match (get("provider_id"), get("subject")) {
        (None, None) => None,
        (None, Some(_)) => return Err("`subject` is given without `provider_id`".to_owned()),
        (Some(_), None) => return Err("`provider_id` is given without `subject`".to_owned()),
        (Some(provider), Some(subject)) => {
            let id = providers.get(&provider.to_lowercase()).ok_or_else(|| {
                format!("unknown provider `{provider}` (not in upstream_oauth2.providers)")
            })?;
            Some((*id, subject))
        }
    };
    let attributes = raw
        .fields
        .iter()
        .filter(|(name, _)| !KNOWN_FIELDS.contains(&name.as_str()))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    Ok(ImportRow {
        localpart,
        email,
        displayname: get("displayname"),
        link,
        attributes,
    })
}

/// A plausible address: `local@domain`, one `@`, no spaces, a domain of
/// dot-separated labels of letters, digits and hyphens. Deliverability is
/// not checked (imported addresses are trusted as the organisation's).
fn check_email(email: &str) -> Result<(), &'static str> {
    if email.len() > 254 {
        return Err("longer than 254 characters");
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err("no `@`");
    };
    if local.is_empty() || domain.is_empty() {
        return Err("expected local@domain");
    }
    if domain.contains('@') {
        return Err("more than one `@`");
    }
    if local.chars().any(char::is_whitespace) {
        return Err("whitespace in the address");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    if !domain.split('.').all(label_ok) {
        return Err("the domain is not a host name");
    }
    Ok(())
}

/// What [`apply`] did (or, in a transaction the caller rolls back, would do)
/// with a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new user; the list says what it was created with.
    Created(Vec<String>),
    /// An existing user brought up to date; the list says what changed.
    Updated(Vec<String>),
    Unchanged,
    /// Refused because of the database's state (e.g. the identity belongs
    /// to another user); nothing was written for the row.
    Conflict(String),
}

/// Creates the row's user or brings them up to date, in the caller's
/// transaction. Every check that could refuse the row runs before its first
/// write, so a refused row leaves the transaction usable (PostgreSQL aborts
/// a transaction at the first failed statement).
///
/// `providers` holds the rows of the configured providers by id.
///
/// Update rules: a given email that the user does not have yet becomes
/// their only email (the organisation's directory is authoritative); a
/// given display name or attribute is set; blank fields leave things as
/// they are and nothing is ever removed otherwise. An existing link of the
/// user to the same provider under another subject is a conflict.
pub async fn apply(
    repo: &mut BoxRepository,
    clock: &dyn Clock,
    rng: &mut (dyn RngCore + Send),
    providers: &BTreeMap<Ulid, UpstreamProvider>,
    row: &ImportRow,
) -> Result<Outcome, StorageError> {
    let existing = repo.users().find_by_username(&row.localpart).await?;

    // Checks first.
    let mut new_link = None;
    if let Some((provider_id, subject)) = &row.link {
        let provider = providers.get(provider_id).ok_or_else(|| {
            StorageError::InvalidData(format!("provider {provider_id} was not synced"))
        })?;
        let link = repo
            .upstream_links()
            .find_by_subject(provider, subject)
            .await?;
        match (&link, link.as_ref().and_then(|l| l.user_id)) {
            (_, Some(owner)) if Some(owner) == existing.as_ref().map(|u| u.id) => {}
            (_, Some(owner)) => {
                let name = repo
                    .users()
                    .lookup(owner)
                    .await?
                    .map_or_else(|| owner.to_string(), |u| u.username);
                return Ok(Outcome::Conflict(format!(
                    "the identity `{subject}` of this provider is already linked to another user (`{name}`)"
                )));
            }
            (_, None) => new_link = Some((provider, link)),
        }
        if let (Some(user), Some(_)) = (&existing, &new_link) {
            let other = repo
                .upstream_links()
                .all_for_user(user)
                .await?
                .into_iter()
                .find(|l| l.provider_id == *provider_id && l.subject != *subject);
            if let Some(other) = other {
                return Ok(Outcome::Conflict(format!(
                    "the user is already linked to this provider as `{}`",
                    other.subject
                )));
            }
        }
    }
    let mut add_email = None;
    if let Some(email) = &row.email {
        match repo.user_emails().find_by_email(email).await? {
            Some(e) if Some(e.user_id) == existing.as_ref().map(|u| u.id) => {}
            Some(_) => {
                return Ok(Outcome::Conflict(format!(
                    "the email `{email}` belongs to another user"
                )));
            }
            None => add_email = Some(email.as_str()),
        }
    }

    // Then the writes.
    let mut changes = Vec::new();
    let created = existing.is_none();
    let user = match existing {
        Some(user) => user,
        None => repo.users().add(rng, clock, &row.localpart).await?,
    };
    if let Some(email) = add_email {
        if !created {
            let old = repo.user_emails().all(&user).await?;
            for e in old {
                changes.push(format!("email {} removed", e.email));
                repo.user_emails().remove(e).await?;
            }
        }
        repo.user_emails().add(rng, clock, &user, email).await?;
        changes.push(format!("email {email}"));
    }
    // One read of the existing attributes, then writes only where a value
    // differs (a second import of the same file writes nothing).
    let current = if created || (row.displayname.is_none() && row.attributes.is_empty()) {
        BTreeMap::new()
    } else {
        repo.user_attributes().all(&user).await?
    };
    let wanted = row
        .displayname
        .iter()
        .map(|d| (DISPLAYNAME_ATTRIBUTE, d))
        .chain(row.attributes.iter().map(|(n, v)| (n.as_str(), v)));
    let mut displayname_changed = false;
    for (name, value) in wanted {
        if current.get(name) == Some(value) {
            continue;
        }
        repo.user_attributes()
            .set(clock, &user, name, value)
            .await?;
        if name == DISPLAYNAME_ATTRIBUTE {
            displayname_changed = true;
            changes.push(format!("display name `{value}`"));
        } else {
            changes.push(format!("{name}={value}"));
        }
    }
    if let Some((provider, link)) = new_link {
        let subject = row.link.as_ref().map_or("", |(_, s)| s.as_str());
        let link = match link {
            Some(link) => link,
            None => {
                repo.upstream_links()
                    .add(rng, clock, provider, subject, None)
                    .await?
            }
        };
        repo.upstream_links().associate_to_user(link, &user).await?;
        changes.push(format!("linked to {} `{subject}`", provider_name(provider)));
    }

    if created {
        // What `provisioning::provision_payload` would read back: the new
        // user has exactly the row's email and is not locked.
        let payload = jobs::ProvisionUser {
            localpart: user.username.clone(),
            display_name: Some(
                row.displayname
                    .clone()
                    .unwrap_or_else(|| user.username.clone()),
            ),
            emails: add_email.map(str::to_owned).into_iter().collect(),
            locked: false,
        };
        jobs::schedule_provision_user(&mut **repo, rng, clock, payload).await?;
        return Ok(Outcome::Created(changes));
    }
    if changes.is_empty() {
        return Ok(Outcome::Unchanged);
    }
    schedule_update(
        repo,
        clock,
        rng,
        &user,
        displayname_changed
            .then(|| row.displayname.clone())
            .flatten(),
    )
    .await?;
    Ok(Outcome::Updated(changes))
}

/// Re-provisions a changed user (emails, locked flag, and the display name
/// when it changed). A deactivated user is left alone on the homeserver:
/// provisioning is not how a deactivated account comes back.
async fn schedule_update(
    repo: &mut BoxRepository,
    clock: &dyn Clock,
    rng: &mut (dyn RngCore + Send),
    user: &User,
    display_name: Option<String>,
) -> Result<(), StorageError> {
    if user.deactivated_at.is_some() {
        return Ok(());
    }
    let payload = provisioning::provision_payload(&mut **repo, user, display_name).await?;
    jobs::schedule_provision_user(&mut **repo, rng, clock, payload).await?;
    Ok(())
}

fn provider_name(p: &UpstreamProvider) -> String {
    p.human_name.clone().unwrap_or_else(|| p.id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(fields: &[(&str, &str)]) -> RawRow {
        let mut raw = RawRow::default();
        for (n, v) in fields {
            raw.insert(n, v);
        }
        raw
    }

    fn providers() -> BTreeMap<String, Ulid> {
        BTreeMap::from([("01h0000000000000000000000a".to_owned(), Ulid(10))])
    }

    #[test]
    fn a_full_row() {
        let r = validate(
            &row(&[
                ("localpart", " alice "),
                ("email", "alice@example.org"),
                ("displayname", "Alice"),
                ("provider_id", "01H0000000000000000000000A"),
                ("subject", "sub-1"),
                ("tenant_id", "t1"),
                ("empty", "  "),
            ]),
            "example.org",
            &providers(),
        )
        .unwrap();
        assert_eq!(r.localpart, "alice");
        assert_eq!(r.email.as_deref(), Some("alice@example.org"));
        assert_eq!(r.displayname.as_deref(), Some("Alice"));
        assert_eq!(r.link, Some((Ulid(10), "sub-1".to_owned())));
        assert_eq!(
            r.attributes,
            BTreeMap::from([("tenant_id".to_owned(), "t1".to_owned())])
        );
    }

    #[test]
    fn refusals_say_why() {
        let p = providers();
        let err = |fields: &[(&str, &str)]| validate(&row(fields), "example.org", &p).unwrap_err();
        assert!(err(&[("email", "a@b.c")]).contains("`localpart` is missing"));
        assert!(err(&[("localpart", "Alice")]).contains("invalid localpart `Alice`"));
        assert!(err(&[("localpart", "a b")]).contains("invalid localpart"));
        assert!(err(&[("localpart", "a"), ("email", "nope")]).contains("no `@`"));
        assert!(err(&[("localpart", "a"), ("email", "a@b@c")]).contains("more than one"));
        assert!(err(&[("localpart", "a"), ("email", "a@-x.org")]).contains("host name"));
        assert!(err(&[("localpart", "a"), ("email", "a@x..org")]).contains("host name"));
        assert!(err(&[("localpart", "a"), ("subject", "s")]).contains("without `provider_id`"));
        assert!(
            err(&[
                ("localpart", "a"),
                ("provider_id", "01H0000000000000000000000A")
            ])
            .contains("without `subject`")
        );
        assert!(
            err(&[
                ("localpart", "a"),
                ("provider_id", "nope"),
                ("subject", "s")
            ])
            .contains("unknown provider `nope`")
        );
        assert!(err(&[("localpart", "a"), ("x", "a\u{7}b")]).contains("control characters"));
        let long = "x".repeat(MAX_VALUE_LEN + 1);
        assert!(err(&[("localpart", "a"), ("x", &long)]).contains("longer than"));
    }

    #[test]
    fn plausible_emails() {
        for ok in ["a@b", "first.last+tag@sub.example.org", "ü@bücher.de"] {
            assert!(check_email(ok).is_ok(), "{ok}");
        }
        for bad in ["", "@b.c", "a@", "a b@c.d", "a@b_c.d", "a@.b"] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }
}
