//! Wiring: builds the application from a [`Config`] and serves it on a
//! listener until a shutdown future resolves.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{ClientConfig, Config, ENV_PROVIDER_ID, NamedClient, ProviderChoice};
use crate::devprovider::{AccessTokens, DevClient, DevProvider};
use crate::drain::Drain;
use crate::gateway::Gateway;
use crate::metrics::{RequestCounter, RouteGroup};
use crate::provider::{Listed, Provider, ProviderError, ProviderSettings, Providers, Reason};
use crate::ratelimit::RateLimits;
use crate::refresh::{RefreshSettings, Refresher};
use crate::secret::{Secret, random_token};
use crate::session::{CookieSettings, Lifetimes};
use crate::store::{Store, StoreError};
use crate::tokens::TokenVault;
use crate::web::{self, AppState, AppStateInner, Links, PendingLogins, Redirects};

/// Where the development provider is mounted (under the gateway's
/// `ROUTE_PREFIX` in the gateway).
pub const DEV_PROVIDER_PATH: &str = "/dev-provider";
/// How often expired sessions are deleted.
const CLEANUP_PERIOD: Duration = Duration::from_secs(300);

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The provider's configuration is wrong (e.g. its issuer differs).
    #[error("provider configuration error: {0}")]
    Provider(#[from] ProviderError),
    /// Serving failed.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
    /// The metrics listener could not start.
    #[error("metrics (METRICS_LISTEN): {0}")]
    Metrics(String),
}

/// A built application, ready to serve.
///
/// Embedding oidc-gate in your own axum app: add your routes with
/// [`App::merge`] (they get the same sessions and login; protect them with
/// [`web::RequireLoginLayer`] and read the user with [`crate::users::AuthSession`]),
/// then [`App::serve`] or take [`App::router`].
pub struct App {
    state: AppState,
    cookie: CookieSettings,
    extra: Router<AppState>,
    dev: Option<DevProvider>,
    /// Where the development provider is mounted.
    dev_path: String,
    gateway: Option<Gateway>,
    /// Prometheus metrics, when `METRICS_LISTEN` is set.
    metrics: Option<Metrics>,
}

/// The metrics of an app: where they are served, and what counts requests.
struct Metrics {
    /// `METRICS_LISTEN`, bound when the server starts.
    addr: SocketAddr,
    /// A listener bound by the caller (tests: port 0), used instead of `addr`.
    listener: Option<TcpListener>,
    /// The process's recorder, or why it could not be installed.
    handle: Result<metrics_exporter_prometheus::PrometheusHandle, String>,
    requests: RequestCounter,
}

impl Metrics {
    /// Installs the recorder (once per process) for an app whose own routes
    /// are under `base`, its fallback counted as `fallback`.
    fn new(addr: SocketAddr, base: &str, fallback: RouteGroup) -> Self {
        Self {
            addr,
            listener: None,
            handle: crate::metrics::install(),
            requests: RequestCounter::new(base, fallback),
        }
    }
}

impl App {
    /// Opens the store and builds the routes. Makes no network request.
    pub async fn build(config: &Config, clock: Clock) -> Result<Self, StartupError> {
        let store = Store::open(&config.store).await?;
        Ok(Self::with_store(config, clock, store))
    }

    /// Builds the routes over an already opened store.
    pub fn with_store(config: &Config, clock: Clock, store: Store) -> Self {
        let dev_path = format!("{}{DEV_PROVIDER_PATH}", config.routes_base());
        let (clients, dev) = match &config.provider {
            ProviderChoice::Configured(_) | ProviderChoice::Listed(_) => (config.clients(), None),
            ProviderChoice::Development => {
                let issuer = config.public_path(&dev_path);
                let client = ClientConfig {
                    issuer: issuer.as_str().to_owned(),
                    client_id: "oidc-gate-dev".to_owned(),
                    client_secret: Secret::new(random_token(32)),
                };
                let dev = DevProvider::new(
                    issuer,
                    DevClient {
                        client_id: client.client_id.clone(),
                        client_secret: client.client_secret.expose().to_owned(),
                        redirect_uris: vec![config.redirect_uri().to_string()],
                        post_logout_redirect_uris: vec![config.post_logout_url().to_string()],
                    },
                )
                // Access tokens for the API that bearer tokens are checked for.
                .with_access_tokens(AccessTokens {
                    audience: config.bearer.as_ref().map(|b| b.audience.clone()),
                    opaque: config.dev_opaque_access_tokens,
                });
                let named = NamedClient {
                    id: ENV_PROVIDER_ID.to_owned(),
                    name: "Development provider".to_owned(),
                    client,
                    scopes: None,
                    rules: None,
                };
                (vec![named], Some(dev))
            }
        };
        let providers = Providers::new(
            clients
                .into_iter()
                .map(|named| Listed {
                    provider: provider(config, &named, clock.clone()),
                    id: named.id,
                    name: named.name,
                    rules: named.rules,
                })
                .collect(),
        );
        let cookie = CookieSettings::new(config.is_https(), config.sign_in.cookie_domain.clone());
        let links = match &config.gateway {
            Some(g) => Links::gateway(&g.prefix),
            None => Links::app(),
        };
        let drain = Drain::new(config.shutdown);
        // Every session keeps its login's tokens: refresh, handlers, the
        // app behind the gateway and revocation at logout use them.
        let vault = || TokenVault::configured(config.token_key.as_ref(), store.login_cookie_key());
        let lifetimes = Lifetimes::new(config.session);
        let refresher = Refresher::new(
            providers.clone(),
            store.clone(),
            clock.clone(),
            RefreshSettings {
                access: config.access.clone(),
                vault: vault(),
                lifetimes,
                interval: config.session.refresh_interval,
                http_timeout: config.http_timeout,
                store_timeout: config.store.timeout,
            },
        );
        let tokens = Some(vault());
        let limits = RateLimits::new(|class| config.rate_limits.rate(class), &clock);
        let state = AppState::new(AppStateInner {
            providers,
            pending: PendingLogins::new(store.login_cookie_key(), &cookie),
            store,
            clock,
            lifetimes,
            public_url: config.public_url.clone(),
            access: config.access.clone(),
            links,
            redirects: Redirects::new(config.public_url.clone(), config.sign_in.redirect_domains.clone()),
            post_logout_url: config.post_logout_url(),
            tokens,
            refresher,
            trusted_proxies: config.trusted_proxies.clone(),
            limits,
            drain: drain.clone(),
            bearer: config.bearer.clone().map(web::BearerAuth::new),
            paths: config.gateway.as_ref().map(|g| g.paths.clone()).unwrap_or_default(),
        });
        let gateway = config
            .gateway
            .as_ref()
            .map(|g| Gateway::new(g, &config.public_url, config.http_timeout, cookie.name, drain.tunnels()));
        let fallback = match config.gateway.as_ref().and_then(|g| g.upstream.as_ref()) {
            Some(_) => RouteGroup::Upstream,
            None => RouteGroup::NotFound,
        };
        let metrics = config
            .metrics_listen
            .map(|addr| Metrics::new(addr, config.routes_base(), fallback));
        Self {
            state,
            cookie,
            extra: Router::new(),
            dev,
            dev_path,
            gateway,
            metrics,
        }
    }

    /// Serves the metrics on `listener` rather than binding `METRICS_LISTEN`
    /// (which must be set: it turns metrics on).
    pub fn with_metrics_listener(mut self, listener: TcpListener) -> Self {
        if let Some(metrics) = &mut self.metrics {
            metrics.listener = Some(listener);
        }
        self
    }

    /// Adds your own routes. They run behind the same session and login
    /// layers as oidc-gate's pages; protect them with
    /// `.route_layer(oidc_gate::web::RequireLoginLayer)`.
    pub fn merge(mut self, routes: Router<AppState>) -> Self {
        self.extra = self.extra.merge(routes);
        self
    }

    /// The complete router: oidc-gate's pages, your routes, the layers, and
    /// the development provider when it is in use.
    pub fn router(&self) -> Router {
        // Anyone who reaches the development provider signs in as anyone:
        // with it, only requests for this server's own host name are served
        // (DNS rebinding would otherwise bring other sites' pages in).
        let hosts = self
            .dev
            .as_ref()
            .map(|_| web::LoopbackHostsLayer::new(&self.state.public_url));
        let routes = match &self.gateway {
            Some(gateway) => gateway.routes(&self.state),
            None => web::app_routes(),
        };
        let router = web::router(
            self.state.clone(),
            &self.cookie,
            routes.merge(self.extra.clone()),
            hosts.clone(),
            self.metrics.as_ref().map(|m| m.requests.clone()),
        );
        match (&self.dev, hosts) {
            (Some(dev), Some(hosts)) => {
                // The refusals of `hosts` are error pages: rendered here too.
                let links = self.state.links.clone();
                let dev = tower::ServiceBuilder::new()
                    .map_response(move |r| web::render_error_pages(&links, r))
                    .layer(hosts)
                    .service(dev.router());
                router.nest_service(&self.dev_path, dev)
            }
            _ => router,
        }
    }

    /// The shared state (store, provider, clock).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The embedded development provider, when it runs (no provider configured).
    pub fn dev_provider(&self) -> Option<&DevProvider> {
        self.dev.as_ref()
    }

    /// Serves on `listener` until `shutdown` resolves, then drains (see
    /// [`crate::drain`]): `/ready` answers `503` and new connections are
    /// served for `SHUTDOWN_GRACE`, then requests in flight have
    /// `SHUTDOWN_TIMEOUT` to finish. Fetches the provider's discovery once
    /// the server is up (the development provider is served by this same
    /// server): a wrong issuer stops start-up with an error, an unreachable
    /// provider is retried in the background. Once stopped, the embedded
    /// database is free for another process (or a restart).
    ///
    /// Requests cut at `SHUTDOWN_TIMEOUT` are closed by the runtime's end
    /// (the binary exits); an embedding program that goes on running keeps
    /// serving them until they end.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let store = self.state.store.clone();
        let result = self.run(listener, shutdown).await;
        store.release_lock();
        result
    }

    async fn run(
        mut self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let addr = listener.local_addr()?;
        // Bound before the public listener serves: a busy or bad address stops start-up.
        let metrics = match self.metrics.as_mut() {
            Some(metrics) => Some(metrics_listener(metrics).await?),
            None => None,
        };
        // Open: no global rule, and a provider without rules of its own.
        if self.dev.is_none() && self.state.access.is_open() && self.state.providers.iter().any(|p| p.rules.is_none()) {
            open_door_warning(&self.state);
        }
        // One service for every connection (a bare `Router` is rebuilt per
        // connection), with the peer address for `X-Forwarded-For`.
        let service = self
            .router()
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        let drain = self.state.drain.clone();
        // No Nagle delay: an answer written in two pieces (a streamed body,
        // the gateway's proxied pages) goes out at once, not after the
        // client's delayed ACK.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server =
            axum::serve(listener, service).with_graceful_shutdown(drain.clone().stop_accepting_after(shutdown));
        // Logged before the first request can be answered (the listener is
        // bound: connections wait), so whoever sees an answer sees these too.
        if self.dev.is_some() {
            banner(&self.state);
        }
        tracing::info!(%addr, public_url = %self.state.public_url, issuer = self.state.providers.first().provider.issuer(), "listening");
        let mut server = tokio::spawn(async move { server.await });

        let mut background = Vec::new();
        for listed in self.state.providers.iter() {
            let provider = listed.provider.clone();
            match provider.refresh().await {
                Ok(_) => tracing::info!(provider = listed.id, issuer = provider.issuer(), "provider discovered"),
                Err(e) if e.reason == Reason::IssuerMismatch => {
                    server.abort();
                    abort_all(&background);
                    return Err(e.into());
                }
                Err(e) => {
                    tracing::warn!(provider = listed.id, reason = %e.reason, error = %e.detail, "provider not reachable yet; retrying in the background")
                }
            }
            background.push(tokio::spawn(provider.refresh_forever()));
        }
        background.extend([
            tokio::spawn(
                self.state
                    .store
                    .clone()
                    .clean_up_forever(CLEANUP_PERIOD, self.state.clock.clone()),
            ),
            tokio::spawn(self.state.limits.clone().clean_forever()),
        ]);
        if let Some((listener, handle)) = metrics {
            let metrics_addr = listener.local_addr()?;
            tracing::info!(%metrics_addr, "serving metrics at /metrics");
            background.push(tokio::spawn(crate::metrics::upkeep_forever(handle.clone())));
            background.push(tokio::spawn(async move {
                if let Err(e) = crate::metrics::serve(listener, handle).await {
                    tracing::error!(error = %e, "the metrics listener failed");
                }
            }));
        }
        let result = drain.finish(&mut server).await;
        abort_all(&background);
        // `None`: cut at SHUTDOWN_TIMEOUT, a stop as asked for.
        if let Some(result) = result {
            result.map_err(|e| std::io::Error::other(e.to_string()))??;
        }
        Ok(())
    }
}

/// The provider handle of `config` registered as `named`: its HTTP client
/// and timeouts are the server's (`oidc-gate check` uses it too).
pub(crate) fn provider(config: &Config, named: &NamedClient, clock: Clock) -> Provider {
    // A provider's own rules may read groups the global ones do not.
    let mut wanted_claims = config.access.wanted_claims();
    for claim in named.rules.iter().flat_map(|r| r.wanted_claims()) {
        if !wanted_claims.contains(&claim) {
            wanted_claims.push(claim);
        }
    }
    let rules = named.rules.as_ref().unwrap_or(&config.access);
    Provider::new(
        ProviderSettings {
            client: named.client.clone(),
            redirect_uri: config.redirect_uri_for(&named.id),
            scopes: named.scopes.clone().unwrap_or_else(|| config.scopes.clone()),
            http_timeout: config.http_timeout,
            clock_skew: config.clock_skew,
            wanted_claims,
            authorization_params: rules
                .authorization_params()
                .into_iter()
                .chain(config.extra_auth_params.iter().cloned())
                .collect(),
            id_token_alg: config.id_token_alg,
            trusted_audiences: config.trusted_audiences.clone(),
        },
        clock,
    )
}

/// The metrics listener (the caller's, or `METRICS_LISTEN` bound now) and
/// the recorder's handle.
async fn metrics_listener(
    metrics: &mut Metrics,
) -> Result<(TcpListener, metrics_exporter_prometheus::PrometheusHandle), StartupError> {
    let handle = metrics.handle.clone().map_err(StartupError::Metrics)?;
    let listener = match metrics.listener.take() {
        Some(listener) => listener,
        None => TcpListener::bind(metrics.addr)
            .await
            .map_err(|e| StartupError::Metrics(format!("cannot listen on {}: {e}", metrics.addr)))?,
    };
    Ok((listener, handle))
}

fn abort_all(tasks: &[JoinHandle<()>]) {
    for t in tasks {
        t.abort();
    }
}

fn banner(state: &AppState) {
    let line = "=".repeat(72);
    tracing::warn!(
        "\n{line}\n  DEVELOPMENT PROVIDER ACTIVE: no OIDC_ISSUER configured.\n  \
         Anyone can sign in as anyone at {}{DEV_PROVIDER_PATH}.\n  \
         For real use set OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET.\n  \
         Open {} to try it.\n{line}",
        state.public_url.as_str().trim_end_matches('/'),
        state.public_url
    );
}

/// A real provider and no access rule: say so once, loudly (the
/// development provider has its own banner).
fn open_door_warning(state: &AppState) {
    // Each provider without rules of its own lets its accounts in.
    let who: Vec<String> = state
        .providers
        .iter()
        .filter(|p| p.rules.is_none())
        .map(|p| match p.provider.issuer() {
            issuer if issuer.trim_end_matches('/') == crate::config::GOOGLE_ISSUER => {
                "any Google account in the world".to_owned()
            }
            issuer => format!("any account at {issuer}"),
        })
        .collect();
    let who = who.join(" and ");
    tracing::warn!(
        "no access rule is set: {who} can sign in. Set ALLOWED_EMAIL_DOMAINS, ALLOWED_EMAILS or ALLOWED_GROUPS \
         to choose who may (see \"Who may sign in\" in the README)."
    );
}
