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
use super::audit::{self, LogoutKind, Origin};
use super::auth::param;
use super::ratelimit::{Limited, class};
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

pub(crate) async fn backchannel_logout(
    _: Limited<class::BackchannelLogout>,
    State(state): State<AppState>,
    origin: Origin,
    RawForm(form): RawForm,
) -> Response {
    let Some(token) = param(std::str::from_utf8(&form).ok(), "logout_token") else {
        audit::logout_refused(
            &origin,
            "logout_token_missing",
            state.providers.first().provider.issuer(),
            None,
        );
        return answer(StatusCode::BAD_REQUEST, Some("invalid_request"));
    };
    // The provider the token says it comes from checks it (its signature
    // and `iss` among the rest); one we do not know: the first, which
    // refuses it.
    let provider = named_issuer(&token)
        .and_then(|iss| state.providers.by_issuer(&iss))
        .map_or(&state.providers.first().provider, |listed| &listed.provider);
    let issuer = provider.issuer();
    let request = match provider.verify_logout_token(&token).await {
        Ok(r) => r,
        Err(e) if e.reason.is_upstream_failure() => {
            tracing::warn!(reason = %e.reason, error = %e.detail, "back-channel logout: provider keys unavailable");
            return answer(StatusCode::SERVICE_UNAVAILABLE, Some("temporarily_unavailable"));
        }
        Err(e) => {
            audit::logout_refused(&origin, e.reason.code(), issuer, Some(&e.detail));
            return answer(StatusCode::BAD_REQUEST, Some("invalid_request"));
        }
    };
    match end_sessions(&state, issuer, &request).await {
        Ok(Some(ended)) => {
            let subject = request.subject.as_deref();
            audit::logged_out(&origin, LogoutKind::BackChannel, issuer, subject, None, ended);
            answer(StatusCode::OK, None)
        }
        Ok(None) => {
            audit::logout_refused(&origin, "logout_token_replay", issuer, None);
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
async fn end_sessions(
    state: &AppState,
    issuer: &str,
    request: &crate::provider::LogoutRequest,
) -> Result<Option<usize>, StoreError> {
    if !state
        .store
        .remember_logout_jti(issuer, &request.jti, request.remember_until)
        .await?
    {
        return Ok(None);
    }
    let ended = end_linked_sessions(state, issuer, request.subject.as_deref(), request.sid.as_deref()).await;
    if ended.is_err()
        && let Err(e) = state.store.forget_logout_jti(issuer, &request.jti).await
    {
        tracing::warn!(error = %e, "back-channel logout: could not release the token id for a retry");
    }
    ended.map(Some)
}

/// The `iss` a JWT names, unverified (it only picks the provider that
/// then verifies the token).
fn named_issuer(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

/// Ends the sessions of `issuer` that `subject` and/or `sid` name (none
/// when both are `None`), on every instance: each is deleted from the shared
/// session store, then unlinked. Returns how many were ended.
pub(crate) async fn end_linked_sessions(
    state: &AppState,
    issuer: &str,
    subject: Option<&str>,
    sid: Option<&str>,
) -> Result<usize, StoreError> {
    let ids = state.store.linked_sessions(issuer, subject, sid).await?;
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
