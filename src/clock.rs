//! Time as the application sees it.
//!
//! Session timeouts and ID token time checks read the clock through [`Clock`],
//! so tests can move time forward without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use time::OffsetDateTime;

/// The wall clock, optionally shifted forward by a test.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_secs: Arc<AtomicI64>,
}

impl Clock {
    /// The real system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// The current time (UTC).
    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::seconds(self.offset_secs.load(Ordering::Relaxed))
    }

    /// Seconds since the Unix epoch.
    pub fn unix(&self) -> i64 {
        self.now().unix_timestamp()
    }

    /// How far a test moved this clock forward (zero for the system clock):
    /// what monotonic timers add to stay in step with it.
    pub(crate) fn offset(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.offset_secs.load(Ordering::Relaxed)).unwrap_or(0))
    }

    /// Moves this clock (and every clone of it) forward. For tests only:
    /// public because the integration tests drive the app from outside the
    /// crate, hidden because no application has a reason to call it.
    #[doc(hidden)]
    pub fn advance(&self, by: Duration) {
        let secs = i64::try_from(by.as_secs()).unwrap_or(i64::MAX / 2);
        self.offset_secs.fetch_add(secs, Ordering::Relaxed);
    }
}
