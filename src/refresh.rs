//! Refreshing a session's access token when a request needs it: the
//! gateway passing it upstream, a handler asking for it
//! ([`crate::web::UserTokens`]), or the access rules judging the session
//! (on the claims of its newest ID token). Nothing refreshes in the
//! background.
//!
//! The hot path reads the tokens the session was loaded with and nothing
//! else. Only when the access token is about to expire (a margin of a
//! quarter of its lifetime, at most a minute) or `SESSION_REFRESH_INTERVAL`
//! has passed does a request go further: one request per instance waits on
//! a local lock, and across instances one takes the session's lease in the
//! session store (see [`crate::store`]'s token slots), reads the tokens a
//! refresh last wrote, and asks the provider only if they are still due.
//! The others poll the slot until a fresh one appears (or the session is
//! gone) and use it: a rotating refresh token is redeemed exactly once.
//!
//! The provider refusing the refresh token (`invalid_grant`), or a
//! refreshed ID token that fails validation or names another user, ends
//! the session at once, for every instance (its record is deleted). An
//! unreachable provider keeps the session and its token until the token
//! expires; then the request fails with 503.
//!
//! A refreshed ID token also replaces the claims the access rules judge
//! ([`crate::web`]'s recheck, on every request): they are kept with the
//! tokens, in the slot and in the session, so that no save of a session
//! loaded before the refresh brings the old ones back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;
use tower_sessions::Session;
use tower_sessions::session::Id;
use tower_sessions::session_store::SessionStore as _;

use crate::access::{Claims, Rules};
use crate::clock::Clock;
use crate::provider::{ProviderError, Providers};
use crate::secret::Secret;
use crate::session::{ACCESS_KEY, ACTIVITY_KEY, Activity, LOGIN_KEY, Lifetimes, LoginData, TOKENS_KEY};
use crate::store::{SessionBackend, Store, StoreError};
use crate::tokens::{Kind, StoredTokens, TokenVault};

/// How often a request waiting for another's refresh looks again.
const POLL: Duration = Duration::from_millis(20);
/// The refresh margin never exceeds this.
const MAX_MARGIN_SECS: i64 = 60;

/// Why no access token could be had, the session still there.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The access token expired and the provider could not refresh it.
    #[error("the access token expired and could not be refreshed: {0}")]
    Unavailable(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The session store failed.
    #[error(transparent)]
    Session(#[from] tower_sessions::session::Error),
}

/// A session that ended while its tokens were refreshed: the provider
/// refused its refresh token, or a refreshed ID token failed validation,
/// here or on another instance. The request is now anonymous.
pub struct Ended {
    /// Why, as counted: the provider's reason code (`refresh_rejected`,
    /// `refresh_sub`, `id_token_iss`, …), `refresh_iss`, or `ended` when
    /// another request ended it (and counted it).
    pub reason: &'static str,
    /// Who it was.
    pub login: Option<Box<LoginData>>,
}

/// Refreshes sessions' tokens. Cheap to clone.
#[derive(Clone)]
pub struct Refresher(Arc<Inner>);

struct Inner {
    providers: Providers,
    /// The global access rules: which claims a session keeps.
    access: Rules,
    store: Store,
    sessions: SessionBackend,
    vault: TokenVault,
    clock: Clock,
    lifetimes: Lifetimes,
    /// `SESSION_REFRESH_INTERVAL`.
    interval: Option<Duration>,
    /// How long a lease holds: longer than a refresh can take (two calls
    /// to the provider and a few to the store).
    lease: Duration,
    /// One request per session at a time on this instance.
    local: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for Refresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresher").field("interval", &self.0.interval).finish()
    }
}

/// What a refresh needs besides the provider and the store.
pub struct RefreshSettings {
    /// The global access rules (`ALLOWED_GROUPS`, …): which claims of a
    /// refreshed ID token the session keeps.
    pub access: Rules,
    /// Seals and opens the tokens.
    pub vault: TokenVault,
    /// Session lifetimes (the slot lives to the session's end).
    pub lifetimes: Lifetimes,
    /// `SESSION_REFRESH_INTERVAL`.
    pub interval: Option<Duration>,
    /// `OIDC_HTTP_TIMEOUT`.
    pub http_timeout: Duration,
    /// `STORE_TIMEOUT`.
    pub store_timeout: Duration,
}

/// What a request wants of a session's tokens.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    /// The access token itself (it is passed on, or handed to a handler).
    Token,
    /// Only the newest claims, for the access rules.
    Claims,
}

impl Refresher {
    /// A refresher for sessions in `store`.
    pub fn new(providers: Providers, store: Store, clock: Clock, settings: RefreshSettings) -> Self {
        let lease = settings.http_timeout * 2 + settings.store_timeout * 3;
        Self(Arc::new(Inner {
            providers,
            access: settings.access,
            sessions: store.session_backend(),
            store,
            vault: settings.vault,
            clock,
            lifetimes: settings.lifetimes,
            interval: settings.interval,
            lease,
            local: Mutex::default(),
        }))
    }

    /// The session's access token, refreshed first if it is due; `None`
    /// when the session keeps none (not signed in, or the token expired
    /// and there is no refresh token). On [`Outcome::Ended`] the session
    /// was ended; its audit event is the caller's.
    pub async fn access_token(&self, session: &Session) -> Result<Option<Secret>, Outcome> {
        let tokens = self.tokens(session).await?;
        Ok(tokens.and_then(|t| self.open_access(&t)))
    }

    /// The session's tokens, the access token refreshed first if it is due.
    pub async fn tokens(&self, session: &Session) -> Result<Option<StoredTokens>, Outcome> {
        self.tokens_for(session, Need::Token).await
    }

    /// Brings the session's claims up to date for a request that needs no
    /// token, only the newest claims for the access rules to judge: its
    /// tokens refreshed first if they are due, as [`Refresher::tokens`]
    /// does. Such a request never fails for want of the provider: when it
    /// does not answer (even with the token expired) the request goes on
    /// with the claims the session has, and while it keeps failing to
    /// refresh ([`crate::provider::Provider::refresh_failing`]) without
    /// waiting for it (up to `OIDC_HTTP_TIMEOUT`) on every page. `Err`: the
    /// refresh ended the session, or the store failed.
    pub async fn tokens_to_judge(&self, session: &Session) -> Result<(), Outcome> {
        match self.tokens_for(session, Need::Claims).await {
            Ok(_) | Err(Outcome::Failed(TokenError::Unavailable(_))) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn tokens_for(&self, session: &Session, need: Need) -> Result<Option<StoredTokens>, Outcome> {
        let Some(tokens) = session
            .get::<StoredTokens>(TOKENS_KEY)
            .await
            .map_err(TokenError::from)?
        else {
            return Ok(None);
        };
        let now = self.0.clock.unix();
        if !self.due(&tokens, now) || tokens.refresh.is_none() {
            return Ok(Some(tokens));
        }
        if need == Need::Claims && self.provider_failing(session).await? {
            return Ok(Some(tokens));
        }
        // Boxed: every request's future would otherwise hold a refresh's
        // (large, and deeper than the compiler lays out by default).
        Box::pin(self.refresh(session, tokens, now)).await.map(Some)
    }

    /// Whether the provider that signed `session` in is failing to refresh.
    async fn provider_failing(&self, session: &Session) -> Result<bool, Outcome> {
        let login = session.get::<LoginData>(LOGIN_KEY).await.map_err(TokenError::from)?;
        Ok(login
            .and_then(|l| self.0.providers.by_issuer(&l.issuer))
            .is_some_and(|listed| listed.provider.refresh_failing()))
    }

    /// The session's latest tokens, without refreshing: those a refresh
    /// last wrote (on any instance), else the session's own. For logout's
    /// revocation, which must revoke the refresh token in use, not one a
    /// refresh has since replaced.
    pub async fn latest(&self, session: &Session) -> Result<Option<StoredTokens>, TokenError> {
        if let Some(id) = session.id()
            && let Some(data) = self.0.sessions.refreshed_tokens(&id.to_string()).await?
            && let Some(slot) = Slot::read(&data)
        {
            return Ok(Some(slot.tokens));
        }
        Ok(session.get::<StoredTokens>(TOKENS_KEY).await?)
    }

    /// Opens the access token of `tokens` unless it has expired.
    pub fn open_access(&self, tokens: &StoredTokens) -> Option<Secret> {
        let now = self.0.clock.unix();
        tokens
            .access
            .as_deref()
            .filter(|_| tokens.access_expires_at.is_none_or(|at| at > now))
            .and_then(|sealed| self.0.vault.open(Kind::Access, sealed))
    }

    /// Opens the ID token of `tokens`.
    pub fn open_id(&self, tokens: &StoredTokens) -> Option<Secret> {
        tokens
            .id
            .as_deref()
            .and_then(|sealed| self.0.vault.open(Kind::Id, sealed))
    }

    /// Whether `tokens` should be refreshed at `now`.
    pub fn due(&self, tokens: &StoredTokens, now: i64) -> bool {
        due(tokens, now, self.0.interval)
    }

    /// Refreshes the tokens of `session`, or waits for the request that does.
    async fn refresh(&self, session: &Session, stale: StoredTokens, now: i64) -> Result<StoredTokens, Outcome> {
        let Some(id) = session.id() else {
            let stale = Slot {
                tokens: stale,
                claims: None,
            };
            return self.unrefreshed(session, stale, now, "unsaved session").await;
        };
        let key = id.to_string();
        let local = self.local_lock(&key);
        let _one_here = local.lock().await;
        let ends_by = match session.get::<Activity>(ACTIVITY_KEY).await.map_err(TokenError::from)? {
            Some(activity) => self.0.lifetimes.ends_by(&activity),
            None => now + self.0.lifetimes.max_age.as_secs() as i64,
        };
        let give_up = Instant::now() + self.0.lease + POLL * 5;
        loop {
            let current = self.current(&id).await?;
            if !self.due(&current.tokens, now) {
                return adopt(session, current).await;
            }
            if self.0.sessions.take_refresh_lease(&key, self.0.lease, ends_by).await? {
                // In a task of its own: a client that hangs up must not cut
                // a refresh between the provider rotating the refresh token
                // and the new one being kept.
                let (this, session) = (self.clone(), session.clone());
                let leased = tokio::spawn(async move {
                    let result = this.refresh_leased(&session, &id, ends_by, now).await;
                    if !matches!(result, Err(Outcome::Ended(_))) {
                        // An ended session's lease went with it.
                        if let Err(e) = this.0.sessions.release_refresh_lease(&key).await {
                            tracing::warn!(error = %e, "could not release a refresh lease; it expires by itself");
                        }
                    }
                    result
                });
                return leased
                    .await
                    .unwrap_or_else(|e| Err(TokenError::Unavailable(format!("the refresh task failed: {e}")).into()));
            }
            if Instant::now() >= give_up {
                return self
                    .unrefreshed(session, current, now, "another refresh did not finish")
                    .await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The refresh proper, under the lease.
    async fn refresh_leased(
        &self,
        session: &Session,
        id: &Id,
        ends_by: i64,
        now: i64,
    ) -> Result<StoredTokens, Outcome> {
        // Another request may have finished between our look and the lease.
        let current = self.current(id).await?;
        if !self.due(&current.tokens, now) {
            return adopt(session, current).await;
        }
        let refresh = current
            .tokens
            .refresh
            .as_deref()
            .and_then(|sealed| self.0.vault.open(Kind::Refresh, sealed));
        let login = session.get::<LoginData>(LOGIN_KEY).await.map_err(TokenError::from)?;
        let (Some(refresh), Some(login)) = (refresh, login) else {
            return self.unrefreshed(session, current, now, "no refresh token").await;
        };
        // The provider that signed this session in, and no other.
        let Some(listed) = self.0.providers.by_issuer(&login.issuer) else {
            return Err(self.end(session, id, "refresh_iss", Some(login)).await);
        };
        let own = listed.rules.as_ref();
        let refreshed = match listed
            .provider
            .refresh_tokens(refresh.expose(), &login.subject, self.0.access.keep_claims_with(own))
            .await
        {
            Ok(refreshed) => refreshed,
            Err(e) if ends_session(&e) => {
                tracing::info!(reason = %e.reason, detail = %e.detail, "refresh refused; the session ends");
                return Err(self.end(session, id, e.reason.code(), Some(login)).await);
            }
            Err(e) => {
                tracing::warn!(reason = %e.reason, detail = %e.detail, "refresh failed; the session keeps its token");
                return self
                    .unrefreshed(session, current, now, "the provider did not refresh")
                    .await;
            }
        };
        let vault = &self.0.vault;
        // What the new ID token says now is what the rules judge from now on.
        let claims = refreshed
            .profile
            .and_then(|p| self.0.access.kept_claims(own, &p.id_token, &p.userinfo_claims));
        let fresh = Slot {
            tokens: StoredTokens {
                access: Some(vault.seal(Kind::Access, refreshed.access_token.expose())),
                access_expires_at: refreshed.access_expires_at,
                issued_at: Some(now),
                id: refreshed
                    .raw_id_token
                    .map(|t| vault.seal(Kind::Id, &t))
                    .or(current.tokens.id),
                refresh: refreshed
                    .refresh_token
                    .map(|t| vault.seal(Kind::Refresh, t.expose()))
                    .or(current.tokens.refresh),
            },
            claims: claims.or(current.claims),
        };
        self.0
            .sessions
            .keep_refreshed_tokens(&id.to_string(), &fresh.write(), ends_by)
            .await?;
        adopt(session, fresh).await
    }

    /// The session's tokens (and claims) as a refresh last wrote them, else
    /// as its record holds them; ended if the record is gone.
    async fn current(&self, id: &Id) -> Result<Slot, Outcome> {
        if let Some(data) = self.0.sessions.refreshed_tokens(&id.to_string()).await?
            && let Some(slot) = Slot::read(&data)
        {
            return Ok(slot);
        }
        let record = self
            .0
            .sessions
            .load(id)
            .await
            .map_err(|e| TokenError::Store(StoreError::Session(e.to_string())))?;
        let tokens = record
            .and_then(|r| r.data.get(TOKENS_KEY).cloned())
            .and_then(|v| serde_json::from_value::<StoredTokens>(v).ok());
        let tokens = tokens.ok_or(Outcome::Ended(Ended {
            reason: "ended",
            login: None,
        }))?;
        Ok(Slot { tokens, claims: None })
    }

    /// No refresh: the current token while it lasts, else unavailable. The
    /// claims of the last refresh are the session's either way.
    async fn unrefreshed(
        &self,
        session: &Session,
        current: Slot,
        now: i64,
        why: &str,
    ) -> Result<StoredTokens, Outcome> {
        if let Some(claims) = &current.claims {
            session.insert(ACCESS_KEY, claims).await.map_err(TokenError::from)?;
        }
        if current.tokens.access_expires_at.is_none_or(|at| at > now) {
            Ok(current.tokens)
        } else {
            Err(TokenError::Unavailable(why.to_owned()).into())
        }
    }

    /// Ends `session` everywhere: its record (and refreshed tokens) first,
    /// then its link.
    async fn end(&self, session: &Session, id: &Id, reason: &'static str, login: Option<LoginData>) -> Outcome {
        if let Err(e) = session.flush().await {
            return TokenError::from(e).into();
        }
        if let Err(e) = self.0.store.unlink_session(&id.to_string()).await {
            tracing::warn!(error = %e, "could not remove an ended session's link");
        }
        Outcome::Ended(Ended {
            reason,
            login: login.map(Box::new),
        })
    }

    fn local_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.local.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lock) = map.get(key).and_then(Weak::upgrade) {
            return lock;
        }
        if map.len() >= 1024 {
            map.retain(|_, lock| lock.strong_count() > 0);
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(key.to_owned(), Arc::downgrade(&lock));
        lock
    }
}

/// A failed token request: the session ended, or an error.
pub enum Outcome {
    /// The session ended.
    Ended(Ended),
    /// Another failure.
    Failed(TokenError),
}

impl From<TokenError> for Outcome {
    fn from(e: TokenError) -> Self {
        Outcome::Failed(e)
    }
}

impl From<StoreError> for Outcome {
    fn from(e: StoreError) -> Self {
        Outcome::Failed(e.into())
    }
}

/// Whether a failed refresh ends the session: the grant refused, or a
/// refreshed ID token invalid; not the provider being unreachable.
fn ends_session(e: &ProviderError) -> bool {
    !e.reason.is_upstream_failure()
}

/// Whether `tokens` should be refreshed at `now`: the access token expires
/// within its margin, or `interval` has passed since it was issued.
fn due(tokens: &StoredTokens, now: i64, interval: Option<Duration>) -> bool {
    let expiring = tokens.access_expires_at.is_some_and(|expires| {
        let lifetime = tokens.issued_at.map_or(4 * MAX_MARGIN_SECS, |at| expires - at);
        now >= expires - margin(lifetime)
    });
    let interval = interval
        .zip(tokens.issued_at)
        .is_some_and(|(every, at)| now - at >= every.as_secs() as i64);
    expiring || interval
}

/// The refresh margin of a token living `lifetime` seconds: a quarter of
/// it, at most a minute (a 4-second token is refreshed after 3 seconds, not
/// on every request).
fn margin(lifetime: i64) -> i64 {
    (lifetime / 4).clamp(0, MAX_MARGIN_SECS)
}

/// This request uses `slot`'s tokens from now on, and its claims (if a
/// refresh brought some) are those the rules judge; saved with its session.
async fn adopt(session: &Session, slot: Slot) -> Result<StoredTokens, Outcome> {
    session
        .insert(TOKENS_KEY, &slot.tokens)
        .await
        .map_err(TokenError::from)?;
    if let Some(claims) = &slot.claims {
        session.insert(ACCESS_KEY, claims).await.map_err(TokenError::from)?;
    }
    Ok(slot.tokens)
}

/// What a refresh keeps in the session's slot: the tokens, and the claims
/// the access rules judge as the last refresh's ID token gave them
/// (`None`: no refresh brought any; the sign-in's, in the session, hold).
struct Slot {
    tokens: StoredTokens,
    claims: Option<Claims>,
}

impl Slot {
    /// As written: an object of the tokens' fields by name (which versions
    /// before claims read as their tokens too) and `claims`.
    fn write(&self) -> String {
        // Every field by name: a field added to the tokens fails to compile
        // here until it is written too.
        let StoredTokens {
            access,
            access_expires_at,
            issued_at,
            id,
            refresh,
        } = &self.tokens;
        serde_json::json!({
            "access": access,
            "access_expires_at": access_expires_at,
            "issued_at": issued_at,
            "id": id,
            "refresh": refresh,
            "claims": self.claims,
        })
        .to_string()
    }

    /// A slot as written, or as versions before claims wrote it (the tokens
    /// alone); `None` if unreadable.
    fn read(data: &str) -> Option<Slot> {
        let mut value: serde_json::Value = serde_json::from_str(data).ok()?;
        let claims = match value.as_object_mut().and_then(|o| o.remove("claims")) {
            Some(claims) => serde_json::from_value(claims).ok()?,
            None => None,
        };
        let tokens = serde_json::from_value(value).ok()?;
        Some(Slot { tokens, claims })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(at: i64, lifetime: Option<i64>) -> StoredTokens {
        StoredTokens {
            access: None,
            access_expires_at: lifetime.map(|l| at + l),
            issued_at: Some(at),
            id: None,
            refresh: None,
        }
    }

    #[test]
    fn tokens_are_due_within_their_margin_or_after_the_interval() {
        let four = issued(100, Some(4));
        assert!(!due(&four, 100, None));
        assert!(!due(&four, 102, None));
        assert!(due(&four, 103, None), "a quarter of 4 s before expiry");
        let hour = issued(0, Some(3600));
        assert!(!due(&hour, 3539, None));
        assert!(due(&hour, 3540, None), "a minute before");
        // No expiry given: only the interval refreshes.
        let open = issued(0, None);
        assert!(!due(&open, 1_000_000, None));
        let every = Some(Duration::from_secs(300));
        assert!(!due(&open, 299, every));
        assert!(due(&open, 300, every));
        assert!(due(&hour, 300, every));
    }

    /// A slot keeps its claims; versions before claims read its tokens,
    /// and their slots (the tokens alone, as an array) are read.
    #[test]
    fn slots_carry_claims_and_read_across_versions() {
        let tokens = StoredTokens {
            refresh: Some("r".into()),
            ..issued(100, Some(60))
        };
        let claims = Claims {
            groups: Some(vec!["staff".into()]),
            ..Claims::default()
        };
        let written = Slot {
            tokens: tokens.clone(),
            claims: Some(claims.clone()),
        }
        .write();
        let back = Slot::read(&written).unwrap();
        assert_eq!(back.claims, Some(claims));
        assert_eq!(
            (back.tokens.refresh.as_deref(), back.tokens.issued_at),
            (Some("r"), Some(100))
        );
        let before_claims: StoredTokens = serde_json::from_str(&written).unwrap();
        assert_eq!(before_claims.refresh.as_deref(), Some("r"));
        assert_eq!(before_claims.access_expires_at, Some(160));

        let old = Slot::read(&serde_json::to_string(&tokens).unwrap()).unwrap();
        assert_eq!((old.tokens.refresh.as_deref(), old.claims), (Some("r"), None));
        let none = Slot { tokens, claims: None }.write();
        assert_eq!(Slot::read(&none).unwrap().claims, None);
        assert!(Slot::read("{\"claims\": 5}").is_none(), "unreadable claims: no slot");
    }

    #[test]
    fn the_margin_scales_with_the_lifetime() {
        assert_eq!(margin(4), 1);
        assert_eq!(margin(60), 15);
        assert_eq!(margin(3600), 60);
        assert_eq!(margin(0), 0);
        assert_eq!(margin(-5), 0);
    }
}
