//! The session store given to `tower-sessions`: one type over every backend,
//! each a maintained store from the `tower-sessions` ecosystem.

use async_trait::async_trait;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};
use tower_sessions_sqlx_store::SqliteStore;

/// Where sessions live.
#[derive(Clone, Debug)]
pub struct SessionBackend {
    inner: Inner,
}

#[derive(Clone, Debug)]
enum Inner {
    Sqlite(SqliteStore),
}

impl SessionBackend {
    pub(super) fn sqlite(pool: sqlx::SqlitePool) -> Self {
        Self {
            inner: Inner::Sqlite(SqliteStore::new(pool)),
        }
    }

    /// Deletes every expired session now.
    pub async fn delete_expired_now(&self) -> session_store::Result<()> {
        match &self.inner {
            Inner::Sqlite(s) => s.delete_expired().await,
        }
    }
}

#[async_trait]
impl SessionStore for SessionBackend {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match &self.inner {
            Inner::Sqlite(s) => s.create(record).await,
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match &self.inner {
            Inner::Sqlite(s) => s.save(record).await,
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match &self.inner {
            Inner::Sqlite(s) => s.load(id).await,
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match &self.inner {
            Inner::Sqlite(s) => s.delete(id).await,
        }
    }
}
