//! The OpenID provider, as seen by this relying party: discovery and keys
//! (cached, refreshed in the background, refetched on an unknown `kid`),
//! the expected signing algorithm, the authorization URL, the code exchange,
//! ID token validation, token revocation, and the bearer tokens of API clients.

mod alg;
mod backoff;
mod bearer;
mod claims;
mod discovery;
mod error;
mod jwk;
mod keys;
mod logout;
mod revoke;
mod set;
#[cfg(test)]
mod test_keys;
mod token;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::time::Instant;
use url::Url;

pub use alg::SigningAlg;
pub use bearer::{BearerRules, VerifiedBearer};
pub use claims::ClaimPath;
pub use discovery::Metadata;
pub use error::{ProviderError, Reason};
pub use logout::LogoutRequest;
pub use revoke::TokenHint;
pub use set::{Listed, Providers};
pub use token::UserInfo;
pub use verify::{ExtraClaims, VerifiedIdToken};

use crate::clock::Clock;
use crate::config::ClientConfig;
use crate::gateway::paths::StepUp;
use crate::secret::Secret;
use backoff::{FailedFetch, OncePer};
use jwk::GateJsonWebKeySet;

/// Delay before retrying a failed background refresh.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// Settings of a [`Provider`].
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// Issuer, client id and secret.
    pub client: ClientConfig,
    /// Our redirect URI (`PUBLIC_URL/callback`).
    pub redirect_uri: Url,
    /// Scopes to request.
    pub scopes: Vec<String>,
    /// Timeout of every outbound request.
    pub http_timeout: Duration,
    /// Allowed clock difference for `exp` and `iat`.
    pub clock_skew: Duration,
    /// Claims the access rules read (the groups claim): when the ID token
    /// lacks one, UserInfo is asked too.
    pub wanted_claims: Vec<ClaimPath>,
    /// Extra parameters of every authorization request (Google's `hd` hint).
    pub authorization_params: Vec<(String, String)>,
    /// The algorithm ID and logout tokens must be signed with
    /// (`OIDC_ID_TOKEN_ALG`); `None`: chosen from discovery.
    pub id_token_alg: Option<SigningAlg>,
    /// Audiences an ID token may name besides our client id, when its `azp`
    /// is our client id (`OIDC_TRUSTED_AUDIENCES`).
    pub trusted_audiences: Vec<String>,
}

/// A handle to the provider; cheap to clone.
#[derive(Clone)]
pub struct Provider {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ProviderSettings,
    http: reqwest::Client,
    clock: Clock,
    current: ArcSwapOption<Snapshot>,
    /// Serializes fetches so concurrent requests share one (single flight).
    fetch_lock: tokio::sync::Mutex<()>,
    /// While no discovery was fetched: the last failure, answered at once
    /// to requests until it is time to ask again.
    failed: FailedFetch,
    /// The last refresh, while it failed for want of an answer (see
    /// [`Provider::refresh_failing`]).
    refresh_failed: FailedFetch,
    /// Refetches for logout tokens naming unknown keys: anyone can send
    /// those, so one per interval, and never behind `fetch_lock`, where
    /// logins wait.
    logout_refetch: OncePer,
}

/// Discovery document and key set as last fetched.
pub struct Snapshot {
    /// The discovery document.
    pub metadata: Metadata,
    /// The algorithm ID and logout tokens must be signed with.
    pub id_token_alg: SigningAlg,
    jwks: GateJsonWebKeySet,
    jwks_fetched_at: Instant,
    refresh_at: Instant,
}

impl Snapshot {
    /// How many keys the provider publishes, and how many of them can
    /// verify tokens signed with [`Snapshot::id_token_alg`] (a usable key
    /// of its type, for signatures, not bound to another algorithm).
    pub fn keys(&self) -> (usize, usize) {
        use openidconnect::{JsonWebKey, JsonWebKeyAlgorithm, JsonWebKeyUse, JwsSigningAlgorithm};
        let alg = self.id_token_alg.core();
        let fits = |key: &jwk::GateJsonWebKey| {
            key.unusable().is_none()
                && alg.key_type().as_ref() == Some(key.key_type())
                && key.key_use().is_none_or(|u| u.allows_signature())
                && match key.signing_alg() {
                    JsonWebKeyAlgorithm::Algorithm(a) => *a == alg,
                    JsonWebKeyAlgorithm::Unspecified => true,
                    JsonWebKeyAlgorithm::Unsupported => false,
                }
        };
        let keys = self.jwks.keys();
        (keys.len(), keys.iter().filter(|k| fits(k)).count())
    }
}

/// The result of a successful code exchange and ID token validation.
#[derive(Debug)]
pub struct Login {
    /// Validated ID token claims, completed from UserInfo when needed.
    pub id_token: VerifiedIdToken,
    /// The raw ID token, kept as `id_token_hint` for logout.
    pub raw_id_token: String,
    /// UserInfo's claims beyond the profile ones (empty when it was not asked).
    pub userinfo_claims: serde_json::Map<String, serde_json::Value>,
    /// The access token.
    pub access_token: Secret,
    /// When the access token expires (Unix seconds), if the provider said.
    pub access_expires_at: Option<i64>,
    /// The refresh token, when the provider issued one.
    pub refresh_token: Option<Secret>,
}

/// The result of a successful refresh.
#[derive(Debug)]
pub struct Refreshed {
    /// The new access token.
    pub access_token: Secret,
    /// When it expires (Unix seconds), if the provider said.
    pub access_expires_at: Option<i64>,
    /// A new refresh token, when the provider rotates them (the old one is
    /// then spent); `None`: the old one stays.
    pub refresh_token: Option<Secret>,
    /// A new ID token, validated like the first and naming the same user.
    pub raw_id_token: Option<String>,
    /// Its claims, completed from UserInfo as at sign-in, when asked for;
    /// `None` without a new ID token, or when UserInfo failed.
    pub profile: Option<Profile>,
}

/// What a refreshed ID token says of the user, as [`Login`] does of a sign-in.
#[derive(Debug)]
pub struct Profile {
    /// Its validated claims, completed from UserInfo when needed.
    pub id_token: VerifiedIdToken,
    /// UserInfo's claims beyond the profile ones (empty when it was not asked).
    pub userinfo_claims: serde_json::Map<String, serde_json::Value>,
}

impl Provider {
    /// A provider handle; nothing is fetched until [`Provider::refresh`] or first use.
    pub fn new(settings: ProviderSettings, clock: Clock) -> Self {
        let http = reqwest::Client::builder()
            // Following redirects would let a provider point us anywhere (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.http_timeout)
            .timeout(settings.http_timeout)
            .user_agent(concat!("oidc-gate/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a TLS backend is compiled in");
        Self {
            inner: Arc::new(Inner {
                settings,
                http,
                clock,
                current: ArcSwapOption::empty(),
                fetch_lock: tokio::sync::Mutex::new(()),
                failed: FailedFetch::default(),
                refresh_failed: FailedFetch::default(),
                logout_refetch: OncePer::default(),
            }),
        }
    }

    /// The clock skew allowed in token times (`OIDC_CLOCK_SKEW`).
    pub fn clock_skew(&self) -> Duration {
        self.inner.settings.clock_skew
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.inner.settings.client.issuer
    }

    /// Our client id.
    pub fn client_id(&self) -> &str {
        &self.inner.settings.client.client_id
    }

    /// Fetches discovery and JWKS now, replacing the cached ones.
    pub async fn refresh(&self) -> Result<Arc<Snapshot>, ProviderError> {
        let _guard = self.inner.fetch_lock.lock().await;
        self.fetch_all().await
    }

    /// Fetches discovery and keys (the caller holds `fetch_lock`), and
    /// remembers a failure.
    async fn fetch_all(&self) -> Result<Arc<Snapshot>, ProviderError> {
        let fetched = self.fetch_both().await;
        self.inner.failed.record(&fetched);
        fetched
    }

    async fn fetch_both(&self) -> Result<Arc<Snapshot>, ProviderError> {
        let http = &self.inner.http;
        let (metadata, meta_ttl) = discovery::fetch_metadata(http, self.issuer()).await?;
        let expected = alg::expected(
            self.inner.settings.id_token_alg,
            metadata.id_token_signing_alg_values_supported.as_deref(),
        )?;
        let (jwks, jwks_ttl) = discovery::fetch_jwks(http, &metadata.jwks_uri).await?;
        let before = self.inner.current.load().as_ref().map(|s| s.id_token_alg);
        if before != Some(expected.alg) {
            tracing::info!(alg = %expected.alg, why = expected.why, "ID and logout tokens must be signed with this algorithm");
        }
        let now = Instant::now();
        let snapshot = Arc::new(Snapshot {
            metadata,
            id_token_alg: expected.alg,
            jwks,
            jwks_fetched_at: now,
            refresh_at: now + meta_ttl.min(jwks_ttl),
        });
        self.inner.current.store(Some(snapshot.clone()));
        Ok(snapshot)
    }

    /// The cached discovery document and keys, fetched now if there are
    /// none yet. While the last fetch failed recently (1 s, doubling up to
    /// 30 s), its error at once: anonymous requests ask for this, and must
    /// not each wait on a provider that does not answer.
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>, ProviderError> {
        if let Some(s) = self.inner.current.load_full() {
            return Ok(s);
        }
        if let Some(e) = self.inner.failed.remembered() {
            return Err(e);
        }
        let _guard = self.inner.fetch_lock.lock().await;
        if let Some(s) = self.inner.current.load_full() {
            return Ok(s);
        }
        // The fetch this request waited on failed.
        if let Some(e) = self.inner.failed.remembered() {
            return Err(e);
        }
        self.fetch_all().await
    }

    /// Keeps discovery and keys fresh until the task is dropped: refetches
    /// when the cache lifetime ends, and retries failures every 30 s (or,
    /// while none was ever fetched, once the failure is no longer remembered).
    pub async fn refresh_forever(self) {
        loop {
            let fetched = self.inner.current.load_full();
            let next = match &fetched {
                Some(s) => s.refresh_at,
                None => self.inner.failed.retry_at().unwrap_or_else(Instant::now),
            };
            tokio::time::sleep_until(next).await;
            let result = match fetched {
                Some(_) => self.refresh().await,
                // Shared with the requests waiting for it.
                None => self.snapshot().await,
            };
            if let Err(e) = result {
                tracing::warn!(reason = %e.reason, error = %e.detail, "provider refresh failed; retrying");
                if self.inner.current.load().is_some() {
                    tokio::time::sleep(RETRY_AFTER).await;
                }
            }
        }
    }

    /// The URL to send the browser to (built locally; no request is made).
    /// `prompt` is passed on as is (e.g. `select_account`: the provider shows
    /// its account chooser rather than signing the same account in again).
    pub fn authorization_url(
        &self,
        snapshot: &Snapshot,
        state: &str,
        nonce: &str,
        pkce_challenge: &str,
        prompt: Option<&str>,
        step_up: &StepUp,
    ) -> Url {
        // `max_age=0`: the user signs in again whatever the provider's session.
        let prompt = prompt.or((step_up.max_age == Some(0)).then_some("login"));
        let s = &self.inner.settings;
        let mut url = snapshot.metadata.authorization_endpoint.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &s.client.client_id)
            .append_pair("redirect_uri", s.redirect_uri.as_str())
            .append_pair("scope", &s.scopes.join(" "))
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", pkce_challenge)
            .append_pair("code_challenge_method", "S256");
        for (name, value) in &s.authorization_params {
            // The page's own prompt (the account chooser) wins over a default one.
            if name == "prompt" && prompt.is_some() {
                continue;
            }
            // As are the path's step-up settings.
            if (name == "max_age" && step_up.max_age.is_some())
                || (name == "acr_values" && step_up.acr_values.is_some())
            {
                continue;
            }
            url.query_pairs_mut().append_pair(name, value);
        }
        if let Some(prompt) = prompt {
            url.query_pairs_mut().append_pair("prompt", prompt);
        }
        if let Some(max_age) = step_up.max_age {
            url.query_pairs_mut().append_pair("max_age", &max_age.to_string());
        }
        if let Some(values) = &step_up.acr_values {
            url.query_pairs_mut().append_pair("acr_values", &values.join(" "));
        }
        url
    }

    /// Exchanges `code`, validates the ID token and completes the profile
    /// from UserInfo when the ID token lacks it (or lacks a wanted claim).
    pub async fn complete_login(&self, code: &str, pkce_verifier: &str, nonce: &str) -> Result<Login, ProviderError> {
        let s = &self.inner.settings;
        let snapshot = self.snapshot().await?;
        let tokens = token::exchange_code(
            &self.inner.http,
            &snapshot.metadata,
            &s.client,
            s.redirect_uri.as_str(),
            code,
            pkce_verifier,
        )
        .await?;
        let raw = tokens.id_token.unwrap_or_default();
        let mut id_token = self
            .verify_id_token(snapshot, &raw, Some(nonce), &tokens.access_token)
            .await?;
        let userinfo_claims = self.complete_from_userinfo(&mut id_token, &tokens.access_token).await?;
        let now = self.inner.clock.unix();
        Ok(Login {
            id_token,
            raw_id_token: raw,
            userinfo_claims,
            access_expires_at: tokens
                .expires_in
                .map(|s| now.saturating_add(i64::try_from(s).unwrap_or(i64::MAX))),
            access_token: Secret::new(tokens.access_token),
            refresh_token: tokens.refresh_token.filter(|t| !t.is_empty()).map(Secret::new),
        })
    }

    /// Completes `id_token` from UserInfo when it lacks the email address,
    /// the name or a wanted claim (and the provider has UserInfo); returns
    /// UserInfo's other claims (empty when it was not asked).
    async fn complete_from_userinfo(
        &self,
        id_token: &mut VerifiedIdToken,
        access_token: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, ProviderError> {
        let lacks_wanted = self
            .inner
            .settings
            .wanted_claims
            .iter()
            .any(|c| c.find(&id_token.claims).is_none());
        if id_token.email.is_some() && id_token.name.is_some() && !lacks_wanted {
            return Ok(serde_json::Map::new());
        }
        let current = self.snapshot().await?;
        let Some(endpoint) = &current.metadata.userinfo_endpoint else {
            return Ok(serde_json::Map::new());
        };
        let info = token::userinfo(&self.inner.http, endpoint, access_token).await?;
        if info.sub != id_token.subject {
            return Err(ProviderError::new(
                Reason::UserinfoSub,
                "UserInfo sub differs from the ID token's",
            ));
        }
        id_token.email = id_token.email.take().or(info.email);
        id_token.email_verified = id_token.email_verified.or(info.email_verified);
        id_token.name = id_token.name.take().or(info.name);
        id_token.picture = id_token.picture.take().or(info.picture);
        Ok(info.other)
    }

    /// Redeems `refresh_token` of the login of `subject` (RFC 6749 §6). A
    /// new ID token, if the answer has one, is validated like the first
    /// (signature, `iss`, `aud`, times, `at_hash`) and must name the same
    /// `sub` (OIDC Core §12.2), else [`Reason::RefreshSubject`]. With
    /// `profile`, its claims are completed from UserInfo as at sign-in
    /// ([`Refreshed::profile`]).
    pub async fn refresh_tokens(
        &self,
        refresh_token: &str,
        subject: &str,
        profile: bool,
    ) -> Result<Refreshed, ProviderError> {
        let refreshed = self.redeem(refresh_token, subject, profile).await;
        // A refusal is an answer: only a provider that gave none is waited out.
        let failed = refreshed.as_ref().err().filter(|e| e.reason.is_upstream_failure());
        self.inner.refresh_failed.note(failed);
        refreshed
    }

    /// Whether the last refresh here failed for want of an answer (the
    /// provider unreachable, slow, a `5xx`, garbage) a moment ago: it is
    /// remembered for 1 s, doubling up to 30 s while refreshes fail in a
    /// row. A request that only wants a session's newest claims goes on
    /// with the ones it has rather than wait for the provider again.
    pub fn refresh_failing(&self) -> bool {
        self.inner.refresh_failed.remembered().is_some()
    }

    /// [`Provider::refresh_tokens`], unrecorded.
    async fn redeem(&self, refresh_token: &str, subject: &str, profile: bool) -> Result<Refreshed, ProviderError> {
        let snapshot = self.snapshot().await?;
        let tokens = token::refresh(
            &self.inner.http,
            &snapshot.metadata,
            &self.inner.settings.client,
            refresh_token,
        )
        .await?;
        let raw_id_token = tokens.id_token.filter(|t| !t.is_empty());
        let mut verified = None;
        if let Some(raw) = &raw_id_token {
            let claims = self.verify_id_token(snapshot, raw, None, &tokens.access_token).await?;
            if claims.subject != subject {
                return Err(ProviderError::new(
                    Reason::RefreshSubject,
                    "the refreshed ID token names another sub than the session's",
                ));
            }
            verified = Some(claims);
        }
        let profile = match verified.filter(|_| profile) {
            Some(mut id_token) => match self.complete_from_userinfo(&mut id_token, &tokens.access_token).await {
                Ok(userinfo_claims) => Some(Profile {
                    id_token,
                    userinfo_claims,
                }),
                // The refresh token may have been spent: the new tokens must
                // be kept, with the claims the session has.
                Err(e) if e.reason.is_upstream_failure() => {
                    tracing::warn!(reason = %e.reason, detail = %e.detail, "UserInfo failed at a refresh; the session's claims stay");
                    None
                }
                Err(e) => return Err(e),
            },
            None => None,
        };
        let now = self.inner.clock.unix();
        Ok(Refreshed {
            access_expires_at: tokens
                .expires_in
                .map(|s| now.saturating_add(i64::try_from(s).unwrap_or(i64::MAX))),
            access_token: Secret::new(tokens.access_token),
            refresh_token: tokens.refresh_token.filter(|t| !t.is_empty()).map(Secret::new),
            raw_id_token,
            profile,
        })
    }

    /// Where to send the browser for RP-initiated logout, if the provider
    /// supports it; the provider passes `state` back to `post_logout_redirect_uri`.
    pub fn end_session_url(
        &self,
        id_token_hint: Option<&str>,
        post_logout_redirect_uri: &Url,
        state: Option<&str>,
    ) -> Option<Url> {
        let snapshot = self.inner.current.load_full()?;
        let mut url = snapshot.metadata.end_session_endpoint.clone()?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(hint) = id_token_hint {
                q.append_pair("id_token_hint", hint);
            }
            q.append_pair("post_logout_redirect_uri", post_logout_redirect_uri.as_str());
            q.append_pair("client_id", self.client_id());
            if let Some(state) = state {
                q.append_pair("state", state);
            }
        }
        Some(url)
    }
}
