//! Token revocation (RFC 7009, `/revoke`): the client revokes an access or
//! refresh token it was issued; a revoked token is forgotten at once
//! (UserInfo refuses a revoked access token). Every request that passed
//! client authentication is recorded, so tests can see what was revoked.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::DevProvider;
use super::params::Params;
use super::token::{TokenError, authenticate_client, is_form};

/// Which kind of token a revocation found and revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// An access token this provider issued and that was still valid.
    AccessToken,
    /// A refresh token this provider issued and that was still valid.
    RefreshToken,
}

/// One revocation request the provider accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The `token_type_hint` sent, if any.
    pub token_type_hint: Option<String>,
    /// What the token was; `None`: unknown, expired or already revoked
    /// (answered `200` all the same, RFC 7009 §2.2).
    pub revoked: Option<Revoked>,
}

/// `POST /revoke`
pub(super) async fn revoke(State(dev): State<DevProvider>, headers: HeaderMap, body: Bytes) -> Response {
    match revoke_token(&dev, &headers, &body) {
        Ok(revocation) => {
            tracing::info!(revoked = ?revocation.revoked, "dev provider: token revocation");
            dev.inner.revocations.send_modify(|all| all.push(revocation));
            ([(header::CACHE_CONTROL, "no-store")], StatusCode::OK).into_response()
        }
        Err(err) => {
            tracing::info!(
                error = err.error,
                reason = err.reason,
                "dev provider: revocation refused"
            );
            err.into_response()
        }
    }
}

fn revoke_token(dev: &DevProvider, headers: &HeaderMap, body: &[u8]) -> Result<Revocation, TokenError> {
    if !is_form(headers) {
        return Err(TokenError::new("invalid_request", "body must be form-urlencoded"));
    }
    let params = Params::parse(body).map_err(|_| TokenError::new("invalid_request", "duplicate parameter"))?;
    authenticate_client(dev, headers, &params)?;
    let token = params
        .get("token")
        .ok_or(TokenError::new("invalid_request", "token missing"))?;
    let hint = params.get("token_type_hint");
    // The hint only says where to look first (RFC 7009 §2.1).
    let refresh_first = hint == Some("refresh_token");
    let as_access = |dev: &DevProvider| dev.tokens().take(token).map(|_| Revoked::AccessToken);
    let as_refresh = |dev: &DevProvider| dev.refresh_tokens().take(token).map(|_| Revoked::RefreshToken);
    let revoked = match refresh_first {
        true => as_refresh(dev).or_else(|| as_access(dev)),
        false => as_access(dev).or_else(|| as_refresh(dev)),
    };
    Ok(Revocation {
        token_type_hint: hint.map(str::to_owned),
        revoked,
    })
}
