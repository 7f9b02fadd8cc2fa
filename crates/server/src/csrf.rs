//! CSRF protection for every form POST (checklist S22, ASVS 3.5).
//!
//! Double submit with an authenticated cookie: the `vestibule-csrf` cookie
//! (`__Host-` prefixed on https) holds a random token and its expiry,
//! AEAD-encrypted so it cannot be forged or read; every form carries the same
//! token in a hidden `csrf` field. A POST passes only if the cookie decrypts,
//! has not expired, and its token equals the field (constant-time). A token
//! taken from another browser does not match that browser's cookie.
//!
//! In addition, a POST whose `Origin` is not ours, or whose
//! `Sec-Fetch-Site` says it came from another site, is refused before the
//! token is looked at.

use axum::http::{HeaderMap, HeaderValue, header};
use rand::{Rng as _, distributions::Alphanumeric};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;

use crate::{AppState, session};

const COOKIE: &str = "vestibule-csrf";
/// How long a token is valid.
const TTL_SECONDS: i64 = 60 * 60;
/// A token with less than this left is replaced when a form is shown.
const RENEW_BELOW_SECONDS: i64 = 15 * 60;

#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    token: String,
    exp: i64,
}

/// Why a POST was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CsrfError {
    #[error("the request came from another site")]
    CrossSite,
    #[error("the form token is missing")]
    Missing,
    #[error("the form token is invalid or expired")]
    Invalid,
}

/// The token for the forms of a page, and the cookie to set if it is new.
#[derive(Debug, Clone)]
pub struct CsrfToken {
    pub token: String,
    pub set_cookie: Option<HeaderValue>,
}

fn read(state: &AppState, headers: &HeaderMap) -> Option<Payload> {
    let name = session::cookie_name(state, COOKIE);
    let raw = session::read_cookie(headers, &name)?;
    let plain = state.encrypter.decrypt_str(name.as_bytes(), raw).ok()?;
    serde_json::from_slice(&plain).ok()
}

/// The token to put in this page's forms: the browser's current one while
/// it is fresh, else a new one (with its cookie).
pub fn issue(state: &AppState, headers: &HeaderMap) -> CsrfToken {
    let now = state.clock.now().timestamp();
    if let Some(p) = read(state, headers)
        && p.exp - now > RENEW_BELOW_SECONDS
    {
        return CsrfToken {
            token: p.token,
            set_cookie: None,
        };
    }
    let mut rng = state.rng.rng();
    let token: String = (&mut rng)
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    let payload = Payload {
        token: token.clone(),
        exp: now + TTL_SECONDS,
    };
    let name = session::cookie_name(state, COOKIE);
    let set_cookie = serde_json::to_vec(&payload)
        .ok()
        .and_then(|json| {
            state
                .encrypter
                .encrypt_to_string(&mut rng, name.as_bytes(), &json)
                .ok()
        })
        .map(|value| session::set_cookie(state, &name, &value, Some(TTL_SECONDS)));
    CsrfToken { token, set_cookie }
}

/// Refuses cross-site POSTs: `Sec-Fetch-Site: cross-site` / `same-site`, or
/// an `Origin` other than `public_base`'s.
///
/// `Origin: null` is what browsers send for a form POST from a page whose
/// `Referrer-Policy` is `no-referrer` (Fetch standard, "append a request
/// `Origin` header") — i.e. from our own pages. It is accepted only when the
/// browser does not also say the request is cross-site; the CSRF token is
/// still required either way.
pub fn check_origin(state: &AppState, headers: &HeaderMap) -> Result<(), CsrfError> {
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if matches!(site, Some("cross-site" | "same-site")) {
        return Err(CsrfError::CrossSite);
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let ours = state.urls.public_base().origin().ascii_serialization();
        let null_from_our_page =
            origin.as_bytes() == b"null" && site.is_none_or(|s| s == "same-origin");
        if origin.as_bytes() != ours.as_bytes() && !null_from_our_page {
            return Err(CsrfError::CrossSite);
        }
    }
    Ok(())
}

/// Checks a form POST: origin, then the token against the cookie.
pub fn verify(
    state: &AppState,
    headers: &HeaderMap,
    form_token: Option<&str>,
) -> Result<(), CsrfError> {
    check_origin(state, headers)?;
    let form_token = form_token
        .filter(|t| !t.is_empty())
        .ok_or(CsrfError::Missing)?;
    let cookie = read(state, headers).ok_or(CsrfError::Missing)?;
    if cookie.exp <= state.clock.now().timestamp() {
        return Err(CsrfError::Invalid);
    }
    if bool::from(cookie.token.as_bytes().ct_eq(form_token.as_bytes())) {
        Ok(())
    } else {
        Err(CsrfError::Invalid)
    }
}
