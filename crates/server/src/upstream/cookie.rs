//! The browser's side of upstream logins: an encrypted cookie listing the
//! upstream authorization sessions this browser started (newest few, each
//! for a limited time). The callback and the link page accept a session
//! only if it is listed here, so a state or session id carried to another
//! browser (login CSRF, RFC 6749 §10.12) leads nowhere.

use axum::http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use vestibule_domain::Ulid;

use crate::{AppState, session};

const NAME: &str = "vestibule-upstream";
const MAX_SESSIONS: usize = 8;
/// How long a browser may take at the provider and on our link page.
pub const UPSTREAM_SESSION_TTL_SECONDS: i64 = 30 * 60;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Sessions(Vec<(Ulid, i64)>);

fn read(state: &AppState, headers: &HeaderMap) -> Sessions {
    let name = session::cookie_name(state, NAME);
    let mut s: Sessions = session::read_cookie(headers, &name)
        .and_then(|raw| state.encrypter.decrypt_str(name.as_bytes(), raw).ok())
        .and_then(|plain| serde_json::from_slice(&plain).ok())
        .unwrap_or_default();
    let now = state.clock.now().timestamp();
    s.0.retain(|(_, at)| now - at < UPSTREAM_SESSION_TTL_SECONDS);
    s
}

fn write(state: &AppState, s: &Sessions) -> Option<HeaderValue> {
    let name = session::cookie_name(state, NAME);
    if s.0.is_empty() {
        return Some(session::clear_cookie(state, &name));
    }
    let json = serde_json::to_vec(s).ok()?;
    let value = state
        .encrypter
        .encrypt_to_string(&mut state.rng.rng(), name.as_bytes(), &json)
        .ok()?;
    Some(session::set_cookie(
        state,
        &name,
        &value,
        Some(UPSTREAM_SESSION_TTL_SECONDS),
    ))
}

/// Whether this browser started the upstream session `id` (recently).
pub fn contains(state: &AppState, headers: &HeaderMap, id: Ulid) -> bool {
    read(state, headers).0.iter().any(|(s, _)| *s == id)
}

/// The upstream sessions this browser started (recently), newest last.
pub fn ids(state: &AppState, headers: &HeaderMap) -> Vec<Ulid> {
    read(state, headers)
        .0
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// The `Set-Cookie` that adds `id` (keeping the newest few).
pub fn add(state: &AppState, headers: &HeaderMap, id: Ulid) -> Option<HeaderValue> {
    let mut s = read(state, headers);
    s.0.retain(|(x, _)| *x != id);
    s.0.push((id, state.clock.now().timestamp()));
    let excess = s.0.len().saturating_sub(MAX_SESSIONS);
    s.0.drain(..excess);
    write(state, &s)
}

/// The `Set-Cookie` that drops `id` once the session is consumed.
pub fn remove(state: &AppState, headers: &HeaderMap, id: Ulid) -> Option<HeaderValue> {
    let mut s = read(state, headers);
    s.0.retain(|(x, _)| *x != id);
    write(state, &s)
}
