//! Bearer access tokens of API clients (`SKIP_JWT_BEARER_TOKENS`): JWT
//! access tokens (RFC 9068) checked against the provider's keys like ID
//! tokens (the same one algorithm, never `none` or HMAC), and opaque tokens
//! asked about at the provider's introspection endpoint (RFC 7662).
//!
//! Anyone can send a bearer token: a token naming an unknown key refetches
//! the JWKS at most once per interval (the logout tokens' budget), and
//! nothing of a token is logged.

use serde_json::{Map, Value};

use super::discovery::{MAX_BODY, describe, read_limited, timed};
use super::error::{ProviderError, Reason};
use super::logout::{self, KeyCheck};
use super::token::with_client_auth;
use super::{Provider, Snapshot};
use crate::metrics::ProviderRequest;

/// What a bearer token must be.
#[derive(Debug, Clone)]
pub struct BearerRules {
    /// `API_AUDIENCE`: the token's `aud` must contain it.
    pub audience: String,
    /// `BEARER_ALLOW_JWT_TYP`: also accept JWT access tokens whose `typ` is
    /// plain `JWT` (or absent), as Keycloak, Entra ID and Auth0 send them.
    pub allow_jwt_typ: bool,
}

/// A bearer token the provider vouches for.
#[derive(Debug, Clone)]
pub struct VerifiedBearer {
    /// `sub`.
    pub subject: String,
    /// `exp` (Unix seconds), when the token has one.
    pub expires_at: Option<i64>,
    /// Every claim of the token (or of the introspection answer), for the
    /// access rules and the identity headers.
    pub claims: Map<String, Value>,
    /// Whether it was checked by introspection (rather than its signature).
    pub introspected: bool,
}

fn malformed(detail: &'static str) -> ProviderError {
    ProviderError::new(Reason::BearerMalformed, detail)
}

/// Whether `raw` has the shape of a compact JWS (three base64url parts):
/// anything else is an opaque token.
fn looks_like_jws(raw: &str) -> bool {
    raw.split('.').count() == 3
}

impl Provider {
    /// Checks a bearer token: a JWT access token by its signature and
    /// claims, an opaque one at the introspection endpoint. A failure whose
    /// reason [`Reason::is_upstream_failure`] is the provider's (503),
    /// any other the token's (401).
    pub async fn verify_bearer(&self, raw: &str, rules: &BearerRules) -> Result<VerifiedBearer, ProviderError> {
        let snapshot = self.snapshot().await?;
        if looks_like_jws(raw) {
            self.verify_jwt_access_token(snapshot, raw, rules).await
        } else {
            self.introspect(&snapshot, raw, rules).await
        }
    }

    async fn verify_jwt_access_token(
        &self,
        snapshot: std::sync::Arc<Snapshot>,
        raw: &str,
        rules: &BearerRules,
    ) -> Result<VerifiedBearer, ProviderError> {
        let jws = logout::parse_jws(raw, malformed)?;
        let typ = jws.typ.as_deref().map(str::to_ascii_lowercase);
        let at_jwt = matches!(typ.as_deref(), Some("at+jwt" | "application/at+jwt"));
        let plain = matches!(typ.as_deref(), None | Some("jwt" | "application/jwt"));
        if !(at_jwt || plain && rules.allow_jwt_typ) {
            return Err(malformed("typ is not at+jwt"));
        }
        // Without `at+jwt`, an ID token for the same audience would pass:
        // its marks (a nonce, the hashes of the code flow) refuse it.
        if !at_jwt
            && ["nonce", "at_hash", "c_hash"]
                .iter()
                .any(|c| jws.claims.contains_key(*c))
        {
            return Err(malformed("an ID token is not an access token"));
        }
        // Before any key is looked for: a token of another algorithm never
        // causes a refetch.
        jws.check_alg_as(snapshot.id_token_alg, Reason::BearerAlg)?;
        let checked = match jws.check_signature(&snapshot.jwks) {
            KeyCheck::UnknownKey => match self.refetch_jwks_for_logout(&snapshot).await {
                Some(fresh) => jws.check_signature(&fresh.jwks),
                None => KeyCheck::UnknownKey,
            },
            other => other,
        };
        match checked {
            KeyCheck::Valid => {}
            KeyCheck::UnknownKey => {
                return Err(ProviderError::new(Reason::BearerUnknownKey, "no matching key"));
            }
            KeyCheck::BadSignature => return Err(ProviderError::new(Reason::BearerSignature, "bad signature")),
            KeyCheck::KeyTooSmall => {
                return Err(ProviderError::new(Reason::BearerSignature, "RSA key under 2048 bits"));
            }
        }
        let claims = jws.claims;
        let subject = self.check_claims(&claims, rules, true)?;
        Ok(VerifiedBearer {
            subject,
            expires_at: claims.get("exp").and_then(Value::as_i64),
            claims,
            introspected: false,
        })
    }

    /// The claims every bearer token must have (of a JWT, or of an
    /// introspection answer): `iss` ours (an introspection answer may leave
    /// it out), `aud` containing the API's, `exp` (required of a JWT),
    /// `nbf` and `iat` not in the future, and a `sub` (of an introspection
    /// answer without one, its `client_id`). Returns that subject.
    fn check_claims(&self, c: &Map<String, Value>, rules: &BearerRules, jwt: bool) -> Result<String, ProviderError> {
        let s = &self.inner.settings;
        let now = self.inner.clock.unix();
        let skew = s.clock_skew.as_secs() as i64;
        let refuse = |reason, detail: &str| Err(ProviderError::new(reason, detail));
        match c.get("iss").and_then(Value::as_str) {
            Some(iss) if iss == s.client.issuer => {}
            None if !jwt && !c.contains_key("iss") => {}
            _ => return refuse(Reason::BearerIss, "iss is not our issuer"),
        }
        let aud_ok = match c.get("aud") {
            Some(Value::String(a)) => *a == rules.audience,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(rules.audience.as_str())),
            _ => false,
        };
        if !aud_ok {
            return refuse(Reason::BearerAud, "aud does not contain API_AUDIENCE");
        }
        let time = |k: &str| c.get(k).map(|v| v.as_i64().ok_or(()));
        match time("exp") {
            Some(Ok(exp)) if exp.saturating_add(skew) > now => {}
            None if !jwt => {}
            Some(Ok(_)) => return refuse(Reason::BearerExp, "expired"),
            _ => return refuse(Reason::BearerExp, "no exp"),
        }
        for k in ["nbf", "iat"] {
            match time(k) {
                None => {}
                Some(Ok(t)) if t.saturating_sub(skew) <= now => {}
                Some(_) => return refuse(Reason::BearerExp, "not valid yet (nbf or iat)"),
            }
        }
        match c.get("sub").and_then(Value::as_str) {
            Some(sub) if !sub.is_empty() => Ok(sub.to_owned()),
            // RFC 7662 makes `sub` optional: a token of no resource owner
            // (the client_credentials grant) is answered with its
            // `client_id` alone, the subject RFC 9068 §2.2 gives the same
            // token as a JWT (oidc-provider does both).
            None if !jwt && !c.contains_key("sub") => match c.get("client_id").and_then(Value::as_str) {
                Some(client) if !client.is_empty() => Ok(client.to_owned()),
                _ => refuse(Reason::BearerSub, "no sub and no client_id"),
            },
            _ => refuse(Reason::BearerSub, "no sub"),
        }
    }

    /// RFC 7662: asks the provider whether an opaque token is active, with
    /// our client's credentials (as at the token endpoint) and the
    /// provider's timeout.
    async fn introspect(
        &self,
        snapshot: &Snapshot,
        raw: &str,
        rules: &BearerRules,
    ) -> Result<VerifiedBearer, ProviderError> {
        let Some(endpoint) = &snapshot.metadata.introspection_endpoint else {
            return Err(ProviderError::new(
                Reason::BearerOpaque,
                "not a JWT, and the provider has no introspection endpoint",
            ));
        };
        let claims = timed(ProviderRequest::Introspection, self.ask(snapshot, endpoint, raw)).await?;
        if claims.get("active") != Some(&Value::Bool(true)) {
            return Err(ProviderError::new(Reason::BearerInactive, "the provider says inactive"));
        }
        let subject = self.check_claims(&claims, rules, false)?;
        Ok(VerifiedBearer {
            subject,
            expires_at: claims.get("exp").and_then(Value::as_i64),
            claims,
            introspected: true,
        })
    }

    async fn ask(
        &self,
        snapshot: &Snapshot,
        endpoint: &url::Url,
        raw: &str,
    ) -> Result<Map<String, Value>, ProviderError> {
        let failed = |detail: String| ProviderError::new(Reason::IntrospectionFailed, detail);
        let client = &self.inner.settings.client;
        let mut form = vec![("token", raw), ("token_type_hint", "access_token")];
        let request = self
            .inner
            .http
            .post(endpoint.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        let response = with_client_auth(request, &snapshot.metadata, client, &mut form)
            .form(&form)
            .send()
            .await
            .map_err(|e| failed(describe(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(failed(format!("HTTP {status}")));
        }
        let body = read_limited(response, MAX_BODY).await.map_err(failed)?;
        serde_json::from_slice(&body).map_err(|e| failed(format!("not a JSON object: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_three_parts_make_a_jwt() {
        assert!(looks_like_jws("a.b.c"));
        assert!(!looks_like_jws("opaque-token"));
        assert!(!looks_like_jws("a.b"));
        // A JWE (five parts) is not ours to decrypt: introspection decides.
        assert!(!looks_like_jws("a.b.c.d.e"));
    }
}
