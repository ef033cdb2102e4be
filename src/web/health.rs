//! Health checks for load balancers and orchestrators, the same in every
//! mode: `/ping` (the process answers), `/ready` (send traffic here: not
//! stopping, the store answers, the provider is known); and the app's
//! `/healthz` (the store answers).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;

/// `/ping` and `/ready`.
pub fn router() -> Router<AppState> {
    Router::new().route("/ping", get(ping)).route("/ready", get(ready))
}

/// `/ping`: the process answers (liveness), also while it drains.
async fn ping() -> &'static str {
    "OK"
}

/// `/ready`: `200 OK` when this instance should get traffic, else `503`
/// with why.
async fn ready(State(state): State<AppState>) -> Response {
    match readiness(&state).await {
        Ok(()) => (StatusCode::OK, "OK").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

/// Whether sign-ins and signed-in requests can be served here: the server
/// is not stopping, the store answers and the provider's discovery is known.
async fn readiness(state: &AppState) -> Result<(), &'static str> {
    if state.drain.is_draining() {
        return Err("shutting down");
    }
    if let Err(e) = state.store.ping().await {
        tracing::warn!(error = %e, "not ready: store unavailable");
        return Err("store unavailable");
    }
    for listed in state.providers.iter() {
        if let Err(e) = listed.provider.snapshot().await {
            tracing::warn!(provider = listed.id, reason = %e.reason, "not ready: provider unavailable");
            return Err("provider unavailable");
        }
    }
    Ok(())
}

/// `/healthz` (the app): `200 ok` while the store answers, also while
/// draining (it says the process is healthy, not that it wants traffic).
pub(crate) async fn healthz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: store unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response()
        }
    }
}
