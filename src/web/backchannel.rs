//! `POST /backchannel-logout`: the provider tells us a user's session ended
//! there (OpenID Connect Back-Channel Logout 1.0); we end the matching
//! sessions here, by `sid` or by `sub`.

use std::str::FromStr;

use axum::Router;
use axum::extract::{RawForm, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tower_sessions::SessionStore;
use tower_sessions::session::Id;

use super::AppState;
use super::auth::param;
use crate::store::StoreError;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/backchannel-logout", post(backchannel_logout))
}

fn answer(status: StatusCode, error: Option<&str>) -> Response {
    let headers = [(header::CACHE_CONTROL, "no-store")];
    match error {
        None => (status, headers).into_response(),
        Some(e) => (status, headers, axum::Json(serde_json::json!({ "error": e }))).into_response(),
    }
}

pub(crate) async fn backchannel_logout(State(state): State<AppState>, RawForm(form): RawForm) -> Response {
    let Some(token) = param(std::str::from_utf8(&form).ok(), "logout_token") else {
        tracing::info!(reason = "logout_token_missing", "back-channel logout rejected");
        return answer(StatusCode::BAD_REQUEST, Some("invalid_request"));
    };
    let request = match state.provider.verify_logout_token(&token).await {
        Ok(r) => r,
        Err(e) if e.reason.is_upstream_failure() => {
            tracing::warn!(reason = %e.reason, error = %e.detail, "back-channel logout: provider keys unavailable");
            return answer(StatusCode::SERVICE_UNAVAILABLE, Some("temporarily_unavailable"));
        }
        Err(e) => {
            tracing::info!(reason = %e.reason, error = %e.detail, "back-channel logout rejected");
            return answer(StatusCode::BAD_REQUEST, Some("invalid_request"));
        }
    };
    match end_sessions(&state, &request).await {
        Ok(Some(ended)) => {
            tracing::info!(subject = ?request.subject, ended, "back-channel logout");
            crate::metrics::logout(crate::metrics::LogoutKind::BackChannel);
            crate::metrics::sessions_ended("back_channel", ended as u64);
            answer(StatusCode::OK, None)
        }
        Ok(None) => {
            tracing::info!(reason = "logout_token_replay", "back-channel logout rejected");
            answer(StatusCode::BAD_REQUEST, Some("invalid_request"))
        }
        Err(e) => {
            tracing::error!(error = %e, "back-channel logout: store unavailable");
            answer(StatusCode::SERVICE_UNAVAILABLE, Some("temporarily_unavailable"))
        }
    }
}

/// Ends the sessions a logout request names; `None` if its `jti` was seen
/// before. The `jti` is claimed first, so that a replay racing the original
/// does nothing, and released if the sessions could not all be ended: the
/// provider retries a failed logout with the same token.
async fn end_sessions(state: &AppState, request: &crate::provider::LogoutRequest) -> Result<Option<usize>, StoreError> {
    let issuer = state.provider.issuer();
    if !state
        .store
        .remember_logout_jti(issuer, &request.jti, request.remember_until)
        .await?
    {
        return Ok(None);
    }
    let ended = end_linked_sessions(state, issuer, request).await;
    if ended.is_err()
        && let Err(e) = state.store.forget_logout_jti(issuer, &request.jti).await
    {
        tracing::warn!(error = %e, "back-channel logout: could not release the token id for a retry");
    }
    ended.map(Some)
}

async fn end_linked_sessions(
    state: &AppState,
    issuer: &str,
    request: &crate::provider::LogoutRequest,
) -> Result<usize, StoreError> {
    let ids = state
        .store
        .linked_sessions(issuer, request.subject.as_deref(), request.sid.as_deref())
        .await?;
    let sessions = state.store.session_backend();
    for id in &ids {
        if let Ok(parsed) = Id::from_str(id) {
            sessions
                .delete(&parsed)
                .await
                .map_err(|e| StoreError::Session(e.to_string()))?;
        }
        state.store.unlink_session(id).await?;
    }
    Ok(ids.len())
}
