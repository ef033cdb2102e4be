//! Part 2, by the provider's signing algorithm and the load's shape: the
//! login's cost with ES256, RS256 (what Google, Entra ID, Okta, Auth0 and
//! Keycloak sign with by default) and PS256 ID tokens, each under two loads:
//! eight logins in flight on kept-alive connections (a busy server), and one
//! login at a time with a fresh connection per request (sign-ins as a mostly
//! idle server sees them; issue 20 is judged on the sequential RS256 row).
//! The provider runs in a process of its own on core 1 throughout.
//!
//! The judged row is measured in interleaved rounds with the two it is
//! compared with: the peer, Apache 2 with mod_auth_openidc signing in the
//! same way (one at a time, RS256 ID tokens, fresh connections) when
//! Debian's packages are installed, and the floor (the ceiling, a bare axum
//! handler, answering the three requests a login makes to its relying
//! party, with no login at all). On a shared machine the CPU time of the
//! same work moves by half or more between minutes; rounds taken in turn
//! see the same machine, so the ratio holds where the figures do not.

use std::time::Duration;

use anyhow::{Context, Result, ensure};

use super::gateway::PAGE_PATH;
use super::{Ctx, profiled};
use crate::client::{Client, SignsIn, browser, login_many};
use crate::peers;
use crate::report::{LoginShape, Logins, NO_ID_TOKENS, RelyingParty, SEQUENTIAL_PROFILE};
use crate::server::{Server, Store, free_addr, temp_dir};
use crate::signin::ToPage;

/// Logins in flight in the busy shape (as in the main login row).
const BUSY: usize = 8;

/// Measures every (algorithm, shape) pair on a fresh oidc-gate per algorithm.
pub async fn login_shapes(ctx: &mut Ctx) -> Result<()> {
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
    // The rows the judged row is compared with, shown last.
    let mut compared = Vec::new();
    for alg in ["ES256", "RS256", "PS256"] {
        let path = match alg {
            "ES256" => "/dev-provider".to_owned(),
            _ => format!("/{}/dev-provider", alg.to_lowercase()),
        };
        let issuer = provider.url(&path);
        let env = [
            ("OIDC_ISSUER", issuer.as_str()),
            ("OIDC_CLIENT_ID", "bench"),
            ("OIDC_CLIENT_SECRET", secret.as_str()),
            // What the provider's discovery lists anyway: said, so that a
            // change of the default cannot move a row to another algorithm.
            ("OIDC_ID_TOKEN_ALG", alg),
        ];
        let mut server = Server::oidc_gate_on(base, &ctx.bins.oidc_gate, &Store::Sqlite, temp_dir("logins")?, &env)?;
        server.wait_answering("/healthz")?;
        let url = server.url("");
        for sequential in [false, true] {
            if sequential && alg == JUDGED_ALG {
                // In turn with the peer and the floor.
                let (judged, others) = judged_rows(ctx, &server).await?;
                ctx.report.login_shapes.push(judged);
                compared = others;
                continue;
            }
            let (client, concurrency) = if sequential {
                (Client::fresh_connections(&url)?, 1)
            } else {
                (Client::new(&url)?, BUSY)
            };
            // Distinct users across rows too: each row signs in new ones.
            let first = 1_000_000 * (ctx.report.login_shapes.len() + 1);
            let logins = rounds(ctx, &server, &client, concurrency, first).await?;
            ctx.report.login_shapes.push(LoginShape {
                rp: RelyingParty::OidcGate,
                alg,
                sequential,
                logins,
            });
        }
    }
    drop(provider);
    ensure!(!compared.is_empty(), "the judged algorithm was not measured");
    ctx.report.login_shapes.extend(compared);
    Ok(())
}

/// The ID tokens of the judged row.
const JUDGED_ALG: &str = "RS256";

/// The judged row (sequential logins at `server`, an oidc-gate whose
/// provider signs with [`JUDGED_ALG`]), the floor's and the peer's, in
/// interleaved rounds: each round of each, in turn, in an order that
/// rotates from round to round. Then the judged row's profile. Returns the
/// judged row, and the others.
async fn judged_rows(ctx: &mut Ctx, server: &Server) -> Result<(LoginShape, Vec<LoginShape>)> {
    let gate = Client::fresh_connections(&server.url(""))?;
    let mut ceiling = Server::ceiling(
        &ctx.bins.ceiling,
        FLOOR_PAGE,
        "content-type: text/html; charset=utf-8\n",
    )?;
    ceiling.wait_answering("/secret")?;
    let floor = ThreeRequests {
        http: browser(0)?,
        url: ceiling.url("/secret"),
    };
    let peer = match peers::apache() {
        Ok((bin, modules)) => Some(
            Peer::start(ctx, &bin, &modules)
                .await
                .context("Apache with mod_auth_openidc")?,
        ),
        Err(why) => {
            let note = format!("The Apache + mod_auth_openidc login row was skipped: {why}.");
            eprintln!("bench: {note}");
            ctx.report.notes.push(note);
            None
        }
    };
    // Distinct users in every row: each signs in new ones.
    let first = |row: usize| 1_000_000 * (10 + row);
    let mut gate_logins = warm_up(ctx, server, &gate, 1, first(0)).await?;
    let mut floor_logins = warm_up(ctx, &ceiling, &floor, 1, 0).await?;
    let mut peer = match peer {
        Some(p) => {
            let logins = warm_up(ctx, &p.server, &p.login, 1, first(2)).await.context("Apache")?;
            Some((p, logins))
        }
        None => None,
    };
    for r in 0..ctx.plan.login_rounds {
        for k in 0..3 {
            match (r + k) % 3 {
                0 => round(ctx, server, &gate, &mut gate_logins, first(0), r).await?,
                1 => round(ctx, &ceiling, &floor, &mut floor_logins, 0, r)
                    .await
                    .context("the floor's requests to the ceiling")?,
                _ => {
                    if let Some((p, logins)) = peer.as_mut() {
                        round(ctx, &p.server, &p.login, logins, first(2), r)
                            .await
                            .context("logins through Apache's mod_auth_openidc")?;
                    }
                }
            }
        }
    }
    let row = |rp, alg, logins| LoginShape {
        rp,
        alg,
        sequential: true,
        logins,
    };
    let judged = row(RelyingParty::OidcGate, JUDGED_ALG, gate_logins.clone());
    let mut others = vec![row(RelyingParty::Floor, NO_ID_TOKENS, floor_logins)];
    if let Some((p, logins)) = peer {
        drop(p);
        others.push(row(RelyingParty::Apache, JUDGED_ALG, logins));
    }
    drop(ceiling);
    // The judged row's own profile: what an idle server spends a login on.
    let rate = gate_logins.count as f64 / gate_logins.elapsed.as_secs_f64();
    let more = ((ctx.plan.profile.as_secs_f64() + 1.0) * rate).ceil() as usize;
    profiled(ctx, server, SEQUENTIAL_PROFILE, async |_| {
        login_many(&gate, more.min(50_000), 1, first(3)).await.map(drop)
    })
    .await?;
    Ok((judged, others))
}

/// The peer, signing in from a protected page proxied to the gateway
/// rows' upstream back to it (as oidc-gate's logins end on its protected
/// page); its CPU is that of all Apache's processes.
struct Peer {
    server: Server,
    login: ToPage,
    /// Kept running while the peer is measured.
    _behind: (Server, Server),
}

impl Peer {
    async fn start(ctx: &Ctx, bin: &std::path::Path, modules: &std::path::Path) -> Result<Self> {
        let mut upstream = Server::upstream(&ctx.bins.upstream)?;
        upstream.wait_answering(PAGE_PATH)?;
        let (provider, server) =
            peers::start_apache_at_provider(&ctx.bins.provider, bin, modules, upstream.addr, "/rs256")?;
        let http = browser(0)?;
        let page = http.get(upstream.url(PAGE_PATH)).send().await?.bytes().await?;
        let login = ToPage {
            http,
            start: server.url(PAGE_PATH).parse()?,
            page: page.as_ref().into(),
        };
        Ok(Self {
            server,
            login,
            _behind: (upstream, provider),
        })
    }
}

/// The floor's page (a login's answers are two redirects and a small page).
const FLOOR_PAGE: &[u8] = b"<!doctype html><title>floor</title><p>Only logged in user can see this.</p>";

/// A "login" of the floor: three `GET`s, each on a fresh connection.
#[derive(Clone)]
struct ThreeRequests {
    http: reqwest::Client,
    url: String,
}

impl SignsIn for ThreeRequests {
    async fn sign_in_as(&self, _name: &str, _email: &str) -> Result<String> {
        for _ in 0..3 {
            let r = self.http.get(&self.url).send().await.context("GET the ceiling")?;
            ensure!(r.status().is_success(), "the ceiling answered {}", r.status());
            r.bytes().await?;
        }
        Ok(String::new())
    }
}

/// `ctx.plan.login_rounds` rounds of `ctx.plan.logins` logins, `concurrency`
/// at a time, after a few to warm up, by users numbered from `first`;
/// the server's CPU per login in each (all its processes for a web server
/// with workers; the provider in its own process).
pub(super) async fn rounds(
    ctx: &Ctx,
    server: &Server,
    client: &impl SignsIn,
    concurrency: usize,
    first: usize,
) -> Result<Logins> {
    let mut logins = warm_up(ctx, server, client, concurrency, first).await?;
    for round_no in 0..ctx.plan.login_rounds {
        round(ctx, server, client, &mut logins, first, round_no).await?;
    }
    Ok(logins)
}

/// A few logins at `server`, `concurrency` at a time, by users numbered
/// from `first`, to warm up; then nothing measured yet, at that concurrency.
async fn warm_up(
    ctx: &Ctx,
    server: &Server,
    client: &impl SignsIn,
    concurrency: usize,
    first: usize,
) -> Result<Logins> {
    let (n, _) = ctx.plan.logins;
    login_many(client, 20.min(n), concurrency, first)
        .await
        .map_err(|e| e.context(server.log_tail()).context("warm-up logins"))?;
    Ok(Logins {
        count: 0,
        concurrency,
        elapsed: Duration::ZERO,
        round_cpu: Vec::new(),
        clk_tck: ctx.clk_tck,
        context_switches: 0,
        separate_provider: true,
    })
}

/// Measured round `round_no` of `ctx.plan.logins` logins at `server`, added
/// to `logins` (with its concurrency), by the row's users numbered from
/// `first` (past those of its warm-up and earlier rounds).
async fn round(
    ctx: &Ctx,
    server: &Server,
    client: &impl SignsIn,
    logins: &mut Logins,
    first: usize,
    round_no: usize,
) -> Result<()> {
    let (n, _) = ctx.plan.logins;
    let before = server.stats()?;
    let (_, elapsed) = login_many(client, n, logins.concurrency, first + 100 + round_no * n)
        .await
        .map_err(|e| e.context(server.log_tail()))?;
    let after = server.stats()?;
    let cpu = (after.cpu_ticks - before.cpu_ticks) as f64 / ctx.clk_tck as f64;
    logins.count += n;
    logins.elapsed += elapsed;
    logins.round_cpu.push(Duration::from_secs_f64(cpu) / n as u32);
    logins.context_switches += after.context_switches - before.context_switches;
    Ok(())
}
