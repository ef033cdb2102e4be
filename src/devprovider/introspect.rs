//! Access tokens for an API: RFC 9068 JWT access tokens (`typ` `at+jwt`,
//! the API's `aud`) or opaque ones, and token introspection (RFC 7662) for
//! either, with the client authentication of the token endpoint.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

use super::jws::random_token;
use super::params::Params;
use super::token::{TokenError, authenticate_client};
use super::{CodeGrant, DevProvider, unix_now};

/// A new access token for `grant`, living `ttl` seconds: a signed JWT when
/// an API audience is set (and opaque tokens are not asked for), else
/// random. The provider remembers either, for UserInfo and introspection.
pub(super) fn issue(dev: &DevProvider, grant: &CodeGrant, ttl: i64) -> Result<String, TokenError> {
    let access = &dev.inner.access;
    let Some(audience) = access.audience.as_ref().filter(|_| !access.opaque) else {
        return Ok(random_token(32));
    };
    let now = unix_now();
    let claims = json!({
        "iss": dev.issuer_str(),
        "sub": grant.user.sub,
        "aud": [audience],
        "client_id": grant.client_id,
        "exp": now + ttl,
        "iat": now,
        "jti": random_token(16),
        "scope": grant.scope,
        "name": grant.user.name,
        "email": grant.user.email,
        "email_verified": true,
    });
    dev.inner.key.sign_typed("at+jwt", &claims).map_err(|err| {
        tracing::error!(%err, "dev provider: cannot sign access token");
        TokenError::new("server_error", "signing failed")
    })
}

/// `POST /introspect` (RFC 7662 §2): `{"active": false}` for a token it
/// did not issue or that expired, else what it was issued for.
pub(super) async fn introspect(State(dev): State<DevProvider>, headers: HeaderMap, body: Bytes) -> Response {
    dev.inner.introspections.fetch_add(1, Ordering::Relaxed);
    let answer = Params::parse(&body)
        .map_err(|_| TokenError::new("invalid_request", "duplicate parameter"))
        .and_then(|params| {
            authenticate_client(&dev, &headers, &params)?;
            let token = params
                .get("token")
                .ok_or(TokenError::new("invalid_request", "token missing"))?;
            Ok(describe(&dev, token))
        });
    match answer {
        Ok(body) => ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response(),
        Err(err) => {
            tracing::info!(
                error = err.error,
                reason = err.reason,
                "dev provider: introspection refused"
            );
            err.into_response()
        }
    }
}

fn describe(dev: &DevProvider, token: &str) -> Value {
    let Some(grant) = dev.tokens().get(token).cloned() else {
        return json!({"active": false});
    };
    let mut body = json!({
        "active": true,
        "iss": dev.issuer_str(),
        "sub": grant.user.sub,
        "client_id": dev.client().client_id,
        "token_type": "Bearer",
        "scope": grant.scope,
        "exp": grant.expires_at,
        "name": grant.user.name,
        "email": grant.user.email,
        "email_verified": true,
    });
    if let Some(audience) = &dev.inner.access.audience {
        body["aud"] = json!([audience]);
    }
    body
}
