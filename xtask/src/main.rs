//! Generated artefacts and drift checks.
//!
//! - `cargo run -p xtask -- schema`: writes the configuration JSON schema to
//!   `crates/config/config.schema.json`.
//! - `cargo run -p xtask -- schema --check`: exits non-zero when the committed
//!   schema differs from the code.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

fn schema_path() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    root.parent()
        .unwrap_or(root)
        .join("crates/config/config.schema.json")
}

fn render_schema() -> anyhow::Result<String> {
    let schema = vestibule_config::schema();
    Ok(format!("{}\n", serde_json::to_string_pretty(&schema)?))
}

fn schema(check: bool) -> anyhow::Result<()> {
    let path = schema_path();
    if check {
        let committed = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let committed: serde_json::Value = serde_json::from_str(&committed)
            .with_context(|| format!("parsing {}", path.display()))?;
        if committed != vestibule_config::schema() {
            bail!(
                "{} is out of date; run `cargo run -p xtask -- schema`",
                path.display()
            );
        }
        println!("{} is up to date", path.display());
    } else {
        std::fs::write(&path, render_schema()?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["schema"] => schema(false),
        ["schema", "--check"] => schema(true),
        _ => bail!("usage: cargo run -p xtask -- schema [--check]"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rendered_schema_round_trips() {
        let text = super::render_schema().unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, vestibule_config::schema());
    }
}
