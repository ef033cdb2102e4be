//! Revoking a session's tokens at the provider (RFC 7009) when a logout
//! ends it: the refresh token (revoking only the access token would leave
//! the grant alive) and the access token, each with the client's
//! authentication, in the background ([`crate::drain::Drain::spawn`]) so the
//! user's redirect never waits for the provider, and shutdown waits for it.
//!
//! Logouts the user asked for revoke: the Log out button (`/logout`), the
//! gateway's `/oauth2/sign_out`, and every other path that ends a session
//! on the user's or an administrator's behalf ([`revoke_session`]).
//! Logouts the provider initiated (back-channel, front-channel) do not: the
//! provider ended that session itself and decides what its grants are
//! worth, and an unauthenticated front-channel request must not be able to
//! make us send requests to the provider.

use std::str::FromStr;

use tower_sessions::SessionStore;
use tower_sessions::session::Id;

use super::AppState;
use crate::provider::TokenHint;
use crate::secret::Secret;
use crate::session::TOKENS_KEY;
use crate::store::StoreError;
use crate::tokens::{Kind, StoredTokens};

/// Revokes `tokens` (a session's, as kept under [`TOKENS_KEY`]) in the
/// background. Nothing is sent when the provider advertises no
/// `revocation_endpoint` or no token is kept; failures are logged (without
/// the token) and counted as `revocation` provider errors.
pub fn revoke_in_background(state: &AppState, tokens: StoredTokens) {
    let Some(vault) = &state.tokens else { return };
    let refresh = tokens.refresh.and_then(|t| vault.open(Kind::Refresh, &t));
    let access = tokens.access.and_then(|t| vault.open(Kind::Access, &t));
    if refresh.is_none() && access.is_none() {
        return;
    }
    let provider = state.provider.clone();
    state.drain.spawn(async move {
        // Concurrently: together they take one HTTP timeout at most.
        tokio::join!(
            revoke_one(&provider, refresh, TokenHint::Refresh),
            revoke_one(&provider, access, TokenHint::Access),
        );
    });
}

async fn revoke_one(provider: &crate::provider::Provider, token: Option<Secret>, hint: TokenHint) {
    let Some(token) = token else { return };
    match provider.revoke(token.expose(), hint).await {
        Ok(true) => tracing::debug!(token_type_hint = hint.as_str(), "token revoked at the provider"),
        Ok(false) => {}
        Err(e) => tracing::warn!(
            token_type_hint = hint.as_str(),
            reason = %e.reason,
            error = %e.detail,
            "could not revoke a token at the provider; it stays valid until it expires"
        ),
    }
}

/// Revokes the tokens of the stored session `id` (when it keeps any) in
/// the background: for paths that end a session other than the request's
/// own (the sessions page, the administrators' command). Call it before
/// deleting the session, whose record holds the tokens.
pub async fn revoke_session(state: &AppState, id: &str) -> Result<(), StoreError> {
    let Ok(parsed) = Id::from_str(id) else { return Ok(()) };
    let backend = state.store.session_backend();
    // The tokens a refresh last wrote (on any instance), else the session's own.
    let refreshed = backend.refreshed_tokens(id).await?;
    let tokens = match refreshed.and_then(|data| serde_json::from_str::<StoredTokens>(&data).ok()) {
        Some(tokens) => Some(tokens),
        None => backend
            .load(&parsed)
            .await
            .map_err(|e| StoreError::Session(e.to_string()))?
            .and_then(|r| r.data.get(TOKENS_KEY).cloned())
            .and_then(|v| serde_json::from_value::<StoredTokens>(v).ok()),
    };
    if let Some(tokens) = tokens {
        revoke_in_background(state, tokens);
    }
    Ok(())
}
