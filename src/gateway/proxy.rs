//! PLACEHOLDER until the `proxy` branch lands: the proxy's interface.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use url::Url;

use super::headers::{HeaderPolicy, Identity};

/// Settings.
pub struct ProxySettings {
    /// Upstream.
    pub upstream: Url,
    /// Timeout.
    pub timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Policy.
    pub policy: HeaderPolicy,
    /// PUBLIC_URL.
    pub public_url: Url,
}

/// The proxy.
#[derive(Clone)]
pub struct Proxy;

impl Proxy {
    /// New.
    pub fn new(settings: ProxySettings) -> Self {
        let _ = settings;
        Self
    }

    /// Forward.
    pub async fn forward(
        &self,
        request: Request,
        identity: Option<&Identity>,
        client: Option<SocketAddr>,
        wants_json: bool,
    ) -> Response {
        let _ = (request, identity, client, wants_json);
        StatusCode::BAD_GATEWAY.into_response()
    }
}
