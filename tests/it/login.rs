//! The login flow against the development provider: the happy path, what
//! anonymous users get, and every way a callback can be wrong.

use reqwest::StatusCode;

use crate::support::*;

#[tokio::test]
async fn full_login_opens_the_secret_page() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();

    let index = text(browser.get(&app.url("/")).await).await;
    assert!(
        index.contains(">login from here</a>") && index.contains("href=\"/login\""),
        "{index}"
    );

    // Straight to the provider (no stop at /login), and back to /secret.
    let r = browser.get(&app.url("/secret")).await;
    let authorize = to_provider(&r);
    assert!(
        authorize.starts_with(&app.url("/dev-provider/authorize?")),
        "{authorize}"
    );
    assert_eq!(query_param(&authorize, "redirect_uri"), app.url("/callback"));
    let callback = finish_login(&browser, &authorize).await;
    assert_eq!(callback.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&callback), "/secret");

    let secret = browser.get(&app.url("/secret")).await;
    assert_eq!(secret.status(), StatusCode::OK);
    assert!(text(secret).await.contains(SECRET));

    let index = text(browser.get(&app.url("/")).await).await;
    assert!(
        index.contains("Ada Lovelace") && index.contains("ada@example.com"),
        "{index}"
    );
    assert!(
        index.contains("href=\"/secret\"") && index.contains("Log out"),
        "{index}"
    );
    assert_eq!(app.count("users").await, 1);
    assert_eq!(app.count("session_index").await, 1);
}

#[tokio::test]
async fn the_authorization_request_carries_pkce_state_and_nonce() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let url = url::Url::parse(&start_login(&app, &browser, None).await).unwrap();
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["redirect_uri"], app.url("/callback"));
    for key in ["state", "nonce", "code_challenge"] {
        // 32 random bytes, base64url: 256 bits.
        assert!(q[key].len() >= 43, "{key} too short: {}", q[key]);
    }
    let again = url::Url::parse(&start_login(&app, &browser, None).await).unwrap();
    let q2: std::collections::HashMap<_, _> = again.query_pairs().into_owned().collect();
    assert_ne!(q["state"], q2["state"]);
    assert_ne!(q["nonce"], q2["nonce"]);
}

#[tokio::test]
async fn anonymous_api_requests_get_401_not_a_redirect() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let json = browser
        .client
        .get(app.url("/secret"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), StatusCode::UNAUTHORIZED);
    assert!(json.headers().get("location").is_none());
    let xhr = browser
        .client
        .get(app.url("/secret"))
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .unwrap();
    assert_eq!(xhr.status(), StatusCode::UNAUTHORIZED);
    let deep = browser.get(&app.url("/secret?x=1&y=a%20b")).await;
    to_provider(&deep);
}

#[tokio::test]
async fn deep_link_comes_back_to_the_same_url() {
    let app = TestApp::spawn().await;
    for deep in ["/secret?x=1", "/secret?x=1&y=a%20b+c&z=%2F"] {
        let browser = Browser::new();
        let r = browser.get(&app.url(deep)).await;
        let authorize = to_provider(&r);
        let done = finish_login(&browser, &authorize).await;
        assert_eq!(location(&done), deep);
    }
}

#[tokio::test]
async fn session_id_changes_at_login() {
    let app = TestApp::spawn().await;
    // An attacker signs in, then plants their session id in the victim's browser.
    let attacker = Browser::new();
    let authorize = start_login(&app, &attacker, None).await;
    let callback = dev_provider_sign_in(&attacker, &authorize, "Eve", "eve@example.com", "sign_in").await;
    attacker.get(&callback).await;
    let planted = attacker.session_id(&app).expect("the attacker's session");
    let victim = Browser::new();
    victim.set_cookie(&app, &format!("oidc_gate={planted}"));
    let authorize = start_login(&app, &victim, None).await;
    let callback = dev_provider_sign_in(&victim, &authorize, "Ada", "ada@example.com", "sign_in").await;
    victim.get(&callback).await;
    let after = victim.session_id(&app).expect("a session cookie after login");
    assert_ne!(planted, after);

    // The planted id is worth nothing now, to the victim's login or otherwise.
    let holder = Browser::new();
    holder.set_cookie(&app, &format!("oidc_gate={planted}"));
    assert_eq!(holder.get(&app.url("/secret")).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(victim.get(&app.url("/secret")).await.status(), StatusCode::OK);
    let index = text(victim.get(&app.url("/")).await).await;
    assert!(
        index.contains("ada@example.com") && !index.contains("eve@example.com"),
        "{index}"
    );
    assert_eq!(
        app.count("session_index").await,
        1,
        "only the victim's session is linked"
    );
}

#[tokio::test]
async fn a_login_in_progress_is_an_encrypted_cookie_not_a_session() {
    let app = TestApp::spawn().await;
    // /login, and a protected page, which starts the sign-in as /login does.
    for path in ["/login", "/secret"] {
        let browser = Browser::new();
        let r = browser.get(&app.url(path)).await;
        let cookies = set_cookies(&r);
        assert_eq!(cookies.len(), 1, "{path}: {cookies:?}");
        let cookie = &cookies[0];
        assert!(cookie.starts_with("oidc_gate_login_"), "{cookie}");
        for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=600"] {
            assert!(cookie.contains(attribute), "{attribute} in {cookie}");
        }
        let authorize = redirect_target(&r);
        for secret in ["state", "nonce"] {
            let value = query_param(&authorize, secret);
            assert!(!cookie.contains(&value), "{secret} in clear in {cookie}");
        }
        assert_eq!(
            app.count("tower_sessions").await,
            0,
            "nothing stored for an anonymous {path}"
        );
    }
}

#[tokio::test]
async fn anonymous_logins_fill_no_store_and_no_header() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    for _ in 0..50 {
        assert_eq!(browser.get(&app.url("/login")).await.status(), StatusCode::SEE_OTHER);
    }
    assert_eq!(app.count("tower_sessions").await, 0);
    let sent = browser.cookies(&app.url("/"));
    assert_eq!(
        sent.matches("oidc_gate_login_").count(),
        3,
        "the newest three logins: {sent}"
    );
    // The newest still completes.
    let authorize = start_login(&app, &browser, None).await;
    let callback = dev_provider_sign_in(&browser, &authorize, "Ada", "ada@example.com", "sign_in").await;
    assert_eq!(browser.get(&callback).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.count("tower_sessions").await, 1);
}

#[tokio::test]
async fn session_cookie_is_http_only_lax_and_opaque() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let done = login(&app, &browser, None).await;
    let cookies = set_cookies(&done);
    let cookie = cookies
        .iter()
        .find(|c| c.starts_with("oidc_gate="))
        .unwrap_or_else(|| panic!("a session cookie in {cookies:?}"));
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    let value = cookie.split(';').next().unwrap().trim_start_matches("oidc_gate=");
    assert!(
        value.len() >= 22 && !value.contains('.'),
        "an opaque random id, not data: {value}"
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("oidc_gate_login_") && c.contains("Max-Age=0")),
        "the login's cookie is removed: {cookies:?}"
    );
}

#[tokio::test]
async fn a_copied_login_cookie_cannot_replay_the_callback() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let authorize = start_login(&app, &browser, None).await;
    let copied = browser.cookies(&app.url("/"));
    let callback = dev_provider_sign_in(&browser, &authorize, "Ada", "ada@example.com", "sign_in").await;
    assert_eq!(browser.get(&callback).await.status(), StatusCode::SEE_OTHER);
    let thief = Browser::new();
    thief.set_cookie(&app, &copied);
    let r = thief.get(&callback).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(text(r).await.contains("state_mismatch"));
    assert_logged_out(&app, &thief).await;
}

async fn assert_logged_out(app: &TestApp, browser: &Browser) {
    let r = browser.get(&app.url("/secret")).await;
    assert!(is_to_provider(&r), "still logged out: {}", r.status());
}

#[tokio::test]
async fn callback_without_state_is_400() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    start_login(&app, &browser, None).await;
    let r = browser.get(&app.url("/callback?code=abc")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body = text(r).await;
    assert!(
        body.contains("state_missing") && body.contains("Sign in again"),
        "{body}"
    );
    assert_logged_out(&app, &browser).await;
}

#[tokio::test]
async fn callback_with_wrong_state_is_400_and_consumes_nothing_useful() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let authorize = start_login(&app, &browser, None).await;
    let callback = dev_provider_sign_in(&browser, &authorize, "Ada", "ada@example.com", "sign_in").await;
    let forged = callback.replace("state=", "state=x");
    let r = browser.get(&forged).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(text(r).await.contains("state_mismatch"));
    assert_logged_out(&app, &browser).await;
    assert_eq!(app.count("users").await, 0);
}

#[tokio::test]
async fn callback_in_another_browser_is_refused() {
    // A victim's callback URL replayed by someone else: their session never
    // started this login.
    let app = TestApp::spawn().await;
    let victim = Browser::new();
    let authorize = start_login(&app, &victim, None).await;
    let callback = dev_provider_sign_in(&victim, &authorize, "Ada", "ada@example.com", "sign_in").await;
    let attacker = Browser::new();
    let r = attacker.get(&callback).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_logged_out(&app, &attacker).await;
    assert_eq!(app.count("users").await, 0);
}

#[tokio::test]
async fn replayed_callback_is_refused() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let authorize = start_login(&app, &browser, None).await;
    let callback = dev_provider_sign_in(&browser, &authorize, "Ada", "ada@example.com", "sign_in").await;
    assert_eq!(browser.get(&callback).await.status(), StatusCode::SEE_OTHER);
    let again = browser.get(&callback).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert!(text(again).await.contains("state_mismatch"));
}

/// A used code sent again with a fresh login cookie: the development
/// provider refuses it (`invalid_grant`), and that is a 400, not a 502.
#[tokio::test]
async fn a_reused_code_is_400_code_rejected() {
    let app = TestApp::spawn().await;
    let victim = Browser::new();
    let authorize = start_login(&app, &victim, None).await;
    let callback = dev_provider_sign_in(&victim, &authorize, "Ada", "ada@example.com", "sign_in").await;
    assert_eq!(victim.get(&callback).await.status(), StatusCode::SEE_OTHER);
    let code = query_param(&callback, "code");

    let attacker = Browser::new();
    let state = query_param(&start_login(&app, &attacker, None).await, "state");
    let replay = format!("/callback?state={}&code={}", urlencoding(&state), urlencoding(&code));
    let r = attacker.get(&app.url(&replay)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let page = text(r).await;
    assert!(page.contains("Reference: code_rejected<"), "{page}");
    assert!(page.contains("href=\"/login\">Sign in again"), "{page}");
    assert_logged_out(&app, &attacker).await;
    assert_eq!(app.count("session_index").await, 1, "the victim's login only");
}

#[tokio::test]
async fn state_is_single_use_even_when_the_callback_fails() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let authorize = start_login(&app, &browser, None).await;
    let callback = dev_provider_sign_in(&browser, &authorize, "Ada", "ada@example.com", "sign_in").await;
    // Same state, no code: fails, and burns the state.
    let state = query_param(&callback, "state");
    let r = browser
        .get(&app.url(&format!("/callback?state={}", urlencoding(&state))))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(text(r).await.contains("code_missing"));
    let r = browser.get(&callback).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "the real callback now fails too");
    assert_logged_out(&app, &browser).await;
}

#[tokio::test]
async fn cancel_at_the_provider_shows_a_clear_page() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let authorize = start_login(&app, &browser, None).await;
    let callback = dev_provider_sign_in(&browser, &authorize, "Ada", "ada@example.com", "cancel").await;
    assert!(callback.contains("error=access_denied"));
    let r = browser.get(&callback).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body = text(r).await;
    assert!(
        body.contains("Sign-in was cancelled") && body.contains("href=\"/login\""),
        "{body}"
    );
    assert_logged_out(&app, &browser).await;
    assert_eq!(app.count("users").await, 0);
}

#[tokio::test]
async fn provider_error_and_wrong_iss_are_4xx() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let authorize = start_login(&app, &browser, None).await;
    let state = query_param(&authorize, "state");
    let r = browser
        .get(&app.url(&format!(
            "/callback?state={}&error=server_error&error_description=boom",
            urlencoding(&state)
        )))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(text(r).await.contains("provider_error"));

    let authorize = start_login(&app, &browser, None).await;
    let callback = dev_provider_sign_in(&browser, &authorize, "Ada", "ada@example.com", "sign_in").await;
    let mut url = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .into_owned()
        .map(|(k, v)| {
            if k == "iss" {
                (k, "https://evil.example".into())
            } else {
                (k, v)
            }
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let r = browser.get(url.as_str()).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(text(r).await.contains("iss_mismatch"));
    assert_logged_out(&app, &browser).await;
}

#[tokio::test]
async fn open_redirects_land_on_the_index() {
    let app = TestApp::spawn().await;
    let cases = [
        ("//evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("/\t/evil.example", "/"),
        // Encoded slashes are a path on this site, not another host.
        ("/%2F%2Fevil.example", "/%2F%2Fevil.example"),
        ("%2F%2Fevil.example", "/%2F%2Fevil.example"),
    ];
    for (evil, expected) in cases {
        let browser = Browser::new();
        let r = login(&app, &browser, Some(evil)).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&r), expected, "next={evil:?}");
        let landing = url::Url::parse(&redirect_target(&r)).unwrap();
        assert_eq!(landing.host_str(), Some("127.0.0.1"), "next={evil:?}");
    }
}

#[tokio::test]
async fn hostile_input_never_gets_a_5xx() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    start_login(&app, &browser, None).await;
    let long = "a".repeat(20_000);
    let paths = [
        "/callback".to_owned(),
        "/callback?state=".to_owned(),
        "/callback?state=%FF%FE&code=%00".to_owned(),
        "/callback?state[]=1&code[]=2".to_owned(),
        format!("/callback?state={long}&code={long}"),
        "/callback?state=a&state=b&code=c".to_owned(),
        "/login?next=%FF".to_owned(),
        "/login?next=".to_owned(),
        "/secret/../secret".to_owned(),
        "/nope".to_owned(),
    ];
    for p in paths {
        let r = browser.get(&app.url(&p)).await;
        assert!(
            r.status().is_client_error() || r.status().is_redirection(),
            "{p}: {}",
            r.status()
        );
    }
    for body in ["", "csrf=", "\u{0}\u{1}", "csrf=%FF"] {
        let r = browser.client.post(app.url("/logout")).body(body).send().await.unwrap();
        assert!(
            r.status().is_redirection() || r.status().is_client_error(),
            "{body:?}: {}",
            r.status()
        );
    }
}

#[tokio::test]
async fn healthz_answers_ok() {
    let app = TestApp::spawn().await;
    let r = Browser::new().get(&app.url("/healthz")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(text(r).await, "ok");
}

#[tokio::test]
async fn pages_carry_security_headers() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    login(&app, &browser, None).await;
    let r = browser.get(&app.url("/secret")).await;
    let h = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(h("cache-control"), "no-store", "protected pages are never cached");
    assert!(h("content-security-policy").contains("frame-ancestors 'none'"));
    assert_eq!(h("x-content-type-options"), "nosniff");
    // Not `no-referrer`: with it, browsers send `Origin: null` on the logout
    // form, which the logout's origin check rightly refuses.
    assert_eq!(h("referrer-policy"), "same-origin");
    assert!(h("content-type").starts_with("text/html"));
    for name in [
        "cache-control",
        "content-security-policy",
        "x-content-type-options",
        "referrer-policy",
    ] {
        assert_eq!(r.headers().get_all(name).iter().count(), 1, "{name}");
    }

    // An answer that sets one of them itself keeps its own and gets the others.
    let css = browser.get(&app.url("/static/style.css")).await;
    let cache: Vec<_> = css.headers().get_all("cache-control").iter().collect();
    assert_eq!(cache, ["public, max-age=3600"]);
    assert_eq!(css.headers()["x-content-type-options"], "nosniff");
    assert_eq!(css.headers()["referrer-policy"], "same-origin");
    assert!(css.headers().contains_key("content-security-policy"));
    assert!(css.headers()["content-type"].to_str().unwrap().starts_with("text/css"));
}

#[tokio::test]
async fn signing_in_again_updates_the_profile() {
    let app = TestApp::spawn().await;
    let first = Browser::new();
    login(&app, &first, None).await;
    assert!(text(first.get(&app.url("/")).await).await.contains("Ada Lovelace"));

    // The same person (same email, so the same subject at the development provider), new name.
    let second = Browser::new();
    let authorize = start_login(&app, &second, None).await;
    let callback = dev_provider_sign_in(&second, &authorize, "Ada King", "ada@example.com", "sign_in").await;
    second.get(&callback).await;
    assert_eq!(app.count("users").await, 1, "one user, updated");
    for browser in [&first, &second] {
        let index = text(browser.get(&app.url("/")).await).await;
        assert!(index.contains("Ada King"), "{index}");
    }
}

#[tokio::test]
async fn logins_in_progress_live_ten_minutes_sessions_the_idle_timeout() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let r = browser.get(&app.url("/login")).await;
    let cookie = set_cookies(&r).join(" | ");
    assert!(
        cookie.contains("Max-Age=600"),
        "a login in progress lives 10 minutes: {cookie}"
    );
    let done = login(&app, &browser, None).await;
    let cookies = set_cookies(&done);
    let session = cookies.iter().find(|c| c.starts_with("oidc_gate=")).unwrap();
    assert!(
        session.contains("Max-Age=43200"),
        "a logged-in session gets the idle timeout: {session}"
    );
}

#[tokio::test]
async fn concurrent_logins_all_succeed_on_sqlite() {
    // Logins write several rows each; concurrent ones must not wait each
    // other out (a 1 s store timeout would turn a lock wait into a 503).
    let app = TestApp::spawn_with(Options {
        store: StoreEnv {
            store_timeout: Some("1s".into()),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let app = std::sync::Arc::new(app);
    let mut logins = tokio::task::JoinSet::new();
    for i in 0..24 {
        let app = app.clone();
        logins.spawn(async move {
            let browser = Browser::new();
            let authorize = start_login(&app, &browser, None).await;
            let email = format!("user{i}@example.com");
            let callback = dev_provider_sign_in(&browser, &authorize, "User", &email, "sign_in").await;
            let r = browser.get(&callback).await;
            assert_eq!(r.status(), StatusCode::SEE_OTHER, "login {i}: {}", text(r).await);
            assert_eq!(browser.get(&app.url("/secret")).await.status(), StatusCode::OK);
        });
    }
    while let Some(done) = logins.join_next().await {
        done.unwrap();
    }
    assert_eq!(app.count("users").await, 24);
}
