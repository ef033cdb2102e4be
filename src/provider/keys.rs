//! Tokens checked against the provider's keys, and the key set refetched
//! when a token names a key we do not have. An ID token comes from the
//! token endpoint, over a connection we opened and authenticated: its `kid`
//! is the provider's, so it always gets its refetch (concurrent logins
//! share one). Anyone can send a logout token: its refetches are one per
//! [`LOGOUT_REFETCH_INTERVAL`], and never wait on, or hold up, a login's.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::error::{ProviderError, Reason};
use super::logout::{self, KeyCheck, LogoutRequest};
use super::verify::{self, Expectations, Verdict, VerifiedIdToken};
use super::{Provider, Snapshot, discovery};

/// Minimum time between two JWKS refetches caused by logout tokens naming
/// unknown key ids.
pub(super) const LOGOUT_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

impl Provider {
    /// Validates an ID token from the token endpoint against `snapshot`'s
    /// keys, and against a refetched set if it names a key not in them.
    pub(super) async fn verify_id_token(
        &self,
        snapshot: Arc<Snapshot>,
        raw: &str,
        nonce: Option<&str>,
        access_token: &str,
    ) -> Result<VerifiedIdToken, ProviderError> {
        let s = &self.inner.settings;
        let want = Expectations {
            issuer: &s.client.issuer,
            client_id: &s.client.client_id,
            nonce,
            access_token,
            now_unix: self.inner.clock.unix(),
            skew: s.clock_skew,
            alg: snapshot.id_token_alg,
            trusted_audiences: &s.trusted_audiences,
        };
        match verify::verify(raw, &snapshot.jwks, &want) {
            Verdict::Valid(t) => return Ok(t),
            Verdict::Invalid(e) => return Err(e),
            Verdict::UnknownKey => {}
        }
        let unknown = || {
            ProviderError::new(
                Reason::IdTokenUnknownKey,
                "no key in the provider's JWKS matches the token",
            )
        };
        let Some(fresh) = self.refetch_jwks(&snapshot).await else {
            return Err(unknown());
        };
        match verify::verify(raw, &fresh.jwks, &want) {
            Verdict::Valid(t) => Ok(t),
            Verdict::Invalid(e) => Err(e),
            Verdict::UnknownKey => Err(unknown()),
        }
    }

    /// Validates a back-channel logout token (`alg`, signature, `iss`,
    /// `aud`, `iat`, `jti`, the logout event, `sid`/`sub`, no `nonce`).
    /// Replays are the caller's to refuse, with the returned `jti`.
    pub async fn verify_logout_token(&self, raw: &str) -> Result<LogoutRequest, ProviderError> {
        let jws = logout::parse(raw)?;
        let snapshot = self.snapshot().await?;
        // Before any key is looked for: a token of another algorithm never
        // causes a refetch.
        jws.check_alg(snapshot.id_token_alg)?;
        let checked = match jws.check_signature(&snapshot.jwks) {
            KeyCheck::UnknownKey => match self.refetch_jwks_for_logout(&snapshot).await {
                Some(fresh) => jws.check_signature(&fresh.jwks),
                None => KeyCheck::UnknownKey,
            },
            other => other,
        };
        let refused = |reason, detail| Err(ProviderError::new(reason, detail));
        match checked {
            KeyCheck::Valid => {}
            KeyCheck::UnknownKey => return refused(Reason::LogoutToken, "no matching key"),
            KeyCheck::BadSignature => return refused(Reason::LogoutToken, "bad signature"),
            KeyCheck::KeyTooSmall => return refused(Reason::LogoutTokenKeyTooSmall, "RSA key under 2048 bits"),
        }
        let s = &self.inner.settings;
        jws.into_request(
            &s.client.issuer,
            &s.client.client_id,
            self.inner.clock.unix(),
            s.clock_skew.as_secs() as i64,
        )
    }

    /// Refetches the JWKS after an ID token named a key not in `seen`'s.
    /// Single flight: a login that waited while another refetched takes that
    /// set. `None` when no newer set can be had.
    async fn refetch_jwks(&self, seen: &Arc<Snapshot>) -> Option<Arc<Snapshot>> {
        let _guard = self.inner.fetch_lock.lock().await;
        let current = self.inner.current.load_full()?;
        if current.jwks_fetched_at > seen.jwks_fetched_at {
            return Some(current); // someone else fetched while we waited
        }
        self.refetch_keys(current).await
    }

    /// Refetches the JWKS after a logout token (or a bearer token: anyone
    /// can send either) named a key we do not have.
    /// At most one such refetch per [`LOGOUT_REFETCH_INTERVAL`], tokens
    /// meanwhile get `None` at once, and `fetch_lock` (where logins wait) is
    /// neither taken nor waited on.
    pub(super) async fn refetch_jwks_for_logout(&self, seen: &Arc<Snapshot>) -> Option<Arc<Snapshot>> {
        let current = self.inner.current.load_full()?;
        if current.jwks_fetched_at > seen.jwks_fetched_at {
            return Some(current); // refetched since the token was checked
        }
        if !self.inner.logout_refetch.claim(LOGOUT_REFETCH_INTERVAL) {
            return None;
        }
        self.refetch_keys(current).await
    }

    /// Fetches the JWKS of `base`'s discovery; installs it in place of
    /// `base` (a snapshot installed meanwhile, by a background refresh, stays).
    async fn refetch_keys(&self, base: Arc<Snapshot>) -> Option<Arc<Snapshot>> {
        match discovery::fetch_jwks(&self.inner.http, &base.metadata.jwks_uri).await {
            Ok((jwks, _)) => {
                let fresh = Arc::new(Snapshot {
                    metadata: base.metadata.clone(),
                    id_token_alg: base.id_token_alg,
                    jwks,
                    jwks_fetched_at: Instant::now(),
                    refresh_at: base.refresh_at,
                });
                self.inner.current.compare_and_swap(&Some(base), Some(fresh.clone()));
                tracing::info!("provider keys refetched after an unknown key id");
                Some(fresh)
            }
            Err(e) => {
                tracing::warn!(reason = %e.reason, error = %e.detail, "JWKS refetch failed");
                None
            }
        }
    }
}
