//! Where a session's refreshed tokens are kept, and the lease that lets one
//! request at a time, on any instance, refresh them.
//!
//! A session's record holds its tokens, so that a request reads them with
//! the session and nothing more. But a request saves its whole record (its
//! activity, say) as it loaded it: one that loaded the record before
//! another request refreshed the tokens would write the old ones back, and
//! the rotated refresh token would be lost. So a refresh also writes its
//! tokens here, in a slot of their own that only refreshes write: the slot
//! is the truth, the record a copy for the hot path. A refresh reads the
//! slot under the lease before it asks the provider.
//!
//! The lease is `SET … NX PX` in Redis, and a row whose `lease_until` only
//! a request that finds it past may move, in PostgreSQL and SQLite (the
//! session store's database, its time in PostgreSQL, so that instances'
//! clocks need not agree).

use std::time::Duration;

use fred::prelude::{KeysInterface, Pool as RedisPool};
use fred::types::{Expiration, SetOptions};

use super::StoreError;
use super::sessions::{Inner, SessionBackend};
use super::sqlite::SqliteDb;
use crate::metrics::StoreOp;

impl SessionBackend {
    /// The tokens a refresh of session `id` last wrote (see
    /// [`super::token_slots`]), as written; `None` if none did.
    pub async fn refreshed_tokens(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.op(StoreOp::TokensLoad, async {
            match &*self.inner {
                Inner::Sqlite { db, .. } => sqlite::get(db, id).await,
                Inner::Postgres { slots, .. } => slots.get(id).await,
                Inner::Redis(_, pool) => redis::get(pool, id).await,
            }
        })
        .await
    }

    /// Keeps the tokens a refresh of session `id` got, until `expires_at`
    /// (Unix seconds, the session's end at the latest).
    pub async fn keep_refreshed_tokens(&self, id: &str, data: &str, expires_at: i64) -> Result<(), StoreError> {
        self.op(StoreOp::TokensSave, async {
            match &*self.inner {
                Inner::Sqlite { db, .. } => sqlite::put(db, id, data, expires_at).await,
                Inner::Postgres { slots, .. } => slots.put(id, data, expires_at).await,
                Inner::Redis(_, pool) => redis::put(pool, id, data, expires_at).await,
            }
        })
        .await
    }

    /// Takes the lease to refresh session `id`'s tokens for `ttl`, unless
    /// another request (here or on another instance) holds it; `true` if taken.
    pub async fn take_refresh_lease(&self, id: &str, ttl: Duration, expires_at: i64) -> Result<bool, StoreError> {
        self.op(StoreOp::RefreshLease, async {
            match &*self.inner {
                Inner::Sqlite { db, .. } => sqlite::lease(db, id, ttl, expires_at).await,
                Inner::Postgres { slots, .. } => slots.lease(id, ttl, expires_at).await,
                Inner::Redis(_, pool) => redis::lease(pool, id, ttl).await,
            }
        })
        .await
    }

    /// Gives the lease of session `id` back.
    pub async fn release_refresh_lease(&self, id: &str) -> Result<(), StoreError> {
        self.op(StoreOp::RefreshLease, async {
            match &*self.inner {
                Inner::Sqlite { db, .. } => sqlite::release(db, id).await,
                Inner::Postgres { slots, .. } => slots.release(id).await,
                Inner::Redis(_, pool) => redis::release(pool, id).await,
            }
        })
        .await
    }

    /// Forgets session `id`'s refreshed tokens and lease (it ended).
    pub async fn forget_refreshed_tokens(&self, id: &str) -> Result<(), StoreError> {
        self.op(StoreOp::TokensSave, async {
            match &*self.inner {
                Inner::Sqlite { db, .. } => sqlite::forget(db, id).await,
                Inner::Postgres { slots, .. } => slots.forget(id).await,
                Inner::Redis(_, pool) => redis::forget(pool, id).await,
            }
        })
        .await
    }
}

/// The slot's table in PostgreSQL (in the sessions' schema) and SQLite.
const TABLE: &str = "session_tokens";

/// Creates the PostgreSQL table in `schema` (a validated identifier).
pub(super) fn pg_create(schema: &str) -> String {
    format!(
        r#"CREATE TABLE IF NOT EXISTS "{schema}"."{TABLE}" (
               id TEXT PRIMARY KEY,
               data TEXT,
               lease_until BIGINT,
               expires_at BIGINT NOT NULL
           )"#
    )
}

/// Creates the SQLite table.
pub(super) const SQLITE_CREATE: &str = "CREATE TABLE IF NOT EXISTS session_tokens (
    id TEXT PRIMARY KEY,
    data TEXT,
    lease_until INTEGER,
    expires_at INTEGER NOT NULL
)";

/// The statements for PostgreSQL sessions in `"{schema}"`.
#[derive(Clone, Debug)]
pub(super) struct PgSlots {
    pool: sqlx::PgPool,
    get: String,
    put: String,
    lease: String,
    release: String,
    forget: String,
    expired: String,
}

/// The database's clock, in milliseconds.
const PG_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

impl PgSlots {
    pub(super) fn new(pool: sqlx::PgPool, schema: &str) -> Self {
        let t = format!(r#""{schema}"."{TABLE}""#);
        Self {
            pool,
            get: format!("SELECT data FROM {t} WHERE id = $1"),
            put: format!(
                "INSERT INTO {t} (id, data, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data, expires_at = EXCLUDED.expires_at"
            ),
            lease: format!(
                "INSERT INTO {t} AS s (id, lease_until, expires_at) VALUES ($1, {PG_NOW_MS} + $2, $3)
                 ON CONFLICT (id) DO UPDATE SET lease_until = EXCLUDED.lease_until
                 WHERE s.lease_until IS NULL OR s.lease_until < {PG_NOW_MS}
                 RETURNING 1"
            ),
            release: format!("UPDATE {t} SET lease_until = NULL WHERE id = $1"),
            forget: format!("DELETE FROM {t} WHERE id = $1"),
            expired: format!("DELETE FROM {t} WHERE expires_at < $1"),
        }
    }

    pub(super) async fn get(&self, id: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(Option<String>,)> = sqlx::query_as(&self.get).bind(id).fetch_optional(&self.pool).await?;
        Ok(row.and_then(|(data,)| data))
    }

    pub(super) async fn put(&self, id: &str, data: &str, expires_at: i64) -> Result<(), StoreError> {
        sqlx::query(&self.put)
            .bind(id)
            .bind(data)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(super) async fn lease(&self, id: &str, ttl: Duration, expires_at: i64) -> Result<bool, StoreError> {
        let taken: Option<(i32,)> = sqlx::query_as(&self.lease)
            .bind(id)
            .bind(ttl.as_millis() as i64)
            .bind(expires_at)
            .fetch_optional(&self.pool)
            .await?;
        Ok(taken.is_some())
    }

    pub(super) async fn release(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query(&self.release).bind(id).execute(&self.pool).await?;
        Ok(())
    }

    pub(super) async fn forget(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query(&self.forget).bind(id).execute(&self.pool).await?;
        Ok(())
    }

    pub(super) async fn delete_expired(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(&self.expired).bind(now).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }
}

/// SQLite: the same rows, written by the database's one writer. One
/// process owns the file, so its clock is the only one.
pub(super) mod sqlite {
    use super::*;

    fn now_ms() -> i64 {
        (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
    }

    pub(in crate::store) async fn get(db: &SqliteDb, id: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(Option<String>,)> = sqlx::query_as("SELECT data FROM session_tokens WHERE id = ?1")
            .bind(id)
            .fetch_optional(db.reader())
            .await?;
        Ok(row.and_then(|(data,)| data))
    }

    pub(in crate::store) async fn put(db: &SqliteDb, id: &str, data: &str, expires_at: i64) -> Result<(), StoreError> {
        let (id, data) = (id.to_owned(), data.to_owned());
        db.write(async move |c| {
            sqlx::query(
                "INSERT INTO session_tokens (id, data, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at",
            )
            .bind(id)
            .bind(data)
            .bind(expires_at)
            .execute(c)
            .await
            .map(drop)
        })
        .await
    }

    pub(in crate::store) async fn lease(
        db: &SqliteDb,
        id: &str,
        ttl: Duration,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let now = now_ms();
        let until = now + ttl.as_millis() as i64;
        db.write(async move |c| {
            sqlx::query(
                "INSERT INTO session_tokens (id, lease_until, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET lease_until = excluded.lease_until
                 WHERE session_tokens.lease_until IS NULL OR session_tokens.lease_until < ?4",
            )
            .bind(id)
            .bind(until)
            .bind(expires_at)
            .bind(now)
            .execute(c)
            .await
            .map(|done| done.rows_affected() == 1)
        })
        .await
    }

    pub(in crate::store) async fn release(db: &SqliteDb, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        db.write(async move |c| {
            sqlx::query("UPDATE session_tokens SET lease_until = NULL WHERE id = ?1")
                .bind(id)
                .execute(c)
                .await
                .map(drop)
        })
        .await
    }

    pub(in crate::store) async fn forget(db: &SqliteDb, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        db.write(async move |c| {
            sqlx::query("DELETE FROM session_tokens WHERE id = ?1")
                .bind(id)
                .execute(c)
                .await
                .map(drop)
        })
        .await
    }

    pub(in crate::store) async fn delete_expired(db: &SqliteDb, now: i64) -> Result<u64, StoreError> {
        db.write(async move |c| {
            sqlx::query("DELETE FROM session_tokens WHERE expires_at < ?1")
                .bind(now)
                .execute(c)
                .await
                .map(|done| done.rows_affected())
        })
        .await
    }
}

/// Redis: a key for the slot and one for the lease, each a single-key
/// command (Cluster-safe), both expiring by themselves.
pub(super) mod redis {
    use super::*;

    fn slot_key(id: &str) -> String {
        format!("oidc-gate:tokens:{id}")
    }

    fn lease_key(id: &str) -> String {
        format!("oidc-gate:refresh-lease:{id}")
    }

    fn failed(e: fred::error::Error) -> StoreError {
        StoreError::Session(format!("redis: {e}"))
    }

    pub(in crate::store) async fn get(pool: &RedisPool, id: &str) -> Result<Option<String>, StoreError> {
        pool.get::<Option<String>, _>(slot_key(id)).await.map_err(failed)
    }

    pub(in crate::store) async fn put(
        pool: &RedisPool,
        id: &str,
        data: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        pool.set::<Option<String>, _, _>(slot_key(id), data, Some(Expiration::EXAT(expires_at)), None, false)
            .await
            .map(drop)
            .map_err(failed)
    }

    pub(in crate::store) async fn lease(pool: &RedisPool, id: &str, ttl: Duration) -> Result<bool, StoreError> {
        let ms = ttl.as_millis().max(1) as i64;
        let set = pool
            .set::<Option<String>, _, _>(
                lease_key(id),
                "1",
                Some(Expiration::PX(ms)),
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(failed)?;
        Ok(set.is_some())
    }

    pub(in crate::store) async fn release(pool: &RedisPool, id: &str) -> Result<(), StoreError> {
        pool.del::<i64, _>(lease_key(id)).await.map(drop).map_err(failed)
    }

    pub(in crate::store) async fn forget(pool: &RedisPool, id: &str) -> Result<(), StoreError> {
        pool.del::<i64, _>(slot_key(id)).await.map(drop).map_err(failed)?;
        release(pool, id).await
    }
}
