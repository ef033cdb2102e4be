//! The application error: every failure a request can meet, rendered as a
//! clear HTML page with the right status, and logged with its reason code.

use askama::Template;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::redirect::Links;
use crate::provider::{ProviderError, Reason};
use crate::store::StoreError;

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The callback is not the answer to a login this session started.
    #[error("invalid callback ({reason}): {detail}")]
    Callback {
        /// Reason code, e.g. `state_mismatch`.
        reason: &'static str,
        /// Detail for the log.
        detail: &'static str,
    },
    /// The provider answered the login with `error=`.
    // Debug form: the code comes from the query string, CR/LF and all.
    #[error("the provider refused the login: {code:?}")]
    ProviderRefused {
        /// The OAuth error code (`access_denied`, …), truncated.
        code: String,
    },
    /// `?provider=` names no configured provider.
    #[error("unknown provider")]
    UnknownProvider,
    /// Talking to the provider failed, or its answer failed validation.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The logout form did not carry this session's CSRF token.
    #[error("logout without a valid CSRF token")]
    Csrf,
    /// The database is unreachable.
    #[error("store unavailable: {0}")]
    Store(#[from] StoreError),
    /// The session store is unreachable.
    #[error("session store unavailable: {0}")]
    Session(#[from] tower_sessions::session::Error),
    /// No such page.
    #[error("not found")]
    NotFound,
    /// The request's path is not a path (a bad escape, raw control bytes).
    #[error("malformed request path")]
    BadPath,
    /// The gateway's upstream failed: refused, closed, or answered garbage.
    #[error("upstream failed ({reason}): {detail}")]
    Upstream {
        /// Reason code, e.g. `upstream_refused`.
        reason: &'static str,
        /// The cause for the log (no URL, header or body in it).
        detail: String,
    },
    /// The gateway's upstream did not answer in time.
    #[error("upstream timed out ({reason})")]
    UpstreamTimeout {
        /// `upstream_timeout` (no response headers) or `upstream_connect_timeout`.
        reason: &'static str,
    },
    /// The session's access token expired and the provider could not
    /// refresh it (unreachable, or answering errors): the session stays.
    #[error("the access token could not be refreshed: {0}")]
    TokenUnavailable(String),
    /// The request body the client sent could not be read (bad chunked framing).
    #[error("unreadable request body: {0}")]
    RequestBody(String),
    /// The client's address used up its requests on a rate-limited route.
    #[error("rate limited on the {route} routes for {retry_after} s")]
    RateLimited {
        /// The route class (`login`, `callback`, `backchannel_logout`).
        route: &'static str,
        /// Seconds until its next request is let through (`Retry-After`).
        retry_after: u64,
    },
}

impl From<axum_login::Error<crate::users::Backend>> for AppError {
    fn from(e: axum_login::Error<crate::users::Backend>) -> Self {
        match e {
            axum_login::Error::Session(e) => AppError::Session(e),
            axum_login::Error::Backend(e) => AppError::Store(e),
        }
    }
}

impl AppError {
    /// The short reason code logged for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            AppError::Callback { reason, .. } => reason,
            AppError::ProviderRefused { .. } => "provider_error",
            AppError::UnknownProvider => "provider_unknown",
            AppError::Provider(e) => e.reason.code(),
            AppError::Csrf => "csrf_mismatch",
            AppError::Store(_) | AppError::Session(_) => "store_unavailable",
            AppError::TokenUnavailable(_) => "refresh_unavailable",
            AppError::NotFound => "not_found",
            AppError::BadPath => "bad_path",
            AppError::Upstream { reason, .. } | AppError::UpstreamTimeout { reason } => reason,
            AppError::RequestBody(_) => "request_body",
            AppError::RateLimited { .. } => "rate_limited",
        }
    }

    /// The HTTP status shown.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Callback { .. } => StatusCode::BAD_REQUEST,
            AppError::ProviderRefused { code } if code == "access_denied" => StatusCode::FORBIDDEN,
            AppError::ProviderRefused { .. } => StatusCode::BAD_REQUEST,
            AppError::UnknownProvider => StatusCode::BAD_REQUEST,
            AppError::Provider(e) if e.reason.is_upstream_failure() => StatusCode::BAD_GATEWAY,
            AppError::Provider(e) if matches!(e.reason, Reason::IdTokenNonce | Reason::CodeRejected) => {
                StatusCode::BAD_REQUEST
            }
            AppError::Provider(_) => StatusCode::UNAUTHORIZED,
            AppError::Csrf => StatusCode::FORBIDDEN,
            AppError::Store(_) | AppError::Session(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::TokenUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::BadPath => StatusCode::BAD_REQUEST,
            AppError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            AppError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            AppError::RequestBody(_) => StatusCode::BAD_REQUEST,
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn page(&self) -> ErrorPage {
        let (title, message, retry) = match self {
            AppError::Callback {
                reason: "state_missing" | "state_mismatch",
                ..
            } => (
                "This sign-in link is not valid",
                "The answer from the sign-in provider does not belong to a sign-in started here, \
                 or it was already used. Nothing was changed; please start again.",
                true,
            ),
            AppError::Callback {
                reason: "logged_out_during_login",
                ..
            } => (
                "You were signed out while signing in",
                "The sign-in provider ended this sign-in while it was being completed. \
                 You are not signed in; please sign in again.",
                true,
            ),
            AppError::Callback { .. } => (
                "This sign-in answer is not valid",
                "The sign-in provider's answer was incomplete. Nothing was changed; please start again.",
                true,
            ),
            AppError::ProviderRefused { code } if code == "access_denied" => (
                "Sign-in was cancelled",
                "The sign-in provider reports that access was denied or the sign-in was cancelled. \
                 You are not signed in.",
                true,
            ),
            AppError::ProviderRefused { .. } => (
                "The sign-in provider refused the sign-in",
                "The sign-in provider answered with an error. You are not signed in; \
                 try again, and contact the site's operator if it keeps happening.",
                true,
            ),
            AppError::UnknownProvider => (
                "Unknown sign-in provider",
                "This site does not know the sign-in provider this link names. \
                 Start again and choose one of those offered.",
                true,
            ),
            AppError::Provider(e) if e.reason.is_upstream_failure() => (
                "The sign-in provider is not answering properly",
                "We could not complete the sign-in with the provider. You are not signed in; \
                 please try again in a moment.",
                true,
            ),
            AppError::Provider(e) if e.reason == Reason::CodeRejected => (
                "This sign-in could not be completed",
                "The sign-in provider did not accept this sign-in: it may have expired, \
                 been used already, or not come from the provider. You are not signed in; \
                 please sign in again.",
                true,
            ),
            AppError::Provider(_) => (
                "Your sign-in could not be verified",
                "The identity assertion from the sign-in provider failed our security checks, \
                 so you were not signed in. Please try again.",
                true,
            ),
            AppError::Csrf => (
                "Log out was not confirmed",
                "The log-out request did not come from this site's own button, so nothing was done. \
                 Use the Log out button on the home page.",
                false,
            ),
            AppError::Store(_) | AppError::Session(_) => (
                "Temporarily unavailable",
                "Our session storage is not answering right now. You have not been logged out; \
                 please try again in a moment.",
                false,
            ),
            AppError::TokenUnavailable(_) => (
                "Sign-in provider unavailable",
                "Your sign-in needs renewing, and the sign-in provider is not answering right now. \
                 You have not been logged out; please try again in a moment.",
                false,
            ),
            AppError::NotFound => ("Page not found", "There is no page at this address.", false),
            AppError::BadPath => (
                "This address is not valid",
                "The address contains characters or escapes that are not allowed in a path.",
                false,
            ),
            AppError::Upstream { .. } => (
                "The application is not answering properly",
                "The application behind this gateway could not be reached or gave an invalid answer. \
                 You have not been signed out; please try again in a moment.",
                false,
            ),
            AppError::UpstreamTimeout { .. } => (
                "The application is taking too long",
                "The application behind this gateway did not answer in time. \
                 You have not been signed out; please try again in a moment.",
                false,
            ),
            AppError::RequestBody(_) => (
                "The request could not be read",
                "The data sent with this request was malformed or cut off. Nothing was passed on.",
                false,
            ),
            AppError::RateLimited { .. } => (
                "Too many attempts",
                "Too many sign-in requests came from your network address in a short time. \
                 Please wait a minute before trying again.",
                false,
            ),
        };
        ErrorPage {
            status: self.status().as_u16(),
            title,
            message,
            retry,
            reason: self.reason(),
        }
    }
}

/// An error page: what it says. Answered by [`ErrorPage::response`] and
/// rendered on the way out by [`render_error_pages`], which knows where the
/// site's own links point (the app's `/login` or the gateway's
/// `/oauth2/start`).
#[derive(Debug, Clone)]
pub struct ErrorPage {
    /// HTTP status code shown on the page.
    pub status: u16,
    /// Headline.
    pub title: &'static str,
    /// What happened and what to do.
    pub message: &'static str,
    /// Whether to offer "Sign in again".
    pub retry: bool,
    /// Reason code, shown small for support requests.
    pub reason: &'static str,
}

impl ErrorPage {
    /// The answer: its status, an HTML content type and, until
    /// [`render_error_pages`] renders it, no body.
    pub fn response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, [(header::CONTENT_TYPE, HeaderValue::from_static(HTML))]).into_response();
        response.extensions_mut().insert(self);
        response
    }
}

const HTML: &str = "text/html; charset=utf-8";

/// The error page as rendered.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorView<'a> {
    page: &'a ErrorPage,
    links: &'a Links,
}

/// Renders the [`ErrorPage`] of a response (if it has one) with `links`,
/// keeping its status and headers. Use with `tower::util::MapResponseLayer`
/// outside every layer that may answer an error.
pub fn render_error_pages(links: &Links, response: Response) -> Response {
    // Most answers carry no error page: passed on without being taken apart.
    if response.extensions().get::<ErrorPage>().is_none() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Some(page) = parts.extensions.remove::<ErrorPage>() else {
        return Response::from_parts(parts, body);
    };
    match (ErrorView { page: &page, links }).render() {
        Ok(html) => Response::from_parts(parts, Body::from(html)),
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

impl AppError {
    /// The page of an error already recorded (by an audit event): logged
    /// again only when it is the server's or the provider's fault, at error
    /// level, where alerts look.
    pub(crate) fn into_recorded_response(self) -> Response {
        if self.status().is_server_error() {
            return self.into_response();
        }
        self.page().response()
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(reason = self.reason(), error = %self, "request failed");
        } else if let AppError::RateLimited { .. } = self {
            // A flood of these must not flood the log: they are counted in the metrics.
            tracing::debug!(reason = self.reason(), error = %self, "request rejected");
        } else {
            tracing::info!(reason = self.reason(), error = %self, "request rejected");
        }
        let mut response = self.page().response();
        if let AppError::RateLimited { retry_after, .. } = self {
            response.headers_mut().insert(header::RETRY_AFTER, retry_after.into());
        }
        response
    }
}

/// Headers of a rendered page: its type, `Cache-Control`, `Referrer-Policy`,
/// `X-Content-Type-Options`, `Content-Security-Policy`, `X-Request-Id`,
/// `Content-Length`, and perhaps `Strict-Transport-Security` and a cookie.
const PAGE_HEADERS: usize = 9;

/// Room reserved for a rendered page at least: askama's own estimate can
/// fall short of a page (the secret page's string grew, and was copied,
/// on every request under callgrind).
const PAGE_BYTES: usize = 2048;

/// Renders a template as an HTML response with `status`.
pub fn render<T: Template>(status: StatusCode, page: &T) -> Response {
    let mut html = String::with_capacity(T::SIZE_HINT.max(PAGE_BYTES));
    match page.render_into(&mut html).map(|()| html) {
        Ok(html) => {
            // As `(status, Html(html))` answers, with room for the headers
            // every page gets on its way out at once, rather than growing
            // the map as they come.
            let mut response = Response::new(Body::from(html));
            *response.status_mut() = status;
            let headers = response.headers_mut();
            headers.reserve(PAGE_HEADERS);
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}
