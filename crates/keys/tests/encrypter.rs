//! The AEAD encrypter.

// Test helpers outside #[test] functions panic on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;
use vestibule_keys::{Encrypter, KeyError};

const KEY: [u8; 32] = [7; 32];

fn rng() -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(3)
}

#[test]
fn round_trip() {
    let enc = Encrypter::new(&KEY);
    let mut rng = rng();
    for plaintext in [&b""[..], b"x", &[0xab; 1000]] {
        let data = enc.encrypt(&mut rng, b"aad", plaintext).unwrap();
        assert_eq!(data.len(), 24 + plaintext.len() + 16);
        assert_eq!(enc.decrypt(b"aad", &data).unwrap(), plaintext);

        let s = enc
            .encrypt_to_string(&mut rng, b"cookie", plaintext)
            .unwrap();
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(enc.decrypt_str(b"cookie", &s).unwrap(), plaintext);
    }
}

#[test]
fn nonces_are_fresh() {
    let enc = Encrypter::new(&KEY);
    let mut rng = rng();
    let a = enc.encrypt(&mut rng, b"", b"same").unwrap();
    let b = enc.encrypt(&mut rng, b"", b"same").unwrap();
    assert_ne!(a, b);
    assert_ne!(a[..24], b[..24]);
}

#[test]
fn tampering_wrong_aad_and_wrong_key_fail() {
    let enc = Encrypter::new(&KEY);
    let data = enc
        .encrypt(&mut rng(), b"users.secret", b"hunter2")
        .unwrap();
    for i in 0..data.len() {
        let mut tampered = data.clone();
        tampered[i] ^= 0x01;
        assert_eq!(
            enc.decrypt(b"users.secret", &tampered),
            Err(KeyError::Decryption),
            "byte {i}"
        );
    }
    assert_eq!(
        enc.decrypt(b"users.other", &data),
        Err(KeyError::Decryption)
    );
    assert_eq!(
        Encrypter::new(&[8; 32]).decrypt(b"users.secret", &data),
        Err(KeyError::Decryption)
    );
    for len in 0..data.len() {
        assert_eq!(
            enc.decrypt(b"users.secret", &data[..len]),
            Err(KeyError::Decryption)
        );
    }
    assert_eq!(
        enc.decrypt_str(b"", "not base64!"),
        Err(KeyError::InvalidBase64)
    );
    assert_eq!(enc.decrypt_str(b"", ""), Err(KeyError::Decryption));
}

#[test]
fn debug_is_redacted() {
    let debug = format!("{:?}", Encrypter::new(&[0x42; 32]));
    assert!(debug.contains("[redacted]"));
    assert!(!debug.contains("66")); // 0x42 as a decimal byte
    assert!(!debug.contains("42"));
}

#[test]
fn derive_is_hkdf_expand() {
    let key: [u8; 32] = std::array::from_fn(|i| u8::try_from(i).unwrap());
    let enc = Encrypter::new(&key);
    // python3 -c "import hmac,hashlib; print(hmac.new(bytes(range(32)),
    //   b'token-checksum\x01', hashlib.sha256).hexdigest())"
    assert_eq!(
        hex::encode(enc.derive("token-checksum")),
        "ddc9996eb9227d862fd627444a564746ebd2ece34bb80ba63b3d30a69baf52f2"
    );
    assert_ne!(enc.derive("a"), enc.derive("b"));
    assert_ne!(enc.derive("a"), Encrypter::new(&KEY).derive("a"));
}

#[test]
fn reads_and_writes_mas_format() {
    let key: [u8; 32] = std::array::from_fn(|i| u8::try_from(i).unwrap());
    let enc = Encrypter::new(&key);
    // Produced with Python `cryptography`:
    //   ChaCha20Poly1305(bytes(range(32))).encrypt(bytes(range(100, 112)),
    //       b"upstream client secret", None), prefixed with the nonce, base64.
    let from_mas = "ZGVmZ2hpamtsbW5vQWHIvurAFz/bvXkWl+esswOj8Ub6JDY4ZIvJIbBHw3ySMKPpHbE=";
    assert_eq!(
        enc.decrypt_mas_string(from_mas).unwrap(),
        b"upstream client secret"
    );
    assert_eq!(
        Encrypter::new(&KEY).decrypt_mas_string(from_mas),
        Err(KeyError::Decryption)
    );
    let ours = enc.encrypt_mas_string(&mut rng(), b"secret").unwrap();
    assert_eq!(enc.decrypt_mas_string(&ours).unwrap(), b"secret");
    assert_eq!(enc.decrypt_mas_string("AAAA"), Err(KeyError::Decryption));
}
