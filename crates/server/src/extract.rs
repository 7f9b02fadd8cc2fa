//! Request parsing that refuses repeated parameters (RFC 6749 §3.1: "Request
//! and response parameters MUST NOT be included more than once").

use axum::{
    extract::{FromRequest, Request},
    http::header,
};
use serde::de::DeserializeOwned;

use crate::error::{ErrorCode, OAuthError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error("parameter `{0}` is repeated")]
    Duplicate(String),
    #[error("invalid parameters: {0}")]
    Invalid(String),
}

/// Parses `application/x-www-form-urlencoded` (a body or a query string),
/// refusing any parameter name that appears twice.
pub fn parse_unique<T: DeserializeOwned>(input: &[u8]) -> Result<T, ParamsError> {
    let mut seen = std::collections::HashSet::new();
    for (name, _) in form_urlencoded_pairs(input) {
        if !seen.insert(name.clone()) {
            return Err(ParamsError::Duplicate(name));
        }
    }
    serde_urlencoded::from_bytes(input).map_err(|e| ParamsError::Invalid(e.to_string()))
}

fn form_urlencoded_pairs(input: &[u8]) -> impl Iterator<Item = (String, String)> + '_ {
    url::form_urlencoded::parse(input).map(|(k, v)| (k.into_owned(), v.into_owned()))
}

/// Upper bound for an OAuth form body (RFC 9700 §4 has no number; 64 KiB is
/// far above any legitimate request and bounds parsing work).
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// A form body for the JSON OAuth endpoints: rejections are RFC 6749 §5.2
/// `invalid_request` bodies.
#[derive(Debug, Clone)]
pub struct OAuthForm<T>(pub T);

impl<S, T> FromRequest<S> for OAuthForm<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = OAuthError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if !is_form {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "expected an application/x-www-form-urlencoded body",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| OAuthError::new(ErrorCode::InvalidRequest, e.body_text()))?;
        if bytes.len() > MAX_FORM_BYTES {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "request body too large",
            ));
        }
        parse_unique(&bytes)
            .map(OAuthForm)
            .map_err(|e| OAuthError::new(ErrorCode::InvalidRequest, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct P {
        a: String,
        b: Option<String>,
    }

    #[test]
    fn duplicates_are_refused_and_unknown_params_ignored() {
        assert_eq!(
            parse_unique::<P>(b"a=1&b=2&c=3").unwrap(),
            P {
                a: "1".into(),
                b: Some("2".into())
            }
        );
        assert_eq!(
            parse_unique::<P>(b"a=1&a=2"),
            Err(ParamsError::Duplicate("a".into()))
        );
        assert_eq!(
            parse_unique::<P>(b"a=1&c=1&c=2"),
            Err(ParamsError::Duplicate("c".into()))
        );
        assert!(matches!(
            parse_unique::<P>(b"b=1"),
            Err(ParamsError::Invalid(_))
        ));
    }
}
