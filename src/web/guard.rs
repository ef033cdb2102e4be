//! Request-wide middleware: session lifetimes, login protection, turning
//! bare framework errors into pages, and the request span.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use tower_sessions::Session;

use super::AppState;
use super::error::AppError;
use super::redirect::login_url_for;
use crate::session::{ACTIVITY_KEY, Activity, LOGIN_KEY, LoginData, Verdict};
use crate::store::StoreError;
use crate::users::AuthSession;

/// Ends sessions past their idle timeout or absolute lifetime and records
/// activity; runs before the user is loaded, so an ended session is
/// anonymous on this very request. A session store failure is a 503 page.
pub async fn enforce_lifetimes(
    State(state): State<AppState>,
    session: Session,
    request: Request,
    next: Next,
) -> Response {
    let activity = match session.get::<Activity>(ACTIVITY_KEY).await {
        Ok(activity) => activity,
        Err(e) => return AppError::Session(e).into_response(),
    };
    if let Some(mut activity) = activity {
        let now = state.clock.unix();
        match state.lifetimes.judge(&activity, now) {
            Verdict::Fresh => {}
            Verdict::Touch => {
                activity.last_seen = now;
                if let Err(e) = session.insert(ACTIVITY_KEY, activity).await {
                    return AppError::Session(e).into_response();
                }
            }
            verdict @ (Verdict::Idle | Verdict::TooOld) => {
                let subject = session
                    .get::<LoginData>(LOGIN_KEY)
                    .await
                    .ok()
                    .flatten()
                    .map(|l| l.subject);
                let id = session.id().map(|id| id.to_string());
                if let Err(e) = session.flush().await {
                    return AppError::Session(e).into_response();
                }
                if let Some(id) = id
                    && let Err(e) = state.store.unlink_session(&id).await
                {
                    tracing::warn!(error = %e, "could not remove an expired session's link");
                }
                let reason = if verdict == Verdict::Idle {
                    "session_idle"
                } else {
                    "session_max_age"
                };
                tracing::info!(reason, subject = subject.as_deref().unwrap_or("-"), "session ended");
            }
        }
    }
    next.run(request).await
}

/// Protects routes: anonymous browsers are sent to log in (and back), API
/// clients (`Accept: application/json` or XHR) get 401. Use with
/// `route_layer(middleware::from_fn(require_login))`.
pub async fn require_login(auth: AuthSession, request: Request, next: Next) -> Response {
    if auth.user.is_some() {
        return next.run(request).await;
    }
    if wants_json(request.headers()) {
        let body = axum::Json(serde_json::json!({"error": "unauthenticated", "login": "/login"}));
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "OIDC realm=\"oidc-gate\"")],
            body,
        )
            .into_response();
    }
    let target = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    Redirect::to(&login_url_for(target)).into_response()
}

fn wants_json(headers: &HeaderMap) -> bool {
    let xhr = headers
        .get("x-requested-with")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("xmlhttprequest"));
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    xhr || (accept.contains("application/json") && !accept.contains("text/html"))
}

/// Replaces the body-less 5xx answers of the session and login layers
/// (store failures) with the "temporarily unavailable" page.
pub async fn render_bare_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.status().is_server_error() && !response.headers().contains_key(header::CONTENT_TYPE) {
        tracing::error!(status = %response.status(), "session or user store failed");
        return AppError::Store(StoreError::Session("store failure in the session layer".into())).into_response();
    }
    response
}

/// The span of a request: method and matched route, never the query string
/// (it carries authorization codes on `/callback`).
pub fn request_span(request: &Request) -> tracing::Span {
    // Fields are evaluated only when the span is enabled: nothing allocated otherwise.
    tracing::info_span!(
        "request",
        method = %request.method(),
        route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or("-"),
    )
}
