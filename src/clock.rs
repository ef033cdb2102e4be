//! Time as the application sees it.
//!
//! Session timeouts and ID token time checks read the clock through [`Clock`],
//! so tests can move time forward without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

    /// Seconds since the Unix epoch: what `now().unix_timestamp()` says,
    /// without working out a calendar date (read on every request).
    pub fn unix(&self) -> i64 {
        let since_epoch = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(after) => after.as_secs() as i64,
            // Before 1970: whole seconds towards minus infinity, as `time` counts them.
            Err(before) => -(before.duration().as_nanos().div_ceil(1_000_000_000) as i64),
        };
        since_epoch + self.offset_secs.load(Ordering::Relaxed)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_seconds_are_those_of_the_date() {
        let clock = Clock::system();
        for shift in [0, 3600] {
            clock.advance(Duration::from_secs(shift));
            let before = clock.unix();
            let date = clock.now().unix_timestamp();
            let after = clock.unix();
            assert!(before <= date && date <= after, "{before} {date} {after}");
            assert!(after - before <= 1);
        }
    }
}
