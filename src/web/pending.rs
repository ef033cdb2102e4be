//! Logins in progress, kept by the browser: `/login` (or a protected page
//! sending an anonymous browser to the provider) sets one cookie per
//! login, encrypted and authenticated (AES-256-GCM, the `cookie` crate's
//! private jar) with a key every instance shares through the database. It
//! holds that login's `state`, `nonce` and PKCE verifier.
//!
//! So `/login` writes nothing on the server (anonymous visits cannot fill
//! the store), and a login may end on another instance. A `state` is taken
//! once: the callback removes its cookie whatever the outcome, and this
//! instance remembers it as used until it would have expired anyway.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use axum::http::HeaderMap;
use axum_extra::extract::cookie::{Cookie, CookieJar, Key, PrivateCookieJar, SameSite};
use serde::{Deserialize, Serialize};

use crate::gateway::paths::StepUp;
use crate::secret::Secret;
use crate::session::CookieSettings;

/// How many logins may be in progress at once in one browser (tabs).
pub const MAX_PENDING: usize = 3;
/// How long a login may take at the provider.
pub const PENDING_TTL_SECS: i64 = 600;
/// Length of a `state`: 32 random bytes, base64url without padding.
pub const STATE_LEN: usize = 43;
/// Characters of the `state` that name its cookie.
const TAG_LEN: usize = 8;
/// Used states remembered. Beyond this many callbacks in
/// [`PENDING_TTL_SECS`], the oldest are forgotten; the provider's
/// single-use code still refuses a replay.
const USED_STATES: usize = 20_000;

/// A login in progress: sent to the provider, not yet back.
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    /// `state` sent to the provider.
    pub state: Secret,
    /// `nonce` sent to the provider.
    pub nonce: Secret,
    /// PKCE code verifier.
    pub pkce_verifier: Secret,
    /// Where to go after login (a checked same-origin path).
    pub next: String,
    /// When the login started (Unix seconds).
    pub started_at: i64,
    /// The step-up the login asked the provider for (that of `next`'s path),
    /// which the ID token must then show.
    #[serde(default)]
    pub step_up: StepUp,
    /// The id of the provider the login was sent to: the only one its code
    /// is redeemed at (empty in cookies of older versions: the first).
    #[serde(default)]
    pub provider: String,
}

impl PendingLogin {
    /// Whether the login may still come back (started less than
    /// [`PENDING_TTL_SECS`] before `now`).
    pub fn is_live(&self, now: i64) -> bool {
        (0..PENDING_TTL_SECS).contains(&(now - self.started_at))
    }
}

/// The login-in-progress cookies of one application.
pub struct PendingLogins {
    key: Key,
    /// `oidc_gate_login_` or `__Host-oidc_gate_login_`.
    prefix: String,
    secure: bool,
    used: UsedStates,
}

impl PendingLogins {
    /// Cookies encrypted with `key` (at least 64 bytes), named and secured
    /// like the session cookie.
    pub fn new(key: &[u8], cookie: &CookieSettings) -> Self {
        Self {
            key: Key::from(key),
            prefix: format!("{}_login_", cookie.name),
            secure: cookie.secure,
            used: UsedStates::default(),
        }
    }

    /// The cookies of a request that decrypt with our key.
    fn readable(&self, headers: &HeaderMap) -> PrivateCookieJar {
        PrivateCookieJar::from_headers(headers, self.key.clone())
    }

    /// The cookies of `headers` plus `login`'s, minus the oldest logins in
    /// progress beyond [`MAX_PENDING`] (expired or unreadable ones first),
    /// which keeps the `Cookie` header small.
    pub fn start(&self, headers: &HeaderMap, login: &PendingLogin, now: i64) -> (CookieJar, PrivateCookieJar) {
        // Removals go through the plain jar: the private one ignores
        // cookies it cannot decrypt.
        let mut removals = CookieJar::from_headers(headers);
        let readable = self.readable(headers);
        let mut others: Vec<(i64, String)> = removals
            .iter()
            .map(|c| c.name().to_owned())
            .filter(|name| name.starts_with(&self.prefix))
            .map(|name| {
                let started_at = readable
                    .get(&name)
                    .and_then(|c| decode(c.value()))
                    .filter(|p| p.is_live(now))
                    .map_or(i64::MIN, |p| p.started_at);
                (started_at, name)
            })
            .collect();
        others.sort_unstable_by(|a, b| b.cmp(a));
        for (_, name) in others.into_iter().skip(MAX_PENDING - 1) {
            removals = removals.remove(self.cookie(name, String::new()));
        }
        let value = serde_json::to_string(login).expect("a pending login serializes");
        let added = PrivateCookieJar::new(self.key.clone()).add(self.cookie(self.name(login.state.expose()), value));
        (removals, added)
    }

    /// Takes the login whose `state` was presented: its cookie is removed
    /// from the returned jar whatever the outcome (even if it no longer
    /// decrypts). `None` if there is no such login, or it expired, was
    /// forged, or its state was already used on this instance.
    pub fn take(&self, headers: &HeaderMap, presented: &str, now: i64) -> (CookieJar, Option<PendingLogin>) {
        let jar = CookieJar::from_headers(headers);
        if !is_state(presented) {
            return (jar, None);
        }
        let name = self.name(presented);
        if jar.get(&name).is_none() {
            return (jar, None);
        }
        let cookie = self.readable(headers).get(&name);
        let jar = jar.remove(self.cookie(name, String::new()));
        let login = cookie
            .and_then(|c| decode(c.value()))
            .filter(|p| p.is_live(now) && p.state.ct_eq(presented) && !self.used.contains(presented));
        (jar, login)
    }

    /// Records `login`'s state as used, before its code is exchanged;
    /// `false` if another callback used it first. Only states of real
    /// logins (their cookie decrypted and live) are recorded; beyond
    /// `USED_STATES` in `PENDING_TTL_SECS` the oldest are forgotten, and the
    /// provider's single-use code still refuses a replay.
    pub fn first_use(&self, login: &PendingLogin, now: i64) -> bool {
        self.used.first_use(login.state.expose(), now)
    }

    /// The cookie of the login whose state is `state` (a valid state).
    fn name(&self, state: &str) -> String {
        format!("{}{}", self.prefix, &state[..TAG_LEN])
    }

    fn cookie(&self, name: String, value: String) -> Cookie<'static> {
        Cookie::build((name, value))
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .max_age(time::Duration::seconds(PENDING_TTL_SECS))
            .build()
    }
}

/// The states taken in the last [`PENDING_TTL_SECS`] (at most
/// [`USED_STATES`]), as keyed 64-bit hashes: about 40 bytes each.
#[derive(Default)]
struct UsedStates {
    hasher: RandomState,
    seen: Mutex<Seen>,
}

/// The hashes, and the same with when each was taken, oldest first.
type Seen = (HashSet<u64>, VecDeque<(i64, u64)>);

impl UsedStates {
    /// Whether `state` was recorded (in the last [`PENDING_TTL_SECS`], or a
    /// little longer until the next record prunes it).
    fn contains(&self, state: &str) -> bool {
        let hash = self.hasher.hash_one(state);
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).0.contains(&hash)
    }

    /// Records `state` as taken at `now`; `false` if it was already.
    /// Atomic: of two callbacks racing with the same state, one wins.
    fn first_use(&self, state: &str, now: i64) -> bool {
        let hash = self.hasher.hash_one(state);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let (set, order) = &mut *seen;
        while let Some(&(at, old)) = order.front() {
            if now - at < PENDING_TTL_SECS && order.len() < USED_STATES {
                break;
            }
            order.pop_front();
            set.remove(&old);
        }
        if !set.insert(hash) {
            return false;
        }
        order.push_back((now, hash));
        true
    }
}

/// Whether `s` is shaped like the states this app makes.
fn is_state(s: &str) -> bool {
    s.len() == STATE_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn decode(value: &str) -> Option<PendingLogin> {
    serde_json::from_str(value).ok()
}

#[cfg(test)]
mod tests {
    use axum::http::header;
    use axum::response::IntoResponse;

    use super::*;
    use crate::secret::random_token;

    fn logins() -> PendingLogins {
        PendingLogins::new(&[7u8; 64], &CookieSettings::for_scheme(false))
    }

    fn login(now: i64) -> PendingLogin {
        PendingLogin {
            state: Secret::new(random_token(32)),
            nonce: Secret::new(random_token(32)),
            pkce_verifier: Secret::new(random_token(32)),
            next: "/secret".into(),
            started_at: now,
            step_up: StepUp::default(),
            provider: String::new(),
        }
    }

    /// A browser's cookies: applies `Set-Cookie`s, sends `Cookie`.
    #[derive(Default)]
    struct Browser(Vec<(String, String)>);

    impl Browser {
        fn receive(&mut self, cookies: impl IntoResponse) {
            let response = cookies.into_response();
            for value in response.headers().get_all(header::SET_COOKIE) {
                let c = Cookie::parse(value.to_str().unwrap().to_owned()).unwrap();
                self.0.retain(|(name, _)| name != c.name());
                if c.max_age() != Some(time::Duration::ZERO) {
                    self.0.push((c.name().to_owned(), c.value().to_owned()));
                }
            }
        }

        fn send(&self) -> HeaderMap {
            let mut headers = HeaderMap::new();
            let pairs: Vec<String> = self.0.iter().map(|(n, v)| format!("{n}={v}")).collect();
            if !pairs.is_empty() {
                headers.insert(header::COOKIE, pairs.join("; ").parse().unwrap());
            }
            headers
        }
    }

    fn started(logins: &PendingLogins, browser: &mut Browser, now: i64) -> PendingLogin {
        let l = login(now);
        browser.receive(logins.start(&browser.send(), &l, now));
        l
    }

    #[test]
    fn a_login_is_taken_once_and_only_with_its_state() {
        let logins = logins();
        let mut browser = Browser::default();
        let l = started(&logins, &mut browser, 1000);
        let copy = browser.send();
        let cookie = copy[header::COOKIE].to_str().unwrap();
        assert!(cookie.starts_with("oidc_gate_login_"), "{cookie}");
        assert!(!cookie.contains(l.state.expose()) && !cookie.contains(l.nonce.expose()));

        // Same cookie name (the first 8 characters), another state.
        let forged = format!("{}x", &l.state.expose()[..40]);
        assert!(logins.take(&copy, &forged, 1001).1.is_none());
        let (jar, taken) = logins.take(&copy, l.state.expose(), 1001);
        let taken = taken.unwrap();
        assert_eq!(taken.nonce, l.nonce);
        browser.receive(jar);
        assert!(browser.0.is_empty(), "the cookie is removed");
        // Its code exchanged, the login's state is used: a copy of the cookie is refused.
        assert!(logins.first_use(&taken, 1001));
        let (_, again) = logins.take(&copy, l.state.expose(), 1002);
        assert!(again.is_none(), "a copy of the cookie replayed");
        assert!(!logins.first_use(&taken, 1002), "and a racing callback loses");
    }

    #[test]
    fn an_expired_or_foreign_login_is_refused() {
        let logins = logins();
        let mut browser = Browser::default();
        let l = started(&logins, &mut browser, 1000);
        let late = 1000 + PENDING_TTL_SECS;
        let (jar, taken) = logins.take(&browser.send(), l.state.expose(), late);
        assert!(taken.is_none(), "expired");
        assert!(
            jar.into_response().headers().contains_key(header::SET_COOKIE),
            "and removed"
        );
        let other = PendingLogins::new(&[8u8; 64], &CookieSettings::for_scheme(false));
        let (jar, taken) = other.take(&browser.send(), l.state.expose(), 1001);
        assert!(taken.is_none(), "encrypted with another key");
        browser.receive(jar);
        assert!(browser.0.is_empty(), "and removed all the same");
    }

    #[test]
    fn the_newest_logins_are_kept() {
        let logins = logins();
        let mut browser = Browser::default();
        let all: Vec<PendingLogin> = (0..5).map(|i| started(&logins, &mut browser, 1000 + i)).collect();
        assert_eq!(browser.0.len(), MAX_PENDING);
        for (i, l) in all.iter().enumerate() {
            let (_, taken) = logins.take(&browser.send(), l.state.expose(), 1010);
            assert_eq!(taken.is_some(), i >= all.len() - MAX_PENDING, "login {i}");
        }
    }

    #[test]
    fn unreadable_logins_are_removed_first_when_a_login_starts() {
        let logins = logins();
        let mut browser = Browser::default();
        let old_key = PendingLogins::new(&[8u8; 64], &CookieSettings::for_scheme(false));
        for i in 0..MAX_PENDING {
            browser.receive(old_key.start(&browser.send(), &login(1000 + i as i64), 1000));
        }
        started(&logins, &mut browser, 1010);
        assert_eq!(browser.0.len(), MAX_PENDING, "{:?}", browser.0);
    }

    #[test]
    fn odd_states_touch_no_cookie_and_panic_nowhere() {
        let logins = logins();
        let mut browser = Browser::default();
        let l = started(&logins, &mut browser, 1000);
        let tag = &l.state.expose()[..TAG_LEN];
        for presented in [
            "",
            "é",
            &format!("!!{tag}"),
            &format!("{tag}é"),
            &format!("{}!", &l.state.expose()[..42]),
        ] {
            let (jar, taken) = logins.take(&browser.send(), presented, 1001);
            assert!(taken.is_none(), "{presented:?}");
            assert!(
                !jar.into_response().headers().contains_key(header::SET_COOKIE),
                "{presented:?}"
            );
        }
        assert!(logins.take(&browser.send(), l.state.expose(), 1001).1.is_some());
    }

    #[test]
    fn https_cookies_are_secure_host_cookies() {
        let logins = PendingLogins::new(&[7u8; 64], &CookieSettings::for_scheme(true));
        let response = logins.start(&HeaderMap::new(), &login(1), 1).into_response();
        let set = response.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(set.starts_with("__Host-oidc_gate_login_"), "{set}");
        for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/", "Max-Age=600"] {
            assert!(set.contains(attribute), "{attribute} in {set}");
        }
        // A browser ignores a `__Host-` removal without `Secure` and `Path=/`.
        let mut headers = HeaderMap::new();
        let pair = set.split(';').next().unwrap().to_owned();
        headers.insert(header::COOKIE, pair.parse().unwrap());
        let state = pair.trim_start_matches("__Host-oidc_gate_login_");
        let name_only = format!("{}{}", &state[..TAG_LEN], "A".repeat(STATE_LEN - TAG_LEN));
        let removal = logins.take(&headers, &name_only, 1).0.into_response();
        let removal = removal.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(
            removal.contains("Max-Age=0") && removal.contains("Secure") && removal.contains("Path=/"),
            "{removal}"
        );
    }

    #[test]
    fn used_states_are_forgotten_after_the_login_lifetime_or_beyond_the_cap() {
        let used = UsedStates::default();
        assert!(used.first_use("a", 0));
        assert!(!used.first_use("a", 1));
        assert!(used.first_use("b", 1));
        // "a" is forgotten once no login with it could still be live.
        assert!(used.first_use("a", PENDING_TTL_SECS));
        for i in 0..USED_STATES {
            used.first_use(&i.to_string(), PENDING_TTL_SECS + 1);
        }
        let seen = used.seen.lock().unwrap();
        assert_eq!((seen.0.len(), seen.1.len()), (USED_STATES, USED_STATES));
    }
}
