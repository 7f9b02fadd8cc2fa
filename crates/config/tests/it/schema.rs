//! The committed schema matches the code.

use std::path::Path;

#[test]
fn committed_schema_is_up_to_date() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.schema.json");
    let committed: serde_json::Value = std::fs::read_to_string(&file)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(serde_json::Value::Null);
    assert!(
        committed == vestibule_config::schema(),
        "{} is out of date with the Config types; regenerate it with `cargo run -p xtask -- schema`",
        file.display()
    );
}

#[test]
fn schema_describes_sections() {
    let schema = vestibule_config::schema();
    let props = schema["properties"].as_object().unwrap();
    for section in [
        "http",
        "database",
        "secrets",
        "matrix",
        "upstream_oauth2",
        "oauth",
    ] {
        assert!(props.contains_key(section), "{section}");
    }
}
