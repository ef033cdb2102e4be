//! Bodies stream through the proxy both ways: each side sees the first bytes
//! before the other has sent the last (a proxy that buffered would deadlock
//! these tests, which wait for that before sending the rest).

use std::sync::Mutex;

use axum::body::{Body, Bytes};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

use super::*;

const MIB: usize = 1 << 20;
const TOTAL: usize = 64 * MIB;
/// How long a side waits for the other's first bytes before calling it buffered.
const PATIENCE: Duration = Duration::from_secs(20);

type Signal = Arc<Mutex<Option<oneshot::Sender<()>>>>;

fn fire(signal: &Signal) {
    if let Some(tx) = signal.lock().unwrap().take() {
        tx.send(()).ok();
    }
}

/// An upstream that counts an upload (telling `first` when its first bytes
/// came) and serves a download that stops after its first MiB until `resume`.
async fn upstream(first: Signal, resume: Arc<Mutex<Option<oneshot::Receiver<()>>>>) -> SocketAddr {
    let upload = move |body: Body| async move {
        let mut body = body;
        let mut total = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.unwrap().into_data() else { continue };
            total += data.len();
            fire(&first);
        }
        total.to_string()
    };
    let download = move || async move {
        let resume = resume.lock().unwrap().take().unwrap();
        let chunks = futures_util::stream::unfold((0usize, Some(resume)), |(sent, resume)| async move {
            if sent == TOTAL {
                return None;
            }
            let resume = match resume {
                Some(rx) if sent > 0 => {
                    rx.await.ok();
                    None
                }
                other => other,
            };
            Some((
                Ok::<_, std::io::Error>(Bytes::from(vec![b'd'; MIB])),
                (sent + MIB, resume),
            ))
        });
        Body::from_stream(chunks)
    };
    let app = Router::new()
        .route("/upload", post(upload))
        .route("/download", get(download));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn large_bodies_stream_both_ways() {
    let (first_tx, first_rx) = oneshot::channel();
    let (resume_tx, resume_rx) = oneshot::channel();
    let upstream = upstream(
        Arc::new(Mutex::new(Some(first_tx))),
        Arc::new(Mutex::new(Some(resume_rx))),
    )
    .await;
    let gate = gate(settings(&format!("http://{upstream}")), Some(alice())).await;

    // Upload: 1 MiB, then wait until the upstream has bytes, then the rest.
    let mut conn = TcpStream::connect(gate).await.unwrap();
    let head = format!("POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: {TOTAL}\r\nConnection: close\r\n\r\n");
    conn.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'u'; MIB];
    conn.write_all(&chunk).await.unwrap();
    tokio::time::timeout(PATIENCE, first_rx)
        .await
        .expect("the upstream saw the upload's first bytes before the client sent the rest")
        .unwrap();
    for _ in 1..TOTAL / MIB {
        conn.write_all(&chunk).await.unwrap();
    }
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert!(
        answer.ends_with(&format!("\r\n\r\n{TOTAL}")),
        "the upstream got it all: {answer}"
    );

    // Download: the client reads the first bytes while the upstream holds the rest.
    let mut r = reqwest::get(format!("http://{gate}/download")).await.unwrap();
    assert_eq!(r.status(), 200);
    let first = tokio::time::timeout(PATIENCE, r.chunk())
        .await
        .expect("the client got the download's first bytes before the upstream sent the rest")
        .unwrap()
        .unwrap();
    let mut total = first.len();
    resume_tx.send(()).unwrap();
    while let Some(chunk) = r.chunk().await.unwrap() {
        total += chunk.len();
    }
    assert_eq!(total, TOTAL);
}
