//! Back-Channel Logout: `POST /backchannel-logout` with a logout token. A
//! valid token ends the matching sessions (by `sid`, or every session of
//! `sub`) and answers 200; anything wrong answers 400 and ends nothing.

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use super::*;
use crate::fake_op::{Alg, Key, send_logout_token};

/// A browser logged in as `sub` with provider session `sid`.
async fn logged_in_as(op: &FakeOp, app: &TestApp, sub: &str, sid: &str) -> Browser {
    op.set(|b| {
        b.sub = sub.to_owned();
        b.sid = Some(sid.to_owned());
    });
    logged_in(app).await
}

async fn deliver(app: &TestApp, token: &str) -> Response {
    let r = send_logout_token(&app.url("/backchannel-logout"), token).await;
    assert_eq!(
        r.headers().get("cache-control").map(|v| v.to_str().unwrap()),
        Some("no-store")
    );
    r
}

async fn is_logged_in(app: &TestApp, browser: &Browser) -> bool {
    let r = browser.get(&app.url("/secret")).await;
    match r.status() {
        StatusCode::OK => true,
        StatusCode::SEE_OTHER if is_to_provider(&r) => false,
        other => panic!("/secret answered {other}"),
    }
}

/// A session for `user-1` / `sid-1`, then a logout token for it with the
/// signing knobs `shape` and the claims `patch`: refused, nothing ended.
async fn refused_token(shape: impl FnOnce(&mut Behavior), patch: Value) {
    let (op, app) = setup(|_| {}).await;
    let browser = logged_in_as(&op, &app, "user-1", "sid-1").await;
    op.set(shape);
    // `null` members stay in: the token minting removes those claims.
    let mut claims = json!({"sub": "user-1", "sid": "sid-1"});
    claims
        .as_object_mut()
        .unwrap()
        .extend(patch.as_object().unwrap().clone());
    let r = deliver(&app, &op.logout_token(claims)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(is_logged_in(&app, &browser).await, "the session survives");
    assert_eq!(app.count("session_index").await, 1);
}

#[tokio::test]
async fn rp_backchannel_rpinitlogout() {
    // By sid: only the matching one of the user's two sessions ends.
    let (op, app) = setup(|_| {}).await;
    let a = logged_in_as(&op, &app, "user-1", "sid-a").await;
    let b = logged_in_as(&op, &app, "user-1", "sid-b").await;
    let r = deliver(&app, &op.logout_token(json!({"sub": "user-1", "sid": "sid-a"}))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!is_logged_in(&app, &a).await, "session sid-a ended");
    assert!(is_logged_in(&app, &b).await, "session sid-b survives");
    assert_eq!(app.count("session_index").await, 1);
}

#[tokio::test]
async fn backchannel_logout_by_sub_ends_every_session_of_the_user() {
    let (op, app) = setup(|_| {}).await;
    let x1 = logged_in_as(&op, &app, "user-x", "sid-x1").await;
    let x2 = logged_in_as(&op, &app, "user-x", "sid-x2").await;
    let y = logged_in_as(&op, &app, "user-y", "sid-y").await;
    let r = deliver(&app, &op.logout_token(json!({"sub": "user-x"}))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        !is_logged_in(&app, &x1).await && !is_logged_in(&app, &x2).await,
        "user-x is logged out"
    );
    assert!(is_logged_in(&app, &y).await, "user-y is not");
    assert_eq!(app.count("session_index").await, 1);
}

#[tokio::test]
async fn backchannel_logout_replayed_jti() {
    let (op, app) = setup(|_| {}).await;
    logged_in_as(&op, &app, "user-1", "sid-1").await;
    let token = op.logout_token(json!({"sub": "user-1", "sid": "sid-1"}));
    assert_eq!(deliver(&app, &token).await.status(), StatusCode::OK);
    assert_eq!(app.count("session_index").await, 0);
    // The same sid logs in again; the replayed token must not end it.
    let again = logged_in_as(&op, &app, "user-1", "sid-1").await;
    assert_eq!(deliver(&app, &token).await.status(), StatusCode::BAD_REQUEST);
    assert!(is_logged_in(&app, &again).await);
    assert_eq!(app.count("session_index").await, 1);
}

#[tokio::test]
async fn backchannel_logout_bad_signature() {
    refused_token(|b| b.corrupt_signature = true, json!({})).await;
}

#[tokio::test]
async fn rp_backchannel_rpinitlogout_lt_alg_none() {
    refused_token(|b| b.alg = Alg::None, json!({})).await;
}

#[tokio::test]
async fn rp_backchannel_rpinitlogout_lt_wrong_alg() {
    // ID tokens are RS256; this one is properly signed with a P-256 key the
    // provider publishes, and validated as an ID token would be: refused.
    refused_token(
        |b| {
            b.alg = Alg::Es256;
            b.key = Key::Ec1;
        },
        json!({}),
    )
    .await;
}

#[tokio::test]
async fn backchannel_logout_hs256() {
    refused_token(|b| b.alg = Alg::Hs256, json!({})).await;
}

#[tokio::test]
async fn backchannel_logout_with_the_expected_algorithm_of_an_es256_provider() {
    // The same ES256 token is accepted where ES256 is the expected algorithm.
    let (op, app) = setup(|b| {
        b.alg = Alg::Es256;
        b.key = Key::Ec1;
        b.discovery_patch = json!({"id_token_signing_alg_values_supported": ["ES256"]});
    })
    .await;
    let browser = logged_in_as(&op, &app, "user-1", "sid-1").await;
    let r = deliver(&app, &op.logout_token(json!({"sub": "user-1", "sid": "sid-1"}))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!is_logged_in(&app, &browser).await);
}

#[tokio::test]
async fn backchannel_logout_signed_by_an_rsa_key_under_2048_bits() {
    let shape = |b: &mut Behavior| {
        b.key = Key::RsaSmall;
        b.jwks.push(Key::RsaSmall);
    };
    refused_token(shape, json!({})).await;
}

#[tokio::test]
async fn rp_backchannel_rpinitlogout_lt_wrong_issuer() {
    refused_token(|_| {}, json!({"iss": "https://evil.example"})).await;
}

#[tokio::test]
async fn rp_backchannel_rpinitlogout_lt_wrong_aud() {
    refused_token(|_| {}, json!({"aud": "someone-else"})).await;
}

#[tokio::test]
async fn backchannel_logout_missing_iat() {
    refused_token(|_| {}, json!({"iat": null})).await;
}

#[tokio::test]
async fn backchannel_logout_missing_jti() {
    refused_token(|_| {}, json!({"jti": null})).await;
}

#[tokio::test]
async fn rp_backchannel_rpinitlogout_lt_no_event() {
    refused_token(|_| {}, json!({"events": null})).await;
}

#[tokio::test]
async fn rp_backchannel_rpinitlogout_lt_wrong_event() {
    refused_token(|_| {}, json!({"events": {"http://schemas.openid.net/event/other": {}}})).await;
}

#[tokio::test]
async fn backchannel_logout_without_sid_or_sub() {
    refused_token(|_| {}, json!({"sid": null, "sub": null})).await;
}

#[tokio::test]
async fn rp_backchannel_rpinitlogout_lt_with_nonce() {
    refused_token(|_| {}, json!({"nonce": "a-nonce"})).await;
}

/// An app whose users, links and token ids are in SQLite and whose
/// sessions are in Redis behind a proxy the test can cut.
async fn sessions_in_redis_behind_a_proxy(redis: &str) -> (crate::support::proxy::Proxy, FakeOp, TestApp) {
    let proxy = crate::support::proxy::Proxy::start(crate::scale::target(redis)).await;
    let op = FakeOp::start().await;
    let app = TestApp::spawn_with(Options {
        provider: Some(op.client()),
        store: StoreEnv {
            session_store_url: Some(crate::scale::via(redis, proxy.addr)),
            store_timeout: Some("1s".into()),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    (proxy, op, app)
}

/// Delivers `token` as the provider retries it, until the answer is not
/// `503` (the session store is back), for at most 10 s; that answer.
async fn deliver_once_the_store_is_back(app: &TestApp, token: &str) -> Option<StatusCode> {
    for _ in 0..100 {
        let r = deliver(app, token).await;
        if r.status() != StatusCode::SERVICE_UNAVAILABLE {
            return Some(r.status());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    None
}

/// The session store fails after the token id was recorded: the logout is a
/// 503, the token id is released, and the provider's retry of the same
/// token ends the session (it is not taken for a replay).
#[tokio::test]
async fn backchannel_logout_retried_after_a_session_store_outage_takes_effect() {
    let Some(redis) = crate::stores::service_url("TEST_REDIS_URL") else {
        return;
    };
    let (proxy, op, app) = sessions_in_redis_behind_a_proxy(&redis).await;
    let browser = logged_in_as(&op, &app, "user-1", "sid-1").await;
    let token = op.logout_token(json!({"sub": "user-1", "sid": "sid-1"}));

    proxy.cut();
    let r = deliver(&app, &token).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{}", text(r).await);
    proxy.restore();

    let retried = deliver_once_the_store_is_back(&app, &token).await;
    assert_eq!(retried, Some(StatusCode::OK), "the retry is accepted, not a replay");
    assert!(!is_logged_in(&app, &browser).await, "the session ended");
    assert_eq!(app.count("session_index").await, 0);
    // Now it is a replay.
    assert_eq!(deliver(&app, &token).await.status(), StatusCode::BAD_REQUEST);
}

/// `/logout` deletes the session before its link. When the session store
/// fails in between (Redis goes away as the session is deleted), the
/// session keeps its link, so the provider's back-channel logout still
/// finds it and ends it once Redis is back.
#[tokio::test]
async fn a_logout_that_fails_half_way_leaves_the_session_to_back_channel_logout() {
    let Some(redis) = crate::stores::service_url("TEST_REDIS_URL") else {
        return;
    };
    let (proxy, op, app) = sessions_in_redis_behind_a_proxy(&redis).await;
    let browser = logged_in_as(&op, &app, "user-1", "sid-1").await;

    proxy.cut_when_sent(b"\r\nDEL\r\n");
    let r = click_log_out(&browser, &app.url("")).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{}", text(r).await);
    assert_eq!(app.count("session_index").await, 1, "the link outlives a failed delete");
    proxy.restore();

    let token = op.logout_token(json!({"sub": "user-1", "sid": "sid-1"}));
    let delivered = deliver_once_the_store_is_back(&app, &token).await;
    assert_eq!(delivered, Some(StatusCode::OK));
    assert!(!is_logged_in(&app, &browser).await, "the session ended");
    assert_eq!(app.count("session_index").await, 0);
}

/// A back-channel logout that arrives while the callback saves the new
/// session (sessions in PostgreSQL; the store's answer to the write that
/// signs the session in is held back while the logout runs) ends that
/// login: the callback refuses it and no session lives on.
///
/// Saved before it was linked, the signed-in session was invisible to a
/// logout arriving in between: the logout ended nothing and the login went
/// on to link a session whose provider session had ended.
#[tokio::test]
async fn a_back_channel_logout_during_the_callback_ends_that_login() {
    let Some(url) = crate::stores::service_url("TEST_DATABASE_URL") else {
        return;
    };
    let proxy = crate::support::proxy::Proxy::start(crate::scale::target(&url)).await;
    let schema = crate::scale::PgSchema::new(&url);
    let op = FakeOp::start().await;
    op.set(|b| {
        b.sub = "user-1".into();
        b.sid = Some("sid-1".into());
    });
    let app = TestApp::spawn_with(Options {
        provider: Some(op.client()),
        store: StoreEnv {
            // Links in SQLite; sessions in PostgreSQL, behind the proxy, in
            // clear so that it can read the writes.
            session_store_url: Some(in_clear(&crate::scale::via(&url, proxy.addr))),
            database_schema: Some(schema.name.clone()),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let browser = Browser::new();
    let authorize = start_login(&app, &browser, None).await;
    let callback = redirect_target(&browser.get(&authorize).await);

    // `axum-login`'s key is in the session record once it signs someone in.
    let hold = proxy.hold_answers_after(b"axum-login.data");
    let client = browser.client.clone();
    let mut completing = tokio::spawn(async move {
        let r = client.get(callback).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    });
    tokio::select! {
        _ = hold.engaged() => {}
        done = &mut completing => panic!("the callback did not sign the session in: {done:?}"),
    }
    let token = op.logout_token(json!({"sub": "user-1", "sid": "sid-1"}));
    assert_eq!(deliver(&app, &token).await.status(), StatusCode::OK);
    hold.release();

    let (status, page) = completing.await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("Reference: logged_out_during_login<"), "{page}");
    assert!(!is_logged_in(&app, &browser).await);
    assert_eq!(app.count("session_index").await, 0);
    drop(app);
    schema.drop().await;
}

/// A PostgreSQL URL with TLS off.
fn in_clear(url: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    let others: Vec<(String, String)> = url.query_pairs().into_owned().filter(|(k, _)| k != "sslmode").collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(others)
        .append_pair("sslmode", "disable");
    url.to_string()
}
