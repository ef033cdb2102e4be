//! The gateway rows (issue 16's "Speed"): the proxied page through nginx
//! (no auth, the baseline), oidc-gate and Apache with mod_auth_openidc;
//! `/oauth2/auth` against the bare axum ceiling; large bodies through
//! oidc-gate's proxy and the memory they cost. Their targets, tables and
//! what dominated a miss.

use std::fmt::Write as _;
use std::time::Duration;

use super::markdown::{page_row, table};
use super::{Kind, Page, Report, Target, Verdict, judge, mb, ms};

/// The proxied page must reach this share of nginx's requests/s.
const PROXY_SHARE: f64 = 0.6;
/// `/oauth2/auth` must reach this share of the ceiling's requests/s.
const FORWARD_AUTH_SHARE: f64 = 0.6;
/// A protected path with a bearer JWT must reach this share of the
/// ceiling's requests/s (issue 17).
const BEARER_SHARE: f64 = 0.5;
/// Forward auth handing over the access token (no refresh due): at least
/// this share of forward auth's requests/s without (issue 17: within 10%).
const HAND_OVER_SHARE: f64 = 0.9;
/// The proxied page's p99.
const PROXY_P99: Duration = Duration::from_millis(3);
/// What a large body may add to oidc-gate's resident memory, in KiB.
const BULK_RSS_KIB: u64 = 10 * 1024;

/// Which server a gateway row measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gw {
    /// nginx reverse-proxying the upstream, no authentication.
    Nginx,
    /// oidc-gate's reverse proxy, signed in.
    Proxy,
    /// Apache 2 with mod_auth_openidc, signed in.
    Apache,
    /// oidc-gate's `/oauth2/auth`, signed in.
    ForwardAuth,
    /// oidc-gate's `/oauth2/auth` with a bearer JWT, no session.
    Bearer,
    /// oidc-gate's `/oauth2/auth`, signed in, handing over the access token.
    HandOver,
}

impl Gw {
    fn label(self) -> &'static str {
        match self {
            Gw::Nginx => "nginx reverse proxy, no auth (baseline)",
            Gw::Proxy => "oidc-gate reverse proxy, signed in (SQLite sessions)",
            Gw::Apache => "Apache 2 + mod_auth_openidc reverse proxy, signed in (peer)",
            Gw::ForwardAuth => "oidc-gate `GET /oauth2/auth` (forward auth, `X-Original-URI`), signed in",
            Gw::Bearer => "oidc-gate `GET /oauth2/auth` with a bearer JWT (RFC 9068), no session",
            Gw::HandOver => {
                "oidc-gate `GET /oauth2/auth`, signed in, handing over the access token (`PASS_ACCESS_TOKEN`, no refresh due)"
            }
        }
    }
}

/// One gateway row under load.
#[derive(Debug, Clone)]
pub struct GatewayRow {
    /// The server.
    pub server: Gw,
    /// Its figures (the median run's).
    pub page: Page,
}

/// Which way a large body went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A `POST` of the body to the upstream.
    Upload,
    /// A `GET` of the body from the upstream.
    Download,
}

/// One large body.
#[derive(Debug, Clone)]
pub struct Bulk {
    /// Which way.
    pub direction: Direction,
    /// Through oidc-gate's proxy (`false`: straight to the upstream, the reference).
    pub proxied: bool,
    /// Its size.
    pub bytes: u64,
    /// Time from the request's start to the answer's end.
    pub elapsed: Duration,
    /// oidc-gate's VmRSS just before, in KiB.
    pub rss_before_kib: u64,
    /// oidc-gate's VmHWM (peak RSS) just after, reset just before, in KiB.
    pub peak_kib: u64,
}

impl Bulk {
    fn growth_kib(&self) -> u64 {
        self.peak_kib.saturating_sub(self.rss_before_kib)
    }

    fn throughput(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }
}

/// `1073741824` bytes as `1 GiB`, `67108864` as `64 MiB`.
fn size(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

impl Report {
    fn gateway_row(&self, server: Gw) -> Option<&Page> {
        self.gateway.iter().find(|r| r.server == server).map(|r| &r.page)
    }

    /// What a gateway row is compared with, and its share of it.
    fn gateway_share(&self, server: Gw) -> Option<(&'static str, f64)> {
        let page = self.gateway_row(server)?;
        let (name, base) = match server {
            Gw::Nginx => return None,
            Gw::Proxy | Gw::Apache => ("nginx", self.gateway_row(Gw::Nginx)?),
            Gw::ForwardAuth | Gw::Bearer => ("ceiling", self.pages.iter().find(|p| p.ceiling)?),
            Gw::HandOver => ("forward auth without", self.gateway_row(Gw::ForwardAuth)?),
        };
        Some((name, page.figures.rps / base.figures.rps))
    }

    /// The gateway's targets, judged.
    pub(super) fn gateway_targets(&self) -> Vec<Target> {
        let share = |kind, server, goal: &str, of: &str, least: f64| {
            let share = self.gateway_share(server).map(|(_, r)| r);
            Target {
                kind,
                goal: format!("{goal} ≥ {:.0}% of {of}", least * 100.0),
                measured: share.map_or("—".into(), |r| format!("{:.1}%", r * 100.0)),
                verdict: share.map_or(Verdict::Skipped, |r| judge(r >= least)),
            }
        };
        let mut out = vec![share(
            Kind::ProxyShare,
            Gw::Proxy,
            "proxied page through oidc-gate, signed in,",
            "nginx's requests/s (no auth)",
            PROXY_SHARE,
        )];
        let p99 = self.gateway_row(Gw::Proxy).map(|p| p.figures.p99);
        out.push(Target {
            kind: Kind::ProxyP99,
            goal: format!(
                "proxied page through oidc-gate p99 ≤ {} at 32 connections",
                ms(PROXY_P99)
            ),
            measured: p99.map_or("—".into(), ms),
            verdict: p99.map_or(Verdict::Skipped, |p| judge(p <= PROXY_P99)),
        });
        out.push(share(
            Kind::ForwardAuthShare,
            Gw::ForwardAuth,
            "`/oauth2/auth` for a signed-in session",
            "the ceiling's requests/s",
            FORWARD_AUTH_SHARE,
        ));
        out.push(share(
            Kind::BearerShare,
            Gw::Bearer,
            "bearer JWT to a protected path (`/oauth2/auth`, no session)",
            "the ceiling's requests/s",
            BEARER_SHARE,
        ));
        out.push(share(
            Kind::HandOverCost,
            Gw::HandOver,
            "`/oauth2/auth` handing over the access token (no refresh due)",
            "`/oauth2/auth` without, same run",
            HAND_OVER_SHARE,
        ));
        for direction in [Direction::Upload, Direction::Download] {
            let bulk = self.bulk.iter().find(|b| b.proxied && b.direction == direction);
            let what = if direction == Direction::Upload {
                "upload"
            } else {
                "download"
            };
            out.push(Target {
                kind: Kind::BulkRss(what),
                goal: format!(
                    "{} {what} through oidc-gate's proxy: its peak RSS grows ≤ 10 MiB",
                    bulk.map_or("1 GiB".into(), |b| size(b.bytes))
                ),
                measured: bulk.map_or("—".into(), |b| format!("{:.1} MiB", b.growth_kib() as f64 / 1024.0)),
                verdict: bulk.map_or(Verdict::Skipped, |b| judge(b.growth_kib() <= BULK_RSS_KIB)),
            });
        }
        out
    }

    /// The gateway's tables (sections 6 and 7).
    pub(super) fn gateway_tables(&self, out: &mut String) {
        if !self.gateway.is_empty() {
            out.push_str("### 6. Gateway: a small upstream page through a reverse proxy, and forward auth\n\n");
            let rows: Vec<Vec<String>> = self
                .gateway
                .iter()
                .map(|r| {
                    let share = self
                        .gateway_share(r.server)
                        .map_or("—".into(), |(of, s)| format!("{:.1}% of {of}", s * 100.0));
                    page_row(r.server.label().into(), &r.page, share)
                })
                .collect();
            table(
                out,
                &[
                    "server",
                    "requests/s",
                    "p50",
                    "p99",
                    "share",
                    "CPU: server / core 0 / core 1",
                    "server CPU per request",
                ],
                &rows,
            );
        }
        if !self.bulk.is_empty() {
            out.push_str("### 7. Gateway: large bodies through oidc-gate's reverse proxy, signed in\n\n");
            let rows: Vec<Vec<String>> = self
                .bulk
                .iter()
                .map(|b| {
                    let what = match b.direction {
                        Direction::Upload => "upload (`POST`)",
                        Direction::Download => "download (`GET`)",
                    };
                    let (rss, peak, growth) = if b.proxied {
                        (
                            format!("{:.1} MB", mb(b.rss_before_kib)),
                            format!("{:.1} MB", mb(b.peak_kib)),
                            format!("{:.1} MiB", b.growth_kib() as f64 / 1024.0),
                        )
                    } else {
                        ("—".into(), "—".into(), "—".into())
                    };
                    vec![
                        what.into(),
                        if b.proxied {
                            "through oidc-gate".into()
                        } else {
                            "straight to the upstream (reference)".into()
                        },
                        size(b.bytes),
                        format!("{:.2} s", b.elapsed.as_secs_f64()),
                        format!("{:.0} MB/s", b.throughput()),
                        rss,
                        peak,
                        growth,
                    ]
                })
                .collect();
            table(
                out,
                &[
                    "body",
                    "path",
                    "size",
                    "time",
                    "throughput",
                    "oidc-gate VmRSS before",
                    "VmHWM after",
                    "growth",
                ],
                &rows,
            );
        }
    }

    /// How the gateway rows are measured (a bullet of "How it is measured").
    pub(super) fn gateway_method(&self, out: &mut String) {
        if self.gateway.is_empty() && self.bulk.is_empty() {
            return;
        }
        let bulk = self.bulk.first().map_or("1 GiB".into(), |b| size(b.bytes));
        let _ = writeln!(
            out,
            "- **Gateway** (issue 16): the app behind is `bench/src/bin/upstream.rs` (axum; on core 1, \
             like the provider, as someone else's app), the same small page at any path and large bodies \
             made and counted as they stream. In front of it on core 0, one at a time: **nginx** (Debian; \
             `worker_processes 1`, a keep-alive pool to the upstream, `X-Forwarded-*` set, no access log; \
             no authentication at all: the baseline); **oidc-gate** with `UPSTREAM_URL` (the embedded \
             development provider; signed in programmatically through `/oauth2/start` and the provider's \
             form); **Apache 2 with mod_auth_openidc** (Debian; event MPM, one child of 64 threads; \
             discovery, code flow with PKCE as a confidential client of `bench/src/bin/provider.rs` on \
             core 1, sessions in its shared-memory cache; signed in the same way) passing on with \
             mod_proxy_http. Each is loaded like the protected page (same wrk command on \
             `GET /app/dashboard` with the session cookie, same runs and checks). nginx's and Apache's \
             *server CPU* counts their worker processes. Core 1 holds wrk and the upstream: a proxy that \
             leaves core 0 idle was held back by core 1, so compare *server CPU per request* too. \
             **`/oauth2/auth`** runs with `FORWARD_AUTH=true` and `X-Original-URI: /app/dashboard`, as \
             nginx's `auth_request` asks it, against the ceiling of table 1; wrk counts every answer \
             other than 2xx as an error, and the only 2xx is its `202`. **Bearer JWT**: the same \
             `/oauth2/auth` with `SKIP_JWT_BEARER_TOKENS=true` and no cookie, `Authorization: Bearer` \
             with the development provider's RFC 9068 access token (verified once, then from the cache). \
             **Hand-over**: the same server's `/oauth2/auth` with the session cookie, answering with \
             `X-Auth-Request-Access-Token` (opened from the session, no refresh due), against the \
             forward-auth row. \
             **Large bodies**: a `POST` of \
             {bulk} (`Content-Length`, sent in 256 KiB pieces; the upstream answers how many bytes it \
             read) and a `GET` of {bulk}, straight to the upstream for reference, then through a fresh \
             oidc-gate, signed in; its peak RSS is reset just before each (`5` to `/proc/<pid>/clear_refs`) \
             and the growth is VmHWM just after less VmRSS just before."
        );
    }

    /// What dominated a missed gateway target.
    pub(super) fn gateway_miss(&self, kind: Kind) -> Option<String> {
        let (server, title, base) = match kind {
            Kind::ProxyShare | Kind::ProxyP99 => (Gw::Proxy, PROXY_PROFILE, Gw::Nginx),
            Kind::ForwardAuthShare => (Gw::ForwardAuth, FORWARD_AUTH_PROFILE, Gw::ForwardAuth),
            Kind::BearerShare => (Gw::Bearer, BEARER_PROFILE, Gw::Bearer),
            Kind::HandOverCost => (Gw::HandOver, FORWARD_AUTH_PROFILE, Gw::ForwardAuth),
            Kind::BulkRss(_) => {
                return Some(
                    "the growth is VmHWM after the transfer less VmRSS before it (the peak was reset just \
                     before): the proxy held more of the body than its buffers."
                        .into(),
                );
            }
            _ => return None,
        };
        let page = self.gateway_row(server)?;
        let mut s = format!(
            "oidc-gate used {:.1} µs of CPU per request ({:.0}% of its core)",
            page.cpu.server * 1e6 / page.figures.rps,
            page.cpu.server * 100.0
        );
        let base = match kind {
            Kind::ForwardAuthShare | Kind::BearerShare => {
                self.pages.iter().find(|p| p.ceiling).map(|c| ("the ceiling", c))
            }
            _ => self.gateway_row(base).map(|n| ("nginx", n)),
        };
        if let Some((name, b)) = base {
            let _ = write!(
                s,
                " against {name}'s {:.1} µs ({:.0}% of its core; core 1, with wrk and the upstream, {:.0}% busy)",
                b.cpu.server * 1e6 / b.figures.rps,
                b.cpu.server * 100.0,
                b.cpu.load_core * 100.0
            );
        }
        s.push('.');
        if let Some(d) = self.dominant(title) {
            let _ = write!(s, " See {d}.");
        }
        Some(s)
    }
}

/// The profile title of the reverse proxy row.
pub const PROXY_PROFILE: &str = "oidc-gate's reverse proxy";
/// The profile title of the forward-auth row.
pub const FORWARD_AUTH_PROFILE: &str = "`/oauth2/auth`";
/// The profile title of the bearer-token row.
pub const BEARER_PROFILE: &str = "`/oauth2/auth` with a bearer JWT";

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::CpuUse;
    use crate::wrk::Figures;

    pub(crate) fn page(rps: f64, p99_ms: u64, ceiling: bool) -> Page {
        Page {
            store: "test",
            ceiling,
            figures: Figures {
                rps,
                p50: Duration::from_micros(500),
                p99: Duration::from_millis(p99_ms),
                requests: 1,
                bytes: 1.0,
                errors: 0,
            },
            cpu: CpuUse::default(),
            p99_runs: Vec::new(),
        }
    }

    fn verdict(r: &Report, kind: Kind) -> Verdict {
        r.targets().into_iter().find(|t| t.kind == kind).unwrap().verdict
    }

    #[test]
    fn the_proxy_is_judged_against_nginx_and_forward_auth_against_the_ceiling() {
        let row = |server, rps, p99| GatewayRow {
            server,
            page: page(rps, p99, false),
        };
        let mut r = Report {
            pages: vec![page(100_000.0, 1, true)],
            gateway: vec![
                row(Gw::Nginx, 50_000.0, 1),
                row(Gw::Proxy, 31_000.0, 2),
                row(Gw::ForwardAuth, 59_000.0, 1),
            ],
            ..Report::default()
        };
        // 62% of nginx, although only 31% of the ceiling; 59% of the ceiling.
        assert_eq!(verdict(&r, Kind::ProxyShare), Verdict::Pass);
        assert_eq!(verdict(&r, Kind::ProxyP99), Verdict::Pass);
        assert_eq!(verdict(&r, Kind::ForwardAuthShare), Verdict::Miss);
        r.gateway[1] = row(Gw::Proxy, 29_000.0, 4);
        assert_eq!(verdict(&r, Kind::ProxyShare), Verdict::Miss);
        assert_eq!(verdict(&r, Kind::ProxyP99), Verdict::Miss);
        // Without nginx there is nothing to judge the share against.
        r.gateway.remove(0);
        assert_eq!(verdict(&r, Kind::ProxyShare), Verdict::Skipped);
        assert_eq!(verdict(&r, Kind::ProxyP99), Verdict::Miss);
    }

    #[test]
    fn memory_growth_is_the_peak_after_less_the_resident_before() {
        let bulk = |direction, proxied, peak_kib| Bulk {
            direction,
            proxied,
            bytes: 1 << 30,
            elapsed: Duration::from_secs(2),
            rss_before_kib: 10_000,
            peak_kib,
        };
        let r = Report {
            bulk: vec![
                // The reference straight to the upstream is not judged.
                bulk(Direction::Upload, false, 0),
                bulk(Direction::Upload, true, 10_000 + 10 * 1024),
                bulk(Direction::Download, true, 10_000 + 10 * 1024 + 1),
            ],
            ..Report::default()
        };
        assert_eq!(verdict(&r, Kind::BulkRss("upload")), Verdict::Pass);
        assert_eq!(verdict(&r, Kind::BulkRss("download")), Verdict::Miss);
        assert!(
            r.tables()
                .contains("| upload (`POST`) | through oidc-gate | 1 GiB | 2.00 s | 537 MB/s |")
        );
    }
}
