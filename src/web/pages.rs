//! The pages: index, the protected secret page, stylesheet.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_sessions::Session;

use super::error::{AppError, render};
use super::redirect::Links;
use super::{AppState, guard};
use crate::session::{LOGIN_KEY, LoginData};
use crate::users::AuthSession;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/secret", get(secret))
        .route_layer(guard::RequireLoginLayer)
        .route("/", get(index))
        .route("/static/style.css", get(stylesheet))
}

/// What the index shows about a signed-in user.
pub struct Profile {
    name: String,
    email: Option<String>,
    csrf: String,
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage<'a> {
    user: Option<Profile>,
    links: &'a Links,
}

#[derive(Template)]
#[template(path = "secret.html")]
struct SecretPage<'a> {
    name: &'a str,
    links: &'a Links,
}

async fn index(State(state): State<AppState>, auth: AuthSession, session: Session) -> Result<Response, AppError> {
    let user = match &auth.user {
        Some(user) => {
            let login = session.get::<LoginData>(LOGIN_KEY).await?;
            Some(Profile {
                name: user.display_name().to_owned(),
                email: user.row.email.clone(),
                csrf: login.map(|l| l.csrf.expose().to_owned()).unwrap_or_default(),
            })
        }
        None => None,
    };
    Ok(render(
        StatusCode::OK,
        &IndexPage {
            user,
            links: &state.links,
        },
    ))
}

async fn secret(
    State(state): State<AppState>,
    auth: AuthSession,
    bearer: Option<axum::Extension<super::BearerUser>>,
) -> Response {
    // A session, or (`SKIP_JWT_BEARER_TOKENS`) a bearer token.
    let name = match (&auth.user, &bearer) {
        (Some(user), _) => user.display_name(),
        (None, Some(bearer)) => bearer.display_name(),
        (None, None) => "",
    };
    render(
        StatusCode::OK,
        &SecretPage {
            name,
            links: &state.links,
        },
    )
}

pub(crate) async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/style.css"),
    )
        .into_response()
}

/// The 404 page.
pub async fn not_found() -> AppError {
    AppError::NotFound
}
