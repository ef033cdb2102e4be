//! Where the server's CPU goes: a flat `perf` profile of the server process
//! while load runs, summed into the few things that can dominate (SQLite,
//! ECDSA, HTTP, the kernel's network stack, allocation, …).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// A profile's summary.
#[derive(Debug, Clone)]
pub struct Profile {
    /// What ran meanwhile.
    pub title: String,
    /// Samples taken.
    pub samples: u64,
    /// Share of samples per group, largest first.
    pub groups: Vec<(f64, &'static str)>,
    /// The hottest symbols: share and (shortened) name.
    pub top: Vec<(f64, String)>,
}

/// A `perf record` of process `pid` for `duration`, started in the background.
pub struct Recording {
    child: Child,
    file: std::path::PathBuf,
}

/// Starts sampling `pid` (all its threads) at 999 Hz for `duration`, into `dir`.
pub fn record(pid: u32, duration: Duration, dir: &Path) -> Result<Recording> {
    let file = dir.join("perf.data");
    let child = Command::new("perf")
        .args(["record", "-q", "-F", "999", "-p", &pid.to_string(), "-o"])
        .arg(&file)
        .args(["--", "sleep", &duration.as_secs().max(1).to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("run perf record")?;
    Ok(Recording { child, file })
}

impl Recording {
    /// Waits for the recording to end and summarises it.
    pub fn finish(mut self, title: &str) -> Result<Profile> {
        let status = self.child.wait()?;
        if !status.success() {
            bail!("perf record failed ({status})");
        }
        let out = Command::new("perf")
            .args(["report", "--stdio", "--no-children", "--sort", "dso,symbol", "-i"])
            .arg(&self.file)
            .stderr(Stdio::null())
            .output()
            .context("run perf report")?;
        let _ = std::fs::remove_file(&self.file);
        let text = String::from_utf8_lossy(&out.stdout);
        summarise(title, &text)
    }
}

/// Reads `perf report --stdio --sort dso,symbol` output.
fn summarise(title: &str, text: &str) -> Result<Profile> {
    let mut samples = 0;
    let mut rows: Vec<(f64, String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# Samples: ") {
            samples = rest
                .split_whitespace()
                .next()
                .and_then(|n| {
                    n.trim_end_matches(['K', 'M'])
                        .parse::<f64>()
                        .ok()
                        .map(|v| scale(rest, v))
                })
                .unwrap_or(0);
            continue;
        }
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        // "12.34%  oidc-gate  [.] symbol name"
        let Some((pct, rest)) = line.split_once('%') else {
            continue;
        };
        let Ok(pct) = pct.trim().parse::<f64>() else { continue };
        let rest = rest.trim();
        let Some((dso, sym)) = rest.split_once(" [") else {
            continue;
        };
        let sym = sym.split_once("] ").map_or(sym, |(_, s)| s).trim();
        rows.push((pct, dso.trim().to_owned(), sym.to_owned()));
    }
    if rows.is_empty() {
        bail!("perf report found no samples");
    }
    let mut groups: Vec<(f64, &'static str)> = Vec::new();
    for (pct, dso, sym) in &rows {
        let g = group(dso, sym);
        match groups.iter_mut().find(|(_, name)| *name == g) {
            Some(entry) => entry.0 += pct,
            None => groups.push((*pct, g)),
        }
    }
    groups.sort_by(|a, b| b.0.total_cmp(&a.0));
    let top = rows.iter().take(12).map(|(p, _, s)| (*p, shorten(s))).collect();
    Ok(Profile {
        title: title.to_owned(),
        samples,
        groups,
        top,
    })
}

fn scale(text: &str, v: f64) -> u64 {
    let word = text.split_whitespace().next().unwrap_or_default();
    let k = if word.ends_with('K') {
        1e3
    } else if word.ends_with('M') {
        1e6
    } else {
        1.0
    };
    (v * k) as u64
}

/// The group a sample belongs to, by its library and symbol.
fn group(dso: &str, sym: &str) -> &'static str {
    let s = sym.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| s.contains(n));
    if dso.contains("kernel") || dso == "[unknown]" && sym.starts_with("0xffff") {
        "kernel (syscalls, TCP loopback, scheduling)"
    } else if s.contains("as core::clone::clone>::clone") || s.starts_with("core::ptr::drop_in_place") {
        "cloning and dropping values (Clone, drop_in_place)"
    } else if has(&["quick_cache::", "moka::", "crossbeam"]) {
        "in-memory caches (quick_cache)"
    } else if has(&["sqlite3", "sqlx_sqlite", "sqlx_core::"]) {
        "SQLite and sqlx"
    } else if has(&["sqlx_postgres", "fred::", "redis"]) {
        "PostgreSQL/Redis client"
    } else if has(&[
        "p256",
        "primeorder",
        "elliptic_curve",
        "ecdsa",
        "crypto_bigint",
        "sha2",
        "hmac",
        "ring::",
    ]) {
        "crypto (ECDSA, SHA-2)"
    } else if has(&["rmp_serde", "rmp::", "serde_json", "serde::", "base64"]) {
        "serialisation (MessagePack, JSON, base64)"
    } else if has(&[
        "malloc", "free", "realloc", "memcpy", "memmove", "memset", "_int_", "cfree",
    ]) {
        "allocation and copying (libc)"
    } else if has(&["tokio::", "mio::", "parking_lot", "futures_"]) {
        "tokio runtime"
    } else if has(&["hyper", "http::", "httparse", "h2::"]) {
        "HTTP (hyper)"
    } else if has(&["tracing", "env_filter", "matchers"]) {
        "logging (tracing)"
    } else if has(&["tower_sessions", "axum_login"]) {
        "sessions and login layers"
    } else if has(&["askama"]) {
        "templates (askama)"
    } else if has(&["axum", "tower", "matchit"]) {
        "routing (axum, tower)"
    } else if has(&["oidc_gate"]) {
        "oidc-gate's own code"
    } else if dso.contains("libc") {
        "other libc"
    } else {
        "other"
    }
}

/// A symbol without its hash suffix and with long generic arguments elided.
fn shorten(sym: &str) -> String {
    let sym = sym.trim();
    let sym = match sym.rfind("::h") {
        Some(i) if sym[i + 3..].chars().all(|c| c.is_ascii_hexdigit()) => &sym[..i],
        _ => sym,
    };
    if sym.chars().count() > 110 {
        let cut: String = sym.chars().take(107).collect();
        format!("{cut}...")
    } else {
        sym.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_perf_report() {
        let text = "# Samples: 12K of event 'cpu-clock:ppp'
#
    30.00%  oidc-gate          [.] sqlite3VdbeExec
    20.00%  [kernel.kallsyms]  [k] tcp_sendmsg
    10.00%  oidc-gate          [.] p256::arithmetic::field::FieldElement::mul::h0123456789abcdef
     5.00%  libc.so.6          [.] malloc
";
        let p = summarise("t", text).unwrap();
        assert_eq!(p.samples, 12_000);
        assert_eq!(p.groups[0], (30.0, "SQLite and sqlx"));
        assert_eq!(p.top[2].1, "p256::arithmetic::field::FieldElement::mul");
        assert!(p.groups.iter().any(|g| g.1.starts_with("kernel")));
    }
}
