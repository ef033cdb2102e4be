//! Refreshing sessions' access tokens on demand, against the development
//! provider served on its own listener (rotating refresh tokens, short
//! access tokens, refreshes counted there): a session outlives several
//! access tokens; 50 requests at expiry over two instances sharing
//! PostgreSQL (then Redis) cause one refresh; a revoked grant ends the
//! session on both; a user removed from `ALLOWED_GROUPS` at the provider is
//! shut out at the next refresh.

use std::time::Duration;

use axum::Router;
use oidc_gate::clock::Clock;
use oidc_gate::devprovider::{DevClient, DevProvider};
use reqwest::StatusCode;
use serde_json::json;
use url::Url;

use crate::logs::{Captured, audit};
use crate::scale::PgSchema;
use crate::stores::service_url;
use crate::support::*;

/// The load balancer's address: never listened on; the test routes each
/// request to an instance itself.
const LB: &str = "http://127.0.0.1:9";
const EMAIL: &str = "ada@example.com";

/// The development provider on a listener of its own, registered for `LB`.
struct Op {
    dev: DevProvider,
    issuer: String,
    secret: String,
}

impl Op {
    async fn start(access_ttl: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}/op", listener.local_addr().unwrap());
        let secret = oidc_gate::secret::random_token(24);
        let dev = DevProvider::new(
            Url::parse(&issuer).unwrap(),
            DevClient {
                client_id: "gate".into(),
                client_secret: secret.clone(),
                redirect_uris: vec![format!("{LB}/callback")],
                post_logout_redirect_uris: vec![format!("{LB}/")],
            },
        );
        dev.set_access_token_ttl(access_ttl);
        let router = Router::new().nest_service("/op", dev.router());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { dev, issuer, secret }
    }

    fn client(&self) -> (String, String, String) {
        (self.issuer.clone(), "gate".into(), self.secret.clone())
    }
}

fn behind_lb(a: &mut oidc_gate::config::Args) {
    a.public_url = LB.into();
}

async fn instance(op: &Op, clock: &Clock, store: StoreEnv) -> TestApp {
    TestApp::spawn_with(Options {
        provider: Some(op.client()),
        tweak: Some(behind_lb),
        clock: Some(clock.clone()),
        store,
        routes: Some(access_token_routes),
        ..Default::default()
    })
    .await
}

fn route(url: &str, to: &TestApp) -> String {
    url.replacen(LB, &format!("http://{}", to.addr), 1)
}

/// Signs in through `app` on the development provider.
async fn sign_in(app: &TestApp, browser: &Browser) {
    let r = browser.get(&app.url("/login?next=/api/token")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let callback = dev_provider_sign_in(browser, &redirect_target(&r), "Ada Lovelace", EMAIL, "sign_in").await;
    let done = browser.get(&route(&callback, app)).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER, "{}", done.text().await.unwrap());
}

#[tokio::test]
async fn a_session_outlives_several_short_access_tokens() {
    let op = Op::start(Duration::from_secs(4)).await;
    let clock = Clock::stopped();
    let app = instance(&op, &clock, StoreEnv::default()).await;
    let browser = Browser::new();
    sign_in(&app, &browser).await;

    let (status, first) = api_token(&browser, &app).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!first.is_empty());
    // Within the token's life and before its margin (a quarter of 4 s):
    // the same token, no refresh, however many requests.
    clock.advance(Duration::from_secs(2));
    for _ in 0..5 {
        assert_eq!(api_token(&browser, &app).await, (StatusCode::OK, first.clone()));
    }
    assert_eq!(op.dev.refreshes(), 0);

    let mut seen = vec![first];
    for round in 1..=4 {
        clock.advance(Duration::from_secs(4));
        let (status, token) = api_token(&browser, &app).await;
        assert_eq!(status, StatusCode::OK, "round {round}");
        assert!(!seen.contains(&token), "round {round}: a new token");
        assert_eq!(op.dev.refreshes(), round);
        // The next request uses it without asking the provider.
        assert_eq!(api_token(&browser, &app).await, (StatusCode::OK, token.clone()));
        assert_eq!(op.dev.refreshes(), round);
        seen.push(token);
    }
    assert_eq!(browser.get(&app.url("/secret")).await.status(), StatusCode::OK);
}

/// Two instances on `store`: 50 requests at expiry, spread over both,
/// cause one refresh and all get its token; then the grant is revoked at
/// the provider and the next refresh ends the session on both.
async fn one_refresh_across_instances(store: StoreEnv) {
    let op = Op::start(Duration::from_secs(60)).await;
    let clock = Clock::stopped();
    let a = instance(&op, &clock, store.clone()).await;
    let b = instance(&op, &clock, store).await;
    let browser = Browser::new();
    sign_in(&a, &browser).await;
    let (status, first) = api_token(&browser, &b).await;
    assert_eq!(status, StatusCode::OK);

    clock.advance(Duration::from_secs(61));
    let requests: Vec<_> = (0..50)
        .map(|i| {
            let url = if i % 2 == 0 {
                a.url("/api/token")
            } else {
                b.url("/api/token")
            };
            let client = browser.client.clone();
            tokio::spawn(async move {
                let r = client
                    .get(url)
                    .header("accept", "application/json")
                    .send()
                    .await
                    .unwrap();
                (r.status(), r.text().await.unwrap())
            })
        })
        .collect();
    let mut tokens = Vec::new();
    for r in requests {
        let (status, token) = r.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{token}");
        tokens.push(token);
    }
    assert_eq!(op.dev.refreshes(), 1, "exactly one refresh at the provider");
    assert!(tokens.iter().all(|t| *t == tokens[0]), "all use its result");
    assert_ne!(tokens[0], first);
    for app in [&a, &b] {
        assert_eq!(browser.get(&app.url("/secret")).await.status(), StatusCode::OK);
        assert_eq!(api_token(&browser, app).await, (StatusCode::OK, tokens[0].clone()));
    }
    assert_eq!(op.dev.refreshes(), 1);

    // The rotated refresh token is the one kept: the next refresh works.
    clock.advance(Duration::from_secs(61));
    let (status, second) = api_token(&browser, &b).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(second, tokens[0]);
    assert_eq!(op.dev.refreshes(), 2);

    // Revoked at the provider: the next refresh ends the session, on both.
    assert_eq!(op.dev.revoke_grants_of(&DevProvider::subject_of(EMAIL)), 1);
    clock.advance(Duration::from_secs(61));
    let (status, _) = api_token(&browser, &a).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let r = browser.get(&b.url("/api/token")).await;
    to_provider(&r);
    assert_eq!(browser.get(&b.url("/secret")).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(op.dev.refreshes(), 2, "no second attempt");
}

/// Users in PostgreSQL (a schema of their own), sessions in Redis, when
/// the test services are there.
fn on_redis() -> Option<(PgSchema, StoreEnv)> {
    let (url, redis) = (service_url("TEST_DATABASE_URL")?, service_url("TEST_REDIS_URL")?);
    let schema = PgSchema::new(&url);
    let store = StoreEnv {
        database_url: Some(url),
        database_schema: Some(schema.name.clone()),
        session_store_url: Some(redis),
        ..Default::default()
    };
    Some((schema, store))
}

/// Users and sessions in PostgreSQL (a schema of their own), when the test
/// database is there.
fn on_postgres() -> Option<(PgSchema, StoreEnv)> {
    let url = service_url("TEST_DATABASE_URL")?;
    let schema = PgSchema::new(&url);
    let store = StoreEnv {
        database_url: Some(url),
        database_schema: Some(schema.name.clone()),
        ..Default::default()
    };
    Some((schema, store))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_requests_at_expiry_over_two_instances_on_postgres_refresh_once() {
    let Some((schema, store)) = on_postgres() else {
        return;
    };
    one_refresh_across_instances(store).await;
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_requests_at_expiry_over_two_instances_on_redis_refresh_once() {
    let Some((schema, store)) = on_redis() else {
        return;
    };
    one_refresh_across_instances(store).await;
    schema.drop().await;
}

#[tokio::test]
async fn concurrent_requests_on_one_sqlite_instance_refresh_once() {
    let op = Op::start(Duration::from_secs(60)).await;
    let clock = Clock::stopped();
    let app = instance(&op, &clock, StoreEnv::default()).await;
    let browser = Browser::new();
    sign_in(&app, &browser).await;
    clock.advance(Duration::from_secs(61));
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let client = browser.client.clone();
            let url = app.url("/api/token");
            tokio::spawn(async move { client.get(url).send().await.unwrap().status() })
        })
        .collect();
    for r in requests {
        assert_eq!(r.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(op.dev.refreshes(), 1);
}

/// A request that loaded the session before a refresh saves it afterwards
/// (its activity, say) with the spent refresh token: the next refresh still
/// uses the new one (from the refreshed tokens' own slot), so the provider,
/// which revokes the grant of a spent token used again, keeps the session.
async fn a_stale_save_does_not_bring_the_spent_refresh_token_back(store: StoreEnv) {
    use std::str::FromStr as _;
    use tower_sessions::SessionStore as _;

    let op = Op::start(Duration::from_secs(60)).await;
    let clock = Clock::stopped();
    let app = instance(&op, &clock, store).await;
    let browser = Browser::new();
    sign_in(&app, &browser).await;
    let id = tower_sessions::session::Id::from_str(&browser.session_id(&app).unwrap()).unwrap();
    let sessions = app.store.session_backend();
    let loaded_before = sessions.load(&id).await.unwrap().expect("the session");

    clock.advance(Duration::from_secs(61));
    assert_eq!(api_token(&browser, &app).await.0, StatusCode::OK);
    assert_eq!(op.dev.refreshes(), 1);
    sessions.save(&loaded_before).await.unwrap();

    clock.advance(Duration::from_secs(61));
    assert_eq!(api_token(&browser, &app).await.0, StatusCode::OK);
    assert_eq!(op.dev.refreshes(), 2);
    assert_eq!(browser.get(&app.url("/secret")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_stale_save_does_not_bring_the_spent_refresh_token_back_on_sqlite() {
    a_stale_save_does_not_bring_the_spent_refresh_token_back(StoreEnv::default()).await;
}

#[tokio::test]
async fn a_stale_save_does_not_bring_the_spent_refresh_token_back_on_redis() {
    let Some((schema, store)) = on_redis() else {
        return;
    };
    a_stale_save_does_not_bring_the_spent_refresh_token_back(store).await;
    schema.drop().await;
}

/// A session keeps its login, activity and tokens as arrays (a record is
/// copied on every request, an array more cheaply than an object). One
/// written with objects, as before, still works: its page, its logout
/// form, its access token, a refresh and its activity.
#[tokio::test]
async fn a_session_written_with_objects_still_works() {
    use std::str::FromStr as _;
    use tower_sessions::SessionStore as _;

    let op = Op::start(Duration::from_secs(60)).await;
    let clock = Clock::stopped();
    let app = instance(&op, &clock, StoreEnv::default()).await;
    let browser = Browser::new();
    sign_in(&app, &browser).await;
    let (status, token) = api_token(&browser, &app).await;
    assert_eq!(status, StatusCode::OK);
    let id = tower_sessions::session::Id::from_str(&browser.session_id(&app).unwrap()).unwrap();
    let sessions = app.store.session_backend();
    let mut record = sessions.load(&id).await.unwrap().expect("the session");
    let fields: [(&str, &[&str]); 3] = [
        ("oidc.login", &["issuer", "subject", "sid", "csrf", "auth_time", "acr"]),
        ("oidc.activity", &["login_at", "last_seen"]),
        (
            "oidc.tokens",
            &["access", "access_expires_at", "issued_at", "id", "refresh"],
        ),
    ];
    for (key, names) in fields {
        let written = record.data[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key}: {}", record.data[key]));
        assert_eq!(written.len(), names.len(), "{key}");
        // As sessions were written before: an object, without its nulls.
        let object: serde_json::Map<String, serde_json::Value> = names
            .iter()
            .zip(written)
            .filter(|(_, v)| !v.is_null())
            .map(|(n, v)| ((*n).to_owned(), v.clone()))
            .collect();
        record.data.insert(key.to_owned(), object.into());
    }
    sessions.save(&record).await.unwrap();
    assert!(sessions.load(&id).await.unwrap().unwrap().data["oidc.login"].is_object());

    assert_eq!(browser.get(&app.url("/secret")).await.status(), StatusCode::OK);
    let home = browser.get(&app.url("/")).await;
    assert_eq!(home.status(), StatusCode::OK);
    assert!(home.text().await.unwrap().contains("name=\"csrf\""), "the logout form");
    assert_eq!(api_token(&browser, &app).await, (StatusCode::OK, token.clone()));
    assert_eq!(op.dev.refreshes(), 0);

    clock.advance(Duration::from_secs(61));
    let (status, fresh) = api_token(&browser, &app).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(fresh, token, "refreshed");
    assert_eq!(op.dev.refreshes(), 1);
    let record = sessions.load(&id).await.unwrap().expect("the session");
    assert!(record.data["oidc.tokens"].is_array(), "{}", record.data["oidc.tokens"]);
    assert!(record.data["oidc.activity"].is_array(), "touched");
}

/// `SESSION_REFRESH_INTERVAL`: tokens that are far from expiry are
/// refreshed that often, so a user disabled at the provider is noticed
/// within it.
#[tokio::test]
async fn the_refresh_interval_notices_a_disabled_user_before_the_token_expires() {
    let op = Op::start(Duration::from_secs(3600)).await;
    let clock = Clock::stopped();
    let app = TestApp::spawn_with(Options {
        provider: Some(op.client()),
        tweak: Some(|a| {
            behind_lb(a);
            a.session_refresh_interval = Some("5m".into());
        }),
        clock: Some(clock.clone()),
        routes: Some(access_token_routes),
        ..Default::default()
    })
    .await;
    let browser = Browser::new();
    sign_in(&app, &browser).await;
    let (_, first) = api_token(&browser, &app).await;

    clock.advance(Duration::from_secs(299));
    assert_eq!(api_token(&browser, &app).await, (StatusCode::OK, first.clone()));
    assert_eq!(op.dev.refreshes(), 0);
    clock.advance(Duration::from_secs(1));
    let (status, second) = api_token(&browser, &app).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(second, first);
    assert_eq!(op.dev.refreshes(), 1);

    op.dev.revoke_grants_of(&DevProvider::subject_of(EMAIL));
    clock.advance(Duration::from_secs(300));
    assert_eq!(api_token(&browser, &app).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(browser.get(&app.url("/secret")).await.status(), StatusCode::SEE_OTHER);
}

/// `ALLOWED_GROUPS=staff`, behind the load balancer.
fn staff_only(a: &mut oidc_gate::config::Args) {
    behind_lb(a);
    a.access.allowed_groups = Some("staff".into());
}

/// The user's groups at the provider, in their ID tokens from now on.
fn in_groups(op: &Op, groups: &[&str]) {
    let claims = json!({ "groups": groups }).as_object().unwrap().clone();
    op.dev.set_claims_of(&DevProvider::subject_of(EMAIL), claims);
}

/// A user removed from `ALLOWED_GROUPS` at the provider: the claims of the
/// refreshed ID token are judged, so the request of the next refresh is
/// refused (403, `group_not_allowed`, audited as the session's end) and the
/// session is gone; a refresh that keeps the group keeps the access.
async fn a_user_removed_from_the_group_is_shut_out_at_the_next_refresh(store: StoreEnv) {
    let log = Captured::default();
    let _guard = log.json_default();
    let op = Op::start(Duration::from_secs(60)).await;
    let clock = Clock::stopped();
    let app = TestApp::spawn_with(Options {
        provider: Some(op.client()),
        tweak: Some(staff_only),
        clock: Some(clock.clone()),
        store,
        routes: Some(access_token_routes),
        ..Default::default()
    })
    .await;
    in_groups(&op, &["staff"]);
    let browser = Browser::new();
    sign_in(&app, &browser).await;
    let (status, first) = api_token(&browser, &app).await;
    assert_eq!(status, StatusCode::OK);

    // Still in the group (and in another): refreshed, still in.
    in_groups(&op, &["ops", "staff"]);
    clock.advance(Duration::from_secs(61));
    let (status, second) = api_token(&browser, &app).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_ne!(second, first);
    assert_eq!(op.dev.refreshes(), 1);
    assert_eq!(browser.get(&app.url("/secret")).await.status(), StatusCode::OK);

    // Removed: judged on the last refresh's claims until the next refresh.
    in_groups(&op, &["ops"]);
    assert_eq!(browser.get(&app.url("/secret")).await.status(), StatusCode::OK);
    clock.advance(Duration::from_secs(61));
    let (status, body) = api_token(&browser, &app).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("\"group_not_allowed\""), "{body}");
    assert_eq!(op.dev.refreshes(), 2);
    let r = browser.get(&app.url("/secret")).await;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "the session is gone: sent to sign in"
    );
    to_provider(&r);
    assert_eq!(op.dev.refreshes(), 2);

    let lines = log.json();
    let ends = audit(&lines, "session_end");
    assert_eq!(ends.len(), 1, "{ends:#?}");
    assert_eq!(ends[0]["reason"], "group_not_allowed");
    assert_eq!(ends[0]["subject"], DevProvider::subject_of(EMAIL).as_str());
}

#[tokio::test]
async fn a_user_removed_from_the_group_is_shut_out_at_the_next_refresh_on_sqlite() {
    a_user_removed_from_the_group_is_shut_out_at_the_next_refresh(StoreEnv::default()).await;
}

#[tokio::test]
async fn a_user_removed_from_the_group_is_shut_out_at_the_next_refresh_on_postgres() {
    let Some((schema, store)) = on_postgres() else {
        return;
    };
    a_user_removed_from_the_group_is_shut_out_at_the_next_refresh(store).await;
    schema.drop().await;
}

#[tokio::test]
async fn a_user_removed_from_the_group_is_shut_out_at_the_next_refresh_on_redis() {
    let Some((schema, store)) = on_redis() else {
        return;
    };
    a_user_removed_from_the_group_is_shut_out_at_the_next_refresh(store).await;
    schema.drop().await;
}

/// With `SESSION_REFRESH_INTERVAL`, a session under access rules is
/// refreshed once it has passed even by a page that needs no token, so a
/// user removed from the group is shut out within it.
#[tokio::test]
async fn the_refresh_interval_shuts_out_a_user_removed_from_the_group_on_any_page() {
    let op = Op::start(Duration::from_secs(3600)).await;
    let clock = Clock::stopped();
    let app = TestApp::spawn_with(Options {
        provider: Some(op.client()),
        tweak: Some(|a| {
            staff_only(a);
            a.session_refresh_interval = Some("5m".into());
        }),
        clock: Some(clock.clone()),
        ..Default::default()
    })
    .await;
    in_groups(&op, &["staff"]);
    let browser = Browser::new();
    sign_in(&app, &browser).await;

    in_groups(&op, &[]);
    clock.advance(Duration::from_secs(299));
    assert_eq!(browser.get(&app.url("/secret")).await.status(), StatusCode::OK);
    assert_eq!(op.dev.refreshes(), 0);
    clock.advance(Duration::from_secs(1));
    let page = browser.get(&app.url("/secret")).await;
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    assert!(text(page).await.contains("group_not_allowed"));
    assert_eq!(op.dev.refreshes(), 1);
    assert_eq!(browser.get(&app.url("/secret")).await.status(), StatusCode::SEE_OTHER);
}
