//! Step-up (per-path `max_age` and `acr_values`) through the real server in
//! forward auth: a signed-in user whose sign-in is too old or too weak for a
//! path is sent to sign in again (or answered 401 as an API client), the new
//! authorization request asks for what the path needs, and the callback
//! refuses an ID token that does not show it.

use std::path::PathBuf;
use std::sync::OnceLock;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::forward_auth::{nginx_asks, traefik_asks};
use super::{defaults, gateway};
use crate::fake_op::{FakeOp, now};
use crate::support::*;

/// `/fresh` needs a sign-in for it (`max_age = 0`), `/recent` one within
/// ten minutes, `/mfa` the acr `mfa`; everything else nothing more.
fn step_up_file() -> PathBuf {
    static FILE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, file) = FILE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gate.toml");
        std::fs::write(
            &file,
            "[[paths]]\nprefix = \"/fresh\"\nmax_age = \"0s\"\n\n\
             [[paths]]\nprefix = \"/recent\"\nmax_age = \"10m\"\n\n\
             [[paths]]\nprefix = \"/mfa\"\nacr_values = [\"mfa\", \"hwk\"]\n",
        )
        .unwrap();
        (dir, file)
    });
    file.clone()
}

async fn step_up_app() -> (FakeOp, TestApp) {
    gateway(|a| {
        a.gateway = defaults();
        a.gateway.forward_auth = Some("true".into());
        a.gateway.config_file = Some(step_up_file());
    })
    .await
}

/// Signs in through `/oauth2/start?rd=…` with the ID token's claims
/// patched by `patch`; returns the callback's answer.
async fn sign_in_with(op: &FakeOp, app: &TestApp, browser: &Browser, rd: &str, patch: Value) -> reqwest::Response {
    op.set(|b| b.claims_patch = patch);
    let start = browser
        .get(&app.url(&format!("/oauth2/start?rd={}", urlencoding(rd))))
        .await;
    assert_eq!(start.status(), StatusCode::SEE_OTHER, "start");
    let callback = redirect_target(&browser.get(&redirect_target(&start)).await);
    assert!(callback.contains("/oauth2/callback?"), "{callback}");
    browser.get(&callback).await
}

fn asked(op: &FakeOp, name: &str) -> Option<String> {
    op.log().last_authorize.get(name).cloned()
}

async fn who(app: &TestApp, browser: &Browser) -> Value {
    browser.get(&app.url("/oauth2/userinfo")).await.json().await.unwrap()
}

#[tokio::test]
async fn max_age_zero_forces_a_new_sign_in_and_keeps_the_user() {
    let (op, app) = step_up_app().await;
    let browser = Browser::new();
    let r = sign_in_with(&op, &app, &browser, "/app", json!({"auth_time": now() - 300})).await;
    assert_eq!(location(&r), "/app");
    assert_eq!(asked(&op, "max_age"), None, "an ordinary path asks for nothing more");
    assert_eq!(asked(&op, "prompt"), None);
    assert_eq!(nginx_asks(&app, &browser, "/app").await.status(), StatusCode::ACCEPTED);

    // A browser is sent to sign in again, and back.
    let r = traefik_asks(&app, &browser, "GET", "/fresh/page", "text/html").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = location(&r);
    assert!(to.starts_with(&app.url("/oauth2/start?rd=")), "{to}");
    assert_eq!(query_param(&to, "rd"), "https://app.example.test/fresh/page");

    // The new authorization request asks for a new sign-in.
    let before = browser.cookies(&app.url("/"));
    let r = sign_in_with(&op, &app, &browser, "/fresh/page", json!({"auth_time": now()})).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{}", text(r).await);
    assert_eq!(asked(&op, "max_age").as_deref(), Some("0"));
    assert_eq!(asked(&op, "prompt").as_deref(), Some("login"));
    assert_eq!(
        nginx_asks(&app, &browser, "/fresh/page").await.status(),
        StatusCode::ACCEPTED
    );
    // The same user, still signed in, under a new session id.
    assert_eq!(who(&app, &browser).await["user"], "user-1");
    assert_ne!(browser.cookies(&app.url("/")), before, "the session id rotates");
    assert_eq!(nginx_asks(&app, &browser, "/app").await.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_sign_in_older_than_max_age_is_sent_to_sign_in_again_and_api_clients_get_401() {
    let (op, app) = step_up_app().await;
    let browser = Browser::new();
    // No auth_time without max_age asked: the sign-in here counts, which is recent.
    sign_in_with(&op, &app, &browser, "/app", json!({})).await;
    assert_eq!(
        nginx_asks(&app, &browser, "/recent").await.status(),
        StatusCode::ACCEPTED
    );

    let r = sign_in_with(&op, &app, &browser, "/app", json!({"auth_time": now() - 1200})).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(nginx_asks(&app, &browser, "/app").await.status(), StatusCode::ACCEPTED);
    for path in ["/recent", "/recent/x", "/x/../recent", "/%72ecent"] {
        // nginx (and API clients): 401 naming what is needed.
        let r = nginx_asks(&app, &browser, path).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.contains("insufficient_user_authentication"), "{challenge}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "insufficient_user_authentication", "{path}");
        assert_eq!(body["max_age"], 600);
        assert_eq!(body["login"], "/oauth2/start");
    }
    let r = traefik_asks(&app, &browser, "GET", "/recent", "application/json").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = traefik_asks(&app, &browser, "GET", "/recent", "text/html").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // nginx's 401 → /oauth2/start?rd=/recent steps up: max_age is asked for.
    let r = sign_in_with(&op, &app, &browser, "/recent", json!({"auth_time": now() - 60})).await;
    assert_eq!(location(&r), "/recent");
    assert_eq!(asked(&op, "max_age").as_deref(), Some("600"));
    assert_eq!(asked(&op, "prompt"), None);
    assert_eq!(
        nginx_asks(&app, &browser, "/recent").await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(who(&app, &browser).await["user"], "user-1");
}

#[tokio::test]
async fn the_callback_refuses_an_id_token_without_auth_time_or_too_old_for_max_age() {
    let (op, app) = step_up_app().await;
    let browser = Browser::new();
    let r = sign_in_with(&op, &app, &browser, "/recent", json!({})).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(text(r).await.contains("auth_time_missing"));
    assert_eq!(who(&app, &browser).await.get("user"), None, "nobody signed in");

    let r = sign_in_with(&op, &app, &browser, "/recent", json!({"auth_time": now() - 3600})).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(text(r).await.contains("auth_time_too_old"));
    assert_eq!(
        nginx_asks(&app, &browser, "/recent").await.status(),
        StatusCode::UNAUTHORIZED
    );

    // A signed-in user who fails a step-up stays signed in as before.
    sign_in_with(&op, &app, &browser, "/app", json!({"auth_time": now() - 3600})).await;
    let r = sign_in_with(&op, &app, &browser, "/recent", json!({"auth_time": now() - 3600})).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(nginx_asks(&app, &browser, "/app").await.status(), StatusCode::ACCEPTED);
    assert_eq!(
        nginx_asks(&app, &browser, "/recent").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn acr_values_are_asked_for_and_an_acr_mismatch_is_refused() {
    let (op, app) = step_up_app().await;
    let browser = Browser::new();
    sign_in_with(&op, &app, &browser, "/app", json!({"acr": "pwd"})).await;
    assert_eq!(nginx_asks(&app, &browser, "/app").await.status(), StatusCode::ACCEPTED);
    let r = nginx_asks(&app, &browser, "/mfa").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["acr_values"], json!(["mfa", "hwk"]));

    for acr in [json!({"acr": "pwd"}), json!({})] {
        let r = sign_in_with(&op, &app, &browser, "/mfa", acr).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(text(r).await.contains("acr_not_satisfied"));
        assert_eq!(asked(&op, "acr_values").as_deref(), Some("mfa hwk"));
    }
    assert_eq!(
        nginx_asks(&app, &browser, "/mfa").await.status(),
        StatusCode::UNAUTHORIZED
    );

    let r = sign_in_with(&op, &app, &browser, "/mfa", json!({"acr": "hwk"})).await;
    assert_eq!(location(&r), "/mfa");
    assert_eq!(nginx_asks(&app, &browser, "/mfa").await.status(), StatusCode::ACCEPTED);
    assert_eq!(nginx_asks(&app, &browser, "/app").await.status(), StatusCode::ACCEPTED);
}

/// Signs in at the development provider through `/oauth2/start?rd=…`,
/// typing `acr` (`None`: what the form offers); returns the form it showed
/// and the callback's answer.
async fn dev_sign_in(app: &TestApp, browser: &Browser, rd: &str, acr: Option<&str>) -> (html::Form, reqwest::Response) {
    let start = browser
        .get(&app.url(&format!("/oauth2/start?rd={}", urlencoding(rd))))
        .await;
    let page = browser.get(&redirect_target(&start)).await;
    assert_eq!(page.status(), StatusCode::OK, "the sign-in form, every time");
    let page_url = page.url().clone();
    let form = html::form(&text(page).await).unwrap();
    let mut fields = form.inputs.clone();
    if let Some(acr) = acr {
        fields.retain(|(k, _)| k != "acr");
        fields.push(("acr".into(), acr.into()));
    }
    fields.push(("action".into(), "sign_in".into()));
    let target = page_url.join(&form.action).unwrap();
    let r = browser.client.post(target).form(&fields).send().await.unwrap();
    (form, browser.get(&redirect_target(&r)).await)
}

#[tokio::test]
async fn the_development_provider_signs_in_again_and_puts_the_typed_acr_in_the_id_token() {
    let app = TestApp::spawn_with(Options {
        tweak: Some(|a| {
            a.gateway = defaults();
            a.gateway.forward_auth = Some("true".into());
            a.gateway.config_file = Some(step_up_file());
        }),
        ..Default::default()
    })
    .await;
    let browser = Browser::new();
    let (form, r) = dev_sign_in(&app, &browser, "/app", None).await;
    assert_eq!(location(&r), "/app");
    assert!(
        form.inputs.contains(&("acr".into(), String::new())),
        "no acr asked, none offered"
    );
    assert_eq!(
        nginx_asks(&app, &browser, "/mfa").await.status(),
        StatusCode::UNAUTHORIZED
    );

    // A step-up: the form is shown again, offering the acr asked for.
    let (_, r) = dev_sign_in(&app, &browser, "/mfa", Some("pwd")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(text(r).await.contains("acr_not_satisfied"));
    let (form, r) = dev_sign_in(&app, &browser, "/mfa", None).await;
    assert!(form.inputs.contains(&("acr".into(), "mfa".into())), "{:?}", form.inputs);
    assert_eq!(location(&r), "/mfa");
    assert_eq!(nginx_asks(&app, &browser, "/mfa").await.status(), StatusCode::ACCEPTED);

    // max_age = 0 (prompt=login): the form again; its auth_time is the new sign-in's.
    let (_, r) = dev_sign_in(&app, &browser, "/fresh", None).await;
    assert_eq!(location(&r), "/fresh");
    assert_eq!(
        nginx_asks(&app, &browser, "/fresh").await.status(),
        StatusCode::ACCEPTED
    );
}

/// The upstream of [`the_reverse_proxy_sends_browsers_to_step_up_and_api_clients_get_401`]
/// (for the `tweak` function pointer).
static UPSTREAM: OnceLock<String> = OnceLock::new();

#[tokio::test]
async fn the_reverse_proxy_sends_browsers_to_step_up_and_api_clients_get_401() {
    let upstream = super::reverse_proxy::Upstream::start().await;
    UPSTREAM.set(format!("http://{}", upstream.addr)).unwrap();
    let (op, app) = gateway(|a| {
        a.gateway = defaults();
        a.gateway.upstream_url = UPSTREAM.get().cloned();
        a.gateway.config_file = Some(step_up_file());
    })
    .await;
    let browser = Browser::new();
    sign_in_with(&op, &app, &browser, "/app", json!({"auth_time": now() - 1200})).await;
    let r = browser.get(&app.url("/app")).await;
    assert_eq!(r.status(), StatusCode::OK, "other paths are unaffected");

    // Straight to the provider, asking for a sign-in within ten minutes.
    let r = browser.get(&app.url("/recent/page?x=1")).await;
    let authorize = to_provider(&r);
    assert_eq!(query_param(&authorize, "max_age"), "600");
    let r = browser
        .client
        .get(app.url("/recent/page"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "insufficient_user_authentication");
    assert!(
        !upstream.seen().iter().any(|s| s.uri.starts_with("/recent")),
        "nothing reached the upstream"
    );

    op.set(|b| b.claims_patch = json!({"auth_time": now()}));
    let r = browser.get(&redirect_target(&browser.get(&authorize).await)).await;
    assert_eq!(location(&r), "/recent/page?x=1");
    let r = browser.get(&app.url("/recent/page?x=1")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(upstream.seen().iter().any(|s| s.uri == "/recent/page?x=1"));

    // Anonymous: straight to the provider too, asking for what the path needs.
    for (path, name, value) in [
        ("/recent/x", "max_age", "600"),
        ("/fresh/x", "max_age", "0"),
        ("/fresh/x", "prompt", "login"),
        ("/mfa/x", "acr_values", "mfa hwk"),
    ] {
        let authorize = to_provider(&Browser::new().get(&app.url(path)).await);
        assert_eq!(query_param(&authorize, name), value, "{path}");
    }
    let authorize = to_provider(&Browser::new().get(&app.url("/app")).await);
    let url = url::Url::parse(&authorize).unwrap();
    assert!(
        !url.query_pairs()
            .any(|(k, _)| ["max_age", "acr_values", "prompt"].contains(&k.as_ref())),
        "an ordinary path asks for nothing more: {authorize}"
    );
}
