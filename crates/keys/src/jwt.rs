//! Compact JWS serialisation helpers.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::KeyError;

/// base64url without padding (RFC 7515 §2).
pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decode base64url without padding, as JWS requires.
pub(crate) fn b64_decode(s: &str) -> Result<Vec<u8>, KeyError> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| KeyError::InvalidBase64)
}

/// `base64url(header) || '.' || base64url(payload)`: the JWS signing input.
pub(crate) fn signing_input(
    header: &serde_json::Value,
    claims: &serde_json::Value,
) -> Result<String, KeyError> {
    let header = serde_json::to_vec(header).map_err(|e| KeyError::Encoding(e.to_string()))?;
    let claims = serde_json::to_vec(claims).map_err(|e| KeyError::Encoding(e.to_string()))?;
    Ok(format!("{}.{}", b64(&header), b64(&claims)))
}

/// The parts of a compact JWS.
pub(crate) struct ParsedJws<'a> {
    pub header: serde_json::Map<String, serde_json::Value>,
    pub signing_input: &'a str,
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Split and decode a compact JWS without verifying it.
pub(crate) fn parse(token: &str) -> Result<ParsedJws<'_>, KeyError> {
    let (signing_input, signature) = token
        .rsplit_once('.')
        .ok_or(KeyError::InvalidJwt("not a compact JWS"))?;
    let (header, payload) = signing_input
        .split_once('.')
        .ok_or(KeyError::InvalidJwt("not a compact JWS"))?;
    if payload.contains('.') {
        return Err(KeyError::InvalidJwt("not a compact JWS"));
    }
    let header = b64_decode(header).map_err(|_| KeyError::InvalidJwt("header is not base64url"))?;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|_| KeyError::InvalidJwt("header is not a JSON object"))?;
    Ok(ParsedJws {
        header,
        signing_input,
        payload: b64_decode(payload)
            .map_err(|_| KeyError::InvalidJwt("payload is not base64url"))?,
        signature: b64_decode(signature)
            .map_err(|_| KeyError::InvalidJwt("signature is not base64url"))?,
    })
}
