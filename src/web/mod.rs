//! HTTP routes and pages. Each feature module has its own router; they are
//! merged here with the session, login and security layers.

mod auth;
mod backchannel;
mod error;
mod guard;
mod pages;
mod pending;
pub mod redirect;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use tower::ServiceBuilder;
use tower::util::MapResponseLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use url::Url;

pub use error::AppError;
pub use guard::{RequireLogin, RequireLoginLayer};
pub use pending::PendingLogins;

use crate::clock::Clock;
use crate::provider::Provider;
use crate::session::{self, CookieSettings, Lifetimes};
use crate::store::Store;
use crate::users::Backend;

/// Shared state of every handler: one reference count to clone, since axum
/// and the middleware clone it for every request.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] shares.
pub struct Shared {
    /// The OpenID provider.
    pub provider: Provider,
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
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// The state.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }

    /// `PUBLIC_URL/` — the post-logout landing page.
    pub fn home_url(&self) -> Url {
        let mut url = self.public_url.clone();
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        url
    }
}

/// The complete router: pages, login routes, `extra` routes, sessions, and
/// security headers.
pub fn router(state: AppState, cookie: &CookieSettings, extra: Router<AppState>) -> Router {
    let backend = Backend::new(state.store.clone());
    let auth_manager =
        tower::layer::layer_fn(move |inner| axum_login::AuthManager::new(inner, backend.clone(), session::AUTH_KEY));
    let sessions = session::layer(state.store.session_backend(), cookie, state.lifetimes);
    // One `layer` call: each `Router::layer` boxes every route once more,
    // and the boxes are cloned and dropped on every request. Outermost first.
    let layers = ServiceBuilder::new()
        .layer(TraceLayer::new_for_http().make_span_with(guard::request_span))
        .layer(default_header(header::CACHE_CONTROL, "no-store"))
        // Not `no-referrer`: browsers then send `Origin: null` on our own forms.
        .layer(default_header(header::REFERRER_POLICY, "same-origin"))
        .layer(default_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(default_header(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' https: data:; frame-ancestors 'none'; base-uri 'none'",
        ))
        .layer(MapResponseLayer::new(guard::render_bare_errors))
        .layer(sessions)
        .layer(guard::EnforceLifetimesLayer(state.clone()))
        .layer(auth_manager);
    Router::new()
        .merge(pages::router())
        .merge(auth::router())
        .merge(backchannel::router())
        .merge(extra)
        .fallback(pages::not_found)
        .layer(layers)
        .with_state(state)
}

/// A response header set unless the handler set its own.
fn default_header(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}
