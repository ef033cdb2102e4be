//! Session loads from PostgreSQL, batched: the lookups of concurrent
//! requests go to the database as one `WHERE id = ANY($1)` query instead of
//! one query each (the DataLoader pattern; `fred` does the same for Redis by
//! pipelining).
//!
//! A lone load is sent at once. While `in_flight` queries are already out,
//! further loads wait, and the next query takes all of them (up to
//! `max_batch`). Loads that have waited `more_after` (the queries out are
//! slow: a cold read, a lock, a descheduled backend) send one more, up to
//! `most_in_flight`; when the queries answer promptly again, the number
//! out goes back to `in_flight`. A load is only ever answered by a query
//! sent *after* it was asked for, so a session deleted before a request
//! began (a logout, a back-channel logout on another instance) is never
//! served to it.

use std::collections::HashMap;
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sqlx::PgConnection;
use sqlx::postgres::PgConnectOptions;
use time::OffsetDateTime;
use tokio::sync::oneshot;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store;

use super::dedicated::{self, Cancelled, Dedicated};
use super::sessions::backend;

/// Where the records of many ids are read at once.
pub(super) trait LoadMany: Send + Sync + 'static {
    /// The live (unexpired) records among `ids`, by id; an id that is
    /// missing or expired is absent. An entry that cannot be read is an
    /// `Err` for that id alone.
    fn load_many(
        &self,
        ids: &[Id],
    ) -> impl Future<Output = session_store::Result<HashMap<Id, Result<Record, String>>>> + Send;
}

type Reply = oneshot::Sender<session_store::Result<Option<Record>>>;

/// Loads through `source`, batched.
#[derive(Debug)]
pub(super) struct BatchedLoads<L> {
    shared: Arc<Shared<L>>,
}

impl<L> Clone for BatchedLoads<L> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

/// How many queries go out at once, and how large and long they may be.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    /// Queries out at once while they answer promptly (at least 1).
    pub in_flight: usize,
    /// Queries out at once when loads have waited `more_after` (at least `in_flight`).
    pub most_in_flight: usize,
    pub more_after: Duration,
    /// Ids in one query at most (at least 1).
    pub max_batch: usize,
    /// A query that takes longer fails its batch (and frees its slot).
    pub timeout: Duration,
}

#[derive(Debug)]
struct Shared<L> {
    source: L,
    queue: Mutex<Queue>,
    limits: Limits,
}

#[derive(Debug, Default)]
struct Queue {
    /// In the order they were asked for; batches take them from the front.
    waiting: Vec<(Id, Reply)>,
    in_flight: usize,
    /// Loads ever queued and ever sent: the waiting ones are numbered
    /// `sent..queued`.
    queued: u64,
    sent: u64,
}

impl Queue {
    /// Queues a load; returns its number.
    fn push(&mut self, id: Id, reply: Reply) -> u64 {
        self.waiting.push((id, reply));
        self.queued += 1;
        self.queued - 1
    }

    /// The loads waiting (up to `max`) as a batch, if any wait and fewer
    /// than `slots` queries are out; the batch holds a slot.
    fn take_batch(&mut self, slots: usize, max: usize) -> Option<Vec<(Id, Reply)>> {
        if self.waiting.is_empty() || self.in_flight >= slots {
            return None;
        }
        self.in_flight += 1;
        let batch: Vec<_> = if self.waiting.len() <= max {
            std::mem::take(&mut self.waiting)
        } else {
            self.waiting.drain(..max).collect()
        };
        self.sent += batch.len() as u64;
        Some(batch)
    }
}

impl<L: LoadMany> BatchedLoads<L> {
    pub(super) fn new(source: L, limits: Limits) -> Self {
        let in_flight = limits.in_flight.max(1);
        Self {
            shared: Arc::new(Shared {
                source,
                queue: Mutex::default(),
                limits: Limits {
                    in_flight,
                    most_in_flight: limits.most_in_flight.max(in_flight),
                    max_batch: limits.max_batch.max(1),
                    ..limits
                },
            }),
        }
    }

    /// The live record of `id`, if any, from a query sent after this call.
    pub(super) async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let limits = &self.shared.limits;
        let (reply, mut answer) = oneshot::channel();
        let (ticket, batch) = {
            let mut queue = self.shared.lock();
            let ticket = queue.push(*id, reply);
            (ticket, queue.take_batch(limits.in_flight, limits.max_batch))
        };
        if let Some(batch) = batch {
            self.shared.send(batch);
        } else if limits.most_in_flight > limits.in_flight {
            // Waiting on queries already out: while they are slow, and this
            // load is still waiting, one more (once a slot is free).
            loop {
                if let Ok(answered) = tokio::time::timeout(limits.more_after, &mut answer).await {
                    return abandoned_if_dropped(answered);
                }
                let more = {
                    let mut queue = self.shared.lock();
                    if queue.sent > ticket {
                        break; // on its way
                    }
                    queue.take_batch(limits.most_in_flight, limits.max_batch)
                };
                if let Some(batch) = more {
                    self.shared.send(batch);
                }
            }
        }
        abandoned_if_dropped(answer.await)
    }
}

fn abandoned_if_dropped(
    answer: Result<session_store::Result<Option<Record>>, oneshot::error::RecvError>,
) -> session_store::Result<Option<Record>> {
    answer.unwrap_or_else(|_| Err(session_store::Error::Backend("session lookup was abandoned".into())))
}

impl<L: LoadMany> Shared<L> {
    /// Sends `batch`'s query in a task of its own: were the request that
    /// sent it to go away (a client hanging up), the loads of the others in
    /// the batch go on.
    fn send(self: &Arc<Self>, batch: Vec<(Id, Reply)>) {
        tokio::spawn(run(Slot(self.clone()), batch));
    }
}

impl<L> Shared<L> {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The lock is never held across anything that can panic.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One query slot, held while its batch runs. Releasing it hands it to the
/// loads that queued meanwhile, if any, even when the batch panicked.
struct Slot<L: LoadMany>(Arc<Shared<L>>);

impl<L: LoadMany> Drop for Slot<L> {
    fn drop(&mut self) {
        let shared = &self.0;
        let limits = &shared.limits;
        let runtime = tokio::runtime::Handle::try_current();
        let next = {
            let mut queue = shared.lock();
            queue.in_flight -= 1;
            match runtime {
                // Back to `in_flight` queries once they answer: the loads
                // waiting go with a query still out, or send one more if it is slow.
                Ok(_) => queue.take_batch(limits.in_flight, limits.max_batch),
                // No runtime (it is shutting down): the loads waiting fail
                // instead of waiting.
                Err(_) => {
                    let dropped = std::mem::take(&mut queue.waiting);
                    queue.sent += dropped.len() as u64;
                    None
                }
            }
        };
        if let Some(batch) = next {
            shared.send(batch);
        }
    }
}

/// Sends one query for `batch` and answers each of its loads.
async fn run<L: LoadMany>(slot: Slot<L>, batch: Vec<(Id, Reply)>) {
    let shared = &slot.0;
    let mut ids: Vec<Id> = batch.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable_by_key(|id| id.0);
    ids.dedup();
    let timeout = shared.limits.timeout;
    let found = match tokio::time::timeout(timeout, shared.source.load_many(&ids)).await {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("session lookup did not answer within {timeout:?}")),
    };
    for (id, reply) in batch {
        let answer = match &found {
            Err(e) => Err(session_store::Error::Backend(e.clone())),
            Ok(found) => match found.get(&id) {
                None => Ok(None),
                Some(Ok(record)) => Ok(Some(record.clone())),
                Some(Err(e)) => Err(session_store::Error::Decode(e.clone())),
            },
        };
        let _ = reply.send(answer);
    }
}

/// The session table of `tower-sessions-sqlx-store`'s `PostgresStore`,
/// read many ids at a time, on connections of its own (one per query in
/// flight): through a pool, every query would cost a second round trip
/// ([`Dedicated`]).
#[derive(Debug, Clone)]
pub(super) struct PgLoads {
    conns: Arc<[Dedicated<PgConnection>]>,
    query: String,
}

impl PgLoads {
    /// The table `"{schema}"."session"`, as `PostgresStore` creates it, read
    /// on `connections` connections to `options`.
    pub(super) fn new(options: PgConnectOptions, schema: &str, connections: usize) -> Self {
        Self {
            conns: (0..connections.max(1))
                .map(|_| Dedicated::new(options.clone(), Cancelled::Close))
                .collect(),
            // The schema name is validated as a plain identifier.
            query: format!(r#"SELECT id, data FROM "{schema}"."session" WHERE id = ANY($1) AND expiry_date > $2"#),
        }
    }

    async fn rows(&self, keys: &[String]) -> Result<Vec<(String, Vec<u8>)>, sqlx::Error> {
        Dedicated::run_on_any(&self.conns, async |conn| {
            sqlx::query_as(&self.query)
                .bind(keys)
                .bind(OffsetDateTime::now_utc())
                .fetch_all(conn)
                .await
        })
        .await
    }
}

impl LoadMany for PgLoads {
    async fn load_many(&self, ids: &[Id]) -> session_store::Result<HashMap<Id, Result<Record, String>>> {
        let keys: Vec<String> = ids.iter().map(Id::to_string).collect();
        // A connection that sat idle may have been cut (a database restart,
        // a firewall): the read is repeated on a new one, until each
        // connection has been opened again. A read can be repeated, and a
        // repeat is still sent after the load was asked for.
        let mut rows = self.rows(&keys).await;
        for _ in 0..self.conns.len() {
            match &rows {
                Err(e) if dedicated::broken(e) => rows = self.rows(&keys).await,
                _ => break,
            }
        }
        let rows = rows.map_err(backend)?;
        Ok(rows
            .into_iter()
            .filter_map(|(key, data)| {
                let id = Id::from_str(&key).ok()?;
                let record = rmp_serde::from_slice::<Record>(&data)
                    .map_err(|e| e.to_string())
                    // The row's key is what was asked for; a record that
                    // names another id is not that session.
                    .and_then(|r| match r.id == id {
                        true => Ok(r),
                        false => Err("session record under another id".to_owned()),
                    });
                Some((id, record))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::sync::Semaphore;

    use super::*;

    /// A store in memory whose queries can be held at the gate, and which
    /// reads its data when a query starts, as a database snapshot would.
    #[derive(Default)]
    struct Fake {
        records: Mutex<HashMap<Id, Record>>,
        queries: Mutex<Vec<Vec<Id>>>,
        gate: Option<Arc<Semaphore>>,
        fail: AtomicBool,
        panic: AtomicBool,
    }

    impl LoadMany for Arc<Fake> {
        async fn load_many(&self, ids: &[Id]) -> session_store::Result<HashMap<Id, Result<Record, String>>> {
            self.queries.lock().unwrap().push(ids.to_vec());
            let snapshot: HashMap<Id, Result<Record, String>> = {
                let records = self.records.lock().unwrap();
                ids.iter()
                    .filter_map(|id| records.get(id).map(|r| (*id, Ok(r.clone()))))
                    .collect()
            };
            if let Some(gate) = &self.gate {
                gate.acquire().await.unwrap().forget();
            }
            if self.panic.load(Ordering::SeqCst) {
                panic!("source panicked");
            }
            if self.fail.load(Ordering::SeqCst) {
                return Err(session_store::Error::Backend("down".into()));
            }
            Ok(snapshot)
        }
    }

    fn record(value: &str) -> Record {
        let mut data = HashMap::new();
        data.insert("v".to_owned(), serde_json::json!(value));
        Record {
            id: Id::default(),
            data,
            expiry_date: OffsetDateTime::now_utc() + time::Duration::hours(1),
        }
    }

    fn fake(gated: bool, records: &[&Record]) -> (Arc<Fake>, Option<Arc<Semaphore>>) {
        let gate = gated.then(|| Arc::new(Semaphore::new(0)));
        let fake = Arc::new(Fake {
            gate: gate.clone(),
            ..Fake::default()
        });
        for r in records {
            fake.records.lock().unwrap().insert(r.id, (*r).clone());
        }
        (fake, gate)
    }

    fn limits(in_flight: usize, max_batch: usize) -> Limits {
        Limits {
            in_flight,
            most_in_flight: in_flight,
            more_after: Duration::from_secs(60),
            max_batch,
            timeout: Duration::from_secs(5),
        }
    }

    fn loads(fake: &Arc<Fake>, in_flight: usize, batch: usize) -> BatchedLoads<Arc<Fake>> {
        BatchedLoads::new(fake.clone(), limits(in_flight, batch))
    }

    type Answer = session_store::Result<Option<Record>>;

    /// A load of `id` in a task of its own, as a request would make it.
    fn spawn_load(loads: &BatchedLoads<Arc<Fake>>, id: Id) -> tokio::task::JoinHandle<Answer> {
        let loads = loads.clone();
        tokio::spawn(async move { loads.load(&id).await })
    }

    /// Lets spawned tasks run until they wait on something.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    fn value(answer: &Answer) -> Option<String> {
        let record = answer.as_ref().expect("no error").as_ref()?;
        Some(record.data["v"].as_str().unwrap().to_owned())
    }

    #[tokio::test]
    async fn a_lone_load_is_one_query_for_its_id() {
        let a = record("a");
        let (fake, _) = fake(false, &[&a]);
        let loads = loads(&fake, 1, 100);
        assert_eq!(value(&loads.load(&a.id).await).as_deref(), Some("a"));
        let unknown = Id::default();
        assert_eq!(value(&loads.load(&unknown).await), None);
        assert_eq!(*fake.queries.lock().unwrap(), vec![vec![a.id], vec![unknown]]);
    }

    #[tokio::test]
    async fn loads_that_wait_go_out_as_one_query_each_getting_its_own_record() {
        let records: Vec<Record> = (0..20).map(|i| record(&i.to_string())).collect();
        let (fake, gate) = fake(true, &records.iter().collect::<Vec<_>>());
        let loads = loads(&fake, 1, 100);
        let mut tasks = Vec::new();
        for (i, r) in records.iter().enumerate() {
            tasks.push((i, spawn_load(&loads, r.id)));
            settle().await;
        }
        // The same id twice in one batch: both get it, one key is asked for.
        let twice = spawn_load(&loads, records[5].id);
        settle().await;
        gate.unwrap().add_permits(2);
        for (i, task) in tasks {
            assert_eq!(value(&task.await.unwrap()), Some(i.to_string()));
        }
        assert_eq!(value(&twice.await.unwrap()).as_deref(), Some("5"));
        let queries = fake.queries.lock().unwrap();
        assert_eq!(queries.len(), 2, "the first alone, then the 19 others at once");
        assert_eq!(queries[0], vec![records[0].id]);
        let second: HashSet<_> = queries[1].iter().collect();
        assert_eq!(queries[1].len(), 19, "ids are asked for once each");
        assert_eq!(second.len(), 19);
    }

    #[tokio::test]
    async fn a_load_is_never_answered_by_a_query_sent_before_it() {
        let a = record("a");
        let (fake, gate) = fake(true, &[&a]);
        let loads = loads(&fake, 1, 100);
        let early = spawn_load(&loads, a.id);
        settle().await; // its query is out, and has read `a`
        fake.records.lock().unwrap().remove(&a.id); // a logout
        let late = spawn_load(&loads, a.id);
        settle().await;
        gate.unwrap().add_permits(2);
        assert_eq!(value(&early.await.unwrap()).as_deref(), Some("a"));
        assert_eq!(value(&late.await.unwrap()), None, "the logged-out session is gone");
    }

    #[tokio::test]
    async fn batches_are_bounded_and_several_go_out_at_once() {
        let records: Vec<Record> = (0..7).map(|i| record(&i.to_string())).collect();
        let (fake, gate) = fake(true, &records.iter().collect::<Vec<_>>());
        let loads = loads(&fake, 2, 3);
        let mut tasks = Vec::new();
        for r in &records {
            tasks.push(spawn_load(&loads, r.id));
            settle().await;
        }
        assert_eq!(fake.queries.lock().unwrap().len(), 2, "two slots, both taken");
        gate.unwrap().add_permits(10);
        for (i, task) in tasks.into_iter().enumerate() {
            assert_eq!(value(&task.await.unwrap()), Some(i.to_string()));
        }
        let sizes: Vec<usize> = fake.queries.lock().unwrap().iter().map(Vec::len).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 7);
        assert!(sizes.iter().all(|&n| n <= 3), "{sizes:?}");
    }

    #[tokio::test]
    async fn a_failed_query_fails_its_batch_only() {
        let a = record("a");
        let (fake, _) = fake(false, &[&a]);
        let loads = loads(&fake, 1, 100);
        fake.fail.store(true, Ordering::SeqCst);
        assert!(loads.load(&a.id).await.is_err());
        fake.fail.store(false, Ordering::SeqCst);
        assert_eq!(value(&loads.load(&a.id).await).as_deref(), Some("a"));
    }

    #[tokio::test]
    async fn a_panicking_query_frees_its_slot() {
        let a = record("a");
        let (fake, _) = fake(false, &[&a]);
        let loads = loads(&fake, 1, 100);
        fake.panic.store(true, Ordering::SeqCst);
        assert!(loads.load(&a.id).await.is_err());
        fake.panic.store(false, Ordering::SeqCst);
        assert_eq!(value(&loads.load(&a.id).await).as_deref(), Some("a"));
    }

    #[tokio::test]
    async fn a_caller_that_goes_away_does_not_stop_the_others() {
        let (a, b) = (record("a"), record("b"));
        let (fake, gate) = fake(true, &[&a, &b]);
        let loads = loads(&fake, 1, 100);
        let first = spawn_load(&loads, a.id);
        settle().await;
        let gone = spawn_load(&loads, a.id);
        let kept = spawn_load(&loads, b.id);
        settle().await;
        gone.abort();
        first.abort();
        gate.unwrap().add_permits(2);
        assert_eq!(value(&kept.await.unwrap()).as_deref(), Some("b"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_query_that_hangs_fails_within_the_timeout() {
        let a = record("a");
        let (fake, _gate) = fake(true, &[&a]); // never opened
        let loads = BatchedLoads::new(
            fake.clone(),
            Limits {
                most_in_flight: 2,
                more_after: Duration::from_millis(10),
                timeout: Duration::from_secs(3),
                ..limits(1, 100)
            },
        );
        let first = spawn_load(&loads, a.id);
        let waiting = spawn_load(&loads, a.id);
        assert!(first.await.unwrap().is_err());
        assert!(waiting.await.unwrap().is_err());
    }

    /// `n` records behind a closed gate, loaded one query at a time, or
    /// two once loads have waited 10 ms.
    fn slow_queries(n: usize) -> (Vec<Record>, Arc<Fake>, Arc<Semaphore>, BatchedLoads<Arc<Fake>>) {
        let records: Vec<Record> = (0..n).map(|i| record(&i.to_string())).collect();
        let (fake, gate) = fake(true, &records.iter().collect::<Vec<_>>());
        let loads = BatchedLoads::new(
            fake.clone(),
            Limits {
                most_in_flight: 2,
                more_after: Duration::from_millis(10),
                ..limits(1, 100)
            },
        );
        (records, fake, gate.unwrap(), loads)
    }

    /// Lets `ms` pass (on the paused clock), then the tasks run.
    async fn wait(ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        settle().await;
    }

    /// Loads that wait on a slow query send one more after `more_after`,
    /// never more than `most_in_flight`; once the queries out have
    /// answered, it is one at a time again.
    #[tokio::test(start_paused = true)]
    async fn a_slow_query_lets_one_more_go_out_after_a_while() {
        let (records, fake, gate, loads) = slow_queries(5);
        let queries = || fake.queries.lock().unwrap().clone();
        // As a query asks for them: sorted.
        let ids = |range: std::ops::Range<usize>| {
            let mut ids: Vec<Id> = records[range].iter().map(|r| r.id).collect();
            ids.sort_unstable_by_key(|id| id.0);
            ids
        };
        let mut tasks: Vec<_> = (0..2).map(|i| spawn_load(&loads, records[i].id)).collect();
        settle().await;
        assert_eq!(queries(), vec![ids(0..1)], "the first goes out, the second waits");
        wait(5).await;
        assert_eq!(queries().len(), 1, "not slow yet");
        wait(6).await;
        assert_eq!(
            queries(),
            vec![ids(0..1), ids(1..2)],
            "one more, for the load that waited"
        );
        tasks.push(spawn_load(&loads, records[2].id));
        wait(20).await;
        assert_eq!(queries().len(), 2, "never more than two out");
        // The first query answers: its slot is given up, as one is still
        // out, and the load that has waited sends one more within
        // `more_after`, with no other load arriving.
        gate.add_permits(1);
        settle().await;
        assert_eq!(queries().len(), 2, "not at once");
        wait(10).await;
        assert_eq!(queries()[2..], [ids(2..3)], "the load that had waited");
        gate.add_permits(2);
        settle().await;
        // Both answered: one at a time again.
        tasks.push(spawn_load(&loads, records[3].id));
        settle().await;
        tasks.push(spawn_load(&loads, records[4].id));
        settle().await;
        assert_eq!(queries()[3..], [ids(3..4)], "the next waits on the one out");
        gate.add_permits(2);
        for (i, task) in tasks.into_iter().enumerate() {
            assert_eq!(value(&task.await.unwrap()), Some(i.to_string()));
        }
    }

    /// A load that an answered query's slot already sent does not send one
    /// more, for loads that have hardly waited, when its own wait is up.
    #[tokio::test(start_paused = true)]
    async fn a_load_already_sent_sends_no_more() {
        let (records, fake, gate, loads) = slow_queries(3);
        let queries = || fake.queries.lock().unwrap().clone();
        let tasks = [spawn_load(&loads, records[0].id), spawn_load(&loads, records[1].id)];
        settle().await;
        wait(9).await;
        gate.add_permits(1);
        settle().await;
        assert_eq!(
            queries(),
            vec![vec![records[0].id], vec![records[1].id]],
            "sent by the slot"
        );
        let late = spawn_load(&loads, records[2].id);
        settle().await;
        wait(2).await;
        assert_eq!(queries().len(), 2, "the late load has waited 2 ms only");
        wait(9).await;
        assert_eq!(queries()[2..], [vec![records[2].id]], "it has waited 11 ms");
        gate.add_permits(2);
        for (i, task) in tasks.into_iter().chain([late]).enumerate() {
            assert_eq!(value(&task.await.unwrap()), Some(i.to_string()));
        }
    }
}
