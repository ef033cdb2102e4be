//! Key rotation (`rp-key-rotation-op-sign-key`): an ID token's unknown `kid`
//! always costs one JWKS refetch, shared by concurrent logins; a logout
//! token's (anyone can send one) at most one per 10 s.
//!
//! That interval is timed with tokio's clock; the test about it moves that
//! clock forward instead of waiting.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::task::JoinSet;

use super::*;
use crate::fake_op::{Key, Kid, send_logout_token};

/// Moves tokio's clock past the app's JWKS refetch interval (10 s), at once.
async fn skip_refetch_interval() {
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(11)).await;
    tokio::time::resume();
}

/// A provider that signs with `Rsa1` and publishes only that key.
async fn setup_rsa1() -> (FakeOp, TestApp) {
    setup(|b| b.jwks = vec![Key::Rsa1]).await
}

/// New signing key and kid (`Rsa2`); the JWKS serves only the new key.
fn rotate(op: &FakeOp) {
    rotate_to(op, Key::Rsa2);
}

/// `key` signs from now on, and the JWKS serves only it.
fn rotate_to(op: &FakeOp, key: Key) {
    op.set(|b| {
        b.key = key;
        b.jwks = vec![key];
    });
}

#[tokio::test]
async fn rp_key_rotation_op_sign_key() {
    // As the certification runs it: a new key for every ID token, logins one
    // right after the other, within seconds of the app's start-up fetch. No
    // clock tricks here.
    let (op, app) = setup_rsa1().await;
    logged_in(&app).await;
    for (key, logins) in [(Key::Rsa2, 2), (Key::Rsa3, 3)] {
        let fetched = op.log().jwks;
        rotate_to(&op, key);
        logged_in(&app).await;
        assert_eq!(op.log().jwks, fetched + 1, "exactly one refetch for {key:?}");
        assert_eq!(app.count("session_index").await, logins);
    }
}

#[tokio::test]
async fn rp_key_rotation_concurrent_logins_share_one_refetch() {
    const LOGINS: usize = 5;
    let (op, app) = setup_rsa1().await;
    logged_in(&app).await;
    let fetched = op.log().jwks;
    // Each browser gets as far as the provider's answer.
    let mut pending = Vec::new();
    for _ in 0..LOGINS {
        let browser = Browser::new();
        let authorize = start_login(&app, &browser, None).await;
        let callback = redirect_target(&browser.get(&authorize).await);
        pending.push((browser, callback));
    }
    rotate(&op);
    // The refetched keys are held back until every login has redeemed its code,
    // so all of them meet the unknown kid while the refetch is under way.
    let tokens = op.log().token;
    op.set(|b| b.jwks_hold_until_tokens = Some(tokens + LOGINS as u64));
    let mut callbacks = JoinSet::new();
    for (browser, callback) in pending {
        callbacks.spawn(async move {
            let r = browser.get(&callback).await;
            (browser, r.status(), r.text().await.unwrap())
        });
    }
    let mut browsers = Vec::new();
    while let Some(done) = callbacks.join_next().await {
        let (browser, status, body) = done.unwrap();
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        browsers.push(browser);
    }
    assert_eq!(op.log().jwks, fetched + 1, "one shared refetch");
    for browser in &browsers {
        assert_eq!(browser.get(&app.url("/secret")).await.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn an_id_tokens_unknown_kid_is_refetched_every_time() {
    let (op, app) = setup_rsa1().await;
    logged_in(&app).await;
    rotate(&op);
    logged_in(&app).await;
    // Right after that refetch, tokens naming a key nobody publishes: each
    // login asks again (the provider's token endpoint chose that kid, not
    // the browser), and is refused.
    op.set(|b| {
        b.key = Key::Rsa1;
        b.kid = Kid::Is("ghost".into());
    });
    for _ in 0..2 {
        let fetched = op.log().jwks;
        let browser = Browser::new();
        let callback = attempt_login(&app, &browser).await;
        let status = callback.status();
        let body = text(callback).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(body.contains("Reference: id_token_unknown_key<"), "{body}");
        assert_closed(&app, &browser).await;
        assert_eq!(op.log().jwks, fetched + 1, "one refetch for this login");
    }
    assert_eq!(app.count("session_index").await, 2, "only the first two logins");
}

#[tokio::test]
async fn logout_tokens_naming_unknown_keys_refetch_at_most_once_per_interval() {
    const TOKENS: usize = 10;
    let (op, app) = setup_rsa1().await;
    logged_in(&app).await;
    for round in 0..2 {
        let fetched = op.log().jwks;
        for i in 0..TOKENS {
            op.set(|b| b.kid = Kid::Is(format!("random-{round}-{i}")));
            let token = op.logout_token(json!({"sub": "user-1"}));
            let r = send_logout_token(&app.url("/backchannel-logout"), &token).await;
            assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        }
        assert_eq!(op.log().jwks, fetched + 1, "one refetch for {TOKENS} tokens");
        skip_refetch_interval().await;
    }
    assert_eq!(app.count("session_index").await, 1, "the login lives");
}

#[tokio::test]
async fn id_token_key_not_in_jwks_even_after_refetch() {
    let (op, app) = setup_rsa1().await;
    let browser = Browser::new();
    // Once the login has started, discovery and keys are loaded.
    let authorize = start_login(&app, &browser, None).await;
    let fetched = op.log().jwks;
    op.set(|b| b.key = Key::Rsa2);
    let callback = browser.get(&redirect_target(&browser.get(&authorize).await)).await;
    assert_rejected(
        &app,
        &browser,
        callback,
        StatusCode::UNAUTHORIZED,
        "id_token_unknown_key",
    )
    .await;
    assert_eq!(op.log().jwks, fetched + 1, "the keys were refetched once");
}
