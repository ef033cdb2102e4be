//! The back-channel calls of a login: code exchange and UserInfo.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use url::form_urlencoded::byte_serialize;

use super::discovery::{MAX_BODY, Metadata, describe, read_limited, timed};
use super::error::{ProviderError, Reason};
use crate::config::ClientConfig;
use crate::metrics::ProviderRequest;

/// The useful part of a token response (RFC 6749 §5.1, OIDC Core §3.1.3.3).
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub id_token: Option<String>,
    /// Seconds the access token lives (some providers send a string).
    #[serde(default, deserialize_with = "lenient_seconds")]
    pub expires_in: Option<u64>,
    /// The refresh token, when the provider issues one.
    #[serde(default)]
    pub refresh_token: Option<String>,
}

fn lenient_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// Profile claims from the UserInfo endpoint.
#[derive(Debug, Default, Deserialize)]
pub struct UserInfo {
    /// Must equal the ID token's `sub`.
    pub sub: String,
    /// `email`.
    pub email: Option<String>,
    /// `email_verified` (some providers send it as a string).
    #[serde(default, deserialize_with = "lenient_bool")]
    pub email_verified: Option<bool>,
    /// `name`.
    pub name: Option<String>,
    /// `picture`.
    pub picture: Option<String>,
    /// The other claims (groups, `hd`, …), for the access rules.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Bool(b) => Some(b),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    })
}

/// How we authenticate at the token endpoint: `client_secret_basic` unless
/// the provider only offers `client_secret_post`.
fn uses_basic_auth(metadata: &Metadata) -> bool {
    basic_among(metadata.token_endpoint_auth_methods_supported.as_deref())
}

/// Whether `client_secret_basic` is the method to use among `methods`
/// (absent: the default, `client_secret_basic`).
pub(super) fn basic_among(methods: Option<&[String]>) -> bool {
    match methods {
        None => true,
        Some(methods) => {
            methods.iter().any(|m| m == "client_secret_basic") || !methods.iter().any(|m| m == "client_secret_post")
        }
    }
}

/// The `Authorization` header of `client_secret_basic`. RFC 6749 §2.3.1:
/// both parts are form-urlencoded before base64.
pub(super) fn basic_authorization(client: &ClientConfig) -> String {
    let id: String = byte_serialize(client.client_id.as_bytes()).collect();
    let secret: String = byte_serialize(client.client_secret.expose().as_bytes()).collect();
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// Authenticates `request` as our client, as at the token endpoint:
/// `client_secret_basic`, or the credentials added to `form` when the
/// provider only offers `client_secret_post`.
pub(crate) fn with_client_auth<'a>(
    request: reqwest::RequestBuilder,
    metadata: &Metadata,
    client: &'a ClientConfig,
    form: &mut Vec<(&'a str, &'a str)>,
) -> reqwest::RequestBuilder {
    if uses_basic_auth(metadata) {
        request.header(reqwest::header::AUTHORIZATION, basic_authorization(client))
    } else {
        form.push(("client_id", &client.client_id));
        form.push(("client_secret", client.client_secret.expose()));
        request
    }
}

/// Exchanges an authorization code (with its PKCE verifier) for tokens.
pub(crate) async fn exchange_code(
    http: &reqwest::Client,
    metadata: &Metadata,
    client: &ClientConfig,
    redirect_uri: &str,
    code: &str,
    pkce_verifier: &str,
) -> Result<TokenResponse, ProviderError> {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", pkce_verifier),
    ];
    let exchange = async {
        let tokens = post_token(http, metadata, client, &form, Reason::CodeRejected).await?;
        if tokens.id_token.as_deref().is_none_or(str::is_empty) {
            return Err(ProviderError::new(
                Reason::IdTokenMissing,
                "the token response has no id_token",
            ));
        }
        Ok(tokens)
    };
    timed(ProviderRequest::Token, exchange).await
}

/// Redeems a refresh token (RFC 6749 §6). The answer may lack an ID token
/// and a new refresh token (then the old one stays valid). A refused
/// refresh token (`invalid_grant`: revoked, expired, the user disabled) is
/// [`Reason::RefreshRejected`].
pub(crate) async fn refresh(
    http: &reqwest::Client,
    metadata: &Metadata,
    client: &ClientConfig,
    refresh_token: &str,
) -> Result<TokenResponse, ProviderError> {
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh_token)];
    let refresh = post_token(http, metadata, client, &form, Reason::RefreshRejected);
    timed(ProviderRequest::Refresh, refresh).await
}

/// Posts `form` to the token endpoint with our client authentication;
/// a 400 `invalid_grant` is `refused`, every other error the provider's.
async fn post_token(
    http: &reqwest::Client,
    metadata: &Metadata,
    client: &ClientConfig,
    form: &[(&str, &str)],
    refused: Reason,
) -> Result<TokenResponse, ProviderError> {
    let mut form = form.to_vec();
    let request = http
        .post(metadata.token_endpoint.clone())
        .header(reqwest::header::ACCEPT, "application/json");
    let response = with_client_auth(request, metadata, client, &mut form)
        .form(&form)
        .send()
        .await
        .map_err(|e| ProviderError::new(Reason::TokenEndpoint, format!("token request: {}", describe(&e))))?;
    let status = response.status();
    let body = read_limited(response, MAX_BODY)
        .await
        .map_err(|e| ProviderError::new(Reason::TokenEndpoint, format!("token response: {e}")))?;
    if !status.is_success() {
        #[derive(Deserialize)]
        struct OAuthError {
            error: String,
        }
        let error = serde_json::from_slice::<OAuthError>(&body).ok().map(|e| e.error);
        // RFC 6749 §5.2: a 400 `invalid_grant` refuses the grant itself. Every
        // other error (`invalid_client`, `unauthorized_client`: our own
        // registration) is the provider's or ours, not the browser's.
        let reason = match (status, error.as_deref()) {
            (reqwest::StatusCode::BAD_REQUEST, Some("invalid_grant")) => refused,
            _ => Reason::TokenEndpoint,
        };
        let detail = match error {
            // Debug form: the provider's text, escaped for the log.
            Some(e) => format!("HTTP {status}, error {:?}", e.chars().take(64).collect::<String>()),
            None => format!("HTTP {status}"),
        };
        return Err(ProviderError::new(reason, detail));
    }
    let tokens: TokenResponse = serde_json::from_slice(&body)
        .map_err(|e| ProviderError::new(Reason::TokenResponseInvalid, format!("not a token response: {e}")))?;
    if !tokens.token_type.eq_ignore_ascii_case("bearer") {
        return Err(ProviderError::new(
            Reason::TokenResponseInvalid,
            "token_type is not Bearer",
        ));
    }
    Ok(tokens)
}

/// Fetches the UserInfo claims with the access token.
pub(crate) async fn userinfo(
    http: &reqwest::Client,
    endpoint: &url::Url,
    access_token: &str,
) -> Result<UserInfo, ProviderError> {
    timed(ProviderRequest::Userinfo, fetch_userinfo(http, endpoint, access_token)).await
}

async fn fetch_userinfo(
    http: &reqwest::Client,
    endpoint: &url::Url,
    access_token: &str,
) -> Result<UserInfo, ProviderError> {
    let response = http
        .get(endpoint.clone())
        .bearer_auth(access_token)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| ProviderError::new(Reason::UserinfoFailed, describe(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(ProviderError::new(Reason::UserinfoFailed, format!("HTTP {status}")));
    }
    let body = read_limited(response, MAX_BODY)
        .await
        .map_err(|e| ProviderError::new(Reason::UserinfoFailed, e))?;
    serde_json::from_slice(&body)
        .map_err(|e| ProviderError::new(Reason::UserinfoFailed, format!("not a JSON UserInfo: {e}")))
}
