//! The one algorithm ID tokens and logout tokens must be signed with
//! (`OIDC_ID_TOKEN_ALG`): configured, or chosen from the provider's
//! discovery document. OpenID Connect validates a token with the algorithm
//! the client expects, not with whatever its header names: a provider that
//! publishes keys of several types must not have the type chosen for it by
//! whoever made the token.

use std::fmt;
use std::str::FromStr;

use openidconnect::core::CoreJwsSigningAlgorithm;

use super::error::{ProviderError, Reason};

/// Asymmetric algorithms oidc-gate verifies, by their JOSE names. `none`
/// and HMAC never are: a shared-secret signature proves nothing about the provider.
const ACCEPTED: [(&str, CoreJwsSigningAlgorithm); 10] = [
    ("RS256", CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256),
    ("RS384", CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384),
    ("RS512", CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512),
    ("PS256", CoreJwsSigningAlgorithm::RsaSsaPssSha256),
    ("PS384", CoreJwsSigningAlgorithm::RsaSsaPssSha384),
    ("PS512", CoreJwsSigningAlgorithm::RsaSsaPssSha512),
    ("ES256", CoreJwsSigningAlgorithm::EcdsaP256Sha256),
    ("ES384", CoreJwsSigningAlgorithm::EcdsaP384Sha384),
    ("ES512", CoreJwsSigningAlgorithm::EcdsaP521Sha512),
    ("EdDSA", CoreJwsSigningAlgorithm::EdDsa),
];

/// An asymmetric JWS algorithm that tokens may be required to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigningAlg(usize);

impl SigningAlg {
    /// RS256: OpenID Connect's default, which every provider must offer.
    pub const RS256: Self = Self(0);

    /// The JOSE name (`RS256`, `EdDSA`, …).
    pub fn name(self) -> &'static str {
        ACCEPTED[self.0].0
    }

    /// The same algorithm as `openidconnect` names it.
    pub(crate) fn core(self) -> CoreJwsSigningAlgorithm {
        ACCEPTED[self.0].1.clone()
    }

    /// The algorithm of this JOSE name, if it is one oidc-gate verifies
    /// (names are case-sensitive, as in JOSE).
    pub fn from_name(name: &str) -> Option<Self> {
        ACCEPTED.iter().position(|(n, _)| *n == name).map(Self)
    }
}

impl FromStr for SigningAlg {
    type Err = String;

    /// Parses a JOSE name; the error lists the accepted ones.
    fn from_str(s: &str) -> Result<Self, String> {
        Self::from_name(s.trim()).ok_or_else(|| {
            let names: Vec<&str> = ACCEPTED.iter().map(|(n, _)| *n).collect();
            format!("one of {} (got `{s}`)", names.join(", "))
        })
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The algorithm tokens must use, and why (for the start-up log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Expected {
    pub alg: SigningAlg,
    pub why: &'static str,
}

/// The expected algorithm: `configured` if set; else RS256 when the
/// provider's `id_token_signing_alg_values_supported` lists it or lists
/// nothing; else the first listed algorithm oidc-gate verifies.
pub(crate) fn expected(configured: Option<SigningAlg>, listed: Option<&[String]>) -> Result<Expected, ProviderError> {
    let listed = listed.unwrap_or_default();
    if let Some(alg) = configured {
        let why = if listed.is_empty() || listed.iter().any(|l| l == alg.name()) {
            "OIDC_ID_TOKEN_ALG"
        } else {
            "OIDC_ID_TOKEN_ALG, although the provider does not list it"
        };
        return Ok(Expected { alg, why });
    }
    if listed.is_empty() {
        return Ok(Expected {
            alg: SigningAlg::RS256,
            why: "OpenID Connect's default; the provider lists no algorithm",
        });
    }
    if listed.iter().any(|l| l == SigningAlg::RS256.name()) {
        return Ok(Expected {
            alg: SigningAlg::RS256,
            why: "OpenID Connect's default, which the provider lists",
        });
    }
    match listed.iter().find_map(|l| SigningAlg::from_name(l)) {
        Some(alg) => Ok(Expected {
            alg,
            why: "the first asymmetric algorithm the provider lists",
        }),
        None => Err(ProviderError::new(
            Reason::DiscoveryFailed,
            format!(
                "the provider lists no signing algorithm oidc-gate accepts ({}); set OIDC_ID_TOKEN_ALG",
                listed.join(", ")
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(configured: Option<&str>, listed: Option<&[&str]>) -> Result<&'static str, Reason> {
        let configured = configured.map(|c| c.parse::<SigningAlg>().unwrap());
        let listed: Option<Vec<String>> = listed.map(|l| l.iter().map(|s| s.to_string()).collect());
        expected(configured, listed.as_deref())
            .map(|e| e.alg.name())
            .map_err(|e| e.reason)
    }

    #[test]
    fn rs256_unless_the_provider_lists_other_algorithms_only() {
        assert_eq!(pick(None, None), Ok("RS256"));
        assert_eq!(pick(None, Some(&[])), Ok("RS256"));
        assert_eq!(pick(None, Some(&["ES256", "RS256"])), Ok("RS256"));
        // The development provider, and providers that sign with EC or EdDSA keys only.
        assert_eq!(pick(None, Some(&["ES256"])), Ok("ES256"));
        assert_eq!(pick(None, Some(&["PS384", "ES256"])), Ok("PS384"));
        // HMAC and none are skipped, never chosen.
        assert_eq!(pick(None, Some(&["HS256", "none", "EdDSA"])), Ok("EdDSA"));
        assert_eq!(pick(None, Some(&["HS256", "none"])), Err(Reason::DiscoveryFailed));
        // The setting wins, whatever the provider lists.
        assert_eq!(pick(Some("PS256"), Some(&["RS256"])), Ok("PS256"));
        assert_eq!(pick(Some("ES512"), None), Ok("ES512"));
    }

    #[test]
    fn names_are_the_jose_ones() {
        for (name, core) in ACCEPTED {
            let alg: SigningAlg = name.parse().unwrap();
            assert_eq!((alg.name(), alg.core()), (name, core.clone()));
            // openidconnect spells it the same way.
            assert_eq!(serde_json::to_value(&core).unwrap(), name);
        }
        assert_eq!(SigningAlg::RS256.name(), "RS256");
        for refused in ["HS256", "none", "rs256", "ES256K", ""] {
            let e = refused.parse::<SigningAlg>().unwrap_err();
            assert!(e.starts_with("one of RS256, RS384"), "{e}");
        }
    }
}
