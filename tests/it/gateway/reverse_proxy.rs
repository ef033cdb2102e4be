//! Reverse proxy mode (`UPSTREAM_URL`): what reaches a real upstream, and
//! what anonymous and refused clients get instead.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::Request;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{defaults, sign_in};
use crate::support::*;

/// What the upstream received: method, path and query, headers.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) uri: String,
    pub(crate) headers: HeaderMap,
}

/// An upstream on 127.0.0.1:0 that records every request and echoes it as
/// JSON, with caching and content policies of its own.
pub(crate) struct Upstream {
    pub(crate) addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    pub(crate) async fn start() -> Self {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = seen.clone();
        let app = axum::Router::new().fallback(move |request: Request| {
            let record = record.clone();
            async move {
                let uri = request.uri().to_string();
                let headers = request.headers().clone();
                record.lock().unwrap().push(Seen {
                    uri: uri.clone(),
                    headers: headers.clone(),
                });
                let echoed: serde_json::Map<String, Value> = headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or("?"))))
                    .collect();
                (
                    [
                        ("cache-control", "public, max-age=60"),
                        ("content-security-policy", "default-src 'self' 'unsafe-inline'"),
                    ],
                    axum::Json(json!({"uri": uri, "headers": echoed})),
                )
                    .into_response()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, seen }
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Tests run in parallel: a gateway is built while this lock is held, so
/// that it reads its own test's [`UPSTREAM`].
static START: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The upstream's address for the `tweak` function pointer (one per test binary run is enough: each test starts its own and sets it first).
static UPSTREAM: OnceLock<Mutex<String>> = OnceLock::new();

fn upstream_url() -> String {
    UPSTREAM.get_or_init(Mutex::default).lock().unwrap().clone()
}

/// A gateway in front of a fresh upstream: `/public` public, `/admin` for
/// the group `admins` (which the test user is not in).
async fn proxy_app() -> (Upstream, crate::fake_op::FakeOp, TestApp) {
    let upstream = Upstream::start().await;
    let (op, app) = gateway_to(&format!("http://{}", upstream.addr)).await;
    (upstream, op, app)
}

/// A gateway in front of the upstream at `url`.
async fn gateway_to(url: &str) -> (crate::fake_op::FakeOp, TestApp) {
    gateway_with(url, false).await
}

/// A gateway in front of the upstream at `url`, with the test client
/// (127.0.0.1) a trusted proxy when `trusted`.
async fn gateway_with(url: &str, trusted: bool) -> (crate::fake_op::FakeOp, TestApp) {
    let _one_at_a_time = START.lock().await;
    *UPSTREAM.get_or_init(Mutex::default).lock().unwrap() = url.to_owned();
    fn settings(a: &mut oidc_gate::config::Args) {
        a.gateway = defaults();
        a.gateway.upstream_url = Some(upstream_url());
        a.gateway.public_paths = Some("/public".into());
        a.gateway.config_file = Some(super::admins_only_file());
    }
    match trusted {
        false => super::gateway(settings).await,
        true => {
            super::gateway(|a| {
                settings(a);
                a.trusted_proxies = Some("127.0.0.1/32".into());
            })
            .await
        }
    }
}

const SPOOFED: [(&str, &str); 6] = [
    ("X-Forwarded-User", "admin"),
    ("x-forwarded-email", "boss@example.com"),
    ("X-FORWARDED-GROUPS", "admins"),
    ("X-Forwarded-Preferred-Username", "root"),
    ("X-Auth-Request-Email", "boss@example.com"),
    ("X-Forwarded-Access-Token", "forged"),
];

async fn get_spoofed(browser: &Browser, url: &str) -> reqwest::Response {
    let mut request = browser.client.get(url);
    for (name, value) in SPOOFED {
        request = request.header(name, value);
    }
    request.header("Connection", "X-Forwarded-User").send().await.unwrap()
}

#[tokio::test]
async fn anonymous_browsers_are_sent_to_sign_in_and_api_calls_get_401() {
    let (upstream, op, app) = proxy_app().await;
    let browser = Browser::new();
    // Straight to the provider (no stop at /oauth2/start), to its callback
    // under the prefix, and back to the URL asked for.
    let r = browser.get(&app.url("/dashboards/1?x=1")).await;
    let authorize = to_provider(&r);
    assert!(authorize.starts_with(&op.url("/op/auth?")), "{authorize}");
    assert_eq!(query_param(&authorize, "redirect_uri"), app.url("/oauth2/callback"));
    assert!(upstream.seen().is_empty(), "nothing reached the upstream");
    let other = Browser::new();
    for (method, accept, xhr) in [
        ("GET", "application/json", false),
        ("GET", "text/html", true),
        ("POST", "text/html", false),
    ] {
        let mut request = other
            .client
            .request(method.parse().unwrap(), app.url("/api/x"))
            .header("Accept", accept);
        if xhr {
            request = request.header("X-Requested-With", "XMLHttpRequest");
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {accept} {xhr}");
        assert!(set_cookies(&r).is_empty(), "no login started for an API call");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "unauthenticated");
        assert_eq!(body["login"], "/oauth2/start");
    }
    assert!(upstream.seen().is_empty(), "nothing reached the upstream");
    let callback = redirect_target(&browser.get(&authorize).await);
    let landed = browser.get(&callback).await;
    assert_eq!(location(&landed), "/dashboards/1?x=1");
    let r = browser.get(&app.url("/dashboards/1?x=1")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(upstream.seen().len(), 1);
}

#[tokio::test]
async fn public_paths_reach_the_upstream_anonymously_without_any_identity_and_tricks_do_not() {
    let (upstream, _op, app) = proxy_app().await;
    let browser = Browser::new();
    let r = get_spoofed(&browser, &app.url("/public/app.css")).await;
    assert_eq!(r.status(), StatusCode::OK);
    // The app's own policies stand.
    assert_eq!(r.headers()["cache-control"], "public, max-age=60");
    assert_eq!(
        r.headers()["content-security-policy"],
        "default-src 'self' 'unsafe-inline'"
    );
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    for (name, _) in SPOOFED {
        assert!(seen[0].headers.get(name).is_none(), "{name} reached the upstream");
    }
    for trick in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public%2F..%2Fadmin",
        "/PUBLIC/x",
        "/public/..;/admin",
        "/public/..%5Cadmin",
    ] {
        let r = browser
            .client
            .get(format!("http://{}{trick}", app.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{trick}");
    }
    assert_eq!(upstream.seen().len(), 1, "no trick reached the upstream");
}

#[tokio::test]
async fn signed_in_requests_reach_the_upstream_with_the_gateways_identity_only() {
    let log = crate::logs::Captured::default();
    let _guard = log.json_default();
    let (upstream, _op, app) = proxy_app().await;
    let browser = Browser::new();
    assert_eq!(sign_in(&app, &browser, "/dashboards/1?x=1").await, "/dashboards/1?x=1");
    let r = get_spoofed(&browser, &app.url("/dashboards/1?x=1")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let seen = upstream.seen().pop().unwrap();
    assert_eq!(seen.uri, "/dashboards/1?x=1");
    let h = &seen.headers;
    assert_eq!(h.get_all("x-forwarded-user").iter().collect::<Vec<_>>(), ["user-1"]);
    assert_eq!(
        h.get_all("x-forwarded-email").iter().collect::<Vec<_>>(),
        ["ada@example.com"]
    );
    assert_eq!(h["x-forwarded-preferred-username"], "ada");
    assert_eq!(h["x-forwarded-groups"], "users,ops");
    assert!(h.get("x-auth-request-email").is_none());
    assert!(h.get("x-forwarded-access-token").is_none());
    // The session id stays with the gateway.
    let cookies = h
        .get("cookie")
        .map(|c| c.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(!cookies.contains("oidc_gate"), "{cookies}");
    // The path the upstream sees is the one that was judged.
    let r = browser
        .client
        .get(format!("http://{}/a/./b//c/../d?q=1", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(upstream.seen().pop().unwrap().uri, "/a/b/d?q=1");
    // Per-path rules: refused with the page, the session kept (and audited:
    // as to the callsite's cached interest, see `a_refused_path_is_audited`).
    tracing::callsite::rebuild_interest_cache();
    for ruled in ["/admin", "/x/../admin", "/public/..;/admin", "/ADMIN/x", "/%41dmin"] {
        let r = browser
            .client
            .get(format!("http://{}{ruled}", app.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{ruled}");
        assert!(text(r).await.contains("group_not_allowed"));
    }
    assert!(
        upstream
            .seen()
            .iter()
            .all(|s| !s.uri.to_ascii_lowercase().contains("admin"))
    );
    // Each refusal is audited with the path as judged.
    let lines = log.json();
    let refused = crate::logs::audit(&lines, "path_refused");
    let paths: Vec<_> = refused.iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/admin", "/admin", "/public/..;/admin", "/ADMIN/x", "/Admin"]);
    assert!(
        refused
            .iter()
            .all(|e| e["subject"] == "user-1" && e["reason"] == "group_not_allowed")
    );
    assert_eq!(browser.get(&app.url("/dashboards/2")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn websockets_pass_for_signed_in_sessions_only() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(conn).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let (_op, app) = gateway_to(&format!("http://{addr}")).await;
    let url = format!("ws://{}/socket", app.addr);
    // Anonymous: a WebSocket is no navigation, so 401, never a redirect.
    let conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    match tokio_tungstenite::client_async(url.as_str(), conn).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!(
            "an anonymous WebSocket must be refused: {:?}",
            other.map(|(_, r)| r.status())
        ),
    }
    let browser = Browser::new();
    sign_in(&app, &browser, "/").await;
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("cookie", browser.cookies(&app.url("/")).parse().unwrap());
    let conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async(request, conn).await.unwrap();
    assert_eq!(response.status(), 101);
    ws.send(Message::text("through the whole gateway")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("through the whole gateway")
    );
}

/// Asks the public path with a proxy's `X-Forwarded-For` and `X-Request-Id`;
/// returns what the upstream saw of them and the answer's `X-Request-Id`.
async fn forwarded(app: &TestApp, upstream: &Upstream) -> (String, String, String) {
    let r = reqwest::Client::new()
        .get(app.url("/public/x"))
        .header("X-Forwarded-For", "6.6.6.6, 203.0.113.9")
        .header("X-Request-Id", "edge-7f3a")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let answered = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let seen = upstream.seen().pop().unwrap();
    let one = |name: &str| {
        let values: Vec<_> = seen.headers.get_all(name).iter().collect();
        assert_eq!(values.len(), 1, "one {name}");
        values[0].to_str().unwrap().to_owned()
    };
    (one("x-forwarded-for"), one("x-request-id"), answered)
}

#[tokio::test]
async fn the_upstream_gets_the_believed_client_and_the_request_id() {
    // Nobody trusted: the client's X-Forwarded-For and id are not passed on.
    let (upstream, _op, app) = proxy_app().await;
    let (xff, upstream_id, answered) = forwarded(&app, &upstream).await;
    assert_eq!(xff, "127.0.0.1");
    assert_ne!(upstream_id, "edge-7f3a");
    assert_eq!(upstream_id, answered, "the upstream's id is the answer's");
    assert_eq!(answered.len(), 32);

    // The test client a trusted proxy: its client and its id go on; what is
    // left of the client it names is not believed.
    let upstream = Upstream::start().await;
    let (_op, app) = gateway_with(&format!("http://{}", upstream.addr), true).await;
    let (xff, upstream_id, answered) = forwarded(&app, &upstream).await;
    assert_eq!(xff, "203.0.113.9, 127.0.0.1");
    assert_eq!((upstream_id.as_str(), answered.as_str()), ("edge-7f3a", "edge-7f3a"));
}

#[tokio::test]
async fn the_upstream_gets_the_access_token_refreshed_when_due() {
    let upstream = Upstream::start().await;
    let (op, app) = {
        let _one_at_a_time = START.lock().await;
        *UPSTREAM.get_or_init(Mutex::default).lock().unwrap() = format!("http://{}", upstream.addr);
        super::gateway(|a| {
            a.gateway = defaults();
            a.gateway.upstream_url = Some(upstream_url());
            a.gateway.pass_access_token = "true".into();
            a.gateway.pass_authorization_header = "true".into();
        })
        .await
    };
    let browser = Browser::new();
    sign_in(&app, &browser, "/").await;
    let passed = |seen: &Seen| {
        let h = &seen.headers;
        let access = h["x-forwarded-access-token"].to_str().unwrap().to_owned();
        let id = h["authorization"]
            .to_str()
            .unwrap()
            .trim_start_matches("Bearer ")
            .to_owned();
        (access, id)
    };
    assert_eq!(browser.get(&app.url("/x")).await.status(), StatusCode::OK);
    let (first, first_id) = passed(&upstream.seen().pop().unwrap());
    assert_eq!(op.access_tokens(), std::slice::from_ref(&first));

    // About to expire (the fake provider's tokens live 300 s): refreshed
    // first, and the upstream gets the new access and ID tokens.
    app.clock.advance(std::time::Duration::from_secs(290));
    assert_eq!(browser.get(&app.url("/x")).await.status(), StatusCode::OK);
    let (second, second_id) = passed(&upstream.seen().pop().unwrap());
    assert_eq!(op.log().refresh, 1);
    assert_ne!(second, first);
    assert_ne!(second_id, first_id);
    assert_eq!(op.log().id_tokens.last(), Some(&second_id));

    // The grant revoked at the provider: the session ends at the next
    // refresh, the browser is sent to sign in, the upstream sees nothing.
    op.set(|b| b.token_reply = crate::fake_op::TokenReply::Error(400, "invalid_grant"));
    app.clock.advance(std::time::Duration::from_secs(301));
    let before = upstream.seen().len();
    let r = browser.get(&app.url("/x")).await;
    to_provider(&r);
    assert_eq!(upstream.seen().len(), before);
}
