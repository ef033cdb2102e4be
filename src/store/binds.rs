//! The parameters of the statements both SQL stores send alike, bound in
//! one place: the user's upsert and a session's link. Each store writes its
//! own SQL (`?N` for SQLite, `$N` for PostgreSQL) with these parameters in
//! this order.

use sqlx::query::{Query, QueryAs};
use sqlx::{Database, Encode, Type};

use super::{SessionLink, UserProfile};

/// Binds the profile `p` and the time `now` (its creation and last login
/// both, where the user is new) as parameters 1 to 7 of a user's upsert:
/// issuer, subject, email, email_verified, name, picture, now.
pub(super) fn user<'q, DB, O>(
    query: QueryAs<'q, DB, O, <DB as Database>::Arguments<'q>>,
    p: &'q UserProfile<'_>,
    now: i64,
) -> QueryAs<'q, DB, O, <DB as Database>::Arguments<'q>>
where
    DB: Database,
    &'q str: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    Option<bool>: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
{
    query
        .bind(p.issuer)
        .bind(p.subject)
        .bind(p.email)
        .bind(p.email_verified)
        .bind(p.name)
        .bind(p.picture)
        .bind(now)
}

/// Binds the link `l` as parameters 1 to 9 of a link's insert: session_id,
/// issuer, subject, sid, expires_at, id_token, started_at, user_agent,
/// client_ip.
pub(super) fn link<'q, DB>(
    query: Query<'q, DB, <DB as Database>::Arguments<'q>>,
    l: &'q SessionLink<'_>,
) -> Query<'q, DB, <DB as Database>::Arguments<'q>>
where
    DB: Database,
    &'q str: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
{
    query
        .bind(l.session_id)
        .bind(l.issuer)
        .bind(l.subject)
        .bind(l.sid)
        .bind(l.expires_at)
        .bind(l.id_token)
        .bind(l.from.started_at)
        .bind(l.from.user_agent.as_deref())
        .bind(l.from.client_ip.as_deref())
}
