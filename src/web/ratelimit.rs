//! The rate limits of the routes, as an extractor: a handler whose first
//! argument is [`Limited<C>`] takes one request from the client address's
//! bucket of class `C`, or is answered `429 Too Many Requests` with
//! `Retry-After`: the error page for browsers, JSON for API clients (and
//! for the provider's back-channel calls).
//!
//! Limiting another route is one line: `_: Limited<class::Login>` (or its
//! own class) as the first argument of its handler. The bearer-token path
//! is not a route of its own: it takes [`Limited::check`] with
//! [`class::Bearer`] when a token must be verified (not for a cached one).

use std::marker::PhantomData;
use std::net::IpAddr;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::guard::wants_json;
use super::{AppError, AppState, ClientIp};
use crate::ratelimit::RouteClass;

/// The route classes, as types for [`Limited`].
pub mod class {
    use crate::ratelimit::RouteClass;

    /// A route class of [`super::Limited`].
    pub trait Class {
        /// Which one.
        const CLASS: RouteClass;
    }

    /// `/login`, `/oauth2/start`, and a protected page's sign-in start
    /// (`auth::sign_in_for`).
    #[derive(Debug)]
    pub struct Login;
    /// `/callback`, `/oauth2/callback`.
    #[derive(Debug)]
    pub struct Callback;
    /// `/backchannel-logout`, `/oauth2/backchannel-logout`.
    #[derive(Debug)]
    pub struct BackchannelLogout;
    /// A bearer token to verify, on any protected path.
    #[derive(Debug)]
    pub struct Bearer;

    impl Class for Login {
        const CLASS: RouteClass = RouteClass::Login;
    }
    impl Class for Callback {
        const CLASS: RouteClass = RouteClass::Callback;
    }
    impl Class for BackchannelLogout {
        const CLASS: RouteClass = RouteClass::BackchannelLogout;
    }
    impl Class for Bearer {
        const CLASS: RouteClass = RouteClass::Bearer;
    }
}

/// Proof that a request was within the rate limit of route class `C`
/// (see the module documentation).
#[derive(Debug)]
pub struct Limited<C>(PhantomData<C>);

impl<C: class::Class, S: Send + Sync> FromRequestParts<S> for Limited<C>
where
    AppState: FromRef<S>,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        Self::of(&AppState::from_ref(state), parts).map_err(|e| e.response(&parts.headers))
    }
}

impl<C: class::Class> Limited<C> {
    /// Takes one request of the bucket of class `C` of the client of the
    /// request `parts` (see [`ClientIp`]).
    pub(crate) fn of(app: &AppState, parts: &Parts) -> Result<Self, Exceeded> {
        let ClientIp(client) = ClientIp::of(&parts.extensions);
        Self::check(app, client)
    }

    /// Takes one request of `client`'s bucket of class `C`.
    pub(crate) fn check(app: &AppState, client: IpAddr) -> Result<Self, Exceeded> {
        if !app.limits.limits(C::CLASS) {
            return Ok(Self(PhantomData));
        }
        match app.limits.check(C::CLASS, client) {
            Ok(()) => Ok(Self(PhantomData)),
            Err(wait) => Err(Exceeded { class: C::CLASS, wait }),
        }
    }
}

/// A request over its rate limit.
#[derive(Debug)]
pub(crate) struct Exceeded {
    class: RouteClass,
    /// Until the bucket has room again.
    wait: Duration,
}

impl Exceeded {
    /// The `429` for a request with `headers`.
    pub(crate) fn response(self, headers: &HeaderMap) -> Response {
        too_many_requests(self.class, self.wait, headers)
    }
}

/// The `429`: its page, or `{"error": "too_many_requests", "reason":
/// "rate_limited", "retry_after": seconds}`; `Retry-After` in both.
fn too_many_requests(class: RouteClass, wait: Duration, headers: &HeaderMap) -> Response {
    crate::metrics::rate_limited(class.name());
    // Whole seconds, rounded up: asking again after that many is let through.
    let retry_after = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    let error = AppError::RateLimited {
        route: class.name(),
        retry_after,
    };
    if !class.machine() && !wants_json(headers) {
        return error.into_response();
    }
    tracing::debug!(reason = error.reason(), error = %error, "request rejected");
    let body = serde_json::json!({"error": "too_many_requests", "reason": error.reason(), "retry_after": retry_after});
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, retry_after)],
        axum::Json(body),
    )
        .into_response()
}
