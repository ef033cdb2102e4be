//! Several providers: the chooser page `/login` shows (one button per
//! provider, each `/login?provider=ID`), and the provider a callback is
//! bound to: the one its login was sent to, whose redirect URI it came
//! back to. A code is never redeemed at another provider (mix-up attack).

use askama::Template;
use axum::http::StatusCode;
use axum::response::Response;
use url::form_urlencoded;

use super::AppState;
use super::error::{AppError, render};
use super::pending::PendingLogin;
use super::redirect::Links;
use crate::provider::Listed;

/// The chooser page.
#[derive(Template)]
#[template(path = "choose.html")]
struct ChooserPage<'a> {
    choices: Vec<Choice<'a>>,
    links: &'a Links,
}

/// One button of the chooser.
struct Choice<'a> {
    name: &'a str,
    url: String,
}

/// The chooser: a sign-in link per provider, each coming back to `next`
/// (and asking for the provider's account chooser with `prompt`).
pub(super) fn page(state: &AppState, next: &str, prompt: Option<&str>) -> Response {
    let links = &state.links;
    let choices = state
        .providers
        .iter()
        .map(|p| {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.append_pair("provider", &p.id);
            if next != "/" {
                query.append_pair(links.return_param, next);
            }
            if let Some(prompt) = prompt {
                query.append_pair("prompt", prompt);
            }
            Choice {
                name: &p.name,
                url: format!("{}?{}", links.login, query.finish()),
            }
        })
        .collect();
    render(StatusCode::OK, &ChooserPage { choices, links })
}

/// The provider `pending` was sent to, when the callback came back to its
/// redirect URI (`at`: the provider id of `/callback/ID`; `None`: the
/// one-provider `/callback`).
pub(super) fn bound<'a>(state: &'a AppState, pending: &PendingLogin, at: Option<&str>) -> Result<&'a Listed, AppError> {
    let providers = &state.providers;
    let listed = match pending.provider.as_str() {
        // A login started before providers had ids: the only one.
        "" if !providers.several() => Some(providers.first()),
        id => providers.by_id(id),
    };
    let mismatch = AppError::Callback {
        reason: "provider_mismatch",
        detail: "the callback came back to another provider's redirect URI than its login was sent to",
    };
    let Some(listed) = listed else { return Err(mismatch) };
    let expected = providers.several().then_some(listed.id.as_str());
    if at != expected {
        return Err(mismatch);
    }
    Ok(listed)
}
