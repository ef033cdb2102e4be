//! Back-channel logout tokens (OpenID Connect Back-Channel Logout 1.0 §2.6).
//!
//! `openidconnect` has no logout token type, so this module checks the JWS
//! with the crate's key primitives (`JsonWebKey::verify_signature` on the
//! provider's JWKS) and validates the claims itself. A logout token is
//! validated like an ID token: signed with the same expected algorithm.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreJsonWebKeyUse, CoreJwsSigningAlgorithm};
use openidconnect::{JsonWebKey, JsonWebKeyAlgorithm};
use serde_json::{Map, Value};

use super::alg::SigningAlg;
use super::error::{ProviderError, Reason};
use super::jwk::{self, GateJsonWebKeySet};

/// The event member every logout token carries.
pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Oldest accepted `iat`; a `jti` is remembered this long, so an older token
/// could not be told from a replay.
pub const MAX_AGE_SECS: i64 = 600;

/// What a valid logout token asks to end.
#[derive(Debug, Clone)]
pub struct LogoutRequest {
    /// End the sessions of this subject (all of them when `sid` is absent).
    pub subject: Option<String>,
    /// End the sessions of this provider session.
    pub sid: Option<String>,
    /// Token id, to refuse replays.
    pub jti: String,
    /// Until when the `jti` must be remembered (Unix seconds).
    pub remember_until: i64,
}

fn bad(detail: &'static str) -> ProviderError {
    ProviderError::new(Reason::LogoutToken, detail)
}

/// A parsed compact JWS whose `alg` and signature are not yet checked.
pub(crate) struct Jws<'a> {
    /// The header's `alg`, as sent.
    alg_name: String,
    alg: CoreJwsSigningAlgorithm,
    kid: Option<String>,
    /// The header's `typ`, as sent.
    pub(crate) typ: Option<String>,
    signing_input: &'a str,
    signature: Vec<u8>,
    pub(crate) claims: Map<String, Value>,
}

/// Splits and decodes a logout token.
pub(crate) fn parse(raw: &str) -> Result<Jws<'_>, ProviderError> {
    let jws = parse_jws(raw, bad)?;
    if let Some(typ) = &jws.typ {
        let typ = typ.to_ascii_lowercase();
        if !matches!(typ.as_str(), "logout+jwt" | "application/logout+jwt" | "jwt") {
            return Err(bad("typ is not logout+jwt"));
        }
    }
    Ok(jws)
}

/// Splits and decodes a compact JWS (a logout token, a bearer token);
/// `bad` names what is wrong with a malformed one.
pub(crate) fn parse_jws(raw: &str, bad: fn(&'static str) -> ProviderError) -> Result<Jws<'_>, ProviderError> {
    let Some((signing_input, signature)) = raw.rsplit_once('.') else {
        return Err(bad("not a compact JWS"));
    };
    let Some((header, payload)) = signing_input.split_once('.') else {
        return Err(bad("not a compact JWS"));
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| bad("not base64url"));
    let header: Map<String, Value> = serde_json::from_slice(&decode(header)?).map_err(|_| bad("header not JSON"))?;
    let claims: Map<String, Value> = serde_json::from_slice(&decode(payload)?).map_err(|_| bad("claims not JSON"))?;
    let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or_default().to_owned();
    // Any name the crate knows (so that a token with another one is refused
    // by `check_alg`).
    let alg = serde_json::from_value(Value::String(alg_name.clone())).unwrap_or(CoreJwsSigningAlgorithm::None);
    let typ = header.get("typ").and_then(Value::as_str).map(str::to_owned);
    let kid = header.get("kid").and_then(Value::as_str).map(str::to_owned);
    Ok(Jws {
        alg_name,
        alg,
        kid,
        typ,
        signing_input,
        signature: decode(signature)?,
        claims,
    })
}

/// Until when a token's `jti` is remembered: as long as the token could be
/// accepted (its `exp`, and never less than the `iat` window), plus the skew.
fn remember_until(iat: i64, exp: Option<i64>, skew: i64) -> i64 {
    let window = iat.saturating_add(MAX_AGE_SECS);
    exp.unwrap_or(window).max(window).saturating_add(skew)
}

/// Outcome of checking the signature against one key set.
pub(crate) enum KeyCheck {
    Valid,
    UnknownKey,
    BadSignature,
    /// The only keys that could have signed it are RSA keys under 2048 bits.
    KeyTooSmall,
}

impl Jws<'_> {
    /// Refuses a token not signed with `expected` (`none` and HMAC never are).
    pub(crate) fn check_alg(&self, expected: SigningAlg) -> Result<(), ProviderError> {
        self.check_alg_as(expected, Reason::LogoutTokenAlg)
    }

    /// [`Jws::check_alg`], refusing with `reason`.
    pub(crate) fn check_alg_as(&self, expected: SigningAlg, reason: Reason) -> Result<(), ProviderError> {
        if self.alg_name == expected.name() {
            return Ok(());
        }
        // Debug form: the sender's text, escaped and bounded for the log.
        let sent: String = self.alg_name.chars().take(16).collect();
        Err(ProviderError::new(
            reason,
            format!("signed with {sent:?}; OIDC_ID_TOKEN_ALG is {expected}"),
        ))
    }

    /// Verifies the signature with the keys of `jwks` that may sign with this alg.
    pub(crate) fn check_signature(&self, jwks: &GateJsonWebKeySet) -> KeyCheck {
        let candidates: Vec<_> = jwks
            .keys()
            .iter()
            .filter(|k| self.kid.is_none() || k.key_id().map(|id| id.as_str()) == self.kid.as_deref())
            .filter(|k| !matches!(k.key_use(), Some(CoreJsonWebKeyUse::Encryption)))
            .filter(|k| match k.signing_alg() {
                JsonWebKeyAlgorithm::Algorithm(a) => *a == self.alg,
                JsonWebKeyAlgorithm::Unspecified => true,
                JsonWebKeyAlgorithm::Unsupported => false,
            })
            .collect();
        if candidates.is_empty() {
            return KeyCheck::UnknownKey;
        }
        let input = self.signing_input.as_bytes();
        let results: Vec<_> = candidates
            .iter()
            .map(|k| k.verify_signature(&self.alg, input, &self.signature))
            .collect();
        if results.iter().any(Result::is_ok) {
            KeyCheck::Valid
        } else if results.iter().all(|r| r.as_ref().is_err_and(jwk::is_too_small)) {
            KeyCheck::KeyTooSmall
        } else {
            KeyCheck::BadSignature
        }
    }

    /// Validates the claims (§2.6 steps 3–7) for `issuer` and `client_id` at `now`.
    pub(crate) fn into_request(
        self,
        issuer: &str,
        client_id: &str,
        now: i64,
        skew: i64,
    ) -> Result<LogoutRequest, ProviderError> {
        let c = &self.claims;
        let str_claim = |k: &str| {
            c.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        if str_claim("iss").as_deref() != Some(issuer) {
            return Err(bad("iss is not our issuer"));
        }
        let aud_ok = match c.get("aud") {
            Some(Value::String(a)) => a == client_id,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(client_id)),
            _ => false,
        };
        if !aud_ok {
            return Err(bad("aud does not contain our client id"));
        }
        let iat = c.get("iat").and_then(Value::as_i64).ok_or_else(|| bad("no iat"))?;
        if iat > now + skew || iat < now - MAX_AGE_SECS - skew {
            return Err(bad("iat out of range"));
        }
        let exp = c
            .get("exp")
            .map(|v| v.as_i64().ok_or_else(|| bad("exp not a number")))
            .transpose()?;
        if exp.is_some_and(|exp| exp < now - skew) {
            return Err(bad("expired"));
        }
        let jti = str_claim("jti").ok_or_else(|| bad("no jti"))?;
        let event_ok = c
            .get("events")
            .and_then(Value::as_object)
            .and_then(|e| e.get(BACKCHANNEL_EVENT))
            .is_some_and(Value::is_object);
        if !event_ok {
            return Err(bad("no back-channel logout event"));
        }
        if c.contains_key("nonce") {
            return Err(bad("a logout token must not carry a nonce"));
        }
        let (subject, sid) = (str_claim("sub"), str_claim("sid"));
        if subject.is_none() && sid.is_none() {
            return Err(bad("neither sub nor sid"));
        }
        // Saturating: `exp` is the provider's number, up to `i64::MAX`.
        let remember_until = remember_until(iat, exp, skew);
        Ok(LogoutRequest {
            subject,
            sid,
            jti,
            remember_until,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remember_until_saturates_on_a_huge_exp() {
        assert_eq!(remember_until(1_000, Some(i64::MAX), 60), i64::MAX);
        assert_eq!(remember_until(1_000, Some(i64::MAX - 10), 60), i64::MAX);
        assert_eq!(remember_until(1_000, Some(5_000), 60), 5_060);
        assert_eq!(remember_until(1_000, Some(1_100), 60), 1_000 + MAX_AGE_SECS + 60);
        assert_eq!(remember_until(1_000, None, 60), 1_000 + MAX_AGE_SECS + 60);
    }

    /// A logout token is validated like an ID token: the expected `alg`
    /// only, even where the provider publishes a key for another one.
    #[test]
    fn only_the_expected_algorithm_is_accepted() {
        let b64 = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let with_alg = |alg: serde_json::Value| {
            let header = serde_json::json!({"alg": alg, "typ": "logout+jwt"});
            format!("{}.{}.c2ln", b64(&header), b64(&serde_json::json!({})))
        };
        let rs256 = with_alg("RS256".into());
        assert!(parse(&rs256).unwrap().check_alg(SigningAlg::RS256).is_ok());
        let es256 = SigningAlg::from_name("ES256").unwrap();
        let e = parse(&rs256).unwrap().check_alg(es256).unwrap_err();
        assert_eq!(e.reason, Reason::LogoutTokenAlg);
        assert_eq!(e.detail, "signed with \"RS256\"; OIDC_ID_TOKEN_ALG is ES256");
        for alg in ["ES256", "PS256", "HS256", "none", "rs256", "", "RS256\nforged"] {
            let e = parse(&with_alg(alg.into()))
                .unwrap()
                .check_alg(SigningAlg::RS256)
                .unwrap_err();
            assert_eq!(e.reason, Reason::LogoutTokenAlg, "{alg:?}");
            assert!(!e.detail.contains('\n'));
        }
        let e = parse(&with_alg(serde_json::Value::Null))
            .unwrap()
            .check_alg(SigningAlg::RS256)
            .unwrap_err();
        assert_eq!(e.reason, Reason::LogoutTokenAlg);
    }

    /// A whole token with `exp` near `i64::MAX` (signature left aside).
    #[test]
    fn a_token_with_a_huge_exp_is_remembered_for_ever_not_overflowed() {
        let b64 = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let header = serde_json::json!({"alg": "RS256", "typ": "logout+jwt"});
        let claims = serde_json::json!({
            "iss": "https://op", "aud": "rp", "iat": 1_000, "exp": i64::MAX - 1, "jti": "j", "sub": "s",
            "events": {BACKCHANNEL_EVENT: {}},
        });
        let raw = format!("{}.{}.c2ln", b64(&header), b64(&claims));
        let request = parse(&raw)
            .unwrap()
            .into_request("https://op", "rp", 1_000, 60)
            .unwrap();
        assert_eq!(request.remember_until, i64::MAX);
    }
}
