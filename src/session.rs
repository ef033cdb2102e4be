//! Server-side sessions: the `tower-sessions` layer (cookie holds only an
//! opaque id), what a session keeps about a login, and its lifetimes.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

use crate::config::SessionConfig;
use crate::secret::Secret;
use crate::store::SessionBackend;

/// Session key of `axum-login`'s data (the signed-in user's id).
pub const AUTH_KEY: &str = "axum-login.data";
/// Session key of the login data.
pub const LOGIN_KEY: &str = "oidc.login";
/// Session key of the login's [`Activity`].
pub const ACTIVITY_KEY: &str = "oidc.activity";
/// Session key of the claims the access rules judge ([`crate::access::Claims`]),
/// kept only while rules are set.
pub const ACCESS_KEY: &str = "oidc.access";
/// Session key of the login's tokens ([`crate::tokens::StoredTokens`]).
pub const TOKENS_KEY: &str = "oidc.tokens";
/// What a logged-in session keeps about its provider login.
#[derive(Clone, Serialize, Deserialize)]
pub struct LoginData {
    /// The provider's issuer.
    pub issuer: String,
    /// The provider's subject.
    pub subject: String,
    /// The provider's session id, if any.
    pub sid: Option<String>,
    /// Token protecting the logout form against cross-site requests.
    pub csrf: Secret,
    /// When the user signed in at the provider (Unix seconds): the ID
    /// token's `auth_time`, else the sign-in here. Replaced by a step-up.
    #[serde(default)]
    pub auth_time: Option<i64>,
    /// The ID token's `acr` (how the user signed in), if any.
    #[serde(default)]
    pub acr: Option<String>,
}

/// When a logged-in session started and was last used: read on every
/// request, so kept apart from [`LoginData`] and free of strings.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Activity {
    /// Sign-in time (Unix seconds), for the absolute lifetime.
    pub login_at: i64,
    /// Last request seen (Unix seconds, updated at most once a minute), for the idle timeout.
    pub last_seen: i64,
}

/// Session lifetime rules.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    /// Idle timeout.
    pub idle: Duration,
    /// Absolute lifetime.
    pub max_age: Duration,
}

/// What to do with a session on this request.
#[derive(Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Still valid; nothing to write.
    Fresh,
    /// Still valid; record activity (extends the idle timeout).
    Touch,
    /// Idle for too long.
    Idle,
    /// Older than the absolute lifetime.
    TooOld,
}

impl Lifetimes {
    /// From the configuration.
    pub fn new(c: SessionConfig) -> Self {
        Self {
            idle: c.idle_timeout,
            max_age: c.max_age,
        }
    }

    /// Activity is recorded at most this often, so that most requests do not write.
    fn touch_interval(&self) -> i64 {
        (self.idle.as_secs() as i64 / 10).clamp(1, 60)
    }

    /// Judges a login at time `now`.
    pub fn judge(&self, login: &Activity, now: i64) -> Freshness {
        if now - login.login_at >= self.max_age.as_secs() as i64 {
            Freshness::TooOld
        } else if now - login.last_seen >= self.idle.as_secs() as i64 {
            Freshness::Idle
        } else if now - login.last_seen >= self.touch_interval() {
            Freshness::Touch
        } else {
            Freshness::Fresh
        }
    }

    /// The store-side expiry of a logged-in session: the idle timeout, renewed on activity.
    pub fn expiry(&self) -> Expiry {
        Expiry::OnInactivity(time::Duration::try_from(self.idle).unwrap_or(time::Duration::days(365)))
    }

    /// When the session ends at the latest, however active (Unix seconds).
    pub fn ends_by(&self, login: &Activity) -> i64 {
        login.login_at + self.max_age.as_secs() as i64
    }
}

/// Session cookie settings derived from `PUBLIC_URL` (and `COOKIE_DOMAIN`).
#[derive(Debug, Clone)]
pub struct CookieSettings {
    /// `__Host-oidc_gate` over https, `__Secure-oidc_gate` over https with
    /// a domain, `oidc_gate` otherwise.
    pub name: &'static str,
    /// Whether the cookie is `Secure`.
    pub secure: bool,
    /// The cookie's Domain (shared with subdomains); none: this host only.
    pub domain: Option<String>,
}

impl CookieSettings {
    /// `https` ⇒ `Secure` with the `__Host-` prefix (no Domain, Path=/).
    pub fn for_scheme(https: bool) -> Self {
        Self::new(https, None)
    }

    /// With a `domain`, the cookie goes to its subdomains too, so it has
    /// the `__Secure-` prefix over https (`__Host-` forbids a Domain).
    pub fn new(https: bool, domain: Option<String>) -> Self {
        let name = match (https, &domain) {
            (true, None) => "__Host-oidc_gate",
            (true, Some(_)) => "__Secure-oidc_gate",
            (false, _) => "oidc_gate",
        };
        Self {
            name,
            secure: https,
            domain,
        }
    }
}

/// The `tower-sessions` layer: HttpOnly, SameSite=Lax, opaque random id,
/// store-side expiry after the idle timeout.
pub fn layer(
    store: SessionBackend,
    cookie: &CookieSettings,
    lifetimes: Lifetimes,
) -> SessionManagerLayer<SessionBackend> {
    let layer = SessionManagerLayer::new(store)
        .with_name(cookie.name)
        .with_secure(cookie.secure)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_path("/")
        .with_expiry(lifetimes.expiry());
    match &cookie.domain {
        Some(domain) => layer.with_domain(domain.clone()),
        None => layer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(login_at: i64, last_seen: i64) -> Activity {
        Activity { login_at, last_seen }
    }

    #[test]
    fn lifetimes_are_judged_from_login_and_activity() {
        let l = Lifetimes {
            idle: Duration::from_secs(3600),
            max_age: Duration::from_secs(86400),
        };
        assert_eq!(l.judge(&login(0, 0), 30), Freshness::Fresh);
        assert_eq!(l.judge(&login(0, 0), 61), Freshness::Touch);
        assert_eq!(l.judge(&login(0, 0), 3600), Freshness::Idle);
        assert_eq!(l.judge(&login(0, 86000), 86400), Freshness::TooOld);
        assert_eq!(l.ends_by(&login(0, 86000)), 86400);
    }
}
