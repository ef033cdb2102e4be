//! The embedded development OpenID Provider.
//!
//! When no provider is configured, oidc-gate mounts this small but honest
//! OpenID Provider so a newcomer can sign in without an account anywhere. The
//! relying party talks to it over real HTTP, exactly as to Google or Keycloak.
//!
//! It stands in for someone else's server, so it uses only third-party crates
//! and never the relying-party code: a bug in the relying party's checks
//! cannot confirm itself here.
//!
//! # Layout
//! - `authorize`: the sign-in page and the authorization response.
//! - `logout`: RP-initiated logout.
//! - `revoke`: token revocation (RFC 7009), recorded for tests.
//! - `token`: the token and userinfo endpoints and client authentication.
//! - `introspect`: token introspection (RFC 7662) and RFC 9068 JWT access tokens.
//! - `refresh`: the refresh token grant, rotating refresh tokens.
//! - `jws`: the signing key (ES256, or RS256/PS256), its JWK and compact JWS signing.
//! - `store`: bounded, expiring in-memory storage for codes and tokens.
//! - `params`: strict parsing of form-encoded request parameters.
//! - `pages`: the HTML pages, their security headers, and redirects.

mod authorize;
mod introspect;
mod jws;
mod logout;
mod pages;
mod params;
mod refresh;
mod revoke;
mod store;
mod token;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use url::Url;

pub use self::jws::{KeyRefused, RsaAlg};
pub use self::revoke::{Revocation, Revoked};
use self::store::ExpiringMap;

/// How long an authorization code can be redeemed.
const CODE_TTL: Duration = Duration::from_secs(60);
/// How long a redeemed code is remembered, so a replay can revoke its token.
const REDEEMED_CODE_TTL: Duration = Duration::from_secs(600);
/// Lifetime of an access token, in seconds (also sent as `expires_in`).
const ACCESS_TOKEN_TTL_SECS: u64 = 3600;
/// Lifetime of a refresh token, in seconds.
/// Lifetime of an ID token, in seconds.
const ID_TOKEN_TTL_SECS: i64 = 300;
/// Most codes or tokens held at once, so nobody can exhaust memory.
const MAX_ENTRIES: usize = 10_000;
/// Longest `state` we carry; longer ones are refused.
const MAX_STATE_LEN: usize = 2048;
/// Largest request body accepted; every legitimate request is far smaller.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// The one client registered with the development provider.
#[derive(Clone)]
pub struct DevClient {
    /// The `client_id` the relying party presents.
    pub client_id: String,
    /// The client secret, checked on the token endpoint.
    pub client_secret: String,
    /// Redirect URIs accepted on `/authorize`, compared as exact strings.
    pub redirect_uris: Vec<String>,
    /// Redirect URIs accepted on `/end_session`, compared as exact strings.
    pub post_logout_redirect_uris: Vec<String>,
}

impl fmt::Debug for DevClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevClient")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("redirect_uris", &self.redirect_uris)
            .field("post_logout_redirect_uris", &self.post_logout_redirect_uris)
            .finish()
    }
}

/// A development OpenID Provider: signing key, registered client and the
/// codes and tokens it has issued. Cheap to clone.
#[derive(Clone)]
pub struct DevProvider {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: Url,
    client: DevClient,
    /// Shared by the providers made from this one (`with_access_tokens`).
    key: Arc<jws::Key>,
    codes: Mutex<ExpiringMap<CodeEntry>>,
    tokens: Mutex<ExpiringMap<TokenGrant>>,
    refresh_tokens: Mutex<ExpiringMap<refresh::RefreshEntry>>,
    grants: Mutex<refresh::Grants>,
    /// Refresh token grants answered.
    refreshes: AtomicU64,
    /// Lifetime of the access tokens issued, in seconds.
    access_ttl: AtomicU64,
    /// Every revocation accepted, in order (for tests to see and wait for).
    revocations: tokio::sync::watch::Sender<Vec<Revocation>>,
    /// The access tokens it issues: for an API (an audience), as a JWT or opaque.
    access: AccessTokens,
    /// Introspection requests answered, for tests and the curious.
    introspections: AtomicU64,
    /// Claims of each user's ID tokens beyond the sign-in form's, by `sub`
    /// ([`DevProvider::set_claims_of`]).
    extra_claims: Mutex<HashMap<String, serde_json::Map<String, serde_json::Value>>>,
}

/// What the access tokens are (an API's audience is what a resource
/// indicator, RFC 8707, or a provider's API registration gives them).
#[derive(Clone, Debug, Default)]
pub struct AccessTokens {
    /// The `aud` of every access token; `None`: opaque tokens for UserInfo only.
    pub audience: Option<String>,
    /// With an audience: opaque tokens (checked by introspection) rather
    /// than RFC 9068 JWTs.
    pub opaque: bool,
}

/// The person who signed in on the sign-in page.
#[derive(Clone, Debug)]
struct User {
    sub: String,
    name: String,
    email: String,
    /// The `acr` typed on the sign-in form (how the user "signed in"), if any.
    acr: Option<String>,
}

/// What an authorization code was issued for.
#[derive(Clone, Debug)]
struct CodeGrant {
    client_id: String,
    redirect_uri: String,
    nonce: Option<String>,
    code_challenge: String,
    scope: String,
    user: User,
    sid: String,
    /// Unix time of the sign-in.
    auth_time: i64,
}

/// An authorization code, before or after its single use.
#[derive(Clone, Debug)]
enum CodeEntry {
    Issued(Box<CodeGrant>),
    /// Already exchanged for this access token; a replay revokes it.
    Redeemed {
        access_token: String,
    },
}

/// What an access token was issued for.
#[derive(Clone, Debug)]
struct TokenGrant {
    user: User,
    /// Its scope, as granted.
    scope: String,
    /// Unix time it expires.
    expires_at: i64,
}

impl DevProvider {
    /// Creates a provider with a fresh ES256 (P-256) signing key and a random
    /// key id.
    ///
    /// `issuer` is the full external URL where [`DevProvider::router`] is
    /// mounted, e.g. `http://localhost:5000/dev-provider` (no trailing slash).
    pub fn new(issuer: Url, client: DevClient) -> Self {
        Self::with_key(issuer, client, jws::Key::generate())
    }

    fn with_key(issuer: Url, client: DevClient, key: jws::Key) -> Self {
        Self::with_parts(issuer, client, Arc::new(key), AccessTokens::default())
    }

    fn with_parts(issuer: Url, client: DevClient, key: Arc<jws::Key>, access: AccessTokens) -> Self {
        Self {
            inner: Arc::new(Inner {
                issuer,
                client,
                key,
                codes: Mutex::new(ExpiringMap::new(MAX_ENTRIES)),
                tokens: Mutex::new(ExpiringMap::new(MAX_ENTRIES)),
                refresh_tokens: Mutex::new(ExpiringMap::new(MAX_ENTRIES)),
                revocations: tokio::sync::watch::Sender::new(Vec::new()),
                access,
                introspections: AtomicU64::new(0),
                grants: Mutex::default(),
                refreshes: AtomicU64::new(0),
                access_ttl: AtomicU64::new(ACCESS_TOKEN_TTL_SECS),
                extra_claims: Mutex::default(),
            }),
        }
    }

    /// A provider for the same client at `issuer` that signs ID tokens with
    /// `alg` and the RSA key `pkcs8` (DER) instead of ES256: for trying and
    /// measuring the relying party against what most providers use.
    pub fn with_rsa_key(&self, issuer: Url, alg: RsaAlg, pkcs8: &[u8]) -> Result<Self, KeyRefused> {
        let key = jws::Key::rsa(alg, pkcs8)?;
        Ok(Self::with_parts(
            issuer,
            self.inner.client.clone(),
            Arc::new(key),
            self.inner.access.clone(),
        ))
    }

    /// The same provider (key, client), issuing access tokens as `access` says.
    pub fn with_access_tokens(&self, access: AccessTokens) -> Self {
        Self::with_parts(
            self.inner.issuer.clone(),
            self.inner.client.clone(),
            self.inner.key.clone(),
            access,
        )
    }

    /// How many introspection requests it has answered.
    pub fn introspections(&self) -> u64 {
        self.inner.introspections.load(Ordering::Relaxed)
    }

    /// The issuer URL; its string form is the `iss` of every token.
    pub fn issuer(&self) -> &Url {
        &self.inner.issuer
    }

    /// The provider's routes, relative to its mount point, with state applied.
    ///
    /// Mount it with `app.nest_service("/dev-provider", dev.router())` so the
    /// mount point matches the issuer URL.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize::show).post(authorize::submit))
            .route("/token", post(token::token))
            .route("/userinfo", get(token::userinfo).post(token::userinfo))
            .route("/introspect", post(introspect::introspect))
            .route("/end_session", get(logout::end_session))
            .route("/revoke", post(revoke::revoke))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(self.clone())
    }

    /// Every token revocation accepted so far, in order.
    pub fn revocations(&self) -> Vec<Revocation> {
        self.inner.revocations.borrow().clone()
    }

    /// Waits until at least `n` revocations were accepted (or `limit` passed);
    /// returns them.
    pub async fn wait_for_revocations(&self, n: usize, limit: Duration) -> Vec<Revocation> {
        let mut seen = self.inner.revocations.subscribe();
        let _ = tokio::time::timeout(limit, seen.wait_for(|all| all.len() >= n)).await;
        self.revocations()
    }

    fn client(&self) -> &DevClient {
        &self.inner.client
    }

    fn issuer_str(&self) -> &str {
        self.inner.issuer.as_str()
    }

    /// The absolute URL of one of our endpoints, e.g. `endpoint("/token")`.
    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer_str().trim_end_matches('/'))
    }

    fn codes(&self) -> MutexGuard<'_, ExpiringMap<CodeEntry>> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.inner.codes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tokens(&self) -> MutexGuard<'_, ExpiringMap<TokenGrant>> {
        self.inner.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refresh_tokens(&self) -> MutexGuard<'_, ExpiringMap<refresh::RefreshEntry>> {
        self.inner.refresh_tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn grants(&self) -> MutexGuard<'_, refresh::Grants> {
        self.inner.grants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets what the provider says of the user `sub` from now on, in the ID
    /// tokens of their sign-ins and refreshes and in UserInfo, beyond (or
    /// instead of) the sign-in form's profile: as an administrator adding
    /// them to a group or changing their address would (tests:
    /// `{"groups": ["staff"]}`). The claims that identify a token (`iss`,
    /// `sub`, `aud`, its times, …) are not among them; an empty map clears.
    pub fn set_claims_of(&self, sub: &str, mut claims: serde_json::Map<String, serde_json::Value>) {
        claims.retain(|name, _| !PROTOCOL_CLAIMS.contains(&name.as_str()));
        let mut all = self.inner.extra_claims.lock().unwrap_or_else(|e| e.into_inner());
        all.insert(sub.to_owned(), claims);
    }

    /// Adds the claims set for `sub` ([`DevProvider::set_claims_of`]) to `claims`.
    fn add_claims_of(&self, sub: &str, claims: &mut serde_json::Value) {
        let all = self.inner.extra_claims.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(extra), Some(claims)) = (all.get(sub), claims.as_object_mut()) {
            claims.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
}

/// Claims that identify a token, which [`DevProvider::set_claims_of`] leaves alone.
const PROTOCOL_CLAIMS: [&str; 10] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "auth_time",
    "sid",
    "at_hash",
    "nonce",
];

/// Unix time now, for token claims.
fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// `GET /.well-known/openid-configuration`
async fn discovery(State(dev): State<DevProvider>) -> Response {
    let doc = json!({
        "issuer": dev.issuer_str(),
        "authorization_endpoint": dev.endpoint("/authorize"),
        "token_endpoint": dev.endpoint("/token"),
        "userinfo_endpoint": dev.endpoint("/userinfo"),
        "jwks_uri": dev.endpoint("/jwks"),
        "end_session_endpoint": dev.endpoint("/end_session"),
        "revocation_endpoint": dev.endpoint("/revoke"),
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "introspection_endpoint": dev.endpoint("/introspect"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [dev.inner.key.alg()],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "sid", "at_hash",
            "name", "email", "email_verified"
        ],
        "authorization_response_iss_parameter_supported": true,
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        // Defaults to true when absent, so say it.
        "request_uri_parameter_supported": false,
    });
    public_json(doc)
}

/// `GET /jwks`
async fn jwks(State(dev): State<DevProvider>) -> Response {
    public_json(json!({ "keys": [dev.inner.key.jwk()] }))
}

/// JSON that caches may keep for a few minutes.
fn public_json(body: serde_json::Value) -> Response {
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(body)).into_response()
}
