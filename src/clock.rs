//! Time as the application sees it.
//!
//! Session timeouts and ID token time checks read the clock through [`Clock`],
//! so tests can move time forward without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

/// The wall clock, optionally shifted forward by a test, or stopped by one.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_secs: Arc<AtomicI64>,
    /// Where a stopped clock stands (Unix seconds, before the shift);
    /// `None`: the system clock moves it.
    stopped_at: Option<i64>,
}

impl Clock {
    /// The real system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that stands at the current second and moves only when
    /// [`Clock::advance`] moves it. For tests whose deadline is a second or
    /// so away: on the system clock, the real time a loaded machine takes
    /// between two steps (or a second ticking over between them) can cross it.
    #[doc(hidden)]
    pub fn stopped() -> Self {
        Self {
            offset_secs: Arc::default(),
            stopped_at: Some(system_unix()),
        }
    }

    /// The current time (UTC).
    pub fn now(&self) -> OffsetDateTime {
        let shift = time::Duration::seconds(self.offset_secs.load(Ordering::Relaxed));
        match self.stopped_at {
            Some(at) => OffsetDateTime::from_unix_timestamp(at).unwrap_or(OffsetDateTime::UNIX_EPOCH) + shift,
            None => OffsetDateTime::now_utc() + shift,
        }
    }

    /// Seconds since the Unix epoch: what `now().unix_timestamp()` says,
    /// without working out a calendar date (read on every request).
    pub fn unix(&self) -> i64 {
        self.stopped_at.unwrap_or_else(system_unix) + self.offset_secs.load(Ordering::Relaxed)
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

/// The system clock's seconds since the Unix epoch.
fn system_unix() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_secs() as i64,
        // Before 1970: whole seconds towards minus infinity, as `time` counts them.
        Err(before) => -(before.duration().as_nanos().div_ceil(1_000_000_000) as i64),
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

    #[test]
    fn a_stopped_clock_moves_only_when_moved() {
        let clock = Clock::stopped();
        let at = clock.unix();
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(clock.unix(), at);
        assert_eq!(clock.now().unix_timestamp(), at);
        clock.advance(Duration::from_secs(3));
        assert_eq!((clock.unix(), clock.now().unix_timestamp()), (at + 3, at + 3));
        assert_eq!(clock.clone().unix(), at + 3, "clones move with it");
    }
}
