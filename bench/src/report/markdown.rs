//! The report as Markdown: the tables (also printed), the profiles, what
//! dominated each missed target, and the whole of `BENCHMARKS.md`.

use std::fmt::Write as _;

use super::*;

/// A Markdown table.
pub(super) fn table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", head.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    out.push('\n');
}

/// A row of a table of servers under load: `name`, requests/s, p50, p99
/// (with the range over runs), `share`, CPU use, and CPU per request.
pub(super) fn page_row(name: String, p: &Page, share: String) -> Vec<String> {
    vec![
        name,
        format!("{:.0}", p.figures.rps),
        ms(p.figures.p50),
        match (p.p99_runs.iter().min(), p.p99_runs.iter().max()) {
            (Some(lo), Some(hi)) => format!(
                "{} ({:.2}–{:.2})",
                ms(p.figures.p99),
                lo.as_secs_f64() * 1e3,
                hi.as_secs_f64() * 1e3
            ),
            _ => ms(p.figures.p99),
        },
        share,
        format!(
            "{:.0}% / {:.0}% / {:.0}%",
            p.cpu.server * 100.0,
            p.cpu.server_core * 100.0,
            p.cpu.load_core * 100.0
        ),
        format!("{:.1} µs", p.cpu.server * 1e6 / p.figures.rps),
    ]
}

impl Report {
    /// The figures and targets as Markdown (the body of `BENCHMARKS.md`, also printed).
    pub fn tables(&self) -> String {
        let mut out = String::new();
        if !self.pages.is_empty() || self.metrics_cost.is_some() {
            out.push_str("### 1. Protected page: `GET /secret` with a valid session\n\n");
            let mut rows: Vec<Vec<String>> = self
                .pages
                .iter()
                .map(|p| {
                    let name = if p.ceiling {
                        "ceiling: bare axum handler, same bytes, no auth".into()
                    } else {
                        format!("oidc-gate, {} sessions", p.store)
                    };
                    let share = self.ratio(p).map_or("—".into(), |r| format!("{:.1}%", r * 100.0));
                    page_row(name, p, share)
                })
                .collect();
            if let Some(cost) = &self.metrics_cost {
                for (name, p) in [
                    ("oidc-gate, SQLite sessions, metrics off (paired runs)", &cost.off),
                    (
                        "oidc-gate, SQLite sessions, `METRICS_LISTEN` set (paired runs)",
                        &cost.on,
                    ),
                ] {
                    let share = self.ratio(p).map_or("—".into(), |r| format!("{:.1}%", r * 100.0));
                    rows.push(page_row(name.into(), p, share));
                }
            }
            table(
                &mut out,
                &[
                    "server",
                    "requests/s",
                    "p50",
                    "p99",
                    "of ceiling",
                    "CPU: server / core 0 / core 1",
                    "server CPU per request",
                ],
                &rows,
            );
        }
        if !self.logins.is_empty() {
            out.push_str("### 2. Login cost (SQLite)\n\n");
            let rows: Vec<Vec<String>> = self
                .logins
                .iter()
                .map(|l| {
                    let secs = l.elapsed.as_secs_f64();
                    vec![
                        if l.separate_provider {
                            "its own process (core 1)".into()
                        } else {
                            "inside oidc-gate (diagnostic: its work counts too)".into()
                        },
                        thousands(l.count),
                        l.concurrency.to_string(),
                        format!("{:.0}", l.count as f64 / secs),
                        ms(l.elapsed.mul_f64(l.concurrency as f64 / l.count as f64)),
                        l.cpu_cell(),
                        format!("{:.0}", l.context_switches as f64 / l.count as f64),
                    ]
                })
                .collect();
            table(
                &mut out,
                &[
                    "development provider",
                    "logins",
                    "in flight",
                    "logins/s",
                    "mean round trip",
                    "oidc-gate CPU/login",
                    "its context switches/login",
                ],
                &rows,
            );
        }
        self.login_shapes_table(&mut out);
        if !self.memory.is_empty() {
            out.push_str("### 3. Memory (RSS of oidc-gate, SQLite)\n\n");
            let rows: Vec<Vec<String>> = self
                .memory
                .iter()
                .map(|m| {
                    vec![
                        thousands(m.sessions),
                        m.what.clone(),
                        format!("{:.1} MB", mb(m.rss_kib)),
                    ]
                })
                .collect();
            table(&mut out, &["sessions", "how", "VmRSS"], &rows);
        }
        if !self.scale.is_empty() {
            out.push_str("### 4. Store scale: `/secret` as the session table grows\n\n");
            let rows: Vec<Vec<String>> = self
                .scale
                .iter()
                .map(|s| {
                    vec![
                        s.store.into(),
                        s.variant.into(),
                        thousands(s.sessions),
                        format!("{:.0}", s.hot.rps),
                        format!("{} / {}", ms(s.hot.p50), ms(s.hot.p99)),
                        thousands(s.spread_over),
                        format!("{:.0}", s.spread.rps),
                        format!("{} / {}", ms(s.spread.p50), ms(s.spread.p99)),
                    ]
                })
                .collect();
            table(
                &mut out,
                &[
                    "store",
                    "configuration",
                    "sessions",
                    "one session: req/s",
                    "p50 / p99",
                    "spread over",
                    "spread: req/s",
                    "p50 / p99",
                ],
                &rows,
            );
        }
        if let Some(s) = &self.startup {
            out.push_str("### 5. Start-up (SQLite, median)\n\n");
            table(
                &mut out,
                &[
                    "runs",
                    "spawn → listening",
                    "spawn → first 200 (fresh)",
                    "spawn → first 200 (restart)",
                ],
                &[vec![
                    s.ready.len().to_string(),
                    ms(median(&s.listen)),
                    ms(median(&s.ready)),
                    ms(median(&s.restart_ready)),
                ]],
            );
        }
        self.gateway_tables(&mut out);
        out.push_str("### Targets\n\n");
        let rows: Vec<Vec<String>> = self
            .targets()
            .into_iter()
            .map(|t| vec![t.goal, t.measured, format!("**{}**", t.verdict)])
            .collect();
        table(&mut out, &["target", "measured", "verdict"], &rows);
        out
    }

    /// The profiles as Markdown.
    pub fn profiles_md(&self) -> String {
        let mut out = String::new();
        for p in &self.profiles {
            let _ = writeln!(out, "#### {} ({} samples)\n", p.title, thousands(p.samples as usize));
            let rows: Vec<Vec<String>> = p
                .groups
                .iter()
                .filter(|g| g.0 >= 1.0)
                .map(|(pct, g)| vec![(*g).into(), format!("{pct:.1}%")])
                .collect();
            table(&mut out, &["where", "share of the server's CPU samples"], &rows);
            out.push_str("<details><summary>hottest symbols</summary>\n\n");
            let rows: Vec<Vec<String>> = p
                .top
                .iter()
                .map(|(pct, s)| vec![format!("`{}`", s.replace('|', "\\|")), format!("{pct:.1}%")])
                .collect();
            table(&mut out, &["symbol", "self"], &rows);
            out.push_str("</details>\n\n");
        }
        out
    }
}

/// The profile of logins on a busy server (eight in flight, kept-alive connections).
pub const LOGINS_PROFILE: &str = "logins (SQLite)";
/// The profile of sequential RS256 logins on fresh connections.
pub const SEQUENTIAL_PROFILE: &str = "sequential RS256 logins on fresh connections (SQLite)";

/// What a login does besides its HTTP traffic, for the login targets' misses.
const LOGIN_WORK: &str = "Four HTTP requests per login (three to oidc-gate, the code exchange from it to the \
     provider) mean much of the kernel share is the loopback TCP traffic of the login itself. Starting the \
     login writes nothing (the login in progress travels in an encrypted cookie); the callback writes the user, the session \
     and its index entry in one transaction on SQLite's writer: two trips to that connection's thread \
     (the begin with the user; the session with its index entry and the commit), each a wake-up of the \
     writer's thread and one of the tokio worker.";

impl Report {
    /// The profile titled `title`, if taken.
    fn profile(&self, title: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.title == title)
    }

    /// The largest groups of a profile, as a phrase.
    pub(super) fn dominant(&self, title: &str) -> Option<String> {
        let p = self.profile(title)?;
        let groups: Vec<String> = p
            .groups
            .iter()
            .take(4)
            .map(|(pct, g)| format!("{g} {pct:.0}%"))
            .collect();
        Some(format!("the profile of {title} below: {}", groups.join(", ")))
    }

    /// For each missed target, what dominated, from this run's figures and profiles.
    pub fn misses_md(&self) -> String {
        let mut out = String::new();
        for t in self.targets().into_iter().filter(|t| t.verdict == Verdict::Miss) {
            let why = match t.kind {
                Kind::PageP99(store) => self.page_miss(store).map(|m| {
                    let mut m = m;
                    if store == "PostgreSQL" {
                        m.push_str(
                            " Session lookups are batched (one `WHERE id = ANY($1)` query, on a connection \
                             of its own, for the requests that arrived while the previous one was out), but \
                             each query still wakes a PostgreSQL backend on the other core, which it shares \
                             with the load generator. PostgreSQL on a machine of its own is the fair test of \
                             this target.",
                        );
                    }
                    if let Some(c) = self.pages.iter().find(|p| p.ceiling)
                        && c.figures.p99 > Duration::from_millis(2)
                    {
                        let _ = write!(
                            m,
                            " The ceiling's own p99 in this run was {}: pauses of the machine itself \
                             (a neighbour on the host, the hypervisor) were long enough to miss the target \
                             with no authentication at all.",
                            ms(c.figures.p99)
                        );
                    }
                    m
                }),
                Kind::PageShare(store) => self.page_miss(store),
                Kind::LoginCpu => self
                    .dominant(LOGINS_PROFILE)
                    .map(|d| format!("Where the CPU of a login goes: {d}. {LOGIN_WORK}")),
                Kind::LoginSequential => {
                    let floor = self.login_floor_note();
                    let profile = self.dominant(SEQUENTIAL_PROFILE).map(|d| {
                        format!(
                            "Where the CPU of a sequential login goes: {d}. Each of its three requests to \
                             oidc-gate arrives on a fresh TCP connection at an idle server (accept, a first \
                             read, the answer, the close, and the worker's wake-up from `epoll_wait` each time). \
                             {LOGIN_WORK}"
                        )
                    });
                    match (floor, profile) {
                        (Some(f), Some(p)) => Some(format!("{f} {p}")),
                        (f, p) => f.or(p),
                    }
                }
                Kind::RssSessions => self.memory_miss(),
                Kind::Scale(store) => self.scale_miss(store),
                Kind::ProxyShare
                | Kind::ProxyP99
                | Kind::ForwardAuthShare
                | Kind::BearerShare
                | Kind::HandOverCost
                | Kind::BulkRss(_) => self.gateway_miss(t.kind),
                Kind::RssIdle | Kind::Startup | Kind::MetricsCost => None,
            };
            let _ = writeln!(
                out,
                "- **{}** ({}): {}",
                t.goal,
                t.measured,
                why.unwrap_or_else(|| "no profile of this in this run (see the figures above).".into())
            );
        }
        out
    }

    fn page_miss(&self, store: &str) -> Option<String> {
        let page = self.pages.iter().find(|p| p.store == store)?;
        let mut s = format!(
            "oidc-gate used {:.1} µs of CPU per request",
            page.cpu.server * 1e6 / page.figures.rps
        );
        if let Some(c) = self.pages.iter().find(|p| p.ceiling) {
            let _ = write!(s, " against the ceiling's {:.1} µs", c.cpu.server * 1e6 / c.figures.rps);
        }
        s.push('.');
        if page.cpu.server < 0.9 && page.cpu.server_core > 0.95 {
            let _ = write!(
                s,
                " It had only {:.0}% of its core while the core was {:.0}% busy: the {store} server's own \
                 processes (not pinned) ran on the same two cores, so this figure includes waiting for them.",
                page.cpu.server * 100.0,
                page.cpu.server_core * 100.0
            );
        }
        if let Some(d) = self.dominant(&format!("`/secret` with {store} sessions")) {
            let _ = write!(s, " See {d}");
            if let Some(c) = self.profile("the ceiling") {
                let kernel = c.groups.iter().find(|g| g.1.starts_with("kernel")).map_or(0.0, |g| g.0);
                let _ = write!(s, " (the ceiling's kernel share is {kernel:.0}%)");
            }
            s.push('.');
        }
        Some(s)
    }

    fn memory_miss(&self) -> Option<String> {
        let idle = self.memory.iter().find(|m| m.sessions == 0)?;
        let full = self.memory.iter().find(|m| m.sessions == 100_000 && !m.diagnostic)?;
        let mut s = format!(
            "{:.1} MB more than idle for 100,000 sessions.",
            mb(full.rss_kib) - mb(idle.rss_kib)
        );
        if let Some(real) = self.memory.iter().find(|m| m.sessions == 10_000) {
            let _ = write!(
                s,
                " The first 10,000 (real logins) took {:.1} MB.",
                mb(real.rss_kib) - mb(idle.rss_kib)
            );
        }
        if let Some(off) = self.memory.iter().find(|m| m.diagnostic) {
            let _ = write!(
                s,
                " Without the session cache the same sessions need {:.1} MB in all, so the cache holds about {:.1} MB.",
                mb(off.rss_kib),
                mb(full.rss_kib) - mb(off.rss_kib)
            );
        }
        Some(s)
    }

    fn scale_miss(&self, store: &str) -> Option<String> {
        let rows = |variant: &str| -> Vec<&Scale> {
            self.scale
                .iter()
                .filter(|s| s.store == store && s.variant == variant)
                .collect()
        };
        let default = rows("default");
        let (a, b) = (default.first()?, default.last()?);
        let mut s = format!(
            "with one session, {} sessions serve {:.0} requests/s against {:.0} at {}; spread over {} \
             sessions, {:.0} against {:.0}.",
            thousands(b.sessions),
            b.hot.rps,
            a.hot.rps,
            thousands(a.sessions),
            thousands(b.spread_over),
            b.spread.rps,
            a.spread.rps
        );
        if let Some(buf) = &b.buffers {
            let pages = buf.hit + buf.read;
            let _ = write!(
                s,
                " Right after the spread run, one lookup of {} of those sessions (as oidc-gate batches them) \
                 needed {pages} pages and found {} in PostgreSQL's buffer cache, reading {} ({:.0}%) from the \
                 operating system: the table with its indexes takes {:.0} MB against `shared_buffers` of \
                 {:.0} MB{}.{} {}",
                buf.ids,
                buf.hit,
                buf.read,
                100.0 * buf.read as f64 / pages.max(1) as f64,
                buf.table_bytes as f64 / 1e6,
                buf.shared_buffers_bytes as f64 / 1e6,
                a.buffers.as_ref().map_or(String::new(), |small| format!(
                    " (at {} sessions: {:.1} MB, {} of {} pages read)",
                    thousands(a.sessions),
                    small.table_bytes as f64 / 1e6,
                    small.read,
                    small.hit + small.read
                )),
                if b.hot.rps >= 0.85 * a.hot.rps {
                    " With one session the large table serves about as fast as the small one, so what dominated \
                     the spread run is PostgreSQL's own cache, sized by its configuration, not the lookup."
                } else {
                    ""
                },
                match a.buffers.as_ref().map(|small| &small.node) {
                    Some(node) if *node == buf.node => format!("The plan is the same at both sizes: `{node}`."),
                    Some(node) => format!(
                        "The plan: `{node}` at {}, `{}` at {}.",
                        thousands(a.sessions),
                        buf.node,
                        thousands(b.sessions)
                    ),
                    None => format!("The plan: `{}`.", buf.node),
                },
            );
        }
        let off = rows("`SESSION_CACHE_SIZE=0`");
        if let (Some(x), Some(y)) = (off.first(), off.last()) {
            let ratio = y.spread.p50.as_secs_f64() / x.spread.p50.as_secs_f64();
            let _ = write!(
                s,
                " Without the session cache the spread p50 goes from {} to {} ({ratio:.2}×) and {} requests/s \
                 beat the default's {:.0}: the {store} lookup itself scales; what dominated is requests \
                 spread over more sessions than the session cache holds (a miss costs the cache's own \
                 bookkeeping on top of the store's lookup).",
                ms(x.spread.p50),
                ms(y.spread.p50),
                format_args!("{:.0}", y.spread.rps),
                b.spread.rps
            );
        }
        Some(s)
    }

    /// `BENCHMARKS.md`.
    pub fn document(&self, profiled: bool) -> String {
        let r = self;
        let e = &r.env;
        let (real, total) = if r.smoke { (100, 1_000) } else { (10_000, 100_000) };
        let login_rounds = r.logins.first().map_or(0, |l| l.round_cpu.len());
        let logins_per_round = r.logins.first().map_or(0, Logins::per_round);
        let mut out = String::new();
        let _ = write!(
            out,
            "# Benchmarks\n\n\
         Written by `{cmd}` on {date}; run it again to refresh this file (8 to 12 minutes).\n\
         Figures are per core and only comparable within one run: the ratios to the ceiling are what to watch.\n\n\
         - Machine: {cpu}, {cores} logical CPUs, Linux {kernel}\n\
         - Tree: `{commit}`\n\
         - Load generator: {wrk}\n\n",
            cmd = e.command,
            date = e.date,
            cpu = e.cpu,
            cores = e.cores,
            kernel = e.kernel,
            commit = e.commit,
            wrk = e.wrk,
        );
        out.push_str("## How it is measured\n\n");
        let _ = writeln!(
            out,
            "- oidc-gate and the ceiling are release builds, started on core 0 (one at a time, but \
         for the rows measured in alternating runs or interleaved rounds below, whose servers are \
         up together, each idle while another is measured) \
         (`taskset -c 0`), each with `TOKIO_WORKER_THREADS=1` (what tokio picks anyway on one \
         core) and `RUST_LOG=warn`; the load generator and this benchmark run on core 1.\n\
         - oidc-gate runs with its embedded development provider (no `OIDC_*` variables), a fresh \
         `DATA_DIR` per server, PostgreSQL in a fresh schema per server (dropped afterwards).\n\
         - The session stores' own processes run on core 1 too, as on a machine of their own: \
         the PostgreSQL backends a server opened are moved there after the warm-up, and the \
         Redis server for the Redis runs (`taskset`; its CPU mask is restored afterwards). \
         Left to the scheduler they took up to 40% of core 0 from oidc-gate.\n\
         - **Protected page**: one programmatic login (the real flow through the development \
         provider), then `{wrk}` with that session's cookie, {runs} after a warm-up run; each \
         figure is the median run's (for p99 the range of the runs is in brackets: one 10-second \
         run's p99 moves with the machine's neighbours). Every run is \
         checked: no error, every answer the size of the page (a redirect to the login would be \
         smaller), and the session still valid afterwards. The **ceiling** is `bench/src/bin/ceiling.rs`: \
         a bare axum handler on the same axum/hyper/tokio (one `Cargo.lock`) returning the same \
         body and headers oidc-gate sent, with no session, no login check, no logging. The \
         ceiling and the SQLite row (the ratio issue 20 judges) are measured in pairs of runs in \
         alternating order (ceiling then oidc-gate, oidc-gate then ceiling, …), {paired} each (an \
         even number; the figure is then the upper of the two middle runs), both servers up \
         throughout, so that the machine's drift falls on both alike. \
         *Server CPU* is the server's utime+stime over the run (100% = its core saturated).\n\
         - **Metrics cost**: two SQLite servers, one with `METRICS_LISTEN`, measured as above in \
         pairs of runs in alternating order (off then on, on then off, …), each figure the median \
         run's. Requests per second on a shared two-core machine move by several percent between \
         two runs of the same server, so the cost is also counted in instructions: each server \
         again under valgrind's callgrind (same binary, one kept-alive connection, signed in and \
         warmed up, then {counted} sequential `/secret` requests between zeroing and dumping the \
         counters); that count is the same on every run.\n\
         - **Login cost**: full round trips from `GET /secret` to the final `200` (`/secret` → \
         the provider's page (one redirect) → its form POST → `/callback` → `/secret`), a fresh \
         cookie jar and a distinct user each, several in flight, in {rounds} rounds of {per_round}; \
         oidc-gate's CPU is utime+stime from `/proc/<pid>/stat` before and after each round, \
         and the figure is the median round's (on a shared machine a neighbour's burst can \
         double one round). The target is judged with the development \
         provider in a process of its own on core 1 (`bench/src/bin/provider.rs`: the same \
         provider code, so oidc-gate's CPU is the relying party's alone); a second run with the \
         provider inside oidc-gate (its default) shows what the provider's ES256 signing and \
         pages add.\n\
         - **Login cost by algorithm and load** (2b): the same logins with ES256, RS256 and PS256 ID \
         tokens (the provider process serves one issuer per algorithm; `OIDC_ID_TOKEN_ALG` names it), \
         each on a fresh oidc-gate under two loads: eight in flight on kept-alive connections, \
         as above (a busy server), and one at a time with a fresh TCP connection for every \
         request (sign-ins as a mostly idle server sees them: browsers arriving one by one). Real \
         providers sign with RS256 by default, and the sequential RS256 row is the one issue 20 \
         judges, against the peer's row measured the same way: **Apache 2 with mod_auth_openidc** \
         (Debian's packages; configured as in the gateway rows: the event MPM with one child process, \
         sessions in its shared-memory cache, PKCE, a confidential client) signing in at a \
         provider process of the same binary with RS256 ID tokens, one login at a time, a fresh TCP connection for \
         every request, from a protected page that Apache proxies to the gateway rows' upstream \
         (`bench/src/bin/upstream.rs`, core 1) until that page comes back; its CPU is the \
         utime+stime of all Apache's processes (the parent and its child), in the same rounds, \
         the median round's figure. Last, the **floor** under those rows: the ceiling (a bare axum \
         handler, no session, no login; the same binary as in table 1) on core 0 answering the three \
         requests a login makes to its relying party (the protected page, the callback, the page \
         again), each on a fresh connection, one such \"login\" at a time, in the same rounds: what \
         any relying party served by axum spends on a sequential login before doing any of it. \
         These three rows (oidc-gate's sequential RS256 row, Apache's and the floor's) are measured \
         in **interleaved rounds**: a round of each in turn, the order rotating from round to round, \
         all three servers up throughout (idle while another is measured). On a shared machine the \
         same work's CPU time moves by half or more from one minute to the next; rounds taken in \
         turn see the same machine, so the ratio the target judges holds where the figures do not.\n\
         - **Memory**: VmRSS from `/proc/<pid>/status`: idle one second after start; after \
         {real} real logins; then after adding copies of those real session records under fresh \
         random ids (written straight into the session table, encoded as the store encodes \
         them) up to {total} sessions, each of which is then requested once with its cookie so \
         oidc-gate loads it.",
            wrk = r.wrk_command,
            runs = measured_runs(r.pages.last()),
            paired = measured_runs(r.pages.first()),
            real = thousands(real),
            total = thousands(total),
            rounds = login_rounds,
            per_round = thousands(logins_per_round),
            counted = thousands(r.metrics_cost.as_ref().map_or(0, |c| c.counted)),
        );
        let _ = writeln!(
            out,
            "- **Store scale**: one real session copied under fresh ids up to the size shown, \
         then `/secret` with the real session only (*one session*) and round robin over many \
         distinct sessions spread evenly over the whole table (*spread*, a wrk Lua script; \
         the target is judged on it, as it is what makes the store look sessions up). Each of \
         those sessions is requested once just before the spread run: a session records its \
         activity (a write) at most once a minute, and copies written long enough ago would \
         otherwise turn the large table's run into a run of writes.\n\
         - **Start-up**: spawn to the first accepted TCP connection, and to the first `200` \
         from `/healthz`, on a fresh data directory and on a restart with the database present \
         (includes `taskset`'s exec)."
        );
        r.gateway_method(&mut out);
        out.push_str("\n## Results\n\n");
        out.push_str(&r.tables());
        let misses = r.misses_md();
        if !misses.is_empty() {
            out.push_str("## Missed targets: what dominated\n\n");
            out.push_str(&misses);
            out.push('\n');
        }
        if profiled && !r.profiles.is_empty() {
            out.push_str(
                "## Where the server's CPU goes\n\n\
             Flat `perf record -F 999 -p <pid>` profiles of the server while the load above \
             ran again (self time per symbol, grouped by library). For a missed target, the \
             largest groups are what dominated.\n\n",
            );
            out.push_str(&r.profiles_md());
        }
        if !r.notes.is_empty() {
            out.push_str("## Notes\n\n");
            for n in &r.notes {
                let _ = writeln!(out, "- {n}");
            }
        }
        out
    }
}

/// How many measured runs a page row's figures come from, in words.
fn measured_runs(page: Option<&Page>) -> String {
    match page.map_or(1, |p| p.p99_runs.len().max(1)) {
        1 => "one measured run".to_owned(),
        n => format!("{n} measured runs"),
    }
}
