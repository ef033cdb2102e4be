//! Bounded, expiring in-memory storage for authorization codes and access
//! tokens. Expired entries are pruned on every insert and the number of
//! entries is capped, so no sequence of requests can exhaust memory.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// A map whose entries expire and whose size never exceeds its capacity.
///
/// Uses tokio's clock so tests can move time with `tokio::time::pause()`.
pub(super) struct ExpiringMap<V> {
    entries: HashMap<String, (Instant, V)>,
    capacity: usize,
}

impl<V> ExpiringMap<V> {
    /// An empty map holding at most `capacity` entries.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Stores `value` under `key` for `ttl`. Prunes expired entries first;
    /// if the map is still full, the entry closest to expiry makes room.
    pub(super) fn insert(&mut self, key: String, value: V, ttl: Duration) {
        let now = Instant::now();
        self.entries.retain(|_, (expires, _)| *expires > now);
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            let soonest = self
                .entries
                .iter()
                .min_by_key(|(_, (expires, _))| *expires)
                .map(|(k, _)| k.clone());
            if let Some(soonest) = soonest {
                self.entries.remove(&soonest);
            }
        }
        self.entries.insert(key, (now + ttl, value));
    }

    /// Removes the entry and returns it if it has not expired.
    pub(super) fn take(&mut self, key: &str) -> Option<V> {
        let (expires, value) = self.entries.remove(key)?;
        (expires > Instant::now()).then_some(value)
    }

    /// The entry, if present and not expired.
    pub(super) fn get(&self, key: &str) -> Option<&V> {
        self.entries
            .get(key)
            .filter(|(expires, _)| *expires > Instant::now())
            .map(|(_, value)| value)
    }

    /// Forgets the entry, expired or not.
    pub(super) fn remove(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Number of entries held, including expired ones not yet pruned.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn entries_expire() {
        let mut map = ExpiringMap::new(10);
        map.insert("a".into(), 1, Duration::from_secs(60));
        assert_eq!(map.get("a"), Some(&1));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(map.get("a"), None);
        assert_eq!(map.take("a"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn take_is_single_use() {
        let mut map = ExpiringMap::new(10);
        map.insert("a".into(), 1, Duration::from_secs(60));
        assert_eq!(map.take("a"), Some(1));
        assert_eq!(map.take("a"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn insert_prunes_expired_entries() {
        let mut map = ExpiringMap::new(10);
        for i in 0..5 {
            map.insert(format!("old{i}"), i, Duration::from_secs(1));
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        map.insert("new".into(), 99, Duration::from_secs(60));
        assert_eq!(map.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn capacity_is_never_exceeded() {
        let mut map = ExpiringMap::new(3);
        map.insert("first".into(), 0, Duration::from_secs(10));
        for i in 1..100 {
            map.insert(format!("k{i}"), i, Duration::from_secs(60));
        }
        assert_eq!(map.len(), 3);
        // The entry closest to expiry was the one evicted.
        assert_eq!(map.get("first"), None);
        assert_eq!(map.get("k99"), Some(&99));
    }
}
