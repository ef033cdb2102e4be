//! The database: users, the session index, and the session store handed to
//! `tower-sessions`.
//!
//! [`Store`] is the interface the rest of the app uses. Users and the index
//! live in SQLite (embedded, under `DATA_DIR`, the default) or PostgreSQL;
//! sessions live there too, or in Redis. Every operation has a timeout, so
//! an unreachable store is an error within `STORE_TIMEOUT`, never a hang.

mod batched_loads;
mod binds;
mod dedicated;
mod listing;
mod login;
mod postgres;
mod record;
mod session_cache;
mod sessions;
mod sqlite;
mod sqlite_files;
mod token_slots;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use listing::{SESSION_CACHE_RECHECK, SessionEntry};
pub use login::LoginWrites;
pub use sessions::SessionBackend;

use tower_sessions::Session;

use crate::config::{StoreConfig, StoreUrl};
use crate::metrics::{StoreMetrics, StoreOp};
use record::bounded;
use sqlite_files::Sharing;

/// A storage failure (the database is unreachable, full, or corrupt).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database answered with an error or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the schema migrations failed.
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The session store failed.
    #[error("session store error: {0}")]
    Session(String),
    /// The store did not answer within the timeout.
    #[error("store did not answer within {0:?}")]
    Timeout(Duration),
    /// The configuration cannot be used (e.g. Redis for users).
    #[error("{0}")]
    Config(String),
    /// The data directory or a database file in it could not be created.
    #[error("cannot create {path} (DATA_DIR): {source}")]
    DataDir {
        /// The directory or file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A PostgreSQL database could not be reached at start-up.
    #[error("cannot connect to PostgreSQL at {target} ({var}): {why}")]
    Unreachable {
        /// The setting that names it: `DATABASE_URL` or `SESSION_STORE_URL`.
        var: &'static str,
        /// Host and port (or socket path).
        target: String,
        /// Why, in words.
        why: String,
    },
    /// Another process holds the SQLite database.
    #[error(
        "another oidc-gate process is using the SQLite database {database}: two processes cannot share \
         a DATA_DIR (or an SQLite file named in DATABASE_URL or SESSION_STORE_URL); stop the other one \
         first, or give this one a DATA_DIR of its own"
    )]
    InUse {
        /// The database file.
        database: String,
    },
}

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct UserRow {
    /// Our id for the user.
    pub id: i64,
    /// The provider's issuer.
    pub issuer: String,
    /// The provider's subject identifier.
    pub subject: String,
    /// Email address, if the provider shared it.
    pub email: Option<String>,
    /// Whether the provider verified the email address.
    pub email_verified: Option<bool>,
    /// Display name.
    pub name: Option<String>,
    /// Picture URL.
    pub picture: Option<String>,
    /// First sign-in (Unix seconds).
    pub created_at: i64,
    /// Latest sign-in (Unix seconds).
    pub last_login_at: i64,
}

/// Profile data from a sign-in, to create or update a user.
#[derive(Debug, Clone)]
pub struct UserProfile<'a> {
    /// The provider's issuer.
    pub issuer: &'a str,
    /// The provider's subject identifier.
    pub subject: &'a str,
    /// Email address.
    pub email: Option<&'a str>,
    /// Whether the email address is verified.
    pub email_verified: Option<bool>,
    /// Display name.
    pub name: Option<&'a str>,
    /// Picture URL.
    pub picture: Option<&'a str>,
}

/// One session's link to a provider login.
#[derive(Debug, Clone)]
pub struct SessionLink<'a> {
    /// The session id (as in the session store).
    pub session_id: &'a str,
    /// The provider's issuer.
    pub issuer: &'a str,
    /// The provider's subject identifier.
    pub subject: &'a str,
    /// The provider's session id (`sid`), if any.
    pub sid: Option<&'a str>,
    /// When the session ends at the latest (Unix seconds).
    pub expires_at: i64,
    /// The raw ID token of the login, for `id_token_hint` at logout.
    pub id_token: Option<&'a str>,
    /// When and from where it signed in, for the "Your sessions" page.
    pub from: &'a SignedInFrom,
}

/// When a session signed in, and the browser and address it came from, as
/// the "Your sessions" page shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignedInFrom {
    /// Sign-in time (Unix seconds).
    pub started_at: i64,
    /// The browser's `User-Agent`, cut to [`SignedInFrom::MAX_USER_AGENT`] bytes.
    pub user_agent: Option<String>,
    /// The client's address ([`crate::web::ClientIp`]).
    pub client_ip: Option<String>,
}

impl SignedInFrom {
    /// The most of a `User-Agent` kept: real ones are a few hundred bytes.
    pub const MAX_USER_AGENT: usize = 512;

    /// From a sign-in's request: its `User-Agent` (cut on a character
    /// boundary) and client address.
    pub fn new(started_at: i64, user_agent: Option<&str>, client_ip: std::net::IpAddr) -> Self {
        let user_agent = user_agent.map(|ua| {
            let mut end = ua.len().min(Self::MAX_USER_AGENT);
            while !ua.is_char_boundary(end) {
                end -= 1;
            }
            ua[..end].to_owned()
        });
        Self {
            started_at,
            user_agent,
            client_ip: Some(client_ip.to_string()),
        }
    }
}

/// Handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
    sessions: SessionBackend,
    /// Whether sessions live in the database of users and links, so that a
    /// login's writes can be one transaction ([`Store::save_login`]).
    sessions_share_db: bool,
    timeout: Duration,
    login_cookie_key: KeyBytes,
    /// The locks of the SQLite databases this process owns.
    locks: Arc<[sqlite_files::DbLock]>,
    /// The database's operations in the metrics.
    metrics: StoreMetrics,
}

/// Bytes of the key that encrypts the login-in-progress cookie.
pub const LOGIN_COOKIE_KEY_BYTES: usize = 64;

/// Key material, never printed.
#[derive(Clone)]
struct KeyBytes(Arc<[u8]>);

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Clone, Debug)]
enum Db {
    Sqlite(sqlite::SqliteDb),
    Postgres(sqlx::PgPool),
}

impl Store {
    /// Opens the configured stores (creating the SQLite file or the
    /// PostgreSQL schema if needed) and applies migrations.
    ///
    /// An SQLite database is locked for this process (see [`Store::release_lock`]);
    /// one that another process holds is refused with [`StoreError::InUse`].
    pub async fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        Self::open_shared(config, Sharing::Exclusive).await
    }

    /// Opens the configured stores as [`Store::open`] does, but alongside
    /// the running servers of an SQLite database (whose lock it does not
    /// need), and without a session cache: for `oidc-gate sessions`.
    pub async fn open_alongside(config: &StoreConfig) -> Result<Self, StoreError> {
        let config = StoreConfig {
            session_cache: 0,
            ..config.clone()
        };
        Self::open_shared(&config, Sharing::Alongside).await
    }

    async fn open_shared(config: &StoreConfig, sharing: Sharing) -> Result<Self, StoreError> {
        let mut locks = Vec::new();
        let db = open_db(
            &config.database,
            "DATABASE_URL",
            config,
            config.sessions.is_none(),
            (sharing, &mut locks),
        )
        .await?;
        let (sessions, sessions_share_db) = match (&config.sessions, &db) {
            (None, Db::Sqlite(db)) => (SessionBackend::sqlite(db.clone(), config), true),
            (None, Db::Postgres(pool)) => (SessionBackend::postgres(pool.clone(), config).await?, true),
            // The database's own file: one writer, one lock.
            (Some(StoreUrl::Sqlite(path)), Db::Sqlite(db)) if same_sqlite_file(path, &config.database) => {
                (SessionBackend::sqlite(db.clone(), config), true)
            }
            (Some(url), _) => {
                let sessions = match open_db(url, "SESSION_STORE_URL", config, true, (sharing, &mut locks)).await {
                    Ok(Db::Sqlite(db)) => SessionBackend::sqlite(db, config),
                    Ok(Db::Postgres(pool)) => SessionBackend::postgres(pool, config).await?,
                    Err(StoreError::Config(_)) => SessionBackend::redis(url, config).await?,
                    Err(e) => return Err(e),
                };
                (sessions, false)
            }
        };
        let timeout = match db {
            Db::Sqlite(_) => sqlite::op_timeout(config),
            Db::Postgres(_) => config.timeout,
        };
        let metrics = StoreMetrics::new(match db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        });
        let mut store = Self {
            metrics,
            db,
            sessions,
            sessions_share_db,
            timeout,
            login_cookie_key: KeyBytes(Arc::new([])),
            locks: locks.into(),
        };
        store.login_cookie_key = KeyBytes(store.shared_key("login_cookie", LOGIN_COOKIE_KEY_BYTES).await?.into());
        Ok(store)
    }

    /// The key `name` shared by every instance on this database: made of
    /// `len` random bytes by the first instance to ask, then read back.
    async fn shared_key(&self, name: &str, len: usize) -> Result<Vec<u8>, StoreError> {
        let mut candidate = vec![0u8; len];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut candidate);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let key = bounded(self.timeout, async {
            match &self.db {
                Db::Sqlite(db) => sqlite::shared_key(db, name, &candidate, now).await,
                Db::Postgres(pool) => postgres::shared_key(pool, name, &candidate, now).await,
            }
        })
        .await?;
        if key.len() != len {
            return Err(StoreError::Config(format!(
                "shared key {name:?} in the database has {} bytes, not {len}",
                key.len()
            )));
        }
        Ok(key)
    }

    /// The key of the login-in-progress cookie
    /// ([`LOGIN_COOKIE_KEY_BYTES`] bytes), the same on every instance
    /// sharing this database.
    pub fn login_cookie_key(&self) -> &[u8] {
        &self.login_cookie_key.0
    }

    /// Lets another process open this store's SQLite databases: the server
    /// calls it when it stops (clones of this handle may outlive it). Writes
    /// through this handle are no longer exclusive afterwards.
    pub fn release_lock(&self) {
        for lock in self.locks.iter() {
            lock.release();
        }
    }

    /// Runs a database operation with the timeout, timed in the metrics.
    async fn op<T>(&self, op: StoreOp, fut: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        self.metrics.timed(op, bounded(self.timeout, fut)).await
    }

    /// The session store for `tower-sessions`.
    pub fn session_backend(&self) -> SessionBackend {
        self.sessions.clone()
    }

    /// Checks that the database and the session store answer.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.op(StoreOp::Ping, async {
            match &self.db {
                Db::Sqlite(db) => sqlite::ping(db).await,
                Db::Postgres(pool) => postgres::ping(pool).await,
            }
        })
        .await?;
        self.sessions.ping().await
    }

    /// Creates the user or updates their profile and last sign-in time.
    pub async fn upsert_user(&self, profile: &UserProfile<'_>, now: i64) -> Result<UserRow, StoreError> {
        self.op(StoreOp::UpsertUser, async {
            match &self.db {
                Db::Sqlite(db) => sqlite::upsert_user(db, profile, now).await,
                Db::Postgres(pool) => Ok(postgres::upsert_user(pool, profile, now).await?),
            }
        })
        .await
    }

    /// Saves `session`, new and not yet saved, with the rest of a login:
    /// the user's profile (the session is signed in as that user, by
    /// `writes.signed_in`) and the session's link, in one transaction.
    /// Returns the user, or `None`, having written nothing, when sessions
    /// live apart from links (in Redis or another database): the caller then
    /// writes them one after another.
    pub async fn save_login(&self, session: &Session, writes: LoginWrites) -> Result<Option<UserRow>, StoreError> {
        if !self.sessions_share_db {
            return Ok(None);
        }
        let row = login::with_login(writes, session.save())
            .await
            .map_err(|e| StoreError::Session(e.to_string()))?;
        // A session saved before would have been updated, not created.
        row.map(Some)
            .ok_or_else(|| StoreError::Session("the login's session was saved before".into()))
    }

    /// The user with our id `id`.
    pub async fn user(&self, id: i64) -> Result<Option<UserRow>, StoreError> {
        self.op(StoreOp::User, async {
            match &self.db {
                Db::Sqlite(db) => sqlite::user(db, id).await,
                Db::Postgres(pool) => postgres::user(pool, id).await,
            }
        })
        .await
    }

    /// Records which provider login a session belongs to.
    pub async fn link_session(&self, link: &SessionLink<'_>) -> Result<(), StoreError> {
        self.op(StoreOp::LinkSession, async {
            match &self.db {
                Db::Sqlite(db) => sqlite::link_session(db, link).await,
                Db::Postgres(pool) => Ok(postgres::link_session(pool, link).await?),
            }
        })
        .await
    }

    /// Forgets a session's link (it was logged out); returns its ID token.
    pub async fn unlink_session(&self, session_id: &str) -> Result<Option<String>, StoreError> {
        self.op(StoreOp::UnlinkSession, async {
            match &self.db {
                Db::Sqlite(db) => sqlite::unlink_session(db, session_id).await,
                Db::Postgres(pool) => postgres::unlink_session(pool, session_id).await,
            }
        })
        .await
    }

    /// The link of `session_id`: `None` if it has none (never linked, or
    /// logged out since), else the ID token kept with it, if any.
    pub async fn session_link(&self, session_id: &str) -> Result<Option<Option<String>>, StoreError> {
        self.op(StoreOp::SessionLink, async {
            match &self.db {
                Db::Sqlite(db) => sqlite::session_link(db, session_id).await,
                Db::Postgres(pool) => postgres::session_link(pool, session_id).await,
            }
        })
        .await
    }

    /// Session ids of a provider session (`sid`, and `subject` if given), or of
    /// every session of `subject` when `sid` is `None`.
    pub async fn linked_sessions(
        &self,
        issuer: &str,
        subject: Option<&str>,
        sid: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        if subject.is_none() && sid.is_none() {
            return Ok(Vec::new());
        }
        self.op(StoreOp::LinkedSessions, async {
            match &self.db {
                Db::Sqlite(db) => sqlite::linked_sessions(db, issuer, subject, sid).await,
                Db::Postgres(pool) => postgres::linked_sessions(pool, issuer, subject, sid).await,
            }
        })
        .await
    }

    /// Records a back-channel logout token id; `false` if it was seen before (a replay).
    pub async fn remember_logout_jti(&self, issuer: &str, jti: &str, expires_at: i64) -> Result<bool, StoreError> {
        self.op(StoreOp::RememberLogoutJti, async {
            match &self.db {
                Db::Sqlite(db) => sqlite::remember_logout_jti(db, issuer, jti, expires_at).await,
                Db::Postgres(pool) => postgres::remember_logout_jti(pool, issuer, jti, expires_at).await,
            }
        })
        .await
    }

    /// Forgets a back-channel logout token id, so that the provider's retry
    /// of a logout that failed half-way is not taken for a replay.
    pub async fn forget_logout_jti(&self, issuer: &str, jti: &str) -> Result<(), StoreError> {
        self.op(StoreOp::ForgetLogoutJti, async {
            match &self.db {
                Db::Sqlite(db) => sqlite::forget_logout_jti(db, issuer, jti).await,
                Db::Postgres(pool) => postgres::forget_logout_jti(pool, issuer, jti).await,
            }
        })
        .await
    }

    /// Deletes expired session links and logout token ids; returns how many.
    pub async fn delete_expired_links(&self, now: i64) -> Result<u64, StoreError> {
        self.op(StoreOp::DeleteExpiredLinks, async {
            match &self.db {
                Db::Sqlite(db) => sqlite::delete_expired_links(db, now).await,
                Db::Postgres(pool) => postgres::delete_expired_links(pool, now).await,
            }
        })
        .await
    }

    /// Runs expired-session cleanup every `period` until dropped. Deletes in
    /// small batches by indexed expiry, so requests are never blocked.
    pub async fn clean_up_forever(self, period: Duration, clock: crate::clock::Clock) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.sessions.delete_expired_now().await {
                tracing::warn!(error = %e, "expired session cleanup failed");
            }
            if let Err(e) = self.delete_expired_links(clock.unix()).await {
                tracing::warn!(error = %e, "expired session link cleanup failed");
            }
        }
    }
}

/// Opens the database at `url`, named by the setting `var`, for sessions
/// too if `with_sessions`; an SQLite database's lock goes to `locks`.
async fn open_db(
    url: &StoreUrl,
    var: &'static str,
    config: &StoreConfig,
    with_sessions: bool,
    (sharing, locks): (Sharing, &mut Vec<sqlite_files::DbLock>),
) -> Result<Db, StoreError> {
    match url {
        StoreUrl::Sqlite(path) => {
            locks.push(sqlite_files::prepare(path, sharing)?);
            Ok(Db::Sqlite(
                bounded(config.timeout * 10, sqlite::open(path, config)).await?,
            ))
        }
        StoreUrl::Postgres(url) => Ok(Db::Postgres(
            bounded(
                config.timeout * 10,
                postgres::open(url.expose(), var, config, with_sessions),
            )
            .await?,
        )),
        StoreUrl::Redis(_) => Err(StoreError::Config("Redis can hold sessions only".into())),
    }
}

/// Whether `path` is the SQLite file of `database` (which is open, so exists).
fn same_sqlite_file(path: &std::path::Path, database: &StoreUrl) -> bool {
    let StoreUrl::Sqlite(database) = database else {
        return false;
    };
    match (std::fs::canonicalize(path), std::fs::canonicalize(database)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
