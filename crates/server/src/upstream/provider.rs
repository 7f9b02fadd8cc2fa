//! Small pieces of an upstream login shared by its pages: which configured
//! provider a path names, our callback URL at that provider, the claims we
//! keep and the subject that identifies the user there.

use serde_json::{Map, Value, json};
use url::Url;
use vestibule_config::{Config, sections::upstream_oauth2::UpstreamProviderConfig};
use vestibule_domain::Ulid;

use crate::routes::UrlBuilder;

/// The enabled provider with this id (ULID, case-insensitively as ULIDs
/// are).
pub fn enabled_provider<'a>(config: &'a Config, id: &str) -> Option<&'a UpstreamProviderConfig> {
    let id = Ulid::from_string(id).ok()?;
    config
        .upstream_oauth2
        .providers
        .iter()
        .find(|p| p.enabled && Ulid::from_string(&p.id).ok() == Some(id))
}

/// The enabled provider a legacy SSO `{idp}` names: its id, `oidc-<id>`
/// (how Synapse names OIDC providers) or its `synapse_idp_id`.
pub fn provider_for_idp<'a>(config: &'a Config, idp: &str) -> Option<&'a UpstreamProviderConfig> {
    config.upstream_oauth2.providers.iter().find(|p| {
        p.enabled
            && (p.id == idp
                || idp.strip_prefix("oidc-") == Some(p.id.as_str())
                || p.synapse_idp_id.as_deref() == Some(idp))
    })
}

/// The redirect URI registered at the provider: our absolute
/// `/upstream/callback/{id}` (the id as configured).
pub fn callback_url(urls: &UrlBuilder, provider_id: &str) -> Url {
    urls.join(&format!("/upstream/callback/{provider_id}"))
}

/// The claims an upstream session keeps:
/// `{"id_token": {...}, "userinfo": {...} | null}`.
pub fn claims_json(id_token: &Map<String, Value>, userinfo: Option<&Map<String, Value>>) -> Value {
    json!({ "id_token": id_token, "userinfo": userinfo })
}

/// The subject that identifies the user at the provider: the rendering of
/// `claims_imports.subject.template` (default `{{ user.sub }}`) over the
/// claims, as every other import (see [`super::claims`]).
pub fn subject(
    provider: &UpstreamProviderConfig,
    id_token: &Map<String, Value>,
    userinfo: Option<&Map<String, Value>>,
) -> Result<String, String> {
    let claims = super::claims::Claims {
        id_token: id_token.clone(),
        userinfo: userinfo.cloned(),
    };
    match super::claims::subject(&provider.claims_imports, &claims) {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err("the subject is missing from the claims".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn subject_is_sub_or_the_template() {
        let mut p: UpstreamProviderConfig = serde_json::from_value(json!({
            "id": "01H8PKNWKKRPCBW4YGH1RWV279",
            "client_id": "c",
        }))
        .unwrap();
        let id: Map<String, Value> =
            serde_json::from_value(json!({"sub": "s1", "tid": "t"})).unwrap();
        let ui: Map<String, Value> =
            serde_json::from_value(json!({"sub": "s1", "oid": "o9"})).unwrap();
        assert_eq!(subject(&p, &id, Some(&ui)).unwrap(), "s1");
        p.claims_imports.subject.template = Some("{{ user.tid }}/{{ user.oid }}".to_owned());
        assert_eq!(subject(&p, &id, Some(&ui)).unwrap(), "t/o9");
        p.claims_imports.subject.template = Some("{{ user.missing }}".to_owned());
        assert!(subject(&p, &id, None).is_err());
    }
}
