//! Symmetric authenticated encryption keyed by `secrets.encryption`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::{CryptoRng, RngCore};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::KeyError;

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const MAS_NONCE_LEN: usize = 12;

/// XChaCha20-Poly1305 with a random 24-byte nonce per message, for secrets
/// stored in the database and for cookies.
///
/// The 192-bit nonce makes random nonces safe for any realistic number of
/// messages under one key. Output layout: `nonce (24) || ciphertext || tag
/// (16)`. The associated data (`aad`) is authenticated but not stored: pass
/// the same bytes to decrypt (e.g. the table and column, or the cookie name),
/// so that a ciphertext cannot be moved to another context.
#[derive(Clone)]
pub struct Encrypter {
    key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for Encrypter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encrypter")
            .field("key", &"[redacted]")
            .finish()
    }
}

impl Encrypter {
    /// An encrypter for the 32-byte key (MAS `secrets.encryption`).
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            key: Zeroizing::new(*key),
        }
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.key.as_ref().into())
    }

    /// Encrypt `plaintext`, authenticating `aad`; returns
    /// `nonce || ciphertext || tag`.
    pub fn encrypt(
        &self,
        rng: &mut (impl CryptoRng + RngCore),
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| KeyError::Encryption)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Decrypt the output of [`Encrypter::encrypt`]. Any failure (wrong key,
    /// wrong `aad`, tampering, truncation) is [`KeyError::Decryption`].
    pub fn decrypt(&self, aad: &[u8], data: &[u8]) -> Result<Vec<u8>, KeyError> {
        if data.len() < NONCE_LEN + TAG_LEN {
            return Err(KeyError::Decryption);
        }
        let (nonce, ciphertext) = data.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| KeyError::Decryption)
    }

    /// [`Encrypter::encrypt`], encoded as base64url without padding (safe in
    /// cookies and URLs).
    pub fn encrypt_to_string(
        &self,
        rng: &mut (impl CryptoRng + RngCore),
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<String, KeyError> {
        Ok(URL_SAFE_NO_PAD.encode(self.encrypt(rng, aad, plaintext)?))
    }

    /// Decrypt the output of [`Encrypter::encrypt_to_string`].
    pub fn decrypt_str(&self, aad: &[u8], s: &str) -> Result<Vec<u8>, KeyError> {
        let data = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| KeyError::InvalidBase64)?;
        self.decrypt(aad, &data)
    }

    /// Decrypt a value written by MAS's own `Encrypter::encrypt_to_string`
    /// (e.g. an upstream provider's `client_secret` in a database migrated
    /// from MAS): ChaCha20-Poly1305 with a 12-byte nonce, no associated data,
    /// `base64(nonce || ciphertext || tag)` with the standard padded alphabet.
    pub fn decrypt_mas_string(&self, s: &str) -> Result<Vec<u8>, KeyError> {
        let data = STANDARD.decode(s).map_err(|_| KeyError::InvalidBase64)?;
        if data.len() < MAS_NONCE_LEN + TAG_LEN {
            return Err(KeyError::Decryption);
        }
        let (nonce, ciphertext) = data.split_at(MAS_NONCE_LEN);
        ChaCha20Poly1305::new(self.key.as_ref().into())
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| KeyError::Decryption)
    }

    /// Encrypt in MAS's own format (see [`Encrypter::decrypt_mas_string`]),
    /// for values MAS itself must be able to read back.
    pub fn encrypt_mas_string(
        &self,
        rng: &mut (impl CryptoRng + RngCore),
        plaintext: &[u8],
    ) -> Result<String, KeyError> {
        let mut nonce = [0u8; MAS_NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let ciphertext = ChaCha20Poly1305::new(self.key.as_ref().into())
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .map_err(|_| KeyError::Encryption)?;
        Ok(STANDARD.encode([nonce.as_slice(), &ciphertext].concat()))
    }

    /// Derive an independent 32-byte subkey for another purpose (e.g. a MAC
    /// key for token checksums).
    ///
    /// This is HKDF-Expand (RFC 5869 §2.3) with the encryption key as the
    /// pseudorandom key, `info = label` and `L = 32`, which is
    /// `HMAC-SHA256(key, label || 0x01)`. Distinct labels give unrelated keys;
    /// the same label always gives the same key.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(label.as_bytes());
        mac.update(&[1]);
        mac.finalize().into_bytes().into()
    }
}
