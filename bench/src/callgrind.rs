//! Instructions per request, counted by valgrind's callgrind: unlike
//! requests per second on a shared machine, the count is the same on every
//! run of the same binary and load, so a cost of a few percent shows
//! through the noise that a 10-second wrk run carries.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::client::Client;
use crate::server::{Server, temp_dir};

/// Whether valgrind can be run.
pub fn available() -> bool {
    crate::server::on_path("valgrind") && crate::server::on_path("callgrind_control")
}

/// oidc-gate's instructions per `GET /secret` of a signed-in session, with
/// `env` added to its settings: signed in, warmed up, then `requests`
/// sequential requests on one kept-alive connection between zeroing and
/// dumping callgrind's counters.
pub async fn secret_instructions(bin: &Path, env: &[(&str, &str)], requests: usize) -> Result<u64> {
    let dir = temp_dir("callgrind")?;
    let out = dir.join("callgrind.out");
    let mut server = Server::oidc_gate_callgrind(bin, dir.clone(), env, &out)?;
    // Everything runs some fifty times slower under valgrind.
    server
        .wait_answering_within("/healthz", Duration::from_secs(120))
        .with_context(|| format!("oidc-gate under callgrind did not start: {}", server.log_tail()))?;
    let client = Client::new(&server.url(""))?;
    let id = client.login("Ada Lovelace", "ada@example.com").await?;
    for _ in 0..requests.min(200) {
        secret(&client, &id).await?;
    }
    control(server.pid(), "-z")?;
    for _ in 0..requests {
        secret(&client, &id).await?;
    }
    control(server.pid(), "-d")?;
    server.stop();
    let total = dumped_total(&dir)?;
    Ok(total / requests as u64)
}

async fn secret(client: &Client, id: &str) -> Result<()> {
    let (status, _, _) = client.fetch("/secret", id).await?;
    ensure!(status.is_success(), "/secret answered {status} under callgrind");
    Ok(())
}

/// `callgrind_control <flag> <pid>`: `-z` zeroes the counters, `-d` dumps them.
fn control(pid: u32, flag: &str) -> Result<()> {
    let status = Command::new("callgrind_control")
        .arg(flag)
        .arg(pid.to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .context("run callgrind_control")?;
    ensure!(status.success(), "callgrind_control {flag} failed ({status})");
    Ok(())
}

/// The instruction total of the one dump `callgrind_control -d` wrote
/// (`callgrind.out.1`; the file written at exit is not it).
fn dumped_total(dir: &Path) -> Result<u64> {
    let path = dir.join("callgrind.out.1");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("summary:").or_else(|| line.strip_prefix("totals:")) {
            return n
                .split_whitespace()
                .next()
                .context("empty total")?
                .parse()
                .context("total");
        }
    }
    bail!("no total in {}", path.display())
}
