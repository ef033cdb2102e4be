//! The refresh token grant: rotation, a spent token revoking its grant,
//! grants revoked by user, and the counts tests read.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;

use super::*;

fn basic() -> String {
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", encode(CLIENT_ID), encode(SECRET)))
    )
}

fn token_request(params: &[(&str, &str)]) -> Request<Body> {
    Request::post("/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::AUTHORIZATION, basic())
        .body(Body::from(form(params)))
        .unwrap()
}

/// Signs in and redeems the code; returns the token response.
async fn first_tokens(app: &Router) -> Value {
    let code = sign_in(app).await;
    let response = send(
        app,
        token_request(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ]),
    )
    .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    response.json()
}

async fn refresh(app: &Router, refresh_token: &str) -> TestResponse {
    send(
        app,
        token_request(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]),
    )
    .await
}

fn claims(id_token: &str) -> Value {
    let payload = id_token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_spent_one_revokes_the_grant() {
    let dev = provider();
    dev.set_access_token_ttl(Duration::from_secs(4));
    let app = dev.router();
    let first = first_tokens(&app).await;
    assert_eq!(first["expires_in"], 4);
    let rt1 = first["refresh_token"]
        .as_str()
        .expect("a refresh token without offline_access");

    let response = refresh(&app, rt1).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(response.header(header::CACHE_CONTROL), Some("no-store"));
    let second = response.json();
    let rt2 = second["refresh_token"].as_str().unwrap();
    assert_ne!(rt1, rt2, "rotated");
    assert_ne!(first["access_token"], second["access_token"]);
    let (a, b) = (
        claims(first["id_token"].as_str().unwrap()),
        claims(second["id_token"].as_str().unwrap()),
    );
    assert_eq!((&a["sub"], &a["iss"], &a["sid"]), (&b["sub"], &b["iss"], &b["sid"]));
    assert!(b.get("nonce").is_none(), "a refreshed ID token carries no nonce");
    assert_eq!(dev.refreshes(), 1);

    // The spent token again: refused, and the grant with it.
    let replay = refresh(&app, rt1).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert_eq!(replay.json()["error"], "invalid_grant");
    assert_eq!(refresh(&app, rt2).await.json()["error"], "invalid_grant");
    assert_eq!(dev.refreshes(), 1);
}

#[tokio::test]
async fn revoking_a_users_grants_refuses_their_refresh_tokens() {
    let dev = provider();
    let app = dev.router();
    let tokens = first_tokens(&app).await;
    assert_eq!(dev.revoke_grants_of(&DevProvider::subject_of("ada@example.com")), 1);
    let response = refresh(&app, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.json()["error"], "invalid_grant");
    assert_eq!(dev.refreshes(), 0);
}

#[tokio::test]
async fn unknown_or_missing_refresh_tokens_are_refused() {
    let app = provider().router();
    assert_eq!(refresh(&app, "nope").await.json()["error"], "invalid_grant");
    let missing = send(&app, token_request(&[("grant_type", "refresh_token")])).await;
    assert_eq!(missing.json()["error"], "invalid_request");
}

/// Claims set for a user (their groups changed at the provider, say) are
/// in the ID tokens issued from then on, refreshed ones too, and never
/// replace those that identify the token.
#[tokio::test]
async fn claims_set_for_a_user_are_in_their_next_id_tokens() {
    let dev = provider();
    let app = dev.router();
    let sub = DevProvider::subject_of("ada@example.com");
    let first = first_tokens(&app).await;
    assert!(claims(first["id_token"].as_str().unwrap()).get("groups").is_none());

    let set = serde_json::json!({"groups": ["staff"], "email": "ada@example.org", "sub": "mallory"});
    dev.set_claims_of(&sub, set.as_object().unwrap().clone());
    let second = refresh(&app, first["refresh_token"].as_str().unwrap()).await.json();
    let c = claims(second["id_token"].as_str().unwrap());
    assert_eq!(
        (&c["groups"], &c["email"]),
        (&serde_json::json!(["staff"]), &Value::from("ada@example.org"))
    );
    assert_eq!(c["sub"], sub.as_str(), "the token's own claims stay");

    dev.set_claims_of(&sub, serde_json::Map::new());
    let third = refresh(&app, second["refresh_token"].as_str().unwrap()).await.json();
    let c = claims(third["id_token"].as_str().unwrap());
    assert!(c.get("groups").is_none());
    assert_eq!(c["email"], "ada@example.com");
}
