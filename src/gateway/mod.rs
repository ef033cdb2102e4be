//! The gateway: oidc-gate's sign-in in front of an app it did not write,
//! with oauth2-proxy's interface. Either it passes requests on itself
//! (reverse proxy, `UPSTREAM_URL`), or a web server asks it about each
//! request (forward auth, `/oauth2/auth`) and serves the app itself.
//!
//! It reuses the login, sessions and access rules of the app as they are:
//! its routes are the same handlers under `ROUTE_PREFIX`, and what it adds
//! is here: which paths are public or ruled ([`paths`]), what the upstream
//! is told ([`headers`]), passing requests on ([`proxy`]) and answering a
//! web server ([`forward_auth`]).

pub mod forward_auth;
pub mod headers;
mod pages;
pub mod paths;
pub mod proxy;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, FromRef, Request, State};
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use tower_sessions::Session;
use url::Url;

use crate::access::Claims;
use crate::config::GatewayConfig;
use crate::drain::Tunnels;
use crate::refresh::Outcome;
use crate::secret::Secret;
use crate::session::ACCESS_KEY;
use crate::users::AuthSession;
use crate::web::access::{Scope, refused};
use crate::web::audit::{self, Origin};
use crate::web::bearer;
use crate::web::guard::{unauthenticated, wants_json};
use crate::web::{self, AppError, AppState, ErrorPage, Upstream, step_up, tokens};
use headers::{HeaderPolicy, Identity};
use paths::{PathRules, RequestPath};
use proxy::{Proxy, ProxySettings};

/// The gateway of one application: its settings and, in reverse proxy
/// mode, the proxy. Cheap to clone.
#[derive(Clone)]
pub struct Gateway(Arc<Inner>);

struct Inner {
    prefix: String,
    paths: PathRules,
    proxy: Option<Proxy>,
    pass_access_token: bool,
    pass_authorization_header: bool,
    public_url: Url,
}

/// The state of the gateway's handlers: the app's, and the gateway.
#[derive(Clone)]
struct GatewayState {
    app: AppState,
    gateway: Gateway,
}

impl FromRef<GatewayState> for AppState {
    fn from_ref(state: &GatewayState) -> AppState {
        state.app.clone()
    }
}

impl Gateway {
    /// From the configuration; `cookie_name` is the session cookie's. Makes
    /// no network request.
    /// Tunnels (WebSocket upgrades) run in `tunnels`, which a stopping
    /// server waits for.
    pub fn new(
        config: &GatewayConfig,
        public_url: &Url,
        connect_timeout: Duration,
        cookie_name: &'static str,
        tunnels: Tunnels,
    ) -> Self {
        let proxy = config.upstream.as_ref().map(|upstream| {
            let proxy = Proxy::new(ProxySettings {
                upstream: upstream.clone(),
                timeout: config.upstream_timeout,
                connect_timeout,
                policy: HeaderPolicy {
                    pass_access_token: config.pass_access_token,
                    pass_authorization_header: config.pass_authorization_header,
                    pass_host_header: config.pass_host_header,
                    own_cookie: cookie_name,
                },
                public_url: public_url.clone(),
                tunnels,
            });
            proxy.expect("UPSTREAM_URL is validated at start-up as an http(s) URL with a host")
        });
        Self(Arc::new(Inner {
            prefix: config.prefix.clone(),
            paths: config.paths.clone(),
            proxy,
            pass_access_token: config.pass_access_token,
            pass_authorization_header: config.pass_authorization_header,
            public_url: public_url.clone(),
        }))
    }

    /// The gateway's routes under its prefix ("Your sessions" among them),
    /// `/ping` and `/ready`, and everything else passed to the upstream (or
    /// 404 without one).
    pub fn routes(&self, app: &AppState) -> Router<AppState> {
        let p = &self.0.prefix;
        let router = Router::new()
            .route(&format!("{p}/start"), get(pages::start))
            .route(&format!("{p}/sign_in"), get(pages::sign_in))
            .route(&format!("{p}/callback"), get(web::auth::callback))
            .route(&format!("{p}/callback/{{provider}}"), get(web::auth::callback))
            .route(&format!("{p}/sign_out"), get(pages::sign_out).post(web::auth::logout))
            .route(&format!("{p}/auth"), any(forward_auth::auth))
            .route(&format!("{p}/userinfo"), get(pages::userinfo))
            .route(
                &format!("{p}/backchannel-logout"),
                post(web::backchannel::backchannel_logout),
            )
            .route(
                &format!("{p}/frontchannel-logout"),
                get(web::frontchannel::frontchannel_logout),
            )
            .route(&format!("{p}/static/style.css"), get(web::pages::stylesheet));
        let router = match self.0.proxy {
            Some(_) => router.fallback(pass),
            None => router.fallback(web::pages::not_found),
        };
        router
            .with_state(GatewayState {
                app: app.clone(),
                gateway: self.clone(),
            })
            .merge(web::health::router())
            .merge(web::sessions::router(p))
    }

    /// Who the signed-in user of this request is, for the app behind, and
    /// the claims the per-path rules judge; `None` when nobody is. The
    /// subject is the signed-in user's own (users are stored by issuer and
    /// subject), so the one session value read per request is the claims,
    /// and only while rules keep them.
    ///
    /// With `hand_over` (the request's origin), the tokens the app is
    /// handed are in the identity: the access token refreshed first if it
    /// is due. With `judged` too (the path has rules of its own), the
    /// claims are the newest: due tokens are refreshed first even where
    /// none is handed over. A refresh that ends the session leaves nobody
    /// signed in.
    async fn identity(
        &self,
        app: &AppState,
        auth: &AuthSession,
        session: &Session,
        hand_over: Option<&Origin>,
        judged: bool,
    ) -> Result<Option<(Identity, Claims)>, AppError> {
        let Some(user) = &auth.user else { return Ok(None) };
        let (access_token, id_token) = match hand_over {
            None => (None, None),
            Some(origin) => match self.tokens(app, session, judged).await {
                Ok(tokens) => tokens,
                Err(Outcome::Ended(ended)) => {
                    tokens::session_ended(origin, ended);
                    return Ok(None);
                }
                Err(Outcome::Failed(e)) => return Err(tokens::into_app_error(e)),
            },
        };
        let claims = session.get::<Claims>(ACCESS_KEY).await?.unwrap_or_default();
        let identity = Identity {
            user: user.row.subject.clone(),
            email: claims.email.clone().or_else(|| user.row.email.clone()),
            preferred_username: claims.preferred_username.clone(),
            groups: claims.groups.clone().unwrap_or_default(),
            access_token,
            id_token,
        };
        Ok(Some((identity, claims)))
    }

    /// The tokens the app is handed, when it is: the access token
    /// (refreshed first if due; an expired one is never passed on), and
    /// the ID token. When none is and the path is `judged` by rules of its
    /// own, due tokens are still refreshed first (as the access rules do
    /// for every request), so that the rules judge the newest claims.
    async fn tokens(
        &self,
        app: &AppState,
        session: &Session,
        judged: bool,
    ) -> Result<(Option<Secret>, Option<Secret>), Outcome> {
        if !self.0.pass_access_token && !self.0.pass_authorization_header {
            if judged {
                app.refresher.tokens_to_judge(session).await?;
            }
            return Ok((None, None));
        }
        let Some(stored) = app.refresher.tokens(session).await? else {
            return Ok((None, None));
        };
        let access = match self.0.pass_access_token {
            true => app.refresher.open_access(&stored),
            false => None,
        };
        let id = match self.0.pass_authorization_header {
            true => app.refresher.open_id(&stored),
            false => None,
        };
        Ok((access, id))
    }

    /// The identity of a request's bearer token (`SKIP_JWT_BEARER_TOKENS`),
    /// for a request without a signed-in session on a path that needs one:
    /// `Ok(None)` without a bearer token; `Err` is the answer (401, 403,
    /// 429, 503). The app is passed the token itself with `PASS_ACCESS_TOKEN`.
    async fn bearer_identity(
        &self,
        app: &AppState,
        headers: &HeaderMap,
        origin: &Origin,
    ) -> Result<Option<(Identity, Claims)>, Response> {
        let Some(token) = bearer::token_of(app, headers) else {
            return Ok(None);
        };
        let user = bearer::authenticate(app, token, origin).await?;
        let claims = user.claims;
        let identity = Identity {
            user: user.subject,
            email: claims.email.clone(),
            preferred_username: claims.preferred_username.clone(),
            groups: claims.groups.clone().unwrap_or_default(),
            access_token: self.0.pass_access_token.then(|| Secret::new(token.to_owned())),
            id_token: None,
        };
        Ok(Some((identity, claims)))
    }
}

/// A browser navigation (rather than an API call, XHR, form post or
/// WebSocket): it may be sent to sign in; anything else gets 401.
pub(crate) fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    let fetch_mode = headers.get("sec-fetch-mode").and_then(|v| v.to_str().ok());
    matches!(*method, Method::GET | Method::HEAD)
        && !wants_json(headers)
        && !headers.contains_key(header::UPGRADE)
        && fetch_mode.is_none_or(|m| m.eq_ignore_ascii_case("navigate"))
}

/// Reverse proxy mode: every request that is not the gateway's own.
async fn pass(State(gw): State<GatewayState>, auth: AuthSession, session: Session, mut request: Request) -> Response {
    let GatewayState { app, gateway } = gw;
    let Some(proxy) = &gateway.0.proxy else {
        return AppError::NotFound.into_response();
    };
    let client = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let navigation = is_navigation(request.method(), request.headers());
    let Ok(path) = RequestPath::parse(request.uri().path()) else {
        return AppError::BadPath.into_response();
    };
    let origin = Origin::of(request.extensions());
    let verdict = gateway.0.paths.judge(&path);
    let judged = !verdict.rules.is_empty();
    let mut identity = match gateway.identity(&app, &auth, &session, Some(&origin), judged).await {
        Ok(identity) => identity,
        Err(e) => return e.into_response(),
    };
    let mut by_bearer = false;
    if !verdict.public && identity.is_none() {
        let (parts, body) = request.into_parts();
        let origin = Origin::of(&parts.extensions);
        match gateway.bearer_identity(&app, &parts.headers, &origin).await {
            Ok(found) => (by_bearer, identity) = (found.is_some(), found),
            Err(response) => return response,
        }
        request = Request::from_parts(parts, body);
    }
    if !verdict.public {
        let Some((who, claims)) = &identity else {
            if navigation {
                return sign_in(&app, request).await;
            }
            return unauthenticated(&app.links.login);
        };
        if let Err(refusal) = verdict.admits(claims) {
            audit::path_refused(&origin, refusal.code(), &who.user, &path.forwarded);
            let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
            return refused(&app, claims, refusal, target, Scope::Path, by_bearer || !navigation);
        }
        match step_up::unmet(&app, &session, &verdict, by_bearer).await {
            Ok(None) => {}
            Ok(Some(step_up)) => {
                tracing::info!(reason = "step_up_required", "path needs a fresh sign-in");
                if navigation && !by_bearer {
                    return sign_in(&app, request).await;
                }
                return step_up::insufficient(&app.links.login, &step_up);
            }
            Err(e) => return e.into_response(),
        }
    }
    let request = match with_path(request, &path.forwarded) {
        Ok(request) => request,
        Err(e) => return e.into_response(),
    };
    let mut response = proxy
        .forward(request, identity.as_ref().map(|(i, _)| i), client, !navigation)
        .await;
    // The upstream's answer keeps its own headers; the proxy's error pages are ours.
    if response.extensions().get::<ErrorPage>().is_none() {
        response.extensions_mut().insert(Upstream);
    }
    response
}

/// A browser that must sign in (again) for `request`: straight to the
/// provider and back to the URL it asked for, as `/oauth2/start?rd=` would
/// answer (the chooser first with several providers).
async fn sign_in(app: &AppState, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    web::auth::sign_in_for(app, &parts, target).await
}

/// The request with its path replaced by the normalised one (the query kept).
fn with_path(mut request: Request, path: &str) -> Result<Request, AppError> {
    let uri = request.uri();
    if uri.path() == path {
        return Ok(request);
    }
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().map_err(|_| AppError::BadPath)?);
    *request.uri_mut() = Uri::from_parts(parts).map_err(|_| AppError::BadPath)?;
    Ok(request)
}
