//! What anonymous traffic can make the app ask of the provider: a burst of
//! `/login` and protected pages while the provider fails costs at most one discovery fetch per
//! interval, and a burst of logout tokens naming unknown keys one JWKS
//! refetch, which no login waits on.

use reqwest::StatusCode;
use serde_json::json;
use tokio::task::JoinSet;

use super::*;
use crate::fake_op::{Key, Kid, send_logout_token};

#[tokio::test]
async fn a_burst_of_logins_against_a_failing_provider_asks_it_at_most_once() {
    const LOGINS: usize = 20;
    let op = FakeOp::start().await;
    op.set(|b| b.discovery_failures = u32::MAX);
    let app = spawn_for(&op).await;
    op.wait_for(|l| l.discovery >= 1).await; // the start-up fetch
    let before = op.log().discovery;
    let mut burst = JoinSet::new();
    for i in 0..LOGINS {
        // A protected page starts the sign-in as /login does, with its answer.
        let url = app.url(if i % 2 == 0 { "/login" } else { "/secret" });
        burst.spawn(async move {
            let r = Browser::new().get(&url).await;
            (r.status(), text(r).await)
        });
    }
    while let Some(done) = burst.join_next().await {
        let (status, body) = done.unwrap();
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        assert!(body.contains("Reference: discovery_failed<"), "{body}");
    }
    // Within the first second after a failure, none; were the burst slow,
    // the background retry after a second.
    let fetched = op.log().discovery - before;
    assert!(fetched <= 1, "{fetched} discovery fetches for {LOGINS} logins");

    // Once the provider answers, the next retry finds it.
    op.set(|b| b.discovery_failures = 0);
    let answered = op.log().discovery;
    op.wait_for(|l| l.discovery > answered).await;
    let browser = Browser::new();
    start_login(&app, &browser, None).await;
    to_provider(&browser.get(&app.url("/secret")).await);
}

#[tokio::test]
async fn logout_tokens_naming_unknown_keys_refetch_once_and_hold_up_no_login() {
    const TOKENS: usize = 10;
    let (op, app) = setup(|b| b.jwks = vec![Key::Rsa1]).await;
    logged_in(&app).await;
    let fetched = op.log().jwks;
    let release = op.hold_next_jwks();
    let mut burst = JoinSet::new();
    for i in 0..TOKENS {
        op.set(|b| b.kid = Kid::Is(format!("random-{i}")));
        let token = op.logout_token(json!({"sub": "user-1"}));
        let url = app.url("/backchannel-logout");
        burst.spawn(async move { send_logout_token(&url, &token).await.status() });
    }
    // One token's refetch is out, held at the provider; the others are
    // refused without waiting for it.
    op.wait_for(|l| l.jwks > fetched).await;
    for _ in 1..TOKENS {
        let status = burst.join_next().await.unwrap().unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    // Meanwhile the provider rotates its key: a login's own refetch does
    // not wait behind the logout token's.
    op.set(|b| {
        b.kid = Kid::OfKey;
        b.key = Key::Rsa2;
        b.jwks = vec![Key::Rsa2];
    });
    logged_in(&app).await;
    assert_eq!(op.log().jwks, fetched + 2, "the logout tokens' refetch and the login's");
    release.send_replace(true);
    let last = burst.join_next().await.unwrap().unwrap();
    assert_eq!(last, StatusCode::BAD_REQUEST, "no key has that kid");
    // Right after a refetch for logout tokens, another unknown kid is refused at once.
    op.set(|b| b.kid = Kid::Is("random-again".into()));
    let token = op.logout_token(json!({"sub": "user-1"}));
    let r = send_logout_token(&app.url("/backchannel-logout"), &token).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(op.log().jwks, fetched + 2);
    assert_eq!(app.count("session_index").await, 2, "both logins live");
}
