//! Token revocation (RFC 7009): at logout, the refresh and access tokens of
//! the session are revoked at the provider's `revocation_endpoint`, with the
//! client's authentication of the token endpoint.

use reqwest::header;
use serde::Deserialize;

use super::Provider;
use super::discovery::{describe, read_limited, timed};
use super::error::{ProviderError, Reason};
use super::token::{basic_among, basic_authorization};
use crate::metrics::ProviderRequest;

/// Largest error body read from the revocation endpoint (only its `error` is used).
const MAX_ERROR_BODY: usize = 16 * 1024;

/// Which token is revoked: sent as `token_type_hint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenHint {
    /// `access_token`.
    Access,
    /// `refresh_token`.
    Refresh,
}

impl TokenHint {
    /// The hint as sent (RFC 7009 §2.1).
    pub fn as_str(self) -> &'static str {
        match self {
            TokenHint::Access => "access_token",
            TokenHint::Refresh => "refresh_token",
        }
    }
}

impl Provider {
    /// Revokes `token` at the provider's revocation endpoint. `Ok(false)`
    /// when the provider advertises none (nothing is sent). Bounded by the
    /// HTTP timeout; the error never contains the token.
    pub async fn revoke(&self, token: &str, hint: TokenHint) -> Result<bool, ProviderError> {
        let snapshot = self.snapshot().await?;
        let Some(endpoint) = snapshot.metadata.revocation_endpoint.clone() else {
            return Ok(false);
        };
        let methods = snapshot
            .metadata
            .revocation_endpoint_auth_methods_supported
            .as_deref()
            .or(snapshot.metadata.token_endpoint_auth_methods_supported.as_deref());
        let client = &self.inner.settings.client;
        let mut form = vec![("token", token), ("token_type_hint", hint.as_str())];
        let mut request = self
            .inner
            .http
            .post(endpoint)
            .header(header::ACCEPT, "application/json");
        if basic_among(methods) {
            request = request.header(header::AUTHORIZATION, basic_authorization(client));
        } else {
            form.push(("client_id", &client.client_id));
            form.push(("client_secret", client.client_secret.expose()));
        }
        timed(ProviderRequest::Revocation, send(request.form(&form))).await?;
        Ok(true)
    }
}

async fn send(request: reqwest::RequestBuilder) -> Result<(), ProviderError> {
    let failed = |detail: String| ProviderError::new(Reason::RevocationFailed, detail);
    let response = request
        .send()
        .await
        .map_err(|e| failed(format!("revocation request: {}", describe(&e))))?;
    let status = response.status();
    // RFC 7009 §2.2: 200 whether or not the token was valid.
    if status.is_success() {
        return Ok(());
    }
    #[derive(Deserialize)]
    struct OAuthError {
        error: String,
    }
    let error = read_limited(response, MAX_ERROR_BODY)
        .await
        .ok()
        .and_then(|body| serde_json::from_slice::<OAuthError>(&body).ok())
        .map(|e| e.error);
    Err(failed(match error {
        Some(e) => format!("HTTP {status}, error {:?}", e.chars().take(64).collect::<String>()),
        None => format!("HTTP {status}"),
    }))
}
