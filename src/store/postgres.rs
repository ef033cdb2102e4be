//! The PostgreSQL implementation of [`super::Store`], for several instances
//! sharing users and sessions.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tower_sessions_sqlx_store::PostgresStore;

use super::{SessionLink, StoreError, UserProfile, UserRow};
use crate::config::StoreConfig;

/// A pooled connection idle this long is checked before use, so one cut by a
/// database restart or a firewall is replaced instead of failing a request.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// The PostgreSQL advisory lock every instance holds around its start-up
/// schema steps ("oidcgate" in ASCII).
const SCHEMA_LOCK: i64 = 0x6f69_6463_6761_7465;

/// Connects with a bounded pool and sets up the schema: creates
/// `DATABASE_SCHEMA` if one is configured (and makes it the connections'
/// search path), applies our migrations and, `with_sessions`, creates the
/// session store's table.
///
/// Instances starting together on a fresh database would race in those
/// steps (`CREATE … IF NOT EXISTS` is not safe against a concurrent
/// `CREATE`), so they all run under one advisory lock, taken on a
/// connection of its own. That first connection also says why a database
/// cannot be reached (`var` names its setting), where a pool only says that
/// it timed out.
pub(super) async fn open(
    url: &str,
    var: &'static str,
    config: &StoreConfig,
    with_sessions: bool,
) -> Result<PgPool, StoreError> {
    let mut options = PgConnectOptions::from_str(url)?.application_name("oidc-gate");
    let mut lock = match tokio::time::timeout(config.timeout, PgConnection::connect_with(&options)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return Err(connect_error(var, &options, Why::Failed(e)).await),
        Err(_) => return Err(connect_error(var, &options, Why::Silent(config.timeout)).await),
    };
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(SCHEMA_LOCK)
        .execute(&mut lock)
        .await?;
    if let Some(schema) = &config.schema {
        options = options.options([("search_path", schema.as_str())]);
    }
    let pool = set_up(&mut lock, options, config, with_sessions).await;
    // Closing the connection would release the lock too; a failed unlock
    // leaves it to that.
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(SCHEMA_LOCK)
        .execute(&mut lock)
        .await;
    let _ = lock.close().await;
    pool
}

/// The start-up steps under the schema lock (see [`open`]).
async fn set_up(
    lock: &mut PgConnection,
    options: PgConnectOptions,
    config: &StoreConfig,
    with_sessions: bool,
) -> Result<PgPool, StoreError> {
    if let Some(schema) = &config.schema {
        // Only if missing: even with IF NOT EXISTS, PostgreSQL requires the
        // right to create schemas, which a user given a schema may lack.
        let (exists,): (bool,) = sqlx::query_as("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(&mut *lock)
            .await?;
        if !exists {
            // The name is validated as a plain identifier by the configuration.
            sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
                .execute(&mut *lock)
                .await?;
        }
    }
    // The session lookups have connections of their own.
    let loads = pg_load_connections(config.max_connections) as u32;
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
    if with_sessions {
        let schema = config.schema.as_deref().unwrap_or(SESSIONS_SCHEMA);
        PostgresStore::new(pool.clone())
            .with_schema_name(schema)
            .map_err(StoreError::Config)?
            .migrate()
            .await?;
        // Cleanup deletes by expiry; keep it an index scan at any size.
        sqlx::query(&format!(
            "CREATE INDEX IF NOT EXISTS session_expiry_date ON \"{schema}\".\"session\" (expiry_date)"
        ))
        .execute(&pool)
        .await?;
        sqlx::query(&super::token_slots::pg_create(schema))
            .execute(&pool)
            .await?;
    }
    Ok(pool)
}

/// The schema of the sessions table without `DATABASE_SCHEMA`, the
/// session store's default.
pub(super) const SESSIONS_SCHEMA: &str = "tower_sessions";

/// How a first connection failed.
enum Why {
    /// With an error.
    Failed(sqlx::Error),
    /// No answer within this long.
    Silent(Duration),
}

/// The error for a database that cannot be reached: the setting, the host
/// and port, and why in words (never the password, which only the URL has).
async fn connect_error(var: &'static str, options: &PgConnectOptions, why: Why) -> StoreError {
    let (host, port) = (options.get_host(), options.get_port());
    let target = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{host}:{port}"),
    };
    let why = match why {
        Why::Silent(after) => format!("no answer within {after:?}"),
        Why::Failed(sqlx::Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused (is PostgreSQL running and listening there?)".to_owned()
        }
        Why::Failed(sqlx::Error::Io(_))
            if options.get_socket().is_none() && tokio::net::lookup_host((host, port)).await.is_err() =>
        {
            format!("unknown host `{host}`")
        }
        Why::Failed(sqlx::Error::Database(e)) => match e.code().as_deref() {
            Some("28P01" | "28000") => format!("authentication failed for user `{}`", options.get_username()),
            Some("3D000") => format!(
                "database `{}` does not exist",
                options.get_database().unwrap_or(options.get_username())
            ),
            _ => e.message().to_owned(),
        },
        Why::Failed(e) => e.to_string(),
    };
    StoreError::Unreachable { var, target, why }
}

pub(super) async fn ping(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}

/// Creates or updates the user (on the pool, or in a transaction).
pub(super) async fn upsert_user(
    db: impl sqlx::PgExecutor<'_>,
    p: &UserProfile<'_>,
    now: i64,
) -> Result<UserRow, sqlx::Error> {
    let query = sqlx::query_as::<_, UserRow>(
        "INSERT INTO users (issuer, subject, email, email_verified, name, picture, created_at, last_login_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
         ON CONFLICT (issuer, subject) DO UPDATE SET
             email = excluded.email, email_verified = excluded.email_verified,
             name = excluded.name, picture = excluded.picture, last_login_at = excluded.last_login_at
         RETURNING *",
    );
    super::binds::user(query, p, now).fetch_one(db).await
}

pub(super) async fn user(pool: &PgPool, id: i64) -> Result<Option<UserRow>, StoreError> {
    Ok(sqlx::query_as("SELECT * FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// Writes the link (on the pool, or in a transaction).
pub(super) async fn link_session(db: impl sqlx::PgExecutor<'_>, l: &SessionLink<'_>) -> Result<(), sqlx::Error> {
    let query = sqlx::query(
        "INSERT INTO session_index (session_id, issuer, subject, sid, expires_at, id_token,
             started_at, user_agent, client_ip)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (session_id) DO UPDATE SET issuer = excluded.issuer, subject = excluded.subject,
             sid = excluded.sid, expires_at = excluded.expires_at, id_token = excluded.id_token,
             started_at = excluded.started_at, user_agent = excluded.user_agent, client_ip = excluded.client_ip",
    );
    super::binds::link(query, l).execute(db).await.map(drop)
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

/// Connections of the batched PostgreSQL lookups: 2, or 1 if
/// `max_connections` is 2 or less.
pub(super) fn pg_load_connections(max_connections: u32) -> usize {
    (max_connections as usize).saturating_sub(1).clamp(1, 2)
}
