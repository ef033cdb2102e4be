//! The gateway's header policy, in one place: what goes to the upstream with a
//! proxied request, what comes back to the client, and the identity headers of
//! a forward-auth answer.
//!
//! The rules follow Go's `httputil.ReverseProxy` and RFC 9110 §7.6.1: hop-by-hop
//! headers (and every name a `Connection` header lists) never cross the proxy;
//! the identity headers a client sent are removed whatever their case or
//! spelling (`X_Forwarded_User` too, as oauth2-proxy does: CGI, WSGI and PHP
//! read `_` and `-` as the same), and only then are ours added.

use std::net::IpAddr;

use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use url::Url;

use crate::secret::Secret;
use crate::web::request_id::X_REQUEST_ID;

/// Every identity header name a client must never choose: removed from each
/// proxied request before ours are added (oauth2-proxy's names).
pub static IDENTITY_HEADERS: [HeaderName; 11] = [
    X_FORWARDED_USER,
    X_FORWARDED_EMAIL,
    X_FORWARDED_PREFERRED_USERNAME,
    X_FORWARDED_GROUPS,
    X_FORWARDED_ACCESS_TOKEN,
    X_AUTH_REQUEST_USER,
    X_AUTH_REQUEST_EMAIL,
    X_AUTH_REQUEST_PREFERRED_USERNAME,
    X_AUTH_REQUEST_GROUPS,
    X_AUTH_REQUEST_ACCESS_TOKEN,
    // oauth2-proxy puts the user in `GAP-Auth` when it signs requests; an app
    // moved over from it may still read that name.
    HeaderName::from_static("gap-auth"),
];

/// Hop-by-hop headers, as Go's `ReverseProxy` lists them (RFC 9110 §7.6.1 and
/// the older RFC 2616 §13.5.1 names still sent in practice). `Expect` is
/// answered by our own server (hyper sends `100 Continue` when the body is
/// read), so it is not passed on either.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers this policy sets itself, so whatever the client sent is dropped.
/// `Forwarded` (RFC 7239) is dropped too: it would contradict the
/// `X-Forwarded-*` we set, and an app that prefers it would believe the client.
/// `X-Request-Id` is the request's own (a trusted proxy's, or made here).
static SET_HERE: [HeaderName; 7] = [
    header::HOST,
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    header::FORWARDED,
    header::EXPECT,
    X_REQUEST_ID,
];

/// One family of identity header names.
struct Names {
    user: HeaderName,
    email: HeaderName,
    preferred_username: HeaderName,
    groups: HeaderName,
    access_token: HeaderName,
}

const X_FORWARDED_USER: HeaderName = HeaderName::from_static("x-forwarded-user");
const X_FORWARDED_EMAIL: HeaderName = HeaderName::from_static("x-forwarded-email");
const X_FORWARDED_PREFERRED_USERNAME: HeaderName = HeaderName::from_static("x-forwarded-preferred-username");
const X_FORWARDED_GROUPS: HeaderName = HeaderName::from_static("x-forwarded-groups");
const X_FORWARDED_ACCESS_TOKEN: HeaderName = HeaderName::from_static("x-forwarded-access-token");
const X_AUTH_REQUEST_USER: HeaderName = HeaderName::from_static("x-auth-request-user");
const X_AUTH_REQUEST_EMAIL: HeaderName = HeaderName::from_static("x-auth-request-email");
const X_AUTH_REQUEST_PREFERRED_USERNAME: HeaderName = HeaderName::from_static("x-auth-request-preferred-username");
const X_AUTH_REQUEST_GROUPS: HeaderName = HeaderName::from_static("x-auth-request-groups");
const X_AUTH_REQUEST_ACCESS_TOKEN: HeaderName = HeaderName::from_static("x-auth-request-access-token");

/// The names sent to the upstream (reverse proxy).
static FORWARDED_NAMES: Names = Names {
    user: X_FORWARDED_USER,
    email: X_FORWARDED_EMAIL,
    preferred_username: X_FORWARDED_PREFERRED_USERNAME,
    groups: X_FORWARDED_GROUPS,
    access_token: X_FORWARDED_ACCESS_TOKEN,
};

/// The names of a forward-auth answer (nginx `auth_request_set`, Traefik
/// `authResponseHeaders`, Caddy `copy_headers`).
static AUTH_REQUEST_NAMES: Names = Names {
    user: X_AUTH_REQUEST_USER,
    email: X_AUTH_REQUEST_EMAIL,
    preferred_username: X_AUTH_REQUEST_PREFERRED_USERNAME,
    groups: X_AUTH_REQUEST_GROUPS,
    access_token: X_AUTH_REQUEST_ACCESS_TOKEN,
};

/// The signed-in user, as the upstream learns it.
#[derive(Clone, Debug, Default)]
pub struct Identity {
    /// The subject (`sub`): `X-Forwarded-User`.
    pub user: String,
    /// `X-Forwarded-Email`.
    pub email: Option<String>,
    /// `X-Forwarded-Preferred-Username`.
    pub preferred_username: Option<String>,
    /// `X-Forwarded-Groups`, comma-joined.
    pub groups: Vec<String>,
    /// `X-Forwarded-Access-Token` with `PASS_ACCESS_TOKEN`.
    pub access_token: Option<Secret>,
    /// `Authorization: Bearer …` with `PASS_AUTHORIZATION_HEADER`.
    pub id_token: Option<Secret>,
}

/// What the operator chose to pass to the upstream.
#[derive(Clone, Debug, Default)]
pub struct HeaderPolicy {
    /// `PASS_ACCESS_TOKEN`: send `X-Forwarded-Access-Token` (and
    /// `X-Auth-Request-Access-Token` in forward-auth answers).
    pub pass_access_token: bool,
    /// `PASS_AUTHORIZATION_HEADER`: replace the client's `Authorization` with
    /// `Bearer <ID token>`.
    pub pass_authorization_header: bool,
    /// `PASS_HOST_HEADER`: pass the client's `Host` on; otherwise the
    /// upstream's own host is sent.
    pub pass_host_header: bool,
    /// The gateway's session cookie name: it and the gateway's
    /// login-in-progress cookies (`<name>_login_…`) are not passed on (the
    /// app has no use for the session id, and its logs must not hold it).
    pub own_cookie: &'static str,
}

/// Where the request came from and where it goes, for the `X-Forwarded-*` and
/// `Host` headers.
#[derive(Clone, Debug)]
pub struct Forwarded {
    /// The peer that connected to us, last in `X-Forwarded-For`.
    pub client: Option<IpAddr>,
    /// The hops before the peer that `TRUSTED_PROXIES` let us believe
    /// ([`crate::web::client_ip::ForwardedChain`]), the client first; empty
    /// when the peer is the client.
    pub believed: Vec<IpAddr>,
    /// `X-Request-Id`: the request's id.
    pub request_id: Option<HeaderValue>,
    /// `X-Forwarded-Proto`: `PUBLIC_URL`'s scheme.
    pub proto: HeaderValue,
    /// `X-Forwarded-Host`: `PUBLIC_URL`'s host (and port, if not the default).
    pub host: HeaderValue,
    /// `Host` for the upstream when the client's is not passed.
    pub upstream_host: HeaderValue,
}

impl Forwarded {
    /// The fixed part, from `PUBLIC_URL` and the upstream's URL; `None` if
    /// either has no host.
    pub fn new(public_url: &Url, upstream: &Url) -> Option<Self> {
        Some(Self {
            client: None,
            believed: Vec::new(),
            request_id: None,
            proto: HeaderValue::from_str(public_url.scheme()).ok()?,
            host: host_value(public_url)?,
            upstream_host: host_value(upstream)?,
        })
    }
}

/// `host[:port]` of a URL, the port only when it is not the scheme's default.
fn host_value(url: &Url) -> Option<HeaderValue> {
    let host = url.host_str()?;
    let value = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    HeaderValue::from_str(&value).ok()
}

/// The protocol a request asks to switch to (`Connection: upgrade` with an
/// `Upgrade` header), e.g. `websocket`.
pub fn upgrade_protocol(headers: &HeaderMap) -> Option<&HeaderValue> {
    connection_tokens(headers)
        .any(|t| t.eq_ignore_ascii_case("upgrade"))
        .then(|| headers.get(header::UPGRADE))
        .flatten()
}

/// The comma-separated tokens of every `Connection` header, trimmed.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        // A value with non-ASCII bytes cannot name a header; skip it.
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The header names listed in `Connection` (header names are ASCII
/// case-insensitive; `HeaderName` lowercases them).
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect()
}

/// Whether a message's `Content-Length` is stale: with `Transfer-Encoding`
/// too, the chunked framing won (RFC 9112 §6.3) and the body is re-framed on
/// the next hop, so the length must not go on beside it. hyper's server drops
/// it from requests already; its client keeps it in responses.
fn stale_length(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
}

/// Whether `name` is an identity header, also when spelt with `_` for `-`.
fn is_identity(name: &HeaderName) -> bool {
    let name = name.as_str().as_bytes();
    let same = |a: &u8, b: &u8| a == b || (*a == b'_' && *b == b'-');
    IDENTITY_HEADERS
        .iter()
        .any(|id| id.as_str().len() == name.len() && name.iter().zip(id.as_str().as_bytes()).all(|(a, b)| same(a, b)))
}

/// The headers for the upstream: the client's, less hop-by-hop headers, the
/// names listed in `Connection`, every identity header and whatever this
/// policy sets itself; then ours: `Host`, `X-Forwarded-For`/`-Proto`/`-Host`,
/// `X-Request-Id`, `Connection`/`Upgrade` again for an upgrade, and the identity.
pub fn upstream_request_headers(
    incoming: &HeaderMap,
    identity: Option<&Identity>,
    policy: &HeaderPolicy,
    forwarded: &Forwarded,
) -> HeaderMap {
    let listed = connection_listed(incoming);
    let stale_length = stale_length(incoming);
    let dropped = |name: &HeaderName| {
        HOP_BY_HOP.contains(name)
            || SET_HERE.contains(name)
            || listed.contains(name)
            || is_identity(name)
            || (policy.pass_authorization_header && name == header::AUTHORIZATION)
            || (stale_length && name == header::CONTENT_LENGTH)
    };
    let mut out = HeaderMap::with_capacity(incoming.keys_len() + 10);
    for (name, value) in incoming {
        if dropped(name) {
            continue;
        }
        if name == header::COOKIE {
            if let Some(kept) = without_own_cookies(value, policy.own_cookie) {
                out.append(header::COOKIE, kept);
            }
            continue;
        }
        out.append(name.clone(), value.clone());
    }

    // `Host` is never hop-by-hop, even when a client lists it in `Connection`.
    let host = incoming.get(header::HOST).filter(|_| policy.pass_host_header);
    out.insert(header::HOST, host.unwrap_or(&forwarded.upstream_host).clone());
    if let Some(protocol) = upgrade_protocol(incoming) {
        out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        out.insert(header::UPGRADE, protocol.clone());
    }
    // The hops `web::client_ip` believed (the client first, then the trusted
    // proxies it came through), then the peer: what a client wrote itself is
    // never passed on as if verified, and the first entry is the client.
    let chain: Vec<String> = forwarded
        .believed
        .iter()
        .chain(forwarded.client.as_ref())
        .map(IpAddr::to_string)
        .collect();
    if !chain.is_empty()
        && let Ok(value) = HeaderValue::from_str(&chain.join(", "))
    {
        out.insert(X_FORWARDED_FOR, value);
    }
    if let Some(id) = &forwarded.request_id {
        out.insert(X_REQUEST_ID, id.clone());
    }
    out.insert(X_FORWARDED_PROTO, forwarded.proto.clone());
    out.insert(X_FORWARDED_HOST, forwarded.host.clone());

    if let Some(identity) = identity {
        add_identity(&mut out, identity, &FORWARDED_NAMES, policy.pass_access_token);
        if policy.pass_authorization_header
            && let Some(token) = &identity.id_token
            && let Some(value) = value_of(&format!("Bearer {}", token.expose()), &header::AUTHORIZATION)
        {
            out.insert(header::AUTHORIZATION, value);
        }
    }
    out
}

/// The identity headers of a forward-auth answer (`X-Auth-Request-*`).
pub fn auth_response_headers(identity: &Identity, pass_access_token: bool) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(5);
    add_identity(&mut out, identity, &AUTH_REQUEST_NAMES, pass_access_token);
    out
}

/// The upstream's response headers for the client: hop-by-hop headers and the
/// names its `Connection` lists removed, except that a `101 Switching
/// Protocols` keeps `Connection: upgrade` and its `Upgrade`, which the client
/// needs to take over the connection.
pub fn upstream_response_headers(incoming: &HeaderMap, status: StatusCode) -> HeaderMap {
    let listed = connection_listed(incoming);
    let stale_length = stale_length(incoming);
    let mut out = HeaderMap::with_capacity(incoming.keys_len());
    for (name, value) in incoming {
        let dropped =
            HOP_BY_HOP.contains(name) || listed.contains(name) || (stale_length && name == header::CONTENT_LENGTH);
        if !dropped {
            out.append(name.clone(), value.clone());
        }
    }
    if status == StatusCode::SWITCHING_PROTOCOLS
        && let Some(protocol) = incoming.get(header::UPGRADE)
    {
        out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        out.insert(header::UPGRADE, protocol.clone());
    }
    out
}

/// A `Cookie` header without the gateway's own cookies; `None` when nothing
/// else is left. The common case (none of ours in it) is a plain copy.
fn without_own_cookies(value: &HeaderValue, own: &str) -> Option<HeaderValue> {
    let ours = |pair: &[u8]| {
        let name = pair.split(|&b| b == b'=').next().unwrap_or_default().trim_ascii();
        name.strip_prefix(own.as_bytes())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"_login_"))
    };
    let pairs: Vec<&[u8]> = value.as_bytes().split(|&b| b == b';').collect();
    if !pairs.iter().any(|p| ours(p)) {
        return Some(value.clone());
    }
    let kept: Vec<&[u8]> = pairs.into_iter().filter(|p| !ours(p)).map(<[u8]>::trim_ascii).collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_bytes(&kept.join(&b"; "[..])).ok()
}

/// Adds the identity under `names`; a value that cannot be a header value is
/// left out (see [`value_of`]).
fn add_identity(out: &mut HeaderMap, identity: &Identity, names: &Names, pass_access_token: bool) {
    let mut add = |name: &HeaderName, value: Option<&str>| {
        if let Some(value) = value.and_then(|v| value_of(v, name)) {
            out.insert(name.clone(), value);
        }
    };
    add(&names.user, Some(&identity.user));
    add(&names.email, identity.email.as_deref());
    add(&names.preferred_username, identity.preferred_username.as_deref());
    // A group whose name holds a comma would read as two groups (`x,admins`
    // would grant `admins`): such a group is left out, the others are sent.
    let groups: Vec<&str> = identity
        .groups
        .iter()
        .map(String::as_str)
        .filter(|g| {
            let fine = !g.contains(',') && value_of(g, &names.groups).is_some();
            if !fine {
                tracing::warn!(header = %names.groups, "a group name that cannot be sent was left out");
            }
            fine
        })
        .collect();
    if !groups.is_empty() {
        add(&names.groups, Some(&groups.join(",")));
    }
    if pass_access_token {
        add(&names.access_token, identity.access_token.as_ref().map(Secret::expose));
    }
}

/// `value` as a header value, or `None` (logged, without the value) if it is
/// empty, has a control character (CR, LF, NUL, TAB, DEL…) or leading or
/// trailing spaces. Such a value is DROPPED, never encoded or trimmed: a
/// changed identity could name someone else (`"admin "` would read as
/// `admin`), a missing one names nobody. UTF-8 is passed as its bytes, as
/// oauth2-proxy does.
fn value_of(value: &str, name: &HeaderName) -> Option<HeaderValue> {
    let clean = !value.is_empty()
        && !value.bytes().any(|b| b < 0x20 || b == 0x7f)
        && !value.starts_with(' ')
        && !value.ends_with(' ');
    let value = clean.then(|| HeaderValue::from_bytes(value.as_bytes()).ok()).flatten();
    if value.is_none() {
        tracing::warn!(header = %name, "an identity value that cannot be a header value was left out");
    }
    value
}

#[cfg(test)]
#[path = "headers_tests/mod.rs"]
mod tests;
