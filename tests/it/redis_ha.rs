//! Redis Sentinel and Cluster as session stores: the login app on a local
//! Cluster of three primaries and on the primary a Sentinel names, and a
//! failover (the primary killed, Sentinel promoting its replica) that users
//! live through with `503`s and their sessions, never a `500` or a logout.
//! The store suite runs on both too (`stores.rs`).

use std::time::{Duration, Instant};

use reqwest::{Response, StatusCode};

use crate::logs::Captured;
use crate::scale::full_cycle;
use crate::support::redis::{self, SentinelSet};
use crate::support::*;

/// How long the failover test's Sentinel waits before it takes the primary
/// for down: longer than the store timeout of [`app_on`].
const DOWN_AFTER: Duration = Duration::from_millis(1500);

/// The app with its sessions at `url`, a store timeout of 1 s.
async fn app_on(url: String) -> TestApp {
    TestApp::spawn_with(Options {
        store: StoreEnv {
            session_store_url: Some(url),
            store_timeout: Some("1s".into()),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn login_app_on_a_redis_cluster() {
    if !redis::installed() {
        return;
    }
    let cluster = redis::shared_cluster();
    let app = app_on(cluster.url()).await;
    let keys = || -> u64 {
        cluster
            .nodes
            .iter()
            .map(|n| n.cli(&["DBSIZE"]).parse::<u64>().unwrap())
            .sum()
    };
    let before = keys();
    full_cycle(&app).await;
    let browser = Browser::new();
    login(&app, &browser, None).await;
    assert_eq!(browser.get(&app.url("/secret")).await.status(), StatusCode::OK);
    assert!(keys() > before, "the session is in the cluster");
}

#[tokio::test]
async fn login_app_through_sentinel() {
    if !redis::installed() {
        return;
    }
    let set = redis::shared_sentinel_set();
    let app = app_on(set.url()).await;
    full_cycle(&app).await;
}

/// Asserts the store-unavailable page, which keeps the session cookie.
async fn assert_unavailable(r: Response, during: &str) {
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{during}");
    assert!(set_cookies(&r).is_empty(), "{during}: no cookie set or cleared");
    let body = text(r).await;
    assert!(
        body.contains("Temporarily unavailable") && body.contains("not been logged out"),
        "{during}: {body}"
    );
}

/// The primary dies (SIGKILL); Sentinel promotes the replica. Meanwhile
/// the signed-in user gets the store-unavailable page (`503`), never a
/// `500` or a logout; afterwards the same session answers `/secret` again.
#[tokio::test]
async fn sentinel_failover_keeps_sessions_and_answers_503_meanwhile() {
    if !redis::installed() {
        return;
    }
    let log = Captured::default();
    // This test's thread only: the app runs on this current-thread runtime.
    let subscriber = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut set = SentinelSet::start(DOWN_AFTER);
    let app = app_on(set.url()).await;
    let browser = Browser::new();
    login(&app, &browser, None).await;
    assert_eq!(browser.get(&app.url("/secret")).await.status(), StatusCode::OK);
    let cookies = browser.cookies(&app.url("/"));
    assert!(browser.session_id(&app).is_some(), "signed in: {cookies}");
    // What the session wrote is on the replica before the primary dies.
    set.wait_replicated();

    set.primary.kill();
    let killed = Instant::now();
    // Sentinel takes the primary for down only after DOWN_AFTER, longer than
    // the store timeout (1 s): this request meets the switch.
    let r = browser.get(&app.url("/secret")).await;
    assert_unavailable(r, "right after the kill").await;

    let mut unavailable = 1;
    let r = loop {
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no promotion within 30 s ({unavailable} answers 503)"
        );
        let r = browser.get(&app.url("/secret")).await;
        match r.status() {
            StatusCode::OK => break r,
            StatusCode::SERVICE_UNAVAILABLE => assert_unavailable(r, "during the switch").await,
            other => panic!("during the switch: {other}: {}", text(r).await),
        }
        unavailable += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(text(r).await.contains(SECRET), "the page itself, still signed in");
    assert_eq!(
        set.primary_port(),
        Some(set.replica.port),
        "Sentinel promoted the replica"
    );
    assert_eq!(browser.cookies(&app.url("/")), cookies, "the same session cookie");
    assert_eq!(browser.get(&app.url("/healthz")).await.status(), StatusCode::OK);

    let logged = log.text();
    assert!(
        logged.contains("store_unavailable"),
        "the 503s are logged with their reason:\n{logged}"
    );
    assert!(
        !logged.contains(set.password()),
        "no Redis password in the logs:\n{logged}"
    );
}

/// The binary refuses a Redis URL it cannot use, or Redis it cannot reach,
/// in one sentence naming `SESSION_STORE_URL` and never the password.
#[tokio::test]
async fn bad_or_unreachable_redis_urls_stop_the_binary_naming_the_variable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // released: nothing listens there
    for (url, says) in [
        (
            format!("redis-sentinel://:hunter2@127.0.0.1:{port}/0"),
            "sentinelServiceName=NAME".to_owned(),
        ),
        (
            format!("redis-cluster://:hunter2@127.0.0.1:{port}/2"),
            "only database 0".to_owned(),
        ),
        (
            format!("redis-sentinel://:hunter2@127.0.0.1:{port}/0?sentinelServiceName=gate"),
            format!("Redis primary `gate` via the Sentinels at 127.0.0.1:{port}"),
        ),
        (
            format!("redis-cluster://:hunter2@127.0.0.1:{port}"),
            format!("the Redis Cluster at 127.0.0.1:{port}"),
        ),
    ] {
        let (code, out) = crate::cli::run(&[("SESSION_STORE_URL", &url), ("LISTEN", "127.0.0.1:0")], None).await;
        assert_ne!(code, 0, "{url}: {out}");
        assert!(out.contains("SESSION_STORE_URL") && out.contains(&says), "{url}: {out}");
        assert!(!out.contains("hunter2"), "the password is printed: {out}");
        assert_eq!(out.trim().lines().count(), 1, "one sentence: {out}");
    }
}
