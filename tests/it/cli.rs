//! The `oidc-gate` binary as users run it: configuration errors, `.env`,
//! `--help`, the zero-configuration first start, and what reaches the logs.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use tokio::process::Command;

use crate::support::process::{BIN, output, start};
use crate::support::*;

/// Runs the binary with only `env` (and a fresh working directory) until it exits.
pub async fn run(env: &[(&str, &str)], dotenv: Option<&str>) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    if let Some(content) = dotenv {
        std::fs::write(dir.path().join(".env"), content).unwrap();
    }
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("exits")
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn bad_configuration_exits_with_one_sentence_naming_the_variable() {
    let cases: [(&[(&str, &str)], &str); 12] = [
        (&[("PUBLIC_URL", "https://app.example.com")], "OIDC_ISSUER"),
        // The development provider, reachable from the network: refused.
        (&[("LISTEN", "0.0.0.0:5000")], "LISTEN"),
        (
            &[
                ("PUBLIC_URL", "http://app.example.com"),
                ("OIDC_ISSUER", "https://idp.example.com"),
            ],
            "ALLOW_INSECURE_HTTP",
        ),
        (&[("PUBLIC_URL", "https://app.example.com/app")], "PUBLIC_URL"),
        (
            &[
                ("OIDC_ISSUER", "http://idp.example.com"),
                ("OIDC_CLIENT_ID", "c"),
                ("OIDC_CLIENT_SECRET", "s"),
            ],
            "OIDC_ISSUER",
        ),
        (
            &[("OIDC_ISSUER", "https://idp.example.com"), ("OIDC_CLIENT_SECRET", "s")],
            "OIDC_CLIENT_ID",
        ),
        (&[("GOOGLE_CLIENT_ID", "g")], "GOOGLE_CLIENT_SECRET"),
        (&[("LISTEN", "everywhere")], "LISTEN"),
        (&[("SESSION_MAX_AGE", "forever")], "SESSION_MAX_AGE"),
        (&[("DATABASE_URL", "mysql://x")], "DATABASE_URL"),
        (&[("LOG_FORMAT", "xml")], "LOG_FORMAT"),
        (&[("TRUSTED_PROXIES", "10.0.0.0/33")], "TRUSTED_PROXIES"),
    ];
    for (env, var) in cases {
        let (code, out) = run(env, None).await;
        assert_ne!(code, 0, "{env:?}");
        assert!(out.contains(var), "{env:?}: {out}");
        assert!(!out.contains("panicked") && !out.contains("backtrace"), "{out}");
        assert_eq!(out.trim().lines().count(), 1, "one sentence: {out}");
    }
}

#[tokio::test]
async fn dotenv_is_read() {
    let (code, out) = run(&[], Some("PUBLIC_URL=https://app.example.com\n")).await;
    assert_ne!(code, 0);
    assert!(out.contains("OIDC_ISSUER"), "the .env PUBLIC_URL was used: {out}");
}

#[tokio::test]
async fn help_lists_every_setting() {
    let o = Command::new(BIN).arg("--help").env_clear().output().await.unwrap();
    assert_eq!(o.status.code(), Some(0));
    let help = String::from_utf8_lossy(&o.stdout);
    for var in [
        "OIDC_ISSUER",
        "OIDC_CLIENT_ID",
        "OIDC_CLIENT_SECRET",
        "OIDC_SCOPES",
        "OIDC_ID_TOKEN_ALG",
        "OIDC_TRUSTED_AUDIENCES",
        "GOOGLE_CLIENT_ID",
        "GOOGLE_CLIENT_SECRET",
        "PUBLIC_URL",
        "ALLOW_INSECURE_HTTP",
        "LISTEN",
        "DATA_DIR",
        "SESSION_IDLE_TIMEOUT",
        "SESSION_MAX_AGE",
        "DATABASE_URL",
        "SESSION_STORE_URL",
        "STORE_TIMEOUT",
        "TRUSTED_PROXIES",
        "LOG_FORMAT",
        "SHUTDOWN_GRACE",
        "SHUTDOWN_TIMEOUT",
    ] {
        assert!(help.contains(var), "--help lacks {var}");
    }
    assert!(help.contains("check"), "--help lacks the check command: {help}");
}

/// Checks that the data directory (created by oidc-gate) and the database
/// files in it, which hold the login-cookie key and ID tokens, are ours only.
fn assert_private_files(data_dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(data_dir), 0o700, "DATA_DIR");
    for file in ["oidc-gate.sqlite3", "oidc-gate.sqlite3-wal", "oidc-gate.sqlite3-shm"] {
        assert_eq!(mode(&data_dir.join(file)), 0o600, "{file}");
    }
}

#[tokio::test]
async fn first_start_needs_no_configuration_and_logs_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = start(dir.path(), &[("RUST_LOG", "debug")]).await;
    let browser = Browser::new();
    assert!(
        dir.path().join("data/oidc-gate.sqlite3").exists(),
        "DATA_DIR defaults to ./data, created"
    );

    // The quick start: index → login from here → development provider → /secret.
    let index = text(browser.get(&format!("{base}/")).await).await;
    assert!(index.contains("login from here"));
    let authorize = redirect_target(&browser.get(&format!("{base}/login")).await);
    let callback = dev_provider_sign_in(&browser, &authorize, "Ada Lovelace", "ada@example.com", "sign_in").await;
    let code = query_param(&callback, "code");
    let state = query_param(&callback, "state");
    browser.get(&callback).await;
    let r = browser.get(&format!("{base}/secret")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_private_files(&dir.path().join("data"));
    let session = browser
        .cookies(&base)
        .split("; ")
        .find_map(|c| c.strip_prefix("oidc_gate="))
        .unwrap()
        .to_owned();
    let csrf = logout_csrf(&browser, &base).await;
    let r = browser.post_form(&format!("{base}/logout"), &[("csrf", &csrf)]).await;
    let id_token = query_param(&redirect_target(&r), "id_token_hint");

    let logs = output(&mut child).await;
    child.kill().await.unwrap();
    assert!(logs.contains("DEVELOPMENT PROVIDER"), "a loud banner: {logs}");
    // Not a terminal: no colour codes in a file or journald.
    assert!(!logs.contains('\x1b'), "ANSI escape codes in piped logs: {logs:?}");
    assert!(logs.contains("sign_in"), "sign-ins are audited");
    for (what, secret) in [
        ("code", &code),
        ("state", &state),
        ("session id", &session),
        ("csrf", &csrf),
    ] {
        assert!(!logs.contains(secret.as_str()), "the {what} is in the logs");
    }
    let signature = id_token.rsplit('.').next().unwrap();
    assert!(!logs.contains(signature), "the ID token is in the logs");
}

#[tokio::test]
async fn allow_insecure_http_starts_with_a_loud_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _) = start(
        dir.path(),
        &[
            ("PUBLIC_URL", "http://app.example.com"),
            ("ALLOW_INSECURE_HTTP", "true"),
            // Never reached (nothing listens on port 9): retried in the background.
            ("OIDC_ISSUER", "http://127.0.0.1:9"),
            ("OIDC_CLIENT_ID", "c"),
            ("OIDC_CLIENT_SECRET", "s"),
        ],
    )
    .await;
    let logs = output(&mut child).await;
    assert!(
        logs.contains("INSECURE") && logs.contains("ALLOW_INSECURE_HTTP=true"),
        "{logs}"
    );
}

#[tokio::test]
async fn a_second_process_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let data = data_dir.to_str().unwrap();
    let (mut first, _) = start(dir.path(), &[("DATA_DIR", data)]).await;

    // An overlapping redeploy: the same DATA_DIR while the first still runs.
    let (code, out) = run(&[("DATA_DIR", data), ("LISTEN", "127.0.0.1:0")], None).await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("DATA_DIR") && out.contains(data), "{out}");
    assert_eq!(out.trim().lines().count(), 1, "one sentence: {out}");
    // The same database file as another DATA_DIR's session store.
    let db = format!("sqlite://{}", data_dir.join("oidc-gate.sqlite3").display());
    let (code, out) = run(&[("SESSION_STORE_URL", &db), ("LISTEN", "127.0.0.1:0")], None).await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("DATA_DIR") && out.contains(data), "{out}");

    // Once the first has stopped, its DATA_DIR can be used again (here
    // with sessions in the same file, named again: one lock, not two).
    first.kill().await.unwrap();
    first.wait().await.unwrap();
    start(dir.path(), &[("DATA_DIR", data), ("SESSION_STORE_URL", &db)]).await;
}

#[tokio::test]
async fn an_unreachable_database_is_named_with_its_host_and_why() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // released: nothing listens there
    let url = format!("postgres://oidc_gate:hunter2@127.0.0.1:{port}/oidc_gate");
    for var in ["DATABASE_URL", "SESSION_STORE_URL"] {
        let (code, out) = run(&[(var, &url), ("LISTEN", "127.0.0.1:0")], None).await;
        assert_ne!(code, 0, "{out}");
        assert!(
            out.contains(var) && out.contains(&format!("127.0.0.1:{port}")) && out.contains("connection refused"),
            "{out}"
        );
        assert!(!out.contains("hunter2"), "the password is printed: {out}");
        assert_eq!(out.trim().lines().count(), 1, "one sentence: {out}");
    }

    // A running PostgreSQL without that database.
    let Some(url) = crate::stores::service_url("TEST_DATABASE_URL") else {
        return;
    };
    let mut missing = url::Url::parse(&url).unwrap();
    missing.set_path("/oidc_gate_no_such_database");
    let (code, out) = run(&[("DATABASE_URL", missing.as_str()), ("LISTEN", "127.0.0.1:0")], None).await;
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("DATABASE_URL") && out.contains("`oidc_gate_no_such_database` does not exist"),
        "{out}"
    );
    // A user it does not know (refused whatever the authentication method).
    let mut stranger = url::Url::parse(&url).unwrap();
    stranger.set_username("oidc_gate_no_such_role").unwrap();
    stranger.set_password(Some("hunter2")).unwrap();
    let (code, out) = run(
        &[("SESSION_STORE_URL", stranger.as_str()), ("LISTEN", "127.0.0.1:0")],
        None,
    )
    .await;
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("SESSION_STORE_URL") && out.contains("authentication failed for user `oidc_gate_no_such_role`"),
        "{out}"
    );
    assert!(!out.contains("hunter2"), "the password is printed: {out}");
}
