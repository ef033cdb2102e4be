//! Step-up: per-path `max_age` and `acr_values` ([`StepUp`]). A sign-in
//! for a path asks the provider for them, the callback checks the ID token
//! against what was asked, and each signed-in request on such a path is
//! checked against its session's sign-in time and `acr`.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_sessions::Session;

use super::{AppError, AppState};
use crate::gateway::paths::{PathVerdict, RequestPath, SignedIn, StepUp};
use crate::provider::VerifiedIdToken;
use crate::session::{LOGIN_KEY, LoginData};

/// How long a sign-in counts as made for this request (`max_age = 0`) at
/// least, whatever `OIDC_CLOCK_SKEW`: the way back from the provider takes
/// a few seconds, and the user must not be sent round again.
const MIN_FRESH_SECS: i64 = 30;

/// The step-up settings of the path a sign-in returns to (`next`, a path
/// of ours or an allowed absolute URL); none for a path that is no path.
pub(crate) fn of_target(state: &AppState, next: &str) -> StepUp {
    if state.paths.is_empty() {
        return StepUp::default();
    }
    let path = match next.starts_with('/') {
        true => next.split(['?', '#']).next().unwrap_or("/").to_owned(),
        false => match url::Url::parse(next) {
            Ok(url) => url.path().to_owned(),
            Err(_) => return StepUp::default(),
        },
    };
    match RequestPath::parse(&path) {
        Ok(path) => state.paths.judge(&path).step_up(),
        Err(_) => StepUp::default(),
    }
}

/// How recent and how strong a sign-in was, by its ID token, checked
/// against the step-up its authorization request asked for (OpenID Connect
/// Core 3.1.2.1 and 3.1.3.7: with `max_age`, `auth_time` is required).
pub(crate) fn signed_in_as(
    state: &AppState,
    claims: &VerifiedIdToken,
    asked: &StepUp,
    now: i64,
) -> Result<(i64, Option<String>), AppError> {
    let auth_time = claims.claims.get("auth_time").and_then(serde_json::Value::as_i64);
    let acr = claims.claims.get("acr").and_then(|v| v.as_str()).map(str::to_owned);
    if let Some(max_age) = asked.max_age {
        let Some(at) = auth_time else {
            return Err(AppError::Callback {
                reason: "auth_time_missing",
                detail: "max_age was asked for and the ID token has no auth_time",
            });
        };
        let skew = state.providers.first().provider.clock_skew().as_secs() as i64;
        if at < now - max_age as i64 - skew {
            return Err(AppError::Callback {
                reason: "auth_time_too_old",
                detail: "the ID token's auth_time is older than the max_age asked for",
            });
        }
    }
    if let Some(values) = &asked.acr_values
        && !acr.as_ref().is_some_and(|acr| values.contains(acr))
    {
        return Err(AppError::Callback {
            reason: "acr_not_satisfied",
            detail: "the ID token's acr is none of the acr_values asked for",
        });
    }
    Ok((auth_time.unwrap_or(now), acr))
}

/// The step-up a signed-in request's path asks for and its session's sign-in
/// does not meet; `None` when met (or none is asked). A bearer token's
/// identity has no sign-in here to judge: it never meets one.
pub(crate) async fn unmet(
    app: &AppState,
    session: &Session,
    verdict: &PathVerdict<'_>,
    by_bearer: bool,
) -> Result<Option<StepUp>, AppError> {
    let step_up = verdict.step_up();
    if step_up.is_none() {
        return Ok(None);
    }
    let login = match by_bearer {
        true => None,
        false => session.get::<LoginData>(LOGIN_KEY).await?,
    };
    let signed_in = SignedIn {
        auth_time: login.as_ref().and_then(|l| l.auth_time),
        acr: login.as_ref().and_then(|l| l.acr.as_deref()),
    };
    let grace = (app.providers.first().provider.clock_skew().as_secs() as i64).max(MIN_FRESH_SECS);
    Ok((!step_up.met_by(signed_in, app.clock.unix(), grace)).then_some(step_up))
}

/// The 401 of a signed-in request whose path needs a more recent or
/// stronger sign-in, to a client that cannot be sent to one (RFC 9470's
/// `insufficient_user_authentication`): what is needed, and where sign-in starts.
pub(crate) fn insufficient(login: &str, step_up: &StepUp) -> Response {
    let mut challenge = "OIDC realm=\"oidc-gate\", error=\"insufficient_user_authentication\"".to_owned();
    if let Some(max_age) = step_up.max_age {
        challenge.push_str(&format!(", max_age={max_age}"));
    }
    if let Some(values) = &step_up.acr_values {
        challenge.push_str(&format!(", acr_values=\"{}\"", values.join(" ")));
    }
    let body = serde_json::json!({
        "error": "insufficient_user_authentication",
        "error_description": "this path needs a more recent or stronger sign-in",
        "max_age": step_up.max_age,
        "acr_values": step_up.acr_values,
        "login": login,
    });
    let mut response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    if let Ok(value) = header::HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    response
}
