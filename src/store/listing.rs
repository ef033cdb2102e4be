//! A person's sessions, as the "Your sessions" page and `oidc-gate sessions`
//! list and end them: read from the session index (which every instance
//! shares), each session's activity from its record in the session store.

use std::str::FromStr;

use tower_sessions::SessionStore;
use tower_sessions::session::{Id, Record};

use super::{Db, Store, StoreError, UserRow};
use crate::metrics::StoreOp;

pub use super::session_cache::SESSION_CACHE_RECHECK;

/// One signed-in session as the session index knows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionEntry {
    /// The session id (as in the session store): a secret of its browser,
    /// never shown.
    pub session_id: String,
    /// The provider's issuer.
    pub issuer: String,
    /// The provider's subject identifier.
    pub subject: String,
    /// Sign-in time (Unix seconds); `None` for sessions from before it was kept.
    pub started_at: Option<i64>,
    /// The browser's `User-Agent` at sign-in.
    pub user_agent: Option<String>,
    /// The client address at sign-in.
    pub client_ip: Option<String>,
    /// When the session ends at the latest (Unix seconds).
    pub expires_at: i64,
    /// The person's email address, if the provider shared it.
    pub email: Option<String>,
}

/// The most sessions one listing returns.
const MOST_LISTED: i64 = 10_000;

/// The columns of a [`SessionEntry`], from the index `s` and the users `u`.
const COLUMNS: &str = "s.session_id, s.issuer, s.subject, s.started_at, s.user_agent, s.client_ip, s.expires_at, \
                       u.email";

/// The index joined with the users, for their email addresses.
const FROM: &str = "session_index s LEFT JOIN users u ON u.issuer = s.issuer AND u.subject = s.subject";

impl Store {
    /// The sessions of the person (`issuer`, `subject`), oldest first.
    pub async fn sessions_of(&self, issuer: &str, subject: &str) -> Result<Vec<SessionEntry>, StoreError> {
        self.list(Some((issuer, subject))).await
    }

    /// Every signed-in session, by person then age (at most 10,000).
    pub async fn all_sessions(&self) -> Result<Vec<SessionEntry>, StoreError> {
        self.list(None).await
    }

    async fn list(&self, of: Option<(&str, &str)>) -> Result<Vec<SessionEntry>, StoreError> {
        let (issuer, subject) = of.unzip();
        self.op(StoreOp::SessionList, async {
            let rows = match &self.db {
                Db::Sqlite(db) => {
                    let sql = format!(
                        "SELECT {COLUMNS} FROM {FROM} WHERE (?1 IS NULL OR (s.issuer = ?1 AND s.subject = ?2))
                         ORDER BY s.issuer, s.subject, s.started_at, s.session_id LIMIT ?3"
                    );
                    sqlx::query_as(&sql)
                        .bind(issuer)
                        .bind(subject)
                        .bind(MOST_LISTED)
                        .fetch_all(&db.reader)
                        .await?
                }
                Db::Postgres(pool) => {
                    let sql = format!(
                        "SELECT {COLUMNS} FROM {FROM}
                         WHERE ($1::text IS NULL OR (s.issuer = $1 AND s.subject = $2::text))
                         ORDER BY s.issuer, s.subject, s.started_at, s.session_id LIMIT $3"
                    );
                    sqlx::query_as(&sql)
                        .bind(issuer)
                        .bind(subject)
                        .bind(MOST_LISTED)
                        .fetch_all(pool)
                        .await?
                }
            };
            Ok(rows)
        })
        .await
    }

    /// The users whose email address (in any case) or subject is `who`.
    pub async fn users_named(&self, who: &str) -> Result<Vec<UserRow>, StoreError> {
        self.op(StoreOp::SessionList, async {
            let rows = match &self.db {
                Db::Sqlite(db) => {
                    sqlx::query_as("SELECT * FROM users WHERE lower(email) = lower(?1) OR subject = ?1 ORDER BY id")
                        .bind(who)
                        .fetch_all(&db.reader)
                        .await?
                }
                Db::Postgres(pool) => {
                    sqlx::query_as("SELECT * FROM users WHERE lower(email) = lower($1) OR subject = $1 ORDER BY id")
                        .bind(who)
                        .fetch_all(pool)
                        .await?
                }
            };
            Ok(rows)
        })
        .await
    }

    /// The record of session `session_id` in the session store, if it is
    /// still there.
    pub async fn session_record(&self, session_id: &str) -> Result<Option<Record>, StoreError> {
        let Ok(id) = Id::from_str(session_id) else {
            return Ok(None);
        };
        self.sessions
            .load(&id)
            .await
            .map_err(|e| StoreError::Session(e.to_string()))
    }

    /// Ends session `session_id`: its record first, then its link (were
    /// that to fail, the session is already gone). Its next request, on any
    /// instance, is anonymous; with the embedded SQLite, a server's session
    /// cache sees this only when this process is that server (another
    /// process then calls [`Store::note_sessions_ended_elsewhere`]).
    pub async fn end_session(&self, session_id: &str) -> Result<(), StoreError> {
        if let Ok(id) = Id::from_str(session_id) {
            self.sessions
                .delete(&id)
                .await
                .map_err(|e| StoreError::Session(e.to_string()))?;
        }
        self.unlink_session(session_id).await.map(drop)
    }

    /// Tells the servers' session caches that this process ended sessions
    /// (only the embedded SQLite store has one); they notice within
    /// [`SESSION_CACHE_RECHECK`].
    pub async fn note_sessions_ended_elsewhere(&self) -> Result<(), StoreError> {
        self.sessions.note_ended_elsewhere().await
    }
}
