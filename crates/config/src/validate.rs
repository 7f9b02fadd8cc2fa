//! Step 6: semantic rules, each error naming its key path. Not an exhaustive
//! validator: it catches what would otherwise fail late or silently.

use std::{collections::HashSet, net::IpAddr};

use url::Url;

use crate::{
    Config, ConfigError, Warning,
    files::Origin,
    path,
    sections::{
        clients::ClientAuthMethod,
        email::EmailTransportKind,
        secrets::decode_hex_32,
        upstream_oauth2::{
            ClaimsImports, DiscoveryMode, ImportAction, JwsAlg, OnBackchannelLogout, OnConflict,
            TokenAuthMethod,
        },
    },
};

struct Check<'a> {
    origin: &'a dyn Origin,
}

impl Check<'_> {
    fn fail(&self, at: impl Into<String>, message: impl Into<String>) -> ConfigError {
        let at = at.into();
        ConfigError::Invalid {
            file: self.origin.file_of(&at),
            path: at,
            message: message.into(),
        }
    }

    fn ensure(
        &self,
        ok: bool,
        at: impl Into<String>,
        message: impl Into<String>,
    ) -> Result<(), ConfigError> {
        if ok {
            Ok(())
        } else {
            Err(self.fail(at, message))
        }
    }

    fn http_url(&self, url: &Url, at: &str) -> Result<(), ConfigError> {
        self.ensure(
            matches!(url.scheme(), "http" | "https") && url.has_host(),
            at,
            format!("`{url}` must be an absolute http(s) URL"),
        )
    }
}

/// Whether `s` is a ULID: 26 Crockford base32 characters, the first at most 7.
pub fn is_ulid(s: &str) -> bool {
    const ALPHABET: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    s.len() == 26
        && s.chars().all(|c| ALPHABET.contains(c.to_ascii_uppercase()))
        && s.as_bytes()[0] <= b'7'
}

fn is_ip_or_cidr(s: &str) -> bool {
    match s.split_once('/') {
        None => s.parse::<IpAddr>().is_ok(),
        Some((ip, prefix)) => match (ip.parse::<IpAddr>(), prefix.parse::<u8>()) {
            (Ok(IpAddr::V4(_)), Ok(p)) => p <= 32,
            (Ok(IpAddr::V6(_)), Ok(p)) => p <= 128,
            _ => false,
        },
    }
}

/// The authorization request parameters Vestibule sends itself (RFC 6749
/// §4.1.1, OIDC Core §3.1.2.1, RFC 7636 §4.3, OAuth 2.0 Multiple Response
/// Type Encoding Practices §2.1): `additional_authorization_parameters`
/// must not repeat them. A parameter sent twice is an error for many
/// providers (RFC 6749 §3.1: "Request and response parameters MUST NOT be
/// included more than once") and, where it is not, it could change the
/// `redirect_uri`, `state` or PKCE challenge the callback relies on.
const SENT_AUTHORIZATION_PARAMETERS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "response_mode",
];

pub(crate) fn validate(
    config: &Config,
    origin: &dyn Origin,
    warnings: &mut Vec<Warning>,
) -> Result<(), ConfigError> {
    let c = Check { origin };
    http(config, &c)?;
    database(config, &c)?;
    secrets(config, &c)?;
    matrix(config, &c)?;
    clients(config, &c)?;
    passwords(config, &c)?;
    upstream(config, &c, warnings)?;
    misc(config, &c)?;
    Ok(())
}

fn http(config: &Config, c: &Check<'_>) -> Result<(), ConfigError> {
    let http = &config.http;
    c.http_url(&http.public_base, "http.public_base")?;
    if let Some(issuer) = &http.issuer {
        c.http_url(issuer, "http.issuer")?;
    }
    for (i, proxy) in http.trusted_proxies.iter().enumerate() {
        c.ensure(
            is_ip_or_cidr(proxy),
            path::index("http.trusted_proxies", i),
            format!("`{proxy}` is not an IP address or CIDR range"),
        )?;
    }
    for (i, listener) in http.listeners.iter().enumerate() {
        let at = path::index("http.listeners", i);
        c.ensure(
            !listener.resources.is_empty(),
            path::key(&at, "resources"),
            "listener has no resources",
        )?;
        c.ensure(
            !listener.binds.is_empty(),
            path::key(&at, "binds"),
            "listener does not bind to any address",
        )?;
        if let Some(prefix) = &listener.prefix {
            c.ensure(
                prefix.starts_with('/'),
                path::key(&at, "prefix"),
                format!("`{prefix}` must start with `/`"),
            )?;
        }
        if let Some(tls) = &listener.tls {
            let at = path::key(&at, "tls");
            c.ensure(
                tls.certificate.is_some(),
                path::key(&at, "certificate"),
                "TLS needs `certificate` or `certificate_file`",
            )?;
            c.ensure(
                tls.key.is_some(),
                path::key(&at, "key"),
                "TLS needs `key` or `key_file`",
            )?;
        }
    }
    Ok(())
}

fn database(config: &Config, c: &Check<'_>) -> Result<(), ConfigError> {
    let db = &config.database;
    if let Some(uri) = &db.uri {
        c.ensure(
            !db.has_split_options(),
            "database.uri",
            "`uri` must not be set together with `host`, `port`, `socket`, `username`, \
             `password(_file)` or `database`",
        )?;
        let uri = uri.expose();
        c.ensure(
            ["postgres://", "postgresql://", "sqlite:"]
                .iter()
                .any(|p| uri.starts_with(p)),
            "database.uri",
            "must be a `postgresql://`, `postgres://` or `sqlite:` URI",
        )?;
    }
    c.ensure(
        db.ssl_key.is_some() == db.ssl_certificate.is_some(),
        "database.ssl_key",
        "`ssl_certificate` and `ssl_key` must be set together",
    )?;
    c.ensure(
        db.max_connections >= 1,
        "database.max_connections",
        "must be at least 1",
    )?;
    c.ensure(
        db.min_connections <= db.max_connections,
        "database.min_connections",
        "must not exceed `max_connections`",
    )
}

fn secrets(config: &Config, c: &Check<'_>) -> Result<(), ConfigError> {
    let secrets = &config.secrets;
    if let Some(encryption) = &secrets.encryption {
        let at = if secrets.encryption_file.is_some() {
            "secrets.encryption_file"
        } else {
            "secrets.encryption"
        };
        c.ensure(
            decode_hex_32(encryption.expose()).is_some(),
            at,
            format!(
                "must be exactly 32 bytes written as 64 hex characters (got {} characters)",
                encryption.expose().len()
            ),
        )?;
    }
    let mut kids = HashSet::new();
    for (i, key) in secrets.keys.iter().enumerate() {
        let at = path::index("secrets.keys", i);
        c.ensure(key.key.is_some(), &at, "missing `key` or `key_file`")?;
        if let Some(kid) = &key.kid {
            c.ensure(
                kids.insert(kid),
                path::key(&at, "kid"),
                format!("duplicate kid `{kid}`"),
            )?;
        }
    }
    Ok(())
}

fn matrix(config: &Config, c: &Check<'_>) -> Result<(), ConfigError> {
    c.ensure(
        !config.matrix.homeserver.trim().is_empty(),
        "matrix.homeserver",
        "must be the homeserver's server name",
    )?;
    c.http_url(&config.matrix.endpoint, "matrix.endpoint")
}

fn clients(config: &Config, c: &Check<'_>) -> Result<(), ConfigError> {
    let mut ids = HashSet::new();
    for (i, client) in config.clients.iter().enumerate() {
        let at = path::index("clients", i);
        let id = &client.client_id;
        c.ensure(
            is_ulid(id),
            path::key(&at, "client_id"),
            format!("`{id}` is not a ULID (26 Crockford base32 characters)"),
        )?;
        c.ensure(
            ids.insert(id.to_ascii_uppercase()),
            path::key(&at, "client_id"),
            format!("duplicate client_id `{id}`"),
        )?;
        let method = client.client_auth_method;
        let has_jwks = client.jwks.is_some() || client.jwks_uri.is_some();
        if method.needs_secret() {
            c.ensure(
                client.client_secret.is_some(),
                path::key(&at, "client_secret"),
                format!(
                    "`client_secret` (or `client_secret_file`) is required for {}",
                    method.as_str()
                ),
            )?;
            c.ensure(
                !has_jwks,
                path::key(&at, "jwks"),
                format!("`jwks`/`jwks_uri` are not allowed with {}", method.as_str()),
            )?;
        } else {
            c.ensure(
                client.client_secret.is_none(),
                path::key(&at, "client_secret"),
                format!("`client_secret` is not allowed with {}", method.as_str()),
            )?;
        }
        match method {
            ClientAuthMethod::PrivateKeyJwt => {
                c.ensure(
                    has_jwks,
                    path::key(&at, "jwks"),
                    "`jwks` or `jwks_uri` is required for private_key_jwt",
                )?;
                c.ensure(
                    client.jwks.is_none() || client.jwks_uri.is_none(),
                    path::key(&at, "jwks"),
                    "`jwks` and `jwks_uri` are mutually exclusive",
                )?;
            }
            ClientAuthMethod::None => c.ensure(
                !has_jwks,
                path::key(&at, "jwks"),
                "`jwks`/`jwks_uri` are not allowed with none",
            )?,
            _ => {}
        }
    }
    Ok(())
}

fn passwords(config: &Config, c: &Check<'_>) -> Result<(), ConfigError> {
    let passwords = &config.passwords;
    c.ensure(
        passwords.minimum_complexity <= 4,
        "passwords.minimum_complexity",
        "must be between 0 and 4",
    )?;
    if passwords.enabled {
        c.ensure(
            !passwords.schemes.is_empty(),
            "passwords.schemes",
            "at least one hashing scheme is required when passwords are enabled",
        )?;
    }
    let mut versions = HashSet::new();
    for (i, scheme) in passwords.schemes.iter().enumerate() {
        c.ensure(
            versions.insert(scheme.version),
            format!("passwords.schemes[{i}].version"),
            format!("duplicate version {}", scheme.version),
        )?;
    }
    Ok(())
}

fn upstream(
    config: &Config,
    c: &Check<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<(), ConfigError> {
    let mut ids = HashSet::new();
    for (i, p) in config.upstream_oauth2.providers.iter().enumerate() {
        let at = path::index("upstream_oauth2.providers", i);
        let key = |k: &str| path::key(&at, k);
        c.ensure(
            is_ulid(&p.id),
            key("id"),
            format!("`{}` is not a ULID (26 Crockford base32 characters)", p.id),
        )?;
        c.ensure(
            ids.insert(p.id.to_ascii_uppercase()),
            key("id"),
            format!("duplicate provider id `{}`", p.id),
        )?;
        // Always required, even without discovery: it is what `iss` in ID
        // tokens, userinfo JWTs and logout tokens is checked against (OIDC
        // Core §3.1.3.7 item 2; Back-Channel Logout 1.0 §2.6 item 4).
        c.ensure(
            p.issuer.as_deref().is_some_and(|i| !i.trim().is_empty()),
            key("issuer"),
            "required (the `iss` of the provider's tokens is checked against it)",
        )?;
        if p.discovery_mode == DiscoveryMode::Disabled {
            c.ensure(
                p.authorization_endpoint.is_some(),
                key("authorization_endpoint"),
                "required when `discovery_mode` is `disabled`",
            )?;
            c.ensure(
                p.token_endpoint.is_some(),
                key("token_endpoint"),
                "required when `discovery_mode` is `disabled`",
            )?;
        }
        // Back-Channel Logout 1.0 §2.4: logout tokens MUST be signed, and we
        // verify them with the ID token algorithm; `none` would let anyone
        // forge one.
        c.ensure(
            p.id_token_signed_response_alg != JwsAlg::None
                || p.on_backchannel_logout == OnBackchannelLogout::DoNothing,
            key("id_token_signed_response_alg"),
            "`none` is not allowed unless `on_backchannel_logout` is `do_nothing` \
             (logout tokens must be signed)",
        )?;
        let method = p.token_endpoint_auth_method;
        if method.needs_secret() {
            c.ensure(
                p.client_secret.is_some(),
                key("client_secret"),
                "required (or `client_secret_file`) for the selected token_endpoint_auth_method",
            )?;
        } else {
            c.ensure(
                p.client_secret.is_none(),
                key("client_secret"),
                "not allowed with the selected token_endpoint_auth_method",
            )?;
        }
        if method.signs_jwt() {
            c.ensure(
                p.token_endpoint_auth_signing_alg.is_some(),
                key("token_endpoint_auth_signing_alg"),
                "required for client_secret_jwt and private_key_jwt",
            )?;
        } else {
            c.ensure(
                p.token_endpoint_auth_signing_alg.is_none(),
                key("token_endpoint_auth_signing_alg"),
                "only allowed with client_secret_jwt and private_key_jwt",
            )?;
        }
        c.ensure(
            (method == TokenAuthMethod::SignInWithApple) == p.sign_in_with_apple.is_some(),
            key("sign_in_with_apple"),
            "`sign_in_with_apple` is required with, and only allowed with, \
             token_endpoint_auth_method `sign_in_with_apple`",
        )?;
        if let Some(apple) = &p.sign_in_with_apple {
            c.ensure(
                apple.private_key.is_some(),
                key("sign_in_with_apple.private_key"),
                "`private_key` or `private_key_file` is required",
            )?;
        }

        for name in p.additional_authorization_parameters.keys() {
            let at = path::key(&key("additional_authorization_parameters"), name);
            c.ensure(
                !SENT_AUTHORIZATION_PARAMETERS.contains(&name.as_str()),
                &at,
                format!(
                    "`{name}` is set by Vestibule itself (from the provider's settings and the \
                     login in progress) and must not be given twice"
                ),
            )?;
            // MAS forwards both; the provider would see two `login_hint`s.
            c.ensure(
                !(name == "login_hint" && p.forward_login_hint),
                &at,
                "must not be set together with `forward_login_hint: true` (both send \
                 `login_hint`)",
            )?;
        }

        let claims = &p.claims_imports;
        let ci = |k: &str| path::key(&key("claims_imports"), k);
        if claims.skip_confirmation {
            c.ensure(
                claims.localpart.action == ImportAction::Require,
                ci("localpart.action"),
                "must be `require` when `skip_confirmation` is true",
            )?;
            c.ensure(
                claims.displayname.action != ImportAction::Suggest,
                ci("displayname.action"),
                "must not be `suggest` when `skip_confirmation` is true",
            )?;
            c.ensure(
                claims.email.action != ImportAction::Suggest,
                ci("email.action"),
                "must not be `suggest` when `skip_confirmation` is true",
            )?;
            // A suggestion needs the form that `skip_confirmation` skips;
            // named where custom claims are usually written (next to the
            // MAS keys, moved under `custom` at load time).
            for (name, custom) in &claims.custom {
                c.ensure(
                    custom.action != ImportAction::Suggest,
                    ci(&format!("{name}.action")),
                    format!(
                        "custom claim `{name}` must not be `suggest` when `skip_confirmation` \
                         is true (a suggestion needs the confirmation form)"
                    ),
                )?;
            }
        }
        if claims.localpart.on_conflict != OnConflict::Fail {
            c.ensure(
                matches!(
                    claims.localpart.action,
                    ImportAction::Force | ImportAction::Require
                ),
                ci("localpart.action"),
                "must be `force` or `require` when `on_conflict` is `add`, `replace` or `set`",
            )?;
            match claims.localpart.template.as_deref() {
                Some(t) => c.ensure(
                    !t.trim().is_empty(),
                    ci("localpart.template"),
                    "must not be blank",
                )?,
                // A MAS config may rely on the default template; it loads,
                // but linking existing accounts by it is risky. OIDC Core
                // §5.7: `preferred_username` is neither unique nor stable
                // and often user-editable, so whoever the provider lets take
                // a name can sign in as the local user of that name.
                None => warnings.push(Warning {
                    path: ci("localpart.template"),
                    message: format!(
                        "not set, so `on_conflict: {}` links existing local accounts by the \
                         default template `{{{{ user.preferred_username }}}}`, a claim the \
                         provider's users may be able to choose or change; set a template on \
                         a claim they cannot change (e.g. an employee ID)",
                        on_conflict_name(claims.localpart.on_conflict)
                    ),
                }),
            }
            warnings.push(Warning {
                path: ci("localpart.on_conflict"),
                message: format!(
                    "`{}` links existing local accounts by localpart: anyone the provider \
                     lets use that name can sign in as the local user",
                    on_conflict_name(claims.localpart.on_conflict)
                ),
            });
        }
        for (name, custom) in &claims.custom {
            // The attribute `displayname` holds the display name given by
            // `manage import-users` and is never released; the other MAS
            // keys would only confuse.
            c.ensure(
                !ClaimsImports::KNOWN_KEYS.contains(&name.as_str()) && name != "custom",
                ci(&format!("custom.{name}")),
                format!("`{name}` is a MAS key of `claims_imports`, not a custom claim name"),
            )?;
            c.ensure(
                !custom.template.trim().is_empty(),
                ci(&format!("custom.{name}.template")),
                "must not be empty",
            )?;
        }
        for (j, req) in p.attribute_requirements.iter().enumerate() {
            let at = path::index(&key("attribute_requirements"), j);
            c.ensure(
                !req.attribute.trim().is_empty(),
                path::key(&at, "attribute"),
                "must name a claim",
            )?;
            c.ensure(
                req.value.is_some() == req.one_of.is_empty(),
                path::key(
                    &at,
                    if req.value.is_some() {
                        "one_of"
                    } else {
                        "value"
                    },
                ),
                "set exactly one of `value` and `one_of` (a non-empty list)",
            )?;
        }
    }
    Ok(())
}

fn on_conflict_name(on_conflict: OnConflict) -> &'static str {
    match on_conflict {
        OnConflict::Fail => "fail",
        OnConflict::Add => "add",
        OnConflict::Replace => "replace",
        OnConflict::Set => "set",
    }
}

fn misc(config: &Config, c: &Check<'_>) -> Result<(), ConfigError> {
    let email = &config.email;
    match email.transport {
        EmailTransportKind::Blackhole => {}
        EmailTransportKind::Smtp => {
            c.ensure(email.mode.is_some(), "email.mode", "required for smtp")?;
            c.ensure(
                email.hostname.is_some(),
                "email.hostname",
                "required for smtp",
            )?;
            c.ensure(
                email.username.is_some() == email.password.is_some(),
                "email.password",
                "`username` and `password` must be set together",
            )?;
        }
        EmailTransportKind::Sendmail => {
            c.ensure(
                email.command.is_some(),
                "email.command",
                "required for sendmail",
            )?;
        }
    }

    if config.captcha.service.is_some() {
        c.ensure(
            config.captcha.site_key.is_some(),
            "captcha.site_key",
            "required when `service` is set",
        )?;
        c.ensure(
            config.captcha.secret_key.is_some(),
            "captcha.secret_key",
            "required when `service` is set",
        )?;
    }

    for (name, limiter) in config.rate_limiting.limiters() {
        let at = path::key("rate_limiting", name);
        c.ensure(
            limiter.burst >= 1,
            path::key(&at, "burst"),
            "must be at least 1",
        )?;
        c.ensure(
            limiter.per_second.is_finite() && limiter.per_second > 0.0,
            path::key(&at, "per_second"),
            "must be a positive number",
        )?;
    }

    let telemetry = &config.telemetry;
    let rates = [
        (
            "telemetry.tracing.sample_rate",
            telemetry.tracing.sample_rate,
        ),
        (
            "telemetry.sentry.sample_rate",
            telemetry.sentry.sample_rate.map(f64::from),
        ),
        (
            "telemetry.sentry.traces_sample_rate",
            telemetry.sentry.traces_sample_rate.map(f64::from),
        ),
    ];
    for (at, rate) in rates {
        if let Some(rate) = rate {
            c.ensure(
                (0.0..=1.0).contains(&rate),
                at,
                "must be between 0.0 and 1.0",
            )?;
        }
    }

    let experimental = &config.experimental;
    c.ensure(
        (60..=86_400).contains(&experimental.access_token_ttl),
        "experimental.access_token_ttl",
        "must be between 60 and 86400 seconds",
    )?;
    c.ensure(
        (60..=86_400).contains(&experimental.compat_token_ttl),
        "experimental.compat_token_ttl",
        "must be between 60 and 86400 seconds",
    )?;
    if let Some(inactive) = &experimental.inactive_session_expiration {
        c.ensure(
            (600..=7_776_000).contains(&inactive.ttl),
            "experimental.inactive_session_expiration.ttl",
            "must be between 600 and 7776000 seconds",
        )?;
    }
    if let Some(limit) = &experimental.session_limit {
        let at = "experimental.session_limit";
        c.ensure(
            limit.soft_limit >= 1,
            format!("{at}.soft_limit"),
            "must be at least 1",
        )?;
        c.ensure(
            limit.hard_limit >= 1,
            format!("{at}.hard_limit"),
            "must be at least 1",
        )?;
        c.ensure(
            !limit.dangerous_hard_limit_eviction || limit.hard_limit >= 2,
            format!("{at}.hard_limit"),
            "must be at least 2 when `dangerous_hard_limit_eviction` is set",
        )?;
    }

    let oauth = &config.oauth;
    c.ensure(
        oauth.authorization_code_ttl > 0,
        "oauth.authorization_code_ttl",
        "must be positive",
    )?;
    c.ensure(
        oauth.device_code_ttl > 0,
        "oauth.device_code_ttl",
        "must be positive",
    )?;
    c.ensure(
        oauth.refresh_token_ttl != Some(0),
        "oauth.refresh_token_ttl",
        "must be positive",
    )?;

    let invites = &config.guest_invites;
    if invites.enabled {
        c.ensure(
            invites
                .client_room_url
                .as_deref()
                .is_some_and(|u| u.contains("{room_id}")),
            "guest_invites.client_room_url",
            "required when enabled, and must contain `{room_id}`",
        )?;
    }
    c.ensure(
        invites.invite_lifetime > 0,
        "guest_invites.invite_lifetime",
        "must be positive",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulids() {
        assert!(is_ulid("0000000000000000000SYNAPSE"));
        assert!(is_ulid("01JAYS74TCG3BTWKADN5Q4518C"));
        assert!(!is_ulid("0000000000000000000SYNAPSEX"));
        assert!(!is_ulid("8ZZZZZZZZZZZZZZZZZZZZZZZZZ"), "overflows 128 bits");
        assert!(!is_ulid("0000000000000000000000000U"), "U is not Crockford");
    }

    #[test]
    fn cidrs() {
        assert!(is_ip_or_cidr("10.0.0.0/8"));
        assert!(is_ip_or_cidr("::1/128"));
        assert!(is_ip_or_cidr("192.168.1.1"));
        assert!(!is_ip_or_cidr("10.0.0.0/33"));
        assert!(!is_ip_or_cidr("example.com"));
    }
}
