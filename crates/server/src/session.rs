//! The browser session cookie, and the cookie that carries pending
//! authorization codes between `/authorize` and the consent page.
//!
//! Both are AEAD-encrypted with `secrets.encryption` (XChaCha20-Poly1305,
//! the cookie name as associated data), so the browser sees neither the
//! session id nor the codes and cannot forge or move them (checklist S21).
//! On an https `public_base` the names carry the `__Host-` prefix, which
//! makes browsers require `Secure`, `Path=/` and no `Domain`
//! (RFC 6265bis §4.1.3.2).

use axum::http::{HeaderMap, HeaderValue, header};
use serde::{Deserialize, Serialize};
use vestibule_domain::{Ulid, browser_session::BrowserSession, user::User};
use vestibule_storage::{BoxRepository, StorageError};

use crate::AppState;

const SESSION: &str = "vestibule-session";
const GRANTS: &str = "vestibule-grants";
/// How many pending authorization codes one browser keeps.
const MAX_PENDING_GRANTS: usize = 8;
/// Lifetime of the pending-code cookie (and of a pending grant).
pub const PENDING_GRANT_TTL_SECONDS: i64 = 30 * 60;

/// Whether cookies are `Secure` and `__Host-` prefixed.
pub fn is_secure(state: &AppState) -> bool {
    state.urls.public_base().scheme() == "https"
}

/// The full name of one of our cookies.
pub fn cookie_name(state: &AppState, base: &str) -> String {
    if is_secure(state) {
        format!("__Host-{base}")
    } else {
        base.to_owned()
    }
}

/// The session cookie's name for this deployment.
pub fn session_cookie_name(state: &AppState) -> String {
    cookie_name(state, SESSION)
}

/// The value of cookie `name` in the request (first match).
pub fn read_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, Path=/, Secure on https.
pub fn set_cookie(state: &AppState, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
    let max_age = max_age
        .map(|a| format!("; Max-Age={a}"))
        .unwrap_or_default();
    let secure = if is_secure(state) { "; Secure" } else { "" };
    let s = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax{max_age}{secure}");
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// A `Set-Cookie` that deletes cookie `name`.
pub fn clear_cookie(state: &AppState, name: &str) -> HeaderValue {
    set_cookie(state, name, "", Some(0))
}

/// The `Set-Cookie` for a (new) browser session.
pub fn session_cookie(state: &AppState, session_id: Ulid) -> Option<HeaderValue> {
    let name = session_cookie_name(state);
    let value = state
        .encrypter
        .encrypt_to_string(
            &mut state.rng.rng(),
            name.as_bytes(),
            session_id.to_string().as_bytes(),
        )
        .ok()?;
    Some(set_cookie(state, &name, &value, None))
}

/// The browser session id in the request's cookie, if it decrypts.
pub fn session_id(state: &AppState, headers: &HeaderMap) -> Option<Ulid> {
    let name = session_cookie_name(state);
    let raw = read_cookie(headers, &name)?;
    let plain = state.encrypter.decrypt_str(name.as_bytes(), raw).ok()?;
    Ulid::from_string(std::str::from_utf8(&plain).ok()?).ok()
}

/// The active browser session of the request and its (valid) user, if any.
/// A finished session, or one of a locked or deactivated user, is none.
pub async fn current(
    state: &AppState,
    repo: &mut BoxRepository,
    headers: &HeaderMap,
) -> Result<Option<(BrowserSession, User)>, StorageError> {
    let Some(id) = session_id(state, headers) else {
        return Ok(None);
    };
    let Some(session) = repo.browser_sessions().lookup(id).await? else {
        return Ok(None);
    };
    if !session.is_active() {
        return Ok(None);
    }
    let Some(user) = repo.users().lookup(session.user_id).await? else {
        return Ok(None);
    };
    if !user.is_valid() {
        return Ok(None);
    }
    Ok(Some((session, user)))
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct PendingGrants(Vec<(Ulid, String)>);

fn read_pending(state: &AppState, headers: &HeaderMap) -> PendingGrants {
    let name = cookie_name(state, GRANTS);
    read_cookie(headers, &name)
        .and_then(|raw| state.encrypter.decrypt_str(name.as_bytes(), raw).ok())
        .and_then(|plain| serde_json::from_slice(&plain).ok())
        .unwrap_or_default()
}

/// The authorization code of a pending grant, kept in this browser's
/// cookie since `/authorize` (only its hash is in the database).
pub fn pending_code(state: &AppState, headers: &HeaderMap, grant_id: Ulid) -> Option<String> {
    read_pending(state, headers)
        .0
        .into_iter()
        .find(|(id, _)| *id == grant_id)
        .map(|(_, code)| code)
}

/// The `Set-Cookie` that adds a pending grant's code (keeping the newest
/// few), or drops one when `code` is `None`.
pub fn pending_cookie(
    state: &AppState,
    headers: &HeaderMap,
    grant_id: Ulid,
    code: Option<&str>,
) -> Option<HeaderValue> {
    let mut pending = read_pending(state, headers);
    pending.0.retain(|(id, _)| *id != grant_id);
    if let Some(code) = code {
        pending.0.push((grant_id, code.to_owned()));
    }
    let excess = pending.0.len().saturating_sub(MAX_PENDING_GRANTS);
    pending.0.drain(..excess);
    let name = cookie_name(state, GRANTS);
    if pending.0.is_empty() {
        return Some(clear_cookie(state, &name));
    }
    let json = serde_json::to_vec(&pending).ok()?;
    let value = state
        .encrypter
        .encrypt_to_string(&mut state.rng.rng(), name.as_bytes(), &json)
        .ok()?;
    Some(set_cookie(
        state,
        &name,
        &value,
        Some(PENDING_GRANT_TTL_SECONDS),
    ))
}
