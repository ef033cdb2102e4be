//! The provider's signing keys: `openidconnect`'s own JWK type, with RSA
//! (RS256/384/512, PS256/384/512) and ES256 signatures checked by `ring`.
//! The crate verifies in pure Rust, which took most of a login's CPU
//! (P-256: 2.4 million instructions per ID token; RSA: about 0.3 ms);
//! `ring`'s assembly takes a small fraction of that. Each key is decoded
//! once, when the key set is fetched, not per token. RSA keys under 2048
//! bits are refused. The other algorithms (ES384, ES512, EdDSA), and every
//! check of the key against the algorithm, are the crate's.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreJsonWebKey, CoreJsonWebKeyType, CoreJsonWebKeyUse, CoreJwsSigningAlgorithm};
use openidconnect::{
    JsonWebKey, JsonWebKeyAlgorithm, JsonWebKeyId, JsonWebKeySet, JsonWebKeyUse, JwsSigningAlgorithm,
    SignatureVerificationError,
};
use ring::signature::{self as sig, RsaParameters, RsaPublicKeyComponents};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The smallest RSA modulus accepted, in bits (NIST SP 800-131A; `ring`'s own floor).
pub const MIN_RSA_BITS: usize = 2048;
/// The largest RSA modulus `ring` verifies with, in bits.
const MAX_RSA_BITS: usize = 8192;
/// How a refusal of a small RSA key starts: [`is_too_small`] reads it back.
const TOO_SMALL: &str = "RSA key under 2048 bits";

/// A JWK of the provider's key set.
#[derive(Clone, Debug)]
pub struct GateJsonWebKey {
    core: CoreJsonWebKey,
    /// What `ring` verifies with, decoded from the JWK once.
    ring: Option<RingKey>,
}

/// A key as `ring` takes it.
#[derive(Clone, Debug)]
enum RingKey {
    /// The SEC1 uncompressed point (`04 || x || y`) of a P-256 key.
    P256(Arc<[u8]>),
    /// An RSA key's modulus and exponent, big-endian without leading zeros.
    Rsa(Arc<RsaPublicKeyComponents<Vec<u8>>>),
    /// An RSA key nothing is verified with: why.
    RsaUnusable(Arc<str>),
}

/// The provider's key set.
pub type GateJsonWebKeySet = JsonWebKeySet<GateJsonWebKey>;

impl<'de> Deserialize<'de> for GateJsonWebKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        let ring = match value["kty"].as_str() {
            Some("EC") => p256_point(&value).map(RingKey::P256),
            Some("RSA") => Some(rsa_key(&value)),
            _ => None,
        };
        let core = CoreJsonWebKey::deserialize(value).map_err(serde::de::Error::custom)?;
        Ok(Self { core, ring })
    }
}

impl Serialize for GateJsonWebKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.core.serialize(serializer)
    }
}

impl GateJsonWebKey {
    /// Why this key is never used to verify (an RSA key under 2048 bits,
    /// or one `ring` cannot take), if it is not.
    pub fn unusable(&self) -> Option<&str> {
        match &self.ring {
            Some(RingKey::RsaUnusable(why)) => Some(why),
            _ => None,
        }
    }
}

/// Whether a verification failed because the RSA key is under 2048 bits.
pub fn is_too_small(e: &SignatureVerificationError) -> bool {
    matches!(e, SignatureVerificationError::InvalidKey(why) if why.starts_with(TOO_SMALL))
}

fn base64_member(jwk: &serde_json::Value, name: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(jwk[name].as_str()?).ok()
}

/// `04 || x || y` of an EC key on P-256 with coordinates of the right size.
fn p256_point(jwk: &serde_json::Value) -> Option<Arc<[u8]>> {
    if jwk["crv"] != "P-256" {
        return None;
    }
    let coordinate = |name: &str| base64_member(jwk, name).filter(|c| c.len() == 32);
    let (x, y) = (coordinate("x")?, coordinate("y")?);
    let mut point = Vec::with_capacity(65);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Some(point.into())
}

/// The modulus and exponent of an RSA JWK, or why nothing will be verified with it.
fn rsa_key(jwk: &serde_json::Value) -> RingKey {
    let unsigned = |name: &str| {
        base64_member(jwk, name).map(|mut bytes| {
            let zeros = bytes.iter().take_while(|b| **b == 0).count();
            bytes.drain(..zeros);
            bytes
        })
    };
    let (Some(n), Some(e)) = (unsigned("n"), unsigned("e")) else {
        return RingKey::RsaUnusable("RSA key without a base64url n and e".into());
    };
    let bits = n.first().map_or(0, |top| n.len() * 8 - top.leading_zeros() as usize);
    if bits < MIN_RSA_BITS {
        return RingKey::RsaUnusable(format!("{TOO_SMALL} ({bits} bits)").into());
    }
    if bits > MAX_RSA_BITS {
        return RingKey::RsaUnusable(format!("RSA key over {MAX_RSA_BITS} bits ({bits} bits)").into());
    }
    RingKey::Rsa(Arc::new(RsaPublicKeyComponents { n, e }))
}

/// `ring`'s parameters for an RSA algorithm.
fn rsa_parameters(alg: &CoreJwsSigningAlgorithm) -> Option<&'static RsaParameters> {
    use CoreJwsSigningAlgorithm as A;
    Some(match alg {
        A::RsaSsaPkcs1V15Sha256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        A::RsaSsaPkcs1V15Sha384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        A::RsaSsaPkcs1V15Sha512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        A::RsaSsaPssSha256 => &sig::RSA_PSS_2048_8192_SHA256,
        A::RsaSsaPssSha384 => &sig::RSA_PSS_2048_8192_SHA384,
        A::RsaSsaPssSha512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

/// What `openidconnect` checks before it verifies: the key may sign, is of
/// the algorithm's type, and names no other algorithm.
fn check_compatible(key: &GateJsonWebKey, alg: &CoreJwsSigningAlgorithm) -> Result<(), SignatureVerificationError> {
    let invalid = |why: &str| Err(SignatureVerificationError::InvalidKey(why.to_owned()));
    if key.key_use().is_some_and(|u| !u.allows_signature()) {
        return invalid("key usage not permitted for digital signatures");
    }
    if alg.key_type().as_ref() != Some(key.key_type()) {
        return invalid("key type does not match signature algorithm");
    }
    match key.signing_alg() {
        JsonWebKeyAlgorithm::Unspecified => Ok(()),
        JsonWebKeyAlgorithm::Algorithm(a) if a == alg => Ok(()),
        JsonWebKeyAlgorithm::Algorithm(_) => invalid("incompatible key algorithm"),
        JsonWebKeyAlgorithm::Unsupported => invalid("key algorithm is not a signing algorithm"),
    }
}

impl JsonWebKey for GateJsonWebKey {
    type KeyUse = CoreJsonWebKeyUse;
    type SigningAlgorithm = CoreJwsSigningAlgorithm;

    fn key_id(&self) -> Option<&JsonWebKeyId> {
        self.core.key_id()
    }

    fn key_type(&self) -> &CoreJsonWebKeyType {
        self.core.key_type()
    }

    fn key_use(&self) -> Option<&CoreJsonWebKeyUse> {
        self.core.key_use()
    }

    fn signing_alg(&self) -> JsonWebKeyAlgorithm<&CoreJwsSigningAlgorithm> {
        self.core.signing_alg()
    }

    fn new_symmetric(key: Vec<u8>) -> Self {
        Self {
            core: CoreJsonWebKey::new_symmetric(key),
            ring: None,
        }
    }

    fn verify_signature(
        &self,
        alg: &CoreJwsSigningAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureVerificationError> {
        let wrong = |kind: &str| SignatureVerificationError::CryptoError(format!("{kind} signature was wrong"));
        match (&self.ring, rsa_parameters(alg)) {
            (Some(RingKey::P256(point)), _) if *alg == CoreJwsSigningAlgorithm::EcdsaP256Sha256 => {
                check_compatible(self, alg)?;
                sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .map_err(|_| wrong("EC"))
            }
            (Some(RingKey::Rsa(key)), Some(parameters)) => {
                check_compatible(self, alg)?;
                key.verify(parameters, message, signature).map_err(|_| wrong("RSA"))
            }
            (Some(RingKey::RsaUnusable(why)), Some(_)) => {
                check_compatible(self, alg)?;
                Err(SignatureVerificationError::InvalidKey(why.to_string()))
            }
            _ => self.core.verify_signature(alg, message, signature),
        }
    }

    fn hash_bytes(&self, bytes: &[u8], alg: &CoreJwsSigningAlgorithm) -> Result<Vec<u8>, String> {
        self.core.hash_bytes(bytes, alg)
    }
}

#[cfg(test)]
mod tests;
