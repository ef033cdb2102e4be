//! In-process tests of the development provider: the router is called with
//! `tower::ServiceExt::oneshot`, as the relying party would call it over HTTP.

mod authorize;
mod refresh;
mod revoke;
mod token;

use std::collections::HashMap;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt as _;
use url::Url;

use super::{DevClient, DevProvider, RsaAlg};

const ISSUER: &str = "http://localhost:5000/dev-provider";
const CLIENT_ID: &str = "gate";
/// Characters that RFC 6749 §2.3.1 form-encoding must survive.
const SECRET: &str = "s3cret: with spaces&symbols=+%é";
const REDIRECT: &str = "http://localhost:5000/auth/callback";
const POST_LOGOUT: &str = "http://localhost:5000/signed-out";
/// RFC 7636 Appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const WARNING: &str = "Development provider — not for production";

fn provider() -> DevProvider {
    DevProvider::new(
        Url::parse(ISSUER).unwrap(),
        DevClient {
            client_id: CLIENT_ID.into(),
            client_secret: SECRET.into(),
            redirect_uris: vec![REDIRECT.into()],
            post_logout_redirect_uris: vec![POST_LOGOUT.into()],
        },
    )
}

struct TestResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl TestResponse {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }

    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The redirect target's query parameters; panics unless this is a 303.
    fn redirect_query(&self) -> (Url, HashMap<String, String>) {
        assert_eq!(self.status, StatusCode::SEE_OTHER, "body: {}", self.body);
        let url = Url::parse(self.header(header::LOCATION).unwrap()).unwrap();
        let query = url.query_pairs().into_owned().collect();
        (url, query)
    }
}

async fn send(app: &Router, request: Request<Body>) -> TestResponse {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    TestResponse {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn get(path_and_query: &str) -> Request<Body> {
    Request::get(path_and_query).body(Body::empty()).unwrap()
}

fn post_form(path: &str, body: String) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap()
}

/// A well-formed authorization request.
fn auth_params() -> Vec<(&'static str, &'static str)> {
    vec![
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", REDIRECT),
        ("scope", "openid email profile"),
        ("state", "st&te=1"),
        ("nonce", "n-0S6_WzA2Mj"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]
}

/// `params` with `name` replaced (or removed when `value` is `None`).
fn with(
    mut params: Vec<(&'static str, &'static str)>,
    name: &'static str,
    value: Option<&'static str>,
) -> Vec<(&'static str, &'static str)> {
    params.retain(|(n, _)| *n != name);
    if let Some(value) = value {
        params.push((name, value));
    }
    params
}

/// Submits the sign-in form as Ada and returns the authorization code.
async fn sign_in(app: &Router) -> String {
    let mut params = auth_params();
    params.extend([
        ("name", "Ada Lovelace"),
        ("email", "ada@example.com"),
        ("action", "sign_in"),
    ]);
    let response = send(app, post_form("/authorize", form(&params))).await;
    let (_, query) = response.redirect_query();
    query["code"].clone()
}

#[tokio::test]
async fn discovery_document_shape() {
    let app = provider().router();
    let response = send(&app, get("/.well-known/openid-configuration")).await;
    assert_eq!(response.status, StatusCode::OK);
    assert!(response.header(header::CACHE_CONTROL).unwrap().contains("max-age=300"));
    let doc = response.json();
    assert_eq!(doc["issuer"], ISSUER);
    for (field, path) in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("userinfo_endpoint", "/userinfo"),
        ("jwks_uri", "/jwks"),
        ("end_session_endpoint", "/end_session"),
        ("revocation_endpoint", "/revoke"),
    ] {
        assert_eq!(doc[field], format!("{ISSUER}{path}"), "{field}");
    }
    let list = |field: &str| doc[field].clone();
    assert_eq!(list("response_types_supported"), serde_json::json!(["code"]));
    assert_eq!(list("subject_types_supported"), serde_json::json!(["public"]));
    assert_eq!(
        list("id_token_signing_alg_values_supported"),
        serde_json::json!(["ES256"])
    );
    assert_eq!(
        list("token_endpoint_auth_methods_supported"),
        serde_json::json!(["client_secret_basic", "client_secret_post"])
    );
    assert_eq!(list("code_challenge_methods_supported"), serde_json::json!(["S256"]));
    assert_eq!(
        list("grant_types_supported"),
        serde_json::json!(["authorization_code", "refresh_token"])
    );
    assert!(list("scopes_supported").as_array().unwrap().contains(&"openid".into()));
    assert!(list("claims_supported").as_array().unwrap().contains(&"email".into()));
}

#[tokio::test]
async fn jwks_shape() {
    let app = provider().router();
    let response = send(&app, get("/jwks")).await;
    assert_eq!(response.status, StatusCode::OK);
    let keys = response.json()["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["alg"], "ES256");
    assert!(!key["kid"].as_str().unwrap().is_empty());
    for coordinate in ["x", "y"] {
        let value = key[coordinate].as_str().unwrap();
        // 32 bytes in base64url without padding.
        assert_eq!(value.len(), 43, "{coordinate}");
        assert!(!value.contains(['=', '+', '/']));
    }
    assert!(key.get("d").is_none(), "private key must not be published");
}

#[tokio::test]
async fn each_provider_has_its_own_key() {
    let a = send(&provider().router(), get("/jwks")).await.json();
    let b = send(&provider().router(), get("/jwks")).await.json();
    assert_ne!(a["keys"][0]["x"], b["keys"][0]["x"]);
    assert_ne!(a["keys"][0]["kid"], b["keys"][0]["kid"]);
}
