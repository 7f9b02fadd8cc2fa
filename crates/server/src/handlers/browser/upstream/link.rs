//! `/upstream/link/{session_id}`: where an upstream login ends. The
//! callback completed the upstream session with the claims and the
//! (provider, subject) link; here, in the browser that started it:
//!
//! - the link has a user → that user is signed in (a different user signed
//!   in here gets a mismatch page first, never a silent switch);
//! - no user, someone signed in → offer to link the upstream account to
//!   them;
//! - no user, nobody signed in → a registration form pre-filled from the
//!   claims imports (or the account is created at once with
//!   `skip_confirmation` when there is nothing to ask).
//!
//! The provider's `attribute_requirements` were checked by the callback
//! before anything was written; they are checked again here, on every path
//! (the configuration may have changed in between). Custom claims imports
//! (user attributes) are stored at registration, when linking an existing
//! account, and, for `force`/`require` ones, at every sign-in. A new
//! account's name must be free here and on the homeserver
//! ([`upstream_link::check_localpart`]). Writes are one transaction that
//! consumes the upstream session by compare-and-set
//! ([`flows::upstream_link`]).

use std::collections::BTreeMap;

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use minijinja::context;
use vestibule_config::UpstreamProviderConfig;
use vestibule_domain::{
    Ulid,
    browser_session::BrowserSession,
    upstream::{UpstreamAuthorizationSession, UpstreamLink},
    user::User,
};

use super::super::{
    PageOpts, check_csrf, error_page, internal, matrix_id, parse_form, render, see_other,
    user_agent,
};
use super::{not_allowed, provider_name};
use crate::{
    AppState, csrf,
    flows::upstream_link::{self, AttributeUpdates, Browser, LinkError, Linked, NewAccount},
    session,
    upstream::{
        PostAuthAction,
        claims::{self, Claims, ImportError, Imported, Imports},
        cookie,
    },
};

/// Everything the page needs, once checked.
struct Loaded {
    upstream: UpstreamAuthorizationSession,
    link: UpstreamLink,
    provider: UpstreamProviderConfig,
    claims: Claims,
    /// The user the link belongs to, if any.
    link_user: Option<User>,
    /// Who is signed in in this browser.
    current: Option<(BrowserSession, User)>,
}

impl Loaded {
    fn provider_name(&self) -> String {
        provider_name(&self.provider)
    }

    fn continue_path(&self) -> String {
        PostAuthAction::from_json(self.upstream.post_auth_action.as_deref())
            .map_or_else(|| "/".to_owned(), |a| a.path())
    }
}

fn refuse(state: &AppState, status: StatusCode, message: &str) -> Response {
    error_page(state, status, message, None)
}

/// The provider of the session, from the configuration.
fn provider_config(state: &AppState, id: Ulid) -> Option<UpstreamProviderConfig> {
    state
        .config
        .upstream_oauth2
        .providers
        .iter()
        .find(|p| Ulid::from_string(&p.id.to_uppercase()).ok() == Some(id) && p.enabled)
        .cloned()
}

async fn load(state: &AppState, headers: &HeaderMap, id: &str) -> Result<Loaded, Response> {
    let start_again = "This sign-in is not valid in this browser, or it has expired. Start again \
                       from the sign-in page.";
    let Ok(id) = Ulid::from_string(id) else {
        return Err(refuse(state, StatusCode::NOT_FOUND, start_again));
    };
    // Only the browser that started the upstream login may finish it.
    if !cookie::contains(state, headers, id) {
        return Err(refuse(state, StatusCode::BAD_REQUEST, start_again));
    }
    let mut repo = state.repos.read().await.map_err(|e| internal(state, &e))?;
    let result = async {
        let up = repo.upstream_sessions().lookup(id).await?;
        let link = match up.as_ref().and_then(|u| u.link_id) {
            Some(l) => repo.upstream_links().lookup(l).await?,
            None => None,
        };
        let link_user = match link.as_ref().and_then(|l| l.user_id) {
            Some(u) => repo.users().lookup(u).await?,
            None => None,
        };
        let current = session::current(state, &mut repo, headers).await?;
        Ok::<_, vestibule_storage::StorageError>((up, link, link_user, current))
    }
    .await;
    let (up, link, link_user, current) = result.map_err(|e| internal(state, &e))?;
    let Some(up) = up else {
        return Err(refuse(state, StatusCode::NOT_FOUND, start_again));
    };
    if up.consumed_at.is_some() {
        return Err(refuse(
            state,
            StatusCode::BAD_REQUEST,
            "This sign-in was already used. If you are not signed in, start again from the \
             sign-in page.",
        ));
    }
    let (Some(_), Some(link)) = (up.completed_at, link) else {
        return Err(refuse(state, StatusCode::BAD_REQUEST, start_again));
    };
    let Some(provider) = provider_config(state, up.provider_id) else {
        return Err(refuse(
            state,
            StatusCode::BAD_REQUEST,
            "This identity provider is no longer available on this server.",
        ));
    };
    let claims = Claims::from_session(up.claims.as_ref());
    if claims::unmet_requirement(&provider.attribute_requirements, &claims).is_some() {
        tracing::info!(provider = %provider.id, link = %link.id, "upstream login refused by attribute_requirements");
        return Err(not_allowed(state, &provider));
    }
    Ok(Loaded {
        upstream: up,
        link,
        provider,
        claims,
        link_user,
        current,
    })
}

fn imports(state: &AppState, l: &Loaded) -> Result<Imports, Response> {
    claims::import(
        &l.provider.claims_imports,
        &l.claims,
        &state.config.matrix.homeserver,
    )
    .map_err(|e| import_refusal(state, l, &e, "No account was created."))
}

/// The custom claims imports alone (linking, signing in); `outcome` says
/// what did not happen when a `require`d one is missing.
fn custom_imports(
    state: &AppState,
    l: &Loaded,
    outcome: &str,
) -> Result<BTreeMap<String, Imported>, Response> {
    claims::import_custom(&l.provider.claims_imports, &l.claims)
        .map_err(|e| import_refusal(state, l, &e, outcome))
}

/// What a sign-in through the link brings up to date.
fn sign_in_updates(state: &AppState, l: &Loaded) -> Result<AttributeUpdates, Response> {
    custom_imports(state, l, "You were not signed in.").map(|c| claims::attribute_updates(&c))
}

/// The page for claims that cannot be imported.
fn import_refusal(state: &AppState, l: &Loaded, e: &ImportError, outcome: &str) -> Response {
    let status = match e {
        ImportError::Template { .. } => {
            tracing::error!(provider = %l.provider.id, error = %e, "claims import template");
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => StatusCode::FORBIDDEN,
    };
    let message = match e {
        ImportError::Template { .. } => {
            "The sign-in through this identity provider is misconfigured. Contact the \
             administrator."
                .to_owned()
        }
        other => {
            let mut m = other.to_string();
            if let Some(first) = m.get_mut(..1) {
                first.make_ascii_uppercase();
            }
            format!("{m}. {outcome}")
        }
    };
    refuse(state, status, &message)
}

/// The 303 to what the login continues, with the session cookie (when new)
/// and this upstream session dropped from the browser's cookie.
fn done(state: &AppState, headers: &HeaderMap, l: &Loaded, linked: &Linked) -> Response {
    let mut opts = PageOpts::default().cookie(cookie::remove(state, headers, l.upstream.id));
    if linked.new_session {
        opts = opts.cookie(session::session_cookie(state, linked.session.id));
    }
    see_other(state, &l.continue_path(), &opts)
}

fn link_error(state: &AppState, l: &Loaded, e: &LinkError) -> Response {
    match e {
        LinkError::Replayed | LinkError::LinkChanged => refuse(
            state,
            StatusCode::CONFLICT,
            "This sign-in was already used. If you are not signed in, start again from the \
             sign-in page.",
        ),
        LinkError::Locked => refuse(
            state,
            StatusCode::FORBIDDEN,
            "This account is locked or deactivated. Contact the server administrator.",
        ),
        LinkError::ExistingAccount { localpart } => refuse(
            state,
            StatusCode::CONFLICT,
            &format!(
                "The username {} belongs to an existing account on this server. Your {} account \
                 was NOT linked to it, and no account was created. Contact the administrator if \
                 the existing account is yours.",
                matrix_id(state, localpart),
                l.provider_name()
            ),
        ),
        LinkError::HomeserverAccount { localpart } => refuse(
            state,
            StatusCode::CONFLICT,
            &format!(
                "The username {} is already in use on the homeserver by an account this service \
                 does not manage (yet). Your {} account was NOT linked to it, and no account was \
                 created. Contact the administrator.",
                matrix_id(state, localpart),
                l.provider_name()
            ),
        ),
        // Logged by `homeserver_allows`.
        LinkError::Homeserver(_) => refuse(
            state,
            StatusCode::SERVICE_UNAVAILABLE,
            "The homeserver cannot be reached right now, so no account was created. Try again in \
             a moment.",
        ),
        LinkError::Taken | LinkError::InvalidUsername(_) => refuse(
            state,
            StatusCode::BAD_REQUEST,
            "This username cannot be used. Go back and choose another one.",
        ),
        LinkError::Storage(e) => internal(state, e),
    }
}

/// What did not happen when linking is refused.
fn not_linked(l: &Loaded) -> String {
    format!("Your {} account was NOT linked.", l.provider_name())
}

fn mismatch_page(
    state: &AppState,
    l: &Loaded,
    csrf: &csrf::CsrfToken,
    current: &User,
    linked: &User,
) -> Response {
    render(
        state,
        StatusCode::OK,
        "upstream_mismatch.html",
        context! {
            csrf => csrf.token.clone(),
            provider_name => l.provider_name(),
            current_user_id => matrix_id(state, &current.username),
            linked_user_id => matrix_id(state, &linked.username),
            action_path => link_path(l.upstream.id),
        },
        &PageOpts::default().cookie(csrf.set_cookie.clone()),
    )
}

fn link_path(id: Ulid) -> String {
    <crate::routes::UpstreamLink as crate::routes::Route>::PATH
        .replace("{session_id}", &id.to_string())
}

fn offer_page(
    state: &AppState,
    l: &Loaded,
    csrf: &csrf::CsrfToken,
    current: &User,
    custom: &BTreeMap<String, Imported>,
) -> Response {
    render(
        state,
        StatusCode::OK,
        "upstream_link.html",
        context! {
            csrf => csrf.token.clone(),
            provider_name => l.provider_name(),
            account_name => l.link.human_account_name.clone(),
            current_user_id => matrix_id(state, &current.username),
            action_path => link_path(l.upstream.id),
            attributes => attribute_fields(custom),
        },
        &PageOpts::default().cookie(csrf.set_cookie.clone()),
    )
}

/// The custom attributes as form fields: fixed, or opt-out boxes.
fn attribute_fields(custom: &BTreeMap<String, Imported>) -> Vec<(String, Field)> {
    custom
        .iter()
        .filter_map(|(name, imp)| field(imp, false).map(|f| (name.clone(), f)))
        .collect()
}

/// The custom attributes to store: the fixed ones, and the suggested ones
/// whose box is still ticked.
fn chosen_attributes(
    custom: &BTreeMap<String, Imported>,
    form: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let checked = |k: &str| form.get(k).is_some_and(|v| v == "on" || v == "true");
    custom
        .iter()
        .filter_map(|(name, imp)| {
            let value = match (imp.fixed(), imp.suggestion()) {
                (Some(v), _) => v,
                (None, Some(v)) if checked(&format!("attr.{name}")) => v,
                _ => return None,
            };
            Some((name.clone(), value.to_owned()))
        })
        .collect()
}

/// One field of the registration form.
#[derive(serde::Serialize)]
struct Field {
    /// `fixed` (read-only), `editable`, or `optional` (a checkbox).
    mode: &'static str,
    value: Option<String>,
}

fn field(i: &Imported, editable: bool) -> Option<Field> {
    if let Some(v) = i.fixed() {
        return Some(Field {
            mode: "fixed",
            value: Some(v.to_owned()),
        });
    }
    let s = i.suggestion()?;
    Some(Field {
        mode: if editable { "editable" } else { "optional" },
        value: Some(s.to_owned()),
    })
}

#[allow(clippy::too_many_arguments)]
fn register_page(
    state: &AppState,
    status: StatusCode,
    l: &Loaded,
    csrf: &csrf::CsrfToken,
    i: &Imports,
    username: Option<&str>,
    error: Option<&str>,
) -> Response {
    let localpart = match i.localpart.fixed() {
        Some(v) => Field {
            mode: "fixed",
            value: Some(v.to_owned()),
        },
        None => Field {
            mode: "editable",
            value: username.or(i.localpart.suggestion()).map(str::to_owned),
        },
    };
    let attributes = attribute_fields(&i.custom);
    render(
        state,
        status,
        "upstream_register.html",
        context! {
            csrf => csrf.token.clone(),
            provider_name => l.provider_name(),
            account_name => i.account_name.clone().or_else(|| l.link.human_account_name.clone()),
            action_path => link_path(l.upstream.id),
            localpart,
            displayname => field(&i.displayname, true),
            email => field(&i.email, false),
            attributes,
            error,
        },
        &PageOpts::default().cookie(csrf.set_cookie.clone()),
    )
}

pub(super) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let l = match load(&state, &headers, &id).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let csrf = csrf::issue(&state, &headers);
    let browser = Browser {
        user_agent: user_agent(&headers),
        previous: session::session_id(&state, &headers),
    };
    let mut rng = state.rng.rng();
    match (&l.link_user, &l.current) {
        (Some(linked), Some((_, current))) if linked.id != current.id => {
            mismatch_page(&state, &l, &csrf, current, linked)
        }
        (Some(_), _) => {
            let updates = match sign_in_updates(&state, &l) {
                Ok(u) => u,
                Err(r) => return r,
            };
            match upstream_link::sign_in(
                state.repos.as_ref(),
                state.clock.as_ref(),
                &mut rng,
                l.upstream.id,
                &updates,
                browser,
            )
            .await
            {
                Ok(linked) => done(&state, &headers, &l, &linked),
                Err(e) => link_error(&state, &l, &e),
            }
        }
        (None, _) if l.link.user_id.is_some() => internal(
            &state,
            &vestibule_storage::StorageError::InvalidData("link to a missing user".to_owned()),
        ),
        (None, Some((_, current))) => match custom_imports(&state, &l, &not_linked(&l)) {
            Ok(custom) => offer_page(&state, &l, &csrf, current, &custom),
            Err(r) => r,
        },
        (None, None) => {
            let i = match imports(&state, &l) {
                Ok(i) => i,
                Err(r) => return r,
            };
            // A fixed localpart that belongs to an existing account (with
            // `on_conflict: fail`), or to a user only the homeserver has,
            // can never succeed: say so now rather than after the form (the
            // POST checks again).
            if let Some(localpart) = i.localpart.fixed()
                && let Err(e) = upstream_link::check_localpart(
                    state.repos.as_ref(),
                    state.homeserver.as_ref(),
                    localpart,
                    true,
                    l.provider.claims_imports.localpart.on_conflict,
                )
                .await
            {
                return link_error(&state, &l, &e);
            }
            if l.provider.claims_imports.skip_confirmation && i.nothing_to_ask() {
                let account = new_account(&l, &i, &BTreeMap::new());
                return match account {
                    Ok(a) => register(&state, &headers, &l, &csrf, &i, &a, browser).await,
                    Err(msg) => register_page(
                        &state,
                        StatusCode::BAD_REQUEST,
                        &l,
                        &csrf,
                        &i,
                        None,
                        Some(msg),
                    ),
                };
            }
            register_page(&state, StatusCode::OK, &l, &csrf, &i, None, None)
        }
    }
}

/// The account to create from the imports (authoritative) and the form
/// (only where the imports leave a choice).
fn new_account(
    l: &Loaded,
    i: &Imports,
    form: &BTreeMap<String, String>,
) -> Result<NewAccount, &'static str> {
    let checked = |k: &str| form.get(k).is_some_and(|v| v == "on" || v == "true");
    let (localpart, localpart_imported) = if let Some(v) = i.localpart.fixed() {
        (v.to_owned(), true)
    } else {
        let typed = form.get("username").map(|s| s.trim()).unwrap_or_default();
        if typed.is_empty() {
            return Err("Choose a username.");
        }
        (typed.to_owned(), false)
    };
    let displayname = match (i.displayname.fixed(), i.displayname.suggestion()) {
        (Some(v), _) => Some(v.to_owned()),
        (None, Some(_)) => form
            .get("displayname")
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| s.chars().take(256).collect()),
        (None, None) => None,
    };
    let email = match (i.email.fixed(), i.email.suggestion()) {
        (Some(v), _) => Some(v.to_owned()),
        (None, Some(v)) if checked("import_email") => Some(v.to_owned()),
        _ => None,
    };
    let attributes = chosen_attributes(&i.custom, form);
    Ok(NewAccount {
        localpart,
        localpart_imported,
        on_conflict: l.provider.claims_imports.localpart.on_conflict,
        displayname,
        email,
        attributes,
    })
}

async fn register(
    state: &AppState,
    headers: &HeaderMap,
    l: &Loaded,
    csrf: &csrf::CsrfToken,
    i: &Imports,
    account: &NewAccount,
    browser: Browser<'_>,
) -> Response {
    // Registration tokens are not implemented: creating the account would
    // bypass the operator's policy, so refuse clearly instead.
    if l.provider.registration_token_required {
        return refuse(
            state,
            StatusCode::FORBIDDEN,
            &format!(
                "New accounts through {} need a registration token, which this server cannot \
                 check yet. No account was created. Contact the administrator.",
                l.provider_name()
            ),
        );
    }
    let mut rng = state.rng.rng();
    let result = upstream_link::register(
        state.repos.as_ref(),
        state.clock.as_ref(),
        &mut rng,
        state.homeserver.as_ref(),
        &state.config.matrix.homeserver,
        l.upstream.id,
        account,
        browser,
    )
    .await;
    let again = |msg: &str| {
        register_page(
            state,
            StatusCode::BAD_REQUEST,
            l,
            csrf,
            i,
            Some(&account.localpart),
            Some(msg),
        )
    };
    match result {
        Ok(linked) => done(state, headers, l, &linked),
        // A typed or suggested name: the user may choose another one.
        Err(LinkError::Taken) if !account.localpart_imported => {
            again("This username is taken. Choose another one.")
        }
        Err(LinkError::InvalidUsername(m)) if !account.localpart_imported => again(m),
        Err(e) => link_error(state, l, &e),
    }
}

pub(super) async fn post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: BTreeMap<String, String> = match parse_form(&state, &headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Err(r) = check_csrf(&state, &headers, form.get("csrf").map(String::as_str)) {
        return r;
    }
    let l = match load(&state, &headers, &id).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let csrf = csrf::issue(&state, &headers);
    let browser = Browser {
        user_agent: user_agent(&headers),
        previous: session::session_id(&state, &headers),
    };
    let mut rng = state.rng.rng();
    let action = form.get("action").map(String::as_str).unwrap_or_default();
    match (action, &l.link_user, &l.current) {
        // Mismatch page: an explicit choice to continue as the link's user.
        ("continue", Some(_), _) => {
            let updates = match sign_in_updates(&state, &l) {
                Ok(u) => u,
                Err(r) => return r,
            };
            match upstream_link::sign_in(
                state.repos.as_ref(),
                state.clock.as_ref(),
                &mut rng,
                l.upstream.id,
                &updates,
                browser,
            )
            .await
            {
                Ok(linked) => done(&state, &headers, &l, &linked),
                Err(e) => link_error(&state, &l, &e),
            }
        }
        ("link", None, Some((session, _))) if l.link.user_id.is_none() => {
            let custom = match custom_imports(&state, &l, &not_linked(&l)) {
                Ok(c) => c,
                Err(r) => return r,
            };
            match upstream_link::link_to_current(
                state.repos.as_ref(),
                state.clock.as_ref(),
                &mut rng,
                l.upstream.id,
                session.id,
                &chosen_attributes(&custom, &form),
            )
            .await
            {
                Ok(linked) => done(&state, &headers, &l, &linked),
                Err(e) => link_error(&state, &l, &e),
            }
        }
        ("register", None, _) if l.link.user_id.is_none() => {
            let i = match imports(&state, &l) {
                Ok(i) => i,
                Err(r) => return r,
            };
            match new_account(&l, &i, &form) {
                Ok(a) => register(&state, &headers, &l, &csrf, &i, &a, browser).await,
                Err(msg) => register_page(
                    &state,
                    StatusCode::BAD_REQUEST,
                    &l,
                    &csrf,
                    &i,
                    None,
                    Some(msg),
                ),
            }
        }
        _ => refuse(
            &state,
            StatusCode::BAD_REQUEST,
            "This action is not available for this sign-in any more. Start again from the \
             sign-in page.",
        ),
    }
}
