//! ID token validation (OpenID Connect Core §3.1.3.7).
//!
//! Signature and the standard claim checks are done by the `openidconnect`
//! crate; this module adds what it leaves out: the one expected `alg`,
//! precise reason codes for missing claims, trying each key when the token
//! has no `kid` and the JWKS has several candidates, `azp` (with the other
//! audiences trusted), `iat` in the future, clock skew on `exp`, and `at_hash`.

use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm};
use openidconnect::{
    AccessToken, AccessTokenHash, AdditionalClaims, ClaimsVerificationError, ClientId, IdToken, IdTokenClaims,
    IdTokenVerifier, IssuerUrl, JsonWebKeySet, Nonce, NonceVerifier as _, SignatureVerificationError,
};
use serde::{Deserialize, Serialize};

use super::alg::SigningAlg;
use super::error::{ProviderError, Reason};
use super::jwk::{self, GateJsonWebKey, GateJsonWebKeySet};

/// Claims beyond the standard ones that oidc-gate reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtraClaims {
    /// Session id at the provider (for back-channel logout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}
impl AdditionalClaims for ExtraClaims {}

type GateIdToken = IdToken<ExtraClaims, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;
type GateClaims = IdTokenClaims<ExtraClaims, CoreGenderClaim>;
type GateIdTokenVerifier<'a> = IdTokenVerifier<'a, GateJsonWebKey>;

/// What a validated ID token says about the user.
#[derive(Debug, Clone)]
pub struct VerifiedIdToken {
    /// `sub`.
    pub subject: String,
    /// `sid`, if the provider sends one.
    pub sid: Option<String>,
    /// `email`.
    pub email: Option<String>,
    /// `email_verified`.
    pub email_verified: Option<bool>,
    /// `name`.
    pub name: Option<String>,
    /// `picture`.
    pub picture: Option<String>,
    /// Every claim of the token, as signed: what the access rules read
    /// beyond the fields above (groups, `hd`).
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// The fixed inputs of a validation.
pub(crate) struct Expectations<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// The nonce of the login; `None` for a refreshed ID token, which
    /// carries the login's nonce or none (OIDC Core §12.2), and whose
    /// login's nonce is not kept.
    pub nonce: Option<&'a str>,
    pub access_token: &'a str,
    pub now_unix: i64,
    pub skew: Duration,
    /// The one algorithm the token may be signed with.
    pub alg: SigningAlg,
    /// Audiences besides our client id that a token may also name (with `azp` ours).
    pub trusted_audiences: &'a [String],
}

/// Outcome of one validation attempt against one key set.
pub(crate) enum Verdict {
    Valid(VerifiedIdToken),
    /// No key of the set matches: the caller may refetch the JWKS once.
    UnknownKey,
    Invalid(ProviderError),
}

fn reject(reason: Reason, detail: impl Into<String>) -> Verdict {
    Verdict::Invalid(ProviderError::new(reason, detail))
}

/// Validates `raw` against `jwks`.
pub(crate) fn verify(raw: &str, jwks: &GateJsonWebKeySet, want: &Expectations<'_>) -> Verdict {
    let payload = match precheck(raw, want.alg) {
        Ok(payload) => payload,
        Err(e) => return Verdict::Invalid(e),
    };
    let token = match GateIdToken::from_str(raw) {
        Ok(t) => t,
        Err(e) => {
            return reject(Reason::IdTokenMalformed, format!("unparsable ID token: {e}"));
        }
    };
    let Ok(issuer) = IssuerUrl::new(want.issuer.to_owned()) else {
        return reject(Reason::IdTokenIss, "configured issuer is not a URL");
    };
    let expected_nonce = want.nonce.map(|n| Nonce::new(n.to_owned()));
    let nonce = |claimed: Option<&Nonce>| match &expected_nonce {
        Some(expected) => expected.verify(claimed),
        None => Ok(()),
    };
    let trusted = want.trusted_audiences;
    let build = |keys: GateJsonWebKeySet| {
        let now = chrono::DateTime::from_timestamp(want.now_unix - want.skew.as_secs() as i64, 0).unwrap_or_default();
        GateIdTokenVerifier::new_public_client(ClientId::new(want.client_id.to_owned()), issuer.clone(), keys)
            .set_allowed_algs([want.alg.core()])
            .set_other_audience_verifier_fn(move |aud| trusted.iter().any(|t| t == aud.as_str()))
            .set_time_fn(move || now)
    };

    let verifier = build(jwks.clone());
    let (claims, verifier) = match token.claims(&verifier, &nonce) {
        Ok(claims) => (claims.clone(), verifier),
        Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey)) => {
            return Verdict::UnknownKey;
        }
        Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::AmbiguousKeyId(_))) => {
            // No `kid` and several keys of the right type: accept if one verifies
            // (certification test rp-id_token-kid-absent-multiple-jwks).
            match try_each_key(&token, jwks, &nonce, build) {
                Ok(found) => found,
                Err(e) => return Verdict::Invalid(e),
            }
        }
        Err(e) => return Verdict::Invalid(map_error(e)),
    };
    match check_extra(&token, &claims, &verifier, want) {
        // The payload decoded by `precheck` is the one whose signature just
        // verified, so its claims can now be trusted.
        Ok(()) => Verdict::Valid(summarize(&claims, payload)),
        Err(e) => Verdict::Invalid(e),
    }
}

fn try_each_key<'v>(
    token: &GateIdToken,
    jwks: &GateJsonWebKeySet,
    nonce: &impl Fn(Option<&Nonce>) -> Result<(), String>,
    build: impl Fn(GateJsonWebKeySet) -> GateIdTokenVerifier<'v>,
) -> Result<(GateClaims, GateIdTokenVerifier<'v>), ProviderError> {
    let mut last = None;
    for key in jwks.keys() {
        let verifier = build(JsonWebKeySet::new(vec![key.clone()]));
        match token.claims(&verifier, nonce) {
            Ok(claims) => return Ok((claims.clone(), verifier)),
            Err(ClaimsVerificationError::SignatureVerification(e)) => last = Some(e),
            Err(e) => return Err(map_error(e)),
        }
    }
    Err(ProviderError::new(
        Reason::IdTokenSignature,
        format!("no key of the JWKS verifies the signature ({last:?})"),
    ))
}

/// Checks that are not in the `openidconnect` crate.
fn check_extra(
    token: &GateIdToken,
    claims: &GateClaims,
    verifier: &GateIdTokenVerifier<'_>,
    want: &Expectations<'_>,
) -> Result<(), ProviderError> {
    let audiences = claims.audiences();
    match claims.authorized_party() {
        Some(azp) if azp.as_str() != want.client_id => {
            return Err(ProviderError::new(
                Reason::IdTokenAzp,
                format!("azp is `{}`, not our client id", azp.as_str()),
            ));
        }
        None if audiences.len() > 1 => {
            return Err(ProviderError::new(Reason::IdTokenAzp, "several audiences and no azp"));
        }
        _ => {}
    }
    let iat = claims.issue_time().timestamp();
    if iat > want.now_unix + want.skew.as_secs() as i64 {
        return Err(ProviderError::new(
            Reason::IdTokenIat,
            format!("iat is {}s in the future", iat - want.now_unix),
        ));
    }
    if let Some(expected) = claims.access_token_hash() {
        let alg = token
            .signing_alg()
            .map_err(|e| ProviderError::new(Reason::IdTokenAlg, e.to_string()))?;
        let key: &GateJsonWebKey = token
            .signing_key(verifier)
            .map_err(|e| ProviderError::new(Reason::IdTokenSignature, e.to_string()))?;
        let actual = AccessTokenHash::from_token(&AccessToken::new(want.access_token.to_owned()), alg, key)
            .map_err(|e| ProviderError::new(Reason::IdTokenAtHash, e.to_string()))?;
        if actual != *expected {
            return Err(ProviderError::new(
                Reason::IdTokenAtHash,
                "at_hash does not match the access token",
            ));
        }
    }
    Ok(())
}

fn map_error(e: ClaimsVerificationError) -> ProviderError {
    use ClaimsVerificationError as C;
    use SignatureVerificationError as S;
    let reason = match &e {
        C::SignatureVerification(S::DisallowedAlg(_) | S::UnsupportedAlg(_) | S::NoSignature) => Reason::IdTokenAlg,
        C::SignatureVerification(S::NoMatchingKey) => Reason::IdTokenUnknownKey,
        C::SignatureVerification(e) if jwk::is_too_small(e) => Reason::IdTokenKeyTooSmall,
        C::SignatureVerification(_) => Reason::IdTokenSignature,
        C::InvalidIssuer(_) => Reason::IdTokenIss,
        C::InvalidAudience(_) => Reason::IdTokenAud,
        C::Expired(_) => Reason::IdTokenExp,
        C::InvalidNonce(_) => Reason::IdTokenNonce,
        C::InvalidSubject(_) => Reason::IdTokenSub,
        _ => Reason::IdTokenMalformed,
    };
    ProviderError::new(reason, e.to_string())
}

/// Reads the unverified header and payload only to name precisely which
/// required part is missing; nothing read here is trusted until the
/// signature verifies; the `alg` is checked here, before any key is looked
/// up (or refetched). Returns the payload's claims.
fn precheck(raw: &str, expected: SigningAlg) -> Result<serde_json::Map<String, serde_json::Value>, ProviderError> {
    let malformed = |d: &str| ProviderError::new(Reason::IdTokenMalformed, d.to_owned());
    let mut parts = raw.split('.');
    let (Some(header), Some(payload), Some(_sig), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("not a compact JWS (three parts)"));
    };
    let decode = |part: &str| -> Result<serde_json::Map<String, serde_json::Value>, ProviderError> {
        let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| malformed("not base64url"))?;
        serde_json::from_slice(&bytes).map_err(|_| malformed("not a JSON object"))
    };
    let header = decode(header)?;
    match header.get("alg").and_then(|a| a.as_str()) {
        None => return Err(ProviderError::new(Reason::IdTokenAlg, "no alg")),
        Some(alg) if alg.eq_ignore_ascii_case("none") => {
            return Err(ProviderError::new(Reason::IdTokenAlg, "alg none is never accepted"));
        }
        Some(alg) if alg.starts_with("HS") => {
            return Err(ProviderError::new(
                Reason::IdTokenAlg,
                format!("symmetric alg {alg} is not accepted"),
            ));
        }
        Some(alg) if alg != expected.name() => {
            return Err(ProviderError::new(
                Reason::IdTokenAlg,
                format!("signed with {alg}; OIDC_ID_TOKEN_ALG is {expected}"),
            ));
        }
        Some(_) => {}
    }
    let claims = decode(payload)?;
    let has_str = |k: &str| claims.get(k).and_then(|v| v.as_str()).is_some_and(|s| !s.is_empty());
    let has_num = |k: &str| claims.get(k).is_some_and(|v| v.is_number());
    if !has_str("iss") {
        return Err(ProviderError::new(Reason::IdTokenIss, "no iss"));
    }
    if !has_str("sub") {
        return Err(ProviderError::new(Reason::IdTokenSub, "no sub"));
    }
    if !(has_str("aud")
        || claims
            .get("aud")
            .is_some_and(|a| a.as_array().is_some_and(|a| !a.is_empty())))
    {
        return Err(ProviderError::new(Reason::IdTokenAud, "no aud"));
    }
    if !has_num("exp") {
        return Err(ProviderError::new(Reason::IdTokenExp, "no exp"));
    }
    if !has_num("iat") {
        return Err(ProviderError::new(Reason::IdTokenIat, "no iat"));
    }
    Ok(claims)
}

fn summarize(claims: &GateClaims, payload: serde_json::Map<String, serde_json::Value>) -> VerifiedIdToken {
    VerifiedIdToken {
        subject: claims.subject().to_string(),
        sid: claims.additional_claims().sid.clone(),
        email: claims.email().map(|e| e.to_string()),
        email_verified: claims.email_verified(),
        name: claims.name().and_then(|n| n.get(None)).map(|n| n.to_string()),
        picture: claims.picture().and_then(|p| p.get(None)).map(|p| p.to_string()),
        claims: payload,
    }
}

#[cfg(test)]
mod tests;
