//! What every session store here shares, below them all: how a record is
//! written, how a failure is reported to `tower-sessions`, and the timeout
//! on every store operation.

use std::future::Future;
use std::time::Duration;

use tower_sessions::session::Record;
use tower_sessions::session_store;

use super::StoreError;

/// A session record as every store here writes it (and
/// `tower-sessions-sqlx-store` and `tower-sessions-redis-store` read it):
/// MessagePack.
pub(super) fn encode(record: &Record) -> session_store::Result<Vec<u8>> {
    rmp_serde::to_vec(record).map_err(|e| session_store::Error::Encode(e.to_string()))
}

/// A store's failure as `tower-sessions` reports it.
pub(super) fn backend(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

/// An error that can say an operation did not answer in time.
pub(super) trait TimedOut {
    /// The error for an operation that took longer than `after`.
    fn timed_out(after: Duration) -> Self;
}

impl TimedOut for StoreError {
    fn timed_out(after: Duration) -> Self {
        StoreError::Timeout(after)
    }
}

impl TimedOut for session_store::Error {
    fn timed_out(after: Duration) -> Self {
        session_store::Error::Backend(format!("session store did not answer within {after:?}"))
    }
}

/// Runs a store operation with a timeout.
pub(super) async fn bounded<T, E: TimedOut>(
    timeout: Duration,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or_else(|_| Err(E::timed_out(timeout)))
}
