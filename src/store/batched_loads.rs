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
//!
//! The loads waiting are bounded ([`Limits::max_waiting`]): any client can
//! send well-formed random session ids, and while the database is slow
//! they would pile up without end. A load that finds the queue full fails
//! at once (the request gets the "temporarily unavailable" page), and the
//! refusals are counted in one log line per [`REFUSALS_LOGGED_EVERY`]. A
//! load whose caller has gone (timed out, hung up) is dropped from the
//! queue, never sent.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sqlx::PgConnection;
use sqlx::postgres::PgConnectOptions;
use time::OffsetDateTime;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store;

use super::dedicated::{self, Cancelled, Dedicated};
use super::record::backend;

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

/// Loads waiting at most, for PostgreSQL: 32 full batches, and about a
/// hundred times what waits on a busy instance while PostgreSQL answers
/// promptly (48,000 requests/s in the benchmark, a query a millisecond:
/// some 50 loads). Each holds an id and a reply channel, a few hundred
/// kilobytes in all.
pub(super) const MAX_WAITING: usize = 4096;

/// Loads refused because the queue was full are logged at most this often,
/// as one line with their number.
pub(super) const REFUSALS_LOGGED_EVERY: Duration = Duration::from_secs(10);

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
    /// Loads waiting at most (at least 1); more are refused at once.
    pub max_waiting: usize,
}

#[derive(Debug)]
struct Shared<L> {
    source: L,
    queue: Mutex<Queue>,
    limits: Limits,
}

#[derive(Debug, Default)]
struct Queue {
    /// In the order they were asked for, each with its number; batches take
    /// them from the front.
    waiting: VecDeque<(u64, Id, Reply)>,
    in_flight: usize,
    /// The number of the next load queued.
    next: u64,
    /// Loads refused since the last log line, and when that was.
    refused: u64,
    refusals_logged: Option<Instant>,
}

/// A load the queue took, or why not.
enum Queued {
    /// Waiting, with this number.
    Ticket(u64),
    /// The queue is full; `Some(n)` when a log line is due, for `n` refusals.
    Full(Option<u64>),
}

impl Queue {
    /// Queues a load, unless `max` wait already (after dropping those whose
    /// caller has gone).
    fn push(&mut self, id: Id, reply: Reply, max: usize) -> Queued {
        if self.waiting.len() >= max {
            self.waiting.retain(|(_, _, reply)| !reply.is_closed());
        }
        if self.waiting.len() >= max {
            self.refused += 1;
            let due = self
                .refusals_logged
                .is_none_or(|t| t.elapsed() >= REFUSALS_LOGGED_EVERY);
            if !due {
                return Queued::Full(None);
            }
            self.refusals_logged = Some(Instant::now());
            return Queued::Full(Some(std::mem::take(&mut self.refused)));
        }
        let ticket = self.next;
        self.next += 1;
        self.waiting.push_back((ticket, id, reply));
        Queued::Ticket(ticket)
    }

    /// Whether the load numbered `ticket` still waits. Loads leave the
    /// queue from the front (in a batch) or when their caller is gone, so a
    /// live load waits as long as the front is not past it.
    fn waits(&self, ticket: u64) -> bool {
        self.waiting.front().is_some_and(|(first, _, _)| *first <= ticket)
    }

    /// The loads waiting (up to `max`) as a batch, if any wait and fewer
    /// than `slots` queries are out; the batch holds a slot. Loads whose
    /// caller has gone are dropped, not sent.
    fn take_batch(&mut self, slots: usize, max: usize) -> Option<Vec<(Id, Reply)>> {
        if self.in_flight >= slots {
            return None;
        }
        let mut batch = Vec::with_capacity(self.waiting.len().min(max));
        while batch.len() < max
            && let Some((_, id, reply)) = self.waiting.pop_front()
        {
            if !reply.is_closed() {
                batch.push((id, reply));
            }
        }
        if batch.is_empty() {
            return None;
        }
        self.in_flight += 1;
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
                    max_waiting: limits.max_waiting.max(1),
                    ..limits
                },
            }),
        }
    }

    /// The live record of `id`, if any, from a query sent after this call.
    pub(super) async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let limits = &self.shared.limits;
        let (reply, mut answer) = oneshot::channel();
        let queued = {
            let mut queue = self.shared.lock();
            match queue.push(*id, reply, limits.max_waiting) {
                Queued::Ticket(ticket) => Ok((ticket, queue.take_batch(limits.in_flight, limits.max_batch))),
                Queued::Full(log) => Err(log),
            }
        };
        let (ticket, batch) = match queued {
            Ok(queued) => queued,
            Err(log) => {
                if let Some(refused) = log {
                    tracing::warn!(
                        refused,
                        waiting = limits.max_waiting,
                        "session lookups refused: too many wait for PostgreSQL"
                    );
                }
                return Err(session_store::Error::Backend("too many session lookups waiting".into()));
            }
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
                    if !queue.waits(ticket) {
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
                    queue.waiting.clear();
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
mod tests;
