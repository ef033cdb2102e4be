//! The store's operations, timed: `oidc_gate_store_operation_seconds` and
//! `oidc_gate_store_errors_total` by backend and operation.
//!
//! A session is loaded on every request, so each operation's series are
//! registered once per store (on first use) and then only recorded.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use metrics::{Counter, Histogram, counter, histogram};

use super::names;

/// A store operation, as labelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// A session read (every request with a session cookie).
    SessionLoad,
    /// A session written back.
    SessionSave,
    /// A new session written (a sign-in).
    SessionCreate,
    /// A session deleted (logout, timeout).
    SessionDelete,
    /// Expired sessions deleted by the periodic cleanup.
    SessionDeleteExpired,
    /// The readiness check.
    Ping,
    /// A user created or updated at sign-in.
    UpsertUser,
    /// A user read.
    User,
    /// A session's link to its provider login written.
    LinkSession,
    /// A session's link removed.
    UnlinkSession,
    /// A session's link read.
    SessionLink,
    /// The sessions of a provider login (back-channel logout).
    LinkedSessions,
    /// A back-channel logout token id recorded.
    RememberLogoutJti,
    /// A back-channel logout token id released.
    ForgetLogoutJti,
    /// Expired links and token ids deleted.
    DeleteExpiredLinks,
    /// A person's sessions listed, or people looked up ("Your sessions", `oidc-gate sessions`).
    SessionList,
    /// Sessions ended by another process noted for the servers' session caches.
    SessionsEndedElsewhere,
    /// A session's refreshed tokens read.
    TokensLoad,
    /// A session's refreshed tokens written or forgotten.
    TokensSave,
    /// The lease to refresh a session's tokens taken or given back.
    RefreshLease,
}

impl StoreOp {
    const COUNT: usize = 20;

    fn label(self) -> &'static str {
        match self {
            StoreOp::SessionLoad => "session_load",
            StoreOp::SessionSave => "session_save",
            StoreOp::SessionCreate => "session_create",
            StoreOp::SessionDelete => "session_delete",
            StoreOp::SessionDeleteExpired => "session_delete_expired",
            StoreOp::Ping => "ping",
            StoreOp::UpsertUser => "upsert_user",
            StoreOp::User => "user",
            StoreOp::LinkSession => "link_session",
            StoreOp::UnlinkSession => "unlink_session",
            StoreOp::SessionLink => "session_link",
            StoreOp::LinkedSessions => "linked_sessions",
            StoreOp::RememberLogoutJti => "remember_logout_jti",
            StoreOp::ForgetLogoutJti => "forget_logout_jti",
            StoreOp::DeleteExpiredLinks => "delete_expired_links",
            StoreOp::SessionList => "session_list",
            StoreOp::SessionsEndedElsewhere => "sessions_ended_elsewhere",
            StoreOp::TokensLoad => "tokens_load",
            StoreOp::TokensSave => "tokens_save",
            StoreOp::RefreshLease => "refresh_lease",
        }
    }
}

/// The operation series of one backend (`sqlite`, `postgres`, `redis`).
/// Cheap to clone.
#[derive(Clone)]
pub struct StoreMetrics(Arc<Inner>);

struct Inner {
    backend: &'static str,
    series: [OnceLock<(Histogram, Counter)>; StoreOp::COUNT],
}

impl std::fmt::Debug for StoreMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StoreMetrics").field(&self.0.backend).finish()
    }
}

impl StoreMetrics {
    /// The series of `backend`.
    pub fn new(backend: &'static str) -> Self {
        Self(Arc::new(Inner {
            backend,
            series: std::array::from_fn(|_| OnceLock::new()),
        }))
    }

    /// Runs `fut`, recording its latency, and an error when it failed.
    pub async fn timed<T, E>(&self, op: StoreOp, fut: impl Future<Output = Result<T, E>>) -> Result<T, E> {
        let start = Instant::now();
        let result = fut.await;
        let (latency, errors) = self.0.series[op as usize].get_or_init(|| {
            let (backend, operation) = (self.0.backend, op.label());
            (
                histogram!(names::STORE_OPERATION_SECONDS, "backend" => backend, "operation" => operation),
                counter!(names::STORE_ERRORS, "backend" => backend, "operation" => operation),
            )
        });
        latency.record(start.elapsed().as_secs_f64());
        if result.is_err() {
            errors.increment(1);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::StoreOp;

    #[test]
    fn every_operation_has_its_own_slot() {
        assert_eq!(StoreOp::RefreshLease as usize + 1, StoreOp::COUNT);
    }
}
