//! Integration tests of `vestibule-config`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers")]

mod errors;
mod files;
mod merge;
mod schema;
mod seed;

use std::path::{Path, PathBuf};

use vestibule_config::{ConfigError, Loaded, load_strs};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// An environment closure over fixed pairs.
pub fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

pub fn no_env(_: &str) -> Option<String> {
    None
}

/// Loads YAML strings named `a.yaml`, `b.yaml`... with no environment.
pub fn load(yamls: &[&str]) -> Result<Loaded, ConfigError> {
    let sources: Vec<(String, String)> = yamls
        .iter()
        .enumerate()
        .map(|(i, y)| {
            (
                format!("{}.yaml", char::from(b'a' + u8::try_from(i).unwrap())),
                (*y).to_owned(),
            )
        })
        .collect();
    load_strs(&sources, &no_env, Path::new("."))
}

pub fn load_err(yamls: &[&str]) -> String {
    load(yamls).expect_err("expected an error").to_string()
}
