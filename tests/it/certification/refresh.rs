//! Refresh cases (OIDC Core §12.2): a refreshed ID token is validated like
//! the first and must name the same user from the same issuer, else the
//! session ends; a refresh answer without an ID token keeps the claims; a
//! refreshed ID token's claims are those the access rules judge from then
//! on; a provider that does not answer keeps the session while its token
//! lasts.

use std::time::Duration;

use oidc_gate::clock::Clock;
use reqwest::StatusCode;
use serde_json::json;

use super::*;
use crate::fake_op::TokenReply;

/// The app for `op` (access tokens of 4 s), logged in; its clock.
async fn logged_in_with_short_tokens(op: &FakeOp) -> (TestApp, Browser, Clock) {
    op.set(|b| b.expires_in = 4);
    let clock = Clock::stopped();
    let app = TestApp::spawn_with(Options {
        provider: Some(op.client()),
        clock: Some(clock.clone()),
        routes: Some(access_token_routes),
        ..Default::default()
    })
    .await;
    let browser = logged_in(&app).await;
    (app, browser, clock)
}

/// Shapes the refresh answer with `shape`, lets the token expire, and
/// asserts that the refresh ended the session.
async fn refresh_ends_the_session(shape: impl FnOnce(&mut crate::fake_op::Behavior)) {
    let op = FakeOp::start().await;
    let (app, browser, clock) = logged_in_with_short_tokens(&op).await;
    assert_eq!(api_token(&browser, &app).await.0, StatusCode::OK);
    op.set(shape);
    clock.advance(Duration::from_secs(5));
    let (status, _) = api_token(&browser, &app).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(op.log().refresh, 1);
    assert_closed(&app, &browser).await;
    assert_eq!(app.count("session_index").await, 0, "its link is gone too");
}

#[tokio::test]
async fn a_refreshed_id_token_naming_another_sub_ends_the_session() {
    refresh_ends_the_session(|b| b.sub = "mallory".into()).await;
}

#[tokio::test]
async fn a_refreshed_id_token_from_another_issuer_ends_the_session() {
    refresh_ends_the_session(|b| b.claims_patch = json!({"iss": "https://evil.example"})).await;
}

#[tokio::test]
async fn a_refreshed_id_token_with_a_bad_signature_ends_the_session() {
    refresh_ends_the_session(|b| b.corrupt_signature = true).await;
}

#[tokio::test]
async fn a_refused_refresh_token_ends_the_session() {
    refresh_ends_the_session(|b| b.token_reply = TokenReply::Error(400, "invalid_grant")).await;
}

#[tokio::test]
async fn a_refresh_without_an_id_token_keeps_the_session_and_its_claims() {
    let op = FakeOp::start().await;
    let (app, browser, clock) = logged_in_with_short_tokens(&op).await;
    let (_, first) = api_token(&browser, &app).await;
    op.set(|b| b.token_reply = TokenReply::NoIdToken);
    clock.advance(Duration::from_secs(5));
    let (status, second) = api_token(&browser, &app).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(first, second, "refreshed");
    assert_eq!(op.log().refresh, 1);
    let page = browser.get(&app.url("/secret")).await;
    assert_eq!(page.status(), StatusCode::OK);
    let home = text(browser.get(&app.url("/")).await).await;
    assert!(home.contains("Ada"), "the profile is kept: {home}");
}

#[tokio::test]
async fn an_unreachable_provider_keeps_the_session_and_then_answers_503() {
    let op = FakeOp::start().await;
    let (app, browser, clock) = logged_in_with_short_tokens(&op).await;
    let (_, first) = api_token(&browser, &app).await;
    op.set(|b| b.token_reply = TokenReply::Status(503));
    // Due (within the margin) but not expired: the old token, the session kept.
    clock.advance(Duration::from_secs(3));
    assert_eq!(api_token(&browser, &app).await, (StatusCode::OK, first.clone()));
    // Expired: 503, and still signed in.
    clock.advance(Duration::from_secs(2));
    assert_eq!(api_token(&browser, &app).await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(browser.get(&app.url("/secret")).await.status(), StatusCode::OK);
    // Back: refreshed.
    op.set(|b| b.token_reply = TokenReply::Tokens);
    let (status, fresh) = api_token(&browser, &app).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(fresh, first);
}

/// The app for `op` (access tokens of 4 s) with `ALLOWED_GROUPS=admin`,
/// logged in as a member (the groups are in UserInfo only); its clock.
async fn logged_in_to_admin_only(op: &FakeOp) -> (TestApp, Browser, Clock) {
    op.set(|b| {
        b.expires_in = 4;
        b.userinfo_patch = json!({"groups": ["admin"]});
    });
    let clock = Clock::stopped();
    let app = TestApp::spawn_with(Options {
        provider: Some(op.client()),
        clock: Some(clock.clone()),
        tweak: Some(|a| a.access.allowed_groups = Some("admin".into())),
        routes: Some(access_token_routes),
        ..Default::default()
    })
    .await;
    let browser = logged_in(&app).await;
    (app, browser, clock)
}

/// The refreshed ID token's claims, completed from UserInfo as at sign-in
/// (this provider names the groups there only), are judged from then on:
/// still in `ALLOWED_GROUPS`, the session goes on; removed, the refresh's
/// request is refused (403) and the session ends.
#[tokio::test]
async fn a_refreshed_id_token_without_the_allowed_group_ends_the_session_with_403() {
    let op = FakeOp::start().await;
    let (app, browser, clock) = logged_in_to_admin_only(&op).await;
    assert_eq!(op.log().userinfo, 1);

    op.set(|b| b.userinfo_patch = json!({"groups": ["admin", "ops"]}));
    clock.advance(Duration::from_secs(5));
    assert_eq!(api_token(&browser, &app).await.0, StatusCode::OK);
    assert_eq!((op.log().refresh, op.log().userinfo), (1, 2));

    op.set(|b| b.userinfo_patch = json!({"groups": ["ops"]}));
    clock.advance(Duration::from_secs(5));
    let (status, body) = api_token(&browser, &app).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("group_not_allowed"), "{body}");
    assert_eq!((op.log().refresh, op.log().userinfo), (2, 3));
    assert_closed(&app, &browser).await;
    assert_eq!(app.count("session_index").await, 0, "its link is gone too");
}

/// Under access rules a page that needs no token tries a due refresh first
/// (to judge the newest claims), but it does not wait again for a provider
/// that failed one a moment ago: the pages go on, judged on the session's
/// claims, and a request that needs the token still asks.
#[tokio::test]
async fn under_access_rules_pages_do_not_wait_again_for_a_provider_that_failed_a_refresh() {
    let op = FakeOp::start().await;
    let (app, browser, clock) = logged_in_to_admin_only(&op).await;
    op.set(|b| b.token_reply = TokenReply::Status(503));
    // Due (within the margin) but not expired.
    clock.advance(Duration::from_secs(3));
    for _ in 0..3 {
        assert_eq!(browser.get(&app.url("/secret")).await.status(), StatusCode::OK);
    }
    assert_eq!(
        op.log().refresh,
        1,
        "one try; the next pages did not wait for the provider"
    );
    assert_eq!(api_token(&browser, &app).await.0, StatusCode::OK);
    assert_eq!(op.log().refresh, 2, "a request that needs the token asks");
}
