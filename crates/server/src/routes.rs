//! Typed routes: one type per endpoint. The same constant registers the route
//! and builds its URL, so no path string appears twice.

use url::Url;

/// An endpoint of ours.
pub trait Route {
    /// The path relative to the listener's prefix (and to `public_base`).
    const PATH: &'static str;
}

macro_rules! routes {
    ($($(#[$doc:meta])* $name:ident => $path:literal),* $(,)?) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy)]
            pub struct $name;
            impl Route for $name {
                const PATH: &'static str = $path;
            }
        )*
    };
}

routes! {
    /// Liveness and readiness (checks the database).
    Health => "/health",
    /// OpenID Connect Discovery 1.0 §4 / RFC 8414 §3.
    OidcConfiguration => "/.well-known/openid-configuration",
    /// RFC 7517 JWK Set of our signing keys (MAS path).
    Jwks => "/oauth2/keys.json",
    /// RFC 6749 §3.1 authorization endpoint (GET and POST).
    Authorize => "/authorize",
    /// RFC 6749 §3.2 token endpoint.
    Token => "/oauth2/token",
    /// RFC 8628 §3.1 device authorization endpoint (MAS path).
    DeviceAuthorization => "/oauth2/device",
    /// RFC 8628 §3.3 verification page where the user enters the code (MAS path).
    Link => "/link",
    /// The approval page of a device code grant (MAS path).
    DeviceConsent => "/device/{grant_id}",
    /// RFC 7662 token introspection.
    Introspect => "/oauth2/introspect",
    /// RFC 7009 token revocation.
    Revoke => "/oauth2/revoke",
    /// RFC 7591 dynamic client registration (MSC2966 rules).
    Registration => "/oauth2/registration",
    /// OpenID Connect Core §5.3 UserInfo.
    Userinfo => "/oauth2/userinfo",
    /// The login page.
    Login => "/login",
    /// The logout page / action.
    Logout => "/logout",
    /// The registration page (`prompt=create`).
    Register => "/register",
    /// The consent page of an authorization grant: `/consent/{grant_id}`.
    Consent => "/consent/{grant_id}",
    /// The account page (MSC2965 `account_management_uri`).
    Account => "/account/",
    /// Static assets, content-hashed: `/assets/{file}`.
    Assets => "/assets/{*path}",
    /// Matrix C-S API `GET`/`POST /login` (`v3` and `r0`), MSC3861 compat.
    CompatLogin => "/_matrix/client/{version}/login",
    /// Matrix C-S API `POST /logout`.
    CompatLogout => "/_matrix/client/{version}/logout",
    /// Matrix C-S API `POST /logout/all`.
    CompatLogoutAll => "/_matrix/client/{version}/logout/all",
    /// Matrix C-S API `POST /refresh`.
    CompatRefresh => "/_matrix/client/{version}/refresh",
    /// Matrix C-S API `GET /login/sso/redirect?redirectUrl=`.
    CompatLoginSsoRedirect => "/_matrix/client/{version}/login/sso/redirect",
    /// Matrix C-S API `GET /login/sso/redirect/{idpId}`.
    CompatLoginSsoRedirectIdp => "/_matrix/client/{version}/login/sso/redirect/{idp}",
    /// The page where a signed-in user lets a legacy client log in (MAS path).
    CompatLoginSsoComplete => "/complete-compat-sso/{id}",
    /// Starts a login through an upstream provider (MAS path).
    UpstreamAuthorize => "/upstream/authorize/{provider_id}",
    /// The redirect URI registered at the upstream provider (MAS path; the
    /// provider's admin has this URL, so it never changes).
    UpstreamCallback => "/upstream/callback/{provider_id}",
    /// After the callback: sign in, register or link (MAS path).
    UpstreamLink => "/upstream/link/{session_id}",
    /// OpenID Connect Back-Channel Logout 1.0 receiver (MAS path).
    UpstreamBackchannelLogout => "/upstream/backchannel-logout/{provider_id}",
}

/// Builds absolute URLs from `http.public_base`, so every link works behind a
/// reverse proxy and under a path prefix.
#[derive(Debug, Clone)]
pub struct UrlBuilder {
    base: Url,
    issuer: Url,
}

impl UrlBuilder {
    pub fn new(public_base: &Url, issuer: Url) -> Self {
        let mut base = public_base.clone();
        // `Url::join` drops the last path segment unless it ends with '/'.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Self { base, issuer }
    }

    pub fn issuer(&self) -> &Url {
        &self.issuer
    }

    pub fn public_base(&self) -> &Url {
        &self.base
    }

    /// The absolute URL of a route.
    pub fn absolute<R: Route>(&self) -> Url {
        self.join(R::PATH)
    }

    /// The absolute URL of a path below `public_base`.
    pub fn join(&self, path: &str) -> Url {
        self.base
            .join(path.trim_start_matches('/'))
            .unwrap_or_else(|_| self.base.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_the_public_base_path() {
        let b = UrlBuilder::new(
            &"https://example.org/auth".parse().unwrap(),
            "https://example.org/auth/".parse().unwrap(),
        );
        assert_eq!(
            b.absolute::<Jwks>().as_str(),
            "https://example.org/auth/oauth2/keys.json"
        );
        let b = UrlBuilder::new(
            &"http://127.0.0.1:8080/".parse().unwrap(),
            "http://127.0.0.1:8080/".parse().unwrap(),
        );
        assert_eq!(
            b.absolute::<OidcConfiguration>().as_str(),
            "http://127.0.0.1:8080/.well-known/openid-configuration"
        );
    }
}
