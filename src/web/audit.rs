//! Audit events: one log event, target `audit` at info, for every sign-in,
//! sign-in refusal, logout and session end, with who (subject, issuer),
//! why (reason code or kind), from where (client address) and which request
//! (request id): enough to answer "who signed in from where, and when did
//! that session end" from the logs alone.
//!
//! Never a token, an authorization code, a cookie or a session id: the
//! session is named by its user and the request that ended it.

use std::convert::Infallible;
use std::fmt::Display;
use std::net::IpAddr;

use axum::extract::FromRequestParts;
use axum::http::Extensions;
use axum::http::request::Parts;

use super::client_ip::ClientIp;
use super::request_id::RequestId;
use crate::metrics;

/// The request an audit event belongs to: where it came from and its id.
#[derive(Clone, Debug)]
pub struct Origin {
    /// The client's address ([`ClientIp`]).
    pub client_ip: IpAddr,
    /// The request's id ([`RequestId`]).
    pub request_id: RequestId,
}

impl Origin {
    /// The origin of a request, from the extensions the request layer set.
    pub fn of(extensions: &Extensions) -> Self {
        Self {
            client_ip: ClientIp::of(extensions).0,
            request_id: RequestId::of(extensions),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(Self::of(&parts.extensions))
    }
}

/// How a session was logged out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogoutKind {
    /// The Log out button (`POST /logout`, the gateway's sign-out form); the
    /// provider has no `end_session_endpoint`, so it ended here only.
    Button,
    /// The Log out button, and the browser sent on to the provider's
    /// `end_session_endpoint` (RP-initiated logout).
    RpInitiated,
    /// The provider's back-channel logout token.
    BackChannel,
    /// The provider's front-channel logout (`/frontchannel-logout`).
    FrontChannel,
}

impl LogoutKind {
    /// The kind as logged.
    pub fn code(self) -> &'static str {
        match self {
            LogoutKind::Button => "button",
            LogoutKind::RpInitiated => "rp_initiated",
            LogoutKind::BackChannel => "back_channel",
            LogoutKind::FrontChannel => "front_channel",
        }
    }

    /// The kind as counted in the metrics.
    fn counted(self) -> metrics::LogoutKind {
        match self {
            LogoutKind::Button => metrics::LogoutKind::Button,
            LogoutKind::RpInitiated => metrics::LogoutKind::RpInitiated,
            LogoutKind::BackChannel => metrics::LogoutKind::BackChannel,
            LogoutKind::FrontChannel => metrics::LogoutKind::FrontChannel,
        }
    }

    /// Why the sessions ended, as counted in the metrics.
    fn session_end(self) -> &'static str {
        match self {
            LogoutKind::Button | LogoutKind::RpInitiated => "logout",
            LogoutKind::BackChannel => "back_channel",
            LogoutKind::FrontChannel => "front_channel",
        }
    }
}

/// A user signed in: a new session began.
pub(crate) fn signed_in(origin: &Origin, provider: &str, issuer: &str, subject: &str, user_id: i64) {
    tracing::info!(
        target: "audit",
        event = "sign_in",
        subject,
        provider,
        issuer,
        user_id,
        client_ip = %origin.client_ip,
        request_id = %origin.request_id,
        "signed in"
    );
    metrics::login(metrics::LoginOutcome::Success, "ok", provider);
}

/// A sign-in was refused (`reason`): an invalid answer from the provider, a
/// token that failed its checks, an access rule, or a failure on our side.
/// `subject` when the provider's answer was verified far enough to know it;
/// `detail` for the operator (never a token or code).
pub(crate) fn sign_in_refused(
    origin: &Origin,
    reason: &str,
    issuer: &str,
    subject: Option<&str>,
    detail: Option<&dyn Display>,
) {
    refused(
        "sign_in_refused",
        "sign-in refused",
        origin,
        reason,
        issuer,
        subject,
        detail,
    );
}

/// A user logged out (`sessions` ended: one for the button, all those the
/// logout token named for back-channel logout, those of the `sid` for
/// front-channel logout). `subject` is unknown for a logout by `sid` alone.
pub(crate) fn logged_out(
    origin: &Origin,
    kind: LogoutKind,
    issuer: &str,
    subject: Option<&str>,
    user_id: Option<i64>,
    sessions: usize,
) {
    tracing::info!(
        target: "audit",
        event = "logout",
        kind = kind.code(),
        subject,
        issuer,
        user_id,
        sessions,
        client_ip = %origin.client_ip,
        request_id = %origin.request_id,
        "logged out"
    );
    metrics::logout(kind.counted());
    metrics::sessions_ended(kind.session_end(), sessions as u64);
}

/// A back- or front-channel logout was refused (`reason`: a missing,
/// invalid or replayed logout token; front-channel parameters missing or
/// naming another issuer).
pub(crate) fn logout_refused(origin: &Origin, reason: &str, issuer: &str, detail: Option<&dyn Display>) {
    refused("logout_refused", "logout refused", origin, reason, issuer, None, detail);
}

/// A session ended without a logout, on its next request: `session_idle`,
/// `session_max_age`, or an access rule the operator tightened since it
/// signed in (the rule's refusal code, or `access_claims_missing`).
pub(crate) fn session_ended(origin: &Origin, reason: &'static str, issuer: Option<&str>, subject: Option<&str>) {
    tracing::info!(
        target: "audit",
        event = "session_end",
        reason,
        subject,
        issuer,
        client_ip = %origin.client_ip,
        request_id = %origin.request_id,
        "session ended"
    );
    metrics::sessions_ended(reason, 1);
}

/// The most of a refused path an audit event keeps (a path is the
/// client's to choose, up to the request line's limit).
const MAX_PATH: usize = 256;

/// A signed-in user (or a bearer token's subject) was refused a path by its
/// per-path rules (`reason`: the rule's refusal code); the session stays.
/// `path` is the path as judged (normalised).
pub(crate) fn path_refused(origin: &Origin, reason: &str, subject: &str, path: &str) {
    let path = match path.char_indices().nth(MAX_PATH) {
        Some((cut, _)) => &path[..cut],
        None => path,
    };
    tracing::info!(
        target: "audit",
        event = "path_refused",
        reason,
        subject,
        path,
        client_ip = %origin.client_ip,
        request_id = %origin.request_id,
        "path refused"
    );
}

/// A bearer token was verified (not one served from the cache) and let in
/// (`SKIP_JWT_BEARER_TOKENS`): `how` is `jwt` or `introspection`.
pub(crate) fn bearer_accepted(origin: &Origin, issuer: &str, subject: &str, how: &'static str) {
    tracing::info!(
        target: "audit",
        event = "bearer_accepted",
        how,
        subject,
        issuer,
        client_ip = %origin.client_ip,
        request_id = %origin.request_id,
        "bearer token accepted"
    );
}

/// A bearer token was refused (`reason`: a check it failed, or the access
/// rule that refuses its subject). Never the token itself.
pub(crate) fn bearer_refused(
    origin: &Origin,
    reason: &str,
    issuer: &str,
    subject: Option<&str>,
    detail: Option<&dyn Display>,
) {
    refused(
        "bearer_refused",
        "bearer token refused",
        origin,
        reason,
        issuer,
        subject,
        detail,
    );
}

/// A refusal event: `event` with its `reason` code, `subject` when known,
/// and `detail` for the operator (never a token or code).
fn refused(
    event: &'static str,
    message: &'static str,
    origin: &Origin,
    reason: &str,
    issuer: &str,
    subject: Option<&str>,
    detail: Option<&dyn Display>,
) {
    tracing::info!(
        target: "audit",
        event,
        reason,
        subject,
        issuer,
        detail = detail.map(tracing::field::display),
        client_ip = %origin.client_ip,
        request_id = %origin.request_id,
        "{message}"
    );
}
