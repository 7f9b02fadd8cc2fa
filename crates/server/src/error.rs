//! Protocol-shaped errors shared by the OAuth endpoints.
//!
//! Each endpoint has its own error enum that maps into [`OAuthError`]; this
//! type only knows how to render RFC 6749 §5.2 bodies.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use vestibule_proto::errors::OAuthErrorBody;
use vestibule_storage::StorageError;

/// Error codes from RFC 6749 §4.1.2.1 and §5.2, OpenID Connect Core §3.1.2.6,
/// RFC 7591 §3.2.2, RFC 7009 §2.2.1 and RFC 8628 §3.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// RFC 6749 §5.2: malformed, missing or repeated parameter.
    InvalidRequest,
    /// RFC 6749 §5.2: client authentication failed (401 + WWW-Authenticate).
    InvalidClient,
    /// RFC 6749 §5.2: the grant (code, refresh token…) is invalid, expired,
    /// revoked, or was issued to another client or redirect URI.
    InvalidGrant,
    /// RFC 6749 §5.2: the client may not use this grant type.
    UnauthorizedClient,
    /// RFC 6749 §5.2.
    UnsupportedGrantType,
    /// RFC 6749 §5.2.
    InvalidScope,
    /// RFC 6749 §4.1.2.1.
    AccessDenied,
    /// RFC 6749 §4.1.2.1.
    UnsupportedResponseType,
    /// RFC 6749 §4.1.2.1.
    ServerError,
    /// RFC 6749 §4.1.2.1.
    TemporarilyUnavailable,
    /// OpenID Connect Core §3.1.2.6.
    LoginRequired,
    /// OpenID Connect Core §3.1.2.6.
    ConsentRequired,
    /// OpenID Connect Core §3.1.2.6.
    InteractionRequired,
    /// RFC 7591 §3.2.2.
    InvalidRedirectUri,
    /// RFC 7591 §3.2.2.
    InvalidClientMetadata,
    /// RFC 7009 §2.2.1.
    UnsupportedTokenType,
    /// RFC 8628 §3.5.
    AuthorizationPending,
    /// RFC 8628 §3.5.
    SlowDown,
    /// RFC 8628 §3.5.
    ExpiredToken,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::AccessDenied => "access_denied",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::LoginRequired => "login_required",
            Self::ConsentRequired => "consent_required",
            Self::InteractionRequired => "interaction_required",
            Self::InvalidRedirectUri => "invalid_redirect_uri",
            Self::InvalidClientMetadata => "invalid_client_metadata",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::AuthorizationPending => "authorization_pending",
            Self::SlowDown => "slow_down",
            Self::ExpiredToken => "expired_token",
        }
    }

    /// The HTTP status for a JSON error response of this code (RFC 6749
    /// §5.2: 400 unless said otherwise; RFC 8628 §3.5 `access_denied` from
    /// the token endpoint is a 400 too).
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidClient => StatusCode::UNAUTHORIZED,
            Self::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A JSON OAuth error response (RFC 6749 §5.2), never cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: Option<String>,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: Some(description.into()),
        }
    }

    pub fn bare(code: ErrorCode) -> Self {
        Self {
            code,
            description: None,
        }
    }

    /// A storage failure: 503 when the database is unavailable (retryable),
    /// else a generic 500. The details are logged here, once.
    pub fn internal(e: &(dyn std::error::Error + 'static)) -> Self {
        if let Some(StorageError::Unavailable(_)) = e.downcast_ref::<StorageError>() {
            tracing::warn!(error = %e, "database unavailable");
            return Self::new(
                ErrorCode::TemporarilyUnavailable,
                "the service is temporarily unavailable",
            );
        }
        tracing::error!(error = %e, source = ?e.source(), "internal error");
        Self::new(ErrorCode::ServerError, "internal server error")
    }
}

impl From<StorageError> for OAuthError {
    fn from(e: StorageError) -> Self {
        Self::internal(&e)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let mut res = (
            status,
            Json(OAuthErrorBody {
                error: self.code.as_str().to_owned(),
                error_description: self.description,
            }),
        )
            .into_response();
        let h = res.headers_mut();
        // RFC 6749 §5.1: token responses (and their errors) are not cached.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if self.code == ErrorCode::InvalidClient {
            // RFC 6749 §5.2: 401 with the scheme the client should use.
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"vestibule\""),
            );
        }
        if self.code == ErrorCode::TemporarilyUnavailable {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        res
    }
}
