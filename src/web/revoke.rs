//! Revoking a session's tokens at the provider (RFC 7009) when a logout
//! ends it: the refresh token (revoking only the access token would leave
//! the grant alive) and the access token, each with the client's
//! authentication, in the background ([`crate::drain::Drain::spawn`]) so the
//! user's redirect never waits for the provider, and shutdown waits for it.
//!
//! Logouts the user asked for revoke: the Log out button (`/logout`), the
//! gateway's `/oauth2/sign_out`, the sessions page ([`revoke_session`]),
//! and the administrators' `oidc-gate sessions end` ([`revoke_tokens`]).
//! Logouts the provider initiated (back-channel, front-channel) do not: the
//! provider ended that session itself and decides what its grants are
//! worth, and an unauthenticated front-channel request must not be able to
//! make us send requests to the provider.

use std::str::FromStr;

use tower_sessions::SessionStore;
use tower_sessions::session::Id;

use super::AppState;
use crate::provider::{Provider, TokenHint};
use crate::secret::Secret;
use crate::session::TOKENS_KEY;
use crate::store::{Store, StoreError};
use crate::tokens::{Kind, StoredTokens, TokenVault};

/// Revokes `tokens` (a session's, as kept under [`TOKENS_KEY`]) in the
/// background. Nothing is sent when the provider advertises no
/// `revocation_endpoint` or no token is kept; failures are logged (without
/// the token) and counted as `revocation` provider errors.
///
/// They go to the provider of `issuer` (that of the session's sign-in), and
/// to none when no configured provider has that issuer.
pub fn revoke_in_background(state: &AppState, issuer: &str, tokens: StoredTokens) {
    let Some(vault) = &state.tokens else { return };
    let Some(listed) = state.providers.by_issuer(issuer) else {
        return;
    };
    let Some(revoke) = revocation(&listed.provider, vault, tokens) else {
        return;
    };
    state.drain.spawn(async move {
        revoke.await;
    });
}

/// Revokes `tokens` now: the refresh and the access token at once, so both
/// together take one HTTP timeout at most. Returns how many the provider
/// revoked (none without a `revocation_endpoint`, a token kept, or one
/// that `vault` opens).
pub(crate) async fn revoke_tokens(provider: &Provider, vault: &TokenVault, tokens: StoredTokens) -> usize {
    match revocation(provider, vault, tokens) {
        Some(revoke) => revoke.await,
        None => 0,
    }
}

/// The revocation of `tokens`, opened now; `None` when there is none to revoke.
fn revocation(
    provider: &Provider,
    vault: &TokenVault,
    tokens: StoredTokens,
) -> Option<impl Future<Output = usize> + Send + 'static> {
    let refresh = tokens.refresh.and_then(|t| vault.open(Kind::Refresh, &t));
    let access = tokens.access.and_then(|t| vault.open(Kind::Access, &t));
    if refresh.is_none() && access.is_none() {
        return None;
    }
    let provider = provider.clone();
    Some(async move {
        let (refresh, access) = tokio::join!(
            revoke_one(&provider, refresh, TokenHint::Refresh),
            revoke_one(&provider, access, TokenHint::Access),
        );
        usize::from(refresh) + usize::from(access)
    })
}

/// Whether the provider revoked `token`.
async fn revoke_one(provider: &Provider, token: Option<Secret>, hint: TokenHint) -> bool {
    let Some(token) = token else { return false };
    match provider.revoke(token.expose(), hint).await {
        Ok(true) => {
            tracing::debug!(token_type_hint = hint.as_str(), "token revoked at the provider");
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::warn!(
                token_type_hint = hint.as_str(),
                reason = %e.reason,
                error = %e.detail,
                "could not revoke a token at the provider; it stays valid until it expires"
            );
            false
        }
    }
}

/// Revokes the tokens of the stored session `id` (when it keeps any) in
/// the background at the provider of `issuer` (that of its sign-in): for
/// paths that end a session other than the request's own (the sessions
/// page). Call it before deleting the session, whose record holds the tokens.
pub async fn revoke_session(state: &AppState, issuer: &str, id: &str) -> Result<(), StoreError> {
    if let Some(tokens) = session_tokens(&state.store, id).await? {
        revoke_in_background(state, issuer, tokens);
    }
    Ok(())
}

/// The tokens of the stored session `id`: those a refresh last wrote (on
/// any instance), else the session's own; `None` for an id that is no
/// session, or a session that keeps none.
pub(crate) async fn session_tokens(store: &Store, id: &str) -> Result<Option<StoredTokens>, StoreError> {
    let Ok(parsed) = Id::from_str(id) else { return Ok(None) };
    let backend = store.session_backend();
    if let Some(tokens) = backend
        .refreshed_tokens(id)
        .await?
        .and_then(|data| serde_json::from_str::<StoredTokens>(&data).ok())
    {
        return Ok(Some(tokens));
    }
    Ok(backend
        .load(&parsed)
        .await
        .map_err(|e| StoreError::Session(e.to_string()))?
        .and_then(|r| r.data.get(TOKENS_KEY).cloned())
        .and_then(|v| serde_json::from_value::<StoredTokens>(v).ok()))
}
