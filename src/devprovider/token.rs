//! The token endpoint (authorization code grant with PKCE, client secret
//! authentication; the refresh grant is in `refresh`) and the userinfo endpoint. Errors follow RFC 6749 §5.2
//! and RFC 6750 §3.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::authorize::is_pkce_value;
use super::jws::{at_hash, random_token, s256};
use super::params::{Params, form_decode_component};
use super::refresh::RefreshGrant;
use super::{CodeEntry, CodeGrant, DevProvider, ID_TOKEN_TTL_SECS, REDEEMED_CODE_TTL, TokenGrant, User, unix_now};

/// An RFC 6749 §5.2 error; `reason` is logged, never sent.
#[derive(Debug)]
pub(super) struct TokenError {
    pub(super) error: &'static str,
    pub(super) reason: &'static str,
}

impl TokenError {
    pub(super) fn new(error: &'static str, reason: &'static str) -> Self {
        Self { error, reason }
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let status = match self.error {
            "invalid_client" => StatusCode::UNAUTHORIZED,
            "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        let mut response = (
            status,
            [(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")],
            Json(json!({ "error": self.error, "error_description": self.reason })),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"dev-provider\""),
            );
        }
        response
    }
}

/// `POST /token`
pub(super) async fn token(State(dev): State<DevProvider>, headers: HeaderMap, body: Bytes) -> Response {
    match exchange(&dev, &headers, &body) {
        Ok(response) => response,
        Err(err) => {
            tracing::info!(
                error = err.error,
                reason = err.reason,
                "dev provider: token request refused"
            );
            err.into_response()
        }
    }
}

/// Whether the request's body is form-urlencoded.
pub(super) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

fn exchange(dev: &DevProvider, headers: &HeaderMap, body: &[u8]) -> Result<Response, TokenError> {
    if !is_form(headers) {
        return Err(TokenError::new("invalid_request", "body must be form-urlencoded"));
    }
    let params = Params::parse(body).map_err(|_| TokenError::new("invalid_request", "duplicate parameter"))?;
    authenticate_client(dev, headers, &params)?;
    match params.get("grant_type") {
        Some("authorization_code") => {}
        Some("refresh_token") => return super::refresh::refresh(dev, &params),
        None => return Err(TokenError::new("invalid_request", "grant_type missing")),
        Some(_) => {
            return Err(TokenError::new(
                "unsupported_grant_type",
                "not authorization_code or refresh_token",
            ));
        }
    }
    let code = params
        .get("code")
        .ok_or(TokenError::new("invalid_request", "code missing"))?;

    // Taking the code consumes it, whatever happens next.
    let grant = match dev.codes().take(code) {
        Some(CodeEntry::Issued(grant)) => grant,
        Some(CodeEntry::Redeemed { access_token }) => {
            // RFC 6749 §4.1.2: a replayed code revokes what it produced.
            dev.tokens().remove(&access_token);
            tracing::warn!("dev provider: authorization code replayed, token revoked");
            return Err(TokenError::new("invalid_grant", "code already used"));
        }
        None => return Err(TokenError::new("invalid_grant", "code unknown or expired")),
    };
    check_grant(dev, &grant, &params)?;

    let ttl = dev.inner.access_ttl.load(Ordering::SeqCst);
    let access_token = super::introspect::issue(dev, &grant, ttl as i64)?;
    let id_token = id_token(dev, &grant, &access_token)?;
    dev.tokens().insert(
        access_token.clone(),
        TokenGrant {
            user: grant.user.clone(),
            scope: grant.scope.clone(),
            expires_at: unix_now() + ttl as i64,
        },
        Duration::from_secs(ttl),
    );
    // Refresh tokens without asking for `offline_access`: a development
    // provider should let every client try refresh.
    let refresh_token = dev.start_grant(RefreshGrant {
        id: random_token(16),
        client_id: grant.client_id.clone(),
        user: grant.user.clone(),
        sid: grant.sid.clone(),
        scope: grant.scope.clone(),
        auth_time: grant.auth_time,
    });
    dev.codes().insert(
        code.to_owned(),
        CodeEntry::Redeemed {
            access_token: access_token.clone(),
        },
        REDEEMED_CODE_TTL,
    );
    tracing::info!(sub = %grant.user.sub, "dev provider: tokens issued");
    let body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ttl,
        "id_token": id_token,
        "refresh_token": refresh_token,
        "scope": grant.scope,
    });
    Ok((
        [(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")],
        Json(body),
    )
        .into_response())
}

/// The code must be redeemed by its client, with its redirect URI and the
/// PKCE verifier matching its challenge.
fn check_grant(dev: &DevProvider, grant: &CodeGrant, params: &Params) -> Result<(), TokenError> {
    if grant.client_id != dev.client().client_id {
        return Err(TokenError::new("invalid_grant", "code issued to another client"));
    }
    if params.get("redirect_uri") != Some(grant.redirect_uri.as_str()) {
        return Err(TokenError::new("invalid_grant", "redirect_uri mismatch"));
    }
    let verifier = params
        .get("code_verifier")
        .filter(|v| is_pkce_value(v))
        .ok_or(TokenError::new("invalid_grant", "code_verifier missing or malformed"))?;
    let matches: bool = s256(verifier).as_bytes().ct_eq(grant.code_challenge.as_bytes()).into();
    if !matches {
        return Err(TokenError::new("invalid_grant", "code_verifier mismatch"));
    }
    Ok(())
}

fn id_token(dev: &DevProvider, grant: &CodeGrant, access_token: &str) -> Result<String, TokenError> {
    let signed_in = SignedIn {
        client_id: &grant.client_id,
        user: &grant.user,
        sid: &grant.sid,
        auth_time: grant.auth_time,
    };
    sign_id_token(dev, &signed_in, grant.nonce.as_deref(), access_token)
}

/// The sign-in an ID token is about.
pub(super) struct SignedIn<'a> {
    pub(super) client_id: &'a str,
    pub(super) user: &'a User,
    pub(super) sid: &'a str,
    pub(super) auth_time: i64,
}

/// Signs an ID token about `signed_in` for `access_token` (with `nonce`,
/// at the code exchange; without, at a refresh, OIDC Core §12.2).
pub(super) fn sign_id_token(
    dev: &DevProvider,
    signed_in: &SignedIn<'_>,
    nonce: Option<&str>,
    access_token: &str,
) -> Result<String, TokenError> {
    let now = unix_now();
    let mut claims = json!({
        "iss": dev.issuer_str(),
        "sub": signed_in.user.sub,
        "aud": signed_in.client_id,
        "exp": now + ID_TOKEN_TTL_SECS,
        "iat": now,
        "auth_time": signed_in.auth_time,
        "sid": signed_in.sid,
        "at_hash": at_hash(access_token),
        "name": signed_in.user.name,
        "email": signed_in.user.email,
        "email_verified": true,
    });
    if let Some(nonce) = nonce {
        claims["nonce"] = json!(nonce);
    }
    if let Some(acr) = &signed_in.user.acr {
        claims["acr"] = json!(acr);
    }
    dev.add_claims_of(&signed_in.user.sub, &mut claims);
    dev.inner.key.sign(&claims).map_err(|err| {
        tracing::error!(%err, "dev provider: cannot sign ID token");
        TokenError::new("server_error", "signing failed")
    })
}

/// Client authentication by `client_secret_basic` or `client_secret_post`,
/// exactly one of them (RFC 6749 §2.3.1).
pub(super) fn authenticate_client(dev: &DevProvider, headers: &HeaderMap, params: &Params) -> Result<(), TokenError> {
    let (client_id, secret) = match (headers.get(header::AUTHORIZATION), params.get("client_secret")) {
        (Some(_), Some(_)) => {
            return Err(TokenError::new("invalid_request", "two client authentication methods"));
        }
        (Some(value), None) => {
            let (id, secret) = value
                .to_str()
                .ok()
                .and_then(decode_basic)
                .ok_or(TokenError::new("invalid_client", "malformed Basic credentials"))?;
            if params.get("client_id").is_some_and(|body_id| body_id != id) {
                return Err(TokenError::new("invalid_client", "client_id differs from Basic"));
            }
            (id, secret)
        }
        (None, Some(secret)) => {
            let id = params
                .get("client_id")
                .ok_or(TokenError::new("invalid_client", "client_id missing"))?;
            (id.to_owned(), secret.to_owned())
        }
        (None, None) => {
            return Err(TokenError::new("invalid_client", "no client authentication"));
        }
    };
    let client = dev.client();
    // Hashing first makes the comparison independent of the secret's length.
    let secret_ok: bool = Sha256::digest(secret.as_bytes())
        .ct_eq(&Sha256::digest(client.client_secret.as_bytes()))
        .into();
    if client_id == client.client_id && secret_ok {
        Ok(())
    } else {
        Err(TokenError::new("invalid_client", "unknown client or wrong secret"))
    }
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))` → (id, secret).
fn decode_basic(value: &str) -> Option<(String, String)> {
    let (scheme, credentials) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(credentials.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode_component(id)?, form_decode_component(secret)?))
}

/// `GET` or `POST /userinfo` with `Authorization: Bearer <access token>`.
pub(super) async fn userinfo(State(dev): State<DevProvider>, headers: HeaderMap) -> Response {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return bearer_error(StatusCode::UNAUTHORIZED, None);
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(token) = token else {
        return bearer_error(StatusCode::BAD_REQUEST, Some("invalid_request"));
    };
    let user = dev.tokens().get(token).map(|grant| grant.user.clone());
    let Some(user) = user else {
        tracing::info!("dev provider: userinfo with unknown or expired token");
        return bearer_error(StatusCode::UNAUTHORIZED, Some("invalid_token"));
    };
    let mut body = json!({
        "sub": user.sub,
        "name": user.name,
        "email": user.email,
        "email_verified": true,
    });
    dev.add_claims_of(&user.sub, &mut body);
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// An RFC 6750 §3 challenge.
fn bearer_error(status: StatusCode, error: Option<&'static str>) -> Response {
    let challenge = match error {
        Some("invalid_token") => "Bearer error=\"invalid_token\"",
        Some(_) => "Bearer error=\"invalid_request\"",
        None => "Bearer",
    };
    let body = error.map_or_else(|| json!({}), |error| json!({ "error": error }));
    (status, [(header::WWW_AUTHENTICATE, challenge)], Json(body)).into_response()
}
