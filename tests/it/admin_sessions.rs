//! `oidc-gate sessions list|end` run as a process beside a running server:
//! on its embedded SQLite database (whose lock the server holds, and whose
//! session cache must notice), on PostgreSQL, and with sessions in Redis.

use std::path::Path;
use std::process::Output;

use reqwest::StatusCode;
use tokio::process::Command;

use crate::own_sessions::{CHROME, FIREFOX, SAFARI, browser_as, sign_in_as, signed_in};
use crate::scale::PgSchema;
use crate::stores::service_url;
use crate::support::*;

/// Runs `oidc-gate sessions ARGS` in `dir` with only `env`.
pub(crate) async fn sessions(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oidc-gate"));
    cmd.env_clear().current_dir(dir).arg("sessions").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::time::timeout(std::time::Duration::from_secs(30), cmd.output())
        .await
        .expect("the command ends")
        .expect("the command runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Ada in Firefox and Chrome, Grace in Safari, each seen once since
/// sign-in (so that the server's session cache holds them).
async fn three_sessions(app: &TestApp) -> [Browser; 3] {
    let browsers = [browser_as(FIREFOX), browser_as(CHROME), browser_as(SAFARI)];
    for (browser, email) in browsers
        .iter()
        .zip(["ada@example.com", "ada@example.com", "grace@example.com"])
    {
        sign_in_as(app, browser, email).await;
        assert!(signed_in(app, browser).await);
    }
    browsers
}

#[tokio::test]
async fn sessions_end_beside_a_running_server_on_sqlite_signs_out_at_the_next_request() {
    let app = TestApp::spawn().await;
    let [firefox, chrome, grace] = three_sessions(&app).await;
    let data_dir = app.data_dir.display().to_string();
    let env = [("DATA_DIR", data_dir.as_str())];
    let dir = tempfile::tempdir().unwrap();

    let out = sessions(dir.path(), &env, &["list", "--user", "ada@example.com"]).await;
    assert!(out.status.success(), "{out:?}");
    let listed = stdout(&out);
    assert!(
        listed.contains("Firefox 128 on Linux") && listed.contains("Chrome 124 on Windows 10"),
        "{listed}"
    );
    assert!(
        listed.contains("ada@example.com") && listed.contains("from 127.0.0.1"),
        "{listed}"
    );
    assert!(!listed.contains("grace"), "{listed}");
    assert!(listed.ends_with("2 sessions\n"), "{listed}");
    let everyone = stdout(&sessions(dir.path(), &env, &["list"]).await);
    assert!(
        everyone.contains("grace@example.com") && everyone.ends_with("3 sessions\n"),
        "{everyone}"
    );

    let out = sessions(dir.path(), &env, &["end", "--user", "ADA@example.com"]).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "ended 2 sessions of ADA@example.com\n");
    // At once: the server's cache noticed.
    assert!(!signed_in(&app, &firefox).await, "Firefox signed out");
    assert!(!signed_in(&app, &chrome).await, "Chrome signed out");
    assert!(signed_in(&app, &grace).await, "Grace stays");
    assert_eq!(app.count("session_index").await, 1);

    let out = sessions(dir.path(), &env, &["end", "--user", "nobody@example.com"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user"), "{out:?}");
    let out = sessions(
        dir.path(),
        &[("DATA_DIR", &data_dir), ("STORE_TIMEOUT", "soon")],
        &["list"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "an invalid configuration: {out:?}");
    assert_eq!(grace.get(&app.url("/secret")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn sessions_end_on_postgres_signs_out_on_every_instance() {
    let Some(pg) = service_url("TEST_DATABASE_URL") else {
        return;
    };
    ends_on_every_instance(&pg, None).await;
}

#[tokio::test]
async fn sessions_end_with_sessions_in_redis_signs_out_on_every_instance() {
    let (Some(pg), Some(redis)) = (service_url("TEST_DATABASE_URL"), service_url("TEST_REDIS_URL")) else {
        return;
    };
    ends_on_every_instance(&pg, Some(&redis)).await;
}

/// Two instances on PostgreSQL (sessions there, or in `redis`); the command
/// with the same settings ends a person's sessions on both.
async fn ends_on_every_instance(pg: &str, redis: Option<&str>) {
    let schema = PgSchema::new(pg);
    let options = Options {
        store: StoreEnv {
            database_url: Some(pg.to_owned()),
            database_schema: Some(schema.name.clone()),
            session_store_url: redis.map(str::to_owned),
            ..Default::default()
        },
        ..Default::default()
    };
    let one = TestApp::spawn_with(options.clone()).await;
    let two = TestApp::spawn_with(options).await;
    let [firefox, chrome, grace] = three_sessions(&one).await;
    // Chrome's session is carried to the second instance.
    let second = browser_as(CHROME);
    second.set_cookie(&two, &format!("oidc_gate={}", chrome.session_id(&one).unwrap()));
    assert!(signed_in(&two, &second).await);

    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().display().to_string();
    let mut env = vec![
        ("DATABASE_URL", pg),
        ("DATABASE_SCHEMA", schema.name.as_str()),
        ("DATA_DIR", data_dir.as_str()),
    ];
    if let Some(redis) = redis {
        env.push(("SESSION_STORE_URL", redis));
    }
    let subject = {
        let listed = stdout(&sessions(dir.path(), &env, &["list", "--user", "grace@example.com"]).await);
        assert!(listed.ends_with("1 session\n"), "{listed}");
        listed
            .split("subject ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_owned()
    };
    let out = sessions(dir.path(), &env, &["end", "--user", "ada@example.com"]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(!signed_in(&one, &firefox).await);
    assert!(!signed_in(&two, &second).await);
    assert!(signed_in(&one, &grace).await);
    // By the provider's subject too.
    let out = sessions(dir.path(), &env, &["end", "--user", &subject]).await;
    assert_eq!(stdout(&out), format!("ended 1 session of {subject}\n"));
    assert!(!signed_in(&two, &grace).await);
    schema.drop().await;
}
