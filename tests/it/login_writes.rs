//! A login's writes: where sessions share the database of users and links,
//! the user, the session and its link are one transaction (all three are
//! written, or none), so that a back-channel logout finds the signed-in
//! session by its link whenever the session exists.

use reqwest::StatusCode;
use sqlx::Connection;

use crate::support::{Browser, Options, StoreEnv, TestApp, login, text};

/// Makes every insert of a session link fail, until dropped.
const FAIL_LINKS_SQLITE: &str = "CREATE TRIGGER fail_links BEFORE INSERT ON session_index \
     BEGIN SELECT RAISE(ABORT, 'links are down'); END";
const FAIL_LINKS_PG: [&str; 2] = [
    "CREATE FUNCTION fail_links() RETURNS trigger LANGUAGE plpgsql AS \
     $$ BEGIN RAISE EXCEPTION 'links are down'; END $$",
    "CREATE TRIGGER fail_links BEFORE INSERT ON session_index FOR EACH ROW EXECUTE FUNCTION fail_links()",
];

/// Signs in while links cannot be written, then once they can: the failed
/// login leaves nothing behind (no user, no session, no link), the next
/// one all three. `counts` reads (users, sessions, links).
async fn nothing_or_everything<C: Future<Output = (i64, i64, i64)>>(
    app: &TestApp,
    counts: impl Fn() -> C,
    links: impl AsyncFn(bool),
) {
    links(false).await;
    let browser = Browser::new();
    let r = login(app, &browser, None).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(text(r).await.contains("store_unavailable"));
    assert_eq!(
        counts().await,
        (0, 0, 0),
        "(users, sessions, links) after a failed login"
    );

    links(true).await;
    let browser = Browser::new();
    let r = login(app, &browser, None).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let secret = browser.get(&app.url("/secret")).await;
    assert_eq!(secret.status(), StatusCode::OK);
    assert_eq!(counts().await, (1, 1, 1), "(users, sessions, links) after a login");
}

#[tokio::test]
async fn a_login_writes_its_user_session_and_link_together_or_not_at_all_sqlite() {
    let app = TestApp::spawn().await;
    let path = app.data_dir.join("oidc-gate.sqlite3");
    let url = format!("sqlite://{}", path.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let conn = tokio::sync::Mutex::new(&mut conn);
    let links = async |up: bool| {
        let sql = if up {
            "DROP TRIGGER fail_links"
        } else {
            FAIL_LINKS_SQLITE
        };
        sqlx::query(sql).execute(&mut **conn.lock().await).await.unwrap();
    };
    let counts = || async {
        (
            app.count("users").await,
            app.count("tower_sessions").await,
            app.count("session_index").await,
        )
    };
    nothing_or_everything(&app, counts, links).await;
}

#[tokio::test]
async fn a_login_writes_its_user_session_and_link_together_or_not_at_all_postgres() {
    let Some(url) = crate::stores::service_url("TEST_DATABASE_URL") else {
        return;
    };
    let schema = crate::scale::PgSchema::new(&url);
    let app = TestApp::spawn_with(Options {
        store: StoreEnv {
            database_url: Some(url.clone()),
            database_schema: Some(schema.name.clone()),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(&format!("SET search_path TO \"{}\"", schema.name))
        .execute(&mut conn)
        .await
        .unwrap();
    let conn = tokio::sync::Mutex::new(&mut conn);
    let links = async |up: bool| {
        let mut conn = conn.lock().await;
        if up {
            sqlx::query("DROP TRIGGER fail_links ON session_index")
                .execute(&mut **conn)
                .await
                .unwrap();
        } else {
            for sql in FAIL_LINKS_PG {
                sqlx::query(sql).execute(&mut **conn).await.unwrap();
            }
        }
    };
    let counts = || async {
        let mut conn = conn.lock().await;
        let mut n = [0i64; 3];
        for (n, table) in n.iter_mut().zip(["users", "session", "session_index"]) {
            *n = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(&mut **conn)
                .await
                .unwrap();
        }
        (n[0], n[1], n[2])
    };
    nothing_or_everything(&app, counts, links).await;
    drop(app);
    schema.drop().await;
}
