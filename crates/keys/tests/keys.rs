//! Loading, JWK/JWKS, thumbprints and JWT signing, checked against OpenSSL
//! fixtures and the underlying crates' verifiers.

// Test helpers outside #[test] functions panic on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use vestibule_keys::{
    KeyError, Keystore, PrivateKey, generate_ec_p256, generate_ec_p384, generate_ed25519,
    generate_rsa,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture_str(name: &str) -> String {
    String::from_utf8(fixture(name)).unwrap()
}

fn load(name: &str) -> PrivateKey {
    PrivateKey::from_pem(&fixture_str(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// RSA key generation is slow; do it once for the whole test binary.
fn generated_rsa() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| generate_rsa(&mut ChaCha8Rng::seed_from_u64(1), 2048).unwrap())
}

fn rng() -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(42)
}

// Computed independently of this crate by tests/fixtures/thumbprints.sh
// (OpenSSL extracts the public key, Python builds the RFC 7638 JSON).
const RSA_THUMBPRINT: &str = "mjA800TyUfsOIFq_0vnyQLsZyUDCV1zPd8SkXA8SRbE";
const P256_THUMBPRINT: &str = "nOjBAEFlROXIHss4xHDuTsqxQD7YRx0VWLpw1oOqwnc";
const P384_THUMBPRINT: &str = "x1w-7-vn12RsQEPWkbEh9nJ2bIMS1fB8kbZoMrL5-l4";
const ED25519_THUMBPRINT: &str = "sHuclszjoqrH90Gu5cikJ2x9tvijJdvyYTELX4OzDt4";

#[test]
fn loads_every_pem_format_with_independently_computed_thumbprints() {
    let cases = [
        ("rsa-pkcs1.pem", "RSA", RSA_THUMBPRINT),
        ("rsa-pkcs8.pem", "RSA", RSA_THUMBPRINT),
        ("ec-p256-sec1.pem", "P-256", P256_THUMBPRINT),
        ("ec-p256-pkcs8.pem", "P-256", P256_THUMBPRINT),
        ("ec-p256-with-params.pem", "P-256", ""),
        ("ec-p384-sec1.pem", "P-384", P384_THUMBPRINT),
        ("ec-p384-pkcs8.pem", "P-384", P384_THUMBPRINT),
        ("ed25519-pkcs8.pem", "Ed25519", ED25519_THUMBPRINT),
    ];
    for (name, kind, thumbprint) in cases {
        let key = load(name);
        let variant_ok = matches!(
            (&key, kind),
            (PrivateKey::Rsa(_), "RSA")
                | (PrivateKey::EcP256(_), "P-256")
                | (PrivateKey::EcP384(_), "P-384")
                | (PrivateKey::Ed25519(_), "Ed25519")
        );
        assert!(variant_ok, "{name} loaded as {key:?}");
        if !thumbprint.is_empty() {
            assert_eq!(key.thumbprint(), thumbprint, "{name}");
        }
    }
}

#[test]
fn loads_der_and_bytes() {
    let rsa = PrivateKey::from_der(&fixture("rsa-pkcs1.der")).unwrap();
    assert_eq!(rsa.thumbprint(), RSA_THUMBPRINT);
    let p384 = PrivateKey::from_der(&fixture("ec-p384-pkcs8.der")).unwrap();
    assert_eq!(p384.thumbprint(), P384_THUMBPRINT);

    // from_bytes: PEM or DER, as a key_file may hold either.
    assert_eq!(
        PrivateKey::from_bytes(&fixture("ec-p384-pkcs8.der"))
            .unwrap()
            .thumbprint(),
        P384_THUMBPRINT
    );
    assert_eq!(
        PrivateKey::from_bytes(&fixture("ec-p256-sec1.pem"))
            .unwrap()
            .thumbprint(),
        P256_THUMBPRINT
    );

    // DER of SEC1 and PKCS#8 produced by our own export, re-read as DER.
    let ed = load("ed25519-pkcs8.pem");
    let pem = ed.to_pkcs8_pem().unwrap();
    let (_, der) = pem_decode(&pem);
    assert_eq!(
        PrivateKey::from_der(&der).unwrap().thumbprint(),
        ED25519_THUMBPRINT
    );
}

fn pem_decode(pem: &str) -> (String, Vec<u8>) {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let label = pem.lines().next().unwrap().to_owned();
    (
        label,
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap(),
    )
}

#[test]
fn crlf_pem_loads() {
    let pem = fixture_str("ec-p256-pkcs8.pem").replace('\n', "\r\n");
    assert_eq!(
        PrivateKey::from_pem(&pem).unwrap().thumbprint(),
        P256_THUMBPRINT
    );
}

#[test]
fn rejects_what_it_cannot_use() {
    assert_eq!(
        PrivateKey::from_pem(&fixture_str("rsa-1024-pkcs1.pem")).unwrap_err(),
        KeyError::RsaKeyTooSmall(1024)
    );
    assert!(matches!(
        generate_rsa(&mut rng(), 1024),
        Err(KeyError::RsaKeyTooSmall(1024))
    ));
    for name in ["ec-secp256k1-sec1.pem", "ec-secp256k1-pkcs8.pem"] {
        let err = PrivateKey::from_pem(&fixture_str(name)).unwrap_err();
        assert!(
            matches!(&err, KeyError::UnsupportedCurve(c) if c.contains("secp256k1")),
            "{name}: {err}"
        );
        assert!(err.to_string().starts_with("unsupported curve"));
    }
    assert_eq!(
        PrivateKey::from_pem(&fixture_str("ec-p256-encrypted.pem")).unwrap_err(),
        KeyError::EncryptedNotSupported
    );
    assert_eq!(
        PrivateKey::from_pem_encrypted(&fixture_str("ec-p256-encrypted.pem"), b"hunter2")
            .unwrap_err(),
        KeyError::EncryptedNotSupported
    );
    let (_, encrypted_der) = pem_decode(&fixture_str("ec-p256-encrypted.pem"));
    assert_eq!(
        PrivateKey::from_der(&encrypted_der).unwrap_err(),
        KeyError::EncryptedNotSupported
    );
    let public_pem = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";
    assert_eq!(
        PrivateKey::from_pem(public_pem).unwrap_err(),
        KeyError::UnsupportedPemLabel("PUBLIC KEY".to_owned())
    );
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let pem = fixture_str("rsa-pkcs8.pem");
    let der = fixture("rsa-pkcs1.der");
    let mut inputs: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"hello".to_vec(),
        vec![0x30],
        vec![0x30, 0x82, 0xff, 0xff],
        vec![0xff; 64],
        b"-----BEGIN PRIVATE KEY-----\n".to_vec(),
        b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n".to_vec(),
        b"-----BEGIN EC PRIVATE KEY-----\nMAA=\n-----END EC PRIVATE KEY-----\n".to_vec(),
        b"-----BEGIN RSA PRIVATE KEY-----\nMAA=\n-----END RSA PRIVATE KEY-----\n".to_vec(),
        b"-----BEGIN X".to_vec(),
        pem.as_bytes()[..pem.len() / 2].to_vec(),
        der[..der.len() / 2].to_vec(),
    ];
    // Every truncation and a bit flip in each position of a short key.
    let ec = fixture("ec-p384-pkcs8.der");
    for i in 0..ec.len() {
        inputs.push(ec[..i].to_vec());
        let mut flipped = ec.clone();
        flipped[i] ^= 0x55;
        inputs.push(flipped);
    }
    for input in &inputs {
        // A flipped bit inside the private scalar can still be a valid key;
        // everything else must fail cleanly.
        if let Ok(key) = PrivateKey::from_bytes(input) {
            assert!(matches!(key, PrivateKey::EcP384(_)));
        }
    }
    assert_eq!(PrivateKey::from_der(b"").unwrap_err(), KeyError::NotAKey);
    assert_eq!(
        PrivateKey::from_pem("hello").unwrap_err(),
        KeyError::NotAKey
    );
    assert_eq!(
        PrivateKey::from_bytes(&[0xff; 64]).unwrap_err(),
        KeyError::NotAKey
    );
    assert_eq!(
        PrivateKey::from_bytes(&[0xff; 64]).unwrap_err().to_string(),
        "not a PEM or DER private key"
    );
}

#[test]
fn generated_keys_round_trip_through_pkcs8_pem() {
    let mut rng = rng();
    let keys = [
        generated_rsa().clone(),
        generate_ec_p256(&mut rng),
        generate_ec_p384(&mut rng),
        generate_ed25519(&mut rng),
    ];
    let mut thumbprints = Vec::new();
    for key in keys {
        let pem = key.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        let reloaded = PrivateKey::from_pem(&pem).unwrap();
        assert_eq!(reloaded.thumbprint(), key.thumbprint());
        assert_eq!(reloaded.public_jwk(), key.public_jwk());
        assert_eq!(
            std::mem::discriminant(&reloaded),
            std::mem::discriminant(&key)
        );
        thumbprints.push(key.thumbprint());
    }
    thumbprints.sort();
    thumbprints.dedup();
    assert_eq!(thumbprints.len(), 4);
}

#[test]
fn public_jwk_shapes() {
    let rsa = load("rsa-pkcs8.pem").public_jwk();
    assert_eq!(rsa["kty"], "RSA");
    assert_eq!(rsa["e"], "AQAB");
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(rsa["n"].as_str().unwrap())
            .unwrap()
            .len(),
        256
    );

    for (name, crv, len) in [
        ("ec-p256-sec1.pem", "P-256", 32),
        ("ec-p384-sec1.pem", "P-384", 48),
    ] {
        let jwk = load(name).public_jwk();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], crv);
        for member in ["x", "y"] {
            let bytes = URL_SAFE_NO_PAD
                .decode(jwk[member].as_str().unwrap())
                .unwrap();
            assert_eq!(bytes.len(), len, "{name} {member}");
        }
    }

    let ed = load("ed25519-pkcs8.pem").public_jwk();
    assert_eq!(ed["kty"], "OKP");
    assert_eq!(ed["crv"], "Ed25519");
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(ed["x"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    assert!(ed.get("y").is_none());
}

#[test]
fn algorithms() {
    let rsa = load("rsa-pkcs1.pem");
    assert_eq!(rsa.default_algorithm(), "RS256");
    assert_eq!(
        rsa.algorithms(),
        ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
    );
    assert_eq!(load("ec-p256-sec1.pem").algorithms(), ["ES256"]);
    assert_eq!(load("ec-p384-sec1.pem").default_algorithm(), "ES384");
    assert_eq!(load("ed25519-pkcs8.pem").default_algorithm(), "EdDSA");
    assert!(matches!(
        load("ec-p256-sec1.pem").sign("ES384", b"x"),
        Err(KeyError::AlgorithmNotSupported { .. })
    ));
    assert!(matches!(
        rsa.sign("none", b"x"),
        Err(KeyError::AlgorithmNotSupported { .. })
    ));
}

fn keystore() -> Keystore {
    Keystore::new(vec![
        (None, load("rsa-pkcs1.pem")),
        (Some("p256".to_owned()), load("ec-p256-sec1.pem")),
        (None, load("ec-p384-sec1.pem")),
        (None, load("ed25519-pkcs8.pem")),
    ])
    .unwrap()
}

#[test]
fn jwks_has_public_members_only() {
    let jwks = keystore().jwks();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 4);
    let kids: Vec<_> = keys.iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(
        kids,
        [RSA_THUMBPRINT, "p256", P384_THUMBPRINT, ED25519_THUMBPRINT]
    );
    let algs: Vec<_> = keys.iter().map(|k| k["alg"].as_str().unwrap()).collect();
    assert_eq!(algs, ["RS256", "ES256", "ES384", "EdDSA"]);
    for key in keys {
        assert_eq!(key["use"], "sig");
        let members: Vec<_> = key.as_object().unwrap().keys().cloned().collect();
        for member in &members {
            assert!(
                ["kty", "kid", "use", "alg", "n", "e", "crv", "x", "y"].contains(&member.as_str()),
                "unexpected member {member}"
            );
        }
    }
    let text = jwks.to_string();
    for private in ["\"d\"", "\"p\"", "\"q\"", "\"dp\"", "\"dq\"", "\"qi\""] {
        assert!(!text.contains(private), "{private} in {text}");
    }
}

#[test]
fn keystore_construction_rules() {
    assert_eq!(Keystore::new(vec![]).unwrap_err(), KeyError::EmptyKeystore);
    assert_eq!(
        Keystore::new(vec![
            (Some("a".to_owned()), load("ec-p256-sec1.pem")),
            (Some("a".to_owned()), load("ec-p384-sec1.pem")),
        ])
        .unwrap_err(),
        KeyError::DuplicateKid("a".to_owned())
    );
    // The same key twice without a kid collides on its thumbprint.
    assert_eq!(
        Keystore::new(vec![
            (None, load("ec-p256-sec1.pem")),
            (None, load("ec-p256-pkcs8.pem")),
        ])
        .unwrap_err(),
        KeyError::DuplicateKid(P256_THUMBPRINT.to_owned())
    );
    let store = keystore();
    assert_eq!(
        store.signing_algorithms(),
        [
            "ES256", "ES384", "EdDSA", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512"
        ]
    );
    assert_eq!(store.find("ES256").unwrap().kid, "p256");
    assert_eq!(store.find("PS384").unwrap().kid, RSA_THUMBPRINT);
    assert!(store.find("HS256").is_none());
    assert_eq!(
        store.sign_jwt("HS256", &json!({})).unwrap_err(),
        KeyError::NoKeyForAlgorithm("HS256".to_owned())
    );
    assert_eq!(store.get("p256").unwrap().kid, "p256");
}

#[test]
fn debug_never_prints_key_material() {
    let store = keystore();
    let debug = format!("{store:?} {:?}", store.entries()[0]);
    assert!(debug.contains("[redacted]"));
    let pem = store.entries()[0].key.to_pkcs8_pem().unwrap();
    let body_line = pem.lines().nth(3).unwrap();
    assert!(!debug.contains(body_line));
    if let PrivateKey::EcP256(key) = &store.entries()[1].key {
        let scalar = hex::encode(key.to_bytes());
        assert!(!debug.to_lowercase().contains(&scalar));
        assert!(!format!("{:?}", store.entries()[1].key).contains(&scalar));
    } else {
        panic!("expected P-256");
    }
}

struct Jws {
    header: serde_json::Value,
    claims: serde_json::Value,
    input: String,
    signature: Vec<u8>,
}

fn split(token: &str) -> Jws {
    let parts: Vec<_> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).unwrap();
    Jws {
        header: serde_json::from_slice(&decode(parts[0])).unwrap(),
        claims: serde_json::from_slice(&decode(parts[1])).unwrap(),
        input: format!("{}.{}", parts[0], parts[1]),
        signature: decode(parts[2]),
    }
}

/// Verify with the underlying crates directly, not with this crate's code.
fn verify_externally(key: &PrivateKey, alg: &str, jws: &Jws) {
    use p256::ecdsa::signature::Verifier as _;
    use sha2::Digest as _;
    let message = jws.input.as_bytes();
    match (key, alg) {
        (PrivateKey::Rsa(k), "RS256") => k
            .to_public_key()
            .verify(
                rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                &sha2::Sha256::digest(message),
                &jws.signature,
            )
            .unwrap(),
        (PrivateKey::Rsa(k), "RS512") => k
            .to_public_key()
            .verify(
                rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
                &sha2::Sha512::digest(message),
                &jws.signature,
            )
            .unwrap(),
        (PrivateKey::Rsa(k), "PS256") => {
            let verifier = rsa::pss::VerifyingKey::<sha2::Sha256>::new(k.to_public_key());
            let signature = rsa::pss::Signature::try_from(jws.signature.as_slice()).unwrap();
            verifier.verify(message, &signature).unwrap();
        }
        (PrivateKey::EcP256(k), "ES256") => {
            assert_eq!(jws.signature.len(), 64);
            let signature = p256::ecdsa::Signature::from_slice(&jws.signature).unwrap();
            p256::ecdsa::VerifyingKey::from(k.public_key())
                .verify(message, &signature)
                .unwrap();
        }
        (PrivateKey::EcP384(k), "ES384") => {
            assert_eq!(jws.signature.len(), 96);
            let signature = p384::ecdsa::Signature::from_slice(&jws.signature).unwrap();
            p384::ecdsa::VerifyingKey::from(k.public_key())
                .verify(message, &signature)
                .unwrap();
        }
        (PrivateKey::Ed25519(k), "EdDSA") => {
            let signature = ed25519_dalek::Signature::from_slice(&jws.signature).unwrap();
            k.verifying_key()
                .verify_strict(message, &signature)
                .unwrap();
        }
        _ => panic!("no external verifier for {alg}"),
    }
}

#[test]
fn sign_jwt_verifies_with_the_public_key() {
    let store = keystore();
    let claims = json!({ "iss": "https://auth.example.com/", "sub": "alice", "n": 1 });
    for alg in ["RS256", "RS512", "PS256", "ES256", "ES384", "EdDSA"] {
        let token = store.sign_jwt(alg, &claims).unwrap();
        let jws = split(&token);
        let entry = store.find(alg).unwrap();
        assert_eq!(
            jws.header,
            json!({ "alg": alg, "typ": "JWT", "kid": entry.kid })
        );
        assert_eq!(jws.claims, claims);
        verify_externally(&entry.key, alg, &jws);

        // Round trip through our own verifier, and tampering is caught.
        assert_eq!(store.verify_jwt(&token).unwrap(), claims);
        let mut tampered = jws.signature.clone();
        tampered[0] ^= 1;
        let bad = format!("{}.{}", jws.input, URL_SAFE_NO_PAD.encode(&tampered));
        assert_eq!(
            store.verify_jwt(&bad).unwrap_err(),
            KeyError::InvalidSignature,
            "{alg}"
        );

        let with_rng = store.sign_jwt_with_rng(&mut rng(), alg, &claims).unwrap();
        verify_externally(&entry.key, alg, &split(&with_rng));
    }
}

#[test]
fn generated_rsa_signs_ps256() {
    let key = generated_rsa();
    let store = Keystore::new(vec![(None, key.clone())]).unwrap();
    let token = store.sign_jwt("PS256", &json!({ "a": "b" })).unwrap();
    verify_externally(key, "PS256", &split(&token));
}

#[test]
fn deterministic_signing() {
    let rsa = load("rsa-pkcs1.pem");
    for alg in ["RS256", "PS256"] {
        assert_eq!(
            rsa.sign(alg, b"message").unwrap(),
            rsa.sign(alg, b"message").unwrap()
        );
    }
    // PSS salts differ per message (not a fixed salt).
    assert_ne!(
        rsa.sign("PS256", b"a").unwrap(),
        rsa.sign("PS256", b"b").unwrap()
    );
    // With an rng, PSS signatures are randomised.
    let mut rng = rng();
    assert_ne!(
        rsa.sign_with_rng(&mut rng, "PS256", b"m").unwrap(),
        rsa.sign_with_rng(&mut rng, "PS256", b"m").unwrap()
    );
}

#[test]
fn verify_jwt_rejects_forgeries() {
    let store = keystore();
    let token = store.sign_jwt("ES256", &json!({ "sub": "alice" })).unwrap();
    let jws = split(&token);
    let sig = token.rsplit('.').next().unwrap();
    let reheader = |header: serde_json::Value| {
        let header = URL_SAFE_NO_PAD.encode(header.to_string());
        let payload = jws.input.split('.').nth(1).unwrap();
        format!("{header}.{payload}.{sig}")
    };
    // alg none, alg confusion, unknown kid, garbage.
    for (forged, expected) in [
        (
            reheader(json!({ "alg": "none", "kid": "p256" })),
            KeyError::AlgorithmNotSupported {
                alg: "none".to_owned(),
                key: "EC P-256",
            },
        ),
        (
            reheader(json!({ "alg": "ES384", "kid": "p256" })),
            KeyError::AlgorithmNotSupported {
                alg: "ES384".to_owned(),
                key: "EC P-256",
            },
        ),
        (
            reheader(json!({ "alg": "ES256", "kid": "nope" })),
            KeyError::InvalidJwt("unknown kid"),
        ),
        ("a.b".to_owned(), KeyError::InvalidJwt("not a compact JWS")),
        (
            "a.b.c.d".to_owned(),
            KeyError::InvalidJwt("not a compact JWS"),
        ),
    ] {
        assert_eq!(store.verify_jwt(&forged), Err(expected), "{forged}");
    }
    // Without a kid, every key supporting alg is tried.
    let header = URL_SAFE_NO_PAD.encode(json!({ "alg": "ES256" }).to_string());
    let payload = URL_SAFE_NO_PAD.encode(json!({ "sub": "bob" }).to_string());
    let input = format!("{header}.{payload}");
    let signature = store
        .get("p256")
        .unwrap()
        .key
        .sign("ES256", input.as_bytes())
        .unwrap();
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature));
    assert_eq!(store.verify_jwt(&token).unwrap(), json!({ "sub": "bob" }));
    // ...and a signature by a key outside the store is rejected.
    let outsider = generate_ec_p256(&mut rng());
    let signature = outsider.sign("ES256", input.as_bytes()).unwrap();
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature));
    assert_eq!(store.verify_jwt(&token), Err(KeyError::InvalidSignature));
}
