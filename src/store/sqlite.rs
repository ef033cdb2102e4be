//! The embedded SQLite implementation of [`super::Store`].

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqliteConnection, SqlitePool};

use super::dedicated::{Cancelled, Dedicated};
use super::record::{backend, encode};
use super::session_cache::{ChangedElsewhere, SaveExisting};
use super::{SessionLink, StoreError, UserProfile, UserRow};
use crate::config::StoreConfig;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};
use tower_sessions_sqlx_store::SqliteStore;

/// Most SQLite connections (the writer and the readers), whatever
/// `DATABASE_MAX_CONNECTIONS` says.
const SQLITE_MAX_CONNECTIONS: u32 = 4;

/// The bound on a whole SQLite operation: longer than SQLite's own wait for
/// the write lock, so that a contended write fails (or succeeds) inside
/// SQLite rather than being cancelled half-way through a transaction.
pub(super) fn op_timeout(config: &StoreConfig) -> Duration {
    config.timeout + Duration::from_secs(2)
}

/// The embedded database: one connection that writes, and a few that read.
///
/// SQLite lets one connection write at a time, so every write goes through
/// `writer`. A writer of its own keeps its page cache: SQLite drops a
/// connection's whole cache when another connection has written since its
/// last read, which happened on nearly every statement while writes were
/// spread over the pool (a login cost about 15% less CPU in the benchmark
/// with one writer). Writers also no longer wait for each other in SQLite's
/// busy handler, which sleeps; they queue for the one connection instead.
#[derive(Clone, Debug)]
pub(super) struct SqliteDb {
    pub(super) writer: Writer,
    pub(super) reader: SqlitePool,
}

impl SqliteDb {
    /// The read-only connections.
    pub(super) fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// Runs a write on the writer.
    pub(super) async fn write<T>(
        &self,
        op: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, StoreError> {
        Ok(self.writer.run(op).await?)
    }
}

/// The connection every write goes through, outside any pool (see
/// [`Dedicated`]). A write cancelled half-way (a timeout) still ends before
/// the next begins; a connection whose thread died is opened again.
type Writer = Dedicated<SqliteConnection>;

/// Opens the database file with WAL journaling and bounded waits, and
/// migrates it (ours and the `tower-sessions` table).
pub(super) async fn open(path: &Path, config: &StoreConfig) -> Result<SqliteDb, StoreError> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(config.timeout)
        .foreign_keys(true)
        // 1 MiB of page cache per connection (SQLite's default is 2 MiB) and
        // at most 4 connections: every connection is a thread with its own cache.
        .pragma("cache_size", "-1024");
    let pool = |max: u32| {
        SqlitePoolOptions::new()
            .max_connections(max)
            .acquire_timeout(config.timeout)
            // A local file cannot be cut off like a network connection: no ping
            // (a round trip to the connection's thread) before every query.
            .test_before_acquire(false)
    };
    // WAL readers do not block each other or the writer.
    let readers = config
        .max_connections
        .min(SQLITE_MAX_CONNECTIONS)
        .saturating_sub(1)
        .max(1);
    // The schema, before anything else runs, on a connection of its own:
    // the migrators take a pool.
    let migrating = pool(1).connect_with(options.clone()).await?;
    SqliteStore::new(migrating.clone()).migrate().await?;
    sqlx::migrate!("./migrations/sqlite").run(&migrating).await?;
    sqlx::query("CREATE INDEX IF NOT EXISTS tower_sessions_by_expiry ON tower_sessions (expiry_date)")
        .execute(&migrating)
        .await?;
    sqlx::query(super::token_slots::SQLITE_CREATE)
        .execute(&migrating)
        .await?;
    migrating.close().await;
    let writer = Writer::open(options.clone(), Cancelled::Keep).await?;
    // Readers cannot write: every write is the writer's.
    let reader = pool(readers).connect_with(options.read_only(true)).await?;
    Ok(SqliteDb { writer, reader })
}

pub(super) async fn ping(db: &SqliteDb) -> Result<(), StoreError> {
    sqlx::query("SELECT 1").execute(&db.reader).await?;
    Ok(())
}

pub(super) async fn upsert_user(db: &SqliteDb, p: &UserProfile<'_>, now: i64) -> Result<UserRow, StoreError> {
    Ok(db.writer.run(async |c| upsert_user_on(c, p, now).await).await?)
}

/// The statement that creates or updates a user, returning its row: its
/// parameters are those [`super::binds::user`] binds, `?1` to `?7`. A macro, so that
/// a login can send it with the start of its transaction as one query
/// ([`super::login::in_sqlite`]).
macro_rules! upsert_user_sql {
    () => {
        "INSERT INTO users (issuer, subject, email, email_verified, name, picture, created_at, last_login_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
         ON CONFLICT (issuer, subject) DO UPDATE SET
             email = excluded.email, email_verified = excluded.email_verified,
             name = excluded.name, picture = excluded.picture, last_login_at = excluded.last_login_at
         RETURNING *"
    };
}
pub(super) use upsert_user_sql;

/// Creates or updates the user on `c` (the writer).
async fn upsert_user_on(c: &mut SqliteConnection, p: &UserProfile<'_>, now: i64) -> Result<UserRow, sqlx::Error> {
    let rows: Vec<UserRow> = super::binds::user(sqlx::query_as(upsert_user_sql!()), p, now)
        // fetch_all, not fetch_one: a RETURNING statement holds SQLite's write
        // lock until it is stepped to the end, and fetch_one stops at the first row.
        .fetch_all(c)
        .await?;
    rows.into_iter().next().ok_or(sqlx::Error::RowNotFound)
}

pub(super) async fn user(db: &SqliteDb, id: i64) -> Result<Option<UserRow>, StoreError> {
    Ok(sqlx::query_as("SELECT * FROM users WHERE id = ?1")
        .bind(id)
        .fetch_optional(&db.reader)
        .await?)
}

pub(super) async fn link_session(db: &SqliteDb, l: &SessionLink<'_>) -> Result<(), StoreError> {
    Ok(db.writer.run(async |c| link_session_on(c, l).await).await?)
}

/// The statement that writes a link: its parameters are those [`super::binds::link`]
/// binds, `?1` to `?9`. A macro, so that a login can send it with its
/// session's insert as one query ([`super::login::in_sqlite`]).
macro_rules! link_sql {
    () => {
        "INSERT INTO session_index (session_id, issuer, subject, sid, expires_at, id_token,
             started_at, user_agent, client_ip)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (session_id) DO UPDATE SET issuer = excluded.issuer, subject = excluded.subject,
             sid = excluded.sid, expires_at = excluded.expires_at, id_token = excluded.id_token,
             started_at = excluded.started_at, user_agent = excluded.user_agent, client_ip = excluded.client_ip"
    };
}
pub(super) use link_sql;

/// Writes the link on `c` (the writer).
async fn link_session_on(c: &mut SqliteConnection, l: &SessionLink<'_>) -> Result<(), sqlx::Error> {
    super::binds::link(sqlx::query(link_sql!()), l)
        .execute(c)
        .await
        .map(drop)
}

pub(super) async fn unlink_session(db: &SqliteDb, session_id: &str) -> Result<Option<String>, StoreError> {
    // fetch_all: see upsert_user, RETURNING must be stepped to the end.
    let rows: Vec<(Option<String>,)> = db
        .writer
        .run(async |c| {
            sqlx::query_as("DELETE FROM session_index WHERE session_id = ?1 RETURNING id_token")
                .bind(session_id)
                .fetch_all(c)
                .await
        })
        .await?;
    Ok(rows.into_iter().next().and_then(|(t,)| t))
}

/// The link of `session_id`, if any, with its ID token.
pub(super) async fn session_link(db: &SqliteDb, session_id: &str) -> Result<Option<Option<String>>, StoreError> {
    let row: Option<(Option<String>,)> = sqlx::query_as("SELECT id_token FROM session_index WHERE session_id = ?1")
        .bind(session_id)
        .fetch_optional(&db.reader)
        .await?;
    Ok(row.map(|(t,)| t))
}

/// Sessions of a provider session (`sid`, narrowed to `subject` if given),
/// or of every session of `subject`. The caller passes at least one.
pub(super) async fn linked_sessions(
    db: &SqliteDb,
    issuer: &str,
    subject: Option<&str>,
    sid: Option<&str>,
) -> Result<Vec<String>, StoreError> {
    let query = if sid.is_some() {
        "SELECT session_id FROM session_index WHERE issuer = ?1 AND sid = ?2 AND (?3 IS NULL OR subject = ?3)"
    } else {
        "SELECT session_id FROM session_index WHERE issuer = ?1 AND subject = ?3"
    };
    let rows: Vec<(String,)> = sqlx::query_as(query)
        .bind(issuer)
        .bind(sid)
        .bind(subject)
        .fetch_all(&db.reader)
        .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// The shared key `name`: `candidate` if no instance stored one before.
pub(super) async fn shared_key(db: &SqliteDb, name: &str, candidate: &[u8], now: i64) -> Result<Vec<u8>, StoreError> {
    let (value,): (Vec<u8>,) = db
        .writer
        .run(async |c| {
            sqlx::query(
                "INSERT INTO shared_keys (name, value, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(candidate)
            .bind(now)
            .execute(&mut *c)
            .await?;
            sqlx::query_as("SELECT value FROM shared_keys WHERE name = ?1")
                .bind(name)
                .fetch_one(c)
                .await
        })
        .await?;
    Ok(value)
}

pub(super) async fn remember_logout_jti(
    db: &SqliteDb,
    issuer: &str,
    jti: &str,
    expires_at: i64,
) -> Result<bool, StoreError> {
    let done = db
        .writer
        .run(async |c| {
            sqlx::query("INSERT INTO logout_jti (issuer, jti, expires_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING")
                .bind(issuer)
                .bind(jti)
                .bind(expires_at)
                .execute(c)
                .await
        })
        .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn forget_logout_jti(db: &SqliteDb, issuer: &str, jti: &str) -> Result<(), StoreError> {
    db.writer
        .run(async |c| {
            sqlx::query("DELETE FROM logout_jti WHERE issuer = ?1 AND jti = ?2")
                .bind(issuer)
                .bind(jti)
                .execute(c)
                .await
        })
        .await?;
    Ok(())
}

/// Deletes expired session links and remembered logout token ids.
pub(super) async fn delete_expired_links(db: &SqliteDb, now: i64) -> Result<u64, StoreError> {
    let delete = async |sql: &str| {
        db.writer
            .run(async |c| sqlx::query(sql).bind(now).execute(c).await)
            .await
    };
    let links = delete("DELETE FROM session_index WHERE expires_at < ?1").await?;
    let jtis = delete("DELETE FROM logout_jti WHERE expires_at < ?1").await?;
    Ok(links.rows_affected() + jtis.rows_affected())
}

/// Deletes at most `limit` expired sessions, by the indexed expiry, so the
/// write lock is never held for long (tower-sessions' own cleanup scans the
/// whole table in one statement); returns how many.
pub(super) async fn delete_expired_sessions(db: &SqliteDb, limit: u64) -> Result<u64, sqlx::Error> {
    // Compared as tower-sessions stores and loads it (text, UTC).
    let now = time::OffsetDateTime::now_utc();
    db.writer
        .run(async |c| {
            sqlx::query(
                "DELETE FROM tower_sessions WHERE id IN
                     (SELECT id FROM tower_sessions WHERE expiry_date < ?1 LIMIT ?2)",
            )
            .bind(now)
            .bind(limit as i64)
            .execute(c)
            .await
        })
        .await
        .map(|done| done.rows_affected())
}

/// `tower-sessions-sqlx-store`'s SQLite session store, creating sessions in
/// one statement: its own `create` wraps the one-row insert in `BEGIN` …
/// `COMMIT`, two more round trips to the connection's thread, to retry an
/// id collision inside the transaction, which a single `INSERT OR ABORT`
/// detects as well. Rows are written exactly as that store writes them (the
/// record in MessagePack), and loaded by it through the database's readers.
/// A save only updates a session that is still there: `tower-sessions`
/// creates new sessions with `create`, so a save that finds no row was
/// racing a logout, and must not bring the session back.
#[derive(Clone, Debug)]
pub(super) struct SqliteSessions {
    loads: SqliteStore,
    writer: Writer,
    reader: SqlitePool,
}

impl SqliteSessions {
    pub(super) fn new(db: &SqliteDb) -> Self {
        Self {
            loads: SqliteStore::new(db.reader.clone()),
            writer: db.writer.clone(),
            reader: db.reader.clone(),
        }
    }
}

impl ChangedElsewhere for SqliteSessions {
    async fn generation(&self) -> session_store::Result<i64> {
        let (generation,): (i64,) = sqlx::query_as("SELECT generation FROM session_revocations WHERE id = 1")
            .fetch_one(&self.reader)
            .await
            .map_err(backend)?;
        Ok(generation)
    }
}

/// Tells the session caches of the servers on this database that another
/// process (`oidc-gate sessions end`) ended sessions (see [`ChangedElsewhere`]).
pub(super) async fn note_sessions_ended_elsewhere(db: &SqliteDb) -> Result<(), StoreError> {
    db.writer
        .run(async |c| {
            sqlx::query("UPDATE session_revocations SET generation = generation + 1 WHERE id = 1")
                .execute(c)
                .await
        })
        .await?;
    Ok(())
}

impl SqliteSessions {
    /// Runs `sql` on the writer with `record`'s id, its encoded `data` and
    /// its expiry as `?1`, `?2` and `?3`, as `tower-sessions-sqlx-store`
    /// writes them; returns the rows changed.
    async fn write(&self, sql: &str, record: &Record, data: Vec<u8>) -> Result<u64, sqlx::Error> {
        self.writer
            .run(async |c| {
                sqlx::query(sql)
                    .bind(record.id.to_string())
                    .bind(data)
                    .bind(record.expiry_date)
                    .execute(c)
                    .await
            })
            .await
            .map(|done| done.rows_affected())
    }
}

impl SaveExisting for SqliteSessions {
    async fn save_existing(&self, record: &Record) -> session_store::Result<bool> {
        let sql = "UPDATE tower_sessions SET data = ?2, expiry_date = ?3 WHERE id = ?1";
        let updated = self.write(sql, record, encode(record)?).await.map_err(backend)?;
        Ok(updated == 1)
    }
}

#[async_trait]
impl SessionStore for SqliteSessions {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        if let Some(login) = super::login::take() {
            let done = self
                .writer
                .run_or_close(async |c| super::login::in_sqlite(c, record, &login).await);
            return done.await.map_err(backend);
        }
        loop {
            let sql = "INSERT OR ABORT INTO tower_sessions (id, data, expiry_date) VALUES (?1, ?2, ?3)";
            let done = self.write(sql, record, encode(record)?).await;
            match done {
                Ok(_) => return Ok(()),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => record.id = Id::default(),
                Err(e) => return Err(backend(e)),
            }
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.save_existing(record).await.map(drop)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        self.loads.load(id).await
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.writer
            .run(async |c| {
                sqlx::query("DELETE FROM tower_sessions WHERE id = ?1")
                    .bind(id.to_string())
                    .execute(c)
                    .await
            })
            .await
            .map(drop)
            .map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    async fn open_in(dir: &tempfile::TempDir) -> SqliteDb {
        let config = crate::config::sqlite_for_tests(dir.path());
        open(&dir.path().join("db.sqlite3"), &config).await.unwrap()
    }

    #[tokio::test]
    async fn readers_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_in(&dir).await;
        let err = sqlx::query("DELETE FROM tower_sessions")
            .execute(&db.reader)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("readonly"), "{err}");
        let done = db
            .writer
            .run(async |c| sqlx::query("DELETE FROM tower_sessions").execute(c).await);
        done.await.unwrap();
    }

    #[tokio::test]
    async fn sessions_are_created_as_the_store_reads_them_and_never_over_another() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_in(&dir).await;
        let sessions = SqliteSessions::new(&db);
        let pool = db.reader.clone();
        let mut first = Record {
            id: Id::default(),
            data: HashMap::from([("k".to_owned(), serde_json::json!("first"))]),
            expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        };
        sessions.create(&mut first).await.unwrap();
        // Read back by tower-sessions-sqlx-store itself.
        let store = SqliteStore::new(pool.clone());
        assert_eq!(store.load(&first.id).await.unwrap(), Some(first.clone()));

        let mut second = first.clone();
        second.data.insert("k".into(), serde_json::json!("second"));
        sessions.create(&mut second).await.unwrap();
        assert_ne!(second.id, first.id, "a colliding id is replaced");
        assert_eq!(store.load(&first.id).await.unwrap(), Some(first));
        assert_eq!(store.load(&second.id).await.unwrap(), Some(second));
    }
}
