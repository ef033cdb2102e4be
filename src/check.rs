//! `oidc-gate check`: the configuration loaded and validated as the server
//! would, the provider's discovery and keys fetched with the server's HTTP
//! client and timeouts, the store opened and asked, and in words what to
//! register at the provider and who may see what. It never listens.
//!
//! The result is a [`Report`]: what was found, line by line, and every
//! problem on a line of its own, naming the variable or quoting the
//! provider's error.

use std::fmt::Write as _;
use std::time::Duration;

use crate::app::{DEV_PROVIDER_PATH, provider};
use crate::clock::Clock;
use crate::config::{Args, Config, GOOGLE_ISSUER, NamedClient, ProviderChoice};
use crate::provider::Reason;
use crate::store::{Store, StoreError};

/// How long opening the store may take on top of `STORE_TIMEOUT` (a
/// PostgreSQL start-up applies migrations).
const STORE_OPEN_SLACK: Duration = Duration::from_secs(10);

/// What `oidc-gate check` found.
#[derive(Debug, Default)]
pub struct Report {
    /// What was checked and found, for the operator.
    pub text: String,
    /// Each problem in one sentence; none: all is well.
    pub problems: Vec<String>,
    /// The configuration itself is invalid (nothing else was checked).
    pub invalid_configuration: bool,
}

impl Report {
    fn line(&mut self, label: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.text, "{label:<28} {value}");
    }

    fn heading(&mut self, title: &str) {
        let _ = writeln!(self.text, "\n{title}");
    }

    fn problem(&mut self, problem: String) {
        self.problems.push(problem);
    }

    /// Whether everything checked is fine.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks what `args` configure. Makes requests to the provider and the
/// store; binds no port.
pub async fn run(args: Args) -> Report {
    let mut report = Report::default();
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(e) => {
            report.invalid_configuration = true;
            report.problem(e.to_string());
            return report;
        }
    };
    report.line("configuration", "valid");
    report.line("mode", mode(&config));
    check_provider(&config, &mut report).await;
    register(&config, &mut report);
    check_store(&config, &mut report).await;
    access(&config, &mut report);
    report
}

fn mode(config: &Config) -> String {
    match &config.gateway {
        None => "app (its own pages at PUBLIC_URL)".to_owned(),
        Some(g) => match &g.upstream {
            Some(upstream) => format!("gateway, reverse proxy to {upstream} (routes under {})", g.prefix),
            None => format!("gateway, forward auth at {}/auth", g.prefix),
        },
    }
}

async fn check_provider(config: &Config, report: &mut Report) {
    let clients = config.clients();
    if clients.is_empty() {
        report.heading("provider");
        report.line(
            "issuer",
            format!(
                "none configured (OIDC_ISSUER unset): the development provider would be served at {}, \
                 where anyone signs in as anyone; nothing to fetch",
                config.public_path(&format!("{}{DEV_PROVIDER_PATH}", config.routes_base()))
            ),
        );
        return;
    }
    for named in &clients {
        match &config.provider {
            ProviderChoice::Listed(_) => report.heading(&format!("provider {} ({})", named.id, named.name)),
            _ => report.heading("provider"),
        }
        check_one(config, named, report).await;
    }
}

/// One provider's discovery, keys and endpoints.
async fn check_one(config: &Config, named: &NamedClient, report: &mut Report) {
    let client = &named.client;
    report.line("issuer", &client.issuer);
    report.line("client id", &client.client_id);
    let issuer = client.issuer.clone();
    let provider = provider(config, named, Clock::system());
    let snapshot = match provider.refresh().await {
        Ok(snapshot) => snapshot,
        Err(e) => {
            let hint = match e.reason {
                Reason::DiscoveryFailed => " Is OIDC_ISSUER the provider's issuer URL, and reachable from here?",
                _ => "",
            };
            report.problem(format!("OIDC_ISSUER {issuer}: {} ({}).{hint}", e.detail, e.reason));
            return;
        }
    };
    let metadata = &snapshot.metadata;
    report.line("discovery", "fetched, issuer matches");
    let listed = metadata
        .id_token_signing_alg_values_supported
        .as_deref()
        .map_or_else(|| "none listed".to_owned(), |algs| algs.join(", "));
    report.line(
        "ID token algorithm",
        format!("{} (the provider lists: {listed})", snapshot.id_token_alg),
    );
    let (published, usable) = snapshot.keys();
    report.line(
        "keys (JWKS)",
        format!("{published} published, {usable} can verify {}", snapshot.id_token_alg),
    );
    if usable == 0 {
        report.problem(format!(
            "the provider's JWKS ({}) has no key that can verify {} tokens: set OIDC_ID_TOKEN_ALG to the \
             algorithm the client is registered with",
            metadata.jwks_uri, snapshot.id_token_alg
        ));
    }
    report.line(
        "RP-initiated logout",
        metadata.end_session_endpoint.as_ref().map_or_else(
            || "none (Log out ends the session here only)".to_owned(),
            |url| url.to_string(),
        ),
    );
    report.line(
        "token revocation",
        metadata
            .revocation_endpoint
            .as_ref()
            .map_or_else(|| "none (logout revokes no token)".to_owned(), |url| url.to_string()),
    );
    if let Some(bearer) = &config.bearer {
        let typ = if bearer.allow_jwt_typ {
            "at+jwt or JWT"
        } else {
            "at+jwt"
        };
        let opaque = metadata.introspection_endpoint.as_ref().map_or_else(
            || "refused (the provider has no introspection_endpoint)".to_owned(),
            |url| format!("introspected at {url}"),
        );
        report.line(
            "bearer tokens",
            format!("aud {}; JWTs with typ {typ}; opaque tokens {opaque}", bearer.audience),
        );
    }
}

fn register(config: &Config, report: &mut Report) {
    report.heading("register at the provider");
    if matches!(config.provider, ProviderChoice::Development) {
        report.line("", "nothing: the development provider knows these already");
    }
    match &config.provider {
        ProviderChoice::Listed(list) => {
            for named in list {
                report.line(
                    &format!("redirect URI ({})", named.id),
                    config.redirect_uri_for(&named.id),
                );
            }
        }
        _ => report.line("redirect URI", config.redirect_uri()),
    }
    report.line("post-logout redirect URI", config.post_logout_url());
    report.line("back-channel logout URI", config.backchannel_logout_uri());
    report.line("front-channel logout URI", config.frontchannel_logout_uri());
}

async fn check_store(config: &Config, report: &mut Report) {
    report.heading("store");
    let stores = &config.store;
    report.line("users (DATABASE_URL)", stores.database.redacted());
    report.line(
        "sessions (SESSION_STORE_URL)",
        stores
            .sessions
            .as_ref()
            .map_or_else(|| "with the users".to_owned(), |s| s.redacted()),
    );
    let opened = tokio::time::timeout(stores.timeout + STORE_OPEN_SLACK, Store::open(stores)).await;
    let answer = match opened {
        Err(_) => Err(format!(
            "the store did not open within {} (DATABASE_URL, SESSION_STORE_URL)",
            humantime::format_duration(stores.timeout + STORE_OPEN_SLACK)
        )),
        // A running oidc-gate holds it: it answers that one.
        Ok(Err(StoreError::InUse { database })) => {
            report.line(
                "answers",
                format!("in use by a running oidc-gate ({database}); not opened"),
            );
            return;
        }
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(store)) => {
            let pinged = store.ping().await;
            store.release_lock();
            pinged.map_err(|e| format!("the store opened but does not answer (DATABASE_URL, SESSION_STORE_URL): {e}"))
        }
    };
    match answer {
        Ok(()) => report.line("answers", "yes"),
        Err(e) => {
            report.line("answers", "no");
            report.problem(e);
        }
    }
}

fn access(config: &Config, report: &mut Report) {
    report.heading("who may sign in");
    let rules = config.access.describe();
    let own: Vec<(&str, Vec<String>)> = match &config.provider {
        ProviderChoice::Listed(list) => list
            .iter()
            .filter_map(|n| n.rules.as_ref().map(|r| (n.id.as_str(), r.describe())))
            .collect(),
        _ => Vec::new(),
    };
    let open = match &config.provider {
        ProviderChoice::Listed(list) => list.iter().any(|n| n.rules.is_none()),
        _ => true,
    };
    if rules.is_empty() && open {
        let who = match &config.provider {
            ProviderChoice::Configured(c) if c.issuer.trim_end_matches('/') == GOOGLE_ISSUER => {
                "any Google account in the world".to_owned()
            }
            ProviderChoice::Configured(c) => format!("any account at {}", c.issuer),
            ProviderChoice::Listed(list) => format!(
                "any account at {}",
                list.iter()
                    .filter(|n| n.rules.is_none())
                    .map(|n| n.client.issuer.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ProviderChoice::Development => "anyone (development provider)".to_owned(),
        };
        report.line("rule", format!("none: {who} can sign in"));
    }
    for rule in rules {
        report.line("rule", rule);
    }
    // A provider's own rules, in the words of the global settings they mirror.
    for (id, rules) in own {
        for rule in rules {
            report.line(&format!("rule ({id})"), rule);
        }
    }
    let Some(gateway) = &config.gateway else { return };
    let paths = &gateway.paths;
    let public: Vec<String> = paths.public().iter().map(ToString::to_string).collect();
    report.line(
        "public paths",
        if public.is_empty() {
            "none: every path needs sign-in".to_owned()
        } else {
            public.join(", ")
        },
    );
    for rule in paths.rules() {
        report.line(&format!("path {}", rule.prefix), rule.rules.describe().join("; "));
    }
}
