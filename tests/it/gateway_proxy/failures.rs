//! An upstream that is down, slow, answers garbage or closes: a clean
//! 502/504 (HTML, or JSON for API clients), never a 500; and one retry of an
//! idempotent request on a pooled connection the upstream closed.

use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// GETs `path` from the gate as a browser and as an API client.
async fn both(gate: SocketAddr) -> (reqwest::Response, reqwest::Response) {
    let client = reqwest::Client::new();
    let html = client
        .get(format!("http://{gate}/page"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let json = client
        .get(format!("http://{gate}/api"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    (html, json)
}

async fn assert_failure(gate: SocketAddr, status: u16, title: &str, error: &str, reason: &str) {
    let (html, json) = both(gate).await;
    assert_eq!(html.status(), status);
    assert!(
        html.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = html.text().await.unwrap();
    assert!(page.contains(title), "{page}");
    assert!(page.contains(reason), "the reason code is on the page: {page}");
    assert_eq!(json.status(), status);
    let body: serde_json::Value = json.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"error": error, "reason": reason}));
}

#[tokio::test]
async fn upstream_down_is_a_502() {
    let port = free_port().await;
    let gate = gate(settings(&format!("http://127.0.0.1:{port}")), Some(alice())).await;
    let title = "The application is not answering properly";
    assert_failure(gate, 502, title, "upstream_unavailable", "upstream_refused").await;
}

/// An https upstream is spoken to over TLS; one that does not speak it is a 502.
#[tokio::test]
async fn an_https_upstream_that_fails_the_tls_handshake_is_a_502() {
    let plain = raw_upstream(|_, mut conn| async move {
        let mut hello = [0u8; 5];
        conn.read_exact(&mut hello).await.ok();
        assert_eq!(hello[0], 0x16, "a TLS handshake record");
        conn.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await.ok();
    })
    .await;
    let gate = gate(settings(&format!("https://{plain}")), None).await;
    let title = "The application is not answering properly";
    assert_failure(gate, 502, title, "upstream_unavailable", "upstream_tls").await;
}

#[tokio::test]
async fn garbage_or_a_close_before_the_headers_is_a_502() {
    let garbage = raw_upstream(|_, mut conn| async move {
        read_head(&mut conn).await;
        conn.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await.ok();
    })
    .await;
    let gate_g = gate(settings(&format!("http://{garbage}")), None).await;
    let title = "The application is not answering properly";
    assert_failure(gate_g, 502, title, "upstream_unavailable", "upstream_bad_response").await;

    let cut = raw_upstream(|_, mut conn| async move {
        read_head(&mut conn).await;
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Ty").await.ok();
    })
    .await;
    let gate_c = gate(settings(&format!("http://{cut}")), None).await;
    assert_failure(gate_c, 502, title, "upstream_unavailable", "upstream_closed").await;
}

#[tokio::test]
async fn no_answer_in_time_is_a_504() {
    let (held_tx, mut held) = tokio::sync::mpsc::unbounded_channel();
    let silent = raw_upstream(move |_, mut conn| {
        let held_tx = held_tx.clone();
        async move {
            read_head(&mut conn).await;
            // Keep the connection open, answer nothing.
            held_tx.send(conn).ok();
        }
    })
    .await;
    let mut s = settings(&format!("http://{silent}"));
    s.timeout = Duration::from_millis(300);
    let gate = gate(s, Some(alice())).await;
    let title = "The application is taking too long";
    assert_failure(gate, 504, title, "upstream_timeout", "upstream_timeout").await;
    assert!(
        held.recv().await.is_some(),
        "the upstream got the request and kept silent"
    );
}

/// Once the status went out nothing else can be said: the client's
/// connection is cut, so it never takes a truncated body for a whole one.
#[tokio::test]
async fn a_close_mid_body_cuts_the_client_connection() {
    let upstream = raw_upstream(|_, mut conn| async move {
        read_head(&mut conn).await;
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly ten b")
            .await
            .ok();
    })
    .await;
    let gate = gate(settings(&format!("http://{upstream}")), None).await;
    let r = reqwest::get(format!("http://{gate}/file")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.is_err(), "the body must fail, not end short");
}

/// The upstream restarts on the same port: the first request after it
/// succeeds, on a new connection.
#[tokio::test]
async fn first_request_after_an_upstream_restart_succeeds() {
    let echo = Echo::start().await;
    let addr = echo.addr;
    let gate = gate(settings(&echo.url()), Some(alice())).await;
    let get = || async {
        let r = reqwest::get(format!("http://{gate}/after")).await.unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Seen>().await.unwrap().generation
    };
    assert_eq!(get().await, 1);
    echo.stop().await;
    let echo = Echo::start_on(&addr.to_string(), 2).await;
    assert_eq!(get().await, 2);
    assert_eq!(echo.connections.load(Ordering::SeqCst), 1);
}

/// The race behind the restart case, made certain: the upstream closes a
/// kept-alive connection just as the next request arrives on it. An
/// idempotent request without a body is sent once more on a new connection;
/// a POST with a body is not (it may have been acted on): 502.
#[tokio::test]
async fn a_pooled_connection_closed_under_a_request_is_retried_once_if_idempotent() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::<(usize, String)>::new()));
    let record = seen.clone();
    let upstream = raw_upstream(move |n, mut conn| {
        let record = record.clone();
        async move {
            // Every connection answers its first request, then closes on
            // the second one without a word.
            let Some(head) = read_head(&mut conn).await else { return };
            record
                .lock()
                .unwrap()
                .push((n, head.lines().next().unwrap().to_owned()));
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await
                .ok();
            if let Some(head) = read_head(&mut conn).await {
                record
                    .lock()
                    .unwrap()
                    .push((n, head.lines().next().unwrap().to_owned()));
            }
        }
    })
    .await;
    let gate = gate(settings(&format!("http://{upstream}")), None).await;
    let client = reqwest::Client::new();

    let r = client.get(format!("http://{gate}/one")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.text().await.unwrap()), (200, "ok".into()));
    let r = client.get(format!("http://{gate}/two")).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (200, "ok".into()),
        "retried"
    );
    let r = client
        .post(format!("http://{gate}/three"))
        .body("pay 10 EUR")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502, "a POST with a body is not sent twice");

    let seen = seen.lock().unwrap().clone();
    let lines = |c: usize| {
        seen.iter()
            .filter(|(n, _)| *n == c)
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(lines(0), ["GET /one HTTP/1.1", "GET /two HTTP/1.1"]);
    assert_eq!(lines(1), ["GET /two HTTP/1.1", "POST /three HTTP/1.1"]);
    assert_eq!(seen.len(), 4, "nothing else reached the upstream: {seen:?}");
}

/// A `101` the client did not ask for, or to another protocol than it asked
/// for, is not handed over: 502.
#[tokio::test]
async fn an_upgrade_to_what_was_not_asked_for_is_a_502() {
    let upstream = raw_upstream(|_, mut conn| async move {
        read_head(&mut conn).await;
        conn.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n")
            .await
            .ok();
    })
    .await;
    let gate = gate(settings(&format!("http://{upstream}")), None).await;
    let plain = raw_exchange(gate, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status_of(&plain), 502, "{plain}");
    assert!(plain.contains("upstream_bad_upgrade"), "{plain}");
    let websocket = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\n\
                      Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let other = raw_exchange(gate, websocket).await;
    assert_eq!(status_of(&other), 502, "{other}");
    assert!(other.contains("upstream_bad_upgrade"), "{other}");
}

/// Failures are logged with their reason code; never the query string, a
/// cookie or a token.
#[tokio::test]
async fn failures_are_logged_with_a_reason_and_nothing_secret() {
    let log = crate::logs::Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .finish();
    // This test's thread only: everything runs on this current-thread runtime.
    let _guard = tracing::subscriber::set_default(subscriber);

    let port = free_port().await;
    let down = gate(settings(&format!("http://127.0.0.1:{port}")), Some(alice())).await;
    let cut = raw_upstream(|_, mut conn| async move {
        read_head(&mut conn).await;
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
            .await
            .ok();
    })
    .await;
    let cut = gate(settings(&format!("http://{cut}")), Some(alice())).await;
    let client = reqwest::Client::new();
    let requests = || async {
        for (gate, json) in [(down, false), (down, true), (cut, false)] {
            let r = client
                .get(format!("http://{gate}/p?code=QUERY-SECRET"))
                .header("cookie", "session=COOKIE-SECRET")
                .header("authorization", "Bearer HEADER-SECRET")
                .header("accept", if json { "application/json" } else { "text/html" })
                .send()
                .await
                .unwrap();
            r.bytes().await.ok();
        }
    };
    // Other tests, on other threads without this subscriber, may register
    // the same log call sites at the same moment, caching "not interested":
    // register them all first, then have tracing recompute that.
    requests().await;
    tracing::callsite::rebuild_interest_cache();
    let start = log.text().len();
    requests().await;
    let text = log.text()[start..].to_owned();
    assert_eq!(text.matches("reason=\"upstream_refused\"").count(), 2, "{text}");
    assert!(text.contains("reason=\"upstream_body\""), "{text}");
    for secret in [
        "QUERY-SECRET",
        "COOKIE-SECRET",
        "HEADER-SECRET",
        "access-token-value",
        "id-token-value",
    ] {
        assert!(!text.contains(secret), "{secret} logged: {text}");
    }
}
