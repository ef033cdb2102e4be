//! A login's writes in one transaction: the user, the new session and its
//! link (by which back-channel logout finds it), where sessions and links
//! share a database.
//!
//! `tower-sessions` creates a session (and gives it its id) only through
//! `Session::save`, which calls the store's `create` with the record. So
//! [`super::Store::save_login`] hands the rest of the login to that call
//! through a task-local slot, and the SQL session stores' `create` writes
//! all of it in one transaction: one trip to SQLite's writer, one
//! transaction on one PostgreSQL connection. The user's id, which the
//! session records, is known only once the user is written: the record
//! gets its signed-in entry inside the transaction.

use std::sync::Mutex;

use sqlx::{PgPool, SqliteConnection};
use tower_sessions::session::{Id, Record};

use super::record::encode;
use super::{SessionLink, SignedInFrom, UserProfile, UserRow, binds, postgres, sqlite};

tokio::task_local! {
    /// The login whose session `Session::save` is creating in this task.
    static LOGIN: Mutex<Slot>;
}

/// The login handed to the store's `create`, and the user it wrote.
struct Slot {
    writes: Option<LoginWrites>,
    row: Option<UserRow>,
}

/// What a login writes besides its session (owned: it reaches the store
/// through `Session::save`).
#[derive(Debug)]
pub struct LoginWrites {
    /// The provider's issuer.
    pub issuer: String,
    /// The provider's subject identifier.
    pub subject: String,
    /// Email address.
    pub email: Option<String>,
    /// Whether the email address is verified.
    pub email_verified: Option<bool>,
    /// Display name.
    pub name: Option<String>,
    /// Picture URL.
    pub picture: Option<String>,
    /// The provider's session id (`sid`), if any.
    pub sid: Option<String>,
    /// When the session ends at the latest (Unix seconds).
    pub expires_at: i64,
    /// The raw ID token, for `id_token_hint` at logout.
    pub id_token: String,
    /// The time of the login (Unix seconds).
    pub now: i64,
    /// The browser and address it came from.
    pub from: SignedInFrom,
    /// The session entry (key and value) that signs in the user of this id.
    pub signed_in: fn(i64) -> (String, serde_json::Value),
}

impl LoginWrites {
    fn profile(&self) -> UserProfile<'_> {
        UserProfile {
            issuer: &self.issuer,
            subject: &self.subject,
            email: self.email.as_deref(),
            email_verified: self.email_verified,
            name: self.name.as_deref(),
            picture: self.picture.as_deref(),
        }
    }

    fn link<'a>(&'a self, session_id: &'a str) -> SessionLink<'a> {
        SessionLink {
            session_id,
            issuer: &self.issuer,
            subject: &self.subject,
            sid: self.sid.as_deref(),
            expires_at: self.expires_at,
            id_token: Some(&self.id_token),
            from: &self.from,
        }
    }
}

/// Runs `save` (a `Session::save` of a session with no id yet) with `writes`
/// for the store's `create`; returns what `save` returned, and the user the
/// create wrote (`None` if no create took the login).
pub(super) async fn with_login<E>(
    writes: LoginWrites,
    save: impl Future<Output = Result<(), E>>,
) -> Result<Option<UserRow>, E> {
    let slot = Mutex::new(Slot {
        writes: Some(writes),
        row: None,
    });
    LOGIN
        .scope(slot, async {
            save.await?;
            Ok(LOGIN.with(|slot| lock(slot).row.take()))
        })
        .await
}

/// The login a session store's `create` is to write with the session, if any.
pub(super) fn take() -> Option<LoginWrites> {
    LOGIN.try_with(|slot| lock(slot).writes.take()).ok().flatten()
}

fn written(row: UserRow) {
    let _ = LOGIN.try_with(|slot| lock(slot).row = Some(row));
}

fn lock(slot: &Mutex<Slot>) -> std::sync::MutexGuard<'_, Slot> {
    // Only this task uses it; a panic cannot leave it half-written.
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

/// Signs the user in on `record`, once their id is known.
fn sign_in(record: &mut Record, login: &LoginWrites, row: &UserRow) {
    let (key, value) = (login.signed_in)(row.id);
    record.data.insert(key, value);
}

/// The record as the session stores write it (its id included).
fn encoded(record: &Record) -> Result<Vec<u8>, sqlx::Error> {
    encode(record).map_err(|e| sqlx::Error::Encode(e.into()))
}

/// The transaction's start and the user (`?1` to `?7`, as
/// [`binds::user`] binds them): one query, one trip to the
/// writer's thread. `IMMEDIATE`: the write lock is taken at once.
const BEGIN_AND_USER: &str = concat!("BEGIN IMMEDIATE;\n", sqlite::upsert_user_sql!());

/// The session's insert (as `SqliteSessions::create` writes a session,
/// its id `?1`, its data `?10`, its expiry `?11`), its link (`?1` to `?9`),
/// and the commit: one query, one trip to the writer's thread. SQLite stops
/// at the first statement that fails: a taken id writes no link and commits
/// nothing, and the transaction goes on.
const SESSION_LINK_AND_COMMIT: &str = concat!(
    "INSERT OR ABORT INTO tower_sessions (id, data, expiry_date) VALUES (?1, ?10, ?11);\n",
    sqlite::link_sql!(),
    ";\nCOMMIT"
);

/// The login on SQLite's writer `c`: the user, the session (under a new id
/// if its id is taken) and the link; one transaction, in two trips to the
/// connection's thread (the begin with the user, then the session with its
/// link and the commit). The transaction is SQL of its own, which sqlx does
/// not roll back: run this with [`super::dedicated::Dedicated::run_or_close`],
/// so that a login that fails or is cancelled half-way closes the
/// connection, and with it the transaction.
pub(super) async fn in_sqlite(
    c: &mut SqliteConnection,
    record: &mut Record,
    login: &LoginWrites,
) -> Result<(), sqlx::Error> {
    let row = binds::user(sqlx::query_as(BEGIN_AND_USER), &login.profile(), login.now)
        // fetch_all: see `sqlite::upsert_user_on`.
        .fetch_all(&mut *c)
        .await?
        .into_iter()
        .next()
        .ok_or(sqlx::Error::RowNotFound)?;
    sign_in(record, login, &row);
    loop {
        let id = record.id.to_string();
        let link = login.link(&id);
        let done = binds::link(sqlx::query(SESSION_LINK_AND_COMMIT), &link)
            .bind(encoded(record)?)
            .bind(record.expiry_date)
            .execute(&mut *c)
            .await;
        match done {
            Ok(_) => break,
            // Only the statement failed: the transaction goes on.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => record.id = Id::default(),
            Err(e) => return Err(e),
        }
    }
    written(row);
    Ok(())
}

/// The login in PostgreSQL: the user, the session (`insert`: an insert
/// that does nothing when the id is taken; a new id is then tried), the
/// link; one transaction on one connection.
pub(super) async fn in_postgres(
    pool: &PgPool,
    insert: &str,
    record: &mut Record,
    login: &LoginWrites,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let row = postgres::upsert_user(&mut *tx, &login.profile(), login.now).await?;
    sign_in(record, login, &row);
    loop {
        let done = sqlx::query(insert)
            .bind(record.id.to_string())
            .bind(encoded(record)?)
            .bind(record.expiry_date)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 1 {
            break;
        }
        record.id = Id::default();
    }
    postgres::link_session(&mut *tx, &login.link(&record.id.to_string())).await?;
    tx.commit().await?;
    written(row);
    Ok(())
}
