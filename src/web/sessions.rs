//! "Your sessions": `GET /sessions` lists the signed-in person's sessions
//! on every instance (when each started and was last seen, its browser,
//! system and address), and ends the others: `POST /sessions/end` one of
//! them, `POST /sessions/end-others` all of them, as the Log out button ends
//! its own (CSRF token and origin checked, record and link deleted).
//!
//! A session is named on the page by a digest of its id, never by the id,
//! which is its browser's secret; a digest that is not one of the person's
//! own sessions ends nothing.

use askama::Template;
use axum::Router;
use axum::extract::{RawForm, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};

use super::AppState;
use super::audit::{self, Origin};
use super::auth::{param, same_origin};
use super::error::{AppError, render};
use super::redirect::Links;
use crate::session::{ACTIVITY_KEY, Activity, Freshness, LOGIN_KEY, Lifetimes, LoginData};
use crate::store::{SessionEntry, Store, StoreError};
use crate::users::AuthSession;

/// The routes under `prefix` (empty in the app, `ROUTE_PREFIX` in the
/// gateway), for signed-in people only: the page sends anyone else to sign
/// in (straight to the provider, or to the chooser with several), the
/// forms refuse them (`403`).
pub fn router(prefix: &str) -> Router<AppState> {
    Router::new()
        .route(&format!("{prefix}/sessions"), get(page))
        .route(&format!("{prefix}/sessions/end"), post(ending(Which::One)))
        .route(&format!("{prefix}/sessions/end-others"), post(ending(Which::AllOthers)))
}

/// The most sessions the page shows (the newest).
const MOST_SHOWN: usize = 50;

/// One row of the page.
struct Row {
    /// The digest that names the session in the forms.
    handle: String,
    this_device: bool,
    started: String,
    last_seen: String,
    browser: String,
    client_ip: String,
}

#[derive(Template)]
#[template(path = "sessions.html")]
struct SessionsPage<'a> {
    rows: Vec<Row>,
    others: usize,
    /// Older sessions left off the page.
    not_shown: usize,
    csrf: &'a str,
    end_url: String,
    end_others_url: String,
    links: &'a Links,
}

/// A session still alive, with what its record says of its activity.
pub(crate) struct Live {
    /// What the session index says of it.
    pub entry: SessionEntry,
    /// Its record's activity (none in a session signed in by hand).
    pub activity: Option<Activity>,
}

/// The signed-in person's login on this request; `None` when nobody is
/// signed in (or the session has no login data: signed in by hand).
async fn login_of(auth: &AuthSession) -> Result<Option<LoginData>, AppError> {
    if auth.user.is_none() {
        return Ok(None);
    }
    Ok(auth.session.get::<LoginData>(LOGIN_KEY).await?)
}

/// The sessions of `entries` that are still there and within their
/// lifetimes at `now`, each read from the session store (the index outlives
/// a record deleted by an idle timeout or the store's expiry).
pub(crate) async fn live_sessions(
    store: &Store,
    lifetimes: &Lifetimes,
    now: i64,
    entries: Vec<SessionEntry>,
) -> Result<Vec<Live>, StoreError> {
    let mut live = Vec::new();
    for entry in entries {
        let Some(record) = store.session_record(&entry.session_id).await? else {
            continue;
        };
        let activity = record
            .data
            .get(ACTIVITY_KEY)
            .and_then(|v| serde_json::from_value::<Activity>(v.clone()).ok());
        if let Some(a) = &activity
            && matches!(lifetimes.judge(a, now), Freshness::Idle | Freshness::TooOld)
        {
            continue;
        }
        live.push(Live { entry, activity });
    }
    Ok(live)
}

/// The name of a session on the page: a digest of its id.
fn handle(session_id: &str) -> String {
    let digest = Sha256::digest(session_id.as_bytes());
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &digest[..18])
}

/// A time to the minute, in UTC.
pub(crate) fn minute(unix: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => "unknown".to_owned(),
    }
}

/// "Firefox 128 on Linux" from a `User-Agent`.
pub(crate) fn browser(user_agent: Option<&str>) -> String {
    let parsed = user_agent.and_then(|ua| woothee::parser::Parser::new().parse(ua));
    let Some(ua) = parsed else {
        return "Unknown browser".to_owned();
    };
    let known = |s: &str| !s.is_empty() && s != woothee::woothee::VALUE_UNKNOWN;
    let name = match (known(ua.name), ua.version.split('.').next().filter(|v| known(v))) {
        (true, Some(major)) => format!("{} {major}", ua.name),
        (true, None) => ua.name.to_owned(),
        (false, _) => "Unknown browser".to_owned(),
    };
    match known(ua.os) {
        true => format!("{name} on {}", ua.os),
        false => name,
    }
}

async fn page(State(state): State<AppState>, auth: AuthSession, request: Parts) -> Result<Response, AppError> {
    let Some(login) = login_of(&auth).await? else {
        // A page people open directly (bookmarked, linked): straight to sign in.
        return Ok(super::auth::sign_in_for(&state, &request, &state.links.sessions).await);
    };
    let current = auth.session.id().map(|id| id.to_string());
    let now = state.clock.unix();
    let mut entries = state.store.sessions_of(&login.issuer, &login.subject).await?;
    // The newest only (each is a read of the session store), and this one.
    let older = entries.len().saturating_sub(MOST_SHOWN);
    let (this, older): (Vec<SessionEntry>, Vec<SessionEntry>) = entries
        .drain(..older)
        .partition(|e| Some(&e.session_id) == current.as_ref());
    let not_shown = older.len();
    entries.extend(this);
    let mut rows: Vec<(i64, Row)> = live_sessions(&state.store, &state.lifetimes, now, entries)
        .await?
        .into_iter()
        .map(|Live { entry, activity }| {
            let this_device = current.as_deref() == Some(entry.session_id.as_str());
            // This one is being used now; the others as their record says
            // (written at most once a minute).
            let last_seen = match (this_device, &activity) {
                (true, _) => now,
                (false, Some(a)) => a.last_seen,
                (false, None) => entry.started_at.unwrap_or(0),
            };
            let started = entry.started_at.or(activity.map(|a| a.login_at));
            let row = Row {
                handle: handle(&entry.session_id),
                this_device,
                started: started.map_or_else(|| "unknown".to_owned(), minute),
                last_seen: minute(last_seen),
                browser: browser(entry.user_agent.as_deref()),
                client_ip: entry.client_ip.unwrap_or_else(|| "unknown".to_owned()),
            };
            (if this_device { i64::MAX } else { last_seen }, row)
        })
        .collect();
    // This device first, then the most recently seen.
    rows.sort_by_key(|(seen, _)| std::cmp::Reverse(*seen));
    let rows: Vec<Row> = rows.into_iter().map(|(_, row)| row).collect();
    let others = rows.iter().filter(|r| !r.this_device).count();
    let base = state.links.sessions.as_str();
    Ok(render(
        StatusCode::OK,
        &SessionsPage {
            rows,
            others,
            not_shown,
            csrf: login.csrf.expose(),
            end_url: format!("{base}/end"),
            end_others_url: format!("{base}/end-others"),
            links: &state.links,
        },
    ))
}

/// The login of a form post whose CSRF token and origin are right.
async fn checked(
    state: &AppState,
    auth: &AuthSession,
    headers: &HeaderMap,
    form: Option<&str>,
) -> Result<LoginData, AppError> {
    let login = login_of(auth).await?.ok_or(AppError::Csrf)?;
    let token_ok = param(form, "csrf").is_some_and(|t| login.csrf.ct_eq(&t));
    if !token_ok || !same_origin(headers, state) {
        return Err(AppError::Csrf);
    }
    Ok(login)
}

/// The handler of a form that ends `which` sessions.
fn ending(
    which: Which,
) -> impl Fn(State<AppState>, Origin, AuthSession, HeaderMap, RawForm) -> BoxFuture<'static, Result<Response, AppError>>
+ Clone
+ Send
+ Sync
+ 'static {
    move |state, origin, auth, headers, form| Box::pin(end(which, state, origin, auth, headers, form))
}

/// Which sessions a form ends.
#[derive(Clone, Copy)]
enum Which {
    /// The one its `session` field names.
    One,
    /// Every one but this.
    AllOthers,
}

/// `POST /sessions/end` and `POST /sessions/end-others`.
async fn end(
    which: Which,
    State(state): State<AppState>,
    origin: Origin,
    auth: AuthSession,
    headers: HeaderMap,
    RawForm(form): RawForm,
) -> Result<Response, AppError> {
    let form = std::str::from_utf8(&form).ok();
    let login = checked(&state, &auth, &headers, form).await?;
    let current = auth.session.id().map(|id| id.to_string());
    let others = state
        .store
        .sessions_of(&login.issuer, &login.subject)
        .await?
        .into_iter()
        .filter(|e| Some(&e.session_id) != current.as_ref());
    let targets: Vec<SessionEntry> = match which {
        Which::AllOthers => others.collect(),
        Which::One => {
            let wanted = param(form, "session").unwrap_or_default();
            let target: Vec<_> = others.filter(|e| handle(&e.session_id) == wanted).take(1).collect();
            // Not one of this person's other sessions (someone else's, this
            // one, or already ended): nothing to end.
            if target.is_empty() {
                return Err(AppError::NotFound);
            }
            target
        }
    };
    for target in &targets {
        end_session(&state, &origin, &login, &target.session_id).await?;
    }
    Ok(Redirect::to(&state.links.sessions).into_response())
}

/// Ends another session of the signed-in person: the one place where this
/// page ends a session (anything else a logout does to a session belongs
/// here too). Its next request, on any instance, is anonymous.
async fn end_session(state: &AppState, origin: &Origin, login: &LoginData, session_id: &str) -> Result<(), AppError> {
    // Its tokens are revoked at the provider as the Log out button's are.
    // Every session of a person has their issuer: users are (issuer, subject).
    super::revoke::revoke_session(state, &login.issuer, session_id).await?;
    state.store.end_session(session_id).await?;
    audit::session_ended(origin, "ended_by_user", Some(&login.issuer), Some(&login.subject));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_and_systems_are_named() {
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert_eq!(browser(Some(firefox)), "Firefox 128 on Linux");
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                      Chrome/124.0.0.0 Safari/537.36";
        assert_eq!(browser(Some(chrome)), "Chrome 124 on Windows 10");
        assert_eq!(browser(Some("curl/8.5.0")), "HTTP Library curl");
        assert_eq!(browser(None), "Unknown browser");
        assert_eq!(browser(Some("\u{0}<script>")), "Unknown browser");
    }

    #[test]
    fn times_are_shown_to_the_minute() {
        assert_eq!(minute(1_764_705_185), "2025-12-02 19:53 UTC");
        assert_eq!(minute(i64::MAX), "unknown");
    }

    #[test]
    fn a_handle_names_a_session_without_its_id() {
        let id = "X2V4YW1wbGUtc2Vzc2lvbi1pZA";
        assert_eq!(handle(id), handle(id));
        assert_ne!(handle(id), handle("another"));
        assert!(!handle(id).contains(id));
        assert_eq!(handle(id).len(), 24);
    }
}
