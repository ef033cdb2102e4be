//! What went wrong with the upstream, as a reason code and a status: `502`
//! when it refused, closed or answered garbage, `504` when it was too slow,
//! `400` when the client's own body was unreadable. Never a `500`.

use std::error::Error as StdError;
use std::io;

use axum::http::Method;
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Error as ClientError;

use crate::web::AppError;

/// A failed forward, ready to be answered.
#[derive(Debug)]
pub(super) struct Failure(AppError);

impl From<AppError> for Failure {
    fn from(e: AppError) -> Self {
        Self(e)
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        let detail = chain(&e);
        let io_kind = find::<io::Error>(&e).map(io::Error::kind);
        let hyper = find::<hyper::Error>(&e);
        let reason = if e.is_connect() {
            match io_kind {
                Some(io::ErrorKind::TimedOut) => {
                    return Self(AppError::UpstreamTimeout {
                        reason: "upstream_connect_timeout",
                    });
                }
                Some(io::ErrorKind::ConnectionRefused) => "upstream_refused",
                _ if find::<rustls::Error>(&e).is_some() => "upstream_tls",
                _ => "upstream_connect",
            }
        } else if hyper.is_some_and(hyper::Error::is_user) {
            // Our side of the request failed: the client's body (bad chunked
            // framing, or the client went away mid-upload).
            return Self(AppError::RequestBody(detail));
        } else if hyper.is_some_and(hyper::Error::is_parse) {
            "upstream_bad_response"
        } else if closed_connection(&e) {
            "upstream_closed"
        } else {
            "upstream_error"
        };
        Self(AppError::Upstream { reason, detail })
    }
}

impl Failure {
    /// The reason code when the upstream is at fault (`upstream_refused`,
    /// `upstream_timeout`, …); `None` when the client's own body was.
    pub(super) fn upstream_reason(&self) -> Option<&'static str> {
        match &self.0 {
            AppError::Upstream { reason, .. } | AppError::UpstreamTimeout { reason } => Some(reason),
            _ => None,
        }
    }

    /// The answer: the error page, or `{"error": …, "reason": …}` for API
    /// clients. Logged with its reason and cause; no URL, header or body.
    pub(super) fn respond(self, method: &Method, wants_json: bool) -> Response {
        let Self(error) = self;
        if !wants_json {
            return error.into_response();
        }
        let status = error.status();
        let reason = error.reason();
        if status.is_server_error() {
            tracing::error!(reason, %method, error = %error, "request failed");
        } else {
            tracing::info!(reason, %method, error = %error, "request rejected");
        }
        let kind = match error {
            AppError::UpstreamTimeout { .. } => "upstream_timeout",
            AppError::RequestBody(_) => "bad_request",
            _ => "upstream_unavailable",
        };
        (
            status,
            axum::Json(serde_json::json!({ "error": kind, "reason": reason })),
        )
            .into_response()
    }
}

/// Whether the connection closed under the request (a pooled connection the
/// upstream had closed, e.g. after a restart): worth one more try on a new
/// connection for a request that may be repeated.
pub(super) fn closed_connection(e: &ClientError) -> bool {
    if e.is_connect() {
        return false;
    }
    let hyper_closed = find::<hyper::Error>(e).is_some_and(|h| h.is_incomplete_message() || h.is_canceled());
    let io_closed = find::<io::Error>(e).is_some_and(|io| {
        matches!(
            io.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof
        )
    });
    hyper_closed || io_closed
}

/// The first error of type `T` in `e`'s source chain.
fn find<'a, T: StdError + 'static>(e: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        // An `io::Error`'s `source()` skips the error it wraps (a TLS error).
        if let Some(found) = e
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
            .and_then(|inner| find(inner))
        {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// `e` and its causes on one line, for the log.
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}
