//! Claims import: what a completed upstream login tells us about the user,
//! rendered through the provider's `claims_imports` templates (MAS
//! semantics), and the Vestibule extension `attribute_requirements`.
//!
//! Templates are minijinja over three values:
//! - `user`: the ID token claims merged with the userinfo claims (userinfo
//!   wins, except `sub`, which is always the ID token's);
//! - `id_token_claims`, `userinfo_claims` (empty without userinfo).
//!
//! Undefined handling is semi-strict: printing a claim that is absent (or
//! `null`) is an error that we read as "missing" — never the text
//! `undefined` or `none` — while `{% if user.x %}` and `user.x is defined`
//! still work, so operators can write fallbacks. A value that renders to
//! nothing but whitespace is missing too.
//!
//! Actions (MAS): `ignore` (not imported), `suggest` (a default the user may
//! change or decline), `force` (imported as is, not asked; fine if missing),
//! `require` (like force, and the login is refused when it is missing).

use std::collections::BTreeMap;

use minijinja::{Environment, ErrorKind, UndefinedBehavior, context};
use serde_json::{Map, Value};
use vestibule_config::{AttributeRequirement, ClaimsImports, ImportAction};

use crate::flows::browser_login::{RegisterError, validate_new_localpart};

/// MAS's default templates, used when none is configured.
pub const DEFAULT_SUBJECT: &str = "{{ user.sub }}";
pub const DEFAULT_LOCALPART: &str = "{{ user.preferred_username }}";
pub const DEFAULT_DISPLAYNAME: &str = "{{ user.name }}";
pub const DEFAULT_EMAIL: &str = "{{ user.email }}";

/// The claims stored with a completed upstream session:
/// `{"id_token": {…}, "userinfo": {…} | null}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims {
    pub id_token: Map<String, Value>,
    pub userinfo: Option<Map<String, Value>>,
}

/// `null` members are dropped (recursively), so they count as absent.
fn without_nulls(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let v = match v {
                Value::Object(o) => Value::Object(without_nulls(o)),
                other => other.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}

impl Claims {
    /// Reads the session's `claims` column; anything malformed counts as
    /// no claims at all.
    pub fn from_session(json: Option<&Value>) -> Self {
        let object = |v: Option<&Value>| v.and_then(Value::as_object).map(without_nulls);
        Self {
            id_token: object(json.and_then(|j| j.get("id_token"))).unwrap_or_default(),
            userinfo: object(json.and_then(|j| j.get("userinfo"))),
        }
    }

    /// `user`: the ID token claims with the userinfo claims over them,
    /// except `sub` (OIDC Core §5.3.2: userinfo's `sub` must equal the ID
    /// token's; ours is the one that was validated).
    pub fn merged(&self) -> Map<String, Value> {
        let mut user = self.id_token.clone();
        if let Some(info) = &self.userinfo {
            for (k, v) in info {
                if k != "sub" || !user.contains_key("sub") {
                    user.insert(k.clone(), v.clone());
                }
            }
        }
        user
    }
}

/// Renders one template over the claims. `Ok(None)`: the value is missing
/// (an undefined claim was printed, or the result is blank). `Err`: the
/// template itself is broken (syntax, or an error other than undefined).
pub fn render(template: &str, claims: &Claims) -> Result<Option<String>, String> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    let ctx = context! {
        user => claims.merged(),
        id_token_claims => claims.id_token.clone(),
        userinfo_claims => claims.userinfo.clone().unwrap_or_default(),
    };
    match env.render_str(template, ctx) {
        Ok(s) => {
            let s = s.trim();
            Ok((!s.is_empty()).then(|| s.to_owned()))
        }
        Err(e) if e.kind() == ErrorKind::UndefinedError => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// One imported value and what the operator wants done with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub action: ImportAction,
    /// The rendered value, if the claim was there (always `None` for
    /// `ignore`).
    pub value: Option<String>,
}

impl Imported {
    /// Imported without asking: `force`/`require` with a value.
    pub fn is_fixed(&self) -> bool {
        matches!(self.action, ImportAction::Force | ImportAction::Require) && self.value.is_some()
    }

    /// A value offered to the user (`suggest` with a value).
    pub fn suggestion(&self) -> Option<&str> {
        match self.action {
            ImportAction::Suggest => self.value.as_deref(),
            _ => None,
        }
    }

    /// The fixed value, if any.
    pub fn fixed(&self) -> Option<&str> {
        if self.is_fixed() {
            self.value.as_deref()
        } else {
            None
        }
    }
}

/// Everything a registration through the provider may take from the claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imports {
    pub localpart: Imported,
    pub displayname: Imported,
    pub email: Imported,
    /// A name of the upstream account, for display only.
    pub account_name: Option<String>,
    /// Custom claims (Vestibule extension), stored as user attributes.
    pub custom: BTreeMap<String, Imported>,
}

impl Imports {
    /// Whether there is nothing to ask the user: the localpart is fixed and
    /// no value is merely suggested. With `skip_confirmation` the account
    /// is then created at once.
    pub fn nothing_to_ask(&self) -> bool {
        self.localpart.is_fixed()
            && self.displayname.suggestion().is_none()
            && self.email.suggestion().is_none()
            && self.custom.values().all(|c| c.suggestion().is_none())
    }
}

/// Why the claims cannot make an account.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// A `require`d value is missing. `claim` names the claim the template
    /// reads when it is a plain `{{ user.NAME }}`, else the import.
    #[error(
        "your identity provider did not send `{claim}`, which this service requires to create \
         your account"
    )]
    MissingRequired { claim: String },
    /// A fixed localpart is not a valid Matrix username.
    #[error(
        "your identity provider gave the username `{value}`, which is not a valid Matrix \
         username: {reason}"
    )]
    InvalidLocalpart { value: String, reason: String },
    /// The operator's template does not work.
    #[error("the claims import template of `{import}` is broken: {message}")]
    Template { import: String, message: String },
}

/// The claim a template reads, when it is the plain `{{ user.NAME }}` (or
/// `id_token_claims.NAME` / `userinfo_claims.NAME`).
fn claim_name(template: &str) -> Option<&str> {
    let inner = template
        .trim()
        .strip_prefix("{{")?
        .strip_suffix("}}")?
        .trim();
    let name = ["user.", "id_token_claims.", "userinfo_claims."]
        .iter()
        .find_map(|p| inner.strip_prefix(p))?;
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        .then_some(name)
}

fn import_one(
    import: &str,
    action: ImportAction,
    template: &str,
    claims: &Claims,
) -> Result<Imported, ImportError> {
    if action == ImportAction::Ignore {
        return Ok(Imported {
            action,
            value: None,
        });
    }
    let value = render(template, claims).map_err(|message| ImportError::Template {
        import: import.to_owned(),
        message,
    })?;
    if value.is_none() && action == ImportAction::Require {
        return Err(ImportError::MissingRequired {
            claim: claim_name(template).unwrap_or(import).to_owned(),
        });
    }
    Ok(Imported { action, value })
}

/// A plausible email address: one `@`, something on both sides, no spaces.
fn plausible_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !s.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

/// Renders every configured import over the claims.
///
/// A `force`d or `require`d localpart must be a valid Matrix localpart as
/// our registration accepts it (no silent lower-casing: write
/// `{{ user.preferred_username | lower }}` for that); a suggested one is
/// only a default, checked when the user submits. An email that does not
/// look like one, or with `email_verified: false`, is treated as missing.
pub fn import(
    config: &ClaimsImports,
    claims: &Claims,
    homeserver: &str,
) -> Result<Imports, ImportError> {
    let template = |t: &Option<String>, default: &'static str| -> String {
        t.clone().unwrap_or_else(|| default.to_owned())
    };
    let localpart = import_one(
        "localpart",
        config.localpart.action,
        &template(&config.localpart.template, DEFAULT_LOCALPART),
        claims,
    )?;
    if let Some(value) = localpart.fixed()
        && let Err(e) = validate_new_localpart(value, homeserver)
    {
        let reason = match e {
            RegisterError::InvalidUsername(m) => m.to_owned(),
            other => other.to_string(),
        };
        return Err(ImportError::InvalidLocalpart {
            value: value.to_owned(),
            reason,
        });
    }
    let displayname = import_one(
        "displayname",
        config.displayname.action,
        &template(&config.displayname.template, DEFAULT_DISPLAYNAME),
        claims,
    )?;
    let email_template = template(&config.email.template, DEFAULT_EMAIL);
    let mut email = import_one("email", config.email.action, &email_template, claims)?;
    // An address the provider itself does not say it has verified is not
    // imported (it could be anyone's; emails are unique here and serve
    // account recovery). Providers that do not send `email_verified` are
    // trusted, as MAS does; when sent, only `true` (OIDC Core §5.1: a
    // boolean; the string "true" is a common deviation) counts as verified.
    // It is read from the same claim set (userinfo or ID token) the email
    // came from, so one source's flag cannot vouch for the other's address.
    let email_claim = claim_name(&email_template).unwrap_or("email");
    let source = match &claims.userinfo {
        Some(info) if info.contains_key(email_claim) => info,
        _ => &claims.id_token,
    };
    let unverified = match source.get("email_verified") {
        None => false,
        Some(Value::Bool(b)) => !b,
        Some(Value::String(s)) => s != "true",
        Some(_) => true,
    };
    if unverified || email.value.as_deref().is_some_and(|e| !plausible_email(e)) {
        email.value = None;
        if email.action == ImportAction::Require {
            return Err(ImportError::MissingRequired {
                claim: claim_name(&email_template).unwrap_or("email").to_owned(),
            });
        }
    }
    let account_name = match &config.account_name.template {
        Some(t) => render(t, claims).map_err(|message| ImportError::Template {
            import: "account_name".to_owned(),
            message,
        })?,
        None => None,
    };
    let custom = import_custom(config, claims)?;
    Ok(Imports {
        localpart,
        displayname,
        email,
        account_name,
        custom,
    })
}

/// Renders only the custom claims imports (stored as user attributes):
/// what linking an existing account, or signing in through a link, takes
/// from the claims. A `require`d one that is missing is an error, as at
/// registration.
pub fn import_custom(
    config: &ClaimsImports,
    claims: &Claims,
) -> Result<BTreeMap<String, Imported>, ImportError> {
    config
        .custom
        .iter()
        .map(|(name, c)| {
            Ok((
                name.clone(),
                import_one(name, c.action, &c.template, claims)?,
            ))
        })
        .collect()
}

/// The attributes a sign-in through an existing link brings up to date:
/// those the provider is authoritative for (`force`/`require`), set to the
/// claim's current value, or removed when a `force`d claim is no longer
/// sent (a `require`d one that is missing refuses the login before this).
/// `suggest`ed ones were the user's choice at registration and are left
/// alone.
pub fn attribute_updates(custom: &BTreeMap<String, Imported>) -> BTreeMap<String, Option<String>> {
    custom
        .iter()
        .filter(|(_, i)| matches!(i.action, ImportAction::Force | ImportAction::Require))
        .map(|(name, i)| (name.clone(), i.value.clone()))
        .collect()
}

/// The name of the upstream account shown to the user (link offer page,
/// account page): `claims_imports.account_name.template` as MAS renders
/// it, or else `preferred_username`, `email`, `sub` (the first present).
/// Display only: never used to find or link anything. At most 255
/// characters.
pub fn human_account_name(config: &ClaimsImports, claims: &Claims) -> Option<String> {
    let configured = config
        .account_name
        .template
        .as_deref()
        .and_then(|t| render(t, claims).ok().flatten());
    let user = claims.merged();
    let name = configured.or_else(|| {
        ["preferred_username", "email", "sub"].iter().find_map(|k| {
            user.get(*k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        })
    })?;
    Some(name.chars().filter(|c| !c.is_control()).take(255).collect())
}

/// The subject of the link (default `{{ user.sub }}`); `None` if missing.
pub fn subject(config: &ClaimsImports, claims: &Claims) -> Result<Option<String>, ImportError> {
    let t = config
        .subject
        .template
        .clone()
        .unwrap_or_else(|| DEFAULT_SUBJECT.to_owned());
    render(&t, claims).map_err(|message| ImportError::Template {
        import: "subject".to_owned(),
        message,
    })
}

/// The JSON text of a scalar claim (strings as they are).
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Whether one requirement holds: the claim (in `user`) equals an accepted
/// value, or is an array containing one.
pub fn requirement_met(req: &AttributeRequirement, user: &Map<String, Value>) -> bool {
    let accepted = req.accepted();
    let matches = |v: &Value| scalar_text(v).is_some_and(|t| accepted.contains(&t.as_str()));
    match user.get(&req.attribute) {
        Some(Value::Array(items)) => items.iter().any(matches),
        Some(v) => matches(v),
        None => false,
    }
}

/// The first requirement the claims do not meet, if any.
pub fn unmet_requirement<'a>(
    reqs: &'a [AttributeRequirement],
    claims: &Claims,
) -> Option<&'a AttributeRequirement> {
    let user = claims.merged();
    reqs.iter().find(|r| !requirement_met(r, &user))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use vestibule_config::{AttributeImport, CustomClaimImport, LocalpartImport};

    use super::*;

    const HS: &str = "example.org";

    #[allow(clippy::needless_pass_by_value, reason = "reads better at call sites")]
    fn claims(id_token: Value, userinfo: Option<Value>) -> Claims {
        Claims::from_session(Some(&json!({ "id_token": id_token, "userinfo": userinfo })))
    }

    fn alice() -> Claims {
        claims(
            json!({
                "sub": "u-1",
                "preferred_username": "alice",
                "name": "Alice Liddell",
                "email": "alice@example.com",
                "tenant_id": "acme",
                "groups": ["staff", "admins"],
                "level": 3,
                "nothing": null,
            }),
            None,
        )
    }

    fn action(a: ImportAction, t: Option<&str>) -> AttributeImport {
        AttributeImport {
            action: a,
            template: t.map(str::to_owned),
        }
    }

    #[test]
    fn render_reads_user_and_treats_absent_null_and_blank_as_missing() {
        let c = alice();
        assert_eq!(
            render("{{ user.preferred_username }}", &c).unwrap(),
            Some("alice".to_owned())
        );
        assert_eq!(render("{{ user.absent }}", &c).unwrap(), None);
        assert_eq!(render("{{ user.nothing }}", &c).unwrap(), None, "null");
        assert_eq!(render("{{ user.absent.deeper }}", &c).unwrap(), None);
        assert_eq!(render("  {{ '' }}  ", &c).unwrap(), None, "blank");
        assert_eq!(render("x{{ user.absent }}", &c).unwrap(), None);
        // Fallbacks and conditionals still work.
        assert_eq!(
            render("{{ user.absent | default('anon') }}", &c).unwrap(),
            Some("anon".to_owned())
        );
        assert_eq!(
            render("{% if user.absent %}a{% else %}b{% endif %}", &c).unwrap(),
            Some("b".to_owned())
        );
        assert_eq!(
            render("{{ user.name | lower | replace(' ', '.') }}", &c).unwrap(),
            Some("alice.liddell".to_owned())
        );
        assert_eq!(
            render("{{ user.level }}", &c).unwrap(),
            Some("3".to_owned())
        );
        // A broken template is an error, not a missing value.
        assert!(render("{{ user.name ", &c).is_err());
        // No HTML escaping: the value is data, escaped where it is shown.
        let c = claims(json!({"sub": "s", "name": "A & <B>"}), None);
        assert_eq!(
            render("{{ user.name }}", &c).unwrap(),
            Some("A & <B>".to_owned())
        );
    }

    #[test]
    fn userinfo_wins_except_sub_and_both_sources_are_available() {
        let c = claims(
            json!({"sub": "from-id-token", "name": "Old", "email": "id@x.org"}),
            Some(json!({"sub": "from-userinfo", "name": "New", "tenant_id": "t1"})),
        );
        let user = c.merged();
        assert_eq!(user["sub"], "from-id-token");
        assert_eq!(user["name"], "New");
        assert_eq!(user["email"], "id@x.org");
        assert_eq!(user["tenant_id"], "t1");
        assert_eq!(
            render("{{ id_token_claims.name }}/{{ userinfo_claims.name }}", &c).unwrap(),
            Some("Old/New".to_owned())
        );
        // Without userinfo, userinfo_claims is empty (its members missing).
        assert_eq!(
            render("{{ userinfo_claims.name }}", &alice()).unwrap(),
            None
        );
        // Malformed stored claims: nothing, not a panic.
        let junk = Claims::from_session(Some(&json!("junk")));
        assert!(junk.merged().is_empty());
        assert_eq!(Claims::from_session(None), Claims::default());
    }

    #[test]
    fn defaults_follow_mas_when_no_template_is_configured() {
        let mut cfg = ClaimsImports::default();
        cfg.localpart.action = ImportAction::Suggest;
        cfg.displayname = action(ImportAction::Suggest, None);
        cfg.email = action(ImportAction::Suggest, None);
        let i = import(&cfg, &alice(), HS).unwrap();
        assert_eq!(i.localpart.suggestion(), Some("alice"));
        assert_eq!(i.displayname.suggestion(), Some("Alice Liddell"));
        assert_eq!(i.email.suggestion(), Some("alice@example.com"));
        assert_eq!(i.account_name, None, "account_name has no default");
        assert_eq!(subject(&cfg, &alice()).unwrap(), Some("u-1".to_owned()));
        // Everything defaults to ignore.
        let i = import(&ClaimsImports::default(), &alice(), HS).unwrap();
        assert_eq!(i.localpart.value, None);
        assert_eq!(i.displayname.value, None);
        assert_eq!(i.email.value, None);
        assert!(
            !i.nothing_to_ask(),
            "no localpart: the user must choose one"
        );
    }

    #[test]
    fn actions_ignore_suggest_force_require() {
        let c = alice();
        let one = |a| {
            let cfg = ClaimsImports {
                displayname: action(a, None),
                ..ClaimsImports::default()
            };
            import(&cfg, &c, HS).unwrap().displayname
        };
        assert_eq!(one(ImportAction::Ignore).value, None);
        let s = one(ImportAction::Suggest);
        assert_eq!((s.suggestion(), s.fixed()), (Some("Alice Liddell"), None));
        let f = one(ImportAction::Force);
        assert_eq!((f.suggestion(), f.fixed()), (None, Some("Alice Liddell")));
        let r = one(ImportAction::Require);
        assert!(r.is_fixed());

        // Missing: force is fine, require refuses and names the claim.
        let bare = claims(json!({"sub": "s"}), None);
        let cfg = ClaimsImports {
            displayname: action(ImportAction::Force, None),
            ..ClaimsImports::default()
        };
        assert_eq!(import(&cfg, &bare, HS).unwrap().displayname.value, None);
        let cfg = ClaimsImports {
            displayname: action(ImportAction::Require, None),
            ..ClaimsImports::default()
        };
        let err = import(&cfg, &bare, HS).unwrap_err();
        assert_eq!(
            err,
            ImportError::MissingRequired {
                claim: "name".to_owned()
            }
        );
        assert!(err.to_string().contains("`name`"), "{err}");
        // A complex template: the import is named instead.
        let cfg = ClaimsImports {
            displayname: action(ImportAction::Require, Some("{{ user.a }} {{ user.b }}")),
            ..ClaimsImports::default()
        };
        assert_eq!(
            import(&cfg, &bare, HS).unwrap_err(),
            ImportError::MissingRequired {
                claim: "displayname".to_owned()
            }
        );
    }

    #[test]
    fn localpart_must_be_a_matrix_localpart_when_fixed() {
        let with = |name: &str, a| {
            let c = claims(json!({"sub": "s", "preferred_username": name}), None);
            let cfg = ClaimsImports {
                localpart: LocalpartImport {
                    action: a,
                    ..LocalpartImport::default()
                },
                ..ClaimsImports::default()
            };
            import(&cfg, &c, HS)
        };
        assert!(with("bob.smith_1", ImportAction::Require).is_ok());
        for bad in ["Bob", "bob smith", "bøb", "bob:evil"] {
            let err = with(bad, ImportAction::Require).unwrap_err();
            assert!(
                matches!(&err, ImportError::InvalidLocalpart { value, .. } if value == bad),
                "{bad}: {err:?}"
            );
            assert!(with(bad, ImportAction::Force).is_err(), "{bad}");
            // A suggestion is only a default: checked when submitted.
            assert_eq!(
                with(bad, ImportAction::Suggest)
                    .unwrap()
                    .localpart
                    .suggestion(),
                Some(bad)
            );
        }
        let long = "a".repeat(250);
        assert!(with(&long, ImportAction::Require).is_err());
        // `lower` makes a mixed-case name valid, on purpose only.
        let c = claims(json!({"sub": "s", "preferred_username": "Bob"}), None);
        let cfg = ClaimsImports {
            localpart: LocalpartImport {
                action: ImportAction::Require,
                template: Some("{{ user.preferred_username | lower }}".to_owned()),
                ..LocalpartImport::default()
            },
            ..ClaimsImports::default()
        };
        assert_eq!(import(&cfg, &c, HS).unwrap().localpart.fixed(), Some("bob"));
    }

    #[test]
    fn implausible_email_is_missing() {
        let c = claims(json!({"sub": "s", "email": "not an email"}), None);
        let cfg = ClaimsImports {
            email: action(ImportAction::Force, None),
            ..ClaimsImports::default()
        };
        assert_eq!(import(&cfg, &c, HS).unwrap().email.value, None);
        let cfg = ClaimsImports {
            email: action(ImportAction::Require, None),
            ..ClaimsImports::default()
        };
        assert!(matches!(
            import(&cfg, &c, HS).unwrap_err(),
            ImportError::MissingRequired { claim } if claim == "email"
        ));
    }

    #[test]
    fn unverified_email_is_missing() {
        let c = claims(
            json!({"sub": "s", "email": "a@b.org", "email_verified": false}),
            None,
        );
        let cfg = ClaimsImports {
            email: action(ImportAction::Suggest, None),
            ..ClaimsImports::default()
        };
        assert_eq!(import(&cfg, &c, HS).unwrap().email.value, None);
        let cfg = ClaimsImports {
            email: action(ImportAction::Require, None),
            ..ClaimsImports::default()
        };
        assert!(import(&cfg, &c, HS).is_err());
        // Verified, or not said: imported.
        for verified in [json!(true), Value::Null] {
            let c = claims(
                json!({"sub": "s", "email": "a@b.org", "email_verified": verified}),
                None,
            );
            assert_eq!(import(&cfg, &c, HS).unwrap().email.fixed(), Some("a@b.org"));
        }
        // Userinfo's word counts for userinfo's address.
        let c = claims(
            json!({"sub": "s", "email": "a@b.org", "email_verified": true}),
            Some(json!({"email": "x@b.org", "email_verified": false})),
        );
        assert!(import(&cfg, &c, HS).is_err());
        // The flag comes from the source of the address: the ID token's
        // `true` does not vouch for userinfo's address...
        let c = claims(
            json!({"sub": "s", "email_verified": true}),
            Some(json!({"email": "x@b.org", "email_verified": "no"})),
        );
        assert!(import(&cfg, &c, HS).is_err());
        // ...nor userinfo's `false` about the ID token's address.
        let c = claims(
            json!({"sub": "s", "email": "a@b.org", "email_verified": true}),
            Some(json!({"email_verified": false})),
        );
        assert_eq!(import(&cfg, &c, HS).unwrap().email.fixed(), Some("a@b.org"));
        // Anything but true / "true" is unverified.
        for flag in [json!("false"), json!(0), json!(1), json!("yes"), json!({})] {
            let c = claims(
                json!({"sub": "s", "email": "a@b.org", "email_verified": flag}),
                None,
            );
            assert!(import(&cfg, &c, HS).is_err(), "{flag}");
        }
        let c = claims(
            json!({"sub": "s", "email": "a@b.org", "email_verified": "true"}),
            None,
        );
        assert_eq!(import(&cfg, &c, HS).unwrap().email.fixed(), Some("a@b.org"));
    }

    #[test]
    fn custom_claims_use_the_same_actions() {
        let mut cfg = ClaimsImports::default();
        let custom = |a: ImportAction, t: &str| CustomClaimImport {
            action: a,
            template: t.to_owned(),
        };
        cfg.custom.insert(
            "tenant_id".into(),
            custom(ImportAction::Force, "{{ user.tenant_id }}"),
        );
        cfg.custom.insert(
            "first_group".into(),
            custom(ImportAction::Suggest, "{{ user.groups[0] }}"),
        );
        cfg.custom.insert(
            "ignored".into(),
            custom(ImportAction::Ignore, "{{ user.sub }}"),
        );
        let i = import(&cfg, &alice(), HS).unwrap();
        assert_eq!(i.custom["tenant_id"].fixed(), Some("acme"));
        assert_eq!(i.custom["first_group"].suggestion(), Some("staff"));
        assert_eq!(i.custom["ignored"].value, None);

        cfg.custom.insert(
            "org".into(),
            custom(ImportAction::Require, "{{ user.org }}"),
        );
        assert_eq!(
            import(&cfg, &alice(), HS).unwrap_err(),
            ImportError::MissingRequired {
                claim: "org".to_owned()
            }
        );
        cfg.custom.insert(
            "org".into(),
            custom(
                ImportAction::Require,
                "{{ user.org | default(user.tenant_id) }}",
            ),
        );
        assert_eq!(
            import(&cfg, &alice(), HS).unwrap().custom["org"].fixed(),
            Some("acme")
        );
        cfg.custom
            .insert("broken".into(), custom(ImportAction::Force, "{% if %}"));
        assert!(matches!(
            import(&cfg, &alice(), HS).unwrap_err(),
            ImportError::Template { import, .. } if import == "broken"
        ));
    }

    /// Linking and signing in read only the custom imports: a missing
    /// `require`d localpart does not matter there, a missing `require`d
    /// custom claim does; a sign-in updates `force`/`require` ones (a
    /// `force`d claim no longer sent is removed) and leaves `suggest`ed ones.
    #[test]
    fn custom_imports_alone_and_their_sign_in_updates() {
        let mut cfg = ClaimsImports::default();
        cfg.localpart.action = ImportAction::Require;
        let custom = |a: ImportAction, t: &str| CustomClaimImport {
            action: a,
            template: t.to_owned(),
        };
        cfg.custom.insert(
            "tenant_id".into(),
            custom(ImportAction::Require, "{{ user.tenant_id }}"),
        );
        cfg.custom.insert(
            "region".into(),
            custom(ImportAction::Force, "{{ user.region }}"),
        );
        cfg.custom.insert(
            "team".into(),
            custom(ImportAction::Suggest, "{{ user.groups[0] }}"),
        );
        let no_username = claims(
            json!({"sub": "u-1", "tenant_id": "acme", "groups": ["staff"]}),
            None,
        );
        assert!(import(&cfg, &no_username, HS).is_err());
        let c = import_custom(&cfg, &no_username).unwrap();
        assert_eq!(
            attribute_updates(&c),
            BTreeMap::from([
                ("region".to_owned(), None),
                ("tenant_id".to_owned(), Some("acme".to_owned())),
            ])
        );
        assert_eq!(
            import_custom(&cfg, &claims(json!({"sub": "u-1"}), None)).unwrap_err(),
            ImportError::MissingRequired {
                claim: "tenant_id".to_owned()
            }
        );
    }

    #[test]
    fn nothing_to_ask_needs_a_fixed_localpart_and_no_suggestion() {
        let mut cfg = ClaimsImports::default();
        cfg.localpart.action = ImportAction::Require;
        cfg.displayname = action(ImportAction::Force, None);
        cfg.email = action(ImportAction::Require, None);
        assert!(import(&cfg, &alice(), HS).unwrap().nothing_to_ask());
        cfg.custom.insert(
            "tenant_id".into(),
            CustomClaimImport {
                action: ImportAction::Suggest,
                template: "{{ user.tenant_id }}".into(),
            },
        );
        assert!(!import(&cfg, &alice(), HS).unwrap().nothing_to_ask());
        // A suggestion with no value asks nothing.
        let c = claims(json!({"sub": "s", "preferred_username": "bob"}), None);
        cfg.email = action(ImportAction::Suggest, None);
        cfg.custom.clear();
        assert!(import(&cfg, &c, HS).unwrap().nothing_to_ask());
    }

    #[test]
    fn account_name_is_display_only() {
        let mut cfg = ClaimsImports::default();
        cfg.account_name.template = Some("{{ user.email }}".into());
        assert_eq!(
            import(&cfg, &alice(), HS).unwrap().account_name.as_deref(),
            Some("alice@example.com")
        );
        cfg.account_name.template = Some("{{ user.absent }}".into());
        assert_eq!(import(&cfg, &alice(), HS).unwrap().account_name, None);
    }

    #[test]
    fn attribute_requirements_match_strings_numbers_and_array_members() {
        let req = |attr: &str, value: Option<&str>, one_of: &[&str]| AttributeRequirement {
            attribute: attr.to_owned(),
            value: value.map(str::to_owned),
            one_of: one_of.iter().map(|s| (*s).to_owned()).collect(),
        };
        let c = alice();
        let ok = [
            req("tenant_id", Some("acme"), &[]),
            req("groups", Some("admins"), &[]),
            req("groups", None, &["nobody", "staff"]),
            req("level", Some("3"), &[]),
        ];
        assert_eq!(unmet_requirement(&ok, &c), None);
        for bad in [
            req("tenant_id", Some("other"), &[]),
            req("tenant_id", Some("ACME"), &[]),
            req("groups", Some("guests"), &[]),
            req("absent", Some("x"), &[]),
            req("nothing", Some("null"), &[]),
            req("tenant_id", None, &["a", "b"]),
        ] {
            let all = [ok[0].clone(), bad.clone()];
            assert_eq!(unmet_requirement(&all, &c), Some(&bad), "{bad:?}");
        }
        // Userinfo counts (merged).
        let c = claims(json!({"sub": "s"}), Some(json!({"tenant_id": "acme"})));
        assert_eq!(unmet_requirement(&ok[..1], &c), None);
        assert_eq!(unmet_requirement(&[], &c), None);
    }

    /// The seed configuration's provider block, loaded the way the binary
    /// loads it, imports as MAS would plus the custom `tenant_id`.
    #[test]
    fn seed_config_block_imports_as_configured() {
        let seed = include_str!("../../../config/tests/fixtures/seed-mas-config.yaml");
        let second = include_str!("../../../config/tests/fixtures/secrets-matrix.yaml");
        let env = |k: &str| match k {
            "DATABASE_URL" => Some("postgresql://x@db/mas".to_owned()),
            "SYNAPSE_CLIENT_SECRET" | "OPENMEET_CLIENT_SECRET" => Some("s".to_owned()),
            _ => None,
        };
        let loaded = vestibule_config::load_strs(
            &[
                ("seed.yaml".to_owned(), seed.to_owned()),
                ("secrets.yaml".to_owned(), second.to_owned()),
            ],
            &env,
            std::path::Path::new("."),
        )
        .expect("seed loads");
        let cfg = &loaded.config.upstream_oauth2.providers[0].claims_imports;
        assert_eq!(cfg.custom["tenant_id"].action, ImportAction::Suggest);

        let i = import(cfg, &alice(), HS).unwrap();
        assert_eq!(i.localpart.fixed(), Some("alice"));
        assert_eq!(i.displayname.suggestion(), Some("Alice Liddell"));
        assert_eq!(i.email.suggestion(), Some("alice@example.com"));
        assert_eq!(i.custom["tenant_id"].suggestion(), Some("acme"));
        assert!(!i.nothing_to_ask());

        // `localpart: require`: no preferred_username, no account.
        let c = claims(json!({"sub": "s", "name": "N"}), None);
        assert_eq!(
            import(cfg, &c, HS).unwrap_err(),
            ImportError::MissingRequired {
                claim: "preferred_username".to_owned()
            }
        );
        // Only `sub` in the ID token, the rest from userinfo.
        let c = claims(
            json!({"sub": "s"}),
            Some(json!({"preferred_username": "carol", "tenant_id": "t9"})),
        );
        let i = import(cfg, &c, HS).unwrap();
        assert_eq!(i.localpart.fixed(), Some("carol"));
        assert_eq!(i.custom["tenant_id"].suggestion(), Some("t9"));
        assert_eq!(i.displayname.value, None);
    }

    #[test]
    fn human_account_name_falls_back_to_username_email_sub() {
        let mut cfg = ClaimsImports::default();
        assert_eq!(human_account_name(&cfg, &alice()).as_deref(), Some("alice"));
        let c = claims(json!({"sub": "u-1", "email": "a@b.org"}), None);
        assert_eq!(human_account_name(&cfg, &c).as_deref(), Some("a@b.org"));
        let c = claims(json!({"sub": "u-1", "preferred_username": " "}), None);
        assert_eq!(human_account_name(&cfg, &c).as_deref(), Some("u-1"));
        cfg.account_name.template = Some("{{ user.name }} ({{ user.tenant_id }})".into());
        assert_eq!(
            human_account_name(&cfg, &alice()).as_deref(),
            Some("Alice Liddell (acme)")
        );
        // A template rendering nothing falls back too.
        cfg.account_name.template = Some("{{ user.absent }}".into());
        assert_eq!(human_account_name(&cfg, &alice()).as_deref(), Some("alice"));
    }
}
