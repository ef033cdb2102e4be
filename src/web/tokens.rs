//! Handlers' access to the signed-in user's tokens ([`UserTokens`]), and
//! what a request sees when a refresh ends its session or cannot be done.

use axum::extract::{FromRef, FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use tower_sessions::Session;

use super::audit::{self, Origin};
use super::guard::{unauthenticated, wants_json};
use super::{AppError, AppState};
use crate::refresh::{Ended, Outcome, TokenError};
use crate::secret::Secret;
use crate::tokens::StoredTokens;

/// The signed-in user's tokens, for a handler that calls APIs as the user:
///
/// ```ignore
/// async fn handler(auth: UserTokens) -> Result<String, TokenFailure> {
///     let token = auth.access_token().await?; // refreshed if it was due
///     // …
/// }
/// ```
///
/// The tokens never leave the server otherwise (no page, not
/// `/oauth2/userinfo`, no log).
pub struct UserTokens {
    state: AppState,
    session: Session,
    origin: Origin,
    /// Where a browser whose session ended is sent to sign in again;
    /// `None`: an API client (401).
    sign_in: Option<String>,
    /// The sign-in link an API client is given.
    login: String,
}

impl<S> FromRequestParts<S> for UserTokens
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let Some(session) = parts.extensions.get::<Session>().cloned() else {
            // Fail closed: without the session layer nobody is known.
            tracing::error!("UserTokens used on a route outside the oidc-gate router");
            return Err(AppError::NotFound.into_response());
        };
        let state = AppState::from_ref(state);
        // Inside a nested router `uri` has lost the mount point; the URI the
        // browser asked for is the one to come back to.
        let sign_in = (!wants_json(&parts.headers)).then(|| {
            let uri = parts.extensions.get::<OriginalUri>().map_or(&parts.uri, |o| &o.0);
            state.links.login_for(uri.path_and_query().map_or("/", |p| p.as_str()))
        });
        Ok(Self {
            origin: Origin::of(&parts.extensions),
            login: state.links.login.clone(),
            state,
            session,
            sign_in,
        })
    }
}

impl UserTokens {
    /// The access token, refreshed first when it is about to expire (or
    /// `SESSION_REFRESH_INTERVAL` has passed); `None` when there is none
    /// (nobody signed in, or it expired and the provider issued no
    /// refresh token).
    pub async fn access_token(&self) -> Result<Option<Secret>, TokenFailure> {
        let tokens = self.tokens().await?;
        Ok(tokens.and_then(|t| self.state.refresher.open_access(&t)))
    }

    /// The ID token, as the provider last issued it (at sign-in or a refresh).
    pub async fn id_token(&self) -> Result<Option<Secret>, TokenFailure> {
        let tokens = self.tokens().await?;
        Ok(tokens.and_then(|t| self.state.refresher.open_id(&t)))
    }

    async fn tokens(&self) -> Result<Option<StoredTokens>, TokenFailure> {
        match self.state.refresher.tokens(&self.session).await {
            Ok(tokens) => Ok(tokens),
            Err(outcome) => Err(failure(&self.origin, outcome, self.sign_in.clone(), self.login.clone())),
        }
    }
}

/// Why a handler got no token: the session ended (the browser is sent to
/// sign in, an API client gets 401), or the token could not be refreshed
/// (503) or the store failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenFailure {
    /// The refresh ended the session.
    #[error("the session ended")]
    SignedOut {
        /// Where to send a browser to sign in again; `None`: 401.
        sign_in: Option<String>,
        /// The sign-in link of the 401.
        login: String,
    },
    /// Another failure.
    #[error(transparent)]
    Failed(#[from] AppError),
}

impl IntoResponse for TokenFailure {
    fn into_response(self) -> Response {
        match self {
            TokenFailure::SignedOut { sign_in: Some(to), .. } => Redirect::to(&to).into_response(),
            TokenFailure::SignedOut { sign_in: None, login } => unauthenticated(&login),
            TokenFailure::Failed(e) => e.into_response(),
        }
    }
}

/// A failed token request, audited when it ended the session.
fn failure(origin: &Origin, outcome: Outcome, sign_in: Option<String>, login: String) -> TokenFailure {
    match outcome {
        Outcome::Ended(ended) => {
            session_ended(origin, ended);
            TokenFailure::SignedOut { sign_in, login }
        }
        Outcome::Failed(e) => TokenFailure::Failed(into_app_error(e)),
    }
}

/// The audit event of a session a refresh ended (another request's end
/// was counted by that request).
pub(crate) fn session_ended(origin: &Origin, ended: Ended) {
    if ended.reason == "ended" {
        return;
    }
    let (issuer, subject) = ended
        .login
        .as_ref()
        .map(|l| (l.issuer.as_str(), l.subject.as_str()))
        .unzip();
    audit::session_ended(origin, ended.reason, issuer, subject);
    crate::metrics::logout(crate::metrics::LogoutKind::Refresh);
}

/// The application error of a token failure that left the session.
pub(crate) fn into_app_error(e: TokenError) -> AppError {
    match e {
        TokenError::Unavailable(why) => AppError::TokenUnavailable(why),
        TokenError::Store(e) => AppError::Store(e),
        TokenError::Session(e) => AppError::Session(e),
    }
}
