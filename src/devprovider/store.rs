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
    /// Key → (expiry, insertion number, value).
    entries: HashMap<String, (Instant, u64, V)>,
    capacity: usize,
    inserted: u64,
}

impl<V> ExpiringMap<V> {
    /// An empty map holding at most `capacity` entries.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity: capacity.max(1),
            inserted: 0,
        }
    }

    /// Stores `value` under `key` for `ttl`. Prunes expired entries first;
    /// if the map is still full, the oldest entry makes room. (Not the one
    /// closest to expiry: that would be a code just issued, with its
    /// 60-second life, rather than a long-lived marker of a code redeemed
    /// minutes ago, and every login would fail once the map is full.)
    pub(super) fn insert(&mut self, key: String, value: V, ttl: Duration) {
        let now = Instant::now();
        self.entries.retain(|_, (expires, _, _)| *expires > now);
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, inserted, _))| *inserted)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        self.inserted += 1;
        self.entries.insert(key, (now + ttl, self.inserted, value));
    }

    /// Removes the entry and returns it if it has not expired.
    pub(super) fn take(&mut self, key: &str) -> Option<V> {
        let (expires, _, value) = self.entries.remove(key)?;
        (expires > Instant::now()).then_some(value)
    }

    /// The entry, if present and not expired.
    pub(super) fn get(&self, key: &str) -> Option<&V> {
        self.entries
            .get(key)
            .filter(|(expires, _, _)| *expires > Instant::now())
            .map(|(_, _, value)| value)
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
        assert_eq!(map.get("first"), None);
        assert_eq!(map.get("k99"), Some(&99));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_map_makes_room_for_a_short_lived_newcomer() {
        // Long-lived markers of redeemed codes fill the map; a code just
        // issued (shorter life) must survive the next insert.
        let mut map = ExpiringMap::new(3);
        for i in 0..3 {
            map.insert(format!("redeemed{i}"), i, Duration::from_secs(600));
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        map.insert("code".into(), 10, Duration::from_secs(60));
        tokio::time::advance(Duration::from_secs(1)).await;
        map.insert("redeemed3".into(), 3, Duration::from_secs(600));
        assert_eq!(map.get("code"), Some(&10));
        assert_eq!(map.get("redeemed0"), None);
        assert_eq!(map.get("redeemed1"), None);
    }
}
