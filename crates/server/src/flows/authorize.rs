//! The authorization endpoint (RFC 6749 §4.1.1, OpenID Connect Core
//! §3.1.2) and the completion of a grant after login and consent.
//!
//! Until the client and the redirect URI are known to be good, every error is
//! shown to the user and never redirected (RFC 6749 §4.1.2.1, RFC 9700
//! §4.11.2, checklist S03). After that, errors go back to the client with
//! `error`, `error_description`, `state` and `iss` (RFC 9207) in the
//! requested response mode.

use chrono::{DateTime, Duration, Utc};
use rand::distributions::{Alphanumeric, Distribution as _};
use serde::Deserialize;
use url::Url;
use vestibule_config::Config;
use vestibule_domain::{
    Clock,
    browser_session::BrowserSession,
    oauth2::{AuthorizationGrant, Client, ClientAuthMethod, Pkce, ResponseMode},
    pkce, redirect_uri,
    scope::{self, Scope},
    tokens::token_hash,
    user::User,
};
use vestibule_storage::{BoxRepository, StorageError, oauth2::NewAuthorizationGrant};

use crate::error::ErrorCode;

/// The request parameters we read; unknown ones are ignored
/// (RFC 6749 §3.1). Parsed with [`crate::extract::parse_unique`], so a
/// repeated parameter is refused.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct AuthorizeParams {
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub response_type: Option<String>,
    pub response_mode: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub max_age: Option<String>,
    pub login_hint: Option<String>,
}

/// Where and how to send the browser back to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRedirect {
    pub redirect_uri: Url,
    pub mode: ResponseMode,
    pub params: Vec<(String, String)>,
}

impl ClientRedirect {
    /// The `Location` for the query and fragment modes.
    ///
    /// Query mode ends with an empty fragment `#` so that the browser does
    /// not re-attach the fragment of the current URL (RFC 9700 §4.1.3, S18);
    /// in fragment mode the parameters are the fragment.
    pub fn location(&self) -> Url {
        let mut url = self.redirect_uri.clone();
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&self.params)
            .finish();
        match self.mode {
            ResponseMode::Query | ResponseMode::FormPost => {
                url.query_pairs_mut().extend_pairs(&self.params);
                url.set_fragment(Some(""));
            }
            ResponseMode::Fragment => url.set_fragment(Some(&encoded)),
        }
        url
    }
}

/// What `/authorize` answers.
#[derive(Debug)]
pub enum AuthorizeOutcome {
    /// The client or redirect URI could not be trusted: an HTML 400 page.
    ErrorPage { message: String },
    /// An error (or, for `prompt=none`, a success) sent to the client.
    Redirect(ClientRedirect),
    /// The grant is stored; the browser continues on our pages. `code` must
    /// be kept in the browser's pending-grant cookie.
    Continue {
        grant: Box<AuthorizationGrant>,
        code: String,
        register: bool,
    },
}

/// Scopes a client may request (everything else is `invalid_scope`).
pub(crate) fn is_known_scope(token: &str) -> bool {
    matches!(
        token,
        scope::OPENID
            | scope::EMAIL
            | scope::PROFILE
            | scope::MATRIX_API_STABLE
            | scope::MATRIX_API_UNSTABLE
            | scope::SYNAPSE_ADMIN
    ) || token.starts_with(scope::MATRIX_DEVICE_STABLE_PREFIX)
        || token.starts_with(scope::MATRIX_DEVICE_UNSTABLE_PREFIX)
}

/// A fresh authorization code: 32 base62 characters (> 190 bits) from a
/// CSPRNG (RFC 6749 §10.10, ASVS 7.2.3).
pub fn new_code(rng: &mut (impl rand::RngCore + ?Sized)) -> String {
    (0..32)
        .map(|_| char::from(Alphanumeric.sample(rng)))
        .collect()
}

/// The parameters of an error response (RFC 6749 §4.1.2.1, RFC 9207).
pub fn error_params(
    code: ErrorCode,
    description: &str,
    state: Option<&str>,
    issuer: &Url,
) -> Vec<(String, String)> {
    let mut p = vec![
        ("error".to_owned(), code.as_str().to_owned()),
        ("error_description".to_owned(), description.to_owned()),
    ];
    if let Some(s) = state {
        p.push(("state".to_owned(), s.to_owned()));
    }
    p.push(("iss".to_owned(), issuer.to_string()));
    p
}

/// Whether `user` may be granted `urn:synapse:admin:*`: promoted with
/// `can_request_admin`, or listed in `policy.data.admin_users` (as a
/// localpart or a full MXID on our homeserver) — MAS's default policy —
/// or (a Vestibule extension) holding a user attribute listed in
/// `policy.data.admin_attributes`, e.g. `{"tenant_id": ["ops"]}`: the
/// attributes imported from an upstream provider's claims or by
/// `manage import-users` are what the policy sees of the organisation.
pub async fn may_request_admin(
    config: &Config,
    repo: &mut BoxRepository,
    user: &User,
) -> Result<bool, StorageError> {
    if user.can_request_admin {
        return Ok(true);
    }
    let data = &config.policy.data;
    let mxid = format!("@{}:{}", user.username, config.matrix.homeserver);
    let listed = data
        .get("admin_users")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|users| {
            users
                .iter()
                .filter_map(serde_json::Value::as_str)
                .any(|u| u == user.username || u == mxid)
        });
    if listed {
        return Ok(true);
    }
    let Some(wanted) = data
        .get("admin_attributes")
        .and_then(serde_json::Value::as_object)
        .filter(|w| !w.is_empty())
    else {
        return Ok(false);
    };
    let attributes = repo.user_attributes().all(user).await?;
    Ok(wanted.iter().any(|(name, values)| {
        attributes.get(name).is_some_and(|have| match values {
            serde_json::Value::Array(vs) => vs.iter().any(|v| v.as_str() == Some(have)),
            serde_json::Value::String(v) => v == have,
            _ => false,
        })
    }))
}

/// The requested scopes in plain words, for the consent page.
pub fn describe_scopes(scope: &str) -> Vec<String> {
    let mut out = Vec::new();
    for t in scope.split(' ').filter(|t| !t.is_empty()) {
        let line = match t {
            scope::OPENID => "See your Matrix user ID".to_owned(),
            scope::EMAIL => "See your email address".to_owned(),
            scope::PROFILE => "See your profile (display name)".to_owned(),
            scope::MATRIX_API_STABLE | scope::MATRIX_API_UNSTABLE => {
                "Use your Matrix account".to_owned()
            }
            scope::SYNAPSE_ADMIN => "Access the homeserver as an administrator".to_owned(),
            other => match other
                .strip_prefix(scope::MATRIX_DEVICE_STABLE_PREFIX)
                .or_else(|| other.strip_prefix(scope::MATRIX_DEVICE_UNSTABLE_PREFIX))
            {
                Some(device) => format!("Sign in as the device {device}"),
                None => other.to_owned(),
            },
        };
        if !out.contains(&line) {
            out.push(line);
        }
    }
    out
}

/// What must happen before a grant can be completed in this browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthNeed {
    /// The session is good enough.
    Satisfied,
    /// Log in (again): no session, `prompt=login` since the grant, or an
    /// authentication older than `max_age` (OIDC Core §3.1.2.1).
    Login,
}

/// Checks the session against the grant's `prompt` and `max_age`.
pub fn auth_need(
    grant_created_at: DateTime<Utc>,
    prompt: Option<&str>,
    max_age: Option<u32>,
    last_auth_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> AuthNeed {
    let Some(auth_at) = last_auth_at else {
        return AuthNeed::Login;
    };
    let prompts_login = prompt.is_some_and(|p| p.split(' ').any(|v| v == "login"));
    if prompts_login && auth_at < grant_created_at {
        return AuthNeed::Login;
    }
    if let Some(max) = max_age
        && now - auth_at > Duration::seconds(i64::from(max))
    {
        return AuthNeed::Login;
    }
    AuthNeed::Satisfied
}

/// The session for a `prompt=none` request, as seen at `/authorize`.
pub struct ExistingSession {
    pub browser_session: BrowserSession,
    pub user: User,
    pub last_auth_at: Option<DateTime<Utc>>,
}

/// Has the user already allowed this client this scope? An active session of
/// the client for the user whose scope covers the request (device scopes
/// aside: each login names a new device) counts as that consent.
async fn has_consented(
    repo: &mut BoxRepository,
    user: &User,
    client: &Client,
    scope: &Scope,
) -> Result<bool, StorageError> {
    let wanted: Vec<&str> = scope.iter().filter(|t| !is_device_scope(t)).collect();
    let sessions = repo.oauth2_sessions().list_active_for_user(user).await?;
    Ok(sessions
        .iter()
        .any(|s| s.client_id == client.id && wanted.iter().all(|w| s.scopes().any(|g| g == *w))))
}

fn is_device_scope(token: &str) -> bool {
    token.starts_with(scope::MATRIX_DEVICE_STABLE_PREFIX)
        || token.starts_with(scope::MATRIX_DEVICE_UNSTABLE_PREFIX)
}

/// Validates an authorization request and stores its grant.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    repo: &mut BoxRepository,
    clock: &dyn Clock,
    rng: &mut (dyn rand::RngCore + Send),
    config: &Config,
    issuer: &Url,
    params: AuthorizeParams,
    session: Option<ExistingSession>,
) -> Result<AuthorizeOutcome, StorageError> {
    // 1. The client and the redirect URI: errors are shown, never redirected.
    let page = |m: &str| {
        Ok(AuthorizeOutcome::ErrorPage {
            message: m.to_owned(),
        })
    };
    let Some(client_id) = params.client_id.as_deref() else {
        return page("The request has no client_id.");
    };
    let Some(client) = repo.oauth2_clients().find_by_client_id(client_id).await? else {
        return page("The application (client_id) is not known to this server.");
    };
    let Some(requested) = params.redirect_uri.as_deref() else {
        return page("The request has no redirect_uri.");
    };
    let Some(redirect_uri) = redirect_uri::matches(&client.redirect_uris, requested) else {
        return page("The redirect_uri is not registered for this application.");
    };

    // 2. From here on, errors go back to the client.
    let state = params.state.clone();
    let mode_param = params.response_mode.as_deref().map(ResponseMode::parse);
    let mode = mode_param.flatten().unwrap_or(ResponseMode::Query);
    let fail = |code: ErrorCode, description: &str| {
        Ok(AuthorizeOutcome::Redirect(ClientRedirect {
            redirect_uri: redirect_uri.clone(),
            mode,
            params: error_params(code, description, state.as_deref(), issuer),
        }))
    };
    if mode_param == Some(None) {
        return fail(ErrorCode::InvalidRequest, "unsupported response_mode");
    }
    // RFC 6749 §4.1.1: only the authorization code flow (RFC 9700 §2.1.2:
    // no implicit grant).
    match params.response_type.as_deref() {
        None | Some("") => return fail(ErrorCode::InvalidRequest, "missing response_type"),
        Some("code") => {}
        Some(_) => {
            return fail(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            );
        }
    }
    // RFC 6749 §3.3.
    let Some(scope) = params.scope.as_deref().and_then(|s| Scope::parse(s).ok()) else {
        return fail(ErrorCode::InvalidScope, "missing or malformed scope");
    };
    if let Some(unknown) = scope.iter().find(|t| !is_known_scope(t)) {
        return fail(ErrorCode::InvalidScope, &format!("unknown scope {unknown}"));
    }
    // RFC 7636 §4.3 and RFC 9700 §2.1.1: S256 only; required for public
    // clients.
    let pkce = match (
        params.code_challenge.as_deref(),
        params.code_challenge_method.as_deref(),
    ) {
        (None, None) if client.token_endpoint_auth_method == ClientAuthMethod::None => {
            return fail(
                ErrorCode::InvalidRequest,
                "public clients must use PKCE (code_challenge with S256)",
            );
        }
        (None, None) => None,
        (None, Some(_)) => {
            return fail(ErrorCode::InvalidRequest, "code_challenge is missing");
        }
        (Some(challenge), Some("S256")) if pkce::is_valid_s256_challenge(challenge) => Some(Pkce {
            challenge_method: "S256".to_owned(),
            challenge: challenge.to_owned(),
        }),
        (Some(_), Some("S256")) => {
            return fail(ErrorCode::InvalidRequest, "malformed code_challenge");
        }
        (Some(_), _) => {
            return fail(
                ErrorCode::InvalidRequest,
                "code_challenge_method must be S256",
            );
        }
    };
    // OIDC Core §3.1.2.1.
    let prompt = params.prompt.clone().filter(|p| !p.trim().is_empty());
    let prompts: Vec<&str> = prompt
        .as_deref()
        .map(|p| p.split(' ').filter(|v| !v.is_empty()).collect())
        .unwrap_or_default();
    let prompt_none = prompts.contains(&"none");
    if prompt_none && prompts.len() > 1 {
        return fail(
            ErrorCode::InvalidRequest,
            "prompt=none cannot be combined with other values",
        );
    }
    let max_age = match params.max_age.as_deref() {
        None => None,
        Some(s) => match s.parse::<u32>() {
            Ok(v) => Some(v),
            Err(_) => return fail(ErrorCode::InvalidRequest, "max_age must be a number"),
        },
    };
    let login_hint = params.login_hint.clone().filter(|h| !h.is_empty());

    // 3. prompt=none: complete now, or tell the client why not.
    if prompt_none {
        let now = clock.now();
        let Some(s) = session else {
            return fail(ErrorCode::LoginRequired, "the user is not signed in");
        };
        // The grant does not exist yet: its creation time is now.
        if auth_need(now, None, max_age, s.last_auth_at, now) != AuthNeed::Satisfied {
            return fail(ErrorCode::LoginRequired, "the user must sign in again");
        }
        if scope.has_synapse_admin() && !may_request_admin(config, repo, &s.user).await? {
            return fail(
                ErrorCode::AccessDenied,
                "the user may not request administrator access",
            );
        }
        // OIDC Core §3.1.2.6: without an earlier consent, `prompt=none` must
        // fail with consent_required. Otherwise any page could register a
        // client for its own redirect URI and silently take a token for a
        // signed-in visitor (S36: self-registered clients always see consent).
        if !client.is_static && !has_consented(repo, &s.user, &client, &scope).await? {
            return fail(
                ErrorCode::ConsentRequired,
                "the user has not yet allowed this application",
            );
        }
        let code = new_code(rng);
        let grant = repo
            .oauth2_grants()
            .add(
                rng,
                clock,
                &client,
                NewAuthorizationGrant {
                    redirect_uri,
                    scope: scope.to_string(),
                    state: params.state,
                    nonce: params.nonce,
                    response_mode: mode,
                    pkce,
                    max_age,
                    login_hint,
                    prompt,
                    code_hash: token_hash(&code),
                },
            )
            .await?;
        let redirect = complete(
            repo,
            clock,
            rng,
            issuer,
            grant,
            &client,
            &s.user,
            &s.browser_session,
            &code,
        )
        .await?;
        return Ok(AuthorizeOutcome::Redirect(redirect));
    }

    let register = prompts.contains(&"create");
    let code = new_code(rng);
    let grant = repo
        .oauth2_grants()
        .add(
            rng,
            clock,
            &client,
            NewAuthorizationGrant {
                redirect_uri,
                scope: scope.to_string(),
                state: params.state,
                nonce: params.nonce,
                response_mode: mode,
                pkce,
                max_age,
                login_hint,
                prompt,
                code_hash: token_hash(&code),
            },
        )
        .await?;
    Ok(AuthorizeOutcome::Continue {
        grant: Box::new(grant),
        code,
        register,
    })
}

/// The success response of a grant (RFC 6749 §4.1.2 + RFC 9207 `iss`).
pub fn success_redirect(issuer: &Url, grant: &AuthorizationGrant, code: &str) -> ClientRedirect {
    let mut params = vec![("code".to_owned(), code.to_owned())];
    if let Some(s) = &grant.state {
        params.push(("state".to_owned(), s.clone()));
    }
    params.push(("iss".to_owned(), issuer.to_string()));
    ClientRedirect {
        redirect_uri: grant.redirect_uri.clone(),
        mode: grant.response_mode,
        params,
    }
}

/// An error response for a stored grant.
pub fn grant_error(
    issuer: &Url,
    grant: &AuthorizationGrant,
    code: ErrorCode,
    description: &str,
) -> ClientRedirect {
    ClientRedirect {
        redirect_uri: grant.redirect_uri.clone(),
        mode: grant.response_mode,
        params: error_params(code, description, grant.state.as_deref(), issuer),
    }
}

/// Completes a grant: creates the OAuth 2.0 session for the user and
/// browser session, marks the grant fulfilled, and returns the redirect
/// that carries the code.
#[allow(clippy::too_many_arguments)]
pub async fn complete(
    repo: &mut BoxRepository,
    clock: &dyn Clock,
    rng: &mut (dyn rand::RngCore + Send),
    issuer: &Url,
    grant: AuthorizationGrant,
    client: &Client,
    user: &User,
    browser_session: &BrowserSession,
    code: &str,
) -> Result<ClientRedirect, StorageError> {
    let session = repo
        .oauth2_sessions()
        .add(
            rng,
            clock,
            client,
            Some(user),
            Some(browser_session),
            &grant.scope,
        )
        .await?;
    let grant = repo.oauth2_grants().fulfill(clock, &session, grant).await?;
    Ok(success_redirect(issuer, &grant, code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_mode_ends_with_an_empty_fragment_and_fragment_mode_uses_it() {
        let r = ClientRedirect {
            redirect_uri: "https://client.example/cb?keep=1".parse().unwrap(),
            mode: ResponseMode::Query,
            params: vec![
                ("code".into(), "abc".into()),
                ("state".into(), "x y".into()),
            ],
        };
        assert_eq!(
            r.location().as_str(),
            "https://client.example/cb?keep=1&code=abc&state=x+y#"
        );
        let f = ClientRedirect {
            mode: ResponseMode::Fragment,
            ..r
        };
        assert_eq!(
            f.location().as_str(),
            "https://client.example/cb?keep=1#code=abc&state=x+y"
        );
    }

    #[test]
    fn max_age_and_prompt_login() {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let later = t0 + Duration::seconds(100);
        assert_eq!(auth_need(t0, None, None, None, t0), AuthNeed::Login);
        assert_eq!(
            auth_need(t0, None, None, Some(t0), later),
            AuthNeed::Satisfied
        );
        assert_eq!(
            auth_need(t0, None, Some(60), Some(t0), later),
            AuthNeed::Login
        );
        assert_eq!(
            auth_need(t0, None, Some(600), Some(t0), later),
            AuthNeed::Satisfied
        );
        assert_eq!(
            auth_need(later, Some("login"), None, Some(t0), later),
            AuthNeed::Login
        );
        assert_eq!(
            auth_need(t0, Some("login consent"), None, Some(later), later),
            AuthNeed::Satisfied
        );
    }

    #[test]
    fn scopes_in_plain_words() {
        let d = describe_scopes(
            "openid urn:matrix:client:api:* urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:client:device:ABC urn:synapse:admin:* email",
        );
        assert!(d.contains(&"Use your Matrix account".to_owned()));
        assert_eq!(
            d.iter().filter(|l| *l == "Use your Matrix account").count(),
            1
        );
        assert!(d.contains(&"Access the homeserver as an administrator".to_owned()));
        assert!(d.contains(&"Sign in as the device ABC".to_owned()));
        assert!(d.contains(&"See your email address".to_owned()));
    }
}
