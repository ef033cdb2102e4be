//! PLACEHOLDER until the `proxy` branch lands: the header policy's interface.

use axum::http::HeaderMap;

use crate::secret::Secret;

/// Who the upstream is told the user is.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// The subject.
    pub user: String,
    /// Email.
    pub email: Option<String>,
    /// preferred_username.
    pub preferred_username: Option<String>,
    /// Groups.
    pub groups: Vec<String>,
    /// Access token.
    pub access_token: Option<Secret>,
    /// ID token.
    pub id_token: Option<Secret>,
}

/// What is passed on.
#[derive(Debug, Clone, Default)]
pub struct HeaderPolicy {
    /// X-Forwarded-Access-Token.
    pub pass_access_token: bool,
    /// Authorization: Bearer ID token.
    pub pass_authorization_header: bool,
    /// Host passed on.
    pub pass_host_header: bool,
}

/// The forward-auth answer's headers.
pub fn auth_response_headers(identity: &Identity, pass_access_token: bool) -> HeaderMap {
    let _ = (identity, pass_access_token);
    HeaderMap::new()
}
