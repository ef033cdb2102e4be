//! The in-memory cache in front of the embedded SQLite session store.
//!
//! Writes go to the store first and to the cache only once the store has
//! them, and a load or save that raced a delete drops what it put in the
//! cache, so the cache never holds a session the store lost. That makes it
//! safe to skip saving a record the cache already holds unchanged: a login
//! saves its new session twice (once to learn its id, once as the response
//! leaves), and the second save would rewrite the same row with an expiry
//! date a few microseconds later.
//!
//! Only `oidc-gate sessions end`, another process, ends sessions behind the
//! cache's back. It bumps a counter in the database ([`ChangedElsewhere`]),
//! which loads read at most every [`SESSION_CACHE_RECHECK`]: one small read
//! a tenth of a second whatever the traffic, and the cache is emptied when
//! it moved. The command waits that long before it returns, so the next
//! request of an ended session finds it gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

/// A session store whose saves only update sessions still there.
pub(super) trait SaveExisting {
    /// Saves `record` over its session; `false` if the session is gone
    /// (deleted or expired meanwhile), which it then stays.
    fn save_existing(&self, record: &Record) -> impl Future<Output = session_store::Result<bool>> + Send;
}

/// A store that other processes may change behind the cache, and that says
/// when they ended sessions there.
pub(super) trait ChangedElsewhere {
    /// A number that moves whenever another process ended sessions.
    fn generation(&self) -> impl Future<Output = session_store::Result<i64>> + Send;
}

/// How often, at most, a load asks the store whether another process ended
/// sessions (see the module documentation).
pub const SESSION_CACHE_RECHECK: Duration = Duration::from_millis(100);

/// `store` behind a write-through cache of at most `capacity` sessions.
#[derive(Debug, Clone)]
pub(super) struct WriteThrough<S> {
    cache: Arc<Records>,
    store: S,
    /// Deletes started so far: a load or save that saw this change while
    /// it ran may be caching a record deleted meanwhile.
    deletes: Arc<AtomicU64>,
    /// What was last read of [`ChangedElsewhere::generation`], and when.
    elsewhere: Arc<Elsewhere>,
}

/// The last look at the store's [`ChangedElsewhere::generation`].
#[derive(Debug)]
struct Elsewhere {
    /// The generation then (`i64::MIN` before the first look).
    generation: AtomicI64,
    /// When that look began, in milliseconds after `epoch`, plus one (0: never).
    looked_at: AtomicU64,
    epoch: tokio::time::Instant,
    /// One look at a time; the others wait for it rather than look too.
    looking: tokio::sync::Mutex<()>,
}

impl Elsewhere {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Whether the last look began less than [`SESSION_CACHE_RECHECK`] ago.
    fn recent(&self) -> bool {
        let looked_at = self.looked_at.load(Ordering::SeqCst);
        looked_at != 0 && self.now() - looked_at < SESSION_CACHE_RECHECK.as_millis() as u64
    }
}

impl<S> WriteThrough<S> {
    pub(super) fn new(store: S, capacity: u64) -> Self {
        Self {
            cache: Arc::new(Records(quick_cache::sync::Cache::new(capacity as usize))),
            store,
            deletes: Arc::default(),
            elsewhere: Arc::new(Elsewhere {
                generation: AtomicI64::new(i64::MIN),
                looked_at: AtomicU64::new(0),
                epoch: tokio::time::Instant::now(),
                looking: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Caches `record`, unless a delete started since `seen`: then the
    /// delete may have run between the store and the cache, and the cache
    /// must not keep what the store no longer has.
    fn cache(&self, record: &Record, seen: u64) {
        self.cache.insert(record);
        if self.deletes.load(Ordering::SeqCst) != seen {
            self.cache.remove(&record.id);
        }
    }
}

impl<S: ChangedElsewhere> WriteThrough<S> {
    /// The cached record of `id`, when the cache holds it (unexpired) and
    /// no look at other processes' ends is due: what a load would answer,
    /// without touching the store. `None` means: load.
    pub(super) fn cached(&self, id: &Id) -> Option<Record> {
        if !self.elsewhere.recent() {
            return None;
        }
        self.cache.get(id)
    }

    /// Empties the cache if another process ended sessions since the last
    /// look, looking at most every [`SESSION_CACHE_RECHECK`]. A look that
    /// began before the other process was done may miss it; the next one,
    /// which begins within [`SESSION_CACHE_RECHECK`] of that, does not.
    async fn look_elsewhere(&self) -> session_store::Result<()> {
        let elsewhere = &self.elsewhere;
        if elsewhere.recent() {
            return Ok(());
        }
        let _one = elsewhere.looking.lock().await;
        if elsewhere.recent() {
            return Ok(());
        }
        let began = elsewhere.now();
        let generation = self.store.generation().await?;
        if elsewhere.generation.swap(generation, Ordering::SeqCst) != generation {
            // As a delete of every session: loads under way do not cache
            // what they read before it.
            self.deletes.fetch_add(1, Ordering::SeqCst);
            self.cache.0.clear();
        }
        elsewhere.looked_at.store(began, Ordering::SeqCst);
        Ok(())
    }
}

/// The cached records: at most a capacity of them (S3-FIFO eviction), each
/// only until its own expiry date (kept beside it as a `SystemTime`, which
/// is compared with the clock without working out a calendar date).
struct Records(quick_cache::sync::Cache<Id, (Record, SystemTime)>);

impl Records {
    fn get(&self, id: &Id) -> Option<Record> {
        let (record, expires) = self.0.get(id)?;
        if expires <= SystemTime::now() {
            self.0.remove(id);
            return None;
        }
        Some(record)
    }

    fn insert(&self, record: &Record) {
        self.0
            .insert(record.id, (record.clone(), SystemTime::from(record.expiry_date)));
    }

    fn remove(&self, id: &Id) {
        self.0.remove(id);
    }
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Records({} cached)", self.0.len())
    }
}

#[async_trait]
impl<S: SessionStore + SaveExisting + ChangedElsewhere> SessionStore for WriteThrough<S> {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        // The store picks the final id; the cache takes it as is.
        let seen = self.deletes.load(Ordering::SeqCst);
        self.store.create(record).await?;
        self.cache(record, seen);
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        if let Some(cached) = self.cache.get(&record.id)
            && same(&cached, record)
        {
            return Ok(());
        }
        let seen = self.deletes.load(Ordering::SeqCst);
        if self.store.save_existing(record).await? {
            self.cache(record, seen);
        } else {
            self.cache.remove(&record.id);
        }
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        self.look_elsewhere().await?;
        if let Some(record) = self.cache.get(id) {
            return Ok(Some(record));
        }
        let seen = self.deletes.load(Ordering::SeqCst);
        let record = self.store.load(id).await?;
        if let Some(record) = &record {
            self.cache(record, seen);
        }
        Ok(record)
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        // Counted before the store's delete, for loads and saves already
        // under way, and again once it is done (see `Forget`).
        self.deletes.fetch_add(1, Ordering::SeqCst);
        let _forget = Forget {
            cache: &self.cache,
            deletes: &self.deletes,
            id,
        };
        self.store.delete(id).await
    }
}

/// Forgets a session being deleted once the store's delete is over,
/// however it ended: done, failed, or cancelled by a timeout while the
/// statement may still run. A session that was not deleted after all is
/// loaded from the store again by its next request. The second count of
/// the delete catches a load that began after the first count and read the
/// row before the delete committed: it sees the change when it comes to
/// cache the row, or, if it cached it already, the row is removed here.
struct Forget<'a> {
    cache: &'a Records,
    deletes: &'a AtomicU64,
    id: &'a Id,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.deletes.fetch_add(1, Ordering::SeqCst);
        self.cache.remove(self.id);
    }
}

/// Whether saving `new` over `old` would change nothing that matters: the
/// same data, and an expiry date moved by less than [`EXPIRY_SLACK`].
fn same(old: &Record, new: &Record) -> bool {
    let moved = new.expiry_date - old.expiry_date;
    old.data == new.data && moved.abs() < EXPIRY_SLACK
}

/// Expiry changes too small to write. Sessions are judged idle by the
/// activity they record (written at least once a minute of use), not by
/// this date, which only lets the store delete them afterwards.
const EXPIRY_SLACK: time::Duration = time::Duration::seconds(1);

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    /// A store that counts writes and can be made to fail, or to hold its
    /// next load (after reading) until released.
    #[derive(Debug, Default)]
    struct Counting {
        rows: Mutex<HashMap<Id, Record>>,
        writes: AtomicUsize,
        down: AtomicBool,
        hold: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
        /// Held before a delete takes the row away.
        hold_delete: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
        /// Moved by "another process".
        generation: std::sync::atomic::AtomicI64,
        /// Looks at the generation.
        looks: AtomicUsize,
    }

    impl ChangedElsewhere for &'static Counting {
        async fn generation(&self) -> session_store::Result<i64> {
            self.looks.fetch_add(1, Ordering::SeqCst);
            Ok(self.generation.load(Ordering::SeqCst))
        }
    }

    impl Counting {
        fn check(&self) -> session_store::Result<()> {
            if self.down.load(Ordering::SeqCst) {
                return Err(session_store::Error::Backend("down".into()));
            }
            self.writes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    impl SaveExisting for &'static Counting {
        async fn save_existing(&self, record: &Record) -> session_store::Result<bool> {
            self.check()?;
            let mut rows = self.rows.lock().unwrap();
            let there = rows.contains_key(&record.id);
            if there {
                rows.insert(record.id, record.clone());
            }
            Ok(there)
        }
    }

    #[async_trait]
    impl SessionStore for &'static Counting {
        async fn create(&self, record: &mut Record) -> session_store::Result<()> {
            self.check()?;
            self.rows.lock().unwrap().insert(record.id, record.clone());
            Ok(())
        }
        async fn save(&self, record: &Record) -> session_store::Result<()> {
            self.save_existing(record).await.map(drop)
        }
        async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
            let row = self.rows.lock().unwrap().get(id).cloned();
            let hold = self.hold.lock().unwrap().take();
            if let Some(release) = hold {
                let _ = release.await;
            }
            Ok(row)
        }
        async fn delete(&self, id: &Id) -> session_store::Result<()> {
            let hold = self.hold_delete.lock().unwrap().take();
            if let Some(release) = hold {
                let _ = release.await;
            }
            self.check()?;
            self.rows.lock().unwrap().remove(id);
            Ok(())
        }
    }

    fn record(value: &str) -> Record {
        Record {
            id: Id::default(),
            data: HashMap::from([("k".to_owned(), serde_json::json!(value))]),
            expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        }
    }

    #[tokio::test]
    async fn an_unchanged_save_is_skipped_a_changed_one_written() {
        let store: &'static Counting = Box::leak(Box::default());
        let cached = WriteThrough::new(store, 10);
        let mut r = record("a");
        cached.create(&mut r).await.unwrap();
        cached.save(&r).await.unwrap();
        r.expiry_date += time::Duration::milliseconds(5);
        cached.save(&r).await.unwrap();
        assert_eq!(store.writes.load(Ordering::SeqCst), 1, "create, then identical saves");
        r.expiry_date += time::Duration::seconds(60);
        cached.save(&r).await.unwrap();
        assert_eq!(store.writes.load(Ordering::SeqCst), 2, "a later expiry is written");
        r.data.insert("k".into(), serde_json::json!("b"));
        cached.save(&r).await.unwrap();
        assert_eq!(store.writes.load(Ordering::SeqCst), 3, "changed data is written");
        assert_eq!(store.rows.lock().unwrap()[&r.id], r);
    }

    #[tokio::test]
    async fn a_failed_write_leaves_the_cache_behind_the_store() {
        let store: &'static Counting = Box::leak(Box::default());
        let cached = WriteThrough::new(store, 10);
        let mut r = record("a");
        cached.create(&mut r).await.unwrap();
        store.down.store(true, Ordering::SeqCst);
        let mut changed = r.clone();
        changed.data.insert("k".into(), serde_json::json!("b"));
        assert!(cached.save(&changed).await.is_err());
        assert!(cached.delete(&r.id).await.is_err());
        assert_eq!(
            cached.load(&r.id).await.unwrap(),
            Some(r.clone()),
            "not the unsaved change"
        );
        store.down.store(false, Ordering::SeqCst);
        cached.save(&changed).await.unwrap();
        assert_eq!(
            store.rows.lock().unwrap()[&r.id],
            changed,
            "the retry is written, not skipped"
        );
    }

    #[tokio::test]
    async fn a_load_that_raced_a_logout_does_not_bring_the_session_back() {
        let store: &'static Counting = Box::leak(Box::default());
        let mut r = record("a");
        store.create(&mut r).await.unwrap();
        let cached = WriteThrough::new(store, 10);
        let (release, held) = tokio::sync::oneshot::channel();
        *store.hold.lock().unwrap() = Some(held);
        // A request reads the session from the store…
        let load = tokio::spawn({
            let cached = cached.clone();
            async move { cached.load(&r.id).await.unwrap() }
        });
        tokio::task::yield_now().await;
        // …while a logout deletes it, before the read reaches the cache.
        cached.delete(&r.id).await.unwrap();
        release.send(()).unwrap();
        assert!(load.await.unwrap().is_some(), "that request saw the session");
        assert_eq!(cached.load(&r.id).await.unwrap(), None, "the next one does not");
    }

    #[tokio::test]
    async fn an_expired_record_is_not_served_from_the_cache() {
        let store: &'static Counting = Box::leak(Box::default());
        let cached = WriteThrough::new(store, 10);
        let mut r = record("a");
        r.expiry_date = time::OffsetDateTime::now_utc() + time::Duration::milliseconds(50);
        // The first load's look at the store empties the cache; done first.
        cached.load(&Id::default()).await.unwrap();
        cached.create(&mut r).await.unwrap();
        store.rows.lock().unwrap().clear();
        assert_eq!(cached.load(&r.id).await.unwrap(), Some(r.clone()), "from the cache");
        tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        assert_eq!(cached.load(&r.id).await.unwrap(), None, "expired: asked of the store");
    }

    #[tokio::test]
    async fn a_load_that_began_during_a_logout_does_not_bring_the_session_back() {
        let store: &'static Counting = Box::leak(Box::default());
        let mut r = record("a");
        store.create(&mut r).await.unwrap();
        let cached = WriteThrough::new(store, 10);
        let (release_delete, held_delete) = tokio::sync::oneshot::channel();
        *store.hold_delete.lock().unwrap() = Some(held_delete);
        // A logout starts; its delete waits (for the writer, say)…
        let delete = tokio::spawn({
            let cached = cached.clone();
            async move { cached.delete(&r.id).await.unwrap() }
        });
        tokio::task::yield_now().await;
        // …a request reads the row meanwhile, and is slow to cache it…
        let (release_load, held_load) = tokio::sync::oneshot::channel();
        *store.hold.lock().unwrap() = Some(held_load);
        let load = tokio::spawn({
            let cached = cached.clone();
            async move { cached.load(&r.id).await.unwrap() }
        });
        tokio::task::yield_now().await;
        // …until the delete is done.
        release_delete.send(()).unwrap();
        delete.await.unwrap();
        release_load.send(()).unwrap();
        assert!(load.await.unwrap().is_some(), "that request saw the session");
        assert_eq!(cached.load(&r.id).await.unwrap(), None, "the next one does not");
    }

    #[tokio::test]
    async fn a_delete_cut_short_by_a_timeout_empties_the_cache() {
        let store: &'static Counting = Box::leak(Box::default());
        let cached = WriteThrough::new(store, 10);
        let mut r = record("a");
        cached.create(&mut r).await.unwrap();
        let (_release, held) = tokio::sync::oneshot::channel();
        *store.hold_delete.lock().unwrap() = Some(held);
        let cut = tokio::time::timeout(std::time::Duration::from_millis(10), cached.delete(&r.id)).await;
        assert!(cut.is_err(), "the delete was cancelled");
        assert!(cached.cache.get(&r.id).is_none(), "the next load asks the store");
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_ended_by_another_process_leave_the_cache_within_the_recheck_interval() {
        let store: &'static Counting = Box::leak(Box::default());
        let cached = WriteThrough::new(store, 10);
        let mut r = record("a");
        cached.create(&mut r).await.unwrap();
        assert!(cached.load(&r.id).await.unwrap().is_some());
        for _ in 0..100 {
            cached.load(&r.id).await.unwrap();
        }
        assert_eq!(store.looks.load(Ordering::SeqCst), 1, "one look for many loads");

        // Another process deletes the row and says so.
        store.rows.lock().unwrap().clear();
        store.generation.fetch_add(1, Ordering::SeqCst);
        tokio::time::advance(SESSION_CACHE_RECHECK).await;
        assert_eq!(cached.load(&r.id).await.unwrap(), None, "asked of the store again");
        assert_eq!(store.looks.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_load_fills_the_cache_and_a_delete_empties_both() {
        let store: &'static Counting = Box::leak(Box::default());
        let mut r = record("a");
        store.create(&mut r).await.unwrap();
        let cached = WriteThrough::new(store, 10);
        assert_eq!(cached.load(&r.id).await.unwrap(), Some(r.clone()));
        store.rows.lock().unwrap().clear();
        assert_eq!(cached.load(&r.id).await.unwrap(), Some(r.clone()), "from the cache");
        cached.delete(&r.id).await.unwrap();
        assert_eq!(cached.load(&r.id).await.unwrap(), None);
    }
}
