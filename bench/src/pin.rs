//! Keeps the session stores' own processes off the server's core. PostgreSQL
//! backends and the Redis server would otherwise run on whichever core is
//! free, taking CPU from oidc-gate's core and making per-core figures
//! depend on the scheduler; they run on the load generator's core instead,
//! as they would on their own machine in production.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sqlx::{Connection, PgConnection};

use crate::bulk::redis_addr;
use crate::server::LOAD_CORE;

/// `taskset -p [-a] <mask or -c cores> <pid>`.
fn taskset(args: &[&str]) -> Result<String> {
    let out = Command::new("taskset")
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .context("run taskset")?;
    if !out.status.success() {
        bail!(
            "taskset {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Pins the PostgreSQL backends that oidc-gate (`application_name`) opened
/// in the last `since` to the load core; returns how many.
pub async fn postgres_backends(url: &str, since: Duration) -> Result<usize> {
    let mut conn = PgConnection::connect(url).await?;
    let pids: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity
         WHERE application_name = 'oidc-gate' AND backend_start > now() - make_interval(secs => $1)",
    )
    .bind(since.as_secs_f64())
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    for pid in &pids {
        taskset(&["-p", "-c", LOAD_CORE, &pid.to_string()])?;
    }
    Ok(pids.len())
}

/// The Redis server pinned to the load core; its former CPU mask comes back on drop.
pub struct RedisServer {
    pid: u32,
    mask: String,
}

impl RedisServer {
    /// Finds the Redis server at `url` (`INFO server` tells its process id)
    /// and pins all its threads.
    pub async fn pin(url: &str) -> Result<Self> {
        let pid = redis_pid(url).await?;
        // "pid 123's current affinity mask: 3"
        let mask = taskset(&["-p", &pid.to_string()])?
            .rsplit(' ')
            .next()
            .map(|m| m.trim().to_owned())
            .context("taskset printed no mask")?;
        taskset(&["-a", "-p", "-c", LOAD_CORE, &pid.to_string()])?;
        Ok(Self { pid, mask })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Err(e) = taskset(&["-a", "-p", &self.mask, &self.pid.to_string()]) {
            eprintln!("bench: could not give the Redis server its CPU mask back: {e:#}");
        }
    }
}

async fn redis_pid(url: &str) -> Result<u32> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = redis_addr(url).with_context(|| format!("not a Redis URL: {url}"))?;
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"INFO server\r\n").await?;
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    // A bulk string: read until the process id line has arrived.
    while !String::from_utf8_lossy(&text).contains("\nrun_id:") {
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await??;
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&text)
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
        .context("Redis's INFO server has no process_id")
}
