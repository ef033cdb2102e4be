//! The development provider's HTML pages (templates in `templates/dev/`),
//! served with headers that keep them out of caches and frames, and the
//! redirects that send the browser back to the client.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use url::Url;

/// The sign-in form shown by `GET /authorize`; its hidden fields carry the
/// authorization request, which `POST /authorize` validates again.
#[derive(Template)]
#[template(path = "dev/sign_in.html")]
pub(super) struct SignIn<'a> {
    /// Absolute URL of the authorization endpoint, where the form posts.
    pub(super) action: &'a str,
    pub(super) client_id: &'a str,
    pub(super) redirect_uri: &'a str,
    pub(super) scope: &'a str,
    pub(super) code_challenge: &'a str,
    pub(super) state: Option<&'a str>,
    pub(super) nonce: Option<&'a str>,
    pub(super) name: &'a str,
    pub(super) email: &'a str,
    /// The `acr` the ID token will carry (empty: none).
    pub(super) acr: &'a str,
    /// Why the previous submission was not accepted.
    pub(super) error: Option<&'a str>,
}

/// A refused request that must not be redirected.
#[derive(Template)]
#[template(path = "dev/error.html")]
struct ErrorPage<'a> {
    message: &'a str,
}

/// Shown by `/end_session` when there is nowhere to send the user back to.
#[derive(Template)]
#[template(path = "dev/signed_out.html")]
struct SignedOut;

/// Renders `page` with `status` and defensive headers.
pub(super) fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
                (header::X_FRAME_OPTIONS, "DENY"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'; \
                     frame-ancestors 'none'; base-uri 'none'",
                ),
                (header::REFERRER_POLICY, "no-referrer"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            body,
        )
            .into_response(),
        Err(err) => {
            tracing::error!(%err, "dev provider: rendering a page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal error").into_response()
        }
    }
}

/// A 400 page explaining why the request was refused.
pub(super) fn error_page(message: &str) -> Response {
    html(StatusCode::BAD_REQUEST, &ErrorPage { message })
}

/// The "you are signed out" page.
pub(super) fn signed_out() -> Response {
    html(StatusCode::OK, &SignedOut)
}

/// 303 to `base` with `pairs` appended to its query.
pub(super) fn see_other(base: &str, pairs: &[(&str, &str)]) -> Response {
    let Ok(mut url) = Url::parse(base) else {
        return error_page("The registered redirect URI is not a valid absolute URL.");
    };
    if !pairs.is_empty() {
        url.query_pairs_mut().extend_pairs(pairs);
    }
    match HeaderValue::from_str(url.as_str()) {
        Ok(location) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, location),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
            ],
        )
            .into_response(),
        Err(_) => error_page("The redirect URI cannot be used in a redirect."),
    }
}
