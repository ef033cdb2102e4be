//! The client's address, as an extractor.
//!
//! A stand-in: it answers the peer address of the connection (axum's
//! `ConnectInfo<SocketAddr>`, which [`crate::app::App::serve`] provides),
//! or the unspecified address `0.0.0.0` when there is none (a router called
//! in-process with `oneshot`). The one that believes `X-Forwarded-For` from
//! `TRUSTED_PROXIES` replaces it, with the same interface.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

/// The address of the client that sent the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        Ok(ClientIp(peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))))
    }
}
