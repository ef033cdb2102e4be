//! The fake provider's endpoints. The authorization endpoint renders no page:
//! it redirects straight back with a code. The token endpoint checks what a
//! real provider checks (client authentication as advertised, code,
//! redirect URI, PKCE) before answering as the behaviour says.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use url::Url;
use url::form_urlencoded;

use super::behavior::{ClientAuth, Pkce, TokenReply};
use super::{Grant, Shared, jose};

type Op = State<Arc<Shared>>;

/// The provider's routes. Endpoint paths are deliberately not the usual
/// ones: a relying party must take them from discovery.
pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/op/keys/jwks.json", get(jwks))
        .route("/op/keys/other.json", get(jwks))
        .route("/op/auth", get(authorize))
        .route("/op/token", axum::routing::post(token))
        .route("/op/me", get(userinfo).post(userinfo))
        .route("/op/session/end", get(end_session))
        // Served always, advertised only when a test patches
        // `revocation_endpoint` into discovery.
        .route("/op/revoke", axum::routing::post(revoke))
        // Likewise `introspection_endpoint`: answers `Behavior::introspection`.
        .route("/op/introspect", axum::routing::post(introspect))
        .with_state(shared)
}

fn params(raw: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(raw).into_owned().collect()
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({ "error": error })),
    )
        .into_response()
}

impl Shared {
    fn discovery_document(&self) -> Value {
        let i = &self.issuer;
        let mut doc = json!({
            "issuer": i,
            "authorization_endpoint": format!("{i}/op/auth"),
            "token_endpoint": format!("{i}/op/token"),
            "userinfo_endpoint": format!("{i}/op/me"),
            "jwks_uri": format!("{i}/op/keys/jwks.json"),
            "end_session_endpoint": format!("{i}/op/session/end"),
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "scopes_supported": ["openid", "email", "profile"],
            "id_token_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "sid", "name", "email", "email_verified"],
            "backchannel_logout_supported": true,
            "backchannel_logout_session_supported": true,
        });
        jose::merge(&mut doc, &self.behavior.lock().unwrap().discovery_patch);
        doc
    }

    fn record(&self, change: impl FnOnce(&mut super::Log)) {
        self.log.send_modify(change);
    }
}

async fn discovery(State(op): Op) -> Response {
    op.record(|l| l.discovery += 1);
    {
        let mut b = op.behavior.lock().unwrap();
        if b.discovery_failures > 0 {
            b.discovery_failures -= 1;
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    }
    axum::Json(op.discovery_document()).into_response()
}

async fn jwks(State(op): Op, OriginalUri(uri): OriginalUri) -> Response {
    op.record(|l| {
        l.jwks += 1;
        l.jwks_paths.push(uri.path().to_owned());
    });
    let (hold, keys) = {
        let b = op.behavior.lock().unwrap();
        let keys: Vec<Value> = b.jwks.iter().map(|k| jose::jwk(*k, b.jwks_kids)).collect();
        (b.jwks_hold_until_tokens, keys)
    };
    if let Some(n) = hold {
        let mut rx = op.log.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|l| l.token >= n)).await;
    }
    let held = op.jwks_hold.lock().unwrap().take();
    if let Some(mut released) = held {
        let _ = tokio::time::timeout(Duration::from_secs(10), released.wait_for(|r| *r)).await;
    }
    axum::Json(json!({ "keys": keys })).into_response()
}

async fn authorize(State(op): Op, RawQuery(query): RawQuery) -> Response {
    let q = params(query.unwrap_or_default().as_bytes());
    op.record(|l| {
        l.authorize += 1;
        l.last_authorize = q.clone();
    });
    if q.get("client_id") != Some(&op.client_id) {
        return (StatusCode::BAD_REQUEST, "unknown client").into_response();
    }
    let Some(Ok(mut back)) = q.get("redirect_uri").map(|u| Url::parse(u)) else {
        return (StatusCode::BAD_REQUEST, "no redirect_uri").into_response();
    };
    let require_pkce = op.behavior.lock().unwrap().require_pkce;
    let error = if q.get("response_type").map(String::as_str) != Some("code") {
        Some("unsupported_response_type")
    } else if !q.get("scope").is_some_and(|s| s.split(' ').any(|s| s == "openid")) {
        Some("invalid_scope")
    } else if require_pkce
        && (!q.contains_key("code_challenge") || q.get("code_challenge_method").map(String::as_str) != Some("S256"))
    {
        Some("invalid_request")
    } else {
        None
    };
    {
        let mut pairs = back.query_pairs_mut();
        match error {
            Some(e) => {
                pairs.append_pair("error", e);
            }
            None => {
                let code = jose::random(24);
                let grant = Grant {
                    client_id: op.client_id.clone(),
                    redirect_uri: q["redirect_uri"].clone(),
                    nonce: q.get("nonce").cloned(),
                    code_challenge: q.get("code_challenge").cloned(),
                };
                op.codes.lock().unwrap().insert(code.clone(), grant);
                pairs.append_pair("code", &code);
            }
        }
        if let Some(state) = q.get("state") {
            pairs.append_pair("state", state);
        }
    }
    Redirect::to(back.as_str()).into_response()
}

/// Which client authentication a token request used, and whether its credentials are right.
fn client_auth(op: &Shared, headers: &HeaderMap, form: &HashMap<String, String>) -> (ClientAuth, bool) {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .map(|b64| {
            // RFC 6749 §2.3.1: id and secret are form-urlencoded, then joined by ':'.
            let decoded = STANDARD.decode(b64.trim()).unwrap_or_default();
            let text = String::from_utf8(decoded).unwrap_or_default();
            let (id, secret) = text.split_once(':').unwrap_or_default();
            let unescape = |s: &str| {
                form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .unwrap()
                    .1
                    .into_owned()
            };
            (unescape(id), unescape(secret))
        });
    let post = match (form.get("client_id"), form.get("client_secret")) {
        (Some(id), Some(secret)) => Some((id.clone(), secret.clone())),
        _ => None,
    };
    let right = |(id, secret): &(String, String)| *id == op.client_id && *secret == op.client_secret;
    match (basic, post) {
        (Some(b), None) => (ClientAuth::Basic, right(&b)),
        (None, Some(p)) => (ClientAuth::Post, right(&p)),
        (Some(_), Some(_)) => (ClientAuth::Both, false),
        (None, None) => (ClientAuth::None, false),
    }
}

async fn token(State(op): Op, headers: HeaderMap, body: Bytes) -> Response {
    let form = params(&body);
    let (auth, credentials_ok) = client_auth(&op, &headers, &form);
    op.record(|l| {
        l.token += 1;
        l.client_auth.push(auth);
    });
    let advertised = op.discovery_document()["token_endpoint_auth_methods_supported"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .unwrap_or_else(|| vec!["client_secret_basic".to_owned()]);
    let method_ok = match auth {
        ClientAuth::Basic => advertised.iter().any(|m| m == "client_secret_basic"),
        ClientAuth::Post => advertised.iter().any(|m| m == "client_secret_post"),
        ClientAuth::Both | ClientAuth::None => false,
    };
    if !(method_ok && credentials_ok) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let refreshing = match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => false,
        Some("refresh_token") => true,
        _ => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    };
    if refreshing {
        let Some(grant) = form
            .get("refresh_token")
            .and_then(|t| op.refresh_tokens.lock().unwrap().remove(t))
        else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
        };
        op.record(|l| l.refresh += 1);
        // A provider that fails to answer has not spent the refresh token.
        let reply = op.behavior.lock().unwrap().token_reply.clone();
        if matches!(reply, TokenReply::Status(_) | TokenReply::Garbage) {
            let token = form.get("refresh_token").cloned().unwrap_or_default();
            op.refresh_tokens.lock().unwrap().insert(token, grant.clone());
        }
        return issue(&op, &grant).await;
    }
    let Some(grant) = form.get("code").and_then(|c| op.codes.lock().unwrap().remove(c)) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    if grant.client_id != op.client_id || form.get("redirect_uri") != Some(&grant.redirect_uri) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let pkce = match (&grant.code_challenge, form.get("code_verifier")) {
        (None, _) => Pkce::NotUsed,
        (Some(_), None) => Pkce::Missing,
        (Some(challenge), Some(verifier)) if jose::s256(verifier) == *challenge => Pkce::Verified,
        (Some(_), Some(_)) => Pkce::Wrong,
    };
    op.record(|l| l.pkce.push(pkce));
    if matches!(pkce, Pkce::Missing | Pkce::Wrong) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    issue(&op, &grant).await
}

/// The tokens of `grant`, as the behaviour says (a refresh token, always).
async fn issue(op: &Shared, grant: &Grant) -> Response {
    let behavior = op.behavior.lock().unwrap().clone();
    match behavior.token_reply {
        TokenReply::Status(status) => {
            let status = StatusCode::from_u16(status).expect("a valid status");
            return oauth_error(status, "server_error");
        }
        TokenReply::Error(status, error) => {
            return oauth_error(StatusCode::from_u16(status).expect("a valid status"), error);
        }
        TokenReply::Garbage => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "{\"access_token\": <html>",
            )
                .into_response();
        }
        TokenReply::Hang(how_long) => tokio::time::sleep(how_long).await,
        TokenReply::Tokens | TokenReply::NoIdToken => {}
    }
    let access_token = jose::random(24);
    op.access_tokens
        .lock()
        .unwrap()
        .insert(access_token.clone(), behavior.sub.clone());
    let refresh_token = jose::random(24);
    op.refresh_tokens
        .lock()
        .unwrap()
        .insert(refresh_token.clone(), grant.clone());
    let mut response = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": behavior.expires_in,
        "refresh_token": refresh_token,
    });
    if behavior.token_reply != TokenReply::NoIdToken {
        let id_token = op.id_token(&behavior, grant, &access_token);
        op.record(|l| l.id_tokens.push(id_token.clone()));
        response["id_token"] = id_token.into();
    }
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(response)).into_response()
}

async fn userinfo(State(op): Op, headers: HeaderMap) -> Response {
    op.record(|l| l.userinfo += 1);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(sub) = token.and_then(|t| op.access_tokens.lock().unwrap().get(t).cloned()) else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
        )
            .into_response();
    };
    let b = op.behavior.lock().unwrap().clone();
    let mut claims = json!({
        "sub": b.userinfo_sub.unwrap_or(sub),
        "name": b.name,
        "email": b.email,
        "email_verified": true,
    });
    jose::merge(&mut claims, &b.userinfo_patch);
    axum::Json(claims).into_response()
}

async fn end_session(State(op): Op, RawQuery(query): RawQuery) -> Response {
    let q = params(query.unwrap_or_default().as_bytes());
    op.record(|l| l.end_session = Some(q.clone()));
    let known_hint = q
        .get("id_token_hint")
        .is_some_and(|h| op.log.borrow().id_tokens.contains(h));
    let Some(Ok(mut back)) = q.get("post_logout_redirect_uri").map(|u| Url::parse(u)) else {
        return (StatusCode::OK, "You are logged out.").into_response();
    };
    if !known_hint {
        return (StatusCode::BAD_REQUEST, "id_token_hint is not a token we issued").into_response();
    }
    let state = op
        .behavior
        .lock()
        .unwrap()
        .end_session_state
        .clone()
        .or(q.get("state").cloned());
    if let Some(state) = state {
        back.query_pairs_mut().append_pair("state", &state);
    }
    Redirect::to(back.as_str()).into_response()
}

/// RFC 7009 token revocation: recorded with the client's authentication;
/// `200` for every authenticated request, as the RFC says.
async fn revoke(State(op): Op, headers: HeaderMap, body: Bytes) -> Response {
    let form = params(&body);
    let (auth, credentials_ok) = client_auth(&op, &headers, &form);
    op.record(|l| {
        l.revocations.push(super::behavior::RevocationSeen {
            token: form.get("token").cloned().unwrap_or_default(),
            token_type_hint: form.get("token_type_hint").cloned(),
            client_auth: auth,
            credentials_ok,
        })
    });
    if !credentials_ok {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    StatusCode::OK.into_response()
}

/// RFC 7662: to an authenticated client, the behaviour's answer, whatever the token.
async fn introspect(State(op): Op, headers: HeaderMap, body: Bytes) -> Response {
    let form = params(&body);
    if !client_auth(&op, &headers, &form).1 {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let answer = op.behavior.lock().unwrap().introspection.clone();
    axum::Json(answer).into_response()
}
