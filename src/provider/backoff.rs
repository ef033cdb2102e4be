//! How often anonymous traffic may make us call the provider. Every
//! `/login` needs discovery and every logout token may name a new key, and
//! anyone can send those: a failed fetch is remembered for a while (1 s,
//! doubling up to 30 s) and requests meanwhile fail at once, and refetches
//! for logout tokens are one per interval.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::error::{ProviderError, Reason};

/// How long the first failed fetch is remembered.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// How long a failed fetch is remembered at most (each failure in a row
/// doubles it up to this).
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The last failed fetch of discovery and keys, while none succeeded since.
#[derive(Default)]
pub struct FailedFetch(Mutex<Option<Failure>>);

struct Failure {
    reason: Reason,
    detail: String,
    backoff: Duration,
    retry_at: Instant,
}

impl FailedFetch {
    /// Records the outcome of a fetch: a failure is remembered for twice as
    /// long as the one before it (from [`FIRST_BACKOFF`] to [`MAX_BACKOFF`]),
    /// a success forgets them.
    pub fn record<T>(&self, result: &Result<T, ProviderError>) {
        self.note(result.as_ref().err());
    }

    /// Records a failure (`Some`), remembered as by [`FailedFetch::record`],
    /// or a success (`None`), which forgets them.
    pub fn note(&self, failure: Option<&ProviderError>) {
        let mut failed = self.lock();
        *failed = match failure {
            None => None,
            Some(e) => {
                let backoff = failed
                    .as_ref()
                    .map_or(FIRST_BACKOFF, |f| (f.backoff * 2).min(MAX_BACKOFF));
                Some(Failure {
                    reason: e.reason,
                    detail: e.detail.clone(),
                    backoff,
                    retry_at: Instant::now() + backoff,
                })
            }
        };
    }

    /// The last failure, while it is remembered: the answer to give instead
    /// of fetching again.
    pub fn remembered(&self) -> Option<ProviderError> {
        let failed = self.lock();
        let f = failed.as_ref()?;
        let wait = f
            .retry_at
            .checked_duration_since(Instant::now())
            .filter(|w| !w.is_zero())?;
        Some(ProviderError::new(
            f.reason,
            format!("{} (not asked again for {} ms)", f.detail, wait.as_millis()),
        ))
    }

    /// When the provider may be asked again, if a failure is remembered.
    pub fn retry_at(&self) -> Option<Instant> {
        self.lock().as_ref().map(|f| f.retry_at)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Failure>> {
        // Never held across anything that can panic.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// At most one go per interval, claimed without waiting.
#[derive(Default)]
pub struct OncePer(Mutex<Option<Instant>>);

impl OncePer {
    /// Whether a go is free (none in the last `interval`); claims it if so.
    pub fn claim(&self, interval: Duration) -> bool {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < interval) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> Result<(), ProviderError> {
        Err(ProviderError::new(Reason::DiscoveryFailed, "HTTP 503"))
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_remembered_longer_each_time_until_a_success() {
        let fetch = FailedFetch::default();
        assert!(fetch.remembered().is_none());
        let mut remembered = Vec::new();
        for _ in 0..8 {
            fetch.record(&failed());
            let start = Instant::now();
            let e = fetch.remembered().expect("remembered");
            assert_eq!(e.reason, Reason::DiscoveryFailed);
            assert!(e.detail.starts_with("HTTP 503 (not asked again"), "{}", e.detail);
            remembered.push(fetch.retry_at().unwrap() - start);
            tokio::time::advance(remembered.last().copied().unwrap()).await;
            assert!(fetch.remembered().is_none(), "forgotten once the time is up");
        }
        let secs: Vec<u64> = remembered.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        fetch.record(&Ok::<(), ProviderError>(()));
        assert!(fetch.retry_at().is_none());
        fetch.record(&failed());
        assert_eq!(
            fetch.retry_at().unwrap() - Instant::now(),
            FIRST_BACKOFF,
            "from the start again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn one_go_per_interval() {
        let once = OncePer::default();
        let interval = Duration::from_secs(10);
        assert!(once.claim(interval));
        assert!(!once.claim(interval));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!once.claim(interval));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(once.claim(interval));
    }
}
