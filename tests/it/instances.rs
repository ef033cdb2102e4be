//! Several oidc-gate processes behind one (simulated) load balancer, sharing
//! PostgreSQL, or PostgreSQL and Redis: a login started on one instance
//! finishes on the other, and every kind of logout on one is refused by the
//! other at its very next request. Instances starting together on a fresh
//! database all start.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use tokio::process::{Child, Command};

use oidc_gate::config::{StoreConfig, StoreUrl};
use oidc_gate::secret::Secret;
use oidc_gate::store::Store;

use crate::fake_op::{FakeOp, send_logout_token};
use crate::scale::PgSchema;
use crate::stores::service_url;
use crate::support::*;

/// One `oidc-gate` process, started as users start it.
struct Instance {
    base: String,
    _child: Child,
    _dir: tempfile::TempDir,
}

impl Instance {
    async fn start(public_url: &str, op: &FakeOp, env: &[(&str, &str)]) -> Self {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let dir = tempfile::tempdir().unwrap();
        let (issuer, client_id, secret) = op.client();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_oidc-gate"));
        cmd.env_clear()
            .env("LISTEN", format!("127.0.0.1:{port}"))
            .env("PUBLIC_URL", public_url)
            .env("DATA_DIR", dir.path())
            .env("OIDC_ISSUER", issuer)
            .env("OIDC_CLIENT_ID", client_id)
            .env("OIDC_CLIENT_SECRET", secret)
            .env("RUST_LOG", "warn")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start oidc-gate");
        let base = format!("http://127.0.0.1:{port}");
        let probe = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = probe.get(format!("{base}/healthz")).send().await
                && r.status() == StatusCode::OK
            {
                return Self {
                    base,
                    _child: child,
                    _dir: dir,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("oidc-gate at {base} did not become healthy");
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

/// The load balancer's address: never listened on; the test routes each
/// request to an instance itself.
const LB: &str = "http://127.0.0.1:9";

fn route(url: &str, to: &Instance) -> String {
    url.replacen(LB, &to.base, 1)
}

/// Starts a login on `start`, lets the callback land on `finish`.
async fn login_across(browser: &Browser, start: &Instance, finish: &Instance) {
    let r = browser.get(&start.url("/login?next=/secret")).await;
    let at_op = browser.get(&redirect_target(&r)).await;
    let callback = redirect_target(&at_op);
    assert!(callback.starts_with(LB), "{callback}");
    let done = browser.get(&route(&callback, finish)).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER, "{}", done.text().await.unwrap());
    assert_eq!(location(&done), "/secret");
}

async fn secret(browser: &Browser, at: &Instance) -> StatusCode {
    browser.get(&at.url("/secret")).await.status()
}

async fn shared_sessions(env: &[(&str, &str)]) {
    let op = FakeOp::start().await;
    op.set(|b| b.sid = Some("op-session-1".into()));
    let a = Instance::start(LB, &op, env).await;
    let b = Instance::start(LB, &op, env).await;

    // Log in through A (callback on B): the cookie works on both.
    let browser = Browser::new();
    login_across(&browser, &a, &b).await;
    assert_eq!(secret(&browser, &a).await, StatusCode::OK);
    assert_eq!(secret(&browser, &b).await, StatusCode::OK);

    // The Log out button on B: A refuses the session at once.
    let r = click_log_out(&browser, &b.base).await;
    assert!(
        redirect_target(&r).starts_with(op.issuer()),
        "RP-initiated logout at the provider"
    );
    assert_eq!(secret(&browser, &a).await, StatusCode::SEE_OTHER);

    // Back-channel logout delivered to B: A refuses the session at once.
    let browser = Browser::new();
    login_across(&browser, &a, &a).await;
    assert_eq!(secret(&browser, &b).await, StatusCode::OK);
    let token = op.logout_token(serde_json::json!({ "sid": "op-session-1" }));
    let r = send_logout_token(&b.url("/backchannel-logout"), &token).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(secret(&browser, &a).await, StatusCode::SEE_OTHER);
    assert_eq!(secret(&browser, &b).await, StatusCode::SEE_OTHER);

    // The same token replayed at A: refused, the replay store is shared too.
    let r = send_logout_token(&a.url("/backchannel-logout"), &token).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn two_instances_on_postgres() {
    let Some(url) = service_url("TEST_DATABASE_URL") else {
        return;
    };
    let schema = PgSchema::new(&url);
    shared_sessions(&[("DATABASE_URL", &url), ("DATABASE_SCHEMA", &schema.name)]).await;
    schema.drop().await;
}

#[tokio::test]
async fn two_instances_on_postgres_and_redis() {
    let Some(url) = service_url("TEST_DATABASE_URL") else {
        return;
    };
    let Some(redis) = service_url("TEST_REDIS_URL") else {
        return;
    };
    let schema = PgSchema::new(&url);
    shared_sessions(&[
        ("DATABASE_URL", &url),
        ("DATABASE_SCHEMA", &schema.name),
        ("SESSION_STORE_URL", &redis),
    ])
    .await;
    schema.drop().await;
}

/// Four instances starting at once on a database without oidc-gate's
/// tables: the schema, our migrations and the session store's table are
/// created in turn (they raced: "duplicate key value violates unique
/// constraint"), so all four start. Three rounds, each on a fresh schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_instances_start_at_once_on_an_empty_database() {
    let Some(url) = service_url("TEST_DATABASE_URL") else {
        return;
    };
    for round in 0..3 {
        let schema = PgSchema::new(&url);
        let config = StoreConfig {
            database: StoreUrl::Postgres(Secret::new(url.clone())),
            sessions: None,
            schema: Some(schema.name.clone()),
            max_connections: 4,
            timeout: Duration::from_secs(5),
            session_cache: 0,
        };
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let config = config.clone();
                tokio::spawn(async move { Store::open(&config).await.map(drop) })
            })
            .collect();
        let mut failures = Vec::new();
        for start in starts {
            if let Err(e) = start.await.unwrap() {
                failures.push(e.to_string());
            }
        }
        schema.drop().await;
        assert!(failures.is_empty(), "round {round}: {failures:#?}");
    }
}
