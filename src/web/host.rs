//! The development provider's defence against DNS rebinding: a web page on
//! an attacker's site, whose name the attacker then points at 127.0.0.1,
//! reaches a loopback-only server with the attacker's `Host`. While the
//! development provider runs, a request for any host other than
//! `PUBLIC_URL`'s or a loopback name is refused with `421 Misdirected
//! Request`, before sessions are touched.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::Response;
use futures_util::future::Either;
use tower::{Layer, Service};
use url::Url;

use super::error::ErrorPage;

/// Refuses requests whose `Host` (and request-target authority, if any) is
/// neither `PUBLIC_URL`'s host nor `localhost`, `127.0.0.1` or `[::1]`
/// (with any port).
#[derive(Clone, Debug)]
pub struct LoopbackHostsLayer {
    public_host: Arc<str>,
}

impl LoopbackHostsLayer {
    /// The layer for an app served at `public_url`.
    pub fn new(public_url: &Url) -> Self {
        Self {
            public_host: public_url.host_str().unwrap_or("localhost").into(),
        }
    }

    /// Whether a `Host` value (name and optional port) names this server.
    fn allows(&self, host: &[u8]) -> bool {
        let name = without_port(host);
        name.eq_ignore_ascii_case(self.public_host.as_bytes())
            || name.eq_ignore_ascii_case(b"localhost")
            || name == b"127.0.0.1"
            || name == b"[::1]"
    }

    /// Whether `request` is for this server. A request naming no host at
    /// all is refused too: browsers always name one.
    fn admits(&self, request: &Request) -> bool {
        let header = request.headers().get(header::HOST).map(|v| v.as_bytes());
        let target = request.uri().authority().map(|a| a.as_str().as_bytes());
        (header.is_some() || target.is_some())
            && header.is_none_or(|h| self.allows(h))
            && target.is_none_or(|t| self.allows(t))
    }
}

/// `host` without its `:port`; an IPv6 address keeps its brackets.
fn without_port(host: &[u8]) -> &[u8] {
    let end = match host.first() {
        Some(b'[') => host
            .iter()
            .position(|&b| b == b']')
            .map(|i| i + 1)
            .filter(|&end| matches!(host.get(end), None | Some(b':'))),
        _ => host.iter().rposition(|&b| b == b':'),
    };
    &host[..end.unwrap_or(host.len())]
}

impl<S> Layer<S> for LoopbackHostsLayer {
    type Service = LoopbackHosts<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LoopbackHosts {
            hosts: self.clone(),
            inner,
        }
    }
}

/// The service of [`LoopbackHostsLayer`].
#[derive(Clone, Debug)]
pub struct LoopbackHosts<S> {
    hosts: LoopbackHostsLayer,
    inner: S,
}

impl<S> Service<Request> for LoopbackHosts<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, Ready<Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if self.hosts.admits(&request) {
            return Either::Left(self.inner.call(request));
        }
        // Escaped: the value is the client's.
        let host = request.headers().get(header::HOST);
        tracing::info!(reason = "misdirected_host", ?host, "request refused");
        Either::Right(ready(Ok(misdirected())))
    }
}

fn misdirected() -> Response {
    ErrorPage {
        status: StatusCode::MISDIRECTED_REQUEST.as_u16(),
        title: "Wrong address for this server",
        message: "This development server answers only at its own address (PUBLIC_URL) or at a \
                      loopback name such as localhost. Open it at that address.",
        retry: false,
        reason: "misdirected_host",
    }
    .response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_public_host_and_loopback_names_are_admitted() {
        let hosts = LoopbackHostsLayer::new(&Url::parse("http://127.0.0.1:5000").unwrap());
        let admitted = |host: &str| {
            let request = Request::get("/").header(header::HOST, host).body(Default::default());
            hosts.admits(&request.unwrap())
        };
        for ok in [
            "127.0.0.1:5000",
            "127.0.0.1",
            "localhost:3000",
            "LOCALHOST",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(admitted(ok), "{ok}");
        }
        for refused in [
            "attacker.example",
            "attacker.example:5000",
            "localhost.attacker.example",
            "127.0.0.1.attacker.example",
            "[::1].attacker.example",
            "",
        ] {
            assert!(!admitted(refused), "{refused}");
        }
        // An absolute request-target names the host too.
        let request = Request::get("http://attacker.example/")
            .header(header::HOST, "127.0.0.1:5000")
            .body(Default::default())
            .unwrap();
        assert!(!hosts.admits(&request));
        assert!(!hosts.admits(&Request::get("/").body(Default::default()).unwrap()));

        let named = LoopbackHostsLayer::new(&Url::parse("http://LocalHost:5000").unwrap());
        assert!(named.allows(b"localhost:5000") && !named.allows(b"attacker.example:5000"));
    }
}
