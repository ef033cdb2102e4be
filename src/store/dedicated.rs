//! Database connections of their own, outside any pool.
//!
//! A sqlx pool pings every connection it takes back (`PoolConnection`'s
//! drop runs `ping` in a task of its own, whatever the pool's options say),
//! so each query through a pool costs a second round trip: to SQLite's
//! connection thread, or to a PostgreSQL backend. On the paths every
//! request takes (SQLite's writes, PostgreSQL's session lookups) a
//! connection of their own avoids it.

use std::sync::Arc;

use sqlx::postgres::{PgDatabaseError, PgSeverity};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{Mutex, MutexGuard};

/// One connection, opened on first use and again after it broke.
pub(super) struct Dedicated<C: Connection>(Arc<State<C>>);

struct State<C: Connection> {
    conn: Mutex<Option<C>>,
    options: C::Options,
    cancelled: Cancelled,
}

/// What happens to the connection when an operation on it is cancelled
/// half-way (a timeout dropped it).
#[derive(Clone, Copy, Debug)]
pub(super) enum Cancelled {
    /// It is used again: SQLite's connection thread runs statements in the
    /// order they were sent, so the cancelled one still ends before the next
    /// begins.
    Keep,
    /// It is closed, and the next operation opens another: a network
    /// connection may be left mid-answer.
    Close,
}

impl<C: Connection> Clone for Dedicated<C> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<C: Connection> std::fmt::Debug for Dedicated<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dedicated")
    }
}

/// Whether `error` means the connection itself is unusable, not just the
/// statement: it is then opened again for the next operation. PostgreSQL
/// ends a session with a FATAL error (a restart, `pg_terminate_backend`,
/// `idle_session_timeout`: SQLSTATE class 57P) before closing it, and sqlx
/// reports that as a database error.
pub(super) fn broken(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(e) => e.try_downcast_ref::<PgDatabaseError>().is_some_and(|e| {
            matches!(e.severity(), PgSeverity::Fatal | PgSeverity::Panic)
                || e.code().starts_with("57P")
                || e.code().starts_with("08")
        }),
        _ => false,
    }
}

impl<C: Connection> Dedicated<C> {
    /// A connection to `options`, opened by the first operation.
    pub(super) fn new(options: C::Options, cancelled: Cancelled) -> Self {
        Self(Arc::new(State {
            conn: Mutex::new(None),
            options,
            cancelled,
        }))
    }

    /// A connection to `options`, opened now.
    pub(super) async fn open(options: C::Options, cancelled: Cancelled) -> Result<Self, sqlx::Error> {
        let conn = options.connect().await?;
        let dedicated = Self::new(options, cancelled);
        *dedicated.0.conn.lock().await = Some(conn);
        Ok(dedicated)
    }

    /// Runs `op` on the connection once the operations queued before it are done.
    pub(super) async fn run<T>(
        &self,
        op: impl AsyncFnOnce(&mut C) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        self.run_locked(self.0.conn.lock().await, op).await
    }

    /// Runs `op` like [`Dedicated::run`], but the connection is used again
    /// only if `op` succeeds: one that fails or is cancelled half-way closes
    /// it, and the next operation opens another. For an `op` that holds a
    /// transaction of its own SQL open across statements (a `BEGIN` sqlx does
    /// not know of, so it cannot roll it back): closing the connection rolls
    /// back whatever it left open.
    pub(super) async fn run_or_close<T>(
        &self,
        op: impl AsyncFnOnce(&mut C) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let slot = self.0.conn.lock().await;
        self.run_out_of_slot(slot, op, Result::is_ok).await
    }

    /// Runs `op` on the first of `conns` that is free, or else on the first
    /// once it is. `conns` must not be empty.
    pub(super) async fn run_on_any<T>(
        conns: &[Self],
        op: impl AsyncFnOnce(&mut C) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let free = conns
            .iter()
            .find_map(|c| c.0.conn.try_lock().ok().map(|slot| (c, slot)));
        let (conn, slot) = match free {
            Some(free) => free,
            None => (&conns[0], conns[0].0.conn.lock().await),
        };
        conn.run_locked(slot, op).await
    }

    async fn run_locked<T>(
        &self,
        mut slot: MutexGuard<'_, Option<C>>,
        op: impl AsyncFnOnce(&mut C) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        match self.0.cancelled {
            Cancelled::Keep => {
                let conn = self.take_or_open(&mut slot).await?;
                let result = op(slot.insert(conn)).await;
                if result.as_ref().is_err_and(broken) {
                    *slot = None;
                }
                result
            }
            Cancelled::Close => {
                self.run_out_of_slot(slot, op, |result| !result.as_ref().is_err_and(broken))
                    .await
            }
        }
    }

    /// Runs `op` on the connection taken out of `slot`, so that it is
    /// dropped, not kept, if `op` is cancelled; it goes back if `keep` says
    /// so of the result.
    async fn run_out_of_slot<T>(
        &self,
        mut slot: MutexGuard<'_, Option<C>>,
        op: impl AsyncFnOnce(&mut C) -> Result<T, sqlx::Error>,
        keep: impl FnOnce(&Result<T, sqlx::Error>) -> bool,
    ) -> Result<T, sqlx::Error> {
        let mut conn = self.take_or_open(&mut slot).await?;
        let result = op(&mut conn).await;
        if keep(&result) {
            *slot = Some(conn);
        }
        result
    }

    /// The connection in `slot`, or a new one if it has none.
    async fn take_or_open(&self, slot: &mut Option<C>) -> Result<C, sqlx::Error> {
        match slot.take() {
            Some(conn) => Ok(conn),
            None => self.0.options.connect().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;
    use std::time::Duration;

    use sqlx::SqliteConnection;
    use sqlx::sqlite::SqliteConnectOptions;

    use super::*;

    fn memory(cancelled: Cancelled) -> Dedicated<SqliteConnection> {
        Dedicated::new(SqliteConnectOptions::from_str("sqlite::memory:").unwrap(), cancelled)
    }

    /// Marks the connection: a temporary table lives as long as it does.
    async fn mark(conn: &mut SqliteConnection, name: &str) -> Result<(), sqlx::Error> {
        sqlx::query(&format!("CREATE TEMP TABLE {name} (x)"))
            .execute(conn)
            .await
            .map(drop)
    }

    async fn marked(conn: &mut SqliteConnection, name: &str) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) > 0 FROM sqlite_temp_master WHERE name = ?")
            .bind(name)
            .fetch_one(conn)
            .await
    }

    /// An operation that never ends, cut short by a timeout.
    async fn cancel(conn: &Dedicated<SqliteConnection>) {
        let never = conn.run(async |c| {
            mark(c, "during").await?;
            std::future::pending::<Result<(), sqlx::Error>>().await
        });
        assert!(tokio::time::timeout(Duration::from_millis(50), never).await.is_err());
    }

    #[tokio::test]
    async fn the_connection_is_kept_between_operations() {
        let conn = memory(Cancelled::Close);
        conn.run(async |c| mark(c, "first").await).await.unwrap();
        assert!(conn.run(async |c| marked(c, "first").await).await.unwrap());
        // A statement's own error does not cost the connection.
        assert!(conn.run(async |c| mark(c, "first").await).await.is_err());
        assert!(conn.run(async |c| marked(c, "first").await).await.unwrap());
    }

    #[tokio::test]
    async fn an_operation_that_must_finish_closes_the_connection_unless_it_does() {
        let path = std::env::temp_dir().join(format!("dedicated-{}.sqlite3", std::process::id()));
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .unwrap()
            .create_if_missing(true)
            .busy_timeout(Duration::from_secs(5));
        let conn = Dedicated::new(options.clone(), Cancelled::Keep);
        conn.run(async |c| sqlx::query("CREATE TABLE t (x)").execute(c).await.map(drop))
            .await
            .unwrap();
        conn.run_or_close(async |c| mark(c, "before").await).await.unwrap();
        assert!(
            conn.run(async |c| marked(c, "before").await).await.unwrap(),
            "kept when done"
        );

        // A transaction of its own SQL, left open by an error: rolled back.
        let failed = conn
            .run_or_close(async |c| {
                sqlx::query("BEGIN IMMEDIATE; INSERT INTO t VALUES (1)")
                    .execute(&mut *c)
                    .await?;
                sqlx::query("INSERT INTO nowhere VALUES (1)").execute(c).await.map(drop)
            })
            .await;
        assert!(failed.is_err());
        // Left open by a cancellation: rolled back too.
        let never = conn.run_or_close(async |c| {
            sqlx::query("BEGIN IMMEDIATE; INSERT INTO t VALUES (2)")
                .execute(&mut *c)
                .await?;
            std::future::pending::<Result<(), sqlx::Error>>().await
        });
        assert!(tokio::time::timeout(Duration::from_millis(200), never).await.is_err());

        assert!(
            !conn.run(async |c| marked(c, "before").await).await.unwrap(),
            "a new connection"
        );
        // Nothing of either was committed, and writes go on (the write lock is free).
        let rows: i64 = conn
            .run(async |c| {
                sqlx::query("INSERT INTO t VALUES (3)").execute(&mut *c).await?;
                sqlx::query_scalar("SELECT count(*) FROM t").fetch_one(c).await
            })
            .await
            .unwrap();
        assert_eq!(rows, 1);
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn a_cancelled_operation_closes_the_connection_or_keeps_it() {
        let closing = memory(Cancelled::Close);
        closing.run(async |c| mark(c, "before").await).await.unwrap();
        cancel(&closing).await;
        assert!(
            !closing.run(async |c| marked(c, "before").await).await.unwrap(),
            "a new connection"
        );

        let keeping = memory(Cancelled::Keep);
        keeping.run(async |c| mark(c, "before").await).await.unwrap();
        cancel(&keeping).await;
        assert!(
            keeping.run(async |c| marked(c, "before").await).await.unwrap(),
            "the same connection"
        );
        assert!(
            keeping.run(async |c| marked(c, "during").await).await.unwrap(),
            "with what the cancelled operation did before it was cut short"
        );
    }

    #[tokio::test]
    async fn run_on_any_takes_a_free_connection() {
        let conns = [memory(Cancelled::Close), memory(Cancelled::Close)];
        conns[0].run(async |c| mark(c, "zero").await).await.unwrap();
        conns[1].run(async |c| mark(c, "one").await).await.unwrap();
        // The first is free: it is taken.
        assert!(
            Dedicated::run_on_any(&conns, async |c| marked(c, "zero").await)
                .await
                .unwrap()
        );
        // The first is busy: the second is taken.
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let busy = conns[0].clone();
        let holder = tokio::spawn(async move {
            busy.run(async |_| {
                let _ = released.await;
                Ok(())
            })
            .await
        });
        while conns[0].0.conn.try_lock().is_ok() {
            tokio::task::yield_now().await;
        }
        assert!(
            Dedicated::run_on_any(&conns, async |c| marked(c, "one").await)
                .await
                .unwrap()
        );
        // Both busy: it waits for the first.
        let other = conns[1].clone();
        let (release_other, other_released) = tokio::sync::oneshot::channel::<()>();
        let other_holder = tokio::spawn(async move {
            other
                .run(async |_| {
                    let _ = other_released.await;
                    Ok(())
                })
                .await
        });
        while conns[1].0.conn.try_lock().is_ok() {
            tokio::task::yield_now().await;
        }
        let waiting = Dedicated::run_on_any(&conns, async |c| marked(c, "zero").await);
        release.send(()).unwrap();
        assert!(waiting.await.unwrap());
        release_other.send(()).unwrap();
        holder.await.unwrap().unwrap();
        other_holder.await.unwrap().unwrap();
    }
}
