//! The login routes: `/login` starts the authorization code flow (PKCE,
//! state, nonce), as does a protected page for an anonymous browser
//! ([`sign_in_for`]); `/callback` completes it, `/logout` ends the session
//! here and at the provider.

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawForm, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_login::AuthnBackend as _;
use openidconnect::PkceCodeChallenge;
use tower_sessions::Session;
use url::form_urlencoded;

use super::audit::{self, LogoutKind, Origin};
use super::error::AppError;
use super::pending::PendingLogin;
use super::ratelimit::{Limited, class};
use super::{AppState, access, chooser, step_up};
use crate::metrics::{self, LoginOutcome};
use crate::provider::{Listed, Login, VerifiedIdToken};
use crate::secret::{Secret, random_token};
use crate::session::{ACTIVITY_KEY, AUTH_KEY, Activity, LOGIN_KEY, LoginData, TOKENS_KEY};
use crate::store::{LoginWrites, SessionLink, SignedInFrom, StoreError, UserProfile};
use crate::tokens::{Kind, StoredTokens};
use crate::users::{AuthSession, signed_in_entry};

/// Bytes of randomness in `state`, `nonce` and the CSRF token (256 bits).
const TOKEN_BYTES: usize = 32;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login))
        .route("/callback", get(callback))
        .route("/callback/{provider}", get(callback))
        .route("/logout", post(logout))
}

/// Query or form parameters, parsed leniently (never a rejection), first value wins.
pub(crate) fn param(raw: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `/login[?next=][&provider=][&prompt=select_account]`: the chooser, or
/// the redirect to the provider.
pub(crate) async fn login(
    _: Limited<class::Login>,
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let query = query.as_deref();
    let asked = SignIn {
        next: param(query, state.links.return_param),
        // "Sign in as someone else" (the refusal page): the provider shows its
        // account chooser rather than signing the same account in again.
        prompt: param(query, "prompt").filter(|p| p == "select_account"),
        provider: param(query, "provider"),
    };
    start(&state, &headers, asked).await
}

/// What a sign-in is asked for: `/login`'s parameters.
#[derive(Default)]
struct SignIn {
    /// Where to come back (unchecked).
    next: Option<String>,
    /// `select_account`, or none.
    prompt: Option<String>,
    /// The provider's id; none: the only one, or the chooser.
    provider: Option<String>,
}

/// Starts a sign-in (for a request with `headers`): with several providers
/// and none asked for, the chooser; otherwise the redirect to the
/// provider, the login in progress in its cookie. The body of `/login`,
/// and of a protected page's answer to an anonymous browser ([`sign_in_for`]).
async fn start(state: &AppState, headers: &HeaderMap, asked: SignIn) -> Result<Response, AppError> {
    let next = state.redirects.safe(asked.next.as_deref());
    let prompt = asked.prompt;
    // Several providers: the user picks one (`?provider=` skips the chooser).
    let listed = match asked.provider {
        Some(id) => state.providers.by_id(&id).ok_or(AppError::UnknownProvider)?,
        None if state.providers.several() => return Ok(chooser::page(state, &next, prompt.as_deref())),
        None => state.providers.first(),
    };
    // A sign-in for a path with step-up settings asks for them (so that
    // nginx's 401 → `/oauth2/start?rd=/admin` steps up too).
    let step_up = step_up::of_target(state, &next);
    let now = state.clock.unix();
    let snapshot = listed.provider.snapshot().await?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256_len(TOKEN_BYTES as u32);
    let pending = PendingLogin {
        state: Secret::new(random_token(TOKEN_BYTES)),
        nonce: Secret::new(random_token(TOKEN_BYTES)),
        pkce_verifier: Secret::new(verifier.secret().clone()),
        next,
        started_at: now,
        step_up,
        provider: listed.id.clone(),
    };
    let url = listed.provider.authorization_url(
        &snapshot,
        pending.state.expose(),
        pending.nonce.expose(),
        challenge.as_str(),
        prompt.as_deref(),
        &pending.step_up,
    );
    // In the browser, not the session store: /login writes nothing here.
    let jar = state.pending.start(headers, &pending, now);
    Ok((jar, Redirect::to(url.as_str())).into_response())
}

/// Where a page that needs a sign-in sends an anonymous browser (the
/// request's `parts`) to sign in and come back to `target` (a path and
/// query): with one provider, straight to it, answering exactly as
/// `/login?next=target` would (its rate limit, its cookie, its errors),
/// which saves the browser a round trip; with several, to `/login` (or
/// `/oauth2/start`) for the chooser.
pub(crate) async fn sign_in_for(state: &AppState, parts: &Parts, target: &str) -> Response {
    if state.providers.several() {
        return Redirect::to(&state.links.login_for(target)).into_response();
    }
    if let Err(exceeded) = Limited::<class::Login>::of(state, parts) {
        return exceeded.response(&parts.headers);
    }
    let asked = SignIn {
        next: Some(target.to_owned()),
        ..SignIn::default()
    };
    start(state, &parts.headers, asked)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `/callback`, or `/callback/ID`: the redirect URI of provider `ID` when
/// there are several.
pub(crate) async fn callback(
    at: Result<Option<Path<String>>, PathRejection>,
    _: Limited<class::Callback>,
    State(state): State<AppState>,
    origin: Origin,
    auth: AuthSession,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.as_deref();
    // `/callback` names no provider, `/callback/ID` one. An id that is not
    // UTF-8 once decoded (`/callback/%FF`) names none of ours: the callback
    // is refused as at another provider's (our page, its state spent),
    // rather than with the router's bare 400.
    let at = match at {
        Ok(at) => at.map(|Path(id)| id),
        Err(_) => Some(String::new()),
    };
    // Until the state names the login in progress, which provider it is at
    // is known only where there is one.
    let first = state.providers.first();
    let issuer = first.provider.issuer();
    let provider = match state.providers.several() {
        true => metrics::UNKNOWN_PROVIDER,
        false => first.id.as_str(),
    };
    let Some(presented) = param(query, "state") else {
        return refuse(
            &origin,
            (issuer, provider),
            AppError::Callback {
                reason: "state_missing",
                detail: "no state parameter",
            },
        );
    };
    // The presented state is single use: its login is taken (and its cookie
    // removed) before anything else is checked, whatever the outcome.
    let now = state.clock.unix();
    let (jar, pending) = state.pending.take(&headers, &presented, now);
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
    let from = SignedInFrom::new(now, user_agent, origin.client_ip);
    let (refused_at, result) = match pending {
        Some(pending) => match chooser::bound(&state, &pending, at.as_deref()) {
            Ok(listed) => (
                (listed.provider.issuer(), listed.id.as_str()),
                complete(&state, &origin, auth, query, pending, from, listed).await,
            ),
            Err(e) => ((issuer, provider), Err(e)),
        },
        None => (
            (issuer, provider),
            Err(AppError::Callback {
                reason: "state_mismatch",
                detail: "state unknown, expired or already used",
            }),
        ),
    };
    match result {
        Ok(response) => (jar, response).into_response(),
        Err(e) => (jar, refuse(&origin, refused_at, e)).into_response(),
    }
}

/// A refused sign-in `at` a provider (its issuer, and its id for the
/// metrics): its audit event, then its page.
fn refuse(origin: &Origin, (issuer, provider): (&str, &str), e: AppError) -> Response {
    audit::sign_in_refused(origin, e.reason(), issuer, None, Some(&e));
    metrics::login(LoginOutcome::Failure, e.reason(), provider);
    e.into_recorded_response()
}

/// The rest of the callback, once `state` matched a login in progress: the
/// provider's answer, the code exchange, who may sign in, the user, then a
/// new session, signed in `from` the browser of this request.
async fn complete(
    state: &AppState,
    origin: &Origin,
    auth: AuthSession,
    query: Option<&str>,
    pending: PendingLogin,
    from: SignedInFrom,
    listed: &Listed,
) -> Result<Response, AppError> {
    let now = from.started_at;
    let provider = &listed.provider;
    let code = code_of(provider.issuer(), query)?;
    // Of two callbacks carrying the same login (a copied cookie), one wins,
    // before either reaches the provider: its single-use code is a second
    // line of defence, not the only one.
    if !state.pending.first_use(&pending, now) {
        return Err(AppError::Callback {
            reason: "state_mismatch",
            detail: "state already used",
        });
    }
    let login = provider
        .complete_login(&code, pending.pkce_verifier.expose(), pending.nonce.expose())
        .await?;
    let (auth_time, acr) = step_up::signed_in_as(state, &login.id_token, &pending.step_up, now)?;
    // Who may sign in: judged before anything of theirs is stored.
    let access = match access::admit(state, origin, &auth.session, &login, &pending.next, listed).await {
        Ok(access) => access,
        Err(refused) => return Ok(refused),
    };
    let claims = &login.id_token;
    let session = sign_in(state, &auth).await?;
    let data = LoginData {
        issuer: provider.issuer().to_owned(),
        subject: claims.subject.clone(),
        sid: claims.sid.clone(),
        csrf: Secret::new(random_token(TOKEN_BYTES)),
        auth_time: Some(auth_time),
        acr,
    };
    let activity = Activity {
        login_at: now,
        last_seen: now,
    };
    access::keep(&session, access.as_ref()).await?;
    keep_tokens(state, &session, &login, now).await?;
    let user_id = save_linked(
        state,
        auth,
        &profile(provider.issuer(), claims),
        &data,
        activity,
        &login.raw_id_token,
        from,
    )
    .await?;
    audit::signed_in(origin, &listed.id, &data.issuer, &data.subject, user_id);
    Ok(Redirect::to(&pending.next).into_response())
}

/// Keeps the login's tokens, sealed: for the app behind the gateway,
/// handlers, refresh and revocation.
async fn keep_tokens(state: &AppState, session: &Session, login: &Login, now: i64) -> Result<(), AppError> {
    let Some(vault) = &state.tokens else { return Ok(()) };
    let tokens = StoredTokens {
        access: Some(vault.seal(Kind::Access, login.access_token.expose())),
        access_expires_at: login.access_expires_at,
        issued_at: Some(now),
        id: Some(vault.seal(Kind::Id, &login.raw_id_token)),
        refresh: login
            .refresh_token
            .as_ref()
            .map(|t| vault.seal(Kind::Refresh, t.expose())),
    };
    session.insert(TOKENS_KEY, tokens).await?;
    Ok(())
}

/// The code of the provider's answer, once the answer is known to be a
/// success from `issuer`, the provider the login started at.
fn code_of(issuer: &str, query: Option<&str>) -> Result<String, AppError> {
    if let Some(code) = param(query, "error") {
        return Err(AppError::ProviderRefused {
            code: code.chars().take(64).collect(),
        });
    }
    // RFC 9207: when the provider names itself, it must be the one this
    // login started at (a mix-up otherwise: the code must not be sent to
    // another provider).
    if let Some(iss) = param(query, "iss")
        && iss != issuer
    {
        return Err(AppError::Callback {
            reason: "iss_mismatch",
            detail: "iss parameter is not our issuer",
        });
    }
    param(query, "code")
        .filter(|c| !c.is_empty())
        .ok_or(AppError::Callback {
            reason: "code_missing",
            detail: "no code parameter",
        })
}

/// The profile to store of a verified sign-in.
fn profile<'a>(issuer: &'a str, claims: &'a VerifiedIdToken) -> UserProfile<'a> {
    UserProfile {
        issuer,
        subject: &claims.subject,
        email: claims.email.as_deref(),
        email_verified: claims.email_verified,
        name: claims.name.as_deref(),
        picture: claims.picture.as_deref(),
    }
}

/// The session this login signs in on, with nothing of an earlier one:
/// saved (with [`save_linked`]) under a new id.
///
/// A login never continues an earlier session, whoever's it was (its id may
/// have been planted in this browser): that session ends here.
/// (`AuthSession::login` renews the id only of a session that is not logged
/// in, and `Session::flush` keeps the id for the next save.)
async fn sign_in(state: &AppState, auth: &AuthSession) -> Result<Session, AppError> {
    let session = auth.session.clone();
    if let Some(old) = session.id() {
        // The old record goes first: were the unlink to fail, the session is
        // already gone, rather than alive and unknown to back-channel logout.
        session.cycle_id().await?;
        session.clear().await;
        state.store.unlink_session(&old.to_string()).await?;
    }
    Ok(session)
}

/// Saves the user and the signed-in session so that no back-channel logout
/// can miss it: whenever the store holds it signed in, its link (by which
/// back-channel logout finds sessions) is there too, or was deleted by such
/// a logout. Returns the user's id.
///
/// Where sessions and links share a database, the user, the session and its
/// link are one transaction ([`crate::store::Store::save_login`]): a logout
/// finds both or neither. Elsewhere (sessions in Redis or another database)
/// the store gives the session's id at its first save, so the record is
/// saved first with nobody signed in, then linked, then saved signed in
/// (saves only update: a record a logout deleted meanwhile stays deleted),
/// and the link is read back: a logout that deleted it meanwhile ends this
/// login (`logged_out_during_login`).
async fn save_linked(
    state: &AppState,
    mut auth: AuthSession,
    profile: &UserProfile<'_>,
    data: &LoginData,
    activity: Activity,
    id_token: &str,
    from: SignedInFrom,
) -> Result<i64, AppError> {
    let now = from.started_at;
    let session = auth.session.clone();
    session.set_expiry(Some(state.lifetimes.expiry()));
    session.insert(LOGIN_KEY, data).await?;
    session.insert(ACTIVITY_KEY, activity).await?;
    let expires_at = state.lifetimes.ends_by(&activity);
    let writes = LoginWrites {
        issuer: profile.issuer.to_owned(),
        subject: profile.subject.to_owned(),
        email: profile.email.map(str::to_owned),
        email_verified: profile.email_verified,
        name: profile.name.map(str::to_owned),
        picture: profile.picture.map(str::to_owned),
        sid: data.sid.clone(),
        expires_at,
        id_token: id_token.to_owned(),
        now,
        from: from.clone(),
        signed_in: signed_in_entry,
    };
    if let Some(row) = state.store.save_login(&session, writes).await? {
        let id = row.id;
        // The user cache takes the fresh profile.
        auth.backend.authenticate(row).await?;
        return Ok(id);
    }
    let row = state.store.upsert_user(profile, now).await?;
    let user_id = row.id;
    if let Some(user) = auth.authenticate(row).await? {
        auth.login(&user).await?;
    }
    let signed_in = session.remove_value(AUTH_KEY).await?.is_some();
    session.save().await?;
    let id = session
        .id()
        .ok_or_else(|| StoreError::Session("the session has no id once saved".into()))?
        .to_string();
    state
        .store
        .link_session(&SessionLink {
            session_id: &id,
            issuer: &data.issuer,
            subject: &data.subject,
            sid: data.sid.as_deref(),
            expires_at,
            id_token: Some(id_token),
            from: &from,
        })
        .await?;
    // Put back as the entry every other login writes (the same user, in
    // the array that is cheaper to copy on every request).
    if signed_in {
        let (_, entry) = signed_in_entry(user_id);
        session.insert_value(AUTH_KEY, entry).await?;
    }
    session.save().await?;
    let linked = state.store.session_link(&id).await;
    if let Ok(Some(_)) = linked {
        return Ok(user_id);
    }
    // Logged out meanwhile, or not known to be linked: this session must
    // not live on.
    let _ = session.flush().await;
    match linked {
        Err(e) => Err(e.into()),
        _ => Err(AppError::Callback {
            reason: "logged_out_during_login",
            detail: "a back-channel logout ended this login while it was saved",
        }),
    }
}

pub(crate) async fn logout(
    State(state): State<AppState>,
    origin: Origin,
    mut auth: AuthSession,
    headers: HeaderMap,
    RawForm(form): RawForm,
) -> Result<Response, AppError> {
    let session = auth.session.clone();
    let form = std::str::from_utf8(&form).ok();
    // Where to land afterwards (the gateway's `rd`; the app sends none).
    let rd = param(form, "rd").map(|rd| state.redirects.safe(Some(&rd)));
    let Some(login) = session.get::<LoginData>(LOGIN_KEY).await? else {
        // Not logged in: nothing to end.
        return Ok(Redirect::to(rd.as_deref().unwrap_or("/")).into_response());
    };
    let token_ok = param(form, "csrf").is_some_and(|t| login.csrf.ct_eq(&t));
    if !token_ok || !same_origin(&headers, &state) {
        return Err(AppError::Csrf);
    }
    // The session goes first, its link after: were the unlink to fail,
    // the session is already gone, rather than alive and unknown to
    // back-channel logout. The ID token is read before, for the hint.
    let id = session.id().map(|id| id.to_string());
    let id_token_hint = match &id {
        Some(id) => state.store.session_link(id).await?.flatten(),
        None => None,
    };
    let user_id = auth.user.as_ref().map(|u| u.row.id);
    // The tokens in use (a refresh on any instance may have replaced the
    // session's own); unreadable ones (an older format) must not stop the logout.
    let tokens = state.refresher.latest(&session).await.ok().flatten();
    auth.logout().await?;
    session.flush().await?;
    if let Some(tokens) = tokens {
        super::revoke::revoke_in_background(&state, &login.issuer, tokens);
    }
    if let Some(id) = id
        && let Err(e) = state.store.unlink_session(&id).await
    {
        // Logged out all the same; the link expires with the session.
        tracing::warn!(error = %e, "could not remove a logged-out session's link");
    }
    // The provider sends the browser back with `state`, which carries `rd`.
    let at_provider = state.providers.by_issuer(&login.issuer).and_then(|p| {
        p.provider
            .end_session_url(id_token_hint.as_deref(), &state.post_logout_url, rd.as_deref())
    });
    let kind = match at_provider {
        Some(_) => LogoutKind::RpInitiated,
        None => LogoutKind::Button,
    };
    audit::logged_out(&origin, kind, &login.issuer, Some(&login.subject), user_id, 1);
    let target = at_provider
        .map(|u| u.to_string())
        .or(rd)
        .unwrap_or_else(|| "/".to_owned());
    Ok(Redirect::to(&target).into_response())
}

/// A browser's `Origin` (when sent) must be ours: a second line of defence
/// after the CSRF token.
pub(crate) fn same_origin(headers: &HeaderMap, state: &AppState) -> bool {
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(origin) => origin == state.public_url.origin().ascii_serialization(),
    }
}
