//! One store test suite, run against every backend: SQLite always;
//! PostgreSQL when `TEST_DATABASE_URL` is set, Redis (sessions) when
//! `TEST_REDIS_URL` is set, and a local Redis Cluster and Sentinel setup
//! when `redis-server` is installed (see `support::redis`). Each PostgreSQL
//! test works in its own schema and drops it; Redis keys are random session
//! ids, deleted by the tests.

use std::sync::Arc;
use std::time::Duration;

use oidc_gate::config::{StoreConfig, StoreUrl};
use oidc_gate::secret::{Secret, random_token};
use oidc_gate::store::{SessionLink, SignedInFrom, Store, UserProfile};
use tower_sessions::SessionStore;
use tower_sessions::session::{Id, Record};

use crate::support::redis;

/// A backend under test, and how to clean it up.
pub struct Backend {
    pub config: StoreConfig,
    _dir: tempfile::TempDir,
    pg: Option<(String, String)>,
    /// Servers started for the test, stopped when the last user drops them.
    _servers: Option<Arc<dyn Send + Sync>>,
}

impl Backend {
    pub async fn drop_schema(&self) {
        if let Some((url, schema)) = &self.pg {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
}

/// A link's sign-in details when the test does not look at them.
const NOWHERE: SignedInFrom = SignedInFrom {
    started_at: 0,
    user_agent: None,
    client_ip: None,
};

fn base(dir: &tempfile::TempDir) -> StoreConfig {
    StoreConfig {
        database: StoreUrl::Sqlite(dir.path().join("oidc-gate.sqlite3")),
        sessions: None,
        schema: None,
        max_connections: 4,
        timeout: Duration::from_secs(3),
        session_cache: 100,
    }
}

/// The environment variable, required when CI says so (`CI=true`): there a
/// missing service is a failure, not a skip.
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("{var} must be set in CI"),
        _ => None,
    }
}

/// SQLite, plus PostgreSQL and Redis when configured.
pub fn backends() -> Vec<(&'static str, Backend)> {
    let mut all = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    all.push((
        "sqlite",
        Backend {
            config: base(&dir),
            _dir: dir,
            pg: None,
            _servers: None,
        },
    ));
    if let Some(url) = service_url("TEST_DATABASE_URL") {
        let dir = tempfile::tempdir().unwrap();
        let schema = format!("t_{}", random_token(6).to_ascii_lowercase().replace('-', "_"));
        let config = StoreConfig {
            database: StoreUrl::Postgres(Secret::new(url.clone())),
            schema: Some(schema.clone()),
            ..base(&dir)
        };
        all.push((
            "postgres",
            Backend {
                config,
                _dir: dir,
                pg: Some((url, schema)),
                _servers: None,
            },
        ));
    }
    if let Some(url) = service_url("TEST_REDIS_URL") {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            sessions: Some(StoreUrl::Redis(Secret::new(url))),
            ..base(&dir)
        };
        all.push((
            "redis",
            Backend {
                config,
                _dir: dir,
                pg: None,
                _servers: None,
            },
        ));
    }
    if redis::installed() {
        let cluster = redis::shared_cluster();
        all.push(("redis-cluster", redis_backend(cluster.url(), cluster)));
        let sentinel = redis::shared_sentinel_set();
        all.push(("redis-sentinel", redis_backend(sentinel.url(), sentinel)));
    }
    all
}

/// Sessions in the Redis deployment `servers` at `url`.
fn redis_backend(url: String, servers: Arc<dyn Send + Sync>) -> Backend {
    let dir = tempfile::tempdir().unwrap();
    Backend {
        config: StoreConfig {
            sessions: Some(StoreUrl::Redis(Secret::new(url))),
            ..base(&dir)
        },
        _dir: dir,
        pg: None,
        _servers: Some(servers),
    }
}

/// Runs `check` on every backend, cleaning up after each.
macro_rules! for_each_backend {
    ($check:ident) => {
        for (name, backend) in backends() {
            let store = Store::open(&backend.config)
                .await
                .unwrap_or_else(|e| panic!("{name}: open: {e}"));
            $check(name, &store).await;
            backend.drop_schema().await;
        }
    };
}

async fn users_are_unique_per_issuer_and_subject(name: &str, store: &Store) {
    let profile = |issuer, email| UserProfile {
        issuer,
        subject: "sub-1",
        email: Some(email),
        email_verified: Some(true),
        name: Some("Ada"),
        picture: None,
    };
    let a = store.upsert_user(&profile("https://a", "old@x"), 100).await.unwrap();
    let again = store.upsert_user(&profile("https://a", "new@x"), 200).await.unwrap();
    assert_eq!(a.id, again.id, "{name}: same user");
    assert_eq!(again.email.as_deref(), Some("new@x"), "{name}");
    assert_eq!((again.created_at, again.last_login_at), (100, 200), "{name}");
    let other = store.upsert_user(&profile("https://b", "b@x"), 300).await.unwrap();
    assert_ne!(other.id, a.id, "{name}: another issuer, another user");
    assert_eq!(
        store.user(a.id).await.unwrap().unwrap().email.as_deref(),
        Some("new@x"),
        "{name}"
    );
    assert_eq!(
        store.user(other.id).await.unwrap().unwrap().email.as_deref(),
        Some("b@x"),
        "{name}"
    );
    assert!(store.user(999_999).await.unwrap().is_none(), "{name}");
}

#[tokio::test]
async fn store_users() {
    for_each_backend!(users_are_unique_per_issuer_and_subject);
}

async fn sessions_are_found_by_sid_and_subject(name: &str, store: &Store) {
    let link = |id, subject, sid| SessionLink {
        session_id: id,
        issuer: "https://a",
        subject,
        sid,
        expires_at: 1_000,
        id_token: Some("token-of-"),
        from: &NOWHERE,
    };
    store.link_session(&link("s1", "alice", Some("sid-1"))).await.unwrap();
    store.link_session(&link("s2", "alice", Some("sid-2"))).await.unwrap();
    store.link_session(&link("s3", "bob", Some("sid-3"))).await.unwrap();
    let mut by_sub = store.linked_sessions("https://a", Some("alice"), None).await.unwrap();
    by_sub.sort();
    assert_eq!(by_sub, ["s1", "s2"], "{name}");
    assert_eq!(
        store.linked_sessions("https://a", None, Some("sid-2")).await.unwrap(),
        ["s2"],
        "{name}"
    );
    assert!(
        store
            .linked_sessions("https://a", Some("bob"), Some("sid-2"))
            .await
            .unwrap()
            .is_empty(),
        "{name}"
    );
    assert!(
        store
            .linked_sessions("https://other", Some("alice"), None)
            .await
            .unwrap()
            .is_empty(),
        "{name}"
    );
    assert!(
        store.linked_sessions("https://a", None, None).await.unwrap().is_empty(),
        "{name}"
    );
    assert_eq!(
        store.unlink_session("s1").await.unwrap().as_deref(),
        Some("token-of-"),
        "{name}: the hint"
    );
    assert_eq!(store.unlink_session("s1").await.unwrap(), None, "{name}: already gone");
    assert_eq!(
        store.linked_sessions("https://a", Some("alice"), None).await.unwrap(),
        ["s2"],
        "{name}"
    );

    store
        .link_session(&SessionLink {
            expires_at: 10,
            ..link("old", "carol", None)
        })
        .await
        .unwrap();
    assert!(store.delete_expired_links(500).await.unwrap() >= 1, "{name}");
    assert!(
        store
            .linked_sessions("https://a", Some("carol"), None)
            .await
            .unwrap()
            .is_empty(),
        "{name}"
    );
    assert_eq!(
        store.linked_sessions("https://a", Some("bob"), None).await.unwrap(),
        ["s3"],
        "{name}: live links stay"
    );
}

#[tokio::test]
async fn store_session_index() {
    for_each_backend!(sessions_are_found_by_sid_and_subject);
}

async fn logout_token_ids_are_single_use(name: &str, store: &Store) {
    assert!(
        store.remember_logout_jti("https://a", "jti-1", 100).await.unwrap(),
        "{name}"
    );
    assert!(
        !store.remember_logout_jti("https://a", "jti-1", 100).await.unwrap(),
        "{name}: replay"
    );
    assert!(
        store.remember_logout_jti("https://b", "jti-1", 100).await.unwrap(),
        "{name}: per issuer"
    );
    store.delete_expired_links(200).await.unwrap();
    assert!(
        store.remember_logout_jti("https://a", "jti-1", 300).await.unwrap(),
        "{name}: forgotten once expired"
    );
    // A logout that failed half-way releases its token id for the retry.
    assert!(store.remember_logout_jti("https://b", "jti-1", 300).await.unwrap());
    store.forget_logout_jti("https://a", "jti-1").await.unwrap();
    assert!(
        store.remember_logout_jti("https://a", "jti-1", 300).await.unwrap(),
        "{name}: released"
    );
    assert!(
        !store.remember_logout_jti("https://b", "jti-1", 300).await.unwrap(),
        "{name}: only that issuer's"
    );
}

#[tokio::test]
async fn store_logout_jti() {
    for_each_backend!(logout_token_ids_are_single_use);
}

fn record(expiry: time::OffsetDateTime) -> Record {
    let mut data = std::collections::HashMap::new();
    data.insert("k".to_owned(), serde_json::json!("v"));
    Record {
        id: Id::default(),
        data,
        expiry_date: expiry,
    }
}

async fn sessions_round_trip_and_expire(name: &str, store: &Store) {
    let sessions = store.session_backend();
    let now = time::OffsetDateTime::now_utc();
    let mut live = record(now + time::Duration::hours(1));
    sessions.create(&mut live).await.unwrap();
    let loaded = sessions
        .load(&live.id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{name}: loads"));
    assert_eq!(loaded.data["k"], "v", "{name}");
    live.data.insert("k".to_owned(), serde_json::json!("w"));
    sessions.save(&live).await.unwrap();
    assert_eq!(sessions.load(&live.id).await.unwrap().unwrap().data["k"], "w", "{name}");

    let expired = record(now - time::Duration::seconds(5));
    sessions.save(&expired).await.ok(); // Redis may refuse a past expiry outright
    assert!(
        sessions.load(&expired.id).await.unwrap().is_none(),
        "{name}: expired is gone"
    );
    sessions.delete_expired_now().await.unwrap();
    assert!(
        sessions.load(&live.id).await.unwrap().is_some(),
        "{name}: cleanup keeps live sessions"
    );

    sessions.delete(&live.id).await.unwrap();
    assert!(sessions.load(&live.id).await.unwrap().is_none(), "{name}: deleted");
    store.ping().await.unwrap();
}

#[tokio::test]
async fn store_sessions() {
    for_each_backend!(sessions_round_trip_and_expire);
}

/// A request that loaded its session before a logout and saves it after
/// (say, recording activity) must not bring the session back.
async fn a_save_after_a_delete_does_not_bring_the_session_back(name: &str, store: &Store) {
    let sessions = store.session_backend();
    let mut r = record(time::OffsetDateTime::now_utc() + time::Duration::hours(1));
    sessions.create(&mut r).await.unwrap();
    assert!(sessions.load(&r.id).await.unwrap().is_some(), "{name}: created");
    sessions.delete(&r.id).await.unwrap();
    r.data.insert("k".to_owned(), serde_json::json!("touched"));
    sessions.save(&r).await.unwrap();
    assert!(
        sessions.load(&r.id).await.unwrap().is_none(),
        "{name}: still logged out"
    );
}

/// The embedded store without its session cache: every load goes to
/// SQLite's readers.
async fn sqlite_without_cache() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        session_cache: 0,
        ..base(&dir)
    };
    (Store::open(&config).await.unwrap(), dir)
}

#[tokio::test]
async fn store_saves_after_a_logout() {
    for_each_backend!(a_save_after_a_delete_does_not_bring_the_session_back);
    let (store, _dir) = sqlite_without_cache().await;
    a_save_after_a_delete_does_not_bring_the_session_back("sqlite, no cache", &store).await;
}

/// Loads of many sessions at once (PostgreSQL answers them in batches):
/// each gets its own record, and a deleted one is gone.
async fn concurrent_loads_each_get_their_own(name: &str, store: &Store) {
    let sessions = store.session_backend();
    let now = time::OffsetDateTime::now_utc();
    let mut records = Vec::new();
    for i in 0..40 {
        let mut r = record(now + time::Duration::hours(1));
        r.data.insert("k".to_owned(), serde_json::json!(i));
        sessions.create(&mut r).await.unwrap();
        records.push(r);
    }
    let load_all = || {
        let mut loads = tokio::task::JoinSet::new();
        for (i, r) in records.iter().enumerate() {
            let (sessions, id) = (sessions.clone(), r.id);
            // The same session asked for twice at once, too.
            for _ in 0..2 {
                let sessions = sessions.clone();
                loads.spawn(async move { (i, sessions.load(&id).await.unwrap()) });
            }
        }
        loads.join_all()
    };
    for (i, loaded) in load_all().await {
        let loaded = loaded.unwrap_or_else(|| panic!("{name}: session {i} loads"));
        assert_eq!(loaded.id, records[i].id, "{name}");
        assert_eq!(loaded.data["k"], i, "{name}: session {i} has its own data");
    }
    for r in records.iter().step_by(2) {
        sessions.delete(&r.id).await.unwrap();
    }
    for (i, loaded) in load_all().await {
        assert_eq!(loaded.is_some(), i % 2 == 1, "{name}: session {i} after deletes");
    }
}

#[tokio::test]
async fn store_concurrent_session_loads() {
    for_each_backend!(concurrent_loads_each_get_their_own);
}

/// Many logins' writes at once (user, session, its link), each read back
/// as soon as it is written: SQLite queues them for its one writer, and
/// reads them through its other connections.
async fn concurrent_writes_are_read_back_at_once(name: &str, store: &Store) {
    let sessions = store.session_backend();
    let expiry = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let mut logins = tokio::task::JoinSet::new();
    for i in 0..48 {
        let (store, sessions) = (store.clone(), sessions.clone());
        logins.spawn(async move {
            let subject = format!("sub-{i}");
            let profile = UserProfile {
                issuer: "https://op.example",
                subject: &subject,
                email: None,
                email_verified: None,
                name: Some("N"),
                picture: None,
            };
            let user = store.upsert_user(&profile, 1_700_000_000).await.unwrap();
            let mut r = record(expiry);
            r.data.insert("k".to_owned(), serde_json::json!(i));
            sessions.create(&mut r).await.unwrap();
            let session_id = r.id.to_string();
            let link = SessionLink {
                session_id: &session_id,
                issuer: "https://op.example",
                subject: &subject,
                sid: None,
                expires_at: 1_900_000_000,
                id_token: None,
                from: &NOWHERE,
            };
            store.link_session(&link).await.unwrap();
            assert_eq!(store.user(user.id).await.unwrap(), Some(user.clone()));
            let loaded = sessions.load(&r.id).await.unwrap().expect("the new session loads");
            assert_eq!(loaded.data["k"], i);
            let linked = store
                .linked_sessions("https://op.example", Some(&subject), None)
                .await
                .unwrap();
            assert_eq!(linked, vec![session_id]);
        });
    }
    while let Some(done) = logins.join_next().await {
        done.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[tokio::test]
async fn store_concurrent_writes() {
    for_each_backend!(concurrent_writes_are_read_back_at_once);
    let (store, _dir) = sqlite_without_cache().await;
    concurrent_writes_are_read_back_at_once("sqlite, no cache", &store).await;
}

#[tokio::test]
async fn migrations_run_twice() {
    for (name, backend) in backends() {
        Store::open(&backend.config)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        Store::open(&backend.config)
            .await
            .unwrap_or_else(|e| panic!("{name}: second open: {e}"));
        backend.drop_schema().await;
    }
}

async fn cleanup_deletes_in_batches_and_keeps_live_sessions(name: &str, store: &Store) {
    let sessions = store.session_backend();
    if name.starts_with("redis") {
        // Keys expire by themselves (and Redis refuses a past expiry).
        assert_eq!(sessions.delete_expired_now().await.unwrap(), 0);
        return;
    }
    let past = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    for _ in 0..1_234 {
        sessions.create(&mut record(past)).await.unwrap();
    }
    let mut live = record(time::OffsetDateTime::now_utc() + time::Duration::hours(1));
    sessions.create(&mut live).await.unwrap();
    // More than one batch (500): the cleanup goes on until none are left.
    let deleted = sessions.delete_expired_now().await.unwrap();
    assert_eq!(deleted, 1_234, "{name}: every expired session");
    assert_eq!(sessions.delete_expired_now().await.unwrap(), 0, "{name}: none left");
    assert!(sessions.load(&live.id).await.unwrap().is_some(), "{name}: live kept");
}

#[tokio::test]
async fn store_cleanup_deletes_in_batches_and_keeps_live_sessions() {
    for_each_backend!(cleanup_deletes_in_batches_and_keeps_live_sessions);
}
