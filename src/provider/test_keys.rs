//! Keys and signatures for the provider's unit tests, made with third-party
//! crates only (`rsa`, `p256`), so that the checks under test cannot
//! confirm themselves. The RSA keys are the fake provider's (made once with
//! openssl: generating RSA keys in a test is slow).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::CoreJwsSigningAlgorithm;
use p256::ecdsa::SigningKey;
use rsa::RsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _};
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};
use sha2::{Sha256, Sha384, Sha512};

/// RSA 2048 (the fake provider's `rsa-1`).
pub fn rsa_2048() -> RsaPrivateKey {
    rsa(include_str!("../../tests/it/fake_op/keys/rsa1.pem"))
}

/// Another RSA 2048 (the fake provider's `rsa-2`).
pub fn rsa_2048_other() -> RsaPrivateKey {
    rsa(include_str!("../../tests/it/fake_op/keys/rsa2.pem"))
}

/// RSA 1024: too small.
pub fn rsa_1024() -> RsaPrivateKey {
    rsa(include_str!("../../tests/it/fake_op/keys/rsa1024.pem"))
}

fn rsa(pem: &str) -> RsaPrivateKey {
    RsaPrivateKey::from_pkcs8_pem(pem).unwrap()
}

/// A P-256 key.
pub fn p256() -> SigningKey {
    SigningKey::from_slice(&[7u8; 32]).unwrap()
}

/// The public JWK of `key`, with the members of `extra` added.
pub fn rsa_jwk(key: &RsaPrivateKey, extra: Value) -> Value {
    let mut jwk = json!({
        "kty": "RSA",
        "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
    });
    jwk.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    jwk
}

/// The public JWK of `key`, with the members of `extra` added.
pub fn p256_jwk(key: &SigningKey, extra: Value) -> Value {
    // Uncompressed SEC1: 0x04 || x || y.
    let point = key.verifying_key().to_sec1_bytes();
    let mut jwk = json!({
        "kty": "EC", "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    });
    jwk.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    jwk
}

/// `message` signed with `key` under the RSA algorithm `alg`.
pub fn rsa_sign(key: &RsaPrivateKey, alg: &CoreJwsSigningAlgorithm, message: &[u8]) -> Vec<u8> {
    use CoreJwsSigningAlgorithm as A;
    use rsa::{pkcs1v15, pss};
    let key = key.clone();
    let rng = &mut rand::rngs::OsRng;
    match alg {
        A::RsaSsaPkcs1V15Sha256 => pkcs1v15::SigningKey::<Sha256>::new(key)
            .sign_with_rng(rng, message)
            .to_vec(),
        A::RsaSsaPkcs1V15Sha384 => pkcs1v15::SigningKey::<Sha384>::new(key)
            .sign_with_rng(rng, message)
            .to_vec(),
        A::RsaSsaPkcs1V15Sha512 => pkcs1v15::SigningKey::<Sha512>::new(key)
            .sign_with_rng(rng, message)
            .to_vec(),
        A::RsaSsaPssSha256 => pss::BlindedSigningKey::<Sha256>::new(key)
            .sign_with_rng(rng, message)
            .to_vec(),
        A::RsaSsaPssSha384 => pss::BlindedSigningKey::<Sha384>::new(key)
            .sign_with_rng(rng, message)
            .to_vec(),
        A::RsaSsaPssSha512 => pss::BlindedSigningKey::<Sha512>::new(key)
            .sign_with_rng(rng, message)
            .to_vec(),
        other => panic!("not an RSA algorithm: {other:?}"),
    }
}

/// `message` signed with `key` under ES256 (`r || s`, as JOSE has it).
pub fn p256_sign(key: &SigningKey, message: &[u8]) -> Vec<u8> {
    use p256::ecdsa::signature::Signer as _;
    let signature: p256::ecdsa::Signature = key.sign(message);
    signature.to_bytes().to_vec()
}

/// A compact JWS of `claims` under `header`, signed by `sign`.
pub fn jws(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let input = format!("{}.{}", b64(header), b64(claims));
    let signature = sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}
