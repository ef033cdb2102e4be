//! Rate limits per client address through the real server: a burst of
//! sign-ins meets `429` with `Retry-After` and a page (JSON for API clients
//! and the provider), other addresses and signed-in pages are not limited,
//! buckets refill, and the settings switch them off or refuse bad values.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::Value;

use crate::gateway::{defaults, sign_in};
use crate::support::*;

/// A cookie-less client from `from` (the whole of 127.0.0.0/8 is loopback).
fn client_from(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(from.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// `Retry-After` in seconds.
fn retry_after(r: &Response) -> u64 {
    let value = r.headers().get("retry-after").expect("Retry-After");
    value.to_str().unwrap().parse().expect("Retry-After in seconds")
}

/// Asserts the `429` page a browser is shown; returns its `Retry-After`.
async fn assert_limited_page(r: Response) -> u64 {
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait = retry_after(&r);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = text(r).await;
    assert!(page.contains("Too many attempts"), "{page}");
    assert!(page.contains("Reference: rate_limited<"), "{page}");
    wait
}

/// Asserts the `429` an API client (or the provider) is answered.
async fn assert_limited_json(r: Response) {
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait = retry_after(&r);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "too_many_requests");
    assert_eq!(body["reason"], "rate_limited");
    assert_eq!(body["retry_after"], wait);
}

/// GETs `path` from `client` `n` times; the statuses.
async fn statuses(client: &reqwest::Client, url: &str, n: usize) -> Vec<StatusCode> {
    let mut seen = Vec::with_capacity(n);
    for _ in 0..n {
        seen.push(client.get(url).send().await.unwrap().status());
    }
    seen
}

#[tokio::test]
async fn a_burst_of_logins_meets_429_until_the_bucket_refills_and_only_for_that_address() {
    // The default limits; the app's clock, moved forward by the test.
    let app = TestApp::spawn().await;
    let ada = client_from("127.0.0.1");
    let login = app.url("/login");
    let burst = statuses(&ada, &login, 200).await;
    // The bucket starts full: the default burst of 100 passes…
    assert!(burst[..100].iter().all(|s| *s == StatusCode::SEE_OTHER), "{burst:?}");
    // …and the rest meets the limit (refilled at 100 a minute, a few got through).
    let limited = burst.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert!(limited > 50, "{limited} of 200 limited: {burst:?}");
    assert!(
        burst
            .iter()
            .all(|s| [StatusCode::SEE_OTHER, StatusCode::TOO_MANY_REQUESTS].contains(s)),
        "{burst:?}"
    );

    let wait = assert_limited_page(ada.get(&login).send().await.unwrap()).await;
    assert!((1..=60).contains(&wait), "Retry-After: {wait}");
    let api = ada
        .get(&login)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_limited_json(api).await;

    // Another address has its own bucket.
    let grace = client_from("127.0.0.2");
    assert_eq!(grace.get(&login).send().await.unwrap().status(), StatusCode::SEE_OTHER);

    // Once Retry-After has passed, the next sign-in goes through.
    app.clock.advance(Duration::from_secs(wait));
    assert_eq!(ada.get(&login).send().await.unwrap().status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_callback_and_back_channel_logout_are_limited() {
    let app = TestApp::spawn_with(Options {
        tweak: Some(|a| {
            a.rate_limits.callback = "3/1h".into();
            a.rate_limits.backchannel_logout = "2/1h".into();
        }),
        ..Default::default()
    })
    .await;
    let browser = Browser::new();
    let callback = app.url("/callback?state=forged&code=forged");
    assert_eq!(
        statuses(&browser.client, &callback, 3).await,
        [StatusCode::BAD_REQUEST; 3],
        "refused on their merits"
    );
    assert_limited_page(browser.get(&callback).await).await;

    // The provider's servers get JSON, whatever they accept.
    let logout = app.url("/backchannel-logout");
    for _ in 0..2 {
        let r = browser.post_form(&logout, &[("logout_token", "forged")]).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
    let r = browser
        .client
        .post(&logout)
        .header("Accept", "text/html")
        .form(&[("logout_token", "forged")])
        .send()
        .await
        .unwrap();
    assert_limited_json(r).await;
    // Starting a sign-in has its own bucket.
    assert_eq!(browser.get(&app.url("/login")).await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn signed_in_pages_are_never_limited() {
    let app = TestApp::spawn_with(Options {
        tweak: Some(|a| {
            a.rate_limits.login = "1/1h".into();
            a.rate_limits.callback = "1/1h".into();
        }),
        ..Default::default()
    })
    .await;
    let browser = Browser::new();
    assert_eq!(login(&app, &browser, None).await.status(), StatusCode::SEE_OTHER);
    let pages = statuses(&browser.client, &app.url("/secret"), 300).await;
    assert!(pages.iter().all(|s| *s == StatusCode::OK), "{pages:?}");
    // The sign-in routes' limits were in force all along.
    assert_limited_page(browser.get(&app.url("/login")).await).await;
}

#[tokio::test]
async fn a_protected_page_starts_sign_ins_in_the_login_bucket() {
    let app = TestApp::spawn_with(Options {
        tweak: Some(|a| a.rate_limits.login = "3/1h".into()),
        ..Default::default()
    })
    .await;
    // An anonymous flood on a protected page: sign-ins, limited as /login is.
    let ada = client_from("127.0.0.1");
    for _ in 0..2 {
        to_provider(&ada.get(app.url("/secret")).send().await.unwrap());
    }
    // The same bucket as /login's: one left.
    assert_eq!(
        ada.get(app.url("/login")).send().await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    let wait = assert_limited_page(ada.get(app.url("/secret")).send().await.unwrap()).await;
    assert_limited_page(ada.get(app.url("/login")).send().await.unwrap()).await;
    // API clients are told to sign in (401), as before, and take nothing.
    let api = ada
        .get(app.url("/secret"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    // Another address has its own bucket; the full one refills.
    to_provider(&client_from("127.0.0.2").get(app.url("/secret")).send().await.unwrap());
    app.clock.advance(Duration::from_secs(wait));
    to_provider(&ada.get(app.url("/secret")).send().await.unwrap());
}

#[tokio::test]
async fn switched_off_nothing_is_limited() {
    let app = TestApp::spawn_with(Options {
        tweak: Some(|a| {
            a.rate_limits.enabled = "false".into();
            a.rate_limits.login = "1/1h".into();
        }),
        ..Default::default()
    })
    .await;
    let logins = statuses(&client_from("127.0.0.1"), &app.url("/login"), 250).await;
    assert!(logins.iter().all(|s| *s == StatusCode::SEE_OTHER), "{logins:?}");

    let app = TestApp::spawn_with(Options {
        tweak: Some(|a| a.rate_limits.login = "off".into()),
        ..Default::default()
    })
    .await;
    let logins = statuses(&client_from("127.0.0.1"), &app.url("/login"), 250).await;
    assert!(logins.iter().all(|s| *s == StatusCode::SEE_OTHER), "{logins:?}");
}

/// The upstream's URL, for the gateway's `tweak` function pointer.
static UPSTREAM: Mutex<String> = Mutex::new(String::new());

#[tokio::test]
async fn the_gateway_limits_its_sign_in_routes_and_never_its_proxied_pages_or_forward_auth() {
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    *UPSTREAM.lock().unwrap() = format!("http://{}", upstream.local_addr().unwrap());
    let pages = axum::Router::new().fallback(|| async { "the app's page" });
    tokio::spawn(async move { axum::serve(upstream, pages).await });
    let (_op, app) = crate::gateway::gateway(|a| {
        a.gateway = defaults();
        a.gateway.upstream_url = Some(UPSTREAM.lock().unwrap().clone());
        a.rate_limits.login = "2/1h".into();
        a.rate_limits.callback = "2/1h".into();
        a.rate_limits.backchannel_logout = "1/1h".into();
    })
    .await;

    // Signed in (one start, one callback), the app's pages and /oauth2/auth as often as wanted.
    let browser = Browser::new();
    sign_in(&app, &browser, "/dashboards").await;
    let proxied = statuses(&browser.client, &app.url("/dashboards"), 300).await;
    assert!(proxied.iter().all(|s| *s == StatusCode::OK), "{proxied:?}");
    let asked = statuses(&browser.client, &app.url("/oauth2/auth"), 300).await;
    assert!(asked.iter().all(|s| *s == StatusCode::ACCEPTED), "{asked:?}");

    // The sign-in routes under ROUTE_PREFIX are limited: one left of each.
    let stranger = Browser::new();
    let start = app.url("/oauth2/start?rd=/");
    assert_eq!(stranger.get(&start).await.status(), StatusCode::SEE_OTHER);
    assert_limited_page(stranger.get(&start).await).await;
    // An anonymous proxied page starts a sign-in: in the same bucket.
    assert_limited_page(stranger.get(&app.url("/dashboards")).await).await;
    let callback = app.url("/oauth2/callback?state=forged&code=forged");
    assert_eq!(stranger.get(&callback).await.status(), StatusCode::BAD_REQUEST);
    assert_limited_page(stranger.get(&callback).await).await;
    let logout = app.url("/oauth2/backchannel-logout");
    let token = [("logout_token", "forged")];
    assert_eq!(
        stranger.post_form(&logout, &token).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_limited_json(stranger.post_form(&logout, &token).await).await;

    // The signed-in browser's pages still pass.
    assert_eq!(browser.get(&app.url("/dashboards")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_bad_setting_stops_start_up_naming_the_variable() {
    for (var, value) in [("RATE_LIMIT_LOGIN", "100"), ("RATE_LIMITS", "maybe")] {
        let dir = tempfile::tempdir().unwrap();
        let out = tokio::process::Command::new(crate::support::process::BIN)
            .env_clear()
            .env(var, value)
            .current_dir(dir.path())
            .output()
            .await
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}={value} started");
        assert!(said.contains(&format!("{var} must be")), "{var}: {said}");
    }
}
