//! Stopping without dropping requests. On SIGTERM (or Ctrl-C) `/ready`
//! answers `503` at once while new connections are still served for
//! `SHUTDOWN_GRACE`, so that load balancers take this instance out first;
//! then no connection is accepted any more, and the requests in flight, the
//! gateway's streamed bodies and WebSocket tunnels included, have
//! `SHUTDOWN_TIMEOUT` to finish before they are cut.
//!
//! hyper's graceful shutdown waits for the HTTP requests of its connections;
//! a connection handed over to a tunnel (`101 Switching Protocols`) is no
//! longer its own, so tunnels run in [`Tunnels`], which is waited for too,
//! and so is the work a request leaves behind ([`Drain::spawn`]: token
//! revocation after a logout has answered).

use std::future::Future;

use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ShutdownConfig;

/// The drain of one server: whether it has begun, the tunnels to wait for,
/// and its settings. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Drain {
    /// Cancelled when the stop signal came: `/ready` answers `503`.
    draining: CancellationToken,
    /// Cancelled when the grace has passed: no connection is accepted.
    closed: CancellationToken,
    tunnels: Tunnels,
    /// Work requests left behind (bounded by their own timeouts).
    background: TaskTracker,
    settings: ShutdownConfig,
}

/// The connections handed over to tunnels (WebSocket and other upgrades):
/// waited for on shutdown, and cut when `SHUTDOWN_TIMEOUT` is reached.
#[derive(Clone, Debug, Default)]
pub struct Tunnels {
    tracker: TaskTracker,
    cut: CancellationToken,
}

impl Tunnels {
    /// Runs `tunnel` until it ends or the shutdown deadline cuts it.
    pub fn spawn(&self, tunnel: impl Future<Output = ()> + Send + 'static) {
        let cut = self.cut.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = tunnel => {}
                () = cut.cancelled() => tracing::info!(reason = "shutdown_timeout", "upgraded connection cut"),
            }
        });
    }

    /// How many tunnels are open.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// Whether no tunnel is open.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }
}

impl Drain {
    /// A drain that has not begun.
    pub fn new(settings: ShutdownConfig) -> Self {
        Self {
            draining: CancellationToken::new(),
            closed: CancellationToken::new(),
            tunnels: Tunnels::default(),
            background: TaskTracker::new(),
            settings,
        }
    }

    /// Whether the server is stopping (`/ready` then answers `503`).
    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// Runs `task` (work a request leaves behind, bounded by its own
    /// timeouts) in the background; shutdown waits for it, at most
    /// `SHUTDOWN_TIMEOUT`.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.background.spawn(task);
    }

    /// How many background tasks ([`Drain::spawn`]) are running.
    pub fn background_tasks(&self) -> usize {
        self.background.len()
    }

    /// Where the gateway's proxy runs its tunnels.
    pub fn tunnels(&self) -> Tunnels {
        self.tunnels.clone()
    }

    /// Resolves once no new connection should be accepted: waits for
    /// `shutdown`, marks the server draining, then waits `SHUTDOWN_GRACE`.
    /// Give it to the server as its graceful shutdown signal.
    pub async fn stop_accepting_after(self, shutdown: impl Future<Output = ()>) {
        shutdown.await;
        self.draining.cancel();
        let ShutdownConfig { grace, timeout } = self.settings;
        tracing::info!(
            grace = %humantime::format_duration(grace),
            "draining: /ready answers 503, new connections are still served for SHUTDOWN_GRACE"
        );
        tokio::time::sleep(grace).await;
        tracing::info!(
            timeout = %humantime::format_duration(timeout),
            tunnels = self.tunnels.len(),
            "no longer accepting connections; requests in flight have SHUTDOWN_TIMEOUT to finish"
        );
        self.closed.cancel();
    }

    /// Waits for `server` (serving with [`Drain::stop_accepting_after`] as
    /// its shutdown signal) to end by itself, or, once it stopped accepting,
    /// for its requests, the tunnels and the background tasks to finish, at most `SHUTDOWN_TIMEOUT`;
    /// then cuts what is left. The server's own result, or `None` when cut.
    pub async fn finish<T>(&self, server: &mut JoinHandle<T>) -> Option<Result<T, JoinError>> {
        // Closed first: a server that ended because it stopped accepting
        // still has tunnels and background tasks to wait for.
        tokio::select! {
            biased;
            () = self.closed.cancelled() => {}
            result = &mut *server => return Some(result),
        }
        self.tunnels.tracker.close();
        self.background.close();
        let finished = tokio::time::timeout(self.settings.timeout, async {
            let result = (&mut *server).await;
            self.tunnels.tracker.wait().await;
            self.background.wait().await;
            result
        })
        .await;
        match finished {
            Ok(result) => {
                tracing::info!("every request finished; stopped");
                Some(result)
            }
            Err(_) => {
                tracing::warn!(
                    reason = "shutdown_timeout",
                    tunnels = self.tunnels.len(),
                    "SHUTDOWN_TIMEOUT reached: cutting the requests and tunnels still open; stopped"
                );
                self.tunnels.cut.cancel();
                server.abort();
                None
            }
        }
    }
}
