//! Step 1: `${VAR}` placeholders in string scalars are replaced from the
//! environment. `$$` is a literal `$`; a `$` not followed by `{` or `$` is kept
//! as is. Mapping keys are never interpolated.

use serde_yaml::Value;

use crate::{ConfigError, path};

/// Replaces placeholders in every string scalar of `value`, in place.
pub(crate) fn interpolate(
    value: &mut Value,
    env: &dyn Fn(&str) -> Option<String>,
    file: &str,
) -> Result<(), ConfigError> {
    walk(value, "", env, file)
}

fn walk(
    value: &mut Value,
    at: &str,
    env: &dyn Fn(&str) -> Option<String>,
    file: &str,
) -> Result<(), ConfigError> {
    match value {
        Value::String(s) => {
            if s.contains('$') {
                *s = expand(s, at, env, file)?;
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &path::index(at, i), env, file)?;
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                walk(v, &path::key(at, &path::key_name(k)), env, file)?;
            }
        }
        Value::Tagged(tagged) => walk(&mut tagged.value, at, env, file)?,
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

/// Expands one string.
pub(crate) fn expand(
    input: &str,
    at: &str,
    env: &dyn Fn(&str) -> Option<String>,
    file: &str,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let Some(end) = tail.find('}') else {
                return Err(ConfigError::Invalid {
                    path: path::display(at).to_owned(),
                    message: "unterminated `${` placeholder (write `$$` for a literal `$`)"
                        .to_owned(),
                    file: file.to_owned(),
                });
            };
            let name = &tail[..end];
            if !is_var_name(name) {
                return Err(ConfigError::Invalid {
                    path: path::display(at).to_owned(),
                    message: format!(
                        "invalid placeholder `${{{name}}}`: expected `${{NAME}}` with NAME made of \
                         letters, digits and `_` (write `$$` for a literal `$`)"
                    ),
                    file: file.to_owned(),
                });
            }
            let Some(value) = env(name) else {
                return Err(ConfigError::MissingEnv {
                    var: name.to_owned(),
                    path: path::display(at).to_owned(),
                    file: file.to_owned(),
                });
            };
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".to_owned()),
            "B_2" => Some("beta".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn expands_mixed_text_and_escapes() {
        let got = expand("x-${A}-${B_2}-$$-${A}$", "p", &env, "f").unwrap();
        assert_eq!(got, "x-alpha-beta-$-alpha$");
        assert_eq!(expand("$$${A}", "p", &env, "f").unwrap(), "$alpha");
        assert_eq!(expand("no dollars", "p", &env, "f").unwrap(), "no dollars");
    }

    #[test]
    fn missing_and_malformed() {
        let err = expand("${NOPE}", "database.uri", &env, "a.yaml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("NOPE") && msg.contains("database.uri") && msg.contains("a.yaml"));
        assert!(expand("${A", "p", &env, "f").is_err());
        assert!(expand("${A-B}", "p", &env, "f").is_err());
    }

    #[test]
    fn walks_nested_values_with_paths() {
        let mut v: Value = serde_yaml::from_str("a: [x, {b: '${MISSING}'}]").unwrap();
        let err = interpolate(&mut v, &env, "f.yaml").unwrap_err();
        assert_eq!(err.path(), Some("a[1].b"));
    }
}
