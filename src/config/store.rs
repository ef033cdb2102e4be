//! Store configuration: `DATABASE_URL`, `SESSION_STORE_URL` and their pool
//! settings, validated into [`StoreConfig`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::redis::{self, RedisTopology};
use super::{Args, ConfigError, err, parse_duration};
use crate::secret::Secret;

/// Where users and sessions are stored.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Users, the session index, and sessions unless `sessions` is set.
    pub database: StoreUrl,
    /// Sessions, when they live elsewhere.
    pub sessions: Option<StoreUrl>,
    /// PostgreSQL schema for all tables, if not the defaults.
    pub schema: Option<String>,
    /// Most connections per pool.
    pub max_connections: u32,
    /// Timeout of every store operation.
    pub timeout: Duration,
    /// In-memory session cache size for the embedded SQLite store (0: none).
    pub session_cache: u64,
}

/// A store location. URLs may carry passwords, so they are [`Secret`]s.
#[derive(Debug, Clone)]
pub enum StoreUrl {
    /// An SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres(Secret),
    /// Redis (sessions only): one server, a Sentinel-watched primary, or a
    /// Cluster, as the URL's scheme says ([`StoreUrl::redis_topology`]).
    Redis(Secret),
}

impl StoreUrl {
    /// The kind of store, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreUrl::Sqlite(_) => "sqlite",
            StoreUrl::Postgres(_) => "postgres",
            StoreUrl::Redis(_) => match self.redis_topology() {
                Some(RedisTopology::Sentinel) => "redis-sentinel",
                Some(RedisTopology::Cluster) => "redis-cluster",
                _ => "redis",
            },
        }
    }

    /// How a Redis URL finds its server(s); `None` for the other stores.
    pub fn redis_topology(&self) -> Option<RedisTopology> {
        match self {
            StoreUrl::Redis(url) => {
                let scheme = url.expose().split(':').next().unwrap_or_default();
                RedisTopology::of_scheme(&scheme.to_ascii_lowercase())
            }
            _ => None,
        }
    }

    /// The location without its password, to be shown.
    pub fn redacted(&self) -> String {
        match self {
            StoreUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            StoreUrl::Postgres(url) | StoreUrl::Redis(url) => match url::Url::parse(url.expose()) {
                Ok(mut url) => {
                    if url.password().is_some() {
                        let _ = url.set_password(Some("***"));
                    }
                    url.to_string()
                }
                Err(_) => format!("{}://[unreadable URL]", self.kind()),
            },
        }
    }
}

/// The store settings of `args`.
pub(super) fn from_args(args: &Args) -> Result<StoreConfig, ConfigError> {
    let database = match args.database_url.as_deref().filter(|u| !u.is_empty()) {
        None => StoreUrl::Sqlite(args.data_dir.join("oidc-gate.sqlite3")),
        Some(url) => match parse_store_url("DATABASE_URL", url, &args.data_dir)? {
            StoreUrl::Redis(_) => {
                return Err(err(
                    "DATABASE_URL must be sqlite:// or postgres:// (Redis can hold sessions only: use SESSION_STORE_URL).",
                ));
            }
            other => other,
        },
    };
    let sessions = match args.session_store_url.as_deref().filter(|u| !u.is_empty()) {
        None => None,
        Some(url) => Some(parse_store_url("SESSION_STORE_URL", url, &args.data_dir)?),
    };
    if let Some(schema) = &args.database_schema {
        let valid = !schema.is_empty()
            && schema.len() <= 63
            && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(err(format!(
                "DATABASE_SCHEMA must be a lowercase SQL identifier, got `{schema}`."
            )));
        }
    }
    let max_connections = args
        .database_max_connections
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=1000).contains(n))
        .ok_or_else(|| err("DATABASE_MAX_CONNECTIONS must be a number from 1 to 1000."))?;
    Ok(StoreConfig {
        database,
        sessions,
        schema: args.database_schema.clone(),
        max_connections,
        timeout: parse_duration("STORE_TIMEOUT", &args.store_timeout)?,
        session_cache: args
            .session_cache_size
            .parse()
            .map_err(|_| err("SESSION_CACHE_SIZE must be a number (0 turns the cache off)."))?,
    })
}

fn parse_store_url(var: &str, raw: &str, data_dir: &Path) -> Result<StoreUrl, ConfigError> {
    let scheme = raw.split(':').next().unwrap_or_default().to_ascii_lowercase();
    match scheme.as_str() {
        "sqlite" => {
            let path = raw.trim_start_matches("sqlite:").trim_start_matches("//");
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() || path == ":memory:" {
                return Err(err(format!(
                    "{var} must name an SQLite file, e.g. sqlite://data/oidc-gate.sqlite3."
                )));
            }
            let path = PathBuf::from(path);
            Ok(StoreUrl::Sqlite(if path.is_absolute() {
                path
            } else {
                data_dir.join(path)
            }))
        }
        "postgres" | "postgresql" => Ok(StoreUrl::Postgres(Secret::new(raw))),
        scheme => match RedisTopology::of_scheme(scheme) {
            Some(topology) => {
                redis::validate(var, raw, topology)?;
                Ok(StoreUrl::Redis(Secret::new(raw)))
            }
            None => Err(err(format!(
                "{var} must start with sqlite://, postgres://{}",
                if var == "SESSION_STORE_URL" {
                    ", redis://, redis-sentinel://, redis-cluster:// (or rediss… for TLS)."
                } else {
                    "."
                }
            ))),
        },
    }
}

/// The embedded database in `dir`, with four connections, a 3-second
/// timeout and no session cache, as unit tests open it.
#[cfg(test)]
pub(crate) fn sqlite_for_tests(dir: &Path) -> StoreConfig {
    StoreConfig {
        database: StoreUrl::Sqlite(dir.join("db.sqlite3")),
        sessions: None,
        schema: None,
        max_connections: 4,
        timeout: Duration::from_secs(3),
        session_cache: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Args, Config};
    use super::*;
    use clap::Parser;

    fn args() -> Args {
        Args::try_parse_from(["oidc-gate"]).unwrap()
    }

    #[test]
    fn store_urls_are_recognised() {
        let c = Config::from_args(args()).unwrap();
        assert!(matches!(&c.store.database, StoreUrl::Sqlite(p) if p.ends_with("data/oidc-gate.sqlite3")));
        let c = Config::from_args(Args {
            database_url: Some("postgres://u:pw@127.0.0.1/test".into()),
            session_store_url: Some("rediss://127.0.0.1:6380".into()),
            ..args()
        })
        .unwrap();
        assert_eq!(c.store.database.kind(), "postgres");
        assert_eq!(c.store.sessions.as_ref().unwrap().kind(), "redis");
        assert!(!format!("{c:?}").contains("pw@"), "no password in Debug output");
        for (url, kind) in [
            (
                "redis-sentinel://:pw@127.0.0.1:26379/0?sentinelServiceName=gate",
                "redis-sentinel",
            ),
            (
                "rediss-cluster://:pw@127.0.0.1:7000?node=127.0.0.1:7001",
                "redis-cluster",
            ),
        ] {
            let c = Config::from_args(Args {
                session_store_url: Some(url.into()),
                ..args()
            })
            .unwrap();
            assert_eq!(c.store.sessions.as_ref().unwrap().kind(), kind);
            assert!(!format!("{c:?}").contains("pw@"), "no password in Debug output");
            let e = Config::from_args(Args {
                database_url: Some(url.into()),
                ..args()
            })
            .unwrap_err();
            assert!(e.to_string().contains("DATABASE_URL"), "{e}");
        }
        let e = Config::from_args(Args {
            session_store_url: Some("redis-sentinel://:pw@127.0.0.1:26379/0".into()),
            ..args()
        })
        .unwrap_err();
        assert!(
            e.to_string().starts_with("SESSION_STORE_URL must name the primary"),
            "{e}"
        );
        let e = Config::from_args(Args {
            database_url: Some("redis://x".into()),
            ..args()
        })
        .unwrap_err();
        assert!(e.to_string().contains("DATABASE_URL"), "{e}");
        let e = Config::from_args(Args {
            session_store_url: Some("mysql://x".into()),
            ..args()
        })
        .unwrap_err();
        assert!(e.to_string().contains("SESSION_STORE_URL"), "{e}");
        let e = Config::from_args(Args {
            database_schema: Some("x; drop".into()),
            ..args()
        })
        .unwrap_err();
        assert!(e.to_string().contains("DATABASE_SCHEMA"), "{e}");
    }
}
