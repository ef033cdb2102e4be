//! Bearer-token API access (`SKIP_JWT_BEARER_TOKENS`, `API_AUDIENCE`): a
//! request with `Authorization: Bearer <token>` and no signed-in session is
//! let onto a protected path (the gateway's, forward auth's, a route behind
//! [`super::RequireLoginLayer`]) as the token's subject, when the provider
//! vouches for the token ([`crate::provider::Provider::verify_bearer`]) and
//! the access rules admit its claims. A signed-in session always wins.
//!
//! The answers (RFC 6750 §3), for API calls and browser navigations alike,
//! never a redirect: a token that fails a check is `401` with
//! `WWW-Authenticate: Bearer error="invalid_token"`; a token whose subject
//! the access rules refuse is a plain `403` (`access_denied` and the rule's
//! reason code, as for a session: not `insufficient_scope`, since no other
//! scope would help); a provider that cannot be asked is `503`.
//!
//! Verified tokens are cached by their SHA-256, bounded, until their `exp`
//! (an introspected one at most [`INTROSPECTION_TTL_SECS`]): the same token
//! is not checked again on every request. Only a token not in the cache
//! takes from its client's [`class::Bearer`] rate limit.

use std::sync::Arc;

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::AppState;
use super::audit::{self, Origin};
use super::ratelimit::{Limited, class};
use crate::access::{Claims, Refusal};
use crate::provider::{BearerRules, ProviderError};

/// Most verified tokens remembered; past that, the least used are forgotten.
pub const CACHE_SIZE: usize = 10_000;
/// Longest an introspected token is trusted without asking again: the
/// provider may revoke it meanwhile.
pub const INTROSPECTION_TTL_SECS: i64 = 60;
/// Longest bearer token looked at (Entra ID's are a few kilobytes).
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// The challenge of a refused token.
const INVALID_TOKEN: &str = "Bearer realm=\"oidc-gate\", error=\"invalid_token\"";

/// Who a bearer token is. Routes behind [`super::RequireLoginLayer`] find
/// it in the request's extensions (`Option<Extension<BearerUser>>`) when
/// the request was let in by its bearer token rather than a session.
#[derive(Debug, Clone)]
pub struct BearerUser {
    /// The token's `sub`.
    pub subject: String,
    /// What the access rules read of the token (its `email`, groups, …).
    pub claims: Claims,
}

impl BearerUser {
    /// A name to show: the email address, else the subject.
    pub fn display_name(&self) -> &str {
        self.claims.email.as_deref().unwrap_or(&self.subject)
    }
}

/// What the cache remembers of a verified token.
struct Verified {
    user: BearerUser,
    /// The access rules' verdict on its claims (the rules are fixed at start-up).
    verdict: Result<(), Refusal>,
    /// Unix seconds until which it is trusted.
    until: i64,
}

/// The bearer-token settings and the cache of verified tokens.
pub struct BearerAuth {
    rules: BearerRules,
    cache: quick_cache::sync::Cache<[u8; 32], Arc<Verified>>,
}

impl BearerAuth {
    /// For `rules` (`API_AUDIENCE`, `BEARER_ALLOW_JWT_TYP`), with an empty cache.
    pub fn new(rules: BearerRules) -> Self {
        Self {
            rules,
            cache: quick_cache::sync::Cache::new(CACHE_SIZE),
        }
    }
}

/// The bearer token a request sends (`Authorization: Bearer …`, the scheme
/// in any case), when bearer tokens are accepted. Another scheme (`Basic`)
/// is not ours: `None`.
pub(crate) fn token_of<'h>(state: &AppState, headers: &'h HeaderMap) -> Option<&'h str> {
    state.bearer.as_ref()?;
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    // Not UTF-8: refused as malformed by `authenticate`.
    Some(std::str::from_utf8(token).unwrap_or("\u{0}").trim_matches(' '))
}

/// RFC 6750 §2.1's `b64token`: what a bearer token may be made of.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
}

/// Lets a request in by its bearer `token` (see [`token_of`]), or answers
/// it: `401`, `403`, `429` or `503` as the module documentation says.
pub(crate) async fn authenticate(state: &AppState, token: &str, origin: &Origin) -> Result<BearerUser, Response> {
    let auth = state
        .bearer
        .as_ref()
        .expect("`token_of` finds tokens only when they are accepted");
    let issuer = state.providers.first().provider.issuer();
    if !is_b64token(token) {
        audit::bearer_refused(origin, "bearer_malformed", issuer, None, None);
        return Err(invalid_token("bearer_malformed"));
    }
    let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let now = state.clock.unix();
    let verified = match auth.cache.get(&key) {
        Some(hit) if hit.until > now => hit,
        _ => {
            let fresh = Arc::new(verify(state, auth, token, origin, now).await?);
            auth.cache.insert(key, fresh.clone());
            fresh
        }
    };
    match verified.verdict {
        Ok(()) => Ok(verified.user.clone()),
        Err(refusal) => Err(refused(refusal)),
    }
}

/// Verifies a token not in the cache, after taking from the client's rate limit.
async fn verify(
    state: &AppState,
    auth: &BearerAuth,
    token: &str,
    origin: &Origin,
    now: i64,
) -> Result<Verified, Response> {
    // Bearer clients are programs: the `429` is JSON whatever they accept.
    Limited::<class::Bearer>::check(state, origin.client_ip).map_err(|e| e.response(&HeaderMap::new()))?;
    let issuer = state.providers.first().provider.issuer();
    let token = match state.providers.first().provider.verify_bearer(token, &auth.rules).await {
        Ok(token) => token,
        Err(e) if e.reason.is_upstream_failure() => return Err(unavailable(&e)),
        Err(e) => {
            audit::bearer_refused(origin, e.reason.code(), issuer, None, Some(&e.detail));
            return Err(invalid_token(e.reason.code()));
        }
    };
    let claims = state.access.claims_of_token(&token.claims);
    let verdict = state.access.check(&claims);
    match verdict {
        Ok(()) => {
            let how = if token.introspected { "introspection" } else { "jwt" };
            audit::bearer_accepted(origin, issuer, &token.subject, how);
        }
        Err(refusal) => audit::bearer_refused(origin, refusal.code(), issuer, Some(&token.subject), None),
    }
    let cap = match token.introspected {
        true => now.saturating_add(INTROSPECTION_TTL_SECS),
        false => i64::MAX,
    };
    let until = token.expires_at.map_or(cap, |exp| exp.min(cap));
    Ok(Verified {
        user: BearerUser {
            subject: token.subject,
            claims,
        },
        verdict,
        until,
    })
}

/// `401` with RFC 6750's challenge, and the reason code for whoever debugs the client.
fn invalid_token(reason: &str) -> Response {
    let body = Json(json!({"error": "invalid_token", "reason": reason}));
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, HeaderValue::from_static(INVALID_TOKEN))],
        body,
    )
        .into_response()
}

/// The `403` of a token whose subject the access rules refuse.
fn refused(refusal: Refusal) -> Response {
    let body = Json(json!({"error": "access_denied", "reason": refusal.code()}));
    (StatusCode::FORBIDDEN, body).into_response()
}

/// The `503` of a provider that cannot be asked about a token (discovery,
/// keys or introspection out of reach).
fn unavailable(e: &ProviderError) -> Response {
    tracing::warn!(reason = %e.reason, error = %e.detail, "bearer token not verifiable: provider unavailable");
    let body = Json(json!({"error": "temporarily_unavailable", "reason": e.reason.code()}));
    (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "5")], body).into_response()
}

/// For [`super::RequireLoginLayer`]: a request without a signed-in user
/// that sends a bearer token, let in as [`BearerUser`] (in its extensions)
/// or answered. `Ok(None)`: no bearer token (the caller sends it to sign in).
pub(crate) async fn admit(state: &AppState, request: &mut Request) -> Result<Option<()>, Response> {
    let Some(token) = token_of(state, request.headers()).map(str::to_owned) else {
        return Ok(None);
    };
    let origin = Origin::of(request.extensions());
    let user = authenticate(state, &token, &origin).await?;
    request.extensions_mut().insert(user);
    Ok(Some(()))
}

/// What [`super::RequireLoginLayer`] needs to verify bearer tokens, put in
/// the extensions of requests that send an `Authorization` header (only
/// when bearer tokens are accepted).
#[derive(Clone)]
pub(crate) struct BearerState(pub AppState);

/// The layer that adds [`BearerState`] (see [`super::router`]).
pub(crate) fn layer(
    state: &AppState,
) -> Option<tower::util::MapRequestLayer<impl Fn(Request) -> Request + Clone + use<>>> {
    state.bearer.as_ref()?;
    let state = state.clone();
    Some(tower::util::MapRequestLayer::new(move |mut request: Request| {
        if request.headers().contains_key(header::AUTHORIZATION) {
            request.extensions_mut().insert(BearerState(state.clone()));
        }
        request
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64token_syntax() {
        for ok in ["abc", "a.b.c", "eyJ0-_~+/x==", "x="] {
            assert!(is_b64token(ok), "{ok}");
        }
        for bad in ["", "=", "a b", "a\"b", "a,b", "\u{0}", "é", "a=b"] {
            assert!(!is_b64token(bad), "{bad:?}");
        }
        assert!(!is_b64token(&"a".repeat(MAX_TOKEN_LEN + 1)));
    }
}
