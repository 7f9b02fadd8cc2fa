//! Scopes (RFC 6749 §3.3) and the Matrix ones (MSC2967), in both their
//! stable (`urn:matrix:client:…`) and unstable
//! (`urn:matrix:org.matrix.msc2967.client:…`) spellings. Clients get back the
//! spelling they asked for; Synapse accepts both.

use std::collections::BTreeSet;

pub const OPENID: &str = "openid";
pub const EMAIL: &str = "email";
pub const PROFILE: &str = "profile";
pub const MATRIX_API_STABLE: &str = "urn:matrix:client:api:*";
pub const MATRIX_API_UNSTABLE: &str = "urn:matrix:org.matrix.msc2967.client:api:*";
pub const MATRIX_DEVICE_STABLE_PREFIX: &str = "urn:matrix:client:device:";
pub const MATRIX_DEVICE_UNSTABLE_PREFIX: &str = "urn:matrix:org.matrix.msc2967.client:device:";
pub const SYNAPSE_ADMIN: &str = "urn:synapse:admin:*";
/// MAS's admin API scope.
pub const MAS_ADMIN: &str = "urn:mas:admin";

/// RFC 6749 §3.3 `scope-token = 1*NQCHAR` (%x21 / %x23-5B / %x5D-7E).
pub fn is_valid_token(t: &str) -> bool {
    !t.is_empty()
        && t.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("the scope is empty")]
    Empty,
    #[error("invalid scope token {0:?}")]
    InvalidToken(String),
    #[error("more than one Matrix device scope was requested")]
    SeveralDevices,
    #[error("invalid Matrix device id {0:?}")]
    InvalidDeviceId(String),
}

/// A parsed scope: a set of tokens, order-insensitive.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope(BTreeSet<String>);

impl Scope {
    /// Parses a space-separated scope (RFC 6749 §3.3).
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        let mut set = BTreeSet::new();
        for t in s.split(' ').filter(|t| !t.is_empty()) {
            if !is_valid_token(t) {
                return Err(ScopeError::InvalidToken(t.to_owned()));
            }
            set.insert(t.to_owned());
        }
        if set.is_empty() {
            return Err(ScopeError::Empty);
        }
        let scope = Self(set);
        let devices: Vec<_> = scope.0.iter().filter_map(|t| device_id_of(t)).collect();
        if devices.len() > 1 {
            return Err(ScopeError::SeveralDevices);
        }
        if let Some(d) = devices.first()
            && !is_valid_device_id(d)
        {
            return Err(ScopeError::InvalidDeviceId((*d).to_owned()));
        }
        Ok(scope)
    }

    pub fn contains(&self, token: &str) -> bool {
        self.0.contains(token)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// `self ⊆ other` (RFC 6749 §6: a refresh may only narrow the scope).
    pub fn is_subset(&self, other: &Self) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn remove(&mut self, token: &str) -> bool {
        self.0.remove(token)
    }

    /// The Matrix device id requested, if any.
    pub fn device_id(&self) -> Option<&str> {
        self.0.iter().find_map(|t| device_id_of(t))
    }

    /// Whether the scope grants the Matrix client-server API.
    pub fn has_matrix_api(&self) -> bool {
        self.contains(MATRIX_API_STABLE) || self.contains(MATRIX_API_UNSTABLE)
    }

    pub fn has_synapse_admin(&self) -> bool {
        self.contains(SYNAPSE_ADMIN)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for t in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(t)?;
            first = false;
        }
        Ok(())
    }
}

fn device_id_of(token: &str) -> Option<&str> {
    token
        .strip_prefix(MATRIX_DEVICE_STABLE_PREFIX)
        .or_else(|| token.strip_prefix(MATRIX_DEVICE_UNSTABLE_PREFIX))
}

/// MSC2967: device ids are at least 10 characters of the RFC 3986 unreserved
/// set in practice clients generate; we accept 1–255 unreserved characters.
pub fn is_valid_device_id(d: &str) -> bool {
    (1..=255).contains(&d.len())
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_scopes_in_both_spellings() {
        let s = Scope::parse("urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:org.matrix.msc2967.client:device:ABCDEFGHIJ").unwrap();
        assert!(s.has_matrix_api());
        assert_eq!(s.device_id(), Some("ABCDEFGHIJ"));
        let s = Scope::parse("openid  urn:matrix:client:api:* urn:matrix:client:device:XYZ123")
            .unwrap();
        assert!(s.has_matrix_api() && s.contains(OPENID));
        assert_eq!(s.device_id(), Some("XYZ123"));
        assert_eq!(
            s.to_string(),
            "openid urn:matrix:client:api:* urn:matrix:client:device:XYZ123"
        );
    }

    #[test]
    fn bad_scopes_are_refused() {
        assert_eq!(Scope::parse("   "), Err(ScopeError::Empty));
        assert!(matches!(
            Scope::parse("openid \"quoted\""),
            Err(ScopeError::InvalidToken(_))
        ));
        assert_eq!(
            Scope::parse("urn:matrix:client:device:A urn:matrix:client:device:B"),
            Err(ScopeError::SeveralDevices)
        );
        assert!(matches!(
            Scope::parse("urn:matrix:client:device:a/b"),
            Err(ScopeError::InvalidDeviceId(_))
        ));
    }

    #[test]
    fn subset_for_refresh_narrowing() {
        let granted = Scope::parse("openid email urn:matrix:client:api:*").unwrap();
        assert!(Scope::parse("openid").unwrap().is_subset(&granted));
        assert!(
            !Scope::parse("openid urn:synapse:admin:*")
                .unwrap()
                .is_subset(&granted)
        );
    }
}
