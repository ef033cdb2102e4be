//! The five measurements of issue 6 and the gateway's of issue 16, each on
//! its own fresh server.

mod gateway;
mod logins;
mod page;
mod sessions;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

pub use gateway::{bearer, gateway};
pub use page::{login_cost, metrics_cost, protected_page};
pub use sessions::{memory, store_scale};

use crate::bulk::Postgres;
use crate::procfs::{CoreTimes, cpu_times};
use crate::report::{CpuUse, Report, Startup};
use crate::server::{Binaries, LOAD_CORE_INDEX, SERVER_CORE_INDEX, Server, Store, temp_dir};
use crate::wrk::{self, Figures};
use crate::{pin, profile};

/// How much to measure.
pub struct Plan {
    /// wrk warm-up before a measured run (zero: none).
    pub warmup: Duration,
    /// A measured wrk run.
    pub measure: Duration,
    /// Measured runs of each protected page: each figure is the median
    /// run's, so that one burst of the machine's neighbours is not the figure.
    pub page_runs: usize,
    /// Logins measured for their cost per round, and how many at once.
    pub logins: (usize, usize),
    /// Rounds of those logins: the CPU per login is the median round's, so
    /// that a burst of noise from the machine's neighbours is not the figure.
    pub login_rounds: usize,
    /// Real logins, then all sessions, for the memory figures.
    pub memory: (usize, usize),
    /// Small and large session tables for the store-scale figures.
    pub scale: (usize, usize),
    /// At most this many distinct sessions in a spread run.
    pub spread_max: usize,
    /// Start-up runs.
    pub startup_runs: usize,
    /// Profile with perf for this long (zero: never).
    pub profile: Duration,
    /// The size of the large upload and download through the gateway.
    pub bulk_bytes: u64,
    /// `/secret` requests whose instructions callgrind counts, metrics off and on.
    pub counted_requests: usize,
}

impl Plan {
    /// The full benchmark (8 to 12 minutes).
    pub fn full(profile: bool) -> Self {
        Self {
            warmup: Duration::from_secs(2),
            measure: Duration::from_secs(10),
            page_runs: 3,
            // 1,000 a round: CPU time is counted in ticks of 10 ms, so a
            // round's figure per login is good to ±0.01 ms.
            logins: (1000, 8),
            login_rounds: 5,
            memory: (10_000, 100_000),
            scale: (1_000, 1_000_000),
            spread_max: 100_000,
            startup_runs: 9,
            profile: if profile {
                Duration::from_secs(5)
            } else {
                Duration::ZERO
            },
            bulk_bytes: 1 << 30,
            counted_requests: 5_000,
        }
    }

    /// A few seconds that only prove everything still works.
    pub fn smoke() -> Self {
        Self {
            warmup: Duration::ZERO,
            measure: Duration::from_secs(1),
            page_runs: 1,
            logins: (20, 4),
            login_rounds: 1,
            memory: (100, 1_000),
            scale: (1_000, 10_000),
            spread_max: 1_000,
            startup_runs: 3,
            profile: Duration::ZERO,
            bulk_bytes: 64 << 20,
            counted_requests: 200,
        }
    }
}

/// Everything the parts share.
pub struct Ctx {
    /// The release binaries.
    pub bins: Binaries,
    /// How much to measure.
    pub plan: Plan,
    /// PostgreSQL, if it answers.
    pub pg_url: Option<String>,
    /// Redis, if it answers.
    pub redis_url: Option<String>,
    /// Clock ticks per second.
    pub clk_tck: u64,
    /// What was measured so far.
    pub report: Report,
    /// Numbers PostgreSQL schemas.
    pub schemas: u32,
    /// Warnings about runs disturbed by other processes.
    pub noise: std::cell::RefCell<Vec<String>>,
}

/// Starts oidc-gate on `dir` with `env` added, and waits until `/healthz` answers.
fn start(ctx: &Ctx, store: &Store, dir: PathBuf, env: &[(&str, &str)]) -> Result<Server> {
    let mut server = Server::oidc_gate(&ctx.bins.oidc_gate, store, dir, env)?;
    server.wait_answering("/healthz")?;
    Ok(server)
}

/// Runs `f` against a store: for PostgreSQL in a schema of its own, dropped afterwards.
async fn with_store<T>(
    ctx: &mut Ctx,
    kind: &str,
    f: impl AsyncFnOnce(&mut Ctx, Store, Option<&mut Postgres>) -> Result<T>,
) -> Result<T> {
    match kind {
        "postgres" => {
            let url = ctx.pg_url.clone().context("no PostgreSQL")?;
            ctx.schemas += 1;
            let mut pg = Postgres::connect(&url, ctx.schemas).await?;
            let store = Store::Postgres {
                url,
                schema: pg.schema.clone(),
            };
            let result = f(ctx, store, Some(&mut pg)).await;
            let dropped = pg.drop_schema().await;
            let value = result?;
            dropped.context("drop the benchmark's PostgreSQL schema")?;
            Ok(value)
        }
        "redis" => {
            let url = ctx.redis_url.clone().context("no Redis")?;
            let pinned = match pin::RedisServer::pin(&url).await {
                Ok(p) => Some(p),
                Err(e) => {
                    note_unpinned(ctx, &format!("the Redis server: {e:#}"));
                    None
                }
            };
            let result = f(ctx, Store::Redis { url }, None).await;
            drop(pinned);
            result
        }
        _ => f(ctx, Store::Sqlite, None).await,
    }
}

/// Records that a store's processes could not be kept off the server's core.
fn note_unpinned(ctx: &Ctx, what: &str) {
    let note = format!("Could not pin {what}; its figures include the store sharing the server's core.");
    eprintln!("bench: {note}");
    ctx.noise.borrow_mut().push(note);
}

/// A measured wrk run on `/secret` (after a warm-up if `warm`), checked:
/// no errors, and every answer as large as the page (a redirect to the
/// login is much smaller). Returns the figures and the CPU use. The
/// PostgreSQL backends the server opened (its pool has grown by the end
/// of the warm-up) are moved to the load core first.
async fn measure(
    ctx: &Ctx,
    server: &Server,
    cookie: Option<&str>,
    script: Option<&Path>,
    page_len: usize,
    warm: bool,
) -> Result<(Figures, CpuUse)> {
    let url = server.url("/secret");
    let run = wrk::Run {
        url: &url,
        cookie,
        headers: &[],
        script,
        duration: ctx.plan.warmup,
    };
    measure_run(ctx, server, run, page_len, warm).await
}

/// [`measure`] of any wrk run on `server` (its duration is set here).
async fn measure_run(
    ctx: &Ctx,
    server: &Server,
    mut run: wrk::Run<'_>,
    page_len: usize,
    warm: bool,
) -> Result<(Figures, CpuUse)> {
    run.duration = ctx.plan.warmup;
    if warm && !ctx.plan.warmup.is_zero() {
        run.run()?;
    }
    if server.postgres
        && let Some(url) = &ctx.pg_url
        && let Err(e) = pin::postgres_backends(url, server.spawned.elapsed() + Duration::from_secs(1)).await
    {
        note_unpinned(ctx, &format!("the PostgreSQL backends: {e:#}"));
    }
    run.duration = ctx.plan.measure;
    let before = (server.stats()?, cpu_times()?);
    let t = Instant::now();
    let f = run.run()?;
    let elapsed = t.elapsed().as_secs_f64();
    let after = (server.stats()?, cpu_times()?);
    let share = |i: usize, of: fn(&CoreTimes) -> u64| {
        let (part, total) = (of(&after.1[i]) - of(&before.1[i]), after.1[i].total - before.1[i].total);
        part as f64 / total.max(1) as f64
    };
    let core = |i: usize| share(i, |t| t.busy);
    let stolen = share(SERVER_CORE_INDEX, |t| t.steal);
    let cpu = CpuUse {
        server: (after.0.cpu_ticks - before.0.cpu_ticks) as f64 / ctx.clk_tck as f64 / elapsed,
        server_core: core(SERVER_CORE_INDEX),
        load_core: core(LOAD_CORE_INDEX),
    };
    // Either both cores had room and the server still did not use its own,
    // or its core was busy with something else (the server's core runs
    // nothing but the server: a proxy held back by the load core leaves it idle).
    if (cpu.server < 0.9 && cpu.load_core < 0.98) || cpu.server_core - cpu.server > 0.15 {
        // Steal: the hypervisor ran other machines on this one's core.
        let competitors = match stolen {
            s if s >= 0.05 => format!(
                "{:.0}% of core 0's time went to other virtual machines (steal), and other processes",
                s * 100.0
            ),
            _ => "other processes".to_owned(),
        };
        let note = format!(
            "Noise: during a run on {} the server used only {:.0}% of its core (core 0 {:.0}% busy, core 1 {:.0}%): \
             {competitors} competed for the cores, so that run's figures are low; rerun on a quiet machine.",
            server.addr,
            cpu.server * 100.0,
            cpu.server_core * 100.0,
            cpu.load_core * 100.0
        );
        eprintln!("bench: {note}");
        ctx.noise.borrow_mut().push(note);
    }
    ensure!(f.requests > 0, "wrk completed no request");
    ensure!(f.errors == 0, "wrk saw {} errors or 4xx/5xx answers", f.errors);
    let per_request = f.bytes / f.requests as f64;
    ensure!(
        per_request >= page_len as f64,
        "answers average {per_request:.0} bytes, less than the {page_len}-byte page: some were not the page"
    );
    Ok((f, cpu))
}

/// Profiles `server` while `load` runs, if profiling is on.
pub(super) async fn profiled(
    ctx: &mut Ctx,
    server: &Server,
    title: &str,
    load: impl AsyncFnOnce(&Ctx) -> Result<()>,
) -> Result<()> {
    if ctx.plan.profile.is_zero() {
        return Ok(());
    }
    let rec = profile::record(server.pid(), ctx.plan.profile, &server.dir)?;
    load(ctx).await?;
    match rec.finish(title) {
        Ok(p) => ctx.report.profiles.push(p),
        Err(e) => ctx.report.notes.push(format!("Profile of {title} failed: {e:#}.")),
    }
    Ok(())
}

/// Part 5: spawn to listening and to the first `200`, fresh and restarted.
pub fn startup(ctx: &mut Ctx) -> Result<()> {
    let mut s = Startup::default();
    for _ in 0..ctx.plan.startup_runs {
        let mut server = Server::oidc_gate(&ctx.bins.oidc_gate, &Store::Sqlite, temp_dir("startup")?, &[])?;
        s.listen.push(server.wait_listening()?);
        s.ready.push(server.wait_answering("/healthz")?);
        let dir = server.stop_keep_dir();
        let mut again = Server::oidc_gate(&ctx.bins.oidc_gate, &Store::Sqlite, dir, &[])?;
        s.restart_ready.push(again.wait_answering("/healthz")?);
    }
    ctx.report.startup = Some(s);
    Ok(())
}
