//! What reaches the log: strings from a client or a provider are escaped,
//! so that a line break in them cannot start a forged log line; JSON lines
//! with the request id of each request; the audit events; request ids and
//! client addresses believed from trusted proxies only; and no secret in the
//! log of a whole run of the binary.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oidc_gate::logs::{LogFormat, subscriber};
use reqwest::StatusCode;
use serde_json::Value;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::support::process::{output, start};
use crate::support::*;

/// A log written to memory.
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// The provider's `error=` on the callback carries CR/LF and a fake log
/// line: it is logged, escaped, on the line of its own event.
#[tokio::test]
async fn a_line_break_from_the_callback_cannot_start_a_log_line() {
    let log = Captured::default();
    // This test's thread only: the app runs on this current-thread runtime.
    let subscriber = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let state = query_param(&start_login(&app, &browser, None).await, "state");
    let forged = "access_denied\r\n2026-01-01T00:00:00Z  INFO login user.id=1 FORGED";
    let r = browser
        .get(&app.url(&format!(
            "/callback?state={}&error={}",
            urlencoding(&state),
            urlencoding(forged)
        )))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let text = log.text();
    let line = text
        .lines()
        .find(|l| l.contains("FORGED"))
        .unwrap_or_else(|| panic!("the refusal is logged:\n{text}"));
    assert!(line.contains("provider_error"), "one line, with its event: {line}");
    assert!(line.contains(r"access_denied\r\n2026"), "escaped: {line}");
    assert_eq!(
        text.lines().filter(|l| l.contains("FORGED")).count(),
        1,
        "no line of its own:\n{text}"
    );
}

impl Captured {
    /// Every line, parsed as JSON (panics on a line that is not).
    pub(crate) fn json(&self) -> Vec<Value> {
        parse_lines(&self.text())
    }

    /// The JSON log of this thread from now on, at info.
    pub(crate) fn json_default(&self) -> tracing::subscriber::DefaultGuard {
        let subscriber = subscriber(LogFormat::Json, EnvFilter::new("info"), self.clone(), false);
        tracing::subscriber::set_default(subscriber)
    }
}

/// Each line of `text` as JSON.
fn parse_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The audit events (target `audit`) named `event`.
pub(crate) fn audit<'a>(lines: &'a [Value], event: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["target"] == "audit" && l["event"] == event)
        .collect()
}

/// The `X-Request-Id` of an answer.
fn request_id(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-request-id")
        .unwrap_or_else(|| panic!("no X-Request-Id on {}", r.url()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Asserts that `event` names the request `id` from 127.0.0.1, in its own
/// fields and in its request span's.
fn assert_origin(event: &Value, id: &str, client_ip: &str) {
    assert_eq!(event["request_id"], id, "{event}");
    assert_eq!(event["client_ip"], client_ip, "{event}");
    let span = &event["spans"][0];
    assert_eq!(span["name"], "request", "{event}");
    assert_eq!(span["request_id"], id, "{event}");
    assert_eq!(span["client_ip"], client_ip, "{event}");
}

#[tokio::test]
async fn json_lines_carry_the_request_id_and_audit_sign_in_refusal_logout_and_session_end() {
    let log = Captured::default();
    let _guard = log.json_default();
    let app = TestApp::spawn().await;
    let issuer = format!("http://{}/dev-provider", app.addr);

    // A sign-in.
    let browser = Browser::new();
    let signed_in = login(&app, &browser, None).await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let sign_in_id = request_id(&signed_in);
    // A refusal: a callback that belongs to no sign-in.
    let refused = browser.get(&app.url("/callback?state=forged&code=c")).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let refused_id = request_id(&refused);
    // A logout, at the provider too (RP-initiated).
    let logged_out = click_log_out(&browser, &app.url("")).await;
    assert!(logged_out.status().is_redirection());
    let logout_id = request_id(&logged_out);
    // A session that ends when it comes back after the idle timeout.
    let idle = Browser::new();
    login(&app, &idle, None).await;
    app.clock.advance(Duration::from_secs(13 * 3600));
    let ended = idle.get(&app.url("/secret")).await;
    assert_eq!(ended.status(), StatusCode::SEE_OTHER, "signed out: sent to sign in");
    let ended_id = request_id(&ended);

    let lines = log.json();
    for line in &lines {
        for field in ["timestamp", "level", "target"] {
            assert!(line.get(field).is_some(), "{field} in {line}");
        }
        if let Some(span) = line.get("span") {
            assert_eq!(span["name"], "request", "{line}");
            assert!(
                span["request_id"].is_string(),
                "every request line names its request: {line}"
            );
        }
    }

    let sign_ins = audit(&lines, "sign_in");
    assert_eq!(sign_ins.len(), 2, "{lines:#?}");
    let first = sign_ins[0];
    assert_origin(first, &sign_in_id, "127.0.0.1");
    assert_eq!(first["level"], "INFO");
    assert_eq!(first["issuer"], issuer.as_str());
    // The provider's id: `default` with one provider of the environment.
    assert_eq!(first["provider"], "default");
    let subject = first["subject"].as_str().expect("the subject").to_owned();
    assert!(!subject.is_empty());
    assert!(first["user_id"].is_i64(), "{first}");
    assert_eq!(first["spans"][0]["route"], "/callback");
    assert_eq!(first["spans"][0]["method"], "GET");

    let refusals = audit(&lines, "sign_in_refused");
    assert_eq!(refusals.len(), 1, "{lines:#?}");
    assert_origin(refusals[0], &refused_id, "127.0.0.1");
    assert_eq!(refusals[0]["reason"], "state_mismatch");
    assert_eq!(refusals[0]["issuer"], issuer.as_str());
    assert!(
        !lines
            .iter()
            .any(|l| l["message"] == "request rejected" && l["spans"][0]["request_id"] == refused_id.as_str()),
        "the audit event is the refusal's only line"
    );

    let logouts = audit(&lines, "logout");
    assert_eq!(logouts.len(), 1, "{lines:#?}");
    assert_origin(logouts[0], &logout_id, "127.0.0.1");
    assert_eq!(logouts[0]["kind"], "rp_initiated");
    assert_eq!(logouts[0]["subject"], subject.as_str());
    assert_eq!(logouts[0]["issuer"], issuer.as_str());

    let ends = audit(&lines, "session_end");
    assert_eq!(ends.len(), 1, "{lines:#?}");
    assert_origin(ends[0], &ended_id, "127.0.0.1");
    assert_eq!(ends[0]["reason"], "session_idle");
    assert_eq!(ends[0]["subject"], sign_ins[1]["subject"]);
    assert_eq!(ends[0]["issuer"], issuer.as_str());
}

/// `TRUSTED_PROXIES=127.0.0.1/32`: the test client is a trusted proxy.
fn trust_loopback(args: &mut oidc_gate::config::Args) {
    args.trusted_proxies = Some("127.0.0.1/32".into());
}

/// Asks for a callback that belongs to no sign-in (an audited refusal) with
/// a proxy's headers; returns the answer's request id.
async fn refused_through_proxy(app: &TestApp, request_id: &str, forwarded_for: &str) -> String {
    let r = reqwest::Client::new()
        .get(app.url("/callback?state=forged"))
        .header("X-Request-Id", request_id)
        .header("X-Forwarded-For", forwarded_for)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    self::request_id(&r)
}

#[tokio::test]
async fn request_ids_and_client_addresses_are_believed_from_trusted_proxies_only() {
    let log = Captured::default();
    let _guard = log.json_default();

    // Nobody trusted: the client's id and X-Forwarded-For are its own words.
    let untrusted = TestApp::spawn().await;
    let id = refused_through_proxy(&untrusted, "planted-id", "203.0.113.9").await;
    assert_ne!(id, "planted-id");
    assert_eq!(id.len(), 32, "a fresh id: {id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    let lines = log.json();
    let refusal = audit(&lines, "sign_in_refused").into_iter().last().unwrap().clone();
    assert_origin(&refusal, &id, "127.0.0.1");

    // The peer is a trusted proxy: its id and its client are taken.
    let trusted = TestApp::spawn_with(Options {
        tweak: Some(trust_loopback),
        ..Options::default()
    })
    .await;
    let id = refused_through_proxy(&trusted, "edge-4bf92f35", "6.6.6.6, 203.0.113.9").await;
    assert_eq!(id, "edge-4bf92f35");
    let lines = log.json();
    let refusal = audit(&lines, "sign_in_refused").into_iter().last().unwrap().clone();
    assert_origin(&refusal, "edge-4bf92f35", "203.0.113.9");

    // Even from a trusted proxy, an id that is not sane is replaced.
    for insane in ["two words", &"x".repeat(129)] {
        let id = refused_through_proxy(&trusted, insane, "203.0.113.9").await;
        assert_ne!(id, insane);
        assert_eq!(id.len(), 32);
    }
    // Every answer has one, also without a proxy or a session.
    let r = reqwest::get(trusted.url("/healthz")).await.unwrap();
    assert_eq!(request_id(&r).len(), 32);
}

/// The binary with `LOG_FORMAT=json` and debug logs, through a sign-in, a
/// protected page, a refused callback and a logout: every line is JSON, the
/// audit events are there, and none of the login's secrets is.
#[tokio::test]
async fn a_full_run_of_the_binary_logs_json_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = start(dir.path(), &[("LOG_FORMAT", "json"), ("RUST_LOG", "debug")]).await;
    let browser = Browser::new();
    let authorize = redirect_target(&browser.get(&format!("{base}/login?next=/secret")).await);
    let login_cookie = browser
        .cookies(&base)
        .split("; ")
        .find_map(|c| {
            c.split_once('=')
                .filter(|(name, _)| name.starts_with("oidc_gate_login_"))
        })
        .map(|(_, value)| value.to_owned())
        .expect("the login-in-progress cookie");
    let callback = dev_provider_sign_in(&browser, &authorize, "Ada Lovelace", "ada@example.com", "sign_in").await;
    let code = query_param(&callback, "code");
    let state = query_param(&callback, "state");
    let signed_in = browser.get(&callback).await;
    let sign_in_id = request_id(&signed_in);
    assert_eq!(browser.get(&format!("{base}/secret")).await.status(), StatusCode::OK);
    let refused = browser.get(&format!("{base}/callback?state={state}&code={code}")).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "a replayed callback");
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
    let lines = parse_lines(&logs);
    assert!(lines.len() > 10, "debug logs: {logs}");
    let sign_ins = audit(&lines, "sign_in");
    assert_eq!(sign_ins.len(), 1, "{logs}");
    assert_origin(sign_ins[0], &sign_in_id, "127.0.0.1");
    assert_eq!(audit(&lines, "sign_in_refused")[0]["reason"], "state_mismatch");
    assert_eq!(audit(&lines, "logout")[0]["kind"], "rp_initiated");
    for (what, secret) in [
        ("code", code.as_str()),
        ("state", &state),
        ("session id", &session),
        ("login cookie", &login_cookie),
        ("csrf token", &csrf),
        ("ID token signature", id_token.rsplit('.').next().unwrap()),
        ("ID token payload", id_token.split('.').nth(1).unwrap()),
    ] {
        assert!(secret.len() >= 16, "{what} looks like a secret: {secret}");
        assert!(!logs.contains(secret), "the {what} is in the logs");
    }
}

/// Not a check: `/secret` asked `OIDC_GATE_LOOP` times (default 200) on one
/// keep-alive connection with a signed-in session, logging at info to
/// nowhere with the default filter (or `OIDC_GATE_LOOP_FILTER`), as in production. For instruction counts of the request path:
/// `valgrind --tool=callgrind` two runs of different lengths and divide the
/// difference (start-up and sign-in cancel out).
#[tokio::test]
#[ignore = "a measurement, run by hand under callgrind"]
async fn secret_loop_for_callgrind() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let n: usize = std::env::var("OIDC_GATE_LOOP")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let filter = std::env::var("OIDC_GATE_LOOP_FILTER");
    let filter = EnvFilter::new(filter.as_deref().unwrap_or(oidc_gate::logs::DEFAULT_FILTER));
    let _guard = tracing::subscriber::set_default(subscriber(LogFormat::Text, filter, io::sink, false));
    // Discovery of the development provider is slow under callgrind.
    let app = TestApp::spawn_with(Options {
        tweak: Some(|args| args.oidc_http_timeout = "120s".into()),
        ..Options::default()
    })
    .await;
    let browser = Browser::new();
    login(&app, &browser, Some("/secret")).await;
    let cookie = browser.cookies(&app.url("/"));
    let request = format!("GET /secret HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\n\r\n", app.addr);
    let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..n {
        conn.write_all(request.as_bytes()).await.unwrap();
        // One whole answer: the head, then Content-Length bytes of body.
        let mut have = 0;
        let (head, length) = loop {
            have += conn.read(&mut buf[have..]).await.unwrap();
            if let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .expect("a Content-Length");
                break (head, end + 4 + length);
            }
        };
        while have < length {
            have += conn.read(&mut buf[have..]).await.unwrap();
        }
        assert!(head.starts_with("http/1.1 200"), "{head}");
    }
}
