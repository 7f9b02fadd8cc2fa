//! RFC 7636 PKCE. Only `S256` is accepted (RFC 9700 §2.1.1: `plain` gives
//! no protection against a leaked authorization request).

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// RFC 7636 §4.1: 43–128 characters of `[A-Z] [a-z] [0-9] - . _ ~`.
pub fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// A challenge as sent at `/authorize`: for S256, the base64url (no padding)
/// SHA-256 of a verifier, so exactly 43 characters of the base64url alphabet.
pub fn is_valid_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// RFC 7636 §4.2 `S256`: `BASE64URL(SHA256(ASCII(code_verifier)))`.
pub fn s256_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// RFC 7636 §4.6: does the verifier match the challenge stored with the grant?
/// The comparison is constant-time.
pub fn verify(method: &str, challenge: &str, verifier: &str) -> bool {
    if method != "S256" || !is_valid_verifier(verifier) {
        return false;
    }
    let computed = s256_challenge(verifier);
    computed.len() == challenge.len()
        && computed
            .bytes()
            .zip(challenge.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_example() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            s256_challenge(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(verify(
            "S256",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            verifier
        ));
        assert!(is_valid_s256_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }

    #[test]
    fn wrong_or_malformed_verifiers_fail() {
        let challenge = s256_challenge(&"a".repeat(43));
        assert!(verify("S256", &challenge, &"a".repeat(43)));
        assert!(
            !verify("S256", &challenge, &"b".repeat(43)),
            "wrong verifier"
        );
        assert!(
            !verify("plain", &"a".repeat(43), &"a".repeat(43)),
            "plain is refused"
        );
        assert!(!is_valid_verifier(&"a".repeat(42)), "too short");
        assert!(!is_valid_verifier(&"a".repeat(129)), "too long");
        assert!(is_valid_verifier(&"a".repeat(128)));
        assert!(
            !is_valid_verifier(&format!("{}+", "a".repeat(43))),
            "illegal character"
        );
        assert!(!is_valid_s256_challenge("short"));
    }
}
