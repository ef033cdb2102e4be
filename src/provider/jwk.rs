//! The provider's signing keys: `openidconnect`'s own JWK type, with ES256
//! signatures checked by `ring`. The crate verifies P-256 in pure Rust,
//! which took three quarters of a login's CPU (2.4 million instructions
//! per ID token); `ring`'s assembly takes a small fraction of that. Every
//! other algorithm, and every check of the key against the algorithm, is
//! the crate's.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreJsonWebKey, CoreJsonWebKeyType, CoreJsonWebKeyUse, CoreJwsSigningAlgorithm};
use openidconnect::{
    JsonWebKey, JsonWebKeyAlgorithm, JsonWebKeyId, JsonWebKeySet, JsonWebKeyUse, JwsSigningAlgorithm,
    SignatureVerificationError,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A JWK of the provider's key set.
#[derive(Clone, Debug)]
pub struct GateJsonWebKey {
    core: CoreJsonWebKey,
    /// The SEC1 uncompressed point (`04 || x || y`) of a P-256 key.
    p256: Option<Arc<[u8]>>,
}

/// The provider's key set.
pub type GateJsonWebKeySet = JsonWebKeySet<GateJsonWebKey>;

impl<'de> Deserialize<'de> for GateJsonWebKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        let p256 = p256_point(&value);
        let core = CoreJsonWebKey::deserialize(value).map_err(serde::de::Error::custom)?;
        Ok(Self { core, p256 })
    }
}

impl Serialize for GateJsonWebKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.core.serialize(serializer)
    }
}

/// `04 || x || y` of an EC key on P-256 with coordinates of the right size.
fn p256_point(jwk: &serde_json::Value) -> Option<Arc<[u8]>> {
    if jwk["kty"] != "EC" || jwk["crv"] != "P-256" {
        return None;
    }
    let coordinate = |name: &str| {
        URL_SAFE_NO_PAD
            .decode(jwk[name].as_str()?)
            .ok()
            .filter(|c| c.len() == 32)
    };
    let (x, y) = (coordinate("x")?, coordinate("y")?);
    let mut point = Vec::with_capacity(65);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Some(point.into())
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
            p256: None,
        }
    }

    fn verify_signature(
        &self,
        alg: &CoreJwsSigningAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureVerificationError> {
        match (alg, &self.p256) {
            (CoreJwsSigningAlgorithm::EcdsaP256Sha256, Some(point)) => {
                check_compatible(self, alg)?;
                ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .map_err(|_| SignatureVerificationError::CryptoError("EC Signature was wrong".into()))
            }
            _ => self.core.verify_signature(alg, message, signature),
        }
    }

    fn hash_bytes(&self, bytes: &[u8], alg: &CoreJwsSigningAlgorithm) -> Result<Vec<u8>, String> {
        self.core.hash_bytes(bytes, alg)
    }
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::{Signature, SigningKey};
    use serde_json::json;

    use super::*;

    const ES256: CoreJwsSigningAlgorithm = CoreJwsSigningAlgorithm::EcdsaP256Sha256;

    fn p256_jwk(key: &SigningKey, extra: serde_json::Value) -> GateJsonWebKey {
        // Uncompressed SEC1: 0x04 || x || y.
        let point = key.verifying_key().to_sec1_bytes();
        let mut jwk = json!({
            "kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        jwk.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(jwk).unwrap()
    }

    fn key() -> SigningKey {
        SigningKey::from_slice(&[7u8; 32]).unwrap()
    }

    #[test]
    fn es256_signatures_are_checked_by_ring() {
        let key = key();
        let jwk = p256_jwk(&key, json!({"kid": "k1", "use": "sig", "alg": "ES256"}));
        assert!(jwk.p256.is_some());
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
        assert!(
            jwk.verify_signature(
                &CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                b"m",
                &signature.to_bytes()
            )
            .is_err()
        );
    }

    #[test]
    fn other_keys_round_trip_and_keep_the_crates_checks() {
        let rsa = json!({"kty": "RSA", "kid": "r", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"});
        let jwk: GateJsonWebKey = serde_json::from_value(rsa.clone()).unwrap();
        assert!(jwk.p256.is_none());
        assert_eq!(serde_json::to_value(&jwk).unwrap()["n"], rsa["n"]);
        assert!(
            jwk.verify_signature(&CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256, b"m", &[0u8; 256])
                .is_err()
        );
        // A P-256 coordinate of the wrong length is not taken as a point.
        let short: GateJsonWebKey =
            serde_json::from_value(json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"})).unwrap();
        assert!(short.p256.is_none());
    }
}
