//! `vestibule manage import-users FILE`: reading the file, checking every
//! row, and applying the valid ones in batches through
//! [`vestibule_server::flows::user_import`].

use std::{
    collections::{BTreeMap, HashMap, hash_map::Entry},
    fmt,
    path::Path,
};

use anyhow::{Context, bail};
use clap::ValueEnum;
use rand::rngs::OsRng;
use vestibule_config::Config;
use vestibule_domain::{SystemClock, Ulid};
use vestibule_server::{
    bootstrap,
    flows::user_import::{self, ImportRow, KNOWN_FIELDS, Outcome, RawRow},
};
use vestibule_storage::{BoxRepository, RepositoryFactory};

/// Rows per transaction: big enough that commits do not dominate, small
/// enough that a writer (SQLite) does not hold the lock for long.
const BATCH: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A header row, then one user per row (RFC 4180 quoting).
    Csv,
    /// An array of objects, one user per object.
    Json,
}

/// Where a row is in the file, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Location {
    /// The line a CSV record starts on (1 = the header).
    Line(u64),
    /// A JSON array element: the line it starts on (1-based) and its
    /// 0-based index (which tells apart elements sharing a line).
    Element { line: u64, index: usize },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line(n) => write!(f, "line {n}"),
            Self::Element { line, index } => write!(f, "line {line} (index {index})"),
        }
    }
}

/// Counts of one run.
#[derive(Debug, Default)]
struct Counts {
    created: u64,
    updated: u64,
    unchanged: u64,
    invalid: u64,
}

pub async fn run(
    cfg: &Config,
    storage: &dyn RepositoryFactory,
    file: &Path,
    format: Option<Format>,
    dry_run: bool,
) -> anyhow::Result<()> {
    let format = match format {
        Some(f) => f,
        None => match file
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_lowercase)
        {
            Some(e) if e == "csv" => Format::Csv,
            Some(e) if e == "json" => Format::Json,
            _ => bail!(
                "cannot tell the format of {} from its extension: use --format csv or --format json",
                file.display()
            ),
        },
    };
    let rows = match format {
        Format::Csv => read_csv(file),
        Format::Json => read_json(file),
    }
    .with_context(|| format!("reading {}", file.display()))?;

    let homeserver = &cfg.matrix.homeserver;
    let mut configured = BTreeMap::new();
    for (i, p) in cfg.upstream_oauth2.providers.iter().enumerate() {
        let id = Ulid::from_string(&p.id.to_uppercase())
            .with_context(|| format!("upstream_oauth2.providers[{i}].id"))?;
        configured.insert(p.id.to_lowercase(), id);
    }

    // Everything that needs no database, including duplicates in the file.
    let mut invalid: Vec<(Location, String)> = Vec::new();
    let mut valid: Vec<(Location, ImportRow)> = Vec::new();
    let mut seen_localparts = HashMap::new();
    let mut seen_links = HashMap::new();
    let mut seen_emails = HashMap::new();
    for (at, raw) in rows {
        let row = raw.and_then(|raw| user_import::validate(&raw, homeserver, &configured));
        let row = row.and_then(|row| {
            first_seen(&mut seen_localparts, row.localpart.clone(), at, "localpart")?;
            if let Some(link) = &row.link {
                first_seen(&mut seen_links, link.clone(), at, "provider_id and subject")?;
            }
            if let Some(email) = &row.email {
                first_seen(&mut seen_emails, email.to_lowercase(), at, "email")?;
            }
            Ok(row)
        });
        match row {
            Ok(row) => valid.push((at, row)),
            Err(why) => invalid.push((at, why)),
        }
    }

    let clock = SystemClock;
    let rng = &mut OsRng;
    if !dry_run {
        // What the server does at startup: a provider of the config is
        // valid before the server ever ran.
        let encrypter = bootstrap::encrypter(&cfg.secrets)?;
        bootstrap::sync_config(storage, cfg, &encrypter, &clock, rng).await?;
    }

    let mut counts = Counts::default();
    let (create, update) = if dry_run {
        ("would create", "would update")
    } else {
        ("created", "updated")
    };
    for batch in valid.chunks(BATCH) {
        let mut repo = storage.write().await?;
        if dry_run {
            // Rolled back with the rest of the batch.
            bootstrap::sync_upstream_providers(&mut repo, cfg, &clock).await?;
        }
        let providers = load_providers(&mut repo, &configured).await?;
        for (at, row) in batch {
            let outcome = user_import::apply(&mut repo, &clock, rng, &providers, row)
                .await
                .with_context(|| format!("importing {at} (`{}`)", row.localpart))?;
            match outcome {
                Outcome::Created(what) => {
                    counts.created += 1;
                    println!("{create} {}{}", row.localpart, describe(&what));
                }
                Outcome::Updated(what) => {
                    counts.updated += 1;
                    println!("{update} {}{}", row.localpart, describe(&what));
                }
                Outcome::Unchanged => counts.unchanged += 1,
                Outcome::Conflict(why) => invalid.push((*at, why)),
            }
        }
        if dry_run {
            repo.cancel().await?;
        } else {
            repo.save().await?;
        }
    }

    invalid.sort_by_key(|(at, _)| *at);
    for (at, why) in &invalid {
        eprintln!("{}: {at}: skipped: {why}", file.display());
    }
    counts.invalid = invalid.len() as u64;
    let Counts {
        created,
        updated,
        unchanged,
        invalid: n_invalid,
    } = counts;
    if dry_run {
        println!(
            "Dry run, nothing was written: {created} to create, {updated} to update, {unchanged} unchanged, {n_invalid} invalid"
        );
    } else {
        println!(
            "Imported {}: {created} created, {updated} updated, {unchanged} unchanged, {n_invalid} invalid{}",
            file.display(),
            if created + updated == 0 {
                "; nothing changed"
            } else {
                ""
            }
        );
    }
    if n_invalid > 0 {
        bail!(
            "{n_invalid} invalid row(s) skipped (listed above); the valid rows were {}",
            if dry_run { "checked" } else { "imported" }
        );
    }
    Ok(())
}

/// Records the first row with `key`; a later one is a duplicate.
fn first_seen<K: std::hash::Hash + Eq>(
    seen: &mut HashMap<K, Location>,
    key: K,
    at: Location,
    what: &str,
) -> Result<(), String> {
    match seen.entry(key) {
        Entry::Occupied(first) => Err(format!("duplicate {what} (first at {})", first.get())),
        Entry::Vacant(v) => {
            v.insert(at);
            Ok(())
        }
    }
}

fn describe(what: &[String]) -> String {
    if what.is_empty() {
        String::new()
    } else {
        format!(": {}", what.join(", "))
    }
}

async fn load_providers(
    repo: &mut BoxRepository,
    configured: &BTreeMap<String, Ulid>,
) -> anyhow::Result<BTreeMap<Ulid, vestibule_domain::upstream::UpstreamProvider>> {
    let mut out = BTreeMap::new();
    for id in configured.values() {
        let provider = repo
            .upstream_providers()
            .lookup(*id)
            .await?
            .with_context(|| format!("the provider {id} of the config is not in the database"))?;
        out.insert(*id, provider);
    }
    Ok(out)
}

type Rows = Vec<(Location, Result<RawRow, String>)>;

/// A header row naming the fields, then one record per user. A record with
/// another number of fields than the header, or that is not UTF-8, is an
/// invalid row; a file that is not CSV at all is an error.
fn read_csv(path: &Path) -> anyhow::Result<Rows> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_path(path)?;
    let headers: Vec<String> = reader
        .headers()
        .context("the header row")?
        .iter()
        .map(|h| {
            let h = h.trim();
            if KNOWN_FIELDS.contains(&h.to_lowercase().as_str()) {
                h.to_lowercase()
            } else {
                h.to_owned()
            }
        })
        .collect();
    for (i, h) in headers.iter().enumerate() {
        if h.is_empty() {
            bail!("the header row has an empty column name (column {})", i + 1);
        }
        if headers[..i].contains(h) {
            bail!("the header row names `{h}` twice");
        }
    }
    if !headers.iter().any(|h| h == "localpart") {
        bail!("the header row has no `localpart` column");
    }
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(0, csv::Position::line);
                let row = if record.len() == headers.len() {
                    let mut raw = RawRow::default();
                    for (name, value) in headers.iter().zip(record.iter()) {
                        raw.insert(name, value);
                    }
                    Ok(raw)
                } else {
                    Err(format!(
                        "{} field(s), the header has {}",
                        record.len(),
                        headers.len()
                    ))
                };
                rows.push((Location::Line(line), row));
            }
            Err(e) => match e.kind() {
                csv::ErrorKind::Utf8 { pos, .. } => {
                    let line = pos.as_ref().map_or(0, csv::Position::line);
                    rows.push((Location::Line(line), Err("not valid UTF-8".to_owned())));
                }
                _ => return Err(e.into()),
            },
        }
    }
    Ok(rows)
}

/// A JSON array of objects. Values are strings (numbers and booleans are
/// taken as their text, `null` as absent); another kind of value makes the
/// row invalid. Each element is located by the line it starts on.
fn read_json(path: &Path) -> anyhow::Result<Rows> {
    let text = std::fs::read_to_string(path)?;
    // Borrowed raw elements point into `text`: their offset gives the line
    // without a second parse of the file.
    let items: Vec<&serde_json::value::RawValue> =
        serde_json::from_str(&text).context("expected a JSON array of objects")?;
    let mut lines = Lines::new(&text);
    let mut rows = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let offset = item
            .get()
            .as_ptr()
            .addr()
            .checked_sub(text.as_ptr().addr())
            .context("a JSON element outside the file")?;
        let at = Location::Element {
            line: lines.line_of(offset),
            index,
        };
        let value: serde_json::Value = serde_json::from_str(item.get())?;
        rows.push((at, json_row(value)));
    }
    Ok(rows)
}

/// Line numbers of increasing byte offsets in one text, counted once.
struct Lines<'a> {
    text: &'a [u8],
    /// Bytes counted so far, and the line the next byte is on.
    pos: usize,
    line: u64,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text: text.as_bytes(),
            pos: 0,
            line: 1,
        }
    }

    /// The 1-based line of `offset`; offsets must not decrease.
    fn line_of(&mut self, offset: usize) -> u64 {
        let end = offset.min(self.text.len());
        if end > self.pos {
            #[allow(
                clippy::naive_bytecount,
                reason = "once over an import file; not worth a dependency"
            )]
            let newlines = self.text[self.pos..end]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            self.line += newlines as u64;
            self.pos = end;
        }
        self.line
    }
}

fn json_row(item: serde_json::Value) -> Result<RawRow, String> {
    use serde_json::Value;
    let Value::Object(map) = item else {
        return Err("not a JSON object".to_owned());
    };
    let mut raw = RawRow::default();
    for (key, value) in map {
        match value {
            Value::Null => {}
            Value::String(s) => raw.insert(&key, &s),
            Value::Number(n) => raw.insert(&key, &n.to_string()),
            Value::Bool(b) => raw.insert(&key, &b.to_string()),
            Value::Array(_) | Value::Object(_) => {
                return Err(format!("`{key}` must be a string"));
            }
        }
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_elements_are_located_by_their_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.json");
        let text = "[\n  {\"localpart\": \"a\"},\n  {\n    \"localpart\": \"b\",\n    \"x\": [1]\n  },\r\n\n  \"nope\", {\"localpart\": \"c\"}\n]\n";
        std::fs::write(&path, text).unwrap();
        let rows = read_json(&path).unwrap();
        let at: Vec<String> = rows.iter().map(|(at, _)| at.to_string()).collect();
        assert_eq!(
            at,
            [
                "line 2 (index 0)",
                "line 3 (index 1)",
                "line 8 (index 2)",
                "line 8 (index 3)"
            ]
        );
        assert!(rows[0].1.is_ok());
        assert_eq!(rows[1].1, Err("`x` must be a string".to_owned()));
        assert_eq!(rows[2].1, Err("not a JSON object".to_owned()));
        assert!(rows[3].1.is_ok());
    }
}
