//! Part 2, by the provider's signing algorithm and the load's shape: the
//! login's cost with ES256, RS256 (what Google, Entra ID, Okta, Auth0 and
//! Keycloak sign with by default) and PS256 ID tokens, each under two loads:
//! eight logins in flight on kept-alive connections (a busy server), and one
//! login at a time with a fresh connection per request (sign-ins as a mostly
//! idle server sees them; issue 20 is judged on the sequential RS256 row).
//! Then the peer: Apache 2 with mod_auth_openidc signing in the same way,
//! one at a time with RS256 ID tokens on fresh connections, when Debian's
//! packages are installed. The provider runs in a process of its own on
//! core 1 throughout. Last the floor under the sequential rows: the
//! ceiling (a bare axum handler) answering the three requests a login makes
//! to its relying party, with no login at all.

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
            let (client, concurrency) = if sequential {
                (Client::fresh_connections(&url)?, 1)
            } else {
                (Client::new(&url)?, BUSY)
            };
            // Distinct users across rows too: each row signs in new ones.
            let first = 1_000_000 * (ctx.report.login_shapes.len() + 1);
            let logins = rounds(ctx, &server, &client, concurrency, first).await?;
            if sequential && alg == "RS256" {
                // The judged row's own profile: what an idle server spends a login on.
                let rate = logins.count as f64 / logins.elapsed.as_secs_f64();
                let more = ((ctx.plan.profile.as_secs_f64() + 1.0) * rate).ceil() as usize;
                profiled(ctx, &server, SEQUENTIAL_PROFILE, async |_| {
                    login_many(&client, more.min(50_000), 1, first + 900_000)
                        .await
                        .map(drop)
                })
                .await?;
            }
            ctx.report.login_shapes.push(LoginShape {
                rp: RelyingParty::OidcGate,
                alg,
                sequential,
                logins,
            });
        }
    }
    drop(provider);
    floor(ctx).await?;
    match peers::apache() {
        Ok((bin, modules)) => apache(ctx, &bin, &modules).await,
        Err(why) => {
            let note = format!("The Apache + mod_auth_openidc login row was skipped: {why}.");
            eprintln!("bench: {note}");
            ctx.report.notes.push(note);
            Ok(())
        }
    }
}

/// The peer's row: sequential RS256 logins on fresh connections through
/// Apache with mod_auth_openidc, from a protected page proxied to the
/// gateway rows' upstream back to it (as oidc-gate's logins end on its
/// protected page); the CPU is that of all Apache's processes.
async fn apache(ctx: &mut Ctx, bin: &std::path::Path, modules: &std::path::Path) -> Result<()> {
    let mut upstream = Server::upstream(&ctx.bins.upstream)?;
    upstream.wait_answering(PAGE_PATH)?;
    let (_provider, server) =
        peers::start_apache_at_provider(&ctx.bins.provider, bin, modules, upstream.addr, "/rs256")?;
    let http = browser(0)?;
    let page = http.get(upstream.url(PAGE_PATH)).send().await?.bytes().await?;
    let login = ToPage {
        http,
        start: server.url(PAGE_PATH).parse()?,
        page: page.as_ref().into(),
    };
    sequential_row(ctx, &server, &login, RelyingParty::Apache, "RS256")
        .await
        .context("logins through Apache's mod_auth_openidc")
}

/// Measures `client`'s logins at `server`, one at a time, as `rp`'s row
/// (`alg`: its ID tokens), with users not signed in before.
async fn sequential_row(
    ctx: &mut Ctx,
    server: &Server,
    client: &impl SignsIn,
    rp: RelyingParty,
    alg: &'static str,
) -> Result<()> {
    let first = 1_000_000 * (ctx.report.login_shapes.len() + 1);
    let logins = rounds(ctx, server, client, 1, first).await?;
    ctx.report.login_shapes.push(LoginShape {
        rp,
        alg,
        sequential: true,
        logins,
    });
    Ok(())
}

/// The floor: the ceiling (a bare axum handler on the same axum, hyper and
/// tokio, no session, no login) answering the three requests a sequential
/// login makes to its relying party (the protected page, the callback, the
/// page again), each on a fresh connection, one "login" at a time, in the
/// same rounds. No relying party served by axum can spend less per login
/// on this machine; the code exchange, the token checks and the session's
/// writes come on top.
async fn floor(ctx: &mut Ctx) -> Result<()> {
    let mut server = Server::ceiling(
        &ctx.bins.ceiling,
        FLOOR_PAGE,
        "content-type: text/html; charset=utf-8\n",
    )?;
    server.wait_answering("/secret")?;
    let three = ThreeRequests {
        http: browser(0)?,
        url: server.url("/secret"),
    };
    sequential_row(ctx, &server, &three, RelyingParty::Floor, NO_ID_TOKENS)
        .await
        .context("the floor's requests to the ceiling")
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
    let (n, _) = ctx.plan.logins;
    let fail = |e: anyhow::Error| e.context(server.log_tail());
    login_many(client, 20.min(n), concurrency, first)
        .await
        .map_err(|e| fail(e).context("warm-up logins"))?;
    let mut logins = Logins {
        count: 0,
        concurrency,
        elapsed: Duration::ZERO,
        round_cpu: Vec::new(),
        clk_tck: ctx.clk_tck,
        context_switches: 0,
        separate_provider: true,
    };
    for round in 0..ctx.plan.login_rounds {
        let before = server.stats()?;
        let (_, elapsed) = login_many(client, n, concurrency, first + 100 + round * n)
            .await
            .map_err(fail)?;
        let after = server.stats()?;
        let cpu = (after.cpu_ticks - before.cpu_ticks) as f64 / ctx.clk_tck as f64;
        logins.count += n;
        logins.elapsed += elapsed;
        logins.round_cpu.push(Duration::from_secs_f64(cpu) / n as u32);
        logins.context_switches += after.context_switches - before.context_switches;
    }
    Ok(logins)
}
