//! Redis session-store URLs in the `fred` client's own grammar: one server
//! (`redis://`), a primary found through Sentinel (`redis-sentinel://`) or a
//! Cluster (`redis-cluster://`), each with a TLS form (`rediss…`). Checked
//! at start-up so that a mistake is a message naming the variable, not a
//! connection failure later; no message ever repeats the URL (it may carry
//! passwords).

use url::Url;

use super::{ConfigError, err};

/// How oidc-gate finds its Redis server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisTopology {
    /// One server (`redis://`, `rediss://`).
    Single,
    /// The primary that Sentinel names (`redis-sentinel://`, `rediss-sentinel://`).
    Sentinel,
    /// A Redis Cluster (`redis-cluster://`, `rediss-cluster://`).
    Cluster,
}

impl RedisTopology {
    /// The topology of a URL scheme, if it is a Redis one.
    pub(crate) fn of_scheme(scheme: &str) -> Option<Self> {
        match scheme {
            "redis" | "rediss" => Some(Self::Single),
            "redis-sentinel" | "rediss-sentinel" => Some(Self::Sentinel),
            "redis-cluster" | "rediss-cluster" => Some(Self::Cluster),
            _ => None,
        }
    }
}

/// The query parameters `fred` reads; anything else is most likely a typo
/// that `fred` would silently ignore.
const PARAMETERS: [&str; 4] = ["node", "sentinelServiceName", "sentinelUsername", "sentinelPassword"];

/// Checks the Redis URL `raw` of the setting `var`.
pub(super) fn validate(var: &str, raw: &str, topology: RedisTopology) -> Result<(), ConfigError> {
    let url = Url::parse(raw).map_err(|e| err(format!("{var} is not a valid URL ({e}).")))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(err(format!("{var} must name a host, e.g. {}", example(topology))));
    }
    let mut service_name = None;
    for (key, value) in url.query_pairs() {
        if !PARAMETERS.contains(&key.as_ref()) {
            return Err(err(format!(
                "{var} has an unknown parameter `{key}` (Redis URLs know {}).",
                PARAMETERS.join(", ")
            )));
        }
        match key.as_ref() {
            "node" => check_node(var, &value)?,
            "sentinelServiceName" => service_name = Some(value.into_owned()),
            _ => {}
        }
    }
    let has = |key: &str| url.query_pairs().any(|(k, _)| k == key);
    let database = url.path().trim_start_matches('/');
    match topology {
        RedisTopology::Single if url.query().is_some_and(|q| !q.is_empty()) => Err(err(format!(
            "{var}: node= and sentinel parameters need a redis-sentinel:// or redis-cluster:// URL, e.g. {} \
             or {}",
            example(RedisTopology::Sentinel),
            example(RedisTopology::Cluster)
        ))),
        RedisTopology::Sentinel if service_name.as_deref().is_none_or(str::is_empty) => Err(err(format!(
            "{var} must name the primary Sentinel watches with sentinelServiceName=NAME, e.g. {}",
            example(topology)
        ))),
        RedisTopology::Cluster if has("sentinelServiceName") || has("sentinelUsername") || has("sentinelPassword") => {
            Err(err(format!(
                "{var}: sentinel parameters have no meaning for a Redis Cluster."
            )))
        }
        RedisTopology::Cluster if !matches!(database, "" | "0") => Err(err(format!(
            "{var}: a Redis Cluster has only database 0, drop `/{database}` from the URL."
        ))),
        _ if !database.is_empty() && database.parse::<u8>().is_err() => Err(err(format!(
            "{var}: the database after the host must be a number, e.g. /0."
        ))),
        // What fred itself checks; its messages never repeat the URL.
        _ => fred::prelude::Config::from_url(raw)
            .map(drop)
            .map_err(|e| err(format!("{var} is not a Redis URL the client accepts: {}", e.details()))),
    }
}

/// Checks one `node=HOST:PORT` parameter.
fn check_node(var: &str, node: &str) -> Result<(), ConfigError> {
    let valid = node.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !host.contains(':') && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if valid {
        Ok(())
    } else {
        Err(err(format!("{var}: node={node} must be HOST:PORT.")))
    }
}

/// An example URL of `topology`, for messages.
fn example(topology: RedisTopology) -> &'static str {
    match topology {
        RedisTopology::Single => "redis://redis.internal:6379/0.",
        RedisTopology::Sentinel => {
            "redis-sentinel://sentinel-1:26379/0?sentinelServiceName=mymaster&node=sentinel-2:26379."
        }
        RedisTopology::Cluster => "redis-cluster://redis-1:6379?node=redis-2:6379&node=redis-3:6379.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str) -> Result<(), String> {
        let scheme = raw.split(':').next().unwrap();
        let topology = RedisTopology::of_scheme(scheme).unwrap();
        validate("SESSION_STORE_URL", raw, topology).map_err(|e| e.to_string())
    }

    #[test]
    fn the_fred_url_forms_are_accepted() {
        for ok in [
            "redis://127.0.0.1:6379",
            "rediss://:pw@redis.internal:6380/2",
            "redis-sentinel://127.0.0.1:26379/0?sentinelServiceName=mymaster",
            "redis-sentinel://:pw@s1:26379/1?sentinelServiceName=gate&node=s2:26379&node=s3:26380",
            "rediss-sentinel://u:pw@s1:26379?sentinelServiceName=gate&sentinelUsername=su&sentinelPassword=sp",
            "redis-cluster://127.0.0.1:7000",
            "redis-cluster://:pw@r1:7000?node=r2:7001&node=r3:7002",
            "rediss-cluster://r1:7000/0?node=r2:7001",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn mistakes_are_named_and_never_show_the_password() {
        for (bad, says) in [
            ("redis-sentinel://:hunter2@s1:26379/0", "sentinelServiceName=NAME"),
            (
                "redis-sentinel://:hunter2@s1:26379/0?sentinelServiceName=",
                "sentinelServiceName=NAME",
            ),
            ("redis-cluster://:hunter2@r1:7000/3", "only database 0"),
            (
                "redis-cluster://:hunter2@r1:7000?sentinelServiceName=x",
                "no meaning for a Redis Cluster",
            ),
            (
                "redis://:hunter2@r1:6379?node=r2:6379",
                "redis-sentinel:// or redis-cluster://",
            ),
            ("redis-cluster://:hunter2@r1:7000?node=r2", "node=r2 must be HOST:PORT"),
            ("redis-cluster://:hunter2@r1:7000?node=r2:http", "must be HOST:PORT"),
            (
                "redis-cluster://:hunter2@r1:7000?nodes=r2:7001",
                "unknown parameter `nodes`",
            ),
            (
                "redis-sentinel://:hunter2@s1/x?sentinelServiceName=a",
                "must be a number",
            ),
            ("redis-cluster://:hunter2@:7000", "not a valid URL"),
            ("redis-sentinel:hunter2?sentinelServiceName=a", "must name a host"),
            ("redis://:hunter2@[::1", "not a valid URL"),
        ] {
            let e = check(bad).expect_err(bad);
            assert!(e.starts_with("SESSION_STORE_URL"), "{bad}: {e}");
            assert!(e.contains(says), "{bad}: {e}");
            assert!(!e.contains("hunter2"), "{bad}: {e}");
        }
    }
}
