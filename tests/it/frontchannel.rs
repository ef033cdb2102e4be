//! Front-channel logout (OpenID Connect Front-Channel Logout 1.0): the
//! provider's `GET /frontchannel-logout?iss=…&sid=…` ends the sessions of
//! that `sid` only, answers a page only the provider may frame, and ends
//! nothing when a parameter is missing or wrong.

use reqwest::StatusCode;

use crate::fake_op::FakeOp;
use crate::support::*;

/// Signs a fresh browser in at `op` with provider session `sid`.
async fn signed_in_with_sid(op: &FakeOp, app: &TestApp, sid: &str) -> Browser {
    op.set(|b| b.sid = Some(sid.to_owned()));
    let browser = Browser::new();
    let authorize = start_login(app, &browser, None).await;
    let callback = redirect_target(&browser.get(&authorize).await);
    let r = browser.get(&callback).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "signed in");
    browser
}

/// Whether `browser` still sees the secret page.
async fn signed_in(app: &TestApp, browser: &Browser) -> bool {
    let r = browser.get(&app.url("/secret")).await;
    match r.status() {
        StatusCode::OK => true,
        StatusCode::SEE_OTHER => false,
        other => panic!("/secret answered {other}"),
    }
}

/// The provider's front-channel request, from a browser without our cookie
/// (a third-party frame); `base` is `` or the gateway's prefix.
async fn front_channel(app: &TestApp, base: &str, query: &str) -> reqwest::Response {
    reqwest::get(app.url(&format!("{base}/frontchannel-logout{query}")))
        .await
        .unwrap()
}

/// The answer's headers: framed by the provider only, never cached.
fn assert_headers(op: &FakeOp, r: &reqwest::Response) {
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains(&format!("frame-ancestors {}", op.issuer())), "{csp}");
    assert!(!csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.headers()["cache-control"], "no-store");
}

/// A fake provider and the app configured for it.
async fn op_app() -> (FakeOp, TestApp) {
    crate::access::op_app(|_| {}, |_| {}).await
}

/// How many front-channel logouts the process's metrics counted.
fn front_channel_logouts() -> f64 {
    let scrape = oidc_gate::metrics::install().unwrap().render();
    scrape
        .lines()
        .find_map(|l| l.strip_prefix("oidc_gate_logouts_total{kind=\"front_channel\"} "))
        .map_or(0.0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn the_right_iss_and_sid_end_that_session_only() {
    let (op, app) = op_app().await;
    let counted = front_channel_logouts();
    // The same user, twice, in two provider sessions.
    let a = signed_in_with_sid(&op, &app, "sid-a").await;
    let b = signed_in_with_sid(&op, &app, "sid-b").await;
    assert_eq!(app.count("session_index").await, 2);

    let query = format!("?iss={}&sid=sid-a", urlencoding(op.issuer()));
    let r = front_channel(&app, "", &query).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_headers(&op, &r);
    assert!(text(r).await.contains("Signed out"));
    assert!(!signed_in(&app, &a).await, "the session of sid-a ended");
    assert!(signed_in(&app, &b).await, "the other session stays");
    assert_eq!(app.count("session_index").await, 1);
    // Counted (other tests of this process may count theirs meanwhile).
    assert!(front_channel_logouts() >= counted + 1.0);

    // Again: nothing left to end, the same page.
    let r = front_channel(&app, "", &query).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(signed_in(&app, &b).await);
}

#[tokio::test]
async fn a_wrong_or_missing_iss_or_sid_ends_nothing() {
    let (op, app) = op_app().await;
    let a = signed_in_with_sid(&op, &app, "sid-a").await;
    let iss = urlencoding(op.issuer());
    let long = "x".repeat(5000);
    let cases: Vec<(String, StatusCode)> = vec![
        (format!("?iss={iss}&sid=sid-b"), StatusCode::OK),
        (format!("?iss={iss}&sid=SID-A"), StatusCode::OK),
        (format!("?iss={iss}%2F&sid=sid-a"), StatusCode::BAD_REQUEST),
        (
            "?iss=https%3A%2F%2Fevil.example&sid=sid-a".into(),
            StatusCode::BAD_REQUEST,
        ),
        ("?sid=sid-a".into(), StatusCode::BAD_REQUEST),
        (format!("?iss={iss}"), StatusCode::BAD_REQUEST),
        (format!("?iss={iss}&sid="), StatusCode::BAD_REQUEST),
        (format!("?iss={iss}&sid={long}"), StatusCode::BAD_REQUEST),
        ("".into(), StatusCode::BAD_REQUEST),
        ("?iss=%FF%FE&sid=%00".into(), StatusCode::BAD_REQUEST),
    ];
    for (query, status) in cases {
        let r = front_channel(&app, "", &query).await;
        assert_eq!(r.status(), status, "{query}");
        assert_headers(&op, &r);
        assert!(signed_in(&app, &a).await, "{query} ended nothing");
    }
    assert_eq!(app.count("session_index").await, 1);
}

#[tokio::test]
async fn under_the_gateway_prefix_and_rate_limited() {
    let (op, app) = crate::access::op_app(
        |a| {
            a.gateway = crate::gateway::defaults();
            a.gateway.forward_auth = Some("true".into());
            a.rate_limits.backchannel_logout = "2/1h".into();
        },
        |b| b.sid = Some("sid-g".into()),
    )
    .await;
    let browser = Browser::new();
    crate::gateway::sign_in(&app, &browser, "/").await;
    assert_eq!(app.count("session_index").await, 1);
    // The app's path means nothing under the gateway.
    let query = format!("?iss={}&sid=sid-g", urlencoding(op.issuer()));
    let r = front_channel(&app, "/oauth2", "?sid=unknown").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = front_channel(&app, "/oauth2", &query).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_headers(&op, &r);
    assert_eq!(app.count("session_index").await, 0, "signed out");
    // Anyone can send these: like back-channel logout, they are rate limited.
    let r = front_channel(&app, "/oauth2", &query).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}
