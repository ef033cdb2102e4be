//! The provider's ES256 signing key, its public JWK, and the few encodings
//! a token issuer needs: compact JWS, `at_hash`, PKCE S256 and random tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use rand::rngs::OsRng;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// The JWS algorithm of every ID token.
pub(super) const ALG: &str = "ES256";

/// A P-256 signing key with its key id. `ring` signs: its assembly is far
/// cheaper than pure-Rust P-256, and signing is most of the provider's
/// work in a login.
pub(super) struct Key {
    signing: EcdsaKeyPair,
    rng: SystemRandom,
    kid: String,
}

/// Signing failed inside the ECDSA implementation (not caused by input).
#[derive(Debug, thiserror::Error)]
#[error("ES256 signing failed")]
pub(super) struct SignError;

impl Key {
    /// A fresh random key with a random key id.
    pub(super) fn generate() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("the operating system's random number generator failed");
        let signing = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("ring reads back the key it generated");
        Self {
            signing,
            rng,
            kid: random_token(8),
        }
    }

    /// The public key as a JWK (RFC 7517/7518).
    pub(super) fn jwk(&self) -> Value {
        // Uncompressed SEC1: 0x04 || x (32 bytes) || y (32 bytes).
        let point = self.signing.public_key().as_ref();
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            "kid": self.kid,
            "use": "sig",
            "alg": ALG,
        })
    }

    /// Signs `claims` as a compact JWS (RFC 7515) with ES256: the signature
    /// is r || s, 64 bytes, as RFC 7518 §3.4 requires (not DER).
    pub(super) fn sign(&self, claims: &Value) -> Result<String, SignError> {
        let header = json!({ "alg": ALG, "typ": "JWT", "kid": self.kid });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
        );
        let signature = self
            .signing
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| SignError)?;
        let signature = URL_SAFE_NO_PAD.encode(signature.as_ref());
        Ok(format!("{signing_input}.{signature}"))
    }
}

/// `n` random bytes, base64url without padding.
pub(super) fn random_token(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// BASE64URL(SHA256(input)): the PKCE S256 transform (RFC 7636 §4.2).
pub(super) fn s256(input: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(input.as_bytes()))
}

/// The ID token's `at_hash`: left half of SHA-256 of the access token.
pub(super) fn at_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(&Sha256::digest(access_token.as_bytes())[..16])
}

/// A stable subject for an email address: first 16 bytes of
/// SHA-256(lowercased email), hex.
pub(super) fn subject_for(email: &str) -> String {
    Sha256::digest(email.to_lowercase().as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn subject_is_stable_and_case_insensitive() {
        let sub = subject_for("Ada@Example.com");
        assert_eq!(sub, subject_for("ada@example.com"));
        assert_eq!(sub.len(), 32);
        assert_ne!(sub, subject_for("grace@example.com"));
    }

    #[test]
    fn random_tokens_are_long_and_distinct() {
        let a = random_token(32);
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token(32));
    }
}
