//! Forward auth (`/oauth2/auth`): nginx `auth_request`, Caddy
//! `forward_auth` and Traefik `ForwardAuth` ask whether a request may pass;
//! the web server then serves the app itself.
//!
//! The original request is read from `X-Original-URI` (nginx's recipe) or
//! `X-Forwarded-Method`/`-Proto`/`-Host`/`-Uri` (Traefik, Caddy). Answers:
//! `202` with the `X-Auth-Request-*` identity headers; `401` when nobody is
//! signed in; `403` when a rule refuses. nginx turns any other answer into
//! a `500`, so behind it (`X-Original-URI` present) the answer without a
//! session is always `401` (its `error_page 401` starts the sign-in); behind
//! Traefik and Caddy, which pass the answer to the browser, a navigation
//! without a session gets a `302` to the sign-in instead.

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use tower_sessions::Session;
use url::Url;

use super::headers::auth_response_headers;
use super::paths::RequestPath;
use super::{GatewayState, is_navigation};
use crate::users::AuthSession;
use crate::web::access::{Scope, refused};

/// What the web server in front says the original request was.
struct Original {
    method: Method,
    /// Path and query.
    uri: String,
    /// `X-Original-URI` was sent: nginx.
    nginx: bool,
    /// The absolute URL, when the proxy named its scheme and host.
    url: Option<String>,
}

impl Original {
    fn from_headers(headers: &HeaderMap) -> Self {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let nginx_uri = text("x-original-uri");
        let uri = nginx_uri
            .or_else(|| text("x-forwarded-uri"))
            .filter(|u| u.starts_with('/'))
            .unwrap_or("/")
            .to_owned();
        let method = text("x-original-method")
            .or_else(|| text("x-forwarded-method"))
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .unwrap_or(Method::GET);
        let url = match (text("x-forwarded-proto"), text("x-forwarded-host")) {
            (Some(proto @ ("http" | "https")), Some(host)) if !host.is_empty() => {
                Url::parse(&format!("{proto}://{host}{uri}")).ok().map(String::from)
            }
            _ => None,
        };
        Self {
            method,
            uri,
            nginx: nginx_uri.is_some(),
            url,
        }
    }

    fn path(&self) -> &str {
        self.uri.split(['?', '#']).next().unwrap_or("/")
    }
}

/// `/oauth2/auth`.
pub(super) async fn auth(
    State(gw): State<GatewayState>,
    auth: AuthSession,
    session: Session,
    headers: HeaderMap,
) -> Response {
    let GatewayState { app, gateway } = gw;
    let original = Original::from_headers(&headers);
    // A path that is no path is refused: nginx would turn a 400 into a 500.
    let Ok(path) = RequestPath::parse(original.path()) else {
        tracing::info!(reason = "bad_path", "forward auth refused");
        return StatusCode::FORBIDDEN.into_response();
    };
    let identity = match gateway.identity(&app, &auth, &session).await {
        Ok(identity) => identity,
        Err(e) => return e.into_response(),
    };
    let public = gateway.0.paths.judge(&path).public;
    let Some((identity, claims)) = identity else {
        if public {
            return StatusCode::ACCEPTED.into_response();
        }
        let navigation = is_navigation(&original.method, &headers);
        if !original.nginx && navigation {
            // Traefik and Caddy pass this answer to the browser.
            let target = original.url.as_deref().unwrap_or(&original.uri);
            let start = gateway.start_url(&app, target);
            let absolute = gateway.0.public_url.join(&start).map(String::from).unwrap_or(start);
            return Redirect::to(&absolute).into_response();
        }
        return StatusCode::UNAUTHORIZED.into_response();
    };
    if !public && let Err(refusal) = gateway.admits(&path, &claims) {
        tracing::info!(reason = refusal.code(), "forward auth: path refused");
        let json = !is_navigation(&original.method, &headers);
        return refused(&app, &claims, refusal, &original.uri, Scope::Path, json);
    }
    let headers = auth_response_headers(&identity, gateway.0.pass_access_token);
    (StatusCode::ACCEPTED, headers).into_response()
}
