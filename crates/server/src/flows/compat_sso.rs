//! The `m.login.sso` round trip of the legacy login API (Matrix spec
//! §"SSO client login"): the client sends the browser to
//! `/login/sso/redirect?redirectUrl=…`; the user signs in here and approves
//! on `/complete-compat-sso/{id}`; the browser goes back to `redirectUrl`
//! with a single-use `loginToken`, which the client exchanges with
//! `m.login.token` ([`super::compat::token_login`]).
//!
//! Only the SHA-256 of the login token is stored; the token itself travels
//! in an encrypted cookie of the browser that started the login, so the
//! approval page works only in that browser.

use chrono::Duration;
use rand::{Rng as _, distributions::Alphanumeric};
use rand_chacha::ChaCha20Rng;
use url::Url;
use vestibule_domain::{
    Clock,
    browser_session::BrowserSession,
    compat::{CompatSsoLogin, CompatSsoLoginStage},
    tokens::token_hash,
};
use vestibule_storage::{BoxRepository, RepositoryFactory, StorageError};

/// How long a started SSO login waits for the user (like a pending grant).
pub const PENDING_TTL_SECONDS: i64 = 30 * 60;

/// Length of a login token (alphanumeric, about 190 bits).
const LOGIN_TOKEN_LEN: usize = 32;

/// The query parameter that carries the login token back to the client.
pub const LOGIN_TOKEN_PARAM: &str = "loginToken";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUrlError {
    #[error("missing redirectUrl")]
    Missing,
    #[error("redirectUrl must be an absolute http or https URL")]
    Invalid,
}

/// Checks a client's `redirectUrl`: an absolute `http`/`https` URL with a
/// host and without credentials.
pub fn parse_redirect_url(raw: Option<&str>) -> Result<Url, RedirectUrlError> {
    let raw = raw.ok_or(RedirectUrlError::Missing)?;
    let url = Url::parse(raw).map_err(|_| RedirectUrlError::Invalid)?;
    let ok = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some_and(|h| !h.is_empty())
        && url.username().is_empty()
        && url.password().is_none();
    if ok {
        Ok(url)
    } else {
        Err(RedirectUrlError::Invalid)
    }
}

/// `redirect_url` with `loginToken=<token>` appended (replacing any
/// `loginToken` it already had).
pub fn redirect_with_token(redirect_url: &Url, token: &str) -> Url {
    let mut url = redirect_url.clone();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != LOGIN_TOKEN_PARAM)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.set_query(None);
    {
        let mut q = url.query_pairs_mut();
        q.extend_pairs(kept);
        q.append_pair(LOGIN_TOKEN_PARAM, token);
    }
    url
}

/// A fresh login token.
fn generate_login_token(rng: &mut ChaCha20Rng) -> String {
    rng.sample_iter(&Alphanumeric)
        .take(LOGIN_TOKEN_LEN)
        .map(char::from)
        .collect()
}

/// A started SSO login and its token (plaintext only here).
pub struct Started {
    pub login: CompatSsoLogin,
    pub login_token: String,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

/// Stores a pending SSO login for `redirect_url`.
pub async fn start(
    repos: &dyn RepositoryFactory,
    clock: &dyn Clock,
    rng: &mut ChaCha20Rng,
    redirect_url: &Url,
) -> Result<Started, StorageError> {
    let login_token = generate_login_token(rng);
    let mut repo = repos.write().await?;
    let login = repo
        .compat_sso_logins()
        .add(rng, clock, &token_hash(&login_token), redirect_url)
        .await?;
    repo.save().await?;
    Ok(Started { login, login_token })
}

/// Whether a login can still be approved: pending and not too old.
pub fn is_approvable(login: &CompatSsoLogin, clock: &dyn Clock) -> bool {
    login.stage == CompatSsoLoginStage::Pending
        && clock.now() - login.created_at <= Duration::seconds(PENDING_TTL_SECONDS)
}

#[derive(Debug, thiserror::Error)]
pub enum FulfilError {
    /// Approved already (maybe by a concurrent request), or expired.
    #[error("the login was already completed or has expired")]
    NotPending,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Records the user's approval (compare-and-set) in the caller's
/// transaction; the login token can then be exchanged.
pub async fn fulfil(
    repo: &mut BoxRepository,
    clock: &dyn Clock,
    login: CompatSsoLogin,
    browser_session: &BrowserSession,
) -> Result<CompatSsoLogin, FulfilError> {
    if !is_approvable(&login, clock) {
        return Err(FulfilError::NotPending);
    }
    repo.compat_sso_logins()
        .fulfill(clock, login, browser_session)
        .await
        .map_err(|e| match e {
            StorageError::ConcurrentUpdate(_) | StorageError::InvalidTransition(_) => {
                FulfilError::NotPending
            }
            other => FulfilError::Storage(other),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_urls_must_be_absolute_http() {
        assert!(parse_redirect_url(Some("https://app.example/cb?x=1")).is_ok());
        assert!(parse_redirect_url(Some("http://127.0.0.1:8080/")).is_ok());
        assert_eq!(parse_redirect_url(None), Err(RedirectUrlError::Missing));
        for bad in [
            "",
            "/relative",
            "app.example/cb",
            "javascript:alert(1)",
            "data:text/html,hi",
            "im.app://callback",
            "https://user:pw@app.example/",
            "file:///etc/passwd",
        ] {
            assert_eq!(
                parse_redirect_url(Some(bad)),
                Err(RedirectUrlError::Invalid),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_token_is_appended_once() {
        let u: Url = "https://app.example/cb?a=1&loginToken=old#frag"
            .parse()
            .unwrap();
        let r = redirect_with_token(&u, "NEW");
        assert_eq!(r.as_str(), "https://app.example/cb?a=1&loginToken=NEW#frag");
        let u: Url = "https://app.example/cb".parse().unwrap();
        assert_eq!(
            redirect_with_token(&u, "T").as_str(),
            "https://app.example/cb?loginToken=T"
        );
    }
}
