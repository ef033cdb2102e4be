//! Part 6: the gateway (issue 16). One small app (`bench/src/bin/upstream.rs`,
//! on core 1 like the provider) behind three reverse proxies on core 0:
//! nginx with no authentication (the baseline), oidc-gate and Apache with
//! mod_auth_openidc, both signed in; then oidc-gate's `/oauth2/auth` for a
//! signed-in session against the ceiling; then large bodies both ways
//! through oidc-gate's proxy, with its memory before and at its peak.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use axum::body::Bytes;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, COOKIE};

use super::{Ctx, measure_run, page, profiled};
use crate::client::browser;
use crate::peers;
use crate::procfs::{reset_peak_rss, status_kib};
use crate::report::{
    BEARER_PROFILE, Bulk, CpuUse, Direction, FORWARD_AUTH_PROFILE, GatewayRow, Gw, PROXY_PROFILE, Page,
};
use crate::server::{Server, Store, temp_dir};
use crate::signin::{SignedIn, ToPage, sign_in};
use crate::wrk::{self, Figures};

/// The proxied path every row requests (the upstream serves its page at any path).
pub(super) const PAGE_PATH: &str = "/app/dashboard";
/// The piece a large upload is sent in.
const UPLOAD_CHUNK: usize = 256 * 1024;

/// Part 6.
pub async fn gateway(ctx: &mut Ctx) -> Result<()> {
    let mut upstream = Server::upstream(&ctx.bins.upstream)?;
    upstream.wait_answering(PAGE_PATH)?;
    // Sign-ins and checks: connections kept, no redirects followed.
    let http = browser(usize::MAX)?;
    let page = http.get(upstream.url(PAGE_PATH)).send().await?.bytes().await?.to_vec();
    match peers::nginx() {
        Ok(bin) => {
            let server = peers::start_nginx(&bin, upstream.addr, PAGE_PATH)?;
            let url = server.url(PAGE_PATH);
            let runs = runs(ctx, &server, run(&url, None, &[]), page.len()).await?;
            push(ctx, Gw::Nginx, &runs);
        }
        Err(why) => note(
            ctx,
            format!("the nginx row (the reverse proxy's baseline) was skipped: {why}."),
        ),
    }
    forward_auth(ctx, &http).await?;
    match peers::apache() {
        Ok((bin, modules)) => apache(ctx, &http, &bin, &modules, &upstream, &page).await?,
        Err(why) => note(ctx, format!("the Apache + mod_auth_openidc row was skipped: {why}.")),
    }
    reverse_proxy(ctx, &http, &upstream, &page).await?;
    bulk(ctx, &http, &upstream, &page).await
}

/// A note in the report (and on the terminal now).
fn note(ctx: &mut Ctx, text: String) {
    let text = format!("Gateway: {text}");
    eprintln!("bench: {text}");
    ctx.report.notes.push(text);
}

fn run<'a>(url: &'a str, cookie: Option<&'a str>, headers: &'a [(&'a str, &'a str)]) -> wrk::Run<'a> {
    wrk::Run {
        url,
        cookie,
        headers,
        script: None,
        duration: Duration::ZERO,
    }
}

/// `ctx.plan.page_runs` measured runs, the first after a warm-up.
async fn runs(ctx: &Ctx, server: &Server, load: wrk::Run<'_>, len: usize) -> Result<Vec<(Figures, CpuUse)>> {
    let mut out = Vec::new();
    for i in 0..ctx.plan.page_runs.max(1) {
        out.push(
            measure_run(ctx, server, load, len, i == 0)
                .await
                .map_err(|e| e.context(server.log_tail()))?,
        );
    }
    Ok(out)
}

/// Records a row, in the table's order whatever the order of measuring.
fn push(ctx: &mut Ctx, server: Gw, runs: &[(Figures, CpuUse)]) {
    let rows = &mut ctx.report.gateway;
    rows.push(GatewayRow {
        server,
        page: Page::median("gateway", false, runs),
    });
    rows.sort_by_key(|r| r.server as u8);
}

/// oidc-gate with `env` added, ready when `/ping` answers.
fn start_gate(ctx: &Ctx, env: &[(&str, &str)]) -> Result<Server> {
    let mut server = Server::oidc_gate(&ctx.bins.oidc_gate, &Store::Sqlite, temp_dir("gateway")?, env)?;
    server.wait_answering("/ping")?;
    Ok(server)
}

/// Signs in at `server` from [`PAGE_PATH`] and checks that the upstream's page came back.
async fn sign_in_to_page(http: &reqwest::Client, server: &Server, page: &[u8]) -> Result<SignedIn> {
    let to_page = ToPage {
        http: http.clone(),
        start: server.url(PAGE_PATH).parse()?,
        page: page.into(),
    };
    to_page
        .sign_in("Ada Lovelace", "ada@example.com")
        .await
        .map_err(|e| e.context(server.log_tail()))
}

/// `GET path` with `cookie` (and `headers`): the status and body.
async fn get(
    http: &reqwest::Client,
    url: &str,
    cookie: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<(StatusCode, Vec<u8>)> {
    let mut req = http.get(url);
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let r = req.send().await.with_context(|| format!("GET {url}"))?;
    Ok((r.status(), r.bytes().await?.to_vec()))
}

/// The reverse proxy row: oidc-gate in front of the upstream, signed in.
async fn reverse_proxy(ctx: &mut Ctx, http: &reqwest::Client, upstream: &Server, page: &[u8]) -> Result<()> {
    let server = start_gate(ctx, &[("UPSTREAM_URL", &upstream.url(""))])?;
    let signed = sign_in_to_page(http, &server, page).await?;
    let url = server.url(PAGE_PATH);
    let (status, _) = get(http, &url, None, &[("accept", "application/json")]).await?;
    ensure!(
        status == StatusCode::UNAUTHORIZED,
        "{PAGE_PATH} without a session answered {status}"
    );
    let load = run(&url, Some(&signed.cookie), &[]);
    let runs = runs(ctx, &server, load, page.len()).await?;
    let (status, body) = get(http, &url, Some(&signed.cookie), &[]).await?;
    ensure!(
        status == StatusCode::OK && body == page,
        "after the runs the session got {status}"
    );
    push(ctx, Gw::Proxy, &runs);
    profiled(ctx, &server, PROXY_PROFILE, async |ctx| {
        measure_run(ctx, &server, load, page.len(), false).await.map(drop)
    })
    .await
}

/// The peer row: Apache with mod_auth_openidc, signed in at the bench's
/// provider (its own process on core 1, as in the login row).
async fn apache(
    ctx: &mut Ctx,
    http: &reqwest::Client,
    bin: &std::path::Path,
    modules: &std::path::Path,
    upstream: &Server,
    page: &[u8],
) -> Result<()> {
    let (_provider, server) = peers::start_apache_at_provider(&ctx.bins.provider, bin, modules, upstream.addr, "")?;
    let signed = sign_in_to_page(http, &server, page)
        .await
        .context("sign in through Apache's mod_auth_openidc")?;
    let url = server.url(PAGE_PATH);
    let load = run(&url, Some(&signed.cookie), &[]);
    let runs = runs(ctx, &server, load, page.len()).await?;
    push(ctx, Gw::Apache, &runs);
    Ok(())
}

/// The forward-auth row: `/oauth2/auth` as nginx's `auth_request` asks it,
/// against the ceiling of part 1 (measured here if part 1 did not run).
async fn forward_auth(ctx: &mut Ctx, http: &reqwest::Client) -> Result<()> {
    if !ctx.report.pages.iter().any(|p| p.ceiling) {
        page::ceiling_only(ctx)
            .await
            .context("the ceiling, for the forward-auth row")?;
    }
    let server = start_gate(ctx, &[("FORWARD_AUTH", "true")])?;
    let start = server.url("/oauth2/start?rd=%2F").parse()?;
    let signed = sign_in(http, start, "Ada Lovelace", "ada@example.com")
        .await
        .map_err(|e| e.context(server.log_tail()))?;
    ensure!(
        signed.landed.path() == "/",
        "the sign-in came back to {}",
        signed.landed
    );
    let url = server.url("/oauth2/auth");
    let original = [("X-Original-URI", PAGE_PATH)];
    let (status, _) = get(http, &url, None, &original).await?;
    ensure!(
        status == StatusCode::UNAUTHORIZED,
        "/oauth2/auth without a session answered {status}"
    );
    let (status, _) = get(http, &url, Some(&signed.cookie), &original).await?;
    ensure!(
        status == StatusCode::ACCEPTED,
        "/oauth2/auth with the session answered {status}"
    );
    // wrk counts any answer outside 2xx/3xx as an error: every answer was the 202.
    let load = run(&url, Some(&signed.cookie), &original);
    let runs = runs(ctx, &server, load, 0).await?;
    push(ctx, Gw::ForwardAuth, &runs);
    profiled(ctx, &server, FORWARD_AUTH_PROFILE, async |ctx| {
        measure_run(ctx, &server, load, 0, false).await.map(drop)
    })
    .await
}

/// The bearer-token row (issue 17): `/oauth2/auth` with a bearer JWT and no
/// session, against the ceiling; then the same server signed in, handing
/// over the access token, against forward auth without. The token is the development provider's
/// RFC 9068 access token of a signed-in user, as `PASS_ACCESS_TOKEN` hands
/// it out in forward auth's answer.
pub async fn bearer(ctx: &mut Ctx) -> Result<()> {
    if !ctx.report.pages.iter().any(|p| p.ceiling) {
        page::ceiling_only(ctx)
            .await
            .context("the ceiling, for the bearer row")?;
    }
    let http = browser(usize::MAX)?;
    // The hand-over row below is judged against forward auth without.
    if !ctx.report.gateway.iter().any(|r| r.server == Gw::ForwardAuth) {
        forward_auth(ctx, &http)
            .await
            .context("forward auth, for the hand-over row")?;
    }
    let server = start_gate(
        ctx,
        &[
            ("FORWARD_AUTH", "true"),
            ("PASS_ACCESS_TOKEN", "true"),
            ("SKIP_JWT_BEARER_TOKENS", "true"),
            ("API_AUDIENCE", "api://bench"),
        ],
    )?;
    let start = server.url("/oauth2/start?rd=%2F").parse()?;
    let signed = sign_in(&http, start, "Ada Lovelace", "ada@example.com")
        .await
        .map_err(|e| e.context(server.log_tail()))?;
    let url = server.url("/oauth2/auth");
    let original = ("X-Original-URI", PAGE_PATH);
    let answer = http
        .get(&url)
        .header(COOKIE, &signed.cookie)
        .header(original.0, original.1)
        .send()
        .await?;
    let token = answer
        .headers()
        .get("x-auth-request-access-token")
        .and_then(|v| v.to_str().ok())
        .context("forward auth handed out no access token")?
        .to_owned();
    ensure!(token.split('.').count() == 3, "the access token is not a JWT");
    let authorization = format!("Bearer {token}");
    let headers = [original, ("Authorization", authorization.as_str())];
    let (status, _) = get(&http, &url, None, &headers).await?;
    ensure!(
        status == StatusCode::ACCEPTED,
        "/oauth2/auth with the bearer token answered {status}"
    );
    let forged = format!("Bearer {}x", &token[..token.len() - 1]);
    let (status, _) = get(&http, &url, None, &[original, ("Authorization", forged.as_str())]).await?;
    ensure!(
        status == StatusCode::UNAUTHORIZED,
        "/oauth2/auth with a forged token answered {status}"
    );
    let load = run(&url, None, &headers);
    let bearer_runs = runs(ctx, &server, load, 0).await?;
    push(ctx, Gw::Bearer, &bearer_runs);
    // The same server, signed in: each answer hands over the session's
    // access token (opened from the session; none is due for refresh).
    let signed_in = [original];
    let hand_over = run(&url, Some(&signed.cookie), &signed_in);
    let hand_over_runs = runs(ctx, &server, hand_over, 0).await?;
    push(ctx, Gw::HandOver, &hand_over_runs);
    profiled(ctx, &server, BEARER_PROFILE, async |ctx| {
        measure_run(ctx, &server, load, 0, false).await.map(drop)
    })
    .await
}

/// Large bodies both ways: straight to the upstream (what the loopback and
/// the client manage, for reference), then through a fresh oidc-gate,
/// signed in, with its VmRSS just before and its peak (VmHWM, reset just
/// before) just after.
async fn bulk(ctx: &mut Ctx, http: &reqwest::Client, upstream: &Server, page: &[u8]) -> Result<()> {
    let bytes = ctx.plan.bulk_bytes;
    let big = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(600))
        .build()?;
    for direction in [Direction::Upload, Direction::Download] {
        let elapsed = transfer(&big, &upstream.url(""), None, direction, bytes).await?;
        ctx.report.bulk.push(Bulk {
            direction,
            proxied: false,
            bytes,
            elapsed,
            rss_before_kib: 0,
            peak_kib: 0,
        });
    }
    let server = start_gate(ctx, &[("UPSTREAM_URL", &upstream.url(""))])?;
    let signed = sign_in_to_page(http, &server, page).await?;
    let pid = server.pid();
    for direction in [Direction::Upload, Direction::Download] {
        reset_peak_rss(pid)?;
        let rss_before_kib = status_kib(pid, "VmRSS")?;
        let elapsed = transfer(&big, &server.url(""), Some(&signed.cookie), direction, bytes)
            .await
            .map_err(|e| e.context(server.log_tail()))?;
        let peak_kib = status_kib(pid, "VmHWM")?;
        ctx.report.bulk.push(Bulk {
            direction,
            proxied: true,
            bytes,
            elapsed,
            rss_before_kib,
            peak_kib,
        });
    }
    Ok(())
}

/// One large body to or from the upstream at `base` (through oidc-gate
/// when `cookie` is given), checked: every byte arrived. Returns the time
/// from the request's start to the end of the answer.
async fn transfer(
    http: &reqwest::Client,
    base: &str,
    cookie: Option<&str>,
    direction: Direction,
    bytes: u64,
) -> Result<Duration> {
    let mut req = match direction {
        Direction::Upload => {
            let chunk = Bytes::from(vec![b'u'; UPLOAD_CHUNK]);
            let pieces = futures_util::stream::unfold(0u64, move |sent| {
                let chunk = chunk.clone();
                async move {
                    (sent < bytes).then(|| {
                        let n = (bytes - sent).min(UPLOAD_CHUNK as u64);
                        (Ok::<_, std::io::Error>(chunk.slice(..n as usize)), sent + n)
                    })
                }
            });
            http.post(format!("{base}/app/upload"))
                .header(CONTENT_LENGTH, bytes)
                .body(reqwest::Body::wrap_stream(pieces))
        }
        Direction::Download => http.get(format!("{base}/big?bytes={bytes}")),
    };
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    let t = Instant::now();
    let mut r = req
        .send()
        .await
        .with_context(|| format!("{direction:?} of {bytes} bytes"))?;
    ensure!(
        r.status() == StatusCode::OK,
        "{direction:?} of {bytes} bytes answered {}",
        r.status()
    );
    let mut received: u64 = 0;
    let mut text = Vec::new();
    while let Some(piece) = r.chunk().await? {
        received += piece.len() as u64;
        if direction == Direction::Upload {
            text.extend_from_slice(&piece);
        }
    }
    let elapsed = t.elapsed();
    match direction {
        Direction::Upload => ensure!(
            String::from_utf8_lossy(&text) == bytes.to_string(),
            "the upstream received {} bytes of the {bytes} uploaded",
            String::from_utf8_lossy(&text)
        ),
        Direction::Download => ensure!(received == bytes, "{received} bytes of the {bytes} downloaded arrived"),
    }
    Ok(elapsed)
}
