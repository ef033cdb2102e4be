//! The reverse proxy engine: sends an allowed request to the upstream over a
//! pooled HTTP/1.1 client and streams the answer back.
//!
//! Bodies stream both ways and are never buffered whole; a `101 Switching
//! Protocols` (WebSocket) becomes a raw tunnel; the headers are
//! [`headers`](super::headers)' policy. A failure is a `502`/`504` page (JSON
//! for API clients), see [`failure`].

mod failure;
mod upgrade;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::uri::{Authority, PathAndQuery, Scheme};
use axum::http::{Method, Uri, Version};
use axum::response::Response;
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use url::Url;

use super::headers::{self, Forwarded, HeaderPolicy, Identity};
use crate::drain::Tunnels;
use crate::web::AppError;
use crate::web::client_ip::ForwardedChain;
use crate::web::request_id::RequestId;
use failure::Failure;

/// Settings of the proxy.
#[derive(Clone, Debug)]
pub struct ProxySettings {
    /// `UPSTREAM_URL`: http or https; its path, if any, prefixes every request path.
    pub upstream: Url,
    /// `UPSTREAM_TIMEOUT`: how long to wait for the upstream's response headers
    /// (default 30 s). Bodies and WebSocket tunnels have no deadline.
    pub timeout: Duration,
    /// How long to wait for a TCP connection to the upstream.
    pub connect_timeout: Duration,
    /// Which identity and host headers to pass.
    pub policy: HeaderPolicy,
    /// `PUBLIC_URL`, for `X-Forwarded-Proto` and `X-Forwarded-Host`.
    pub public_url: Url,
    /// Where WebSocket (and other upgrade) tunnels run: a stopping server
    /// waits for them.
    pub tunnels: Tunnels,
}

/// How long an idle pooled connection to the upstream is kept.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// The reverse proxy to one upstream; cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    scheme: Scheme,
    authority: Authority,
    /// The upstream URL's path without its trailing `/` (`""` for none).
    prefix: String,
    forwarded: Forwarded,
    settings: ProxySettings,
}

/// Why [`Proxy::new`] refused its settings.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The upstream is not an `http` or `https` URL with a host, or
    /// `PUBLIC_URL` has no host.
    #[error("UPSTREAM_URL must be an http(s) URL with a host, and PUBLIC_URL must have a host: {0}")]
    Url(String),
}

impl Proxy {
    /// A proxy with its own connection pool. Fails only on unusable URLs.
    pub fn new(settings: ProxySettings) -> Result<Self, ProxyError> {
        let upstream = &settings.upstream;
        let bad = || ProxyError::Url(upstream.to_string());
        let scheme = match upstream.scheme() {
            "http" => Scheme::HTTP,
            "https" => Scheme::HTTPS,
            _ => return Err(bad()),
        };
        let host = upstream.host_str().ok_or_else(bad)?;
        let port = upstream.port_or_known_default().ok_or_else(bad)?;
        let authority = Authority::try_from(format!("{host}:{port}")).map_err(|_| bad())?;
        let forwarded = Forwarded::new(&settings.public_url, upstream).ok_or_else(bad)?;

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(settings.connect_timeout));
        http.set_nodelay(true);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|e| ProxyError::Url(format!("TLS set-up: {e}")))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(tls);
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                scheme,
                authority,
                prefix: upstream.path().trim_end_matches('/').to_owned(),
                forwarded,
                settings,
            }),
        })
    }

    /// Sends `request` to the upstream and returns its answer, or a `502`/`504`
    /// page (JSON when `wants_json`). The caller has decided the request may
    /// pass; its URI's path and query are what the upstream gets. `identity`
    /// is the signed-in user (none on public paths), `client` the peer. The
    /// request's [`RequestId`] and [`ForwardedChain`] extensions (set by
    /// [`crate::web::RequestLayer`]) go on in `X-Request-Id` and
    /// `X-Forwarded-For`.
    pub async fn forward(
        &self,
        request: Request,
        identity: Option<&Identity>,
        client: Option<SocketAddr>,
        wants_json: bool,
    ) -> Response {
        let method = request.method().clone();
        let start = std::time::Instant::now();
        let result = self.try_forward(request, identity, client).await;
        crate::metrics::upstream_request(
            start.elapsed(),
            result.as_ref().err().and_then(Failure::upstream_reason),
        );
        match result {
            Ok(response) => response,
            Err(failure) => failure.respond(&method, wants_json),
        }
    }

    async fn try_forward(
        &self,
        request: Request,
        identity: Option<&Identity>,
        client: Option<SocketAddr>,
    ) -> Result<Response, Failure> {
        let inner = &self.inner;
        let (mut parts, body) = request.into_parts();
        let wanted_upgrade = headers::upgrade_protocol(&parts.headers).cloned();
        let client_upgrade = match wanted_upgrade {
            Some(_) => Some(parts.extensions.remove::<hyper::upgrade::OnUpgrade>().ok_or_else(|| {
                // The connection cannot be taken over (not HTTP/1.1 through
                // hyper's server): nothing to tunnel into.
                AppError::Upstream {
                    reason: "upgrade_unsupported",
                    detail: "no upgradable client connection".into(),
                }
            })?),
            None => None,
        };
        let forwarded = Forwarded {
            client: client.map(|a| a.ip().to_canonical()),
            believed: parts
                .extensions
                .remove::<ForwardedChain>()
                .map(|chain| chain.0)
                .unwrap_or_default(),
            request_id: parts.extensions.get::<RequestId>().map(|id| id.header_value().clone()),
            ..inner.forwarded.clone()
        };
        let mut outgoing = Request::new(Body::empty());
        *outgoing.method_mut() = parts.method;
        *outgoing.uri_mut() = self.upstream_uri(&parts.uri)?;
        *outgoing.version_mut() = Version::HTTP_11;
        *outgoing.headers_mut() =
            headers::upstream_request_headers(&parts.headers, identity, &inner.settings.policy, &forwarded);
        // A request that may be sent twice keeps a copy of itself: the body is
        // empty, so the copy is the whole request.
        let again = retryable(outgoing.method(), &body).then(|| clone_head(&outgoing));
        if again.is_none() {
            *outgoing.body_mut() = body;
        }

        let response = tokio::time::timeout(inner.settings.timeout, self.send(outgoing, again))
            .await
            .map_err(|_| AppError::UpstreamTimeout {
                reason: "upstream_timeout",
            })??;

        match (wanted_upgrade, client_upgrade) {
            (Some(protocol), Some(on_client)) if response.status() == hyper::StatusCode::SWITCHING_PROTOCOLS => {
                upgrade::tunnel(response, &protocol, on_client, &inner.settings.tunnels)
            }
            _ if response.status() == hyper::StatusCode::SWITCHING_PROTOCOLS => Err(AppError::Upstream {
                reason: "upstream_bad_upgrade",
                detail: "101 to a request that asked for no upgrade".into(),
            }
            .into()),
            _ => Ok(stream_back(response)),
        }
    }

    /// Sends once, and once more on a fresh connection if a pooled one turned
    /// out closed and the request can be repeated (`again`).
    async fn send(
        &self,
        request: Request,
        again: Option<Request>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, Failure> {
        match self.inner.client.request(request).await {
            Ok(response) => Ok(response),
            Err(e) => match again {
                Some(request) if failure::closed_connection(&e) => {
                    tracing::info!(reason = "upstream_closed_pooled", "retrying once on a new connection");
                    self.inner.client.request(request).await.map_err(Failure::from)
                }
                _ => Err(e.into()),
            },
        }
    }

    /// The upstream's URI for the request's path and query.
    fn upstream_uri(&self, uri: &Uri) -> Result<Uri, Failure> {
        let inner = &self.inner;
        let path = uri.path_and_query().map_or("/", PathAndQuery::as_str);
        let slash = if path.starts_with('/') { "" } else { "/" };
        let path =
            PathAndQuery::try_from(format!("{}{slash}{path}", inner.prefix)).map_err(|e| AppError::Upstream {
                reason: "upstream_uri",
                detail: e.to_string(),
            })?;
        Uri::builder()
            .scheme(inner.scheme.clone())
            .authority(inner.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| {
                AppError::Upstream {
                    reason: "upstream_uri",
                    detail: e.to_string(),
                }
                .into()
            })
    }
}

/// Idempotent (RFC 9110 §9.2.2) and without a body: safe to send twice.
fn retryable(method: &Method, body: &Body) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    ) && body.is_end_stream()
}

/// A copy of a request without a body.
fn clone_head(request: &Request) -> Request {
    let mut copy = Request::new(Body::empty());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}

/// The upstream's answer for the client, its body streamed as it comes. If
/// the upstream fails mid-body, nothing can be said any more (the status went
/// out): the error cuts the client's connection, and is logged here.
fn stream_back(response: hyper::Response<hyper::body::Incoming>) -> Response {
    let (mut parts, body) = response.into_parts();
    parts.headers = headers::upstream_response_headers(&parts.headers, parts.status);
    parts.version = Version::HTTP_11;
    let body = body.map_err(|e| {
        tracing::warn!(reason = "upstream_body", error = %e, "upstream response body failed; client connection cut");
        e
    });
    Response::from_parts(parts, Body::new(body))
}
