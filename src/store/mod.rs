//! The database: users, the session index, and the session store handed to
//! `tower-sessions`.
//!
//! [`Store`] is the interface the rest of the app uses; SQLite (embedded,
//! under `DATA_DIR`) is its first implementation.

mod sessions;
mod sqlite;

use std::path::Path;
use std::time::Duration;

pub use sessions::SessionBackend;

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
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
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
}

/// Handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
}

#[derive(Clone, Debug)]
enum Db {
    Sqlite(sqlx::SqlitePool),
}

impl Store {
    /// Opens (creating if needed) the embedded SQLite database in `data_dir`
    /// and applies migrations.
    pub async fn open_sqlite(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let pool = sqlite::open(&data_dir.join("oidc-gate.sqlite3")).await?;
        Ok(Self { db: Db::Sqlite(pool) })
    }

    /// The session store for `tower-sessions`, in the same database.
    pub fn session_backend(&self) -> SessionBackend {
        match &self.db {
            Db::Sqlite(pool) => SessionBackend::sqlite(pool.clone()),
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &self.db {
            Db::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop)?,
        }
        Ok(())
    }

    /// Creates the user or updates their profile and last sign-in time.
    pub async fn upsert_user(&self, profile: &UserProfile<'_>, now: i64) -> Result<UserRow, StoreError> {
        match &self.db {
            Db::Sqlite(pool) => sqlite::upsert_user(pool, profile, now).await,
        }
    }

    /// The user with our id `id`.
    pub async fn user(&self, id: i64) -> Result<Option<UserRow>, StoreError> {
        match &self.db {
            Db::Sqlite(pool) => sqlite::user(pool, id).await,
        }
    }

    /// The user signed in as `subject` at `issuer`.
    pub async fn user_by_subject(&self, issuer: &str, subject: &str) -> Result<Option<UserRow>, StoreError> {
        match &self.db {
            Db::Sqlite(pool) => sqlite::user_by_subject(pool, issuer, subject).await,
        }
    }

    /// Records which provider login a session belongs to.
    pub async fn link_session(&self, link: &SessionLink<'_>) -> Result<(), StoreError> {
        match &self.db {
            Db::Sqlite(pool) => sqlite::link_session(pool, link).await,
        }
    }

    /// Forgets a session's link (it was logged out).
    pub async fn unlink_session(&self, session_id: &str) -> Result<(), StoreError> {
        match &self.db {
            Db::Sqlite(pool) => sqlite::unlink_session(pool, session_id).await,
        }
    }

    /// Session ids of a provider session (`sid`), or of every session of
    /// `subject` when `sid` is `None`.
    pub async fn linked_sessions(
        &self,
        issuer: &str,
        subject: Option<&str>,
        sid: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        match &self.db {
            Db::Sqlite(pool) => sqlite::linked_sessions(pool, issuer, subject, sid).await,
        }
    }

    /// Records a back-channel logout token id; `false` if it was seen before (a replay).
    pub async fn remember_logout_jti(&self, issuer: &str, jti: &str, expires_at: i64) -> Result<bool, StoreError> {
        match &self.db {
            Db::Sqlite(pool) => sqlite::remember_logout_jti(pool, issuer, jti, expires_at).await,
        }
    }

    /// Deletes expired session links and logout token ids; returns how many.
    pub async fn delete_expired_links(&self, now: i64) -> Result<u64, StoreError> {
        match &self.db {
            Db::Sqlite(pool) => sqlite::delete_expired_links(pool, now).await,
        }
    }

    /// Runs expired-session cleanup every `period` until dropped.
    pub async fn clean_up_forever(self, period: Duration, clock: crate::clock::Clock) {
        let sessions = self.session_backend();
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = sessions.delete_expired_now().await {
                tracing::warn!(error = %e, "expired session cleanup failed");
            }
            if let Err(e) = self.delete_expired_links(clock.unix()).await {
                tracing::warn!(error = %e, "expired session link cleanup failed");
            }
        }
    }
}
