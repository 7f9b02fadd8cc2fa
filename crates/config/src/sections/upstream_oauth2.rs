//! `upstream_oauth2`: upstream OAuth 2.0 / OIDC providers.

use std::{collections::BTreeMap, path::PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::Secret;

/// Upstream providers (MAS `upstream_oauth2`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamOAuth2Config {
    /// The providers.
    pub providers: Vec<UpstreamProviderConfig>,
}

/// How Vestibule authenticates to the provider's token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenAuthMethod {
    /// No authentication.
    None,
    /// HTTP Basic with the client secret.
    #[default]
    ClientSecretBasic,
    /// Client secret in the request body.
    ClientSecretPost,
    /// JWT assertion signed with the client secret.
    ClientSecretJwt,
    /// JWT assertion signed with one of `secrets.keys`.
    PrivateKeyJwt,
    /// Sign in with Apple.
    SignInWithApple,
}

impl TokenAuthMethod {
    /// Whether the method needs a client secret.
    pub fn needs_secret(self) -> bool {
        matches!(
            self,
            Self::ClientSecretBasic | Self::ClientSecretPost | Self::ClientSecretJwt
        )
    }

    /// Whether the method signs a JWT assertion.
    pub fn signs_jwt(self) -> bool {
        matches!(self, Self::ClientSecretJwt | Self::PrivateKeyJwt)
    }
}

/// A JWS algorithm name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum JwsAlg {
    /// HMAC SHA-256.
    HS256,
    /// HMAC SHA-384.
    HS384,
    /// HMAC SHA-512.
    HS512,
    /// RSASSA-PKCS1-v1_5 SHA-256.
    #[default]
    RS256,
    /// RSASSA-PKCS1-v1_5 SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 SHA-512.
    RS512,
    /// ECDSA P-256 SHA-256.
    ES256,
    /// ECDSA P-384 SHA-384.
    ES384,
    /// ECDSA P-521 SHA-512.
    ES512,
    /// RSASSA-PSS SHA-256.
    PS256,
    /// RSASSA-PSS SHA-384.
    PS384,
    /// RSASSA-PSS SHA-512.
    PS512,
    /// EdDSA.
    EdDSA,
    /// ECDSA secp256k1 SHA-256.
    ES256K,
    /// Unsigned.
    #[serde(rename = "none")]
    None,
}

/// How the provider's configuration is discovered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryMode {
    /// OIDC discovery, strict (default).
    #[default]
    Oidc,
    /// OIDC discovery, metadata not validated.
    Insecure,
    /// No discovery: the endpoints are configured.
    Disabled,
}

/// Whether to use PKCE.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PkceMethod {
    /// When the provider advertises it (default).
    #[default]
    Auto,
    /// Always, with S256.
    Always,
    /// Never.
    Never,
}

/// Response mode asked from the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    /// Query string (default).
    Query,
    /// HTML form POST.
    FormPost,
}

/// What to do on an OIDC back-channel logout request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnBackchannelLogout {
    /// Validate and log only (default).
    #[default]
    DoNothing,
    /// End the browser session started by this upstream session.
    LogoutBrowserOnly,
    /// End every session started by this upstream session.
    LogoutAll,
}

/// Sign in with Apple parameters.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInWithApple {
    /// PEM private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<Secret>,
    /// File holding the private key (read into `private_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<PathBuf>,
    /// Apple team ID.
    pub team_id: String,
    /// Apple key ID.
    pub key_id: String,
}

/// An upstream OAuth 2.0 / OIDC provider.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamProviderConfig {
    /// Unique identifier: a ULID.
    #[schemars(regex(pattern = r"^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$"))]
    pub id: String,
    /// Whether the provider is enabled (default `true`).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The provider's ID in Synapse (for migrations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synapse_idp_id: Option<String>,
    /// Issuer; required (the `iss` of ID and logout tokens must equal it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Name shown on the login page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub human_name: Option<String>,
    /// Brand identifier for the logo (`apple`, `google`, `github`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand_name: Option<String>,
    /// Client ID at the provider.
    pub client_id: String,
    /// Client secret at the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    /// File holding the client secret (read into `client_secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    /// Token endpoint authentication. Required by MAS; when absent Vestibule
    /// uses `client_secret_basic` if a client secret is set, `none` otherwise.
    #[serde(default)]
    pub token_endpoint_auth_method: TokenAuthMethod,
    /// Sign in with Apple parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_in_with_apple: Option<SignInWithApple>,
    /// Algorithm for `client_secret_jwt` / `private_key_jwt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_signing_alg: Option<JwsAlg>,
    /// Expected `id_token` signature algorithm (default `RS256`).
    #[serde(default)]
    pub id_token_signed_response_alg: JwsAlg,
    /// Scopes to request (default `openid`).
    #[serde(default = "default_scope")]
    pub scope: String,
    /// Discovery mode.
    #[serde(default)]
    pub discovery_mode: DiscoveryMode,
    /// PKCE usage.
    #[serde(default)]
    pub pkce_method: PkceMethod,
    /// Fetch claims from the userinfo endpoint (default `false`).
    #[serde(default)]
    pub fetch_userinfo: bool,
    /// Expected userinfo signature algorithm; unsigned JSON when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_signed_response_alg: Option<JwsAlg>,
    /// Response mode (default `query`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_mode: Option<ResponseMode>,
    /// Authorization endpoint override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub authorization_endpoint: Option<Url>,
    /// Token endpoint override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub token_endpoint: Option<Url>,
    /// Userinfo endpoint override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub userinfo_endpoint: Option<Url>,
    /// JWKS URI override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub jwks_uri: Option<Url>,
    /// Extra authorization request parameters, sent as written (plain
    /// strings, as in MAS). Parameters Vestibule sends itself
    /// (`response_type`, `client_id`, `redirect_uri`, `scope`, `state`,
    /// `nonce`, `code_challenge`, `code_challenge_method`, `response_mode`)
    /// are refused, and so is `login_hint` with `forward_login_hint`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub additional_authorization_parameters: BTreeMap<String, String>,
    /// Forward `login_hint` (deprecated in MAS).
    #[serde(default)]
    pub forward_login_hint: bool,
    /// Back-channel logout behaviour.
    #[serde(default)]
    pub on_backchannel_logout: OnBackchannelLogout,
    /// Registering through this provider needs a registration token.
    #[serde(default)]
    pub registration_token_required: bool,
    /// How claims map to user attributes.
    #[serde(default)]
    pub claims_imports: ClaimsImports,
    /// Vestibule extension (Synapse's `attribute_requirements`; MAS has no
    /// equivalent): who may sign in through this provider. Every
    /// requirement must hold; a user who fails one is refused with a page
    /// saying so, before anything is created or linked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attribute_requirements: Vec<AttributeRequirement>,
}

/// Vestibule extension: one condition on the provider's claims (the ID token
/// merged with userinfo). A string claim must equal `value` (or one of
/// `one_of`); an array claim (e.g. `groups`) must contain it. Numbers and
/// booleans compare by their JSON text (`42`, `true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeRequirement {
    /// The claim name (top level, e.g. `tenant_id` or `groups`).
    pub attribute: String,
    /// The value the claim must have (or contain). Exactly one of `value`
    /// and `one_of` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Values of which the claim must have (or contain) at least one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub one_of: Vec<String>,
}

impl AttributeRequirement {
    /// The accepted values.
    pub fn accepted(&self) -> Vec<&str> {
        self.value
            .iter()
            .chain(self.one_of.iter())
            .map(String::as_str)
            .collect()
    }
}

const fn yes() -> bool {
    true
}

fn default_scope() -> String {
    "openid".to_owned()
}

/// What to do with an imported attribute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImportAction {
    /// Ignore it (default).
    #[default]
    Ignore,
    /// Suggest it; the user may opt out.
    Suggest,
    /// Import it; don't fail if missing.
    Force,
    /// Import it; fail if missing.
    Require,
}

/// What to do when the imported localpart already exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Fail the login (default).
    #[default]
    Fail,
    /// Link the existing user regardless of existing links.
    Add,
    /// Replace this provider's existing link on the user.
    Replace,
    /// Link only if the user has no link for this provider.
    Set,
}

/// Subject import.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SubjectImport {
    /// Template (default `{{ user.sub }}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

/// Localpart import.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LocalpartImport {
    /// Action.
    pub action: ImportAction,
    /// Template (default `{{ user.preferred_username }}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Conflict handling. Anything but `fail` links existing accounts by
    /// the localpart the template gives: set a template on a claim the
    /// provider's users cannot change (a warning says so when it is unset).
    pub on_conflict: OnConflict,
}

/// Display name or email import.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AttributeImport {
    /// Action.
    pub action: ImportAction,
    /// Template (default `{{ user.name }}` / `{{ user.email }}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

/// Account name import (display only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AccountNameImport {
    /// Template; ignored when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

/// Vestibule extension: a custom claim imported as a user attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomClaimImport {
    /// Action.
    #[serde(default)]
    pub action: ImportAction,
    /// Template producing the value.
    pub template: String,
}

/// How claims are imported.
///
/// Vestibule extension: any other key (e.g. `tenant_id: {action, template}`)
/// is a custom claim, moved into `custom` at load time with a warning (MAS
/// rejects such keys) and stored as a user attribute.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimsImports {
    /// Subject (the link key).
    pub subject: SubjectImport,
    /// Skip the confirmation screen (needs `localpart.action: require`, and
    /// no import, custom ones included, with the action `suggest`).
    pub skip_confirmation: bool,
    /// Matrix ID localpart.
    pub localpart: LocalpartImport,
    /// Display name.
    pub displayname: AttributeImport,
    /// Email address.
    pub email: AttributeImport,
    /// Account name, for display.
    pub account_name: AccountNameImport,
    /// Vestibule extension: custom claims by attribute name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: BTreeMap<String, CustomClaimImport>,
}

impl ClaimsImports {
    /// The keys MAS knows under `claims_imports`.
    pub const KNOWN_KEYS: &'static [&'static str] = &[
        "subject",
        "skip_confirmation",
        "localpart",
        "displayname",
        "email",
        "account_name",
    ];
}
