//! Steps 2 and 3½: known deviations are rewritten to the canonical form, each
//! with a [`Warning`] that shows what to write instead.
//!
//! Per file, before merging ([`fix_deviations`]):
//! - a top-level `listeners` moves to `http.listeners` (an error if the same
//!   file also has `http.listeners`);
//! - a listener resource named `oauth2` becomes `oauth`.
//!
//! After merging ([`normalize`]):
//! - `matrix.kind: synapse_modern | synapse_legacy` becomes `synapse`;
//! - an upstream provider without `token_endpoint_auth_method` gets
//!   `client_secret_basic` when it has a client secret, `none` otherwise (MAS
//!   requires the key; the seed configuration omits it). No warning: this is
//!   the OIDC registration default;
//! - extra keys under `claims_imports` move into `claims_imports.custom`, one
//!   warning each (a Vestibule extension), unless the key looks like a typo of
//!   a MAS key, which is an error;
//! - a provider's `attribute_requirements` (a Vestibule extension) is kept,
//!   with a warning.

use serde_yaml::{Mapping, Value};

use crate::{ConfigError, Warning, path, sections::upstream_oauth2::ClaimsImports};

fn key(s: &str) -> Value {
    Value::String(s.to_owned())
}

/// Rewrites one file's deviations in place.
pub(crate) fn fix_deviations(
    root: &mut Mapping,
    file: &str,
    warnings: &mut Vec<Warning>,
) -> Result<(), ConfigError> {
    if let Some(listeners) = root.remove("listeners") {
        let http = root
            .entry(key("http"))
            .or_insert_with(|| Value::Mapping(Mapping::new()));
        if http.is_null() {
            *http = Value::Mapping(Mapping::new());
        }
        if let Value::Mapping(http) = http {
            if http.contains_key("listeners") {
                return Err(ConfigError::Invalid {
                    path: "listeners".to_owned(),
                    message: "both a top-level `listeners` and `http.listeners` are set; MAS only \
                              knows `http.listeners`: merge them there and remove the top-level \
                              key"
                    .to_owned(),
                    file: file.to_owned(),
                });
            }
            http.insert(key("listeners"), listeners);
            warnings.push(Warning {
                path: "listeners".to_owned(),
                message: format!(
                    "top-level `listeners` is not a MAS key; treated as `http.listeners` (in \
                     {file}). Write it as `http:` → `listeners:`"
                ),
            });
        }
    }

    if let Some(Value::Sequence(listeners)) = root
        .get_mut("http")
        .and_then(|h| h.as_mapping_mut())
        .and_then(|h| h.get_mut("listeners"))
    {
        for (i, listener) in listeners.iter_mut().enumerate() {
            let Some(Value::Sequence(resources)) = listener.get_mut("resources") else {
                continue;
            };
            for (j, resource) in resources.iter_mut().enumerate() {
                let Some(name) = resource.get_mut("name") else {
                    continue;
                };
                if name.as_str() == Some("oauth2") {
                    *name = key("oauth");
                    warnings.push(Warning {
                        path: format!("http.listeners[{i}].resources[{j}].name"),
                        message: format!(
                            "resource `oauth2` is spelled `oauth` in MAS; treated as `name: oauth` \
                             (in {file})"
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Normalizes the merged document in place. `file_of` names the source of a
/// key path, for errors.
pub(crate) fn normalize(
    root: &mut Mapping,
    file_of: &dyn Fn(&str) -> String,
    warnings: &mut Vec<Warning>,
) -> Result<(), ConfigError> {
    if let Some(kind) = root
        .get_mut("matrix")
        .and_then(|m| m.as_mapping_mut())
        .and_then(|m| m.get_mut("kind"))
        && let Some(old @ ("synapse_modern" | "synapse_legacy")) = kind.as_str()
    {
        warnings.push(Warning {
            path: "matrix.kind".to_owned(),
            message: format!(
                "`{old}` is treated as `synapse`: Vestibule always uses Synapse's \
                 `/_synapse/mas` API. Write `kind: synapse`"
            ),
        });
        *kind = key("synapse");
    }

    let Some(Value::Sequence(providers)) = root
        .get_mut("upstream_oauth2")
        .and_then(|u| u.as_mapping_mut())
        .and_then(|u| u.get_mut("providers"))
    else {
        return Ok(());
    };
    for (i, provider) in providers.iter_mut().enumerate() {
        let Value::Mapping(provider) = provider else {
            continue;
        };
        let at = format!("upstream_oauth2.providers[{i}]");
        if !provider.contains_key("token_endpoint_auth_method") {
            let has_secret = provider.contains_key("client_secret")
                || provider.contains_key("client_secret_file");
            let method = if has_secret {
                "client_secret_basic"
            } else {
                "none"
            };
            provider.insert(key("token_endpoint_auth_method"), key(method));
        }
        if provider.contains_key("attribute_requirements") {
            warnings.push(Warning {
                path: path::key(&at, "attribute_requirements"),
                message: "`attribute_requirements` is a Vestibule extension (Synapse's setting; \
                          MAS rejects it): users whose claims do not meet it are refused"
                    .to_owned(),
            });
        }
        if let Some(Value::Mapping(claims)) = provider.get_mut("claims_imports") {
            custom_claims(claims, &path::key(&at, "claims_imports"), file_of, warnings)?;
        }
    }
    Ok(())
}

fn custom_claims(
    claims: &mut Mapping,
    at: &str,
    file_of: &dyn Fn(&str) -> String,
    warnings: &mut Vec<Warning>,
) -> Result<(), ConfigError> {
    let extra: Vec<Value> = claims
        .keys()
        .filter(|k| {
            k.as_str()
                .is_none_or(|k| k != "custom" && !ClaimsImports::KNOWN_KEYS.contains(&k))
        })
        .cloned()
        .collect();
    if extra.is_empty() && !claims.contains_key("custom") {
        return Ok(());
    }
    let mut moved = Vec::new();
    for k in extra {
        let name = path::key_name(&k);
        let here = path::key(at, &name);
        if let Some(known) = near_miss(&name) {
            return Err(ConfigError::Invalid {
                message: format!(
                    "unknown field `{name}`, did you mean `{known}`? (other keys are custom claim \
                     imports, which must not look like MAS keys)"
                ),
                file: file_of(&here),
                path: here,
            });
        }
        if let Some(v) = claims.remove(&k) {
            moved.push((k, v, here));
        }
    }
    let custom = claims
        .entry(key("custom"))
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if custom.is_null() {
        *custom = Value::Mapping(Mapping::new());
    }
    let Value::Mapping(custom) = custom else {
        return Ok(()); // not a mapping: deserialization reports it
    };
    for (name, _) in custom.iter() {
        let name = path::key_name(name);
        warnings.push(Warning {
            path: path::key(&path::key(at, "custom"), &name),
            message: custom_message(&name),
        });
    }
    for (k, v, here) in moved {
        let name = path::key_name(&k);
        if custom.contains_key(&k) {
            return Err(ConfigError::Invalid {
                message: format!("custom claim `{name}` is set both here and under `custom`"),
                file: file_of(&here),
                path: here,
            });
        }
        warnings.push(Warning {
            path: here,
            message: custom_message(&name),
        });
        custom.insert(k, v);
    }
    Ok(())
}

fn custom_message(name: &str) -> String {
    format!(
        "custom claim import `{name}` is a Vestibule extension (MAS rejects it): its value is \
         stored as the user attribute `{name}`"
    )
}

/// A MAS `claims_imports` key that `name` is probably a typo of.
fn near_miss(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    ClaimsImports::KNOWN_KEYS.iter().copied().find(|known| {
        let d = distance(&lower, known);
        d == 0 || (d <= 2 && known.len() > 4)
    })
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typo_detection() {
        assert_eq!(near_miss("localpat"), Some("localpart"));
        assert_eq!(near_miss("Email"), Some("email"));
        assert_eq!(near_miss("display_name"), Some("displayname"));
        assert_eq!(near_miss("tenant_id"), None);
        assert_eq!(near_miss("picture"), None);
    }

    #[test]
    fn both_listeners_is_an_error() {
        let mut root: Mapping =
            serde_yaml::from_str("listeners: []\nhttp: {listeners: []}").unwrap();
        let err = fix_deviations(&mut root, "a.yaml", &mut Vec::new()).unwrap_err();
        assert_eq!(err.path(), Some("listeners"));
        assert!(err.to_string().contains("a.yaml"));
    }
}
