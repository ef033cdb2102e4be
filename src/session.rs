//! Server-side sessions: the `tower-sessions` layer (cookie holds only an
//! opaque id), what a session keeps about a login, and its lifetimes.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tower_sessions::cookie::{Cookie, SameSite};
use tower_sessions::session::Id;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

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
/// What a logged-in session keeps about its provider login. Written as an
/// array of its fields in this order ([`LoginData`]'s `Serialize`), read
/// from that or from an object with their names (as sessions written
/// before held it).
#[derive(Clone, Deserialize)]
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
/// request, so kept apart from [`LoginData`] and free of strings. Written
/// as an array, `[login_at, last_seen]`; read from that or from an object.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct Activity {
    /// Sign-in time (Unix seconds), for the absolute lifetime.
    pub login_at: i64,
    /// Last request seen (Unix seconds, updated at most once a minute), for the idle timeout.
    pub last_seen: i64,
}

// Session values are written as arrays of their fields (in declaration
// order, which is the order serde's derived `Deserialize` reads an array
// in) rather than as objects: every request that loads a session copies
// its record, and an array is one allocation where an object is a tree
// node and a string for each field name. The derived `Deserialize` reads
// both shapes, so sessions written as objects still load. A new field goes
// last, with `#[serde(default)]`, so that arrays written before still read.

impl Serialize for LoginData {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (
            &self.issuer,
            &self.subject,
            &self.sid,
            &self.csrf,
            &self.auth_time,
            &self.acr,
        )
            .serialize(serializer)
    }
}

impl Serialize for Activity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (self.login_at, self.last_seen).serialize(serializer)
    }
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
/// store-side expiry after the idle timeout. oidc-gate's router reads and
/// sets the same cookie with [`SessionCookie`] instead (a test holds the two
/// together).
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

/// The session cookie (HttpOnly, SameSite=Lax, an opaque random id,
/// store-side expiry after the idle timeout): the session it names, and
/// what the answer sets. The sessions layer (`web::guard::SessionsLayer`) uses
/// it as `tower-sessions`' `SessionManagerLayer` would, with the same
/// cookie and the same saving rules, but reads the one cookie it needs
/// straight from the `Cookie` headers rather than through a cookie jar
/// (built, locked and dropped on every request).
#[derive(Debug)]
pub struct SessionCookie {
    name: &'static str,
    secure: bool,
    domain: Option<String>,
    expiry: Expiry,
    store: Arc<SessionBackend>,
}

impl SessionCookie {
    /// Sessions in `store`, their cookie as `cookie` says, expiring after
    /// the idle timeout of `lifetimes`.
    pub fn new(store: SessionBackend, cookie: &CookieSettings, lifetimes: Lifetimes) -> Self {
        Self {
            name: cookie.name,
            secure: cookie.secure,
            domain: cookie.domain.clone(),
            expiry: lifetimes.expiry(),
            store: Arc::new(store),
        }
    }

    /// The session cookie of a request (`None`: there is none) and the id
    /// it names (`None`: not a valid id, logged). Of several, the last
    /// counts, as in a cookie jar.
    pub fn presented(&self, headers: &HeaderMap) -> Option<Option<Id>> {
        let mut found = None;
        for value in headers.get_all(header::COOKIE) {
            let Ok(value) = std::str::from_utf8(value.as_bytes()) else {
                continue;
            };
            for piece in value.split(';') {
                if let Some((name, value)) = cookie_pair(piece)
                    && name == self.name
                {
                    found = Some(value);
                }
            }
        }
        let id = found?
            .parse::<Id>()
            .map_err(|err| tracing::warn!(err = %err, "possibly suspicious activity: malformed session id"))
            .ok();
        Some(id)
    }

    /// The session of a request whose cookie named `id`.
    pub fn session(&self, id: Option<Id>) -> Session {
        Session::new(id, self.store.clone(), Some(self.expiry))
    }

    /// The answer, once the routes gave it, with the session's cookie: a
    /// session that ended (or never was) and still has a cookie (`presented`)
    /// gets it removed; a changed session is saved (unless the answer is a
    /// 5xx) and its cookie set. A failed save is a bare `500`.
    pub async fn finish(&self, session: &Session, presented: bool, mut response: Response) -> Response {
        let modified = session.is_modified();
        // A session with an id is never empty: known without locking its record.
        let empty = session.id().is_none() && session.is_empty().await;
        let cookie = if presented && empty {
            self.removal()
        } else if modified && !empty && !response.status().is_server_error() {
            if let Err(err) = session.save().await {
                tracing::error!(err = %err, "failed to save session");
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
            let Some(id) = session.id() else {
                tracing::error!("missing session id");
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            };
            self.cookie(id, session.expiry())
        } else {
            return response;
        };
        if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        response
    }

    /// The cookie of session `id`, as `tower-sessions` builds it.
    fn cookie(&self, id: Id, expiry: Option<Expiry>) -> Cookie<'static> {
        let mut cookie = Cookie::build((self.name, id.to_string()))
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure)
            .path("/");
        cookie = match expiry {
            Some(Expiry::OnInactivity(duration)) => cookie.max_age(duration),
            Some(Expiry::AtDateTime(at)) => cookie.max_age(at - time::OffsetDateTime::now_utc()),
            Some(Expiry::OnSessionEnd) | None => cookie,
        };
        if let Some(domain) = &self.domain {
            cookie = cookie.domain(domain.clone());
        }
        cookie.build()
    }

    /// The cookie that removes the session cookie, as a cookie jar makes it
    /// of the presented one (its path and domain set).
    fn removal(&self) -> Cookie<'static> {
        let mut cookie = Cookie::build((self.name, "")).path("/");
        if let Some(domain) = &self.domain {
            cookie = cookie.domain(domain.clone());
        }
        let mut cookie = cookie.build();
        cookie.make_removal();
        cookie
    }
}

/// The name and value of one `;`-separated piece of a `Cookie` header, as
/// `Cookie::parse_encoded` reads them (both trimmed, then percent-decoded;
/// `None` where it fails: no `=`, an empty name, a decoding that is not
/// UTF-8), without building a cookie: this runs on every request.
fn cookie_pair(piece: &str) -> Option<(Cow<'_, str>, Cow<'_, str>)> {
    let (name, value) = piece.split_once('=')?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    Some((percent_decoded(name)?, percent_decoded(value.trim())?))
}

/// `s` percent-decoded (`None`: the result is not UTF-8); borrowed when it
/// holds no `%`, the usual case, which decodes to itself.
fn percent_decoded(s: &str) -> Option<Cow<'_, str>> {
    if !s.contains('%') {
        return Some(Cow::Borrowed(s));
    }
    percent_encoding::percent_decode_str(s).decode_utf8().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The arrays are read back in declaration order: a field moved without
    /// its place in `Serialize` (or the other way round) would put one value
    /// in another's field. Every field here has a value of its own.
    #[test]
    fn session_values_read_back_as_written_field_by_field() {
        let data = LoginData {
            issuer: "https://issuer.example".into(),
            subject: "subject-1".into(),
            sid: Some("sid-1".into()),
            csrf: Secret::new("csrf-1"),
            auth_time: Some(11),
            acr: Some("mfa".into()),
        };
        let back: LoginData = serde_json::from_value(serde_json::to_value(&data).unwrap()).unwrap();
        assert_eq!(
            (back.issuer.as_str(), back.subject.as_str(), back.sid.as_deref()),
            ("https://issuer.example", "subject-1", Some("sid-1"))
        );
        assert_eq!(
            (back.csrf.expose(), back.auth_time, back.acr.as_deref()),
            ("csrf-1", Some(11), Some("mfa"))
        );
        let activity: Activity = serde_json::from_value(serde_json::to_value(login(21, 22)).unwrap()).unwrap();
        assert_eq!((activity.login_at, activity.last_seen), (21, 22));
    }

    fn login(login_at: i64, last_seen: i64) -> Activity {
        Activity { login_at, last_seen }
    }

    async fn store() -> (tempfile::TempDir, crate::store::Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&crate::config::sqlite_for_tests(dir.path()))
            .await
            .unwrap();
        (dir, store)
    }

    fn cookies(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(header::COOKIE, HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    #[tokio::test]
    async fn the_session_cookie_is_read_as_a_cookie_jar_reads_it() {
        let (_dir, store) = store().await;
        let lifetimes = Lifetimes {
            idle: Duration::from_secs(600),
            max_age: Duration::from_secs(3600),
        };
        let c = SessionCookie::new(store.session_backend(), &CookieSettings::for_scheme(false), lifetimes);
        let (a, b) = (Id::default(), Id::default());
        assert_eq!(c.presented(&cookies(&[])), None);
        assert_eq!(c.presented(&cookies(&["other=1; oidc_gate_login_x=2"])), None);
        assert_eq!(c.presented(&cookies(&[&format!("x=1; oidc_gate={a}")])), Some(Some(a)));
        // The last of several counts, across header lines too.
        assert_eq!(
            c.presented(&cookies(&[&format!("oidc_gate={a}; x=1"), &format!(" oidc_gate={b}")])),
            Some(Some(b))
        );
        // Not an id: a cookie all the same (to be removed), naming no session.
        assert_eq!(c.presented(&cookies(&["oidc_gate=not-an-id"])), Some(None));
    }

    /// Each piece of a `Cookie` header is read as `Cookie::parse_encoded`
    /// reads it: the same name and value, or nothing where it fails.
    #[test]
    fn a_cookie_piece_is_read_as_the_cookie_crate_reads_it() {
        let pieces = [
            "oidc_gate=abc",
            " oidc_gate = abc ",
            "oidc_gate=",
            "oidc_gate",
            "=abc",
            " =abc",
            "oidc%5Fgate=abc",
            "oidc_gate=a%20b",
            "oidc_gate=%FF",
            "oidc%FF=abc",
            "oidc_gate=%zz",
            "oidc_gate=a=b",
            "oidc_gate=\"quoted\"",
            "\toidc_gate=\u{a0}abc\u{a0}",
            "",
            " ",
        ];
        for piece in pieces {
            let theirs = Cookie::parse_encoded(piece)
                .ok()
                .map(|c| (c.name().to_owned(), c.value().to_owned()));
            let ours = cookie_pair(piece).map(|(n, v)| (n.into_owned(), v.into_owned()));
            assert_eq!(ours, theirs, "{piece:?}");
        }
    }

    /// The cookies set are those of `tower-sessions`' own layer with the
    /// same settings: for a changed session, and to remove the cookie of a
    /// session that is gone.
    #[tokio::test]
    async fn the_cookies_set_are_those_of_tower_sessions() {
        use axum::Router;
        use axum::body::Body;
        use axum::http::Request;
        use axum::routing::get;
        use tower::ServiceExt as _;

        let (_dir, store) = store().await;
        let settings = CookieSettings::new(true, Some("example.com".to_owned()));
        let lifetimes = Lifetimes {
            idle: Duration::from_secs(600),
            max_age: Duration::from_secs(3600),
        };
        let ours = SessionCookie::new(store.session_backend(), &settings, lifetimes);
        let theirs = layer(store.session_backend(), &settings, lifetimes);
        let app = Router::new()
            .route("/set", get(|s: Session| async move { s.insert("k", 1).await.unwrap() }))
            .route(
                "/read",
                get(|s: Session| async move {
                    let _ = s.get::<i32>("k").await.unwrap();
                }),
            )
            .layer(theirs);
        let set_cookie = |r: &Response| r.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();

        let theirs = app
            .clone()
            .oneshot(Request::get("/set").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let session = ours.session(None);
        session.insert("k", 1).await.unwrap();
        let mine = ours.finish(&session, false, Response::default()).await;
        let (mine, theirs) = (set_cookie(&mine), set_cookie(&theirs));
        let id = session.id().unwrap();
        assert!(mine.starts_with(&format!("__Secure-oidc_gate={id};")), "{mine}");
        let attributes = |c: &str| c.split_once(';').unwrap().1.to_owned();
        assert_eq!(attributes(&mine), attributes(&theirs));

        let gone = format!("__Secure-oidc_gate={}", Id::default());
        let theirs = app
            .oneshot(
                Request::get("/read")
                    .header(header::COOKIE, &gone)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let presented = ours.presented(&cookies(&[&gone]));
        let session = ours.session(presented.flatten());
        assert_eq!(session.get::<i32>("k").await.unwrap(), None);
        let mine = ours.finish(&session, presented.is_some(), Response::default()).await;
        let (mine, theirs) = (set_cookie(&mine), set_cookie(&theirs));
        // `Expires` is a year before now: the second may differ.
        let dateless = |c: &str| {
            c.split("; ")
                .filter(|a| !a.starts_with("Expires="))
                .collect::<Vec<_>>()
                .join("; ")
        };
        assert_eq!(dateless(&mine), dateless(&theirs));
        assert!(
            mine.starts_with("__Secure-oidc_gate=;") && mine.contains("Max-Age=0"),
            "{mine}"
        );
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
