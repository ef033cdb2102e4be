//! The provider's signing key (ES256, or RS256/PS256 with a given RSA
//! key), its public JWK, and the few encodings a token issuer needs:
//! compact JWS, `at_hash`, PKCE S256 and random tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use rand::rngs::OsRng;
use ring::rand::SystemRandom;
use ring::rsa::PublicKeyComponents;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RSA_PKCS1_SHA256, RSA_PSS_SHA256, RsaEncoding,
    RsaKeyPair,
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// The JWS algorithm of the default key.
const ES256: &str = "ES256";

/// An RSA algorithm the provider can sign ID tokens with, as the most
/// common providers do by default (RS256), instead of ES256.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RsaAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PSS with SHA-256.
    Ps256,
}

impl RsaAlg {
    /// The JWS name (`RS256`, `PS256`).
    pub fn name(self) -> &'static str {
        match self {
            RsaAlg::Rs256 => "RS256",
            RsaAlg::Ps256 => "PS256",
        }
    }

    fn encoding(self) -> &'static dyn RsaEncoding {
        match self {
            RsaAlg::Rs256 => &RSA_PKCS1_SHA256,
            RsaAlg::Ps256 => &RSA_PSS_SHA256,
        }
    }
}

/// An RSA key that `ring` refused (not PKCS#8, or too small).
#[derive(Debug, thiserror::Error)]
#[error("RSA signing key refused: {0}")]
pub struct KeyRefused(String);

/// A signing key with its key id. `ring` signs: its assembly is far
/// cheaper than pure-Rust code, and signing is most of the provider's
/// work in a login.
pub(super) struct Key {
    signing: Signing,
    rng: SystemRandom,
    kid: String,
}

enum Signing {
    Es256(EcdsaKeyPair),
    Rsa(RsaKeyPair, RsaAlg),
}

/// Signing failed inside the signature implementation (not caused by input).
#[derive(Debug, thiserror::Error)]
#[error("{0} signing failed")]
pub(super) struct SignError(&'static str);

impl Key {
    /// A fresh random P-256 key (ES256) with a random key id.
    pub(super) fn generate() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("the operating system's random number generator failed");
        let signing = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("ring reads back the key it generated");
        Self {
            signing: Signing::Es256(signing),
            rng,
            kid: random_token(8),
        }
    }

    /// The RSA key `pkcs8` (DER) signing with `alg`, with a random key id.
    /// (`ring` cannot generate RSA keys: the caller brings one.)
    pub(super) fn rsa(alg: RsaAlg, pkcs8: &[u8]) -> Result<Self, KeyRefused> {
        let pair = RsaKeyPair::from_pkcs8(pkcs8).map_err(|e| KeyRefused(e.to_string()))?;
        Ok(Self {
            signing: Signing::Rsa(pair, alg),
            rng: SystemRandom::new(),
            kid: random_token(8),
        })
    }

    /// The JWS algorithm of every token this key signs.
    pub(super) fn alg(&self) -> &'static str {
        match &self.signing {
            Signing::Es256(_) => ES256,
            Signing::Rsa(_, alg) => alg.name(),
        }
    }

    /// The public key as a JWK (RFC 7517/7518).
    pub(super) fn jwk(&self) -> Value {
        match &self.signing {
            Signing::Es256(pair) => {
                // Uncompressed SEC1: 0x04 || x (32 bytes) || y (32 bytes).
                let point = pair.public_key().as_ref();
                json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                    "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
                    "kid": self.kid,
                    "use": "sig",
                    "alg": ES256,
                })
            }
            Signing::Rsa(pair, alg) => {
                let public = PublicKeyComponents::<Vec<u8>>::from(pair.public());
                json!({
                    "kty": "RSA",
                    "n": URL_SAFE_NO_PAD.encode(&public.n),
                    "e": URL_SAFE_NO_PAD.encode(&public.e),
                    "kid": self.kid,
                    "use": "sig",
                    "alg": alg.name(),
                })
            }
        }
    }

    /// Signs `claims` as a compact JWS (RFC 7515). An ES256 signature is
    /// r || s, 64 bytes, as RFC 7518 §3.4 requires (not DER).
    pub(super) fn sign(&self, claims: &Value) -> Result<String, SignError> {
        self.sign_typed("JWT", claims)
    }

    /// [`Key::sign`] with another `typ` header (`at+jwt` for access tokens, RFC 9068).
    pub(super) fn sign_typed(&self, typ: &str, claims: &Value) -> Result<String, SignError> {
        let header = json!({ "alg": self.alg(), "typ": typ, "kid": self.kid });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
        );
        let failed = |_| SignError(self.alg());
        let signature = match &self.signing {
            Signing::Es256(pair) => pair
                .sign(&self.rng, signing_input.as_bytes())
                .map_err(failed)?
                .as_ref()
                .to_vec(),
            Signing::Rsa(pair, alg) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(alg.encoding(), &self.rng, signing_input.as_bytes(), &mut signature)
                    .map_err(failed)?;
                signature
            }
        };
        let signature = URL_SAFE_NO_PAD.encode(signature);
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
