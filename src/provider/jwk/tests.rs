//! Signatures checked by `ring` agree with the crate's, keys must allow the
//! algorithm, and small RSA keys are refused.

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use rsa::RsaPrivateKey;
use serde_json::json;

use super::*;
use crate::provider::test_keys::{self, rsa_2048, rsa_sign};

const ES256: CoreJwsSigningAlgorithm = CoreJwsSigningAlgorithm::EcdsaP256Sha256;
const RS256: CoreJwsSigningAlgorithm = CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256;

fn p256_jwk(key: &SigningKey, extra: serde_json::Value) -> GateJsonWebKey {
    serde_json::from_value(test_keys::p256_jwk(key, extra)).unwrap()
}

fn rsa_jwk(key: &RsaPrivateKey, extra: serde_json::Value) -> GateJsonWebKey {
    serde_json::from_value(test_keys::rsa_jwk(key, extra)).unwrap()
}

fn key() -> SigningKey {
    test_keys::p256()
}

const RSA_ALGS: [CoreJwsSigningAlgorithm; 6] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
];

#[test]
fn es256_signatures_are_checked_by_ring() {
    let key = key();
    let jwk = p256_jwk(&key, json!({"kid": "k1", "use": "sig", "alg": "ES256"}));
    assert!(matches!(jwk.ring, Some(RingKey::P256(_))));
    let signature: Signature = key.sign(b"header.payload");
    jwk.verify_signature(&ES256, b"header.payload", &signature.to_bytes())
        .unwrap();
    assert!(
        jwk.verify_signature(&ES256, b"header.payloaD", &signature.to_bytes())
            .is_err()
    );
    let mut bad = signature.to_bytes().to_vec();
    bad[40] ^= 1;
    assert!(jwk.verify_signature(&ES256, b"header.payload", &bad).is_err());
    assert!(jwk.verify_signature(&ES256, b"header.payload", &bad[..63]).is_err());
    let other: Signature = SigningKey::from_slice(&[8u8; 32]).unwrap().sign(b"header.payload");
    assert!(
        jwk.verify_signature(&ES256, b"header.payload", &other.to_bytes())
            .is_err()
    );
}

#[test]
fn every_rsa_algorithm_is_checked_by_ring_and_agrees_with_the_crate() {
    let private = rsa_2048();
    let jwk = rsa_jwk(&private, json!({"kid": "r", "use": "sig"}));
    // Decoded once, here, not at each verification.
    let Some(RingKey::Rsa(parsed)) = &jwk.ring else {
        panic!("an RSA key for ring: {:?}", jwk.ring)
    };
    assert_eq!(parsed.n.len(), 256);
    let other = test_keys::rsa_2048_other();
    for alg in RSA_ALGS {
        let signature = rsa_sign(&private, &alg, b"header.payload");
        jwk.verify_signature(&alg, b"header.payload", &signature)
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        // The crate's own (pure Rust) check says the same.
        jwk.core.verify_signature(&alg, b"header.payload", &signature).unwrap();
        let mut flipped = signature.clone();
        flipped[100] ^= 1;
        let foreign = rsa_sign(&other, &alg, b"header.payload");
        for (message, signature) in [
            (&b"header.payloaD"[..], &signature[..]),
            (b"header.payload", &flipped),
            (b"header.payload", &signature[..255]),
            (b"header.payload", &foreign),
        ] {
            assert!(
                matches!(
                    jwk.verify_signature(&alg, message, signature),
                    Err(SignatureVerificationError::CryptoError(_))
                ),
                "{alg:?}"
            );
            assert!(jwk.core.verify_signature(&alg, message, signature).is_err());
        }
    }
    // A PKCS#1 v1.5 signature is not a PSS one, nor SHA-256 a SHA-512 one.
    let pkcs1 = rsa_sign(&private, &RS256, b"m");
    for alg in [
        CoreJwsSigningAlgorithm::RsaSsaPssSha256,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    ] {
        assert!(jwk.verify_signature(&alg, b"m", &pkcs1).is_err(), "{alg:?}");
    }
}

#[test]
fn rsa_keys_under_2048_bits_are_refused() {
    let small = test_keys::rsa_1024();
    let jwk = rsa_jwk(&small, json!({"kid": "small"}));
    assert_eq!(jwk.unusable(), Some("RSA key under 2048 bits (1024 bits)"));
    // PS512 needs more than 1024 bits (a 64-byte hash and a 64-byte salt).
    for alg in &RSA_ALGS[..5] {
        let signature = rsa_sign(&small, alg, b"header.payload");
        // The crate alone would have taken it.
        jwk.core.verify_signature(alg, b"header.payload", &signature).unwrap();
        let refused = jwk.verify_signature(alg, b"header.payload", &signature).unwrap_err();
        assert!(is_too_small(&refused), "{alg:?}: {refused:?}");
    }
    // Leading zero bytes do not make a modulus larger, and a 2048-bit one is enough.
    let mut padded = serde_json::to_value(rsa_jwk(&small, json!({}))).unwrap();
    let n = URL_SAFE_NO_PAD.decode(padded["n"].as_str().unwrap()).unwrap();
    padded["n"] = URL_SAFE_NO_PAD.encode([vec![0u8; 200], n].concat()).into();
    let padded: GateJsonWebKey = serde_json::from_value(padded).unwrap();
    assert!(padded.unusable().is_some_and(|why| why.ends_with("(1024 bits)")));
    assert!(rsa_jwk(&rsa_2048(), json!({})).unusable().is_none());
    let garbled: GateJsonWebKey = serde_json::from_value(json!({"kty": "RSA", "n": "!!", "e": "AQAB"})).unwrap();
    assert!(garbled.unusable().is_some());
    assert!(!is_too_small(
        &garbled.verify_signature(&RS256, b"m", &[0u8; 256]).unwrap_err()
    ));
}

#[test]
fn the_key_must_allow_the_algorithm() {
    let key = key();
    let signature = key.sign(b"m");
    let signature: &Signature = &signature;
    for extra in [json!({"use": "enc"}), json!({"alg": "ES384"}), json!({"alg": "RS256"})] {
        let jwk = p256_jwk(&key, extra.clone());
        assert!(
            matches!(
                jwk.verify_signature(&ES256, b"m", &signature.to_bytes()),
                Err(SignatureVerificationError::InvalidKey(_))
            ),
            "{extra}"
        );
    }
    // An RSA algorithm with an EC key never reaches ring.
    let jwk = p256_jwk(&key, json!({}));
    assert!(jwk.verify_signature(&RS256, b"m", &signature.to_bytes()).is_err());
    // Nor an RSA key for another algorithm, or one for encryption.
    let private = rsa_2048();
    let rsa_signature = rsa_sign(&private, &RS256, b"m");
    for extra in [json!({"use": "enc"}), json!({"alg": "PS256"})] {
        let jwk = rsa_jwk(&private, extra.clone());
        assert!(
            matches!(
                jwk.verify_signature(&RS256, b"m", &rsa_signature),
                Err(SignatureVerificationError::InvalidKey(_))
            ),
            "{extra}"
        );
    }
    assert!(
        rsa_jwk(&private, json!({}))
            .verify_signature(&ES256, b"m", &rsa_signature)
            .is_err()
    );
}

#[test]
fn keys_round_trip() {
    let rsa = json!({"kty": "RSA", "kid": "r", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"});
    let jwk: GateJsonWebKey = serde_json::from_value(rsa.clone()).unwrap();
    assert_eq!(serde_json::to_value(&jwk).unwrap()["n"], rsa["n"]);
    assert!(jwk.verify_signature(&RS256, b"m", &[0u8; 256]).is_err());
    // A P-256 coordinate of the wrong length is not taken as a point.
    let short: GateJsonWebKey =
        serde_json::from_value(json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"})).unwrap();
    assert!(short.ring.is_none());
}
