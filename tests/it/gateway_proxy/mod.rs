//! The gateway's reverse proxy engine over real TCP: a small axum server
//! whose fallback is `Proxy::forward`, in front of real upstreams started
//! here (an axum echo app, a WebSocket echo, raw TCP servers that misbehave).

mod failures;
mod forwarding;
mod smuggling;
mod streaming;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use oidc_gate::gateway::headers::{HeaderPolicy, Identity};
use oidc_gate::gateway::proxy::{Proxy, ProxySettings};
use oidc_gate::secret::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

/// The signed-in user every gate in these tests forwards.
pub fn alice() -> Identity {
    Identity {
        user: "alice-sub".into(),
        email: Some("alice@example.com".into()),
        preferred_username: Some("alice".into()),
        groups: vec!["admins".into(), "staff".into()],
        access_token: Some(Secret::new("access-token-value")),
        id_token: Some(Secret::new("id-token-value")),
    }
}

/// Settings for a gate in front of `upstream` (a base URL).
pub fn settings(upstream: &str) -> ProxySettings {
    ProxySettings {
        upstream: Url::parse(upstream).unwrap(),
        timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
        policy: HeaderPolicy {
            pass_access_token: true,
            pass_authorization_header: false,
            pass_host_header: true,
            own_cookie: "oidc_gate",
        },
        public_url: Url::parse("https://gate.example.com/").unwrap(),
        tunnels: Default::default(),
    }
}

#[derive(Clone)]
struct Gate {
    proxy: Proxy,
    identity: Option<Arc<Identity>>,
}

/// Starts a gate on 127.0.0.1:0 that forwards every request, as `identity`
/// (none: anonymous). `Accept: application/json` asks for JSON errors.
pub async fn gate(settings: ProxySettings, identity: Option<Identity>) -> SocketAddr {
    let state = Gate {
        proxy: Proxy::new(settings).expect("valid proxy settings"),
        identity: identity.map(Arc::new),
    };
    async fn forward(
        State(gate): State<Gate>,
        ConnectInfo(peer): ConnectInfo<SocketAddr>,
        request: Request,
    ) -> Response {
        let json = wants_json(request.headers());
        gate.proxy
            .forward(request, gate.identity.as_deref(), Some(peer), json)
            .await
    }
    // Error pages are rendered on the way out, as in the app's router.
    let links = oidc_gate::web::Links::app();
    let app = Router::new()
        .fallback(forward)
        .with_state(state)
        .layer(tower::util::MapResponseLayer::new(move |r| {
            oidc_gate::web::render_error_pages(&links, r)
        }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .unwrap();
    });
    addr
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"))
}

/// A listener that counts the connections it accepts (to see keep-alive reuse).
pub struct Counting {
    inner: TcpListener,
    count: Arc<AtomicUsize>,
}

impl Counting {
    pub async fn bind(addr: &str) -> (Self, Arc<AtomicUsize>) {
        let count = Arc::new(AtomicUsize::new(0));
        let inner = TcpListener::bind(addr).await.unwrap();
        (
            Self {
                inner,
                count: count.clone(),
            },
            count,
        )
    }
}

impl axum::serve::Listener for Counting {
    type Io = TcpStream;
    type Addr = SocketAddr;
    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            if let Ok(conn) = self.inner.accept().await {
                self.count.fetch_add(1, Ordering::SeqCst);
                return conn;
            }
        }
    }
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A free loopback port (bound, then released).
pub async fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends raw bytes to `addr` and reads until the server closes (at most 10 s).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    });
    read.await.expect("the server closes the connection");
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw HTTP/1.1 response.
pub fn status_of(raw: &str) -> u16 {
    raw.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"))
}

/// Reads one request head (up to the blank line) from a raw connection; `None` at EOF.
pub async fn read_head(conn: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// A raw TCP upstream: each connection runs `serve` (given the connection
/// number, from 0). Returns its address.
pub async fn raw_upstream<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(usize, TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for n in 0.. {
            let Ok((conn, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(serve(n, conn));
        }
    });
    addr
}

/// What the echo upstream received.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Which start of the upstream answered (to tell a restarted one apart).
    pub generation: u32,
}

impl Seen {
    /// Every value of `name` (lowercase), joined with `|`.
    pub fn header(&self, name: &str) -> Option<String> {
        let all: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect();
        (!all.is_empty()).then(|| all.join("|"))
    }
}

/// A running echo upstream: answers every request with what it saw, as JSON.
pub struct Echo {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub seen: Arc<std::sync::Mutex<Vec<Seen>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Echo {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0", 1).await
    }

    /// Starts on `addr` (a fixed one to restart on the same port).
    pub async fn start_on(addr: &str, generation: u32) -> Self {
        let (listener, connections) = Counting::bind(addr).await;
        let addr = axum::serve::Listener::local_addr(&listener).unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        let echo = move |request: Request| {
            let record = record.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
                let seen = Seen {
                    method: parts.method.to_string(),
                    uri: parts.uri.to_string(),
                    headers: parts
                        .headers
                        .iter()
                        .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                        .collect(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                    generation,
                };
                record.lock().unwrap().push(seen.clone());
                axum::Json(seen)
            }
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(listener, Router::new().fallback(echo)).with_graceful_shutdown(async {
            stopped.await.ok();
        });
        let task = tokio::spawn(async move { server.await.unwrap() });
        Self {
            addr,
            connections,
            seen,
            stop: Some(stop),
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it: idle keep-alive connections are closed, the port released.
    pub async fn stop(mut self) {
        self.stop.take().unwrap().send(()).ok();
        (&mut self.task).await.unwrap();
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}
