//! What reaches the upstream and what comes back: path, body, X-Forwarded-*,
//! Host, identity, hop-by-hop removal both ways, keep-alive, WebSocket.

use std::sync::atomic::Ordering;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

use super::*;

#[tokio::test]
async fn forwards_method_path_query_body_and_the_identity() {
    let echo = Echo::start().await;
    let gate = gate(settings(&format!("{}/app/", echo.url())), Some(alice())).await;

    let r = reqwest::Client::new()
        .post(format!("http://{gate}/a/b%2Fc?x=1&y=%20"))
        .header("content-type", "text/plain")
        .header("x-custom", "kept")
        .body("hello upstream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen: Seen = r.json().await.unwrap();
    assert_eq!(seen.method, "POST");
    // The upstream URL's path prefixes the request's, which is otherwise untouched.
    assert_eq!(seen.uri, "/app/a/b%2Fc?x=1&y=%20");
    assert_eq!(seen.body, "hello upstream");
    assert_eq!(seen.header("content-length").as_deref(), Some("14"));
    assert_eq!(seen.header("x-custom").as_deref(), Some("kept"));
    assert_eq!(seen.header("x-forwarded-user").as_deref(), Some("alice-sub"));
    assert_eq!(seen.header("x-forwarded-email").as_deref(), Some("alice@example.com"));
    assert_eq!(seen.header("x-forwarded-preferred-username").as_deref(), Some("alice"));
    assert_eq!(seen.header("x-forwarded-groups").as_deref(), Some("admins,staff"));
    assert_eq!(
        seen.header("x-forwarded-access-token").as_deref(),
        Some("access-token-value")
    );
    assert_eq!(seen.header("authorization"), None, "PASS_AUTHORIZATION_HEADER is off");
    // X-Forwarded-* from PUBLIC_URL and the peer; Host passed as the client sent it.
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(seen.header("x-forwarded-host").as_deref(), Some("gate.example.com"));
    assert_eq!(seen.header("host"), Some(gate.to_string()));
}

#[tokio::test]
async fn host_rewritten_and_id_token_passed_when_configured() {
    let echo = Echo::start().await;
    let mut s = settings(&echo.url());
    s.policy.pass_host_header = false;
    s.policy.pass_authorization_header = true;
    let gate = gate(s, Some(alice())).await;

    let r = reqwest::Client::new()
        .get(format!("http://{gate}/"))
        .header("authorization", "Basic YWRtaW46YWRtaW4=")
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .unwrap();
    let seen: Seen = r.json().await.unwrap();
    assert_eq!(seen.header("host"), Some(echo.addr.to_string()));
    assert_eq!(seen.header("authorization").as_deref(), Some("Bearer id-token-value"));
    // Nothing believed (no request layer, no trusted proxy): the client's
    // X-Forwarded-For is not passed on as if verified; the peer alone.
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
}

/// Spoofed identity headers (odd case, duplicated, `_` for `-`, listed in
/// `Connection`) and hop-by-hop headers, written byte for byte on the wire.
#[tokio::test]
async fn spoofed_identity_and_hop_by_hop_headers_never_reach_the_upstream() {
    let echo = Echo::start().await;
    for identity in [Some(alice()), None] {
        let signed_in = identity.is_some();
        let gate = gate(settings(&echo.url()), identity).await;
        let raw = raw_exchange(
            gate,
            b"GET /spoof HTTP/1.1\r\nHost: app.example.com\r\n\
              x-FORWARDED-user: admin\r\nX-Forwarded-User: root\r\nX_Forwarded_Email: boss@example.com\r\n\
              X-Auth-Request-User: admin\r\nx-forwarded-GROUPS: admins\r\nX-Forwarded-Access-Token: forged\r\n\
              Connection: close, X-Forwarded-Preferred-Username, X-Hop\r\nconnection: X-Other-Hop\r\n\
              X-Forwarded-Preferred-Username: root\r\nX-Hop: 1\r\nX-Other-Hop: 2\r\nX-Stays: 3\r\n\
              Keep-Alive: timeout=5\r\nProxy-Authorization: Basic eDp5\r\nTE: trailers\r\n\
              X-Forwarded-Proto: http\r\nX-Forwarded-Host: evil.example\r\nForwarded: host=evil.example\r\n\r\n",
        )
        .await;
        assert_eq!(status_of(&raw), 200, "{raw}");
        let seen = echo.requests().pop().unwrap();
        let user = signed_in.then_some("alice-sub");
        assert_eq!(
            seen.header("x-forwarded-user").as_deref(),
            user,
            "signed in: {signed_in}"
        );
        let groups = signed_in.then_some("admins,staff");
        assert_eq!(seen.header("x-forwarded-groups").as_deref(), groups);
        let username = signed_in.then_some("alice");
        assert_eq!(seen.header("x-forwarded-preferred-username").as_deref(), username);
        let token = signed_in.then_some("access-token-value");
        assert_eq!(seen.header("x-forwarded-access-token").as_deref(), token);
        for gone in [
            "x_forwarded_email",
            "x-auth-request-user",
            "x-hop",
            "x-other-hop",
            "keep-alive",
            "proxy-authorization",
            "te",
            "forwarded",
        ] {
            assert_eq!(seen.header(gone), None, "{gone} reached the upstream");
        }
        assert_eq!(seen.header("connection"), None);
        assert_eq!(seen.header("x-stays").as_deref(), Some("3"));
        assert_eq!(seen.header("host").as_deref(), Some("app.example.com"));
        assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));
        assert_eq!(seen.header("x-forwarded-host").as_deref(), Some("gate.example.com"));
    }
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_removed() {
    let upstream = raw_upstream(|_, mut conn| async move {
        read_head(&mut conn).await;
        let answer = "HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: route-7\r\n\
                      Keep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nUpgrade: h2c\r\n\
                      Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\nok";
        conn.write_all(answer.as_bytes()).await.ok();
    })
    .await;
    let gate = gate(settings(&format!("http://{upstream}")), None).await;
    let r = reqwest::get(format!("http://{gate}/")).await.unwrap();
    assert_eq!(r.status(), 200);
    for gone in ["x-internal", "keep-alive", "proxy-authenticate", "upgrade"] {
        assert!(r.headers().get(gone).is_none(), "{gone} reached the client");
    }
    let cookies: Vec<_> = r.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(r.text().await.unwrap(), "ok");
}

/// Many client connections, one upstream connection: the pool keeps it alive.
#[tokio::test]
async fn keep_alive_reuses_upstream_connections() {
    let echo = Echo::start().await;
    let gate = gate(settings(&echo.url()), Some(alice())).await;
    for i in 0..5 {
        // A new client each time: the reuse is on the upstream side.
        let r = reqwest::Client::new()
            .get(format!("http://{gate}/n/{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    assert_eq!(echo.requests().len(), 5);
    assert_eq!(
        echo.connections.load(Ordering::SeqCst),
        1,
        "one pooled upstream connection"
    );
}

/// A WebSocket echo upstream: the handshake carries the identity, then the
/// connection is a raw tunnel both ways.
#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    let (handshake_tx, handshake_rx) = tokio::sync::oneshot::channel::<Vec<(String, String)>>();
    let handshake_tx = std::sync::Mutex::new(Some(handshake_tx));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (conn, _) = listener.accept().await.unwrap();
        // The signature is tungstenite's handshake callback, large error and all.
        #[allow(clippy::result_large_err)]
        let record = |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
            let headers = req
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
                .collect();
            handshake_tx.lock().unwrap().take().unwrap().send(headers).ok();
            Ok(resp)
        };
        let mut ws = tokio_tungstenite::accept_hdr_async(conn, record).await.unwrap();
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_text() || msg.is_binary() {
                ws.send(msg).await.unwrap();
            }
        }
    });
    let gate = gate(settings(&format!("http://{upstream}")), Some(alice())).await;

    let conn = TcpStream::connect(gate).await.unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async(format!("ws://{gate}/socket"), conn)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    let handshake = handshake_rx.await.unwrap();
    let get = |name: &str| handshake.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    assert_eq!(get("x-forwarded-user"), Some("alice-sub"));
    assert_eq!(get("upgrade"), Some("websocket"));

    ws.send(Message::text("hello through the gate")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("hello through the gate")
    );
    let big = vec![7u8; 300_000];
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(big));
    ws.close(None).await.unwrap();
}

/// The upstream's framing is its own hop's: a HEAD keeps its length, and a
/// response with both `Transfer-Encoding` and `Content-Length` reaches the
/// client as the chunked body it is, not cut at a false length.
#[tokio::test]
async fn response_framing_is_rebuilt_for_the_client() {
    let upstream = raw_upstream(|_, mut conn| async move {
        let head = read_head(&mut conn).await.unwrap();
        let answer: &[u8] = if head.starts_with("HEAD") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 100\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        };
        conn.write_all(answer).await.ok();
    })
    .await;
    let gate = gate(settings(&format!("http://{upstream}")), None).await;
    let client = reqwest::Client::new();
    let head = client.head(format!("http://{gate}/file")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "1234");
    let get = client.get(format!("http://{gate}/file")).send().await.unwrap();
    assert_eq!(get.headers().get("content-length"), None);
    assert_eq!(get.text().await.unwrap(), "hello");
}
