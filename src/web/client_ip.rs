//! Who the client is: the TCP peer, or, when the peer is one of the operator's
//! proxies (`TRUSTED_PROXIES`), the address those proxies say they served.
//!
//! `X-Forwarded-For` (or, without it, RFC 7239 `Forwarded`) is walked from the
//! right, skipping each trusted hop, as nginx's `real_ip_recursive` does: the
//! first untrusted address is the client. Anything a client wrote to the left
//! of it is never believed, and a peer that is not a trusted proxy is the
//! client whatever its headers say.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, header};
use ipnet::IpNet;

/// The client's address: the TCP peer, or what the trusted proxies in front
/// say. A request extension, set once per request by the request layer
/// ([`super::trace::RequestLayer`]); as an extractor it never fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// The client address of a request: its extension, else the TCP peer,
    /// else `0.0.0.0` (a request that came through neither the server nor
    /// the layer, as in unit tests).
    pub fn of(extensions: &Extensions) -> Self {
        if let Some(ip) = extensions.get::<ClientIp>() {
            return *ip;
        }
        let peer = extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        ClientIp(peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), canonical))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(Self::of(&parts.extensions))
    }
}

/// The proxies believed between the client and us, client first: the
/// believed part of `X-Forwarded-For`/`Forwarded`, without the TCP peer.
/// A request extension, present only when a trusted proxy forwarded the
/// request (the gateway passes it on in `X-Forwarded-For`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwardedChain(pub Vec<IpAddr>);

/// `TRUSTED_PROXIES`: the networks whose forwarding headers are believed.
/// Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl TrustedProxies {
    /// Parses a comma list of CIDRs (`10.0.0.0/8, ::1/128`); a bare address
    /// is a network of one. `Err` names the entry at fault.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let net = match entry.parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => entry.parse::<IpAddr>().map(IpNet::from).map_err(|_| entry.to_owned())?,
            };
            nets.push(net);
        }
        Ok(Self(nets.into()))
    }

    /// No proxy is trusted: every client is its TCP peer.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request from `peer` with `headers`, and the believed
    /// proxies between (client first, the peer not included).
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> (IpAddr, ForwardedChain) {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return (peer, ForwardedChain::default());
        }
        let mut hops = forwarded_for(headers);
        // From the right: each trusted hop is skipped; the first untrusted
        // address is the client. An entry that is no address stops the walk
        // at the last address believed (the one to its right): what is left
        // of it was written by someone we cannot vouch for.
        let mut believed = 0;
        while let Some(Some(hop)) = hops.iter().rev().nth(believed) {
            believed += 1;
            if !self.contains(*hop) {
                break;
            }
        }
        let chain: Vec<IpAddr> = hops.drain(hops.len() - believed..).flatten().collect();
        let client = chain.first().copied().unwrap_or(peer);
        (client, ForwardedChain(chain))
    }
}

/// The addresses of `X-Forwarded-For` (every header line, in order), or,
/// without it, the `for=` of RFC 7239 `Forwarded`; `None` for an entry that
/// is no address (`unknown`, `_hidden`, garbage).
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    const X_FORWARDED_FOR: &str = "x-forwarded-for";
    let lines = |name: &str| headers.get_all(name).iter().map(|v| v.to_str().ok());
    if headers.contains_key(X_FORWARDED_FOR) {
        let mut hops = Vec::new();
        for line in lines(X_FORWARDED_FOR) {
            let Some(line) = line else {
                hops.push(None);
                continue;
            };
            hops.extend(line.split(',').map(str::trim).filter(|e| !e.is_empty()).map(address));
        }
        return hops;
    }
    let mut hops = Vec::new();
    for line in lines(header::FORWARDED.as_str()) {
        let Some(line) = line else {
            hops.push(None);
            continue;
        };
        hops.extend(split_outside_quotes(line, ',').map(|element| {
            split_outside_quotes(element, ';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                .and_then(|(_, value)| address(value.trim().trim_matches('"')))
        }));
    }
    hops
}

/// `s` split on `sep` where it is not inside a quoted string (RFC 7239
/// values may be quoted, and a quoted value may hold the separators).
fn split_outside_quotes(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    let mut escaped = false;
    s.split(move |c: char| {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            return true;
        }
        false
    })
    .map(str::trim)
    .filter(|part| !part.is_empty())
}

/// One hop's address: `192.0.2.1`, `192.0.2.1:8080`, `2001:db8::1` or
/// `[2001:db8::1]:443` (ports ignored); `None` for anything else.
fn address(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = entry.strip_prefix('[') {
        let (ip, port) = rest.split_once(']')?;
        if !(port.is_empty() || port.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return ip
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|ip| canonical(IpAddr::V6(ip)));
    }
    let (ip, port) = entry.split_once(':')?;
    is_port(port)
        .then(|| ip.parse::<Ipv4Addr>().ok())
        .flatten()
        .map(IpAddr::V4)
}

fn is_port(port: &str) -> bool {
    !port.is_empty() && port.parse::<u16>().is_ok()
}

/// IPv4 peers of a dual-stack listener arrive as `::ffff:a.b.c.d`: the same
/// client as `a.b.c.d`, for the trusted networks and the logs.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

#[cfg(test)]
#[path = "client_ip_tests.rs"]
mod tests;
