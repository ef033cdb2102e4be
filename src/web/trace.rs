//! The request layer, outermost of every route: it works out who the client
//! is ([`ClientIp`]) and the request's id ([`RequestId`]) once, keeps both as
//! request extensions, runs the request inside one `request` span that
//! carries them (so they are on every log line of the request), answers
//! with `X-Request-Id`, and, when metrics are on, counts the answer by route
//! group and status class.
//!
//! A plain span and a hand-written future rather than tower-http's
//! `TraceLayer`, whose classifier, body wrapper and default events cost
//! measurable CPU on every request; and `SetRequestIdLayer` would take any
//! client's `X-Request-Id`.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::Response;
use tower::{Layer, Service};
use tracing::Span;

use super::client_ip::{ClientIp, TrustedProxies};
use super::request_id::{RequestId, X_REQUEST_ID};
use crate::metrics::{RequestCounter, RouteGroup};

/// Sets [`ClientIp`], [`RequestId`] and, behind trusted proxies,
/// [`super::client_ip::ForwardedChain`] on each request, and runs it in its
/// span. Use as the outermost layer of the routes (it reads the matched route).
#[derive(Clone, Debug, Default)]
pub struct RequestLayer {
    trusted: TrustedProxies,
    counter: Option<RequestCounter>,
}

impl RequestLayer {
    /// The layer, believing forwarding headers and `X-Request-Id` from `trusted` only.
    pub fn new(trusted: TrustedProxies) -> Self {
        Self { trusted, counter: None }
    }

    /// Counts every answer with `counter` (metrics on) as well.
    pub fn counting(mut self, counter: Option<RequestCounter>) -> Self {
        self.counter = counter;
        self
    }
}

impl<S> Layer<S> for RequestLayer {
    type Service = RequestService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestService {
            trusted: self.trusted.clone(),
            counter: self.counter.clone(),
            inner,
        }
    }
}

/// The service of [`RequestLayer`].
#[derive(Clone, Debug)]
pub struct RequestService<S> {
    trusted: TrustedProxies,
    counter: Option<RequestCounter>,
    inner: S,
}

impl<S, B> Service<Request> for RequestService<S>
where
    S: Service<Request, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = RequestFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        let (client, from_proxy) = if self.trusted.is_empty() {
            (peer.to_canonical(), None)
        } else {
            let (client, chain) = self.trusted.resolve(peer, request.headers());
            let trusted_peer = self.trusted.contains(peer.to_canonical());
            if !chain.0.is_empty() {
                request.extensions_mut().insert(chain);
            }
            (
                client,
                trusted_peer.then(|| RequestId::from_proxy(request.headers())).flatten(),
            )
        };
        let id = from_proxy.unwrap_or_else(RequestId::generate);
        let route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
        let span = request_span(&request, route, client, &id);
        let group = self.counter.as_ref().map(|counter| counter.group(route));
        let header = id.header_value().clone();
        let extensions = request.extensions_mut();
        extensions.insert(ClientIp(client));
        extensions.insert(id);
        let inner = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        RequestFuture {
            inner,
            span,
            id: Some(header),
            group,
        }
    }
}

/// The span of a request: method, matched route, request id and client
/// address; never the path or query (the query carries authorization codes
/// on `/callback`). Nothing is formatted when the span is disabled.
///
/// Recorded with `Display`: none of them can hold a space, quote or line
/// break (a method token, our own route patterns, a checked id, an address),
/// so they need no quoting or escaping, which the log would otherwise do for
/// every request.
fn request_span(request: &Request, route: Option<&str>, client: IpAddr, id: &RequestId) -> Span {
    tracing::info_span!(
        "request",
        method = %request.method(),
        route = %route.unwrap_or("-"),
        request_id = %id,
        client_ip = %client,
    )
}

pin_project_lite::pin_project! {
    /// The answer of [`RequestService`]: the inner future, polled in the
    /// request's span, its response given `X-Request-Id` and counted in
    /// `group` (metrics on).
    pub struct RequestFuture<F> {
        #[pin]
        inner: F,
        span: Span,
        id: Option<axum::http::HeaderValue>,
        group: Option<RouteGroup>,
    }
}

impl<F, B, E> Future for RequestFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let mut response = ready!(this.inner.poll(cx))?;
        if let Some(id) = this.id.take() {
            response.headers_mut().insert(X_REQUEST_ID, id);
        }
        if let Some(group) = this.group.take() {
            RequestCounter::count(group, response.status());
        }
        tracing::debug!(status = response.status().as_u16(), "answered");
        Poll::Ready(Ok(response))
    }
}
