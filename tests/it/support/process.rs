//! The `oidc-gate` binary as a process: started on a free loopback port
//! with only the environment a test gives it, and what it has logged.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_oidc-gate");

/// Starts the binary in `dir` (its working directory, no `.env`) on a free
/// loopback port, with `PUBLIC_URL` that port's http URL unless `env` says
/// otherwise; waits until `/ping` answers 200 (in every mode). Returns the process, its
/// output piped, and its base URL.
pub async fn start(dir: &Path, env: &[(&str, &str)]) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("LISTEN", format!("127.0.0.1:{port}"))
        .env("PUBLIC_URL", &base)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let probe = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = probe.get(format!("{base}/ping")).send().await
            && r.status() == StatusCode::OK
        {
            return (child, base);
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("oidc-gate exited ({status}): {}", output(&mut child).await);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("oidc-gate did not start: {}", output(&mut child).await);
}

/// What a process started by [`start`] has written so far, stderr then stdout.
pub async fn output(child: &mut Child) -> String {
    let mut out = Vec::new();
    drain(child.stderr.as_mut().unwrap(), &mut out).await;
    drain(child.stdout.as_mut().unwrap(), &mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads whatever the process has written to a pipe so far.
async fn drain(pipe: &mut (impl AsyncReadExt + Unpin), into: &mut Vec<u8>) {
    let mut buf = [0u8; 65536];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), pipe.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        into.extend_from_slice(&buf[..n]);
    }
}
