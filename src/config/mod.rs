//! Configuration: read from the environment (and `.env`), validated once at
//! start-up into precise types.
//!
//! [`Args`] is what the command line and environment say; [`Config`] is what
//! the application runs with. Every rejection names the variable at fault.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use url::Url;

use crate::access::{self, AccessArgs, Rules};
use crate::logs::LogFormat;
use crate::provider::SigningAlg;
use crate::secret::Secret;
use crate::web::TrustedProxies;

mod bearer;
mod gateway;
mod providers;
mod public;
mod ratelimit;
mod redis;
mod store;

pub use bearer::BearerArgs;
pub use gateway::{GatewayArgs, GatewayConfig, SharedSignIn};
pub use providers::NamedClient;
pub use public::is_loopback;
pub use ratelimit::{RateLimitArgs, RateLimitConfig};
pub use redis::RedisTopology;
#[cfg(test)]
pub(crate) use store::sqlite_for_tests;
pub use store::{StoreConfig, StoreUrl};

/// Google's issuer, implied by `GOOGLE_CLIENT_ID` / `GOOGLE_CLIENT_SECRET`.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// Command-line flags and environment variables of the `oidc-gate` binary.
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "oidc-gate", version, about = "OpenID Connect login in front of web pages.")]
pub struct Args {
    /// What to do; none: serve.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Issuer URL of the OpenID provider (e.g. https://accounts.google.com).
    /// Leave unset, with a loopback PUBLIC_URL and LISTEN, to use the embedded development provider.
    #[arg(long, env = "OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// Client id registered at the provider.
    #[arg(long, env = "OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// Client secret registered at the provider.
    #[arg(long, env = "OIDC_CLIENT_SECRET", hide_env_values = true)]
    pub oidc_client_secret: Option<String>,
    /// Scopes to request, separated by spaces.
    #[arg(long, env = "OIDC_SCOPES", default_value = "openid email profile")]
    pub oidc_scopes: String,
    /// Google client id (implies OIDC_ISSUER=https://accounts.google.com).
    #[arg(long, env = "GOOGLE_CLIENT_ID")]
    pub google_client_id: Option<String>,
    /// Google client secret.
    #[arg(long, env = "GOOGLE_CLIENT_SECRET", hide_env_values = true)]
    pub google_client_secret: Option<String>,
    /// Allowed clock difference with the provider for ID token times.
    #[arg(long, env = "OIDC_CLOCK_SKEW", default_value = "60s")]
    pub oidc_clock_skew: String,
    /// Timeout of every request to the provider (connect and total).
    #[arg(long, env = "OIDC_HTTP_TIMEOUT", default_value = "10s")]
    pub oidc_http_timeout: String,
    /// The one algorithm ID and logout tokens must be signed with (RS256, PS256, ES256, EdDSA, …).
    /// Default: RS256 when the provider's discovery lists it or lists none, else the first it lists.
    #[arg(long, env = "OIDC_ID_TOKEN_ALG")]
    pub oidc_id_token_alg: Option<String>,
    /// Audiences an ID token may name besides our client id, when its azp is our client id
    /// (comma-separated).
    #[arg(long, env = "OIDC_TRUSTED_AUDIENCES")]
    pub oidc_trusted_audiences: Option<String>,
    /// Extra parameters of the authorization request, form-encoded
    /// (Google's refresh token: access_type=offline&prompt=consent).
    #[arg(long, env = "OIDC_EXTRA_AUTH_PARAMS")]
    pub oidc_extra_auth_params: Option<String>,
    /// External base URL of this app, the root of its host (no path); the
    /// redirect URI is PUBLIC_URL/callback. Plain http only on loopback hosts
    /// (or with ALLOW_INSECURE_HTTP).
    #[arg(long, env = "PUBLIC_URL", default_value = "http://localhost:5000")]
    pub public_url: String,
    /// Serve a plain http PUBLIC_URL on a non-loopback host anyway: session
    /// cookies then travel in clear and lose Secure and the __Host- prefix.
    #[arg(long, env = "ALLOW_INSECURE_HTTP")]
    pub allow_insecure_http: bool,
    /// Address to listen on.
    #[arg(long, env = "LISTEN", default_value = "127.0.0.1:5000")]
    pub listen: String,
    /// Address of the Prometheus metrics listener (`GET /metrics`), e.g.
    /// 127.0.0.1:9090. Unset: no metrics. Never served on LISTEN.
    #[arg(long, env = "METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Directory for the embedded database (created if missing).
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Where users (and, unless SESSION_STORE_URL is set, sessions) live:
    /// sqlite://PATH or postgres://USER@HOST/DB. Default: SQLite in DATA_DIR.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Where sessions live, if not in DATABASE_URL: redis://, redis-sentinel://, redis-cluster:// (rediss… for TLS),
    /// postgres:// or sqlite://.
    #[arg(long, env = "SESSION_STORE_URL", hide_env_values = true)]
    pub session_store_url: Option<String>,
    /// PostgreSQL schema for oidc-gate's tables (created if missing; default: public, sessions in tower_sessions).
    #[arg(long, env = "DATABASE_SCHEMA")]
    pub database_schema: Option<String>,
    /// Most connections in each store's pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value = "10")]
    pub database_max_connections: String,
    /// Sessions kept in memory in front of the embedded SQLite store (0: none).
    /// Never used for PostgreSQL or Redis, which several instances share.
    #[arg(long, env = "SESSION_CACHE_SIZE", default_value = "2000")]
    pub session_cache_size: String,
    /// Timeout of every store operation, including waiting for a pooled connection.
    #[arg(long, env = "STORE_TIMEOUT", default_value = "3s")]
    pub store_timeout: String,
    /// A session unused for this long ends (e.g. 30m, 12h).
    #[arg(long, env = "SESSION_IDLE_TIMEOUT", default_value = "12h")]
    pub session_idle_timeout: String,
    /// A session ends this long after sign-in, however active (e.g. 7d).
    #[arg(long, env = "SESSION_MAX_AGE", default_value = "7d")]
    pub session_max_age: String,
    /// Refresh the tokens this often on any request that needs them (e.g. 5m),
    /// to notice a user disabled at the provider. Default: off (only when the
    /// access token is about to expire).
    #[arg(long, env = "SESSION_REFRESH_INTERVAL")]
    pub session_refresh_interval: Option<String>,
    /// Key of the tokens kept in sessions (32 bytes,
    /// base64 or hex). Default: derived from the key instances share in the database.
    #[arg(long, env = "TOKEN_ENCRYPTION_KEY", hide_env_values = true)]
    pub token_encryption_key: Option<String>,
    /// Proxies whose X-Forwarded-For, Forwarded and X-Request-Id are believed:
    /// comma-separated CIDRs (e.g. 127.0.0.1/32,10.0.0.0/8). Default: none.
    #[arg(long, env = "TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,
    /// Log format: text (coloured on a terminal) or json (one object a line).
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// On SIGTERM: how long new connections are still served, while /ready answers 503,
    /// so that load balancers stop sending traffic first (0s: stop accepting at once).
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "5s")]
    pub shutdown_grace: String,
    /// After SHUTDOWN_GRACE: how long requests in flight (streams and WebSockets
    /// included) may take to finish before they are cut and the process exits.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "20s")]
    pub shutdown_timeout: String,
    /// Who may sign in (ALLOWED_EMAIL_DOMAINS, ALLOWED_EMAILS, ALLOWED_GROUPS, …).
    #[command(flatten)]
    pub access: AccessArgs,
    /// The gateway (UPSTREAM_URL, FORWARD_AUTH, ROUTE_PREFIX, PUBLIC_PATHS, …).
    #[command(flatten)]
    pub gateway: GatewayArgs,
    /// Rate limits on the sign-in routes (RATE_LIMITS, RATE_LIMIT_LOGIN, …).
    #[command(flatten)]
    pub rate_limits: RateLimitArgs,
    /// Bearer tokens of API clients (SKIP_JWT_BEARER_TOKENS, API_AUDIENCE, …).
    #[command(flatten)]
    pub bearer: BearerArgs,
}

/// What the binary does besides serving (its subcommands).
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Check the configuration, the provider and the store, say what to
    /// register at the provider, and exit (0: all is well). Never listens.
    Check,
    /// List people's sessions, or end them all (offboarding), while the
    /// servers run: with their environment, on their store. Never listens.
    #[command(subcommand)]
    Sessions(SessionsCommand),
}

/// `oidc-gate sessions …`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum SessionsCommand {
    /// List the signed-in sessions: everyone's, or one person's.
    List {
        /// The person: an email address (in any case) or the provider's subject.
        #[arg(long, value_name = "EMAIL|SUBJECT")]
        user: Option<String>,
    },
    /// End every session of a person, on every instance: each is signed out
    /// at its next request.
    End {
        /// The person: an email address (in any case) or the provider's subject.
        #[arg(long, value_name = "EMAIL|SUBJECT")]
        user: String,
    },
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Which provider users sign in with.
    pub provider: ProviderChoice,
    /// External base URL: the root of its host (its path is `/`).
    pub public_url: Url,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Address of the metrics listener; `None`: no metrics.
    pub metrics_listen: Option<SocketAddr>,
    /// Directory for the embedded database.
    pub data_dir: PathBuf,
    /// Session lifetimes.
    pub session: SessionConfig,
    /// Where users and sessions are stored.
    pub store: StoreConfig,
    /// Timeout of every outbound request to the provider.
    pub http_timeout: Duration,
    /// Allowed clock difference for ID token `exp` and `iat`.
    pub clock_skew: Duration,
    /// The algorithm ID and logout tokens must use; `None`: chosen from discovery.
    pub id_token_alg: Option<SigningAlg>,
    /// Audiences an ID token may name besides ours (with `azp` ours).
    pub trusted_audiences: Vec<String>,
    /// `OIDC_EXTRA_AUTH_PARAMS`: extra parameters of every authorization request.
    pub extra_auth_params: Vec<(String, String)>,
    /// Scopes to request.
    pub scopes: Vec<String>,
    /// Who may sign in.
    pub access: Rules,
    /// The gateway, when oidc-gate stands in front of another app.
    pub gateway: Option<GatewayConfig>,
    /// The session cookie's domain and where `rd` may point.
    pub sign_in: SharedSignIn,
    /// `TOKEN_ENCRYPTION_KEY`.
    pub token_key: Option<crate::tokens::TokenKey>,
    /// `TRUSTED_PROXIES`: whose forwarding headers are believed.
    pub trusted_proxies: TrustedProxies,
    /// `LOG_FORMAT`.
    pub log_format: LogFormat,
    /// Rate limits per client address on the sign-in routes.
    pub rate_limits: RateLimitConfig,
    /// How the server drains on SIGTERM.
    pub shutdown: ShutdownConfig,
    /// Bearer tokens of API clients: `None` unless `SKIP_JWT_BEARER_TOKENS`.
    pub bearer: Option<crate::provider::BearerRules>,
    /// `DEV_PROVIDER_ACCESS_TOKENS=opaque`: the development provider's
    /// access tokens are opaque (else JWTs for `API_AUDIENCE`).
    pub dev_opaque_access_tokens: bool,
}

/// How the server drains when asked to stop (see [`crate::drain`]).
#[derive(Debug, Clone, Copy)]
pub struct ShutdownConfig {
    /// `SHUTDOWN_GRACE`: new connections are still served (and `/ready`
    /// answers `503`) for this long.
    pub grace: Duration,
    /// `SHUTDOWN_TIMEOUT`: then requests in flight have this long to finish.
    pub timeout: Duration,
}

/// The provider to use.
#[derive(Debug, Clone)]
pub enum ProviderChoice {
    /// A provider configured by the operator.
    Configured(ClientConfig),
    /// `CONFIG_FILE`'s `[[providers]]`: users choose one at sign-in when
    /// there are several.
    Listed(Vec<NamedClient>),
    /// The embedded development provider (loopback `PUBLIC_URL` and `LISTEN` only).
    Development,
}

/// The id of the provider the `OIDC_*` (or `GOOGLE_*`) variables configure.
pub const ENV_PROVIDER_ID: &str = "default";

/// How this app is registered at a provider.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Issuer URL exactly as configured (compared byte for byte with discovery).
    pub issuer: String,
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: Secret,
}

/// Session lifetimes, both enforced server-side.
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    /// Ends a session unused for this long.
    pub idle_timeout: Duration,
    /// Ends a session this long after sign-in.
    pub max_age: Duration,
    /// Refreshes the tokens at least this often (`SESSION_REFRESH_INTERVAL`).
    pub refresh_interval: Option<Duration>,
}

/// A configuration error: one sentence naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

pub(crate) fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

impl Args {
    /// Reads `.env` (if present), the command line and the environment.
    pub fn load() -> Self {
        let _ = dotenvy::dotenv();
        Self::parse()
    }
}

impl Config {
    /// Reads `.env` (if present), the command line and the environment.
    pub fn load() -> Result<Self, ConfigError> {
        Self::from_args(Args::load())
    }

    /// Validates already-parsed arguments.
    pub fn from_args(args: Args) -> Result<Self, ConfigError> {
        let public_url = public::parse_public_url(&args.public_url, args.allow_insecure_http)?;
        let listen: SocketAddr = args.listen.parse().map_err(|_| {
            err(format!(
                "LISTEN must be an address like 127.0.0.1:5000, got `{}`.",
                args.listen
            ))
        })?;
        let metrics_listen = parse_metrics_listen(args.metrics_listen.as_deref(), listen)?;
        let mut file = args.gateway.config_file.as_ref().map(gateway::read_file).transpose()?;
        let listed = file
            .as_mut()
            .map(|f| std::mem::take(&mut f.providers))
            .unwrap_or_default();
        let mut provider = provider_choice(&args, &public_url, listen, !listed.is_empty())?;
        let session = SessionConfig {
            idle_timeout: parse_duration("SESSION_IDLE_TIMEOUT", &args.session_idle_timeout)?,
            max_age: parse_duration("SESSION_MAX_AGE", &args.session_max_age)?,
            refresh_interval: match args.session_refresh_interval.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(raw) => Some(parse_duration("SESSION_REFRESH_INTERVAL", raw)?),
            },
        };
        let store = store::from_args(&args)?;
        let mut access = Rules::from_args(&args.access, &provider)?;
        if !listed.is_empty() {
            provider = ProviderChoice::Listed(providers::from_file(listed, &access)?);
        }
        let gateway = gateway::from_args(&args.gateway, file, &access)?;
        if let Some(gateway) = &gateway {
            // The app behind is told who the user is, and per-path rules
            // judge them: claims are kept in every session.
            access = access.keeping_claims(gateway.paths.groups());
        }
        let sign_in = gateway::shared_sign_in(&args.gateway, &public_url)?;
        let scopes: Vec<String> = args.oidc_scopes.split_whitespace().map(str::to_owned).collect();
        if !scopes.iter().any(|s| s == "openid") {
            return Err(err("OIDC_SCOPES must include `openid`."));
        }
        Ok(Self {
            provider,
            public_url,
            listen,
            metrics_listen,
            data_dir: args.data_dir,
            session,
            store,
            http_timeout: parse_duration("OIDC_HTTP_TIMEOUT", &args.oidc_http_timeout)?,
            clock_skew: parse_duration_allow_zero("OIDC_CLOCK_SKEW", &args.oidc_clock_skew)?,
            id_token_alg: parse_alg(args.oidc_id_token_alg.as_deref())?,
            trusted_audiences: access::list("OIDC_TRUSTED_AUDIENCES", args.oidc_trusted_audiences.as_deref(), false)?,
            extra_auth_params: parse_extra_auth_params(args.oidc_extra_auth_params.as_deref())?,
            scopes,
            access,
            gateway,
            sign_in,
            token_key: match args.token_encryption_key.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(raw) => Some(crate::tokens::TokenKey(crate::tokens::parse_key(raw)?)),
            },
            trusted_proxies: parse_trusted_proxies(args.trusted_proxies.as_deref())?,
            log_format: LogFormat::parse(&args.log_format)?,
            rate_limits: ratelimit::from_args(&args.rate_limits)?,
            shutdown: ShutdownConfig {
                grace: parse_duration_allow_zero("SHUTDOWN_GRACE", &args.shutdown_grace)?,
                timeout: parse_duration_allow_zero("SHUTDOWN_TIMEOUT", &args.shutdown_timeout)?,
            },
            bearer: bearer::from_args(&args.bearer)?,
            dev_opaque_access_tokens: bearer::dev_opaque(&args.bearer)?,
        })
    }

    /// Where oidc-gate's own routes live: `` (the root) in the app,
    /// `ROUTE_PREFIX` in the gateway.
    pub fn routes_base(&self) -> &str {
        self.gateway.as_ref().map_or("", |g| g.prefix.as_str())
    }

    /// The redirect URI to register at the provider: `PUBLIC_URL/callback`,
    /// or `PUBLIC_URL/oauth2/callback` in the gateway.
    pub fn redirect_uri(&self) -> Url {
        self.public_path(&format!("{}/callback", self.routes_base()))
    }

    /// The redirect URI of provider `id`: [`Config::redirect_uri`] with one
    /// provider, `…/callback/ID` with several (a code always comes back to
    /// the path of the provider that issued it).
    pub fn redirect_uri_for(&self, id: &str) -> Url {
        match self.several_providers() {
            true => self.public_path(&format!("{}/callback/{id}", self.routes_base())),
            false => self.redirect_uri(),
        }
    }

    /// Whether users choose among several providers.
    pub fn several_providers(&self) -> bool {
        matches!(&self.provider, ProviderChoice::Listed(list) if list.len() > 1)
    }

    /// The configured providers, in order: the one of the environment (id
    /// [`ENV_PROVIDER_ID`], named after its host) or the listed ones; none
    /// with the development provider.
    pub fn clients(&self) -> Vec<NamedClient> {
        match &self.provider {
            ProviderChoice::Configured(client) => vec![NamedClient {
                id: ENV_PROVIDER_ID.to_owned(),
                name: Url::parse(&client.issuer)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_owned))
                    .unwrap_or_else(|| client.issuer.clone()),
                client: client.clone(),
                scopes: None,
                rules: None,
            }],
            ProviderChoice::Listed(list) => list.clone(),
            ProviderChoice::Development => Vec::new(),
        }
    }

    /// Where the provider sends the browser after logout (register it as a
    /// post-logout redirect URI): `PUBLIC_URL/`, or `PUBLIC_URL/oauth2/sign_out`
    /// in the gateway (which then follows `rd`).
    pub fn post_logout_url(&self) -> Url {
        match &self.gateway {
            None => self.public_path(""),
            Some(g) => self.public_path(&format!("{}/sign_out", g.prefix)),
        }
    }

    /// The back-channel logout URI to register at the provider:
    /// `PUBLIC_URL/backchannel-logout`, or `PUBLIC_URL/oauth2/backchannel-logout`
    /// in the gateway.
    pub fn backchannel_logout_uri(&self) -> Url {
        self.public_path(&format!("{}/backchannel-logout", self.routes_base()))
    }

    /// The front-channel logout URI to register at the provider (with
    /// `frontchannel_logout_session_required`): `PUBLIC_URL/frontchannel-logout`,
    /// or `PUBLIC_URL/oauth2/frontchannel-logout` in the gateway.
    pub fn frontchannel_logout_uri(&self) -> Url {
        self.public_path(&format!("{}/frontchannel-logout", self.routes_base()))
    }

    /// An absolute URL under `PUBLIC_URL` (the path's leading slash optional).
    pub fn public_path(&self, path: &str) -> Url {
        let path = path.trim_start_matches('/');
        let mut base = self.public_url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        base.join(path).expect("a relative path joins onto an http(s) URL")
    }

    /// Whether the app is served over https (cookies are then `Secure`).
    pub fn is_https(&self) -> bool {
        self.public_url.scheme() == "https"
    }
}

/// `METRICS_LISTEN`: an address other than `LISTEN`'s; empty or unset: off.
fn parse_metrics_listen(raw: Option<&str>, listen: SocketAddr) -> Result<Option<SocketAddr>, ConfigError> {
    let raw = match raw.map(str::trim) {
        None | Some("") => return Ok(None),
        Some(raw) => raw,
    };
    let addr: SocketAddr = raw.parse().map_err(|_| {
        err(format!(
            "METRICS_LISTEN must be an address like 127.0.0.1:9090, got `{raw}`."
        ))
    })?;
    if addr == listen && addr.port() != 0 {
        return Err(err(format!(
            "METRICS_LISTEN must differ from LISTEN ({listen}): metrics are never served on the public listener."
        )));
    }
    Ok(Some(addr))
}

/// The provider of the environment; with `listed` (`CONFIG_FILE` lists
/// providers), an empty list to fill, the environment setting none.
fn provider_choice(
    args: &Args,
    public_url: &Url,
    listen: SocketAddr,
    listed: bool,
) -> Result<ProviderChoice, ConfigError> {
    let google = args.google_client_id.is_some() || args.google_client_secret.is_some();
    let generic = args.oidc_issuer.is_some() || args.oidc_client_id.is_some() || args.oidc_client_secret.is_some();
    if listed {
        if google || generic {
            return Err(err(
                "Set either OIDC_ISSUER/OIDC_CLIENT_ID/OIDC_CLIENT_SECRET (or GOOGLE_*) or CONFIG_FILE's \
                 [[providers]], not both.",
            ));
        }
        return Ok(ProviderChoice::Listed(Vec::new()));
    }
    if google && generic && args.oidc_issuer.as_deref().is_some_and(|i| i != GOOGLE_ISSUER) {
        return Err(err(
            "Set either GOOGLE_CLIENT_ID/GOOGLE_CLIENT_SECRET or OIDC_ISSUER/OIDC_CLIENT_ID/OIDC_CLIENT_SECRET, not both.",
        ));
    }
    let (issuer, id, secret, id_var, secret_var) = if google {
        (
            Some(GOOGLE_ISSUER.to_owned()),
            args.google_client_id.clone().or(args.oidc_client_id.clone()),
            args.google_client_secret.clone().or(args.oidc_client_secret.clone()),
            "GOOGLE_CLIENT_ID",
            "GOOGLE_CLIENT_SECRET",
        )
    } else {
        (
            args.oidc_issuer.clone(),
            args.oidc_client_id.clone(),
            args.oidc_client_secret.clone(),
            "OIDC_CLIENT_ID",
            "OIDC_CLIENT_SECRET",
        )
    };
    let Some(issuer) = issuer else {
        if generic {
            return Err(err(
                "OIDC_ISSUER is required when OIDC_CLIENT_ID or OIDC_CLIENT_SECRET is set.",
            ));
        }
        public::allow_development_provider(public_url, listen)?;
        return Ok(ProviderChoice::Development);
    };
    let issuer = providers::check_issuer("OIDC_ISSUER", &issuer)?;
    let client_id = id
        .filter(|v| !v.is_empty())
        .ok_or_else(|| err(format!("{id_var} is required.")))?;
    let client_secret = secret
        .filter(|v| !v.is_empty())
        .ok_or_else(|| err(format!("{secret_var} is required.")))?;
    Ok(ProviderChoice::Configured(ClientConfig {
        issuer,
        client_id,
        client_secret: Secret::new(client_secret),
    }))
}

/// A yes/no setting: true/false, 1/0, yes/no, on/off.
pub(crate) fn boolean(var: &str, raw: &str) -> Result<bool, ConfigError> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(err(format!("{var} must be true or false, got `{raw}`."))),
    }
}

fn parse_trusted_proxies(raw: Option<&str>) -> Result<TrustedProxies, ConfigError> {
    TrustedProxies::parse(raw.unwrap_or_default()).map_err(|entry| {
        err(format!(
            "TRUSTED_PROXIES must be comma-separated networks like 127.0.0.1/32,10.0.0.0/8, got `{entry}`."
        ))
    })
}

fn parse_alg(raw: Option<&str>) -> Result<Option<SigningAlg>, ConfigError> {
    match raw.map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(name) => name
            .parse()
            .map(Some)
            .map_err(|e| err(format!("OIDC_ID_TOKEN_ALG must be {e}."))),
    }
}

/// Parameters the authorization request sets itself (`prompt` may be
/// given: it is the default prompt).
const OWN_AUTH_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
];

/// `OIDC_EXTRA_AUTH_PARAMS`: `name=value&name=value`, form-encoded.
fn parse_extra_auth_params(raw: Option<&str>) -> Result<Vec<(String, String)>, ConfigError> {
    let raw = raw.map(str::trim).unwrap_or_default();
    let params: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    for (name, _) in &params {
        if name.is_empty() || OWN_AUTH_PARAMS.contains(&name.as_str()) {
            return Err(err(format!(
                "OIDC_EXTRA_AUTH_PARAMS cannot set `{name}`: oidc-gate sets it itself \
                 (use OIDC_SCOPES for scopes)."
            )));
        }
    }
    Ok(params)
}

pub(crate) fn parse_duration(var: &str, raw: &str) -> Result<Duration, ConfigError> {
    let d = parse_duration_allow_zero(var, raw)?;
    if d.is_zero() {
        return Err(err(format!("{var} must be longer than zero.")));
    }
    Ok(d)
}

pub(crate) fn parse_duration_allow_zero(var: &str, raw: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(raw.trim()).map_err(|_| {
        err(format!(
            "{var} must be a duration like 90s, 30m, 12h or 7d, got `{raw}`."
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> Args {
        Args::try_parse_from(["oidc-gate"]).unwrap()
    }

    #[test]
    fn defaults_select_the_development_provider() {
        let c = Config::from_args(args()).unwrap();
        assert!(matches!(c.provider, ProviderChoice::Development));
        assert_eq!(c.redirect_uri().as_str(), "http://localhost:5000/callback");
        assert_eq!(c.session.idle_timeout, Duration::from_secs(12 * 3600));
        assert_eq!(c.session.max_age, Duration::from_secs(7 * 86400));
        assert_eq!(
            (c.shutdown.grace, c.shutdown.timeout),
            (Duration::from_secs(5), Duration::from_secs(20))
        );
    }

    #[test]
    fn metrics_listen_is_off_by_default_and_never_the_public_address() {
        assert_eq!(Config::from_args(args()).unwrap().metrics_listen, None);
        let with = |raw: &str| {
            Config::from_args(Args {
                metrics_listen: Some(raw.into()),
                ..args()
            })
        };
        assert_eq!(with("").unwrap().metrics_listen, None);
        assert_eq!(
            with("127.0.0.1:9090").unwrap().metrics_listen,
            Some("127.0.0.1:9090".parse().unwrap())
        );
        for bad in ["9090", "localhost:9090", "127.0.0.1:5000"] {
            let e = with(bad).unwrap_err().to_string();
            assert!(e.starts_with("METRICS_LISTEN must"), "{bad}: {e}");
        }
    }

    #[test]
    fn refresh_interval_is_off_by_default_and_a_duration() {
        assert_eq!(Config::from_args(args()).unwrap().session.refresh_interval, None);
        let with = |raw: &str| {
            Config::from_args(Args {
                session_refresh_interval: Some(raw.into()),
                ..args()
            })
        };
        assert_eq!(
            with("5m").unwrap().session.refresh_interval,
            Some(Duration::from_secs(300))
        );
        assert_eq!(with(" ").unwrap().session.refresh_interval, None);
        for bad in ["0s", "often"] {
            let e = with(bad).unwrap_err().to_string();
            assert!(e.starts_with("SESSION_REFRESH_INTERVAL must"), "{bad}: {e}");
        }
    }

    #[test]
    fn extra_auth_params_are_parsed_and_cannot_replace_ours() {
        let with = |raw: &str| {
            Config::from_args(Args {
                oidc_extra_auth_params: Some(raw.into()),
                ..args()
            })
        };
        assert_eq!(
            with("access_type=offline&prompt=consent").unwrap().extra_auth_params,
            vec![
                ("access_type".to_owned(), "offline".to_owned()),
                ("prompt".to_owned(), "consent".to_owned())
            ]
        );
        assert!(with("").unwrap().extra_auth_params.is_empty());
        for bad in [
            "state=x",
            "a=1&redirect_uri=https://evil.example",
            "scope=offline_access",
            "=x",
        ] {
            let e = with(bad).unwrap_err().to_string();
            assert!(e.starts_with("OIDC_EXTRA_AUTH_PARAMS cannot set"), "{bad}: {e}");
        }
    }

    #[test]
    fn non_loopback_without_provider_is_refused() {
        let e = Config::from_args(Args {
            public_url: "https://app.example.com".into(),
            ..args()
        })
        .unwrap_err();
        assert!(e.to_string().contains("OIDC_ISSUER"), "{e}");
    }

    #[test]
    fn http_issuer_only_on_loopback() {
        let base = Args {
            oidc_client_id: Some("c".into()),
            oidc_client_secret: Some("s".into()),
            ..args()
        };
        let e = Config::from_args(Args {
            oidc_issuer: Some("http://idp.example.com".into()),
            ..base.clone()
        })
        .unwrap_err();
        assert!(e.to_string().contains("OIDC_ISSUER must use https"), "{e}");
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:9",
            "https://idp.example.com/realms/x",
        ] {
            Config::from_args(Args {
                oidc_issuer: Some(ok.into()),
                ..base.clone()
            })
            .unwrap();
        }
    }

    #[test]
    fn google_variables_imply_the_google_issuer() {
        let c = Config::from_args(Args {
            google_client_id: Some("g".into()),
            google_client_secret: Some("s".into()),
            ..args()
        })
        .unwrap();
        let ProviderChoice::Configured(client) = c.provider else {
            panic!("expected a configured provider")
        };
        assert_eq!(client.issuer, "https://accounts.google.com");
        assert_eq!(client.client_id, "g");
        let e = Config::from_args(Args {
            google_client_id: Some("g".into()),
            ..args()
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "GOOGLE_CLIENT_SECRET is required.");
    }

    #[test]
    fn token_checks_default_to_the_provider_and_no_other_audience() {
        let c = Config::from_args(args()).unwrap();
        assert_eq!((c.id_token_alg, c.trusted_audiences.len()), (None, 0));
        let c = Config::from_args(Args {
            oidc_id_token_alg: Some(" PS256 ".into()),
            oidc_trusted_audiences: Some("web-app, android-app,".into()),
            ..args()
        })
        .unwrap();
        assert_eq!(c.id_token_alg.map(SigningAlg::name), Some("PS256"));
        assert_eq!(c.trusted_audiences, ["web-app", "android-app"]);
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases: [(&str, Args); 7] = [
            (
                "LISTEN",
                Args {
                    listen: "nope".into(),
                    ..args()
                },
            ),
            (
                "PUBLIC_URL",
                Args {
                    public_url: "ftp://x".into(),
                    ..args()
                },
            ),
            (
                "SESSION_IDLE_TIMEOUT",
                Args {
                    session_idle_timeout: "soon".into(),
                    ..args()
                },
            ),
            (
                "OIDC_SCOPES",
                Args {
                    oidc_scopes: "email".into(),
                    ..args()
                },
            ),
            (
                "SHUTDOWN_GRACE",
                Args {
                    shutdown_grace: "a while".into(),
                    ..args()
                },
            ),
            (
                "SHUTDOWN_TIMEOUT",
                Args {
                    shutdown_timeout: "-1s".into(),
                    ..args()
                },
            ),
            (
                "OIDC_ID_TOKEN_ALG must be one of RS256,",
                Args {
                    oidc_id_token_alg: Some("HS256".into()),
                    ..args()
                },
            ),
        ];
        for (var, a) in cases {
            let e = Config::from_args(a).unwrap_err();
            assert!(e.to_string().contains(var), "{var}: {e}");
        }
    }
}
