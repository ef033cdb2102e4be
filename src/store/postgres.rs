//! The PostgreSQL implementation of [`super::Store`], for several instances
//! sharing users and sessions.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};

use super::{SessionLink, StoreError, UserProfile, UserRow};
use crate::config::StoreConfig;

/// A pooled connection idle this long is checked before use, so one cut by a
/// database restart or a firewall is replaced instead of failing a request.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// Connects with a bounded pool, creates the schema if one is configured
/// (and makes it the connections' search path), and migrates.
pub(super) async fn open(url: &str, config: &StoreConfig) -> Result<PgPool, StoreError> {
    let mut options = PgConnectOptions::from_str(url)?.application_name("oidc-gate");
    if let Some(schema) = &config.schema {
        create_schema(options.clone(), schema).await?;
        options = options.options([("search_path", schema.as_str())]);
    }
    // The session lookups have connections of their own.
    let loads = super::sessions::pg_load_connections(config.max_connections) as u32;
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections.saturating_sub(loads).max(1))
        .acquire_timeout(config.timeout)
        // sqlx pings every connection it hands out by default: a second round
        // trip per query. Only connections that sat idle may have been cut.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_IF_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await?;
    sqlx::migrate!("./migrations/postgres").run(&pool).await?;
    Ok(pool)
}

async fn create_schema(options: PgConnectOptions, schema: &str) -> Result<(), StoreError> {
    let mut conn = sqlx::PgConnection::connect_with(&options).await?;
    // The name is validated as a plain identifier by the configuration.
    if let Err(e) = sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
        .execute(&mut conn)
        .await
    {
        // Two instances starting at once may race; the schema then exists.
        tracing::debug!(error = %e, "create schema");
    }
    conn.close().await?;
    Ok(())
}

pub(super) async fn ping(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}

pub(super) async fn upsert_user(pool: &PgPool, p: &UserProfile<'_>, now: i64) -> Result<UserRow, StoreError> {
    let row = sqlx::query_as::<_, UserRow>(
        "INSERT INTO users (issuer, subject, email, email_verified, name, picture, created_at, last_login_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
         ON CONFLICT (issuer, subject) DO UPDATE SET
             email = excluded.email, email_verified = excluded.email_verified,
             name = excluded.name, picture = excluded.picture, last_login_at = excluded.last_login_at
         RETURNING *",
    )
    .bind(p.issuer)
    .bind(p.subject)
    .bind(p.email)
    .bind(p.email_verified)
    .bind(p.name)
    .bind(p.picture)
    .bind(now)
    .fetch_one(pool)
    .await?;
    Ok(row)
}

pub(super) async fn user(pool: &PgPool, id: i64) -> Result<Option<UserRow>, StoreError> {
    Ok(sqlx::query_as("SELECT * FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

pub(super) async fn user_by_subject(pool: &PgPool, issuer: &str, subject: &str) -> Result<Option<UserRow>, StoreError> {
    Ok(sqlx::query_as("SELECT * FROM users WHERE issuer = $1 AND subject = $2")
        .bind(issuer)
        .bind(subject)
        .fetch_optional(pool)
        .await?)
}

pub(super) async fn link_session(pool: &PgPool, l: &SessionLink<'_>) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO session_index (session_id, issuer, subject, sid, expires_at, id_token)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (session_id) DO UPDATE SET issuer = excluded.issuer, subject = excluded.subject,
             sid = excluded.sid, expires_at = excluded.expires_at, id_token = excluded.id_token",
    )
    .bind(l.session_id)
    .bind(l.issuer)
    .bind(l.subject)
    .bind(l.sid)
    .bind(l.expires_at)
    .bind(l.id_token)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn unlink_session(pool: &PgPool, session_id: &str) -> Result<Option<String>, StoreError> {
    let row: Option<(Option<String>,)> =
        sqlx::query_as("DELETE FROM session_index WHERE session_id = $1 RETURNING id_token")
            .bind(session_id)
            .fetch_optional(pool)
            .await?;
    Ok(row.and_then(|(t,)| t))
}

/// The link of `session_id`, if any, with its ID token.
pub(super) async fn session_link(pool: &PgPool, session_id: &str) -> Result<Option<Option<String>>, StoreError> {
    let row: Option<(Option<String>,)> = sqlx::query_as("SELECT id_token FROM session_index WHERE session_id = $1")
        .bind(session_id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|(t,)| t))
}

/// See the SQLite twin: by `sid` (narrowed to `subject` if given) or by `subject`.
pub(super) async fn linked_sessions(
    pool: &PgPool,
    issuer: &str,
    subject: Option<&str>,
    sid: Option<&str>,
) -> Result<Vec<String>, StoreError> {
    let query = if sid.is_some() {
        "SELECT session_id FROM session_index WHERE issuer = $1 AND sid = $2 AND ($3::text IS NULL OR subject = $3)"
    } else {
        "SELECT session_id FROM session_index WHERE issuer = $1 AND subject = $3 AND $2::text IS NULL"
    };
    let rows: Vec<(String,)> = sqlx::query_as(query)
        .bind(issuer)
        .bind(sid)
        .bind(subject)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// The shared key `name`: `candidate` if no instance stored one before.
pub(super) async fn shared_key(pool: &PgPool, name: &str, candidate: &[u8], now: i64) -> Result<Vec<u8>, StoreError> {
    sqlx::query("INSERT INTO shared_keys (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .bind(candidate)
        .bind(now)
        .execute(pool)
        .await?;
    let (value,): (Vec<u8>,) = sqlx::query_as("SELECT value FROM shared_keys WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await?;
    Ok(value)
}

pub(super) async fn remember_logout_jti(
    pool: &PgPool,
    issuer: &str,
    jti: &str,
    expires_at: i64,
) -> Result<bool, StoreError> {
    let done =
        sqlx::query("INSERT INTO logout_jti (issuer, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(issuer)
            .bind(jti)
            .bind(expires_at)
            .execute(pool)
            .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn forget_logout_jti(pool: &PgPool, issuer: &str, jti: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM logout_jti WHERE issuer = $1 AND jti = $2")
        .bind(issuer)
        .bind(jti)
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn delete_expired_links(pool: &PgPool, now: i64) -> Result<u64, StoreError> {
    let links = sqlx::query("DELETE FROM session_index WHERE expires_at < $1")
        .bind(now)
        .execute(pool)
        .await?;
    let jtis = sqlx::query("DELETE FROM logout_jti WHERE expires_at < $1")
        .bind(now)
        .execute(pool)
        .await?;
    Ok(links.rows_affected() + jtis.rows_affected())
}
