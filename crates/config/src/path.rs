//! Key paths in the `a.b[0].c` notation used by every error and warning.

use serde_yaml::Value;

/// The path of `key` inside the mapping at `parent`.
pub(crate) fn key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// The path of item `index` inside the sequence at `parent`.
pub(crate) fn index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// A printable form of a mapping key.
pub(crate) fn key_name(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => "~".to_owned(),
        other => serde_yaml::to_string(other)
            .map_or_else(|_| "?".to_owned(), |s| s.trim_end().to_owned()),
    }
}

/// Displays the root path as `.` (like `serde_path_to_error`).
pub(crate) fn display(path: &str) -> &str {
    if path.is_empty() { "." } else { path }
}
