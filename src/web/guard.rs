//! Request-wide middleware: session lifetimes, login protection, and turning
//! bare framework errors into pages.

use std::convert::Infallible;
use std::future::ready;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{OriginalUri, Request};
use axum::http::{Extensions, HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::future::Either;
use tower::{Layer, Service};
use tower_sessions::Session;

use super::AppState;
use super::audit::{self, Origin};
use super::bearer::BearerState;
use super::error::AppError;
use super::redirect::Links;
use crate::session::{ACTIVITY_KEY, Activity, Freshness, LOGIN_KEY, LoginData, SessionCookie};
use crate::store::StoreError;
use crate::users::AuthSession;

/// Sessions: the session the request's cookie names (a
/// [`tower_sessions::Session`] in its extensions), its lifetimes enforced
/// before the routes run, and its cookie set or removed on the answer
/// ([`SessionCookie`]). Sessions past their idle timeout or absolute
/// lifetime end here, before the user is loaded, so an ended session is
/// anonymous on this very request; activity is recorded. A session store
/// failure is a 503 page.
///
/// One plain tower layer for what `tower-sessions`' `SessionManagerLayer`
/// (with its cookie manager) and a layer of lifetimes did as three: it runs
/// on every request, and each layer boxed its future and cloned the
/// services inside it.
#[derive(Clone)]
pub struct SessionsLayer {
    state: AppState,
    cookie: Arc<SessionCookie>,
}

impl SessionsLayer {
    /// Sessions with `cookie`, their lifetimes those of `state`.
    pub fn new(state: AppState, cookie: SessionCookie) -> Self {
        Self {
            state,
            cookie: Arc::new(cookie),
        }
    }
}

impl<S> Layer<S> for SessionsLayer {
    type Service = Sessions<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Sessions {
            state: self.state.clone(),
            cookie: self.cookie.clone(),
            inner,
        }
    }
}

/// The service of [`SessionsLayer`].
#[derive(Clone)]
pub struct Sessions<S> {
    state: AppState,
    cookie: Arc<SessionCookie>,
    inner: S,
}

impl<S> Service<Request> for Sessions<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let presented = self.cookie.presented(request.headers());
        let session = self.cookie.session(presented.flatten());
        request.extensions_mut().insert(session.clone());
        // The ready service goes into the future; a clone stays for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        let cookie = self.cookie.clone();
        Box::pin(async move {
            let asked = Asked {
                method: request.method(),
                uri: request.uri(),
                headers: request.headers(),
                extensions: request.extensions(),
            };
            let ended = enforce_lifetimes(&state, &session, asked).await.err();
            let response = match ended {
                Some(response) => response,
                None => inner.call(request).await?,
            };
            Ok(cookie.finish(&session, presented.is_some(), response).await)
        })
    }
}

/// What [`enforce_lifetimes`] needs of the request: references to its
/// parts (the body is not `Sync`, so the request itself cannot be held
/// across an await).
struct Asked<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    extensions: &'a Extensions,
}

async fn enforce_lifetimes(state: &AppState, session: &Session, request: Asked<'_>) -> Result<(), Response> {
    let activity = session
        .get::<Activity>(ACTIVITY_KEY)
        .await
        .map_err(|e| AppError::Session(e).into_response())?;
    let Some(mut activity) = activity else { return Ok(()) };
    let now = state.clock.unix();
    match state.lifetimes.judge(&activity, now) {
        Freshness::Fresh => {}
        Freshness::Touch => {
            activity.last_seen = now;
            session
                .insert(ACTIVITY_KEY, activity)
                .await
                .map_err(|e| AppError::Session(e).into_response())?;
        }
        verdict @ (Freshness::Idle | Freshness::TooOld) => {
            let ended = end_session(state, session).await.map_err(IntoResponse::into_response)?;
            let reason = if verdict == Freshness::Idle {
                "session_idle"
            } else {
                "session_max_age"
            };
            let (issuer, subject) = ended.as_ref().map(|l| (l.issuer.as_str(), l.subject.as_str())).unzip();
            audit::session_ended(&Origin::of(request.extensions), reason, issuer, subject);
            crate::metrics::logout(crate::metrics::LogoutKind::Timeout);
            return Ok(());
        }
    }
    // Who may sign in, judged again: the rules may have been tightened
    // since this session signed in. Nothing is read when no rule is set.
    if state.access.is_open() && !state.providers.have_rules() {
        return Ok(());
    }
    let next = match *request.method {
        Method::GET => request.uri.path_and_query().map_or("/", |p| p.as_str()),
        _ => "/",
    };
    super::access::recheck(state, &Origin::of(request.extensions), session, request.headers, next).await
}

/// Ends a logged-in session here: its record first, then its session-index
/// link (were that to fail, the session is already gone; only logged).
/// Returns the login it was, for the audit event.
pub(super) async fn end_session(state: &AppState, session: &Session) -> Result<Option<LoginData>, AppError> {
    let login = session.get::<LoginData>(LOGIN_KEY).await.ok().flatten();
    let id = session.id().map(|id| id.to_string());
    session.flush().await?;
    if let Some(id) = id
        && let Err(e) = state.store.unlink_session(&id).await
    {
        tracing::warn!(error = %e, "could not remove an ended session's link");
    }
    Ok(login)
}

/// Protects routes: anonymous browsers are sent to log in (and back):
/// straight to the provider with one, to `/login`'s chooser with several;
/// API clients (`Accept: application/json` or XHR) get 401; with
/// `SKIP_JWT_BEARER_TOKENS`, a request with a bearer token and no signed-in
/// session is let in by its token ([`crate::web::BearerUser`] in its
/// extensions) or refused with 401/403 (see [`crate::web::bearer`]). Use with
/// `route_layer(RequireLoginLayer)` on routes of the oidc-gate router.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequireLoginLayer;

impl<S> Layer<S> for RequireLoginLayer {
    type Service = RequireLogin<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireLogin { inner }
    }
}

/// The service of [`RequireLoginLayer`].
#[derive(Clone, Debug)]
pub struct RequireLogin<S> {
    inner: S,
}

impl<S> Service<Request> for RequireLogin<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let answer = |response: Response| -> Self::Future { Either::Right(Box::pin(ready(Ok(response)))) };
        match request.extensions().get::<AuthSession>() {
            Some(auth) if auth.user.is_some() => Either::Left(self.inner.call(request)),
            Some(auth) => {
                let app = auth.backend.app().cloned();
                // Only requests with an `Authorization` header, when bearer
                // tokens are accepted, carry it (see `bearer::layer`).
                let Some(BearerState(state)) = request.extensions().get::<BearerState>().cloned() else {
                    return Either::Right(Box::pin(async move { Ok(to_login(app, request).await) }));
                };
                // The ready service goes into the future; a clone stays for the next call.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Either::Right(Box::pin(async move {
                    match super::bearer::admit(&state, &mut request).await {
                        Ok(Some(())) => inner.call(request).await,
                        Ok(None) => Ok(to_login(app, request).await),
                        Err(response) => Ok(response),
                    }
                }))
            }
            None => {
                // Fail closed: without the login layer nobody is known.
                tracing::error!("RequireLoginLayer used on a route outside the oidc-gate router");
                answer(StatusCode::INTERNAL_SERVER_ERROR.into_response())
            }
        }
    }
}

/// Where an anonymous request goes: API clients get 401; browsers go to
/// sign in and back, straight to the provider when there is one
/// ([`super::auth::sign_in_for`]; `app`, the app of the router), else to
/// the app's `/login`.
async fn to_login(app: Option<AppState>, request: Request) -> Response {
    // The app's links: this layer protects routes of the app's router.
    let links = Links::app();
    if wants_json(request.headers()) {
        return unauthenticated(&links.login);
    }
    // Inside a nested router `uri()` has lost the mount point; the URI the
    // browser asked for is the one to come back to.
    let (parts, _) = request.into_parts();
    let uri = parts.extensions.get::<OriginalUri>().map_or(&parts.uri, |o| &o.0);
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    match app {
        Some(app) => super::auth::sign_in_for(&app, &parts, target).await,
        None => Redirect::to(&links.login_for(target)).into_response(),
    }
}

/// The 401 of a request that needs a sign-in and cannot be sent to one
/// (an API client): JSON naming where sign-in starts.
pub(crate) fn unauthenticated(login: &str) -> Response {
    let body = axum::Json(serde_json::json!({"error": "unauthenticated", "login": login}));
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "OIDC realm=\"oidc-gate\"")],
        body,
    )
        .into_response()
}

/// API clients (`Accept: application/json` without HTML, or XHR) get JSON
/// rather than pages and redirects.
pub(crate) fn wants_json(headers: &HeaderMap) -> bool {
    let xhr = headers
        .get("x-requested-with")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("xmlhttprequest"));
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    xhr || (accept.contains("application/json") && !accept.contains("text/html"))
}

/// Marks a route's own bare 5xx, so that [`render_bare_errors`] leaves it
/// alone. Use with `tower::util::MapResponseLayer` inside the session and
/// login layers. Other answers are not marked: inserting the mark
/// allocates, and this runs on every request.
pub fn mark_routed(mut response: Response) -> Response {
    if is_bare_server_error(&response) {
        response.extensions_mut().insert(Routed);
    }
    response
}

/// A 5xx without a body type: what the session and login layers answer
/// when their store fails.
fn is_bare_server_error(response: &Response) -> bool {
    response.status().is_server_error() && !response.headers().contains_key(header::CONTENT_TYPE)
}

/// The mark of [`mark_routed`].
#[derive(Clone, Copy, Debug)]
struct Routed;

/// Replaces the body-less 5xx answers of the session and login layers
/// (store failures) with the "temporarily unavailable" page. An answer of
/// the routes themselves (marked by [`mark_routed`]), such as an embedding
/// app's own bare `500`, is left as it is. Use with
/// `tower::util::MapResponseLayer`.
pub fn render_bare_errors(response: Response) -> Response {
    if is_bare_server_error(&response) && response.extensions().get::<Routed>().is_none() {
        tracing::error!(status = %response.status(), "session or user store failed");
        return AppError::Store(StoreError::Session("store failure in the session layer".into())).into_response();
    }
    response
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn bare_server_errors_become_the_unavailable_page_and_pages_pass() {
        // What the session and login layers answer when their store fails.
        let bare = StatusCode::INTERNAL_SERVER_ERROR.into_response();
        let page = super::super::render_error_pages(&Links::app(), render_bare_errors(bare));
        assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            page.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let body = axum::body::to_bytes(page.into_body(), 64 * 1024).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("<html"));

        // A handler's own error page and any non-5xx answer are left alone.
        let own = AppError::NotFound.into_response();
        let own_status = own.status();
        assert_eq!(render_bare_errors(own).status(), own_status);
        let ok = (StatusCode::OK, "fine").into_response();
        assert_eq!(render_bare_errors(ok).status(), StatusCode::OK);
        let html_500 = (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/html")],
            "handler's page",
        )
            .into_response();
        let kept = render_bare_errors(html_500);
        assert_eq!(kept.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(kept.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"handler's page");

        // A route's own bare 500 passes too: only the layers' answers are replaced.
        let routed = mark_routed(StatusCode::INTERNAL_SERVER_ERROR.into_response());
        let kept = render_bare_errors(routed);
        assert_eq!(kept.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!kept.headers().contains_key(header::CONTENT_TYPE));
    }

    #[tokio::test]
    async fn require_login_outside_the_login_layer_fails_closed() {
        let app: Router = Router::new()
            .route("/x", get(|| async { "secret" }))
            .route_layer(RequireLoginLayer);
        let response = app
            .oneshot(Request::get("/x").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
        assert!(!body.windows(6).any(|w| w == b"secret"));
    }
}
