//! RP-Initiated Logout: POST /logout sends the browser to the provider's
//! `end_session_endpoint`, which sends it back; whatever `state` comes back,
//! the landing page works and the user is logged out.

use reqwest::StatusCode;
use url::Url;

use super::*;

/// Logs `browser` out with the index page's button; returns where the app sends it.
async fn press_log_out(app: &TestApp, browser: &Browser) -> String {
    let r = click_log_out(browser, &app.url("")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    redirect_target(&r)
}

/// Logs in, logs out through the provider, and asserts the landing page
/// (the URL the provider sent the browser back to) shows a logged-out user.
async fn log_out_and_land(op: &FakeOp, app: &TestApp) -> String {
    let browser = logged_in(app).await;
    let end_session = press_log_out(app, &browser).await;
    let back = redirect_target(&browser.get(&end_session).await);
    assert_eq!(
        op.log().end_session.map(|q| q["post_logout_redirect_uri"].clone()),
        Some(app.url("/"))
    );
    let landing = browser.get(&back).await;
    assert_eq!(landing.status(), StatusCode::OK);
    assert!(text(landing).await.contains(">login from here</a>"));
    assert_closed(app, &browser).await;
    assert_eq!(app.count("session_index").await, 0);
    back
}

#[tokio::test]
async fn rp_init_logout() {
    let (op, app) = setup(|_| {}).await;
    let browser = logged_in(&app).await;
    let target = Url::parse(&press_log_out(&app, &browser).await).unwrap();
    assert_eq!(target[..url::Position::AfterPath], op.url("/op/session/end"));
    let q: std::collections::HashMap<_, _> = target.query_pairs().into_owned().collect();
    assert_eq!(
        q["id_token_hint"],
        op.log().id_tokens[0],
        "the ID token issued at login"
    );
    assert_eq!(q["post_logout_redirect_uri"], app.url("/"));
    assert_closed(&app, &browser).await;
    assert_eq!(app.count("session_index").await, 0);
}

#[tokio::test]
async fn rp_init_logout_other_state() {
    let (op, app) = setup(|b| b.end_session_state = Some("whatever".into())).await;
    let back = log_out_and_land(&op, &app).await;
    assert_eq!(back, app.url("/?state=whatever"));
}

#[tokio::test]
async fn rp_init_logout_no_state() {
    let (op, app) = setup(|_| {}).await;
    let back = log_out_and_land(&op, &app).await;
    assert_eq!(back, app.url("/"));
}
