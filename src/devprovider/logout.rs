//! RP-initiated logout (`/end_session`). The development provider keeps no
//! session of its own, so there is nothing to end: it only sends the browser
//! back to a registered URI, or says the user is signed out.

use axum::extract::{RawQuery, State};
use axum::response::Response;

use super::pages;
use super::params::{DUPLICATE, Params};
use super::{DevProvider, MAX_STATE_LEN};

/// `GET /end_session`: RP-initiated logout. We hold no session, so there is
/// nothing to end; `id_token_hint` is accepted and ignored.
pub(super) async fn end_session(State(dev): State<DevProvider>, RawQuery(query): RawQuery) -> Response {
    let params = match Params::parse(query.unwrap_or_default().as_bytes()) {
        Ok(params) => params,
        Err(_) => return pages::error_page(DUPLICATE),
    };
    let client = dev.client();
    if params.get("client_id").is_some_and(|id| id != client.client_id) {
        return pages::error_page("The client_id is not registered with this provider.");
    }
    let Some(target) = params.get("post_logout_redirect_uri") else {
        tracing::info!("dev provider: signed out");
        return pages::signed_out();
    };
    if !client.post_logout_redirect_uris.iter().any(|r| r == target) {
        return pages::error_page(
            "The post_logout_redirect_uri is not registered for this client (exact match required).",
        );
    }
    let state = params.get("state");
    if state.is_some_and(|s| s.len() > MAX_STATE_LEN) {
        return pages::error_page("The state parameter is too long.");
    }
    tracing::info!("dev provider: signed out, returning to client");
    let pairs: Vec<(&str, &str)> = state.map(|s| ("state", s)).into_iter().collect();
    pages::see_other(target, &pairs)
}
