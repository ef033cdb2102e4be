//! Key rotation (`rp-key-rotation-op-sign-key`): an unknown `kid` costs one
//! JWKS refetch, shared by concurrent logins and rate-limited.
//!
//! The app allows one refetch per 10 s, timed with tokio's clock; the tests
//! about sharing and rate-limiting move that clock forward instead of waiting.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::task::JoinSet;

use super::*;
use crate::fake_op::{Key, Kid};

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

/// New signing key and kid; the JWKS serves only the new key.
fn rotate(op: &FakeOp) {
    op.set(|b| {
        b.key = Key::Rsa2;
        b.jwks = vec![Key::Rsa2];
    });
}

#[tokio::test]
async fn rp_key_rotation_op_sign_key() {
    // As the certification runs it: rotation right after a login, so within
    // seconds of the app's start-up fetch. No clock tricks here.
    let (op, app) = setup_rsa1().await;
    logged_in(&app).await;
    let fetched = op.log().jwks;
    rotate(&op);
    logged_in(&app).await;
    assert_eq!(op.log().jwks, fetched + 1, "exactly one refetch");
    assert_eq!(app.count("session_index").await, 2);
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
    skip_refetch_interval().await;
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
async fn rp_key_rotation_unknown_kid_refetch_is_rate_limited() {
    let (op, app) = setup_rsa1().await;
    logged_in(&app).await;
    rotate(&op);
    skip_refetch_interval().await;
    logged_in(&app).await;
    let fetched = op.log().jwks;
    // Right after that refetch, a token naming a key nobody publishes.
    op.set(|b| {
        b.key = Key::Rsa1;
        b.kid = Kid::Is("ghost".into());
    });
    let browser = Browser::new();
    let callback = attempt_login(&app, &browser).await;
    let status = callback.status();
    let body = text(callback).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("Reference: id_token_unknown_key<"), "{body}");
    assert_closed(&app, &browser).await;
    assert_eq!(op.log().jwks, fetched, "no second refetch within 10 s");
    assert_eq!(app.count("session_index").await, 2, "only the first two logins");
}

#[tokio::test]
async fn id_token_key_not_in_jwks_even_after_refetch() {
    let (op, app) = setup_rsa1().await;
    let browser = Browser::new();
    // Once the login has started, discovery and keys are loaded.
    let authorize = start_login(&app, &browser, None).await;
    let fetched = op.log().jwks;
    op.set(|b| b.key = Key::Rsa2);
    skip_refetch_interval().await;
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
