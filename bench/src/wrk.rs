//! The load generator: `wrk` on the load core, one thread, 32 connections,
//! and the figures read back from its report.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::server::LOAD_CORE;

/// Concurrent connections of every wrk run.
pub const CONNECTIONS: u32 = 32;

/// What one wrk run measured.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    /// Requests per second.
    pub rps: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Requests completed.
    pub requests: u64,
    /// Bytes read, headers included.
    pub bytes: f64,
    /// Responses with a status ≥ 400, plus socket errors.
    pub errors: u64,
}

/// A wrk run: what to request and for how long.
#[derive(Clone, Copy)]
pub struct Run<'a> {
    /// The URL.
    pub url: &'a str,
    /// A `Cookie` header value, if any.
    pub cookie: Option<&'a str>,
    /// Other headers (`X-Original-URI` of forward auth).
    pub headers: &'a [(&'a str, &'a str)],
    /// A Lua script (e.g. one that varies the cookie), if any.
    pub script: Option<&'a Path>,
    /// How long.
    pub duration: Duration,
}

impl Run<'_> {
    /// The command line, for the report.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "taskset -c {LOAD_CORE} wrk -t1 -c{CONNECTIONS} -d{}s --latency",
            self.duration.as_secs()
        );
        if self.cookie.is_some() {
            s.push_str(" -H 'Cookie: oidc_gate=<id>'");
        }
        for (name, value) in self.headers {
            s.push_str(&format!(" -H '{name}: {value}'"));
        }
        if self.script.is_some() {
            s.push_str(" -s <cookies.lua>");
        }
        let path =
            url::Url::parse(self.url).map_or("/secret".to_owned(), |u| u[url::Position::BeforePath..].to_owned());
        s.push_str(&format!(" http://127.0.0.1:<port>{path}"));
        s
    }

    /// Runs wrk and reads its report.
    pub fn run(&self) -> Result<Figures> {
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", LOAD_CORE, "wrk", "-t1"])
            .arg(format!("-c{CONNECTIONS}"))
            .arg(format!("-d{}s", self.duration.as_secs().max(1)))
            .args(["--latency", "--timeout", "5s"]);
        if let Some(c) = self.cookie {
            cmd.arg("-H").arg(format!("Cookie: {c}"));
        }
        for (name, value) in self.headers {
            cmd.arg("-H").arg(format!("{name}: {value}"));
        }
        if let Some(s) = self.script {
            cmd.arg("-s").arg(s);
        }
        let out = cmd.arg(self.url).output().context("run wrk")?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "wrk failed ({}): {}{}",
                out.status,
                text,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        parse(&text).with_context(|| format!("cannot read wrk's report:\n{text}"))
    }
}

/// Reads the figures from wrk's `--latency` report.
pub fn parse(text: &str) -> Result<Figures> {
    let mut f = Figures {
        rps: f64::NAN,
        p50: Duration::ZERO,
        p99: Duration::ZERO,
        requests: 0,
        bytes: 0.0,
        errors: 0,
    };
    let (mut p50, mut p99, mut rps, mut total) = (false, false, false, false);
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => (f.p50, p50) = (duration(v)?, true),
            ["99%", v] => (f.p99, p99) = (duration(v)?, true),
            ["Requests/sec:", v] => (f.rps, rps) = (v.parse()?, true),
            [n, "requests", "in", _, b, "read"] => {
                f.requests = n.parse()?;
                f.bytes = size(b.trim_end_matches(','))?;
                total = true;
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => f.errors += n.parse::<u64>()?,
            ["Socket", "errors:", rest @ ..] => {
                // "connect 0, read 0, write 0, timeout 0"
                for pair in rest.chunks(2) {
                    if let [_, n] = pair {
                        f.errors += n.trim_end_matches(',').parse::<u64>()?;
                    }
                }
            }
            _ => {}
        }
    }
    if !(p50 && p99 && rps && total) {
        bail!("missing latency percentiles, requests/sec or the request count");
    }
    Ok(f)
}

/// `812.00us`, `1.23ms`, `2.00s`, `1.00m`.
fn duration(v: &str) -> Result<Duration> {
    let split = v.find(|c: char| c.is_ascii_alphabetic()).context("no unit")?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse()?;
    let secs = match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => bail!("unknown unit in {v}"),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// `12.34MB` (wrk uses powers of 1024) in bytes.
fn size(v: &str) -> Result<f64> {
    let split = v.find(|c: char| c.is_ascii_alphabetic()).context("no unit")?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse()?;
    let k = match unit {
        "B" => 1.0,
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        _ => bail!("unknown unit in {v}"),
    };
    Ok(n * k)
}

/// A wrk script that sends each request with the next session of `ids`
/// (round robin), so requests spread over many sessions.
pub fn rotating_cookies_script(ids: &[String]) -> String {
    let mut s = String::with_capacity(ids.len() * 26 + 200);
    s.push_str("local ids = {\n");
    for id in ids {
        s.push('"');
        s.push_str(id);
        s.push_str("\",\n");
    }
    s.push_str(
        "}\nlocal i = 0\nrequest = function()\n  i = i % #ids + 1\n  \
         return wrk.format(\"GET\", nil, {[\"Cookie\"] = \"oidc_gate=\" .. ids[i]})\nend\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_wrk_report() {
        let report = "Running 10s test @ http://127.0.0.1:8080/secret
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.34us  100.00us   5.00ms   90.00%
    Req/Sec    39.50k     1.20k   41.00k    80.00%
  Latency Distribution
     50%  790.00us
     75%  850.00us
     90%  900.00us
     99%    1.52ms
  393000 requests in 10.00s, 250.50MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  39300.12
Transfer/sec:     25.05MB
";
        let f = parse(report).unwrap();
        assert_eq!(f.requests, 393_000);
        assert!((f.rps - 39300.12).abs() < 1e-6);
        assert_eq!(f.p50, Duration::from_micros(790));
        assert_eq!(f.p99, Duration::from_micros(1520));
        assert!((f.bytes - 250.5 * 1024.0 * 1024.0).abs() < 1.0);
        assert_eq!(f.errors, 7);
    }

    #[test]
    fn an_incomplete_report_is_an_error() {
        assert!(parse("Requests/sec: 10\n").is_err());
    }
}
