//! The session store given to `tower-sessions`: one type over every backend,
//! each a maintained store from the `tower-sessions` ecosystem (SQLite and
//! PostgreSQL from `tower-sessions-sqlx-store`, Redis from
//! `tower-sessions-redis-store`), with a timeout on every operation.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::KeysInterface;
use fred::prelude::{ClientLike, Config as RedisConfig, Pool as RedisPool, ReconnectPolicy, ServerConfig};
use fred::types::{Builder, Expiration, SetOptions};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};
use tower_sessions_redis_store::RedisStore;
use tower_sessions_sqlx_store::PostgresStore;

use super::StoreError;
use super::batched_loads::{BatchedLoads, Limits, PgLoads};
use super::login::LoginWrites;
use super::postgres::{SESSIONS_SCHEMA, pg_load_connections};
use super::record::{TimedOut, backend, bounded, encode};
use super::session_cache::WriteThrough;
use super::sqlite::{SqliteDb, SqliteSessions};
use super::token_slots::{self, PgSlots};
use crate::config::{StoreConfig, StoreUrl};
use crate::metrics::{StoreMetrics, StoreOp};

/// Where sessions live.
#[derive(Clone, Debug)]
pub struct SessionBackend {
    /// Shared: the handle is cloned for every request, and a cache handle is
    /// many reference counts deep.
    pub(super) inner: Arc<Inner>,
    timeout: Duration,
    /// The operations in the metrics.
    metrics: StoreMetrics,
}

#[derive(Clone)]
pub(super) enum Inner {
    Sqlite {
        store: SqliteSessions,
        /// The store behind an in-memory cache: only for the embedded
        /// database, which one instance owns, so every logout goes through it.
        cached: Option<WriteThrough<SqliteSessions>>,
        db: SqliteDb,
    },
    Postgres {
        store: PostgresStore,
        /// Loads, batched across concurrent requests; other writes go to `store`.
        loads: BatchedLoads<PgLoads>,
        writes: PgWrites,
        slots: PgSlots,
    },
    Redis(RedisStore<RedisPool>, RedisPool),
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Inner::Sqlite { cached: None, .. } => "Sqlite",
            Inner::Sqlite { cached: Some(_), .. } => "CachedSqlite",
            Inner::Postgres { .. } => "Postgres",
            Inner::Redis(..) => "Redis",
        })
    }
}

/// Writes to PostgreSQL sessions that `PostgresStore` does differently.
///
/// Saves only update a session that is still there: `PostgresStore`'s own
/// save is an upsert, which would bring back a session that a logout
/// deleted while another request of it was under way (`tower-sessions`
/// creates new sessions with `create`, never with `save`).
///
/// Expired sessions are deleted in batches: `PostgresStore::delete_expired`
/// deletes them all in one statement, unbounded in time and in the rows it
/// locks.
#[derive(Clone, Debug)]
pub(super) struct PgWrites {
    pool: sqlx::PgPool,
    save: String,
    /// A login's insert of its new session (see [`super::login`]).
    insert: String,
    delete_expired: String,
}

impl PgWrites {
    /// The statements for `"{schema}"."session"`; the schema name is
    /// validated as a plain identifier.
    fn new(pool: sqlx::PgPool, schema: &str) -> Self {
        let table = format!(r#""{schema}"."session""#);
        Self {
            pool,
            save: format!("UPDATE {table} SET data = $2, expiry_date = $3 WHERE id = $1"),
            insert: format!(
                "INSERT INTO {table} (id, data, expiry_date) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING"
            ),
            delete_expired: format!(
                // Instances cleaning up at once skip each other's rows.
                "DELETE FROM {table} WHERE id IN
                     (SELECT id FROM {table} WHERE expiry_date < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)"
            ),
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = encode(record)?;
        sqlx::query(&self.save)
            .bind(record.id.to_string())
            .bind(data)
            .bind(record.expiry_date)
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(backend)
    }

    /// Creates a login's session with its user and link, in one transaction.
    async fn create_login(&self, record: &mut Record, login: &LoginWrites) -> session_store::Result<()> {
        super::login::in_postgres(&self.pool, &self.insert, record, login)
            .await
            .map_err(backend)
    }

    async fn delete_expired(&self, limit: u64) -> Result<u64, sqlx::Error> {
        sqlx::query(&self.delete_expired)
            .bind(time::OffsetDateTime::now_utc())
            .bind(limit as i64)
            .execute(&self.pool)
            .await
            .map(|done| done.rows_affected())
    }
}

/// Expired sessions deleted by one statement at most.
const CLEANUP_BATCH: u64 = 500;

/// Runs `batch` (a delete of at most [`CLEANUP_BATCH`] expired sessions,
/// by the indexed expiry) until one deletes fewer, each bounded by
/// `timeout`, letting requests' writes go between; returns how many.
async fn in_batches<F: Future<Output = Result<u64, sqlx::Error>>>(
    timeout: Duration,
    batch: impl Fn(u64) -> F,
) -> session_store::Result<u64> {
    let mut total = 0;
    loop {
        let deleted = bounded(timeout, async { batch(CLEANUP_BATCH).await.map_err(backend) }).await?;
        total += deleted;
        if deleted < CLEANUP_BATCH {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// Saves a Redis session that is still there, as `RedisStore` writes it
/// (`SET … EXAT … XX`). `RedisStore::save` does the same but fails when
/// the session is gone (it reads Redis's nil answer as a bool), which
/// turned a request racing its own logout into an error page.
async fn redis_save(pool: &RedisPool, record: &Record) -> session_store::Result<()> {
    let data = encode(record)?;
    let expire = Some(Expiration::EXAT(record.expiry_date.unix_timestamp()));
    pool.set::<Option<String>, _, _>(
        record.id.to_string(),
        data.as_slice(),
        expire,
        Some(SetOptions::XX),
        false,
    )
    .await
    .map(drop)
    .map_err(backend)
}

/// Where a Redis URL points, for messages: its server, Sentinels or Cluster
/// nodes, never its credentials.
fn redis_target(server: &ServerConfig) -> String {
    let hosts: Vec<String> = server
        .hosts()
        .iter()
        .map(|s| format!("{}:{}", s.host, s.port))
        .collect();
    let hosts = hosts.join(", ");
    match server {
        ServerConfig::Sentinel { service_name, .. } => {
            format!("Redis primary `{service_name}` via the Sentinels at {hosts}")
        }
        ServerConfig::Clustered { .. } => format!("the Redis Cluster at {hosts}"),
        _ => format!("Redis at {hosts}"),
    }
}

/// Redis connections: one per worker thread of the runtime, at most
/// `max_connections`. Redis runs commands one at a time, and `fred`
/// pipelines the commands of concurrent requests on a connection into one
/// write and one read; more connections would only split those batches and
/// wake Redis more often (one connection served 40% more `/secret`
/// requests per core than ten in the benchmark).
fn redis_connections(max_connections: u32) -> usize {
    let workers = tokio::runtime::Handle::try_current().map_or(1, |h| h.metrics().num_workers());
    workers.clamp(1, max_connections.max(1) as usize)
}

/// The batched PostgreSQL lookups: one query out at a time while queries
/// answer promptly, as one query serves the most lookups. Lookups that
/// have waited 1 ms (the query out is slow: a cold read, a lock, a
/// descheduled backend) send a second. Each query out has a connection of
/// its own, counted in `max_connections` (the pool keeps at least one).
///
/// In the benchmark (32 connections, oidc-gate on one core, PostgreSQL
/// sharing the other with the load generator), always 1 query out served
/// 47,700 and 48,800 requests/s (p99 1.35 and 1.36 ms), always 2 served
/// 47,200 and 42,300 (p99 1.39 and 1.80 ms), and always 3 served 32,800 and
/// 31,800 (p99 3.5 and 6.3 ms): smaller batches, more backends competing
/// for the core.
fn pg_load_limits(config: &StoreConfig) -> Limits {
    Limits {
        in_flight: 1,
        most_in_flight: pg_load_connections(config.max_connections),
        more_after: Duration::from_millis(1),
        max_batch: 128,
        timeout: config.timeout,
        max_waiting: super::batched_loads::MAX_WAITING,
    }
}

impl SessionBackend {
    /// Sessions in the SQLite database (its table is created with the
    /// database), behind a cache of `config.session_cache` sessions unless 0.
    pub(super) fn sqlite(db: SqliteDb, config: &StoreConfig) -> Self {
        let store = SqliteSessions::new(&db);
        let cached = match config.session_cache {
            0 => None,
            n => Some(WriteThrough::new(store.clone(), n)),
        };
        let inner = Inner::Sqlite { store, cached, db };
        Self {
            inner: Arc::new(inner),
            timeout: super::sqlite::op_timeout(config),
            metrics: StoreMetrics::new("sqlite"),
        }
    }

    /// Sessions in PostgreSQL, in `DATABASE_SCHEMA` or the store's own
    /// `tower_sessions` schema (created when `pool` was opened).
    pub(super) async fn postgres(pool: sqlx::PgPool, config: &StoreConfig) -> Result<Self, StoreError> {
        let schema = config.schema.as_deref().unwrap_or(SESSIONS_SCHEMA);
        let store = PostgresStore::new(pool.clone())
            .with_schema_name(schema)
            .map_err(StoreError::Config)?;
        let writes = PgWrites::new(pool.clone(), schema);
        let slots = PgSlots::new(pool.clone(), schema);
        let limits = pg_load_limits(config);
        let loads = BatchedLoads::new(
            PgLoads::new((*pool.connect_options()).clone(), schema, limits.most_in_flight),
            limits,
        );
        Ok(Self {
            inner: Arc::new(Inner::Postgres {
                store,
                loads,
                writes,
                slots,
            }),
            timeout: config.timeout,
            metrics: StoreMetrics::new("postgres"),
        })
    }

    /// Sessions in Redis: one server, the primary Sentinel names, or a
    /// Cluster, as the URL says (`fred` follows failovers and slot moves).
    /// Expiry is Redis's own TTL.
    ///
    /// Every command here and in `RedisStore` (`GET`, `SET … NX`/`XX`,
    /// `DEL`) touches one key, the session id, and nothing is scripted or
    /// batched in a transaction, so a Cluster needs no `{hash tags}`: no two
    /// keys must share a slot. Keep it so (or tag the keys) when adding one.
    pub(super) async fn redis(url: &StoreUrl, config: &StoreConfig) -> Result<Self, StoreError> {
        let StoreUrl::Redis(url) = url else {
            return Err(StoreError::Config("not a Redis URL".into()));
        };
        let redis_err = |e: fred::error::Error| StoreError::Session(format!("redis: {e}"));
        let timeout = config.timeout;
        let redis_config = RedisConfig::from_url(url.expose()).map_err(redis_err)?;
        let unreachable = |why: String| {
            StoreError::Session(format!(
                "cannot connect to {} (SESSION_STORE_URL): {why}",
                redis_target(&redis_config.server)
            ))
        };
        let pool = Builder::from_config(redis_config.clone())
            .with_connection_config(|c| {
                c.connection_timeout = timeout;
                c.internal_command_timeout = timeout;
            })
            .with_performance_config(|p| p.default_command_timeout = timeout)
            // Reconnect forever, backing off up to 2 s: an outage heals by itself.
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
            .build_pool(redis_connections(config.max_connections))
            .map_err(redis_err)?;
        tokio::time::timeout(timeout * 10, pool.init())
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", timeout * 10)))?
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner::Redis(RedisStore::new(pool.clone()), pool)),
            timeout,
            metrics: StoreMetrics::new("redis"),
        })
    }

    /// Checks that the session store answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let result = self
            .op(StoreOp::Ping, async {
                match &*self.inner {
                    // The SQL stores share the database pinged by `Store::ping`; a
                    // load of an unknown id proves the session table answers.
                    Inner::Sqlite { store, .. } => store.load(&Id::default()).await.map(drop),
                    Inner::Postgres { store, .. } => store.load(&Id::default()).await.map(drop),
                    Inner::Redis(_, pool) => pool.ping::<String>(None).await.map(drop).map_err(backend),
                }
            })
            .await;
        result.map_err(|e| StoreError::Session(e.to_string()))
    }

    /// Runs a session store operation with the timeout, timed in the metrics.
    pub(super) async fn op<T, E: TimedOut>(
        &self,
        op: StoreOp,
        fut: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        self.metrics.timed(op, bounded(self.timeout, fut)).await
    }

    /// Tells the servers' session caches that this process, not theirs,
    /// ended sessions: only the embedded SQLite store has a cache.
    pub(super) async fn note_ended_elsewhere(&self) -> Result<(), StoreError> {
        match &*self.inner {
            Inner::Sqlite { db, .. } => {
                self.op(
                    StoreOp::SessionsEndedElsewhere,
                    super::sqlite::note_sessions_ended_elsewhere(db),
                )
                .await
            }
            Inner::Postgres { .. } | Inner::Redis(..) => Ok(()),
        }
    }

    /// Deletes every expired session now, in batches, each bounded by the
    /// store's timeout (Redis expires them by itself); returns how many.
    pub async fn delete_expired_now(&self) -> session_store::Result<u64> {
        self.metrics
            .timed(StoreOp::SessionDeleteExpired, self.delete_expired_batches())
            .await
    }

    async fn delete_expired_batches(&self) -> session_store::Result<u64> {
        // The refreshed tokens of sessions past their end at the latest.
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let slots = match &*self.inner {
            Inner::Sqlite { db, .. } => token_slots::sqlite::delete_expired(db, now).await,
            Inner::Postgres { slots, .. } => bounded(self.timeout, slots.delete_expired(now)).await,
            Inner::Redis(..) => Ok(0),
        };
        if let Err(e) = slots {
            tracing::warn!(error = %e, "could not delete expired refreshed tokens");
        }
        match &*self.inner {
            // The cache expires entries by their own expiry date.
            Inner::Sqlite { db, .. } => {
                in_batches(self.timeout, |limit| super::sqlite::delete_expired_sessions(db, limit)).await
            }
            Inner::Postgres { writes, .. } => in_batches(self.timeout, |limit| writes.delete_expired(limit)).await,
            // Redis expires them itself.
            Inner::Redis(..) => Ok(0),
        }
    }
}

#[async_trait]
impl SessionStore for SessionBackend {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        self.op(StoreOp::SessionCreate, async {
            match &*self.inner {
                Inner::Sqlite { cached: Some(s), .. } => s.create(record).await,
                Inner::Sqlite { store, .. } => store.create(record).await,
                Inner::Postgres { store, writes, .. } => match super::login::take() {
                    Some(login) => writes.create_login(record, &login).await,
                    None => store.create(record).await,
                },
                Inner::Redis(s, _) => s.create(record).await,
            }
        })
        .await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.op(StoreOp::SessionSave, async {
            match &*self.inner {
                Inner::Sqlite { cached: Some(s), .. } => s.save(record).await,
                Inner::Sqlite { store, .. } => store.save(record).await,
                Inner::Postgres { writes, .. } => writes.save(record).await,
                Inner::Redis(_, pool) => redis_save(pool, record).await,
            }
        })
        .await
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        // A cache hit is not a store operation: answered before the timing,
        // so the latency histogram shows the store's own round trips (and a
        // signed-in page pays nothing for it).
        if let Inner::Sqlite { cached: Some(s), .. } = &*self.inner
            && let Some(record) = s.cached(id)
        {
            return Ok(Some(record));
        }
        self.op(StoreOp::SessionLoad, async {
            match &*self.inner {
                Inner::Sqlite { cached: Some(s), .. } => s.load(id).await,
                Inner::Sqlite { store, .. } => store.load(id).await,
                Inner::Postgres { loads, .. } => loads.load(id).await,
                Inner::Redis(s, _) => s.load(id).await,
            }
        })
        .await
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.op(StoreOp::SessionDelete, async {
            match &*self.inner {
                Inner::Sqlite { cached: Some(s), .. } => s.delete(id).await,
                Inner::Sqlite { store, .. } => store.delete(id).await,
                Inner::Postgres { store, .. } => store.delete(id).await,
                Inner::Redis(s, _) => s.delete(id).await,
            }
        })
        .await?;
        // The session is gone; its refreshed tokens would only wait for the
        // cleanup (they are no use without it).
        if let Err(e) = self.forget_refreshed_tokens(&id.to_string()).await {
            tracing::warn!(error = %e, "could not forget an ended session's refreshed tokens");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::redis_connections;

    #[test]
    fn one_redis_connection_per_worker_thread_at_most_the_pool_size() {
        let runtime = |workers| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .build()
                .unwrap()
        };
        assert_eq!(runtime(3).block_on(async { redis_connections(10) }), 3);
        assert_eq!(runtime(3).block_on(async { redis_connections(2) }), 2);
        assert_eq!(runtime(1).block_on(async { redis_connections(10) }), 1);
        assert_eq!(redis_connections(10), 1, "outside a runtime");
    }
}
