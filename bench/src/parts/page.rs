//! Parts 1 and 2: the protected page on each store and on the ceiling, and
//! the cost of a login.

use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::header::HeaderMap;

use super::{Ctx, measure, profiled, start, with_store};
use crate::client::{COOKIE_NAME, Client, login_many};
use crate::report::{CpuUse, MetricsCost, Page};
use crate::server::{Server, Store, free_addr, temp_dir};
use crate::wrk::{self, Figures};

/// The `/secret` page as oidc-gate served it, for the ceiling.
struct PageBytes {
    body: Vec<u8>,
    headers: String,
}

/// Part 1: `/secret` on each store, and on the ceiling.
pub async fn protected_page(ctx: &mut Ctx) -> Result<()> {
    with_store(ctx, "sqlite", async |ctx, store, _| {
        secret_beside_ceiling(ctx, store).await
    })
    .await?;
    for kind in ["postgres", "redis"] {
        let available = if kind == "postgres" {
            ctx.pg_url.is_some()
        } else {
            ctx.redis_url.is_some()
        };
        if available {
            with_store(ctx, kind, async |ctx, store, _| secret_on(ctx, store).await).await?;
        }
    }
    Ok(())
}

/// `/secret` on `store` (SQLite) and on the ceiling serving the same bytes,
/// measured in alternating runs (see [`alternating`]): issue 20 judges
/// their ratio.
async fn secret_beside_ceiling(ctx: &mut Ctx, store: Store) -> Result<()> {
    let server = start(ctx, &store, temp_dir("secret")?, &[])?;
    let client = Client::new(&server.url(""))?;
    let id = client.login("Ada Lovelace", "ada@example.com").await?;
    let (_, headers, body) = client.fetch("/secret", &id).await?;
    let page = PageBytes::of(&headers, body);
    let mut ceiling = Server::ceiling(&ctx.bins.ceiling, &page.body, &page.headers)?;
    ceiling.wait_answering("/secret")?;
    let cookie = format!("{COOKIE_NAME}={id}");
    let len = page.body.len();
    let [ceiling_runs, runs] = alternating(ctx, [(&ceiling, None), (&server, Some(&cookie))], len).await?;
    client.check_secret(&id).await.context("the session after the runs")?;
    describe_load(ctx, &server);
    ctx.report.pages.insert(0, Page::median("ceiling", true, &ceiling_runs));
    ctx.report.pages.push(Page::median(store.label(), false, &runs));
    profile_ceiling(ctx, &ceiling, len).await?;
    drop(ceiling);
    profile_secret(ctx, &server, &store, &cookie, len).await?;
    client.logout(&id).await
}

async fn secret_on(ctx: &mut Ctx, store: Store) -> Result<()> {
    let server = start(ctx, &store, temp_dir("secret")?, &[])?;
    let client = Client::new(&server.url(""))?;
    let id = client.login("Ada Lovelace", "ada@example.com").await?;
    let (_, _, body) = client.fetch("/secret", &id).await?;
    let cookie = format!("{COOKIE_NAME}={id}");
    let runs = measure_runs(ctx, &server, Some(&cookie), body.len()).await?;
    client.check_secret(&id).await.context("the session after the runs")?;
    describe_load(ctx, &server);
    ctx.report.pages.push(Page::median(store.label(), false, &runs));
    profile_secret(ctx, &server, &store, &cookie, body.len()).await?;
    client.logout(&id).await
}

/// The wrk command of the page rows, as the report shows it.
fn describe_load(ctx: &mut Ctx, server: &Server) {
    ctx.report.wrk_command = wrk::Run {
        url: &server.url("/secret"),
        cookie: Some(""),
        headers: &[],
        script: None,
        duration: ctx.plan.measure,
    }
    .describe();
}

/// The profile of `/secret` on `store`'s `server`, signed in with `cookie`.
async fn profile_secret(ctx: &mut Ctx, server: &Server, store: &Store, cookie: &str, len: usize) -> Result<()> {
    let title = format!("`/secret` with {} sessions", store.label());
    profiled(ctx, server, &title, async |ctx| {
        measure(ctx, server, Some(cookie), None, len, false).await.map(drop)
    })
    .await
}

/// `/secret` runs on two servers (each with its cookie, if any), both
/// serving `len` bytes, in pairs in A-B, B-A order (an even number of them
/// when there are several), so that whatever favours the first or the
/// second run of a pair (the previous run's connections closing, the
/// machine's drift) falls on both alike. On a shared machine the same
/// server's requests per second move by several percent from one run to
/// the next, and more between minutes: runs taken in turn see the same
/// machine. The first run of each is warmed up.
async fn alternating(
    ctx: &Ctx,
    servers: [(&Server, Option<&str>); 2],
    len: usize,
) -> Result<[Vec<(Figures, CpuUse)>; 2]> {
    let pairs = match ctx.plan.page_runs.max(1) {
        1 => 1,
        n => n.next_multiple_of(2),
    };
    let mut runs = [Vec::new(), Vec::new()];
    for pair in 0..pairs {
        let order = if pair % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let (server, cookie) = servers[i];
            runs[i].push(measure(ctx, server, cookie, None, len, pair == 0).await?);
        }
    }
    Ok(runs)
}

/// Part 1b: `/secret` on SQLite without and with `METRICS_LISTEN`: two servers,
/// measured in alternating runs, so that a busy moment of the machine
/// falls on both alike.
pub async fn metrics_cost(ctx: &mut Ctx) -> Result<()> {
    let metrics_addr = free_addr()?.to_string();
    let off = start(ctx, &Store::Sqlite, temp_dir("secret-metrics-off")?, &[])?;
    let on = start(
        ctx,
        &Store::Sqlite,
        temp_dir("secret-metrics-on")?,
        &[("METRICS_LISTEN", &metrics_addr)],
    )?;
    let mut cookies = Vec::new();
    let mut len = 0;
    for server in [&off, &on] {
        let client = Client::new(&server.url(""))?;
        let id = client.login("Ada Lovelace", "ada@example.com").await?;
        len = client.fetch("/secret", &id).await?.2.len();
        cookies.push(format!("{COOKIE_NAME}={id}"));
    }
    let runs = alternating(
        ctx,
        [(&off, Some(cookies[0].as_str())), (&on, Some(cookies[1].as_str()))],
        len,
    )
    .await?;
    let [off_runs, on_runs] = runs;
    let scraped = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await?
        .text()
        .await?;
    anyhow::ensure!(
        scraped.contains("oidc_gate_http_requests_total{group=\"page\",status=\"2xx\"}"),
        "the metrics listener did not count /secret"
    );
    drop((off, on));
    let instructions = if crate::callgrind::available() {
        let n = ctx.plan.counted_requests;
        let off = crate::callgrind::secret_instructions(&ctx.bins.oidc_gate, &[], n).await?;
        let addr = free_addr()?.to_string();
        let on = crate::callgrind::secret_instructions(&ctx.bins.oidc_gate, &[("METRICS_LISTEN", &addr)], n).await?;
        Some((off, on))
    } else {
        None
    };
    ctx.report.metrics_cost = Some(MetricsCost {
        off: Page::median("SQLite, metrics off", false, &off_runs),
        on: Page::median("SQLite, metrics on", false, &on_runs),
        instructions,
        counted: ctx.plan.counted_requests,
    });
    Ok(())
}

impl PageBytes {
    /// The page as the ceiling serves it: the body, and the headers that
    /// are the page's own (not the connection's or the session's).
    fn of(headers: &HeaderMap, body: Vec<u8>) -> Self {
        let headers = headers
            .iter()
            .filter(|(name, _)| {
                !matches!(
                    name.as_str(),
                    "date" | "content-length" | "set-cookie" | "connection" | "transfer-encoding"
                )
            })
            .filter_map(|(name, value)| Some(format!("{name}: {}\n", value.to_str().ok()?)))
            .collect();
        Self { body, headers }
    }
}

/// The ceiling alone, for a run without part 1 (`--only gateway`): the
/// page it serves is oidc-gate's `/secret`, fetched once.
pub async fn ceiling_only(ctx: &mut Ctx) -> Result<()> {
    let page = {
        let server = start(ctx, &Store::Sqlite, temp_dir("secret")?, &[])?;
        let client = Client::new(&server.url(""))?;
        let id = client.login("Ada Lovelace", "ada@example.com").await?;
        let (_, headers, body) = client.fetch("/secret", &id).await?;
        PageBytes::of(&headers, body)
    };
    ceiling(ctx, &page).await
}

async fn ceiling(ctx: &mut Ctx, page: &PageBytes) -> Result<()> {
    let mut server = Server::ceiling(&ctx.bins.ceiling, &page.body, &page.headers)?;
    server.wait_answering("/secret")?;
    let runs = measure_runs(ctx, &server, None, page.body.len()).await?;
    ctx.report.pages.insert(0, Page::median("ceiling", true, &runs));
    profile_ceiling(ctx, &server, page.body.len()).await
}

async fn profile_ceiling(ctx: &mut Ctx, server: &Server, len: usize) -> Result<()> {
    profiled(ctx, server, "the ceiling", async |ctx| {
        measure(ctx, server, None, None, len, false).await.map(drop)
    })
    .await
}

/// `ctx.plan.page_runs` measured runs of `/secret` on `server`, the first
/// after a warm-up.
async fn measure_runs(
    ctx: &Ctx,
    server: &Server,
    cookie: Option<&str>,
    page_len: usize,
) -> Result<Vec<(Figures, CpuUse)>> {
    let mut runs = Vec::new();
    for run in 0..ctx.plan.page_runs.max(1) {
        runs.push(measure(ctx, server, cookie, None, page_len, run == 0).await?);
    }
    Ok(runs)
}

/// Part 2: full logins, and oidc-gate's CPU time for them: with the
/// development provider in a process of its own (judged), and inside
/// oidc-gate as it runs by default (what the provider adds).
pub async fn login_cost(ctx: &mut Ctx) -> Result<()> {
    let base = free_addr()?;
    let secret = format!("bench-secret-{}", std::process::id());
    let mut provider = Server::provider(
        &ctx.bins.provider,
        "bench",
        &secret,
        &format!("http://{base}"),
        "/callback",
    )?;
    provider.wait_answering("/dev-provider/.well-known/openid-configuration")?;
    let issuer = provider.url("/dev-provider");
    let env = [
        ("OIDC_ISSUER", issuer.as_str()),
        ("OIDC_CLIENT_ID", "bench"),
        ("OIDC_CLIENT_SECRET", secret.as_str()),
    ];
    let mut server = Server::oidc_gate_on(base, &ctx.bins.oidc_gate, &Store::Sqlite, temp_dir("logins")?, &env)?;
    server.wait_answering("/healthz")?;
    let (client, elapsed) = logins_on(ctx, &server, true).await?;
    // Enough logins to outlast the profile.
    let (n, concurrency) = ctx.plan.logins;
    let rate = n as f64 / elapsed.as_secs_f64();
    let more = ((ctx.plan.profile.as_secs_f64() + 1.0) * rate).ceil() as usize;
    profiled(ctx, &server, crate::report::LOGINS_PROFILE, async |_| {
        login_many(&client, more.min(50_000), concurrency, 100 + n)
            .await
            .map(drop)
    })
    .await?;
    drop((server, provider));

    let server = start(ctx, &Store::Sqlite, temp_dir("logins")?, &[])?;
    logins_on(ctx, &server, false).await?;
    drop(server);
    super::logins::login_shapes(ctx).await
}

/// Measures `ctx.plan.logins` logins on `server` after a few to warm up;
/// returns the client and the time they took.
async fn logins_on(ctx: &mut Ctx, server: &Server, separate_provider: bool) -> Result<(Client, Duration)> {
    let client = Client::new(&server.url(""))?;
    let (_, concurrency) = ctx.plan.logins;
    let mut logins = super::logins::rounds(ctx, server, &client, concurrency, 0).await?;
    logins.separate_provider = separate_provider;
    let elapsed = logins.elapsed;
    ctx.report.logins.push(logins);
    Ok((client, elapsed))
}
