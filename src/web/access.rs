//! The access rules at the door ([`crate::access`]): judged at sign-in,
//! before anything of the user is stored, and again on every request from
//! the claims kept in the session. A refusal ends the session and answers
//! 403: a page that says who the user is at the provider, why, and offers
//! to sign in as someone else (JSON for API clients).

use askama::Template;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tower_sessions::Session;

use super::AppState;
use super::audit::{self, Origin};
use super::error::{AppError, render};
use super::guard::{end_session, wants_json};
use super::redirect::Links;
use super::tokens;
use crate::access::{Claims, Refusal};
use crate::provider::{Listed, Login};
use crate::refresh::Outcome;
use crate::session::{ACCESS_KEY, LOGIN_KEY, LoginData};

/// The refusal page.
#[derive(Template)]
#[template(path = "refused.html")]
struct RefusedPage<'a> {
    /// Email or name at the provider (escaped by the template).
    who: Option<&'a str>,
    sentence: &'static str,
    reason: &'static str,
    /// `/login` asking the provider for its account chooser.
    switch_url: String,
    scope: Scope,
    links: &'a Links,
}

/// What a refusal refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// A sign-in: nothing was stored.
    SignIn,
    /// A session, under rules tightened since it signed in: it ended.
    Session,
    /// One part of the site (a per-path rule of the gateway): the session stays.
    Path,
}

/// Judges a validated login from `listed`: its provider's own rules (if
/// any), then the global ones. `Ok(None)`: no global rule is set (and the
/// claims are not kept); `Ok(Some)`: the claims to keep in the session;
/// `Err`: the refusal page, after this browser's earlier session (if any)
/// was ended, so that it leaves signed out.
pub(super) async fn admit(
    state: &AppState,
    origin: &Origin,
    session: &Session,
    login: &Login,
    next: &str,
    listed: &Listed,
) -> Result<Option<Claims>, Response> {
    let own = listed.rules.as_ref();
    if let Some(rules) = own {
        let claims = rules.claims_of(login);
        if let Err(refusal) = rules.check(&claims) {
            return Err(refuse_sign_in(state, origin, session, login, next, listed, &claims, refusal).await);
        }
    }
    let Some(claims) = state.access.kept_claims(own, &login.id_token, &login.userinfo_claims) else {
        return Ok(None);
    };
    match state.access.check(&claims) {
        Ok(()) => Ok(Some(claims)),
        Err(refusal) => Err(refuse_sign_in(state, origin, session, login, next, listed, &claims, refusal).await),
    }
}

/// A sign-in an access rule refused: the browser's earlier session ends,
/// the refusal is recorded, and its page answers.
#[allow(clippy::too_many_arguments)]
async fn refuse_sign_in(
    state: &AppState,
    origin: &Origin,
    session: &Session,
    login: &Login,
    next: &str,
    listed: &Listed,
    claims: &Claims,
    refusal: Refusal,
) -> Response {
    if session.id().is_some()
        && let Err(e) = end_session(state, session).await
    {
        return e.into_response();
    }
    audit::sign_in_refused(
        origin,
        refusal.code(),
        listed.provider.issuer(),
        Some(&login.id_token.subject),
        None,
    );
    crate::metrics::login(crate::metrics::LoginOutcome::Refused, refusal.code(), &listed.id);
    refused(state, claims, refusal, next, Scope::SignIn, false)
}

/// Keeps the admitted claims in the session, for [`recheck`].
pub(super) async fn keep(session: &Session, claims: Option<&Claims>) -> Result<(), AppError> {
    if let Some(claims) = claims {
        session.insert(ACCESS_KEY, claims).await?;
    }
    Ok(())
}

/// Judges a logged-in session again (the rules may have been tightened
/// since it signed in, the user changed at the provider): the global rules
/// and those of its provider, on the claims of its newest tokens. Only
/// called when rules are set. A refused session
/// ends and gets the 403; one signed in before these rules existed ends
/// quietly, and the request goes on anonymous (it then signs in again and
/// is judged then).
pub(super) async fn recheck(
    state: &AppState,
    origin: &Origin,
    session: &Session,
    headers: &HeaderMap,
    path: &str,
) -> Result<(), Response> {
    let own = own_rules(state, session).await?;
    if state.access.is_open() && own.is_none() {
        return Ok(());
    }
    if !newest_tokens(state, origin, session).await? {
        return Ok(());
    }
    let claims = session
        .get::<Claims>(ACCESS_KEY)
        .await
        .map_err(|e| AppError::Session(e).into_response())?;
    let judged = |c: &Claims| {
        let mut rules = std::iter::once(&state.access).chain(own);
        match rules.clone().all(|r| r.can_judge(c)) {
            true => Some(rules.try_for_each(|r| r.check(c))),
            false => None,
        }
    };
    let verdict = match claims.as_ref().and_then(judged) {
        Some(Ok(())) => return Ok(()),
        Some(Err(refusal)) => Some(refusal),
        None => None,
    };
    let ended = end_session(state, session).await.map_err(IntoResponse::into_response)?;
    let reason = verdict.map_or("access_claims_missing", Refusal::code);
    let (issuer, subject) = ended.as_ref().map(|l| (l.issuer.as_str(), l.subject.as_str())).unzip();
    audit::session_ended(origin, reason, issuer, subject);
    let Some(refusal) = verdict else {
        return Ok(());
    };
    let next = if path.starts_with('/') { path } else { "/" };
    Err(refused(
        state,
        &claims.unwrap_or_default(),
        refusal,
        next,
        Scope::Session,
        wants_json(headers),
    ))
}

/// Brings a session whose tokens are due up to date first: refreshed, or
/// another request's refresh taken (one a stale save of this session
/// hid), so that the claims judged are those of the newest ID token. An
/// unreachable provider leaves the claims the session has (pages that need
/// no token work on, and while it keeps failing, without waiting for it);
/// `false`: the refresh ended the session.
async fn newest_tokens(state: &AppState, origin: &Origin, session: &Session) -> Result<bool, Response> {
    match state.refresher.tokens_to_judge(session).await {
        Ok(()) => Ok(true),
        Err(Outcome::Ended(ended)) => {
            tokens::session_ended(origin, ended);
            Ok(false)
        }
        Err(Outcome::Failed(e)) => Err(tokens::into_app_error(e).into_response()),
    }
}

/// The rules of the provider the session signed in with, if it has any
/// (the session's login is read only when some provider has rules).
async fn own_rules<'a>(state: &'a AppState, session: &Session) -> Result<Option<&'a crate::access::Rules>, Response> {
    if !state.providers.have_rules() {
        return Ok(None);
    }
    let login = session
        .get::<LoginData>(LOGIN_KEY)
        .await
        .map_err(|e| AppError::Session(e).into_response())?;
    Ok(login
        .and_then(|l| state.providers.by_issuer(&l.issuer))
        .and_then(|listed| listed.rules.as_ref()))
}

/// The 403 answer: the page, or JSON for API clients.
pub(crate) fn refused(
    state: &AppState,
    claims: &Claims,
    refusal: Refusal,
    next: &str,
    scope: Scope,
    json: bool,
) -> Response {
    if json {
        let body = axum::Json(serde_json::json!({"error": "access_denied", "reason": refusal.code()}));
        return (StatusCode::FORBIDDEN, body).into_response();
    }
    let mut switch_url = state.links.login_for(next);
    switch_url.push(if switch_url.contains('?') { '&' } else { '?' });
    switch_url.push_str("prompt=select_account");
    let page = RefusedPage {
        who: claims.who(),
        sentence: refusal.sentence(),
        reason: refusal.code(),
        switch_url,
        scope,
        links: &state.links,
    };
    render(StatusCode::FORBIDDEN, &page)
}
