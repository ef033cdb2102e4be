//! `cargo run --release -p bench`: builds oidc-gate in release mode, runs it
//! on loopback with its development provider, logs in programmatically, and
//! measures what issue 6 asks (protected page against a bare axum ceiling,
//! login cost, memory, store scale, start-up) and what issue 16 asks of the
//! gateway (reverse proxy against nginx, Apache with mod_auth_openidc as a
//! peer, forward auth, large bodies) and of bearer tokens (issue 17). Prints a table and writes
//! `BENCHMARKS.md`. Exits 0 when it measured (targets missed or not), and
//! non-zero when it could not run.
//!
//! # Layout
//! - `server`: builds, pinned server processes, `/proc` figures.
//! - `client`: the programmatic browser (logins, pages).
//! - `signin`: signing in at a gateway (oidc-gate's or Apache's) by following redirects.
//! - `peers`: nginx and Apache, configured and started for the gateway rows.
//! - `procfs`: what `/proc` says about processes and cores.
//! - `wrk`: the load generator and its report.
//! - `bulk`: many sessions at once, straight into the store.
//! - `profile`: `perf` summaries of where the server's CPU goes.
//! - `pin`: the session stores' processes kept off the server's core.
//! - `parts`: the measurements (five of issue 6, the gateway's).
//! - `report`: targets, tables, `BENCHMARKS.md`.

mod bulk;
mod callgrind;
mod client;
mod parts;
mod peers;
mod pin;
mod procfs;
mod profile;
mod report;
mod server;
mod signin;
mod wrk;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

use parts::{Ctx, Plan};
use report::{Env, Report, Verdict};

const USAGE: &str = "\
usage: cargo run --release -p bench -- [--smoke] [--only PARTS] [--no-profile] [--build-profile NAME] [--out FILE | --no-write]

  --smoke        a few seconds that only prove the benchmark still works (writes nothing)
  --build-profile NAME
                 the cargo profile the servers are built with (default: release). Only
                 with --smoke: figures from any other profile mean nothing, but CI's
                 smoke reuses the test step's `dev` build instead of compiling again
  --only PARTS   comma-separated: secret, metrics, login, memory, scale, startup, gateway, bearer (writes nothing unless --out)
  --no-profile   do not run perf on the server
  --out FILE     write the report to FILE (default: BENCHMARKS.md at the workspace root, full runs only)
  --no-write     print only

PostgreSQL and Redis are used when they answer at BENCH_DATABASE_URL (default
postgres://postgres@127.0.0.1:5432/test) and BENCH_REDIS_URL (default
redis://127.0.0.1:6379); set either to `off` to skip it.";

const PARTS: [&str; 8] = [
    "secret", "metrics", "login", "memory", "scale", "startup", "gateway", "bearer",
];

/// Command-line options.
struct Options {
    smoke: bool,
    only: Vec<String>,
    profile: bool,
    out: Option<PathBuf>,
    write: bool,
    /// The cargo profile the servers are built with.
    build_profile: String,
}

fn options() -> Result<Options> {
    let mut o = Options {
        smoke: false,
        only: PARTS.iter().map(|p| p.to_string()).collect(),
        profile: true,
        out: None,
        write: true,
        build_profile: "release".into(),
    };
    let mut only_given = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--smoke" => o.smoke = true,
            "--no-profile" => o.profile = false,
            "--no-write" => o.write = false,
            "--only" => {
                let list = args.next().context("--only needs a list of parts")?;
                o.only = list.split(',').map(|p| p.trim().to_owned()).collect();
                if let Some(bad) = o.only.iter().find(|p| !PARTS.contains(&p.as_str())) {
                    bail!("unknown part `{bad}`; parts are {}", PARTS.join(", "));
                }
                only_given = true;
            }
            "--build-profile" => o.build_profile = args.next().context("--build-profile needs a cargo profile")?,
            "--out" => o.out = Some(args.next().context("--out needs a file")?.into()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    if o.build_profile != "release" && !o.smoke {
        bail!(
            "--build-profile {} is only for --smoke: figures from it would not be comparable",
            o.build_profile
        );
    }
    if o.out.is_none() && (o.smoke || only_given) {
        o.write = false;
    }
    Ok(o)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let opts = options()?;
    for (tool, hint) in [
        ("wrk", "apt-get install -y wrk"),
        ("taskset", "apt-get install -y util-linux"),
        ("getconf", "apt-get install -y libc-bin"),
    ] {
        if !server::on_path(tool) {
            bail!("`{tool}` is not installed (Debian: {hint}); the benchmark cannot run without it");
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    if cores < 2 {
        bail!("needs 2 CPUs (server on core 0, load on core 1); this machine has {cores}");
    }
    let profile = opts.profile && !opts.smoke && server::on_path("perf");
    let root = server::workspace_root();
    eprintln!(
        "bench: building oidc-gate and the ceiling (cargo profile {})",
        opts.build_profile
    );
    let bins = server::build(&root, &opts.build_profile)?;
    let env = environment(&root, cores);
    // From here on this process and wrk share core 1; servers get core 0.
    server::pin_self_to_load_core()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = runtime.block_on(measure(&opts, bins, env, profile))?;
    println!("\n{}", report.tables());
    for n in &report.notes {
        println!("- {n}");
    }
    if opts.write {
        let path = opts.out.clone().unwrap_or_else(|| root.join("BENCHMARKS.md"));
        std::fs::write(&path, report.document(profile)).with_context(|| format!("write {}", path.display()))?;
        eprintln!("bench: wrote {}", path.display());
    }
    let misses = report.targets().iter().filter(|t| t.verdict == Verdict::Miss).count();
    eprintln!("bench: done; {misses} target(s) missed (reported, not an error)");
    Ok(())
}

async fn measure(opts: &Options, bins: server::Binaries, env: Env, profile: bool) -> Result<Report> {
    let pg_url = service("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test");
    let redis_url = service("BENCH_REDIS_URL", "redis://127.0.0.1:6379");
    let mut report = Report {
        env,
        smoke: opts.smoke,
        ..Report::default()
    };
    let pg_url = match pg_url {
        Some(url) if bulk::Postgres::connect(&url, 0).await.is_ok() => Some(url),
        Some(url) => {
            report
                .notes
                .push(format!("PostgreSQL skipped: nothing answers at {}.", redact(&url)));
            None
        }
        None => None,
    };
    let redis_url = match redis_url {
        Some(url) if bulk::redis_answers(&url).await => Some(url),
        Some(url) => {
            report
                .notes
                .push(format!("Redis skipped: nothing answers at {}.", redact(&url)));
            None
        }
        None => None,
    };
    let mut ctx = Ctx {
        bins,
        plan: if opts.smoke { Plan::smoke() } else { Plan::full(profile) },
        pg_url,
        redis_url,
        clk_tck: procfs::clock_ticks_per_second()?,
        report,
        schemas: 0,
        noise: Default::default(),
    };
    for part in PARTS.iter().filter(|p| opts.only.iter().any(|o| o == *p)) {
        eprintln!("bench: measuring {part}");
        let t = std::time::Instant::now();
        let result = match *part {
            "secret" => parts::protected_page(&mut ctx).await,
            "metrics" => parts::metrics_cost(&mut ctx).await,
            "login" => parts::login_cost(&mut ctx).await,
            "memory" => parts::memory(&mut ctx).await,
            "scale" => parts::store_scale(&mut ctx).await,
            "gateway" => parts::gateway(&mut ctx).await,
            "bearer" => parts::bearer(&mut ctx).await,
            _ => parts::startup(&mut ctx),
        };
        result.with_context(|| format!("part `{part}`"))?;
        eprintln!("bench: {part} took {:.0} s", t.elapsed().as_secs_f64());
    }
    let noise = ctx.noise.take();
    ctx.report.notes.extend(noise);
    Ok(ctx.report)
}

/// A service URL from `var` (or `default`); `None` when set to `off`.
fn service(var: &str, default: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if v == "off" => None,
        Ok(v) if !v.is_empty() => Some(v),
        _ => Some(default.to_owned()),
    }
}

/// A URL without its password.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// The machine and the tree.
fn environment(root: &std::path::Path, cores: usize) -> Env {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".into(), |(_, m)| m.trim().to_owned());
    let output = |cmd: &mut Command| {
        cmd.output()
            .ok()
            .filter(|o| o.status.success() || !o.stdout.is_empty())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let commit = output(
        Command::new("git")
            .current_dir(root)
            .args(["describe", "--always", "--dirty"]),
    );
    let wrk = output(Command::new("wrk").arg("--version"));
    let now = time::OffsetDateTime::now_utc();
    Env {
        cpu,
        cores,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        date: format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute()
        ),
        commit: if commit.is_empty() { "unknown".into() } else { commit },
        command: std::iter::once("cargo run --release -p bench".to_owned())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
        wrk: wrk.lines().next().unwrap_or_default().to_owned(),
    }
}
