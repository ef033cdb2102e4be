//! Stopping the binary as a load balancer and an orchestrator see it: on
//! SIGTERM `/ready` turns `503` while new connections are still served for
//! `SHUTDOWN_GRACE`; then requests in flight (an upload through the gateway,
//! a WebSocket tunnel) finish, the process exits 0; what is still running
//! at `SHUTDOWN_TIMEOUT` is cut. Every step waits for the log line of the
//! phase, never for time.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use http_body_util::BodyExt;
use reqwest::StatusCode;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::oneshot;

use crate::support::process::start;

/// How long a step may take before the test calls it hung (a guard, not a measure).
const HANG: Duration = Duration::from_secs(30);
/// The upload: half before the signal, half after.
const UPLOAD: usize = 2 << 20;

/// The process's log, read line by line as it is written.
struct Log {
    lines: Lines<BufReader<ChildStdout>>,
    seen: String,
}

impl Log {
    fn of(child: &mut Child) -> Self {
        Self {
            lines: BufReader::new(child.stdout.take().unwrap()).lines(),
            seen: String::new(),
        }
    }

    /// Waits for a line containing `needle`.
    async fn until(&mut self, needle: &str) {
        let found = tokio::time::timeout(HANG, async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                self.seen.push_str(&line);
                self.seen.push('\n');
                if line.contains(needle) {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(found == Ok(true), "no log line with {needle:?}: {}", self.seen);
    }

    /// Everything logged until the process exited.
    async fn rest(mut self) -> String {
        while let Ok(Ok(Some(line))) = tokio::time::timeout(HANG, self.lines.next_line()).await {
            self.seen.push_str(&line);
            self.seen.push('\n');
        }
        self.seen
    }
}

async fn sigterm(child: &Child) {
    let pid = child.id().expect("running").to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
    assert!(killed.success());
}

async fn exit_code(child: &mut Child) -> Option<i32> {
    let status = tokio::time::timeout(HANG, child.wait())
        .await
        .expect("the process exits")
        .unwrap();
    status.code()
}

/// A client that opens a new connection for every request.
fn fresh_connections() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn ready_turns_503_at_the_signal_while_new_connections_are_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = start(dir.path(), &[("RUST_LOG", "info"), ("SHUTDOWN_GRACE", "1h")]).await;
    let mut log = Log::of(&mut child);
    let client = fresh_connections();
    let get = |path: &str| client.get(format!("{base}{path}")).send();
    assert_eq!(get("/ready").await.unwrap().status(), StatusCode::OK);
    assert_eq!(get("/ping").await.unwrap().status(), StatusCode::OK);

    sigterm(&child).await;
    log.until("draining").await;
    let ready = get("/ready").await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.text().await.unwrap(), "shutting down");
    // Alive, and still serving whoever the load balancer sends meanwhile.
    assert_eq!(get("/ping").await.unwrap().status(), StatusCode::OK);
    assert_eq!(get("/healthz").await.unwrap().status(), StatusCode::OK);
    assert_eq!(get("/").await.unwrap().status(), StatusCode::OK);
    assert_eq!(get("/login").await.unwrap().status(), StatusCode::SEE_OTHER);
    assert!(child.try_wait().unwrap().is_none(), "still running during the grace");
}

type Signal = Arc<Mutex<Option<oneshot::Sender<()>>>>;

/// An upstream whose `/upload` counts the bytes it is sent (telling `first`
/// when the first ones came) and answers with their number.
async fn upload_upstream() -> (SocketAddr, oneshot::Receiver<()>) {
    let (tx, first) = oneshot::channel();
    let signal: Signal = Arc::new(Mutex::new(Some(tx)));
    let upload = move |mut body: Body| async move {
        let mut total = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                total += data.len();
                if let Some(tx) = signal.lock().unwrap().take() {
                    tx.send(()).ok();
                }
            }
        }
        total.to_string()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/upload", post(upload));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, first)
}

/// A gateway in front of `upstream` with `public` paths, draining as `env` says.
async fn gateway(dir: &std::path::Path, upstream: SocketAddr, env: &[(&str, &str)]) -> (Child, SocketAddr) {
    let upstream = format!("http://{upstream}");
    let mut all = vec![
        ("RUST_LOG", "info"),
        ("UPSTREAM_URL", upstream.as_str()),
        ("PUBLIC_PATHS", "/upload,/socket"),
    ];
    all.extend_from_slice(env);
    let (child, base) = start(dir, &all).await;
    (child, base.trim_start_matches("http://").parse().unwrap())
}

/// Starts an upload of [`UPLOAD`] bytes and sends the first half.
async fn start_upload(gate: SocketAddr) -> TcpStream {
    let mut conn = TcpStream::connect(gate).await.unwrap();
    let head = format!("POST /upload HTTP/1.1\r\nHost: {gate}\r\nContent-Length: {UPLOAD}\r\n\r\n");
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&vec![b'u'; UPLOAD / 2]).await.unwrap();
    conn
}

/// Whatever the server sends until it closes the connection.
async fn read_to_close(conn: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(HANG, conn.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the connection stays open");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_long_upload_in_flight_completes_after_the_signal_and_the_process_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, first_bytes) = upload_upstream().await;
    let (mut child, gate) = gateway(
        dir.path(),
        upstream,
        &[("SHUTDOWN_GRACE", "0s"), ("SHUTDOWN_TIMEOUT", "1h")],
    )
    .await;
    let mut log = Log::of(&mut child);
    let mut upload = start_upload(gate).await;
    first_bytes.await.unwrap();

    sigterm(&child).await;
    log.until("no longer accepting").await;
    // The listener closes: new connections are refused from now on.
    let refused = tokio::time::timeout(HANG, async {
        while TcpStream::connect(gate).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(refused.is_ok(), "new connections are still accepted after the grace");

    upload.write_all(&vec![b'u'; UPLOAD / 2]).await.unwrap();
    let answer = read_to_close(&mut upload).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with(&UPLOAD.to_string()),
        "the whole upload arrived: {answer}"
    );
    assert_eq!(exit_code(&mut child).await, Some(0));
    let rest = log.rest().await;
    assert!(rest.contains("every request finished"), "{rest}");
}

#[tokio::test]
async fn a_websocket_tunnel_open_at_the_signal_keeps_working_until_it_closes() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    let (mut child, gate) = gateway(
        dir.path(),
        upstream,
        &[("SHUTDOWN_GRACE", "0s"), ("SHUTDOWN_TIMEOUT", "1h")],
    )
    .await;
    let mut log = Log::of(&mut child);
    let conn = TcpStream::connect(gate).await.unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async(format!("ws://{gate}/socket"), conn)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("before"));

    sigterm(&child).await;
    log.until("no longer accepting").await;
    ws.send(Message::text("while draining")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("while draining"));
    assert!(child.try_wait().unwrap().is_none(), "waits for the open tunnel");

    ws.close(None).await.unwrap();
    drop(ws);
    assert_eq!(exit_code(&mut child).await, Some(0));
}

#[tokio::test]
async fn a_request_still_running_at_shutdown_timeout_is_cut_and_the_process_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, first_bytes) = upload_upstream().await;
    let (mut child, gate) = gateway(
        dir.path(),
        upstream,
        &[("SHUTDOWN_GRACE", "0s"), ("SHUTDOWN_TIMEOUT", "1s")],
    )
    .await;
    let mut log = Log::of(&mut child);
    // Half an upload, and the rest never comes.
    let mut upload = start_upload(gate).await;
    first_bytes.await.unwrap();

    sigterm(&child).await;
    assert_eq!(exit_code(&mut child).await, Some(0));
    let answer = read_to_close(&mut upload).await;
    assert_eq!(answer, "", "cut without an answer");
    log.until("SHUTDOWN_TIMEOUT reached").await;
}
