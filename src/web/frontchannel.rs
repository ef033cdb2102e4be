//! `GET /frontchannel-logout?iss=…&sid=…`: the provider, in a hidden frame
//! of the user's browser, tells us a session ended there (OpenID Connect
//! Front-Channel Logout 1.0); we end the sessions of that provider session
//! (`sid`) here, on every instance, as back-channel logout does.
//!
//! The request is a plain link anyone can open, so it does no more than
//! its two parameters allow: the `iss` must be our issuer exactly, and only
//! the sessions signed in with that `sid` end (other sessions of the same
//! user stay). Without `iss` and `sid` (register the URI with
//! `frontchannel_logout_session_required`) nothing ends. The answer may be
//! framed by the provider's origin only, and is never cached. Tokens are not
//! revoked here (see [`super::revoke`]).

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::audit::{self, LogoutKind, Origin};
use super::auth::param;
use super::backchannel::end_linked_sessions;
use super::ratelimit::{Limited, class};

/// Longest `sid` looked up; providers' are far shorter.
const MAX_SID_LEN: usize = 255;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/frontchannel-logout", get(frontchannel_logout))
}

pub(crate) async fn frontchannel_logout(
    _: Limited<class::BackchannelLogout>,
    State(state): State<AppState>,
    origin: Origin,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.as_deref();
    // The provider the request names; one we do not know is refused.
    let listed = param(query, "iss").and_then(|iss| state.providers.by_issuer(&iss));
    let issuer = listed.map_or(state.providers.first().provider.issuer(), |l| l.provider.issuer());
    let refused = |reason: &str| {
        audit::logout_refused(&origin, reason, issuer, None);
        answer(issuer, StatusCode::BAD_REQUEST, "This logout request is not valid.")
    };
    let (Some(iss), Some(sid)) = (param(query, "iss"), param(query, "sid")) else {
        return refused("frontchannel_params_missing");
    };
    if iss != issuer {
        return refused("frontchannel_iss_mismatch");
    }
    if sid.is_empty() || sid.len() > MAX_SID_LEN {
        return refused("frontchannel_sid_invalid");
    }
    match end_linked_sessions(&state, issuer, None, Some(&sid)).await {
        Ok(ended) => {
            // A `sid` we do not know is no error: that session may have ended
            // here already. Only real logouts are counted.
            if ended > 0 {
                audit::logged_out(&origin, LogoutKind::FrontChannel, issuer, None, None, ended);
            }
            answer(issuer, StatusCode::OK, "Signed out.")
        }
        Err(e) => {
            tracing::error!(error = %e, "front-channel logout: store unavailable");
            answer(
                issuer,
                StatusCode::SERVICE_UNAVAILABLE,
                "The sign-out could not be completed; try again.",
            )
        }
    }
}

/// A small page the origin of `issuer`, the provider, alone may frame, never cached.
fn answer(issuer: &str, status: StatusCode, message: &'static str) -> Response {
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign-out</title></head>\
         <body><p>{message}</p></body></html>"
    );
    let csp = format!("default-src 'none'; frame-ancestors {}", provider_origin(issuer));
    let csp = HeaderValue::from_str(&csp).unwrap_or_else(|_| HeaderValue::from_static("frame-ancestors 'none'"));
    (
        status,
        [
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Html(page),
    )
        .into_response()
}

/// The provider's origin (`https://idp.example.com`), or `'none'` when the
/// issuer has no origin that could frame us.
fn provider_origin(issuer: &str) -> String {
    match url::Url::parse(issuer).map(|u| u.origin()) {
        Ok(origin) if origin.is_tuple() => origin.ascii_serialization(),
        _ => "'none'".to_owned(),
    }
}
