//! Errors name the full key path and the file.

use crate::{load, load_err};

#[test]
fn misspelled_top_level_key() {
    let msg = load_err(&["databse:\n  uri: postgresql://x\n"]);
    assert!(msg.starts_with("databse: unknown field `databse`"), "{msg}");
    assert!(msg.contains("a.yaml"), "{msg}");
}

#[test]
fn misspelled_nested_key() {
    let msg = load_err(&["database:\n  urii: postgresql://x\n"]);
    assert!(
        msg.starts_with("database.urii: unknown field `urii`"),
        "{msg}"
    );
}

const PROVIDER: &str = "
upstream_oauth2:
  providers:
    - id: 01JAYS74TCG3BTWKADN5Q4518C
      issuer: https://example.com/
      client_id: c
      claims_imports:
        localpart:
";

#[test]
fn misspelled_claims_import_key() {
    let msg = load_err(&[&format!("{PROVIDER}          actoin: require\n")]);
    assert!(
        msg.starts_with(
            "upstream_oauth2.providers[0].claims_imports.localpart.actoin: unknown field `actoin`"
        ),
        "{msg}"
    );
}

#[test]
fn bad_enum_value_names_path() {
    let msg = load_err(&[&format!("{PROVIDER}          action: requir\n")]);
    assert!(
        msg.starts_with(
            "upstream_oauth2.providers[0].claims_imports.localpart.action: unknown variant `requir`"
        ),
        "{msg}"
    );
    assert!(msg.contains("`require`"), "{msg}");
}

#[test]
fn typo_of_a_claims_import_key_is_not_a_custom_claim() {
    let yaml = PROVIDER.replace(
        "        localpart:\n",
        "        localpat:\n          action: require\n          template: x\n",
    );
    let msg = load_err(&[&yaml]);
    assert!(msg.contains("claims_imports.localpat"), "{msg}");
    assert!(msg.contains("did you mean `localpart`"), "{msg}");
}

#[test]
fn bad_on_conflict_and_client_auth_method() {
    let msg = load_err(&[&format!("{PROVIDER}          on_conflict: merge\n")]);
    assert!(
        msg.contains("claims_imports.localpart.on_conflict"),
        "{msg}"
    );
    let msg = load_err(&[
        "clients:\n  - client_id: 01JAYS74TCG3BTWKADN5Q4518C\n    client_auth_method: secret\n",
    ]);
    assert!(
        msg.starts_with("clients[0].client_auth_method: unknown variant"),
        "{msg}"
    );
}

#[test]
fn semantic_rules_name_paths() {
    let cases: &[(&str, &str)] = &[
        (
            "clients:\n  - client_id: not-a-ulid\n    client_auth_method: none\n",
            "clients[0].client_id",
        ),
        (
            "clients:\n  - client_id: 01JAYS74TCG3BTWKADN5Q4518C\n    client_auth_method: client_secret_basic\n",
            "clients[0].client_secret",
        ),
        ("secrets:\n  encryption: abcd\n", "secrets.encryption"),
        ("http:\n  public_base: /relative\n", "http.public_base"),
        (
            "upstream_oauth2:\n  providers:\n    - id: nope\n      issuer: https://x/\n      client_id: c\n",
            "upstream_oauth2.providers[0].id",
        ),
        (
            "upstream_oauth2:\n  providers:\n    - id: 01JAYS74TCG3BTWKADN5Q4518C\n      client_id: c\n",
            "upstream_oauth2.providers[0].issuer",
        ),
        (
            "http:\n  trusted_proxies: [banana]\n",
            "http.trusted_proxies[0]",
        ),
        ("listeners: []\nhttp:\n  listeners: []\n", "listeners"),
        (
            "http:\n  listeners:\n    - resources: [{name: oauth3}]\n      binds: [{port: 1}]\n",
            "http.listeners[0].resources[0].name",
        ),
    ];
    for (yaml, path) in cases {
        let err = load(&[yaml]).expect_err(yaml);
        assert_eq!(err.path(), Some(*path), "{err}");
        assert!(err.to_string().starts_with(&format!("{path}: ")), "{err}");
    }
}

#[test]
fn attribute_requirements_parse_and_bad_ones_name_their_path() {
    const P: &str = "upstream_oauth2:\n  providers:\n    - id: 01JAYS74TCG3BTWKADN5Q4518C\n      issuer: https://x/\n      client_id: c\n      attribute_requirements:\n";
    let ok = load(&[&format!(
        "{P}        - attribute: tenant_id\n          value: acme\n        - attribute: groups\n          one_of: [staff, admins]\n"
    )])
    .unwrap();
    let reqs = &ok.config.upstream_oauth2.providers[0].attribute_requirements;
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].accepted(), ["acme"]);
    assert_eq!(reqs[1].accepted(), ["staff", "admins"]);
    let paths: Vec<&str> = ok.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        paths,
        ["upstream_oauth2.providers[0].attribute_requirements"],
        "{:?}",
        ok.warnings
    );
    assert!(ok.warnings[0].message.contains("Vestibule extension"));

    let cases: &[(&str, &str)] = &[
        (
            "        - attribute: tenant_id\n",
            "upstream_oauth2.providers[0].attribute_requirements[0].value",
        ),
        (
            "        - attribute: tenant_id\n          value: a\n          one_of: [b]\n",
            "upstream_oauth2.providers[0].attribute_requirements[0].one_of",
        ),
        (
            "        - attribute: t\n          value: a\n        - attribute: ''\n          value: a\n",
            "upstream_oauth2.providers[0].attribute_requirements[1].attribute",
        ),
        (
            "        - attribute: t\n          one_of: []\n",
            "upstream_oauth2.providers[0].attribute_requirements[0].value",
        ),
    ];
    for (tail, path) in cases {
        let err = load(&[&format!("{P}{tail}")]).expect_err(tail);
        assert_eq!(err.path(), Some(*path), "{err}");
    }
    let msg = load_err(&[&format!("{P}        - attribute: t\n          valeu: a\n")]);
    assert!(
        msg.contains("upstream_oauth2.providers[0].attribute_requirements[0]"),
        "{msg}"
    );
}

#[test]
fn seed_style_values_pass() {
    let ok = load(&[
        "clients:\n  - client_id: 0000000000000000000SYNAPSE\n    client_auth_method: client_secret_post\n    client_secret: s\nmatrix:\n  kind: synapse_modern\n",
    ])
    .unwrap();
    assert_eq!(ok.warnings.len(), 1);
    assert_eq!(ok.warnings[0].path, "matrix.kind");
}

#[test]
fn yaml_syntax_error_names_file() {
    let msg = load_err(&["http: [unclosed\n"]);
    assert!(msg.starts_with("a.yaml: invalid YAML"), "{msg}");
}

/// Security rules on upstream providers, each failing at its key path.
#[test]
fn upstream_security_rules_name_their_path() {
    const P: &str = "upstream_oauth2:\n  providers:\n    - id: 01JAYS74TCG3BTWKADN5Q4518C\n      client_id: c\n";
    const ISS: &str = "      issuer: https://x/\n";
    let cases: &[(String, &str)] = &[
        // The issuer is required even without discovery (the `iss` check).
        (
            format!(
                "{P}      discovery_mode: disabled\n      authorization_endpoint: https://x/a\n      token_endpoint: https://x/t\n"
            ),
            "upstream_oauth2.providers[0].issuer",
        ),
        (
            format!("{P}      issuer: ''\n"),
            "upstream_oauth2.providers[0].issuer",
        ),
        // Back-Channel Logout §2.4: logout tokens must be signed.
        (
            format!(
                "{P}{ISS}      id_token_signed_response_alg: none\n      on_backchannel_logout: logout_all\n"
            ),
            "upstream_oauth2.providers[0].id_token_signed_response_alg",
        ),
        (
            format!(
                "{P}{ISS}      id_token_signed_response_alg: none\n      on_backchannel_logout: logout_browser_only\n"
            ),
            "upstream_oauth2.providers[0].id_token_signed_response_alg",
        ),
        // A blank template is no template.
        (
            format!(
                "{P}{ISS}      claims_imports:\n        localpart:\n          action: force\n          on_conflict: replace\n          template: ' '\n"
            ),
            "upstream_oauth2.providers[0].claims_imports.localpart.template",
        ),
    ];
    for (yaml, path) in cases {
        let err = load(&[yaml]).expect_err(yaml);
        assert_eq!(err.path(), Some(*path), "{err}");
    }

    // Allowed: `none` when back-channel logout does nothing; on_conflict
    // with an explicit template (with a warning saying what it does).
    let ok = load(&[&format!(
        "{P}{ISS}      id_token_signed_response_alg: none\n      discovery_mode: disabled\n      authorization_endpoint: https://x/a\n      token_endpoint: https://x/t\n"
    )])
    .unwrap();
    assert!(ok.warnings.is_empty(), "{:?}", ok.warnings);
    let ok = load(&[&format!(
        "{P}{ISS}      claims_imports:\n        localpart:\n          action: require\n          on_conflict: set\n          template: '{{{{ user.employee_id }}}}'\n"
    )])
    .unwrap();
    assert_eq!(ok.warnings.len(), 1, "{:?}", ok.warnings);
    assert_eq!(
        ok.warnings[0].path,
        "upstream_oauth2.providers[0].claims_imports.localpart.on_conflict"
    );
    assert!(
        ok.warnings[0]
            .message
            .contains("links existing local accounts"),
        "{}",
        ok.warnings[0].message
    );
}

/// `on_conflict` without a template (a MAS config relying on the default
/// `{{ user.preferred_username }}`) loads, with a warning at the template's
/// path saying what linking by it means, besides the `on_conflict` one.
#[test]
fn on_conflict_with_the_default_template_loads_with_a_warning() {
    const P: &str = "upstream_oauth2:\n  providers:\n    - id: 01JAYS74TCG3BTWKADN5Q4518C\n      issuer: https://x/\n      client_id: c\n      client_secret: s\n      claims_imports:\n        localpart:\n          action: require\n";
    for on_conflict in ["add", "replace", "set"] {
        let ok = load(&[&format!("{P}          on_conflict: {on_conflict}\n")])
            .unwrap_or_else(|e| panic!("{on_conflict}: {e}"));
        let paths: Vec<&str> = ok.warnings.iter().map(|w| w.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "upstream_oauth2.providers[0].claims_imports.localpart.template",
                "upstream_oauth2.providers[0].claims_imports.localpart.on_conflict",
            ],
            "{:?}",
            ok.warnings
        );
        let shown = ok.warnings[0].to_string();
        assert!(
            shown.starts_with(
                "warning: upstream_oauth2.providers[0].claims_imports.localpart.template: "
            ),
            "{shown}"
        );
        for part in [
            &format!("`on_conflict: {on_conflict}`"),
            "`{{ user.preferred_username }}`",
            "may be able to choose or change",
        ] {
            assert!(shown.contains(part), "{part}: {shown}");
        }
    }
    // With `fail` (the default), nothing to warn about.
    let ok = load(&[P]).unwrap();
    assert!(ok.warnings.is_empty(), "{:?}", ok.warnings);
}

/// `skip_confirmation` skips the form a suggestion needs: refused for a
/// custom claim as for the MAS ones, at the key the claim was written
/// under; `force`/`require` custom claims are fine.
#[test]
fn skip_confirmation_refuses_a_suggested_custom_claim() {
    const P: &str = "upstream_oauth2:\n  providers:\n    - id: 01JAYS74TCG3BTWKADN5Q4518C\n      issuer: https://x/\n      client_id: c\n      client_secret: s\n      claims_imports:\n        skip_confirmation: true\n        localpart:\n          action: require\n";
    let err = load(&[&format!(
        "{P}        tenant_id:\n          action: suggest\n          template: '{{{{ user.tenant_id }}}}'\n"
    )])
    .expect_err("suggest with skip_confirmation");
    assert_eq!(
        err.path(),
        Some("upstream_oauth2.providers[0].claims_imports.tenant_id.action"),
        "{err}"
    );
    assert!(err.to_string().contains("skip_confirmation"), "{err}");
    for action in ["force", "require", "ignore"] {
        let ok = load(&[&format!(
            "{P}        tenant_id:\n          action: {action}\n          template: '{{{{ user.tenant_id }}}}'\n"
        )]);
        assert!(ok.is_ok(), "{action}: {:?}", ok.err());
    }
    // Without skip_confirmation a suggestion is what the form is for.
    let ok = load(&[&format!(
        "{}        tenant_id:\n          action: suggest\n          template: '{{{{ user.tenant_id }}}}'\n",
        P.replace("        skip_confirmation: true\n", "")
    )]);
    assert!(ok.is_ok(), "{:?}", ok.err());
}

/// A custom claim may not take the name of a MAS key (under `custom`, where
/// the rewrite does not catch it): the attribute `displayname` in
/// particular holds the imported display name, which is never released.
#[test]
fn custom_claims_named_like_mas_keys_are_refused() {
    const P: &str = "upstream_oauth2:\n  providers:\n    - id: 01JAYS74TCG3BTWKADN5Q4518C\n      issuer: https://x/\n      client_id: c\n      client_secret: s\n      claims_imports:\n        custom:\n";
    for name in ["displayname", "email", "localpart"] {
        let err = load(&[&format!(
            "{P}          {name}:\n            action: force\n            template: x\n"
        )])
        .expect_err(name);
        assert_eq!(
            err.path(),
            Some(format!("upstream_oauth2.providers[0].claims_imports.custom.{name}").as_str()),
            "{err}"
        );
    }
}

/// `additional_authorization_parameters` are sent as written; the ones
/// Vestibule sends itself are refused at their key, `login_hint` only with
/// `forward_login_hint` (MAS sends it as given).
#[test]
fn additional_authorization_parameters_must_not_repeat_ours() {
    const P: &str = "upstream_oauth2:\n  providers:\n    - id: 01JAYS74TCG3BTWKADN5Q4518C\n      issuer: https://x/\n      client_id: c\n      client_secret: s\n";
    for name in [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
        "response_mode",
    ] {
        let err = load(&[&format!(
            "{P}      additional_authorization_parameters:\n        prompt: login\n        {name}: x\n"
        )])
        .expect_err(name);
        assert_eq!(
            err.path(),
            Some(
                format!("upstream_oauth2.providers[0].additional_authorization_parameters.{name}")
                    .as_str()
            ),
            "{err}"
        );
    }
    let ok = load(&[&format!(
        "{P}      additional_authorization_parameters:\n        prompt: login\n        login_hint: '{{{{ not.a.template }}}}'\n"
    )])
    .unwrap();
    let params = &ok.config.upstream_oauth2.providers[0].additional_authorization_parameters;
    assert_eq!(params["login_hint"], "{{ not.a.template }}");
    assert_eq!(params["prompt"], "login");
    let err = load(&[&format!(
        "{P}      forward_login_hint: true\n      additional_authorization_parameters:\n        login_hint: a\n"
    )])
    .expect_err("login_hint twice");
    assert_eq!(
        err.path(),
        Some("upstream_oauth2.providers[0].additional_authorization_parameters.login_hint"),
        "{err}"
    );
}
