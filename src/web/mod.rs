//! HTTP routes and pages. Each feature module has its own router; they are
//! merged here with the session, login and security layers.

pub(crate) mod access;
pub mod audit;
pub(crate) mod auth;
pub(crate) mod backchannel;
pub mod bearer;
mod chooser;
pub mod client_ip;
mod error;
pub(crate) mod frontchannel;
pub(crate) mod guard;
pub mod health;
mod host;
pub(crate) mod pages;
mod pending;
pub mod ratelimit;
pub mod redirect;
pub mod request_id;
pub mod revoke;
pub(crate) mod sessions;
pub(crate) mod step_up;
pub mod tokens;
pub mod trace;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::Response;
use tower::ServiceBuilder;
use tower::util::MapResponseLayer;
use url::Url;

pub use bearer::{BearerAuth, BearerUser};
pub use client_ip::{ClientIp, TrustedProxies};
pub use error::{AppError, ErrorPage, render, render_error_pages};
pub use guard::{RequireLogin, RequireLoginLayer};
pub use host::{LoopbackHosts, LoopbackHostsLayer};
pub use pending::PendingLogins;
pub use ratelimit::Limited;
pub use redirect::{Links, Redirects};
pub use request_id::RequestId;
pub use tokens::{TokenFailure, UserTokens};
pub use trace::RequestLayer;

use crate::access::Rules;
use crate::clock::Clock;
use crate::provider::Providers;
use crate::session::{self, CookieSettings, Lifetimes};
use crate::store::Store;
use crate::users::Backend;

/// Shared state of every handler: one reference count to clone, since axum
/// and the middleware clone it for every request.
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

/// What [`AppState`] shares.
pub struct AppStateInner {
    /// Every provider users may sign in with; the first is the one bearer
    /// tokens are checked with, and the only one in most configurations.
    pub providers: Providers,
    /// Users and the session index.
    pub store: Store,
    /// The clock for session lifetimes and token times.
    pub clock: Clock,
    /// Session lifetimes.
    pub lifetimes: Lifetimes,
    /// External base URL.
    pub public_url: Url,
    /// The cookies of logins in progress.
    pub pending: PendingLogins,
    /// Who may sign in.
    pub access: Rules,
    /// Where the links of oidc-gate's own pages point.
    pub links: Links,
    /// Where a browser may be sent after sign-in and sign-out.
    pub redirects: Redirects,
    /// Where the provider sends the browser after RP-initiated logout
    /// (`post_logout_redirect_uri`).
    pub post_logout_url: Url,
    /// Seals the tokens kept in sessions. Always set by [`crate::app::App`]
    /// (every session keeps its login's tokens); `None` only in a state
    /// built by hand, which then keeps none.
    pub tokens: Option<crate::tokens::TokenVault>,
    /// Refreshes sessions' access tokens when a request needs them.
    pub refresher: crate::refresh::Refresher,
    /// `TRUSTED_PROXIES`: whose forwarding headers and request ids are believed.
    pub trusted_proxies: TrustedProxies,
    /// The rate limits of the sign-in routes.
    pub limits: crate::ratelimit::RateLimits,
    /// Whether the server is stopping, and what it waits for then.
    pub drain: crate::drain::Drain,
    /// Bearer tokens of API clients (`SKIP_JWT_BEARER_TOKENS`); `None`: not accepted.
    pub bearer: Option<BearerAuth>,
    /// The gateway's per-path rules, whose step-up a sign-in for a path
    /// asks for (empty without a gateway).
    pub paths: crate::gateway::paths::PathRules,
}

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

impl AppState {
    /// The state.
    pub fn new(shared: AppStateInner) -> Self {
        Self(Arc::new(shared))
    }
}

/// The app's own routes: pages, login routes, back- and front-channel
/// logout, "Your sessions", health checks, and a 404 page for everything else.
pub fn app_routes() -> Router<AppState> {
    Router::new()
        .merge(pages::router())
        .merge(health::router())
        .route("/healthz", axum::routing::get(health::healthz))
        .merge(auth::router())
        .merge(backchannel::router())
        .merge(sessions::router(""))
        .merge(frontchannel::router())
        .fallback(pages::not_found)
}

/// The complete router: `routes` (the app's or the gateway's, and yours)
/// behind sessions, login and security headers; with `hosts` (while the
/// development provider runs), requests for other hosts are refused first;
/// with `requests` (metrics on), every answer is counted.
pub fn router(
    state: AppState,
    cookie: &CookieSettings,
    routes: Router<AppState>,
    hosts: Option<LoopbackHostsLayer>,
    requests: Option<crate::metrics::RequestCounter>,
) -> Router {
    let backend = Backend::of_app(&state);
    let auth_manager =
        tower::layer::layer_fn(move |inner| axum_login::AuthManager::new(inner, backend.clone(), session::AUTH_KEY));
    let sessions = session::SessionCookie::new(state.store.session_backend(), cookie, state.lifetimes);
    // Shared: `MapResponseLayer` clones its function for every request.
    let headers = Arc::new(PageHeaders::new(&state));
    let pages = state.clone();
    let bearer = bearer::layer(&state);
    // One `layer` call: each `Router::layer` boxes every route once more,
    // and the boxes are cloned and dropped on every request. Outermost first.
    let layers = ServiceBuilder::new()
        .layer(RequestLayer::new(state.trusted_proxies.clone()).counting(requests))
        .layer(MapResponseLayer::new(move |r| render_error_pages(&pages.links, r)))
        .layer(MapResponseLayer::new(move |r| headers.apply(r)))
        .option_layer(hosts)
        .layer(MapResponseLayer::new(guard::render_bare_errors))
        .layer(guard::SessionsLayer::new(state.clone(), sessions))
        .layer(auth_manager)
        .option_layer(bearer)
        .layer(MapResponseLayer::new(guard::mark_routed));
    routes.layer(layers).with_state(state)
}

/// Marks an answer of the app behind the gateway: it keeps its own
/// caching, referrer and content policies (ours would break its pages).
#[derive(Clone, Copy, Debug)]
pub struct Upstream;

/// The headers of every answer, each unless the handler set its own: no
/// caching, a same-origin referrer, no sniffing, our CSP, and HSTS over
/// https. The app behind the gateway ([`Upstream`]) gets only HSTS (the
/// whole host is served over https), and `no-store` when it sets a cookie.
#[derive(Clone)]
struct PageHeaders {
    csp: HeaderValue,
    hsts: Option<HeaderValue>,
}

impl PageHeaders {
    fn new(state: &AppState) -> Self {
        // No includeSubDomains: other hosts of the domain are not ours to decide.
        let hsts = (state.public_url.scheme() == "https").then(|| HeaderValue::from_static("max-age=31536000"));
        Self {
            csp: content_security_policy(state),
            hsts,
        }
    }

    fn apply(&self, mut response: Response) -> Response {
        let upstream = response.extensions().get::<Upstream>().is_some();
        let headers = response.headers_mut();
        if let Some(hsts) = &self.hsts {
            set_default(headers, header::STRICT_TRANSPORT_SECURITY, hsts);
        }
        if upstream {
            // A cookie (the session's renewed expiry, or the app's own) must
            // never be served from a shared cache to someone else.
            if headers.contains_key(header::SET_COOKIE) {
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
            return response;
        }
        set_default(headers, header::CACHE_CONTROL, &HeaderValue::from_static("no-store"));
        // Not `no-referrer`: browsers then send `Origin: null` on our own forms.
        set_default(
            headers,
            header::REFERRER_POLICY,
            &HeaderValue::from_static("same-origin"),
        );
        set_default(
            headers,
            header::X_CONTENT_TYPE_OPTIONS,
            &HeaderValue::from_static("nosniff"),
        );
        set_default(headers, header::CONTENT_SECURITY_POLICY, &self.csp);
        response
    }
}

fn set_default(headers: &mut axum::http::HeaderMap, name: HeaderName, value: &HeaderValue) {
    if let axum::http::header::Entry::Vacant(slot) = headers.entry(name) {
        slot.insert(value.clone());
    }
}

/// The CSP of every page. Forms may post here and to the provider only: the
/// Log out form's POST redirects to the provider's `end_session_endpoint`,
/// and browsers hold that redirect to `form-action` too.
fn content_security_policy(state: &AppState) -> HeaderValue {
    let ours = state.public_url.origin();
    let mut form_action = "'self'".to_owned();
    for listed in state.providers.iter() {
        match Url::parse(listed.provider.issuer()).map(|issuer| issuer.origin()) {
            // The development provider is served here: 'self' covers it.
            Ok(provider) if provider != ours && provider.is_tuple() => {
                let origin = provider.ascii_serialization();
                if !form_action.split(' ').any(|o| o == origin) {
                    form_action = format!("{form_action} {origin}");
                }
            }
            _ => {}
        }
    }
    let csp = format!(
        "default-src 'self'; img-src 'self' https: data:; form-action {form_action}; frame-ancestors 'none'; \
         base-uri 'none'"
    );
    HeaderValue::from_str(&csp).expect("an origin is a valid header value")
}
