//! Part 2, by the provider's signing algorithm and the load's shape: the
//! login's cost with ES256, RS256 (what Google, Entra ID, Okta, Auth0 and
//! Keycloak sign with by default) and PS256 ID tokens, each under two loads:
//! eight logins in flight on kept-alive connections (a busy server), and one
//! login at a time with a fresh connection per request (sign-ins as a mostly
//! idle server sees them; issue 20 is judged on the sequential RS256 row).
//! Then the peer: Apache 2 with mod_auth_openidc signing in the same way,
//! one at a time with RS256 ID tokens on fresh connections, when Debian's
//! packages are installed. The provider runs in a process of its own on
//! core 1 throughout.

use std::time::Duration;

use anyhow::{Context, Result};

use super::gateway::PAGE_PATH;
use super::{Ctx, profiled};
use crate::client::{Client, SignsIn, browser, login_many};
use crate::peers;
use crate::report::{LoginShape, Logins, RelyingParty, SEQUENTIAL_PROFILE};
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
    let first = 1_000_000 * (ctx.report.login_shapes.len() + 1);
    let logins = rounds(ctx, &server, &login, 1, first)
        .await
        .context("logins through Apache's mod_auth_openidc")?;
    ctx.report.login_shapes.push(LoginShape {
        rp: RelyingParty::Apache,
        alg: "RS256",
        sequential: true,
        logins,
    });
    Ok(())
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
