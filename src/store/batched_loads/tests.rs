//! Tests of the batched loads, against a store in memory whose queries the
//! tests hold at a gate.

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
        max_waiting: 1000,
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

/// Loads beyond `max_waiting` fail at once; those waiting are served.
#[tokio::test(start_paused = true)]
async fn a_full_queue_refuses_loads_at_once() {
    let records: Vec<Record> = (0..5).map(|i| record(&i.to_string())).collect();
    let (fake, gate) = fake(true, &records.iter().collect::<Vec<_>>());
    let loads = BatchedLoads::new(
        fake.clone(),
        Limits {
            max_waiting: 3,
            ..limits(1, 100)
        },
    );
    let mut tasks = Vec::new();
    for r in &records[..4] {
        tasks.push(spawn_load(&loads, r.id));
        settle().await;
    }
    // One query out, three waiting: the fifth is refused without waiting.
    let refused = tokio::time::timeout(Duration::from_millis(1), loads.load(&records[4].id)).await;
    assert!(matches!(refused, Ok(Err(_))), "refused at once: {refused:?}");
    gate.unwrap().add_permits(2);
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(value(&task.await.unwrap()), Some(i.to_string()));
    }
    let sizes: Vec<usize> = fake.queries.lock().unwrap().iter().map(Vec::len).collect();
    assert_eq!(sizes, [1, 3], "the refused load was never sent");
}

/// Refusals are one log line per interval, with their number.
#[tokio::test(start_paused = true)]
async fn refusals_are_logged_once_per_interval_with_their_count() {
    let mut queue = Queue::default();
    let mut replies = Vec::new();
    let mut push = |queue: &mut Queue| {
        let (reply, answer) = oneshot::channel();
        replies.push(answer);
        match queue.push(Id::default(), reply, 1) {
            Queued::Ticket(_) => "queued".to_owned(),
            Queued::Full(None) => "refused".to_owned(),
            Queued::Full(Some(n)) => format!("log {n}"),
        }
    };
    assert_eq!(push(&mut queue), "queued");
    assert_eq!(push(&mut queue), "log 1", "the first refusal is logged");
    assert_eq!(push(&mut queue), "refused");
    assert_eq!(push(&mut queue), "refused");
    tokio::time::advance(REFUSALS_LOGGED_EVERY).await;
    assert_eq!(push(&mut queue), "log 3", "the two not logged, and this one");
    assert_eq!(push(&mut queue), "refused");
}

/// A load whose caller has gone (a timeout, a client hanging up) is not
/// sent, and does not hold a place in the queue.
#[tokio::test]
async fn loads_whose_caller_has_gone_are_not_sent() {
    let records: Vec<Record> = (0..5).map(|i| record(&i.to_string())).collect();
    let (fake, gate) = fake(true, &records.iter().collect::<Vec<_>>());
    let gate = gate.unwrap();
    let loads = BatchedLoads::new(
        fake.clone(),
        Limits {
            max_waiting: 2,
            ..limits(1, 100)
        },
    );
    let first = spawn_load(&loads, records[0].id);
    settle().await;
    let gone = [spawn_load(&loads, records[1].id), spawn_load(&loads, records[2].id)];
    settle().await;
    for task in &gone {
        task.abort();
    }
    settle().await;
    // The queue is full of loads nobody waits for: they make room.
    let kept = [spawn_load(&loads, records[3].id), spawn_load(&loads, records[4].id)];
    settle().await;
    gate.add_permits(2);
    assert_eq!(value(&first.await.unwrap()).as_deref(), Some("0"));
    for (task, i) in kept.into_iter().zip(3..) {
        assert_eq!(value(&task.await.unwrap()), Some(i.to_string()));
    }
    let mut sent: Vec<Id> = fake.queries.lock().unwrap()[1].clone();
    sent.sort_unstable_by_key(|id| id.0);
    let mut live = vec![records[3].id, records[4].id];
    live.sort_unstable_by_key(|id| id.0);
    assert_eq!(sent, live, "the loads of callers gone are not sent");
}
