//! Fetching the provider's discovery document and key set over HTTP, with
//! size limits and cache lifetimes taken from `Cache-Control`.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::error::{ProviderError, Reason};
use super::jwk::GateJsonWebKeySet;
use crate::config::is_loopback;
use crate::metrics::ProviderRequest;
use openidconnect::JsonWebKey as _;

/// Largest discovery document, JWKS or token response we read.
pub(crate) const MAX_BODY: usize = 256 * 1024;
/// Bounds on how long a fetched document is trusted before a background refresh.
const MIN_CACHE: Duration = Duration::from_secs(60);
const MAX_CACHE: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_CACHE: Duration = Duration::from_secs(3600);

/// The parts of the OpenID Provider metadata that oidc-gate uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    /// The issuer identifier; must equal the configured issuer exactly.
    pub issuer: String,
    /// Where browsers are sent to sign in.
    pub authorization_endpoint: Url,
    /// Where codes are exchanged.
    pub token_endpoint: Url,
    /// Where profile claims can be fetched.
    pub userinfo_endpoint: Option<Url>,
    /// The provider's public keys.
    pub jwks_uri: Url,
    /// RP-initiated logout endpoint, when the provider has one.
    pub end_session_endpoint: Option<Url>,
    /// Token introspection (RFC 7662), when the provider has it: opaque
    /// bearer tokens are checked there.
    pub introspection_endpoint: Option<Url>,
    /// Client authentication methods; absent means `client_secret_basic`.
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    /// Where tokens are revoked at logout (RFC 7009), when the provider can.
    #[serde(default)]
    pub revocation_endpoint: Option<Url>,
    /// Client authentication methods of the revocation endpoint (RFC 8414);
    /// absent: those of the token endpoint.
    #[serde(default)]
    pub revocation_endpoint_auth_methods_supported: Option<Vec<String>>,
    /// The algorithms the provider may sign ID tokens with: they choose
    /// the expected one when `OIDC_ID_TOKEN_ALG` is not set.
    pub id_token_signing_alg_values_supported: Option<Vec<String>>,
}

impl Metadata {
    /// Every endpoint must be https, or http on a loopback host, so that a
    /// tampered document cannot downgrade the connection.
    fn check_endpoints(&self) -> Result<(), ProviderError> {
        let endpoints = [
            Some(&self.authorization_endpoint),
            Some(&self.token_endpoint),
            Some(&self.jwks_uri),
            self.userinfo_endpoint.as_ref(),
            self.end_session_endpoint.as_ref(),
            self.revocation_endpoint.as_ref(),
            self.introspection_endpoint.as_ref(),
        ];
        for url in endpoints.into_iter().flatten() {
            let ok = url.scheme() == "https" || (url.scheme() == "http" && is_loopback(url));
            if !ok {
                return Err(ProviderError::new(
                    Reason::DiscoveryFailed,
                    format!("endpoint {url} is not https"),
                ));
            }
        }
        Ok(())
    }
}

/// The well-known discovery URL of an issuer.
pub fn discovery_url(issuer: &str) -> Result<Url, ProviderError> {
    let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    Url::parse(&url).map_err(|e| ProviderError::new(Reason::DiscoveryFailed, format!("bad issuer URL: {e}")))
}

/// Fetches and checks the discovery document of `issuer`.
pub async fn fetch_metadata(http: &reqwest::Client, issuer: &str) -> Result<(Metadata, Duration), ProviderError> {
    timed(ProviderRequest::Discovery, fetch_metadata_untimed(http, issuer)).await
}

async fn fetch_metadata_untimed(http: &reqwest::Client, issuer: &str) -> Result<(Metadata, Duration), ProviderError> {
    let url = discovery_url(issuer)?;
    let (body, ttl) = get(http, &url, Reason::DiscoveryFailed).await?;
    let metadata: Metadata = serde_json::from_slice(&body)
        .map_err(|e| ProviderError::new(Reason::DiscoveryFailed, format!("invalid discovery document: {e}")))?;
    if metadata.issuer != issuer {
        return Err(ProviderError::new(
            Reason::IssuerMismatch,
            format!(
                "the provider's discovery document says issuer {:?} but OIDC_ISSUER is {issuer:?}; they must be identical",
                metadata.issuer
            ),
        ));
    }
    metadata.check_endpoints()?;
    Ok((metadata, ttl))
}

/// Fetches the provider's JSON Web Key Set.
pub async fn fetch_jwks(
    http: &reqwest::Client,
    jwks_uri: &Url,
) -> Result<(GateJsonWebKeySet, Duration), ProviderError> {
    let (body, ttl) = timed(ProviderRequest::Jwks, get(http, jwks_uri, Reason::JwksFailed)).await?;
    let jwks: GateJsonWebKeySet = serde_json::from_slice(&body)
        .map_err(|e| ProviderError::new(Reason::JwksFailed, format!("invalid JWKS: {e}")))?;
    for key in jwks.keys() {
        if let Some(why) = key.unusable() {
            let kid = key.key_id().map(|k| k.as_str());
            tracing::warn!(
                ?kid,
                why,
                "a key of the provider's JWKS is refused: nothing it signs is accepted"
            );
        }
    }
    Ok((jwks, ttl))
}

/// Runs a request to the provider, timed in the metrics with its reason code.
pub(crate) async fn timed<T>(
    request: ProviderRequest,
    fut: impl std::future::Future<Output = Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    crate::metrics::timed_provider(request, |e: &ProviderError| e.reason.code(), fut).await
}

async fn get(http: &reqwest::Client, url: &Url, reason: Reason) -> Result<(Vec<u8>, Duration), ProviderError> {
    let response = http
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| ProviderError::new(reason, format!("GET {url}: {}", describe(&e))))?;
    let status = response.status();
    if !status.is_success() {
        return Err(ProviderError::new(reason, format!("GET {url}: HTTP {status}")));
    }
    let ttl = cache_lifetime(response.headers());
    let body = read_limited(response, MAX_BODY)
        .await
        .map_err(|e| ProviderError::new(reason, format!("GET {url}: {e}")))?;
    Ok((body, ttl))
}

/// Reads a response body, refusing bodies over `limit` bytes.
pub(crate) async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|len| len > limit as u64) {
        return Err(format!("body larger than {limit} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
        if body.len() + chunk.len() > limit {
            return Err(format!("body larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A short description of a transport error (timeouts named as such).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        // reqwest's messages carry the URL but never request bodies or headers.
        e.to_string()
    }
}

/// How long a response may be cached: `max-age` from `Cache-Control`,
/// bounded to a sane range; `no-store`/`no-cache` mean the minimum.
fn cache_lifetime(headers: &reqwest::header::HeaderMap) -> Duration {
    let Some(value) = headers
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
    else {
        return DEFAULT_CACHE;
    };
    let mut ttl = DEFAULT_CACHE;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return MIN_CACHE;
        }
        if let Some(secs) = lower
            .strip_prefix("max-age=")
            .and_then(|s| s.trim_matches('"').parse::<u64>().ok())
        {
            ttl = Duration::from_secs(secs);
        }
    }
    ttl.clamp(MIN_CACHE, MAX_CACHE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{CACHE_CONTROL, HeaderMap, HeaderValue};

    fn ttl(v: &str) -> Duration {
        let mut h = HeaderMap::new();
        h.insert(CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
        cache_lifetime(&h)
    }

    #[test]
    fn cache_control_is_honoured_within_bounds() {
        assert_eq!(cache_lifetime(&HeaderMap::new()), DEFAULT_CACHE);
        assert_eq!(ttl("public, max-age=600"), Duration::from_secs(600));
        assert_eq!(ttl("max-age=1"), MIN_CACHE);
        assert_eq!(ttl("max-age=99999999"), MAX_CACHE);
        assert_eq!(ttl("no-store"), MIN_CACHE);
        assert_eq!(ttl("max-age=garbage"), DEFAULT_CACHE);
    }

    #[test]
    fn discovery_url_handles_trailing_slashes() {
        assert_eq!(
            discovery_url("https://idp.example.com/realms/x/").unwrap().as_str(),
            "https://idp.example.com/realms/x/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://accounts.google.com").unwrap().as_str(),
            "https://accounts.google.com/.well-known/openid-configuration"
        );
    }
}
