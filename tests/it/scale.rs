//! Shared stores: the login app on PostgreSQL and Redis, and what happens
//! when the store goes away and comes back.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::StatusCode;

use crate::stores::service_url;
use crate::support::proxy::Proxy;
use crate::support::*;

/// A per-test PostgreSQL schema, dropped at the end.
pub struct PgSchema {
    pub url: String,
    pub name: String,
}

impl PgSchema {
    pub fn new(url: &str) -> Self {
        let name = format!(
            "t_{}",
            oidc_gate::secret::random_token(6)
                .to_ascii_lowercase()
                .replace('-', "_")
        );
        Self {
            url: url.to_owned(),
            name,
        }
    }

    pub async fn drop(&self) {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
        sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

/// `url` with its host and port replaced by `addr`.
pub fn via(url: &str, addr: SocketAddr) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_host(Some(&addr.ip().to_string())).unwrap();
    u.set_port(Some(addr.port())).unwrap();
    u.to_string()
}

/// Host and port of a store URL.
pub fn target(url: &str) -> SocketAddr {
    let u = url::Url::parse(url).unwrap();
    let host = u.host_str().unwrap();
    let port = u
        .port()
        .unwrap_or(if u.scheme().starts_with("redis") { 6379 } else { 5432 });
    format!("{host}:{port}").parse().unwrap()
}

/// Logs in, then checks /secret, /healthz and logout on this app.
pub async fn full_cycle(app: &TestApp) {
    let browser = Browser::new();
    login(app, &browser, Some("/secret")).await;
    let r = browser.get(&app.url("/secret")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(text(r).await.contains(SECRET));
    assert_eq!(browser.get(&app.url("/healthz")).await.status(), StatusCode::OK);
    let r = click_log_out(&browser, &app.url("")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(browser.get(&app.url("/secret")).await.status(), StatusCode::SEE_OTHER);
}

/// The app on PostgreSQL, in a schema of its own.
async fn on_postgres(url: &str) -> (PgSchema, TestApp) {
    let schema = PgSchema::new(url);
    let app = TestApp::spawn_with(Options {
        store: StoreEnv {
            database_url: Some(url.to_owned()),
            database_schema: Some(schema.name.clone()),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    (schema, app)
}

#[tokio::test]
async fn login_app_on_postgres() {
    let Some(url) = service_url("TEST_DATABASE_URL") else {
        return;
    };
    let (schema, app) = on_postgres(&url).await;
    full_cycle(&app).await;
    drop(app);
    schema.drop().await;
}

#[tokio::test]
async fn login_app_with_redis_sessions() {
    let Some(url) = service_url("TEST_REDIS_URL") else {
        return;
    };
    let app = TestApp::spawn_with(Options {
        store: StoreEnv {
            session_store_url: Some(url),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    full_cycle(&app).await;
}

/// Polls `url` until it answers `status` (the store reconnects in the background).
async fn eventually(browser: &Browser, url: &str, status: StatusCode) {
    for _ in 0..100 {
        if browser.get(url).await.status() == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never answered {status}");
}

async fn outage_and_recovery(app: &TestApp, proxy: &Proxy) {
    let browser = Browser::new();
    login(app, &browser, None).await;
    assert_eq!(browser.get(&app.url("/secret")).await.status(), StatusCode::OK);

    proxy.cut();
    let r = browser.get(&app.url("/secret")).await;
    assert_eq!(
        r.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "a store outage is a 503, not a logout"
    );
    let body = text(r).await;
    assert!(
        body.contains("Temporarily unavailable") && body.contains("not been logged out"),
        "{body}"
    );
    assert_eq!(
        browser.get(&app.url("/healthz")).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let r = browser.get(&app.url("/login")).await;
    assert!(
        r.status() == StatusCode::SERVICE_UNAVAILABLE,
        "login during an outage: {}",
        r.status()
    );

    proxy.restore();
    eventually(&browser, &app.url("/healthz"), StatusCode::OK).await;
    let r = browser.get(&app.url("/secret")).await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "still logged in after the store came back, no restart"
    );
}

/// The app on PostgreSQL (a schema of its own) through a proxy the test can
/// cut, with a store timeout of 1 s.
async fn on_postgres_via_proxy(url: &str) -> (Proxy, PgSchema, TestApp) {
    let proxy = Proxy::start(target(url)).await;
    let schema = PgSchema::new(url);
    let app = TestApp::spawn_with(Options {
        store: StoreEnv {
            database_url: Some(via(url, proxy.addr)),
            database_schema: Some(schema.name.clone()),
            store_timeout: Some("1s".into()),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    (proxy, schema, app)
}

#[tokio::test]
async fn postgres_outage_is_503_and_heals() {
    let Some(url) = service_url("TEST_DATABASE_URL") else {
        return;
    };
    let (proxy, schema, app) = on_postgres_via_proxy(&url).await;
    outage_and_recovery(&app, &proxy).await;
    drop(app);
    schema.drop().await;
}

/// Connections cut while idle (a database restart, a firewall dropping
/// idle flows) are replaced without failing the next request: the session
/// lookups' own connections as well as the pool's.
#[tokio::test]
async fn postgres_connections_cut_while_idle_are_replaced() {
    let Some(url) = service_url("TEST_DATABASE_URL") else {
        return;
    };
    let (proxy, schema, app) = on_postgres_via_proxy(&url).await;
    let browser = Browser::new();
    login(&app, &browser, None).await;
    for round in 0..3 {
        // Several at once: one lookup query, or two if the first is slow.
        let secret = app.url("/secret");
        let answers = tokio::join!(
            browser.get(&secret),
            browser.get(&secret),
            browser.get(&secret),
            browser.get(&secret)
        );
        for r in [answers.0, answers.1, answers.2, answers.3] {
            assert_eq!(r.status(), StatusCode::OK, "round {round}");
        }
        proxy.cut();
        proxy.restore();
        // The pool checks a connection that sat idle this long before using it.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    drop(app);
    schema.drop().await;
}

/// Connections that PostgreSQL itself ends (a restart, an administrator's
/// `pg_terminate_backend`, `idle_session_timeout`: it sends a FATAL error,
/// then closes them) are replaced without failing the next request.
#[tokio::test]
async fn postgres_connections_ended_by_the_server_are_replaced() {
    let Some(url) = service_url("TEST_DATABASE_URL") else {
        return;
    };
    let (schema, app) = on_postgres(&url).await;
    let browser = Browser::new();
    login(&app, &browser, None).await;
    let mut admin = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&url).await.unwrap()
    };
    for round in 0..2 {
        assert_eq!(
            browser.get(&app.url("/secret")).await.status(),
            StatusCode::OK,
            "round {round}"
        );
        // This app's connections that last read its session table.
        let ended: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'oidc-gate' AND query LIKE '%' || $1 || '%'",
        )
        .bind(format!(r#""{}"."session""#, schema.name))
        .fetch_all(&mut admin)
        .await
        .unwrap();
        assert!(!ended.is_empty(), "round {round}: no connection of the app found");
        // The pool checks a connection that sat idle this long before using it.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert_eq!(browser.get(&app.url("/secret")).await.status(), StatusCode::OK);
    drop(app);
    schema.drop().await;
}

#[tokio::test]
async fn redis_outage_is_503_and_heals() {
    let Some(url) = service_url("TEST_REDIS_URL") else {
        return;
    };
    let proxy = Proxy::start(target(&url)).await;
    let app = TestApp::spawn_with(Options {
        store: StoreEnv {
            session_store_url: Some(via(&url, proxy.addr)),
            store_timeout: Some("1s".into()),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    outage_and_recovery(&app, &proxy).await;
}
