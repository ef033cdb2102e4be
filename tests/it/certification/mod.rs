//! The OpenID RP certification cases (Basic RP, Config RP, RP-Initiated and
//! Back-Channel Logout), each against the misbehaving provider fixture shaped
//! for it. Tests are named after the certification test id where one exists.

mod accept;
mod backchannel;
mod bounded;
mod keys;
mod logout;
mod refresh;
mod reject;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Response, StatusCode};
use serde_json::Value;

use crate::fake_op::{Behavior, FakeOp};
use crate::support::*;

/// Starts the fixture shaped by `shape`, then the app configured for it.
async fn setup(shape: impl FnOnce(&mut Behavior)) -> (FakeOp, TestApp) {
    let op = FakeOp::start().await;
    op.set(shape);
    let app = spawn_for(&op).await;
    (op, app)
}

/// The app, configured for `op`.
async fn spawn_for(op: &FakeOp) -> TestApp {
    spawn_tweaked(op, None).await
}

/// The app, configured for `op`, with settings changed by `tweak`.
async fn spawn_tweaked(op: &FakeOp, tweak: Option<fn(&mut oidc_gate::config::Args)>) -> TestApp {
    TestApp::spawn_with(Options {
        provider: Some(op.client()),
        tweak,
        ..Default::default()
    })
    .await
}

/// `/login`, then the provider (which answers at once with a redirect), then
/// the callback; returns the callback's response.
async fn attempt_login(app: &TestApp, browser: &Browser) -> Response {
    let authorize = start_login(app, browser, None).await;
    let at_provider = browser.get(&authorize).await;
    assert_eq!(
        at_provider.status(),
        StatusCode::SEE_OTHER,
        "the provider redirects back"
    );
    let callback = redirect_target(&at_provider);
    assert!(callback.starts_with(&app.url("/callback?")), "{callback}");
    browser.get(&callback).await
}

/// Asserts that `callback` completed the login: redirect home, secret page open.
async fn assert_logged_in(app: &TestApp, browser: &Browser, callback: Response) {
    let status = callback.status();
    if status != StatusCode::SEE_OTHER {
        panic!("login failed with {status}: {}", text(callback).await);
    }
    assert_eq!(location(&callback), "/");
    let secret = browser.get(&app.url("/secret")).await;
    assert_eq!(secret.status(), StatusCode::OK);
    assert!(text(secret).await.contains(SECRET));
}

/// A fresh browser, logged in through `op`'s current behaviour.
async fn logged_in(app: &TestApp) -> Browser {
    let browser = Browser::new();
    let callback = attempt_login(app, &browser).await;
    assert_logged_in(app, &browser, callback).await;
    browser
}

/// Asserts the callback was refused with `status` and `reason`, that the
/// secret page stays closed, and that nothing was stored.
async fn assert_rejected(app: &TestApp, browser: &Browser, callback: Response, status: StatusCode, reason: &str) {
    let got = callback.status();
    let body = text(callback).await;
    assert_eq!(got, status, "{body}");
    assert!(
        body.contains(&format!("Reference: {reason}<")),
        "expected reason {reason}: {body}"
    );
    assert_closed(app, browser).await;
    assert_eq!(app.count("users").await, 0, "no user row");
    assert_eq!(app.count("session_index").await, 0, "no logged-in session");
}

/// Asserts that `/secret` sends `browser` to log in (at the provider).
async fn assert_closed(app: &TestApp, browser: &Browser) {
    let r = browser.get(&app.url("/secret")).await;
    assert!(is_to_provider(&r), "/secret stays closed: {}", r.status());
}

/// The payload of a compact JWS, unverified.
fn jwt_claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a compact JWS");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}
