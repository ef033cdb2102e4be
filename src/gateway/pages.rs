//! The gateway's own pages and answers: the sign-out confirmation, the
//! signed-out page and `/oauth2/userinfo`.

use askama::Template;
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use tower_sessions::Session;

use super::GatewayState;
use crate::session::{LOGIN_KEY, LoginData};
use crate::users::AuthSession;
use crate::web::auth::param;
use crate::web::guard::unauthenticated;
use crate::web::ratelimit::{Limited, class};
use crate::web::{self, AppError, Links, render};
use url::form_urlencoded;

/// "Sign out?" with its form (a GET never signs out: a link or an image
/// on another site must not end the session).
#[derive(Template)]
#[template(path = "sign_out.html")]
struct SignOutPage<'a> {
    who: &'a str,
    csrf: &'a str,
    rd: Option<&'a str>,
    links: &'a Links,
}

/// oauth2-proxy's sign-in page: one button that starts the sign-in.
#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage<'a> {
    start_url: &'a str,
    links: &'a Links,
}

/// After sign-out, when there is nowhere else to go.
#[derive(Template)]
#[template(path = "signed_out.html")]
struct SignedOutPage<'a> {
    links: &'a Links,
}

/// `GET /oauth2/sign_out[?rd=]`: signed in, the confirmation form; signed
/// out, on to `rd` (or the provider's `state`, which carries it back from
/// RP-initiated logout) when it is allowed, else the signed-out page.
pub(super) async fn sign_out(
    State(gw): State<GatewayState>,
    auth: AuthSession,
    session: Session,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let app = gw.app;
    let query = query.as_deref();
    let rd = param(query, "rd").or_else(|| param(query, "state"));
    let login = match &auth.user {
        Some(_) => session.get::<LoginData>(LOGIN_KEY).await?,
        None => None,
    };
    let (Some(user), Some(login)) = (&auth.user, login) else {
        return Ok(match rd {
            Some(rd) => Redirect::to(&app.redirects.safe(Some(&rd))).into_response(),
            None => render(StatusCode::OK, &SignedOutPage { links: &app.links }),
        });
    };
    let rd = rd.map(|rd| app.redirects.safe(Some(&rd)));
    Ok(render(
        StatusCode::OK,
        &SignOutPage {
            who: user.display_name(),
            csrf: login.csrf.expose(),
            rd: rd.as_deref(),
            links: &app.links,
        },
    ))
}

/// Where to come back after sign-in: `rd`, else oauth2-proxy's
/// `X-Auth-Request-Redirect` (its nginx recipe sets it to the request URI).
fn return_to(query: Option<&str>, headers: &HeaderMap) -> Option<String> {
    param(query, "rd").or_else(|| {
        headers
            .get("x-auth-request-redirect")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    })
}

/// `GET /oauth2/start`: the app's sign-in start, with `rd` or
/// `X-Auth-Request-Redirect` saying where to come back.
pub(super) async fn start(
    limited: Limited<class::Login>,
    State(gw): State<GatewayState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let query = match (param(query.as_deref(), "rd"), return_to(None, &headers)) {
        // Added to the rest (the chooser's `provider` among it).
        (None, Some(rd)) => {
            let mut query = form_urlencoded::Serializer::new(query.unwrap_or_default());
            Some(query.append_pair("rd", &rd).finish())
        }
        _ => query,
    };
    web::auth::login(limited, State(gw.app), headers, RawQuery(query)).await
}

/// `GET /oauth2/sign_in`: a page with a "Sign in" button, which
/// oauth2-proxy's nginx recipe shows instead of a 401
/// (`error_page 401 =403 /oauth2/sign_in`).
pub(super) async fn sign_in(State(gw): State<GatewayState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let app = gw.app;
    let target = app.redirects.safe(return_to(query.as_deref(), &headers).as_deref());
    let start_url = app.links.login_for(&target);
    render(
        StatusCode::OK,
        &SignInPage {
            start_url: &start_url,
            links: &app.links,
        },
    )
}

/// `/oauth2/userinfo`: who is signed in, as JSON (never a token).
pub(super) async fn userinfo(State(gw): State<GatewayState>, auth: AuthSession, session: Session) -> Response {
    match gw.gateway.identity(&gw.app, &auth, &session, None, false).await {
        Ok(Some((identity, _))) => Json(serde_json::json!({
            "user": identity.user,
            "email": identity.email,
            "groups": identity.groups,
            "preferred_username": identity.preferred_username,
        }))
        .into_response(),
        Ok(None) => unauthenticated(&gw.app.links.login),
        Err(e) => e.into_response(),
    }
}
