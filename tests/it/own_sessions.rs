//! "Your sessions" (`/sessions`): a person's sessions listed with their
//! browser, address and times, "this device" marked; the others ended one
//! by one or all at once, signed out at their next request; nothing of
//! another person shown or ended. On SQLite, PostgreSQL and Redis.

use std::sync::Arc;

use oidc_gate::store::{SessionLink, SignedInFrom, Store, UserProfile};
use reqwest::StatusCode;
use reqwest::cookie::Jar;
use tower_sessions::SessionStore;
use tower_sessions::session::{Id, Record};

use crate::scale::PgSchema;
use crate::stores::{backends, service_url};
use crate::support::*;

pub const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
pub const CHROME: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
pub const SAFARI: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) \
                          Version/17.4 Safari/605.1.15";

/// A browser that sends `user_agent`.
pub fn browser_as(user_agent: &str) -> Browser {
    let jar = Arc::new(Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(user_agent)
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .unwrap();
    Browser { client, jar }
}

/// Signs `browser` in as `email` through the development provider.
pub async fn sign_in_as(app: &TestApp, browser: &Browser, email: &str) {
    let authorize = start_login(app, browser, None).await;
    let callback = dev_provider_sign_in(browser, &authorize, email, email, "sign_in").await;
    let r = browser.get(&callback).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "signed in as {email}");
}

/// Whether `browser` is signed in (the secret page answers, or sends it to sign in).
pub async fn signed_in(app: &TestApp, browser: &Browser) -> bool {
    let status = browser.get(&app.url("/secret")).await.status();
    assert!(status == StatusCode::OK || status == StatusCode::SEE_OTHER, "{status}");
    status == StatusCode::OK
}

/// The values of every `<input name="{name}">` of `html`, in order.
fn inputs(html: &str, name: &str) -> Vec<String> {
    let marker = format!("name=\"{name}\" value=\"");
    html.match_indices(&marker)
        .map(|(i, _)| {
            let rest = &html[i + marker.len()..];
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect()
}

/// The sessions page of `browser` (200), its CSRF token, and the handles
/// of its end buttons.
async fn page(app: &TestApp, browser: &Browser, path: &str) -> (String, String, Vec<String>) {
    let r = browser.get(&app.url(path)).await;
    assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let html = text(r).await;
    let csrf = inputs(&html, "csrf").first().cloned().unwrap_or_default();
    let handles = inputs(&html, "session");
    (html, csrf, handles)
}

/// Two sessions of Ada (Firefox, Chrome) and one of Grace (Safari).
async fn three_sessions(app: &TestApp) -> (Browser, Browser, Browser) {
    let (firefox, chrome, grace) = (browser_as(FIREFOX), browser_as(CHROME), browser_as(SAFARI));
    sign_in_as(app, &firefox, "ada@example.com").await;
    sign_in_as(app, &chrome, "ada@example.com").await;
    sign_in_as(app, &grace, "grace@example.com").await;
    (firefox, chrome, grace)
}

/// The page's whole story on one app: listed, this device marked, the
/// other ended, nothing of Grace's seen or ended.
async fn the_page_lists_and_ends_sessions(app: &TestApp, name: &str) {
    let (firefox, chrome, grace) = three_sessions(app).await;
    let (html, csrf, handles) = page(app, &firefox, "/sessions").await;
    assert!(html.contains("Firefox 128 on Linux"), "{name}: {html}");
    assert!(html.contains("Chrome 124 on Windows 10"), "{name}: {html}");
    assert!(html.contains("127.0.0.1"), "{name}");
    assert!(!html.contains("Safari"), "{name}: nothing of Grace's: {html}");
    assert!(!html.contains("Mac OS"), "{name}: nothing of Grace's");
    assert_eq!(html.matches("this device").count(), 1, "{name}");
    let this = html.find("this device").unwrap();
    assert!(html.find("Firefox").unwrap() < this, "{name}: this device is Firefox");
    assert!(this < html.find("Chrome").unwrap(), "{name}: listed first");
    for cookie in [&firefox, &chrome, &grace].map(|b| b.session_id(app).unwrap()) {
        assert!(!html.contains(&cookie), "{name}: no session id on the page");
    }
    assert_eq!(handles.len(), 1, "{name}: one button, for the other session");

    let r = firefox
        .post_form(&app.url("/sessions/end"), &[("csrf", &csrf), ("session", &handles[0])])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{name}");
    assert_eq!(location(&r), "/sessions");
    assert!(!signed_in(app, &chrome).await, "{name}: ended at its next request");
    assert!(signed_in(app, &firefox).await, "{name}: this one stays");
    assert!(signed_in(app, &grace).await, "{name}: Grace's stays");
    let (html, _, handles) = page(app, &firefox, "/sessions").await;
    assert!(!html.contains("Chrome"), "{name}: gone from the list");
    assert!(handles.is_empty() && html.contains("signed in nowhere else"), "{name}");
}

#[tokio::test]
async fn the_page_lists_a_persons_sessions_and_ends_the_other_on_sqlite() {
    let app = TestApp::spawn().await;
    the_page_lists_and_ends_sessions(&app, "sqlite").await;
}

#[tokio::test]
async fn the_page_lists_a_persons_sessions_and_ends_the_other_on_postgres_and_redis() {
    let Some(pg) = service_url("TEST_DATABASE_URL") else {
        return;
    };
    let schema = PgSchema::new(&pg);
    let app = TestApp::spawn_with(Options {
        store: StoreEnv {
            database_url: Some(pg.clone()),
            database_schema: Some(schema.name.clone()),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    the_page_lists_and_ends_sessions(&app, "postgres").await;
    drop(app);
    if let Some(redis) = service_url("TEST_REDIS_URL") {
        let app = TestApp::spawn_with(Options {
            store: StoreEnv {
                database_url: Some(pg.clone()),
                database_schema: Some(schema.name.clone()),
                session_store_url: Some(redis),
                ..Default::default()
            },
            ..Default::default()
        })
        .await;
        the_page_lists_and_ends_sessions(&app, "redis").await;
    }
    schema.drop().await;
}

#[tokio::test]
async fn end_all_other_sessions_keeps_this_one_and_other_peoples() {
    let app = TestApp::spawn().await;
    let (firefox, chrome, grace) = three_sessions(&app).await;
    let curl = browser_as("curl/8.5.0");
    sign_in_as(&app, &curl, "ADA@example.com").await;
    let (html, csrf, handles) = page(&app, &chrome, "/sessions").await;
    assert_eq!(handles.len(), 2, "{html}");
    assert!(html.contains("HTTP Library curl"), "curl: {html}");

    let r = chrome
        .post_form(&app.url("/sessions/end-others"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(!signed_in(&app, &firefox).await);
    assert!(!signed_in(&app, &curl).await);
    assert!(signed_in(&app, &chrome).await);
    assert!(signed_in(&app, &grace).await);
    assert_eq!(app.count("tower_sessions").await, 2);
    assert_eq!(app.count("session_index").await, 2);
}

#[tokio::test]
async fn ending_without_the_right_csrf_token_or_from_another_site_is_refused() {
    let app = TestApp::spawn().await;
    let (firefox, chrome, _grace) = three_sessions(&app).await;
    let (_, csrf, handles) = page(&app, &firefox, "/sessions").await;
    let handle = handles[0].as_str();
    for (path, form) in [
        ("/sessions/end", vec![("session", handle)]),
        ("/sessions/end", vec![("csrf", "wrong"), ("session", handle)]),
        (
            "/sessions/end",
            vec![("csrf", &csrf[..csrf.len() - 1]), ("session", handle)],
        ),
        ("/sessions/end-others", vec![]),
        ("/sessions/end-others", vec![("csrf", "wrong")]),
    ] {
        let r = firefox.post_form(&app.url(path), &form).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path} {form:?}");
    }
    let r = firefox
        .client
        .post(app.url("/sessions/end-others"))
        .header("Origin", "https://evil.example")
        .form(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "another site");
    // Chrome's own token is no good in Firefox's session either.
    let (_, chrome_csrf, _) = page(&app, &chrome, "/sessions").await;
    let r = firefox
        .post_form(&app.url("/sessions/end-others"), &[("csrf", &chrome_csrf)])
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(signed_in(&app, &chrome).await, "nothing ended");
    assert_eq!(app.count("tower_sessions").await, 3);
}

#[tokio::test]
async fn another_persons_session_is_never_ended() {
    let app = TestApp::spawn().await;
    let (firefox, chrome, grace) = three_sessions(&app).await;
    let grace_too = browser_as(FIREFOX);
    sign_in_as(&app, &grace_too, "grace@example.com").await;
    // Grace's page names her Safari session; Ada posts that name.
    let (_, _, grace_handles) = page(&app, &grace_too, "/sessions").await;
    let (_, csrf, _) = page(&app, &firefox, "/sessions").await;
    for handle in [
        grace_handles[0].as_str(),
        "",
        "nonsense",
        &grace.session_id(&app).unwrap(),
    ] {
        let r = firefox
            .post_form(&app.url("/sessions/end"), &[("csrf", &csrf), ("session", handle)])
            .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{handle:?}");
    }
    assert!(signed_in(&app, &grace).await);
    assert!(signed_in(&app, &grace_too).await);
    assert!(signed_in(&app, &chrome).await);
    assert_eq!(app.count("tower_sessions").await, 4);
}

#[tokio::test]
async fn the_page_is_for_signed_in_people_only() {
    let app = TestApp::spawn().await;
    let anonymous = Browser::new();
    // Opened directly: straight to sign in, and back to the page.
    let r = anonymous.get(&app.url("/sessions")).await;
    let done = finish_login(&anonymous, &to_provider(&r)).await;
    assert_eq!(location(&done), "/sessions");
    assert_eq!(anonymous.get(&app.url("/sessions")).await.status(), StatusCode::OK);
    let anonymous = Browser::new();
    let r = anonymous
        .post_form(&app.url("/sessions/end-others"), &[("csrf", "x")])
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The index links to it.
    let ada = Browser::new();
    login(&app, &ada, None).await;
    assert!(text(ada.get(&app.url("/")).await).await.contains("href=\"/sessions\""));
}

#[tokio::test]
async fn the_gateway_serves_the_page_under_its_prefix() {
    let app = TestApp::spawn_with(Options {
        tweak: Some(|a| {
            a.gateway = crate::gateway::defaults();
            a.gateway.forward_auth = Some("true".into());
        }),
        ..Default::default()
    })
    .await;
    let (one, two) = (browser_as(FIREFOX), browser_as(CHROME));
    for browser in [&one, &two] {
        let start = browser.get(&app.url("/oauth2/start?rd=/app")).await;
        let authorize = redirect_target(&start);
        let callback = dev_provider_sign_in(browser, &authorize, "Ada", "ada@example.com", "sign_in").await;
        browser.get(&callback).await;
    }
    // Opened directly: straight to sign in (as someone else than Ada, whose
    // two sessions follow), and back to the page.
    let anonymous = Browser::new();
    let r = anonymous.get(&app.url("/oauth2/sessions")).await;
    let callback = dev_provider_sign_in(&anonymous, &to_provider(&r), "Grace", "grace@example.com", "sign_in").await;
    assert_eq!(location(&anonymous.get(&callback).await), "/oauth2/sessions");
    let (html, csrf, handles) = page(&app, &one, "/oauth2/sessions").await;
    assert!(html.contains("action=\"/oauth2/sessions/end\""), "{html}");
    assert!(html.contains("/oauth2/static/style.css"));
    let r = one
        .post_form(
            &app.url("/oauth2/sessions/end"),
            &[("csrf", &csrf), ("session", &handles[0])],
        )
        .await;
    assert_eq!(location(&r), "/oauth2/sessions");
    let asks = |b: &Browser| b.client.get(app.url("/oauth2/auth")).send();
    assert_eq!(asks(&two).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(asks(&one).await.unwrap().status(), StatusCode::ACCEPTED);
}

/// A record signed in as nobody in particular, for the store's own test.
fn record() -> Record {
    Record {
        id: Id::default(),
        data: Default::default(),
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    }
}

async fn a_persons_sessions_are_listed_and_ended(name: &str, store: &Store) {
    for (subject, email) in [("ada", "Ada@Example.com"), ("grace", "grace@example.com")] {
        let profile = UserProfile {
            issuer: "https://a",
            subject,
            email: Some(email),
            email_verified: Some(true),
            name: None,
            picture: None,
        };
        store.upsert_user(&profile, 1).await.unwrap();
    }
    let sessions = store.session_backend();
    let mut ids = Vec::new();
    for (subject, ua, started_at) in [("ada", FIREFOX, 100), ("ada", CHROME, 200), ("grace", SAFARI, 300)] {
        let mut r = record();
        sessions.create(&mut r).await.unwrap();
        let id = r.id.to_string();
        let from = SignedInFrom::new(started_at, Some(ua), "192.0.2.7".parse().unwrap());
        let link = SessionLink {
            session_id: &id,
            issuer: "https://a",
            subject,
            sid: None,
            expires_at: 1_900_000_000,
            id_token: None,
            from: &from,
        };
        store.link_session(&link).await.unwrap();
        ids.push(id);
    }
    let ada = store.sessions_of("https://a", "ada").await.unwrap();
    assert_eq!(ada.len(), 2, "{name}");
    assert_eq!(ada[0].session_id, ids[0], "{name}: oldest first");
    assert_eq!(ada[0].started_at, Some(100), "{name}");
    assert_eq!(ada[0].user_agent.as_deref(), Some(FIREFOX), "{name}");
    assert_eq!(ada[0].client_ip.as_deref(), Some("192.0.2.7"), "{name}");
    assert_eq!(ada[0].email.as_deref(), Some("Ada@Example.com"), "{name}");
    assert_eq!(store.all_sessions().await.unwrap().len(), 3, "{name}");

    let named = |who: &'static str| async move {
        let users = store.users_named(who).await.unwrap();
        users.into_iter().map(|u| u.subject).collect::<Vec<_>>()
    };
    assert_eq!(named("ada@example.com").await, ["ada"], "{name}: any case");
    assert_eq!(named("grace").await, ["grace"], "{name}: by subject");
    assert!(named("nobody@example.com").await.is_empty(), "{name}");

    assert!(store.session_record(&ids[0]).await.unwrap().is_some(), "{name}");
    store.end_session(&ids[0]).await.unwrap();
    assert!(store.session_record(&ids[0]).await.unwrap().is_none(), "{name}");
    assert_eq!(store.sessions_of("https://a", "ada").await.unwrap().len(), 1, "{name}");
    assert!(store.session_record(&ids[2]).await.unwrap().is_some(), "{name}");
    store.note_sessions_ended_elsewhere().await.unwrap();
    for id in &ids {
        store.end_session(id).await.unwrap();
    }
}

#[tokio::test]
async fn store_lists_and_ends_a_persons_sessions() {
    for (name, backend) in backends() {
        let store = Store::open(&backend.config)
            .await
            .unwrap_or_else(|e| panic!("{name}: open: {e}"));
        a_persons_sessions_are_listed_and_ended(name, &store).await;
        backend.drop_schema().await;
    }
}

#[test]
fn a_user_agent_is_kept_within_bounds() {
    let long = "é".repeat(SignedInFrom::MAX_USER_AGENT);
    let from = SignedInFrom::new(0, Some(&long), "::1".parse().unwrap());
    let kept = from.user_agent.unwrap();
    assert!(kept.len() <= SignedInFrom::MAX_USER_AGENT && long.starts_with(&kept));
}

/// `t` as the page shows times: to the minute, in UTC.
fn minute(t: time::OffsetDateTime) -> String {
    format!(
        "{}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

#[tokio::test]
async fn the_page_shows_when_each_session_signed_in_and_was_last_seen() {
    let app = TestApp::spawn().await;
    let (firefox, chrome) = (browser_as(FIREFOX), browser_as(CHROME));
    let signed_in_at = [
        minute(app.clock.now()),
        minute(app.clock.now() + time::Duration::minutes(1)),
    ];
    sign_in_as(&app, &firefox, "ada@example.com").await;
    sign_in_as(&app, &chrome, "ada@example.com").await;
    // Three hours later Chrome is used again (recorded in its session),
    // then Firefox looks.
    app.clock.advance(std::time::Duration::from_secs(3 * 3600));
    let before = minute(app.clock.now());
    assert!(signed_in(&app, &chrome).await);
    let after = minute(app.clock.now());
    let (html, _, _) = page(&app, &firefox, "/sessions").await;
    let chrome_row = &html[html.find("Chrome 124").unwrap()..];
    let last_seen = chrome_row.split("Last seen</dt><dd>").nth(1).unwrap();
    assert!(
        last_seen.starts_with(&before) || last_seen.starts_with(&after),
        "{before}: {chrome_row}"
    );
    let started = chrome_row.split("Signed in</dt><dd>").nth(1).unwrap();
    assert!(
        signed_in_at.iter().any(|t| started.starts_with(t)),
        "{signed_in_at:?}: {chrome_row}"
    );
}

#[tokio::test]
async fn the_page_shows_the_newest_sessions_and_this_one() {
    let app = TestApp::spawn().await;
    let oldest = browser_as(FIREFOX);
    sign_in_as(&app, &oldest, "ada@example.com").await;
    app.clock.advance(std::time::Duration::from_secs(60));
    for _ in 0..51 {
        sign_in_as(&app, &browser_as(CHROME), "ada@example.com").await;
    }
    let (html, csrf, handles) = page(&app, &oldest, "/sessions").await;
    assert!(html.contains("this device"), "the oldest, shown as this one");
    assert_eq!(handles.len(), 50, "the 50 newest");
    assert!(html.contains("Older sessions not shown: 1 "), "{html}");
    let r = oldest
        .post_form(&app.url("/sessions/end-others"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.count("tower_sessions").await, 1, "those not shown too");
}
