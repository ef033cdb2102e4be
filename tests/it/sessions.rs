//! Sessions: logout (CSRF-protected, server-side, RP-initiated), survival
//! across restarts, and idle and absolute timeouts on an injected clock.

use std::time::Duration;

use reqwest::StatusCode;

use crate::support::*;

async fn csrf(app: &TestApp, browser: &Browser) -> String {
    logout_csrf(browser, &app.url("")).await
}

async fn secret_status(app: &TestApp, browser: &Browser) -> StatusCode {
    browser.get(&app.url("/secret")).await.status()
}

#[tokio::test]
async fn logout_ends_the_session_everywhere_and_at_the_provider() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    login(&app, &browser, None).await;
    let old_cookie = browser.session_id(&app).unwrap();
    assert_eq!(app.count("tower_sessions").await, 1);

    let r = browser
        .post_form(&app.url("/logout"), &[("csrf", &csrf(&app, &browser).await)])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let end_session = url::Url::parse(&redirect_target(&r)).unwrap();
    assert_eq!(end_session.path(), "/dev-provider/end_session");
    let q: std::collections::HashMap<_, _> = end_session.query_pairs().into_owned().collect();
    assert_eq!(q["post_logout_redirect_uri"], app.url("/"));
    assert_eq!(q["id_token_hint"].split('.').count(), 3, "the ID token as hint");
    let set_cookie = r
        .headers()
        .get("set-cookie")
        .expect("the cookie is cleared")
        .to_str()
        .unwrap();
    assert!(
        set_cookie.contains("Max-Age=0") || set_cookie.contains("expires=Thu, 01 Jan 1970"),
        "{set_cookie}"
    );

    // The provider sends the browser back to the index, logged out.
    let back = browser.get(end_session.as_str()).await;
    assert_eq!(redirect_target(&back), app.url("/"));
    let index = text(browser.get(&app.url("/")).await).await;
    assert!(index.contains("login from here"));

    // Server-side: the old cookie is worth nothing, the store forgot it.
    let thief = Browser::new();
    thief.set_cookie(&app, &format!("oidc_gate={old_cookie}"));
    assert_eq!(secret_status(&app, &thief).await, StatusCode::SEE_OTHER);
    assert_eq!(app.count("tower_sessions").await, 0);
    assert_eq!(app.count("session_index").await, 0);
}

#[tokio::test]
async fn logout_without_the_csrf_token_does_nothing() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    login(&app, &browser, None).await;
    let token = csrf(&app, &browser).await;

    for form in [
        vec![],
        vec![("csrf", "wrong")],
        vec![("csrf", &token[..token.len() - 1])],
    ] {
        let r = browser.post_form(&app.url("/logout"), &form).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{form:?}");
        assert_eq!(
            secret_status(&app, &browser).await,
            StatusCode::OK,
            "still logged in after {form:?}"
        );
    }
    // Right token, but sent from another site.
    let r = browser
        .client
        .post(app.url("/logout"))
        .header("origin", "https://evil.example")
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(secret_status(&app, &browser).await, StatusCode::OK);
    assert_eq!(app.count("session_index").await, 1);
}

#[tokio::test]
async fn login_survives_a_restart() {
    let mut first = TestApp::spawn().await;
    let keep = first.keep_data();
    let browser = Browser::new();
    login(&first, &browser, None).await;
    assert_eq!(secret_status(&first, &browser).await, StatusCode::OK);
    first.stop().await;

    // Same data directory, new process state (and a new port: cookies are per host).
    let second = TestApp::spawn_with(Options {
        data_dir: Some(first.data_dir.clone()),
        ..Default::default()
    })
    .await;
    let r = browser.get(&second.url("/secret")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(text(r).await.contains(SECRET));
    drop(keep);
}

#[tokio::test]
async fn idle_sessions_expire_and_active_ones_do_not() {
    let app = TestApp::spawn().await; // idle timeout 12h, absolute 7d
    let browser = Browser::new();
    login(&app, &browser, None).await;

    // Active every 11 hours: stays logged in well past 12 hours.
    for _ in 0..3 {
        app.clock.advance(Duration::from_secs(11 * 3600));
        assert_eq!(secret_status(&app, &browser).await, StatusCode::OK);
    }
    // Then 12 hours of silence.
    app.clock.advance(Duration::from_secs(12 * 3600));
    assert_eq!(secret_status(&app, &browser).await, StatusCode::SEE_OTHER);
    assert_eq!(
        app.count("tower_sessions").await,
        0,
        "the expired session is deleted from the store"
    );
    assert_eq!(app.count("session_index").await, 0);
}

#[tokio::test]
async fn sessions_end_at_the_absolute_lifetime_however_active() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    login(&app, &browser, None).await;
    let mut elapsed = 0;
    while elapsed + 10 * 3600 < 7 * 24 * 3600 {
        app.clock.advance(Duration::from_secs(10 * 3600));
        elapsed += 10 * 3600;
        assert_eq!(secret_status(&app, &browser).await, StatusCode::OK, "at {elapsed}s");
    }
    app.clock.advance(Duration::from_secs(10 * 3600));
    assert_eq!(secret_status(&app, &browser).await, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn short_timeouts_from_the_environment_apply() {
    let app = TestApp::spawn_with(Options {
        tweak: Some(|a| {
            a.session_idle_timeout = "5m".into();
            a.session_max_age = "1h".into();
        }),
        ..Default::default()
    })
    .await;
    let browser = Browser::new();
    login(&app, &browser, None).await;
    app.clock.advance(Duration::from_secs(4 * 60));
    assert_eq!(secret_status(&app, &browser).await, StatusCode::OK);
    app.clock.advance(Duration::from_secs(5 * 60));
    assert_eq!(secret_status(&app, &browser).await, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn https_public_url_gives_a_secure_host_prefixed_cookie_or_a_secure_domain_cookie() {
    use axum::routing::get;
    use oidc_gate::session::{CookieSettings, Lifetimes, layer};
    use tower::ServiceExt;

    let dir = tempfile::tempdir().unwrap();
    let config = oidc_gate::config::StoreConfig {
        database: oidc_gate::config::StoreUrl::Sqlite(dir.path().join("db.sqlite3")),
        sessions: None,
        schema: None,
        max_connections: 2,
        timeout: Duration::from_secs(3),
        session_cache: 0,
    };
    let store = oidc_gate::store::Store::open(&config).await.unwrap();
    let lifetimes = Lifetimes {
        idle: Duration::from_secs(3600),
        max_age: Duration::from_secs(86400),
    };
    for (https, domain, name, secure) in [
        (true, None, "__Host-oidc_gate=", true),
        (false, None, "oidc_gate=", false),
        // COOKIE_DOMAIN: shared with subdomains, so `__Secure-` (`__Host-` forbids a Domain).
        (true, Some(".example.com"), "__Secure-oidc_gate=", true),
    ] {
        let app = axum::Router::new()
            .route(
                "/",
                get(|s: tower_sessions::Session| async move {
                    s.insert("k", 1).await.unwrap();
                }),
            )
            .layer(layer(
                store.session_backend(),
                &CookieSettings::new(https, domain.map(str::to_owned)),
                lifetimes,
            ));
        let r = app
            .oneshot(axum::http::Request::new(axum::body::Body::empty()))
            .await
            .unwrap();
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(cookie.starts_with(name), "{cookie}");
        assert_eq!(cookie.contains("; Secure"), secure, "{cookie}");
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"));
        match domain {
            None => assert!(!cookie.contains("Domain"), "__Host- cookies carry no Domain: {cookie}"),
            Some(d) => assert!(
                cookie.contains(&format!("Domain={}", d.trim_start_matches('.'))),
                "{cookie}"
            ),
        }
    }
}
