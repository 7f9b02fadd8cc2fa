//! The shape of bearer tokens: `<prefix>_<30 random base62>_<6 base62 MAC>`.
//!
//! The prefixes are MAS's (`mat_` access, `mar_` refresh, `mct_`/`mcr_` compat,
//! `mpt_` personal), so tools that look at prefixes keep working. Unlike MAS
//! (CRC32), the checksum is a keyed MAC (HMAC-SHA256, truncated): a forged or
//! mistyped token is rejected without a database query, and nobody without
//! the key can mint tokens that pass the check. 30 base62 characters carry
//! about 178 bits from the CSPRNG (RFC 6749 §10.10 asks for at least 128 bits
//! in practice; ASVS 7.2.3), and the alphabet stays within RFC 6749 A.17.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const RANDOM_LEN: usize = 30;
const MAC_LEN: usize = 6;

/// What a token is for, read from its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    AccessToken,
    RefreshToken,
    CompatAccessToken,
    CompatRefreshToken,
    PersonalAccessToken,
}

impl TokenType {
    pub fn prefix(self) -> &'static str {
        match self {
            Self::AccessToken => "mat",
            Self::RefreshToken => "mar",
            Self::CompatAccessToken => "mct",
            Self::CompatRefreshToken => "mcr",
            Self::PersonalAccessToken => "mpt",
        }
    }

    fn from_prefix(prefix: &str) -> Option<Self> {
        Some(match prefix {
            "mat" => Self::AccessToken,
            "mar" => Self::RefreshToken,
            "mct" => Self::CompatAccessToken,
            "mcr" => Self::CompatRefreshToken,
            "mpt" => Self::PersonalAccessToken,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenFormatError {
    #[error("the token does not have the expected shape")]
    Malformed,
    #[error("unknown token prefix")]
    UnknownPrefix,
    #[error("the token checksum does not match")]
    BadChecksum,
}

/// Mints and checks tokens with a secret MAC key (derived from
/// `secrets.encryption`).
#[derive(Clone)]
pub struct TokenFormat {
    key: [u8; 32],
}

impl std::fmt::Debug for TokenFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenFormat([redacted])")
    }
}

impl TokenFormat {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn mac(&self, body: &str) -> [u8; MAC_LEN] {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            unreachable!("HMAC accepts keys of any length")
        };
        mac.update(body.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        for (o, d) in out.iter_mut().zip(digest.iter()) {
            *o = ALPHABET[usize::from(*d) % ALPHABET.len()];
        }
        out
    }

    /// A fresh token of the given type.
    pub fn generate(&self, kind: TokenType, rng: &mut (dyn RngCore + Send)) -> String {
        let mut body = String::with_capacity(4 + RANDOM_LEN);
        body.push_str(kind.prefix());
        body.push('_');
        let mut produced = 0;
        let mut buf = [0u8; 64];
        while produced < RANDOM_LEN {
            rng.fill_bytes(&mut buf);
            // Rejection sampling keeps the characters uniform (248 = 4 × 62).
            for b in buf {
                if b < 248 && produced < RANDOM_LEN {
                    body.push(char::from(ALPHABET[usize::from(b) % 62]));
                    produced += 1;
                }
            }
        }
        let mac = self.mac(&body);
        body.push('_');
        body.extend(mac.iter().map(|c| char::from(*c)));
        body
    }

    /// Checks the shape, prefix and MAC; constant-time in the MAC comparison.
    pub fn verify(&self, token: &str) -> Result<TokenType, TokenFormatError> {
        let mut parts = token.split('_');
        let (Some(prefix), Some(random), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenFormatError::Malformed);
        };
        if random.len() != RANDOM_LEN
            || mac.len() != MAC_LEN
            || !random
                .bytes()
                .chain(mac.bytes())
                .all(|b| b.is_ascii_alphanumeric())
        {
            return Err(TokenFormatError::Malformed);
        }
        let kind = TokenType::from_prefix(prefix).ok_or(TokenFormatError::UnknownPrefix)?;
        let expected = self.mac(&token[..prefix.len() + 1 + RANDOM_LEN]);
        let diff = expected
            .iter()
            .zip(mac.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 {
            Ok(kind)
        } else {
            Err(TokenFormatError::BadChecksum)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rand::SeedableRng;

    use super::*;

    fn format() -> TokenFormat {
        TokenFormat::new([9; 32])
    }

    #[test]
    fn generated_tokens_verify_and_carry_their_type() {
        let f = format();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for kind in [
            TokenType::AccessToken,
            TokenType::RefreshToken,
            TokenType::CompatAccessToken,
            TokenType::CompatRefreshToken,
            TokenType::PersonalAccessToken,
        ] {
            let t = f.generate(kind, &mut rng);
            assert!(t.starts_with(&format!("{}_", kind.prefix())));
            assert_eq!(t.len(), 3 + 1 + RANDOM_LEN + 1 + MAC_LEN);
            assert_eq!(f.verify(&t), Ok(kind));
        }
    }

    #[test]
    fn any_single_character_change_is_rejected() {
        let f = format();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let t = f.generate(TokenType::AccessToken, &mut rng);
        for i in 4..t.len() {
            if t.as_bytes()[i] == b'_' {
                continue;
            }
            let mut bytes = t.clone().into_bytes();
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            let typo = String::from_utf8(bytes).unwrap();
            assert!(f.verify(&typo).is_err(), "typo at {i} accepted: {typo}");
        }
        // Same random part under another key: a forgery.
        assert_eq!(
            TokenFormat::new([8; 32]).verify(&t),
            Err(TokenFormatError::BadChecksum)
        );
        // Changing the prefix invalidates the MAC too.
        assert_eq!(
            f.verify(&t.replacen("mat", "mar", 1)),
            Err(TokenFormatError::BadChecksum)
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let f = format();
        for bad in [
            "",
            "mat",
            "mat__",
            "mat_abc_def",
            "x_y_z_w",
            "mat_ééééééééééééééééééééééééééééé_abcdef",
            "syt_abc",
        ] {
            assert!(f.verify(bad).is_err(), "{bad:?}");
        }
        let unknown = format!("xyz_{}_{}", "a".repeat(RANDOM_LEN), "b".repeat(MAC_LEN));
        assert_eq!(f.verify(&unknown), Err(TokenFormatError::UnknownPrefix));
    }

    #[test]
    fn no_collisions_and_uniform_alphabet_in_many_tokens() {
        // S31 asks for 1M in a benchmark; 100k here keeps the test fast.
        let f = format();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut seen = HashSet::new();
        let mut counts = [0u32; 62];
        for _ in 0..100_000 {
            let t = f.generate(TokenType::AccessToken, &mut rng);
            for b in t[4..4 + RANDOM_LEN].bytes() {
                let idx = ALPHABET.iter().position(|a| *a == b).unwrap();
                counts[idx] += 1;
            }
            assert!(seen.insert(t), "collision");
        }
        let expected = 100_000.0 * 30.0 / 62.0; // 30 = RANDOM_LEN
        for c in counts {
            assert!(
                (f64::from(c) - expected).abs() / expected < 0.05,
                "skewed alphabet: {c} vs {expected}"
            );
        }
    }
}
