//! Forward auth (`/oauth2/auth`): nginx `auth_request`, Caddy
//! `forward_auth` and Traefik `ForwardAuth` ask whether a request may pass;
//! the web server then serves the app itself.
//!
//! The original request is read from `X-Original-URI` (nginx's recipe),
//! `X-Original-URL` (ingress-nginx) or `X-Forwarded-Uri` (oauth2-proxy's
//! nginx recipe, Traefik, Caddy); when several are present they must agree.
//! Answers: `202` with the `X-Auth-Request-*` identity headers; `401` when
//! nobody is signed in; `403` when a rule refuses. With
//! `SKIP_JWT_BEARER_TOKENS`, the request's bearer token (nginx passes the
//! client's `Authorization` to the subrequest) stands in for a session,
//! and a refused token is `401` with RFC 6750's challenge. nginx turns any other
//! answer into a `500`, so the answer without a session is `401` (its
//! `error_page 401` starts the sign-in), except behind Traefik and Caddy
//! (`X-Forwarded-Method` sent, no `X-Original-*`), which pass the answer to
//! the browser: there a navigation gets a redirect to the sign-in instead.

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
use crate::web::audit::{self, Origin};
use crate::web::step_up;

/// What the web server in front says the original request was.
struct Original {
    method: Method,
    /// Path and query.
    uri: String,
    /// The server turns answers other than 2xx/401/403 into errors (nginx,
    /// ingress-nginx): no redirect for it.
    no_redirects: bool,
    /// The absolute URL, when the proxy named its scheme and host.
    url: Option<String>,
}

/// The web servers in front disagree on the original request's path: a
/// client added one of the headers, hoping the gate judges another path
/// than the one served.
struct Conflict;

impl Original {
    /// Reads the original request. nginx's recipes set `X-Original-URI` (or
    /// oauth2-proxy's, `X-Forwarded-Uri`), ingress-nginx `X-Original-URL`,
    /// Traefik and Caddy `X-Forwarded-Method` and `X-Forwarded-Uri`. Each
    /// server passes on the headers it does not set itself, so a client can
    /// add the others: every one present must name the same path and query.
    fn from_headers(headers: &HeaderMap) -> Result<Self, Conflict> {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let mut named: Vec<String> = Vec::new();
        for name in ["x-original-uri", "x-forwarded-uri"] {
            for value in headers.get_all(name) {
                named.push(value.to_str().map_err(|_| Conflict)?.trim().to_owned());
            }
        }
        for value in headers.get_all("x-original-url") {
            let url = Url::parse(value.to_str().map_err(|_| Conflict)?.trim()).map_err(|_| Conflict)?;
            let mut uri = url.path().to_owned();
            if let Some(q) = url.query() {
                uri.push('?');
                uri.push_str(q);
            }
            named.push(uri);
        }
        if named.windows(2).any(|w| w[0] != w[1]) {
            return Err(Conflict);
        }
        let uri = named
            .into_iter()
            .next()
            .filter(|u| u.starts_with('/'))
            .unwrap_or_else(|| "/".to_owned());
        let method = text("x-forwarded-method")
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .unwrap_or(Method::GET);
        // Only Traefik and Caddy (which always send the method) pass a
        // redirect to the browser; nginx's recipes never send it.
        let no_redirects = headers.contains_key("x-original-uri")
            || headers.contains_key("x-original-url")
            || !headers.contains_key("x-forwarded-method");
        let url = match (text("x-forwarded-proto"), text("x-forwarded-host")) {
            (Some(proto @ ("http" | "https")), Some(host)) if !host.is_empty() => {
                Url::parse(&format!("{proto}://{host}{uri}")).ok().map(String::from)
            }
            _ => None,
        };
        Ok(Self {
            method,
            uri,
            no_redirects,
            url,
        })
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
    origin: Origin,
    headers: HeaderMap,
) -> Response {
    let GatewayState { app, gateway } = gw;
    // Refusals are 403s: nginx would turn a 400 into a 500.
    let Ok(original) = Original::from_headers(&headers) else {
        tracing::info!(reason = "original_uri_conflict", "forward auth refused");
        return StatusCode::FORBIDDEN.into_response();
    };
    let Ok(path) = RequestPath::parse(original.path()) else {
        tracing::info!(reason = "bad_path", "forward auth refused");
        return StatusCode::FORBIDDEN.into_response();
    };
    let verdict = gateway.0.paths.judge(&path);
    let judged = !verdict.rules.is_empty();
    let mut identity = match gateway.identity(&app, &auth, &session, Some(&origin), judged).await {
        Ok(identity) => identity,
        Err(e) => return e.into_response(),
    };
    let public = verdict.public;
    let mut by_bearer = false;
    if !public && identity.is_none() {
        match gateway.bearer_identity(&app, &headers, &origin).await {
            Ok(found) => (by_bearer, identity) = (found.is_some(), found),
            Err(response) => return response,
        }
    }
    let Some((identity, claims)) = identity else {
        if public {
            return StatusCode::ACCEPTED.into_response();
        }
        let navigation = is_navigation(&original.method, &headers);
        if !original.no_redirects && navigation {
            // Traefik and Caddy pass this answer to the browser.
            let target = original.url.as_deref().unwrap_or(&original.uri);
            let start = app.links.login_for(target);
            let absolute = gateway.0.public_url.join(&start).map(String::from).unwrap_or(start);
            return Redirect::to(&absolute).into_response();
        }
        return StatusCode::UNAUTHORIZED.into_response();
    };
    if !public && let Err(refusal) = verdict.admits(&claims) {
        audit::path_refused(&origin, refusal.code(), &identity.user, &path.forwarded);
        let json = by_bearer || !is_navigation(&original.method, &headers);
        return refused(&app, &claims, refusal, &original.uri, Scope::Path, json);
    }
    if !public {
        match step_up::unmet(&app, &session, &verdict, by_bearer).await {
            Ok(None) => {}
            Ok(Some(step_up)) => {
                tracing::info!(reason = "step_up_required", "forward auth: path needs a fresh sign-in");
                let navigation = is_navigation(&original.method, &headers);
                if !original.no_redirects && navigation && !by_bearer {
                    // As for a signed-out browser: Traefik and Caddy pass this on.
                    let target = original.url.as_deref().unwrap_or(&original.uri);
                    let start = app.links.login_for(target);
                    let absolute = gateway.0.public_url.join(&start).map(String::from).unwrap_or(start);
                    return Redirect::to(&absolute).into_response();
                }
                return step_up::insufficient(&app.links.login, &step_up);
            }
            Err(e) => return e.into_response(),
        }
    }
    let headers = auth_response_headers(&identity, gateway.0.pass_access_token);
    (StatusCode::ACCEPTED, headers).into_response()
}
