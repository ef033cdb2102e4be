//! Who can reach the app, and what every answer tells the browser: the
//! development provider's `Host` check (DNS rebinding), and the security
//! headers (`Strict-Transport-Security` over https, the CSP's `form-action`).

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fake_op::FakeOp;
use crate::support::*;

/// Sends `request` (an HTTP/1.1 head, without the final blank line) to `app`
/// as it is, whatever its `Host`; returns the whole answer.
async fn raw(app: &TestApp, request: &str) -> String {
    let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let request = format!("{request}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status code of a raw answer.
fn status(answer: &str) -> u16 {
    answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn the_development_provider_answers_only_for_its_own_host() {
    let app = TestApp::spawn().await;
    let port = app.addr.port();
    // A page on attacker.example, its name pointed at 127.0.0.1 (DNS rebinding).
    for request in [
        "GET /login HTTP/1.1",
        "GET /secret HTTP/1.1",
        "GET / HTTP/1.1",
        "GET /healthz HTTP/1.1",
        "POST /dev-provider/authorize HTTP/1.1",
        "GET /dev-provider/.well-known/openid-configuration HTTP/1.1",
    ] {
        let answer = raw(&app, &format!("{request}\r\nHost: attacker.example:{port}")).await;
        assert_eq!(status(&answer), 421, "{request}: {answer}");
        assert!(
            answer.contains("misdirected_host"),
            "{request}: a page with the reason: {answer}"
        );
        assert!(
            !answer.to_ascii_lowercase().contains("set-cookie"),
            "{request}: {answer}"
        );
    }
    assert_eq!(app.count("tower_sessions").await, 0);
    // Its own address and the other loopback names work.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "[::1]".to_owned(),
    ] {
        let answer = raw(&app, &format!("GET /login HTTP/1.1\r\nHost: {host}")).await;
        assert_eq!(status(&answer), 303, "{host}: {answer}");
    }
}

#[tokio::test]
async fn a_configured_provider_serves_any_host() {
    let op = FakeOp::start().await;
    let app = TestApp::spawn_with(Options {
        provider: Some(op.client()),
        ..Default::default()
    })
    .await;
    let answer = raw(&app, "GET /healthz HTTP/1.1\r\nHost: gate.example.com").await;
    assert_eq!(status(&answer), 200, "{answer}");
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get(name).map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn forms_may_post_here_and_to_the_provider_only() {
    // The development provider is served here: 'self' alone.
    let app = TestApp::spawn().await;
    let r = Browser::new().get(&app.url("/")).await;
    let csp = header(&r, "content-security-policy").unwrap();
    assert!(csp.contains("form-action 'self';"), "{csp}");
    assert_eq!(header(&r, "strict-transport-security"), None, "not over http");

    // A provider elsewhere: its origin, where logout's redirect goes.
    let op = FakeOp::start().await;
    let app = TestApp::spawn_with(Options {
        provider: Some(op.client()),
        ..Default::default()
    })
    .await;
    let provider = url::Url::parse(op.issuer()).unwrap().origin().ascii_serialization();
    for path in ["/", "/secret", "/no-such-page"] {
        let r = Browser::new().get(&app.url(path)).await;
        let csp = header(&r, "content-security-policy").unwrap();
        assert!(
            csp.contains(&format!("form-action 'self' {provider};")),
            "{path}: {csp}"
        );
    }
}

#[tokio::test]
async fn https_answers_tell_browsers_to_stay_on_https() {
    let app = TestApp::spawn_with(Options {
        // The test talks plain http to the server behind this https URL.
        tweak: Some(|a| a.public_url = a.public_url.replace("http://", "https://")),
        ..Default::default()
    })
    .await;
    let browser = Browser::new();
    for path in ["/", "/secret", "/login", "/healthz", "/no-such-page"] {
        let r = browser.get(&app.url(path)).await;
        assert_ne!(r.status(), StatusCode::MISDIRECTED_REQUEST, "{path}");
        assert_eq!(
            header(&r, "strict-transport-security").as_deref(),
            Some("max-age=31536000"),
            "{path}"
        );
    }
}
