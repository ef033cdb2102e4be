//! `oidc-gate check` as an operator runs it before a deploy: against a
//! running provider (the development provider of another oidc-gate), a
//! wrong issuer, an invalid setting, a store that does not answer; and it
//! never binds `LISTEN`.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::support::TestApp;
use crate::support::process::BIN;

/// What `oidc-gate check` said.
struct Checked {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `oidc-gate check` with only `env`, in a fresh directory, with
/// `LISTEN` on a port another socket holds.
async fn check(env: &[(&str, &str)]) -> Checked {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("check")
        .env_clear()
        .env("LISTEN", busy.local_addr().unwrap().to_string())
        .env("DATA_DIR", dir.path().join("data"))
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("check exits")
        .unwrap();
    drop(busy);
    Checked {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The value printed after `label` (aligned labels, then the value).
fn value<'a>(stdout: &'a str, label: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(label).filter(|rest| rest.starts_with(' ')))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{stdout}"))
        .trim()
}

fn client(issuer: &str) -> Vec<(&str, &str)> {
    vec![
        ("OIDC_ISSUER", issuer),
        ("OIDC_CLIENT_ID", "check-client"),
        ("OIDC_CLIENT_SECRET", "check-secret"),
        ("PUBLIC_URL", "https://app.example.com"),
    ]
}

#[tokio::test]
async fn check_against_a_running_provider_says_what_to_register_and_never_listens() {
    let provider = TestApp::spawn().await;
    let issuer = provider.url("/dev-provider");
    let mut env = client(&issuer);
    env.push(("ALLOWED_EMAIL_DOMAINS", "example.com"));
    let out = check(&env).await;
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stderr, "", "no problem");
    let s = &out.stdout;
    assert_eq!(value(s, "issuer"), issuer);
    assert_eq!(value(s, "discovery"), "fetched, issuer matches");
    // The development provider signs with ES256 only, and lists it.
    assert!(value(s, "ID token algorithm").starts_with("ES256"), "{s}");
    assert!(value(s, "keys (JWKS)").ends_with("can verify ES256") && !value(s, "keys (JWKS)").contains(" 0 can"));
    assert_eq!(value(s, "redirect URI"), "https://app.example.com/callback");
    assert_eq!(value(s, "post-logout redirect URI"), "https://app.example.com/");
    assert_eq!(
        value(s, "back-channel logout URI"),
        "https://app.example.com/backchannel-logout"
    );
    assert_eq!(
        value(s, "front-channel logout URI"),
        "https://app.example.com/frontchannel-logout"
    );
    assert_eq!(value(s, "token revocation"), format!("{issuer}/revoke"));
    assert!(value(s, "users (DATABASE_URL)").starts_with("sqlite://"), "{s}");
    assert_eq!(value(s, "sessions (SESSION_STORE_URL)"), "with the users");
    assert_eq!(value(s, "answers"), "yes");
    assert!(
        value(s, "rule").starts_with("ALLOWED_EMAIL_DOMAINS: example.com"),
        "{s}"
    );
    assert!(s.trim_end().ends_with("all good"), "{s}");

    // The gateway: its URIs under /oauth2, its public paths and per-path rules.
    let file = crate::gateway::admins_only_file();
    let mut env = client(&issuer);
    env.extend([
        ("UPSTREAM_URL", "http://127.0.0.1:9"),
        ("PUBLIC_PATHS", "/static,/favicon.ico"),
        ("CONFIG_FILE", file.to_str().unwrap()),
        ("SKIP_JWT_BEARER_TOKENS", "true"),
        ("API_AUDIENCE", "api://orders"),
    ]);
    let out = check(&env).await;
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let s = &out.stdout;
    assert!(
        value(s, "mode").starts_with("gateway, reverse proxy to http://127.0.0.1:9/"),
        "{s}"
    );
    assert_eq!(value(s, "redirect URI"), "https://app.example.com/oauth2/callback");
    assert_eq!(
        value(s, "post-logout redirect URI"),
        "https://app.example.com/oauth2/sign_out"
    );
    assert_eq!(
        value(s, "back-channel logout URI"),
        "https://app.example.com/oauth2/backchannel-logout"
    );
    assert_eq!(
        value(s, "front-channel logout URI"),
        "https://app.example.com/oauth2/frontchannel-logout"
    );
    assert_eq!(value(s, "public paths"), "/static, /favicon.ico");
    assert_eq!(
        value(s, "bearer tokens"),
        format!("aud api://orders; JWTs with typ at+jwt; opaque tokens introspected at {issuer}/introspect")
    );
    assert_eq!(value(s, "path /admin"), "ALLOWED_GROUPS: admins (claim groups)");
    assert!(
        value(s, "rule").starts_with(&format!("none: any account at {issuer} can sign in")),
        "{s}"
    );
}

#[tokio::test]
async fn check_with_a_wrong_issuer_names_it_and_fails() {
    let provider = TestApp::spawn().await;
    // One slash more than the provider's own issuer.
    let wrong = provider.url("/dev-provider/");
    let out = check(&client(&wrong)).await;
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    let problems: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(problems.len(), 1, "{}", out.stderr);
    assert!(
        problems[0].starts_with(&format!("problem: OIDC_ISSUER {wrong}: "))
            && problems[0].contains("issuer_mismatch")
            && problems[0].contains(&format!("{:?}", provider.url("/dev-provider"))),
        "{}",
        problems[0]
    );
    assert!(!out.stdout.contains("all good"));

    // Nothing answers there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("http://127.0.0.1:{port}");
    let out = check(&client(&nowhere)).await;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.starts_with(&format!("problem: OIDC_ISSUER {nowhere}: ")) && out.stderr.contains("discovery_failed"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn check_names_an_invalid_setting_and_a_store_that_does_not_answer() {
    let out = check(&[("SHUTDOWN_TIMEOUT", "soon")]).await;
    assert_eq!(out.code, Some(2));
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("problem: SHUTDOWN_TIMEOUT must be a duration"),
        "{}",
        out.stderr
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://oidc_gate:hunter2@127.0.0.1:{port}/oidc_gate");
    let out = check(&[("DATABASE_URL", &url)]).await;
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert_eq!(
        value(&out.stdout, "users (DATABASE_URL)"),
        format!("postgres://oidc_gate:***@127.0.0.1:{port}/oidc_gate")
    );
    assert!(
        out.stderr.contains("DATABASE_URL") && out.stderr.contains("connection refused"),
        "{}",
        out.stderr
    );
    assert!(
        !(out.stdout + &out.stderr).contains("hunter2"),
        "the password is printed"
    );
}

#[tokio::test]
async fn check_without_a_provider_says_the_development_provider_would_be_used() {
    let out = check(&[("PUBLIC_URL", "http://127.0.0.1:5000")]).await;
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        value(&out.stdout, "issuer").starts_with("none configured (OIDC_ISSUER unset): the development provider"),
        "{}",
        out.stdout
    );
    assert_eq!(value(&out.stdout, "answers"), "yes");
}
